"""File locks across processes, threads and tasks: one attachment is never worked on
twice at once, different attachments run in parallel, GC of a network excludes
ADD/DEL on it (both ways), and many mixed operations never deadlock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.invoke import Command, Invocation
from cnilib.testing import MockExecutor

# A plugin that logs when each call starts and ends, and sleeps per verb.
STAMP_SOURCE = r"""
import json, os, sys, time
verb = os.environ.get("CNI_COMMAND", "")
conf = json.loads(sys.stdin.read() or "{}")
stamp = conf.get("stamp", {})

def log(event):
    line = json.dumps({
        "event": event, "verb": verb, "t": time.monotonic(), "pid": os.getpid(),
        "ppid": os.getppid(), "cid": os.environ.get("CNI_CONTAINERID"),
        "ifname": os.environ.get("CNI_IFNAME"),
    }) + "\n"
    fd = os.open(stamp["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, line.encode())
    os.close(fd)

log("start")
time.sleep(float(stamp.get("sleep", {}).get(verb, 0)))
log("end")
if verb == "ADD":
    sys.stdout.write(json.dumps(conf.get("prevResult") or {
        "cniVersion": conf["cniVersion"], "ips": [{"address": "10.1.0.2/24"}]}))
"""

# A runtime process: waits for "go" on stdin, then runs its operations.
RUNTIME_SCRIPT = r"""
import sys, cnilib
bin_dir, cache_dir, conf_path, ops, cid, ifname = sys.argv[1:7]
conf = cnilib.conflist_from_file(conf_path)
cni = cnilib.CNI([bin_dir], cache_dir=cache_dir)
rt = cnilib.RuntimeConf(cid, "/run/netns/" + cid, ifname)
print("ready", flush=True)
sys.stdin.readline()
for op in ops.split(","):
    if op == "add":
        cni.add_network_list(conf, rt)
    elif op == "del":
        cni.delete_network_list(conf, rt)
    elif op == "gc":
        cni.gc_network_list(conf, [(cid, ifname)])
print("done", flush=True)
"""

Span = tuple[float, float, dict[str, Any]]


def install_stamp(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "stamp"
    path.write_text(f"#!{sys.executable} -IS\n{STAMP_SOURCE}")
    path.chmod(0o755)


def spans(log: Path) -> list[Span]:
    """(start, end, start record) of every finished plugin call, by start time."""
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    ends = {r["pid"]: r["t"] for r in records if r["event"] == "end"}
    found = [(r["t"], ends[r["pid"]], r) for r in records if r["event"] == "start"]
    return sorted(found, key=lambda s: s[0])


def started(log: Path, verb: str) -> bool:
    """Some call of ``verb`` has logged its start."""
    if not log.exists():
        return False
    records = [json.loads(line) for line in log.read_text().splitlines() if line.endswith("}")]
    return any((r["event"], r["verb"]) == ("start", verb) for r in records)


def overlapping(found: list[Span]) -> list[tuple[str, str]]:
    """Pairs of calls (verb@ppid) whose intervals overlap."""
    pairs = []
    for i, (s1, e1, r1) in enumerate(found):
        for s2, e2, r2 in found[i + 1 :]:
            if s2 < e1 and s1 < e2:
                pairs.append((f"{r1['verb']}@{r1['ppid']}", f"{r2['verb']}@{r2['ppid']}"))
    return pairs


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)


class Env:
    """A stamp plugin on a tmp CNI_PATH, a shared cache, and a conflist file."""

    def __init__(self, tmp_path: Path, sleep: dict[str, float], version: str = "1.1.0") -> None:
        self.bin_dir = tmp_path / "bin"
        install_stamp(self.bin_dir)
        self.cache_dir = tmp_path / "cache"
        self.log = tmp_path / "stamp.jsonl"
        doc = {
            "cniVersion": version,
            "name": "net1",
            "plugins": [{"type": "stamp", "stamp": {"log": str(self.log), "sleep": sleep}}],
        }
        self.conf_path = tmp_path / "net1.conflist"
        self.conf_path.write_text(json.dumps(doc))
        self.conf = cnilib.conflist_from_file(str(self.conf_path))

    def cni(self) -> cnilib.CNI:
        return cnilib.CNI([str(self.bin_dir)], cache_dir=self.cache_dir)

    def acni(self) -> cnilib.AsyncCNI:
        return cnilib.AsyncCNI([str(self.bin_dir)], cache_dir=self.cache_dir)

    def spawn(self, ops: str, cid: str = "ctr1", ifname: str = "eth0") -> subprocess.Popen[str]:
        """Start a runtime process and wait until it is ready (imports done)."""
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                RUNTIME_SCRIPT,
                str(self.bin_dir),
                str(self.cache_dir),
                str(self.conf_path),
                ops,
                cid,
                ifname,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert "ready\n" == proc.stdout.readline()
        return proc


def release(*procs: subprocess.Popen[str]) -> None:
    """Let the waiting runtime processes go, all at once."""
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def finish(*procs: subprocess.Popen[str]) -> None:
    """Wait for each runtime process to succeed."""
    for proc in procs:
        out, _ = proc.communicate(timeout=30)
        assert ("done\n", 0) == (out, proc.returncode)


def go(*procs: subprocess.Popen[str]) -> None:
    release(*procs)
    finish(*procs)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Runtime processes a test started; killed if still running at teardown."""
    started_procs: list[subprocess.Popen[str]] = []
    yield started_procs
    for proc in started_procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class TestAcrossProcesses:
    def test_same_attachment_is_serialized(
        self, tmp_path: Path, processes: list[subprocess.Popen[str]]
    ) -> None:
        """Two processes doing ADD then DEL on one attachment never run plugins at once."""
        env = Env(tmp_path, {"ADD": 0.3, "DEL": 0.1})
        processes += [env.spawn("add,del"), env.spawn("add,del")]

        go(*processes)

        found = spans(env.log)
        assert Counter({"ADD": 2, "DEL": 2}) == Counter(s[2]["verb"] for s in found)
        assert {p.pid for p in processes} == {s[2]["ppid"] for s in found}
        assert [] == overlapping(found)

    def test_different_attachments_run_in_parallel(
        self, tmp_path: Path, processes: list[subprocess.Popen[str]]
    ) -> None:
        """Two processes on different attachments do overlap: the lock is not global."""
        env = Env(tmp_path, {"ADD": 0.5})
        processes += [env.spawn("add", "ctr1"), env.spawn("add", "ctr2")]

        go(*processes)

        found = spans(env.log)
        assert 2 == len(found)
        assert 1 == len(overlapping(found))

    def test_gc_waits_for_an_add_in_flight(
        self, tmp_path: Path, processes: list[subprocess.Popen[str]]
    ) -> None:
        """GC of the network (in this process) starts only after another process's ADD ended."""
        env = Env(tmp_path, {"ADD": 0.5})
        processes.append(env.spawn("add"))
        release(*processes)
        wait_until(lambda: started(env.log, "ADD"))

        env.cni().gc_network_list(env.conf, [("ctr1", "eth0")])
        finish(*processes)

        (add, gc) = spans(env.log)
        assert ("ADD", "GC") == (add[2]["verb"], gc[2]["verb"])
        assert gc[0] >= add[1]

    def test_add_waits_for_a_gc_in_flight(
        self, tmp_path: Path, processes: list[subprocess.Popen[str]]
    ) -> None:
        """An ADD (in this process) starts only after another process's GC of the network ended."""
        env = Env(tmp_path, {"GC": 0.5})
        processes.append(env.spawn("gc"))
        release(*processes)
        wait_until(lambda: started(env.log, "GC"))

        env.cni().add_network_list(env.conf, cnilib.RuntimeConf("ctr9", "/x", "eth0"))
        finish(*processes)

        (gc, add) = spans(env.log)
        assert ("GC", "ADD") == (gc[2]["verb"], add[2]["verb"])
        assert add[0] >= gc[1]


class TestThreadsAndTasks:
    def test_threads_on_one_attachment_are_serialized(self, tmp_path: Path) -> None:
        """Threads of one process (separate CNI objects or one) exclude each other."""
        env = Env(tmp_path, {"ADD": 0.2})
        shared = env.cni()
        runtimes = [shared, shared, env.cni()]
        rt = cnilib.RuntimeConf("ctr1", "/x", "eth0")
        threads = [
            threading.Thread(target=r.add_network_list, args=(env.conf, rt)) for r in runtimes
        ]

        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

        found = spans(env.log)
        assert 3 == len(found)
        assert [] == overlapping(found)

    def test_threads_on_different_attachments_overlap(self, tmp_path: Path) -> None:
        """Threads on different ifnames of one container run at the same time."""
        env = Env(tmp_path, {"ADD": 0.4})
        cni = env.cni()
        threads = [
            threading.Thread(
                target=cni.add_network_list,
                args=(env.conf, cnilib.RuntimeConf("ctr1", "/x", f"eth{i}")),
            )
            for i in range(2)
        ]

        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

        assert 1 == len(overlapping(spans(env.log)))

    @pytest.mark.asyncio
    async def test_tasks_on_one_attachment_are_serialized(self, tmp_path: Path) -> None:
        """asyncio tasks on one attachment take turns; on others they overlap."""
        env = Env(tmp_path, {"ADD": 0.2, "DEL": 0.2})
        acni = env.acni()
        same = cnilib.RuntimeConf("ctr1", "/x", "eth0")
        other = cnilib.RuntimeConf("ctr2", "/x", "eth0")

        await asyncio.gather(
            acni.add_network_list(env.conf, same),
            acni.delete_network_list(env.conf, same),
            acni.add_network_list(env.conf, same),
        )
        serial = spans(env.log)
        env.log.unlink()
        await asyncio.gather(
            acni.add_network_list(env.conf, same), acni.add_network_list(env.conf, other)
        )

        assert 3 == len(serial)
        assert [] == overlapping(serial)
        assert 1 == len(overlapping(spans(env.log)))

    @pytest.mark.asyncio
    async def test_task_gc_and_add_exclude_each_other(self, tmp_path: Path) -> None:
        """A task's GC waits for an ADD task in flight, and an ADD task waits for a GC."""
        env = Env(tmp_path, {"ADD": 0.2, "GC": 0.2})
        acni = env.acni()
        keep = [("ctr1", "eth0"), ("ctr2", "eth0")]

        async def later(delay: float, call: Awaitable[object]) -> None:
            await asyncio.sleep(delay)
            await call

        await asyncio.gather(
            acni.add_network_list(env.conf, cnilib.RuntimeConf("ctr1", "/x", "eth0")),
            later(0.05, acni.gc_network_list(env.conf, keep)),
        )
        await asyncio.gather(
            acni.gc_network_list(env.conf, keep),
            later(0.05, acni.add_network_list(env.conf, cnilib.RuntimeConf("ctr2", "/x", "eth0"))),
        )

        found = spans(env.log)
        assert ["ADD", "GC", "GC", "ADD"] == [s[2]["verb"] for s in found]
        assert [] == overlapping(found)


class Watch:
    """Checks the lock invariants from inside a MockExecutor handler: at most one
    call per attachment at once, and no attachment call while its network's GC runs."""

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.busy: Counter[tuple[str, ...]] = Counter()
        self.violations: list[str] = []
        self.calls = 0

    def enter(self, invocation: Invocation) -> tuple[str, ...]:
        network = json.loads(invocation.stdin)["name"]
        if invocation.command is Command.GC:
            key: tuple[str, ...] = (network,)
        else:
            key = (network, invocation.container_id, invocation.ifname)
        with self.mutex:
            self.calls += 1
            if self.busy[key] or (len(key) == 3 and self.busy[(network,)]):
                self.violations.append(f"{invocation.command.value} {key} overlaps")
            if len(key) == 1 and any(k[0] == network and n for k, n in self.busy.items()):
                self.violations.append(f"GC {network} overlaps {dict(self.busy)}")
            self.busy[key] += 1
        return key

    def leave(self, key: tuple[str, ...]) -> None:
        with self.mutex:
            self.busy[key] -= 1


def reply(invocation: Invocation) -> bytes:
    if invocation.command is Command.ADD:
        return b'{"cniVersion":"1.1.0","ips":[{"address":"10.1.0.2/24"}]}'
    return b""


MIXED_SCRIPT = r"""
import json, random, sys, time, cnilib
from cnilib.testing import MockExecutor
cache_dir, seed = sys.argv[1], int(sys.argv[2])
def handler(inv):
    time.sleep(0.001)
    if inv.command.value == "ADD":
        return b'{"cniVersion":"1.1.0","ips":[{"address":"10.1.0.2/24"}]}'
    return b""
confs = [cnilib.conflist_from_bytes(json.dumps(
    {"cniVersion": "1.1.0", "name": n, "plugins": [{"type": "x"}, {"type": "y"}]}).encode())
    for n in ("neta", "netb")]
cni = cnilib.CNI([], cache_dir=cache_dir, executor=MockExecutor(handler))
rng = random.Random(seed)
for _ in range(40):
    conf = rng.choice(confs)
    rt = cnilib.RuntimeConf(rng.choice(["c1", "c2"]), "/x", rng.choice(["eth0", "eth1"]))
    op = rng.choice(["add", "check", "del", "gc", "setup", "teardown"])
    try:
        if op == "add": cni.add_network_list(conf, rt)
        elif op == "check": cni.check_network_list(conf, rt)
        elif op == "del": cni.delete_network_list(conf, rt)
        elif op == "gc": cni.gc_network_list(conf, [("c1", "eth0")])
        elif op == "setup": cni.setup_networks(rt.container_id, "/x", confs, concurrent=True)
        else: cni.teardown_networks(rt.container_id, "/x", confs, concurrent=True)
    except cnilib.CNIError:
        pass
print("done", flush=True)
"""


class TestNoDeadlock:
    NETS = ("neta", "netb")

    def _confs(self) -> list[cnilib.NetworkConfigList]:
        return [
            cnilib.conflist_from_bytes(
                json.dumps(
                    {"cniVersion": "1.1.0", "name": n, "plugins": [{"type": "x"}, {"type": "y"}]}
                ).encode()
            )
            for n in self.NETS
        ]

    def test_mixed_operations_finish_and_keep_the_invariants(self, tmp_path: Path) -> None:
        """Threads, tasks and two other processes doing random verbs all finish (< 30 s)."""
        cache_dir = tmp_path / "cache"
        watch = Watch()
        confs = self._confs()
        unexpected: list[BaseException] = []

        def sync_handler(invocation: Invocation) -> bytes:
            key = watch.enter(invocation)
            time.sleep(0.002)
            watch.leave(key)
            return reply(invocation)

        async def async_handler(invocation: Invocation) -> bytes:
            key = watch.enter(invocation)
            await asyncio.sleep(0.002)
            watch.leave(key)
            return reply(invocation)

        def operation(rng: random.Random) -> tuple[str, cnilib.NetworkConfigList, Any]:
            conf = rng.choice(confs)
            rt = cnilib.RuntimeConf(rng.choice(["c1", "c2"]), "/x", rng.choice(["eth0", "eth1"]))
            return rng.choice(["add", "check", "del", "gc", "setup", "teardown"]), conf, rt

        def call(runtime: Any, op: str, conf: cnilib.NetworkConfigList, rt: Any) -> Any:
            if op == "gc":
                return runtime.gc_network_list(conf, [("c1", "eth0")])
            if op == "setup":
                return runtime.setup_networks(rt.container_id, "/x", confs, concurrent=True)
            if op == "teardown":
                return runtime.teardown_networks(rt.container_id, "/x", confs, concurrent=True)
            method = {"add": "add", "check": "check", "del": "delete"}[op]
            return getattr(runtime, f"{method}_network_list")(conf, rt)

        def thread_worker(seed: int) -> None:
            rng = random.Random(seed)
            cni = cnilib.CNI([], cache_dir=cache_dir, executor=MockExecutor(sync_handler))
            for _ in range(40):
                try:
                    call(cni, *operation(rng))
                except cnilib.CNIError:
                    pass
                except BaseException as exc:
                    unexpected.append(exc)

        async def task_worker(acni: cnilib.AsyncCNI, seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(40):
                with contextlib.suppress(cnilib.CNIError):
                    await call(acni, *operation(rng))

        def loop_worker() -> None:
            acni = cnilib.AsyncCNI(
                [], cache_dir=cache_dir, executor=MockExecutor(async_handler), max_concurrency=3
            )

            async def main() -> None:
                await asyncio.gather(*(task_worker(acni, 100 + i) for i in range(6)))

            try:
                asyncio.run(main())
            except BaseException as exc:
                unexpected.append(exc)

        children = [
            subprocess.Popen(
                [sys.executable, "-c", MIXED_SCRIPT, str(cache_dir), str(seed)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for seed in (1, 2)
        ]
        threads = [threading.Thread(target=thread_worker, args=(i,), daemon=True) for i in range(4)]
        threads.append(threading.Thread(target=loop_worker, daemon=True))
        try:
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 30
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            outputs = [
                c.communicate(timeout=max(1.0, deadline - time.monotonic())) for c in children
            ]
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()

        assert [] == [t.name for t in threads if t.is_alive()]
        assert [("done\n", 0), ("done\n", 0)] == [
            (o, c.returncode) for (o, _), c in zip(outputs, children, strict=True)
        ]
        assert [] == unexpected
        assert [] == watch.violations
        assert watch.calls > 200
