"""host-local's address ranges and range sets (Go ``backend/allocator/range*.go``).

A :class:`Range` is canonical: subnet without host bits, and ``range_start``,
``range_end`` and ``gateway`` filled in with Go's defaults (``network+1``,
last address but the IPv4 broadcast, ``network+1``). A :class:`RangeSet`
is the list of ranges one address is allocated from.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import attrs

from cnilib.results import IPAddress, IPInterface
from cnilib.results._ip import format_ip

__all__ = ["RangeError", "RangeSet", "RawRange", "Range", "canonicalize_set", "ip_add"]


class RangeError(Exception):
    """A range is invalid; ``str()`` is Go's text, ``field`` the JSON path at fault."""

    def __init__(self, msg: str, field: str) -> None:
        super().__init__(msg)
        self.field = field


def ip_add(addr: IPAddress, delta: int) -> IPAddress:
    """``addr + delta`` in its family."""
    return _make(addr.version, int(addr) + delta)


def _make(version: int, value: int) -> IPAddress:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


@attrs.frozen
class RawRange:
    """A range as configured: every member may be missing."""

    path: str
    subnet: IPInterface | None = None
    subnet_mapped: bool = False  # "::ffff:a.b.c.d/n": Go keeps a 16-byte mask
    range_start: IPAddress | None = None
    range_end: IPAddress | None = None
    gateway: IPAddress | None = None


@attrs.frozen
class Range:
    """A canonical range (Go ``Range`` after ``Canonicalize``)."""

    subnet: IPInterface  # network address / prefix
    range_start: IPAddress
    range_end: IPAddress
    gateway: IPAddress

    @property
    def version(self) -> int:
        """4 or 6."""
        return self.subnet.version

    def contains(self, addr: IPAddress) -> bool:
        """Go ``Range.Contains``: in the subnet and within start..end."""
        return (
            addr.version == self.version
            and addr in self.subnet.network
            and int(self.range_start) <= int(addr) <= int(self.range_end)
        )

    def overlaps(self, other: Range) -> bool:
        """Go ``Range.Overlaps``."""
        if self.version != other.version:
            return False
        return (
            self.contains(other.range_start)
            or self.contains(other.range_end)
            or other.contains(self.range_start)
            or other.contains(self.range_end)
        )

    def __str__(self) -> str:
        return f"{format_ip(self.range_start)}-{format_ip(self.range_end)}"


def _subnet_text(ip: IPAddress, prefix: int) -> str:
    return f"{format_ip(ip)}/{prefix}"


def canonicalize(raw: RawRange) -> Range:
    """Go ``Range.Canonicalize``: validate and fill in defaults, Go's error texts.

    One deliberate difference: an IPv4 ``rangeStart`` on the broadcast address
    with a defaulted ``rangeEnd`` is refused; Go accepts it, hands out the
    broadcast, and then iterates the whole address space.
    """
    if raw.subnet is None:
        raise RangeError("IP <nil> not v4 nor v6", f"{raw.path}.subnet")
    ip, prefix = raw.subnet.ip, raw.subnet.network.prefixlen
    bits = ip.max_prefixlen
    if prefix > bits - 2:
        raise RangeError(
            f"Network {_subnet_text(ip, prefix)} too small to allocate from", f"{raw.path}.subnet"
        )
    if raw.subnet_mapped:
        raise RangeError("IPNet IP and Mask version mismatch", f"{raw.path}.subnet")
    network = raw.subnet.network.network_address
    if network != ip:
        raise RangeError(
            f"Network has host bits set. For a subnet mask of length {prefix} "
            f"the network address is {format_ip(network)}",
            f"{raw.path}.subnet",
        )
    subnet_text = _subnet_text(ip, prefix)
    subnet = raw.subnet.network
    first = ip_add(ip, 1)
    gateway = raw.gateway if raw.gateway is not None else first

    def inside(addr: IPAddress, start: IPAddress | None, end: IPAddress | None) -> bool:
        return (
            addr.version == ip.version
            and addr in subnet
            and (start is None or int(addr) >= int(start))
            and (end is None or int(addr) <= int(end))
        )

    if raw.range_start is not None:
        start = raw.range_start
        if not inside(start, start, raw.range_end):
            raise RangeError(
                f"RangeStart {format_ip(start)} not in network {subnet_text}",
                f"{raw.path}.rangeStart",
            )
    else:
        start = first
    if raw.range_end is not None:
        end = raw.range_end
        if not inside(end, start, end):
            raise RangeError(
                f"RangeEnd {format_ip(end)} not in network {subnet_text}", f"{raw.path}.rangeEnd"
            )
    else:
        last = int(ip) | ((1 << (bits - prefix)) - 1)
        end = _make(ip.version, last - 1 if ip.version == 4 else last)
        if int(start) > int(end):
            raise RangeError(
                f"RangeStart {format_ip(start)} not in network {subnet_text}",
                f"{raw.path}.rangeStart",
            )
    return Range(subnet=raw.subnet, range_start=start, range_end=end, gateway=gateway)


class RangeSet(tuple[Range, ...]):
    """Ranges one address is allocated from (Go ``RangeSet``)."""

    __slots__ = ()

    def range_for(self, addr: IPAddress) -> Range | None:
        """The first range containing ``addr``."""
        for rng in self:
            if rng.contains(addr):
                return rng
        return None

    def contains(self, addr: IPAddress) -> bool:
        """Some range contains ``addr``."""
        return self.range_for(addr) is not None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self)

    def iterate(self, last_reserved: IPAddress | None) -> Iterator[tuple[IPAddress, Range]]:
        """Go ``RangeIter``: every candidate once, round-robin after ``last_reserved``,
        skipping each range's gateway."""
        idx = 0
        cur: IPAddress | None = None
        start: IPAddress | None = None
        if last_reserved is not None and self.contains(last_reserved):
            idx = next(i for i, r in enumerate(self) if r.contains(last_reserved))
            cur = last_reserved
        while True:
            rng = self[idx]
            if cur is None:
                cur = start = rng.range_start
            else:
                if cur == rng.range_end:
                    idx = (idx + 1) % len(self)
                    rng = self[idx]
                    cur = rng.range_start
                else:
                    cur = ip_add(cur, 1)
                if start is None:
                    start = cur
                elif cur == start:
                    return
            if cur != rng.gateway:
                yield cur, rng


def canonicalize_set(raws: list[RawRange], path: str) -> RangeSet:
    """Go ``RangeSet.Canonicalize``: non-empty, one family, no overlaps."""
    if not raws:
        raise RangeError("empty range set", path)
    ranges = [canonicalize(raw) for raw in raws]
    if any(r.range_start.version != ranges[0].range_start.version for r in ranges):
        raise RangeError("mixed address families", path)
    for i, first in enumerate(ranges[:-1]):
        for second in ranges[i + 1 :]:
            if first.overlaps(second):
                raise RangeError(f"subnets {first} and {second} overlap", path)
    return RangeSet(ranges)
