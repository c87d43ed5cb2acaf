"""Running plugins as executables: the CNI exec protocol (Go ``invoke.RawExec``).

This module is the only place cnilib starts processes. Each plugin runs in
its own session (process group), so a deadline kills everything it started,
not just the direct child. Its stderr is captured, logged under
``cnilib.plugin``, and the tail is attached to any error.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import signal
import stat
import subprocess
import time
from collections.abc import Sequence

from cnilib._log import get_logger
from cnilib.errors import (
    CNIError,
    PluginNotFoundError,
    PluginOutputError,
    PluginStartError,
    PluginTimeoutError,
)
from cnilib.invoke import _pipes
from cnilib.invoke._decode import decode_failure, decode_version_info, is_pre_version_plugin, tail
from cnilib.invoke._invocation import Invocation, PluginInfo

__all__ = ["DEFAULT_TIMEOUT", "SubprocessExecutor", "find_in_path"]

DEFAULT_TIMEOUT = 60.0
"""Seconds a plugin call may take before its process group is killed.

Go libcni has no default deadline (containernetworking/cni#550): a hung
plugin hangs the runtime. cnilib sets one; pass ``timeout=None`` to opt out.
"""

# After the kill, how long the pipes may stay open (a setsid'd grandchild can
# hold them forever) before cnilib stops reading.
KILL_GRACE = 1.0

# Six attempts in all, as libcni, but with a short backoff instead of 1 s sleeps.
TEXT_BUSY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8)

plugin_log = get_logger("cnilib.plugin")


def find_in_path(plugin_type: str, path: Sequence[str]) -> str:
    """The first regular file named ``plugin_type`` in the directories ``path``.

    Names containing a path separator are refused (CVE-2021-20206), so a
    configuration cannot make the runtime execute an arbitrary file.
    """
    if plugin_type == "":
        raise PluginNotFoundError("no plugin name provided", plugin_type=plugin_type)
    if os.sep in plugin_type or (os.altsep and os.altsep in plugin_type) or "\0" in plugin_type:
        raise PluginNotFoundError(f"invalid plugin name: {plugin_type}", plugin_type=plugin_type)
    if not path:
        raise PluginNotFoundError("no paths provided", plugin_type=plugin_type)
    for directory in path:
        candidate = os.path.join(directory, plugin_type)
        try:
            if stat.S_ISREG(os.stat(candidate).st_mode):
                return candidate
        except (OSError, ValueError):  # ValueError: a NUL in the directory name
            continue
    listed = " ".join(path)
    raise PluginNotFoundError(
        f'failed to find plugin "{plugin_type}" in path [{listed}]',
        plugin_type=plugin_type,
        search_path=path,
    )


def call_deadline(invocation: Invocation, default: float | None) -> float | None:
    """The deadline of one call in seconds, ``None`` for none: ``invocation.timeout``
    if set (``math.inf``: none), else the executor's ``default``."""
    timeout = invocation.timeout if invocation.timeout is not None else default
    if timeout is not None and math.isinf(timeout):
        return None
    return timeout


def _exit_reason(returncode: int) -> str:
    """Go's wording for how a process ended."""
    if returncode < 0:
        name = signal.strsignal(-returncode) or f"signal {-returncode}"
        return f"signal: {name.lower()}"
    return f"exit status {returncode}"


class SubprocessExecutor:
    """Runs plugins as processes found on ``CNI_PATH``.

    :param timeout: default deadline per call in seconds (``None``: no deadline).
    :param wrapper: argv prefix for every plugin, e.g.
        ``("ip", "netns", "exec", "node1")`` to run plugins inside a node
        namespace, or ``("nsenter", "-t", "1", "-n")``.
    :param env: base environment for plugins (default: this process's).
    """

    def __init__(
        self,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        wrapper: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.timeout = timeout
        self.wrapper = tuple(wrapper)
        self.env = env

    def __repr__(self) -> str:
        return f"SubprocessExecutor(timeout={self.timeout!r}, wrapper={self.wrapper!r})"

    def find(self, plugin_type: str, path: Sequence[str]) -> str:
        """See :func:`find_in_path`."""
        return find_in_path(plugin_type, path)

    def prepare(self, invocation: Invocation) -> tuple[list[str], dict[str, str], float | None]:
        """argv, environment and deadline (``None``: none) of one call."""
        program = self.find(invocation.plugin_type, invocation.path)
        timeout = call_deadline(invocation, self.timeout)
        return [*self.wrapper, program], invocation.environ(self.env), timeout

    def exec(self, invocation: Invocation) -> bytes:
        """Run one plugin call; return its stdout or raise a :class:`CNIError`."""
        argv, env, timeout = self.prepare(invocation)
        started = time.monotonic()
        proc = self._spawn(argv, env)
        if invocation.on_spawn is not None:
            invocation.on_spawn(proc.pid, timeout)
        output = _pipes.Output()
        # The context closes the pipes and reaps the process on every path.
        with proc:
            try:
                _pipes.communicate(proc, invocation.stdin, output, timeout)
                # Pipes closed is not exited: the rest of the deadline still holds.
                left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
                proc.wait(left)
            except subprocess.TimeoutExpired:
                kill_group(proc.pid)
                _finish_killed(proc, output)
                raise timeout_error(invocation, started, timeout, bytes(output.stderr)) from None
            except _pipes.OutputTooLarge:
                kill_group(proc.pid)
                _finish_killed(proc, output)
                raise too_large_error(invocation, output) from None
            except BaseException:
                # Interrupted (KeyboardInterrupt, ...): never leave the plugin running.
                kill_group(proc.pid)
                raise
        return finish(invocation, proc.returncode, bytes(output.stdout), bytes(output.stderr))

    async def aexec(self, invocation: Invocation) -> bytes:
        """:meth:`exec` for asyncio: cancelling it kills the plugin's process group.

        See :mod:`cnilib.invoke._aio`, imported here so that blocking callers
        never load asyncio.
        """
        from cnilib.invoke import _aio

        return await _aio.run_plugin(self, invocation)

    @staticmethod
    def popen(
        argv: list[str], env: dict[str, str], pass_fds: tuple[int, ...] = ()
    ) -> subprocess.Popen[bytes]:
        """Start the plugin in its own session (so its whole group can be killed),
        inheriting ``pass_fds`` (the attachment's lock) and no other fd."""
        return subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
            pass_fds=pass_fds,
        )

    @classmethod
    def _spawn(
        cls, argv: list[str], env: dict[str, str], pass_fds: tuple[int, ...] = ()
    ) -> subprocess.Popen[bytes]:
        """Start the plugin; retry while its binary is being replaced (ETXTBSY)."""
        for delay in (*TEXT_BUSY_DELAYS, None):
            try:
                return cls.popen(argv, env, pass_fds)
            except ValueError as exc:  # NUL or unencodable text in argv/env
                raise spawn_error(argv, exc) from exc
            except OSError as exc:
                if exc.errno != errno.ETXTBSY or delay is None:
                    raise spawn_error(argv, exc) from exc
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def version_info(self, plugin_type: str, path: Sequence[str]) -> PluginInfo:
        """Ask a plugin for its supported versions (Go ``GetVersionInfo``)."""
        try:
            stdout = self.exec(Invocation.version(plugin_type, path))
        except CNIError as exc:
            if is_pre_version_plugin(exc):
                return PluginInfo("0.1.0", ("0.1.0",))
            raise
        return decode_version_info(stdout)


def kill_group(pid: int) -> None:
    """SIGKILL the plugin's whole session: it runs as its group leader."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _finish_killed(proc: subprocess.Popen[bytes], output: _pipes.Output) -> None:
    """After SIGKILL: read what is left, for at most a grace period (a setsid'd
    grandchild may hold the pipes forever)."""
    with contextlib.suppress(subprocess.TimeoutExpired, _pipes.OutputTooLarge):
        _pipes.communicate(proc, b"", output, KILL_GRACE)


def too_large_error(invocation: Invocation, output: _pipes.Output) -> PluginOutputError:
    """A plugin printed more than cnilib keeps."""
    _log_stderr(invocation, bytes(output.stderr))
    return PluginOutputError(
        f"{invocation.describe()} printed more than {_pipes.STDOUT_LIMIT} bytes on stdout; "
        "its process group was killed",
        stderr=tail(bytes(output.stderr)),
    )


def spawn_error(argv: list[str], exc: OSError | ValueError) -> PluginStartError:
    # libcni retries ETXTBSY too, but returns empty "success" when it gives up.
    reason = (getattr(exc, "strerror", None) or str(exc)).lower()
    return PluginStartError(
        f"netplugin failed with no error message: fork/exec {argv[0]}: {reason}"
    )


def timeout_error(
    invocation: Invocation,
    started: float,
    timeout: float | None,
    stderr: bytes,
    *,
    outcome: str = "its process group was killed",
) -> PluginTimeoutError:
    """``plugin "x" (ADD) timed out after 1.0s (deadline 1s); <outcome>``: what
    became of the call is said by the executor (in-process calls are not killed)."""
    elapsed = time.monotonic() - started
    _log_stderr(invocation, stderr)
    return PluginTimeoutError(
        f"{invocation.describe()} timed out after {elapsed:.1f}s "
        f"(deadline {timeout:g}s); {outcome}",
        elapsed=elapsed,
        stderr=tail(stderr),
    )


def finish(invocation: Invocation, returncode: int, stdout: bytes, stderr: bytes) -> bytes:
    """Log stderr; return stdout on success, else raise the decoded failure."""
    _log_stderr(invocation, stderr)
    if returncode == 0:
        return stdout
    raise decode_failure(stdout, stderr, _exit_reason(returncode), returncode)


def _log_stderr(invocation: Invocation, stderr: bytes) -> None:
    if not stderr or not plugin_log.isEnabledFor(logging.DEBUG):
        return
    for line in stderr.decode("utf-8", errors="replace").splitlines():
        plugin_log.debug("%s: %s", invocation.describe(), line)
