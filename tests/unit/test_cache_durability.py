"""FileCache(durability=...): what each mode flushes, and that both stay atomic.

``"full"`` (the default) fsyncs a completed entry's file and then its directory
(and the directory after a removal), so the entry survives a power loss;
``"process"`` fsyncs nothing and survives only the runtime's crash. In both, a
write is a rename of a complete temporary file: a reader never sees half an entry.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import cnilib
from cnilib._json import JSONObject
from cnilib.cache import DURABILITIES, CacheEntry, Durability, FileCache
from cnilib.errors import CacheError, InvalidArgumentError
from cnilib.invoke import Command, Invocation
from cnilib.testing._mock import MockExecutor

RESULT: JSONObject = {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3/24"}]}
CONF = {"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "a"}, {"type": "b"}]}


def _entry(result: JSONObject | None = RESULT, cid: str = "c1") -> CacheEntry:
    return CacheEntry("net", cid, "eth0", b'{"name":"net"}', result=result)


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every fsync/fdatasync made, as "file" or "dir" (the calls still happen)."""
    calls: list[str] = []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def kind(fd: int) -> str:
        return "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"

    def fsync(fd: int) -> None:
        calls.append(kind(fd))
        real_fsync(fd)

    def fdatasync(fd: int) -> None:
        calls.append(kind(fd))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return calls


class TestSetting:
    def test_default_is_full(self, tmp_path: Path) -> None:
        assert FileCache(tmp_path).durability == "full"
        assert DURABILITIES == ("full", "process")

    @pytest.mark.parametrize("bad", ["", "FULL", "none", "power", None, 1])
    def test_invalid_value_refused(self, tmp_path: Path, bad: object) -> None:
        """A value outside the two modes is an InvalidArgumentError naming both."""
        with pytest.raises(InvalidArgumentError, match="'full', 'process'"):
            FileCache(tmp_path, durability=bad)  # type: ignore[arg-type]

    def test_runtime_keyword_validated(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidArgumentError, match="durability"):
            cnilib.CNI([], cache_dir=tmp_path, durability="sometimes")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="durability"):
            cnilib.AsyncCNI([], cache_dir=tmp_path, durability="sometimes")  # type: ignore[arg-type]

    @pytest.mark.parametrize("mode", DURABILITIES)
    def test_runtime_keyword_reaches_the_cache(self, tmp_path: Path, mode: Durability) -> None:
        assert cnilib.CNI([], cache_dir=tmp_path, durability=mode).cache.durability == mode
        assert cnilib.AsyncCNI([], cache_dir=tmp_path, durability=mode).cache.durability == mode

    def test_repr_names_a_non_default_mode(self, tmp_path: Path) -> None:
        assert "durability" not in repr(FileCache(tmp_path))
        assert "durability='process'" in repr(FileCache(tmp_path, durability="process"))


class TestFlushes:
    def test_full_flushes_file_then_directory(self, tmp_path: Path, synced: list[str]) -> None:
        """The data before the name: the file is flushed, then results/ after the rename."""
        FileCache(tmp_path).save(_entry())
        assert synced == ["file", "dir"]

    def test_full_pending_entry_not_flushed(self, tmp_path: Path, synced: list[str]) -> None:
        FileCache(tmp_path).save(_entry(None), durable=False)
        assert synced == []

    def test_process_flushes_nothing(self, tmp_path: Path, synced: list[str]) -> None:
        cache = FileCache(tmp_path, durability="process")
        cache.save(_entry())
        assert cache.delete("net", "c1", "eth0")
        assert synced == []

    def test_full_delete_flushes_directory(self, tmp_path: Path, synced: list[str]) -> None:
        cache = FileCache(tmp_path)
        cache.save(_entry())
        synced.clear()
        assert cache.delete("net", "c1", "eth0")
        assert synced == ["dir"]

    @pytest.mark.parametrize(("mode", "expected"), [("full", ["file", "dir"]), ("process", [])])
    def test_add_flushes_only_the_final_entry(
        self, tmp_path: Path, synced: list[str], mode: Durability, expected: list[str]
    ) -> None:
        """A whole ADD through the runtime: one durable write at the end, or none."""

        def answer(invocation: Invocation) -> bytes:
            return json.dumps(RESULT).encode() if invocation.command is Command.ADD else b""

        cni = cnilib.CNI([], cache_dir=tmp_path, executor=MockExecutor(answer), durability=mode)
        conflist = cnilib.conflist_from_bytes(json.dumps(CONF).encode())
        rt = cnilib.RuntimeConf("c1", "/run/netns/x", "eth0")
        cni.add_network_list(conflist, rt)
        assert synced == expected
        assert cni.cache.load("net", "c1", "eth0") is not None
        assert not cni.cache.load("net", "c1", "eth0").pending  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", DURABILITIES)
class TestAtomicInEveryMode:
    def test_replacement_is_a_rename(self, tmp_path: Path, mode: Durability) -> None:
        """A new entry is a new file renamed over the old one, never written into it:
        a reader holding the old file still reads it whole."""
        cache = FileCache(tmp_path, durability=mode)
        path = cache.save(_entry(None), durable=False)
        with open(path, "rb") as old:
            before = os.fstat(old.fileno()).st_ino
            cache.save(_entry())
            assert os.stat(path).st_ino != before
            assert json.loads(old.read()).get("result") is None
        assert cache.load("net", "c1", "eth0") == _entry()

    def test_failed_write_leaves_old_entry(
        self, tmp_path: Path, mode: Durability, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write that fails half-way (a full disk) leaves the old entry and no temp file."""
        cache = FileCache(tmp_path, durability=mode)
        cache.save(_entry(None), durable=False)

        def rename_fails(*args: object, **kwargs: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", rename_fails)
        with pytest.raises(CacheError, match="No space left"):
            cache.save(_entry())
        monkeypatch.undo()
        assert cache.load("net", "c1", "eth0") == _entry(None)
        assert os.listdir(cache.tmp_dir) == []
