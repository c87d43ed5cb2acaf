"""Making a link on a master (macvlan, ipvlan, vlan; dummy's link too).

- the master: :func:`find_master` looks it up by name or, when the config
  names none, as the interface of the default route, in the host or (with
  ``linkInContainer``) the container; :func:`check_mtu` bounds the MTU by
  the master's; :func:`requested_mac` is the MAC the request asks for;
- the link: :func:`new_link` creates it from where the master lives
  straight into the container as ``CNI_IFNAME`` (under a temporary name
  first where the sender's namespace has that name too), and deletes it
  again if the rest of ADD fails;
- :func:`add_on_master` is the whole ADD of a link on a master, built on
  :mod:`cnilib.plugins._linkplugin`'s IPAM, configuration and answer.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable, Iterator, Sequence

import attrs

from cnilib.errors import PluginError
from cnilib.netlink import (
    Link,
    LinkKindUnsupportedError,
    NetlinkError,
    NetNSHandle,
    add_link,
    delete_link,
    find_link,
    get_link,
    get_link_by_index,
    list_routes,
    run_in_netns,
    set_link_name,
)
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._hostside import fail, go_strerror, random_veth_name
from cnilib.plugins._linkplugin import (
    configure_container,
    container_netns,
    host_netns,
    interface_result,
    ipam_lease,
    require_layer2_version,
)
from cnilib.plugins._netconf import conf_str, mac_from_request, requested_mac_address
from cnilib.results import DNS
from cnilib.results.v100 import ResultV100

__all__ = ["SubLink", "add_on_master", "check_mtu", "find_master", "new_link", "requested_mac"]


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
