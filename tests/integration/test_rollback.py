"""Transactional ADD: when plugin k fails, plugins k-1 … 0 get DEL in reverse with
the results they produced; what the rollback did is on the error; a failed
rollback keeps a pending entry for a later DEL or GC; Ctrl-C and a runtime
killed mid-ADD leave state that DEL cleans up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.cache import CacheEntry, FileCache
from cnilib.invoke import Command, Invocation
from cnilib.testing import MockExecutor, install_recording_plugin, read_recording

RT = cnilib.RuntimeConf("ctr1", "/run/netns/ctr1", "eth0")
PLUGINS = ("p0", "p1", "p2", "p3")


def result_of(index: int) -> dict[str, Any]:
    """A distinct 1.1.0 result for plugin ``index``."""
    return {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": f"if{index}"}],
        "ips": [{"address": f"10.0.{index}.2/24", "interface": 0}],
    }


Chain = Callable[..., cnilib.NetworkConfigList]


@pytest.fixture
def bin_dir(cnilib_cni_bin_dir: Path) -> Path:
    """The recorder installed as p0 … p3, so rollback names tell plugins apart."""
    for name in PLUGINS:
        install_recording_plugin(cnilib_cni_bin_dir, name)
    return cnilib_cni_bin_dir


@pytest.fixture
def chain(cnilib_recorder_log: Path) -> Chain:
    """A list net1 of p0 … p<n-1>, each answering ADD with its own result unless told."""

    def make(n: int, **instructions: dict[str, Any]) -> cnilib.NetworkConfigList:
        plugins = []
        for index in range(n):
            name = PLUGINS[index]
            recorder: dict[str, Any] = {
                "log": str(cnilib_recorder_log),
                "ADD": {"result": result_of(index)},
            }
            recorder.update(instructions.get(name, {}))
            plugins.append({"type": name, "recorder": recorder})
        doc = {"cniVersion": "1.1.0", "name": "net1", "plugins": plugins}
        return cnilib.conflist_from_bytes(json.dumps(doc).encode())

    return make


@pytest.fixture
def cni(bin_dir: Path, cnilib_cache_dir: Path) -> cnilib.CNI:
    return cnilib.CNI([str(bin_dir)], cache_dir=cnilib_cache_dir, timeout=20)


def recorded(log: Path) -> list[tuple[str, str]]:
    """(verb, plugin) of every recorded call."""
    return [(str(c["verb"]), str(c["argv0"])) for c in read_recording(log)]


def prev_ips(log: Path, verb: str) -> list[object]:
    """The prevResult's ips of every call of ``verb`` (None where there was none)."""
    out: list[object] = []
    for call in read_recording(log):
        stdin = call["stdin"]
        assert isinstance(stdin, dict)
        if call["verb"] == verb:
            out.append(stdin["prevResult"]["ips"] if "prevResult" in stdin else None)
    return out


def entry_file(cache_dir: Path) -> Path:
    return cache_dir / "results" / "net1-ctr1-eth0"


