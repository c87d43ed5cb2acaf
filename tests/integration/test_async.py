"""AsyncCNI against real plugin processes: every method, the concurrency limit,
and cancellation (process group killed, ADD rolled back, DEL's entry kept)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.cache import FileCache
from cnilib.invoke import Command, Invocation
from cnilib.testing import MockExecutor, read_recording

Conf = Callable[..., cnilib.NetworkConfigList]

RT = cnilib.RuntimeConf(container_id="ctr1", netns="/run/netns/ctr1", ifname="eth0")

RESULT_A = {
    "cniVersion": "1.1.0",
    "interfaces": [{"name": "eth0", "sandbox": "/run/netns/ctr1"}],
    "ips": [{"address": "10.250.0.5/24", "gateway": "10.250.0.1", "interface": 0}],
}

# A plugin that logs when each call starts and ends (the recorder logs no times),
# and can hang on chosen verbs after writing its pid (exec'ing sleep keeps that pid).
PROBE_SOURCE = r"""
import json, os, sys, time
verb = os.environ.get("CNI_COMMAND", "")
raw = sys.stdin.read()
try:
    conf = json.loads(raw)
except ValueError:
    conf = {}
probe = conf.get("probe", {}) if isinstance(conf, dict) else {}

def log(event):
    line = json.dumps({
        "event": event, "verb": verb, "t": time.monotonic(), "pid": os.getpid(),
        "ppid": os.getppid(), "tag": conf.get("tag"), "cid": os.environ.get("CNI_CONTAINERID"),
        "ifname": os.environ.get("CNI_IFNAME"), "prev": conf.get("prevResult"),
    }) + "\n"
    fd = os.open(probe["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, line.encode())
    os.close(fd)

if verb == "VERSION":
    print(json.dumps({"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}))
    sys.exit(0)
log("start")
if verb in probe.get("hang", []):
    with open(probe["pidfile"], "w") as handle:
        handle.write(str(os.getpid()))
    os.execv("/bin/sleep", ["sleep", "60"])
time.sleep(float(probe.get("sleep", {}).get(verb, 0)))
log("end")
if verb == "ADD":
    out = conf.get("prevResult") or {
        "cniVersion": conf.get("cniVersion", "1.1.0"),
        "ips": [{"address": probe.get("ip", "10.1.0.2/24")}],
    }
    sys.stdout.write(json.dumps(out))
"""


def install_probe(bin_dir: Path, name: str = "probe") -> Path:
    """Write the probe plugin into ``bin_dir``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!{sys.executable} -IS\n{PROBE_SOURCE}")
    path.chmod(0o755)
    return path


def probe_log(log: Path) -> list[dict[str, Any]]:
    """The probe's log lines, oldest first."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


def intervals(log: Path) -> list[tuple[float, float, dict[str, Any]]]:
    """(start, end, start record) of every probe call that finished, by start time."""
    records = probe_log(log)
    ends = {r["pid"]: r["t"] for r in records if r["event"] == "end"}
    found = [(r["t"], ends[r["pid"]], r) for r in records if r["event"] == "start"]
    return sorted(found, key=lambda item: item[0])


def peak_overlap(spans: list[tuple[float, float, dict[str, Any]]]) -> int:
    """The largest number of spans running at one instant."""
    events = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def has_content(path: Path) -> bool:
    """``path`` exists and is not empty."""
    return path.exists() and path.stat().st_size > 0


async def wait_for_file(path: Path) -> None:
    """Poll until ``path`` exists and is non-empty (at most 10 s)."""
    async with asyncio.timeout(10):
        while not has_content(path):  # noqa: ASYNC110 - written by another process
            await asyncio.sleep(0.01)


async def cancel_once_written(task: asyncio.Task[Any], pid_file: Path) -> int:
    """Wait until a hanging plugin wrote *pid_file*, cancel *task* (it must raise
    CancelledError), and return the pid the file names."""
    await wait_for_file(pid_file)
    pid = int(await asyncio.to_thread(pid_file.read_text))

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return pid


def chain(*types: str) -> cnilib.NetworkConfigList:
    """A 1.1.0 list "net1" of plugins of the given types (for MockExecutor)."""
    plugins = [{"type": t} for t in types]
    doc = {"cniVersion": "1.1.0", "name": "net1", "plugins": plugins}
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


def calls(log: Path, verb: str | None = None) -> list[dict[str, Any]]:
    """The recorder's invocations, optionally of one verb."""
    return [c for c in read_recording(log) if verb is None or c["verb"] == verb]


def tagged(log: Path) -> list[tuple[str, str, bool]]:
    """(verb, tag, has prevResult) of every recorded non-VERSION call."""
    return [
        (c["verb"], c["stdin"].get("tag", ""), "prevResult" in c["stdin"])
        for c in calls(log)
        if c["verb"] != "VERSION"
    ]


def process_gone(pid: int, within: float = 5.0) -> bool:
    """Whether ``pid`` is gone within ``within`` seconds (a zombie counts: it runs nothing)."""
    deadline = time.monotonic() + within
    while True:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


@pytest.fixture
def make_conf(cnilib_recorder_log: Path) -> Conf:
    """Build a conflist of recorder plugins; each dict is merged into one plugin entry."""

    def make(
        *plugins: dict[str, Any], version: str = "1.1.0", name: str = "net1", **top: Any
    ) -> cnilib.NetworkConfigList:
        entries = []
        for extra in plugins or ({},):
            extra = dict(extra)
            recorder = {"log": str(cnilib_recorder_log), **extra.pop("recorder", {})}
            entries.append({"type": "recorder", "recorder": recorder, **extra})
        doc = {"cniVersion": version, "name": name, "plugins": entries, **top}
        return cnilib.conflist_from_bytes(json.dumps(doc).encode())

    return make


@pytest.fixture
def acni(cnilib_cni_bin_dir: Path, cnilib_cache_dir: Path) -> cnilib.AsyncCNI:
    """An AsyncCNI whose CNI_PATH holds the recorder, caching into a tmp dir."""
    return cnilib.AsyncCNI([str(cnilib_cni_bin_dir)], cache_dir=cnilib_cache_dir, timeout=20)


def entry_path(cache_dir: Path, name: str = "net1-ctr1-eth0") -> Path:
    return cache_dir / "results" / name


class TestMethods:
    @pytest.mark.asyncio
    async def test_add_check_delete_round_trip(
        self,
        acni: cnilib.AsyncCNI,
        make_conf: Conf,
        cnilib_recorder_log: Path,
        cnilib_cache_dir: Path,
    ) -> None:
        """ADD threads prevResult and caches; CHECK and DEL get the cached result; DEL reverses."""
        conf = make_conf({"tag": "a", "recorder": {"ADD": {"result": RESULT_A}}}, {"tag": "b"})

        result = await acni.add_network_list(conf, RT)
        await acni.check_network_list(conf, RT)
        cached = await acni.cached_result(conf, RT)
        config = await acni.cached_config(conf, RT)
        attachments = await acni.cached_attachments("ctr1")
        await acni.delete_network_list(conf, RT)

        assert [
            ("ADD", "a", False),
            ("ADD", "b", True),
            ("CHECK", "a", True),
            ("CHECK", "b", True),
            ("DEL", "b", True),
            ("DEL", "a", True),
        ] == tagged(cnilib_recorder_log)
        assert result is not None
        assert cached is not None
        assert result.to_json() == cached.to_json()
        assert "10.250.0.5/24" == json.loads(result.to_json())["ips"][0]["address"]
        assert config is not None
        assert (conf.bytes, RT) == config
        assert [("net1", "ctr1", "eth0")] == [
            (e.network_name, e.container_id, e.ifname) for e in attachments
        ]
        assert not entry_path(cnilib_cache_dir).exists()
        assert await acni.cached_result(conf, RT) is None

    @pytest.mark.asyncio
    async def test_gc_status_validate_version(
        self,
        acni: cnilib.AsyncCNI,
        make_conf: Conf,
        cnilib_recorder_log: Path,
        cnilib_cache_dir: Path,
    ) -> None:
        """GC deletes what is not kept and sends GC; STATUS, validate and VERSION answer."""
        conf = make_conf({"capabilities": {"portMappings": True}, "tag": "a"})
        other = cnilib.RuntimeConf("ctr2", "/run/netns/ctr2", "eth0")
        await acni.add_network_list(conf, RT)
        await acni.add_network_list(conf, other)

        report = await acni.gc_network_list(conf, [("ctr1", "eth0")])
        await acni.status_network_list(conf)
        capabilities = await acni.validate_network_list(conf)
        info = await acni.get_version_info("recorder")

        assert [("ctr2", "eth0")] == [(e.container_id, e.ifname) for e in report.deleted]
        assert report.plugins_gc
        (gc_call,) = calls(cnilib_recorder_log, "GC")
        assert [{"containerID": "ctr1", "ifname": "eth0"}] == gc_call["stdin"][
            "cni.dev/valid-attachments"
        ]
        assert ["ADD", "ADD", "DEL", "GC", "STATUS"] == [
            c["verb"] for c in calls(cnilib_recorder_log) if c["verb"] != "VERSION"
        ]
        assert ["net1-ctr1-eth0"] == os.listdir(cnilib_cache_dir / "results")
        assert ("portMappings",) == capabilities
        assert "1.1.0" in info.supported_versions

    @pytest.mark.asyncio
    async def test_status_not_ready(self, acni: cnilib.AsyncCNI, make_conf: Conf) -> None:
        """STATUS raises the plugin's code-50 error with the plugin named."""
        conf = make_conf({"recorder": {"STATUS": {"error": {"code": 50, "msg": "no ipam"}}}})

        with pytest.raises(cnilib.PluginNotAvailableError) as info:
            await acni.status_network_list(conf)

        assert 'plugin type="recorder" failed (status): no ipam' == str(info.value)
        assert 50 == info.value.code

    @pytest.mark.asyncio
    async def test_single_plugin_api(
        self, acni: cnilib.AsyncCNI, cnilib_recorder_log: Path, cnilib_cache_dir: Path
    ) -> None:
        """add/check/delete_network use the plugin's own name and version; errors are bare."""
        plugin = cnilib.conf_from_bytes(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "solo",
                    "type": "recorder",
                    "recorder": {
                        "log": str(cnilib_recorder_log),
                        "CHECK": {"error": {"msg": "nope"}},
                    },
                }
            ).encode()
        )

        result = await acni.add_network(plugin, RT)
        cached = await acni.cached_network_result(plugin, RT)
        with pytest.raises(cnilib.PluginError) as info:
            await acni.check_network(plugin, RT)
        await acni.delete_network(plugin, RT)

        assert result is not None
        assert cached is not None
        assert result.to_json() == cached.to_json()
        assert "nope" == str(info.value)
        assert ["ADD", "CHECK", "DEL"] == [c["verb"] for c in calls(cnilib_recorder_log)]
        assert "solo" == calls(cnilib_recorder_log)[0]["stdin"]["name"]
        assert [] == os.listdir(cnilib_cache_dir / "results")

    @pytest.mark.asyncio
    async def test_multi_network_methods(
        self, acni: cnilib.AsyncCNI, make_conf: Conf, cnilib_recorder_log: Path
    ) -> None:
        """setup_networks, check_networks and teardown_networks run each network's chain."""
        nets = [make_conf(name="neta"), make_conf(name="netb")]

        attached = await acni.setup_networks("ctr1", "/run/netns/ctr1", nets)
        await acni.check_networks("ctr1", "/run/netns/ctr1", nets)
        await acni.teardown_networks("ctr1", "/run/netns/ctr1", nets)

        assert [("neta", "eth0"), ("netb", "eth1")] == [(a.network, a.ifname) for a in attached]
        assert [
            ("ADD", "eth0"),
            ("ADD", "eth1"),
            ("CHECK", "eth0"),
            ("CHECK", "eth1"),
            ("DEL", "eth1"),
            ("DEL", "eth0"),
        ] == [(c["verb"], c["env"]["CNI_IFNAME"]) for c in calls(cnilib_recorder_log)]

    @pytest.mark.asyncio
    async def test_timeout_kills_and_rolls_back(
        self,
        cnilib_cni_bin_dir: Path,
        cnilib_cache_dir: Path,
        make_conf: Conf,
        cnilib_recorder_log: Path,
    ) -> None:
        """A hung second plugin times out; both plugins get DEL; no cache entry is left."""
        acni = cnilib.AsyncCNI([str(cnilib_cni_bin_dir)], cache_dir=cnilib_cache_dir, timeout=0.5)
        conf = make_conf({"tag": "a"}, {"tag": "b", "recorder": {"ADD": {"sleep": 30}}})
        started = time.monotonic()

        with pytest.raises(cnilib.PluginTimeoutError) as info:
            await acni.add_network_list(conf, RT)

        assert time.monotonic() - started < 10
        assert [
            ("ADD", "a", False),
            ("ADD", "b", True),
            ("DEL", "b", True),
            ("DEL", "a", True),
        ] == tagged(cnilib_recorder_log)
        assert info.value.rollback is not None
        assert ("recorder", "recorder") == info.value.rollback.deleted
        assert not entry_path(cnilib_cache_dir).exists()


class TestConcurrencyLimit:
    @pytest.mark.asyncio
    @pytest.mark.parametrize(("limit", "expected_peak"), [(2, 2), (None, 6)])
    async def test_bounds_real_plugin_processes(
        self, tmp_path: Path, cnilib_cache_dir: Path, limit: int | None, expected_peak: int
    ) -> None:
        """With max_concurrency=N at most N plugin processes run at once (N without a limit)."""
        bin_dir = tmp_path / "bin"
        install_probe(bin_dir)
        log = tmp_path / "probe.jsonl"
        doc = {
            "cniVersion": "1.1.0",
            "name": "net1",
            "plugins": [{"type": "probe", "probe": {"log": str(log), "sleep": {"ADD": 0.4}}}],
        }
        conf = cnilib.conflist_from_bytes(json.dumps(doc).encode())
        acni = cnilib.AsyncCNI([str(bin_dir)], cache_dir=cnilib_cache_dir, max_concurrency=limit)

        await asyncio.gather(
            *(
                acni.add_network_list(conf, cnilib.RuntimeConf(f"c{i}", "/x", "eth0"))
                for i in range(6)
            )
        )

        spans = intervals(log)
        assert 6 == len(spans)
        assert expected_peak == peak_overlap(spans)

    @pytest.mark.asyncio
    @pytest.mark.parametrize("limit", [1, 3])
    async def test_bounds_concurrent_calls(self, cnilib_cache_dir: Path, limit: int) -> None:
        """An async handler never sees more than max_concurrency calls in flight."""
        current = peak = 0

        async def handler(invocation: Invocation) -> bytes:
            nonlocal current, peak
            current += 1
            peak = max(peak, current)
            await asyncio.sleep(0.01)
            current -= 1
            return b'{"cniVersion":"1.1.0"}' if invocation.command is Command.ADD else b""

        conf = chain("a", "b")
        acni = cnilib.AsyncCNI(
            [], cache_dir=cnilib_cache_dir, executor=MockExecutor(handler), max_concurrency=limit
        )
        rts = [cnilib.RuntimeConf(f"c{i}", "/x", "eth0") for i in range(12)]

        await asyncio.gather(*(acni.add_network_list(conf, rt) for rt in rts))
        await asyncio.gather(*(acni.delete_network_list(conf, rt) for rt in rts))

        assert limit == peak
        assert 0 == current

    @pytest.mark.parametrize("limit", [0, -1])
    def test_limit_below_one_is_refused(self, cnilib_cache_dir: Path, limit: int) -> None:
        """max_concurrency must be at least 1 (None for no limit)."""
        with pytest.raises(cnilib.InvalidArgumentError):
            cnilib.AsyncCNI([], cache_dir=cnilib_cache_dir, max_concurrency=limit)

    def test_one_runtime_serves_successive_event_loops(self, cnilib_cache_dir: Path) -> None:
        """A limited AsyncCNI keeps working when used from a second event loop."""

        async def handler(invocation: Invocation) -> bytes:
            await asyncio.sleep(0.01)
            return b'{"cniVersion":"1.1.0"}' if invocation.command is Command.ADD else b""

        mock = MockExecutor(handler)
        acni = cnilib.AsyncCNI([], cache_dir=cnilib_cache_dir, executor=mock, max_concurrency=1)

        async def burst(prefix: str) -> None:
            await asyncio.gather(
                *(
                    acni.add_network_list(
                        chain("a"), cnilib.RuntimeConf(f"{prefix}{i}", "/x", "eth0")
                    )
                    for i in range(3)
                )
            )

        asyncio.run(burst("first"))
        asyncio.run(burst("second"))  # the limit must not be bound to the first loop

        assert 6 == len(mock.invocations)


class TestCancellation:
    @pytest.fixture
    def hang_conf(
        self, tmp_path: Path, cnilib_cni_bin_dir: Path, cnilib_recorder_log: Path
    ) -> Conf:
        """A factory: recorder "a", recorder "b", then the probe hanging on the given verbs."""
        install_probe(cnilib_cni_bin_dir)

        def make(*hang: str) -> cnilib.NetworkConfigList:
            probe = {
                "log": str(tmp_path / "probe.jsonl"),
                "hang": list(hang),
                "pidfile": str(tmp_path / "pid"),
            }
            rec = {"log": str(cnilib_recorder_log), "ADD": {"result": RESULT_A}}
            doc = {
                "cniVersion": "1.1.0",
                "name": "net1",
                "plugins": [
                    {"type": "recorder", "tag": "a", "recorder": rec},
                    {"type": "recorder", "tag": "b", "recorder": {"log": str(cnilib_recorder_log)}},
                    {"type": "probe", "tag": "p", "probe": probe},
                ],
            }
            return cnilib.conflist_from_bytes(json.dumps(doc).encode())

        return make

    @pytest.mark.asyncio
    async def test_cancel_add_kills_plugin_and_rolls_back(
        self,
        acni: cnilib.AsyncCNI,
        hang_conf: Conf,
        tmp_path: Path,
        cnilib_recorder_log: Path,
        cnilib_cache_dir: Path,
    ) -> None:
        """Cancelling ADD in plugin 3 kills it, DELs plugins 3, 2, 1 (own results); no entry."""
        conf = hang_conf("ADD")
        task = asyncio.create_task(acni.add_network_list(conf, RT))

        pid = await cancel_once_written(task, tmp_path / "pid")

        assert process_gone(pid)
        assert [
            ("ADD", "a", False),
            ("ADD", "b", True),
            ("DEL", "b", True),
            ("DEL", "a", True),
        ] == tagged(cnilib_recorder_log)
        dels = calls(cnilib_recorder_log, "DEL")
        assert [RESULT_A["ips"], RESULT_A["ips"]] == [d["stdin"]["prevResult"]["ips"] for d in dels]
        probe_calls = [(r["event"], r["verb"]) for r in probe_log(tmp_path / "probe.jsonl")]
        assert [("start", "ADD"), ("start", "DEL"), ("end", "DEL")] == probe_calls
        assert [] == os.listdir(cnilib_cache_dir / "results")

    @pytest.mark.asyncio
    async def test_cancel_kills_the_plugins_whole_process_group(
        self,
        acni: cnilib.AsyncCNI,
        cnilib_cni_bin_dir: Path,
        tmp_path: Path,
        cnilib_cache_dir: Path,
    ) -> None:
        """A plugin's own child (same process group) dies with it when ADD is cancelled."""
        pid_file = tmp_path / "grandchild"
        plugin = cnilib_cni_bin_dir / "forker"
        plugin.write_text(
            "#!/bin/sh\ncat >/dev/null\n"
            f'if [ "$CNI_COMMAND" = ADD ]; then sleep 60 & echo $! > {pid_file}; wait; fi\n'
        )
        plugin.chmod(0o755)
        doc = {"cniVersion": "1.1.0", "name": "net1", "plugins": [{"type": "forker"}]}
        conf = cnilib.conflist_from_bytes(json.dumps(doc).encode())
        task = asyncio.create_task(acni.add_network_list(conf, RT))

        grandchild = await cancel_once_written(task, pid_file)

        assert process_gone(grandchild)
        assert [] == os.listdir(cnilib_cache_dir / "results")

    @pytest.mark.asyncio
    async def test_caller_deadline_rolls_back(
        self, acni: cnilib.AsyncCNI, hang_conf: Conf, tmp_path: Path, cnilib_cache_dir: Path
    ) -> None:
        """asyncio.timeout around ADD: TimeoutError after the rollback, plugin killed, no entry."""
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await acni.add_network_list(hang_conf("ADD"), RT)

        assert process_gone(int((tmp_path / "pid").read_text()))
        verbs = [(r["event"], r["verb"]) for r in probe_log(tmp_path / "probe.jsonl")]
        assert [("start", "ADD"), ("start", "DEL"), ("end", "DEL")] == verbs
        assert [] == os.listdir(cnilib_cache_dir / "results")

    @pytest.mark.asyncio
    async def test_cancel_delete_keeps_entry(
        self,
        acni: cnilib.AsyncCNI,
        hang_conf: Conf,
        tmp_path: Path,
        cnilib_recorder_log: Path,
        cnilib_cache_dir: Path,
    ) -> None:
        """Cancelling DEL kills the plugin and keeps the cache entry for a retry."""
        conf = hang_conf("DEL")
        await acni.add_network_list(conf, RT)
        before = entry_path(cnilib_cache_dir).read_bytes()
        task = asyncio.create_task(acni.delete_network_list(conf, RT))

        pid = await cancel_once_written(task, tmp_path / "pid")

        assert process_gone(pid)
        assert before == entry_path(cnilib_cache_dir).read_bytes()
        assert [] == calls(cnilib_recorder_log, "DEL")  # DEL stopped at the probe (it runs first)
        cached = await acni.cached_result(conf, RT)
        assert cached is not None

    @staticmethod
    def _gated(
        cache_dir: Path, hangs: Callable[[Invocation], bool], seconds: float = 60
    ) -> tuple[cnilib.AsyncCNI, MockExecutor, asyncio.Event]:
        """A mock AsyncCNI (ADD answers an empty 1.1.0 result) whose calls for which *hangs*
        holds set ``gate``, then sleep *seconds*."""
        gate = asyncio.Event()

        async def handler(invocation: Invocation) -> bytes:
            if hangs(invocation):
                gate.set()
                await asyncio.sleep(seconds)
            return b'{"cniVersion":"1.1.0"}' if invocation.command is Command.ADD else b""

        mock = MockExecutor(handler)
        return cnilib.AsyncCNI([], cache_dir=cache_dir, executor=mock), mock, gate

    @staticmethod
    def _is_del(invocation: Invocation) -> bool:
        """Whether *invocation* is a DEL."""
        return invocation.command is Command.DEL

    @staticmethod
    async def _cancel_at_gate(
        task: asyncio.Task[Any], gate: asyncio.Event, *, times: int = 1, within: float = 10
    ) -> None:
        """Cancel *task* each time one of *times* hanging calls starts (``gate`` set, then
        cleared); then it must raise CancelledError within *within* seconds."""
        for _ in range(times):
            await asyncio.wait_for(gate.wait(), 5)
            gate.clear()
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, within)

    @classmethod
    async def _cancel_gc_in_del(cls, acni: cnilib.AsyncCNI, started: asyncio.Event) -> None:
        """GC chain a keeping nothing; cancel it once a stale DEL started."""
        task = asyncio.create_task(acni.gc_network_list(chain("a"), []))
        await cls._cancel_at_gate(task, started)

    @pytest.mark.asyncio
    async def test_cancel_gc_keeps_the_entry_being_deleted(self, cnilib_cache_dir: Path) -> None:
        """GC cancelled in a stale DEL: that plugin is stopped and its entry kept for later."""
        acni, _, started = self._gated(cnilib_cache_dir, self._is_del)
        await acni.add_network_list(chain("a"), RT)

        await self._cancel_gc_in_del(acni, started)

        assert ["ctr1"] == [e.container_id for e in await acni.cached_attachments()]

    @pytest.mark.asyncio
    async def test_cancel_gc_stops_it(self, cnilib_cache_dir: Path) -> None:
        """GC cancelled in its first stale DEL runs no further DEL and no GC verb."""
        acni, mock, started = self._gated(cnilib_cache_dir, self._is_del, 0.2)
        for cid in ("c0", "c1", "c2"):
            await acni.add_network_list(chain("a"), cnilib.RuntimeConf(cid, "/x", "eth0"))
        mock.invocations.clear()

        await self._cancel_gc_in_del(acni, started)

        assert [("DEL", "c0")] == [(i.command.value, i.container_id) for i in mock.invocations]
        assert ["c0", "c1", "c2"] == [e.container_id for e in await acni.cached_attachments()]

    @pytest.mark.asyncio
    async def test_cancel_while_waiting_for_lock(
        self,
        acni: cnilib.AsyncCNI,
        make_conf: Conf,
        cnilib_recorder_log: Path,
        cnilib_cache_dir: Path,
    ) -> None:
        """An ADD cancelled while another holds the attachment's lock runs no plugin."""
        conf = make_conf()
        assert acni.locks is not None
        with acni.locks.hold("net1", ("ctr1", "eth0")):
            task = asyncio.create_task(acni.add_network_list(conf, RT))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        assert [] == calls(cnilib_recorder_log)
        assert not entry_path(cnilib_cache_dir).exists()
        await acni.add_network_list(conf, RT)  # the lock was released
        assert ["ADD"] == [c["verb"] for c in calls(cnilib_recorder_log)]

    @classmethod
    def _doubly_cancellable(
        cls, cache_dir: Path
    ) -> tuple[cnilib.AsyncCNI, MockExecutor, asyncio.Event]:
        """A chain a, b, c whose ADD of c and DEL of b hang; ``gate`` is set when one starts."""
        return cls._gated(
            cache_dir,
            lambda i: (i.command.value, i.plugin_type) in (("ADD", "c"), ("DEL", "b")),
        )

    @classmethod
    async def _cancel_twice(cls, acni: cnilib.AsyncCNI, gate: asyncio.Event) -> None:
        """ADD, cancel it in c's ADD, then cancel it again in the rollback's DEL of b."""
        task = asyncio.create_task(acni.add_network_list(chain("a", "b", "c"), RT))
        await cls._cancel_at_gate(task, gate, times=2, within=5)

    @pytest.mark.asyncio
    async def test_second_cancel_keeps_pending_entry_for_del(self, cnilib_cache_dir: Path) -> None:
        """A second cancellation during the rollback leaves a pending entry that DEL cleans."""
        acni, mock, gate = self._doubly_cancellable(cnilib_cache_dir)
        await self._cancel_twice(acni, gate)

        entry = FileCache(cnilib_cache_dir).load("net1", "ctr1", "eth0")
        assert entry is not None
        assert entry.pending
        mock.handler = lambda inv: b""
        mock.invocations.clear()
        conf = cnilib.conflist_from_bytes(entry.config)
        await acni.delete_network_list(conf, RT)
        assert [("DEL", "c"), ("DEL", "b"), ("DEL", "a")] == [
            (i.command.value, i.plugin_type) for i in mock.invocations
        ]
        assert all(b"prevResult" not in i.stdin for i in mock.invocations)
        assert FileCache(cnilib_cache_dir).load("net1", "ctr1", "eth0") is None

    @pytest.mark.asyncio
    async def test_second_cancel_abandons_rollback(self, cnilib_cache_dir: Path) -> None:
        """A second cancellation during the rollback stops it: no further DEL runs."""
        acni, mock, gate = self._doubly_cancellable(cnilib_cache_dir)

        await self._cancel_twice(acni, gate)

        assert [
            ("ADD", "a"),
            ("ADD", "b"),
            ("ADD", "c"),
            ("DEL", "c"),
            ("DEL", "b"),
        ] == [(i.command.value, i.plugin_type) for i in mock.invocations]

    @pytest.mark.asyncio
    async def test_cancelled_error_carries_operation_cancelled_context(
        self, cnilib_cache_dir: Path
    ) -> None:
        """Inside the task, the CancelledError's context is the OperationCancelledError."""

        async def handler(invocation: Invocation) -> bytes:
            if invocation.command is Command.ADD:
                await asyncio.sleep(60)
            return b""

        acni = cnilib.AsyncCNI([], cache_dir=cnilib_cache_dir, executor=MockExecutor(handler))
        conf = chain("a")
        seen: list[BaseException | None] = []

        async def add() -> None:
            try:
                await acni.add_network_list(conf, RT)
            except asyncio.CancelledError as exc:
                seen.append(exc.__context__)
                raise

        task = asyncio.create_task(add())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert 1 == len(seen)
        assert isinstance(seen[0], cnilib.OperationCancelledError)
