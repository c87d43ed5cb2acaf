"""From a DHCPACK's options to the IPAM result and the lease's timers.

The input is each option's raw payload by code (split options already
joined, RFC 3396), as :class:`cnilib.netlink.DhcpReply` gives them.

The result follows latest Go's ``Allocate``:

* ``ips``: one entry, ``yiaddr`` with the prefix of option 1 and the first
  router (option 3) as gateway; no ``interface`` (an IPAM result). Without
  option 1 the lease is unusable: Go's ``DHCP option Subnet Mask not found
  in DHCPACK``.
* ``routes``: option 121 (RFC 3442) alone when present, an on-link entry
  (router 0.0.0.0) keeping ``gw`` 0.0.0.0 and getting ``scope`` 253 (link);
  otherwise option 33's pairs (the destination's classful mask, its address
  not masked: ``10.98.0.0`` gives ``10.98.0.0/8``) followed by ``0.0.0.0/0``
  via the first router when there is one. ``priority`` on every route when
  non-zero.

Lease timers follow Go 1.1.1 (RFC 2131 4.4.5): lease option 51 (latest Go's
default of 60 minutes when absent), T2 option 59 unless absent or past the
lease (then 85 %), T1 option 58 unless absent or past T2 (then 50 %); and T1
never after T2. Latest Go takes options 58 and 59 as they come, so a server's
T1 past the lease would have it renew an expired lease.

Deliberate differences from Go:

* ``dns`` is filled from options 6 (nameservers), 15 (domain) and 119
  (search list, RFC 1035 names with compression); Go always returns an
  empty ``dns``. Servers send these only when asked (``request``).
* The result has no ``cniVersion``: Go's daemon sets none either, and a Go
  plugin reading ours keeps its own.
* A malformed option (a length that does not fit its format, an RFC 3442
  width past 32, a truncated entry, a bad name in 15 or 119) is an error
  naming the option, :class:`DhcpOptionError`; Go ignores most of them
  (no gateway, no routes, or the default lease time instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Interface
from typing import NamedTuple

import attrs

from cnilib.errors import ErrorCode, PluginError
from cnilib.results import DNS, IPConfig, ResultV100, Route

__all__ = [
    "DEFAULT_LEASE_TIME",
    "SCOPE_LINK",
    "DhcpOptionError",
    "LeaseTimes",
    "classless_routes",
    "domain_search",
    "lease_dns",
    "lease_result",
    "lease_routes",
    "lease_times",
    "static_routes",
    "subnet_prefix",
]

SUBNET_MASK = 1
ROUTER = 3
DNS_SERVERS = 6
DOMAIN_NAME = 15
STATIC_ROUTES = 33
LEASE_TIME = 51
RENEWAL_TIME = 58
REBINDING_TIME = 59
DOMAIN_SEARCH = 119
CLASSLESS_ROUTES = 121

_NAMES = {
    SUBNET_MASK: "subnet mask",
    ROUTER: "routers",
    DNS_SERVERS: "domain name servers",
    DOMAIN_NAME: "domain name",
    STATIC_ROUTES: "static routes",
    LEASE_TIME: "lease time",
    RENEWAL_TIME: "renewal time",
    REBINDING_TIME: "rebinding time",
    DOMAIN_SEARCH: "domain search",
    CLASSLESS_ROUTES: "classless static routes",
}

DEFAULT_LEASE_TIME = 3600.0
"""Latest Go's lease time, in seconds, for an ACK without option 51."""

SCOPE_LINK = 253
"""``RT_SCOPE_LINK``: latest Go's scope for an on-link option 121 route."""

_ANY = IPv4Address(0)
_MAX_NAME = 255  # RFC 1035: a name's wire length (labels + length octets)


class DhcpOptionError(PluginError):
    """A DHCPACK that cannot make a lease: a missing or malformed option."""

    default_code = ErrorCode.INTERNAL


def _malformed(code: int, problem: str) -> DhcpOptionError:
    return DhcpOptionError(f"DHCP option {code} ({_NAMES[code]}) is malformed: {problem}")


def _addresses(code: int, payload: bytes) -> list[IPv4Address]:
    """A list of IPv4 addresses (options 3, 6)."""
    if len(payload) % 4:
        raise _malformed(code, f"{len(payload)} bytes is not a list of IPv4 addresses")
    return [IPv4Address(payload[i : i + 4]) for i in range(0, len(payload), 4)]


