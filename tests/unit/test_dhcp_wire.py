"""The DHCPv4 wire layer without a network: frames built and read by hand here."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from cnilib.netlink import (
    DhcpReply,
    DhcpRequest,
    DhcpSocket,
    MessageType,
    decode_reply,
    encode_message,
    encode_request,
)

MAC = "02:00:00:00:00:01"
SERVER_MAC = "02:00:00:00:00:fe"
XID = 0x1234ABCD


# -- reading a request by hand ---------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int(word) for word in struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _split(frame: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(ethernet, ip, udp, payload) headers of a frame with a 20-byte IP header."""
    return frame[:14], frame[14:34], frame[34:42], frame[42:]


def _options(payload: bytes) -> list[tuple[int, bytes]]:
    """The options in order, END included as (255, b'')."""
    out: list[tuple[int, bytes]] = []
    at = 240
    while at < len(payload):
        code = payload[at]
        if code == 0:
            at += 1
            continue
        if code == 255:
            out.append((255, b""))
            break
        size = payload[at + 1]
        out.append((code, payload[at + 2 : at + 2 + size]))
        at += 2 + size
    return out


def _request(**kw: object) -> DhcpRequest:
    base: dict[str, object] = {"message_type": MessageType.DISCOVER, "xid": XID, "mac": MAC}
    base.update(kw)
    return DhcpRequest(**base)  # type: ignore[arg-type]


def test_discover_fields_and_option_order() -> None:
    request = _request(
        client_id=b"\x00cid/net/eth0",
        requested_ip="192.0.2.150",
        server_id="192.0.2.1",
        parameters=(1, 3, 121, 33),
        extra_options=((77, b"cnitest"), (12, b"pod5")),
        broadcast=True,
    )
    payload = encode_message(request)
    op, htype, hlen, hops, xid, secs, flags = struct.unpack_from("!BBBBIHH", payload)
    assert (op, htype, hlen, hops, xid, secs, flags) == (1, 1, 6, 0, XID, 0, 0x8000)
    assert payload[12:16] == bytes(4)  # ciaddr
    assert payload[28:44] == bytes.fromhex("020000000001") + bytes(10)  # chaddr
    assert payload[236:240] == b"c\x82Sc"
    assert _options(payload) == [
        (53, b"\x01"),
        (61, b"\x00cid/net/eth0"),
        (50, ipaddress.IPv4Address("192.0.2.150").packed),
        (54, ipaddress.IPv4Address("192.0.2.1").packed),
        (55, bytes((1, 3, 121, 33))),
        (77, b"cnitest"),
        (12, b"pod5"),
        (255, b""),
    ]


def test_minimal_request_has_only_the_message_type_and_is_padded() -> None:
    payload = encode_message(_request(message_type=MessageType.RELEASE, ciaddr="192.0.2.7"))
    assert _options(payload) == [(53, b"\x07"), (255, b"")]
    assert struct.unpack_from("!H", payload, 10)[0] == 0  # no broadcast bit
    assert payload[12:16] == bytes((192, 0, 2, 7))
    assert len(payload) == 300  # RFC 1542 minimum, PAD after END
    assert payload[payload.index(b"\xff", 240) + 1 :] == bytes(
        300 - payload.index(b"\xff", 240) - 1
    )


@pytest.mark.parametrize("client_id", [b"\x01\x02\x00\x00\x00\x00\x01", b"\x01\xaa", b"\xffabc"])
def test_client_id_goes_out_unchanged(client_id: bytes) -> None:
    assert (61, client_id) in _options(encode_message(_request(client_id=client_id)))


def test_long_extra_option_is_split_rfc3396() -> None:
    value = bytes(range(256)) * 2  # 512 bytes
    options = _options(encode_message(_request(extra_options=((224, value),))))
    pieces = [payload for code, payload in options if code == 224]
    assert [len(p) for p in pieces] == [255, 255, 2]
    assert b"".join(pieces) == value


def test_extra_option_replaces_the_built_one() -> None:
    request = _request(client_id=b"\x00mine", extra_options=((61, b"\x00theirs"),))
    options = _options(encode_message(request))
    assert [payload for code, payload in options if code == 61] == [b"\x00theirs"]


