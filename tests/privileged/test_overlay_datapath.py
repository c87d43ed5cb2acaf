"""The overlay's node data path (VxlanDatapath) in throwaway namespaces.

World: an "underlay" namespace with a bridge ``ul``; node namespaces A and B, each
with a veth ``eth0`` into it (192.168.250.1 and .2/24). Each test's data path runs
in a node namespace; the kernel state is read back with ``ip``/``bridge``.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from cnilib import netlink
from cnilib.overlay._datapath import DatapathConfig, Peer, ReconcileReport, VxlanDatapath
from cnilib.overlay._errors import OverlayConfigError
from cnilib.overlay._records import SubnetRecord
from cnilib.testing import NetNS, create_netns

CLUSTER = IPv4Network("10.244.0.0/16")
SUBNET_A = IPv4Network("10.244.1.0/24")
SUBNET_B = IPv4Network("10.244.2.0/24")
SUBNET_C = IPv4Network("10.244.3.0/24")
MAC_A = "02:0a:00:00:00:01"
MAC_B = "02:0a:00:00:00:02"
MAC_C = "02:0a:00:00:00:03"
UNDERLAY = {"a": "192.168.250.1", "b": "192.168.250.2"}

JSON = dict[str, Any]


def sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=10).stdout


def js(*argv: str) -> list[JSON]:
    out = sh(*argv).strip()
    return list(json.loads(out)) if out else []


class World:
    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.underlay = self._ns("cnilib-ovul")
        sh("ip", "-n", self.underlay.name, "link", "add", "ul", "type", "bridge")
        sh("ip", "-n", self.underlay.name, "link", "set", "ul", "up")
        self.nodes = {name: self._node(name, ip) for name, ip in UNDERLAY.items()}

    def _ns(self, prefix: str) -> NetNS:
        ns = create_netns(prefix)
        self.stack.callback(ns.delete)
        # the worker of the default pool holds the namespace: retire it first
        self.stack.callback(netlink.close_netns, ns.path)
        return ns

    def _node(self, name: str, ip: str) -> NetNS:
        ns = self._ns(f"cnilib-ov{name}")
        ul = self.underlay.name
        sh("ip", "-n", ns.name, "link", "add", "eth0", "type", "veth",
           "peer", "name", f"ul{name}", "netns", ul)  # fmt: skip
        sh("ip", "-n", ul, "link", "set", f"ul{name}", "master", "ul", "up")
        sh("ip", "-n", ns.name, "address", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns.name, "link", "set", "eth0", "up")
        return ns

    def config(self, node: str, **changes: Any) -> DatapathConfig:
        fields: dict[str, Any] = {
            "netns": self.nodes[node].path,
            "underlay": IPv4Address(UNDERLAY[node]),
            "underlay_link": None,
            "vxlan_name": "ovx1",
            "bridge_name": "ovbr0",
            "vni": 1,
            "port": 8472,
            "cluster": CLUSTER,
        }
        fields.update(changes)
        return DatapathConfig(**fields)


@pytest.fixture
def world() -> Iterator[World]:
    with ExitStack() as stack:
        yield World(stack)


def ipj(ns: NetNS, *args: str) -> list[JSON]:
    return js("ip", "-n", ns.name, "-j", *args)


def link(ns: NetNS, name: str) -> JSON:
    (found,) = ipj(ns, "-d", "address", "show", "dev", name)
    return found


def ipv4(found: JSON) -> set[str]:
    return {f"{a['local']}/{a['prefixlen']}" for a in found["addr_info"] if a["family"] == "inet"}


def entries(ns: NetNS) -> tuple[set[tuple[str, str]], set[tuple[str, str]], set[tuple[str, str]]]:
    """(routes (dst, gateway), permanent neighbours (ip, mac), fdb (mac, dst)) of ovx1."""
    routes = {(r["dst"], r.get("gateway", "")) for r in ipj(ns, "route", "show", "dev", "ovx1")}
    neigh = {
        (n["dst"], n.get("lladdr", ""))
        for n in ipj(ns, "neigh", "show", "dev", "ovx1")
        if "PERMANENT" in n.get("state", [])
    }
    fdb = {
        (f["mac"], f["dst"])
        for f in js("bridge", "-n", ns.name, "-j", "fdb", "show", "dev", "ovx1")
        if "dst" in f
    }
    return routes, neigh, fdb


def peer_entries(*peers: Peer) -> tuple[set[tuple[str, str]], ...]:
    return (
        {(str(p.subnet), str(p.gateway)) for p in peers},
        {(str(p.gateway), p.vtep_mac) for p in peers},
        {(p.vtep_mac, str(p.underlay)) for p in peers},
    )


def sysctl(ns: NetNS, path: str) -> str:
    return sh("ip", "netns", "exec", ns.name, "cat", f"/proc/sys/{path}").strip()


PEER_B = Peer(SUBNET_B, IPv4Address("192.168.250.2"), MAC_B)
PEER_C = Peer(SUBNET_C, IPv4Address("192.168.250.3"), MAC_C)
NOTHING = ReconcileReport(added=(), removed=(), repaired=0)


@pytest.mark.asyncio
async def test_probe_underlay(world: World) -> None:
    assert await VxlanDatapath(world.config("a")).probe_underlay() == ("eth0", 1500)
    linked = VxlanDatapath(world.config("a", underlay_link="eth0"))
    assert await linked.probe_underlay() == ("eth0", 1500)
    with pytest.raises(OverlayConfigError, match=r"192\.168\.250\.9 is on no link in /run/netns/"):
        await VxlanDatapath(
            world.config("a", underlay=IPv4Address("192.168.250.9"))
        ).probe_underlay()
    with pytest.raises(OverlayConfigError, match="underlay link 'eth9' does not exist"):
        await VxlanDatapath(world.config("a", underlay_link="eth9")).probe_underlay()
    with pytest.raises(OverlayConfigError, match=r"192\.168\.250\.1 is not on link 'lo'"):
        await VxlanDatapath(world.config("a", underlay_link="lo")).probe_underlay()


@pytest.mark.asyncio
async def test_setup_makes_device_and_bridge(world: World) -> None:
    node = world.nodes["a"]
    datapath = VxlanDatapath(world.config("a"))
    assert await datapath.current_mac() is None
    sh("ip", "netns", "exec", node.name, "sysctl", "-qw", "net.ipv4.ip_forward=0")
    assert await datapath.setup(SUBNET_A, MAC_A.upper()) == 1450

    device = link(node, "ovx1")
    info = device["linkinfo"]
    assert info["info_kind"] == "vxlan"
    data = info["info_data"]
    assert (data["id"], data["local"], data["link"], data["port"], data["learning"]) == (
        1, "192.168.250.1", "eth0", 8472, False,
    )  # fmt: skip
    assert (device["address"], device["mtu"], "UP" in device["flags"]) == (MAC_A, 1450, True)
    assert ipv4(device) == {"10.244.1.0/32"}
    bridge = link(node, "ovbr0")
    assert bridge["linkinfo"]["info_kind"] == "bridge"
    assert (bridge["mtu"], "UP" in bridge["flags"]) == (1450, True)
    assert ipv4(bridge) == {"10.244.1.1/24"}
    assert sysctl(node, "net/ipv4/ip_forward") == "1"
    assert sysctl(node, "net/ipv6/conf/ovx1/accept_ra") == "0"
    assert await datapath.current_mac() == MAC_A

    # idempotent: the same devices, nothing added
    assert await datapath.setup(SUBNET_A, MAC_A) == 1450
    assert link(node, "ovx1")["ifindex"] == device["ifindex"]
    assert link(node, "ovbr0")["ifindex"] == bridge["ifindex"]
    assert ipv4(link(node, "ovx1")) == {"10.244.1.0/32"}
    assert ipv4(link(node, "ovbr0")) == {"10.244.1.1/24"}

    await datapath.teardown()
    assert sh("ip", "-n", node.name, "link", "show", "ovx1", check=False) == ""
    assert sh("ip", "-n", node.name, "link", "show", "ovbr0", check=False) == ""
    await datapath.teardown()  # gone already: fine


@pytest.mark.asyncio
async def test_setup_adopts_compatible_device_and_recreates_incompatible(world: World) -> None:
    node = world.nodes["a"]
    datapath = VxlanDatapath(world.config("a"))
    kept = "02:0a:00:00:00:77"
    sh("ip", "-n", node.name, "link", "add", "ovx1", "address", kept, "type", "vxlan", "id", "1",
       "local", "192.168.250.1", "dev", "eth0", "dstport", "8472", "nolearning")  # fmt: skip
    index = link(node, "ovx1")["ifindex"]
    assert await datapath.current_mac() == kept  # a restarted agent publishes it again
    await datapath.setup(SUBNET_A, kept)
    assert (link(node, "ovx1")["ifindex"], link(node, "ovx1")["address"]) == (index, kept)

    # a previous subnet's addresses go (from the device and the bridge); the MTU follows
    sh("ip", "-n", node.name, "link", "set", "ovx1", "mtu", "1400")
    await datapath.setup(SUBNET_B, kept)
    assert ipv4(link(node, "ovx1")) == {"10.244.2.0/32"}
    assert ipv4(link(node, "ovbr0")) == {"10.244.2.1/24"}
    assert link(node, "ovx1")["mtu"] == 1450

    for incompatible in (
        ("id", "2", "local", "192.168.250.1", "dev", "eth0", "dstport", "8472", "nolearning"),
        ("id", "1", "local", "192.168.250.1", "dev", "eth0", "dstport", "4789", "nolearning"),
        ("id", "1", "local", "192.168.250.1", "dev", "eth0", "dstport", "8472", "learning"),
        ("id", "1", "local", "192.168.250.7", "dev", "eth0", "dstport", "8472", "nolearning"),
        ("id", "1", "local", "192.168.250.1", "dstport", "8472", "nolearning"),
    ):
        sh("ip", "-n", node.name, "link", "del", "ovx1")
        sh("ip", "-n", node.name, "link", "add", "ovx1", "address", kept, "type", "vxlan",
           *incompatible)  # fmt: skip
        index = link(node, "ovx1")["ifindex"]
        assert await datapath.current_mac() is None, incompatible
        await datapath.setup(SUBNET_A, MAC_A)
        device = link(node, "ovx1")
        assert device["ifindex"] != index, incompatible
        data = device["linkinfo"]["info_data"]
        assert (device["address"], data["id"], data["port"], data["learning"]) == (
            MAC_A, 1, 8472, False,
        )  # fmt: skip
        assert (data["local"], data["link"]) == ("192.168.250.1", "eth0")


@pytest.mark.asyncio
async def test_reconcile_adds_removes_and_repairs(world: World) -> None:
    node = world.nodes["a"]
    datapath = VxlanDatapath(world.config("a"))
    await datapath.setup(SUBNET_A, MAC_A)
    record = SubnetRecord(SUBNET_B, "b", IPv4Address("192.168.250.2"), MAC_B)
    assert Peer.from_record(record) == PEER_B

    report = await datapath.reconcile([PEER_B, PEER_C])
    assert report == ReconcileReport(added=(SUBNET_B, SUBNET_C), removed=(), repaired=0)
    assert entries(node) == peer_entries(PEER_B, PEER_C)
    assert await datapath.reconcile([PEER_B, PEER_C]) == NOTHING  # idempotent

    # C left: its three entries go
    assert await datapath.reconcile([PEER_B]) == ReconcileReport((), (SUBNET_C,), 0)
    assert entries(node) == peer_entries(PEER_B)
    assert await datapath.reconcile([PEER_B]) == NOTHING

    # stale entries added by hand (a node that left while the agent was down), and a
    # route outside the cluster, which is not the overlay's
    ns = node.name
    sh("ip", "-n", ns, "neigh", "replace", "10.244.9.0", "lladdr", "02:0a:00:00:00:09",
       "dev", "ovx1", "nud", "permanent")  # fmt: skip
    sh("bridge", "-n", ns, "fdb", "append", "02:0a:00:00:00:09", "dev", "ovx1",
       "dst", "192.168.250.9", "self", "permanent")  # fmt: skip
    sh("ip", "-n", ns, "route", "replace", "10.244.9.0/24", "via", "10.244.9.0",
       "dev", "ovx1", "onlink")  # fmt: skip
    sh("ip", "-n", ns, "neigh", "replace", "10.244.8.0", "lladdr", "02:0a:00:00:00:08",
       "dev", "ovx1", "nud", "permanent")  # fmt: skip
    sh("ip", "-n", ns, "route", "add", "172.31.0.0/24", "dev", "ovx1")
    # the departed node's route, neighbour and FDB entry are a removal; 10.244.8.0 a repair
    report = await datapath.reconcile([PEER_B])
    assert report == ReconcileReport((), (IPv4Network("10.244.9.0/24"),), 1)
    assert entries(node) == (
        {*peer_entries(PEER_B)[0], ("172.31.0.0/24", "")},
        *peer_entries(PEER_B)[1:],
    )
    assert await datapath.reconcile([PEER_B]) == NOTHING

    # B's entries damaged by hand: a wrong neighbour MAC, its FDB entry and route gone
    sh("ip", "-n", ns, "neigh", "replace", "10.244.2.0", "lladdr", "02:0a:00:00:00:99",
       "dev", "ovx1", "nud", "permanent")  # fmt: skip
    sh("bridge", "-n", ns, "fdb", "del", MAC_B, "dev", "ovx1", "dst", "192.168.250.2", "self")
    assert (await datapath.reconcile([PEER_B])).repaired == 2
    sh("ip", "-n", ns, "route", "del", "10.244.2.0/24")
    assert await datapath.reconcile([PEER_B]) == ReconcileReport((SUBNET_B,), (), 0)
    assert entries(node)[1:] == peer_entries(PEER_B)[1:]

    # B came back with a new MAC, then on a new underlay address
    moved = Peer(SUBNET_B, IPv4Address("192.168.250.2"), "02:0a:00:00:00:22")
    assert (await datapath.reconcile([moved])).repaired == 3  # neighbour, new FDB, old FDB
    assert entries(node)[1:] == peer_entries(moved)[1:]
    moved = Peer(SUBNET_B, IPv4Address("192.168.250.12"), "02:0a:00:00:00:22")
    assert (await datapath.reconcile([moved])).repaired == 1  # the FDB entry's dst
    assert entries(node)[1:] == peer_entries(moved)[1:]
    assert await datapath.reconcile([moved]) == NOTHING

    # everyone left
    assert await datapath.reconcile([]) == ReconcileReport((), (SUBNET_B,), 0)
    assert entries(node) == ({("172.31.0.0/24", "")}, set(), set())


@pytest.mark.asyncio
async def test_reconcile_ignores_peers_outside_the_cluster_and_itself(world: World) -> None:
    node = world.nodes["a"]
    datapath = VxlanDatapath(world.config("a"))
    await datapath.setup(SUBNET_A, MAC_A)
    outside = Peer(IPv4Network("10.9.1.0/24"), IPv4Address("192.168.250.5"), MAC_C)
    itself = Peer(SUBNET_A, IPv4Address("192.168.250.1"), MAC_A)
    report = await datapath.reconcile([outside, itself, PEER_B])
    assert report == ReconcileReport((SUBNET_B,), (), 0)
    assert entries(node) == peer_entries(PEER_B)


@pytest.mark.asyncio
async def test_reconcile_a_failing_peer_is_not_fatal(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = world.nodes["a"]
    datapath = VxlanDatapath(world.config("a"))
    await datapath.setup(SUBNET_A, MAC_A)
    replace_fdb = netlink.replace_fdb

    def refuse_c(link: Any, mac: str, dst: Any) -> None:
        if mac == MAC_C:
            raise netlink.NetlinkError(f"replace fdb {mac}", node.path, errno.EINVAL)
        replace_fdb(link, mac, dst)

    monkeypatch.setattr(netlink, "replace_fdb", refuse_c)
    report = await datapath.reconcile([PEER_B, PEER_C])
    assert report == ReconcileReport((SUBNET_B,), (), 0, failed=(SUBNET_C,))
    routes, _, fdb = entries(node)
    # no route without its FDB entry: the kernel would resolve the gateway itself
    assert (routes, fdb) == (peer_entries(PEER_B)[0], peer_entries(PEER_B)[2])
    monkeypatch.undo()
    assert await datapath.reconcile([PEER_B, PEER_C]) == ReconcileReport((SUBNET_C,), (), 0)
    assert entries(node) == peer_entries(PEER_B, PEER_C)


@pytest.mark.asyncio
async def test_reconcile_reports_a_route_it_could_not_delete(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A departed peer's route the kernel refuses to delete is reported failed (the agent
    retries soon), not removed."""
    node = world.nodes["a"]
    datapath = VxlanDatapath(world.config("a"))
    await datapath.setup(SUBNET_A, MAC_A)
    await datapath.reconcile([PEER_B, PEER_C])

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise netlink.NetlinkError("delete route", node.path, errno.EBUSY)

    monkeypatch.setattr(netlink, "delete_route", refuse)
    report = await datapath.reconcile([PEER_B])
    assert (report.removed, report.failed) == ((), (SUBNET_C,))
    monkeypatch.undo()
    assert (await datapath.reconcile([PEER_B])).removed == (SUBNET_C,)
    assert entries(node) == peer_entries(PEER_B)


