"""Running plugins as executables: the CNI exec protocol (Go ``invoke.RawExec``).

This module is the only place cnilib starts processes. Each plugin runs in
its own session (process group), so a deadline kills everything it started,
not just the direct child. Its stderr is captured, logged under
``cnilib.plugin``, and the tail is attached to any error.

A call ends when the plugin exits, not when its pipes reach EOF: a process it
left running (a daemon that forgot to close its stdio) may hold them for
ever, and is not the runtime's to kill (see :mod:`cnilib.invoke._pipes`).
Every path closes the pipes and reaps the plugin (:func:`release`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Sequence

from cnilib._json import JSONSyntaxError, go_text, loads
from cnilib._log import get_logger
from cnilib.errors import (
    CNIError,
    PluginNotFoundError,
    PluginOutputError,
    PluginStartError,
    PluginTimeoutError,
)
from cnilib.invoke import _pipes
from cnilib.invoke._calllog import CallLog
from cnilib.invoke._decode import decode_failure, decode_version_info, is_pre_version_plugin, tail
from cnilib.invoke._invocation import Command, Invocation, PluginInfo, check_timeout
from cnilib.tracing import trace_environ

__all__ = ["DEFAULT_TIMEOUT", "SubprocessExecutor", "find_in_path"]

DEFAULT_TIMEOUT = 60.0
"""Seconds a plugin call may take before its process group is killed.

