"""CNI spec versions: parsing, ordering, and which verbs each version has.

Parsing follows Go's ``version.ParseVersion`` exactly (so ``"1"`` is 1.0.0,
``""`` is 0.1.0 and ``"1.2.3.4"`` is an error), because a runtime must accept
the same configurations libcni accepts.
"""

from __future__ import annotations

import functools
import re

from cnilib.errors import VersionError

__all__ = [
    "ALL_VERSIONS",
    "CURRENT",
    "LEGACY_VERSIONS",
    "SpecVersion",
    "has_check",
    "has_gc",
    "has_status",
    "parse_version",
]

# Go's strconv.Atoi accepts an optional sign followed by ASCII digits only.
_ATOI = re.compile(r"[+-]?[0-9]+\Z")


@functools.total_ordering
class SpecVersion:
    """A parsed CNI spec version, ordered numerically.

    ``str()`` gives back the text it was parsed from, so that a version read
    from a configuration is passed on to plugins exactly as written.
    """

    __slots__ = ("_key", "text")

    def __init__(self, text: str, major: int, minor: int, micro: int) -> None:
        self.text = text
        self._key = (major, minor, micro)

    @property
    def key(self) -> tuple[int, int, int]:
        """(major, minor, micro), the ordering key."""
        return self._key

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"SpecVersion({self.text!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SpecVersion):
            return self._key == other._key
        if isinstance(other, str):
            try:
                return self._key == parse_version(other)._key
            except VersionError:
                return False
        return NotImplemented

    def __lt__(self, other: SpecVersion | str) -> bool:
        if isinstance(other, str):
            other = parse_version(other)
        return self._key < other._key

    def __hash__(self) -> int:
        return hash(self._key)


@functools.lru_cache(maxsize=256)
def parse_version(text: str) -> SpecVersion:
    """Parse ``text`` as Go libcni does; raise :class:`VersionError` otherwise.

    >>> parse_version("1").key
    (1, 0, 0)
    >>> parse_version("").key
    (0, 1, 0)
    """
    if text == "":
        return SpecVersion(text, 0, 1, 0)
    parts = text.split(".")
    if len(parts) >= 4:
        raise VersionError(f'invalid version "{text}": too many parts')
    numbers = []
    for part in parts:
        if not _ATOI.match(part):
            raise VersionError(f'invalid version "{text}": {part!r} is not a number')
        # Go's Atoi refuses what does not fit an int64 (and Python would
        # refuse to even parse more than 4300 digits).
        digits = part.lstrip("+-")
        if len(digits) > 19 or not -(2**63) <= int(part) < 2**63:
            raise VersionError(f'invalid version "{text[:40]}": {part[:20]!r} is out of range')
        numbers.append(int(part))
    while len(numbers) < 3:
        numbers.append(0)
    return SpecVersion(text, numbers[0], numbers[1], numbers[2])


ALL_VERSIONS: tuple[SpecVersion, ...] = tuple(
    parse_version(v) for v in ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
)
"""Every released spec version, oldest first (Go ``version.All``)."""

LEGACY_VERSIONS: tuple[SpecVersion, ...] = ALL_VERSIONS[:2]
"""0.1.0 and 0.2.0: versions whose results use the ``ip4``/``ip6`` layout."""

CURRENT: SpecVersion = ALL_VERSIONS[-1]
"""The newest spec version cnilib speaks (1.1.0)."""

_V040 = parse_version("0.4.0")
_V110 = parse_version("1.1.0")


def has_check(version: SpecVersion) -> bool:
    """CHECK exists from 0.4.0 on."""
    return version >= _V040


def has_gc(version: SpecVersion) -> bool:
    """GC exists from 1.1.0 on."""
    return version >= _V110


def has_status(version: SpecVersion) -> bool:
    """STATUS exists from 1.1.0 on."""
    return version >= _V110
