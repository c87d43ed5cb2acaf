"""Regressions from review: deadlines that must hold, and hostile input that
must end in a cnilib error (or one CLI line), never a traceback or a hang."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cnilib
from cnilib.invoke import Command, Invocation, SubprocessExecutor
from cnilib.spec import parse_version
from cnilib.testing import read_recording


def script(directory: Path, name: str, body: str) -> None:
    """An executable shell-script plugin."""
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def conflist(recorder_log: Path, **instructions: object) -> cnilib.NetworkConfigList:
    """A one-recorder network named "n1"."""
    doc = {
        "cniVersion": "1.1.0",
        "name": "n1",
        "plugins": [{"type": "recorder", "recorder": {"log": str(recorder_log), **instructions}}],
    }
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


def cli(
    *argv: str | bytes, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m cnilib`` as a process (argv may hold non-UTF-8 bytes)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    return subprocess.run(
        [sys.executable, "-m", "cnilib", *argv],
        capture_output=True,
        text=True,
        errors="replace",
        env={**base, **env},
        cwd=cwd,
        check=False,
        timeout=60,
    )


class TestDeadlines:
    def test_cli_timeout_applies_to_network_verbs(
        self, tmp_path: Path, cnilib_cni_bin_dir: Path, cnilib_recorder_log: Path
    ) -> None:
        """--timeout bounds add (it used to be overridden by the 60 s default)."""
        path = tmp_path / "slow.conflist"
        path.write_text(conflist(cnilib_recorder_log, ADD={"sleep": 20}).bytes.decode())
        started = time.monotonic()

        proc = cli(
            "--cache-dir",
            str(tmp_path / "c"),
            "--timeout",
            "0.5",
            "add",
            str(path),
            "/run/netns/x",
            env={"CNI_PATH": str(cnilib_cni_bin_dir)},
        )

        assert 1 == proc.returncode
        assert "timed out after" in proc.stderr
        assert time.monotonic() - started < 15

    def test_executor_deadline_is_kept(
        self, tmp_path: Path, cnilib_cni_bin_dir: Path, cnilib_recorder_log: Path
    ) -> None:
        """A CNI given an executor with its own deadline uses that deadline."""
        cni = cnilib.CNI(
            [str(cnilib_cni_bin_dir)], cache_dir=tmp_path, executor=SubprocessExecutor(timeout=0.5)
        )
        started = time.monotonic()

        with pytest.raises(cnilib.PluginTimeoutError):
            cni.add_network_list(
                conflist(cnilib_recorder_log, ADD={"sleep": 20}),
                cnilib.RuntimeConf("c", "/x", "eth0"),
            )

        assert time.monotonic() - started < 15

    def test_setsid_grandchild_cannot_stretch_the_deadline(self, tmp_path: Path) -> None:
        """A process outside the plugin's group holding its pipes cannot stretch the deadline."""
        # A duration of its own marks this test's sleeps, so that only they are killed below.
        seconds = f"30.{secrets.randbelow(10**6):06d}"
        script(tmp_path, "p", f"setsid sleep {seconds} & sleep {seconds}")
        call = Invocation(command=Command.ADD, plugin_type="p", stdin=b"", path=(str(tmp_path),))
        executor = SubprocessExecutor(timeout=0.5)

        started = time.monotonic()
        with pytest.raises(cnilib.PluginTimeoutError):
            executor.exec(call)
        with pytest.raises(cnilib.PluginTimeoutError):
            asyncio.run(executor.aexec(call))

        assert time.monotonic() - started < 10
        subprocess.run(["pkill", "-f", f"^sleep {seconds}$"], check=False)