@pytest.mark.parametrize(
    "kw",
    [
        {"extra_options": ((53, b"\x05"),)},
        {"extra_options": ((0, b""),)},
        {"extra_options": ((255, b""),)},
        {"parameters": (256,)},
        {"xid": 1 << 32},
        {"mac": "02:00:00:00:00"},
        {"ciaddr": "192.0.2"},
        {"dst_ip": "::1"},
        {"client_id": b""},
        {"client_id": b"\x01"},
    ],
)
def test_unsendable_request_is_a_value_error(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="DHCP request"):
        encode_request(_request(**kw))


def test_frame_headers_and_checksums() -> None:
    request = _request(
        message_type=MessageType.REQUEST,
        ciaddr="192.0.2.150",
        src_ip="192.0.2.150",
        dst_ip="192.0.2.1",
        dst_mac=SERVER_MAC,
        extra_options=((77, b"x"),),
    )
    frame = encode_request(request)
    eth, ip, udp, payload = _split(frame)
    assert eth == bytes.fromhex("0200000000fe0200000000010800")
    assert ip[0] == 0x45
    assert ip[9] == socket.IPPROTO_UDP
    assert struct.unpack("!H", ip[2:4])[0] == 20 + 8 + len(payload)
    assert ip[12:16] == bytes((192, 0, 2, 150))
    assert ip[16:20] == bytes((192, 0, 2, 1))
    assert _checksum(ip) == 0xFFFF  # a valid header sums to all ones
    sport, dport, length, csum = struct.unpack("!HHHH", udp)
    assert (sport, dport, length) == (68, 67, 8 + len(payload))
    assert csum != 0
    pseudo = ip[12:20] + struct.pack("!BBH", 0, socket.IPPROTO_UDP, length)
    assert _checksum(pseudo + udp + payload) == 0xFFFF
    assert payload == encode_message(request)


def test_broadcast_frame_defaults() -> None:
    eth, ip, _, _ = _split(encode_request(_request()))
    assert eth[:6] == b"\xff" * 6
    assert ip[12:16] == bytes(4)
    assert ip[16:20] == b"\xff" * 4


# -- reading a reply -------------------------------------------------------------------


def _reply_payload(
    options: list[tuple[int, bytes]],
    *,
    op: int = 2,
    xid: int = XID,
    chaddr: str = MAC,
    yiaddr: str = "192.0.2.150",
    sname: bytes = b"",
    file: bytes = b"",
    cookie: bytes = b"c\x82Sc",
    end: bool = True,
) -> bytes:
    head = struct.pack("!BBBBIHH", op, 1, 6, 0, xid, 0, 0)
    head += bytes(4) + ipaddress.IPv4Address(yiaddr).packed + bytes((192, 0, 2, 9)) + bytes(4)
    head += bytes.fromhex(chaddr.replace(":", "")).ljust(16, b"\0")
    head += sname.ljust(64, b"\0") + file.ljust(128, b"\0") + cookie
    body = b"".join(bytes((code, len(value))) + value for code, value in options)
    return head + body + (b"\xff" if end else b"")


def _frame(payload: bytes, *, ethertype: int = 0x0800, dport: int = 68, pad: int = 0) -> bytes:
    udp = struct.pack("!HHHH", 67, dport, 8 + len(payload), 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + 8 + len(payload),
        0,
        0,
        64,
        17,
        0,
        bytes((192, 0, 2, 1)),
        b"\xff" * 4,
    )
    eth = b"\xff" * 6 + bytes.fromhex(SERVER_MAC.replace(":", "")) + struct.pack("!H", ethertype)
    return eth + ip + udp + payload + bytes(pad)


ACK_OPTIONS = [
    (53, b"\x05"),
    (54, bytes((192, 0, 2, 1))),
    (1, bytes((255, 255, 255, 0))),
    (3, bytes((192, 0, 2, 1))),
]


def test_decode_ack() -> None:
    reply = decode_reply(_frame(_reply_payload(ACK_OPTIONS), pad=20))
    assert reply == DhcpReply(
        message_type=MessageType.ACK,
        xid=XID,
        yiaddr="192.0.2.150",
        chaddr=MAC,
        options={
            53: b"\x05",
            54: bytes((192, 0, 2, 1)),
            1: b"\xff\xff\xff\x00",
            3: bytes((192, 0, 2, 1)),
        },
        server_mac=SERVER_MAC,
        server_ip="192.0.2.1",
        siaddr="192.0.2.9",
    )
    assert reply.server_id == "192.0.2.1"


