"""A world for the overlay tests: an underlay network, nodes on it, containers on the nodes.

- :class:`Underlay`: a throwaway namespace holding the bridge ``ul``, the "switch"
  every node is plugged into. :meth:`Underlay.add_node` makes a node namespace
  with a veth ``eth0`` into ``ul`` (``192.168.250.N/24``, up, ``lo`` up).
  :meth:`Underlay.close` deletes every namespace it made (containers, nodes, the
  underlay), also after a failure: the ``underlay`` fixture calls it.
- :class:`Node`: the node's namespace plays the host. Its containers are attached
  by the ``overlay`` CNI plugin run in process (``InProcessExecutor(host_netns=
  <node>)``), reading the node state file the agent wrote in the node's run dir.
  :meth:`Node.entries` reads what the agent programmed (routes, neighbours and
  FDB entries of the VXLAN device) with ``ip``/``bridge`` inside the node.
- :class:`Agents`: agents run in process as asyncio tasks on the test's loop
  (:class:`cnilib.overlay.Agent`); leaving the ``async with`` cancels the ones
  still running, before the fixtures delete the namespaces.
- TCP reachability without extra tools: :class:`EchoServers` listens in each
  container, :meth:`EchoServers.matrix` connects every ordered pair at once.
  The sockets are made inside the namespaces by a netlink worker thread
  (a socket belongs to the namespace it was created in) and then driven by the
  test's asyncio loop, so 30 pairs take milliseconds when they work, and at most
  ``bound`` when they do not. :class:`EchoStream` keeps one connection busy
  (a line every 50 ms) to show that traffic flows through an event.

Everything here lives in the namespaces it made; nothing touches the machine's own.
Addresses: underlay 192.168.250.0/24, cluster 10.244.0.0/16 (both only in the
test namespaces).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import cnilib
from cnilib import netlink
from cnilib.results import ResultV100
from cnilib.testing import NetNS, create_netns
from cnilib.testing._etcd import EtcdServer

if TYPE_CHECKING:
    from cnilib.overlay import Agent, AgentConfig, ClusterConfig, NodeState
    from cnilib.plugins._executor import InProcessExecutor

__all__ = [
    "CLUSTER_CIDR",
    "NETWORK",
    "UNDERLAY_NET",
    "Agents",
    "Container",
    "EchoServers",
    "EchoStream",
    "Entries",
    "Node",
    "Underlay",
    "eventually",
    "expected_entries",
]

T = TypeVar("T")

NETWORK = "overlay"
"""The overlay network's name: etcd keys, the node state file and the CNI network."""
CLUSTER_CIDR = "10.244.0.0/16"
UNDERLAY_NET = IPv4Network("192.168.250.0/24")
UNDERLAY_BRIDGE = "ul"
ECHO_PORT = 7777


def _ip(*argv: str, ns: NetNS | None = None, check: bool = True) -> str:
    """``ip [-n ns] argv`` (``bridge`` when argv[0] is "bridge"), its stdout."""
    tool, rest = ("bridge", argv[1:]) if argv and argv[0] == "bridge" else ("ip", argv)
    cmd = [tool, *(("-n", ns.name) if ns is not None else ()), *rest]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _json(*argv: str, ns: NetNS) -> list[dict[str, Any]]:
    out = _ip("-j", *argv, ns=ns) if argv[0] != "bridge" else _ip("bridge", "-j", *argv[1:], ns=ns)
    out = out.strip()
    return list(json.loads(out)) if out else []


def _delete(namespaces: Iterable[NetNS]) -> None:
    """Delete each namespace (netlink workers in it retired first); raise the first failure
    after trying them all."""
    errors: list[BaseException] = []
    for ns in namespaces:
        try:
            netlink.close_netns(ns.path)
            ns.delete()
        except Exception as exc:  # keep deleting the others
            errors.append(exc)
    if errors:
        raise errors[0]


# ---------------------------------------------------------------------------- kernel views


@dataclass(frozen=True)
class Entries:
    """What a node's kernel holds for its peers on the VXLAN device (sorted lists, so a
    duplicate entry shows as a repeated item)."""

    routes: tuple[tuple[str, str], ...]
    """(destination, gateway) of every route through the device."""
    neighbours: tuple[tuple[str, str], ...]
    """(address, MAC) of every permanent neighbour on the device."""
    fdb: tuple[tuple[str, str], ...]
    """(MAC, underlay destination) of every FDB entry with a destination."""

    @property
    def subnets(self) -> set[IPv4Network]:
        return {IPv4Network(dst) for dst, _ in self.routes}


