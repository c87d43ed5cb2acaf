"""Crash safety: the runtime process is SIGKILLed in the middle of ADD or DEL, then DEL or GC
cleans up everything the interrupted call created.

The runtime is a child Python process running ``cnilib.CNI`` on a chain of Go
bridge + host-local followed by cnilib's recording plugin, whose sleep on ADD
or DEL opens a window to kill in. Plugins run inside a node namespace (``ip
netns exec``); the container has its own namespace; the cache and host-local's
store live under ``tmp_path``. A plugin the runtime had started lives on in its
own session after the kill: the test waits for it (Go plugins) or kills it (a
sleeping recorder) before it looks at the cache, the store and the kernel.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest

import cnilib
from cnilib.cache import CacheEntry, parse_entry
from cnilib.testing import NetNS, read_recording
from tests.privileged._kernel import (
    GO_PLUGINS,
    IPAM_LEFTOVERS,
    JSON,
    ChainWorld,
    go_plugin_marks,
    kill_plugins,
    link_names,
    plugin_pids,
    plugin_processes,
    wait_no_plugin_left,
    wait_until,
)

pytestmark = go_plugin_marks()

Cleanup = Literal["del", "gc"]

NETWORK = "crashnet"
BRIDGE = "cnicrash0"
SUBNET = "10.250.60.0/24"
FIRST_IP = "10.250.60.2"
LONG_SLEEP = 3600
"""How long the recorder sleeps to hold a window open; it is killed long before."""

RUNTIME = """
import json, sys
import cnilib

spec = json.loads(sys.argv[1])
conf = cnilib.conflist_from_bytes(spec["conflist"].encode())
executor = cnilib.SubprocessExecutor(wrapper=spec["wrapper"], timeout=60.0)
cni = cnilib.CNI(spec["path"], cache_dir=spec["cache_dir"], executor=executor)
rt = cnilib.RuntimeConf(spec["container_id"], spec["netns"], "eth0")
print("ready", flush=True)
getattr(cni, spec["method"])(conf, rt)
print("done", flush=True)
"""
"""The runtime under test: prints ``ready`` just before it calls the verb."""


class CrashWorld(ChainWorld):
    """One test's namespaces and directories, the chain, and the runtime child process.

    Its ``cni()`` is the in-process runtime on the same cache: the one that survives and
    cleans up after the killed one.
    """

    network = NETWORK
    bridge = BRIDGE
    subnet = SUBNET
    id_prefix = "crash"

    def conflist_bytes(self, **recorder: JSON) -> bytes:
        """bridge + host-local (no ipMasq) -> recorder with per-verb instructions."""
        return self.chain_bytes({"type": "recorder", "recorder": recorder})

    def conflist(self, **recorder: JSON) -> cnilib.NetworkConfigList:
        """The chain as a NetworkConfigList."""
        return cnilib.conflist_from_bytes(self.conflist_bytes(**recorder))

    def start_runtime(self, method: str, conflist: bytes) -> subprocess.Popen[bytes]:
        """Start the runtime child; return once it is about to call *method*."""
        spec = {
            "conflist": conflist.decode(),
            "path": self.path,
            "cache_dir": str(self.cache_dir),
            "wrapper": list(self.node.exec_prefix),
            "container_id": self.container_id,
            "netns": self.ctr.path,
            "method": method,
        }
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNTIME, json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        return proc

    def recorded(self, verb: str) -> bool:
        """Whether the recorder was called with *verb* (it logs before it sleeps)."""
        return any(e["verb"] == verb for e in read_recording(self.log))

    def settle_orphans(self, kill_after: float) -> None:
        """Let the plugins the dead runtime left behind finish; kill what still runs after
        *kill_after* seconds (a sleeping recorder), by pid, and wait until all are gone."""
        deadline = time.monotonic() + kill_after
        while plugin_pids(self.container_id) and time.monotonic() < deadline:
            time.sleep(0.01)
        kill_plugins(self.container_id)
        wait_no_plugin_left(self.container_id, within=5.0)

    def go_plugin_running(self, command: str) -> bool:
        """Whether bridge (or the host-local it runs) is running *command* for the attachment."""
        go = (str(GO_PLUGINS / "bridge"), str(GO_PLUGINS / "host-local"))
        return any(
            p.command == command and any(g in p.cmdline for g in go)
            for p in plugin_processes(self.container_id)
        )

    def cache_entries(self) -> list[CacheEntry]:
        """Every file in ``results/``, parsed: each must be a whole ``cniCacheV1`` entry of
        this attachment (no temp file, no half-written entry)."""
        results = self.cache_dir / "results"
        names = sorted(p.name for p in results.iterdir()) if results.is_dir() else []
        assert set(names) <= {f"{NETWORK}-{self.container_id}-eth0"}, names
        entries = [parse_entry((results / n).read_bytes(), n) for n in names]
        for entry in entries:
            assert (entry.network_name, entry.container_id, entry.ifname) == (
                NETWORK,
                self.container_id,
                "eth0",
            )
            assert entry.netns == self.ctr.path  # what GC needs to reach the container
        return entries

    def attached(self) -> bool:
        """Whether the container currently has eth0 (bridge's ADD got that far)."""
        return "eth0" in link_names(self.ctr)

    def clean_up(self, how: Cleanup) -> None:
        """What a runtime does after a crash: DEL the attachment, or GC keeping nothing."""
        conf = self.conflist()  # the same network, the recorder now behaving
        if how == "del":
            self.cni().delete_network_list(conf, self.rt())  # waits for any orphan plugin
            return
        # GC never waits for an orphaned plugin its lock file records (one the kill
        # caught mid-exec, before its environment could be seen): it reports it
        # busy, and a runtime runs GC again, as done here.
        deadline = time.monotonic() + 60
        while True:
            try:
                self.cni().gc_network_list(conf, [])
                return
            except cnilib.GCError as exc:
                busy = all(isinstance(e, cnilib.TryAgainLaterError) for e in exc.exceptions)
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def assert_nothing_left(self) -> None:
        """No veth on either side, no IP file, no cache entry, no plugin process."""
        self.assert_no_veth_left()
        assert self.ipam_files() <= IPAM_LEFTOVERS
        assert self.cache_entries() == []
        assert plugin_pids(self.container_id) == []


@pytest.fixture
def world(
    cnilib_node_netns: NetNS,
    cnilib_container_netns: Callable[[], NetNS],
    tmp_path: Path,
    cnilib_cni_bin_dir: Path,
) -> Iterator[CrashWorld]:
    """A node namespace, a container namespace, the recorder; orphans are killed at the end."""
    w = CrashWorld.create(cnilib_node_netns, cnilib_container_netns(), tmp_path, cnilib_cni_bin_dir)
    try:
        yield w
    finally:
        kill_plugins(w.container_id)  # only if the test failed half-way


def kill(proc: subprocess.Popen[bytes], *, may_have_finished: bool = False) -> None:
    """SIGKILL the runtime child (never a graceful exit) and reap it."""
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=10)
    finished = may_have_finished and proc.returncode == 0
    assert finished or proc.returncode == -signal.SIGKILL, stderr.decode(errors="replace")


