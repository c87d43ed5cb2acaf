"""``overlay status``: cluster_status against a MemoryStore, its renderings, and the
command line (flags to AgentConfig, errors as one line with no etcd reachable)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import attrs
import pytest

from cnilib.overlay._cli import _parser, agent_config, main
from cnilib.overlay._config import ClusterConfig
from cnilib.overlay._memstore import MemoryStore
from cnilib.overlay._records import Keys, NodeRecord, SubnetRecord
from cnilib.overlay._status import (
    ClusterStatus,
    NodeStatus,
    cluster_status,
    render_json,
    render_text,
)

KEYS = Keys(network="ovnet")
NOW = 1_700_000_000.0
CONFIG = ClusterConfig.make("10.244.0.0/16")


def _record(node: str, third: int) -> SubnetRecord:
    return SubnetRecord(
        subnet=IPv4Network(f"10.244.{third}.0/24"),
        node=node,
        underlay=IPv4Address(f"192.168.50.{third}"),
        vtep_mac=f"02:00:00:00:00:{third:02x}",
        joined=NOW - 300,
    )


async def _join(store: MemoryStore, record: SubnetRecord, *, ttl: int = 10) -> int:
    lease = (await store.grant(ttl)).id
    outcome = await store.compare_and_put(
        {},
        {
            KEYS.subnet(record.subnet): record.to_json(),
            KEYS.node(record.node): NodeRecord(record.node, record.subnet).to_json(),
        },
        lease=lease,
    )
    assert outcome.succeeded
    return lease


async def _cluster(store: MemoryStore) -> None:
    await store.compare_and_put({}, {KEYS.config: CONFIG.to_json()})


def test_two_nodes_with_their_leases() -> None:
    async def run() -> tuple[ClusterStatus, list[int]]:
        store = MemoryStore()
        await _cluster(store)
        leases = [await _join(store, _record("b", 2), ttl=30), await _join(store, _record("a", 1))]
        return await cluster_status(store, KEYS, now=NOW), leases

    status, leases = asyncio.run(run())
    assert status.config == CONFIG
    assert status.problems == ()
    assert status.now == NOW
    assert [n.node for n in status.nodes] == ["a", "b"]  # by subnet
    a, b = status.nodes
    assert a == NodeStatus(
        node="a",
        subnet=IPv4Network("10.244.1.0/24"),
        underlay=IPv4Address("192.168.50.1"),
        vtep_mac="02:00:00:00:00:01",
        vni=1,
        joined=NOW - 300,
        lease=leases[1],
        ttl_left=a.ttl_left,
        ttl_granted=10,
    )
    assert a.ttl_left is not None
    assert 0 <= a.ttl_left <= 10
    assert (b.lease, b.ttl_granted) == (leases[0], 30)


def test_expired_lease_drops_the_node() -> None:
    async def run() -> ClusterStatus:
        store = MemoryStore()
        await _cluster(store)
        store.expire(await _join(store, _record("a", 1)))
        await _join(store, _record("b", 2))
        return await cluster_status(store, KEYS, now=NOW)

    status = asyncio.run(run())
    assert [n.node for n in status.nodes] == ["b"]
    assert status.problems == ()


def test_problems_name_their_keys() -> None:
    """Undecodable records, records that disagree, a subnet outside the pool, a key with
    no lease and a missing configuration are each reported, naming the key; the good
    node is still listed."""

    async def run() -> ClusterStatus:
        store = MemoryStore()
        await _join(store, _record("good", 1))
        await store.compare_and_put({}, {KEYS.subnets + "10.244.9.0-24": b"{"})
        await store.compare_and_put({}, {KEYS.subnets + "bogus": b"{}"})
        orphan = _record("orphan", 3)  # a subnet key without its node key, no lease
        await store.compare_and_put({}, {KEYS.subnet(orphan.subnet): orphan.to_json()})
        stray = NodeRecord("stray", IPv4Network("10.244.7.0/24"))
        await store.compare_and_put({}, {KEYS.node("stray"): stray.to_json()})
        await store.compare_and_put({}, {KEYS.node("broken"): b'{"subnet": 5}'})
        return await cluster_status(store, KEYS, now=NOW)

    status = asyncio.run(run())
    assert [n.node for n in status.nodes] == ["good", "orphan"]
    text = "\n".join(status.problems)
    assert status.config is None
    assert f"no cluster configuration at {KEYS.config!r}" in text
    for key in (
        KEYS.subnets + "10.244.9.0-24",
        KEYS.subnets + "bogus",
        KEYS.node("stray"),
        KEYS.node("broken"),
    ):
        assert repr(key) in text, key
    assert f"{KEYS.subnets + '10.244.3.0-24'!r} has no lease" in text
    assert f"which has no key {KEYS.node('orphan')!r}" in text
    assert len(status.problems) == 7


def test_subnet_outside_the_pool_and_a_bad_config() -> None:
    async def run(config: bytes) -> ClusterStatus:
        store = MemoryStore()
        await store.compare_and_put({}, {KEYS.config: config})
        await _join(store, _record("a", 0))
        return await cluster_status(store, KEYS, now=NOW)

    outside = asyncio.run(run(CONFIG.to_json()))
    assert [n.node for n in outside.nodes] == ["a"]
    assert outside.problems == (
        f"etcd key {KEYS.subnets + '10.244.0.0-24'!r}: subnet 10.244.0.0/24 is not in the "
        f"pool of {CONFIG.describe()}",
    )
    bad = asyncio.run(run(b'{"network": 5}'))
    assert bad.config is None
    assert len(bad.problems) == 1
    assert repr(KEYS.config) in bad.problems[0]
    assert '"network"' in bad.problems[0]


def test_store_unavailable_raises() -> None:
    from cnilib.overlay._errors import StoreUnavailableError

    async def run() -> None:
        store = MemoryStore()
        store.set_available(False)
        await cluster_status(store, KEYS)

    with pytest.raises(StoreUnavailableError):
        asyncio.run(run())


def _status() -> ClusterStatus:
    node = NodeStatus(
        node="node-a",
        subnet=IPv4Network("10.244.1.0/24"),
        underlay=IPv4Address("192.168.50.1"),
        vtep_mac="02:00:00:00:00:01",
        vni=1,
        joined=NOW - 300,
        lease=0x694D000000000001,
        ttl_left=7,
        ttl_granted=10,
    )
    gone = NodeStatus(
        node="b",
        subnet=IPv4Network("10.244.2.0/24"),
        underlay=IPv4Address("192.168.50.2"),
        vtep_mac="02:00:00:00:00:02",
        vni=1,
        joined=NOW - 7200,
        lease=0x694D000000000002,
        ttl_left=None,
        ttl_granted=None,
    )
    return ClusterStatus(CONFIG, (node, gone), ("etcd key 'x': bad",), now=NOW, revision=9)


def test_render_text() -> None:
    lines = render_text(_status(), KEYS).splitlines()
    assert lines[0] == f'overlay network "ovnet" at /cnilib/overlay/ovnet/: {CONFIG.describe()}'
    assert lines[1] == "2 nodes"
    header = ["NODE", "SUBNET", "UNDERLAY", "VTEP", "MAC", "VNI", "JOINED", "LEASE", "TTL", "LEFT"]
    assert lines[2].split() == header
    assert lines[3].split() == [
        "node-a",
        "10.244.1.0/24",
        "192.168.50.1",
        "02:00:00:00:00:01",
        "1",
        "5m",
        "ago",
        "694d000000000001",
        "7/10s",
        "(renewed",
        "3s",
        "ago)",
    ]
    assert lines[4].split()[-3:] == ["ago", "694d000000000002", "gone"]
    assert lines[4].split()[5] == "2h"
    # columns line up: every row's subnet starts where the header's does
    assert {line.index("10.244.") for line in lines[3:5]} == {lines[2].index("SUBNET")}
    assert lines[5] == "problem: etcd key 'x': bad"


def test_render_text_empty() -> None:
    status = ClusterStatus(None, (), ("no cluster configuration",), now=NOW)
    assert render_text(status, KEYS) == (
        'overlay network "ovnet" at /cnilib/overlay/ovnet/: no configuration\n'
        "0 nodes\n"
        "problem: no cluster configuration\n"
    )


def test_render_json() -> None:
    data = json.loads(render_json(_status(), KEYS))
    assert data["network"] == "ovnet"
    assert data["revision"] == 9
    assert data["config"]["network"] == "10.244.0.0/16"
    assert data["nodes"][0] == {
        "node": "node-a",
        "subnet": "10.244.1.0/24",
        "underlay": "192.168.50.1",
        "vtepMAC": "02:00:00:00:00:01",
        "vni": 1,
        "port": 8472,
        "joined": NOW - 300,
        "lease": "694d000000000001",
        "ttlLeft": 7,
        "ttlGranted": 10,
    }
    assert data["nodes"][1]["ttlLeft"] is None
    assert data["problems"] == ["etcd key 'x': bad"]


# --------------------------------------------------------------------------- command line


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "command",
    [["-m", "cnilib.overlay"], ["-m", "cnilib", "overlay"]],
    ids=["cnilib.overlay", "cnilib overlay"],
)
def test_status_without_etcd_is_one_line_and_exit_1(command: list[str]) -> None:
    endpoint = f"127.0.0.1:{_closed_port()}"
    out = subprocess.run(
        [sys.executable, *command, "status", "--etcd", endpoint, "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "status: cannot reach etcd at" in lines[0]
    assert endpoint in lines[0]
    assert "Traceback" not in out.stderr


def _agent_args(*extra: str) -> list[str]:
    return ["agent", "--etcd", "http://127.0.0.1:1,127.0.0.1:2", "--node", "n1",
            "--underlay", "192.168.50.1", *extra]  # fmt: skip


def test_agent_flags_make_the_config() -> None:
    flags = {
        "--network": "ov2",
        "--prefix": "/p",
        "--netns": "/run/netns/node",
        "--underlay-link": "eth1",
        "--cluster-cidr": "10.50.0.0/16",
        "--subnet-len": "26",
        "--vni": "7",
        "--port": "4789",
        "--ttl": "2",
        "--run-dir": "/tmp/r",
        "--bridge": "br9",
        "--vxlan": "vx9",
    }
    given = [item for pair in flags.items() for item in pair]
    args = _parser().parse_args(_agent_args(*given, "--release-on-exit"))
    config = agent_config(args)
    assert config.etcd == ("http://127.0.0.1:1", "127.0.0.1:2")
    assert (config.node, config.underlay) == ("n1", IPv4Address("192.168.50.1"))
    assert (config.network, config.prefix, config.netns) == ("ov2", "/p", "/run/netns/node")
    assert config.underlay_link == "eth1"
    assert config.cluster == ClusterConfig.make("10.50.0.0/16", subnet_len=26, vni=7, port=4789)
    assert (config.ttl, config.run_dir, config.bridge, config.vxlan) == (2, "/tmp/r", "br9", "vx9")
    assert config.release_on_exit


def test_agent_defaults() -> None:
    config = agent_config(_parser().parse_args(_agent_args()))
    assert config.cluster is None
    assert (config.network, config.ttl) == ("overlay", 10)
    assert (config.bridge, config.vxlan) == ("ovbr0", None)
    assert not config.release_on_exit


def test_agent_runs_run_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    import cnilib.overlay._agent as agent_module

    seen: list[Any] = []

    def fake_run_agent(config: Any) -> int:
        seen.append(config)
        return 3

    monkeypatch.setattr(agent_module, "run_agent", fake_run_agent)
    monkeypatch.setattr("logging.basicConfig", lambda **kw: None)
    assert main(_agent_args("--cluster-cidr", "10.50.0.0/16")) == 3
    assert [c.node for c in seen] == ["n1"]


def test_agent_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    """A cluster flag without --cluster-cidr and a bad address are usage errors (2); a
    CIDR the cluster rules refuse is one line and exit 1."""
    with pytest.raises(SystemExit) as info:
        main(_agent_args("--subnet-len", "26"))
    assert info.value.code == 2
    assert "--subnet-len: only with --cluster-cidr" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["agent", "--etcd", "x", "--node", "n", "--underlay", "1.2.3"])
    assert "'1.2.3' is not an IPv4 address" in capsys.readouterr().err
    assert main(_agent_args("--cluster-cidr", "10.50.0.0/30")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("python -m cnilib.overlay agent: cluster network 10.50.0.0/30")


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--network", "../elsewhere"),  # the state file would leave the run directory
        ("--network", ""),
        ("--node", "a/b"),  # nodes/a/b: a node key of two levels
        ("--node", ""),
    ],
)
def test_agent_refuses_names_that_leave_their_key_or_directory(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([*_agent_args(), flag, value])
    assert info.value.code == 2
    assert f"argument {flag}: {value!r} is not a valid name" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_status_timeout_must_be_positive(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A timeout of 0 or less made etcd's client fail with an empty message."""
    with pytest.raises(SystemExit) as info:
        main(["status", "--etcd", "127.0.0.1:1", "--timeout", value])
    assert info.value.code == 2
    assert "argument --timeout:" in capsys.readouterr().err


def test_vtep_mac_shared_from_two_underlays_is_a_problem() -> None:
    """Peers' data paths program only the lower subnet of two nodes sharing a VTEP MAC
    from different underlay addresses: status says so, naming both keys."""

    async def run() -> ClusterStatus:
        store = MemoryStore()
        await _cluster(store)
        await _join(store, _record("a", 1))
        twin = attrs.evolve(_record("b", 2), vtep_mac=_record("a", 1).vtep_mac)
        await _join(store, twin)
        # the same MAC from the same underlay (a renamed node's old record): fine
        same = attrs.evolve(_record("c", 3), vtep_mac=_record("d", 4).vtep_mac)
        await _join(store, same)
        await _join(store, attrs.evolve(_record("d", 4), underlay=same.underlay))
        return await cluster_status(store, KEYS, now=NOW)

    (problem,) = asyncio.run(run()).problems
    assert problem.startswith(f"etcd key {KEYS.subnet(IPv4Network('10.244.2.0/24'))!r}")
    assert "VTEP MAC 02:00:00:00:00:01" in problem
    assert f"{KEYS.subnet(IPv4Network('10.244.1.0/24'))!r}" in problem
