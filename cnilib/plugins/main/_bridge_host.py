"""The bridge plugin's namespace work: each function runs on a namespace worker.

Host side (``req.host_netns``): :func:`ensure_bridge`, :func:`attach_port`,
:func:`finish_host`, and CHECK's :func:`validate_bridge` and
:func:`find_host_veth`; container side: :func:`configure_container`,
:func:`set_container_up` and CHECK's :func:`validate_container`.
Texts are Go's (``plugins/main/bridge/bridge.go`` 1.1.1).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

import attrs

from cnilib.errors import PluginError
from cnilib.netlink import (
    IFF_PROMISC,
    IFF_UP,
    Link,
    NetlinkError,
    add_address,
    add_bridge,
    add_veth,
    delete_address,
    find_link,
    get_link,
    get_link_by_index,
    ipr,
    list_addresses,
    netns_label,
    set_link_mac,
    set_link_master,
    set_link_promisc,
    set_link_up,
)
from cnilib.netlink._errors import netlink_errors
from cnilib.plugins._hostside import (
    bring_up,
    configure_iface,
    disable_accept_ra,
    enable_ip_forward,
    fail,
    go_strerror,
    random_veth_name,
    try_sysctl,
    wait_oper_up,
)
from cnilib.plugins._hosttools.masq import Masquerade
from cnilib.results import IPInterface, Route
from cnilib.results.v100 import Interface, IPConfig

__all__ = [
    "HostState",
    "attach_port",
    "configure_container",
    "ensure_bridge",
    "find_host_veth",
    "finish_host",
    "set_container_up",
    "validate_bridge",
    "validate_container",
]

BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4


def _bridge_by_name(name: str) -> Link:
    try:
        link = get_link(name)
    except NetlinkError as exc:
        raise fail(f'could not lookup "{name}": {go_strerror(exc)}') from exc
    if link.kind != "bridge":
        raise fail(f'"{name}" already exists but is not a bridge')
    return link


def ensure_bridge(name: str, mtu: int, promisc: bool, vlan_filtering: bool) -> Link:
    """Go ``ensureBridge``: create ``name`` unless it exists, promisc, ``accept_ra`` off, up."""
    try:
        return _ensure_bridge(name, mtu, promisc, vlan_filtering)
    except PluginError as exc:
        raise fail(f'failed to create bridge "{name}": {exc}') from exc


def _ensure_bridge(name: str, mtu: int, promisc: bool, vlan_filtering: bool) -> Link:
    existing = find_link(name)  # (Go adds first and ignores EEXIST: one request more)
    if existing is None:
        try:
            add_bridge(name, mtu=mtu or None, vlan_filtering=vlan_filtering)
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST:
                raise fail(f'could not add "{name}": {go_strerror(exc)}') from exc
    elif existing.kind == "bridge" and not promisc and existing.flags & IFF_UP:
        # The common case on every ADD after the first: the bridge is ready.
        # (accept_ra was turned off when it was made.)
        return existing
    if promisc:
        try:
            set_link_promisc(name)
        except NetlinkError as exc:
            raise fail(f'could not set promiscuous mode on "{name}": {go_strerror(exc)}') from exc
    bridge = _bridge_by_name(name)
    disable_accept_ra(name)
    try:
        set_link_up(bridge)
    except NetlinkError as exc:
        raise fail(go_strerror(exc)) from exc
    return bridge


def attach_port(link: Link, *, bridge: int, hairpin: bool, vlan: int) -> Link:
    """Go ``setupVeth``'s host part: enslave the host veth, hairpin, access VLAN."""
    name = link.name
    try:
        set_link_master(link, bridge)
    except NetlinkError as exc:
        raise fail(
            f'failed to connect "{name}" to bridge {get_link_name(bridge)}: {go_strerror(exc)}'
        ) from exc
    if hairpin:
        try:
            with netlink_errors(f"set hairpin on {name}", netns_label()):
                ipr().brport("set", index=link.index, mode=1)
        except NetlinkError as exc:
            raise fail(f"failed to setup hairpin mode for {name}: {go_strerror(exc)}") from exc
    if vlan:
        try:
            with netlink_errors(f"add vlan {vlan} to {name}", netns_label()):
                ipr().vlan_filter(
                    "add",
                    index=link.index,
                    vlan_info={
                        "vid": vlan,
                        "flags": BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED,
                    },
                )
        except NetlinkError as exc:
            raise fail(f'failed to setup vlan tag on interface "{name}": {exc}') from exc
    # Nothing the result reports (name, MAC) changed: no need to ask the kernel again.
    return attrs.evolve(link, master=bridge)


