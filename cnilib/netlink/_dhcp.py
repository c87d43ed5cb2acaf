"""DHCPv4 on the wire: messages and a raw socket on one interface of one namespace.

A client that has no address yet cannot use a UDP socket, so DHCP runs on an
``AF_PACKET`` socket bound to the interface, with the Ethernet, IPv4 and UDP
headers built here. The socket is made inside the interface's namespace on a
worker of :mod:`cnilib.netlink._pool` and then used from any asyncio loop on
any thread: a socket stays in the namespace it was made in. It holds a
reference on that namespace, so open one per transaction and close it after
(the lease daemon pins no container namespace between transactions)::

    async with await open_dhcp_socket("/run/netns/ctr", "eth0") as sock:
        await sock.send(DhcpRequest(MessageType.DISCOVER, xid, sock.mac, broadcast=True))
        offer = await sock.receive(xid, timeout=10.0)

pyroute2's DHCP code does the packet work: ``dhcp4msg`` encodes the BOOTP
header and the options it knows, ``pyroute2.protocols`` frames (Ethernet,
IPv4, UDP, the pseudo header) and decodes the headers of a received frame,
``AsyncRawSocket.csum`` computes the checksums and ``listen_udp_port(68)``
is the kernel filter. What it cannot do is written here, each with its
reason: options it has no name for (``extra_options``) appended as raw TLVs,
a received message's options kept as raw bytes per code, split options
joined (RFC 3396), option overload (option 52) honoured, and the socket
made in another namespace with the filter attached before ``bind``.

pyroute2 is imported on first use, so importing :mod:`cnilib.netlink` stays cheap.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import errno as _errno
import ipaddress
import logging
import os
import socket
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import attrs

from cnilib.errors import PluginError
from cnilib.netlink._errors import _code_for
from cnilib.netlink._link import find_link, set_link_up
from cnilib.netlink._pool import NetnsTarget, default_pool, netns_label

__all__ = [
    "DhcpLinkNotFoundError",
    "DhcpReply",
    "DhcpRequest",
    "DhcpSocket",
    "DhcpSocketError",
    "MessageType",
    "decode_reply",
    "encode_message",
    "encode_request",
    "open_dhcp_socket",
]

_log = logging.getLogger(__name__)


class MessageType(enum.IntEnum):
    """Option 53 values (RFC 2132 9.6)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
CLIENT_PORT = 68
SERVER_PORT = 67
MAGIC_COOKIE = b"c\x82Sc"
BOOTREQUEST = 1
BOOTREPLY = 2
FLAG_BROADCAST = 0x8000

OPT_PAD = 0
OPT_REQUESTED_IP = 50
OPT_OVERLOAD = 52
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMETERS = 55
OPT_CLIENT_ID = 61
OPT_END = 255

ETH_P_IP = 0x0800
SO_ATTACH_FILTER = 26
_ETH_HLEN = 14
_IP_HLEN = 20
_UDP_HLEN = 8
_SNAME = slice(44, 108)
_FILE = slice(108, 236)
_COOKIE = slice(236, 240)
_OPTIONS_AT = 240
_MIN_MESSAGE = 300
"""RFC 1542 2.1: relays and some servers drop a BOOTP message shorter than 300
bytes; pyroute2 does not pad, Go's clients do (with PAD after END)."""
_RECV_SIZE = 65536


@attrs.frozen
class DhcpRequest:
    """A message the client sends, and how it is framed."""

    message_type: MessageType
    xid: int
    mac: str
    """chaddr, and the Ethernet source."""
    client_id: bytes | None = None
    """Option 61's payload as sent (Go: ``b"\\x00" + id``); None: no option 61."""
    ciaddr: str = "0.0.0.0"
    requested_ip: str | None = None
    """Option 50."""
    server_id: str | None = None
    """Option 54."""
    parameters: tuple[int, ...] = ()
    """Option 55, in this order; empty: no option 55."""
    extra_options: tuple[tuple[int, bytes], ...] = ()
    """Further options as (code, payload), sent as given (Go's ``provide``).

    Sent after the others, just before END; one longer than 255 bytes is split
    into several occurrences (RFC 3396). One with the code of an option the
    fields above make (61, 50, 54, 55) replaces that option, as Go's ``provide``
    replaces the client ID. Code 53 (the message type), 0 and 255 are refused."""
    broadcast: bool = False
    """The BROADCAST bit of ``flags``."""
    dst_mac: str = BROADCAST_MAC
    src_ip: str = "0.0.0.0"
    dst_ip: str = "255.255.255.255"


