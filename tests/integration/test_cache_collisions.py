"""Go's cache file names are ambiguous ("<net>-<cid>-<if>"): two attachments can
share one file. cnilib notices, and never uses or removes the other's entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cnilib
from cnilib.invoke import Command, Invocation
from cnilib.testing import MockExecutor

RESULT = b'{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.3/24"}]}'


def answer(invocation: Invocation) -> bytes:
    return RESULT if invocation.command is Command.ADD else b""


def conf(name: str) -> cnilib.NetworkConfigList:
    doc = {"cniVersion": "1.0.0", "name": name, "plugins": [{"type": "fake"}]}
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


class TestCollisions:
    @pytest.fixture
    def cni(self, tmp_path: Path) -> cnilib.CNI:
        """A runtime with one attachment, network "n" / container "a-b" / ifname "c"."""
        cni = cnilib.CNI(["/bin"], cache_dir=tmp_path, executor=MockExecutor(answer))
        cni.add_network_list(conf("n"), cnilib.RuntimeConf("a-b", "/x", "c"))
        return cni

    OTHER = cnilib.RuntimeConf("b", "/x", "c")  # with network "n-a": the same file name

    def test_add_refuses_to_overwrite(self, cni: cnilib.CNI) -> None:
        """ADD of the colliding attachment is refused before any plugin runs."""
        with pytest.raises(cnilib.CacheCollisionError, match="belongs to another attachment"):
            cni.add_network_list(conf("n-a"), self.OTHER)

        assert ["a-b"] == [e.container_id for e in cni.cached_attachments()]

    def test_cached_result_is_not_the_others(self, cni: cnilib.CNI) -> None:
        """Asking for the colliding attachment's result is an error, not the other's IP."""
        with pytest.raises(cnilib.CacheCollisionError):
            cni.cached_result(conf("n-a"), self.OTHER)

    def test_del_neither_uses_nor_removes_it(self, cni: cnilib.CNI) -> None:
        """DEL of the colliding attachment runs without prevResult and keeps the other's entry."""
        executor = cni.executor
        assert isinstance(executor, MockExecutor)

        cni.delete_network_list(conf("n-a"), self.OTHER)

        assert b"prevResult" not in executor.invocations[-1].stdin
        assert ["a-b"] == [e.container_id for e in cni.cached_attachments()]

    def test_locks_are_distinct(self, cni: cnilib.CNI, tmp_path: Path) -> None:
        """The two attachments get different lock files (":" cannot appear in either name)."""
        cni.delete_network_list(conf("n-a"), self.OTHER)

        assert ["a-b:c"] == sorted(
            p.name for p in (tmp_path / "locks" / "n").iterdir() if p.name != ".network"
        )
        assert ["b:c"] == sorted(
            p.name for p in (tmp_path / "locks" / "n-a").iterdir() if p.name != ".network"
        )
