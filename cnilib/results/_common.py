"""What the three result families share: the :class:`Result` base, :class:`Route`, :class:`DNS`.

Go has one ``types.Route`` and one ``types.DNS`` for every result version, so
these are shared too; a 0.2.0 route therefore keeps ``mtu``, ``table`` and the
other 1.1 route fields just as libcni's does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, ClassVar

import attrs

from cnilib._json import JSONObject, go_dumps
from cnilib.results._codec import ALWAYS_EMIT, unstructure
from cnilib.results._ip import IPAddress, IPInterface
from cnilib.spec import SpecVersion

if TYPE_CHECKING:
    from cnilib.results.v100 import ResultV100

__all__ = ["DNS", "Result", "Route", "routes_tuple"]


def _strs_tuple(items: Iterable[str]) -> tuple[str, ...]:
    if isinstance(items, str):
        raise TypeError("expected a sequence of strings, not a string")
    return tuple(items)


@attrs.frozen(kw_only=True)
class Route:
    """A route (Go ``types.Route``); ``table``/``scope`` are emitted whenever set, even to 0.

    ``dst`` is ``None`` only when a plugin omitted it; libcni then prints ``"<nil>"``.
    """

    GO_TYPE: ClassVar[str] = "types.Route"

    dst: IPInterface | None = attrs.field(default=None, metadata=ALWAYS_EMIT)
    gw: IPAddress | None = None
    mtu: int = 0
    adv_mss: int = 0
    priority: int = 0
    table: int | None = None
    scope: int | None = None


@attrs.frozen(kw_only=True)
class DNS:
    """DNS settings (Go ``types.DNS``); every field is omitted from JSON when empty."""

    GO_TYPE: ClassVar[str] = "types.DNS"

    nameservers: tuple[str, ...] = attrs.field(default=(), converter=_strs_tuple)
    domain: str = ""
    search: tuple[str, ...] = attrs.field(default=(), converter=_strs_tuple)
    options: tuple[str, ...] = attrs.field(default=(), converter=_strs_tuple)

    def is_empty(self) -> bool:
        """Go ``DNS.IsEmpty``: no nameservers, domain, search or options."""
        return not (self.nameservers or self.domain or self.search or self.options)


def routes_tuple(items: Iterable[Route]) -> tuple[Route, ...]:
    """Field converter: any iterable of routes becomes a tuple."""
    return tuple(items)


class Result:
    """A decoded ADD result of any spec version (Go ``types.Result``).

    Concrete classes are :class:`~cnilib.results.ResultV100` (1.0.0, 1.1.0),
    :class:`~cnilib.results.ResultV040` (0.3.0, 0.3.1, 0.4.0) and
    :class:`~cnilib.results.ResultV020` (0.1.0, 0.2.0). Results are immutable
    and compare by value.
    """

    __slots__ = ()

    cni_version: str
    """The version the result was written as; ``""`` means the family's highest."""

    SUPPORTED_VERSIONS: ClassVar[tuple[str, ...]]
    """The ``cniVersion`` values this family decodes (Go ``supportedVersions``)."""

    IMPLEMENTED_VERSION: ClassVar[str]
    """The family's highest version, assumed when ``cni_version`` is empty."""

    @staticmethod
    def from_json(data: bytes | str | Mapping[str, object], *, default_version: str = "") -> Result:
        """Decode result JSON into the right family (see :func:`cnilib.results.decode_result`).

        ``default_version`` is assumed when the JSON has no ``cniVersion``
        (libcni uses the request config's; ``""`` means 0.1.0).
        """
        from cnilib.results._decode import decode_result  # import cycle

        return decode_result(data, default_version=default_version)

    def convert_to(self, version: str | SpecVersion) -> Result:
        """This result as ``version`` (Go ``GetAsVersion``); ``""`` means 0.1.0.

        Returns ``self`` when already at that version. Raises
        :class:`~cnilib.errors.ResultConversionError` when libcni cannot convert.
        """
        from cnilib.results._convert import convert_result  # import cycle

        return convert_result(self, version)

    def as_v1(self) -> ResultV100:
        """This result as a 1.x result: itself if it is one, else converted to 1.1.0.

        See :func:`cnilib.results.as_v1`; raises
        :class:`~cnilib.errors.ResultConversionError` when libcni cannot convert.
        """
        from cnilib.results._view import as_v1  # import cycle

        return as_v1(self)

    def to_object(self) -> JSONObject:
        """The result as libcni marshals it: wire names, Go field order and omissions."""
        return unstructure(self)

    def to_json(self, *, indent: int | None = None) -> str:
        """JSON text as libcni writes it; ``indent=4`` gives Go's ``Print()`` output."""
        return go_dumps(self.to_object(), sort_keys=False, indent=indent)
