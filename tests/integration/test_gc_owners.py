"""GC that is safe to share: owner tags decide whose stale entries GC deletes,
a dry run changes nothing, a missing or unreadable cache still gets plugin GC,
and pending entries left by a crash are cleaned with a DEL without prevResult."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.cache import CacheEntry, FileCache
from cnilib.testing import read_recording


@pytest.fixture
def conf(cnilib_recorder_log: Path) -> cnilib.NetworkConfigList:
    """net1 (1.1.0): two recorder plugins."""
    rec = {"log": str(cnilib_recorder_log)}
    doc = {
        "cniVersion": "1.1.0",
        "name": "net1",
        "plugins": [
            {"type": "recorder", "tag": "a", "recorder": rec},
            {"type": "recorder", "tag": "b", "recorder": rec},
        ],
    }
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


def runtime(bin_dir: Path, cache_dir: Path, owner: str | None) -> cnilib.CNI:
    return cnilib.CNI([str(bin_dir)], cache_dir=cache_dir, owner=owner, timeout=20)


def rt(cid: str) -> cnilib.RuntimeConf:
    return cnilib.RuntimeConf(cid, f"/run/netns/{cid}", "eth0")


def calls(log: Path) -> list[tuple[str, str, str, bool]]:
    """(verb, tag, CNI_CONTAINERID, has prevResult) of every recorded call."""
    out = []
    for call in read_recording(log):
        stdin, env = call["stdin"], call["env"]
        assert isinstance(stdin, dict)
        assert isinstance(env, dict)
        out.append(
            (
                str(call["verb"]),
                str(stdin.get("tag")),
                env["CNI_CONTAINERID"],
                "prevResult" in stdin,
            )
        )
    return out


def raw_calls(log: Path, verb: str) -> list[dict[str, Any]]:
    """The recorded calls of one verb, as the recorder logged them."""
    return [c for c in read_recording(log) if c["verb"] == verb]


def cached(cache_dir: Path) -> list[tuple[str, str | None]]:
    """(container ID, owner) of every cached attachment, by file name."""
    return [(e.container_id, e.owner) for e in FileCache(cache_dir).attachments()]


def ids(entries: tuple[CacheEntry, ...]) -> list[str]:
    return [e.container_id for e in entries]


def outcome(report: cnilib.GCReport) -> tuple[list[str], list[str], int, bool]:
    """(stale IDs, deleted IDs, skipped owners, plugin GC sent) of a GC report."""
    return (ids(report.stale), ids(report.deleted), report.skipped_owners, report.plugins_gc)


@pytest.fixture
def shared(
    cnilib_cni_bin_dir: Path,
    cnilib_cache_dir: Path,
    conf: cnilib.NetworkConfigList,
    cnilib_recorder_log: Path,
) -> dict[str | None, cnilib.CNI]:
    """Runtimes "a", "b" and an untagged one sharing one cache; a1, a2, b1, n1 attached."""
    runtimes = {
        owner: runtime(cnilib_cni_bin_dir, cnilib_cache_dir, owner) for owner in ("a", "b", None)
    }
    runtimes["a"].add_network_list(conf, rt("a1"))
    runtimes["a"].add_network_list(conf, rt("a2"))
    runtimes["b"].add_network_list(conf, rt("b1"))
    runtimes[None].add_network_list(conf, rt("n1"))
    cnilib_recorder_log.unlink()
    return runtimes


GC = Callable[..., cnilib.GCReport]


@pytest.fixture
def gc_as(shared: dict[str | None, cnilib.CNI], conf: cnilib.NetworkConfigList) -> GC:
    """``gc_as(owner, valid, **options)``: net1's GC by the shared runtime of *owner*."""

    def run(
        owner: str | None, valid: list[tuple[str, str]] | None, **options: bool
    ) -> cnilib.GCReport:
        return shared[owner].gc_network_list(conf, valid, **options)

    return run


