"""Several executors in order of preference: in-process first, say, then
binaries on ``CNI_PATH``. A chain may mix them freely."""

from __future__ import annotations

from collections.abc import Sequence

from cnilib.errors import InvalidArgumentError, PluginNotFoundError
from cnilib.invoke._invocation import Executor, Invocation, PluginInfo
from cnilib.invoke._subprocess import DEFAULT_TIMEOUT

__all__ = ["ChainExecutor"]


class ChainExecutor:
    """Runs each plugin with the first executor that has it.

    ``ChainExecutor(InProcessExecutor(), SubprocessExecutor())`` prefers
    cnilib's Python plugins and falls back to binaries; reverse the order
    to prefer binaries. prevResult passes between plugins of either kind.
    """

    def __init__(self, *executors: Executor) -> None:
        if not executors:
            raise InvalidArgumentError("ChainExecutor needs at least one executor")
        self.executors = executors

    @property
    def timeout(self) -> float | None:
        """The longest deadline among its executors (``None`` if one has none;
        60 s for one that does not say): how long the runtime waits for a lock."""
        longest = 0.0
        for executor in self.executors:
            timeout = getattr(executor, "timeout", DEFAULT_TIMEOUT)
            if timeout is None:
                return None
            longest = max(longest, float(timeout))
        return longest

    def __repr__(self) -> str:
        return f"ChainExecutor{self.executors!r}"

    def _pick(self, plugin_type: str, path: Sequence[str]) -> Executor:
        misses: list[str] = []
        for executor in self.executors:
            try:
                executor.find(plugin_type, path)
            except PluginNotFoundError as exc:
                misses.append(str(exc))
                continue
            return executor
        raise PluginNotFoundError(
            f'failed to find plugin "{plugin_type}": ' + "; ".join(misses),
            plugin_type=plugin_type,
            search_path=path,
        )

    def find(self, plugin_type: str, path: Sequence[str]) -> str:
        """Where the first executor that has the plugin would run it from."""
        return self._pick(plugin_type, path).find(plugin_type, path)

    def exec(self, invocation: Invocation) -> bytes:
        """Run the call with the first executor that has the plugin."""
        return self._pick(invocation.plugin_type, invocation.path).exec(invocation)

    async def aexec(self, invocation: Invocation) -> bytes:
        """:meth:`exec` for asyncio."""
        return await self._pick(invocation.plugin_type, invocation.path).aexec(invocation)

    def version_info(self, plugin_type: str, path: Sequence[str]) -> PluginInfo:
        """VERSION from the first executor that has the plugin."""
        return self._pick(plugin_type, path).version_info(plugin_type, path)

    def close(self) -> None:
        """Close every executor of the chain that can be closed (once each)."""
        for executor in dict.fromkeys(self.executors):
            close = getattr(executor, "close", None)
            if callable(close):
                close()