class TestRollback:
    @pytest.mark.parametrize("k", [1, 2, 3])
    def test_earlier_plugins_get_del_in_reverse_with_their_results(
        self,
        cni: cnilib.CNI,
        chain: Chain,
        cnilib_recorder_log: Path,
        cnilib_cache_dir: Path,
        k: int,
    ) -> None:
        """Plugin k answers an error: k-1 … 0 get DEL, last first, each with its own result."""
        conf = chain(4, **{PLUGINS[k]: {"ADD": {"error": {"code": 7, "msg": "no"}}}})

        with pytest.raises(cnilib.PluginError) as info:
            cni.add_network_list(conf, RT)

        adds = [("ADD", p) for p in PLUGINS[: k + 1]]
        dels = [("DEL", p) for p in reversed(PLUGINS[:k])]
        assert adds + dels == recorded(cnilib_recorder_log)
        assert [result_of(i)["ips"] for i in reversed(range(k))] == prev_ips(
            cnilib_recorder_log, "DEL"
        )
        assert info.value.rollback is not None
        assert PLUGINS[:k] == info.value.rollback.deleted
        assert not entry_file(cnilib_cache_dir).exists()

    @pytest.mark.parametrize(
        ("instruction", "error_type"),
        [
            pytest.param({"sleep": 30}, cnilib.PluginTimeoutError, id="timeout"),
            pytest.param({"signal": "KILL"}, cnilib.PluginOutputError, id="killed-by-signal"),
            pytest.param({"stdout": "garbage"}, cnilib.ResultDecodeError, id="garbage-exit-0"),
            pytest.param({"stdout": "", "exit": 0}, cnilib.ResultDecodeError, id="empty-exit-0"),
            pytest.param(
                {"stdout": "panic", "exit": 2}, cnilib.PluginOutputError, id="garbage-exit-2"
            ),
            pytest.param({"stdout_bytes_hex": "ff fe"}, cnilib.ResultDecodeError, id="non-utf8"),
        ],
    )
    def test_failed_plugin_without_error_object_gets_del_too(
        self,
        bin_dir: Path,
        cnilib_cache_dir: Path,
        chain: Chain,
        cnilib_recorder_log: Path,
        instruction: dict[str, Any],
        error_type: type[cnilib.CNIError],
    ) -> None:
        """A plugin that timed out, crashed or printed garbage is DELed too, with what it got."""
        cni = cnilib.CNI([str(bin_dir)], cache_dir=cnilib_cache_dir, timeout=1.0)
        conf = chain(3, p2={"ADD": instruction})

        with pytest.raises(error_type) as info:
            cni.add_network_list(conf, RT)

        expected = [("ADD", "p0"), ("ADD", "p1"), ("ADD", "p2")]
        expected += [("DEL", "p2"), ("DEL", "p1"), ("DEL", "p0")]
        assert expected == recorded(cnilib_recorder_log)
        ips = [result_of(1)["ips"], result_of(1)["ips"], result_of(0)["ips"]]
        assert ips == prev_ips(cnilib_recorder_log, "DEL")
        assert info.value.rollback is not None
        assert ("p0", "p1", "p2") == info.value.rollback.deleted
        assert not entry_file(cnilib_cache_dir).exists()

    def test_first_plugin_crashing_gets_del_without_prev_result(
        self, cni: cnilib.CNI, chain: Chain, cnilib_recorder_log: Path, cnilib_cache_dir: Path
    ) -> None:
        """Plugin 0 killed by a signal gets DEL without prevResult (it was given none)."""
        with pytest.raises(cnilib.PluginOutputError):
            cni.add_network_list(chain(2, p0={"ADD": {"signal": "KILL"}}), RT)

        assert [("ADD", "p0"), ("DEL", "p0")] == recorded(cnilib_recorder_log)
        assert [None] == prev_ips(cnilib_recorder_log, "DEL")
        assert not entry_file(cnilib_cache_dir).exists()

    def test_first_plugin_answering_error_needs_no_rollback(
        self, cni: cnilib.CNI, chain: Chain, cnilib_recorder_log: Path, cnilib_cache_dir: Path
    ) -> None:
        """Plugin 0 answering an error: no DEL at all, a clean rollback, no entry."""
        with pytest.raises(cnilib.PluginError) as info:
            cni.add_network_list(chain(2, p0={"ADD": {"error": {"code": 11, "msg": "x"}}}), RT)

        assert [("ADD", "p0")] == recorded(cnilib_recorder_log)
        assert info.value.rollback is not None
        assert ((), (), True) == (
            info.value.rollback.deleted,
            info.value.rollback.failures,
            info.value.rollback.clean,
        )
        assert ["rolled back: DEL nothing to undo"] == info.value.__notes__
        assert not entry_file(cnilib_cache_dir).exists()

    def test_error_keeps_type_code_text_and_says_what_was_undone(
        self, cni: cnilib.CNI, chain: Chain
    ) -> None:
        """The original failure is raised unchanged, with .rollback and a PEP 678 note."""
        conf = chain(3, p2={"ADD": {"error": {"code": 11, "msg": "later", "details": "d"}}})

        with pytest.raises(cnilib.TryAgainLaterError) as info:
            cni.add_network_list(conf, RT)

        err = info.value
        assert 'plugin type="p2" failed (add): later; d' == str(err)
        assert 11 == err.code
        assert err.rollback is not None
        assert (("p0", "p1"), (), True) == (
            err.rollback.deleted,
            err.rollback.failures,
            err.rollback.clean,
        )
        assert ["rolled back: DEL p0, p1"] == err.__notes__

    def test_rollback_del_failure_keeps_pending_entry_that_del_cleans(
        self, cni: cnilib.CNI, chain: Chain, cnilib_recorder_log: Path, cnilib_cache_dir: Path
    ) -> None:
        """A failing rollback DEL: the others still run, the entry stays pending; DEL cleans."""
        busy = {"DEL": {"error": {"code": 11, "msg": "busy"}}}
        conf = chain(3, p1=busy, p2={"ADD": {"error": {"code": 7, "msg": "bad"}}})

        with pytest.raises(cnilib.PluginError) as info:
            cni.add_network_list(conf, RT)

        err = info.value
        assert err.rollback is not None
        assert ("p0",) == err.rollback.deleted
        assert ['plugin type="p1" failed (delete): busy'] == [str(f) for f in err.rollback.failures]
        assert [cnilib.TryAgainLaterError] == [type(f) for f in err.rollback.failures]
        assert not err.rollback.clean
        assert [
            'rollback incomplete (DEL done: p0); failed: plugin type="p1" failed (delete): busy'
        ] == err.__notes__
        entry = FileCache(cnilib_cache_dir).load("net1", "ctr1", "eth0")
        assert entry is not None
        assert entry.pending
        assert [("DEL", "p1"), ("DEL", "p0")] == recorded(cnilib_recorder_log)[3:]

        cnilib_recorder_log.unlink()
        cni.delete_network_list(chain(3), RT)  # p1 works again

        assert [("DEL", "p2"), ("DEL", "p1"), ("DEL", "p0")] == recorded(cnilib_recorder_log)
        assert [None, None, None] == prev_ips(cnilib_recorder_log, "DEL")
        assert not entry_file(cnilib_cache_dir).exists()

    def test_pending_entry_is_cleaned_by_gc(
        self, cni: cnilib.CNI, chain: Chain, cnilib_recorder_log: Path, cnilib_cache_dir: Path
    ) -> None:
        """A pending entry left by an incomplete rollback is a stale attachment for GC."""
        busy = {"DEL": {"error": {"code": 11, "msg": "busy"}}}
        with pytest.raises(cnilib.PluginError):
            cni.add_network_list(chain(2, p0=busy, p1={"ADD": {"error": {"msg": "x"}}}), RT)
        cnilib_recorder_log.unlink()

        report = cni.gc_network_list(chain(2), [])

        assert [("ctr1", "eth0", True)] == [
            (e.container_id, e.ifname, e.pending) for e in report.deleted
        ]
        assert [("DEL", "p1"), ("DEL", "p0"), ("GC", "p0"), ("GC", "p1")] == recorded(
            cnilib_recorder_log
        )
        assert [] == os.listdir(cnilib_cache_dir / "results")

    def test_failed_del_of_pending_entry_keeps_it_for_retry(
        self, cni: cnilib.CNI, chain: Chain, cnilib_cache_dir: Path
    ) -> None:
        """DEL of a pending entry that fails keeps the entry, as a failing DEL always does."""
        busy = {"DEL": {"error": {"code": 11, "msg": "busy"}}}
        with pytest.raises(cnilib.PluginError):
            cni.add_network_list(chain(2, p0=busy, p1={"ADD": {"error": {"msg": "x"}}}), RT)

        with pytest.raises(cnilib.TryAgainLaterError):
            cni.delete_network_list(chain(2, p0=busy), RT)

        entry = FileCache(cnilib_cache_dir).load("net1", "ctr1", "eth0")
        assert entry is not None
        assert entry.pending

    def test_plugin_that_never_ran_gets_no_del(
        self, cni: cnilib.CNI, chain: Chain, cnilib_recorder_log: Path, cnilib_cache_dir: Path
    ) -> None:
        """A plugin missing from CNI_PATH made no state: only the earlier ones are undone."""
        doc = json.loads(chain(1).bytes)
        doc["plugins"].append({"type": "missing"})
        conf = cnilib.conflist_from_bytes(json.dumps(doc).encode())

        with pytest.raises(cnilib.PluginNotFoundError) as info:
            cni.add_network_list(conf, RT)

        assert info.value.rollback is not None
        assert (("p0",), ()) == (info.value.rollback.deleted, info.value.rollback.failures)
        assert [("ADD", "p0"), ("DEL", "p0")] == recorded(cnilib_recorder_log)
        assert not entry_file(cnilib_cache_dir).exists()

    def test_rollback_off_undoes_nothing_and_caches_nothing(
        self, bin_dir: Path, cnilib_cache_dir: Path, chain: Chain, cnilib_recorder_log: Path
    ) -> None:
        """rollback=False: libcni's behaviour, no DEL, no entry, no rollback on the error."""
        cni = cnilib.CNI([str(bin_dir)], cache_dir=cnilib_cache_dir, rollback=False)

        with pytest.raises(cnilib.PluginOutputError) as info:
            cni.add_network_list(chain(3, p2={"ADD": {"signal": "KILL"}}), RT)

        assert [("ADD", "p0"), ("ADD", "p1"), ("ADD", "p2")] == recorded(cnilib_recorder_log)
        assert info.value.rollback is None
        assert not hasattr(info.value, "__notes__")
        assert [] == os.listdir(cnilib_cache_dir / "results")