def expected_entries(peers: Iterable[tuple[IPv4Network, str, IPv4Address]]) -> Entries:
    """The entries a node must hold for ``peers`` (subnet, VTEP MAC, underlay address)."""
    peers = list(peers)
    return Entries(
        routes=tuple(sorted((str(s), str(s.network_address)) for s, _, _ in peers)),
        neighbours=tuple(sorted((str(s.network_address), mac) for s, mac, _ in peers)),
        fdb=tuple(sorted((mac, str(u)) for _, mac, u in peers)),
    )


# -------------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class Container:
    """A container namespace attached to its node's overlay bridge."""

    name: str
    node: str
    ns: NetNS
    ip: IPv4Address
    result: ResultV100


@dataclass(eq=False)
class Node:
    """A node namespace on the underlay, with its own run dir, IPAM store and CNI cache."""

    name: str
    ns: NetNS
    ip: IPv4Address
    tmp: Path
    underlay: Underlay
    containers: list[Container] = field(default_factory=list)
    _executor: InProcessExecutor | None = None
    _cni: cnilib.CNI | None = None

    @property
    def path(self) -> str:
        """The namespace's path (``--netns``, ``AgentConfig.netns``, ``host_netns``)."""
        return self.ns.path

    @property
    def run_dir(self) -> Path:
        """Where the agent writes the node state file the plugin reads."""
        return self.tmp / "run"

    @property
    def state_file(self) -> Path:
        return self.run_dir / f"{NETWORK}.json"

    @property
    def cni(self) -> cnilib.CNI:
        """cnilib's plugins in process, this node's namespace as the host."""
        if self._cni is None:
            from cnilib.plugins._executor import InProcessExecutor

            self._executor = InProcessExecutor(host_netns=self.ns.path)
            self._cni = cnilib.CNI(
                [str(self.tmp / "bin")], cache_dir=self.tmp / "cache", executor=self._executor
            )
        return self._cni

    def conflist(self) -> cnilib.NetworkConfigList:
        """The ``overlay`` plugin, reading this node's state file, host-local's store in tmp."""
        raw = {
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "plugins": [
                {"type": "overlay", "runDir": str(self.run_dir), "dataDir": str(self.tmp / "ipam")}
            ],
        }
        return cnilib.conflist_from_bytes(json.dumps(raw).encode())

    def add_container(self, name: str | None = None) -> Container:
        """A new container namespace, attached (ADD ``eth0``) by the overlay plugin."""
        name = name or f"{self.name}c{len(self.containers) + 1}"
        ns = self.underlay.new_netns("cnilib-ovl-ctr")
        rt = cnilib.RuntimeConf(f"ovl-{name}", ns.path, "eth0")
        result = self.cni.add_network_list(self.conflist(), rt)
        assert isinstance(result, ResultV100), result
        ips = [ipaddress.ip_interface(str(ip.address)) for ip in result.ips]
        v4 = next(i.ip for i in ips if isinstance(i.ip, IPv4Address))
        container = Container(name, self.name, ns, v4, result)
        self.containers.append(container)
        return container

    def delete_container(self, container: Container) -> None:
        rt = cnilib.RuntimeConf(f"ovl-{container.name}", container.ns.path, "eth0")
        self.cni.delete_network_list(self.conflist(), rt)
        self.containers.remove(container)

    def close(self) -> None:
        if self._cni is not None:
            self._cni.close()
        if self._executor is not None:
            self._executor.close()

    # kernel views ------------------------------------------------------------------------

    def links(self) -> dict[str, dict[str, Any]]:
        return {link["ifname"]: link for link in _json("-d", "link", ns=self.ns)}

    def vxlan_mac(self, device: str = "ovx1") -> str | None:
        link = self.links().get(device)
        return None if link is None else str(link["address"])

    def entries(self, device: str = "ovx1") -> Entries:
        """The routes, permanent neighbours and FDB entries on ``device`` (none if absent)."""
        if device not in self.links():
            return Entries((), (), ())
        routes = _json("route", "show", "dev", device, ns=self.ns)
        neigh = _json("neigh", "show", "dev", device, ns=self.ns)
        fdb = _json("bridge", "fdb", "show", "dev", device, ns=self.ns)
        return Entries(
            routes=tuple(sorted((r["dst"], r.get("gateway", "")) for r in routes)),
            neighbours=tuple(sorted((n["dst"], n.get("lladdr", "")) for n in neigh)),
            fdb=tuple(sorted((f["mac"], f["dst"]) for f in fdb if "dst" in f)),
        )