Go libcni has no default deadline (containernetworking/cni#550): a hung
plugin hangs the runtime. cnilib sets one; pass ``timeout=None`` to opt out.
"""

NO_DEADLINE_BEYOND = 10 * 365 * 86400.0
"""Seconds past which a deadline counts as none."""

# After the kill, how long the pipes may stay open (a setsid'd grandchild can
# hold them forever) before cnilib stops reading, and how long the blocking
# executor waits for the killed plugin before a thread takes over reaping it.
KILL_GRACE = 1.0

# The verbs whose answer is read from stdout on success; the others' is ignored.
_ANSWERING = frozenset({Command.ADD, Command.VERSION})

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
    if set (``math.inf``: none), else the executor's ``default``. A deadline more
    than ten years off is none: thread and select waits cannot take such values."""
    timeout = invocation.timeout if invocation.timeout is not None else default
    if timeout is not None and timeout > NO_DEADLINE_BEYOND:
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
        check_timeout(timeout)
        self.timeout = timeout
        self.wrapper = tuple(wrapper)
        self.env = env

    def __repr__(self) -> str:
        return f"SubprocessExecutor(timeout={self.timeout!r}, wrapper={self.wrapper!r})"

    def find(self, plugin_type: str, path: Sequence[str]) -> str:
        """See :func:`find_in_path`."""
        return find_in_path(plugin_type, path)

    def prepare(self, invocation: Invocation) -> tuple[list[str], dict[str, str], float | None]:
        """argv, environment and deadline (``None``: none) of one call.

        The environment carries the current OpenTelemetry trace context, if
        there is one (see :mod:`cnilib.tracing`).
        """
        program = self.find(invocation.plugin_type, invocation.path)
        timeout = call_deadline(invocation, self.timeout)
        env = invocation.environ(self.env)
        env.update(trace_environ())
        return [*self.wrapper, program], env, timeout

    def exec(self, invocation: Invocation) -> bytes:
        """Run one plugin call; return its stdout or raise a :class:`CNIError`.

        Each call is logged at DEBUG (see :mod:`cnilib.invoke._calllog`).
        """
        with CallLog(invocation) as call:
            return self._exec(invocation, call)

    def _exec(self, invocation: Invocation, call: CallLog) -> bytes:
        argv, env, timeout = self.prepare(invocation)
        call.sent(argv[-1], env)
        started = time.monotonic()
        output = _pipes.Output()
        proc = self._spawn(argv, env)
        try:
            # Inside the try: whatever fails from here on, the plugin is reaped.
            if invocation.on_spawn is not None:
                invocation.on_spawn(proc.pid, timeout)
            held = _pipes.communicate(proc, invocation.stdin, output, timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            _finish_killed(proc, output)
            raise timeout_error(invocation, started, timeout, bytes(output.stderr)) from None
        except _pipes.OutputTooLarge:
            killed = kill_running(proc)
            if killed:
                _finish_killed(proc, output)
            raise too_large_error(invocation, output, killed=killed) from None
        except BaseException:
            # Interrupted (KeyboardInterrupt, ...): never leave the plugin running.
            kill_running(proc)
            raise
        finally:
            release(proc, KILL_GRACE)
        call.answered(bytes(output.stdout), proc.returncode)
        return finish(
            invocation, proc.returncode, bytes(output.stdout), bytes(output.stderr), held=held
        )

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
        inheriting ``pass_fds`` and no other fd but its pipes (cnilib passes none)."""
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


def kill_running(proc: subprocess.Popen[bytes]) -> bool:
    """Kill the plugin's group unless the plugin has exited: then what is left
    in its group is a leftover, not the runtime's to kill (and once reaped,
    its pid may name another process). Return whether it was killed."""
    if proc.returncode is not None:
        return False
    kill_group(proc.pid)
    return True


def _finish_killed(proc: subprocess.Popen[bytes], output: _pipes.Output) -> None:
    """After SIGKILL: read what is left until the plugin is gone, for at most a
    grace period (a setsid'd grandchild may hold the pipes forever)."""
    with contextlib.suppress(subprocess.TimeoutExpired, _pipes.OutputTooLarge):
        _pipes.communicate(proc, b"", output, KILL_GRACE)


def release(proc: subprocess.Popen[bytes], wait: float = 0.0) -> None:
    """Close every pipe end and reap the plugin, on every path of a call.

    A plugin still running here has been killed: it is waited for up to
    ``wait`` seconds (``0``: not at all, for the event loop), then a daemon
    thread waits for the rest, so that no path leaves a zombie, or a ``Popen``
    that warns "still running" when it is collected. Idempotent.
    """
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    if proc.returncode is not None:
        return
    try:
        if wait > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
        else:
            proc.poll()
    finally:
        # Also when that wait was interrupted: the exit status is collected anyway.
        if proc.returncode is None:
            threading.Thread(target=proc.wait, name=f"cnilib-reap-{proc.pid}", daemon=True).start()


def too_large_error(
    invocation: Invocation, output: _pipes.Output, *, killed: bool = True
) -> PluginOutputError:
    """A plugin (or, after its exit, a process it left behind) printed more than
    cnilib keeps."""
    _log_stderr(invocation, bytes(output.stderr))
    outcome = (
        "its process group was killed"
        if killed
        else "it had exited; a process it left behind still writes there"
    )
    return PluginOutputError(
        f"{invocation.describe()} printed more than {_pipes.STDOUT_LIMIT} bytes on stdout; "
        + outcome,
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


def finish(
    invocation: Invocation, returncode: int, stdout: bytes, stderr: bytes, *, held: bool = False
) -> bytes:
    """Log stderr; return stdout on success, else raise the decoded failure.

    ``held``: the plugin exited while a process it left behind still held its
    stdout/stderr, so what it wrote before its exit is its answer. That is
    logged (at INFO: the plugin may be healthy, its daemon too), and an answer
    that cannot be read says so rather than look like a plugin's mistake.
    """
    _log_stderr(invocation, stderr)
    ended = _ended(invocation, returncode)
    leftover = "a process it left behind still holds its stdout/stderr"
    if held:
        plugin_log.info(
            "%s; %s, so its output was taken as it stood %gs after the exit",
            ended,
            leftover,
            _pipes.EXIT_GRACE,
        )
    if returncode == 0:
        if held and invocation.command in _ANSWERING:
            try:
                loads(go_text(stdout))
            except JSONSyntaxError as exc:
                raise PluginOutputError(
                    f"{ended} but its stdout holds no JSON answer ({exc}); {leftover}",
                    stdout=stdout,
                    stderr=tail(stderr),
                    returncode=returncode,
                ) from exc
        return stdout
    note = f"{ended} and {leftover}" if held else ""
    raise decode_failure(stdout, stderr, _exit_reason(returncode), returncode, note=note)


def _ended(invocation: Invocation, returncode: int) -> str:
    """``plugin "x" (ADD) exited with status 1`` / ``... ended with signal: killed``."""
    if returncode < 0:
        return f"{invocation.describe()} ended with {_exit_reason(returncode)}"
    return f"{invocation.describe()} exited with status {returncode}"


def _log_stderr(invocation: Invocation, stderr: bytes) -> None:
    if not stderr or not plugin_log.isEnabledFor(logging.DEBUG):
        return
    for line in stderr.decode("utf-8", errors="replace").splitlines():
        plugin_log.debug("%s: %s", invocation.describe(), line)
