"""What ``CNI`` and ``AsyncCNI`` share: configuration, flow construction, and
the planning of multi-network setups. Neither driver holds CNI logic."""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import attrs

from cnilib._json import CapabilityArgs
from cnilib._log import get_logger
from cnilib.cache import DEFAULT_CACHE_DIR, AttachmentLock, Durability, FileCache, LockDir
from cnilib.config import NetworkConfigList, PluginConf
from cnilib.errors import ClosedError, CNIError, ErrorCode, InvalidArgumentError, TeardownError
from cnilib.invoke import DEFAULT_TIMEOUT, Executor, SubprocessExecutor
from cnilib.invoke._invocation import check_timeout
from cnilib.invoke._subprocess import NO_DEADLINE_BEYOND
from cnilib.results import Result
from cnilib.runtime._conf import GCAttachment, RuntimeConf
from cnilib.runtime._flows import FlowContext
from cnilib.runtime._observe import Observer

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from cnilib.events import EventHook

__all__ = [
    "EXECUTOR_DEFAULT",
    "Attached",
    "ExecutorDefault",
    "PlannedAttachment",
    "RuntimeBase",
    "as_list",
    "gc_attachments",
    "NOT_RUN",
    "attached",
    "first_failure",
    "holding",
    "note_undo",
    "succeeded",
    "plan",
    "raise_failures",
]

log = get_logger("cnilib.runtime")


class ExecutorDefault(enum.Enum):
    """The type of :data:`EXECUTOR_DEFAULT`."""

    TOKEN = "executor default"


EXECUTOR_DEFAULT = ExecutorDefault.TOKEN
"""``timeout`` left out: 60 s for the default executor, else the given executor's own."""


def as_list(plugin: PluginConf) -> NetworkConfigList:
    """A single plugin seen as a one-entry list with its own name and version."""
    return NetworkConfigList(
        name=plugin.name or "",
        cni_version=plugin.cni_version or "",
        plugins=(plugin,),
        bytes=plugin.bytes,
        raw=plugin.raw,
        source=plugin.source,
    )


def gc_attachments(
    valid: Iterable[GCAttachment | tuple[str, str]] | None,
) -> list[GCAttachment] | None:
    """Normalise GC's keep-list: ``None`` stays "no list"."""
    if valid is None:
        return None
    given: object = valid  # checked as the caller may really pass it, not as typed
    if isinstance(given, str | bytes):
        raise InvalidArgumentError(
            "valid attachments must be (container ID, interface name) pairs, not a string"
        )
    kept: list[GCAttachment] = []
    items: Iterable[object] = valid
    for item in items:
        if isinstance(item, GCAttachment):
            kept.append(item)
        elif isinstance(item, tuple | list) and len(item) == 2:
            kept.append(GCAttachment(item[0], item[1]))
        else:
            # A bare "ctr1" would otherwise be read as ("c", "t"): GC would
            # delete the very attachment the caller meant to keep.
            raise InvalidArgumentError(
                f"valid attachment must be a (container ID, interface name) pair, got {item!r}"
            )
    for attachment in kept:
        for value in (attachment.container_id, attachment.ifname):
            if not isinstance(value, str):
                raise InvalidArgumentError(f"valid attachments must be strings, got {value!r}")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidArgumentError(f"valid attachment is not UTF-8: {value!r}") from exc
    return kept


@attrs.frozen
class PlannedAttachment:
    """One network of a multi-network setup, with the interface it gets."""

    conflist: NetworkConfigList
    rt: RuntimeConf


@attrs.frozen
class Attached:
    """One network attached by ``setup_networks``: which, on which interface, with what."""

    network: str
    ifname: str
    result: Result | None