class TestHostileInput:
    @pytest.mark.parametrize(
        "rt",
        [
            cnilib.RuntimeConf("c", "/x\udcff", "eth0"),
            cnilib.RuntimeConf("c", "/x", "e\udcff"),
            cnilib.RuntimeConf("c", "/x", "eth0", args=(("K", "\udcff"),)),
            cnilib.RuntimeConf("c", "/x", "eth0", capability_args={"x": "\ud800"}),
        ],
    )
    def test_non_utf8_is_refused_before_any_plugin(
        self,
        tmp_path: Path,
        cnilib_cni_bin_dir: Path,
        cnilib_recorder_log: Path,
        rt: cnilib.RuntimeConf,
    ) -> None:
        """Strings that cannot be UTF-8 never reach a plugin (nor half-run an ADD)."""
        cni = cnilib.CNI([str(cnilib_cni_bin_dir)], cache_dir=tmp_path)

        with pytest.raises(cnilib.InvalidArgumentError):
            cni.add_network_list(conflist(cnilib_recorder_log), rt)

        assert [] == read_recording(cnilib_recorder_log)

    def test_huge_version_numbers(self, tmp_path: Path) -> None:
        """Version parts past int64 are version errors, and do not spoil a conf dir."""
        (tmp_path / "10-bad.conflist").write_text(
            json.dumps({"name": "bad", "cniVersions": ["1" * 5000], "plugins": [{"type": "x"}]})
        )
        (tmp_path / "20-good.conflist").write_text(
            json.dumps({"name": "good", "cniVersion": "1.0.0", "plugins": [{"type": "x"}]})
        )

        with pytest.raises(cnilib.VersionError, match="out of range"):
            parse_version("99999999999999999999.0.0")
        assert "good" == cnilib.load_conflist(tmp_path, "good").name

    def test_deep_config_is_refused_at_load(self) -> None:
        """A configuration nested absurdly deep is a ConfigError when loaded, not at ADD."""
        deep: object = 1
        for _ in range(200):
            deep = {"a": deep}
        doc = {"name": "n", "plugins": [{"type": "x", "deep": deep}]}

        with pytest.raises(cnilib.ConfigError, match="nested deeper than"):
            cnilib.conflist_from_bytes(json.dumps(doc).encode())

    def test_nul_in_plugin_dir(self) -> None:
        """A NUL in a plugin directory is an argument error, not a ValueError."""
        with pytest.raises(cnilib.InvalidArgumentError):
            cnilib.CNI(["/tmp\0x"])

    def test_cli_hostile_arguments(
        self, tmp_path: Path, cnilib_cni_bin_dir: Path, cnilib_recorder_log: Path
    ) -> None:
        """Deep CAP_ARGS, a non-UTF-8 netns path and a deep file to validate: one line, exit 1."""
        path = tmp_path / "n1.conflist"
        path.write_text(conflist(cnilib_recorder_log).bytes.decode())
        deep = tmp_path / "deep.conflist"
        deep.write_text("[" * 100_000)
        env = {"CNI_PATH": str(cnilib_cni_bin_dir)}
        cache = ("--cache-dir", str(tmp_path / "c"))

        runs = [
            cli(*cache, "add", str(path), "/run/netns/x", env={**env, "CAP_ARGS": "[" * 100_000}),
            cli(*cache, "add", str(path), os.fsencode("/run/netns/\udcff"), env=env),
            cli(*cache, "validate", str(deep), env=env),
        ]

        for proc in runs:
            assert 1 == proc.returncode
            assert "Traceback" not in proc.stderr
            assert 1 == len(proc.stderr.strip().splitlines())

    def test_cli_does_not_pick_a_stray_file_named_like_the_network(
        self, tmp_path: Path, cnilib_cni_bin_dir: Path, cnilib_recorder_log: Path
    ) -> None:
        """A bare network name is looked up in NETCONFPATH, never in the working directory."""
        conf_dir = tmp_path / "net.d"
        conf_dir.mkdir()
        (conf_dir / "n1.conflist").write_text(conflist(cnilib_recorder_log).bytes.decode())
        (tmp_path / "n1").write_text("{ not the config }")

        proc = cli(
            "--cache-dir",
            str(tmp_path / "c"),
            "add",
            "n1",
            "/run/netns/x",
            env={"CNI_PATH": str(cnilib_cni_bin_dir), "NETCONFPATH": str(conf_dir)},
            cwd=tmp_path,
        )

        assert 0 == proc.returncode, proc.stderr


class TestTidy:
    def test_gc_removes_stale_temp_files_and_lock_files(
        self, tmp_path: Path, cnilib_cni_bin_dir: Path, cnilib_recorder_log: Path
    ) -> None:
        """GC deletes old temp files a crash left behind, and the network's lock files."""
        cni = cnilib.CNI([str(cnilib_cni_bin_dir)], cache_dir=tmp_path)
        conf = conflist(cnilib_recorder_log)
        cni.add_network_list(conf, cnilib.RuntimeConf("c1", "/x", "eth0"))
        tmp_dir = tmp_path / ".cnilib-tmp"
        old, fresh = tmp_dir / "entry-old", tmp_dir / "entry-fresh"
        old.write_text("{")
        fresh.write_text("{")
        os.utime(old, (time.time() - 7200, time.time() - 7200))

        cni.gc_network_list(conf, [("c1", "eth0")])

        assert [".network"] == os.listdir(tmp_path / "locks" / "n1")
        assert ["entry-fresh"] == os.listdir(tmp_dir)