@pytest.mark.asyncio
async def test_reconcile_ignores_peers_overlapping_own_subnet_or_of_another_size(
    world: World,
) -> None:
    """A record of another prefix length (written by hand, or a bug) must never route a
    part of this node's own subnet, or of another peer's, through the VXLAN device."""
    node = world.nodes["a"]
    datapath = VxlanDatapath(world.config("a"))
    await datapath.setup(SUBNET_A, MAC_A)
    half_of_mine = Peer(IPv4Network("10.244.1.0/25"), IPv4Address("192.168.250.5"), MAC_C)
    whole_cluster = Peer(CLUSTER, IPv4Address("192.168.250.6"), "02:0a:00:00:00:06")
    half_of_b = Peer(IPv4Network("10.244.2.128/25"), IPv4Address("192.168.250.7"), MAC_C)
    report = await datapath.reconcile([half_of_mine, whole_cluster, half_of_b, PEER_B])
    assert report == ReconcileReport((SUBNET_B,), (), 0)
    assert entries(node) == peer_entries(PEER_B)


@pytest.mark.asyncio
async def test_reconcile_two_peers_with_one_mac_on_two_underlays_is_stable(
    world: World,
) -> None:
    """One FDB entry per unicast MAC: of two peers that publish the same VTEP MAC from
    different underlay addresses, the lower subnet keeps it, the other is left out, and
    reconciling again changes nothing (no flapping between the two)."""
    node = world.nodes["a"]
    datapath = VxlanDatapath(world.config("a"))
    await datapath.setup(SUBNET_A, MAC_A)
    twin = Peer(SUBNET_C, IPv4Address("192.168.250.3"), MAC_B)
    for peers in ([twin, PEER_B], [PEER_B, twin]):
        report = await datapath.reconcile(peers)
        assert report in (ReconcileReport((SUBNET_B,), (), 0), NOTHING)
        assert entries(node) == peer_entries(PEER_B)
        assert await datapath.reconcile(peers) == NOTHING
    # the same MAC from the same underlay (a node renamed while its old record lives): both
    renamed = Peer(SUBNET_C, IPv4Address("192.168.250.2"), MAC_B)
    assert await datapath.reconcile([PEER_B, renamed]) == ReconcileReport((SUBNET_C,), (), 0)
    assert await datapath.reconcile([renamed, PEER_B]) == NOTHING