@attrs.frozen
class DhcpReply:
    """A server's message (OFFER, ACK or NAK) as received."""

    message_type: MessageType
    xid: int
    yiaddr: str
    chaddr: str
    options: Mapping[int, bytes]
    """Every option's raw payload by code (split options joined, RFC 3396)."""
    server_mac: str
    """The Ethernet source of the frame."""
    server_ip: str
    """The IPv4 source of the packet."""
    siaddr: str = "0.0.0.0"
    """The BOOTP ``siaddr`` field (next server)."""

    @property
    def server_id(self) -> str | None:
        """Option 54 as dotted quad, if present (and 4 bytes long)."""
        raw = self.options.get(OPT_SERVER_ID)
        if raw is None or len(raw) != 4:
            return None
        return str(ipaddress.IPv4Address(raw))


# -- errors ----------------------------------------------------------------------------


class DhcpLinkNotFoundError(PluginError):
    """The interface is not in the namespace.

    The message carries Go's text (``error looking up "eth0": Link not found``)
    and names the namespace; :attr:`go_message` is Go's text alone.
    """

    errno = _errno.ENODEV

    def __init__(self, ifname: str, netns: str) -> None:
        self.ifname = ifname
        self.netns = netns
        super().__init__(f"{self.go_message} in {netns}", code=_code_for(_errno.ENODEV))

    @property
    def go_message(self) -> str:
        """What Go's daemon answers for the same failure."""
        return f'error looking up "{self.ifname}": Link not found'


class DhcpSocketError(PluginError):
    """Making, sending on or reading the DHCP socket failed.

    ``errno`` is the OS error: ``ENXIO``/``ENODEV`` when the interface went
    away, ``ENETDOWN`` when it is down.
    """

    def __init__(
        self, operation: str, ifname: str, netns: str, errno: int, reason: str = ""
    ) -> None:
        self.operation = operation
        self.ifname = ifname
        self.netns = netns
        self.errno = errno
        text = reason or os.strerror(errno)
        super().__init__(f"dhcp: {operation} on {ifname} in {netns}: {text}", code=_code_for(errno))


# -- pyroute2, imported on first use ---------------------------------------------------

_p2: SimpleNamespace | None = None


def _pyroute2() -> SimpleNamespace:
    """The pyroute2 pieces used here (importing them takes ~0.2 s, so only when needed)."""
    global _p2
    if _p2 is None:
        from pyroute2 import protocols
        from pyroute2.dhcp.dhcp4msg import dhcp4msg
        from pyroute2.dhcp.dhcp4socket import listen_udp_port
        from pyroute2.ext import bpf
        from pyroute2.ext.rawsocket import AsyncRawSocket

        _p2 = SimpleNamespace(
            dhcp4msg=dhcp4msg,
            protocols=protocols,
            listen_udp_port=listen_udp_port,
            bpf=bpf,
            csum=AsyncRawSocket.csum,
        )
    return _p2


# -- encoding --------------------------------------------------------------------------


def _ipv4(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"DHCP request: {what} {value!r} is not an IPv4 address") from None


def _mac(value: str, what: str) -> str:
    parts = value.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and _is_hex(p) for p in parts):
        raise ValueError(f"DHCP request: {what} {value!r} is not an Ethernet address")
    return value.lower()


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def _client_id_value(payload: bytes) -> dict[str, Any]:
    """Option 61 in the form pyroute2's ``client_id`` encoder takes: {type, key}.

    Its encoder wants a type-1 key as colon-separated hex (any length), any
    other key as bytes; either way the payload goes out unchanged.
    """
    if not 1 <= len(payload) <= 255:
        raise ValueError("DHCP request: client_id must be 1 to 255 bytes")
    kind, key = payload[0], bytes(payload[1:])
    if kind == 1:
        if not key:
            raise ValueError("DHCP request: a client_id of type 1 needs an address")
        return {"type": 1, "key": key.hex(":")}
    return {"type": kind, "key": key}


def _tlvs(code: int, payload: bytes) -> bytes:
    """One option as raw TLVs, split in 255-byte pieces (RFC 3396).

    pyroute2's encoder drops every option it has no name and format for (e.g.
    user class 77, or any plain number), so ``extra_options`` go on the wire here.
    """
    if not payload:
        return bytes((code, 0))
    out = bytearray()
    for at in range(0, len(payload), 255):
        piece = payload[at : at + 255]
        out += bytes((code, len(piece))) + piece
    return bytes(out)


