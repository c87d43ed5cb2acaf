"""Load: 200 attachments on one Go bridge network at once, then 200 DELs, against a real kernel.

One node namespace plays the host (every plugin is exec'd inside it through
``ip netns exec``); each of the 200 containers has its own namespace beside it,
all created up front (about 4 ms each) and all deleted afterwards. The bridge
has no ipMasq, so no iptables rule is made; host-local keeps its store and
cnilib its cache under ``tmp_path``. The same burst runs once through one
``AsyncCNI`` with a concurrency limit, and once from four Python processes
sharing the cache directory and the IPAM store.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

import cnilib
from cnilib.results import ResultV100
from cnilib.testing import NetNS, create_netns
from tests.privileged._kernel import (
    GO_PLUGINS,
    IPAM_LEFTOVERS,
    CachedTmpLayout,
    bridge_host_local,
    bridge_ports,
    go_plugin_marks,
    ip_json,
    ipam_files,
    link_names,
    plugin_pids,
    ps_lines,
)

pytestmark = go_plugin_marks()

CONTAINERS = 200
PROCESSES = 4
CONCURRENCY = 16
PER_PROCESS_CONCURRENCY = 8
"""Each of the 4 processes' limit: 32 plugin calls at most at once across them."""
NETWORK = "loadnet"
BRIDGE = "cniload0"
SUBNET = ipaddress.ip_network("10.250.40.0/24")
PHASE_DEADLINE = 60.0
"""A burst that is not done by then is stuck: fail with a report instead of hanging CI."""
PLUGIN_TIMEOUT = 20.0
T = TypeVar("T")


# --------------------------------------------------------------------------- helpers


def eth0_address(ns: NetNS) -> str | None:
    """The global IPv4 ``addr/prefix`` of eth0 in *ns*, ``None`` if there is no eth0."""
    if "eth0" not in link_names(ns):
        return None
    [link] = ip_json(ns, "-4", "addr", "show", "dev", "eth0")
    [addr] = [a for a in link["addr_info"] if a.get("scope") == "global"]
    return f"{addr['local']}/{addr['prefixlen']}"


def container_id(index: int) -> str:
    """The container ID of container number *index*."""
    return f"load-{index:03d}"


def stuck_plugins() -> str:
    """``ps`` lines of every plugin of this test still running, for a failure report."""
    return "\n".join(ps_lines(plugin_pids("load-", prefix=True))) or "(no plugin process left)"


async def within(deadline: float, work: Awaitable[T]) -> T:
    """Await *work*; if it is not done after *deadline* seconds, fail with what is stuck."""
    try:
        async with asyncio.timeout(deadline):
            return await work
    except TimeoutError:
        raise AssertionError(
            f"burst not done after {deadline:g}s; plugins:\n{stuck_plugins()}"
        ) from None


