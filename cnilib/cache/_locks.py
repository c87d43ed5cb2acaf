"""File locks that keep runtimes (processes, threads, tasks) out of each other's way.

The spec forbids two operations on one attachment at once, and GC of a
network during an ADD or DEL on it; libcni enforces neither
(cri-o/ocicni#41). cnilib does, with ``flock(2)`` under the cache directory::

    <cache_dir>/locks/<network>/.network       shared: ADD, CHECK, DEL   exclusive: GC
    <cache_dir>/locks/<network>/<cid>:<ifname>  exclusive: ADD, CHECK, DEL of that attachment

Ordering, which makes deadlock impossible: an operation takes its network's
lock first and its attachment's lock second, and holds at most one network.
GC takes only the network lock, exclusively; since every other operation on
that network holds the network lock (shared) for as long as it has an
attachment lock file open, GC can delete attachment lock files safely.

``flock`` locks belong to an open file description, so two tasks or threads
of one process exclude each other just like two processes do, and the kernel
releases them when every descriptor of it is closed. Two consequences are
used on purpose: the attachment lock's fd is handed to the plugin processes
of the call (``Invocation.hold_fds``), so if the runtime dies, the
attachment stays locked until its orphaned plugin exits, and a following
DEL or GC cannot race it; and in a child made by ``os.fork()`` the lock fds
are closed at once, so a forked helper never keeps the runtime's locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Callable, Iterator

from cnilib.errors import CacheError
from cnilib.names import validate_container_id, validate_interface_name, validate_network_name

__all__ = ["LockDir"]

_NETWORK_LOCK = ".network"
_POLL_FIRST = 0.001
_POLL_MAX = 0.05


_held: set[int] = set()
"""Lock fds held by this process (closed in forked children)."""


def _close_inherited() -> None:
    for fd in list(_held):
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_inherited)


def _open(path: str) -> int:
    try:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # its directory was removed since: make it again
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise CacheError(f"cannot open lock file: {exc.strerror}", path=path) from exc


def _try_lock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class LockDir:
    """The lock files of one cache directory."""

    def __init__(self, cache_dir: str) -> None:
        self.root = os.path.join(cache_dir, "locks")
        self._made: set[str] = set()  # network lock dirs known to exist

    def _network_dir(self, network: str) -> str:
        validate_network_name(network)
        path = os.path.join(self.root, network)
        if path in self._made:
            return path
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cannot create lock directory: {exc.strerror}", path=path) from exc
        self._made.add(path)
        return path

    def _paths(self, network: str, attachment: tuple[str, str] | None) -> list[tuple[str, int]]:
        """The files to lock, in lock order, with their flock operation."""
        directory = self._network_dir(network)
        if attachment is None:  # GC: the whole network, exclusively
            return [(os.path.join(directory, _NETWORK_LOCK), fcntl.LOCK_EX)]
        container_id, ifname = attachment
        validate_container_id(container_id)
        validate_interface_name(ifname)
        return [
            (os.path.join(directory, _NETWORK_LOCK), fcntl.LOCK_SH),
            # ":" appears in neither a container ID nor an interface name, so
            # unlike the cache's "<cid>-<if>" this name is unambiguous.
            (os.path.join(directory, f"{container_id}:{ifname}"), fcntl.LOCK_EX),
        ]

    @contextlib.contextmanager
    def hold(self, network: str, attachment: tuple[str, str] | None = None) -> Iterator[int | None]:
        """Hold the locks of one attachment (or, with ``None``, a whole network
        for GC); yield the attachment lock's fd (for the plugins to inherit)."""
        fds: list[int] = []
        try:
            for path, operation in self._paths(network, attachment):
                fd = _open(path)
                fds.append(fd)
                _held.add(fd)
                fcntl.flock(fd, operation)
            yield fds[1] if attachment is not None else None
        finally:
            release(fds)

    @contextlib.asynccontextmanager
    async def ahold(
        self, network: str, attachment: tuple[str, str] | None = None
    ) -> AsyncIterator[int | None]:
        """:meth:`hold` for asyncio: waits by polling, so no thread blocks on a lock."""
        import asyncio  # here: blocking callers never load asyncio

        fds: list[int] = []
        try:
            for path, operation in self._paths(network, attachment):
                fd = _open(path)
                fds.append(fd)
                _held.add(fd)
                delay = _POLL_FIRST
                while not _try_lock(fd, operation):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _POLL_MAX)
            yield fds[1] if attachment is not None else None
        finally:
            release(fds)

    def try_attachment(self, network: str, container_id: str, ifname: str) -> int | None:
        """GC's per-attachment lock, taken without waiting (GC holds the network).

        Returns the locked fd (release it with :func:`release`), or ``None``
        when the attachment is busy: a plugin of an earlier, interrupted call
        still holds it.
        """
        path = self._paths(network, (container_id, ifname))[1][0]
        fd = _open(path)
        _held.add(fd)
        if _try_lock(fd, fcntl.LOCK_EX):
            return fd
        release([fd])
        return None

    def prune(self, network: str, keep: Callable[[str], bool]) -> None:
        """Delete attachment lock files of ``network`` for which ``keep(name)`` is false.

        Only call this while holding the network exclusively (GC).
        """
        directory = os.path.join(self.root, network)
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(directory):
                if name != _NETWORK_LOCK and not keep(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(directory, name))


def release(fds: list[int]) -> None:
    """Close lock fds (last taken first); closing the description drops its flock."""
    for fd in reversed(fds):
        _held.discard(fd)
        os.close(fd)