def plan(
    container_id: str,
    netns: str,
    networks: Sequence[NetworkConfigList],
    ifnames: Sequence[str] | None,
    ifname_prefix: str,
    args: Sequence[tuple[str, str]] = (),
    capability_args: CapabilityArgs | None = None,
) -> list[PlannedAttachment]:
    """Pair each network with its interface: ``ifnames`` if given, else
    ``<prefix>0``, ``<prefix>1``, … in order (go-cni's ``WithInterfacePrefix``)."""
    if ifnames is None:
        ifnames = [f"{ifname_prefix}{index}" for index in range(len(networks))]
    if len(ifnames) != len(networks):
        raise InvalidArgumentError(f"{len(networks)} networks but {len(ifnames)} interface names")
    planned = [
        PlannedAttachment(
            conflist,
            RuntimeConf(
                container_id, netns, ifname, args=args, capability_args=capability_args or {}
            ),
        )
        for conflist, ifname in zip(networks, ifnames, strict=True)
    ]
    for item in planned:
        item.rt.validate(item.conflist.name)
    return planned


class _NotRun:
    """The outcome of an item a multi-network call never got to."""

    def __repr__(self) -> str:
        return "NOT_RUN"


NOT_RUN = _NotRun()


def succeeded(
    planned: Sequence[PlannedAttachment], outcomes: Sequence[object]
) -> list[PlannedAttachment]:
    """The items whose operation ran and did not fail, in plan order."""
    return [
        p
        for p, o in zip(planned, outcomes, strict=True)
        if o is not NOT_RUN and not isinstance(o, CNIError)
    ]


def holding(ctx: FlowContext, lock: AttachmentLock | None) -> FlowContext:
    """The context of one call: ``lock`` records each plugin process it starts."""
    return ctx if lock is None else attrs.evolve(ctx, lock=lock)


def note_undo(
    failure: BaseException, done: Sequence[PlannedAttachment], undo: Sequence[object]
) -> None:
    """Say on ``failure`` which already attached networks were removed again."""
    removed = [
        p.conflist.name
        for p, o in zip(reversed(done), undo, strict=True)
        if not isinstance(o, CNIError)
    ]
    failed = [
        f"{p.conflist.name}: {o}"
        for p, o in zip(reversed(done), undo, strict=True)
        if isinstance(o, CNIError)
    ]
    if removed:
        failure.add_note("removed again: " + ", ".join(removed))
    if failed:
        failure.add_note("could not remove: " + "; ".join(failed))


def first_failure(outcomes: Sequence[object]) -> CNIError | None:
    """The first failure among a multi-network call's outcomes, if any."""
    return next((o for o in outcomes if isinstance(o, CNIError)), None)


def attached(
    planned: Sequence[PlannedAttachment], outcomes: Sequence[object]
) -> tuple[Attached, ...]:
    """The combined result of a successful setup, in plan order."""
    return tuple(
        Attached(p.conflist.name, p.rt.ifname, o)  # type: ignore[arg-type]
        for p, o in zip(planned, outcomes, strict=True)
    )


def raise_failures(verb: str, container_id: str, outcomes: Sequence[object]) -> None:
    """Raise the failures among ``outcomes`` together, if there are any."""
    failures = [o for o in outcomes if isinstance(o, CNIError)]
    if failures:
        raise TeardownError(f"{verb} of container {container_id} failed", failures)


def _lock_timeout(timeout: float | ExecutorDefault | None, executor: Executor) -> float | None:
    """How long a verb may wait for its locks: the plugin-call deadline."""
    if isinstance(timeout, ExecutorDefault):
        timeout = getattr(executor, "timeout", DEFAULT_TIMEOUT)
        if timeout is not None and not isinstance(timeout, int | float):
            timeout = DEFAULT_TIMEOUT
    if timeout is None or timeout > NO_DEADLINE_BEYOND:
        return None
    return float(timeout)


