"""The overlay network: how fast a joining node becomes reachable, and what the VXLAN
tunnel costs in TCP throughput against two containers on one node.

The world: an underlay bridge in a namespace of its own, three node namespaces
plugged into it (``eth0`` 192.168.250.N/24), an etcd on the loopback of a throwaway
control namespace (this script re-runs itself there, so neither etcd nor the agents
touch the machine's own namespace), the node agents in process as asyncio tasks
(:class:`cnilib.overlay.Agent`, lease TTL 10 s as in production) and containers
attached by the ``overlay`` plugin in process. Everything is deleted at the end, also
on failure.

Measured:

- Convergence after a join, over ``BENCH_RUNS`` joins of node n3 (n1 and n2 joined
  already; between runs n3's agent leaves releasing its subnet and its devices are
  deleted, so each run is a first join): from the agent's start to its node state file
  (joined: subnet claimed, devices made), to the route to its subnet on peer n1, and to
  the first TCP connection from a container on n1 to n3's bridge address (a listener
  in n3's namespace; the probe retries every 2 ms).
- TCP throughput, one connection for ``BENCH_SECONDS`` each, Python sender and receiver
  (``ip netns exec`` in the container namespaces): container to container across nodes
  (through both nodes' VXLAN devices and the underlay) and on one node (through the
  node bridge), interleaved over ``BENCH_ROUNDS`` rounds. Python's sender is the
  bottleneck of neither path alone, so the ratio is what to read, not the absolute rates.

Goals (this benchmark's own): a join reaches a peer's kernel within 1 s of the agent's
start (median); VXLAN throughput at least half a same-node pair's (median).
Needs root, etcd (``apt-get install etcd-server``) and aetcd. Run: ``python3
benchmarks/bench_overlay.py`` (``BENCH_RUNS=20 BENCH_ROUNDS=5 BENCH_SECONDS=3`` by default).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnilib.overlay import Agent

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Row, print_table, report_verdict, rerun_inside_node

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
CONVERGE_GOAL_MS, THROUGHPUT_GOAL = 1000.0, 0.5

NETWORK = "benchovl"
NODES = ("n1", "n2", "n3")
# containers: two on n1 (the same-node pair), one on n2 (the cross-node peer)
CONTAINERS = {"c1a": "n1", "c1b": "n1", "c2a": "n2"}
PROBE_PORT, RATE_PORT = 7001, 7002

# The TCP sender and receiver of the bandwidth tests, run in the namespaces by path.
_RATE = Path(__file__).resolve().parent.parent / "tests" / "privileged" / "_throughput.py"


def wire(prefix: str) -> None:
    """The underlay bridge ``ul`` and each node's ``eth0`` into it."""
    ul = f"{prefix}-ul"
    subprocess.run(["ip", "-n", ul, "link", "add", "ul", "type", "bridge"], check=True)
    subprocess.run(["ip", "-n", ul, "link", "set", "ul", "up"], check=True)
    for index, node in enumerate(NODES, start=1):
        ns = f"{prefix}-{node}"
        subprocess.run(["ip", "-n", ul, "link", "add", f"ul-{node}", "type", "veth",
                        "peer", "name", "eth0", "netns", ns], check=True)  # fmt: skip
        subprocess.run(["ip", "-n", ul, "link", "set", f"ul-{node}", "master", "ul", "up"],
                       check=True)  # fmt: skip
        subprocess.run(["ip", "-n", ns, "addr", "add", f"192.168.250.{index}/24", "dev", "eth0"],
                       check=True)  # fmt: skip
        subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "up"], check=True)