def _seconds(options: Mapping[int, bytes], code: int) -> int | None:
    payload = options.get(code)
    if payload is None:
        return None
    if len(payload) != 4:
        raise _malformed(code, f"{len(payload)} bytes, expected 4")
    return int.from_bytes(payload, "big")


def subnet_prefix(options: Mapping[int, bytes]) -> int:
    """Option 1 as a prefix length (Go's error text when it is missing)."""
    payload = options.get(SUBNET_MASK)
    if not payload:
        raise DhcpOptionError("DHCP option Subnet Mask not found in DHCPACK")
    if len(payload) != 4:
        raise _malformed(SUBNET_MASK, f"{len(payload)} bytes, expected 4")
    mask = int.from_bytes(payload, "big")
    prefix = 32 - ((~mask & 0xFFFFFFFF).bit_length())
    if mask != (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF:
        raise _malformed(SUBNET_MASK, f"{IPv4Address(mask)} is not a contiguous mask")
    return prefix


def classless_routes(payload: bytes) -> list[Route]:
    """Option 121 (RFC 3442): width, the significant octets of the destination,
    router; an on-link route (router 0.0.0.0) gets scope link, as latest Go."""
    routes: list[Route] = []
    pos = 0
    while pos < len(payload):
        width = payload[pos]
        if width > 32:
            raise _malformed(CLASSLESS_ROUTES, f"prefix length {width} at byte {pos}")
        octets = (width + 7) // 8
        end = pos + 1 + octets + 4
        if end > len(payload):
            raise _malformed(CLASSLESS_ROUTES, f"entry at byte {pos} is truncated")
        dest = payload[pos + 1 : pos + 1 + octets].ljust(4, b"\x00")
        router = IPv4Address(payload[end - 4 : end])
        routes.append(
            Route(
                dst=IPv4Interface((IPv4Address(dest), width)),
                gw=router,
                scope=SCOPE_LINK if router == _ANY else None,
            )
        )
        pos = end
    return routes


def _classful_prefix(dest: IPv4Address) -> int:
    """Go's ``IP.DefaultMask``: class A /8, B /16, anything else /24."""
    first = dest.packed[0]
    return 8 if first < 0x80 else 16 if first < 0xC0 else 24


def static_routes(payload: bytes) -> list[Route]:
    """Option 33: (destination, router) pairs, the destination classful and not masked."""
    if len(payload) % 8:
        raise _malformed(STATIC_ROUTES, f"{len(payload)} bytes is not a list of address pairs")
    routes = []
    for pos in range(0, len(payload), 8):
        dest = IPv4Address(payload[pos : pos + 4])
        routes.append(
            Route(
                dst=IPv4Interface((dest, _classful_prefix(dest))),
                gw=IPv4Address(payload[pos + 4 : pos + 8]),
            )
        )
    return routes


def lease_routes(options: Mapping[int, bytes], *, priority: int = 0) -> tuple[Route, ...]:
    """The result's routes (latest Go's ``Routes`` plus ``priority``)."""
    routes = classless_routes(options.get(CLASSLESS_ROUTES, b""))
    if not routes:
        routes = static_routes(options.get(STATIC_ROUTES, b""))
        gateways = _addresses(ROUTER, options.get(ROUTER, b""))
        if gateways:
            routes.append(Route(dst=IPv4Interface((_ANY, 0)), gw=gateways[0]))
    if priority:
        return tuple(attrs.evolve(route, priority=priority) for route in routes)
    return tuple(routes)


def _label_text(code: int, label: bytes) -> str:
    """A label as text; only printable ASCII without spaces or dots (the name
    ends up in resolv.conf, where anything else would change its meaning)."""
    if any(byte <= 0x20 or byte >= 0x7F or byte == 0x2E for byte in label):
        raise _malformed(code, f"label {label!r} is not a printable hostname label")
    return label.decode("ascii")


def _read_name(payload: bytes, start: int) -> tuple[str, int]:
    """One RFC 1035 name at ``start``: (the name, where the next one starts).

    A compression pointer must point before every place this name was read
    from so far, so each jump goes strictly backwards and the chase ends.
    """
    labels: list[str] = []
    pos = start
    floor = start
    resume: int | None = None
    length = 1
    while True:
        if pos >= len(payload):
            raise _malformed(DOMAIN_SEARCH, f"name at byte {start} is truncated")
        size = payload[pos]
        kind = size & 0xC0
        if kind == 0xC0:
            if pos + 1 >= len(payload):
                raise _malformed(DOMAIN_SEARCH, f"pointer at byte {pos} is truncated")
            target = ((size & 0x3F) << 8) | payload[pos + 1]
            if target >= floor:
                raise _malformed(
                    DOMAIN_SEARCH, f"pointer at byte {pos} to {target} does not point backwards"
                )
            if resume is None:
                resume = pos + 2
            floor = pos = target
            continue
        if kind:
            raise _malformed(DOMAIN_SEARCH, f"label type {size:#04x} at byte {pos}")
        if size == 0:
            break
        label = payload[pos + 1 : pos + 1 + size]
        if len(label) < size:
            raise _malformed(DOMAIN_SEARCH, f"label at byte {pos} is truncated")
        length += size + 1
        if length > _MAX_NAME:
            raise _malformed(DOMAIN_SEARCH, f"name at byte {start} is longer than 255 bytes")
        labels.append(_label_text(DOMAIN_SEARCH, label))
        pos += 1 + size
    return ".".join(labels), (pos + 1 if resume is None else resume)


def domain_search(payload: bytes) -> tuple[str, ...]:
    """Option 119 (RFC 3397): a list of RFC 1035 names, compressed within the option."""
    names = []
    pos = 0
    while pos < len(payload):
        name, pos = _read_name(payload, pos)
        if name:
            names.append(name)
    return tuple(names)


def _domain_name(payload: bytes) -> str:
    """Option 15; trailing NULs (some servers send a C string) dropped."""
    text = payload.rstrip(b"\x00")
    if not text:
        return ""
    parts = text.split(b".")
    if text.endswith(b"."):
        parts.pop()
    for part in parts:
        if not part:
            raise _malformed(DOMAIN_NAME, f"{text!r} has an empty label")
        _label_text(DOMAIN_NAME, part)
    return text.decode("ascii")


def lease_dns(options: Mapping[int, bytes]) -> DNS:
    """Options 6, 15 and 119 as the result's ``dns`` (Go leaves it empty)."""
    return DNS(
        nameservers=[str(a) for a in _addresses(DNS_SERVERS, options.get(DNS_SERVERS, b""))],
        domain=_domain_name(options.get(DOMAIN_NAME, b"")),
        search=domain_search(options.get(DOMAIN_SEARCH, b"")),
    )


def lease_result(
    yiaddr: str | IPv4Address, options: Mapping[int, bytes], *, priority: int = 0
) -> ResultV100:
    """The IPAM result of a lease: address, gateway, routes and DNS."""
    try:
        address = IPv4Address(yiaddr)
    except ValueError:
        raise DhcpOptionError(f"DHCPACK's yiaddr {yiaddr!r} is not an IPv4 address") from None
    prefix = subnet_prefix(options)
    gateways = _addresses(ROUTER, options.get(ROUTER, b""))
    return ResultV100(
        ips=[
            IPConfig(
                address=IPv4Interface((address, prefix)),
                gateway=gateways[0] if gateways else None,
            )
        ],
        routes=lease_routes(options, priority=priority),
        dns=lease_dns(options),
    )


class LeaseTimes(NamedTuple):
    """A lease's timers in seconds from the ACK: expiry, T1 (renew), T2 (rebind)."""

    lease: float
    t1: float
    t2: float


def lease_times(options: Mapping[int, bytes]) -> LeaseTimes:
    """Options 51, 58 and 59 with the defaults and bounds described above."""
    given = _seconds(options, LEASE_TIME)
    lease = DEFAULT_LEASE_TIME if given is None else float(given)
    rebinding = _seconds(options, REBINDING_TIME)
    t2 = lease * 85 / 100 if rebinding is None or rebinding > lease else float(rebinding)
    renewal = _seconds(options, RENEWAL_TIME)
    t1 = lease / 2 if renewal is None or renewal > t2 else float(renewal)
    return LeaseTimes(lease=lease, t1=min(t1, t2), t2=t2)
