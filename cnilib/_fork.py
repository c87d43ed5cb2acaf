"""Objects whose worker threads do not survive ``os.fork()``.

A forked child has only the thread that forked; an object that counts on its
workers (a namespace pool, the in-process executor's call threads) must forget
them there, or the child's first call waits for a thread that does not exist.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["ForkAware", "reset_after_fork"]


class ForkAware(Protocol):
    def _reset_after_fork(self) -> None:
        """Forget the threads and state the child did not inherit."""


_objects: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_installed = False


def reset_after_fork(obj: ForkAware) -> None:
    """Call ``obj._reset_after_fork()`` in every child ``os.fork()`` makes from now on."""
    global _installed
    _objects.add(obj)
    if not _installed:
        _installed = True
        os.register_at_fork(after_in_child=_in_child)


def _in_child() -> None:  # pragma: no cover - runs in a forked child
    for obj in list(_objects):
        obj._reset_after_fork()
