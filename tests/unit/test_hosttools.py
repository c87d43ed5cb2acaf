"""Finding the host's filter tools: only through absolute PATH entries, then the
fixed sbin/bin directories, never relative to the working directory (Go's
exec.ErrDot): an ``iptables`` planted where the runtime happens to run must not
run as root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cnilib.errors import ErrorCode, PluginError
from cnilib.plugins._hosttools.tools import find_tool, tool_exists

FAKE = "cnilib-fake-tool"


def plant(directory: Path, name: str = FAKE) -> Path:
    """An executable ``name`` in ``directory`` that would leave a mark if it ever ran."""
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    tool.write_text(f"#!/bin/sh\ntouch {directory}/RAN\n")
    tool.chmod(0o755)
    return tool


@pytest.fixture
def cwd_with_fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory and its ``rel/`` subdirectory each hold a fake
    ``iptables`` and a fake :data:`FAKE`."""
    for directory in (tmp_path, tmp_path / "rel"):
        plant(directory)
        plant(directory, "iptables")
    monkeypatch.chdir(tmp_path)
    return tmp_path


class TestLookup:
    @pytest.mark.parametrize("path", ["::rel", ".:rel:", "rel::/nonexistent", ""])
    def test_empty_and_relative_entries_are_skipped(
        self, cwd_with_fakes: Path, monkeypatch: pytest.MonkeyPatch, path: str
    ) -> None:
        """With only empty or relative PATH entries, a tool found nowhere else is not
        found, although the working directory holds one: Go's clear error, code 999."""
        monkeypatch.setenv("PATH", path)

        assert not tool_exists(FAKE)
        with pytest.raises(PluginError) as info:
            find_tool(FAKE, "failed to locate it")
        assert str(info.value) == (
            f'failed to locate it: exec: "{FAKE}": executable file not found in $PATH'
        )
        assert info.value.code == ErrorCode.INTERNAL

    def test_planted_iptables_loses_to_the_real_one(
        self, cwd_with_fakes: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """PATH=::rel:/usr/sbin... with an ``iptables`` in the working directory: the
        one found is in a fixed system directory (or there is none), never the plant."""
        monkeypatch.setenv("PATH", "::rel:/usr/sbin:/usr/bin:/sbin:/bin")

        if not tool_exists("iptables"):
            with pytest.raises(PluginError, match="executable file not found"):
                find_tool("iptables", "failed to locate iptables")
        else:
            found = find_tool("iptables", "failed to locate iptables")
            assert os.path.isabs(found)
            assert os.path.dirname(found) in ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
            assert not Path(found).resolve().is_relative_to(cwd_with_fakes)

    def test_absolute_entries_are_searched_in_order(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An absolute PATH entry still wins over the fixed directories (how tests put a
        fake tool first), skipping a directory or a non-executable file of that name."""
        (tmp_path / "a" / FAKE).mkdir(parents=True)  # a directory of that name
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / FAKE).write_text("not executable")
        tool = plant(tmp_path / "c")
        monkeypatch.setenv("PATH", f"{tmp_path}/a::{tmp_path}/b:rel:{tmp_path}/c:/usr/bin")

        assert find_tool(FAKE, "x") == str(tool)
        assert tool_exists(FAKE)

    def test_no_path_means_the_fixed_directories_only(
        self, cwd_with_fakes: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without PATH, only the fixed sbin/bin directories are searched (not the
        working directory, which some defaults put first)."""
        monkeypatch.delenv("PATH")

        assert not tool_exists(FAKE)
        sh = find_tool("sh", "x")
        assert sh in ("/usr/sbin/sh", "/sbin/sh", "/usr/bin/sh", "/bin/sh")

    def test_a_name_with_a_slash_is_never_a_path(
        self, cwd_with_fakes: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``rel/iptables`` names no tool: it would be resolved against the working directory."""
        monkeypatch.setenv("PATH", "/usr/sbin:/usr/bin")

        assert not tool_exists(f"rel/{FAKE}")
        assert not tool_exists(f"{cwd_with_fakes}/rel/{FAKE}")