def mock_chain(n: int) -> cnilib.NetworkConfigList:
    plugins = [{"type": PLUGINS[i]} for i in range(n)]
    return cnilib.conflist_from_bytes(
        json.dumps({"cniVersion": "1.1.0", "name": "net1", "plugins": plugins}).encode()
    )


def answer(invocation: Invocation) -> bytes:
    """ADD answers with the plugin's own result; every other verb with nothing."""
    if invocation.command is Command.ADD:
        return json.dumps(result_of(PLUGINS.index(invocation.plugin_type))).encode()
    return b""


def trail(mock: MockExecutor) -> list[tuple[str, str, object]]:
    """(verb, plugin, prevResult ips or None) of every call the mock saw."""
    out: list[tuple[str, str, object]] = []
    for inv in mock.invocations:
        prev = json.loads(inv.stdin).get("prevResult")
        out.append((inv.command.value, inv.plugin_type, prev["ips"] if prev else None))
    return out


class TestFaultsAroundPlugins:
    def test_cache_write_failure_after_last_plugin_rolls_everything_back(
        self, tmp_path: Path
    ) -> None:
        """The final cache write fails: every plugin gets DEL with its result; no entry."""
        cache = FileCache(tmp_path)

        def handler(invocation: Invocation) -> bytes:
            if invocation.command is Command.ADD and invocation.plugin_type == "p2":
                os.rmdir(cache.tmp_dir)  # the last plugin ran; now no temp file can be made
                Path(cache.tmp_dir).write_text("in the way")
            return answer(invocation)

        mock = MockExecutor(handler)
        cni = cnilib.CNI([], cache_dir=tmp_path, executor=mock)

        with pytest.raises(cnilib.CacheError) as info:
            cni.add_network_list(mock_chain(3), RT)

        assert str(info.value).startswith('failed to set network "net1" cached result: ')
        ips = [result_of(i)["ips"] for i in range(3)]
        assert [
            ("ADD", "p0", None),
            ("ADD", "p1", ips[0]),
            ("ADD", "p2", ips[1]),
            ("DEL", "p2", ips[2]),
            ("DEL", "p1", ips[1]),
            ("DEL", "p0", ips[0]),
        ] == trail(mock)
        assert info.value.rollback is not None
        assert ("p0", "p1", "p2") == info.value.rollback.deleted
        assert [] == os.listdir(tmp_path / "results")

    def test_ctrl_c_rolls_back_then_propagates(self, tmp_path: Path) -> None:
        """KeyboardInterrupt in plugin 2: DEL 2, 1, 0 are driven, then the interrupt goes on."""

        def handler(invocation: Invocation) -> bytes:
            if invocation.command is Command.ADD and invocation.plugin_type == "p2":
                raise KeyboardInterrupt
            return answer(invocation)

        mock = MockExecutor(handler)
        cni = cnilib.CNI([], cache_dir=tmp_path, executor=mock)

        with pytest.raises(KeyboardInterrupt):
            cni.add_network_list(mock_chain(4), RT)

        ips = [result_of(i)["ips"] for i in range(2)]
        assert [
            ("ADD", "p0", None),
            ("ADD", "p1", ips[0]),
            ("ADD", "p2", ips[1]),
            ("DEL", "p2", ips[1]),
            ("DEL", "p1", ips[1]),
            ("DEL", "p0", ips[0]),
        ] == trail(mock)
        assert [] == os.listdir(tmp_path / "results")

    def test_ctrl_c_with_failing_rollback_keeps_pending_entry(self, tmp_path: Path) -> None:
        """Ctrl-C whose rollback DEL fails: the interrupt still propagates, the entry stays."""

        def handler(invocation: Invocation) -> bytes:
            if invocation.command is Command.ADD and invocation.plugin_type == "p1":
                raise KeyboardInterrupt
            if invocation.command is Command.DEL and invocation.plugin_type == "p0":
                raise cnilib.TryAgainLaterError("busy")
            return answer(invocation)

        cni = cnilib.CNI([], cache_dir=tmp_path, executor=MockExecutor(handler))

        with pytest.raises(KeyboardInterrupt):
            cni.add_network_list(mock_chain(2), RT)

        entry = cni.cache.load("net1", "ctr1", "eth0")
        assert entry is not None
        assert entry.pending


