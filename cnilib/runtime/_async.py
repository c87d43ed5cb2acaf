"""``AsyncCNI``: the asyncio runtime API, driving the very same flows as ``CNI``.

Plugins run as asyncio subprocesses (``Executor.aexec``); locks are taken by
polling, so no thread ever blocks on one; cache reads that ``CNI`` does
inline run in a worker thread here. Cancelling a call kills the plugin's
process group, and a cancelled ADD rolls back before the cancellation
propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from cnilib._json import CapabilityArgs
from cnilib.cache import DEFAULT_CACHE_DIR, AttachmentLock, CacheEntry, Durability
from cnilib.config import ConfDir, NetworkConfigList, PluginConf
from cnilib.errors import CNIError, InvalidArgumentError, OperationCancelledError
from cnilib.invoke import Executor, PluginInfo
from cnilib.results import Result
from cnilib.runtime import _flows, _ready
from cnilib.runtime._base import (
    EXECUTOR_DEFAULT,
    NOT_RUN,
    Attached,
    ExecutorDefault,
    PlannedAttachment,
    RuntimeBase,
    as_list,
    attached,
    first_failure,
    gc_attachments,
    holding,
    note_undo,
    plan,
    raise_failures,
    succeeded,
)
from cnilib.runtime._conf import GCAttachment, RuntimeConf
from cnilib.runtime._flows import Flow
from cnilib.runtime._gc import GCReport, gc_flow
from cnilib.runtime._observe import Observer, observed, watched
from cnilib.runtime._sync import resume

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from cnilib.events import EventHook

__all__ = ["AsyncCNI", "run_flow_async"]


async def run_flow_async(
    flow: Flow[_flows.T], executor: Executor, observer: Observer | None = None
) -> _flows.T:
    """Drive a flow with ``await executor.aexec(...)``.

    On cancellation the flow is told (``OperationCancelledError``), its
    cleanup (ADD's rollback) is driven, and then the cancellation goes on.
    ``observer`` reports each plugin call (events, spans).
    """
    try:
        invocation = next(flow)
        while True:
            try:
                with watched(observer, invocation, executor):
                    stdout = await executor.aexec(invocation)
            except CNIError as exc:
                invocation = flow.throw(exc)
            except asyncio.CancelledError as cancellation:
                cancelled = OperationCancelledError(
                    f"{invocation.describe()} was cancelled; its process group was killed"
                )
                # A second cancellation while this cleanup runs abandons it
                # (the flow's rollback re-raises OperationCancelledError).
                with contextlib.suppress(CNIError):
                    await run_flow_async(resume(flow, cancelled), executor, observer)
                cancellation.__context__ = cancelled
                raise
            else:
                invocation = flow.send(stdout)
    except StopIteration as stop:
        value: _flows.T = stop.value
        return value


class AsyncCNI(RuntimeBase):
    """:class:`CNI` for asyncio: the same methods, as coroutines, with the same semantics.

    :param max_concurrency: at most this many verbs run at once (a burst of
        container starts queues instead of forking hundreds of plugins);
        ``None``: no limit. Other parameters: :class:`RuntimeBase`.
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
        max_concurrency: int | None = None,
        events: EventHook | None = None,
        tracing: bool | TracerProvider = True,
    ) -> None:
        super().__init__(
            plugin_dirs,
            cache_dir=cache_dir,
            executor=executor,
            timeout=timeout,
            owner=owner,
            rollback=rollback,
            locking=locking,
            durability=durability,
            events=events,
            tracing=tracing,
        )
        if max_concurrency is not None and max_concurrency < 1:
            raise InvalidArgumentError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.max_concurrency = max_concurrency
        # asyncio primitives belong to one event loop, and one AsyncCNI may
        # serve several (asyncio.run twice, a loop per thread): one each.
        self._slots_by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Semaphore
        ] = weakref.WeakKeyDictionary()

    def make_slots(self, limit: int) -> asyncio.Semaphore:
        """The semaphore that enforces ``max_concurrency`` in one event loop.

        A hook for instrumentation: a subclass may return a subclass of
        :class:`asyncio.Semaphore` (the burst benchmark times slot waits).
        """
        return asyncio.Semaphore(limit)

    def _slots(self) -> asyncio.Semaphore | None:
        if not self.max_concurrency:
            return None
        loop = asyncio.get_running_loop()
        slots = self._slots_by_loop.get(loop)
        if slots is None:
            slots = self._slots_by_loop[loop] = self.make_slots(self.max_concurrency)
        return slots

    async def _run(self, flow: Flow[_flows.T]) -> _flows.T:
        self._check_open()
        return await run_flow_async(flow, self.executor, self._observer)

    async def aclose(self) -> None:
        """Close the executor (its ``aclose()`` if it has one, else ``close()``);
        later verbs raise :class:`cnilib.ClosedError`. Idempotent."""
        if self._closed:
            return
        aclose = getattr(self.executor, "aclose", None)
        if callable(aclose):
            self._closed = True
            await aclose()
        else:
            self._close_executor()

    async def __aenter__(self) -> AsyncCNI:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @contextlib.asynccontextmanager
    async def _locked(
        self, network: str, rt: RuntimeConf | None
    ) -> AsyncIterator[AttachmentLock | None]:
        self._check_open()
        async with contextlib.AsyncExitStack() as stack:
            # Locks first: waiting for one network must not hold a slot that
            # another network's calls could use.
            lock = None
            if self.locks is not None:
                attachment = (rt.container_id, rt.ifname) if rt else None
                lock = await stack.enter_async_context(self.locks.ahold(network, attachment))
            slots = self._slots()
            if slots is not None:
                await stack.enter_async_context(slots)
            yield lock

    # -- network lists -------------------------------------------------------------
    @observed("add")
    async def add_network_list(self, conflist: NetworkConfigList, rt: RuntimeConf) -> Result | None:
        """ADD the attachment; see :meth:`CNI.add_network_list`."""
        rt.validate(conflist.name)
        async with self._locked(conflist.name, rt) as fd:
            return await self._run(_flows.add_flow(holding(self._ctx, fd), conflist, rt))

    @observed("check")
    async def check_network_list(self, conflist: NetworkConfigList, rt: RuntimeConf) -> None:
        """CHECK the attachment; see :meth:`CNI.check_network_list`."""
        rt.validate(conflist.name)
        async with self._locked(conflist.name, rt) as fd:
            await self._run(_flows.check_flow(holding(self._ctx, fd), conflist, rt))

    @observed("delete")
    async def delete_network_list(self, conflist: NetworkConfigList, rt: RuntimeConf) -> None:
        """DEL the attachment; see :meth:`CNI.delete_network_list`."""
        rt.validate(conflist.name)
        async with self._locked(conflist.name, rt) as fd:
            await self._run(_flows.delete_flow(holding(self._ctx, fd), conflist, rt))

    @observed("gc")
    async def gc_network_list(
        self,
        conflist: NetworkConfigList,
        valid_attachments: Iterable[GCAttachment | tuple[str, str]] | None = None,
        *,
        all_owners: bool = False,
        dry_run: bool = False,
    ) -> GCReport:
        """GC the network; see :meth:`CNI.gc_network_list`."""
        valid = gc_attachments(valid_attachments)
        async with self._locked(conflist.name, None):
            flow = gc_flow(self._ctx, conflist, valid, all_owners=all_owners, dry_run=dry_run)
            report = await self._run(flow)
            if not dry_run:
                self._tidy(conflist.name)
        return report

    @observed("status")
    async def status_network_list(self, conflist: NetworkConfigList) -> None:
        """STATUS; see :meth:`CNI.status_network_list`."""
        await self._run(_flows.status_flow(self._ctx, conflist))

    @observed("validate")
    async def validate_network_list(self, conflist: NetworkConfigList) -> tuple[str, ...]:
        """Validate; see :meth:`CNI.validate_network_list`."""
        return await self._run(_flows.validate_flow(self._ctx, conflist))

    async def cached_result(self, conflist: NetworkConfigList, rt: RuntimeConf) -> Result | None:
        """The cached result; see :meth:`CNI.cached_result`."""
        return await asyncio.to_thread(_flows.cached_result, self.cache, conflist, rt)

    async def cached_config(
        self, conflist: NetworkConfigList, rt: RuntimeConf
    ) -> tuple[bytes, RuntimeConf] | None:
        """The cached config; see :meth:`CNI.cached_config`."""
        return await asyncio.to_thread(_flows.cached_config, self.cache, conflist, rt)

    async def cached_attachments(self, container_id: str | None = None) -> list[CacheEntry]:
        """Every cached attachment; see :meth:`CNI.cached_attachments`."""
        return await asyncio.to_thread(self.cache.attachments, container_id)

    @observed("version", "version")
    async def get_version_info(self, plugin_type: str) -> PluginInfo:
        """VERSION of one plugin."""
        return await self._run(_flows.version_flow(self._ctx, plugin_type))

    # -- readiness (go-cni's Status) ---------------------------------------------------
    async def status_report(
        self,
        networks: Iterable[NetworkConfigList] | ConfDir,
        *,
        min_networks: int = 1,
        status: bool = True,
    ) -> _ready.StatusReport:
        """:meth:`CNI.status_report`; lookups run in a worker thread, STATUS as a coroutine."""
        self._check_open()
        conflists, problems = _ready.networks_of(networks, min_networks)
        lines = []
        for conflist in conflists:
            plugins = await asyncio.to_thread(
                _ready.find_plugins, self.executor, self.plugin_dirs, conflist
            )
            checked = status and _ready.runs_status(conflist, plugins)
            error: CNIError | None = None
            if checked:
                try:
                    await self.status_network_list(conflist)
                except CNIError as exc:
                    error = exc
            lines.append(_ready.network_status(conflist, plugins, checked, error))
        return _ready.StatusReport(tuple(lines), problems, min_networks)

    async def ready(
        self,
        networks: Iterable[NetworkConfigList] | ConfDir,
        *,
        min_networks: int = 1,
        status: bool = True,
    ) -> None:
        """:meth:`CNI.ready`: raise unless :meth:`status_report` says ready."""
        report = await self.status_report(networks, min_networks=min_networks, status=status)
        report.raise_for_status()

    # -- several networks at once -----------------------------------------------------
    @observed("setup_networks", "multi")
    async def setup_networks(
        self,
        container_id: str,
        netns: str,
        networks: Sequence[NetworkConfigList],
        *,
        ifnames: Sequence[str] | None = None,
        ifname_prefix: str = "eth",
        concurrent: bool = False,
        args: Sequence[tuple[str, str]] = (),
        capability_args: CapabilityArgs | None = None,
    ) -> tuple[Attached, ...]:
        """Attach every network; see :meth:`CNI.setup_networks` (``concurrent``:
        tasks). Cancelling it also removes the networks already attached."""
        planned = plan(container_id, netns, networks, ifnames, ifname_prefix, args, capability_args)
        outcomes: list[object] = [NOT_RUN] * len(planned)
        try:
            await _each(
                planned,
                lambda p: self.add_network_list(p.conflist, p.rt),
                outcomes,
                concurrent=concurrent,
                stop_on_failure=True,
            )
        except BaseException as interrupt:  # cancelled: undo what was attached, then go on
            await self._undo(planned, outcomes, interrupt)
            raise
        failure = first_failure(outcomes)
        if failure is not None:
            await self._undo(planned, outcomes, failure)
            raise failure
        return attached(planned, outcomes)

    async def _undo(
        self, planned: list[PlannedAttachment], outcomes: list[object], cause: BaseException
    ) -> None:
        done = succeeded(planned, outcomes)
        undo: list[object] = [NOT_RUN] * len(done)
        await _each(
            list(reversed(done)),
            lambda p: self.delete_network_list(p.conflist, p.rt),
            undo,
            concurrent=False,
        )
        note_undo(cause, done, undo)

    @observed("teardown_networks", "multi")
    async def teardown_networks(
        self,
        container_id: str,
        netns: str,
        networks: Sequence[NetworkConfigList],
        *,
        ifnames: Sequence[str] | None = None,
        ifname_prefix: str = "eth",
        concurrent: bool = False,
        args: Sequence[tuple[str, str]] = (),
        capability_args: CapabilityArgs | None = None,
    ) -> None:
        """DEL every network; see :meth:`CNI.teardown_networks`."""
        planned = plan(container_id, netns, networks, ifnames, ifname_prefix, args, capability_args)
        order = list(reversed(planned))
        outcomes: list[object] = [NOT_RUN] * len(order)
        await _each(
            order,
            lambda p: self.delete_network_list(p.conflist, p.rt),
            outcomes,
            concurrent=concurrent,
        )
        raise_failures("teardown", container_id, outcomes)

    @observed("check_networks", "multi")
    async def check_networks(
        self,
        container_id: str,
        netns: str,
        networks: Sequence[NetworkConfigList],
        *,
        ifnames: Sequence[str] | None = None,
        ifname_prefix: str = "eth",
        args: Sequence[tuple[str, str]] = (),
        capability_args: CapabilityArgs | None = None,
    ) -> None:
        """CHECK every network; see :meth:`CNI.check_networks`."""
        planned = plan(container_id, netns, networks, ifnames, ifname_prefix, args, capability_args)
        outcomes: list[object] = [NOT_RUN] * len(planned)
        await _each(
            planned, lambda p: self.check_network_list(p.conflist, p.rt), outcomes, concurrent=False
        )
        raise_failures("check", container_id, outcomes)

    # -- single plugins ----------------------------------------------------------------
    @observed("add", "plugin")
    async def add_network(self, plugin: PluginConf, rt: RuntimeConf) -> Result | None:
        """ADD with one plugin; see :meth:`CNI.add_network`."""
        conflist = as_list(plugin)
        rt.validate(conflist.name)
        async with self._locked(conflist.name, rt) as fd:
            return await self._run(_flows.add_flow(holding(self._single_ctx, fd), conflist, rt))

    @observed("check", "plugin")
    async def check_network(self, plugin: PluginConf, rt: RuntimeConf) -> None:
        """CHECK with one plugin."""
        conflist = as_list(plugin)
        rt.validate(conflist.name)
        async with self._locked(conflist.name, rt) as fd:
            await self._run(_flows.check_flow(holding(self._single_ctx, fd), conflist, rt))

    @observed("delete", "plugin")
    async def delete_network(self, plugin: PluginConf, rt: RuntimeConf) -> None:
        """DEL with one plugin."""
        conflist = as_list(plugin)
        rt.validate(conflist.name)
        async with self._locked(conflist.name, rt) as fd:
            await self._run(_flows.delete_flow(holding(self._single_ctx, fd), conflist, rt))

    async def cached_network_result(self, plugin: PluginConf, rt: RuntimeConf) -> Result | None:
        """The cached result of a single-plugin attachment."""
        return await asyncio.to_thread(_flows.cached_result, self.cache, as_list(plugin), rt)


