"""cnilib's loggers, all below ``cnilib``, which carries a ``NullHandler``.

The handler is installed by the first module that asks for a logger rather
than by ``cnilib/__init__``, so that importing the package (every plugin
executable does, even for VERSION) does not import :mod:`logging`.
"""

from __future__ import annotations

import logging

__all__ = ["get_logger"]

# A library logs, the application decides where it goes: without this,
# Python's last-resort handler would print cnilib's warnings on stderr.
logging.getLogger("cnilib").addHandler(logging.NullHandler())


def get_logger(name: str) -> logging.Logger:
    """The logger ``name`` (a ``cnilib.*`` name)."""
    return logging.getLogger(name)
