"""Talking to a started plugin process from asyncio, without asyncio's
subprocess transports.

Why not ``asyncio.create_subprocess_exec``: on CPython 3.11, a task
cancelled while the transport connects its pipes (``asyncio.run`` cancels
every task at shutdown, shielded or not) waits forever for an exit that is
only reported once pipes it never connected disconnect. Here nothing can
hang: the pipes are plain non-blocking fds watched with ``add_reader`` /
``add_writer``, and the exit is seen through a pidfd (``pidfd_open``, Linux
5.3+; a worker thread's ``waitpid`` where there is none). Every path removes
its watchers and closes its fds.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import time
from typing import TYPE_CHECKING

from cnilib.invoke._invocation import Invocation
from cnilib.invoke._pipes import Output, OutputTooLarge
from cnilib.invoke._subprocess import (
    KILL_GRACE,
    TEXT_BUSY_DELAYS,
    finish,
    kill_group,
    spawn_error,
    timeout_error,
    too_large_error,
)

if TYPE_CHECKING:
    from cnilib.invoke._subprocess import SubprocessExecutor

__all__ = ["close_pipes", "communicate", "run_plugin", "wait_exit"]

_CHUNK = 1 << 16


async def communicate(proc: subprocess.Popen[bytes], data: bytes, output: Output) -> None:
    """Write ``data`` to the plugin's stdin (unless already closed) and read
    stdout and stderr into ``output`` until EOF.

    Cancelling it (a deadline, a cancelled task) just stops watching; what
    was read stays in ``output``, and the caller kills the process.
    """
    loop = asyncio.get_running_loop()
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    names = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    finished = loop.create_future()
    open_readers = set(names)
    writing = not proc.stdin.closed
    stdin_fd = proc.stdin.fileno() if writing else -1
    pending = memoryview(data)

    def maybe_done() -> None:
        if not open_readers and not writing and not finished.done():
            finished.set_result(None)

    def stop_writing() -> None:
        nonlocal writing
        if writing:
            loop.remove_writer(stdin_fd)
            proc.stdin.close()  # type: ignore[union-attr]
            writing = False
            maybe_done()

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

    def on_readable(fd: int) -> None:
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            return
        if chunk:
            try:
                output.add(names[fd], chunk)
            except OutputTooLarge as exc:
                if not finished.done():
                    finished.set_exception(exc)
            return
        loop.remove_reader(fd)
        open_readers.discard(fd)
        maybe_done()

    for fd in names:
        os.set_blocking(fd, False)
        loop.add_reader(fd, on_readable, fd)
    if writing and pending:
        os.set_blocking(stdin_fd, False)
        loop.add_writer(stdin_fd, on_writable)
    elif writing:
        stop_writing()
    else:
        maybe_done()
    try:
        await finished
    finally:
        for fd in open_readers:
            loop.remove_reader(fd)
        if writing:
            loop.remove_writer(stdin_fd)


async def wait_exit(proc: subprocess.Popen[bytes]) -> int:
    """Wait until the process exits; return its status (as ``Popen.returncode``)."""
    if proc.poll() is not None:
        return proc.returncode
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd here: a thread waits instead
        return await asyncio.to_thread(proc.wait)
    exited = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return proc.wait()


def close_pipes(proc: subprocess.Popen[bytes]) -> None:
    """Close whatever pipe ends are still open (idempotent)."""
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


async def run_plugin(executor: SubprocessExecutor, invocation: Invocation) -> bytes:
    """``SubprocessExecutor.aexec``: run one plugin call without blocking the loop.

    The plugin is started with ``Popen`` (a fork/exec of a millisecond); a
    deadline or a cancellation kills its process group, then what is left of
    its output is collected for at most a grace period.
    """
    argv, env, timeout = executor.prepare(invocation)
    started = time.monotonic()
    proc = await _spawn(executor, argv, env)
    if invocation.on_spawn is not None:
        invocation.on_spawn(proc.pid, timeout)
    output = Output()
    try:
        try:
            async with asyncio.timeout(timeout):
                await communicate(proc, invocation.stdin, output)
                returncode = await wait_exit(proc)
        except TimeoutError:
            kill_group(proc.pid)
            await _finish_killed(proc, output)
            raise timeout_error(invocation, started, timeout, bytes(output.stderr)) from None
        except OutputTooLarge:
            kill_group(proc.pid)
            await _finish_killed(proc, output)
            raise too_large_error(invocation, output) from None
        except BaseException:  # cancelled: never leave the plugin running
            kill_group(proc.pid)
            await _finish_killed(proc, output)
            raise
    finally:
        close_pipes(proc)
    return finish(invocation, returncode, bytes(output.stdout), bytes(output.stderr))


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
    """After SIGKILL: collect what is left to read and reap the process, for at
    most a grace period (a setsid'd grandchild may hold the pipes forever)."""
    with contextlib.suppress(TimeoutError, OutputTooLarge):
        async with asyncio.timeout(KILL_GRACE):
            await communicate(proc, b"", output)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(KILL_GRACE):
            await wait_exit(proc)