class TestCtrlCOutsideAdd:
    @staticmethod
    def _ctrl_c_in_del_once_armed(
        tmp_path: Path,
    ) -> tuple[cnilib.CNI, MockExecutor, dict[str, bool]]:
        """A mock CNI that answers every call until ``armed["on"]``; then DEL raises Ctrl-C."""
        armed = {"on": False}

        def handler(invocation: Invocation) -> bytes:
            if armed["on"] and invocation.command is Command.DEL:
                raise KeyboardInterrupt
            return answer(invocation)

        mock = MockExecutor(handler)
        return cnilib.CNI([], cache_dir=tmp_path, executor=mock), mock, armed

    def test_ctrl_c_during_delete_keeps_the_entry(self, tmp_path: Path) -> None:
        """KeyboardInterrupt in a DEL propagates at once; the entry stays for a retry."""
        cni, mock, armed = self._ctrl_c_in_del_once_armed(tmp_path)
        cni.add_network_list(mock_chain(2), RT)
        armed["on"] = True

        with pytest.raises(KeyboardInterrupt):
            cni.delete_network_list(mock_chain(2), RT)

        assert [("DEL", "p1")] == [t[:2] for t in trail(mock)[2:]]
        entry = cni.cache.load("net1", "ctr1", "eth0")
        assert entry is not None
        assert not entry.pending

    def test_ctrl_c_during_gc_stops_it(self, tmp_path: Path) -> None:
        """KeyboardInterrupt in GC's first stale DEL: no other DEL and no GC verb run."""
        cni, mock, armed = self._ctrl_c_in_del_once_armed(tmp_path)
        for cid in ("c0", "c1", "c2"):
            cni.add_network_list(mock_chain(1), cnilib.RuntimeConf(cid, "/x", "eth0"))
        mock.invocations.clear()
        armed["on"] = True

        with pytest.raises(KeyboardInterrupt):
            cni.gc_network_list(mock_chain(1), [])

        assert [("DEL", "c0")] == [(i.command.value, i.container_id) for i in mock.invocations]


