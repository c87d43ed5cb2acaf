"""A runtime killed mid-ADD leaves its plugin running in its own session. The
attachment's lock file records that plugin (pid, start time, deadline), so a
following DEL waits for it, and kills it once the dead runtime's deadline for
it has passed; GC reports it busy: neither can race the orphan and lose its
state. No plugin inherits a lock, so a helper process a plugin leaves running
never blocks the attachment, and lock waits end at the call's deadline.
A child made by os.fork() never keeps the runtime's locks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import cnilib
import cnilib.invoke
from cnilib.testing import MockExecutor

PLUGIN = """#!/bin/sh
# ADD: wait, then leave a marker (the "state"); DEL: remove it.
if [ "$CNI_COMMAND" = ADD ]; then
  sleep {sleep}
  touch {marks}/$CNI_CONTAINERID
  printf '{{"cniVersion":"1.0.0","ips":[{{"address":"10.9.9.2/24"}}]}}'
elif [ "$CNI_COMMAND" = DEL ]; then
  rm -f {marks}/$CNI_CONTAINERID
fi
"""

RUNTIME = """
import sys, cnilib
conf = cnilib.conflist_from_bytes(sys.argv[3].encode())
cnilib.CNI([sys.argv[1]], cache_dir=sys.argv[2], timeout=float(sys.argv[4])).add_network_list(
    conf, cnilib.RuntimeConf("c1", "/x", "eth0"))
"""

LOCK_FILE = Path("locks", "net1", "c1:eth0")


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A bin dir with the marker plugin (ADD takes 1.5 s), a marks dir, a cache dir."""
    bin_dir, marks, cache = tmp_path / "bin", tmp_path / "marks", tmp_path / "cache"
    for directory in (bin_dir, marks, cache):
        directory.mkdir()
    plugin = bin_dir / "marker"
    plugin.write_text(PLUGIN.format(sleep=1.5, marks=marks))
    plugin.chmod(0o755)
    return {"bin": bin_dir, "marks": marks, "cache": cache}


def conf() -> cnilib.NetworkConfigList:
    doc = {"cniVersion": "1.1.0", "name": "net1", "plugins": [{"type": "marker"}]}
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


def plugin_record(world: dict[str, Path]) -> dict[str, object] | None:
    """The plugin record in the attachment's lock file, if there is one."""
    try:
        data = (world["cache"] / LOCK_FILE).read_bytes()
    except FileNotFoundError:
        return None
    return json.loads(data) if data else None


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count: it has exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in (b"Z", b"X")


def wait_until(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """Poll ``condition``; fail after ``limit`` seconds (generous: CI may be loaded)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {limit:.0f}s"
        time.sleep(0.01)


def kill_runtime_mid_add(world: dict[str, Path], timeout: float = 60.0) -> int:
    """Start a runtime process doing ADD (plugin deadline ``timeout``), SIGKILL it
    while the plugin runs; return the orphaned plugin's pid."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            RUNTIME,
            str(world["bin"]),
            str(world["cache"]),
            conf().bytes.decode(),
            str(timeout),
        ]
    )
    try:
        # The runtime records its plugin right after starting it.
        wait_until(lambda: plugin_record(world) is not None, "the plugin's start")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    record = plugin_record(world)
    assert record is not None
    pid = record["pid"]
    assert isinstance(pid, int)
    assert alive(pid)
    return pid