def encode_message(request: DhcpRequest) -> bytes:
    """The BOOTREQUEST ``request`` describes (the UDP payload).

    Options in order: 53, 61, 50, 54, 55, the extra options, END; padded to
    300 bytes. Raises :class:`ValueError` for a request that cannot be sent.
    """
    p2 = _pyroute2()
    if not 0 <= request.xid <= 0xFFFFFFFF:
        raise ValueError(f"DHCP request: xid {request.xid} is not a 32-bit number")
    extra_codes = {code for code, _ in request.extra_options}
    for code in extra_codes:
        if not 1 <= code <= 254 or code == OPT_MESSAGE_TYPE:
            raise ValueError(f"DHCP request: option {code} cannot be sent as an extra option")
    for code in request.parameters:
        if not 1 <= code <= 254:
            raise ValueError(f"DHCP request: parameter {code} is no option code")
    options: dict[str, Any] = {"message_type": int(request.message_type)}
    if request.client_id is not None and OPT_CLIENT_ID not in extra_codes:
        options["client_id"] = _client_id_value(request.client_id)
    if request.requested_ip is not None and OPT_REQUESTED_IP not in extra_codes:
        options["requested_ip"] = _ipv4(request.requested_ip, "requested_ip")
    if request.server_id is not None and OPT_SERVER_ID not in extra_codes:
        options["server_id"] = _ipv4(request.server_id, "server_id")
    if request.parameters and OPT_PARAMETERS not in extra_codes:
        options["parameter_list"] = list(request.parameters)
    msg = p2.dhcp4msg(
        {
            "op": BOOTREQUEST,
            "htype": 1,
            "hlen": 6,
            "xid": request.xid,
            "flags": FLAG_BROADCAST if request.broadcast else 0,
            "ciaddr": _ipv4(request.ciaddr, "ciaddr"),
            "chaddr": _mac(request.mac, "mac"),
            "options": options,
        }
    )
    data: bytes = msg.encode().buf
    if not data.endswith(bytes((OPT_END,))):  # pragma: no cover - pyroute2 always ends with END
        raise RuntimeError("pyroute2's dhcp4msg did not end the options with END")
    extra = b"".join(_tlvs(code, payload) for code, payload in request.extra_options)
    data = data[:-1] + extra + bytes((OPT_END,))
    return data.ljust(_MIN_MESSAGE, b"\0")


def encode_request(request: DhcpRequest) -> bytes:
    """``request`` as the Ethernet frame to send: IPv4, UDP 68 -> 67, checksums set.

    The framing is pyroute2's ``AsyncDHCP4Socket.put``, without a socket.
    """
    p2 = _pyroute2()
    proto = p2.protocols
    payload = encode_message(request)
    src, dst = _ipv4(request.src_ip, "src_ip"), _ipv4(request.dst_ip, "dst_ip")
    udp_len = _UDP_HLEN + len(payload)
    udp = proto.udpmsg({"sport": CLIENT_PORT, "dport": SERVER_PORT, "len": udp_len, "csum": 0})
    pseudo = proto.udp4_pseudo_header({"src": src, "dst": dst, "len": udp_len})
    csum = int(p2.csum(pseudo.encode().buf + udp.encode().buf + payload))
    # RFC 768: a computed 0 is sent as 0xffff (0 means "no checksum"); pyroute2 sends 0.
    udp["csum"] = csum or 0xFFFF
    udp.reset()
    ip4 = proto.ip4msg(
        {"len": _IP_HLEN + udp_len, "proto": socket.IPPROTO_UDP, "src": src, "dst": dst}
    )
    ip4["csum"] = int(p2.csum(ip4.encode().buf))
    ip4.reset()
    eth = proto.ethmsg(
        {"dst": _mac(request.dst_mac, "dst_mac"), "src": _mac(request.mac, "mac"), "type": ETH_P_IP}
    )
    frame: bytes = eth.encode().buf + ip4.encode().buf + udp.encode().buf + payload
    return frame


# -- decoding --------------------------------------------------------------------------


class _MalformedError(Exception):
    """An options area that cannot be read."""


def _parse_options(area: bytes, into: dict[int, bytearray]) -> None:
    """Add the options of ``area`` to ``into``, joining repeated codes (RFC 3396).

    Read here, not by pyroute2: its decoder turns options into Python values by
    name and keeps only the last occurrence of a code, so a split option (and
    any option it has no format for) would not arrive as sent.
    """
    at = 0
    while at < len(area):
        code = area[at]
        if code == OPT_PAD:
            at += 1
            continue
        if code == OPT_END:
            return
        if at + 2 > len(area) or at + 2 + area[at + 1] > len(area):
            raise _MalformedError(f"option {code} runs past the end")
        size = area[at + 1]
        into.setdefault(code, bytearray()).extend(area[at + 2 : at + 2 + size])
        at += 2 + size


