"""sysfs as a network namespace sees it.

A network device's entries under ``/sys/class/net`` and a device's
``net/`` directory show only in a sysfs mounted from the namespace the
device is in; the process's ``/sys`` shows the namespace it was mounted
from. :func:`namespace_sysfs` mounts a private sysfs instance from inside
another namespace: detached (``fsopen``/``fsmount``), never attached to the
file tree, reached through ``/proc/self/fd/<fd>`` and gone when the fd is
closed. It needs ``CAP_SYS_ADMIN``; where mounting is refused, the caller's
``/sys`` is used, with that limit.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import attrs

from cnilib.netlink._pool import run_in_netns

if TYPE_CHECKING:
    from cnilib.netlink._pool import NetnsTarget

__all__ = ["Sysfs", "namespace_sysfs"]

# New syscalls have one number on every architecture (since Linux 5.2).
_FSOPEN, _FSCONFIG, _FSMOUNT = 430, 431, 432
_FSCONFIG_CMD_CREATE = 6


def _mount_sysfs() -> int:
    """A detached sysfs instance of the calling worker's namespace: its fd, or -1."""
    libc = ctypes.CDLL(None, use_errno=True)
    fs = libc.syscall(_FSOPEN, b"sysfs", 0)
    if fs < 0:
        return -1
    try:
        if libc.syscall(_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0) < 0:
            return -1
        return int(libc.syscall(_FSMOUNT, fs, 0, 0))
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
    """sysfs as ``netns`` sees it, for the block (``None``: the caller's ``/sys``;
    also when mounting is refused)."""
    if netns is None:
        yield Sysfs()
        return
    fd = run_in_netns(netns, _mount_sysfs)
    if fd < 0:
        yield Sysfs()
        return
    try:
        yield Sysfs(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
