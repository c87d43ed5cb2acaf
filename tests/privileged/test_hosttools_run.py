"""Running the host's filter tools on a namespace worker: bounded in time, with a
minimal environment, and never a tool planted in the working directory.

The tools here are harmless scripts; they run on the worker of a throwaway node
namespace, as the plugins' iptables and nft do (``run_tool`` refuses to run
anywhere else).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from cnilib.errors import ErrorCode, PluginError
from cnilib.netlink import run_in_netns
from cnilib.plugins._hosttools import tools as _hosttools
from cnilib.plugins._hosttools.masq import backend_works
from cnilib.plugins._hosttools.tools import run_tool
from cnilib.testing import NetNS


def script(path: Path, body: str) -> Path:
    path.write_text(body)
    path.chmod(0o755)
    return path


def sleeper(tmp_path: Path) -> Path:
    """A tool that records its pid, then hangs (as ``iptables -w`` behind a held lock)."""
    return script(tmp_path / "hang", f"#!/bin/sh\necho $$ > {tmp_path}/pid\nexec sleep 30\n")


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] == "Z"
    except FileNotFoundError:
        return True


class TestRunTool:
    def test_a_hung_tool_is_killed_at_its_timeout(
        self, cnilib_node_netns: NetNS, tmp_path: Path
    ) -> None:
        """Past the timeout the tool is killed and a code-999 PluginError names it."""
        tool = sleeper(tmp_path)
        started = time.monotonic()

        with pytest.raises(PluginError) as info:
            run_in_netns(cnilib_node_netns.path, run_tool, [str(tool), "-w", "-S"], timeout=0.5)

        assert time.monotonic() - started < 5
        assert str(info.value).startswith(f"running [{tool} -w -S]: timed out after 0.5s")
        assert info.value.code == ErrorCode.INTERNAL
        assert gone(int((tmp_path / "pid").read_text()))

    def test_the_default_timeout_applies(
        self, cnilib_node_netns: NetNS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without ``timeout``, TOOL_TIMEOUT bounds the call (iptables -w, nft, probes)."""
        monkeypatch.setattr(_hosttools, "TOOL_TIMEOUT", 0.3)
        tool = sleeper(tmp_path)

        with pytest.raises(PluginError, match=r"timed out after 0\.3s"):
            run_in_netns(cnilib_node_netns.path, run_tool, [str(tool)])

    def test_the_environment_is_minimal(
        self, cnilib_node_netns: NetNS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The tool sees PATH (the fixed sbin/bin directories) and LC_ALL=C, nothing
        inherited: not the caller's PATH, locale or anything else."""
        monkeypatch.setenv("PATH", f"{tmp_path}:/usr/sbin:/usr/bin:/sbin:/bin")
        monkeypatch.setenv("LANG", "de_DE.UTF-8")
        monkeypatch.setenv("CNILIB_SECRET", "x")
        tool = script(
            tmp_path / "env",
            f"#!{sys.executable} -I\nimport json, os\nprint(json.dumps(dict(os.environ)))\n",
        )

        proc = run_in_netns(cnilib_node_netns.path, run_tool, [str(tool)])

        assert proc.returncode == 0, proc.stderr
        seen = json.loads(proc.stdout)
        assert sorted(seen) == ["LC_ALL", "PATH"]  # names only: never print the environment
        assert seen == {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def test_planted_iptables_in_the_working_directory_never_runs(
    cnilib_node_netns: NetNS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DEL's backend probe with PATH=::rel:... and an ``iptables`` in the working
    directory (and in ``rel/``) runs the system's iptables, not the plant."""
    for directory in (tmp_path, tmp_path / "rel"):
        directory.mkdir(exist_ok=True)
        script(directory / "iptables", f"#!/bin/sh\ntouch {tmp_path}/RAN\nexit 0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "::rel:/usr/sbin:/usr/bin:/sbin:/bin")

    works = run_in_netns(cnilib_node_netns.path, backend_works, "iptables")

    assert not (tmp_path / "RAN").exists()
    assert works is os.path.exists("/usr/sbin/iptables")
