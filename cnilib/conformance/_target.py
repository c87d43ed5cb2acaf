"""The plugin under test: an executable found on a path, or a cnilib in-process plugin.

Both are driven the same raw way, an environment and stdin bytes in, stdout,
stderr and an exit status out, so that the kit can send what no well-behaved
runtime would (a missing ``CNI_NETNS``, stdin that is not JSON) and see
exactly what the plugin answered.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cnilib.conformance._model import Exchange
from cnilib.errors import PluginError, PluginNotFoundError
from cnilib.testing import NetNS

if TYPE_CHECKING:
    from cnilib.plugins import BasePlugin

__all__ = ["ExecutableTarget", "InProcessTarget", "Target", "find_target"]

_KILLED = -9


class Target(Protocol):
    """Something the kit can call like a plugin executable."""

    plugin_type: str
    description: str
    """An executable's path, or ``cnilib in-process <type>``."""

    def call(
        self, label: str, env: Mapping[str, str], stdin: bytes, *, node: NetNS, timeout: float
    ) -> Exchange:
        """Run one call with exactly ``env``'s ``CNI_*`` variables, host side in ``node``."""
        ...

    def close(self) -> None: ...


class ExecutableTarget:
    """A plugin executable, run in the node namespace with ``ip netns exec``
    (which also mounts the namespace's own ``/sys``, as a runtime on that host
    would see it)."""

    def __init__(self, plugin_type: str, path: Path) -> None:
        self.plugin_type = plugin_type
        self.path = path
        self.description = str(path)

    def call(
        self, label: str, env: Mapping[str, str], stdin: bytes, *, node: NetNS, timeout: float
    ) -> Exchange:
        # PATH is the kit's own, so that plugins find iptables, tc, ...; nothing else leaks in.
        full_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **env}
        started = time.monotonic()
        # A session of its own, so that a plugin that overstays is killed with every
        # process it started (a delegate, a sleep): they would outlive the run and keep
        # its namespaces alive.
        with subprocess.Popen(
            [*node.exec_prefix, str(self.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            start_new_session=True,
        ) as proc:
            try:
                stdout, stderr = proc.communicate(stdin, timeout=timeout)
                status = proc.returncode
            except subprocess.TimeoutExpired as exc:
                stdout, stderr = exc.stdout or b"", exc.stderr or b""
                stderr += f"\n(killed by the kit after {timeout:g} s)".encode()
                status = _KILLED
                _kill_group(proc)
            except BaseException:  # Ctrl-C: the plugin must not go on alone
                _kill_group(proc)
                raise
        return Exchange(label, dict(env), stdin, stdout, stderr, status, time.monotonic() - started)

    def close(self) -> None:
        pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc``'s process group (its session's: it leads one) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class InProcessTarget:
    """A cnilib in-process plugin, answered by the same code as its executable.

    Its IPAM delegate runs in process too when cnilib has one of that type,
    else as a binary from ``CNI_PATH``. A Python exception that escapes the
    plugin is code 999 with the traceback on stderr, which the kit counts as
    a crash. A call has no deadline: a Python function cannot be stopped.
    """

    def __init__(self, plugin_type: str, plugin: BasePlugin | None = None) -> None:
        from cnilib.plugins import load_plugin

        self.plugin_type = plugin_type
        if plugin is None:
            self.description = f"cnilib in-process {plugin_type}"
            load_plugin(plugin_type)  # fail now, with cnilib's message, for an unknown type
        else:
            self.description = f"in-process {type(plugin).__module__}.{type(plugin).__qualname__}"
        self._plugin = plugin
        self._executors: dict[str, object] = {}

    def _executor(self, node: NetNS) -> object:
        from cnilib.plugins import InProcessExecutor

        found = self._executors.get(node.path)
        if found is None:
            plugins = {self.plugin_type: self._plugin} if self._plugin is not None else None
            found = InProcessExecutor(plugins, host_netns=node.path)
            self._executors[node.path] = found
        return found

    def call(
        self, label: str, env: Mapping[str, str], stdin: bytes, *, node: NetNS, timeout: float
    ) -> Exchange:
        from cnilib.plugins import InProcessExecutor
        from cnilib.plugins._skel import EscapedError, error_output

        executor = self._executor(node)
        assert isinstance(executor, InProcessExecutor)
        started = time.monotonic()
        stderr = b""
        try:
            stdout, status = executor.handle(self.plugin_type, env, stdin), 0
        except PluginError as exc:
            stdout, status = error_output(exc), 1
            if isinstance(exc, EscapedError) and exc.__cause__ is not None:
                # An exception escaped the plugin; skel made code 999 of it.
                stderr = "".join(traceback.format_exception(exc.__cause__)).encode()
        return Exchange(label, dict(env), stdin, stdout, stderr, status, time.monotonic() - started)

    def close(self) -> None:
        from cnilib.plugins import InProcessExecutor

        for executor in self._executors.values():
            assert isinstance(executor, InProcessExecutor)
            executor.close()
        self._executors.clear()


def find_target(
    plugin_type: str,
    path: Sequence[str],
    *,
    in_process: bool,
    plugin: BasePlugin | None = None,
) -> Target:
    """The plugin to test: ``plugin`` (an in-process plugin instance), cnilib's
    in-process one, or the first executable named ``plugin_type`` in ``path``'s
    directories (as libcni finds it)."""
    if in_process or plugin is not None:
        return InProcessTarget(plugin_type, plugin)
    if not plugin_type or "/" in plugin_type:
        raise PluginNotFoundError(f"invalid plugin name: {plugin_type}", plugin_type=plugin_type)
    for directory in path:
        candidate = Path(directory, plugin_type)
        if candidate.is_file():
            return ExecutableTarget(plugin_type, candidate)
    raise PluginNotFoundError(
        f'failed to find plugin "{plugin_type}" in path [{" ".join(path)}]',
        plugin_type=plugin_type,
        search_path=tuple(path),
    )
