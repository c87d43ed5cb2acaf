"""Neighbours (ARP/NDP entries) and a VXLAN device's forwarding database.

A VXLAN overlay programs, per remote node, a permanent neighbour (the
remote gateway address -> the remote device's MAC: ``ip neigh replace ...
nud permanent``) and an FDB entry (that MAC -> the remote node's underlay
address: ``bridge fdb append ... dst ... self permanent``). The requests are
``RTM_NEWNEIGH``/``RTM_DELNEIGH`` built here with ``struct`` (``struct
ndmsg`` + ``NDA_DST``/``NDA_LLADDR``, ``include/uapi/linux/neighbour.h``)
and sent on the worker's lean socket, as ``ip``/``bridge`` and Go's netlink
send them; an overlay reconciles them on every peer change.

Every function acts on the namespace of the worker that runs it (inside
:func:`cnilib.netlink.run_in_netns`); failures are
:class:`~cnilib.netlink.NetlinkError` naming the operation and the namespace.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import TypeAlias

import attrs

from cnilib.netlink._errors import netlink_errors
from cnilib.netlink._link import LinkRef, _index, _name
from cnilib.netlink._pool import netns_label, raw
from cnilib.netlink._raw import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    attr,
    parse_attrs,
)

__all__ = [
    "NTF_SELF",
    "NUD_NOARP",
    "NUD_PERMANENT",
    "FdbEntry",
    "Neighbour",
    "append_fdb",
    "delete_fdb",
    "delete_neighbour",
    "list_fdb",
    "list_neighbours",
    "replace_fdb",
    "replace_neighbour",
]

IPAddr: TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address"

NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
NLM_F_APPEND = 0x800
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
RTM_GETNEIGH = 30
RTN_UNICAST = 1
NDA_DST = 1
NDA_LLADDR = 2
AF_BRIDGE = 7
_NDMSG = struct.Struct("=BxxxiHBB")


@attrs.frozen(kw_only=True)
class Neighbour:
    """A neighbour (ARP or NDP) entry (``RTM_NEWNEIGH``, family ``AF_INET``/``AF_INET6``)."""

    ifindex: int
    ip: str
    mac: str
    """``""`` when the kernel has no link-layer address (an incomplete or failed entry)."""
    state: int
    """``NUD_*`` bits (:data:`NUD_PERMANENT` for one this module made)."""
    flags: int
    """``NTF_*`` bits."""


@attrs.frozen(kw_only=True)
class FdbEntry:
    """A forwarding database entry of a device (``RTM_NEWNEIGH``, family ``AF_BRIDGE``).

    A VXLAN device with several destinations for one MAC reports one entry per
    destination.
    """

    ifindex: int
    mac: str
    dst: str | None
    """The remote VTEP's address (``NDA_DST``); None for an entry without one."""
    state: int
    flags: int


def _mac(text: str) -> bytes:
    """6 bytes from ``aa:bb:cc:dd:ee:ff``; :class:`ValueError` if it is not a MAC."""
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError(f"{text!r} is not a MAC address")
    return bytes(int(part, 16) for part in parts)


def _mac_text(value: memoryview | bytes) -> str:
    return ":".join(f"{b:02x}" for b in bytes(value))


def _ip(value: str | IPAddr) -> IPAddr:
    return ipaddress.ip_address(value) if isinstance(value, str) else value


def _family(address: IPAddr) -> int:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def neighbour_request(
    ifindex: int, ip: str | IPAddr, mac: str | None = None, *, state: int = NUD_PERMANENT
) -> bytes:
    """The body of the ``RTM_NEWNEIGH`` (or, without ``mac``, ``RTM_DELNEIGH``) for
    neighbour ``ip`` on link ``ifindex``."""
    address = _ip(ip)
    body = _NDMSG.pack(_family(address), ifindex, state, 0, RTN_UNICAST)
    body += attr(NDA_DST, address.packed)
    if mac is not None:
        body += attr(NDA_LLADDR, _mac(mac))
    return body


def fdb_request(
    ifindex: int, mac: str, dst: str | IPAddr | None, *, state: int = NUD_PERMANENT | NUD_NOARP
) -> bytes:
    """The body of an ``AF_BRIDGE`` ``RTM_NEWNEIGH``/``RTM_DELNEIGH`` for FDB entry
    ``mac`` (-> ``dst``) of the device ``ifindex`` itself (``NTF_SELF``), as
    ``bridge fdb ... self permanent`` sends it."""
    body = _NDMSG.pack(AF_BRIDGE, ifindex, state, NTF_SELF, 0)
    body += attr(NDA_LLADDR, _mac(mac))
    if dst is not None:
        body += attr(NDA_DST, _ip(dst).packed)
    return body


def _dump(family: int) -> list[tuple[int, int, int, dict[int, memoryview]]]:
    """(ifindex, state, flags, attributes) of every neighbour entry of ``family``."""
    body = _NDMSG.pack(family, 0, 0, 0, 0)
    replies = raw().request(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, body)
    found = []
    for kind, payload in replies:
        if kind != RTM_NEWNEIGH or len(payload) < _NDMSG.size:
            continue
        got_family, ifindex, state, flags, _ = _NDMSG.unpack_from(payload, 0)
        if got_family == family:
            found.append((ifindex, state, flags, parse_attrs(payload, _NDMSG.size)))
    return found


