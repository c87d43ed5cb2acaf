"""The agent's masquerading (``--ip-masq``) without root: the chain's name and rules,
the iptables-restore lines planned from a listing (idempotent, a moved subnet, stray
jumps, teardown), the CLI flag, and when the agent installs and removes it (against
MemoryStore, a fake data path and recording stand-ins for the iptables calls)."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from cnilib.overlay import _agent
from cnilib.overlay._agent import Agent
from cnilib.overlay._cli import _parser, agent_config
from cnilib.overlay._masq import (
    chain_rules,
    masq_chain,
    masq_comment,
    plan_setup,
    plan_teardown,
)
from cnilib.overlay._records import SubnetRecord
from cnilib.plugins._hosttools.iptables_text import listing_rules, restore_line
from tests.unit.test_overlay_agent import (
    CLUSTER,
    KEYS,
    MAC_B,
    B,
    Factory,
    SpyStore,
    config,
    eventually,
    fast_keepalive,
    own_subnet,
    running,
    store,
)

__all__ = ["fast_keepalive", "store"]  # fixtures used here

CIDR = IPv4Network("10.244.0.0/16")
SUBNET = IPv4Network("10.244.7.0/24")
OTHER = IPv4Network("10.244.9.0/24")

INSTALLED = """\
-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N CNI-OVL-overlay
-A POSTROUTING -m comment --comment "cnilib overlay \\"overlay\\" masquerading" -j CNI-OVL-overlay
-A CNI-OVL-overlay -s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN
-A CNI-OVL-overlay -s 10.244.7.0/24 ! -d 224.0.0.0/4 -j MASQUERADE
"""
"""``iptables -t nat -S`` of a node namespace after the setup (as iptables-nft 1.8.9 prints it)."""

EMPTY = "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n"


def test_chain_name() -> None:
    """Readable when it fits iptables' 28 characters, else a hash of the network name;
    never a name of bridge's ``CNI-<hex>`` chains."""
    assert "CNI-OVL-overlay" == masq_chain("overlay")
    assert "CNI-OVL-" + "n" * 20 == masq_chain("n" * 20)
    long = masq_chain("n" * 21)
    assert 28 == len(long)
    assert long.startswith("CNI-OVL-")
    assert long != masq_chain("n" * 22)
    assert long == masq_chain("n" * 21)


def test_rule_text() -> None:
    assert 'cnilib overlay "ov1" masquerading' == masq_comment("ov1")
    assert [
        "-A CNI-OVL-ov1 -s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN",
        "-A CNI-OVL-ov1 -s 10.244.7.0/24 ! -d 224.0.0.0/4 -j MASQUERADE",
    ] == [" ".join(rule) for rule in chain_rules("ov1", CIDR, SUBNET)]


def test_setup_on_an_empty_table() -> None:
    lines = plan_setup(listing_rules(EMPTY), "overlay", CIDR, SUBNET)
    assert [
        ":CNI-OVL-overlay - [0:0]",
        "-A CNI-OVL-overlay -s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN",
        "-A CNI-OVL-overlay -s 10.244.7.0/24 ! -d 224.0.0.0/4 -j MASQUERADE",
        '-A POSTROUTING -m comment --comment "cnilib overlay \\"overlay\\" masquerading"'
        " -j CNI-OVL-overlay",
    ] == [restore_line(line) for line in lines]


def test_setup_again_changes_nothing() -> None:
    assert [] == plan_setup(listing_rules(INSTALLED), "overlay", CIDR, SUBNET)


def test_setup_for_another_subnet_rewrites_the_chain_only() -> None:
    lines = plan_setup(listing_rules(INSTALLED), "overlay", CIDR, OTHER)
    assert [
        "-F CNI-OVL-overlay",
        "-A CNI-OVL-overlay -s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN",
        "-A CNI-OVL-overlay -s 10.244.9.0/24 ! -d 224.0.0.0/4 -j MASQUERADE",
    ] == [restore_line(line) for line in lines]


def test_setup_replaces_duplicate_and_foreign_jumps_by_one() -> None:
    table = INSTALLED + "-A POSTROUTING -j CNI-OVL-overlay\n"
    lines = plan_setup(listing_rules(table), "overlay", CIDR, SUBNET)
    jump = ("-A", "POSTROUTING", "-m", "comment", "--comment", masq_comment("overlay"),
            "-j", "CNI-OVL-overlay")  # fmt: skip
    assert [("-D", *jump[1:]), ("-D", "POSTROUTING", "-j", "CNI-OVL-overlay"), jump] == lines


