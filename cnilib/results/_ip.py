"""IP addresses and CIDRs as Go's ``net`` package reads and prints them.

libcni keeps ``address``/``dst`` as a ``net.IPNet`` whose IP keeps its host
bits (``types.ParseCIDR``), and ``gateway``/``gw`` as a ``net.IP``. Parsing
goes through ``netip.ParseAddr`` (no zones, no leading zeros in IPv4 octets),
and printing follows ``net.IP.String``: lower-case, RFC 5952-compressed IPv6,
and an IPv4-mapped IPv6 address printed in dotted IPv4 form. A mapped CIDR
therefore prints as IPv4 with ``max(0, prefix - 96)`` bits, and libcni treats
it as IPv4 everywhere (``IP.To4() != nil``); cnilib normalizes it to IPv4 when
parsing so that every later step sees what Go sees.
"""

from __future__ import annotations

import ipaddress
import re
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import TypeAlias

__all__ = [
    "IPAddress",
    "IPInterface",
    "IPParseError",
    "format_cidr",
    "format_ip",
    "is_ipv4",
    "parse_cidr",
    "parse_ip",
]

IPAddress: TypeAlias = IPv4Address | IPv6Address
"""A gateway (``net.IP``)."""

IPInterface: TypeAlias = IPv4Interface | IPv6Interface
"""An address with its prefix length, host bits kept (``net.IPNet`` from ``types.ParseCIDR``)."""

_DIGITS = re.compile(r"[0-9]+\Z")
# Go's dtoi gives up at this value.
_DTOI_BIG = 0xFFFFFF


class IPParseError(ValueError):
    """An address or CIDR Go's ``net`` package would not parse; text as Go's ``ParseError``."""


def _parse_addr(text: str) -> IPAddress | None:
    """``netip.ParseAddr`` without zones; None when Go would reject ``text``."""
    if "%" in text:
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def parse_ip(text: str) -> IPAddress:
    """Parse ``text`` as ``net.ParseIP`` does (IPv4-mapped IPv6 becomes IPv4)."""
    addr = _parse_addr(text)
    if addr is None:
        raise IPParseError(f"invalid IP address: {text}")
    return addr


def parse_cidr(text: str) -> IPInterface:
    """Parse ``text`` as ``types.ParseCIDR`` does: host bits kept, mapped IPv4 made IPv4."""
    addr_text, slash, mask = text.partition("/")
    addr = None
    if slash and "%" not in addr_text:
        try:
            addr = ipaddress.ip_address(addr_text)
        except ValueError:
            addr = None
    if addr is None or not _DIGITS.match(mask) or int(mask) >= _DTOI_BIG:
        raise IPParseError(f"invalid CIDR address: {text}")
    bits = int(mask)
    if bits > addr.max_prefixlen:
        raise IPParseError(f"invalid CIDR address: {text}")
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        return IPv4Interface((addr.ipv4_mapped, max(0, bits - 96)))
    if isinstance(addr, IPv4Address):
        return IPv4Interface((addr, bits))
    return IPv6Interface((addr, bits))


def format_ip(addr: IPAddress) -> str:
    """``net.IP.String()``."""
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def format_cidr(net: IPInterface) -> str:
    """``net.IPNet.String()`` of an IPNet whose IP kept its host bits."""
    addr = net.ip
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        return f"{addr.ipv4_mapped}/{max(0, net.network.prefixlen - 96)}"
    return f"{format_ip(addr)}/{net.network.prefixlen}"


def is_ipv4(value: IPInterface | IPAddress | None) -> bool:
    """Go's ``IP.To4() != nil`` (False for a missing address)."""
    if value is None:
        return False
    addr = value.ip if isinstance(value, IPv4Interface | IPv6Interface) else value
    return isinstance(addr, IPv4Address) or addr.ipv4_mapped is not None
