"""What a runtime reports about its work: one record per plugin call and one
per network operation, handed to an events hook.

Pass any callable taking one record to :class:`cnilib.CNI` or
:class:`cnilib.AsyncCNI` as ``events=``::

    seen: list[cnilib.events.Event] = []
    cni = cnilib.CNI(["/opt/cni/bin"], events=seen.append)

    def hook(event: cnilib.events.Event) -> None:
        if isinstance(event, cnilib.events.PluginCallEvent) and event.outcome == "error":
            print(event.plugin, event.verb, event.error_code)

The hook runs synchronously, on the thread (or event loop) that did the
work, right after each plugin call and each operation: keep it quick. A hook
that raises is logged at WARNING on ``cnilib.runtime`` and the operation goes
on as if it had not been called. :class:`cnilib.contrib.prometheus.PrometheusEvents`
is a ready hook that feeds Prometheus metrics.

Plugin calls that an in-process plugin makes itself (a bridge delegating to
its IPAM plugin) are part of that plugin's call and are not reported on
their own.
"""

from __future__ import annotations

from typing import Literal, Protocol

import attrs

__all__ = [
    "IN_PROCESS",
    "MULTI_NETWORK_VERBS",
    "Event",
    "EventHook",
    "OperationEvent",
    "Outcome",
    "PluginCallEvent",
]

Outcome = Literal["ok", "error"]
"""How a call or an operation ended: ``"ok"``, or ``"error"`` (raised anything,
a :class:`cnilib.CNIError`, a cancellation or an interruption)."""

IN_PROCESS = "in-process"
""":attr:`PluginCallEvent.executable` of a plugin that ran without a process."""

MULTI_NETWORK_VERBS = frozenset({"setup_networks", "teardown_networks", "check_networks"})
"""The verbs of operations on several networks at once; each network's own
operation (``add``, ``delete``, ``check``) is reported too."""


@attrs.frozen
class PluginCallEvent:
    """One plugin call (one ``CNI_COMMAND``), after it ended."""

    verb: str
    """The CNI verb as in ``CNI_COMMAND``: ``ADD``, ``DEL``, ``CHECK``, ``GC``,
    ``STATUS`` or ``VERSION``."""
    plugin: str
    """The plugin's type (``bridge``)."""
    network: str
    """The network the call was made for (``""`` outside a network operation)."""
    container_id: str
    """``CNI_CONTAINERID`` (``""`` for GC, STATUS and VERSION)."""
    ifname: str
    """``CNI_IFNAME`` (``""`` for GC, STATUS and VERSION)."""
    executable: str
    """Where the executor runs the plugin from, as its ``find()`` answers: the
    binary's path as found, :data:`IN_PROCESS`, or ``""`` if it was not found."""
    duration: float
    """Seconds from the start of the call to its end."""
    outcome: Outcome
    error_code: int | None = None
    """The error's CNI code (``7``, ``11``, ...) when ``outcome`` is ``"error"``
    and the error was a :class:`cnilib.CNIError`."""
    error_type: str | None = None
    """The error's class name (``PluginTimeoutError``) when ``outcome`` is ``"error"``."""


@attrs.frozen
class OperationEvent:
    """One network operation of a runtime (``add_network_list``, ``gc_network_list``,
    ``setup_networks``, ...), after it ended.

    ``verb`` is ``add``, ``check``, ``delete``, ``gc``, ``status``, ``validate``
    or ``version`` for one network (a list, or a single plugin's ``.conf``),
    and one of :data:`MULTI_NETWORK_VERBS` for several networks at once.
    """

    verb: str
    network: str
    """The network's name; for several networks, their names joined by ``,``;
    for ``version``, ``""``."""
    container_id: str
    """The container (``""`` for gc, status, validate and version)."""
    ifname: str
    """The interface (``""`` where there is none, or several)."""
    duration: float
    """Seconds, including the wait for file locks and for a concurrency slot."""
    outcome: Outcome
    error_code: int | None = None
    """The error's CNI code when ``outcome`` is ``"error"`` and the error was
    a :class:`cnilib.CNIError`."""
    error_type: str | None = None
    """The error's class name when ``outcome`` is ``"error"``."""


Event = PluginCallEvent | OperationEvent
"""Either record."""


class EventHook(Protocol):
    """What ``events=`` takes: a callable with one positional argument, the
    record (``list.append`` will do)."""

    def __call__(self, event: Event, /) -> object:
        """Take one record; the return value is ignored."""
        ...
