"""The ``dhcp`` IPAM plugin: addresses from a DHCP server, through the lease daemon.

Every verb is a call to the lease daemon (:mod:`._daemon`) on
``ipam.daemonSocketPath`` (default ``/run/cni/dhcp.sock``), with Go's
protocol, so this plugin works with Go's daemon and Go's plugin with
cnilib's daemon.

- ADD: ``DHCP.Allocate``; the lease's address, gateway, routes (option 121,
  else option 33 and the router) and, unlike Go, DNS (options 6, 15, 119).
- DEL: ``DHCP.Release``; a lease the daemon does not hold is not an error.
- CHECK: ``DHCP.Check``: the daemon must hold the lease (not lost to a NAK or
  expiry), the address must be on ``CNI_IFNAME`` in the container and in
  ``prevResult``. Go's CHECK asks for a lease (acquiring one if there is
  none) and looks at nothing else; against Go's daemon, which has no
  ``DHCP.Check``, this plugin does the same.
- STATUS: the daemon must answer ``DHCP.Status`` within 10 s (code 50 if it
  cannot be reached, does not answer in time, hangs up or is shutting
  down); Go's daemon, which has no such method, answers "can't find
  method", and that counts as up.
- GC: ``DHCP.GC`` releases this network's leases of attachments not in
  ``cni.dev/valid-attachments`` (Go's plugin does nothing on GC).

Error codes: a configuration error is code 7, found before the daemon is
called; a daemon that cannot be reached is code 11 (try again later: Go's
plugin says 999), and so is cnilib's daemon answering that it is shutting
down (the call was cancelled; the same call succeeds once it is back). Any
other error the daemon answers is Go's ``error calling DHCP.Allocate:
<text>``, code 999, as Go's plugin reports it; this includes ``no more
tries`` when no DHCP server answered within the daemon's ``-resendtimeout``
(minutes: a runtime retrying at once would wait as long again, so it is not
reported as transient).
"""

from __future__ import annotations

import os
from typing import ClassVar

from cnilib.errors import ErrorCode, PluginError, TryAgainLaterError
from cnilib.plugins._base import BasePlugin, PluginRequest
from cnilib.plugins.ipam.dhcp._conf import SHUTTING_DOWN, DhcpConf
from cnilib.plugins.ipam.dhcp._rpc import (
    CmdArgs,
    DaemonCallError,
    DaemonTimeoutError,
    DaemonUnreachableError,
    call as _rpc_call,
)
from cnilib.results import Result, ResultV100

__all__ = ["Dhcp"]

_STATUS_TIMEOUT = 10.0
"""STATUS only asks whether the daemon answers: it must not hang the runtime."""

_QUICK_CALL_TIMEOUT = 60.0
"""DEL, CHECK and GC: the daemon answers from what it holds (DEL sends one
DHCPRELEASE), so a daemon that accepted the call and then hung is an error
rather than a plugin that never returns. ADD has no bound of its own, as in Go:
acquiring may take the daemon's whole ``-resendtimeout``, and the runtime's
deadline for the plugin applies."""


