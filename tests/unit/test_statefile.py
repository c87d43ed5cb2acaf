"""The plugins' per-attachment state files: atomic, private, errors that name the file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cnilib.errors import PluginError
from cnilib.plugins._statefile import drop_state, read_state, write_state


def test_round_trip_private(tmp_path: Path) -> None:
    """Written in a 0700 directory it makes, as a 0600 file; read back; dropped twice."""
    path = tmp_path / "state" / "c1:eth0.json"
    write_state(path, '{"a": 1}\n', what="test state")
    assert read_state(path, what="test state") == '{"a": 1}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    drop_state(path)
    drop_state(path)
    assert read_state(path, what="test state") is None


def test_a_failed_write_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails half-way (fsync here) leaves the earlier content whole and
    no temporary file; the error names the file."""
    path = tmp_path / "c1:eth0.json"
    write_state(path, "old", what="test state")

    def fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(PluginError) as info:
        write_state(path, "new", what="test state")
    assert info.value.msg == f"failed to save test state to {path}: No space left on device"
    assert path.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["c1:eth0.json"]


def test_unreadable_and_unwritable_places_are_named(tmp_path: Path) -> None:
    """A directory where the file should be, a file where its directory should be."""
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(PluginError, match=r"failed to read test state from .*dir\.json: "):
        read_state(tmp_path / "dir.json", what="test state")
    (tmp_path / "plain").write_text("")
    with pytest.raises(PluginError, match=r"failed to save test state to .*plain/x\.json: "):
        write_state(tmp_path / "plain" / "x.json", "x", what="test state")