class TestOwners:
    def test_entries_record_their_owner(
        self, shared: dict[str | None, cnilib.CNI], cnilib_cache_dir: Path
    ) -> None:
        """Each entry carries its writer's tag as cnilibOwner (none for an untagged runtime)."""
        raw = json.loads((cnilib_cache_dir / "results" / "net1-b1-eth0").read_bytes())

        assert [("a1", "a"), ("a2", "a"), ("b1", "b"), ("n1", None)] == cached(cnilib_cache_dir)
        assert "b" == raw["cnilibOwner"]
        assert "cnilibOwner" not in json.loads(
            (cnilib_cache_dir / "results" / "net1-n1-eth0").read_bytes()
        )

    def test_gc_deletes_only_its_own_stale_entries(
        self,
        gc_as: GC,
        cnilib_recorder_log: Path,
        cnilib_cache_dir: Path,
    ) -> None:
        """Owner "a" GC keeping a1: deletes a2 only; b1 and n1 are counted as skipped."""
        report = gc_as("a", [("a1", "eth0")])

        assert (["a2"], ["a2"], 2, True) == outcome(report)
        assert [
            ("DEL", "b", "a2", True),
            ("DEL", "a", "a2", True),
            ("GC", "a", "", False),
            ("GC", "b", "", False),
        ] == calls(cnilib_recorder_log)
        assert [("a1", "a"), ("b1", "b"), ("n1", None)] == cached(cnilib_cache_dir)

    def test_all_owners_deletes_everyones_stale_entries(
        self,
        gc_as: GC,
        cnilib_recorder_log: Path,
        cnilib_cache_dir: Path,
    ) -> None:
        """all_owners=True: owner "a" deletes b's and the untagged stale entries too."""
        report = gc_as("a", [("a1", "eth0")], all_owners=True)

        assert (["a2", "b1", "n1"], 0) == (ids(report.deleted), report.skipped_owners)
        assert ["a2", "b1", "n1"] == [
            c[2] for c in calls(cnilib_recorder_log) if c[:2] == ("DEL", "a")
        ]
        assert [("a1", "a")] == cached(cnilib_cache_dir)

    def test_untagged_runtime_deletes_only_untagged(
        self, gc_as: GC, cnilib_cache_dir: Path
    ) -> None:
        """owner=None: only untagged entries (Go tools', untagged runtimes') are its own."""
        report = gc_as(None, [])

        assert (["n1"], 3) == (ids(report.deleted), report.skipped_owners)
        assert [("a1", "a"), ("a2", "a"), ("b1", "b")] == cached(cnilib_cache_dir)

    def test_all_owners_deletes_every_tag_as_libcni(
        self, gc_as: GC, cnilib_cache_dir: Path
    ) -> None:
        """all_owners=True is libcni's GC: every stale entry goes, whoever wrote it."""
        report = gc_as(None, [("b1", "eth0")], all_owners=True)

        assert (["a1", "a2", "n1"], 0) == (ids(report.deleted), report.skipped_owners)
        assert [("b1", "b")] == cached(cnilib_cache_dir)

    def test_valid_none_keeps_nothing_of_its_own(
        self,
        gc_as: GC,
        cnilib_recorder_log: Path,
        cnilib_cache_dir: Path,
    ) -> None:
        """valid_attachments=None: all of b's entries go; GC gets no attachment list."""
        report = gc_as("b", None)

        assert (["b1"], 3) == (ids(report.deleted), report.skipped_owners)
        gc_stdin = [c["stdin"] for c in read_recording(cnilib_recorder_log) if c["verb"] == "GC"]
        assert 2 == len(gc_stdin)
        assert all(isinstance(s, dict) and "cni.dev/valid-attachments" not in s for s in gc_stdin)
        assert [("a1", "a"), ("a2", "a"), ("n1", None)] == cached(cnilib_cache_dir)


class TestDryRun:
    def test_reports_and_changes_nothing(
        self,
        gc_as: GC,
        cnilib_recorder_log: Path,
        cnilib_cache_dir: Path,
    ) -> None:
        """dry_run: the stale entries are reported; no DEL, no GC verb, every file stays."""
        before = {p.name: p.read_bytes() for p in (cnilib_cache_dir / "results").iterdir()}

        report = gc_as("a", [], dry_run=True)
        everyone = gc_as("a", [], dry_run=True, all_owners=True)

        assert (["a1", "a2"], [], 2, False) == outcome(report)
        assert (["a1", "a2", "b1", "n1"], 0) == (ids(everyone.stale), everyone.skipped_owners)
        assert [] == calls(cnilib_recorder_log)
        assert before == {p.name: p.read_bytes() for p in (cnilib_cache_dir / "results").iterdir()}

    def test_dry_run_keeps_lock_files(self, gc_as: GC, cnilib_cache_dir: Path) -> None:
        """A dry run does not tidy either: attachment lock files stay; a real GC removes them."""
        locks = cnilib_cache_dir / "locks" / "net1"
        before = sorted(os.listdir(locks))

        gc_as("a", [], dry_run=True)
        after_dry = sorted(os.listdir(locks))
        gc_as(None, [])

        assert [".network", "a1:eth0", "a2:eth0", "b1:eth0", "n1:eth0"] == before
        assert before == after_dry
        assert [".network"] == sorted(os.listdir(locks))