@dataclass
class LoadWorld(CachedTmpLayout):
    """A node namespace, 200 container namespaces, and the directories of one load test."""

    node: NetNS
    ctrs: list[NetNS]
    tmp: Path

    @property
    def conflist_bytes(self) -> bytes:
        """bridge + host-local, no ipMasq, one /24 with room for every container."""
        raw = {
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "plugins": [bridge_host_local(BRIDGE, str(SUBNET), self.data_dir, ipMasq=False)],
        }
        return json.dumps(raw).encode()

    def conflist(self) -> cnilib.NetworkConfigList:
        """The network every container is attached to."""
        return cnilib.conflist_from_bytes(self.conflist_bytes)

    def rt(self, index: int) -> cnilib.RuntimeConf:
        """The attachment of container number *index* (eth0 in its own namespace)."""
        return cnilib.RuntimeConf(container_id(index), self.ctrs[index].path, "eth0")

    def runtime(self) -> cnilib.AsyncCNI:
        """An AsyncCNI that execs the Go plugins inside the node namespace."""
        return cnilib.AsyncCNI(
            [str(GO_PLUGINS)],
            cache_dir=self.cache_dir,
            executor=cnilib.SubprocessExecutor(
                wrapper=self.node.exec_prefix, timeout=PLUGIN_TIMEOUT
            ),
            max_concurrency=CONCURRENCY,
        )

    def ipam_files(self) -> set[str]:
        """Every name in host-local's store for the network."""
        return ipam_files(self.data_dir, NETWORK)

    # -- the two halves of every load test: what must hold after ADD, after DEL --------
    def assert_all_attached(self, addresses: dict[str, str], host_veths: set[str]) -> None:
        """Every container has eth0 with its own address, the bridge has one port each,
        host-local holds one IP file per container, and the cache one complete entry each."""
        assert len(addresses) == CONTAINERS
        ips = [ipaddress.ip_interface(a) for a in addresses.values()]
        assert len({ip.ip for ip in ips}) == CONTAINERS, "an address was handed out twice"
        assert all(ip.network == SUBNET for ip in ips)

        ports = bridge_ports(self.node)
        assert len(ports) == CONTAINERS
        assert set(ports.values()) == {BRIDGE}
        assert set(ports) == host_veths

        for index, ns in enumerate(self.ctrs):
            assert eth0_address(ns) == addresses[container_id(index)]

        store = self.data_dir / NETWORK
        assert self.ipam_files() - IPAM_LEFTOVERS == {str(ip.ip) for ip in ips}
        for cid, addr in addresses.items():
            owner = (store / str(ipaddress.ip_interface(addr).ip)).read_bytes()
            assert owner == f"{cid}\r\neth0".encode()

        assert self.cache_files() == {
            f"{NETWORK}-{container_id(i)}-eth0" for i in range(CONTAINERS)
        }
        entries = cnilib.FileCache(self.cache_dir).attachments()
        assert not [e for e in entries if e.pending]

    def assert_nothing_left(self) -> None:
        """No IP file, cache entry, veth or container eth0 survived the DELs."""
        assert self.ipam_files() == IPAM_LEFTOVERS
        assert self.cache_files() == set()
        assert link_names(self.node) == {"lo", BRIDGE}
        assert bridge_ports(self.node) == {}
        with_links = [ns.name for ns in self.ctrs if link_names(ns) != {"lo"}]
        assert with_links == []


@pytest.fixture
def load_world(cnilib_node_netns: NetNS, tmp_path: Path) -> Iterator[LoadWorld]:
    """The node namespace and 200 container namespaces; every one is deleted afterwards."""
    with ExitStack() as stack:
        ctrs: list[NetNS] = []
        for _ in range(CONTAINERS):
            ns = create_netns("cnilib-load")
            stack.callback(ns.delete)
            ctrs.append(ns)
        yield LoadWorld(cnilib_node_netns, ctrs, tmp_path)


def result_of(res: cnilib.Result | None) -> tuple[str, str]:
    """The container address and the host veth name of a bridge ADD result."""
    assert isinstance(res, ResultV100)
    [ip] = res.ips
    host_veth = [i.name for i in res.interfaces if not i.sandbox and i.name != BRIDGE]
    assert len(host_veth) == 1
    return str(ip.address), host_veth[0]


# ------------------------------------------------------------------------------ AsyncCNI


class TestAsyncBurst:
    """200 concurrent ADDs then 200 concurrent DELs through one AsyncCNI."""

    def test_200_concurrent_add_then_del(self, load_world: LoadWorld) -> None:
        """Every ADD gets its own address and bridge port; after the DELs nothing is left."""
        world = load_world
        conf = world.conflist()
        cni = world.runtime()

        async def burst() -> tuple[list[cnilib.Result | None], float]:
            started = time.monotonic()
            adds = (cni.add_network_list(conf, world.rt(i)) for i in range(CONTAINERS))
            results = await within(PHASE_DEADLINE, asyncio.gather(*adds))
            return list(results), time.monotonic() - started

        results, add_seconds = asyncio.run(burst())
        print(f"add_seconds={add_seconds:.2f}")

        pairs = [result_of(r) for r in results]
        addresses = {container_id(i): addr for i, (addr, _) in enumerate(pairs)}
        world.assert_all_attached(addresses, {veth for _, veth in pairs})

        async def teardown() -> float:
            started = time.monotonic()
            dels = (cni.delete_network_list(conf, world.rt(i)) for i in range(CONTAINERS))
            await within(PHASE_DEADLINE, asyncio.gather(*dels))
            return time.monotonic() - started

        del_seconds = asyncio.run(teardown())
        print(f"del_seconds={del_seconds:.2f}")
        world.assert_nothing_left()


