"""Faults in a chain on a real kernel: every failed ADD is rolled back and leaves nothing behind.

The chain is Go bridge + host-local followed by a misbehaving plugin: cnilib's
recording plugin (told to hang, crash, print garbage, ...), a shell plugin whose
hang has a grandchild, or a Go plugin that fails on its configuration. Every
plugin runs inside a node namespace (``ip netns exec``); the container has its
own namespace; host-local's store and cnilib's cache live under ``tmp_path``.
After each fault the test looks at the kernel (``ip -j`` in both namespaces,
``iptables-save`` in the node namespace), at host-local's store, at the cache,
and at the process table.
"""

from __future__ import annotations

import asyncio
import re
import resource
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

import cnilib
from cnilib.cache import parse_entry
from cnilib.testing import NetNS, read_recording
from tests.privileged._kernel import (
    IPAM_LEFTOVERS,
    JSON,
    ChainWorld,
    bridge_ports,
    go_plugin_marks,
    iptables_save,
    link_names,
    wait_no_plugin_left,
    wait_until,
)

pytestmark = go_plugin_marks()

Kind = Literal["sync", "async"]

NETWORK = "faultnet"
BRIDGE = "cnifault0"
SUBNET = "10.250.50.0/24"
FIRST_IP = "10.250.50.2"
HANG_DEADLINE = 1.0
"""The plugin deadline in the hang tests (seconds)."""

HANGER = """#!/bin/sh
# CNI test plugin: ADD starts a sleeping child and waits for it (a hang with a grandchild).
cat >/dev/null
case "$CNI_COMMAND" in
  ADD) sleep {seconds} & wait ;;
  VERSION) echo '{{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}}' ;;
esac
exit 0
"""


class FaultWorld(ChainWorld):
    """One test's node and container namespaces, directories, and runtimes bound to them."""

    network = NETWORK
    bridge = BRIDGE
    subnet = SUBNET
    id_prefix = "fault"

    def conflist(self, *after: JSON) -> cnilib.NetworkConfigList:
        """bridge + host-local (no ipMasq) followed by *after*; recorders log into tmp."""
        return cnilib.conflist_from_bytes(self.chain_bytes(*after))

    def async_cni(self, timeout: float = 20.0) -> cnilib.AsyncCNI:
        """An AsyncCNI that execs every plugin inside the node namespace."""
        return cnilib.AsyncCNI(self.path, cache_dir=self.cache_dir, executor=self.executor(timeout))

    def add(
        self,
        kind: Kind,
        conf: cnilib.NetworkConfigList,
        rt: cnilib.RuntimeConf | None = None,
        timeout: float = 20.0,
    ) -> cnilib.Result | None:
        """ADD through ``CNI`` or ``AsyncCNI``."""
        rt = rt or self.rt()
        if kind == "sync":
            return self.cni(timeout).add_network_list(conf, rt)
        return asyncio.run(self.async_cni(timeout).add_network_list(conf, rt))

    def verbs(self) -> list[str]:
        """The verbs the recording plugin saw, in order."""
        return [str(e["verb"]) for e in read_recording(self.log)]

    def assert_attached(self) -> None:
        """The container has eth0, its veth is a bridge port, host-local holds its IP."""
        assert "eth0" in link_names(self.ctr)
        assert len(bridge_ports(self.node)) == 1
        assert FIRST_IP in self.ipam_files()

    def assert_nothing_left(self) -> None:
        """No veth on either side, no IP file, no cache entry, no plugin process."""
        self.assert_no_veth_left()
        assert self.ipam_files() == IPAM_LEFTOVERS
        assert self.cache_files() == set()
        wait_no_plugin_left(self.container_id)


@pytest.fixture
def world(
    cnilib_node_netns: NetNS,
    cnilib_container_netns: Callable[[], NetNS],
    tmp_path: Path,
    cnilib_cni_bin_dir: Path,
) -> FaultWorld:
    """A node namespace, a container namespace and a plugin dir holding the recorder."""
    return FaultWorld.create(
        cnilib_node_netns, cnilib_container_netns(), tmp_path, cnilib_cni_bin_dir
    )


@pytest.fixture
def no_core_dumps() -> Iterator[None]:
    """Plugins crashing with SIGSEGV write no core file (the limit is inherited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))


def recorder(**verbs: JSON) -> JSON:
    """A recorder plugin entry with per-verb instructions."""
    return {"type": "recorder", "recorder": verbs}


# ------------------------------------------------------------------ recorder misbehaving

TEN_MB = 10 * 1024 * 1024
UNMARSHAL = r"^failed to unmarshal raw result: \S"


@dataclass(frozen=True)
class Fault:
    """How the recorder misbehaves on ADD and what cnilib must make of it."""

    instruction: JSON
    error: type[cnilib.CNIError]
    message: str
    """A regex the error's text must match (after the ``plugin type=... failed`` prefix)."""
    answered: bool = False
    """It answered with an error object: it is not sent DEL on rollback (its own business)."""


