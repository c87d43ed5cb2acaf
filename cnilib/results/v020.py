"""Results of spec versions 0.1.0 and 0.2.0 (Go ``pkg/types/020``).

One address per family (``ip4``/``ip6``), each with its own routes; ``dns``
is always written. A result whose ``cniVersion`` is empty decodes as this
family (Go lists ``""`` among its supported versions).
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from cnilib.results._codec import ALWAYS_EMIT, NULL_ITEMS_ARE_ZERO
from cnilib.results._common import DNS, Result, Route, routes_tuple
from cnilib.results._ip import IPAddress, IPInterface

__all__ = ["IPConfig", "ResultV020"]


@attrs.frozen(kw_only=True)
class IPConfig:
    """The address of one family, with the routes through it.

    ``ip`` is ``None`` only when a plugin omitted it (libcni prints ``"<nil>"``).
    """

    GO_TYPE: ClassVar[str] = "types020.IPConfig"

    ip: IPInterface | None = attrs.field(default=None, metadata=ALWAYS_EMIT)
    gateway: IPAddress | None = None
    # Go []types.Route (values, not pointers): a null item decodes as a zero route.
    routes: tuple[Route, ...] = attrs.field(
        default=(), converter=routes_tuple, metadata=NULL_ITEMS_ARE_ZERO
    )


@attrs.frozen(kw_only=True)
class ResultV020(Result):
    """A 0.1.0 or 0.2.0 ADD result."""

    GO_TYPE: ClassVar[str] = "types020.Result"
    SUPPORTED_VERSIONS: ClassVar[tuple[str, ...]] = ("", "0.1.0", "0.2.0")
    IMPLEMENTED_VERSION: ClassVar[str] = "0.2.0"

    cni_version: str = ""
    ip4: IPConfig | None = None
    ip6: IPConfig | None = None
    dns: DNS = attrs.field(factory=DNS, metadata=ALWAYS_EMIT)
