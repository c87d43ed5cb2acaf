"""Network sysctls (``/proc/sys/net/...``) of a namespace.

``/proc/sys/net`` shows the network namespace of the *thread* that opens it
(the kernel looks up ``current->nsproxy->net_ns``), so a worker of
:func:`cnilib.netlink.run_in_netns` reads and writes its own namespace's
values. These helpers refuse to run on any other thread, so they can never
touch the caller's (or the machine's) values by accident, and they refuse
names outside ``net/``, which are not per namespace.
"""

from __future__ import annotations

import errno
import os

from cnilib.netlink._errors import SysctlError
from cnilib.netlink._pool import netns_label

__all__ = ["read_sysctl", "sysctl_path", "write_sysctl"]

_ROOT = "/proc/sys/"


def sysctl_path(name: str) -> str:
    """The ``/proc/sys`` path of ``name``.

    ``name`` is dotted (``net.ipv4.ip_forward``) or a path relative to
    ``/proc/sys`` (``net/ipv4/conf/eth0.100/forwarding``, needed when an
    interface name holds a dot). Raises :class:`ValueError` for anything that
    is not under ``/proc/sys/net/``.
    """
    rel = name.removeprefix(_ROOT)
    if "/" not in rel:
        rel = rel.replace(".", "/")
    parts = rel.split("/")
    if parts[0] != "net" or len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a network sysctl: {name!r}")
    return _ROOT + rel


def read_sysctl(name: str) -> str:
    """The value of ``name`` in the worker's namespace, without the trailing newline."""
    path = sysctl_path(name)
    label = netns_label()
    try:
        with open(path, encoding="ascii") as f:
            return f.read().rstrip("\n")
    except OSError as exc:
        raise SysctlError(
            f"read {path}", label, exc.errno or errno.EIO, exc.strerror or ""
        ) from exc


def write_sysctl(name: str, value: str | int) -> None:
    """Set ``name`` to ``value`` in the worker's namespace."""
    path = sysctl_path(name)
    label = netns_label()
    data = str(value).encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)  # never O_CREAT
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise SysctlError(
            f"write {path}={value}", label, exc.errno or errno.EIO, exc.strerror or ""
        ) from exc