RUNTIME_SCRIPT = """
import sys, cnilib
bin_dir, cache_dir, conf_path = sys.argv[1:4]
conf = cnilib.conflist_from_file(conf_path)
cni = cnilib.CNI([bin_dir], cache_dir=cache_dir)
cni.add_network_list(conf, cnilib.RuntimeConf("ctr1", "/run/netns/ctr1", "eth0"))
"""


class TestRuntimeKilledMidAdd:
    @pytest.fixture
    def killed(
        self,
        bin_dir: Path,
        cnilib_cache_dir: Path,
        chain: Chain,
        cnilib_recorder_log: Path,
        tmp_path: Path,
    ) -> cnilib.NetworkConfigList:
        """Run ADD of p0, p1, p2 in a child process and SIGKILL it while p1 runs."""
        conf = chain(3, p1={"ADD": {"sleep": 0.5}})
        conf_path = tmp_path / "net1.conflist"
        conf_path.write_bytes(conf.bytes)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                RUNTIME_SCRIPT,
                str(bin_dir),
                str(cnilib_cache_dir),
                str(conf_path),
            ]
        )
        deadline = time.monotonic() + 10
        while ("ADD", "p1") not in recorded(cnilib_recorder_log):
            assert time.monotonic() < deadline, "p1 never started"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        assert -signal.SIGKILL == proc.wait(10)
        time.sleep(0.7)  # let the orphaned p1 finish on its own
        cnilib_recorder_log.unlink()
        return conf

    def test_leaves_a_complete_pending_entry(
        self, killed: cnilib.NetworkConfigList, cnilib_cache_dir: Path
    ) -> None:
        """Killed mid-ADD: the entry is a complete cniCacheV1 object, pending; no temp files."""
        entry = FileCache(cnilib_cache_dir).load("net1", "ctr1", "eth0")

        assert entry is not None
        assert (True, killed.bytes, "/run/netns/ctr1") == (entry.pending, entry.config, entry.netns)
        assert [] == os.listdir(cnilib_cache_dir / ".cnilib-tmp")

    def test_following_del_cleans_up(
        self,
        killed: cnilib.NetworkConfigList,
        cni: cnilib.CNI,
        cnilib_recorder_log: Path,
        cnilib_cache_dir: Path,
    ) -> None:
        """A DEL after the crash reaches every plugin (no prevResult) and removes the entry."""
        cni.delete_network_list(killed, RT)

        assert [("DEL", "p2"), ("DEL", "p1"), ("DEL", "p0")] == recorded(cnilib_recorder_log)
        assert [None, None, None] == prev_ips(cnilib_recorder_log, "DEL")
        assert [] == os.listdir(cnilib_cache_dir / "results")

    def test_following_gc_cleans_up(
        self,
        killed: cnilib.NetworkConfigList,
        cni: cnilib.CNI,
        cnilib_recorder_log: Path,
        cnilib_cache_dir: Path,
    ) -> None:
        """A GC after the crash DELs the pending attachment and removes the entry."""
        report = cni.gc_network_list(killed, [])

        assert [CacheEntry] == [type(e) for e in report.deleted]
        assert [("DEL", "p2"), ("DEL", "p1"), ("DEL", "p0")] == [
            c for c in recorded(cnilib_recorder_log) if c[0] == "DEL"
        ]
        assert [] == os.listdir(cnilib_cache_dir / "results")