class RuntimeBase:
    """Construction and configuration shared by :class:`CNI` and :class:`AsyncCNI`.

    :param plugin_dirs: directories searched for plugin executables (``CNI_PATH``).
    :param cache_dir: where results (``results/``) and locks (``locks/``) live.
    :param executor: how plugins run; default :class:`SubprocessExecutor`.
    :param timeout: deadline in seconds for each plugin call, after which the
        plugin's process group is killed; ``None`` for no deadline. Left
        out, it is 60 s for the default executor, and whatever a given
        ``executor`` was configured with.
    :param owner: a tag for this runtime, written into its cache entries; GC
        then deletes only entries with the same tag. ``None`` (the default)
        behaves like libcni: every entry counts as this runtime's.
    :param rollback: transactional ADD: undo the plugins that ran when a
        later one fails (``False``: libcni's behaviour, leave them).
    :param locking: take cross-process file locks around every verb. Waiting
        for them counts against ``timeout`` (the executor's deadline when
        ``timeout`` is left out): past it the call fails with
        :class:`cnilib.LockTimeoutError`.
    :param durability: what a completed cache write survives (see
        :class:`cnilib.FileCache`): ``"full"`` (default) a power loss, each
        ADD's final entry and each DEL's removal being fsynced; ``"process"``
        only the runtime's crash, with no fsync (writes stay atomic).
    :param events: a hook called with one record per plugin call and per
        operation (see :mod:`cnilib.events`).
    :param tracing: OpenTelemetry spans per operation and plugin call:
        ``True`` (default) sends them to the global tracer provider whenever
        the application uses OpenTelemetry, a ``TracerProvider`` to that
        provider, ``False`` nowhere (see :mod:`cnilib.tracing`).
    """

    def __init__(
        self,
        plugin_dirs: Sequence[str | os.PathLike[str]] = (),
        *,
        cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
        executor: Executor | None = None,
        timeout: float | ExecutorDefault | None = EXECUTOR_DEFAULT,
        owner: str | None = None,
        rollback: bool = True,
        locking: bool = True,
        durability: Durability = "full",
        events: EventHook | None = None,
        tracing: bool | TracerProvider = True,
    ) -> None:
        self._observer = Observer(events, tracing)
        self.plugin_dirs = tuple(os.fspath(d) for d in plugin_dirs)
        for directory in self.plugin_dirs:
            try:
                if b"\0" in os.fsencode(directory):
                    raise InvalidArgumentError("plugin directory contains a NUL byte")
            except UnicodeEncodeError as exc:
                raise InvalidArgumentError(
                    f"plugin directory is not a valid path: {directory!r}"
                ) from exc
        if not isinstance(timeout, ExecutorDefault):
            check_timeout(timeout)
        self.cache = FileCache(cache_dir, durability=durability)
        per_call: float | None = None  # None: the executor's own deadline
        if executor is None:
            default = DEFAULT_TIMEOUT if isinstance(timeout, ExecutorDefault) else timeout
            executor = SubprocessExecutor(timeout=default)
        elif not isinstance(timeout, ExecutorDefault):
            # Given explicitly with an executor: it travels on every invocation.
            per_call = math.inf if timeout is None else timeout
        self.executor: Executor = executor
        self.locks: LockDir | None = None
        if locking:
            # Waiting for a lock is part of the call: it gets the call's deadline.
            self.locks = LockDir(self.cache.cache_dir, timeout=_lock_timeout(timeout, executor))
        self._ctx = FlowContext(
            cache=self.cache,
            path=self.plugin_dirs,
            timeout=per_call,
            rollback=rollback,
            owner=owner,
            locks=self.locks,
        )
        self._single_ctx = attrs.evolve(self._ctx, wrap_errors=False)

    def _tidy(self, network: str) -> None:
        """After a GC, under the network's exclusive lock: drop its unused
        attachment lock files and any temp file a crash left in the cache.

        Housekeeping only: a failure is logged, not raised, since the GC
        itself succeeded.
        """
        try:
            if self.locks is not None:
                self.locks.prune(network)
            self.cache.remove_stale_temp_files()
        except CNIError as exc:
            log.warning("GC of %s: could not tidy the cache directory: %s", network, exc)

    @property
    def owner(self) -> str | None:
        """The tag written into this runtime's cache entries."""
        return self._ctx.owner

    _closed = False

    @property
    def closed(self) -> bool:
        """``close()`` (``aclose()``) was called: verbs now raise :class:`cnilib.ClosedError`."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"{type(self).__name__} is closed", code=ErrorCode.INTERNAL)

    def _close_executor(self) -> None:
        """Mark closed, and close the executor if it has something to close (as an
        httpx client closes its transport)."""
        if self._closed:
            return
        self._closed = True
        close = getattr(self.executor, "close", None)
        if callable(close):
            close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({list(self.plugin_dirs)!r}, cache_dir={self.cache.cache_dir!r})"
        )
