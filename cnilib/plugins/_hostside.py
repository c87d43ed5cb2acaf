"""Building blocks shared by the veth-based plugins (bridge, ptp): Go's ``pkg/ip`` and ``pkg/ipam``.

Two kinds of function live here:

- :func:`open_host_netns` and :func:`setup_veth` are called on the plugin's
  own thread and dispatch work to namespace workers themselves;
- every other function runs *inside* :func:`cnilib.netlink.run_in_netns`
  (the container's or the host's worker) and acts on that namespace.

Error texts follow Go's (``failed to lookup "eth0": ...``), with errno
texts in Go's lower-case wording.
"""

from __future__ import annotations

import contextlib
import errno
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Network, IPv6Network

import attrs

from cnilib.errors import ErrorCode, PluginError
from cnilib.netlink import (
    RT_TABLE_MAIN,
    Link,
    NetlinkError,
    NetNSHandle,
    NetnsTarget,
    RouteEntry,
    SysctlError,
    add_address,
    add_route,
    add_veth,
    delete_link,
    find_link,
    get_link,
    list_addresses,
    list_routes,
    list_rules,
    open_netns,
    read_sysctl,
    run_in_netns,
    set_link_up,
    write_sysctl,
)
from cnilib.plugins._gotext import go_strerror
from cnilib.results import IPAddress, IPInterface, Route
from cnilib.results.v100 import IPConfig

__all__ = [
    "VethPair",
    "configure_iface",
    "del_link_by_name_addr",
    "disable_accept_ra",
    "enable_ip_forward",
    "fail",
    "go_strerror",
    "open_host_netns",
    "random_veth_name",
    "bring_up",
    "settle_addresses",
    "setup_veth",
    "try_sysctl",
    "interface_routes",
    "validate_expected_interface_ips",
    "validate_expected_routes",
    "wait_oper_up",
]

IFA_F_TENTATIVE = 0x40
IFA_F_DADFAILED = 0x08


def fail(message: str) -> PluginError:
    """A plain plugin error (code 999, as Go's skel reports any error)."""
    return PluginError(message, code=ErrorCode.INTERNAL)


def random_veth_name() -> str:
    """Go ``ip.RandomVethName``: ``veth`` + 8 random hex digits."""
    return f"veth{secrets.token_hex(4)}"


def open_host_netns(host_netns: str | None) -> NetNSHandle:
    """Open the namespace playing the host, on the calling thread.

    ``None`` means this thread's own namespace (a plugin binary's host), which
    must be opened here: a worker would see its own. Close the handle after use.
    """
    return open_netns(host_netns)


def try_sysctl(name: str, value: str) -> None:
    """Write a sysctl, ignoring failure (Go's ``_, _ = sysctl.Sysctl(...)``)."""
    with contextlib.suppress(SysctlError):
        write_sysctl(name, value)


def disable_accept_ra(ifname: str) -> None:
    """``net/ipv6/conf/<if>/accept_ra = 0``: we own this interface's routes (CVE-2020-10749)."""
    try_sysctl(f"net/ipv6/conf/{ifname}/accept_ra", "0")


def enable_ip_forward(version: int) -> None:
    """Go ``ip.EnableIP4Forward``/``EnableIP6Forward``: write 1 unless already 1."""
    name = "net/ipv4/ip_forward" if version == 4 else "net/ipv6/conf/all/forwarding"
    try:
        if read_sysctl(name).strip() == "1":
            return
    except SysctlError:
        pass
    write_sysctl(name, "1")


# ----------------------------------------------------------------------------- veth


@attrs.frozen
class VethPair:
    """The two ends of a veth made by :func:`setup_veth`, as looked up after setup."""

    host: Link
    container: Link


def _make_veth(
    ifname: str, host: NetNSHandle, mtu: int, mac: str, host_name: str
) -> tuple[str, Link]:
    """In the container: ``ifname`` here, its peer in ``host`` (Go ``ip.makeVeth``)."""
    for _ in range(10):
        peer = host_name or random_veth_name()
        try:
            link = add_veth(ifname, peer, peer_netns=host, mtu=mtu or None, mac=mac or None)
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST:
                raise fail(f"failed to make veth pair: {go_strerror(exc)}") from exc
            if find_link(ifname) is None and not host_name:
                continue  # the random host-side name was taken: draw another
            raise fail(f"container veth name provided ({ifname}) already exists") from exc
        return peer, link
    raise fail("failed to find a unique veth name")