class Underlay:
    """The underlay switch (bridge ``ul`` in a namespace of its own) and everything on it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.nodes: dict[str, Node] = {}
        self._made: list[NetNS] = []
        self.ns = self.new_netns("cnilib-ovl-ul")
        try:
            _ip("link", "add", UNDERLAY_BRIDGE, "type", "bridge", ns=self.ns)
            _ip("link", "set", UNDERLAY_BRIDGE, "up", ns=self.ns)
        except BaseException:
            self.close()
            raise

    def new_netns(self, prefix: str) -> NetNS:
        """A namespace deleted by :meth:`close`."""
        ns = create_netns(prefix)
        self._made.append(ns)
        return ns

    def add_node(self, name: str) -> Node:
        """A node namespace with ``eth0`` (192.168.250.N/24, N = 1, 2, ...) on the underlay."""
        index = len(self.nodes) + 1
        ip = UNDERLAY_NET.network_address + index
        ns = self.new_netns(f"cnilib-ovl-{name}")
        port = f"ul-{name}"[:15]
        _ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.name,
            ns=self.ns)  # fmt: skip
        _ip("link", "set", port, "master", UNDERLAY_BRIDGE, "up", ns=self.ns)
        _ip("addr", "add", f"{ip}/{UNDERLAY_NET.prefixlen}", "dev", "eth0", ns=ns)
        _ip("link", "set", "eth0", "up", ns=ns)
        node = Node(name, ns, ip, self.tmp / name, self)
        node.run_dir.mkdir(parents=True, exist_ok=True)
        self.nodes[name] = node
        return node

    def containers(self) -> list[Container]:
        return [c for node in self.nodes.values() for c in node.containers]

    def close(self) -> None:
        """Delete every namespace made here, newest first (containers, nodes, the underlay)."""
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.close()
        made, self._made = list(reversed(self._made)), []
        _delete(made)


# ----------------------------------------------------------------------------------- agents


@dataclass(eq=False)
class RunningAgent:
    node: Node
    agent: Agent
    task: asyncio.Task[None]

    @property
    def state(self) -> NodeState:
        state = self.agent.state
        assert state is not None, f"agent of {self.node.name} has not joined"
        return state


class Agents:
    """In-process agents on the test's loop; ``async with`` cancels those left running."""

    def __init__(
        self, endpoint: str, *, prefix: str, cluster: ClusterConfig | None, ttl: int = 2
    ) -> None:
        self.endpoint = endpoint
        self.prefix = prefix
        self.cluster = cluster
        self.ttl = ttl
        self.running: dict[str, RunningAgent] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for name in list(self.running):
            await self.kill(name)

    def config(self, node: Node, **overrides: Any) -> AgentConfig:
        from cnilib.overlay import AgentConfig

        kwargs: dict[str, Any] = {
            "etcd": (self.endpoint,),
            "node": node.name,
            "underlay": node.ip,
            "network": NETWORK,
            "prefix": self.prefix,
            "netns": node.path,
            "cluster": self.cluster,
            "ttl": self.ttl,
            "run_dir": str(node.run_dir),
            # the tests show reconciliation by events and re-lists, not by the periodic resync
            "resync_interval": 30.0,
        }
        kwargs.update(overrides)
        return AgentConfig(**kwargs)

    def start(self, node: Node, **overrides: Any) -> RunningAgent:
        """Start ``node``'s agent as a task (not waiting for it to join)."""
        from cnilib.overlay import Agent

        assert node.name not in self.running, f"agent of {node.name} already running"
        agent = Agent(self.config(node, **overrides))
        task = asyncio.create_task(agent.run(), name=f"agent-{node.name}")
        running = RunningAgent(node, agent, task)
        self.running[node.name] = running
        return running

    async def joined(self, running: RunningAgent, *, within: float = 15.0) -> NodeState:
        """Wait until the agent joined; its task's failure is raised instead, if it fails."""
        joined = asyncio.ensure_future(running.agent.wait_joined())
        try:
            done, _ = await asyncio.wait(
                {joined, running.task}, timeout=within, return_when=asyncio.FIRST_COMPLETED
            )
            if joined in done:
                return joined.result()
            if running.task in done:
                self.running.pop(running.node.name, None)
                running.task.result()  # raises the agent's error
                raise AssertionError(f"agent of {running.node.name} ended before joining")
            raise AssertionError(f"agent of {running.node.name} not joined after {within:g}s")
        finally:
            joined.cancel()

    async def join(self, node: Node, **overrides: Any) -> RunningAgent:
        running = self.start(node, **overrides)
        await self.joined(running)
        return running

    async def kill(self, name: str) -> None:
        """End the agent abruptly: its task is cancelled; the lease is left to expire."""
        running = self.running.pop(name)
        running.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(running.task, 10.0)

    async def stop(self, name: str, *, within: float = 10.0) -> None:
        """Stop the agent gracefully (``Agent.stop()``) and wait for ``run()`` to return."""
        running = self.running.pop(name)
        running.agent.stop()
        await asyncio.wait_for(running.task, within)


