"""The overlay across nodes: agents, etcd, the VXLAN data path and the overlay plugin together.

Every node is a throwaway namespace plugged into an "underlay" bridge in another
(``_overlay_world``); etcd runs on 127.0.0.1 (free ports, data dir in tmp) for the
whole module, each test under an etcd prefix of its own. Agents run in process as
asyncio tasks on the test's loop with a lease TTL of 2 s; one test runs the real
``python -m cnilib.overlay agent`` and stops it with SIGTERM. Containers are attached
by the ``overlay`` plugin in process, the node namespace playing the host; traffic is
a small TCP echo between container namespaces.

Nothing asserts on time: waits poll with generous deadlines, and a deadline stated by
the design (a dead node's entries removed once its lease expired, within TTL plus
the resync margin) is a deadline of the poll, not a measurement. The only fixed wait
is the 10 s etcd outage the scenario is about.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from tests.privileged._overlay_world import (
    CLUSTER_CIDR,
    NETWORK,
    Agents,
    EchoServers,
    EchoStream,
    Entries,
    Node,
    Underlay,
    etcd_keys,
    eventually,
    expected_entries,
    off_loop,
    underlay_world,
)

TTL = 2
REMOVAL_DEADLINE = TTL + 3.0
"""A dead node's entries are gone from its peers within its lease's TTL (counted from
its last keepalive) plus etcd's expiry check and the watch's delivery: the poll's bound."""
CONVERGE = 10.0
"""Generous bound for a join to show on every peer (it takes well under a second here)."""


@pytest.fixture
def underlay(tmp_path: Path) -> Iterator[Underlay]:
    with underlay_world(tmp_path) as world:
        yield world


@pytest.fixture
def prefix() -> str:
    """An etcd prefix of the test's own: tests share the module's etcd, never its keys."""
    return f"/cnilib-test/{uuid.uuid4().hex[:8]}"


def cluster(cidr: str = CLUSTER_CIDR, **kw: Any) -> Any:
    from cnilib.overlay._config import ClusterConfig

    return ClusterConfig.make(cidr, **kw)


def root(prefix: str) -> str:
    return f"{prefix}/{NETWORK}/"


def peers_of(node: Node, nodes: list[Node], agents: Agents) -> Entries:
    """What ``node``'s kernel must hold: one route, neighbour and FDB entry per other
    node whose agent is running (its subnet, its VXLAN MAC, its underlay address)."""
    peers = []
    for other in nodes:
        running = agents.running.get(other.name)
        if other is node or running is None:
            continue
        mac = other.vxlan_mac()
        assert mac is not None, f"{other.name} has no VXLAN device"
        peers.append((running.state.subnet, mac, other.ip))
    return expected_entries(peers)


async def converged(nodes: list[Node], agents: Agents, *, within: float = CONVERGE) -> None:
    """Every node's kernel holds exactly its running peers' entries (no more, no duplicates)."""

    def snapshot() -> dict[str, tuple[Entries, Entries]]:
        return {
            n.name: (n.entries(), peers_of(n, nodes, agents))
            for n in nodes
            if n.name in agents.running
        }

    await eventually(
        off_loop(snapshot),
        lambda snap: all(pair[0] == pair[1] for pair in snap.values()),
        within=within,
        what="every node holds exactly its peers' routes, neighbours and FDB entries",
    )


def assert_no_duplicates(entries: Entries, node: str) -> None:
    for kind in ("routes", "neighbours", "fdb"):
        items = getattr(entries, kind)
        assert len(items) == len(set(items)), f"{node}: duplicate {kind}: {items}"


# ------------------------------------------------------------------------------- scenarios


@pytest.mark.asyncio
async def test_three_nodes_two_containers_each_all_pairs_reach(
    etcd: Any, underlay: Underlay, prefix: str
) -> None:
    nodes = [underlay.add_node(f"n{i}") for i in (1, 2, 3)]
    async with Agents(etcd.url, prefix=prefix, cluster=cluster(), ttl=TTL) as agents:
        await asyncio.gather(*(agents.join(n) for n in nodes))
        await converged(nodes, agents)
        for node in nodes:
            for _ in range(2):
                container = await asyncio.to_thread(node.add_container)
                assert container.ip in agents.running[node.name].state.subnet
        containers = underlay.containers()
        assert len(containers) == 6
        async with EchoServers(containers) as servers:
            # 30 ordered pairs: 6 within a node (through the node bridge), 24 across
            # nodes (through the VXLAN device and the underlay)
            await servers.all_reach(within=CONVERGE)


