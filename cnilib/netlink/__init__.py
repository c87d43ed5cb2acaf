"""Network namespaces and netlink: the only part of cnilib that uses pyroute2.

Work inside a namespace runs on a worker thread that entered it, never on the
caller's thread, and forks no process::

    from cnilib import netlink

    def set_lo_up() -> netlink.Link:
        lo = netlink.get_link("lo")
        netlink.set_link_up(lo)
        return lo

    lo = netlink.run_in_netns("/run/netns/ctr", set_lo_up)

DHCPv4 on the wire (:func:`open_dhcp_socket`, :class:`DhcpSocket`,
:class:`DhcpRequest`, :class:`DhcpReply`) makes its raw socket inside a
namespace the same way, then serves any asyncio loop.

The helpers (links, addresses, routes, rules, traffic control, conntrack,
sysctls) act on the namespace of the worker that runs them and must be called
inside :func:`run_in_netns`,
:func:`arun_in_netns` or :func:`run_here`. Failures are
:class:`cnilib.PluginError` subclasses whose message names the operation,
the object and the namespace. pyroute2 is imported only when a worker makes
its first netlink socket, so importing this package is cheap.
"""

from cnilib.netlink._addr import Address, add_address, delete_address, list_addresses
from cnilib.netlink._conntrack import delete_udp_conntrack
from cnilib.netlink._dhcp import (
    DhcpLinkNotFoundError,
    DhcpReply,
    DhcpRequest,
    DhcpSocket,
    DhcpSocketError,
    MessageType,
    decode_reply,
    encode_message,
    encode_request,
    open_dhcp_socket,
)
from cnilib.netlink._errors import (
    NetlinkError,
    NetNSError,
    NetNSNotFoundError,
    NotOnWorkerError,
    SysctlError,
)
from cnilib.netlink._kinds import (
    IPVLAN_MODES,
    KERNEL_OPTIONS,
    MACVLAN_MODES,
    LinkKindUnsupportedError,
    add_link,
    ipvlan_data,
    macvlan_data,
    vlan_data,
)
from cnilib.netlink._link import (
    IFF_ALLMULTI,
    IFF_PROMISC,
    IFF_UP,
    Link,
    LinkRef,
    add_bridge,
    add_veth,
    delete_link,
    find_link,
    get_link,
    get_link_by_index,
    list_links,
    move_link,
    set_link_alias,
    set_link_allmulti,
    set_link_down,
    set_link_mac,
    set_link_master,
    set_link_mtu,
    set_link_name,
    set_link_promisc,
    set_link_txqlen,
    set_link_up,
)
from cnilib.netlink._ns import NetNSHandle, current_netns_path, open_netns
from cnilib.netlink._pool import (
    NetnsPool,
    NetnsTarget,
    arun_in_netns,
    close_netns,
    default_pool,
    ipr,
    netns_label,
    raw,
    run_here,
    run_in_netns,
)
from cnilib.netlink._route import (
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    RouteEntry,
    add_route,
    delete_route,
    list_routes,
    replace_route,
)
from cnilib.netlink._rule import FR_ACT_TO_TBL, Rule, add_rule, delete_rule, list_rules
from cnilib.netlink._sysctl import read_sysctl, sysctl_path, write_sysctl
from cnilib.netlink._sysfs import Sysfs, SysfsError, namespace_sysfs
from cnilib.netlink._tc import (
    INGRESS_HANDLE,
    TC_H_INGRESS,
    TC_H_ROOT,
    Qdisc,
    TcFilter,
    add_ifb,
    add_ingress_qdisc,
    add_redirect_filter,
    add_tbf_qdisc,
    delete_qdisc,
    list_filters,
    list_qdiscs,
    psched_tick_in_usec,
)

__all__ = [
    "FR_ACT_TO_TBL",
    "IFF_ALLMULTI",
    "IFF_PROMISC",
    "IFF_UP",
    "INGRESS_HANDLE",
    "IPVLAN_MODES",
    "KERNEL_OPTIONS",
    "MACVLAN_MODES",
    "RT_SCOPE_HOST",
    "RT_SCOPE_LINK",
    "RT_SCOPE_UNIVERSE",
    "RT_TABLE_MAIN",
    "TC_H_INGRESS",
    "TC_H_ROOT",
    "Address",
    "DhcpLinkNotFoundError",
    "DhcpReply",
    "DhcpRequest",
    "DhcpSocket",
    "DhcpSocketError",
    "Link",
    "LinkKindUnsupportedError",
    "LinkRef",
    "MessageType",
    "NetNSError",
    "NetNSHandle",
    "NetNSNotFoundError",
    "NetlinkError",
    "NetnsPool",
    "NetnsTarget",
    "NotOnWorkerError",
    "Qdisc",
    "RouteEntry",
    "Rule",
    "SysctlError",
    "Sysfs",
    "SysfsError",
    "TcFilter",
    "add_address",
    "add_bridge",
    "add_ifb",
    "add_ingress_qdisc",
    "add_link",
    "add_redirect_filter",
    "add_route",
    "add_tbf_qdisc",
    "add_rule",
    "add_veth",
    "arun_in_netns",
    "close_netns",
    "current_netns_path",
    "decode_reply",
    "default_pool",
    "delete_address",
    "delete_link",
    "delete_qdisc",
    "delete_route",
    "delete_rule",
    "delete_udp_conntrack",
    "encode_message",
    "encode_request",
    "find_link",
    "get_link",
    "get_link_by_index",
    "ipr",
    "ipvlan_data",
    "list_addresses",
    "list_filters",
    "list_links",
    "list_qdiscs",
    "list_routes",
    "list_rules",
    "macvlan_data",
    "namespace_sysfs",
    "move_link",
    "netns_label",
    "open_dhcp_socket",
    "open_netns",
    "psched_tick_in_usec",
    "raw",
    "read_sysctl",
    "replace_route",
    "run_here",
    "run_in_netns",
    "set_link_down",
    "set_link_mac",
    "set_link_alias",
    "set_link_allmulti",
    "set_link_master",
    "set_link_mtu",
    "set_link_name",
    "set_link_promisc",
    "set_link_txqlen",
    "set_link_up",
    "sysctl_path",
    "vlan_data",
    "write_sysctl",
]