# ------------------------------------------------------------------------- waiting, polling


async def eventually(
    probe: Callable[[], Awaitable[T]],
    ok: Callable[[T], bool],
    *,
    within: float,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``ok(value)``; fail after ``within`` seconds showing the last
    value. Probes that block (``ip`` subprocesses) run on a thread: see :func:`off_loop`."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if ok(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {within:g}s; last: {value!r}")
        await asyncio.sleep(interval)


def off_loop(fn: Callable[..., T], *args: Any) -> Callable[[], Awaitable[T]]:
    """``fn(*args)`` as an awaitable probe run on a thread (for ``ip`` subprocesses)."""
    return lambda: asyncio.to_thread(fn, *args)


# ---------------------------------------------------------------------------- TCP traffic


def _socket_in(ns: NetNS, *, listen: tuple[str, int] | None = None) -> socket.socket:
    """A TCP socket created inside ``ns`` (by a worker thread there), non-blocking."""

    def make() -> socket.socket:
        if listen is not None:
            sock = socket.create_server(listen, reuse_port=False)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock

    return netlink.run_in_netns(ns.path, make)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


Pair = tuple[str, str]


class EchoServers:
    """A TCP echo server in each container (``ECHO_PORT`` on its overlay address)."""

    def __init__(self, containers: Sequence[Container], port: int = ECHO_PORT) -> None:
        self.containers = list(containers)
        self.port = port
        self._servers: dict[str, asyncio.Server] = {}

    async def __aenter__(self) -> Self:
        for container in self.containers:
            await self.add(container)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for server in self._servers.values():
            server.close()
        for server in self._servers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        self._servers.clear()

    async def add(self, container: Container) -> None:
        if container not in self.containers:
            self.containers.append(container)
        sock = await asyncio.to_thread(
            _socket_in, container.ns, listen=(str(container.ip), self.port)
        )
        self._servers[container.name] = await asyncio.start_server(_echo, sock=sock)

    async def connect(self, src: Container, dst: Container, *, bound: float) -> str | None:
        """One round trip ``src`` -> ``dst``: None when echoed, else what went wrong."""
        loop = asyncio.get_running_loop()
        sock = await asyncio.to_thread(_socket_in, src.ns)
        try:
            async with asyncio.timeout(bound):
                await loop.sock_connect(sock, (str(dst.ip), self.port))
                token = f"{src.name}->{dst.name}\n".encode()
                await loop.sock_sendall(sock, token)
                got = b""
                while not got.endswith(b"\n"):
                    chunk = await loop.sock_recv(sock, 1024)
                    if not chunk:
                        return f"closed after {got!r}"
                    got += chunk
                return None if got == token else f"echoed {got!r}"
        except TimeoutError:
            return f"no answer within {bound:g}s"
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            sock.close()

    async def matrix(
        self, pairs: Iterable[tuple[Container, Container]] | None = None, *, bound: float = 2.0
    ) -> dict[Pair, str]:
        """Every ordered pair at once (default: all of :attr:`containers`); the failures,
        by (src, dst) name, with what went wrong (empty: all reached)."""
        if pairs is None:
            pairs = [(a, b) for a in self.containers for b in self.containers if a is not b]
        pairs = list(pairs)
        outcomes = await asyncio.gather(*(self.connect(a, b, bound=bound) for a, b in pairs))
        return {
            (a.name, b.name): why
            for (a, b), why in zip(pairs, outcomes, strict=True)
            if why is not None
        }

    async def all_reach(
        self,
        pairs: Iterable[tuple[Container, Container]] | None = None,
        *,
        within: float = 10.0,
        bound: float = 2.0,
    ) -> None:
        """Retry :meth:`matrix` until every pair reaches (fail after ``within`` seconds)."""
        pairs = None if pairs is None else list(pairs)
        await eventually(
            lambda: self.matrix(pairs, bound=bound),
            lambda failures: not failures,
            within=within,
            interval=0.1,
            what="every pair reaches every other by TCP",
        )