def _address_text(value: memoryview | None) -> str | None:
    if value is None or len(value) not in (4, 16):
        return None
    return str(ipaddress.ip_address(bytes(value)))


def replace_neighbour(link: LinkRef, ip: str | IPAddr, mac: str) -> None:
    """Make ``ip`` on ``link`` a permanent neighbour at ``mac``, replacing any entry
    (``ip neigh replace IP lladdr MAC dev LINK nud permanent``)."""
    with netlink_errors(f"replace neighbour {ip} lladdr {mac} dev {_name(link)}", netns_label()):
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        raw().request(RTM_NEWNEIGH, flags, neighbour_request(_index(link), ip, mac))


def delete_neighbour(link: LinkRef, ip: str | IPAddr) -> None:
    """Delete neighbour ``ip`` of ``link``; :class:`~cnilib.netlink.NetlinkError`
    ``ENOENT`` when there is none."""
    with netlink_errors(f"delete neighbour {ip} dev {_name(link)}", netns_label()):
        body = neighbour_request(_index(link), ip, state=0)
        raw().request(RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK, body)


def list_neighbours(
    link: LinkRef | None = None, *, family: int = socket.AF_INET
) -> list[Neighbour]:
    """The neighbours of ``family`` (``AF_INET`` or ``AF_INET6``) of ``link``
    (of every link when None)."""
    what = f"list neighbours of {_name(link)}" if link is not None else "list neighbours"
    with netlink_errors(what, netns_label()):
        index = _index(link) if link is not None else None
        entries = _dump(family)
    found = []
    for ifindex, state, flags, found_attrs in entries:
        ip = _address_text(found_attrs.get(NDA_DST))
        if ip is None or (index is not None and ifindex != index):
            continue
        lladdr = found_attrs.get(NDA_LLADDR)
        mac = _mac_text(lladdr) if lladdr is not None else ""
        found.append(Neighbour(ifindex=ifindex, ip=ip, mac=mac, state=state, flags=flags))
    return found


def _fdb_change(what: str, link: LinkRef, mac: str, dst: str | IPAddr, flags: int) -> None:
    with netlink_errors(f"{what} fdb {mac} dev {_name(link)} dst {dst}", netns_label()):
        body = fdb_request(_index(link), mac, dst)
        raw().request(RTM_NEWNEIGH, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | flags, body)


def replace_fdb(link: LinkRef, mac: str, dst: str | IPAddr) -> None:
    """Point ``mac`` at ``dst`` on ``link``'s own FDB, permanently (``bridge fdb
    replace MAC dev LINK dst DST self permanent``). On a VXLAN device this
    creates the entry or changes its (first) destination; further destinations of
    the all-zeros or a multicast MAC added with :func:`append_fdb` stay."""
    _fdb_change("replace", link, mac, dst, NLM_F_REPLACE)


def append_fdb(link: LinkRef, mac: str, dst: str | IPAddr) -> None:
    """Add ``dst`` to the destinations of ``mac`` on ``link``'s own FDB (``bridge fdb
    append ... self permanent``), creating the entry if there is none.

    A VXLAN device keeps several destinations only for the all-zeros MAC (the
    flood entry: broadcast and unknown frames go to each) and multicast MACs;
    for a unicast MAC that already has an entry the kernel accepts the request
    and changes nothing (use :func:`replace_fdb` to move it). Appending a
    destination already there changes nothing either."""
    _fdb_change("append", link, mac, dst, NLM_F_APPEND)


def delete_fdb(link: LinkRef, mac: str, dst: str | IPAddr | None = None) -> None:
    """Delete the destination ``dst`` of ``mac`` from ``link``'s own FDB, or with
    ``dst`` None the whole entry (every destination); :class:`~cnilib.netlink.NetlinkError`
    ``ENOENT`` when ``mac`` has no entry. A VXLAN device answers success, changing
    nothing, for a ``dst`` that the MAC's entry does not have."""
    where = f" dst {dst}" if dst is not None else ""
    with netlink_errors(f"delete fdb {mac} dev {_name(link)}{where}", netns_label()):
        body = fdb_request(_index(link), mac, dst)
        raw().request(RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK, body)


def list_fdb(link: LinkRef) -> list[FdbEntry]:
    """The FDB entries of ``link`` (a VXLAN device: one per MAC and destination;
    a bridge port: also the bridge's entries for it), never another device's."""
    with netlink_errors(f"list fdb of {_name(link)}", netns_label()):
        index = _index(link)
        entries = _dump(AF_BRIDGE)
    found = []
    for ifindex, state, flags, found_attrs in entries:
        lladdr = found_attrs.get(NDA_LLADDR)
        if ifindex != index or lladdr is None:
            continue
        dst = _address_text(found_attrs.get(NDA_DST))
        found.append(
            FdbEntry(ifindex=ifindex, mac=_mac_text(lladdr), dst=dst, state=state, flags=flags)
        )
    return found
