"""Reading a plugin's output with bounds, for the blocking executor.

A runaway plugin (``yes``, a debug loop) would otherwise fill the runtime's
memory long before its deadline: stdout is capped at :data:`STDOUT_LIMIT`
(the call fails and the plugin is killed), and only the last
:data:`STDERR_KEEP` bytes of stderr are kept (it is a log; the end explains).

The call ends when the plugin exits, not when its pipes reach EOF: a process
it started and left running (a daemon that forgot to close its stdio) may
hold them open for ever. Its exit is seen through a pidfd (``pidfd_open``,
Linux 5.3+) watched beside the pipes, or by polling where there is none;
after it, the pipes get :data:`EXIT_GRACE` to reach EOF, and then what the
plugin wrote is its answer.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import time

__all__ = [
    "EXIT_GRACE",
    "STDERR_KEEP",
    "STDOUT_LIMIT",
    "Output",
    "OutputTooLarge",
    "communicate",
    "open_pidfd",
]

STDOUT_LIMIT = 64 << 20
STDERR_KEEP = 1 << 20
_CHUNK = 1 << 16
_MAX_SELECT = 3600.0

EXIT_GRACE = 0.5
"""Seconds the pipes may stay open after the plugin exited before cnilib stops
reading them and takes what the plugin wrote as its answer.

Nothing the plugin wrote is lost by stopping: a write to a pipe returns only
once its bytes are in the pipe, so by its exit all of its output is there, and
what is still buffered is read before giving up. The grace is for helpers
that exit at the same moment as the plugin (a subshell, an ``ip`` it ran),
so that a loaded machine does not make them look like leftovers; a real
leftover (a daemon holding the pipes) costs each call this long.
"""

EXIT_POLL_MAX = 0.05
"""Without a pidfd, the exit is polled for, from 1 ms up to this interval."""

_DRAIN_LIMIT = 1 << 20  # what one final read of a held pipe takes at most


class OutputTooLarge(Exception):  # noqa: N818 - internal signal, turned into a CNIError
    """The plugin printed more than :data:`STDOUT_LIMIT` bytes on stdout."""


class Output:
    """What a plugin wrote so far; kept across an interrupted read."""

    def __init__(self) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()

    def add(self, which: str, chunk: bytes) -> None:
        """Append a chunk, enforcing the bounds."""
        if which == "stdout":
            self.stdout += chunk
            if len(self.stdout) > STDOUT_LIMIT:
                raise OutputTooLarge
        else:
            self.stderr += chunk
            if len(self.stderr) > 2 * STDERR_KEEP:
                del self.stderr[:-STDERR_KEEP]


def open_pidfd(proc: subprocess.Popen[bytes]) -> int | None:
    """A pidfd that becomes readable when ``proc`` exits, or ``None`` where the
    system has none (then the caller polls)."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None or proc.returncode is not None:  # reaped: the pid may be reused
        return None
    try:
        fd: int = pidfd_open(proc.pid)
    except OSError:  # ENOSYS (old kernel, seccomp), EMFILE
        return None
    return fd


def drain(fd: int, name: str, output: Output) -> bool:
    """Read what a pipe holds right now (bounded: a leftover may keep writing);
    return whether it reached EOF."""
    taken = 0
    while taken < _DRAIN_LIMIT:
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        taken += len(chunk)
        output.add(name, chunk)
    return False


def communicate(
    proc: subprocess.Popen[bytes], data: bytes, output: Output, timeout: float | None
) -> bool:
    """Write ``data`` to stdin (unless closed) and read stdout and stderr into
    ``output`` until the plugin has exited and its pipes have reached EOF.

    Returns ``True`` if, :data:`EXIT_GRACE` after the exit, a process it left
    behind still held the pipes (what they held by then was read), else
    ``False``. Either way the process has been reaped (``proc.returncode``).
    Raises :class:`subprocess.TimeoutExpired` if the plugin has not exited
    ``timeout`` seconds after the start, even if its pipes are closed.
    """
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdin is not None
    deadline = None if timeout is None else time.monotonic() + timeout
    names = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    reading = set(names)
    view = memoryview(data)
    poll_delay = 0.0005  # doubled before use: the first poll comes after 1 ms
    grace_end: float | None = None  # set when the plugin has exited
    with contextlib.ExitStack() as stack:
        selector = stack.enter_context(selectors.DefaultSelector())
        pidfd = open_pidfd(proc)
        if pidfd is not None:
            stack.callback(os.close, pidfd)
            selector.register(pidfd, selectors.EVENT_READ)
        for fd in names:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        if not proc.stdin.closed:
            if view:
                os.set_blocking(proc.stdin.fileno(), False)
                selector.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
            else:
                proc.stdin.close()
        while True:
            now = time.monotonic()
            if grace_end is None:
                remaining = None if deadline is None else deadline - now
                # At the deadline, an exit that is only not yet noticed still counts.
                if remaining is not None and remaining <= 0 and proc.poll() is None:
                    raise subprocess.TimeoutExpired(proc.args, timeout or 0)
                if pidfd is None:
                    poll_delay = min(poll_delay * 2, EXIT_POLL_MAX)
                    remaining = poll_delay if remaining is None else min(remaining, poll_delay)
            else:
                if not reading:
                    return False
                remaining = grace_end - now
                if remaining <= 0:  # held: take what is buffered, and stop
                    ended = [drain(fd, names[fd], output) for fd in reading]
                    return not all(ended)
            # select() takes at most about 24 days; a longer deadline just loops.
            wait = None if remaining is None else min(remaining, _MAX_SELECT)
            for key, _ in selector.select(wait):
                fd = key.fd
                if fd == pidfd:
                    selector.unregister(fd)
                    continue
                if fd in names:
                    try:
                        chunk = os.read(fd, _CHUNK)
                    except BlockingIOError:
                        continue
                    if chunk:
                        output.add(names[fd], chunk)
                    else:
                        selector.unregister(fd)
                        reading.discard(fd)
                    continue
                try:
                    view = view[os.write(fd, view[:_CHUNK]) :]
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    view = view[len(view) :]  # it stopped reading: its business
                if not view:
                    selector.unregister(fd)
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
            look = pidfd is None or pidfd not in selector.get_map()  # polling, or it fired
            if proc.returncode is None and look and proc.poll() is None:
                pidfd = None  # a pidfd that fired yet no exit status: poll from now on
            if grace_end is None and proc.returncode is not None:
                grace_end = time.monotonic() + EXIT_GRACE