@pytest.fixture
def reap() -> Iterator[list[int]]:
    """Pids (process groups) a test leaves running; killed at the end."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


class TestOrphanedPlugin:
    def test_del_waits_for_the_orphan(self, world: dict[str, Path]) -> None:
        """DEL after the runtime died waits for the orphaned ADD, then undoes its state."""
        orphan = kill_runtime_mid_add(world)
        cni = cnilib.CNI([str(world["bin"])], cache_dir=world["cache"])

        cni.delete_network_list(conf(), cnilib.RuntimeConf("c1", "/x", "eth0"))

        assert not alive(orphan)  # DEL ran after the orphan, not beside it
        assert [] == os.listdir(world["marks"])  # so it removed the orphan's mark
        assert [] == cni.cached_attachments()
        assert b"" == (world["cache"] / LOCK_FILE).read_bytes()  # the record is cleared

    def test_gc_reports_the_orphan_busy_then_cleans_up(self, world: dict[str, Path]) -> None:
        """GC does not race the orphan: busy now (entry kept), done once it has exited."""
        orphan = kill_runtime_mid_add(world)
        cni = cnilib.CNI([str(world["bin"])], cache_dir=world["cache"])

        with pytest.raises(cnilib.GCError) as info:
            cni.gc_network_list(conf(), [])
        assert isinstance(info.value.exceptions[0], cnilib.TryAgainLaterError)
        assert 1 == len(cni.cached_attachments())
        assert (world["cache"] / LOCK_FILE).exists()  # GC kept the busy lock file

        wait_until(lambda: not alive(orphan), "the orphan's exit")
        cni.gc_network_list(conf(), [])

        assert [] == os.listdir(world["marks"])
        assert [] == cni.cached_attachments()


class TestFork:
    def test_forked_child_does_not_keep_locks(self, world: dict[str, Path]) -> None:
        """A child forked while an ADD holds its locks releases them at once."""
        (world["bin"] / "marker").write_text(PLUGIN.format(sleep=0.5, marks=world["marks"]))
        cni = cnilib.CNI([str(world["bin"])], cache_dir=world["cache"])
        adding = threading.Thread(
            target=cni.add_network_list, args=(conf(), cnilib.RuntimeConf("c1", "/x", "eth0"))
        )
        adding.start()
        time.sleep(0.2)  # the ADD holds its locks
        pid = os.fork()
        if pid == 0:  # the child lingers for 3 s, doing nothing
            time.sleep(3)
            os._exit(0)
        try:
            adding.join()
            started = time.monotonic()
            cni.gc_network_list(conf(), [("c1", "eth0")])  # needs the network exclusively
            waited = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)

        assert waited < 1.5, f"GC waited {waited:.1f}s for locks held by the forked child"


DAEMON_PLUGIN = """#!/bin/sh
# ADD starts a helper daemon that inherits every fd the plugin was given (as a
# careless plugin's daemon does) and records its pid; DEL does nothing.
if [ "$CNI_COMMAND" = ADD ]; then
  sleep 60 </dev/null >/dev/null 2>&1 &
  echo $! > {marks}/daemon
  printf '{{"cniVersion":"1.0.0"}}'