@pytest.mark.asyncio
async def test_five_agents_started_at_once_get_five_distinct_subnets(
    etcd: Any, underlay: Underlay, prefix: str
) -> None:
    nodes = [underlay.add_node(f"n{i}") for i in range(1, 6)]
    async with Agents(etcd.url, prefix=prefix, cluster=cluster(), ttl=TTL) as agents:
        started = [agents.start(n) for n in nodes]
        states = await asyncio.gather(*(agents.joined(r) for r in started))
        subnets = [s.subnet for s in states]
        assert len(set(subnets)) == 5, subnets
        assert all(s.subnet_of(IPv4Network(CLUSTER_CIDR)) for s in subnets)
        keys = await asyncio.to_thread(etcd_keys, etcd.url, root(prefix))
        held = {k.rsplit("/", 1)[1] for k in keys if "/subnets/" in k}
        assert held == {f"{s.network_address}-{s.prefixlen}" for s in subnets}
        assert {k.rsplit("/", 1)[1] for k in keys if "/nodes/" in k} == {n.name for n in nodes}
        for state, node in zip(states, nodes, strict=True):
            assert state.node == node.name
            assert node.state_file.is_file()
        await converged(nodes, agents)


@pytest.mark.asyncio
async def test_killed_agent_removed_by_peers_after_its_lease_then_rejoins_same_subnet(
    etcd: Any, underlay: Underlay, prefix: str
) -> None:
    nodes = [underlay.add_node(f"n{i}") for i in (1, 2, 3)]
    n1, n2, n3 = nodes
    async with Agents(etcd.url, prefix=prefix, cluster=cluster(), ttl=TTL) as agents:
        await asyncio.gather(*(agents.join(n) for n in nodes))
        await converged(nodes, agents)
        subnet = agents.running["n3"].state.subnet
        n3_before = await asyncio.to_thread(n3.entries)

        await agents.kill("n3")
        killed = time.monotonic()
        # its peers drop it once its lease expired (the poll's deadline is the stated bound)
        await converged([n1, n2], agents, within=REMOVAL_DEADLINE)
        removal = time.monotonic() - killed
        keys = await asyncio.to_thread(etcd_keys, etcd.url, root(prefix))
        assert f"{root(prefix)}nodes/n3" not in keys
        # a dead agent leaves its own node's kernel alone
        assert await asyncio.to_thread(n3.entries) == n3_before

        await agents.join(n3)
        assert agents.running["n3"].state.subnet == subnet
        await converged(nodes, agents)
        for node in nodes:
            assert_no_duplicates(await asyncio.to_thread(node.entries), node.name)
        # and it carries traffic again
        c1, c3 = [await asyncio.to_thread(n.add_container) for n in (n1, n3)]
        async with EchoServers([c1, c3]) as servers:
            await servers.all_reach(within=CONVERGE)
    print(f"\npeers dropped the killed node {removal:.2f}s after the kill (TTL {TTL}s)")


@pytest.mark.asyncio
async def test_etcd_outage_traffic_flows_agents_reconnect_and_a_new_node_joins(
    etcd: Any, underlay: Underlay, prefix: str
) -> None:
    nodes = [underlay.add_node(f"n{i}") for i in (1, 2, 3)]
    n4 = underlay.add_node("n4")
    async with Agents(etcd.url, prefix=prefix, cluster=cluster(), ttl=TTL) as agents:
        await asyncio.gather(*(agents.join(n) for n in nodes))
        await converged(nodes, agents)
        c1, c2 = [await asyncio.to_thread(n.add_container) for n in nodes[:2]]
        before = {n.name: await asyncio.to_thread(n.entries) for n in nodes}
        async with EchoServers([c1, c2]) as servers:
            await servers.all_reach(within=CONVERGE)
            async with EchoStream(servers, c1, c2) as stream:
                await asyncio.to_thread(etcd.stop)
                try:
                    late = agents.start(n4)  # joins once etcd is back
                    await asyncio.sleep(5)
                    during = stream.check()
                    await asyncio.sleep(5)
                    assert stream.check() > during, "the stream stalled while etcd was down"
                    # nothing removed because etcd was unreachable
                    for node in nodes:
                        assert await asyncio.to_thread(node.entries) == before[node.name]
                    assert not late.task.done(), "the new node's agent gave up while etcd was down"
                finally:
                    await asyncio.to_thread(etcd.start)
                back = time.monotonic()
                await agents.joined(late, within=CONVERGE)
                await converged([*nodes, n4], agents)
                c4 = await asyncio.to_thread(n4.add_container)
                await servers.add(c4)
                await servers.all_reach(within=CONVERGE)
                # the old agents kept (or renewed) their leases: past a TTL after etcd came
                # back, every node is still registered and still programmed
                await asyncio.sleep(max(0.0, back + TTL + 1 - time.monotonic()))
                keys = await asyncio.to_thread(etcd_keys, etcd.url, root(prefix))
                assert {k.rsplit("/", 1)[1] for k in keys if "/nodes/" in k} == {
                    "n1",
                    "n2",
                    "n3",
                    "n4",
                }
                await converged([*nodes, n4], agents)
                assert stream.check() > 0