def test_unknown_options_arrive_raw() -> None:
    routes = bytes([16, 10, 99, 192, 0, 2, 254, 0, 192, 0, 2, 1])
    reply = decode_reply(_frame(_reply_payload([*ACK_OPTIONS, (121, routes), (250, b"")])))
    assert reply is not None
    assert reply.options[121] == routes
    assert reply.options[250] == b""


def test_split_option_is_joined_rfc3396() -> None:
    options = [
        (53, b"\x02"),
        (121, b"\x10\x0a\x63"),
        (6, b"\x08\x08\x08\x08"),
        (121, b"\xc0\x00\x02\xfe"),
    ]
    reply = decode_reply(_frame(_reply_payload(options)))
    assert reply is not None
    assert reply.message_type is MessageType.OFFER
    assert reply.options[121] == b"\x10\x0a\x63\xc0\x00\x02\xfe"
    assert reply.server_id is None


def test_overloaded_file_then_sname_are_read() -> None:
    file = bytes((15, 4)) + b"corp" + bytes((121, 2)) + b"\x01\x02" + b"\xff"
    sname = bytes((121, 1)) + b"\x03" + b"\xff"
    payload = _reply_payload([(53, b"\x05"), (52, b"\x03"), (121, b"\x00")], file=file, sname=sname)
    reply = decode_reply(_frame(payload))
    assert reply is not None
    assert reply.options[15] == b"corp"
    assert reply.options[121] == b"\x00\x01\x02\x03"  # options, then file, then sname


def test_without_overload_sname_and_file_are_not_options() -> None:
    reply = decode_reply(_frame(_reply_payload([(53, b"\x05")], file=bytes((15, 1)) + b"x")))
    assert reply is not None
    assert 15 not in reply.options


def test_missing_end_is_tolerated() -> None:
    reply = decode_reply(_frame(_reply_payload(ACK_OPTIONS, end=False)))
    assert reply is not None
    assert reply.options[3] == bytes((192, 0, 2, 1))


def test_ip_options_are_skipped() -> None:
    frame = _frame(_reply_payload(ACK_OPTIONS))
    ip = bytearray(frame[14:34])
    ip[0] = 0x46
    ip[2:4] = struct.pack("!H", struct.unpack("!H", ip[2:4])[0] + 4)
    reply = decode_reply(frame[:14] + bytes(ip) + b"\x01\x01\x01\x00" + frame[34:])
    assert reply is not None
    assert reply.xid == XID


GOOD = _frame(_reply_payload(ACK_OPTIONS))


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00" * 400, id="zeros"),
        pytest.param(GOOD[:-1][:300], id="truncated"),
        pytest.param(_frame(_reply_payload(ACK_OPTIONS), ethertype=0x86DD), id="ipv6-ethertype"),
        pytest.param(_frame(_reply_payload(ACK_OPTIONS), dport=67), id="to-server-port"),
        pytest.param(_frame(_reply_payload(ACK_OPTIONS, op=1)), id="bootrequest"),
        pytest.param(_frame(_reply_payload(ACK_OPTIONS, cookie=b"abcd")), id="bad-cookie"),
        pytest.param(_frame(_reply_payload([(1, b"\xff\xff\xff\x00")])), id="no-message-type"),
        pytest.param(_frame(_reply_payload([(53, b"\x63")])), id="message-type-99"),
        pytest.param(_frame(_reply_payload([(53, b"\x05\x05")])), id="message-type-2-bytes"),
        pytest.param(
            _frame(_reply_payload([(53, b"\x05")], end=False) + b"\x79\x09ab"), id="option-overrun"
        ),
        pytest.param(GOOD[:14] + b"\x65" + GOOD[15:], id="ip-version-6"),
    ],
)
def test_garbage_is_none(frame: bytes) -> None:
    assert decode_reply(frame) is None