CLEANUPS = ["del", "gc"]
SLEEPING_ADD = {"ADD": {"sleep": LONG_SLEEP}}
SLEEPING_DEL = {"DEL": {"sleep": LONG_SLEEP}}


class TestKilledDuringAdd:
    """The runtime dies while ADD is under way; afterwards the cache holds no entry or a
    whole pending one, and DEL or GC removes everything the ADD had made."""

    @pytest.mark.parametrize("how", CLEANUPS)
    @pytest.mark.parametrize("delay", [0.0, 0.005, 0.015])
    def test_right_at_the_start(self, world: CrashWorld, delay: float, how: Cleanup) -> None:
        """Killed *delay* s after it called ADD: whatever state it reached is cleaned up."""
        proc = world.start_runtime("add_network_list", world.conflist_bytes(**SLEEPING_ADD))
        time.sleep(delay)
        kill(proc)
        world.settle_orphans(kill_after=2.0)  # Go plugins finish; a sleeping recorder won't

        entries = world.cache_entries()
        assert [e.pending for e in entries] in ([], [True])
        if not entries:  # plugins run only once the pending entry is on disk
            assert not world.attached()
            assert world.ipam_files() <= IPAM_LEFTOVERS

        world.clean_up(how)
        world.assert_nothing_left()

    @pytest.mark.parametrize("how", CLEANUPS)
    def test_while_bridge_adds(self, world: CrashWorld, how: Cleanup) -> None:
        """Killed while bridge's ADD runs (it then completes, orphaned): the pending entry
        lets DEL or GC remove the veth pair and the IP the runtime never heard of."""
        proc = world.start_runtime("add_network_list", world.conflist_bytes(**SLEEPING_ADD))
        # Kill once bridge has read its whole config (its first act is to make the
        # bridge): a kill while the runtime still wrote bridge's stdin would only test
        # a truncated config. bridge's ADD takes milliseconds, so a loaded machine's
        # poll may also miss it; then the recorder, which starts after it, is seen.
        wait_until(lambda: BRIDGE in link_names(world.node) or world.recorded("ADD"), within=60)
        kill(proc)
        world.settle_orphans(kill_after=5.0)

        assert world.attached()
        assert FIRST_IP in world.ipam_files()
        # (When the kill came after bridge's ADD, the recorder was running: the
        # properties below hold either way.)
        [entry] = world.cache_entries()
        assert entry.pending

        world.clean_up(how)
        world.assert_nothing_left()

    @pytest.mark.parametrize("how", CLEANUPS)
    def test_while_recorder_sleeps(self, world: CrashWorld, how: Cleanup) -> None:
        """Killed after bridge's ADD, during the recorder's: a pending entry, bridge undone."""
        proc = world.start_runtime("add_network_list", world.conflist_bytes(**SLEEPING_ADD))
        wait_until(lambda: world.recorded("ADD"))
        kill(proc)
        world.settle_orphans(kill_after=0.0)  # the recorder would sleep for an hour

        assert world.attached()
        assert FIRST_IP in world.ipam_files()
        [entry] = world.cache_entries()
        assert entry.pending

        world.clean_up(how)
        world.assert_nothing_left()


