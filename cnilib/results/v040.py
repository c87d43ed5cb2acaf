"""Results of spec versions 0.3.0, 0.3.1 and 0.4.0 (Go ``pkg/types/040``).

Each ``ips`` entry carries ``version`` (``"4"``/``"6"``, always written, even
empty); interfaces have only ``name``/``mac``/``sandbox``; ``dns`` is always
written (``"dns":{}`` when empty). Routes are the shared :class:`Route`, so the
extended route fields survive here too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import attrs

from cnilib.results._codec import ALWAYS_EMIT
from cnilib.results._common import DNS, Result, Route, routes_tuple
from cnilib.results._ip import IPAddress, IPInterface

__all__ = ["IPConfig", "Interface", "ResultV040"]


@attrs.frozen(kw_only=True)
class Interface:
    """An interface a plugin created or configured (no 1.1 fields)."""

    GO_TYPE: ClassVar[str] = "types040.Interface"

    name: str = attrs.field(default="", metadata=ALWAYS_EMIT)
    mac: str = ""
    sandbox: str = ""


@attrs.frozen(kw_only=True)
class IPConfig:
    """An address with its IP ``version``; ``interface`` indexes ``Result.interfaces``."""

    GO_TYPE: ClassVar[str] = "types040.IPConfig"

    version: str = attrs.field(default="", metadata=ALWAYS_EMIT)
    interface: int | None = None
    address: IPInterface | None = attrs.field(default=None, metadata=ALWAYS_EMIT)
    gateway: IPAddress | None = None


def _interfaces_tuple(items: Iterable[Interface]) -> tuple[Interface, ...]:
    return tuple(items)


def _ips_tuple(items: Iterable[IPConfig]) -> tuple[IPConfig, ...]:
    return tuple(items)


@attrs.frozen(kw_only=True)
class ResultV040(Result):
    """A 0.3.0, 0.3.1 or 0.4.0 ADD result."""

    GO_TYPE: ClassVar[str] = "types040.Result"
    SUPPORTED_VERSIONS: ClassVar[tuple[str, ...]] = ("0.3.0", "0.3.1", "0.4.0")
    IMPLEMENTED_VERSION: ClassVar[str] = "0.4.0"

    cni_version: str = ""
    interfaces: tuple[Interface, ...] = attrs.field(default=(), converter=_interfaces_tuple)
    ips: tuple[IPConfig, ...] = attrs.field(default=(), converter=_ips_tuple)
    routes: tuple[Route, ...] = attrs.field(default=(), converter=routes_tuple)
    dns: DNS = attrs.field(factory=DNS, metadata=ALWAYS_EMIT)
