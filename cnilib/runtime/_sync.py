"""``CNI``: the synchronous runtime API (Go ``libcni.CNIConfig``)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed, wait

from cnilib._json import CapabilityArgs
from cnilib.cache import AttachmentLock, CacheEntry
from cnilib.config import ConfDir, NetworkConfigList, PluginConf
from cnilib.errors import CNIError, OperationCancelledError
from cnilib.invoke import Executor, Invocation, PluginInfo
from cnilib.results import Result
from cnilib.runtime import _flows, _ready
from cnilib.runtime._base import (
    NOT_RUN,
    Attached,
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

__all__ = ["CNI", "resume", "run_flow"]


def run_flow(
    flow: Flow[_flows.T], executor: Executor, observer: Observer | None = None
) -> _flows.T:
    """Drive a flow to completion, carrying out each invocation with ``executor``.

    On Ctrl-C the flow is told (``OperationCancelledError``) and its cleanup
    (ADD's rollback) is driven before the interrupt goes on. ``observer``
    reports each plugin call (events, spans).
    """
    try:
        invocation = next(flow)
        while True:
            try:
                with watched(observer, invocation, executor):
                    stdout = executor.exec(invocation)
            except CNIError as exc:
                invocation = flow.throw(exc)
            except KeyboardInterrupt:
                _unwind(flow, invocation, executor, observer)
                raise
            else:
                invocation = flow.send(stdout)
    except StopIteration as stop:
        value: _flows.T = stop.value
        return value


def _unwind(
    flow: Flow[object], invocation: Invocation, executor: Executor, observer: Observer | None
) -> None:
    """Let an interrupted flow finish its own cleanup (ADD's rollback), then stop."""
    cancelled = OperationCancelledError(f"{invocation.describe()} was interrupted")
    with contextlib.suppress(CNIError):
        run_flow(resume(flow, cancelled), executor, observer)


def resume(flow: Flow[_flows.T], error: CNIError) -> Flow[_flows.T]:
    """A flow that continues ``flow`` after throwing ``error`` into it."""
    step: Callable[[], Invocation] = functools.partial(flow.throw, error)
    while True:
        try:
            invocation = step()
        except StopIteration as stop:  # caught here: PEP 479 forbids letting it out
            value: _flows.T = stop.value
            return value
        try:
            stdout = yield invocation
        except CNIError as exc:
            step = functools.partial(flow.throw, exc)
        else:
            step = functools.partial(flow.send, stdout)


class CNI(RuntimeBase):
    """Run CNI plugins for a container runtime (parameters: :class:`RuntimeBase`).

    Every verb on an attachment holds its file locks (see
    :mod:`cnilib.cache._locks`), so threads and processes sharing a cache
    directory never run ADD/CHECK/DEL on one attachment at once, nor GC of
    a network during an ADD or DEL on it. Methods raise :class:`cnilib.CNIError`
    subclasses only.
    """

    def _run(self, flow: Flow[_flows.T]) -> _flows.T:
        self._check_open()
        return run_flow(flow, self.executor, self._observer)

    def close(self) -> None:
        """Close the executor (an in-process one ends its idle threads); later
        verbs raise :class:`cnilib.ClosedError`. Idempotent."""
        self._close_executor()

    def __enter__(self) -> CNI:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _locked(self, network: str, rt: RuntimeConf | None) -> Iterator[AttachmentLock | None]:
        self._check_open()
        if self.locks is None:
            yield None
            return
        with self.locks.hold(network, (rt.container_id, rt.ifname) if rt else None) as lock:
            yield lock

    # -- network lists -------------------------------------------------------------
    @observed("add")
    def add_network_list(self, conflist: NetworkConfigList, rt: RuntimeConf) -> Result | None:
        """ADD the attachment; return the last plugin's result (its own version).

        On failure the plugins that ran are rolled back (``rollback=True``).
        """
        rt.validate(conflist.name)
        with self._locked(conflist.name, rt) as fd:
            return self._run(_flows.add_flow(holding(self._ctx, fd), conflist, rt))

    @observed("check")
    def check_network_list(self, conflist: NetworkConfigList, rt: RuntimeConf) -> None:
        """CHECK the attachment against the cached result."""
        rt.validate(conflist.name)
        with self._locked(conflist.name, rt) as fd:
            self._run(_flows.check_flow(holding(self._ctx, fd), conflist, rt))

    @observed("delete")
    def delete_network_list(self, conflist: NetworkConfigList, rt: RuntimeConf) -> None:
        """DEL the attachment (plugins in reverse) and drop its cache entry."""
        rt.validate(conflist.name)
        with self._locked(conflist.name, rt) as fd:
            self._run(_flows.delete_flow(holding(self._ctx, fd), conflist, rt))

    @observed("gc")
    def gc_network_list(
        self,
        conflist: NetworkConfigList,
        valid_attachments: Iterable[GCAttachment | tuple[str, str]] | None = None,
        *,
        all_owners: bool = False,
        dry_run: bool = False,
    ) -> GCReport:
        """GC the network, keeping ``valid_attachments`` ((container ID, ifname) pairs).

        ``None`` keeps nothing: every cached attachment of the network is
        deleted. With an ``owner`` set, only that owner's entries are touched
        unless ``all_owners``; ``dry_run`` only reports.
        """
        valid = gc_attachments(valid_attachments)
        with self._locked(conflist.name, None):
            report = self._run(
                gc_flow(self._ctx, conflist, valid, all_owners=all_owners, dry_run=dry_run)
            )
            if not dry_run:
                self._tidy(conflist.name)
        return report

    @observed("status")
    def status_network_list(self, conflist: NetworkConfigList) -> None:
        """STATUS: raise the first plugin's error (code 50/51) if one is not ready."""
        self._run(_flows.status_flow(self._ctx, conflist))

    @observed("validate")
    def validate_network_list(self, conflist: NetworkConfigList) -> tuple[str, ...]:
        """Check plugins exist and support the list's version; return capabilities."""
        return self._run(_flows.validate_flow(self._ctx, conflist))

    def cached_result(self, conflist: NetworkConfigList, rt: RuntimeConf) -> Result | None:
        """The cached result, converted to the list's version; ``None`` if none."""
        return _flows.cached_result(self.cache, conflist, rt)

    def cached_config(
        self, conflist: NetworkConfigList, rt: RuntimeConf
    ) -> tuple[bytes, RuntimeConf] | None:
        """The cached config bytes and the runtime conf they were added with."""
        return _flows.cached_config(self.cache, conflist, rt)

    def cached_attachments(self, container_id: str | None = None) -> list[CacheEntry]:
        """Every cached attachment, optionally of one container (sorted by file name)."""
        return self.cache.attachments(container_id)

    @observed("version", "version")
    def get_version_info(self, plugin_type: str) -> PluginInfo:
        """Ask a plugin which spec versions it supports."""
        return self._run(_flows.version_flow(self._ctx, plugin_type))

    # -- readiness (go-cni's Status) ---------------------------------------------------
    def status_report(
        self,
        networks: Iterable[NetworkConfigList] | ConfDir,
        *,
        min_networks: int = 1,
        status: bool = True,
    ) -> _ready.StatusReport:
        """Which networks are loaded, whether the executor finds each of their
        plugins (and IPAM plugins), and, for spec 1.1 lists whose plugins are
        all found, what STATUS answers (``status=False`` skips it). A closed
        runtime raises :class:`cnilib.ClosedError`."""
        self._check_open()
        conflists, problems = _ready.networks_of(networks, min_networks)
        lines = []
        for conflist in conflists:
            plugins = _ready.find_plugins(self.executor, self.plugin_dirs, conflist)
            checked = status and _ready.runs_status(conflist, plugins)
            error: CNIError | None = None
            if checked:
                try:
                    self.status_network_list(conflist)
                except CNIError as exc:
                    error = exc
            lines.append(_ready.network_status(conflist, plugins, checked, error))
        return _ready.StatusReport(tuple(lines), problems, min_networks)

    def ready(
        self,
        networks: Iterable[NetworkConfigList] | ConfDir,
        *,
        min_networks: int = 1,
        status: bool = True,
    ) -> None:
        """Raise unless :meth:`status_report` says ready: the one error, or a
        :class:`cnilib.CNIErrorGroup` of several (go-cni ``Status()``)."""
        self.status_report(networks, min_networks=min_networks, status=status).raise_for_status()

    # -- several networks at once (go-cni's Setup / Remove / Check) ---------------
    @observed("setup_networks", "multi")
    def setup_networks(
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
        """Attach every network to one container; return results in ``networks`` order.

        Interfaces are ``ifnames`` or ``<ifname_prefix>0``, ``1``, …. With
        ``concurrent`` the ADDs run in threads; otherwise they stop at the
        first failure. If any ADD fails (or Ctrl-C interrupts), the networks
        already attached are removed again (a failed ADD rolls itself back)
        and the first failure is raised, with notes saying what was undone.
        """
        planned = plan(container_id, netns, networks, ifnames, ifname_prefix, args, capability_args)
        outcomes: list[object] = [NOT_RUN] * len(planned)
        try:
            self._each(
                planned,
                lambda p: self.add_network_list(p.conflist, p.rt),
                outcomes,
                concurrent=concurrent,
                stop_on_failure=True,
            )
        except BaseException as interrupt:  # Ctrl-C: undo what was attached, then go on
            self._undo(planned, outcomes, interrupt)
            raise
        failure = first_failure(outcomes)
        if failure is not None:
            self._undo(planned, outcomes, failure)
            raise failure
        return attached(planned, outcomes)

    def _undo(
        self, planned: list[PlannedAttachment], outcomes: list[object], cause: BaseException
    ) -> None:
        done = succeeded(planned, outcomes)
        undo: list[object] = [NOT_RUN] * len(done)
        self._each(
            list(reversed(done)),
            lambda p: self.delete_network_list(p.conflist, p.rt),
            undo,
            concurrent=False,
        )
        note_undo(cause, done, undo)

    @observed("teardown_networks", "multi")
    def teardown_networks(
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
        """DEL every network (last first); all are attempted, failures raised together.

        ``args`` and ``capability_args`` are sent as given, completed with the
        keys each attachment's ADD recorded in the cache (so a DEL after
        ``setup_networks(..., capability_args=...)`` still tells portmap
        which ports to release).
        """
        planned = plan(container_id, netns, networks, ifnames, ifname_prefix, args, capability_args)
        order = list(reversed(planned))
        outcomes: list[object] = [NOT_RUN] * len(order)
        self._each(
            order,
            lambda p: self.delete_network_list(p.conflist, p.rt),
            outcomes,
            concurrent=concurrent,
        )
        raise_failures("teardown", container_id, outcomes)

    @observed("check_networks", "multi")
    def check_networks(
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
        """CHECK every network; all are checked, failures raised together.

        ``args`` and ``capability_args`` as for :meth:`teardown_networks`.
        """
        planned = plan(container_id, netns, networks, ifnames, ifname_prefix, args, capability_args)
        outcomes: list[object] = [NOT_RUN] * len(planned)
        self._each(
            planned, lambda p: self.check_network_list(p.conflist, p.rt), outcomes, concurrent=False
        )
        raise_failures("check", container_id, outcomes)

    @staticmethod
    def _each(
        planned: list[PlannedAttachment],
        operation: Callable[[PlannedAttachment], object],
        outcomes: list[object],
        *,
        concurrent: bool,
        stop_on_failure: bool = False,
    ) -> None:
        """Run ``operation`` on each item, filling ``outcomes`` (value or CNIError)
        as each finishes, so an interrupted caller knows what was done.

        Serially, ``stop_on_failure`` leaves the rest ``NOT_RUN``.
        """

        def attempt(item: PlannedAttachment) -> object:
            try:
                return operation(item)
            except CNIError as exc:
                return exc

        if not concurrent or len(planned) < 2:
            for index, item in enumerate(planned):
                outcomes[index] = attempt(item)
                if stop_on_failure and isinstance(outcomes[index], CNIError):
                    return
            return
        with ThreadPoolExecutor(max_workers=len(planned), thread_name_prefix="cnilib") as pool:
            # Each in a copy of this context: the ADDs nest in the caller's operation and span.
            futures = {
                pool.submit(contextvars.copy_context().run, attempt, item): index
                for index, item in enumerate(planned)
            }
            try:
                for future in as_completed(futures):
                    outcomes[futures[future]] = future.result()
            finally:
                # Interrupted: the running ADDs finish (or roll back) on their own; record them.
                wait(futures)
                for future, index in futures.items():
                    if not future.cancelled() and future.exception() is None:
                        outcomes[index] = future.result()

    # -- single plugins (deprecated .conf files) ---------------------------------
    @observed("add", "plugin")
    def add_network(self, plugin: PluginConf, rt: RuntimeConf) -> Result | None:
        """ADD with one plugin; its own ``name``/``cniVersion``; errors unwrapped."""
        conflist = as_list(plugin)
        rt.validate(conflist.name)
        with self._locked(conflist.name, rt) as fd:
            return self._run(_flows.add_flow(holding(self._single_ctx, fd), conflist, rt))

    @observed("check", "plugin")
    def check_network(self, plugin: PluginConf, rt: RuntimeConf) -> None:
        """CHECK with one plugin."""
        conflist = as_list(plugin)
        rt.validate(conflist.name)
        with self._locked(conflist.name, rt) as fd:
            self._run(_flows.check_flow(holding(self._single_ctx, fd), conflist, rt))

    @observed("delete", "plugin")
    def delete_network(self, plugin: PluginConf, rt: RuntimeConf) -> None:
        """DEL with one plugin."""
        conflist = as_list(plugin)
        rt.validate(conflist.name)
        with self._locked(conflist.name, rt) as fd:
            self._run(_flows.delete_flow(holding(self._single_ctx, fd), conflist, rt))

    def cached_network_result(self, plugin: PluginConf, rt: RuntimeConf) -> Result | None:
        """The cached result of a single-plugin attachment."""
        return _flows.cached_result(self.cache, as_list(plugin), rt)
