"""The ``loopback`` plugin: bring ``lo`` up in the container (Go ``plugins/main/loopback``).

- ADD ignores ``CNI_IFNAME`` (always ``lo``), sets ``lo`` up and checks that
  every address on it is a loopback address. It passes ``prevResult`` through
  unchanged, or else answers with ``lo`` (mac ``00:00:00:00:00:00``, sandbox
  ``CNI_NETNS``) and the first IPv4 and IPv6 address of ``lo``.
- DEL sets ``lo`` down; an empty ``CNI_NETNS`` or a namespace that no longer
  exists is success (DEL is idempotent).
- CHECK fails with ``loopback interface is down`` unless ``lo`` is up.

Errors carry code 999, as Go's skel gives any plain error.

Deliberate differences from Debian's Go plugin 1.1.1: for a 0.1.0/0.2.0
configuration, Go prints a 1.x-shaped result labelled with the old version
(``interfaces`` and ``ips``); this plugin answers a real 0.2.0 result
(``ip4``/``ip6``), which is what the spec and libcni's conversion give. A 1.x
result omits an empty ``dns`` (as libcni >= 1.1 marshals it; Go 1.1.1 prints
``"dns": {}``). A missing namespace reads ``netns: open <path>: No such file
or directory`` rather than Go's ``failed to Statfs "<path>": ...``.
"""

from __future__ import annotations

import contextlib
import socket

from cnilib.errors import CNIError, ErrorCode, PluginError
from cnilib.netlink import (
    Address,
    NetNSNotFoundError,
    close_netns,
    get_link,
    list_addresses,
    run_in_netns,
    set_link_down,
    set_link_up,
)
from cnilib.plugins._base import BasePlugin, PluginRequest
from cnilib.results import IPInterface, Result
from cnilib.results.v100 import Interface, IPConfig, ResultV100

__all__ = ["Loopback"]

_LO = "lo"
_ZERO_MAC = "00:00:00:00:00:00"
LOOPBACK_IFINDEX = 1
"""The kernel gives ``lo`` this index in every network namespace."""


def _loopback_addresses(addrs: list[Address], family: int) -> IPInterface | None:
    """The first of ``addrs`` in ``family``; every one must be a loopback address."""
    mine = [a.interface for a in addrs if a.family == family]
    for iface in mine:
        if not iface.ip.is_loopback:
            raise PluginError(
                f'loopback interface found with non-loopback address "{iface.ip}"',
                code=ErrorCode.INTERNAL,
            )
    return mine[0] if mine else None


def _bring_up() -> tuple[IPInterface | None, IPInterface | None]:
    # Two requests, not Go's four: set up by name (ENODEV if there is no lo, as Go's
    # LinkByName), then one dump of lo's addresses (lo is always ifindex 1).
    set_link_up(_LO)
    addrs = list_addresses(LOOPBACK_IFINDEX)
    return (
        _loopback_addresses(addrs, socket.AF_INET),
        _loopback_addresses(addrs, socket.AF_INET6),
    )


def _take_down() -> None:
    set_link_down(_LO)


def _check_up() -> None:
    if not get_link(_LO).up:
        raise PluginError("loopback interface is down", code=ErrorCode.INTERNAL)


class Loopback(BasePlugin):
    """Go's loopback plugin, in process."""

    type = "loopback"

    def add(self, req: PluginRequest) -> Result:
        """Set ``lo`` up; pass ``prevResult`` on or describe ``lo``."""
        try:
            prev = req.prev_result
        except CNIError as exc:
            raise PluginError(
                f"failed to parse prevResult: {exc}", code=ErrorCode.INTERNAL
            ) from exc
        v4, v6 = run_in_netns(req.netns, _bring_up)
        if prev is not None:
            return prev
        ips = [IPConfig(interface=0, address=addr) for addr in (v4, v6) if addr is not None]
        return ResultV100(
            cni_version=ResultV100.IMPLEMENTED_VERSION,
            interfaces=[Interface(name=_LO, mac=_ZERO_MAC, sandbox=req.netns)],
            ips=ips,
        )

    def check(self, req: PluginRequest) -> None:
        """Fail unless ``lo`` is up."""
        run_in_netns(req.netns, _check_up)

    def delete(self, req: PluginRequest) -> None:
        """Set ``lo`` down; a missing namespace is already deleted."""
        if not req.netns:
            return
        with contextlib.suppress(NetNSNotFoundError):
            run_in_netns(req.netns, _take_down)
        # The container is going away: do not keep its namespace alive with a worker
        # (a deleted one too: the worker that entered it at ADD would hold it).
        close_netns(req.netns)
