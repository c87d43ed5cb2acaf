"""Reading a plugin's output with bounds, for the blocking executor.

A runaway plugin (``yes``, a debug loop) would otherwise fill the runtime's
memory long before its deadline: stdout is capped at :data:`STDOUT_LIMIT`
(the call fails and the plugin is killed), and only the last
:data:`STDERR_KEEP` bytes of stderr are kept (it is a log; the end explains).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import time

__all__ = ["STDERR_KEEP", "STDOUT_LIMIT", "Output", "OutputTooLarge", "communicate"]

STDOUT_LIMIT = 64 << 20
STDERR_KEEP = 1 << 20
_CHUNK = 1 << 16


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


def communicate(
    proc: subprocess.Popen[bytes], data: bytes, output: Output, timeout: float | None
) -> None:
    """Write ``data`` to stdin (unless closed), read stdout and stderr into
    ``output`` until EOF; raise :class:`subprocess.TimeoutExpired` at the deadline."""
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdin is not None
    deadline = None if timeout is None else time.monotonic() + timeout
    names = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    view = memoryview(data)
    with selectors.DefaultSelector() as selector:
        for fd in names:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        if not proc.stdin.closed:
            if view:
                os.set_blocking(proc.stdin.fileno(), False)
                selector.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
            else:
                proc.stdin.close()
        while selector.get_map():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise subprocess.TimeoutExpired(proc.args, timeout or 0)
            for key, _ in selector.select(remaining):
                fd = key.fd
                if fd in names:
                    try:
                        chunk = os.read(fd, _CHUNK)
                    except BlockingIOError:
                        continue
                    if chunk:
                        output.add(names[fd], chunk)
                    else:
                        selector.unregister(fd)
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
