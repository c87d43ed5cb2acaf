"""The ready-wired fixtures of cnilib's pytest plugin: cnilib_cni, cnilib_async_cni,
cnilib_container, cnilib_fake_plugin, cnilib_conflist."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.plugins import InProcessExecutor
from cnilib.testing import (
    ConflistFactory,
    ContainerFactory,
    FakePluginFactory,
    NetNS,
    read_recording,
)


def bridge_doc(**extra: Any) -> dict[str, Any]:
    """A bridge + host-local network on 10.77.0.0/24 (no dataDir: the fixture sets it)."""
    bridge = {
        "type": "bridge",
        "bridge": "cnitest0",
        "isGateway": True,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.77.0.0/24"}]]},
    }
    return {"cniVersion": "1.0.0", "name": "testnet", "plugins": [bridge], **extra}


class TestReadyWiredRuntime:
    def test_bridge_add_lands_in_the_node_and_the_container(
        self,
        cnilib_cni: cnilib.CNI,
        cnilib_container: ContainerFactory,
        cnilib_conflist: ConflistFactory,
        cnilib_node_netns: NetNS,
        cnilib_ipam_dir: Path,
        cnilib_cache_dir: Path,
    ) -> None:
        """ADD puts the bridge in the node namespace, the address in the container,
        the allocation in cnilib_ipam_dir and the result in cnilib_cache_dir."""
        ctr = cnilib_container()
        conf = cnilib_conflist(bridge_doc())
        result = cnilib_cni.add_network_list(conf, ctr.runtime_conf("eth0"))
        assert result is not None
        assert ["10.77.0.2/24"] == ctr.addresses("eth0")
        link_local = ctr.addresses("eth0", link_local=True)
        assert ["fe80:"] == [a[:5] for a in link_local if a != "10.77.0.2/24"]
        assert {"lo", "eth0"} == set(ctr.link_names())
        node_links = cnilib_node_netns.exec("ip", "-j", "link", "show", "cnitest0").stdout
        assert "cnitest0" == json.loads(node_links)[0]["ifname"]
        assert (cnilib_ipam_dir / "testnet" / "10.77.0.2").is_file()
        assert [f"testnet-{ctr.id}-eth0"] == sorted(
            p.name for p in (cnilib_cache_dir / "results").iterdir()
        )
        cnilib_cni.delete_network_list(conf, ctr.runtime_conf("eth0"))
        assert ["lo"] == ctr.link_names()
        assert not (cnilib_ipam_dir / "testnet" / "10.77.0.2").exists()

    @pytest.mark.asyncio
    async def test_async_runtime_is_wired_the_same(
        self,
        cnilib_async_cni: cnilib.AsyncCNI,
        cnilib_container: ContainerFactory,
        cnilib_conflist: ConflistFactory,
    ) -> None:
        ctr = cnilib_container("ctr-async")
        conf = cnilib_conflist(bridge_doc())
        await cnilib_async_cni.add_network_list(conf, ctr.runtime_conf())
        assert ("ctr-async", ["10.77.0.2/24"]) == (ctr.id, ctr.addresses())
        await cnilib_async_cni.check_network_list(conf, ctr.runtime_conf())
        await cnilib_async_cni.delete_network_list(conf, ctr.runtime_conf())

    def test_fake_plugin_chained_after_bridge(
        self,
        cnilib_cni: cnilib.CNI,
        cnilib_container: ContainerFactory,
        cnilib_conflist: ConflistFactory,
        cnilib_fake_plugin: FakePluginFactory,
    ) -> None:
        """A fake registered after the runtime was made runs in its chain and sees
        bridge's result as prevResult."""
        fake = cnilib_fake_plugin("fake")
        doc = bridge_doc()
        doc["plugins"].append({"type": "fake"})
        ctr = cnilib_container()
        cnilib_cni.add_network_list(cnilib_conflist(doc), ctr.runtime_conf())
        (add,) = fake.requests("ADD")
        prev = add.prev_result
        assert prev is not None
        assert "10.77.0.2/24" == prev.to_object()["ips"][0]["address"]  # type: ignore[index,call-overload]

    def test_binaries_run_from_the_bin_dir_in_the_node(
        self,
        cnilib_cni: cnilib.CNI,
        cnilib_container: ContainerFactory,
        cnilib_conflist: ConflistFactory,
        cnilib_recorder_log: Path,
        cnilib_node_netns: NetNS,
    ) -> None:
        """A type cnilib has no plugin for runs as an executable from
        cnilib_cni_bin_dir, inside the node namespace."""
        doc = bridge_doc()
        doc["plugins"].append({"type": "recorder", "recorder": {"log": str(cnilib_recorder_log)}})
        ctr = cnilib_container()
        cnilib_cni.add_network_list(cnilib_conflist(doc), ctr.runtime_conf())
        (call,) = read_recording(cnilib_recorder_log)
        assert "ADD" == call["verb"]
        stdin: Any = call["stdin"]
        assert "10.77.0.2/24" == stdin["prevResult"]["ips"][0]["address"]


class TestContainers:
    def test_each_container_has_its_own_namespace_and_id(
        self, cnilib_container: ContainerFactory
    ) -> None:
        a, b = cnilib_container(), cnilib_container("given-id")
        assert a.netns.name != b.netns.name
        assert a.id.startswith("cnilib-test-")
        assert "given-id" == b.id
        assert a.path == a.netns.path == a.runtime_conf().netns
        assert [a, b] == cnilib_container.made
        assert ["lo"] == a.link_names()
        assert ["127.0.0.1/8", "::1/128"] == a.addresses("lo")


@pytest.fixture
def closed_at_teardown() -> Iterator[list[cnilib.CNI | cnilib.AsyncCNI | InProcessExecutor]]:
    """Requested before the fixtures it checks, so that its teardown runs after theirs:
    everything the test put in the list must be closed by then."""
    kept: list[cnilib.CNI | cnilib.AsyncCNI | InProcessExecutor] = []
    yield kept
    assert [] == [thing for thing in kept if not thing.closed]


class TestTeardown:
    def test_runtime_and_executor_are_closed(
        self,
        closed_at_teardown: list[cnilib.CNI | cnilib.AsyncCNI | InProcessExecutor],
        cnilib_cni: cnilib.CNI,
        cnilib_executor: InProcessExecutor,
    ) -> None:
        """cnilib_cni and cnilib_executor are closed at teardown: no idle call threads stay."""
        closed_at_teardown += [cnilib_cni, cnilib_executor]
        assert not cnilib_cni.closed
        assert not cnilib_executor.closed

    def test_async_runtime_is_closed(
        self,
        closed_at_teardown: list[cnilib.CNI | cnilib.AsyncCNI | InProcessExecutor],
        cnilib_async_cni: cnilib.AsyncCNI,
        cnilib_executor: InProcessExecutor,
    ) -> None:
        """cnilib_async_cni is closed at teardown too (it needs no event loop of the test's)."""
        closed_at_teardown += [cnilib_async_cni, cnilib_executor]
        assert not cnilib_async_cni.closed
