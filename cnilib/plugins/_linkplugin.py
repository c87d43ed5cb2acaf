"""What the interface plugins share (macvlan, ipvlan, vlan, dummy, host-device).

Go's interface plugins repeat one shape; it lives here once:

- the namespaces: :func:`container_netns` and :func:`host_netns` open them
  for the length of a call (Go's ``ns.GetNS``, with its error text);
- the master: :func:`find_master` looks it up by name or, when the config
  names none, as the interface of the default route, in the host or (with
  ``linkInContainer``) the container; :func:`check_mtu` bounds the MTU by
  the master's;
- the link: :func:`new_link` creates it from where the master lives
  straight into the container as ``CNI_IFNAME`` (under a temporary name
  first where the sender's namespace has that name too), and deletes it
  again if the rest of ADD fails; :func:`add_on_master` is the whole ADD of a link on a
  master (macvlan, ipvlan, vlan);
- IPAM: :func:`ipam_lease` runs IPAM ADD and releases the address if the
  rest of ADD fails; :func:`configure_container` applies the result
  (sysctls, addresses, routes) or, without IPAM, just sets the link up;
- the answer: :func:`interface_result` (one interface, in the sandbox);
- DEL, STATUS and GC: :class:`InterfacePlugin` (IPAM's, then the link;
  an empty or missing ``CNI_NETNS`` and a missing link are success);
- CHECK is in :mod:`cnilib.plugins._linkcheck`.

Texts follow Go's latest release (``required prevResult missing``).
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar

import attrs

from cnilib.errors import CNIError, ErrorCode, PluginError
from cnilib.invoke import Command
from cnilib.netlink import (
    Link,
    LinkKindUnsupportedError,
    NetlinkError,
    NetNSError,
    NetNSHandle,
    NetNSNotFoundError,
    add_link,
    close_netns,
    delete_link,
    find_link,
    get_link,
    get_link_by_index,
    list_routes,
    open_netns,
    run_in_netns,
    set_link_name,
)
from cnilib.plugins._base import BasePlugin, PluginRequest
from cnilib.plugins._hostside import (
    bring_up,
    configure_iface,
    del_link_by_name_addr,
    fail,
    go_strerror,
    open_host_netns,
    random_veth_name,
    try_sysctl,
)
from cnilib.plugins._netconf import conf_str, ipam_type, mac_from_request, requested_mac_address
from cnilib.results import DNS, Route
from cnilib.results.v100 import Interface, IPConfig, ResultV100

__all__ = [
    "ANNOUNCE_SYSCTLS",
    "InterfacePlugin",
    "SubLink",
    "add_on_master",
    "check_mtu",
    "configure_container",
    "container_ips",
    "container_netns",
    "delete_container_link",
    "find_master",
    "host_netns",
    "interface_result",
    "ipam_lease",
    "new_link",
    "require_layer2_version",
    "requested_mac",
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


# --------------------------------------------------------------------------- master


def _default_route_interface() -> str:
    """The link of the first default route (IPv4, then IPv6), as Go's
    ``getDefaultRouteInterfaceName``; ``""`` when there is none."""
    for family in (socket.AF_INET, socket.AF_INET6):
        for route in list_routes(family=family):
            if route.dst.prefixlen == 0 and route.oif:
                return get_link_by_index(route.oif).name
    return ""


def _lookup_master(name: str) -> Link:
    if not name:
        name = _default_route_interface()
        if not name:
            raise fail("no default route interface found")
    try:
        return get_link(name)
    except NetlinkError as exc:
        if exc.errno == errno.ENODEV:
            raise fail(f'failed to lookup master "{name}": Link not found') from exc
        raise fail(f'failed to lookup master "{name}": {go_strerror(exc)}') from exc


def find_master(name: str, where: NetNSHandle) -> Link:
    """The master link called ``name`` in ``where`` (the host, or the container
    with ``linkInContainer``); with ``name`` empty, the default route's link."""
    return run_in_netns(where, _lookup_master, name)


def check_mtu(mtu: int, master: Link) -> None:
    """Go's bound on a sub-interface's MTU: 0 (inherit) up to the master's."""
    if mtu < 0 or mtu > master.mtu:
        raise fail(f"invalid MTU {mtu}, must be [0, master MTU({master.mtu})]")


def requested_mac(req: PluginRequest) -> str:
    """The container MAC asked for: the config's ``mac``, overridden by ``CNI_ARGS
    MAC=`` and ``runtimeConfig.mac``; normalised; ``""`` for none."""
    # {}: Go's macvlan has no ``args`` in its NetConf, so ``args.cni.mac`` is not read.
    mac = mac_from_request(req, {}) or conf_str(req.config, "mac")
    return requested_mac_address(mac) if mac else ""


# ----------------------------------------------------------------------------- link


def _delete_if_present(ifname: str) -> None:
    link = find_link(ifname)
    if link is not None:
        delete_link(link)


def _create_error(exc: NetlinkError, kind: str) -> PluginError:
    if isinstance(exc, LinkKindUnsupportedError):
        return fail(
            f"failed to create {kind}: this kernel has no {kind} links: it was built "
            f"without {exc.option} (operation not supported)"
        )
    return fail(f"failed to create {kind}: {go_strerror(exc)}")