def decode_reply(frame: bytes) -> DhcpReply | None:
    """The BOOTREPLY in an Ethernet frame, or None if ``frame`` holds none.

    Never raises: a frame that is not IPv4/UDP to port 68, not a BOOTREPLY, has
    no valid message type or malformed options is None.
    """
    try:
        return _decode_reply(frame)
    except Exception:  # garbage must never end a receive loop; pyroute2 raises several kinds
        _log.debug("undecodable frame of %d bytes skipped", len(frame), exc_info=True)
        return None


def _decode_reply(frame: bytes) -> DhcpReply | None:
    proto = _pyroute2().protocols
    if len(frame) < _ETH_HLEN + _IP_HLEN + _UDP_HLEN + _OPTIONS_AT:
        return None
    eth = proto.ethmsg(buf=frame).decode()
    if eth["type"] != ETH_P_IP:
        return None
    ip4 = proto.ip4msg(buf=frame, offset=_ETH_HLEN).decode()
    version, ihl = ip4["verlen"] >> 4, (ip4["verlen"] & 0xF) * 4
    if version != 4 or ihl < _IP_HLEN or ip4["proto"] != socket.IPPROTO_UDP:
        return None
    # pyroute2's ip4msg has a fixed 20-byte header: UDP starts after IHL words.
    udp_at = _ETH_HLEN + ihl
    udp = proto.udpmsg(buf=frame, offset=udp_at).decode()
    end = udp_at + udp["len"]
    if udp["dport"] != CLIENT_PORT or udp["len"] < _UDP_HLEN or end > len(frame):
        return None
    payload = frame[udp_at + _UDP_HLEN : end]  # without any Ethernet padding
    if len(payload) < _OPTIONS_AT or payload[_COOKIE] != MAGIC_COOKIE:
        return None
    # The fixed BOOTP fields only (protocols.msg.decode): dhcpmsg.decode would also
    # read the options, lossily (see _parse_options).
    header = _pyroute2().dhcp4msg(buf=payload)
    proto.msg.decode(header)
    if header["op"] != BOOTREPLY:
        return None
    found: dict[int, bytearray] = {}
    _parse_options(payload[_OPTIONS_AT:], found)
    overload = found.get(OPT_OVERLOAD)
    if overload is not None and len(overload) == 1:
        # RFC 3396 3: the options field, then file, then sname, joined in that order.
        if overload[0] & 1:
            _parse_options(payload[_FILE], found)
        if overload[0] & 2:
            _parse_options(payload[_SNAME], found)
    kind = found.get(OPT_MESSAGE_TYPE)
    if kind is None or len(kind) != 1 or kind[0] not in MessageType._value2member_map_:
        return None
    return DhcpReply(
        message_type=MessageType(kind[0]),
        xid=int(header["xid"]),
        yiaddr=str(header["yiaddr"]),
        chaddr=str(header["chaddr"]),
        options={code: bytes(value) for code, value in found.items()},
        server_mac=str(eth["src"]),
        server_ip=str(ip4["src"]),
        siaddr=str(header["siaddr"]),
    )


# -- the socket ------------------------------------------------------------------------