class TestKilledDuringDel:
    """The runtime dies while DEL is under way; the entry stays whole until DEL completes,
    so a second DEL or GC finishes the job."""

    def added(self, world: CrashWorld, **recorder: JSON) -> bytes:
        """ADD the attachment in-process; return the conflist the child will DEL with."""
        conflist = world.conflist_bytes(**recorder)
        world.cni().add_network_list(cnilib.conflist_from_bytes(conflist), world.rt())
        assert world.attached()
        return conflist

    @pytest.mark.parametrize("how", CLEANUPS)
    @pytest.mark.parametrize("delay", [0.0, 0.01])
    def test_right_at_the_start(self, world: CrashWorld, delay: float, how: Cleanup) -> None:
        """Killed *delay* s after it called DEL: the entry is whole (or gone with everything)."""
        proc = world.start_runtime("delete_network_list", self.added(world))
        time.sleep(delay)
        kill(proc, may_have_finished=True)
        world.settle_orphans(kill_after=5.0)  # nothing sleeps here: every plugin finishes

        entries = world.cache_entries()
        assert [e.pending for e in entries] in ([], [False])
        if not entries:  # the DEL got to its end before the kill
            world.assert_nothing_left()

        world.clean_up(how)
        world.assert_nothing_left()

    @pytest.mark.parametrize("how", CLEANUPS)
    def test_while_recorder_deletes(self, world: CrashWorld, how: Cleanup) -> None:
        """Killed during the recorder's DEL (bridge not yet deleted): the whole entry stays."""
        proc = world.start_runtime("delete_network_list", self.added(world, **SLEEPING_DEL))
        wait_until(lambda: world.recorded("DEL"))
        kill(proc)
        world.settle_orphans(kill_after=0.0)

        assert world.attached()
        [entry] = world.cache_entries()
        assert not entry.pending
        assert entry.result is not None

        world.clean_up(how)
        world.assert_nothing_left()

    @pytest.mark.parametrize("how", CLEANUPS)
    def test_while_bridge_deletes(self, world: CrashWorld, how: Cleanup) -> None:
        """Killed while bridge's DEL runs (it completes, orphaned): the entry stays whole, and
        the second DEL or GC (bridge's DEL again) succeeds and drops it."""
        proc = world.start_runtime("delete_network_list", self.added(world))
        wait_until(lambda: world.go_plugin_running("DEL"))
        kill(proc)
        world.settle_orphans(kill_after=5.0)

        [entry] = world.cache_entries()
        assert not entry.pending

        world.clean_up(how)
        world.assert_nothing_left()


class TestInterruptedTwice:
    """A crash, then a second call on the same attachment that does not finish either:
    the record of what the first call made must survive until something has undone it."""

    def crash_during_add(self, world: CrashWorld) -> None:
        """Kill the runtime after bridge's ADD (veth pair and IP made, pending entry)."""
        proc = world.start_runtime("add_network_list", world.conflist_bytes(**SLEEPING_ADD))
        wait_until(lambda: world.recorded("ADD"))
        kill(proc)
        world.settle_orphans(kill_after=0.0)
        assert world.attached()
        [entry] = world.cache_entries()
        assert entry.pending

    def test_del_killed_after_an_interrupted_add_then_gc(self, world: CrashWorld) -> None:
        """ADD killed, then the DEL meant to clean up killed during the recorder's DEL:
        the pending entry is still there, and GC removes everything."""
        self.crash_during_add(world)
        proc = world.start_runtime("delete_network_list", world.conflist_bytes(**SLEEPING_DEL))
        wait_until(lambda: world.recorded("DEL"))
        kill(proc)
        world.settle_orphans(kill_after=0.0)

        assert world.attached()  # bridge's DEL never ran
        assert [e.pending for e in world.cache_entries()] == [True]
        world.clean_up("gc")
        world.assert_nothing_left()

    def test_failed_del_after_an_interrupted_add_then_gc(self, world: CrashWorld) -> None:
        """ADD killed, then a DEL that fails in the recorder: the entry stays for GC."""
        self.crash_during_add(world)
        failing_del = cnilib.conflist_from_bytes(
            world.conflist_bytes(DEL={"error": {"code": 11, "msg": "not now"}})
        )
        with pytest.raises(cnilib.TryAgainLaterError):
            world.cni().delete_network_list(failing_del, world.rt())

        assert world.attached()
        assert [e.pending for e in world.cache_entries()] == [True]
        world.clean_up("gc")
        world.assert_nothing_left()

    def test_failed_retry_of_an_interrupted_add_then_gc(self, world: CrashWorld) -> None:
        """ADD killed, then retried ADD fails at once (eth0 exists): GC still cleans up."""
        self.crash_during_add(world)
        with pytest.raises(cnilib.PluginError, match=r"already exists"):
            world.cni().add_network_list(world.conflist(), world.rt())

        assert world.attached()
        assert len(world.cache_entries()) == 1
        world.clean_up("gc")
        world.assert_nothing_left()
