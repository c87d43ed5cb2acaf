"""An in-memory executor for testing runtime logic without processes."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence

from cnilib.invoke import Invocation, PluginInfo
from cnilib.invoke._decode import decode_version_info

__all__ = ["MockExecutor"]

Handler = Callable[[Invocation], bytes | Awaitable[bytes]]


class MockExecutor:
    """Answers every invocation with ``handler(invocation)`` and records it.

    The handler returns the plugin's stdout, or raises a :class:`cnilib.CNIError`
    to play a failing plugin (like httpx's ``MockTransport``). A coroutine
    function works too, with ``aexec`` (say, to play a plugin that hangs)::

        def handler(inv: Invocation) -> bytes:
            return b'{"cniVersion": "1.1.0"}' if inv.command == "ADD" else b""

        cni = CNI(["/unused"], executor=MockExecutor(handler))
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.invocations: list[Invocation] = []

    def find(self, plugin_type: str, path: Sequence[str]) -> str:
        """Every plugin "exists"."""
        return plugin_type

    def exec(self, invocation: Invocation) -> bytes:
        """Record the invocation and return the handler's answer."""
        self.invocations.append(invocation)
        answer = self.handler(invocation)
        if inspect.isawaitable(answer):
            raise TypeError("an async handler needs aexec (AsyncCNI), not exec")
        return answer

    async def aexec(self, invocation: Invocation) -> bytes:
        """Record the invocation and return (or await) the handler's answer."""
        self.invocations.append(invocation)
        answer = self.handler(invocation)
        if inspect.isawaitable(answer):
            return await answer
        return answer

    def version_info(self, plugin_type: str, path: Sequence[str]) -> PluginInfo:
        """Ask the handler with a VERSION invocation."""
        return decode_version_info(self.exec(Invocation.version(plugin_type, path)))
