"""Errors of the namespace and netlink layer, and the translation of pyroute2's.

Every error is a :class:`cnilib.PluginError`, so a plugin can let it
propagate and the framework answers with the spec's error object. The codes
follow what a Go reference plugin answers for the same failure: skel wraps
any non-CNI error as code 999 (``ErrInternal``), so a failed netlink request
is 999 too, except a transient one (``EAGAIN``/``EINTR``/``EBUSY``, e.g. an
interrupted dump), which is 11 (try again later).

Messages name the operation, the object and the namespace::

    netlink: add address 10.1.0.2/24 to eth0 in /run/netns/x: File exists
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

from cnilib.errors import ErrorCode, PluginError

__all__ = [
    "NetNSError",
    "NetNSNotFoundError",
    "NetlinkError",
    "NotOnWorkerError",
    "SysctlError",
    "netlink_errors",
]

_TRANSIENT = frozenset({_errno.EAGAIN, _errno.EINTR, _errno.EBUSY})


def _code_for(err: int) -> int:
    return ErrorCode.TRY_AGAIN_LATER if err in _TRANSIENT else ErrorCode.INTERNAL


class NetNSError(PluginError):
    """A network namespace could not be opened or entered.

    ``path`` is what the caller passed (a path, or ``fd <n>``), ``errno`` the
    OS error number (0 when the object exists but is no network namespace).
    """

    errno: int | None  # as OSError's, since NetNSNotFoundError is a FileNotFoundError

    def __init__(self, path: str, reason: str, *, errno: int = 0) -> None:
        self.path = path
        super().__init__(f"netns: open {path}: {reason}", code=ErrorCode.INTERNAL)
        self.errno = errno  # after OSError.__init__, which would reset it


class NetNSNotFoundError(NetNSError, FileNotFoundError):
    """The namespace path does not exist (Go's ``NSPathNotExistErr``).

    DEL treats it as success; nothing is ever created at the path.
    """

    def __init__(self, path: str) -> None:
        super().__init__(path, os.strerror(_errno.ENOENT), errno=_errno.ENOENT)


class NetlinkError(PluginError):
    """A netlink request failed in a namespace.

    ``errno`` is the kernel's answer (``errno.EEXIST``, ``errno.ENODEV``, ...),
    ``operation`` what was attempted (``add address 10.1.0.2/24 to eth0``) and
    ``netns`` where (the path the caller gave).
    """

    def __init__(self, operation: str, netns: str, errno: int, reason: str = "") -> None:
        self.operation = operation
        self.netns = netns
        self.errno = errno
        text = reason or os.strerror(errno)
        super().__init__(f"netlink: {operation} in {netns}: {text}", code=_code_for(errno))


class SysctlError(PluginError):
    """A sysctl under ``/proc/sys/net`` could not be read or written in a namespace."""

    def __init__(self, operation: str, netns: str, errno: int, reason: str = "") -> None:
        self.operation = operation
        self.netns = netns
        self.errno = errno
        text = reason or os.strerror(errno)
        super().__init__(f"sysctl: {operation} in {netns}: {text}", code=_code_for(errno))


class NotOnWorkerError(RuntimeError):
    """A namespace helper was called outside :func:`cnilib.netlink.run_in_netns`.

    The helpers act on the namespace of the worker thread that runs them, so
    calling one on any other thread is a programming error, never a silent
    change of the caller's own namespace.
    """


@contextmanager
def netlink_errors(operation: str, netns: str) -> Iterator[None]:
    """Turn a pyroute2 ``NetlinkError`` (or an ``OSError``) inside into :class:`NetlinkError`."""
    try:
        yield
    except PluginError:
        raise
    except OSError as exc:
        err = exc.errno or _errno.EIO
        raise NetlinkError(operation, netns, err, exc.strerror or "") from exc
    except Exception as exc:
        from pyroute2.netlink.exceptions import NetlinkError as PyrouteNetlinkError

        if not isinstance(exc, PyrouteNetlinkError):
            raise
        code = int(exc.code) if isinstance(exc.code, int) else _errno.EIO
        reason = os.strerror(code) if code > 0 else str(exc)
        raise NetlinkError(operation, netns, code, reason) from exc
