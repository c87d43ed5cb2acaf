"""``CNI``: the synchronous runtime API (Go ``libcni.CNIConfig``)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence

import attrs

from cnilib.cache import DEFAULT_CACHE_DIR, CacheEntry, FileCache
from cnilib.config import NetworkConfigList, PluginConf
from cnilib.errors import CNIError
from cnilib.invoke import DEFAULT_TIMEOUT, Executor, PluginInfo, SubprocessExecutor
from cnilib.results import Result
from cnilib.runtime import _flows
from cnilib.runtime._conf import GCAttachment, RuntimeConf
from cnilib.runtime._flows import Flow, FlowContext

__all__ = ["CNI", "run_flow"]


def run_flow(flow: Flow[_flows.T], executor: Executor) -> _flows.T:
    """Drive a flow to completion, carrying out each invocation with ``executor``."""
    try:
        invocation = next(flow)
        while True:
            try:
                stdout = executor.exec(invocation)
            except CNIError as exc:
                invocation = flow.throw(exc)
            else:
                invocation = flow.send(stdout)
    except StopIteration as stop:
        value: _flows.T = stop.value
        return value


def _as_list(plugin: PluginConf) -> NetworkConfigList:
    """A single plugin seen as a one-entry list with its own name and version."""
    return NetworkConfigList(
        name=plugin.name or "",
        cni_version=plugin.cni_version or "",
        plugins=(plugin,),
        bytes=plugin.bytes,
        raw=plugin.raw,
        source=plugin.source,
    )


def _attachments(valid: Iterable[GCAttachment | tuple[str, str]]) -> list[GCAttachment]:
    return [a if isinstance(a, GCAttachment) else GCAttachment(a[0], a[1]) for a in valid]


class CNI:
    """Run CNI plugins for a container runtime.

    :param plugin_dirs: directories searched for plugin executables (``CNI_PATH``).
    :param cache_dir: where results are cached (``<cache_dir>/results``).
    :param executor: how plugins run; default :class:`SubprocessExecutor`.
    :param timeout: deadline in seconds for each plugin call, after which the
        plugin's process group is killed; ``None`` for no deadline.

    Methods raise :class:`cnilib.CNIError` subclasses only.
    """

    def __init__(
        self,
        plugin_dirs: Sequence[str | os.PathLike[str]] = (),
        *,
        cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
        executor: Executor | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.plugin_dirs = tuple(os.fspath(d) for d in plugin_dirs)
        self.cache = FileCache(cache_dir)
        self.executor: Executor = executor or SubprocessExecutor(timeout=timeout)
        # The deadline travels with each invocation, so it holds for any executor.
        deadline = math.inf if timeout is None else timeout
        self._ctx = FlowContext(cache=self.cache, path=self.plugin_dirs, timeout=deadline)
        self._single_ctx = attrs.evolve(self._ctx, wrap_errors=False)

    def __repr__(self) -> str:
        return f"CNI({list(self.plugin_dirs)!r}, cache_dir={self.cache.cache_dir!r})"

    def _run(self, flow: Flow[_flows.T]) -> _flows.T:
        return run_flow(flow, self.executor)

    # -- network lists -------------------------------------------------------------
    def add_network_list(self, conflist: NetworkConfigList, rt: RuntimeConf) -> Result | None:
        """ADD the attachment; return the last plugin's result (its own version)."""
        return self._run(_flows.add_flow(self._ctx, conflist, rt))

    def check_network_list(self, conflist: NetworkConfigList, rt: RuntimeConf) -> None:
        """CHECK the attachment against the cached result."""
        self._run(_flows.check_flow(self._ctx, conflist, rt))

    def delete_network_list(self, conflist: NetworkConfigList, rt: RuntimeConf) -> None:
        """DEL the attachment (plugins in reverse) and drop its cache entry."""
        self._run(_flows.delete_flow(self._ctx, conflist, rt))

    def gc_network_list(
        self,
        conflist: NetworkConfigList,
        valid_attachments: Iterable[GCAttachment | tuple[str, str]] | None = None,
    ) -> None:
        """GC the network, keeping ``valid_attachments`` ((container ID, ifname) pairs).

        ``None`` keeps nothing: every cached attachment of the network is deleted.
        """
        valid = None if valid_attachments is None else _attachments(valid_attachments)
        self._run(_flows.gc_flow(self._ctx, conflist, valid))

    def status_network_list(self, conflist: NetworkConfigList) -> None:
        """STATUS: raise the first plugin's error (code 50/51) if one is not ready."""
        self._run(_flows.status_flow(self._ctx, conflist))

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
        rt.validate(conflist.name)
        entry = self.cache.load(conflist.name, rt.container_id, rt.ifname)
        if entry is None or entry.legacy:
            return None
        cached_rt = RuntimeConf(
            container_id=rt.container_id,
            netns=rt.netns,
            ifname=rt.ifname,
            args=entry.cni_args or rt.args,
            capability_args=entry.capability_args,
        )
        return entry.config, cached_rt

    def cached_attachments(self, container_id: str | None = None) -> list[CacheEntry]:
        """Every cached attachment, optionally of one container (sorted by file name)."""
        return self.cache.attachments(container_id)

    def get_version_info(self, plugin_type: str) -> PluginInfo:
        """Ask a plugin which spec versions it supports."""
        return self._run(_flows.version_flow(self._ctx, plugin_type))

    # -- single plugins (deprecated .conf files) ---------------------------------
    def add_network(self, plugin: PluginConf, rt: RuntimeConf) -> Result | None:
        """ADD with one plugin; its own ``name``/``cniVersion``; errors unwrapped."""
        return self._run(_flows.add_flow(self._single_ctx, _as_list(plugin), rt))

    def check_network(self, plugin: PluginConf, rt: RuntimeConf) -> None:
        """CHECK with one plugin."""
        self._run(_flows.check_flow(self._single_ctx, _as_list(plugin), rt))

    def delete_network(self, plugin: PluginConf, rt: RuntimeConf) -> None:
        """DEL with one plugin."""
        self._run(_flows.delete_flow(self._single_ctx, _as_list(plugin), rt))

    def cached_network_result(self, plugin: PluginConf, rt: RuntimeConf) -> Result | None:
        """The cached result of a single-plugin attachment."""
        return _flows.cached_result(self.cache, _as_list(plugin), rt)