fi
"""

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


class TestLockWaits:
    def test_a_plugins_daemon_does_not_lock_the_attachment(
        self, world: dict[str, Path], reap: list[int]
    ) -> None:
        """A helper process left by a plugin holds no lock: DEL runs while it lives."""
        (world["bin"] / "marker").write_text(DAEMON_PLUGIN.format(marks=world["marks"]))
        cni = cnilib.CNI([str(world["bin"])], cache_dir=world["cache"], timeout=5)
        rt = cnilib.RuntimeConf("c1", "/x", "eth0")
        cni.add_network_list(conf(), rt)
        daemon = int((world["marks"] / "daemon").read_text())
        reap.append(os.getpgid(daemon))

        cni.delete_network_list(conf(), rt)
        cni.add_network_list(conf(), rt)

        assert alive(daemon)  # neither call had to wait for it
        assert [] == lock_holders_of(world["cache"] / LOCK_FILE)

    @pytest.mark.parametrize("driver", ["sync", "async"])
    def test_lock_wait_ends_at_the_deadline_naming_the_holder(
        self, world: dict[str, Path], driver: str
    ) -> None:
        lock_file = world["cache"] / LOCK_FILE
        lock_file.parent.mkdir(parents=True)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(lock_file)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout is not None
            assert "locked\n" == holder.stdout.readline()
            with pytest.raises(cnilib.LockTimeoutError) as info:
                delete(world, driver, timeout=0.3)
        finally:
            holder.kill()
            holder.wait()
            if holder.stdout is not None:
                holder.stdout.close()

        err = info.value
        assert (holder.pid, cnilib.ErrorCode.TRY_AGAIN_LATER) == (err.holder, err.code)
        assert f"held by pid {holder.pid}" in str(err)
        assert 'container "c1", interface "eth0"' in str(err)
        assert isinstance(err, TimeoutError)

    def test_an_orphan_past_its_deadline_is_killed(
        self, world: dict[str, Path], reap: list[int]
    ) -> None:
        """The dead runtime gave its plugin 0.5 s: the next DEL kills it, as the
        runtime would have, and goes on."""
        (world["bin"] / "marker").write_text(PLUGIN.format(sleep=60, marks=world["marks"]))
        orphan = kill_runtime_mid_add(world, timeout=0.5)
        reap.append(orphan)
        cni = cnilib.CNI([str(world["bin"])], cache_dir=world["cache"], timeout=30)

        cni.delete_network_list(conf(), cnilib.RuntimeConf("c1", "/x", "eth0"))

        assert not alive(orphan)
        assert [] == os.listdir(world["marks"])
        assert [] == cni.cached_attachments()

    @pytest.mark.parametrize("driver", ["sync", "async"])
    def test_an_orphan_within_its_deadline_outlasting_ours_is_named(
        self, world: dict[str, Path], reap: list[int], driver: str
    ) -> None:
        (world["bin"] / "marker").write_text(PLUGIN.format(sleep=60, marks=world["marks"]))
        orphan = kill_runtime_mid_add(world, timeout=120)
        reap.append(orphan)

        with pytest.raises(cnilib.LockTimeoutError) as info:
            delete(world, driver, timeout=0.3)

        assert orphan == info.value.holder
        assert f'plugin "marker" (ADD) (pid {orphan}), left running by an interrupted call' in str(
            info.value
        )
        assert alive(orphan)  # within its deadline: not ours to kill
        assert 1 == len(cnilib.CNI([], cache_dir=world["cache"]).cached_attachments())


def delete(world: dict[str, Path], driver: str, *, timeout: float | None) -> None:
    """DEL c1/eth0 of net1 with ``CNI`` or ``AsyncCNI``."""
    rt = cnilib.RuntimeConf("c1", "/x", "eth0")
    if driver == "sync":
        cni = cnilib.CNI([str(world["bin"])], cache_dir=world["cache"], timeout=timeout)
        cni.delete_network_list(conf(), rt)
    else:
        acni = cnilib.AsyncCNI([str(world["bin"])], cache_dir=world["cache"], timeout=timeout)
        asyncio.run(acni.delete_network_list(conf(), rt))


def lock_holders_of(path: Path) -> list[int]:
    """Pids /proc/locks names for ``path``."""
    from cnilib.cache._locks import lock_holders

    fd = os.open(path, os.O_RDONLY)
    try:
        return lock_holders(fd)
    finally:
        os.close(fd)


SLEEPER_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0"}


@pytest.fixture
def fake_orphan(world: dict[str, Path]) -> Iterator[subprocess.Popen[bytes]]:
    """A process that looks like a plugin of net1/c1/eth0 (its environment says so),
    with the attachment's cache entry and lock file in place."""
    cni = cnilib.CNI(
        [], cache_dir=world["cache"], executor=MockExecutor(lambda _: b'{"cniVersion":"1.1.0"}')
    )
    cni.add_network_list(conf(), cnilib.RuntimeConf("c1", "/x", "eth0"))
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True, env=SLEEPER_ENV)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def write_record(world: dict[str, Path], pid: int, timeout: float, **extra: object) -> None:
    from cnilib.cache import AttachmentLock

    fd = os.open(world["cache"] / LOCK_FILE, os.O_RDWR)
    try:
        AttachmentLock(fd, str(world["cache"] / LOCK_FILE)).record(pid, timeout, "orphan (ADD)")
        if extra:
            record = json.loads(os.pread(fd, 4096, 0))
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({**record, **extra}).encode(), 0)
    finally:
        os.close(fd)