SERVER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket()
    s.settimeout(8)
    s.bind((sys.argv[1], 7777))
    s.listen(1)
    print("ready", flush=True)
    conn, peer = s.accept()
    conn.settimeout(5)
    conn.sendall(conn.recv(100) + b" from " + peer[0].encode())
    conn.close()
    """
)
CLIENT = textwrap.dedent(
    """
    import socket, sys
    c = socket.create_connection((sys.argv[2], 7777), timeout=5, source_address=(sys.argv[1], 0))
    c.sendall(b"hello")
    print(c.recv(100).decode(), flush=True)
    """
)


def exchange(client_ns: NetNS, source: str, server_ns: NetNS, address: str) -> str:
    """One TCP echo from ``source`` in ``client_ns`` to ``address`` in ``server_ns``."""
    argv = ["ip", "netns", "exec", server_ns.name, sys.executable, "-c", SERVER, address]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as server:
        try:
            assert server.stdout is not None
            assert server.stderr is not None
            assert server.stdout.readline().strip() == "ready", server.stderr.read()
            client = subprocess.run(
                ["ip", "netns", "exec", client_ns.name, sys.executable, "-c", CLIENT,
                 source, address],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            assert server.wait(timeout=5) == 0, server.stderr.read()
            assert client.returncode == 0, client.stderr
            return client.stdout.strip()
        finally:
            if server.poll() is None:
                server.kill()


@pytest.mark.asyncio
async def test_two_nodes_exchange_tcp_over_vxlan(world: World) -> None:
    a = VxlanDatapath(world.config("a"))
    b = VxlanDatapath(world.config("b"))
    await a.setup(SUBNET_A, MAC_A)
    await b.setup(SUBNET_B, MAC_B)
    assert (await a.reconcile([PEER_B])).added == (SUBNET_B,)
    peer_a = Peer(SUBNET_A, IPv4Address("192.168.250.1"), MAC_A)
    assert (await b.reconcile([peer_a])).added == (SUBNET_A,)

    assert exchange(world.nodes["a"], "10.244.1.1", world.nodes["b"], "10.244.2.1") == (
        "hello from 10.244.1.1"
    )