FAULTS = {
    "crash-sigkill": Fault(
        {"signal": "KILL"},
        cnilib.PluginOutputError,
        r"^netplugin failed with no error message: signal: killed$",
    ),
    "crash-sigsegv": Fault(
        {"signal": "SEGV"},
        cnilib.PluginOutputError,
        r"^netplugin failed with no error message: signal: segmentation fault$",
    ),
    "garbage": Fault({"stdout": "this is { not JSON"}, cnilib.ResultDecodeError, UNMARSHAL),
    "10mb-garbage": Fault(
        {"stdout": "garbage", "stdout_size": TEN_MB}, cnilib.ResultDecodeError, UNMARSHAL
    ),
    "non-utf8": Fault({"stdout_bytes_hex": "fffeff80c07b22"}, cnilib.ResultDecodeError, UNMARSHAL),
    "empty-exit-0": Fault(
        {"stdout": ""}, cnilib.ResultDecodeError, r"^failed to unmarshal raw result: unexpected end"
    ),
    "error-object": Fault(
        {"error": {"cniVersion": "1.0.0", "code": 11, "msg": "busy", "details": "come back"}},
        cnilib.TryAgainLaterError,
        r"^busy; come back$",
        answered=True,
    ),
}


class TestRecorderFaults:
    """bridge+host-local -> recorder, where the recorder's ADD goes wrong in every way."""

    @pytest.mark.parametrize("kind", ["sync", "async"])
    @pytest.mark.parametrize("fault", list(FAULTS.values()), ids=list(FAULTS))
    def test_fault_is_rolled_back(
        self, world: FaultWorld, kind: Kind, fault: Fault, no_core_dumps: None
    ) -> None:
        """The ADD fails with a clear cnilib error; bridge's veth, IP and cache entry are undone."""
        conf = world.conflist(recorder(ADD=fault.instruction))

        with pytest.raises(fault.error) as info:
            world.add(kind, conf)

        err = info.value
        text = str(err)
        prefix = 'plugin type="recorder" failed (add): '
        assert text.startswith(prefix)
        assert re.search(fault.message, text[len(prefix) :])
        assert len(text) < 4096, "the error quotes at most a bounded part of the output"
        assert err.rollback is not None
        assert err.rollback.clean
        undone = ("bridge",) if fault.answered else ("bridge", "recorder")
        assert err.rollback.deleted == undone
        assert world.verbs() == (["ADD"] if fault.answered else ["ADD", "DEL"])
        world.assert_nothing_left()

    @pytest.mark.parametrize("kind", ["sync", "async"])
    def test_hang_times_out_and_is_rolled_back(self, world: FaultWorld, kind: Kind) -> None:
        """A recorder that sleeps past the deadline is killed, then rolled back with bridge."""
        conf = world.conflist(recorder(ADD={"sleep": 3600}))
        started = time.monotonic()

        with pytest.raises(cnilib.PluginTimeoutError) as info:
            world.add(kind, conf, timeout=HANG_DEADLINE)

        elapsed = time.monotonic() - started
        assert elapsed < HANG_DEADLINE + 5
        err = info.value
        assert str(err).startswith('plugin type="recorder" failed (add): ')
        assert "timed out after" in str(err)
        assert "process group was killed" in str(err)
        assert err.rollback is not None
        assert err.rollback.clean
        assert err.rollback.deleted == ("bridge", "recorder")
        assert world.verbs() == ["ADD", "DEL"]
        world.assert_nothing_left()

    @pytest.mark.parametrize("kind", ["sync", "async"])
    def test_hang_with_grandchild_kills_the_whole_group(
        self, world: FaultWorld, kind: Kind
    ) -> None:
        """A plugin hanging in a child ``sleep`` loses both at the deadline; nothing leaks."""
        seconds = f"{3600 + secrets.randbelow(1000)}.5"  # marks this test's sleep
        hanger = world.bin_dir / "hanger"
        hanger.write_text(HANGER.format(seconds=seconds))
        hanger.chmod(0o755)
        conf = world.conflist({"type": "hanger"})

        with pytest.raises(cnilib.PluginTimeoutError) as info:
            world.add(kind, conf, timeout=HANG_DEADLINE)

        assert str(info.value).startswith('plugin type="hanger" failed (add): ')
        assert info.value.rollback is not None
        assert info.value.rollback.clean
        world.assert_nothing_left()
        sleeps = subprocess.run(
            ["pgrep", "-f", f"^sleep {seconds}$"], capture_output=True, text=True, check=False
        )
        assert sleeps.stdout == ""

    def test_cancelled_async_add_is_rolled_back(self, world: FaultWorld) -> None:
        """Cancelling an AsyncCNI ADD mid-plugin kills the plugin and rolls the chain back."""
        conf = world.conflist(recorder(ADD={"sleep": 3600}))
        cni = world.async_cni()

        async def cancel_while_recorder_sleeps() -> None:
            task = asyncio.create_task(cni.add_network_list(conf, world.rt()))
            await asyncio.to_thread(wait_until, lambda: "ADD" in world.verbs())
            world.assert_attached()  # bridge is done, the recorder sleeps
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancel_while_recorder_sleeps())
        assert world.verbs() == ["ADD", "DEL"]
        world.assert_nothing_left()

    def test_ten_mb_valid_result_is_accepted_and_deleted(self, world: FaultWorld) -> None:
        """A result padded to 10 MB is still a result: ADD succeeds and DEL cleans up."""
        conf = world.conflist(recorder(ADD={"stdout_size": TEN_MB}))
        cni = world.cni()
        res = cni.add_network_list(conf, world.rt())
        assert res is not None
        world.assert_attached()
        cni.delete_network_list(conf, world.rt())
        world.assert_nothing_left()


