"""Go's wording of OS errors, for plugin messages that read as Go's.

Apart from :mod:`cnilib.plugins._hostside` (which re-exports it) so that code
with no host work, such as the dhcp plugin's daemon client, need not import
the netlink layer to word an error.
"""

from __future__ import annotations

import os

__all__ = ["go_strerror"]


def go_strerror(exc: BaseException) -> str:
    """The errno text of ``exc`` as Go prints a ``syscall.Errno`` (``file exists``)."""
    err = getattr(exc, "errno", None)
    if isinstance(err, int) and err > 0:
        text = os.strerror(err)
        return text[:1].lower() + text[1:]
    return str(exc)