async def _each(
    planned: list[PlannedAttachment],
    operation: Callable[[PlannedAttachment], Awaitable[object]],
    outcomes: list[object],
    *,
    concurrent: bool,
    stop_on_failure: bool = False,
) -> None:
    """Run ``operation`` on each item (in order, or as tasks), filling
    ``outcomes`` (value or CNIError) as each finishes, so that a cancelled
    caller knows what was done. Serially, ``stop_on_failure`` stops early."""

    async def attempt(item: PlannedAttachment) -> object:
        try:
            return await operation(item)
        except CNIError as exc:
            return exc

    if not concurrent or len(planned) < 2:
        for index, item in enumerate(planned):
            outcomes[index] = await attempt(item)
            if stop_on_failure and isinstance(outcomes[index], CNIError):
                return
        return
    tasks = [asyncio.ensure_future(attempt(item)) for item in planned]
    try:
        await asyncio.wait(tasks)
    finally:
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()  # each cancelled ADD rolls itself back
        if pending:
            await asyncio.wait(pending)
        for index, task in enumerate(tasks):
            if not task.cancelled() and task.exception() is None:
                outcomes[index] = task.result()
    # Anything but a CNIError (returned as an outcome) is a bug or a system
    # failure: raise it, as the serial path and the sync driver do.
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
