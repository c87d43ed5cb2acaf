"""Results of spec versions 1.0.0 and 1.1.0 (Go ``pkg/types/100``).

libcni uses one type for both versions, so the 1.1 fields (interface
``mtu``/``socketPath``/``pciID``; route ``mtu``/``advmss``/``priority``/
``table``/``scope``) are read and written for 1.0.0 as well.

Go's ``Result.MarshalJSON`` re-marshals the result through a
``map[string]interface{}`` to drop an empty ``dns``; as a side effect every
object's keys come out sorted and numbers pass through float64.
:meth:`ResultV100.to_object` reproduces that.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import attrs

from cnilib._json import JSONObject
from cnilib.results._codec import ALWAYS_EMIT, go_map_roundtrip, unstructure
from cnilib.results._common import DNS, Result, Route, routes_tuple
from cnilib.results._ip import IPAddress, IPInterface

__all__ = ["IPConfig", "Interface", "ResultV100"]


@attrs.frozen(kw_only=True)
class Interface:
    """An interface a plugin created or configured."""

    GO_TYPE: ClassVar[str] = "types100.Interface"

    name: str = attrs.field(default="", metadata=ALWAYS_EMIT)
    mac: str = ""
    mtu: int = 0
    sandbox: str = ""
    socket_path: str = ""
    pci_id: str = ""


@attrs.frozen(kw_only=True)
class IPConfig:
    """An address assigned by the plugin; ``interface`` indexes ``Result.interfaces``.

    ``address`` is ``None`` only when a plugin omitted it (libcni prints ``"<nil>"``).
    """

    GO_TYPE: ClassVar[str] = "types100.IPConfig"

    interface: int | None = None
    address: IPInterface | None = attrs.field(default=None, metadata=ALWAYS_EMIT)
    gateway: IPAddress | None = None


def _interfaces_tuple(items: Iterable[Interface]) -> tuple[Interface, ...]:
    return tuple(items)


def _ips_tuple(items: Iterable[IPConfig]) -> tuple[IPConfig, ...]:
    return tuple(items)


@attrs.frozen(kw_only=True)
class ResultV100(Result):
    """A 1.0.0 or 1.1.0 ADD result."""

    GO_TYPE: ClassVar[str] = "types100.Result"
    SUPPORTED_VERSIONS: ClassVar[tuple[str, ...]] = ("1.0.0", "1.1.0")
    IMPLEMENTED_VERSION: ClassVar[str] = "1.1.0"

    cni_version: str = ""
    interfaces: tuple[Interface, ...] = attrs.field(default=(), converter=_interfaces_tuple)
    ips: tuple[IPConfig, ...] = attrs.field(default=(), converter=_ips_tuple)
    routes: tuple[Route, ...] = attrs.field(default=(), converter=routes_tuple)
    dns: DNS = attrs.field(factory=DNS)

    def to_object(self) -> JSONObject:
        """The result as libcni marshals it: keys sorted, empty lists and ``dns`` omitted."""
        obj = go_map_roundtrip(unstructure(self))
        assert isinstance(obj, dict)
        return obj