class TestDuplicateAdd:
    """ADD of an attachment that already exists (the spec forbids it; runtimes race
    into it): a failure that undid nothing must not cost the good entry."""

    @staticmethod
    def refuse_second_add(calls: list[str]) -> Callable[[Invocation], bytes]:
        """A mock whose p0 succeeds once, then answers ADD with "already exists"."""

        def handler(invocation: Invocation) -> bytes:
            calls.append(f"{invocation.command.value} {invocation.plugin_type}")
            if invocation.command is Command.ADD and calls.count("ADD p0") > 1:
                raise cnilib.PluginError("eth0 already exists", code=18)
            return answer(invocation)

        return handler

    @pytest.mark.parametrize("rollback", [True, False])
    def test_failing_first_plugin_keeps_the_complete_entry(
        self, tmp_path: Path, rollback: bool
    ) -> None:
        calls: list[str] = []
        cni = cnilib.CNI(
            [],
            cache_dir=tmp_path,
            executor=MockExecutor(self.refuse_second_add(calls)),
            rollback=rollback,
        )
        first = cni.add_network_list(mock_chain(2), RT)

        with pytest.raises(cnilib.PluginError, match="already exists"):
            cni.add_network_list(mock_chain(2), RT)

        entry = FileCache(tmp_path).load("net1", RT.container_id, RT.ifname)
        assert entry is not None
        assert not entry.pending
        assert first == cni.cached_result(mock_chain(2), RT)
        cni.check_network_list(mock_chain(2), RT)  # still checkable: the entry has its result
        assert ["ADD p0", "ADD p1", "ADD p0", "CHECK p0", "CHECK p1"] == calls

    def test_rollback_that_deleted_something_leaves_a_pending_entry(self, tmp_path: Path) -> None:
        """p0 succeeded again and was DELed by the rollback: that DEL may have taken
        the first ADD's state with it, so the old result is no longer trusted."""

        def handler(invocation: Invocation) -> bytes:
            if invocation.command is Command.ADD and invocation.plugin_type == "p1":
                handler.adds += 1  # type: ignore[attr-defined]
                if handler.adds > 1:  # type: ignore[attr-defined]
                    raise cnilib.PluginError("no", code=11)
            return answer(invocation)

        handler.adds = 0  # type: ignore[attr-defined]
        cni = cnilib.CNI([], cache_dir=tmp_path, executor=MockExecutor(handler))
        cni.add_network_list(mock_chain(2), RT)

        with pytest.raises(cnilib.PluginError) as info:
            cni.add_network_list(mock_chain(2), RT)

        assert info.value.rollback is not None
        assert ("p0",) == info.value.rollback.deleted
        entry = FileCache(tmp_path).load("net1", RT.container_id, RT.ifname)
        assert entry is not None
        assert entry.pending