# ------------------------------------------------------------------ Go plugins failing


class TestGoPluginFailsHalfway:
    """bridge -> firewall -> recorder -> a Go plugin that fails: every earlier plugin is undone."""

    @pytest.mark.parametrize(
        ("failing", "rt_kw", "message"),
        [
            pytest.param(
                {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_knob": "1"}},
                {},
                r"no_such_knob",
                id="tuning-bad-sysctl",
            ),
            pytest.param(
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {
                    "capability_args": {
                        "portMappings": [
                            {"hostPort": 70000, "containerPort": 80, "protocol": "tcp"}
                        ]
                    }
                },
                r"70000",
                id="portmap-invalid-port",
            ),
        ],
    )
    def test_rollback_in_kernel_and_ipam_store(
        self, world: FaultWorld, failing: JSON, rt_kw: JSON, message: str
    ) -> None:
        """firewall rules, veth pair, IP file and cache entry are all gone after the failure."""
        conf = world.conflist({"type": "firewall"}, recorder(), failing)
        kind = failing["type"]

        with pytest.raises(cnilib.PluginError) as info:
            world.cni().add_network_list(conf, world.rt(**rt_kw))

        err = info.value
        assert str(err).startswith(f'plugin type="{kind}" failed (add): ')
        assert re.search(message, str(err))
        assert err.rollback is not None
        assert err.rollback.clean
        assert err.rollback.deleted == ("bridge", "firewall", "recorder")
        [add, delete] = read_recording(world.log)
        assert (add["verb"], delete["verb"]) == ("ADD", "DEL")
        assert isinstance(delete["stdin"], dict)
        assert delete["stdin"]["prevResult"]["ips"][0]["address"] == f"{FIRST_IP}/24"

        world.assert_nothing_left()
        rules = iptables_save(world.node)
        assert "CNI-FORWARD" in rules  # firewall did run in the node namespace
        assert FIRST_IP not in rules
        assert world.container_id not in rules

    def test_rollback_del_that_hangs_is_cut_off(self, world: FaultWorld) -> None:
        """A plugin hanging in its rollback DEL is killed at the deadline; the others are still
        undone, the entry stays pending, and a later DEL finishes."""
        failing = {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_knob": "1"}}
        conf = world.conflist(recorder(DEL={"sleep": 3600}), failing)

        with pytest.raises(cnilib.PluginError) as info:
            world.add("sync", conf, timeout=HANG_DEADLINE)

        outcome = info.value.rollback
        assert outcome is not None
        assert not outcome.clean
        assert outcome.deleted == ("bridge",)
        [timeout] = outcome.failures
        assert isinstance(timeout, cnilib.PluginTimeoutError)
        assert str(timeout).startswith('plugin type="recorder" failed (delete): ')
        wait_no_plugin_left(world.container_id)
        assert link_names(world.ctr) == {"lo"}
        assert FIRST_IP not in world.ipam_files()
        [name] = world.cache_files()
        assert parse_entry((world.cache_dir / "results" / name).read_bytes(), name).pending

        world.cni().delete_network_list(world.conflist(recorder(), failing), world.rt())
        world.assert_nothing_left()

    def test_incomplete_rollback_keeps_pending_entry_for_del(self, world: FaultWorld) -> None:
        """When a rollback DEL fails too, the entry stays pending and a later DEL finishes."""
        failing = {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_knob": "1"}}
        conf = world.conflist(recorder(DEL={"error": {"code": 11, "msg": "not now"}}), failing)
        cni = world.cni()

        with pytest.raises(cnilib.PluginError) as info:
            cni.add_network_list(conf, world.rt())

        outcome = info.value.rollback
        assert outcome is not None
        assert not outcome.clean
        assert outcome.deleted == ("bridge",)
        assert "not now" in str(outcome.failures[0])
        [name] = world.cache_files()
        entry = parse_entry((world.cache_dir / "results" / name).read_bytes(), name)
        assert entry.pending
        assert link_names(world.ctr) == {"lo"}  # bridge was undone all the same

        calm = world.conflist(recorder(), failing)
        cni.delete_network_list(calm, world.rt())
        world.assert_nothing_left()