# ----------------------------------------------------------------------- four processes

WORKER = """
import asyncio, json, sys
import cnilib

spec = json.loads(sys.argv[1])
conf = cnilib.conflist_from_bytes(spec["conflist"].encode())
cni = cnilib.AsyncCNI(
    [spec["plugins"]],
    cache_dir=spec["cache_dir"],
    executor=cnilib.SubprocessExecutor(wrapper=spec["wrapper"], timeout=spec["timeout"]),
    max_concurrency=spec["concurrency"],
)

async def one(cid, netns):
    rt = cnilib.RuntimeConf(cid, netns, "eth0")
    if spec["verb"] == "del":
        await cni.delete_network_list(conf, rt)
        return cid, None
    res = await cni.add_network_list(conf, rt)
    host = [i.name for i in res.interfaces if not i.sandbox and i.name != spec["bridge"]]
    return cid, [str(res.ips[0].address), host[0]]

async def main():
    done = await asyncio.gather(*(one(cid, ns) for cid, ns in spec["containers"]))
    json.dump(dict(done), sys.stdout)

asyncio.run(main())
"""


def run_workers(world: LoadWorld, verb: str) -> tuple[dict[str, Any], float]:
    """Run ``verb`` for all containers from 4 processes at once; merge what they printed."""
    share = CONTAINERS // PROCESSES
    procs = []
    started = time.monotonic()
    for worker in range(PROCESSES):
        indices = range(worker * share, (worker + 1) * share)
        spec = {
            "verb": verb,
            "conflist": world.conflist_bytes.decode(),
            "plugins": str(GO_PLUGINS),
            "cache_dir": str(world.cache_dir),
            "wrapper": list(world.node.exec_prefix),
            "concurrency": PER_PROCESS_CONCURRENCY,
            "bridge": BRIDGE,
            "timeout": PLUGIN_TIMEOUT,
            "containers": [[container_id(i), world.ctrs[i].path] for i in indices],
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, json.dumps(spec)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    merged: dict[str, Any] = {}
    failures: list[str] = []
    try:
        for proc in procs:
            left = max(1.0, PHASE_DEADLINE - (time.monotonic() - started))
            try:
                out, err = proc.communicate(timeout=left)
            except subprocess.TimeoutExpired:
                failures.append(
                    f"worker {proc.pid} not done after {PHASE_DEADLINE:g}s:\n{stuck_plugins()}"
                )
                break
            if proc.returncode != 0:
                failures.append(err.decode(errors="replace")[-2000:])
                continue
            batch = json.loads(out)
            assert not set(batch) & set(merged)
            merged.update(batch)
    finally:
        for proc in procs:  # only on failure is one still running
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    elapsed = time.monotonic() - started
    assert failures == []
    return merged, elapsed


class TestFourProcesses:
    """The same burst split over 4 Python processes sharing the cache and the IPAM store."""

    def test_four_processes_add_then_del(self, load_world: LoadWorld) -> None:
        """No address is handed out twice across processes; after their DELs nothing is left."""
        world = load_world
        added, add_seconds = run_workers(world, "add")
        print(f"add_seconds={add_seconds:.2f}")

        addresses = {cid: pair[0] for cid, pair in added.items()}
        world.assert_all_attached(addresses, {pair[1] for pair in added.values()})

        deleted, del_seconds = run_workers(world, "del")
        print(f"del_seconds={del_seconds:.2f}")
        assert set(deleted) == set(addresses)
        world.assert_nothing_left()