def bring_up(name: str, lookup_error: str, up_error: str) -> Link:
    """Look ``name`` up and set it up; each failure is ``<error>: <Go's errno text>``
    (the callers word their errors as the Go plugin they mirror does)."""
    try:
        link = get_link(name)
    except NetlinkError as exc:
        raise fail(f"{lookup_error}: {go_strerror(exc)}") from exc
    try:
        set_link_up(link)
    except NetlinkError as exc:
        raise fail(f"{up_error}: {go_strerror(exc)}") from exc
    return link


def _host_end(name: str, label: str, then: Callable[[Link], Link] | None) -> Link:
    link = bring_up(name, f'failed to lookup "{name}" in "{label}"', f'failed to set "{name}" up')
    disable_accept_ra(name)
    return then(link) if then is not None else link


def setup_veth(
    netns: NetnsTarget,
    host: NetNSHandle,
    ifname: str,
    *,
    mtu: int = 0,
    mac: str = "",
    host_veth_name: str = "",
    host_setup: Callable[[Link], Link] | None = None,
) -> VethPair:
    """Go ``ip.SetupVeth``: a veth pair, ``ifname`` in ``netns`` and the other end in ``host``.

    Called on the plugin's thread. The host end gets a random ``vethXXXXXXXX``
    name (unless ``host_veth_name``), is set up and has ``accept_ra`` off;
    then ``host_setup(link)`` runs on the host worker (e.g. enslave it to a
    bridge) and returns the link as it should be reported. The container end
    is left down. ``mac`` (already validated) is the container end's address.
    """
    host_name, container = run_in_netns(netns, _make_veth, ifname, host, mtu, mac, host_veth_name)
    host_link = run_in_netns(host, _host_end, host_name, host.label, host_setup)
    return VethPair(host=host_link, container=container)


def del_link_by_name_addr(ifname: str) -> list[IPInterface] | None:
    """Go ``ip.DelLinkByNameAddr``: delete ``ifname``, return its global unicast addresses.

    None when there is no such link (Go's ``ErrLinkNotFound``).
    """
    link = find_link(ifname)
    if link is None:
        return None
    try:
        addrs = list_addresses(link)
    except NetlinkError as exc:
        raise fail(f'failed to get IP addresses for "{ifname}": {go_strerror(exc)}') from exc
    try:
        delete_link(link)
    except NetlinkError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise fail(f'failed to delete "{ifname}": {go_strerror(exc)}') from exc
    return [a.interface for a in addrs if _global_unicast(a.interface)]


def _global_unicast(ipn: IPInterface) -> bool:
    ip = ipn.ip
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return False
    return not (ip.version == 4 and int(ip) == 0xFFFFFFFF)


def wait_oper_up(name: str, budget: float = 2.55, step: float = 0.005) -> Link:
    """Poll until ``name``'s operstate is UP; Go gives a bridge port 2.55 s in 5 tries.

    Raises ``bridge port in error state: <state>`` (Go's text) when it never is.
    """
    deadline = time.monotonic() + budget
    while True:
        link = get_link(name)
        if link.oper_state.upper() == "UP":
            return link
        if time.monotonic() >= deadline:
            raise fail(f"bridge port in error state: {link.oper_state.lower()}")
        time.sleep(step)


# ------------------------------------------------------------- container addressing


def _ipc_text(ipc: IPConfig) -> str:
    return f"{{Interface:{ipc.interface} Address:{ipc.address} Gateway:{ipc.gateway}}}"


def settle_addresses(ifname: str, timeout: float) -> None:
    """Go ``ip.SettleAddresses``: wait until no IPv6 address of ``ifname`` is tentative."""
    deadline = time.monotonic() + timeout
    while True:
        addrs = list_addresses(ifname, family=socket.AF_INET6)
        if not any(a.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) for a in addrs):
            return
        if time.monotonic() >= deadline:
            raise fail(f"link {ifname} still has tentative addresses after {timeout:g} seconds")
        time.sleep(0.01)


def _enable_ipv6(ifname: str) -> None:
    for iface in ("lo", ifname):
        name = f"net/ipv6/conf/{iface}/disable_ipv6"
        try:
            value = read_sysctl(name)
        except SysctlError:
            continue
        if value == "0":
            continue
        try:
            write_sysctl(name, "0")
        except SysctlError as exc:
            raise fail(
                f'failed to enable IPv6 for interface "{iface}" ({name}={value}): {exc}'
            ) from exc


