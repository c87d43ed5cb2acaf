"""Network namespace handles, and running work inside a namespace.

``setns(2)`` changes the namespace of the calling *thread* only.
:func:`run_in_netns` switches its caller's thread into the namespace for the
job and back; :func:`arun_in_netns` hands the job to a worker thread that
entered the namespace once, when it started, and serves that one namespace
until it is retired. No process is forked per operation (pyroute2's
``IPRoute(netns=...)`` forks a helper child for each handle).

A namespace's lock and its worker are keyed by the namespace's identity (the
nsfs device and inode), not by the path, so ``/run/netns/x`` and
``/proc/<pid>/ns/net`` of the same namespace share them, and a namespace
deleted and re-created at the same path gets new ones. The path is opened
(read-only, never created) on every call, so a namespace that has disappeared
is reported as missing even while a worker still holds it.

A worker keeps its namespace alive (it is a thread inside it), so workers are
retired when idle (``idle_timeout``), when the pool is full (least recently
used first) and on :func:`close_netns`. A retired thread ends: it is never
reused for another namespace. A switched job closes the netlink sockets it
made there before its thread comes back, so it leaves nothing holding the
namespace.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from typing import TYPE_CHECKING, Self

from cnilib._filetype import describe_type
from cnilib.netlink._errors import NetNSError, NetNSNotFoundError

if TYPE_CHECKING:
    import ctypes

    from cnilib.netlink._pool import NetnsTarget

__all__ = ["CLONE_NEWNET", "NetNSHandle", "current_netns_path", "open_netns", "setns"]

CLONE_NEWNET = 0x40000000
_NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), Linux 4.11
_NSFS_NAMES = {
    0x00020000: "mnt",
    0x02000000: "cgroup",
    0x04000000: "uts",
    0x08000000: "ipc",
    0x10000000: "user",
    0x20000000: "pid",
    0x00000080: "time",
}

# Read-only; never blocks (a FIFO would wait for a writer), never becomes the
# controlling terminal, never leaks into a child.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


def current_netns_path() -> str:
    """The path naming the calling thread's own network namespace."""
    return "/proc/thread-self/ns/net"


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """``setns(2)`` for the calling thread (``os.setns`` on 3.12, libc before)."""
    native = getattr(os, "setns", None)
    if native is not None:  # pragma: no cover - Python 3.12+
        native(fd, nstype)
        return
    import ctypes

    if _libc_setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@functools.cache
def _libc() -> ctypes.CDLL:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _libc_setns(fd: int, nstype: int) -> int:
    # Loading libc costs more than the system call: once per process.
    result: int = _libc().setns(fd, nstype)
    return result


class NetNSHandle:
    """An open network namespace: a read-only fd checked to be a network namespace.

    Open one with :func:`open_netns` (or ``NetNSHandle.open``); it owns its fd
    unless it wraps a caller's fd. Use it as a context manager, or ``close()``.
    ``key`` (nsfs device, inode) identifies the namespace itself.
    """

    __slots__ = ("_owned", "fd", "key", "label")

    def __init__(self, fd: int, label: str, *, owned: bool) -> None:
        self.fd = fd
        self.label = label
        self._owned = owned
        try:
            self.key = _check_netns(fd, label)
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Self:
        """Open ``path`` (``/run/netns/x``, ``/proc/<pid>/ns/net``) read-only.

        Raises :class:`NetNSNotFoundError` when it does not exist (nothing is
        created) and :class:`NetNSError` when it is no network namespace.
        The type is checked before the path is opened, and the open itself
        cannot block (``O_NONBLOCK``): a FIFO, a device, a socket or a
        directory is refused at once, where a plain ``open(2)`` of a FIFO
        would wait forever for a writer.
        """
        label = os.fspath(path)
        try:
            _check_type(os.stat(label).st_mode, label)
            fd = os.open(label, _OPEN_FLAGS)
        except FileNotFoundError:
            raise NetNSNotFoundError(label) from None
        except OSError as exc:
            raise NetNSError(label, exc.strerror or str(exc), errno=exc.errno or 0) from exc
        # Checked again on the fd: the path may have been replaced in between.
        return cls(fd, label, owned=True)

    @classmethod
    def from_fd(cls, fd: int) -> Self:
        """Wrap a caller's open fd (not closed by this handle)."""
        return cls(fd, f"fd {fd}", owned=False)

    @classmethod
    def current(cls) -> Self:
        """The calling thread's own network namespace."""
        return cls.open(current_netns_path())

    def close(self) -> None:
        """Close the fd if this handle owns it; idempotent."""
        if self._owned and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NetNSHandle({self.label!r}, key={self.key!r})"


def _check_type(mode: int, label: str) -> None:
    """Refuse anything but a regular file: an nsfs inode (``/proc/<pid>/ns/net``
    or a bind mount of one, as under ``/run/netns``) always is one."""
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise NetNSError(label, "is a directory, not a network namespace", errno=errno.EISDIR)
    raise NetNSError(label, f"is {describe_type(mode)}, not a network namespace")


def _check_netns(fd: int, label: str) -> tuple[int, int]:
    try:
        st = os.fstat(fd)
    except OSError as exc:
        raise NetNSError(label, exc.strerror or str(exc), errno=exc.errno or 0) from exc
    _check_type(st.st_mode, label)
    import fcntl

    try:
        nstype = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError:
        raise NetNSError(label, "not a network namespace") from None
    if nstype != CLONE_NEWNET:
        kind = _NSFS_NAMES.get(nstype, hex(nstype))
        raise NetNSError(label, f"a {kind} namespace, not a network namespace")
    return (st.st_dev, st.st_ino)


def open_netns(target: NetnsTarget) -> NetNSHandle:
    """A handle for ``target``: a path, an fd, a handle, or ``None`` (the caller's own).

    A handle passed in is wrapped (not re-opened), so the caller keeps ownership.
    """
    if target is None:
        return NetNSHandle.current()
    if isinstance(target, NetNSHandle):
        if target.fd < 0:
            raise NetNSError(target.label, "handle is closed", errno=errno.EBADF)
        handle = NetNSHandle.from_fd(target.fd)
        handle.label = target.label
        return handle
    if isinstance(target, int):
        return NetNSHandle.from_fd(target)
    return NetNSHandle.open(target)