class World:
    """The agents, the plugin and the probes, inside the control namespace."""

    def __init__(self, prefix: str, tmp: Path, etcd_url: str) -> None:
        from cnilib.overlay._config import ClusterConfig

        self.prefix, self.tmp, self.etcd_url = prefix, tmp, etcd_url
        self.cluster = ClusterConfig.make("10.244.0.0/16")
        self.agents: dict[str, tuple[Agent, asyncio.Task[None]]] = {}

    def ns(self, role: str) -> str:
        return f"/run/netns/{self.prefix}-{role}"

    def run_dir(self, node: str) -> Path:
        return self.tmp / node / "run"

    def start(self, node: str) -> tuple[Agent, asyncio.Task[None]]:
        from cnilib.overlay import Agent, AgentConfig

        config = AgentConfig(
            etcd=(self.etcd_url,), node=node,
            underlay=IPv4Address(f"192.168.250.{NODES.index(node) + 1}"),
            network=NETWORK, netns=self.ns(node), cluster=self.cluster, ttl=10,
            run_dir=str(self.run_dir(node)), release_on_exit=True,
        )  # fmt: skip
        agent = Agent(config)
        task = asyncio.create_task(agent.run())
        self.agents[node] = (agent, task)
        return agent, task

    async def stop(self, node: str) -> None:
        agent, task = self.agents.pop(node)
        agent.stop()
        await asyncio.wait_for(task, 10.0)

    def attach(self, container: str) -> IPv4Address:
        """ADD ``eth0`` of ``container`` on its node through the overlay plugin, in process."""
        import cnilib
        from cnilib.plugins._executor import InProcessExecutor

        node = CONTAINERS[container]
        raw = {"cniVersion": "1.0.0", "name": NETWORK, "plugins": [
            {"type": "overlay", "runDir": str(self.run_dir(node)),
             "dataDir": str(self.tmp / node / "ipam")}]}  # fmt: skip
        executor = InProcessExecutor(host_netns=self.ns(node))
        cni = cnilib.CNI([str(self.tmp / "bin")], cache_dir=self.tmp / node / "cache",
                         executor=executor)  # fmt: skip
        try:
            conf = cnilib.conflist_from_bytes(json.dumps(raw).encode())
            result = cni.add_network_list(
                conf, cnilib.RuntimeConf(container, self.ns(container), "eth0")
            )
        finally:
            cni.close()
            executor.close()
        if result is None:
            raise RuntimeError(f"ADD of {container} gave no result")
        address = json.loads(result.to_json())["ips"][0]["address"]
        return IPv4Address(address.split("/")[0])


def _socket_in(ns: str, listen: tuple[str, int] | None = None) -> socket.socket:
    from cnilib import netlink

    def make() -> socket.socket:
        if listen is not None:
            return socket.create_server(listen)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock

    return netlink.run_in_netns(ns, make)


async def _hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _has_route(ns: str, subnet: IPv4Network) -> bool:
    from cnilib import netlink

    routes = await netlink.arun_in_netns(ns, netlink.list_routes, family=socket.AF_INET)
    return any(r.dst == subnet for r in routes)


async def _tcp_once(ns: str, dst: IPv4Address, port: int) -> bool:
    loop = asyncio.get_running_loop()
    sock = _socket_in(ns)
    try:
        # short: a SYN lost before both ends are programmed is retried by the kernel only
        # after 1 s, which would measure the kernel's timer rather than the overlay
        async with asyncio.timeout(0.02):
            await loop.sock_connect(sock, (str(dst), port))
        return True
    except (OSError, TimeoutError):
        return False
    finally:
        sock.close()


async def one_join(world: World) -> tuple[float, float, float]:
    """Milliseconds from n3's agent start to: joined, route on n1, first TCP from c1a."""
    started = time.perf_counter()
    agent, _ = world.start("n3")
    state = await asyncio.wait_for(agent.wait_joined(), 30.0)
    joined = time.perf_counter()
    subnet = state.subnet
    gateway = subnet.network_address + 1
    route = tcp = 0.0
    while not (route and tcp):
        now = time.perf_counter()
        if not route and await _has_route(world.ns("n1"), subnet):
            route = time.perf_counter()
        if not tcp and await _tcp_once(world.ns("c1a"), gateway, PROBE_PORT):
            tcp = time.perf_counter()
        if now - started > 30:
            raise RuntimeError(f"n3 ({subnet}) not reachable from n1 after 30 s")
        await asyncio.sleep(0.002)
    return tuple((t - started) * 1000 for t in (joined, route, tcp))  # type: ignore[return-value]


async def reset_n3(world: World, subnet: IPv4Network | None) -> None:
    """n3 leaves (releasing), its devices go, and n1 has dropped its route: a clean slate."""
    await world.stop("n3")
    for dev in ("ovx1", "ovbr0"):
        argv = ["ip", "-n", f"{world.prefix}-n3", "link", "del", dev]
        await asyncio.to_thread(subprocess.run, argv, check=False, capture_output=True)
    deadline = time.monotonic() + 30
    while subnet is not None and await _has_route(world.ns("n1"), subnet):
        if time.monotonic() > deadline:
            raise RuntimeError(f"n1 kept its route to {subnet} after n3 left")
        await asyncio.sleep(0.01)


