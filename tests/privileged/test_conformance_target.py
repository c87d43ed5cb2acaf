"""The conformance kit's executable target: a plugin the kit kills for overstaying
its timeout goes with every process it started, which would otherwise outlive the
run and keep its namespaces alive."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cnilib.conformance._target import ExecutableTarget
from cnilib.testing import NetNS

# Starts a child that writes its pid, then waits for it: the kit kills the script.
HANG = """#!/bin/sh
sleep 300 &
echo $! > "$1"
wait
"""


def _gone(pid: int) -> bool:
    """No process ``pid``, or only its zombie (killed, not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_a_plugin_killed_for_its_timeout_takes_its_children(
    cnilib_node_netns: NetNS, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    plugin = tmp_path / "hang"
    plugin.write_text(HANG.replace('"$1"', f'"{pid_file}"'))
    plugin.chmod(0o755)
    target = ExecutableTarget("hang", plugin)
    exchange = target.call("ADD", {"CNI_COMMAND": "ADD"}, b"{}", node=cnilib_node_netns, timeout=1)
    assert exchange.exit_status == -9
    assert b"killed by the kit" in exchange.stderr
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert _gone(child), "the plugin's child outlived it"
    finally:
        if not _gone(child):
            os.kill(child, 9)