def get_link_name(index: int) -> str:
    """The name of link ``index`` (for messages); the index itself if it is gone."""
    try:
        return get_link_by_index(index).name
    except NetlinkError:
        return str(index)


def _ensure_vlan_interface(bridge: Link, vlan: int) -> Link:
    """Go ``ensureVlanInterface``: a veth ``<bridge>.<vlan>`` whose peer is an access port."""
    name = f"{bridge.name}.{vlan}"
    found = find_link(name)
    if found is not None:
        return found
    for _ in range(10):
        peer = random_veth_name()
        try:
            add_veth(name, peer, mtu=bridge.mtu or None)
            break
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST or find_link(name) is not None:
                raise fail(f'faild to create vlan gateway "{name}": {go_strerror(exc)}') from exc
    else:
        raise fail(f'faild to create vlan gateway "{name}": failed to find a unique veth name')
    peer_link = get_link(peer)
    set_link_up(peer_link)
    disable_accept_ra(peer)
    attach_port(peer_link, bridge=bridge.index, hairpin=False, vlan=vlan)
    try:
        set_link_up(name)
    except NetlinkError as exc:
        raise fail(f'failed to up "{name}": {go_strerror(exc)}') from exc
    return get_link(name)


def _ensure_addr(link: Link, ipn: IPInterface, force: bool) -> None:
    """Go ``ensureAddr``: put the gateway CIDR on the bridge (or its VLAN interface).

    Go lists the bridge's addresses first. That list is a dump of every
    address in the namespace (each host veth brings an IPv6 link-local one),
    which pyroute2 decodes in Python: about 10 ms with 150 containers, and
    it made every ADD slower as the bridge grew. So the add comes first:
    EEXIST means the gateway is already there, which is the common case and
    where Go returns too. Only a fresh add lists the addresses, to apply
    Go's rules on a different address (refused, or replaced with ``force``).
    """
    try:
        add_address(link, ipn)
    except NetlinkError as exc:
        if exc.errno == errno.EEXIST:
            return
        raise fail(f'could not add IP address to "{link.name}": {go_strerror(exc)}') from exc
    family = socket.AF_INET if ipn.version == 4 else socket.AF_INET6
    try:
        addrs = list_addresses(link, family=family)
    except NetlinkError as exc:
        raise fail(f"could not get list of IP addresses: {go_strerror(exc)}") from exc
    for addr in addrs:
        have = addr.interface
        if have == ipn:
            continue
        if ipn.version == 4 or ipn.ip in have.network or have.ip in ipn.network:
            target = have if force else ipn  # without force, undo our own add
            try:
                delete_address(link, target)
            except NetlinkError as exc:
                raise fail(
                    f'could not remove IP address from "{link.name}": {go_strerror(exc)}'
                ) from exc
            if not force:
                raise fail(f'"{link.name}" already has an IP address different from {ipn}')
    try:  # pin the bridge's MAC: otherwise it follows the lowest port MAC as ports churn
        set_link_mac(link, link.mac)
    except NetlinkError as exc:
        raise fail(f"could not set bridge's mac: {go_strerror(exc)}") from exc


@attrs.frozen
class HostState:
    """What ADD reports about the host side once it is done."""

    bridge: Link
    host_veth: Link
    vlan_iface: Link | None


