"""The network-list algorithms, written once, without I/O to plugins.

Each flow is a generator: it yields an :class:`~cnilib.invoke.Invocation`,
receives the plugin's stdout through ``send()``, or the plugin's error
through ``throw()``. A driver (``CNI`` today, an asyncio one tomorrow)
carries the invocations out; no driver holds any CNI logic.

Cache reads and writes are small local file operations done by the flows
themselves through :class:`~cnilib.cache.FileCache`.

Semantics follow Go libcni (``libcni/api.go``); deliberate differences are
marked ``Divergence:``.
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from typing import TypeVar

import attrs

from cnilib import spec
from cnilib._log import get_logger
from cnilib.cache import AttachmentLock, CacheEntry, FileCache, LockDir
from cnilib.config import NetworkConfigList, PluginConf, request_config
from cnilib.errors import (
    CacheCollisionError,
    CacheError,
    CheckNotSupportedError,
    CNIError,
    OperationCancelledError,
    PluginError,
    PluginNotFoundError,
    PluginStartError,
    RollbackOutcome,
)
from cnilib.invoke import Command, Invocation, _versions
from cnilib.invoke._invocation import PluginInfo
from cnilib.results import Result, decode_result
from cnilib.runtime._conf import RuntimeConf

__all__ = [
    "Flow",
    "FlowContext",
    "add_flow",
    "cached_config",
    "cached_result",
    "check_flow",
    "delete_flow",
    "status_flow",
    "validate_flow",
    "version_flow",
]

log = get_logger("cnilib.runtime")

T = TypeVar("T")
Flow = Generator[Invocation, bytes, T]
"""A flow yields invocations, is sent stdout, and returns its value."""


@attrs.frozen
class FlowContext:
    """What every flow needs besides its arguments."""

    cache: FileCache
    path: tuple[str, ...]
    timeout: float | None = None
    wrap_errors: bool = True
    """Prefix plugin errors with ``plugin type="X" failed (verb): `` (lists do;
    libcni's single-plugin API does not)."""
    rollback: bool = True
    """Transactional ADD: undo the plugins that ran when a later one fails."""
    owner: str | None = None
    """Written into cache entries; GC deletes only entries of its own owner."""
    locks: LockDir | None = None
    """For GC, which locks each stale attachment before its DEL."""
    lock: AttachmentLock | None = None
    """The held attachment lock, which records each plugin process of the call."""


def _prefix(plugin: PluginConf, command: Command) -> str:
    named = f' name="{plugin.name}"' if plugin.name else ""
    return f'plugin type="{plugin.type}"{named} failed ({command.verb}): '


def _invocation(
    ctx: FlowContext,
    command: Command,
    plugin: PluginConf,
    stdin: bytes,
    rt: RuntimeConf | None = None,
) -> Invocation:
    return Invocation(
        command=command,
        plugin_type=plugin.type,
        stdin=stdin,
        container_id=rt.container_id if rt else "",
        netns=rt.netns if rt else "",
        ifname=rt.ifname if rt else "",
        args=rt.args if rt else (),
        path=ctx.path,
        plugin_name=plugin.name,
        timeout=ctx.timeout,
        on_spawn=(
            None
            if ctx.lock is None
            else functools.partial(ctx.lock.record, call=f'plugin "{plugin.type}" ({command})')
        ),
    )


def _call(invocation: Invocation, prefix: str | None) -> Generator[Invocation, bytes, bytes]:
    """Yield one invocation; add ``prefix`` to its error, keeping type and code."""
    try:
        stdout = yield invocation
    except CNIError as exc:
        if prefix is None:
            raise
        raise exc.with_context(prefix) from exc
    return stdout


def _plugin_request(
    conflist: NetworkConfigList,
    plugin: PluginConf,
    rt: RuntimeConf,
    prev: Result | None,
) -> bytes:
    return request_config(
        plugin,
        name=conflist.name,
        cni_version=conflist.cni_version,
        prev_result=prev.to_object() if prev is not None else None,
        capability_args=rt.capability_args,
    )


def cached_result(cache: FileCache, conflist: NetworkConfigList, rt: RuntimeConf) -> Result | None:
    """The cached result converted to the list's version; ``None`` if none is cached."""
    rt.validate(conflist.name)
    entry = cache.load(conflist.name, rt.container_id, rt.ifname)
    if entry is None:
        return None
    return _result_of(entry, cache.path(conflist.name, rt.container_id, rt.ifname), conflist)


def _result_of(entry: CacheEntry, path: str, conflist: NetworkConfigList) -> Result:
    """A loaded entry's result, converted to the list's version."""
    if entry.result is None:
        raise CacheError(
            "cache entry has no result: the ADD that wrote it did not finish", path=path
        )
    try:
        result = decode_result(entry.result, default_version="0.1.0")
    except CNIError as exc:
        raise CacheError(f"cached result is not a valid result: {exc}", path=path) from exc
    try:
        return result.convert_to(conflist.cni_version)
    except CNIError as exc:
        raise exc.with_context(
            f'failed to convert cached result to config version "{conflist.cni_version}": '
        ) from exc


def _entry(
    ctx: FlowContext, conflist: NetworkConfigList, rt: RuntimeConf, result: Result | None
) -> CacheEntry:
    return CacheEntry(
        network_name=conflist.name,
        container_id=rt.container_id,
        ifname=rt.ifname,
        config=conflist.bytes,
        netns=rt.netns,
        cni_args=rt.args,
        capability_args=rt.capability_args,
        result=result.to_object() if result is not None else None,
        owner=ctx.owner,
    )


def _save(ctx: FlowContext, entry: CacheEntry) -> None:
    try:
        ctx.cache.save(entry, durable=entry.result is not None)
    except CacheError as exc:
        raise exc.with_context(
            f'failed to set network "{entry.network_name}" cached result: '
        ) from exc


def cached_config(
    cache: FileCache, conflist: NetworkConfigList, rt: RuntimeConf
) -> tuple[bytes, RuntimeConf] | None:
    """The cached config bytes and the runtime conf they were added with (Go
    ``GetNetworkListCachedConfig``): cached CNI_ARGS if any, cached capability args."""
    rt.validate(conflist.name)
    entry = cache.load(conflist.name, rt.container_id, rt.ifname)
    if entry is None:
        return None
    if entry.legacy:
        raise CacheError(
            f'read cached network "{conflist.name}" config has wrong kind: (legacy result)',
            path=cache.path(conflist.name, rt.container_id, rt.ifname),
        )
    cached_rt = RuntimeConf(
        container_id=rt.container_id,
        netns=rt.netns,
        ifname=rt.ifname,
        args=entry.cni_args or rt.args,
        capability_args=entry.capability_args,
    )
    return entry.config, cached_rt


def add_flow(
    ctx: FlowContext, conflist: NetworkConfigList, rt: RuntimeConf
) -> Generator[Invocation, bytes, Result | None]:
    """ADD: plugins in order, each getting the previous one's result; cache the last.

    Divergence (crash safety): a *pending* entry, without a result, is cached
    before the first plugin runs and completed after the last, so a runtime
    killed half-way leaves an entry that DEL and GC can clean up from.

    Divergence (transactional ADD, ``ctx.rollback``): when plugin *k* fails,
    plugins *k-1 … 0* get DEL in reverse, each with the result it produced,
    and the entry is removed; the failure is raised with ``.rollback`` set.
    Plugin *k* gets DEL too unless it answered with an error object (a
    plugin that timed out, crashed or printed garbage may have left state).
    With ``ctx.rollback`` off, nothing is undone and no entry is kept (libcni).
    """
    rt.validate(conflist.name)
    # An entry already there (a retry after an interrupted ADD, say) is put
    # back if this ADD fails: it is what lets DEL and GC find the old state.
    try:
        earlier = ctx.cache.load(conflist.name, rt.container_id, rt.ifname)
    except CacheCollisionError:
        raise  # never overwrite another attachment's entry
    except CNIError:
        earlier = None
    _save(ctx, _entry(ctx, conflist, rt, None))
    results: list[Result | None] = []  # per plugin that ran, its result
    try:
        for plugin in conflist.plugins:
            prefix = _prefix(plugin, Command.ADD) if ctx.wrap_errors else None
            prev = results[-1] if results else None
            stdin = _plugin_request(conflist, plugin, rt, prev)
            try:
                stdout = yield from _call(_invocation(ctx, Command.ADD, plugin, stdin, rt), prefix)
            except (PluginError, PluginNotFoundError, PluginStartError):
                raise  # answered cleanly, or never ran: nothing of its own to undo
            except CNIError:
                results.append(None)  # killed or crashed mid-ADD: undo it too
                raise
            results.append(None)
            try:
                results[-1] = decode_result(stdout, default_version=conflist.cni_version)
            except CNIError as exc:
                raise (exc.with_context(prefix) if prefix else exc) from exc
        final = results[-1] if results else None
        _save(ctx, _entry(ctx, conflist, rt, final))
    except CNIError as failure:
        if not ctx.rollback:
            if isinstance(failure, OperationCancelledError):
                raise  # cancelled mid-plugin: state may exist; the pending entry stays
            _restore(ctx.cache, conflist, rt, earlier, undone=False)
            raise
        outcome = yield from _rollback(ctx, conflist, rt, results)
        if outcome.clean:
            _restore(ctx.cache, conflist, rt, earlier, undone=bool(outcome.deleted))
        failure.rollback = outcome
        failure.add_note(outcome.describe())
        raise
    return final


def _rollback(
    ctx: FlowContext,
    conflist: NetworkConfigList,
    rt: RuntimeConf,
    results: list[Result | None],
) -> Generator[Invocation, bytes, RollbackOutcome]:
    """DEL the plugins that ran, last first; collect failures, never stop early."""
    deleted: list[str] = []
    failures: list[CNIError] = []
    for index in reversed(range(len(results))):
        plugin = conflist.plugins[index]
        # Each gets the result it produced; one that produced none, what it was given.
        prev = (
            results[index]
            if results[index] is not None
            else (results[index - 1] if index else None)
        )
        stdin = _plugin_request(conflist, plugin, rt, prev)
        try:
            yield from _call(
                _invocation(ctx, Command.DEL, plugin, stdin, rt), _prefix(plugin, Command.DEL)
            )
        except OperationCancelledError:
            raise  # cancelled again while undoing: give up, the pending entry stays
        except CNIError as exc:
            failures.append(exc)
        else:
            deleted.append(plugin.type)
    return RollbackOutcome(deleted=list(reversed(deleted)), failures=failures)


def delete_flow(
    ctx: FlowContext, conflist: NetworkConfigList, rt: RuntimeConf
) -> Generator[Invocation, bytes, None]:
    """DEL: plugins in reverse, each getting the cached result; then drop the entry.

    An unusable cache entry is removed and DEL goes on without a prevResult,
    as libcni does: DEL must be able to clean up whatever state is left.

    Divergence: CNI_ARGS keys and capability args the caller does not give
    are taken from the cache entry, as the ADD recorded them (libcni sends
    only the caller's, so a runtime that forgets its port mappings leaves
    portmap's rules behind).
    """
    rt.validate(conflist.name)
    version = spec.parse_version(conflist.cni_version)
    entry = _entry_for_delete(ctx.cache, conflist, rt)
    rt = with_recorded_args(rt, entry)
    prev: Result | None = None
    if spec.has_check(version) and entry is not None and not entry.pending:
        prev = _prev_for_delete(ctx.cache, conflist, rt, entry)
    for plugin in reversed(conflist.plugins):
        prefix = _prefix(plugin, Command.DEL) if ctx.wrap_errors else None
        stdin = _plugin_request(conflist, plugin, rt, prev)
        yield from _call(_invocation(ctx, Command.DEL, plugin, stdin, rt), prefix)
    _forget(ctx.cache, conflist, rt)


def with_recorded_args(rt: RuntimeConf, entry: CacheEntry | None) -> RuntimeConf:
    """``rt`` completed from ``entry``: each capability arg and CNI_ARGS key the
    ADD recorded and the caller did not give now (the caller's win)."""
    if entry is None or entry.legacy:
        return rt
    if entry.cni_args:
        given = {key for key, _ in rt.args}
        kept = tuple(pair for pair in entry.cni_args if pair[0] not in given)
        if kept:
            rt = attrs.evolve(rt, args=kept + rt.args)
    missing = {k: v for k, v in entry.capability_args.items() if k not in rt.capability_args}
    if missing:
        rt = attrs.evolve(rt, capability_args={**missing, **rt.capability_args})
    return rt


def _entry_for_delete(
    cache: FileCache, conflist: NetworkConfigList, rt: RuntimeConf
) -> CacheEntry | None:
    """The attachment's entry for DEL. A corrupt one is dropped at once, as
    libcni does, so it cannot block DEL forever; another attachment's is
    neither used nor removed."""
    try:
        return cache.load(conflist.name, rt.container_id, rt.ifname)
    except CacheCollisionError as exc:
        log.warning("DEL %s/%s: %s", conflist.name, rt.container_id, exc)
        return None  # not ours: neither used nor removed
    except CNIError as exc:
        log.warning(
            "DEL %s/%s: discarding unusable cache entry: %s", conflist.name, rt.container_id, exc
        )
        _forget(cache, conflist, rt)
        return None


def _prev_for_delete(
    cache: FileCache, conflist: NetworkConfigList, rt: RuntimeConf, entry: CacheEntry
) -> Result | None:
    """DEL's prevResult from a complete entry; an unusable result is dropped
    with its entry. (A pending entry, an interrupted ADD, gives none but stays
    until the DELs succeed, so a failed DEL can be retried.)"""
    try:
        return _result_of(entry, cache.path(conflist.name, rt.container_id, rt.ifname), conflist)
    except CNIError as exc:
        log.warning(
            "DEL %s/%s: discarding unusable cache entry: %s", conflist.name, rt.container_id, exc
        )
        _forget(cache, conflist, rt)
        return None


def _restore(
    cache: FileCache,
    conflist: NetworkConfigList,
    rt: RuntimeConf,
    earlier: CacheEntry | None,
    *,
    undone: bool,
) -> None:
    """After a failed ADD that left nothing of its own: leave the cache as it should be.

    No earlier entry: remove ours. An earlier entry (an interrupted ADD this
    one retried, or a duplicate ADD of a live attachment): put it back, it
    still describes the attachment, as Go keeps it. Except when this ADD's
    rollback DELed plugins (``undone``) over an earlier *complete* entry:
    those DELs may have removed part of the earlier attachment, so its result
    can no longer be trusted; our pending entry stays, for a DEL or GC. A
    legacy entry (a bare pre-0.4 result) names no attachment and cannot be
    written back; our pending entry, which does, stays instead.
    """
    if earlier is None:
        _forget(cache, conflist, rt)
    elif not earlier.legacy and (earlier.pending or not undone):
        try:
            cache.save(earlier, durable=not earlier.pending)
        except CacheError as exc:
            log.warning("could not restore the earlier cache entry: %s", exc)


def _forget(cache: FileCache, conflist: NetworkConfigList, rt: RuntimeConf) -> None:
    try:
        cache.delete(conflist.name, rt.container_id, rt.ifname)
    except CacheError as exc:
        log.warning("could not remove cache entry: %s", exc)


def check_flow(
    ctx: FlowContext, conflist: NetworkConfigList, rt: RuntimeConf
) -> Generator[Invocation, bytes, None]:
    """CHECK: plugins in order, each getting the cached result.

    Divergences: errors name the plugin (``plugin type="X" failed (check):``);
    libcni returns them bare. Type and code are unchanged. CNI_ARGS keys and
    capability args the caller does not give are taken from the cache entry,
    as for DEL.
    """
    rt.validate(conflist.name)
    version = spec.parse_version(conflist.cni_version)
    if not spec.has_check(version):
        raise CheckNotSupportedError(conflist.cni_version)
    if conflist.disable_check:
        return
    try:
        entry = ctx.cache.load(conflist.name, rt.container_id, rt.ifname)
        path = ctx.cache.path(conflist.name, rt.container_id, rt.ifname)
        prev = None if entry is None else _result_of(entry, path, conflist)
    except CNIError as exc:
        raise exc.with_context(f'failed to get network "{conflist.name}" cached result: ') from exc
    rt = with_recorded_args(rt, entry)
    for plugin in conflist.plugins:
        prefix = _prefix(plugin, Command.CHECK) if ctx.wrap_errors else None
        stdin = _plugin_request(conflist, plugin, rt, prev)
        yield from _call(_invocation(ctx, Command.CHECK, plugin, stdin, rt), prefix)


def status_flow(
    ctx: FlowContext, conflist: NetworkConfigList
) -> Generator[Invocation, bytes, None]:
    """STATUS (1.1): each plugin in order; the first error is raised with its code.

    Divergence: the error names the plugin (``plugin type="X" failed
    (status):``); libcni returns it bare. Type and code (50/51) are unchanged.
    """
    try:
        version = spec.parse_version(conflist.cni_version)
    except CNIError:
        return  # libcni: an unparseable version makes STATUS a no-op success
    if not spec.has_status(version):
        return
    for plugin in conflist.plugins:
        stdin = request_config(plugin, name=conflist.name, cni_version=conflist.cni_version)
        prefix = _prefix(plugin, Command.STATUS) if ctx.wrap_errors else None
        yield from _call(_invocation(ctx, Command.STATUS, plugin, stdin), prefix)


def version_flow(ctx: FlowContext, plugin_type: str) -> Generator[Invocation, bytes, PluginInfo]:
    """VERSION of one plugin (Go ``GetVersionInfo``)."""
    return _versions.version_flow(plugin_type, ctx.path, ctx.timeout)


def validate_flow(
    ctx: FlowContext, conflist: NetworkConfigList
) -> Generator[Invocation, bytes, tuple[str, ...]]:
    """Check every plugin exists and supports the list's version; return the
    enabled capabilities. Every problem is reported, not just the first."""
    return _versions.validate_flow(conflist, ctx.path, ctx.timeout)
