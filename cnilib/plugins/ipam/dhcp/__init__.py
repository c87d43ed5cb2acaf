"""The ``dhcp`` IPAM plugin and its lease daemon.

The plugin (:class:`~cnilib.plugins.ipam.dhcp.dhcp.Dhcp`, type ``dhcp``) asks
the lease daemon over a Unix socket; the daemon (:class:`LeaseDaemon`) keeps
one DHCP lease per attachment. A runtime that runs the daemon in its own
process uses :class:`DaemonThread` (or ``await LeaseDaemon.serve(path)`` in
an asyncio runtime). Nothing is imported until a name is used, so the
plugin executable starts quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnilib._lazy import lazy_exports

if TYPE_CHECKING:
    from cnilib.plugins.ipam.dhcp._daemon import DaemonThread, LeaseDaemon
    from cnilib.plugins.ipam.dhcp._timing import Timing

__all__ = ["DaemonThread", "LeaseDaemon", "Timing"]


__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DaemonThread": "cnilib.plugins.ipam.dhcp._daemon",
        "LeaseDaemon": "cnilib.plugins.ipam.dhcp._daemon",
        "Timing": "cnilib.plugins.ipam.dhcp._timing",
    },
)
