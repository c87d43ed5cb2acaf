"""The CLI's commands called in-process through ``cnilib.cli.main`` (plugins
still run as real processes): exit codes, output streams, options."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from cnilib.cli import main
from cnilib.testing import read_recording


@pytest.fixture
def env(
    tmp_path: Path,
    cnilib_cni_bin_dir: Path,
    cnilib_recorder_log: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """NETCONFPATH with networks "net1" and "solo" (recorders); CNI_PATH; returns conf dir."""
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    doc = {
        "cniVersion": "1.1.0",
        "name": "net1",
        "plugins": [{"type": "recorder", "recorder": {"log": str(cnilib_recorder_log)}}],
    }
    (conf_dir / "10-net1.conflist").write_text(json.dumps(doc))
    (conf_dir / "20-solo.conf").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "solo",
                "type": "recorder",
                "recorder": {"log": str(cnilib_recorder_log)},
            }
        )
    )
    monkeypatch.setenv("NETCONFPATH", str(conf_dir))
    monkeypatch.setenv("CNI_PATH", str(cnilib_cni_bin_dir))
    return conf_dir


def cli(tmp_path: Path, *argv: str) -> int:
    """Run the CLI with a tmp cache dir."""
    return main(["--cache-dir", str(tmp_path / "cache"), *argv])


class TestInProcess:
    def test_add_prints_result_and_del_cleans_cache(
        self, env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """add prints the 4-space-indented result; del removes the cache entry."""
        assert 0 == cli(tmp_path, "add", "net1", "/run/netns/x", "--container-id", "c1")
        out = capsys.readouterr().out
        assert "1.1.0" == json.loads(out)["cniVersion"]
        assert 0 == cli(tmp_path, "check", "net1", "/run/netns/x", "--container-id", "c1")
        assert 0 == cli(tmp_path, "del", "net1", "/run/netns/x", "--container-id", "c1")
        assert [] == list((tmp_path / "cache" / "results").iterdir())

    def test_single_conf_file_network(
        self, env: Path, tmp_path: Path, cnilib_recorder_log: Path
    ) -> None:
        """A legacy .conf network (by name) is upconverted to a list."""
        assert 0 == cli(tmp_path, "add", "solo", "/run/netns/x")

        (call,) = read_recording(cnilib_recorder_log)
        stdin: dict[str, Any] = call["stdin"]  # type: ignore[assignment]
        assert ("solo", "1.0.0") == (stdin["name"], stdin["cniVersion"])

    def test_conf_file_path(self, env: Path, tmp_path: Path) -> None:
        """A .conf file path works as the network argument."""
        assert 0 == cli(tmp_path, "add", str(env / "20-solo.conf"), "/run/netns/x")
        assert (tmp_path / "cache" / "results").is_dir()

    def test_gc_status_version(
        self, env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """gc, status and version succeed and version prints JSON."""
        assert 0 == cli(tmp_path, "gc", "net1")
        assert 0 == cli(tmp_path, "status", "net1", "/ignored")
        capsys.readouterr()
        assert 0 == cli(tmp_path, "--timeout", "0", "version", "recorder")
        assert "supportedVersions" in json.loads(capsys.readouterr().out)

    def test_error_line_and_json(
        self, env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Errors: one prefixed line on stderr, or a JSON object on stdout with --json."""
        assert 1 == cli(tmp_path, "add", "ghost", "/run/netns/x")
        err = capsys.readouterr().err
        assert err.startswith("cnilib add: error: ")
        assert 1 == cli(tmp_path, "--json", "add", "ghost", "/run/netns/x")
        assert 7 == json.loads(capsys.readouterr().out)["code"]

    def test_multi_line_errors_are_indented(
        self,
        env: Path,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        cnilib_recorder_log: Path,
    ) -> None:
        """A group error (GC) prints one failure per indented line."""
        doc = {
            "cniVersion": "1.1.0",
            "name": "bad",
            "plugins": [
                {"type": "recorder", "recorder": {"GC": {"error": {"code": 5, "msg": "one"}}}},
                {"type": "recorder", "recorder": {"GC": {"error": {"code": 5, "msg": "two"}}}},
            ],
        }
        (env / "30-bad.conflist").write_text(json.dumps(doc))

        assert 1 == cli(tmp_path, "gc", "bad")

        lines = capsys.readouterr().err.splitlines()
        assert ["failed to GC plugin recorder: one", "  failed to GC plugin recorder: two"] == [
            lines[0].removeprefix("cnilib gc: error: "),
            lines[1],
        ]

    def test_validate_and_list(
        self, env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """validate passes a good network; list prints each network once."""
        assert 0 == cli(tmp_path, "validate", "net1")
        assert 0 == cli(tmp_path, "list")
        out = capsys.readouterr().out
        assert "valid, cniVersion 1.1.0" in out
        assert ["net1", "solo"] == [line.split("\t")[0] for line in out.splitlines()[1:]]

    def test_validate_unreadable_file(
        self, env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """validate of a file that is not even JSON reports the loader's error."""
        path = tmp_path / "junk.conflist"
        path.write_text("{{{")

        assert 1 == cli(tmp_path, "validate", str(path))
        assert str(path) in capsys.readouterr().err

    def test_list_empty_dir(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """list of an empty conf dir says so and fails."""
        monkeypatch.setenv("NETCONFPATH", str(tmp_path))

        assert 1 == main(["list"])
        assert "no network configurations in" in capsys.readouterr().err

    def test_verbose_logs_plugin_stderr(
        self,
        env: Path,
        tmp_path: Path,
        cnilib_recorder_log: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """-v sends plugins' stderr to the log on stderr."""
        doc = {
            "cniVersion": "1.1.0",
            "name": "loud",
            "plugins": [{"type": "recorder", "recorder": {"ADD": {"stderr": "chatty plugin"}}}],
        }
        (env / "40-loud.conflist").write_text(json.dumps(doc))
        library_log = logging.getLogger("cnilib")
        handlers, level = list(library_log.handlers), library_log.level
        try:
            assert 0 == cli(tmp_path, "-v", "add", "loud", "/run/netns/x")
        finally:
            library_log.handlers[:] = handlers
            library_log.setLevel(level)

        assert "chatty plugin" in capsys.readouterr().err

    def test_keyboard_interrupt(
        self,
        env: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Ctrl-C ends with status 130 and a short line, not a traceback."""

        def interrupted(*_: object) -> object:
            raise KeyboardInterrupt

        monkeypatch.setattr("cnilib.cli._commands._load_network", interrupted)

        assert 130 == cli(tmp_path, "add", "net1", "/run/netns/x")
        assert "interrupted" in capsys.readouterr().err


class TestGCOptions:
    def test_dry_run_lists_and_keeps(
        self,
        env: Path,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        cnilib_recorder_log: Path,
    ) -> None:
        """gc --dry-run prints what it would delete and deletes nothing."""
        assert 0 == cli(tmp_path, "add", "net1", "/run/netns/x", "--container-id", "c1")
        capsys.readouterr()

        assert 0 == cli(tmp_path, "gc", "net1", "--dry-run")

        assert "would delete\tnet1\tc1\teth0" == capsys.readouterr().out.strip()
        assert ["ADD"] == [c["verb"] for c in read_recording(cnilib_recorder_log)]

    def test_owner_tags_scope_gc(
        self, env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """gc with --owner deletes only that owner's entries unless --all-owners."""
        assert 0 == cli(
            tmp_path, "--owner", "a", "add", "net1", "/run/netns/x", "--container-id", "ca"
        )
        assert 0 == cli(
            tmp_path, "--owner", "b", "add", "net1", "/run/netns/x", "--container-id", "cb"
        )
        capsys.readouterr()

        assert 0 == cli(tmp_path, "--owner", "a", "gc", "net1")
        first = capsys.readouterr()
        assert 0 == cli(tmp_path, "--owner", "a", "gc", "net1", "--all-owners")
        second = capsys.readouterr()

        assert "deleted\tnet1\tca\teth0" == first.out.strip()
        assert "kept 1 attachment(s) of other owners" in first.err
        assert "deleted\tnet1\tcb\teth0" == second.out.strip()