class Dhcp(BasePlugin):
    """The ``dhcp`` IPAM plugin (a client of the lease daemon)."""

    type: ClassVar[str] = "dhcp"

    def add(self, req: PluginRequest) -> Result:
        conf = _conf(req)
        return _allocate(conf, req)

    def delete(self, req: PluginRequest) -> None:
        conf = _conf(req)
        call(conf.socket_path, "DHCP.Release", _cmd_args(req), timeout=_QUICK_CALL_TIMEOUT)

    def check(self, req: PluginRequest) -> None:
        conf = _conf(req)
        try:
            lease = call(
                conf.socket_path, "DHCP.Check", _cmd_args(req), timeout=_QUICK_CALL_TIMEOUT
            )
        except DaemonCallError as exc:
            if not _no_method(exc, "DHCP.Check"):
                raise
            _allocate(conf, req)  # Go's daemon: Go's CHECK
            return
        if lease is None:
            raise PluginError("the dhcp daemon answered DHCP.Check without a lease")
        _check_lease(req, lease)

    def status(self, req: PluginRequest) -> None:
        conf = _conf(req)
        try:
            # Not call(): a daemon shutting down cannot serve ADD, which is code 50 here, not 11.
            _rpc_call(conf.socket_path, "DHCP.Status", _cmd_args(req), timeout=_STATUS_TIMEOUT)
        except (DaemonUnreachableError, DaemonTimeoutError) as exc:
            raise PluginError(str(exc), code=ErrorCode.PLUGIN_NOT_AVAILABLE) from exc
        except DaemonCallError as exc:
            if not _no_method(exc, "DHCP.Status"):  # hung up, or shutting down
                raise PluginError(str(exc), code=ErrorCode.PLUGIN_NOT_AVAILABLE) from exc
            # Go's daemon answered (it has no DHCP.Status): it is up.

    def gc(self, req: PluginRequest) -> None:
        conf = _conf(req)
        req.valid_attachments()  # a malformed list is the plugin's error (code 7), not the daemon's
        try:
            call(conf.socket_path, "DHCP.GC", _cmd_args(req), timeout=_QUICK_CALL_TIMEOUT)
        except DaemonCallError as exc:
            if not _no_method(exc, "DHCP.GC"):
                raise
            # Go's daemon cannot collect garbage; nothing to do, as Go's plugin.


def call(
    socket_path: str, method: str, args: CmdArgs, *, timeout: float | None = None
) -> ResultV100 | None:
    """:func:`._rpc.call`; cnilib's daemon shutting down is code 11 (try again later)."""
    try:
        return _rpc_call(socket_path, method, args, timeout=timeout)
    except DaemonCallError as exc:
        if exc.reason == SHUTTING_DOWN:
            raise TryAgainLaterError(str(exc)) from exc
        raise


def _no_method(exc: DaemonCallError, method: str) -> bool:
    """Whether the daemon answered as Go's net/rpc does for a method it lacks."""
    return exc.reason == f"rpc: can't find method {method}"


def _conf(req: PluginRequest) -> DhcpConf:
    return DhcpConf.from_netconf(req.config, args=req.args, source=f'network "{req.name}"')


def _cmd_args(req: PluginRequest) -> CmdArgs:
    """The request as Go's plugin sends it: ``Netns`` made absolute, stdin as given."""
    netns = os.path.abspath(req.netns) if req.netns else ""
    return CmdArgs(
        container_id=req.container_id,
        netns=netns,
        ifname=req.ifname,
        args=";".join(f"{k}={v}" for k, v in req.args),
        path=os.pathsep.join(req.path),
        stdin_data=req.stdin,
    )


def _allocate(conf: DhcpConf, req: PluginRequest) -> ResultV100:
    result = call(conf.socket_path, "DHCP.Allocate", _cmd_args(req))
    if result is None:
        raise PluginError("the dhcp daemon answered DHCP.Allocate without a result")
    return result


def _check_lease(req: PluginRequest, lease: ResultV100) -> None:
    """The leased address is in ``prevResult`` and on the interface."""
    from cnilib.netlink import get_link, list_addresses, run_in_netns

    addresses = {str(ip.address) for ip in lease.ips}
    prev = req.prev_result
    if prev is not None:
        listed = {str(ip.address) for ip in prev.as_v1().ips}
        missing = sorted(addresses - listed)
        if missing:
            raise PluginError(
                f"dhcp: the leased address {', '.join(missing)} is not in prevResult",
                code=ErrorCode.INVALID_NETWORK_CONFIG,
            )

    def on_interface() -> set[str]:
        link = get_link(req.ifname)
        return {str(a.interface) for a in list_addresses(link)}

    present = run_in_netns(req.netns, on_interface)
    missing = sorted(addresses - present)
    if missing:
        raise PluginError(f"dhcp: the leased address {', '.join(missing)} is not on {req.ifname}")
