"""What each file of a host-local store holds, kept current by inotify, so that an ADD
does not read every file of the store again.

Go's host-local finds a container's addresses (the duplicate check of every ADD,
the release of every DEL) by reading every file of the store: a node with a
thousand containers reads a thousand files per call. A process that calls
host-local in process again and again (a runtime, the plugin server) reads them
once: an :class:`StoreIndex` scans the directory after it has set an inotify
watch on it, and later applies only the changes the kernel reports (a file
created, written, deleted or renamed), by whoever made them: this process, Go's
host-local, anyone. The kernel queues an event in the very system call that
makes the change, so a reader holding the store's lock, which every writer
holds while it changes the store, sees every change made before it took the
lock.

The index gives up, and the store reads every file as before, wherever it could
be wrong: a subdirectory or a symbolic link in the store (Go's walk descends
into one, and a link's target changes without an event on the store), the
kernel's event queue overflowing, the directory itself deleted or moved, or no
inotify instance to be had (``fs.inotify.max_user_instances``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["StoreIndex", "index_for"]

_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
_WATCHED = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
)
_GONE = IN_DELETE | IN_MOVED_FROM
_UNUSABLE = IN_Q_OVERFLOW | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then the name, NUL-padded

MAX_INDEXES = 16
"""Stores indexed at once by one process (one inotify instance each); least recently
used first out."""


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _identity(directory: str) -> tuple[int, int]:
    st = os.stat(directory)
    return st.st_dev, st.st_ino


def _check(result: int) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


class StoreIndex:
    """The content of every file directly in one store directory, by file name.

    Use only while holding the store's lock (changes are applied on :meth:`refresh`).
    """

    def __init__(self, directory: str, read: Callable[[str], str]) -> None:
        self.directory = directory
        self._read = read
        # Held while the fd is read or closed: an index dropped by another thread (the
        # least recently used, when a new store comes) must not have its fd number,
        # perhaps already reused for another file, read after it was closed.
        self._lock = threading.Lock()
        self._fd = _check(_libc().inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
        try:
            # The watch follows the directory, the path may come to name another one
            # (a parent renamed, a mount over it) without an event: the identity is
            # checked on every use, and must be the watched directory's to begin with.
            self._identity = _identity(directory)
            _check(
                _libc().inotify_add_watch(
                    self._fd, os.fsencode(directory), _WATCHED | IN_ONLYDIR | IN_DONT_FOLLOW
                )
            )
            if _identity(directory) != self._identity:
                raise OSError(errno.ESTALE, f"{directory} was replaced while being watched")
        except BaseException:
            os.close(self._fd)
            raise
        self._contents: dict[str, str] = {}
        # The same, the other way round: the lookups ask which files hold a content.
        self._holders: dict[str, set[str]] = {}
        self._stale: set[str] = set()
        self.usable = True
        self._scan()

    def close(self) -> None:
        """Drop the watch (and the inotify instance)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self.usable = False

    def _scan(self) -> None:
        """Read the whole directory (after the watch is set: nothing falls in between)."""
        self._contents.clear()
        self._holders.clear()
        self._stale.clear()
        try:
            with os.scandir(self.directory) as listing:
                for entry in listing:
                    if entry.is_symlink() or entry.is_dir(follow_symlinks=False):
                        self.usable = False
                        return
                    self._stale.add(entry.name)
        except OSError:
            self.usable = False

    def refresh(self) -> bool:
        """Apply the changes reported since the last call; False when the index can no
        longer be trusted (the caller reads the store itself, and drops the index)."""
        with self._lock:
            if not self.usable:
                return False
            try:
                same = _identity(self.directory) == self._identity
            except OSError:
                same = False
            if not same or not self._drain():
                self.usable = False
                return False
        return self._reread()

    def _drain(self) -> bool:
        """Read the queued events; note what changed. False if the index is unusable."""
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            offset = 0
            while offset < len(data):
                _, mask, _, size = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size
                name = data[offset : offset + size].rstrip(b"\0").decode("utf-8", "surrogateescape")
                offset += size
                if mask & _UNUSABLE:
                    return False
                if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                    return False  # Go's walk would descend into it
                if mask & _GONE:
                    self._forget(name)
                    self._stale.discard(name)
                elif name:
                    self._stale.add(name)

    def _reread(self) -> bool:
        """Read the files that changed; False (unusable) on a symbolic link."""
        for name in self._stale:
            path = os.path.join(self.directory, name)
            if os.path.islink(path):
                self.usable = False
                return False
            self._forget(name)
            try:
                content = self._read(path)
            except OSError:
                continue  # gone again, or unreadable: skipped, as Go skips it
            self._contents[name] = content
            self._holders.setdefault(content, set()).add(name)
        self._stale.clear()
        return True

    def _forget(self, name: str) -> None:
        content = self._contents.pop(name, None)
        if content is not None:
            holders = self._holders[content]
            holders.discard(name)
            if not holders:
                del self._holders[content]

    def holding(self, wanted: tuple[str, ...]) -> list[str]:
        """The paths of the files whose content (as read) is one of ``wanted``, in name
        order (Go's walk order)."""
        names: set[str] = set()
        for content in wanted:
            names |= self._holders.get(content, set())
        return [os.path.join(self.directory, name) for name in sorted(names)]


_indexes: OrderedDict[str, StoreIndex] = OrderedDict()
_indexes_lock = threading.Lock()


def index_for(directory: str, read: Callable[[str], str]) -> StoreIndex | None:
    """The current index of ``directory``, made on first use; None where there can be none
    (the store reads every file then). Call it holding the store's lock."""
    with _indexes_lock:
        index = _indexes.get(directory)
        if index is not None:
            _indexes.move_to_end(directory)
    if index is None:
        try:
            index = StoreIndex(directory, read)
        except OSError:  # no inotify instance or watch left, or the directory is gone
            return None
        with _indexes_lock:
            _indexes[directory] = index
            while len(_indexes) > MAX_INDEXES:
                _, oldest = _indexes.popitem(last=False)
                oldest.close()
    if index.refresh():
        return index
    with _indexes_lock:
        if _indexes.get(directory) is index:
            del _indexes[directory]
    index.close()
    return None


def forget_all() -> None:
    """Drop every index (tests; a process about to fork)."""
    with _indexes_lock:
        indexes = list(_indexes.values())
        _indexes.clear()
    for index in indexes:
        with contextlib.suppress(OSError):
            index.close()


def _forget_in_child() -> None:  # pragma: no cover - runs in a forked child
    # Without waiting for a lock: a thread that held one at the fork is not here.
    global _indexes_lock
    _indexes_lock = threading.Lock()
    for index in _indexes.values():
        index._lock = threading.Lock()
        with contextlib.suppress(OSError):
            index.close()
    _indexes.clear()


# A child made by fork() shares the parent's inotify instances: each would consume
# events the other then never sees. The child starts without any.
os.register_at_fork(after_in_child=_forget_in_child)
