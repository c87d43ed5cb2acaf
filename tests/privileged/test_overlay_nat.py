"""The agent's masquerading (``ip_masq``) on real nodes: NAT only for what leaves the cluster.

Two nodes of ``_overlay_world`` with in-process agents started with ``ip_masq=True``,
one container on each. A TCP server in n2's container must see n1's container's own
address (no NAT inside the cluster); a TCP server on n2's underlay address
(192.168.250.2, outside the cluster, in n2's node namespace) must see n1's underlay
address (masqueraded by n1). The nat rules are read with ``iptables -S`` inside the
node namespaces (the only place any rule is made): exactly one jump and the chain's
two rules after a restart (also when a duplicate jump was added by hand), none after
a stop with ``release_on_exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from cnilib import netlink
from cnilib.testing import NetNS
from tests.privileged._overlay_world import (
    CLUSTER_CIDR,
    UNDERLAY_NET,
    Agents,
    Container,
    Node,
    Underlay,
    eventually,
    underlay_world,
)

PORT = 7788
CHAIN = "CNI-OVL-overlay"
COMMENT = 'cnilib overlay "overlay" masquerading'
JUMP = '-A POSTROUTING -m comment --comment "cnilib overlay \\"overlay\\" masquerading" -j ' + CHAIN


@pytest.fixture
def underlay(tmp_path: Path) -> Iterator[Underlay]:
    with underlay_world(tmp_path) as world:
        yield world


def cluster() -> Any:
    from cnilib.overlay._config import ClusterConfig

    return ClusterConfig.make(CLUSTER_CIDR)


def nat_rules(ns: NetNS) -> list[str]:
    """The nat table's rules of the overlay's chain and the jumps to it, in ``ns``."""
    out = ns.exec("iptables", "-w", "-t", "nat", "-S").stdout
    return [line for line in out.splitlines() if CHAIN in line]


def expected_rules(subnet: Any) -> list[str]:
    return [
        f"-N {CHAIN}",
        JUMP,
        f"-A {CHAIN} -s {CLUSTER_CIDR} -d {CLUSTER_CIDR} -j RETURN",
        f"-A {CHAIN} -s {subnet} ! -d 224.0.0.0/4 -j MASQUERADE",
    ]


@contextlib.asynccontextmanager
async def peer_recorder(ns: NetNS, address: IPv4Address) -> AsyncIterator[list[str]]:
    """A TCP server on ``address`` in ``ns``; the source address of each connection."""
    peers: list[str] = []

    def listen() -> socket.socket:
        sock = socket.create_server((str(address), PORT))
        sock.setblocking(False)
        return sock

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[0])
        writer.write(b"ok\n")
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    sock = await asyncio.to_thread(netlink.run_in_netns, ns.path, listen)
    server = await asyncio.start_server(handle, sock=sock)
    try:
        yield peers
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)


async def connect_from(ns: NetNS, address: IPv4Address) -> str | None:
    """One connection from ``ns`` to ``address``: None when answered, else what failed."""
    loop = asyncio.get_running_loop()

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock

    sock = await asyncio.to_thread(netlink.run_in_netns, ns.path, make)
    try:
        async with asyncio.timeout(1.0):
            await loop.sock_connect(sock, (str(address), PORT))
            answer = await loop.sock_recv(sock, 16)
        return None if answer == b"ok\n" else f"answered {answer!r}"
    except TimeoutError:
        return "no answer within 1s"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()


async def reached(ns: NetNS, address: IPv4Address, what: str) -> None:
    await eventually(
        lambda: connect_from(ns, address), lambda failed: failed is None, within=10.0, what=what
    )


async def rules_are(node: Node, wanted: list[str], what: str) -> None:
    await eventually(
        lambda: asyncio.to_thread(nat_rules, node.ns), lambda r: r == wanted, within=5.0, what=what
    )


async def assert_sources(c1: Container, c2: Container, n1: Node, n2: Node) -> None:
    """What n2's servers see of connections from ``c1`` (a container of n1)."""
    # across nodes inside the cluster: the container's own address
    async with peer_recorder(c2.ns, c2.ip) as peers:
        await reached(c1.ns, c2.ip, "n1's container reaches n2's")
    assert {str(c1.ip)} == set(peers), "traffic inside the cluster was masqueraded"
    # out of the cluster: n1's underlay address
    async with peer_recorder(n2.ns, n2.ip) as peers:
        await reached(c1.ns, n2.ip, "n1's container reaches n2's underlay address")
    assert {str(n1.ip)} == set(peers), "traffic leaving the cluster was not masqueraded"


@pytest.mark.asyncio
async def test_masquerading_exempts_the_cluster_and_follows_the_agent(
    etcd: Any, underlay: Underlay
) -> None:
    n1, n2 = underlay.add_node("n1"), underlay.add_node("n2")
    prefix = f"/cnilib-test/{uuid.uuid4().hex[:8]}"
    async with Agents(etcd.url, prefix=prefix, cluster=cluster(), ttl=2) as agents:
        await asyncio.gather(agents.join(n1, ip_masq=True), agents.join(n2, ip_masq=True))
        s1 = agents.running["n1"].state
        for node in (n1, n2):
            state = agents.running[node.name].state
            assert nat_rules(node.ns) == expected_rules(state.subnet)
        c1 = await asyncio.to_thread(n1.add_container)
        c2 = await asyncio.to_thread(n2.add_container)
        # the overlay routes only the cluster CIDR into containers: the underlay too, here
        c1.ns.exec("ip", "route", "add", str(UNDERLAY_NET), "via", str(s1.gateway))

        await assert_sources(c1, c2, n1, n2)

        # a restart (a stop without release keeps the rules) makes them again exactly once,
        # also with a duplicate jump added by hand meanwhile
        await agents.stop("n1")
        n1.ns.exec("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-m", "comment",
                   "--comment", COMMENT, "-j", CHAIN)  # fmt: skip
        assert 2 == sum(line.startswith("-A POSTROUTING") for line in nat_rules(n1.ns))
        await agents.join(n1, ip_masq=True, release_on_exit=True)
        assert agents.running["n1"].state.subnet == s1.subnet
        assert nat_rules(n1.ns) == expected_rules(s1.subnet)
        await assert_sources(c1, c2, n1, n2)

        # a stop with release removes them
        await agents.stop("n1")
        await rules_are(n1, [], "n1's masquerading removed on a stop with release")
        assert nat_rules(n2.ns) == expected_rules(agents.running["n2"].state.subnet)