def finish_host(
    bridge_name: str,
    host_veth: str,
    gateways: dict[int, list[IPInterface]],
    vlan: int,
    force_address: bool,
    masq_ips: Sequence[IPInterface],
    masq: Masquerade | None,
) -> HostState:
    """The rest of Go's ADD on the host: gateway addresses, forwarding, ipMasq, port state.

    The bridge is looked up again, as Go refetches it: its MAC (which the
    result reports) changes when its first port is added."""
    bridge = _bridge_by_name(bridge_name)
    vlan_iface: Link | None = None
    for family in (4, 6):
        for gw in gateways.get(family, []):
            if vlan:
                try:
                    if vlan_iface is None:
                        vlan_iface = _ensure_vlan_interface(bridge, vlan)
                    _ensure_addr(vlan_iface, gw, force_address)
                except PluginError as exc:
                    raise fail(f"failed to set vlan interface for bridge with addr: {exc}") from exc
            else:
                try:
                    _ensure_addr(bridge, gw, force_address)
                except PluginError as exc:
                    raise fail(f"failed to set bridge addr: {exc}") from exc
        if gateways.get(family):
            try:
                enable_ip_forward(family)
            except PluginError as exc:
                raise fail(f"failed to enable forwarding: {exc}") from exc
    if masq is not None and masq_ips:
        masq.setup(masq_ips)
    port = wait_oper_up(host_veth)
    if vlan_iface is not None:
        vlan_iface = get_link(vlan_iface.name)
    # The bridge's name and MAC, which the result needs, did not change above.
    return HostState(bridge=bridge, host_veth=port, vlan_iface=vlan_iface)


# ------------------------------------------------------------------ container side


def set_container_up(ifname: str) -> None:
    """Layer 2 only: set the container end up (Go's cmdAdd without IPAM)."""
    bring_up(ifname, "failed to retrieve link", f'failed to set "{ifname}" up')


def configure_container(
    ifname: str, enable_dad: bool, ips: Sequence[IPConfig], routes: Sequence[Route]
) -> None:
    """DAD and ARP-notify sysctls, then Go's ``ipam.ConfigureIface``."""
    if enable_dad:
        try_sysctl(f"net/ipv6/conf/{ifname}/enhanced_dad", "1")
        try_sysctl(f"net/ipv6/conf/{ifname}/accept_dad", "1")
    else:
        try_sysctl(f"net/ipv6/conf/{ifname}/accept_dad", "0")
    try_sysctl(f"net/ipv4/conf/{ifname}/arp_notify", "1")
    configure_iface(ifname, ips, routes)


# ---------------------------------------------------------------------------- CHECK


def _lookup(intf: Interface, in_sandbox: bool) -> Link:
    """Go ``validateInterface``."""
    if not intf.name:
        raise fail("Interface name missing ")
    link = find_link(intf.name)
    if link is None:
        raise fail(f"Interface name {intf.name} not found")
    if in_sandbox and not intf.sandbox:
        raise fail(f"Interface {intf.name} is expected to be in a sandbox")
    if not in_sandbox and intf.sandbox:
        raise fail(f"Interface {intf.name} should not be in sandbox")
    return link


def validate_bridge(intf: Interface, promisc: bool) -> Link:
    """Go ``validateCniBrInterface`` (host side)."""
    link = _lookup(intf, False)
    if link.kind != "bridge":
        raise fail(f"Interface {intf.name} does not have link type of bridge")
    if intf.mac and intf.mac != link.mac:
        raise fail(f"Bridge interface {intf.name} Mac doesn't match: {intf.mac}")
    current = bool(link.flags & IFF_PROMISC)
    if current != promisc:
        raise fail(
            f"Bridge interface {intf.name} configured Promisc Mode {str(promisc).lower()} "
            f"doesn't match current state: {str(current).lower()} "
        )
    return link


def _peer_index(link: Link) -> int:
    if link.peer_index is None or link.peer_index <= 0:
        raise fail(f"Unable to obtain veth peer index for veth {link.name}")
    return link.peer_index


def validate_container(intf: Interface) -> Link:
    """Go ``validateCniContainerInterface`` (container side)."""
    link = _lookup(intf, True)
    if link.kind != "veth":
        raise fail(f"Error: Container interface {link.name} not of type veth")
    _peer_index(link)
    if intf.mac and intf.mac != link.mac:
        raise fail(f"Interface {intf.name} Mac {intf.mac} doesn't match container Mac: {link.mac}")
    return link


def find_host_veth(
    candidates: Sequence[Interface], bridge_index: int, container: Link
) -> str | None:
    """Go ``validateCniVethInterface`` over the other interfaces: the name of the
    container's peer, enslaved to the bridge, with the recorded MAC (None: not found)."""
    for intf in candidates:
        link = _lookup(intf, False)
        if link.kind != "veth":
            continue
        peer = _peer_index(link)
        if link.index != container.peer_index or container.index != peer:
            continue
        if link.master != bridge_index:
            continue
        if intf.mac and intf.mac != link.mac:
            raise fail(f"Interface {intf.name} Mac doesn't match: {intf.mac} not found")
        return link.name
    return None