def _create(
    ifname: str, kind: str, ctr: NetNSHandle, master: str | None, mtu: int, mac: str, data: bytes
) -> str:
    """In the namespace the request is sent from: look ``master`` up (``""``: the
    default route's link) and bound ``mtu`` by its, then make the link in ``ctr``
    (one job on this namespace's worker, not two); the name it got there
    (``ifname``, or a temporary one to rename)."""
    parent = None
    if master is not None:
        found = _lookup_master(master)
        check_mtu(mtu, found)
        parent = found.index
    # Before Linux 6.14 the kernel looks a new link's name up in the namespace
    # the request comes from, not in the one the link is made in: the host's
    # own eth0 would fail the creation of a container's eth0 (EEXIST). Such a
    # name is avoided with a temporary one, as Go's plugins always do.
    name = ifname if find_link(ifname) is None else random_veth_name()
    add_link(name, kind, parent=parent, netns=ctr, mtu=mtu or None, mac=mac or None, data=data)
    return name


def _rename(tmp: str, ifname: str, kind: str) -> None:
    """In the container: the new link ``tmp`` becomes ``ifname``; on failure it is deleted."""
    try:
        set_link_name(tmp, ifname)
    except NetlinkError as exc:
        with contextlib.suppress(NetlinkError):
            delete_link(tmp)
        raise fail(f'failed to rename {kind} to "{ifname}": {go_strerror(exc)}') from exc


@contextlib.contextmanager
def new_link(
    ctr: NetNSHandle,
    ifname: str,
    kind: str,
    *,
    made_in: NetNSHandle,
    master: str | None = None,
    mtu: int = 0,
    mac: str = "",
    data: bytes = b"",
) -> Iterator[None]:
    """Create a ``kind`` link called ``ifname`` in the container ``ctr``, on the
    link ``master`` (:func:`find_master`'s lookup and :func:`check_mtu`'s bound;
    None: no master).

    The request is sent from ``made_in``, the namespace of ``master`` (the
    host, or the container itself with ``linkInContainer``), and the kernel
    makes the link in the container directly. It gets its final name at
    once unless ``made_in`` has a link of that name (which a kernel before
    6.14 would take for a clash): then, as Go's plugins always do, it is
    made under a temporary name and renamed in the container. A name taken
    in the container fails as Go's does (``failed to rename macvlan to
    "eth0": file exists``). If the block raises, the link is deleted again
    (Go's macvlan does so; its ipvlan and vlan leak it).
    """
    try:
        name = run_in_netns(made_in, _create, ifname, kind, ctr, master, mtu, mac, data)
    except NetlinkError as exc:
        if exc.errno == errno.EEXIST and run_in_netns(ctr, find_link, ifname) is not None:
            # the container has the name: Go learns it renaming its temporary link
            raise fail(f'failed to rename {kind} to "{ifname}": file exists') from exc
        raise _create_error(exc, kind) from exc
    if name != ifname:
        run_in_netns(ctr, _rename, name, ifname, kind)
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            run_in_netns(ctr, _delete_if_present, ifname)
        raise


@attrs.frozen(kw_only=True)
class SubLink:
    """A link that ADD makes on a master (macvlan, ipvlan, vlan)."""

    kind: str
    master: str
    """The master's name; ``""``: the default route's link."""
    link_in_container: bool = False
    """The master is in the container (``linkInContainer``), not the host."""
    mtu: int = 0
    mac: str = ""
    data: Callable[[], bytes] = bytes
    """Builds the kind's ``IFLA_INFO_DATA`` (:func:`cnilib.netlink.macvlan_data`...),
    after ADD's ``validate``."""


def add_on_master(
    req: PluginRequest,
    link: SubLink,
    ipam_type: str,
    dns: DNS | None,
    *,
    sysctls: Sequence[str] = (),
    ipam_error_prefix: str = "",
    addresses: ResultV100 | None = None,
    validate: Callable[[], None] | None = None,
) -> ResultV100:
    """ADD of a link on a master: find the master, bound the MTU, make the link in
    the container, run IPAM (else use ``addresses``, else none: layer 2), write
    ``sysctls`` and configure the container; the answer has the one interface.
    A failure deletes the link and releases IPAM's address. ``validate`` runs
    once the namespaces are open (where Go checks a link's mode)."""
    if not ipam_type and addresses is None:
        require_layer2_version(req)
    with container_netns(req) as ctr, host_netns(req) as host:
        if validate is not None:
            validate()
        where = ctr if link.link_in_container else host
        with (
            new_link(
                ctr,
                req.ifname,
                link.kind,
                made_in=where,
                master=link.master,
                mtu=link.mtu,
                mac=link.mac,
                data=link.data(),
            ),  # fmt: skip
            ipam_lease(req, ipam_type, error_prefix=ipam_error_prefix) as ipam,
        ):
            if ipam is not None:
                addresses = ipam
            made = configure_container(
                ctr, req.ifname, addresses, sysctls=sysctls if addresses is not None else ()
            )
        return interface_result(req, made, addresses, dns)


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
    try:
        run_in_netns(req.netns, del_link_by_name_addr, req.ifname)
    except NetNSNotFoundError:
        return
    close_netns(req.netns)  # the container is going away: do not keep it open