def _mutations(seed: int, count: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    for _ in range(count):
        frame = bytearray(GOOD)
        for _ in range(rng.randint(1, 8)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        yield bytes(frame[: rng.randint(0, len(frame))] if rng.random() < 0.3 else frame)


def test_decode_never_raises() -> None:
    for cut in range(len(GOOD) + 1):
        decode_reply(GOOD[:cut])
    for frame in _mutations(seed=5, count=3000):
        result = decode_reply(frame)
        assert result is None or isinstance(result, DhcpReply)


# -- the socket's send/receive, over a datagram socketpair -----------------------------


@pytest.fixture
def pair() -> Iterator[tuple[DhcpSocket, socket.socket]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    sock = DhcpSocket(ours, ifname="eth0", ifindex=2, mac=MAC.upper(), netns="/run/netns/x")
    try:
        yield sock, theirs
    finally:
        sock.close()
        theirs.close()


@pytest.mark.asyncio
async def test_receive_skips_others_and_returns_ours(
    pair: tuple[DhcpSocket, socket.socket],
) -> None:
    sock, server = pair
    server.send(b"garbage")
    server.send(_frame(_reply_payload(ACK_OPTIONS, xid=XID + 1)))
    server.send(_frame(_reply_payload(ACK_OPTIONS, chaddr="02:00:00:00:00:02")))
    server.send(_frame(_reply_payload(ACK_OPTIONS, op=1)))
    server.send(_frame(_reply_payload([(53, b"\x06")])))
    reply = await sock.receive(XID, timeout=5.0)
    assert reply is not None
    assert reply.message_type is MessageType.NAK
    assert await sock.receive(XID, timeout=0.05) is None


@pytest.mark.asyncio
async def test_receive_lets_other_tasks_run_while_skipping_queued_frames(
    pair: tuple[DhcpSocket, socket.socket],
) -> None:
    """A backlog of other clients' replies must not hold the event loop."""
    sock, server = pair
    for n in range(50):
        server.send(_frame(_reply_payload(ACK_OPTIONS, xid=XID + 1 + n)))
    server.send(_frame(_reply_payload(ACK_OPTIONS)))
    ran: list[int] = []

    async def other_task() -> None:
        ran.append(1)

    other = asyncio.create_task(other_task())
    reply = await sock.receive(XID, timeout=5.0)
    assert reply is not None
    assert ran, "receive() kept the loop while it skipped the queued frames"
    await other


@pytest.mark.asyncio
async def test_receive_times_out_with_none(pair: tuple[DhcpSocket, socket.socket]) -> None:
    sock, server = pair
    server.send(_frame(_reply_payload(ACK_OPTIONS, xid=7)))
    assert await sock.receive(XID, timeout=0.05) is None
    assert await sock.receive(XID, timeout=0) is None


@pytest.mark.asyncio
async def test_send_writes_one_frame(pair: tuple[DhcpSocket, socket.socket]) -> None:
    sock, server = pair
    request = _request(client_id=b"\x00id", parameters=(1, 3))
    await sock.send(request)
    assert server.recv(65536) == encode_request(request)


@pytest.mark.asyncio
async def test_send_failure_names_interface_and_namespace(
    pair: tuple[DhcpSocket, socket.socket],
) -> None:
    from cnilib.netlink import DhcpSocketError

    sock, server = pair
    server.close()
    with pytest.raises(DhcpSocketError) as info:
        await sock.send(_request())
    assert "send DHCPDISCOVER on eth0 in /run/netns/x" in str(info.value)
    assert info.value.errno != 0


def test_socket_close_is_idempotent(pair: tuple[DhcpSocket, socket.socket]) -> None:
    sock, _ = pair
    assert sock.mac == MAC
    assert sock.fileno() >= 0
    sock.close()
    sock.close()
    assert sock.fileno() == -1


def test_receive_works_from_a_loop_on_another_thread(
    pair: tuple[DhcpSocket, socket.socket],
) -> None:
    sock, server = pair
    server.send(_frame(_reply_payload(ACK_OPTIONS)))
    reply = asyncio.run(sock.receive(XID, timeout=5.0))
    assert reply is not None
    assert reply.yiaddr == "192.0.2.150"


@pytest.mark.asyncio
async def test_leaving_the_socket_closes_it_off_the_event_loop(
    pair: tuple[DhcpSocket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel takes milliseconds to release a bound packet socket: a burst of
    leases must not pay that in turn on the daemon's loop thread."""
    sock, _ = pair
    closed_on: list[threading.Thread] = []
    real_close = os.close

    def recording_close(fd: int) -> None:
        closed_on.append(threading.current_thread())
        real_close(fd)

    monkeypatch.setattr(os, "close", recording_close)
    async with sock:
        pass
    assert closed_on
    assert threading.main_thread() not in closed_on
    assert sock.fileno() < 0
    await sock.aclose()  # again: nothing to do
    assert len(closed_on) == 1