def rate(prefix: str, src: str, dst: str, dst_ip: IPv4Address) -> float:
    """One TCP connection src -> dst for SECONDS: Mbit/s as the receiver counted."""
    exe = ["ip", "netns", "exec"]
    recv = subprocess.Popen([*exe, f"{prefix}-{dst}", sys.executable, str(_RATE), "recv",
                             str(dst_ip), str(RATE_PORT), str(SECONDS)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert recv.stdout is not None
        if recv.stdout.readline().strip() != "ready":
            raise RuntimeError("the receiver did not start")
        send = subprocess.run([*exe, f"{prefix}-{src}", sys.executable, str(_RATE), "send",
                               str(dst_ip), str(RATE_PORT), str(SECONDS)],
                              check=False, timeout=SECONDS + 15)  # fmt: skip
        out = recv.stdout.readline()
        recv.wait(10)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    if send.returncode != 0 or not out:
        raise RuntimeError(f"{src} -> {dst}: the transfer failed")
    data = json.loads(out)
    return float(data["bytes"]) * 8 / float(data["seconds"]) / 1e6


def print_rates(rows: Sequence[Row], baseline: Row) -> None:
    print(f"\n### TCP throughput, one connection, {SECONDS:g} s each (Mbit/s, higher is better)\n")
    print("| path | runs | median | p10 (the slowest tenth) | vs same node |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        ordered = sorted(row.samples_ms)
        low = ordered[int(0.1 * len(ordered))]
        print(f"| {row.label} | {len(ordered)} | {row.median:.0f} | {low:.0f} | "
              f"{row.median / baseline.median:.2f}x |")  # fmt: skip


async def measure(prefix: str, tmp: Path, etcd_url: str) -> None:
    world = World(prefix, tmp, etcd_url)
    try:
        for node in ("n1", "n2"):
            agent, _ = world.start(node)
            await asyncio.wait_for(agent.wait_joined(), 30.0)
        ips = {c: await asyncio.to_thread(world.attach, c) for c in CONTAINERS}
        # the probes' listener, in n3's namespace: any of its addresses, so its bridge's
        listener = await asyncio.start_server(
            _hang_up, sock=_socket_in(world.ns("n3"), ("0.0.0.0", PROBE_PORT))
        )
        samples: list[tuple[float, float, float]] = []
        try:
            for run in range(RUNS + 1):  # the first join warms up
                sample = await one_join(world)
                state = world.agents["n3"][0].state
                subnet = state.subnet if state is not None else None
                if run:
                    samples.append(sample)
                await reset_n3(world, subnet)
        finally:
            listener.close()
        joins = [
            Row("agent start -> joined (subnet claimed, devices made, state file)",
                tuple(s[0] for s in samples)),
            Row("agent start -> route on a peer (n1)", tuple(s[1] for s in samples)),
            Row("agent start -> first TCP connection from a peer's container",
                tuple(s[2] for s in samples)),
        ]  # fmt: skip
        print_table(f"Convergence after a join (TTL 10 s; {RUNS} joins)", joins)

        cross: list[float] = []
        same: list[float] = []
        for _ in range(ROUNDS):
            cross.append(await asyncio.to_thread(rate, prefix, "c1a", "c2a", ips["c2a"]))
            same.append(await asyncio.to_thread(rate, prefix, "c1a", "c1b", ips["c1b"]))
        same_row = Row("same node (container -> node bridge -> container)", tuple(same))
        cross_row = Row("across nodes (VXLAN over the underlay)", tuple(cross))
        print_rates([same_row, cross_row], same_row)

        route = joins[1]
        ratio = cross_row.median / same_row.median
        print()
        report_verdict(
            "overlay: a joining node reaches a peer's kernel within "
            f"{CONVERGE_GOAL_MS / 1000:g} s of its agent's start",
            f"{route.median:.1f} ms median, {route.p90:.1f} ms p90 (route on the peer); "
            f"first TCP from a peer's container {joins[2].median:.1f} ms",
            met=route.median <= CONVERGE_GOAL_MS,
            source="bench_overlay.py",
        )
        report_verdict(
            f"overlay: TCP across nodes (VXLAN) at least {THROUGHPUT_GOAL}x a same-node pair",
            f"{ratio:.2f}x: {cross_row.median:.0f} against {same_row.median:.0f} Mbit/s "
            f"(medians of {len(cross)})",
            met=ratio >= THROUGHPUT_GOAL,
            source="bench_overlay.py",
        )
    finally:
        for node in list(world.agents):
            _, task = world.agents.pop(node)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def inner(prefix: str) -> None:
    """Inside the control namespace: etcd on its loopback, then the measurement."""
    from cnilib.testing._etcd import EtcdServer

    with tempfile.TemporaryDirectory() as tmp:
        etcd = EtcdServer(Path(tmp) / "etcd")
        etcd.start()
        try:
            asyncio.run(measure(prefix, Path(tmp), etcd.url))
        finally:
            etcd.stop()
            from cnilib import netlink

            netlink.default_pool().close()


def main() -> None:
    if shutil.which("etcd") is None and not os.access("/usr/bin/etcd", os.X_OK):
        sys.exit("needs etcd: apt-get install etcd-server")
    try:
        import aetcd  # noqa: F401
    except ImportError:
        sys.exit("needs aetcd: pip install 'cnilib[overlay]'")
    rerun_inside_node(__file__, ("ul", *NODES, *CONTAINERS), (), wire)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--inner":
        inner(sys.argv[2])
    else:
        main()