class TestOrphanRecords:
    def test_a_call_that_gives_up_keeps_the_record_for_the_next(
        self, world: dict[str, Path], fake_orphan: subprocess.Popen[bytes]
    ) -> None:
        """The first DEL times out waiting; the second must wait too, not run beside it."""
        write_record(world, fake_orphan.pid, 120)

        for _ in range(2):
            with pytest.raises(cnilib.LockTimeoutError) as info:
                delete(world, "sync", timeout=0.2)
            assert fake_orphan.pid == info.value.holder

        assert plugin_record(world) is not None

    @pytest.mark.parametrize("driver", ["sync", "async"])
    def test_an_orphan_sigkill_does_not_end_is_given_up_on(
        self,
        world: dict[str, Path],
        fake_orphan: subprocess.Popen[bytes],
        monkeypatch: pytest.MonkeyPatch,
        driver: str,
    ) -> None:
        """Stuck in the kernel, a process outlives SIGKILL: the call fails naming it
        instead of waiting for ever (modelled by a kill that does nothing)."""
        from cnilib.cache._locks import PluginRecord

        monkeypatch.setattr(PluginRecord, "kill", lambda self: None)
        monkeypatch.setattr("cnilib.cache._locks._KILL_WAIT", 0.2)
        write_record(world, fake_orphan.pid, 0.001)
        failed: list[BaseException] = []

        def run() -> None:
            try:
                delete(world, driver, timeout=None)
            except BaseException as exc:
                failed.append(exc)

        caller = threading.Thread(target=run, daemon=True)
        caller.start()
        caller.join(30)

        assert not caller.is_alive(), "the DEL still waits for an unkillable orphan"
        [err] = failed
        assert isinstance(err, cnilib.LockTimeoutError)
        assert "SIGKILL has not ended it" in str(err)

    def test_gc_does_not_wait_for_an_orphan_past_its_deadline(
        self, world: dict[str, Path], fake_orphan: subprocess.Popen[bytes]
    ) -> None:
        """GC kills it and reports the attachment busy at once; the next GC cleans up."""
        write_record(world, fake_orphan.pid, 0.001)
        time.sleep(0.01)
        cni = cnilib.CNI(
            [], cache_dir=world["cache"], executor=MockExecutor(lambda _: b'{"cniVersion":"1.1.0"}')
        )

        with pytest.raises(cnilib.GCError) as info:
            cni.gc_network_list(conf(), [])

        assert isinstance(info.value.exceptions[0], cnilib.TryAgainLaterError)
        fake_orphan.wait(10)  # killed by that GC
        cni.gc_network_list(conf(), [])
        assert [] == cni.cached_attachments()

    def test_a_record_from_another_boot_is_ignored(
        self, world: dict[str, Path], fake_orphan: subprocess.Popen[bytes]
    ) -> None:
        """pids and start times repeat across reboots; the record names its boot."""
        write_record(world, fake_orphan.pid, 0.001, boot="another-boot")

        delete(world, "sync", timeout=5)

        assert fake_orphan.poll() is None  # neither waited for nor killed

    def test_a_chain_of_executors_bounds_the_lock_wait_by_its_longest_deadline(
        self, world: dict[str, Path], fake_orphan: subprocess.Popen[bytes]
    ) -> None:
        write_record(world, fake_orphan.pid, 120)
        chain = cnilib.invoke.ChainExecutor(cnilib.SubprocessExecutor(timeout=0.3))
        cni = cnilib.CNI([], cache_dir=world["cache"], executor=chain)

        with pytest.raises(cnilib.LockTimeoutError):
            cni.delete_network_list(conf(), cnilib.RuntimeConf("c1", "/x", "eth0"))

        assert 0.3 == chain.timeout
        assert cni.locks is not None
        assert 0.3 == cni.locks.timeout
