"""The CLI escapes what configuration and plugins hand it: list and validate
output, results, group errors and plugins' stderr (in-process
``cnilib.cli.main``; plugins are the recorder, run as real processes)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnilib.cli import main

HOSTILE = "e\x1b[2J\r\nfake: line\u202e\x9b"


@pytest.fixture
def conf_dir(tmp_path: Path, cnilib_cni_bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty NETCONFPATH, with CNI_PATH holding the recorder."""
    directory = tmp_path / "net.d"
    directory.mkdir()
    monkeypatch.setenv("NETCONFPATH", str(directory))
    monkeypatch.setenv("CNI_PATH", str(cnilib_cni_bin_dir))
    return directory


@pytest.fixture(autouse=True)
def _restore_cnilib_logger() -> Iterator[None]:
    """-v adds a handler to the "cnilib" logger; take it off again."""
    log = logging.getLogger("cnilib")
    handlers, level = list(log.handlers), log.level
    yield
    log.handlers[:] = handlers
    log.setLevel(level)


def _network(conf_dir: Path, recorder: dict[str, object], plugins: int = 1) -> None:
    doc = {
        "cniVersion": "1.1.0",
        "name": "net1",
        "plugins": [{"type": "recorder", "recorder": recorder}] * plugins,
    }
    (conf_dir / "10-net1.conflist").write_text(json.dumps(doc))


def cli(tmp_path: Path, *argv: str) -> int:
    return main(["--cache-dir", str(tmp_path / "cache"), *argv])


class TestEscaping:
    def test_group_error_lines_are_escaped(
        self, conf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each failure of a group stays on its own line, its own text escaped."""
        _network(conf_dir, {"GC": {"error": {"code": 5, "msg": HOSTILE}}}, plugins=2)

        assert 1 == cli(tmp_path, "gc", "net1")

        shown = "e\\x1b[2J\\r\\nfake: line\\u202e\\x9b"
        assert [
            f"cnilib gc: error: failed to GC plugin recorder: {shown}",
            f"  failed to GC plugin recorder: {shown}",
        ] == capsys.readouterr().err.splitlines()

    def test_add_result_is_printable_json(
        self, conf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """add's result keeps its meaning, with no raw control or invisible character."""
        result = {
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/netns/\x7f\x9b\u202ex"}],
        }
        _network(conf_dir, {"ADD": {"result": result}})

        assert 0 == cli(tmp_path, "add", "net1", "/run/netns/x", "--container-id", "c1")

        out = capsys.readouterr().out
        assert all(ch.isprintable() or ch == "\n" for ch in out)
        assert result["interfaces"] == json.loads(out)["interfaces"]

    def test_plugin_stderr_is_escaped_with_verbose(
        self, conf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """-v shows a plugin's stderr escaped, not raw."""
        _network(conf_dir, {"STATUS": {"stderr": "warn \x1b]0;title\x07 done"}})

        assert 0 == cli(tmp_path, "-v", "status", "net1")

        err = capsys.readouterr().err
        assert "\x1b" not in err
        assert "warn \\x1b]0;title\\x07 done" in err


class TestListAndValidateInProcess:
    """list and validate on hostile or unreadable configuration, called in-process."""

    def test_list_flags_invalid_names(
        self, conf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An invalid name is listed with its reason and reported as a problem: exit 1."""
        doc = {"cniVersion": "1.0.0", "name": "bad\x1b[2J", "plugins": [{"type": "x"}]}
        (conf_dir / "10-bad.conflist").write_text(json.dumps(doc))
        (conf_dir / "20-empty.conf").write_text(json.dumps({"type": "y"}))

        assert 1 == cli(tmp_path, "list")

        captured = capsys.readouterr()
        bad, empty = conf_dir / "10-bad.conflist", conf_dir / "20-empty.conf"
        assert [
            f"bad\\x1b[2J\t1.0.0\tx\t{bad}\tinvalid network name: "
            "invalid characters found in network name",
            f"\t-\ty\t{empty}\tinvalid network name: missing network name",
        ] == captured.out.splitlines()
        assert [
            f'problem: {bad}: invalid network name "bad\\x1b[2J": '
            "invalid characters found in network name (at $.name)",
            f'problem: {empty}: invalid network name "": missing network name (at $.name)',
        ] == captured.err.splitlines()

    def test_validate_by_invalid_name_lists_the_file_problems(
        self, conf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """validate of a network found under an invalid name lists its file's schema problems."""
        path = conf_dir / "10-bad.conflist"
        doc = {"cniVersion": "1.0.0", "name": "a\nb", "plugins": [{"type": "x"}]}
        path.write_text(json.dumps(doc))

        assert 1 == cli(tmp_path, "validate", "a\nb")

        assert [
            f"{path}: 1 problem(s)",
            "  $.name: 'a\\nb' is not a valid network name",
        ] == capsys.readouterr().err.splitlines()

    def test_validate_fifo_is_an_error(
        self, conf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """validate of a FIFO reports the loader's error instead of reading the FIFO."""
        fifo = conf_dir / "fifo.conflist"
        os.mkfifo(fifo)

        assert 1 == cli(tmp_path, "validate", str(fifo))

        assert [
            f"cnilib validate: error: {fifo}: error reading {fifo}: not a regular file"
        ] == capsys.readouterr().err.splitlines()

    def test_file_path_with_invalid_name_is_refused(
        self, conf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A network given by file path is refused for an invalid name as by name (exit 1)."""
        path = conf_dir / "10-bad.conflist"
        doc = {"cniVersion": "1.0.0", "name": "../../bad", "plugins": [{"type": "x"}]}
        path.write_text(json.dumps(doc))

        assert 1 == cli(tmp_path, "status", str(path))

        assert [
            f'cnilib status: error: {path}: invalid network name "../../bad": '
            "invalid characters found in network name (at $.name)"
        ] == capsys.readouterr().err.splitlines()