class DhcpSocket:
    """An AF_PACKET socket bound to one interface, made inside its namespace.

    Used from an asyncio loop on any thread: the socket stays in the
    namespace it was made in. Close it after each transaction (it holds a
    reference on the namespace).
    """

    ifname: str
    ifindex: int
    mac: str

    def __init__(
        self, sock: socket.socket, *, ifname: str, ifindex: int, mac: str, netns: str
    ) -> None:
        self._sock = sock
        self.ifname = ifname
        self.ifindex = ifindex
        self.mac = mac.lower()
        self.netns = netns
        """How the namespace was named (for messages)."""

    def __repr__(self) -> str:
        return f"DhcpSocket({self.ifname} #{self.ifindex} {self.mac} in {self.netns})"

    def fileno(self) -> int:
        """The socket's fd (-1 once closed)."""
        return self._sock.fileno()

    def _error(self, operation: str, exc: OSError) -> DhcpSocketError:
        err = exc.errno or _errno.EIO
        return DhcpSocketError(operation, self.ifname, self.netns, err, exc.strerror or "")

    async def send(self, request: DhcpRequest) -> None:
        """Send ``request`` as one frame.

        :class:`DhcpSocketError` when the kernel refuses it (``ENXIO`` once the
        interface is gone, ``ENETDOWN`` while it is down); :class:`ValueError`
        for a request that cannot be encoded.
        """
        frame = encode_request(request)
        try:
            await asyncio.get_running_loop().sock_sendall(self._sock, frame)
        except OSError as exc:
            raise self._error(f"send DHCP{request.message_type.name}", exc) from exc

    async def receive(self, xid: int, timeout: float) -> DhcpReply | None:  # noqa: ASYNC109 (the contract)
        """The next server message for ``xid`` (others and undecodable frames
        are skipped); None when ``timeout`` seconds pass first.

        Only a BOOTREPLY with this ``xid`` and our chaddr counts, whatever its
        message type (OFFER, ACK, NAK). The interface going down while waiting
        is not an error (the kernel reports ``ENETDOWN`` once; the wait goes on);
        any other socket failure raises :class:`DhcpSocketError`. Other tasks
        run between two skipped frames, however many are queued.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    frame = await loop.sock_recv(self._sock, _RECV_SIZE)
            except TimeoutError:
                return None
            except OSError as exc:
                if exc.errno != _errno.ENETDOWN:
                    raise self._error("receive", exc) from exc
            else:
                reply = decode_reply(frame)
                if reply is not None and reply.xid == xid and reply.chaddr == self.mac:
                    return reply
            # sock_recv returns without suspending while frames are queued: under a
            # stream of other clients' replies this loop would hold the event loop
            # (every other lease, the RPC server) until its deadline.
            await asyncio.sleep(0)

    def close(self) -> None:
        """Close the socket (again: no-op)."""
        self._sock.close()

    async def aclose(self) -> None:
        """Close the socket without holding up the event loop (again: no-op).

        Releasing a bound packet socket waits in the kernel for packets in
        flight (``synchronize_net``): 8 to 15 ms measured here. On the loop, a
        burst of leases would pay that one after another; on a thread, the
        closes overlap and the loop goes on.
        """
        if self._sock.fileno() < 0:
            return
        fd = self._sock.detach()  # the object is closed at once; the fd goes on a thread
        await asyncio.to_thread(os.close, fd)

    async def __aenter__(self) -> DhcpSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _open_here(ifname: str) -> tuple[socket.socket, int, str, str]:
    """On a namespace worker: (socket, ifindex, mac, netns label) for ``ifname``."""
    label = netns_label()
    link = find_link(ifname)
    if link is None:
        raise DhcpLinkNotFoundError(ifname, label)
    if not link.up:
        _log.info("Link %r down. Attempting to set up", ifname)  # Go's words
        set_link_up(link)
    if len(link.mac.split(":")) != 6:
        raise DhcpSocketError("open", ifname, label, _errno.EINVAL, "no Ethernet address")
    p2 = _pyroute2()
    # Protocol 0: the socket sees no frame until bind(), and the filter is in
    # place by then (attached after bind, IPv6 frames were seen to sneak in).
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        fprog, program = p2.bpf.compile(p2.listen_udp_port(CLIENT_PORT))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        del program  # fprog points into it: kept alive until the kernel copied it
        sock.bind((ifname, ETH_P_IP))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno in (_errno.ENODEV, _errno.ENXIO):  # renamed or gone since the look-up
            raise DhcpLinkNotFoundError(ifname, label) from exc
        raise DhcpSocketError(
            "open", ifname, label, exc.errno or _errno.EIO, exc.strerror or ""
        ) from exc
    except BaseException:
        sock.close()
        raise
    return sock, link.index, link.mac, label


def _close_result(future: concurrent.futures.Future[tuple[socket.socket, int, str, str]]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result()[0].close()


async def open_dhcp_socket(netns: NetnsTarget, ifname: str) -> DhcpSocket:
    """A :class:`DhcpSocket` on ``ifname`` in ``netns``, set up (as Go does).

    The link is set up if it is down. Raises
    :class:`~cnilib.netlink.NetNSNotFoundError` (naming the path) when the
    namespace does not exist, :class:`DhcpLinkNotFoundError` when the link
    does not, :class:`DhcpSocketError` when the socket cannot be made.
    """
    future = default_pool().submit(netns, _open_here, ifname)
    try:
        sock, ifindex, mac, label = await asyncio.shield(asyncio.wrap_future(future))
    except asyncio.CancelledError:
        # The worker still finishes: close what it makes rather than leak the fd.
        future.add_done_callback(_close_result)
        raise
    return DhcpSocket(sock, ifname=ifname, ifindex=ifindex, mac=mac, netns=label)
