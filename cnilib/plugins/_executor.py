"""Running plugins without a process: the in-process executor."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence

from cnilib.invoke import (
    ChainExecutor,
    Invocation,
    PluginInfo,
    SubprocessExecutor,
    decode_version_info,
)
from cnilib.plugins import BUILTIN_PLUGINS, load_plugin
from cnilib.plugins._base import BasePlugin
from cnilib.plugins._skel import handle

__all__ = ["InProcessExecutor"]


class InProcessExecutor:
    """Calls Python plugins directly: no fork, no exec, no JSON over pipes
    beyond the request and result bytes the protocol defines.

    :param plugins: extra or replacement plugins by CNI type (instances);
        cnilib's built-in plugins are used for every other type unless
        ``builtins`` is false.
    :param host_netns: the namespace that plays the host for the plugins
        (where bridges, host veth ends and iptables rules go); ``None``: this
        process's own, as for a plugin binary. Tests and the demo pass a
        throwaway node namespace here.

    Plugins see exactly the environment a binary would (``CNI_*`` only, no
    inherited variables) and are answered through the same skel code as the
    executables, so results and errors are identical. A deadline cannot
    stop a Python function: in-process calls run to completion.
    """

    def __init__(
        self,
        plugins: Mapping[str, BasePlugin] | None = None,
        *,
        builtins: bool = True,
        host_netns: str | None = None,
    ) -> None:
        self.host_netns = host_netns
        self._extra = dict(plugins or {})
        self._builtins = builtins
        self._loaded: dict[str, BasePlugin] = {}
        self._lock = threading.Lock()
        # A plugin's IPAM runs here when this executor has it, else as a binary.
        self._delegates = ChainExecutor(self, SubprocessExecutor())

    def __repr__(self) -> str:
        return f"InProcessExecutor(types={sorted(self.types())!r})"

    def types(self) -> set[str]:
        """Every plugin type this executor can run."""
        return set(self._extra) | (set(BUILTIN_PLUGINS) if self._builtins else set())

    def plugin(self, plugin_type: str) -> BasePlugin:
        """The plugin instance for ``plugin_type`` (loaded once)."""
        if plugin_type in self._extra:
            return self._extra[plugin_type]
        with self._lock:
            found = self._loaded.get(plugin_type)
            if found is None:
                if not self._builtins:
                    from cnilib.errors import PluginNotFoundError

                    raise PluginNotFoundError(
                        f'no in-process plugin "{plugin_type}"', plugin_type=plugin_type
                    )
                found = self._loaded[plugin_type] = load_plugin(plugin_type)
            return found

    def find(self, plugin_type: str, path: Sequence[str]) -> str:
        """A pseudo-path naming the in-process plugin; raise if there is none."""
        self.plugin(plugin_type)
        return f"<in-process {plugin_type}>"

    def exec(self, invocation: Invocation) -> bytes:
        """Call the plugin; return its stdout or raise its error object as a PluginError."""
        plugin = self.plugin(invocation.plugin_type)
        return handle(
            plugin,
            invocation.environ(base={}),
            invocation.stdin,
            delegate_executor=self._delegates,
            host_netns=self.host_netns,
        )

    async def aexec(self, invocation: Invocation) -> bytes:
        """:meth:`exec` in a worker thread: plugins do blocking kernel work."""
        return await asyncio.to_thread(self.exec, invocation)

    def version_info(self, plugin_type: str, path: Sequence[str]) -> PluginInfo:
        """The plugin's VERSION answer."""
        return decode_version_info(self.exec(Invocation.version(plugin_type, path)))
