"""sysfs as a network namespace sees it.

A network device's entries under ``/sys/class/net`` and a device's
``net/`` directory show only in a sysfs mounted from the namespace the
device is in; the process's ``/sys`` shows the namespace it was mounted
from. :func:`namespace_sysfs` mounts a private sysfs instance from inside
another namespace: detached (``fsopen``/``fsmount``), never attached to the
file tree, reached through ``/proc/self/fd/<fd>`` and gone when the fd is
closed. It needs ``CAP_SYS_ADMIN`` (and Linux 5.2); where mounting is
refused, :class:`SysfsError` says why: the caller's ``/sys`` would list
another namespace's devices, whose names may belong to unrelated links in
the namespace asked for. Only ``netns=None`` (the caller's own namespace,
e.g. a plugin binary under ``ip netns exec``, which remounts ``/sys``)
reads the caller's ``/sys``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as _errno
import glob
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import attrs

from cnilib.errors import ErrorCode, PluginError
from cnilib.netlink._pool import netns_label, run_in_netns

if TYPE_CHECKING:
    from cnilib.netlink._pool import NetnsTarget

__all__ = ["Sysfs", "SysfsError", "namespace_sysfs"]

# The mount API's syscalls (Linux 5.2) have one number on every architecture
# cnilib runs on (the asm-generic numbering, which x86_64 shares).
_FSOPEN, _FSCONFIG, _FSMOUNT = 430, 431, 432
_FSCONFIG_CMD_CREATE = 6
# Close-on-exec, as every fd Python opens (PEP 446): a child exec'd while the
# mount is held must not inherit a view of another namespace's sysfs.
_FSOPEN_CLOEXEC = 0x1
_FSMOUNT_CLOEXEC = 0x1

_HINTS = {
    _errno.EPERM: " (needs CAP_SYS_ADMIN)",
    _errno.EACCES: " (needs CAP_SYS_ADMIN)",
    _errno.ENOSYS: " (needs Linux 5.2)",
}


class SysfsError(PluginError):
    """A namespace's sysfs could not be mounted.

    ``errno`` is the failed syscall's, ``netns`` how the namespace was named::

        cannot read the sysfs of /run/netns/node: fsopen: operation not permitted
        (needs CAP_SYS_ADMIN)
    """

    def __init__(self, netns: str, syscall: str, errno: int) -> None:
        self.netns = netns
        self.errno = errno
        reason = os.strerror(errno)
        reason = reason[:1].lower() + reason[1:]
        super().__init__(
            f"cannot read the sysfs of {netns}: {syscall}: {reason}{_HINTS.get(errno, '')}",
            code=ErrorCode.INTERNAL,
        )


def _mount_sysfs() -> int:
    """A detached sysfs instance of the calling worker's namespace: its fd
    (close-on-exec); :class:`SysfsError` when the kernel refuses."""
    libc = ctypes.CDLL(None, use_errno=True)

    def refused(syscall: str) -> SysfsError:
        return SysfsError(netns_label(), syscall, ctypes.get_errno() or _errno.EPERM)

    fs = libc.syscall(_FSOPEN, b"sysfs", _FSOPEN_CLOEXEC)
    if fs < 0:
        raise refused("fsopen")
    try:
        if libc.syscall(_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0) < 0:
            raise refused("fsconfig")
        fd = int(libc.syscall(_FSMOUNT, fs, _FSMOUNT_CLOEXEC, 0))
        if fd < 0:
            raise refused("fsmount")
        return fd
    finally:
        os.close(fs)


@attrs.frozen
class Sysfs:
    """A sysfs view: ``/sys/...`` paths (as Go plugins write them) map under ``root``."""

    root: str = "/sys"

    def real(self, path: str) -> str:
        """Where ``path`` (``/sys/...``) is in this view."""
        return self.root + path[len("/sys") :] if path.startswith("/sys/") else path

    def exists(self, path: str) -> bool:
        """``os.path.exists`` of ``path`` in this view."""
        return os.path.exists(self.real(path))

    def lexists(self, path: str) -> bool:
        """``os.path.lexists`` of ``path`` in this view."""
        return os.path.lexists(self.real(path))

    def read_dir(self, path: str) -> list[str]:
        """Go ``os.ReadDir``: names, sorted; ``OSError`` as it fails."""
        return sorted(os.listdir(self.real(path)))

    def glob(self, pattern: str) -> list[str]:
        """Go ``filepath.Glob`` of ``/sys/...``: sorted ``/sys/...`` paths."""
        found = glob.glob(self.real(pattern))
        return sorted("/sys" + p[len(self.root) :] for p in found)

    def readlink(self, path: str) -> str:
        """``os.readlink`` of ``path`` in this view."""
        return os.readlink(self.real(path))


@contextlib.contextmanager
def namespace_sysfs(netns: NetnsTarget) -> Iterator[Sysfs]:
    """sysfs as ``netns`` sees it, for the block; ``None``: the caller's ``/sys``.

    Any other ``netns`` gets its own sysfs instance, held only for the block;
    :class:`SysfsError` (with the errno) when the kernel refuses to mount it.
    """
    if netns is None:
        yield Sysfs()
        return
    fd = run_in_netns(netns, _mount_sysfs)
    try:
        yield Sysfs(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
