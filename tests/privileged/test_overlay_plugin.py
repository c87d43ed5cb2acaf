"""The ``overlay`` plugin on a real kernel, from a hand-written node state file.

No agent and no etcd: the test writes ``<runDir>/<network>.json`` as the agent
would and nothing else; bridge makes the node bridge. A node namespace plays the
host (in-process with ``host_netns=<node>``, the installed executable under
``ip netns exec <node>``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from ipaddress import IPv4Network, ip_interface
from pathlib import Path
from typing import Any

import attrs
import pytest

import cnilib
from cnilib.invoke import Executor, Invocation, SubprocessExecutor
from cnilib.plugins._executor import InProcessExecutor
from cnilib.plugins._main import install
from cnilib.plugins.main._overlay_state import NodeState, state_path, write_node_state
from cnilib.testing import NetNS
from tests.privileged._kernel import ip_json, link_names

NETWORK = "ovnet"
BRIDGE = "ovbr-test"
CLUSTER = IPv4Network("10.244.0.0/16")
SUBNET = IPv4Network("10.244.3.0/24")
MTU = 1400
CID = "ctr-overlay"

MakeNS = Callable[[], NetNS]


@attrs.define
class World:
    node: NetNS
    ctr: NetNS
    tmp: Path
    executor: Executor
    path: tuple[str, ...] = ("/nonexistent",)

    @property
    def run_dir(self) -> Path:
        return self.tmp / "run"

    def write_state(self) -> None:
        state = NodeState(
            name=NETWORK, node="n1", cluster=CLUSTER, subnet=SUBNET, bridge=BRIDGE, mtu=MTU
        )
        write_node_state(state_path(self.run_dir, NETWORK), state)

    def conf(self, version: str = "1.0.0", **keys: Any) -> dict[str, Any]:
        return {
            "cniVersion": version,
            "name": NETWORK,
            "type": "overlay",
            "runDir": str(self.run_dir),
            "dataDir": str(self.tmp / "ipam"),
            **keys,
        }

    def call(self, command: str, conf: dict[str, Any]) -> dict[str, Any] | None:
        out = self.executor.exec(
            Invocation(
                command=command,
                plugin_type="overlay",
                stdin=json.dumps(conf).encode(),
                container_id=CID,
                netns=self.ctr.path,
                ifname="eth0",
                path=self.path,
            )
        )
        return json.loads(out) if out.strip() else None

    def saved(self) -> Path:
        return self.run_dir / NETWORK / f"{CID}:eth0.json"

    def allocations(self) -> list[str]:
        store = self.tmp / "ipam" / NETWORK
        if not store.is_dir():
            return []
        return sorted(p.name for p in store.iterdir() if p.name.startswith("10."))


@pytest.fixture
def world(cnilib_node_netns: NetNS, cnilib_container_netns: MakeNS, tmp_path: Path) -> World:
    executor = InProcessExecutor(host_netns=cnilib_node_netns.path, timeout=30.0)
    return World(cnilib_node_netns, cnilib_container_netns(), tmp_path, executor)


def _assert_attached(world: World, result: dict[str, Any]) -> None:
    """The container's address is in the node's subnet, it routes the cluster CIDR via
    the bridge's address, and its interface has the state's MTU."""
    [ip] = result["ips"]
    address = ip_interface(ip["address"])
    assert address.network == SUBNET
    assert ip["gateway"] == "10.244.3.1"
    routes = ip_json(world.ctr, "route", "show", "dev", "eth0")
    assert {"dst": "10.244.0.0/16", "gateway": "10.244.3.1"} in [
        {k: r.get(k) for k in ("dst", "gateway")} for r in routes
    ]
    [eth0] = ip_json(world.ctr, "link", "show", "eth0")
    assert eth0["mtu"] == MTU
    [bridge] = ip_json(world.node, "addr", "show", "dev", BRIDGE)
    assert bridge["mtu"] == MTU
    assert {"local": "10.244.3.1", "prefixlen": 24} in [
        {"local": a["local"], "prefixlen": a["prefixlen"]} for a in bridge["addr_info"]
    ]


def test_add_check_del(world: World) -> None:
    """ADD attaches to the state's bridge with an address of the node's subnet; CHECK
    passes; DEL removes the interface, the address and the saved configuration; a
    second DEL succeeds."""
    world.write_state()
    result = world.call("ADD", world.conf())
    assert result is not None
    _assert_attached(world, result)
    assert world.saved().is_file()
    assert world.allocations() == [str(ip_interface(result["ips"][0]["address"]).ip)]

    world.call("CHECK", world.conf(prevResult=result))

    world.call("DEL", world.conf(prevResult=result))
    assert "eth0" not in link_names(world.ctr)
    assert not world.saved().exists()
    assert world.allocations() == []
    world.call("DEL", world.conf())


def test_del_uses_saved_config_when_state_is_gone(world: World) -> None:
    """The agent's state file may be gone (agent stopped) by DEL time: the saved
    configuration still releases the address."""
    world.write_state()
    world.call("ADD", world.conf())
    state_path(world.run_dir, NETWORK).unlink()
    world.call("DEL", world.conf())
    assert world.allocations() == []
    assert "eth0" not in link_names(world.ctr)


def test_add_before_join_is_try_again_later(world: World) -> None:
    """Without a state file ADD is code 11 naming the file, and nothing is made."""
    with pytest.raises(cnilib.CNIError) as info:
        world.call("ADD", world.conf())
    assert info.value.code == 11
    assert str(state_path(world.run_dir, NETWORK)) in str(info.value)
    assert link_names(world.node) == {"lo"}
    assert link_names(world.ctr) == {"lo"}
    assert not (world.run_dir / NETWORK).exists()
    assert world.allocations() == []


def test_installed_executable(world: World) -> None:
    """The executable form (under ``ip netns exec <node>``) attaches and detaches too."""
    bin_dir = world.tmp / "bin"
    install(bin_dir, ["overlay"])
    world.executor = SubprocessExecutor(wrapper=world.node.exec_prefix, timeout=30.0)
    world.path = (str(bin_dir),)
    world.write_state()
    result = world.call("ADD", world.conf("1.1.0"))
    assert result is not None
    _assert_attached(world, result)
    world.call("DEL", world.conf("1.1.0"))
    assert "eth0" not in link_names(world.ctr)
    assert world.allocations() == []
