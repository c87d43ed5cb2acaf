"""The node's data path: the VXLAN device, the node bridge and one set of entries per peer.

This is flannel's vxlan backend in the kernel, with one difference that matters:
:meth:`VxlanDatapath.reconcile` diffs the peers it is given against what the KERNEL
holds, not against a memory of what it did, so entries of nodes that left while the
agent was down are removed too (flannel's restart keeps them).

Per peer, in flannel's order (the route last, so the kernel never resolves the
gateway itself; removal starts with the route):

- neighbour ``<peer subnet>.0 lladdr <peer VTEP MAC> nud permanent`` on the device;
- FDB ``<peer VTEP MAC> dst <peer underlay> self permanent`` on the device;
- route ``<peer subnet> via <peer subnet>.0 dev <device> onlink``.

Every operation is one :func:`cnilib.netlink.arun_in_netns` call into the node
namespace (``netns`` None: this process's own, which only a real node uses).
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, ip_address

import attrs

from cnilib import netlink
from cnilib.netlink import NetlinkError, SysctlError
from cnilib.overlay._errors import OverlayConfigError, OverlayError
from cnilib.overlay._records import SubnetRecord

__all__ = ["DatapathConfig", "Peer", "ReconcileReport", "VxlanDatapath"]

log = logging.getLogger("cnilib.overlay")

ENCAP_OVERHEAD = 50
"""Outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8: the device's MTU is the underlay's less this."""

_NUD_PERMANENT = 0x80
_RTN_UNICAST = 1


def _lower(mac: str) -> str:
    return mac.lower()


@attrs.frozen
class Peer:
    """Another node, as this node's kernel needs it."""

    subnet: IPv4Network
    underlay: IPv4Address
    vtep_mac: str = attrs.field(converter=_lower)

    @classmethod
    def from_record(cls, record: SubnetRecord) -> Peer:
        return cls(subnet=record.subnet, underlay=record.underlay, vtep_mac=record.vtep_mac)

    @property
    def gateway(self) -> IPv4Address:
        """``<subnet>.0``: the address on the peer's VXLAN device, this node's next hop."""
        return self.subnet.network_address


@attrs.frozen
class DatapathConfig:
    """Where and how the node's data path is built."""

    netns: str | None
    """The node namespace; None: this process's own."""
    underlay: IPv4Address
    """This node's address on the underlay: the VXLAN packets' source."""
    underlay_link: str | None
    """The underlay link; None: the link holding ``underlay``."""
    vxlan_name: str
    bridge_name: str
    vni: int
    port: int
    cluster: IPv4Network
    """The cluster CIDR: routes via the device inside it are the overlay's own."""


@attrs.frozen
class ReconcileReport:
    """What :meth:`VxlanDatapath.reconcile` changed in the kernel."""

    added: tuple[IPv4Network, ...]
    """Peers whose route was missing: their entries were written."""
    removed: tuple[IPv4Network, ...]
    """Subnets whose route no peer explains: removed, with their neighbour and FDB entries."""
    repaired: int
    """Other entries written or deleted: a present peer's wrong or missing neighbour or FDB
    entry, a stale entry left without its route. 0 when the kernel already matched."""
    failed: tuple[IPv4Network, ...] = ()
    """Peers whose entries could not be written, and departed subnets whose route could
    not be deleted (logged; the next reconcile tries again)."""


@attrs.frozen
class _Underlay:
    name: str
    index: int
    mtu: int


