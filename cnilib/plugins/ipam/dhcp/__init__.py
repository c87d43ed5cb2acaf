"""The ``dhcp`` IPAM plugin and its lease daemon.

The plugin (:class:`~cnilib.plugins.ipam.dhcp.dhcp.Dhcp`, type ``dhcp``) asks
the lease daemon over a Unix socket; the daemon (:class:`LeaseDaemon`) keeps
one DHCP lease per attachment. A runtime that runs the daemon in its own
process uses :class:`DaemonThread` (or ``await LeaseDaemon.serve(path)`` in
an asyncio runtime). Nothing is imported until a name is used, so the
plugin executable starts quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnilib.plugins.ipam.dhcp._daemon import DaemonThread, LeaseDaemon
    from cnilib.plugins.ipam.dhcp._timing import Timing

__all__ = ["DaemonThread", "LeaseDaemon", "Timing"]


def __getattr__(name: str) -> Any:
    if name in ("DaemonThread", "LeaseDaemon"):
        from cnilib.plugins.ipam.dhcp import _daemon

        return getattr(_daemon, name)
    if name == "Timing":
        from cnilib.plugins.ipam.dhcp import _timing

        return _timing.Timing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
