"""Talking to a started plugin process from asyncio, without asyncio's
subprocess transports.

Why not ``asyncio.create_subprocess_exec``: on CPython 3.11, a task
cancelled while the transport connects its pipes (``asyncio.run`` cancels
every task at shutdown, shielded or not) waits forever for an exit that is
only reported once pipes it never connected disconnect. Here nothing can
hang: the pipes are plain non-blocking fds watched with ``add_reader`` /
``add_writer``, and the exit is seen through a pidfd (``pidfd_open``, Linux
5.3+; polling with ``call_later`` where there is none). As in the blocking
executor, the call ends at the plugin's exit, with a short grace for the
pipes (:data:`~cnilib.invoke._pipes.EXIT_GRACE`), not at their EOF. Every
path removes its watchers, closes its fds and reaps the plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import time
from typing import TYPE_CHECKING

from cnilib.invoke._calllog import CallLog
from cnilib.invoke._invocation import Invocation
from cnilib.invoke._pipes import (
    EXIT_GRACE,
    EXIT_POLL_MAX,
    Output,
    OutputTooLarge,
    drain,
    open_pidfd,
)
from cnilib.invoke._subprocess import (
    KILL_GRACE,
    TEXT_BUSY_DELAYS,
    finish,
    kill_group,
    kill_running,
    release,
    spawn_error,
    timeout_error,
    too_large_error,
)

if TYPE_CHECKING:
    from cnilib.invoke._subprocess import SubprocessExecutor

__all__ = ["communicate", "run_plugin"]

_CHUNK = 1 << 16


async def communicate(
    proc: subprocess.Popen[bytes], data: bytes, output: Output, exit_within: float | None
) -> bool:
    """Write ``data`` to the plugin's stdin (unless already closed) and read
    stdout and stderr into ``output`` until the plugin has exited and its
    pipes have reached EOF.

    Returns ``True`` if, :data:`EXIT_GRACE` after the exit, a process it left
    behind still held the pipes (what they held by then was read), else
    ``False``; either way the plugin has been reaped. Raises
    :class:`TimeoutError` if the plugin has not exited ``exit_within``
    seconds after the start (not a timeout of the whole call: the deadline
    stops applying at the exit, and the grace may run past it).

    Cancelling it just stops watching; what was read stays in ``output``, and
    the caller kills the process.
    """
    loop = asyncio.get_running_loop()
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    names = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    finished: asyncio.Future[bool] = loop.create_future()
    open_readers = set(names)
    writing = not proc.stdin.closed
    stdin_fd = proc.stdin.fileno() if writing else -1
    pending = memoryview(data)
    timers: dict[str, asyncio.TimerHandle] = {}  # "deadline", "poll", "grace"
    watching_exit = False
    poll_delay = 0.0005  # doubled before use: the first poll comes after 1 ms
    pidfd: int | None = None

    def finish_with(held: bool) -> None:
        if not finished.done():
            finished.set_result(held)

    def stop_writing() -> None:
        nonlocal writing
        if writing:
            loop.remove_writer(stdin_fd)
            proc.stdin.close()  # type: ignore[union-attr]
            writing = False

    def on_writable() -> None:
        nonlocal pending
        try:
            written = os.write(stdin_fd, pending[:_CHUNK])
        except BlockingIOError:
            return
        except (BrokenPipeError, ConnectionResetError):
            written = len(pending)  # the plugin stopped reading: that is its business
        pending = pending[written:]
        if not pending:
            stop_writing()

    def fail(exc: BaseException) -> None:
        if not finished.done():
            finished.set_exception(exc)

    def on_readable(fd: int) -> None:
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            return
        if chunk:
            try:
                output.add(names[fd], chunk)
            except OutputTooLarge as exc:
                fail(exc)
            return
        loop.remove_reader(fd)
        open_readers.discard(fd)
        if not open_readers and proc.returncode is not None:
            finish_with(False)

    def on_grace_over() -> None:
        """Still held: take what the pipes hold now (the loop may have been too
        busy to read it), and stop."""
        try:
            ended = [drain(fd, names[fd], output) for fd in open_readers]
        except OutputTooLarge as exc:
            fail(exc)
        else:
            finish_with(not all(ended))

    def on_poll() -> None:
        """Reap the plugin if it has exited, and give the pipes a grace; else
        look again a little later."""
        nonlocal poll_delay
        if proc.poll() is None:
            poll_delay = min(poll_delay * 2, EXIT_POLL_MAX)
            timers["poll"] = loop.call_later(poll_delay, on_poll)
        elif not open_readers:
            finish_with(False)
        else:
            timers["grace"] = loop.call_later(EXIT_GRACE, on_grace_over)

    def on_pidfd(fd: int) -> None:
        nonlocal watching_exit
        loop.remove_reader(fd)
        watching_exit = False
        on_poll()  # a pidfd that fired yet no exit status: poll from now on

    def on_deadline() -> None:
        # An exit not noticed yet is in time: the exit watcher takes it from here.
        if proc.poll() is None:
            fail(TimeoutError())

    try:
        pidfd = open_pidfd(proc)
        for fd in names:
            os.set_blocking(fd, False)
            loop.add_reader(fd, on_readable, fd)
        if writing and pending:
            os.set_blocking(stdin_fd, False)
            loop.add_writer(stdin_fd, on_writable)
        elif writing:
            stop_writing()
        if pidfd is not None:
            loop.add_reader(pidfd, on_pidfd, pidfd)
            watching_exit = True
        else:
            on_poll()
        if exit_within is not None:
            timers["deadline"] = loop.call_later(exit_within, on_deadline)
        return await finished
    finally:
        for timer in timers.values():
            timer.cancel()
        for fd in open_readers:
            loop.remove_reader(fd)
        if writing:
            loop.remove_writer(stdin_fd)
        if pidfd is not None:
            if watching_exit:
                loop.remove_reader(pidfd)
            os.close(pidfd)


async def run_plugin(executor: SubprocessExecutor, invocation: Invocation) -> bytes:
    """``SubprocessExecutor.aexec``: run one plugin call without blocking the loop.

    The plugin is started with ``Popen`` (a fork/exec of a millisecond); a
    deadline or a cancellation kills its process group, then what is left of
    its output is collected for at most a grace period.
    """
    with CallLog(invocation) as call:
        return await _run_plugin(executor, invocation, call)


async def _run_plugin(executor: SubprocessExecutor, invocation: Invocation, call: CallLog) -> bytes:
    argv, env, timeout = executor.prepare(invocation)
    call.sent(argv[-1], env)
    started = time.monotonic()
    output = Output()
    proc = await _spawn(executor, argv, env)
    try:
        # Inside the try: whatever fails from here on, the plugin is reaped.
        if invocation.on_spawn is not None:
            invocation.on_spawn(proc.pid, timeout)
        held = await communicate(proc, invocation.stdin, output, timeout)
    except TimeoutError:
        kill_group(proc.pid)
        await _finish_killed(proc, output)
        raise timeout_error(invocation, started, timeout, bytes(output.stderr)) from None
    except OutputTooLarge:
        killed = kill_running(proc)
        if killed:
            await _finish_killed(proc, output)
        raise too_large_error(invocation, output, killed=killed) from None
    except BaseException:  # cancelled: never leave the plugin running
        if kill_running(proc):
            await _finish_killed(proc, output)
        raise
    finally:
        release(proc)  # no blocking wait here: a thread reaps a plugin still dying
    call.answered(bytes(output.stdout), proc.returncode)
    return finish(
        invocation, proc.returncode, bytes(output.stdout), bytes(output.stderr), held=held
    )


async def _spawn(
    executor: SubprocessExecutor,
    argv: list[str],
    env: dict[str, str],
    pass_fds: tuple[int, ...] = (),
) -> subprocess.Popen[bytes]:
    """Start the plugin, waiting out ETXTBSY without blocking the loop."""
    for delay in (*TEXT_BUSY_DELAYS, None):
        try:
            return executor.popen(argv, env, pass_fds)
        except ValueError as exc:  # NUL or unencodable text in argv/env
            raise spawn_error(argv, exc) from exc
        except OSError as exc:
            if exc.errno != errno.ETXTBSY or delay is None:
                raise spawn_error(argv, exc) from exc
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


async def _finish_killed(proc: subprocess.Popen[bytes], output: Output) -> None:
    """After SIGKILL: collect what is left to read until the plugin is gone, for
    at most a grace period (a setsid'd grandchild may hold the pipes forever)."""
    with contextlib.suppress(TimeoutError, OutputTooLarge):
        await communicate(proc, b"", output, KILL_GRACE)