class VxlanDatapath:
    """The VXLAN device, the node bridge and the per-peer entries of one node."""

    def __init__(self, config: DatapathConfig) -> None:
        self.config = config
        self._subnet: IPv4Network | None = None

    # ------------------------------------------------------------------ public API

    async def probe_underlay(self) -> tuple[str, int]:
        """(name, MTU) of the underlay link; :class:`OverlayConfigError` if ``underlay`` is
        on no link (or not on ``underlay_link``)."""
        found = await netlink.arun_in_netns(self.config.netns, self._underlay)
        return found.name, found.mtu

    async def current_mac(self) -> str | None:
        """The MAC of an existing VXLAN device that :meth:`setup` would keep, else None."""
        return await netlink.arun_in_netns(self.config.netns, self._current_mac)

    async def setup(self, subnet: IPv4Network, vtep_mac: str) -> int:
        """Make (or adopt) the VXLAN device and the bridge for ``subnet``; the MTU.

        The device: VNI, local underlay address, underlay link, port, no learning,
        ``vtep_mac``, MTU underlay - 50, address ``<subnet>.0/32``, up, accept_ra 0. A
        device of that name with other VXLAN parameters is recreated. The bridge:
        ``<subnet>.1/<len>``, the same MTU, up. Addresses of another subnet of the
        cluster are removed from both. ``net.ipv4.ip_forward`` is 1. Idempotent.
        """
        mtu = await netlink.arun_in_netns(self.config.netns, self._setup, subnet, vtep_mac.lower())
        self._subnet = subnet
        return mtu

    async def reconcile(self, peers: Collection[Peer]) -> ReconcileReport:
        """Make the device's routes, neighbours and FDB entries exactly ``peers``' entries."""
        return await netlink.arun_in_netns(self.config.netns, self._reconcile, tuple(peers))

    async def teardown(self) -> None:
        """Delete the VXLAN device (its routes, neighbours, FDB go with it) and the bridge."""
        await netlink.arun_in_netns(self.config.netns, self._teardown)

    # ------------------------------------------------------------------ on the worker

    def _where(self) -> str:
        return self.config.netns or "this namespace"

    def _underlay(self) -> _Underlay:
        config = self.config
        holders = {
            a.index
            for a in netlink.list_addresses(family=socket.AF_INET)
            if a.interface.ip == config.underlay
        }
        if config.underlay_link is not None:
            link = netlink.find_link(config.underlay_link)
            if link is None:
                raise OverlayConfigError(
                    f"underlay link {config.underlay_link!r} does not exist in {self._where()}"
                )
            if link.index not in holders:
                raise OverlayConfigError(
                    f"underlay address {config.underlay} is not on link {link.name!r}"
                    f" in {self._where()}"
                )
        else:
            if not holders:
                raise OverlayConfigError(
                    f"underlay address {config.underlay} is on no link in {self._where()}"
                )
            link = netlink.get_link_by_index(min(holders))
        if link.mtu <= ENCAP_OVERHEAD + 68:
            raise OverlayConfigError(
                f"underlay link {link.name!r} has MTU {link.mtu}: too small for VXLAN"
                f" (needs more than {ENCAP_OVERHEAD + 68})"
            )
        return _Underlay(name=link.name, index=link.index, mtu=link.mtu)

    def _compatible(self, link: netlink.Link, underlay: _Underlay) -> bool:
        """flannel's ``vxlanLinksIncompat``, for what this device sets."""
        info = link.vxlan
        if link.kind != "vxlan" or info is None:
            return False
        config = self.config
        return (
            info.vni == config.vni
            and info.local == str(config.underlay)
            and info.link == underlay.index
            and info.port == config.port
            and not info.learning
        )

    def _current_mac(self) -> str | None:
        link = netlink.find_link(self.config.vxlan_name)
        if link is None:
            return None
        return link.mac.lower() if self._compatible(link, self._underlay()) else None

    def _setup(self, subnet: IPv4Network, mac: str) -> int:
        config = self.config
        underlay = self._underlay()
        mtu = underlay.mtu - ENCAP_OVERHEAD
        name = config.vxlan_name
        device = netlink.find_link(name)
        if device is not None and not self._compatible(device, underlay):
            log.warning(
                "%s in %s is not the VXLAN device this node needs (VNI %d, local %s, link %s,"
                " port %d, no learning): recreating it",
                name,
                self._where(),
                config.vni,
                config.underlay,
                underlay.name,
                config.port,
            )
            netlink.delete_link(device)
            device = None
        if device is None:
            data = netlink.vxlan_data(
                config.vni, local=config.underlay, link=underlay.index, port=config.port
            )
            netlink.add_link(name, "vxlan", mtu=mtu, mac=mac, data=data)
            log.info(
                "created %s (VNI %d, MAC %s, MTU %d) in %s",
                name,
                config.vni,
                mac,
                mtu,
                self._where(),
            )
        else:
            if device.mac.lower() != mac:
                # The MAC peers use is the published one: the device follows the record.
                netlink.set_link_mac(name, mac)
            if device.mtu != mtu:
                netlink.set_link_mtu(name, mtu)
        self._disable_ra(name)
        self._set_address(name, IPv4Interface(f"{subnet.network_address}/32"))
        netlink.set_link_up(name)

        bridge = netlink.find_link(config.bridge_name)
        if bridge is None:
            netlink.add_bridge(config.bridge_name, mtu=mtu)
        elif bridge.kind != "bridge":
            raise OverlayConfigError(
                f"{config.bridge_name} in {self._where()} is a {bridge.kind or 'device'}"
                " link, not a bridge: pick another bridge name"
            )
        elif bridge.mtu != mtu:
            netlink.set_link_mtu(config.bridge_name, mtu)
        self._set_address(
            config.bridge_name, IPv4Interface(f"{subnet.network_address + 1}/{subnet.prefixlen}")
        )
        netlink.set_link_up(config.bridge_name)

        if netlink.read_sysctl("net.ipv4.ip_forward") != "1":
            netlink.write_sysctl("net.ipv4.ip_forward", 1)
        return mtu

    def _disable_ra(self, name: str) -> None:
        try:
            # the path form: a device name may hold a dot
            netlink.write_sysctl(f"net/ipv6/conf/{name}/accept_ra", 0)
        except SysctlError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: IPv6 is off in the namespace
                raise

    def _set_address(self, name: str, wanted: IPv4Interface) -> None:
        """``wanted`` on ``name``; other addresses of the cluster (a previous subnet) removed."""
        present = False
        for address in netlink.list_addresses(name, family=socket.AF_INET):
            iface = address.interface
            if iface == wanted:
                present = True
            elif iface.ip in self.config.cluster:
                log.info("removing %s from %s (not this node's subnet)", iface, name)
                netlink.delete_address(name, iface)
        if not present:
            netlink.add_address(name, wanted)

    def _reconcile(self, peers: tuple[Peer, ...]) -> ReconcileReport:
        config = self.config
        device = netlink.find_link(config.vxlan_name)
        if device is None:
            raise OverlayError(
                f"the VXLAN device {config.vxlan_name} does not exist in"
                f" {self._where()}: the data path was not set up"
            )
        wanted: dict[IPv4Network, Peer] = {}
        macs: dict[str, Peer] = {}
        own = self._subnet
        # In subnet order, so which of two conflicting peers wins does not depend on
        # the order they came in (else the FDB entry of a shared MAC flaps).
        for peer in sorted(peers, key=lambda p: (p.subnet, p.underlay, p.vtep_mac)):
            twin = macs.get(peer.vtep_mac)
            if (
                not peer.subnet.subnet_of(config.cluster)
                # every node's subnet has the same length: another length is a bad
                # record, whose route would take part of ours or of a peer's
                or (
                    own is not None
                    and (peer.subnet.overlaps(own) or peer.subnet.prefixlen != own.prefixlen)
                )
            ):
                log.warning("ignoring peer %s: not another subnet of %s", peer, config.cluster)
            elif peer.subnet in wanted and wanted[peer.subnet] != peer:
                log.warning("two peers claim %s: %s and %s", peer.subnet, wanted[peer.subnet], peer)
            elif twin is not None and twin.underlay != peer.underlay:
                # one FDB destination per unicast MAC: both cannot be reached
                log.warning("ignoring peer %s: its VTEP MAC is also %s's", peer, twin)
            else:
                wanted[peer.subnet] = peer
                macs[peer.vtep_mac] = peer
        gateways = {p.gateway: p for p in wanted.values()}

        routes = {
            r.dst: r
            for r in netlink.list_routes(family=socket.AF_INET, link=device.index)
            if isinstance(r.dst, IPv4Network)
            and r.type == _RTN_UNICAST
            and r.dst.subnet_of(config.cluster)
        }
        neighbours = {
            n.ip: n
            for n in netlink.list_neighbours(device.index, family=socket.AF_INET)
            if ip_address(n.ip) in config.cluster
        }
        fdb = [e for e in netlink.list_fdb(device.index) if e.dst is not None]

        changes = _Changes(self._where())
        # Removal first, the route before its neighbour and FDB entry.
        removed: list[IPv4Network] = []
        failed: list[IPv4Network] = []
        gone_macs: set[str] = set()
        for dst in sorted(dst for dst in routes if dst not in wanted):
            if changes.delete(
                f"route {dst}", netlink.delete_route, dst, link=device.index, repair=False
            ):
                removed.append(dst)
            else:
                failed.append(dst)
            neighbour = neighbours.get(str(dst.network_address))
            if neighbour is not None:
                gone_macs.add(neighbour.mac.lower())
        for ip in neighbours:
            if IPv4Address(ip) not in gateways:
                departed = any(IPv4Address(ip) in dst for dst in removed)
                changes.delete(
                    f"neighbour {ip}",
                    netlink.delete_neighbour,
                    device.index,
                    ip,
                    repair=not departed,
                )
        wanted_macs = {p.vtep_mac for p in wanted.values()}
        for entry in fdb:
            # a wanted MAC with another destination is the peer's to fix (_program)
            mac, remote = entry.mac.lower(), entry.dst
            if mac not in wanted_macs:
                changes.delete(
                    f"FDB {mac} dst {remote}",
                    netlink.delete_fdb,
                    device.index,
                    mac,
                    remote,
                    repair=mac not in gone_macs,
                )

        added: list[IPv4Network] = []
        for subnet, peer in sorted(wanted.items()):
            is_new = subnet not in routes
            try:
                self._program(
                    device.index,
                    peer,
                    routes.get(subnet),
                    neighbours.get(str(peer.gateway)),
                    fdb,
                    changes,
                    repair=not is_new,
                )
            except NetlinkError as exc:
                log.warning("could not program peer %s (%s): %s", subnet, peer.underlay, exc)
                failed.append(subnet)
                continue
            if is_new:
                added.append(subnet)
                log.info("peer %s added (VTEP %s at %s)", subnet, peer.vtep_mac, peer.underlay)
        for dst in removed:
            log.info("peer %s removed", dst)
        return ReconcileReport(
            added=tuple(added),
            removed=tuple(removed),
            repaired=changes.repaired,
            failed=tuple(failed),
        )

    def _program(
        self,
        index: int,
        peer: Peer,
        route: netlink.RouteEntry | None,
        neighbour: netlink.Neighbour | None,
        fdb: list[netlink.FdbEntry],
        changes: _Changes,
        *,
        repair: bool,
    ) -> None:
        """A peer's neighbour, FDB entry and route, each written only if it differs."""
        if (
            neighbour is None
            or neighbour.mac.lower() != peer.vtep_mac
            or not neighbour.state & _NUD_PERMANENT
        ):
            netlink.replace_neighbour(index, str(peer.gateway), peer.vtep_mac)
            changes.count(repair)
        underlay = str(peer.underlay)
        mine = [e for e in fdb if e.mac.lower() == peer.vtep_mac]
        if not any(e.dst == underlay and e.state & _NUD_PERMANENT for e in mine):
            # The kernel keeps one destination per unicast MAC (append is ignored for
            # one): replace moves the entry to the new underlay without a gap.
            netlink.replace_fdb(index, peer.vtep_mac, underlay)
            changes.count(repair)
            # what is left to remove (deleting a destination the MAC lacks "succeeds")
            mine = [e for e in netlink.list_fdb(index) if e.mac.lower() == peer.vtep_mac]
        for entry in mine:
            if entry.dst != underlay:  # another destination (a multicast-style MAC)
                changes.delete(
                    f"FDB {peer.vtep_mac} dst {entry.dst}",
                    netlink.delete_fdb,
                    index,
                    entry.mac,
                    entry.dst,
                    repair=repair,
                )
        if route is None or route.gateway != peer.gateway:
            netlink.replace_route(peer.subnet, gateway=peer.gateway, link=index, onlink=True)
            changes.count(repair)

    def _teardown(self) -> None:
        for name in (self.config.vxlan_name, self.config.bridge_name):
            link = netlink.find_link(name)
            if link is not None:
                with _ignore(errno.ENODEV):
                    netlink.delete_link(link)
                log.info("deleted %s in %s", name, self._where())


class _Changes:
    """Counts the kernel changes of one reconcile that are repairs."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.repaired = 0

    def count(self, repair: bool) -> None:
        if repair:
            self.repaired += 1

    def delete(
        self,
        what: str,
        fn: Callable[..., object],
        *args: object,
        repair: bool = True,
        **kwargs: object,
    ) -> bool:
        """Delete one entry; gone already is fine (True), any other failure is logged (False)."""
        try:
            fn(*args, **kwargs)
        except NetlinkError as exc:
            if exc.errno in (errno.ENOENT, errno.ESRCH):
                return True
            log.warning("could not delete %s in %s: %s", what, self.where, exc)
            return False
        log.debug("deleted stale %s in %s", what, self.where)
        self.count(repair)
        return True


@contextmanager
def _ignore(*codes: int) -> Iterator[None]:
    try:
        yield
    except NetlinkError as exc:
        if exc.errno not in codes:
            raise
