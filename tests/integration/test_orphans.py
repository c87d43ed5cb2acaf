"""A runtime killed mid-ADD leaves its plugin running in its own session. The
attachment lock is inherited by that plugin, so a following DEL waits for it
and GC reports it busy: neither can race the orphan and lose its state.
A child made by os.fork() never keeps the runtime's locks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import cnilib

PLUGIN = """#!/bin/sh
# ADD: wait, then leave a marker (the "state"); DEL: remove it.
if [ "$CNI_COMMAND" = ADD ]; then
  sleep {sleep}
  touch {marks}/$CNI_CONTAINERID
  printf '{{"cniVersion":"1.0.0","ips":[{{"address":"10.9.9.2/24"}}]}}'
elif [ "$CNI_COMMAND" = DEL ]; then
  rm -f {marks}/$CNI_CONTAINERID
fi
"""

RUNTIME = """
import sys, cnilib
conf = cnilib.conflist_from_bytes(sys.argv[3].encode())
cnilib.CNI([sys.argv[1]], cache_dir=sys.argv[2]).add_network_list(
    conf, cnilib.RuntimeConf("c1", "/x", "eth0"))
"""


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A bin dir with the marker plugin (ADD takes 1.5 s), a marks dir, a cache dir."""
    bin_dir, marks, cache = tmp_path / "bin", tmp_path / "marks", tmp_path / "cache"
    for directory in (bin_dir, marks, cache):
        directory.mkdir()
    plugin = bin_dir / "marker"
    plugin.write_text(PLUGIN.format(sleep=1.5, marks=marks))
    plugin.chmod(0o755)
    return {"bin": bin_dir, "marks": marks, "cache": cache}


def conf() -> cnilib.NetworkConfigList:
    doc = {"cniVersion": "1.1.0", "name": "net1", "plugins": [{"type": "marker"}]}
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


def kill_runtime_mid_add(world: dict[str, Path]) -> None:
    """Start a runtime process doing ADD and SIGKILL it while the plugin sleeps."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            RUNTIME,
            str(world["bin"]),
            str(world["cache"]),
            conf().bytes.decode(),
        ]
    )
    deadline = time.monotonic() + 10
    while (
        not list((world["cache"] / "results").glob("*"))
        if (world["cache"] / "results").exists()
        else True
    ):
        assert time.monotonic() < deadline, "the runtime never wrote its pending entry"
        time.sleep(0.02)
    time.sleep(0.3)  # the plugin is now in its sleep
    proc.send_signal(signal.SIGKILL)
    proc.wait()


class TestOrphanedPlugin:
    def test_del_waits_for_the_orphan(self, world: dict[str, Path]) -> None:
        """DEL after the runtime died waits for the orphaned ADD, then undoes its state."""
        kill_runtime_mid_add(world)
        cni = cnilib.CNI([str(world["bin"])], cache_dir=world["cache"])

        cni.delete_network_list(conf(), cnilib.RuntimeConf("c1", "/x", "eth0"))
        time.sleep(2.0)  # had DEL not waited, the orphan would mark after it

        assert [] == os.listdir(world["marks"])
        assert [] == cni.cached_attachments()

    def test_gc_reports_the_orphan_busy_then_cleans_up(self, world: dict[str, Path]) -> None:
        """GC does not race the orphan: busy now (entry kept), done once it has exited."""
        kill_runtime_mid_add(world)
        cni = cnilib.CNI([str(world["bin"])], cache_dir=world["cache"])

        with pytest.raises(cnilib.GCError) as info:
            cni.gc_network_list(conf(), [])
        assert isinstance(info.value.exceptions[0], cnilib.TryAgainLaterError)
        assert 1 == len(cni.cached_attachments())

        time.sleep(2.0)  # the orphan finishes and marks
        cni.gc_network_list(conf(), [])

        assert [] == os.listdir(world["marks"])
        assert [] == cni.cached_attachments()


class TestFork:
    def test_forked_child_does_not_keep_locks(self, world: dict[str, Path]) -> None:
        """A child forked while an ADD holds its locks releases them at once."""
        (world["bin"] / "marker").write_text(PLUGIN.format(sleep=0.5, marks=world["marks"]))
        cni = cnilib.CNI([str(world["bin"])], cache_dir=world["cache"])
        adding = threading.Thread(
            target=cni.add_network_list, args=(conf(), cnilib.RuntimeConf("c1", "/x", "eth0"))
        )
        adding.start()
        time.sleep(0.2)  # the ADD holds its locks
        pid = os.fork()
        if pid == 0:  # the child lingers for 3 s, doing nothing
            time.sleep(3)
            os._exit(0)
        try:
            adding.join()
            started = time.monotonic()
            cni.gc_network_list(conf(), [("c1", "eth0")])  # needs the network exclusively
            waited = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)

        assert waited < 1.5, f"GC waited {waited:.1f}s for locks held by the forked child"
