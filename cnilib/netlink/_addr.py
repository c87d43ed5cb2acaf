"""Addresses: add, list, delete (inside :func:`cnilib.netlink.run_in_netns`)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, TypeAlias

import attrs

from cnilib.netlink._errors import netlink_errors
from cnilib.netlink._link import LinkRef, _index, _name
from cnilib.netlink._pool import ipr, netns_label

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
    request: dict[str, Any] = {
        "index": _index(link),
        "address": str(iface.ip),
        "prefixlen": iface.network.prefixlen,
    }
    if iface.version == 4 and broadcast and iface.network.prefixlen < 31:
        request["broadcast"] = str(iface.network.broadcast_address)
    if scope is not None:
        request["scope"] = scope
    if nodad:
        request["flags"] = IFA_F_NODAD
    with netlink_errors(f"add address {iface} to {_name(link)}", netns_label()):
        ipr().addr("add", **request)


def list_addresses(link: LinkRef | None = None, *, family: int | None = None) -> list[Address]:
    """Addresses of ``link`` (every link when None), optionally of one ``family``."""
    query: dict[str, Any] = {}
    if link is not None:
        query["index"] = _index(link)
    if family is not None:
        query["family"] = family
    what = f"list addresses of {_name(link)}" if link is not None else "list addresses"
    with netlink_errors(what, netns_label()):
        msgs = list(ipr().addr("dump", **query))
    return [_address_from_msg(m) for m in msgs]


def delete_address(link: LinkRef, cidr: str | IPInterface) -> None:
    """Remove ``cidr`` from ``link``."""
    iface = _parse(cidr)
    with netlink_errors(f"delete address {iface} from {_name(link)}", netns_label()):
        ipr().addr(
            "del", index=_index(link), address=str(iface.ip), prefixlen=iface.network.prefixlen
        )