def test_setup_leaves_other_networks_alone() -> None:
    """Another overlay network's chain on the same node is not this network's."""
    lines = plan_setup(listing_rules(INSTALLED), "ov2", CIDR, OTHER)
    assert not [line for line in lines if "CNI-OVL-overlay" in line]
    assert [] == plan_teardown(listing_rules(INSTALLED), "ov2")


def test_teardown() -> None:
    lines = plan_teardown(listing_rules(INSTALLED), "overlay")
    assert [
        '-D POSTROUTING -m comment --comment "cnilib overlay \\"overlay\\" masquerading"'
        " -j CNI-OVL-overlay",
        "-F CNI-OVL-overlay",
        "-X CNI-OVL-overlay",
    ] == [restore_line(line) for line in lines]
    assert [] == plan_teardown(listing_rules(EMPTY), "overlay")


def test_cli_flag() -> None:
    base = ["agent", "--etcd", "http://127.0.0.1:1", "--node", "n1", "--underlay", "192.0.2.1"]
    assert agent_config(_parser().parse_args([*base, "--ip-masq"])).ip_masq
    assert not agent_config(_parser().parse_args(base)).ip_masq


# ---- the agent ------------------------------------------------------------------------


class Recorder:
    """Stands in for the iptables calls: what was installed and removed, in order; for
    each install, whether the state file existed yet."""

    def __init__(self, state_file: Path) -> None:
        self.state_file = state_file
        self.calls: list[tuple[Any, ...]] = []

    async def install(
        self, netns: str | None, network: str, cluster: IPv4Network, subnet: IPv4Network
    ) -> None:
        self.calls.append(("install", netns, network, cluster, subnet, self.state_file.exists()))

    async def remove(self, netns: str | None, network: str) -> None:
        self.calls.append(("remove", netns, network))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Recorder:
    rec = Recorder(tmp_path / "run" / "overlay.json")
    monkeypatch.setattr(_agent, "install_masquerade", rec.install)
    monkeypatch.setattr(_agent, "remove_masquerade", rec.remove)
    return rec


async def _stop(agent: Agent, task: asyncio.Task[None]) -> None:
    agent.stop()
    await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_installed_before_the_state_file_removed_on_release(
    store: SpyStore, tmp_path: Path, recorder: Recorder
) -> None:
    cfg = config(tmp_path, ip_masq=True, release_on_exit=True, netns="/run/netns/n1")
    agent = Agent(cfg, store=store, datapath=Factory())
    task = asyncio.create_task(agent.run())
    state = await asyncio.wait_for(agent.wait_joined(), 10)
    assert [("install", "/run/netns/n1", "overlay", CLUSTER.network, state.subnet, False)] == (
        recorder.calls
    )
    await _stop(agent, task)
    assert ("remove", "/run/netns/n1", "overlay") == recorder.calls[-1]
    assert 2 == len(recorder.calls)


@pytest.mark.asyncio
async def test_kept_on_a_stop_without_release(
    store: SpyStore, tmp_path: Path, recorder: Recorder
) -> None:
    agent = Agent(config(tmp_path, ip_masq=True), store=store, datapath=Factory())
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.wait_joined(), 10)
    await _stop(agent, task)
    assert ["install"] == [call[0] for call in recorder.calls]


@pytest.mark.asyncio
async def test_not_installed_without_ip_masq(
    store: SpyStore, tmp_path: Path, recorder: Recorder
) -> None:
    agent = Agent(config(tmp_path, release_on_exit=True), store=store, datapath=Factory())
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.wait_joined(), 10)
    await _stop(agent, task)
    assert [] == recorder.calls


@pytest.mark.asyncio
async def test_remade_when_the_node_moves_to_another_subnet(
    store: SpyStore, tmp_path: Path, recorder: Recorder
) -> None:
    agent = Agent(config(tmp_path, ip_masq=True), store=store, datapath=Factory())
    async with running(agent):
        old = own_subnet(agent)
        intruder = SubnetRecord(subnet=old, node="n2", underlay=B, vtep_mac=MAC_B)
        await store.compare_and_put({}, {KEYS.subnet(old): intruder.to_json()})
        await eventually(lambda: len(recorder.calls) == 2, "the masquerading remade")
        new = own_subnet(agent)
        assert new != old
        assert [old, new] == [call[4] for call in recorder.calls]