def configure_iface(ifname: str, ips: Sequence[IPConfig], routes: Sequence[Route]) -> None:
    """Go ``ipam.ConfigureIface``: set ``ifname`` up, add ``ips`` and ``routes`` (in the container).

    Only ``ips`` with an ``interface`` index are applied. A route without a
    gateway goes via the first gateway of its family, if any.
    """
    link = bring_up(ifname, f'failed to lookup "{ifname}"', f'failed to set "{ifname}" UP')
    gateways: dict[int, object] = {}
    ipv6_enabled = False
    for ipc in ips:
        if ipc.interface is None or ipc.address is None:
            continue
        if not ipv6_enabled and ipc.address.version == 6:
            _enable_ipv6(ifname)
            ipv6_enabled = True
        try:
            add_address(link, ipc.address)
        except NetlinkError as exc:
            raise fail(
                f'failed to add IP addr {_ipc_text(ipc)} to "{ifname}": {go_strerror(exc)}'
            ) from exc
        if ipc.gateway is not None:
            gateways.setdefault(ipc.gateway.version, ipc.gateway)
    if 6 in gateways:
        with contextlib.suppress(PluginError):  # Go ignores this error too
            settle_addresses(ifname, 10)
    for route in routes:
        if route.dst is None:
            continue
        gw = route.gw if route.gw is not None else gateways.get(route.dst.version)
        try:
            add_route(route.dst.network, gateway=str(gw) if gw is not None else None, link=link)
        except NetlinkError as exc:
            raise fail(
                f"failed to add route '{route.dst.network} via {gw if gw is not None else '<nil>'}"
                f" dev {ifname}': {go_strerror(exc)}"
            ) from exc


# ---------------------------------------------------------------------------- CHECK


def validate_expected_interface_ips(ifname: str, ips: Sequence[IPConfig]) -> None:
    """Go ``ip.ValidateExpectedInterfaceIPs``: each address on ``ifname``, with its subnet
    route (in main, or moved by sbr: see :func:`_routes_to`)."""
    for ipc in ips:
        if ipc.address is None:
            continue
        link = find_link(ifname)
        if link is None:
            raise fail(f"Cannot find container link {ifname}")
        present = {a.interface for a in list_addresses(link)}
        if ipc.address not in present:
            raise fail(f"Failed to match addr {ipc.address} on interface {ifname}")
        if not _routes_to(ipc.address.network, link=link.index):
            raise fail(
                f"Failed to find Gateway {ipc.gateway or '<nil>'} for interface {ifname} "
                f"(no route to {ipc.address.network})"
            )


def _source_routed_tables(index: int) -> set[int]:
    """The tables that a rule ``from <one address of link index>`` looks up (what the
    sbr plugin makes)."""
    own = {a.interface.ip for a in list_addresses(index)}
    return {
        rule.table
        for rule in list_rules()
        if rule.src is not None
        and rule.src.prefixlen == rule.src.max_prefixlen
        and rule.table
        and rule.src.network_address in own
    }


def interface_routes(index: int, family: int | None = None) -> list[RouteEntry]:
    """The routes out of link ``index``: in the main table, and in the tables that a
    ``from <address of that link>`` rule looks up, where the sbr plugin moves them."""
    tables = {RT_TABLE_MAIN, *_source_routed_tables(index)}
    every = list_routes(family=family, table=None)
    return [r for r in every if r.oif == index and r.table in tables]


def _routes_to(
    dst: IPv4Network | IPv6Network, gateway: IPAddress | None = None, *, link: int | None = None
) -> list[RouteEntry]:
    """The routes to ``dst`` (via ``gateway`` if given) in the main table, on any link;
    if there are none and ``link`` is given, those out of ``link`` that a source rule of
    its addresses reaches (see :func:`interface_routes`).

    The sbr plugin moves an interface's routes into such a table, after the plugin
    that made them (whose CHECK looks for them) has run; Go's CHECK only looks in main.
    Only the checked interface's own tables count: another interface's moved routes
    must not stand in for a route missing from this one.
    """
    family = socket.AF_INET if dst.version == 4 else socket.AF_INET6
    found = [
        r
        for r in list_routes(family=family)
        if r.dst == dst and (gateway is None or r.gateway == gateway)
    ]
    if found or link is None:
        return found
    return [
        r
        for r in interface_routes(link, family)
        if r.dst == dst and (gateway is None or r.gateway == gateway)
    ]


def validate_expected_routes(routes: Sequence[Route], ifname: str | None = None) -> None:
    """Go ``ip.ValidateExpectedRoute``: each route is in the main table (default: any
    gateway), or moved by sbr to a source-routing table of ``ifname`` (when given)."""
    link = find_link(ifname) if ifname is not None else None
    for route in routes:
        if route.dst is None:
            continue
        dst = route.dst.network
        gateway = route.gw if dst.prefixlen != 0 else None
        found = _routes_to(dst, gateway, link=link.index if link is not None else None)
        if not found:
            via = f" via {route.gw}" if route.gw is not None else ""
            raise fail(f"Expected Route {dst}{via} not found in routing table")