class EchoStream:
    """One TCP connection kept busy: a line every ``interval``, each echo awaited for at most
    ``timeout``. :attr:`echoes` counts answered lines, :attr:`failure` says what broke it."""

    def __init__(
        self, servers: EchoServers, src: Container, dst: Container, *, interval: float = 0.05,
        timeout: float = 2.0,
    ) -> None:  # fmt: skip
        self.servers, self.src, self.dst = servers, src, dst
        self.interval, self.timeout = interval, timeout
        self.echoes = 0
        self.failure: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        connected = asyncio.ensure_future(self._connected.wait())
        await asyncio.wait({connected, self._task}, return_when=asyncio.FIRST_COMPLETED)
        connected.cancel()
        assert self.failure is None, f"stream {self.src.name}->{self.dst.name}: {self.failure}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        sock = await asyncio.to_thread(_socket_in, self.src.ns)
        n = 0
        try:
            async with asyncio.timeout(self.timeout):
                await loop.sock_connect(sock, (str(self.dst.ip), self.servers.port))
            self._connected.set()
            while True:
                n += 1
                line = f"{n}\n".encode()
                async with asyncio.timeout(self.timeout):
                    await loop.sock_sendall(sock, line)
                    got = b""
                    while not got.endswith(b"\n"):
                        chunk = await loop.sock_recv(sock, 64)
                        if not chunk:
                            raise ConnectionResetError("closed by the server")
                        got += chunk
                if got != line:
                    raise ValueError(f"echoed {got!r} for {line!r}")
                self.echoes += 1
                await asyncio.sleep(self.interval)
        except TimeoutError:
            self.failure = f"line {n}: no echo within {self.timeout:g}s"
        except (OSError, ValueError) as exc:
            self.failure = f"line {n}: {type(exc).__name__}: {exc}"
        finally:
            sock.close()

    def check(self) -> int:
        """The echoes so far; fails if the stream broke."""
        assert self.failure is None, f"stream {self.src.name}->{self.dst.name}: {self.failure}"
        assert self._task is not None
        assert not self._task.done()
        return self.echoes


# -------------------------------------------------------------------------------------- etcd


def etcd_keys(endpoint: str, prefix: str) -> dict[str, dict[str, Any]]:
    """Every key under ``prefix`` as etcd's JSON gateway shows it (``value`` decoded,
    ``lease`` as given): read without the overlay's own client."""
    import base64
    import urllib.request

    raw = prefix.encode()
    end = raw[:-1] + bytes([raw[-1] + 1])
    body = json.dumps(
        {"key": base64.b64encode(raw).decode(), "range_end": base64.b64encode(end).decode()}
    ).encode()
    request = urllib.request.Request(endpoint + "/v3/kv/range", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=5) as reply:
        data = json.loads(reply.read())
    keys = {}
    for kv in data.get("kvs", []):
        keys[base64.b64decode(kv["key"]).decode()] = {
            "value": base64.b64decode(kv.get("value", "")).decode(),
            "lease": kv.get("lease"),
        }
    return keys


@contextlib.contextmanager
def etcd_server(tmp: Path) -> Iterator[EtcdServer]:
    """An etcd on 127.0.0.1 (free ports, data dir under ``tmp``), stopped on exit."""
    server = EtcdServer(tmp)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def underlay_world(tmp: Path) -> Iterator[Underlay]:
    """An :class:`Underlay` deleted (with every node and container) on exit."""
    world = Underlay(tmp)
    try:
        yield world
    finally:
        world.close()
