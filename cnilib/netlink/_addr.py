"""Addresses: add, list, delete (inside :func:`cnilib.netlink.run_in_netns`)."""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any, TypeAlias

import attrs

from cnilib.netlink._errors import netlink_errors
from cnilib.netlink._link import LinkRef, _index, _name
from cnilib.netlink._pool import ipr, netns_label, raw
from cnilib.netlink._raw import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    attr,
    parse_attrs,
)

__all__ = [
    "Address",
    "IPInterface",
    "add_address",
    "delete_address",
    "list_addresses",
]

IPInterface: TypeAlias = "ipaddress.IPv4Interface | ipaddress.IPv6Interface"

IFA_F_NODAD = 0x02
IFA_F_PERMANENT = 0x80
RTM_NEWADDR = 20
RTM_GETADDR = 22
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
IFA_LABEL = 3
IFA_FLAGS = 8
_IFADDRMSG = struct.Struct("=BBBBI")


@attrs.frozen(kw_only=True)
class Address:
    """An address on a link (``RTM_NEWADDR``)."""

    index: int
    """The link's index."""
    interface: IPInterface
    """Address and prefix length, e.g. ``IPv4Interface('10.1.0.2/24')``."""
    scope: int = 0
    flags: int = 0
    label: str = ""
    broadcast: ipaddress.IPv4Address | None = None

    @property
    def family(self) -> int:
        """``socket.AF_INET`` or ``socket.AF_INET6``."""
        return socket.AF_INET if self.interface.version == 4 else socket.AF_INET6


def _parse(cidr: str | IPInterface) -> IPInterface:
    return cidr if not isinstance(cidr, str) else ipaddress.ip_interface(cidr)


def _address_from_msg(msg: Any) -> Address:
    local = msg.get("local") if msg["family"] == socket.AF_INET else None
    addr = local or msg.get("address")
    flags = msg.get("flags")  # IFA_FLAGS (32 bit) when present
    broadcast = msg.get("broadcast")
    return Address(
        index=int(msg["index"]),
        interface=ipaddress.ip_interface(f"{addr}/{msg['prefixlen']}"),
        scope=int(msg["scope"]),
        flags=int(flags if isinstance(flags, int) else msg["flags"]),
        label=str(msg.get("label") or ""),
        broadcast=ipaddress.IPv4Address(broadcast) if broadcast else None,
    )


def _address_from_raw(payload: memoryview) -> Address:
    """An :class:`Address` from an ``RTM_NEWADDR`` payload, as :func:`_address_from_msg`."""
    family, prefixlen, flags, scope, index = _IFADDRMSG.unpack_from(payload, 0)
    found = parse_attrs(payload, _IFADDRMSG.size)
    local = found.get(IFA_LOCAL) if family == socket.AF_INET else None
    addr = local if local is not None else found.get(IFA_ADDRESS)
    ip = ipaddress.ip_address(bytes(addr)) if addr is not None else None
    if IFA_FLAGS in found:
        (flags,) = struct.unpack("=I", found[IFA_FLAGS])
    label = bytes(found[IFA_LABEL]).split(b"\0", 1)[0].decode() if IFA_LABEL in found else ""
    broadcast = found.get(IFA_BROADCAST)
    return Address(
        index=index,
        interface=ipaddress.ip_interface(f"{ip}/{prefixlen}"),
        scope=scope,
        flags=flags,
        label=label,
        broadcast=ipaddress.IPv4Address(bytes(broadcast)) if broadcast is not None else None,
    )


def add_address(
    link: LinkRef,
    cidr: str | IPInterface,
    *,
    broadcast: bool = True,
    scope: int | None = None,
    nodad: bool = False,
) -> None:
    """Add ``cidr`` (``"10.1.0.2/24"``) to ``link``.

    As Go's netlink ``AddrAdd`` does, an IPv4 address with a prefix shorter
    than /31 gets its subnet's broadcast address unless ``broadcast`` is False.
    """
    iface = _parse(cidr)
    with netlink_errors(f"add address {iface} to {_name(link)}", netns_label()):
        # The attributes and their order are pyroute2's for ``addr("add", ...)``.
        v4 = iface.version == 4
        packed = iface.ip.packed
        body = _IFADDRMSG.pack(
            socket.AF_INET if v4 else socket.AF_INET6,
            iface.network.prefixlen,
            0,
            scope or 0,
            _index(link),
        )
        body += attr(IFA_ADDRESS, packed)
        if v4 and broadcast and iface.network.prefixlen < 31:
            body += attr(IFA_BROADCAST, iface.network.broadcast_address.packed)
        if v4:
            body += attr(IFA_LOCAL, packed)
        if nodad:
            body += attr(IFA_FLAGS, struct.pack("=I", IFA_F_NODAD))
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        raw().request(RTM_NEWADDR, flags, body)


def list_addresses(link: LinkRef | None = None, *, family: int | None = None) -> list[Address]:
    """Addresses of ``link`` (every link when None), optionally of one ``family``."""
    what = f"list addresses of {_name(link)}" if link is not None else "list addresses"
    with netlink_errors(what, netns_label()):
        index = _index(link) if link is not None else None
        body = _IFADDRMSG.pack(family or socket.AF_UNSPEC, 0, 0, 0, 0)
        replies = raw().request(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, body)
        found = [_address_from_raw(payload) for kind, payload in replies if kind == RTM_NEWADDR]
    return [
        a
        for a in found
        if (index is None or a.index == index) and (family is None or a.family == family)
    ]


def delete_address(link: LinkRef, cidr: str | IPInterface) -> None:
    """Remove ``cidr`` from ``link``."""
    iface = _parse(cidr)
    with netlink_errors(f"delete address {iface} from {_name(link)}", netns_label()):
        ipr().addr(
            "del", index=_index(link), address=str(iface.ip), prefixlen=iface.network.prefixlen
        )