class TestBrokenCache:
    @pytest.mark.parametrize("locking", [True, False])
    def test_missing_cache_dir_still_sends_plugin_gc(
        self,
        cnilib_cni_bin_dir: Path,
        tmp_path: Path,
        conf: cnilib.NetworkConfigList,
        cnilib_recorder_log: Path,
        locking: bool,
    ) -> None:
        """No cache directory at all: nothing is stale, and every plugin still gets GC."""
        missing = tmp_path / "never-created"
        cni = cnilib.CNI([str(cnilib_cni_bin_dir)], cache_dir=missing, owner="a", locking=locking)

        report = cni.gc_network_list(conf, [("x", "eth0")])

        assert ((), (), True) == (report.stale, report.deleted, report.plugins_gc)
        assert [("GC", "a", "", False), ("GC", "b", "", False)] == calls(cnilib_recorder_log)

    def test_unreadable_cache_dir_is_reported_and_plugin_gc_sent(
        self,
        cnilib_cni_bin_dir: Path,
        cnilib_cache_dir: Path,
        conf: cnilib.NetworkConfigList,
        cnilib_recorder_log: Path,
    ) -> None:
        """results/ unreadable: GCError names it, its report says plugin GC was still sent."""
        (cnilib_cache_dir / "results").write_text("a file where the directory should be")
        cni = runtime(cnilib_cni_bin_dir, cnilib_cache_dir, "a")

        with pytest.raises(cnilib.GCError) as info:
            cni.gc_network_list(conf, [])

        (problem,) = info.value.exceptions
        assert isinstance(problem, cnilib.CacheError)
        assert str(cnilib_cache_dir / "results") == problem.path
        report = info.value.report
        assert isinstance(report, cnilib.GCReport)
        assert ((), True) == (report.deleted, report.plugins_gc)
        assert ["GC", "GC"] == [c[0] for c in calls(cnilib_recorder_log)]

    def test_failing_stale_del_is_reported_with_what_succeeded(
        self,
        shared: dict[str | None, cnilib.CNI],
        conf: cnilib.NetworkConfigList,
        cnilib_cni_bin_dir: Path,
        cnilib_cache_dir: Path,
    ) -> None:
        """Every stale DEL fails: each is attempted and reported; GCError.report says so."""
        doc = json.loads(conf.bytes)
        doc["plugins"][0]["recorder"]["DEL"] = {"error": {"code": 11, "msg": "busy"}}
        failing = cnilib.conflist_from_bytes(json.dumps(doc).encode())
        cni = runtime(cnilib_cni_bin_dir, cnilib_cache_dir, None)

        with pytest.raises(cnilib.GCError) as info:
            cni.gc_network_list(failing, [], all_owners=True)

        report = info.value.report
        assert isinstance(report, cnilib.GCReport)
        assert (["a1", "a2", "b1", "n1"], [], True) == (
            ids(report.stale),
            ids(report.deleted),
            report.plugins_gc,
        )
        assert 4 == len(info.value.exceptions)
        assert str(info.value).startswith("failed to delete stale attachment a1 eth0: ")


class TestPendingEntries:
    def _crash_left(
        self, cache_dir: Path, conf: cnilib.NetworkConfigList, owner: str | None
    ) -> None:
        """What a runtime killed mid-ADD leaves: a complete entry without a result."""
        FileCache(cache_dir).save(
            CacheEntry(
                network_name="net1",
                container_id="crashed",
                ifname="eth0",
                config=conf.bytes,
                netns="/run/netns/crashed",
                cni_args=(("K", "v"),),
                result=None,
                owner=owner,
            )
        )

    @pytest.mark.parametrize("owner", [None, "a"])
    def test_gc_deletes_pending_entry_with_del_without_prev_result(
        self,
        cnilib_cni_bin_dir: Path,
        cnilib_cache_dir: Path,
        conf: cnilib.NetworkConfigList,
        cnilib_recorder_log: Path,
        owner: str | None,
    ) -> None:
        """A pending entry is stale for its owner's GC: DEL without prevResult, then removed."""
        self._crash_left(cnilib_cache_dir, conf, owner)
        assert [True] == [e.pending for e in FileCache(cnilib_cache_dir).attachments()]

        report = runtime(cnilib_cni_bin_dir, cnilib_cache_dir, owner).gc_network_list(conf, [])

        assert ["crashed"] == ids(report.deleted)
        dels = raw_calls(cnilib_recorder_log, "DEL")
        assert [("b", False), ("a", False)] == [
            (c["stdin"]["tag"], "prevResult" in c["stdin"]) for c in dels
        ]
        assert [("crashed", "K=v", "/run/netns/crashed")] * 2 == [
            (c["env"]["CNI_CONTAINERID"], c["env"]["CNI_ARGS"], c["env"]["CNI_NETNS"]) for c in dels
        ]
        assert [] == cached(cnilib_cache_dir)

    def test_other_owners_pending_entry_is_left_alone(
        self,
        cnilib_cni_bin_dir: Path,
        cnilib_cache_dir: Path,
        conf: cnilib.NetworkConfigList,
        cnilib_recorder_log: Path,
    ) -> None:
        """A pending entry of runtime "b" is not touched by the GC of runtime "a"."""
        self._crash_left(cnilib_cache_dir, conf, "b")

        report = runtime(cnilib_cni_bin_dir, cnilib_cache_dir, "a").gc_network_list(conf, [])

        assert ((), 1) == (report.deleted, report.skipped_owners)
        assert ["GC", "GC"] == [c[0] for c in calls(cnilib_recorder_log)]
        assert [("crashed", "b")] == cached(cnilib_cache_dir)
