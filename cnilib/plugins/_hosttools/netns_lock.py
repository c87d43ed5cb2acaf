"""An exclusive lock on the worker's network namespace, for the plugins that list a
host table and then change it (firewall's filter rules, portmap's nat rules).

Two calls that list the table at once each find a shared rule missing (a jump from
``FORWARD`` or ``PREROUTING``) and each insert it: the copies stay, since DEL only
removes an attachment's own rules. The lock is an ``flock`` on the namespace's nsfs
file, which every opener of the same namespace shares whatever its path, so cnilib's
calls in other threads and processes (plugin executables included) wait. Go's
binaries take no such lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from cnilib.errors import ErrorCode, PluginError
from cnilib.netlink import netns_label

__all__ = ["host_netns_lock"]


@contextlib.contextmanager
def host_netns_lock(plugin: str) -> Iterator[None]:
    """Hold the exclusive lock on this worker's network namespace for the block.

    Run on a namespace worker (:func:`cnilib.netlink.run_in_netns`); not re-entrant
    (a second open of the file in the same block would wait for the first). The
    holder's tools time out, so a wait ends.
    """
    netns_label()  # raises NotOnWorkerError: the caller's own namespace is never meant
    try:
        fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise PluginError(
            f"{plugin}: cannot open the host network namespace to lock it: {exc}",
            code=ErrorCode.INTERNAL,
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
