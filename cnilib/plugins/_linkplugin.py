"""What the interface plugins share (macvlan, ipvlan, vlan, dummy, host-device).

Go's interface plugins repeat one shape; it lives here once:

- the namespaces: :func:`container_netns` and :func:`host_netns` open them
  for the length of a call (Go's ``ns.GetNS``, with its error text);
- IPAM: :func:`ipam_lease` runs IPAM ADD and releases the address if the
  rest of ADD fails; :func:`configure_container` applies the result
  (sysctls, addresses, routes) or, without IPAM, just sets the link up;
- the answer: :func:`interface_result` (one interface, in the sandbox);
- DEL, STATUS and GC: :class:`InterfacePlugin` (IPAM's, then the link;
  an empty or missing ``CNI_NETNS`` and a missing link are success).

Making a link on a master is in :mod:`cnilib.plugins._sublink`, CHECK in
:mod:`cnilib.plugins._linkcheck`. Texts follow Go's latest release
(``required prevResult missing``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import ClassVar

from cnilib.errors import CNIError, ErrorCode, PluginError
from cnilib.invoke import Command
from cnilib.netlink import (
    Link,
    NetNSError,
    NetNSHandle,
    NetNSNotFoundError,
    close_netns,
    get_link,
    open_netns,
    run_in_netns,
)
from cnilib.plugins._base import BasePlugin, PluginRequest
from cnilib.plugins._hostside import (
    bring_up,
    configure_iface,
    del_link_by_name_addr,
    fail,
    open_host_netns,
    try_sysctl,
)
from cnilib.plugins._netconf import ipam_type
from cnilib.results import DNS, Route
from cnilib.results.v100 import Interface, IPConfig, ResultV100

__all__ = [
    "ANNOUNCE_SYSCTLS",
    "InterfacePlugin",
    "configure_container",
    "container_ips",
    "container_netns",
    "delete_container_link",
    "host_netns",
    "interface_result",
    "ipam_lease",
    "require_layer2_version",
]


class InterfacePlugin(BasePlugin):
    """Base of the interface plugins: DEL, STATUS and GC.

    DEL is IPAM's (when configured), then the container link
    (:func:`delete_container_link`). STATUS and GC are IPAM's: Go's interface
    plugins leave GC out (a no-op), so a host-local store behind them is
    never collected; here GC reaches IPAM, as bridge's and ptp's does.
    Subclasses decode their configuration in :meth:`load_ipam`.
    """

    requires_ipam: ClassVar[bool] = False
    """ADD, CHECK, STATUS and GC refuse a configuration without ``ipam``."""

    def load_ipam(self, req: PluginRequest) -> str:
        """Decode the configuration (its errors as ADD's); its IPAM type, ``""`` for none."""
        return ipam_type(req.config)

    def ipam_of(self, req: PluginRequest) -> str:
        """:meth:`load_ipam`, refusing none when :attr:`requires_ipam`."""
        return self.require_ipam(self.load_ipam(req))

    def require_ipam(self, ipam: str) -> str:
        """``ipam``; ``<type> interface requires an IPAM configuration`` when it is
        empty and :attr:`requires_ipam`."""
        if self.requires_ipam and not ipam:
            raise fail(f"{self.type} interface requires an IPAM configuration")
        return ipam

    def delete(self, req: PluginRequest) -> None:
        """IPAM DEL (when configured), then the link; what is gone already is fine."""
        ipam = self.load_ipam(req)
        if ipam:
            req.delegate(ipam, Command.DEL)
        delete_container_link(req)

    def status(self, req: PluginRequest) -> None:
        """STATUS: IPAM's."""
        ipam = self.ipam_of(req)
        if ipam:
            req.delegate(ipam, Command.STATUS)

    def gc(self, req: PluginRequest) -> None:
        """GC: IPAM's (it releases the addresses of attachments no longer valid)."""
        ipam = self.ipam_of(req)
        if ipam:
            req.delegate(ipam, Command.GC)


# ----------------------------------------------------------------------- namespaces


@contextlib.contextmanager
def container_netns(req: PluginRequest) -> Iterator[NetNSHandle]:
    """``CNI_NETNS``, open for the block; ``failed to open netns "<path>": ...``."""
    try:
        handle = open_netns(req.netns)
    except NetNSError as exc:
        raise fail(f'failed to open netns "{req.netns}": {exc}') from exc
    with handle:
        yield handle


@contextlib.contextmanager
def host_netns(req: PluginRequest) -> Iterator[NetNSHandle]:
    """The namespace playing the host for this call, open for the block."""
    with contextlib.closing(open_host_netns(req.host_netns)) as handle:
        yield handle


def require_layer2_version(req: PluginRequest) -> None:
    """Refuse, before anything is made, a layer-2 attachment (no addresses) whose
    result version cannot carry it: a 0.1.0 or 0.2.0 result is IP addresses only.
    (Go makes the interface, then fails to print the result, and leaves it.)"""
    if req.cni_version in ("0.1.0", "0.2.0"):
        raise PluginError(
            f"cannot convert: no valid IP addresses (a {req.cni_version} result has only "
            'IP addresses: configure "ipam", or use cniVersion 0.3.0 or later)',
            code=ErrorCode.INCOMPATIBLE_CNI_VERSION,
        )


# ----------------------------------------------------------------------------- IPAM


@contextlib.contextmanager
def ipam_lease(
    req: PluginRequest, ipam_type: str, *, error_prefix: str = ""
) -> Iterator[ResultV100 | None]:
    """IPAM ADD through ``ipam_type`` (None without IPAM); if the block raises,
    IPAM DEL releases the address again. ``error_prefix`` starts the text of
    IPAM ADD's own error (its code is kept): vlan's ``failed to execute IPAM
    delegate: ``."""
    if not ipam_type:
        yield None
        return
    try:
        result = req.delegate_add(ipam_type).as_v1()
    except CNIError as exc:
        if not error_prefix:
            raise
        raise exc.with_context(error_prefix) from exc
    try:
        if not result.ips:
            raise fail("IPAM plugin returned missing IP config")
        yield result
    except BaseException:
        with contextlib.suppress(Exception):
            req.delegate(ipam_type, Command.DEL)
        raise


def _configure(
    ifname: str, ips: Sequence[IPConfig], routes: Sequence[Route], sysctls: Sequence[str]
) -> Link:
    for name in sysctls:  # Go ignores failures of these
        try_sysctl(name.format(ifname=ifname), "1")
    if not ips:
        lookup_error = f'failed to find interface name "{ifname}"'
        return bring_up(ifname, lookup_error, f'failed to set "{ifname}" UP')
    configure_iface(ifname, ips, routes)
    return get_link(ifname)


ANNOUNCE_SYSCTLS = ("net/ipv4/conf/{ifname}/arp_notify", "net/ipv6/conf/{ifname}/ndisc_notify")
"""Announce the interface's addresses (gratuitous ARP, unsolicited NA) when it
comes up or its MAC changes: macvlan and ipvlan set these, as Go's do."""


def container_ips(ipam: ResultV100 | None) -> list[IPConfig]:
    """IPAM's addresses, each on interface 0 (the only interface of the result)."""
    if ipam is None:
        return []
    return [IPConfig(interface=0, address=ipc.address, gateway=ipc.gateway) for ipc in ipam.ips]


def configure_container(
    ctr: NetNSHandle,
    ifname: str,
    ipam: ResultV100 | None,
    *,
    sysctls: Sequence[str] = (),
) -> Link:
    """In the container: write ``sysctls`` (``{ifname}`` filled in) to 1, then apply
    IPAM's addresses and routes and set ``ifname`` up; without IPAM, only set it up.
    Returns the link as configured."""
    routes = ipam.routes if ipam is not None else []
    return run_in_netns(ctr, _configure, ifname, container_ips(ipam), routes, tuple(sysctls))


def interface_result(
    req: PluginRequest, link: Link, ipam: ResultV100 | None, dns: DNS | None
) -> ResultV100:
    """The answer of an interface plugin: the container interface (index 0) with
    IPAM's addresses and routes, and ``dns`` (else IPAM's)."""
    return ResultV100(
        cni_version=ResultV100.IMPLEMENTED_VERSION,
        interfaces=[Interface(name=link.name, mac=link.mac, sandbox=req.netns)],
        ips=container_ips(ipam),
        routes=ipam.routes if ipam is not None else [],
        dns=dns if dns is not None else (ipam.dns if ipam is not None else DNS()),
    )


# ------------------------------------------------------------------------------ DEL


def delete_container_link(req: PluginRequest) -> None:
    """Delete ``CNI_IFNAME`` in ``CNI_NETNS``: an empty or missing namespace and
    a missing link are success (DEL must be idempotent)."""
    if not req.netns:
        return
    with contextlib.suppress(NetNSNotFoundError):
        run_in_netns(req.netns, del_link_by_name_addr, req.ifname)
    # The container is going away: do not keep it open (nor, if the runtime deleted it
    # already, keep it alive with the worker that entered it at ADD).
    close_netns(req.netns)