@pytest.mark.asyncio
async def test_pool_exhausted_clear_error_and_no_half_registered_node(
    etcd: Any, underlay: Underlay, prefix: str
) -> None:
    from cnilib.overlay import PoolExhaustedError

    small = cluster("10.244.0.0/22", subnet_len=24)  # the first /24 is never given: 3 usable
    nodes = [underlay.add_node(f"n{i}") for i in range(1, 5)]
    async with Agents(etcd.url, prefix=prefix, cluster=small, ttl=TTL) as agents:
        await asyncio.gather(*(agents.join(n) for n in nodes[:3]))
        n4 = nodes[3]
        with pytest.raises(PoolExhaustedError) as info:
            await agents.join(n4)
        message = str(info.value)
        assert "10.244.0.0/22" in message, message
        assert "3 of 3" in message, message
        keys = await asyncio.to_thread(etcd_keys, etcd.url, root(prefix))
        assert f"{root(prefix)}nodes/n4" not in keys
        assert sum("/subnets/" in k for k in keys) == 3
        assert sum("/nodes/" in k for k in keys) == 3
        links = await asyncio.to_thread(n4.links)
        assert not [
            n for n, link in links.items() if link.get("linkinfo", {}).get("info_kind") == "vxlan"
        ]
        assert "ovbr0" not in links
        assert not n4.state_file.exists()
        await converged(nodes[:3], agents)


def agent_argv(etcd: Any, node: Node, prefix: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "cnilib.overlay", "agent",
        "--etcd", etcd.url, "--node", node.name, "--underlay", str(node.ip),
        "--netns", node.path, "--prefix", prefix, "--network", NETWORK,
        "--cluster-cidr", CLUSTER_CIDR, "--ttl", str(TTL), "--run-dir", str(node.run_dir),
        "--log-level", "debug", *extra,
    ]  # fmt: skip


async def run_until_joined(argv: list[str], node: Node, log: Path) -> subprocess.Popen[bytes]:
    """Start the agent process (its own namespace the machine's: it only reaches etcd on
    127.0.0.1; all its kernel work is in ``--netns``) and wait for it to write its state
    file (a new file: a previous run's stays)."""

    def stamp() -> tuple[int, int] | None:
        with contextlib.suppress(FileNotFoundError):
            info = node.state_file.stat()
            return info.st_ino, info.st_mtime_ns
        return None

    before = stamp()
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    try:
        await eventually(
            off_loop(lambda: stamp() not in (None, before) or proc.poll() is not None),
            bool,
            within=CONVERGE,
            what="the agent process wrote its state file",
        )
        assert proc.poll() is None, f"agent exited {proc.returncode}: {tail(log)}"
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def tail(log: Path) -> str:
    """The agent's log, for a failure message."""
    return log.read_text()[-4000:]


async def sigterm(proc: subprocess.Popen[bytes], log: Path) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.to_thread(proc.wait, 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"agent ignored SIGTERM: {tail(log)}") from None


@pytest.mark.asyncio
async def test_agent_process_sigterm_keeps_kernel_and_release_on_exit_drops_keys(
    etcd: Any, underlay: Underlay, prefix: str, tmp_path: Path
) -> None:
    n1, n2 = underlay.add_node("n1"), underlay.add_node("n2")
    log = tmp_path / "agent.log"
    async with Agents(etcd.url, prefix=prefix, cluster=cluster(), ttl=TTL) as agents:
        await agents.join(n2)
        proc = await run_until_joined(agent_argv(etcd, n1, prefix), n1, log)
        subnet = IPv4Network(json.loads(n1.state_file.read_text())["subnet"])
        peer = agents.running["n2"].state.subnet
        await eventually(
            off_loop(n1.entries), lambda e: e.subnets == {peer}, within=CONVERGE,
            what="the agent process programmed its peer",
        )  # fmt: skip
        await eventually(
            off_loop(n2.entries), lambda e: e.subnets == {subnet}, within=CONVERGE,
            what="the peer programmed the agent process's node",
        )  # fmt: skip
        kept = await asyncio.to_thread(n1.entries)

        assert await sigterm(proc, log) == 0, tail(log)
        assert n1.state_file.is_file()
        assert await asyncio.to_thread(n1.entries) == kept  # containers keep working
        assert "ovbr0" in await asyncio.to_thread(n1.links)

        # again, releasing on exit: the same subnet, and its keys go at once
        proc = await run_until_joined(agent_argv(etcd, n1, prefix, "--release-on-exit"), n1, log)
        assert IPv4Network(json.loads(n1.state_file.read_text())["subnet"]) == subnet
        keys = await asyncio.to_thread(etcd_keys, etcd.url, root(prefix))
        assert f"{root(prefix)}nodes/n1" in keys
        assert await sigterm(proc, log) == 0, tail(log)
        keys = await asyncio.to_thread(etcd_keys, etcd.url, root(prefix))
        assert f"{root(prefix)}nodes/n1" not in keys, keys
        assert f"{root(prefix)}subnets/{subnet.network_address}-{subnet.prefixlen}" not in keys
        await eventually(
            off_loop(n2.entries), lambda e: not e.subnets, within=CONVERGE,
            what=f"the peer dropped the released node {subnet}",
        )  # fmt: skip
        assert await asyncio.to_thread(n1.entries) == kept
