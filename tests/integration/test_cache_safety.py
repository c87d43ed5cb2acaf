"""The cache directory as an attacker or a careless runtime leaves it: a loose
umask, planted symbolic links, paths of the wrong type, locks held by others.
Nothing outside the cache is ever opened, truncated or unlinked; every
directory cnilib makes is private; every failure is a cnilib error naming the
offending path, from the API and (as one line) from the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import math
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import cnilib
import cnilib.invoke
from cnilib.invoke import Command, Invocation
from cnilib.testing import MockExecutor

RT = cnilib.RuntimeConf("c1", "/run/netns/c1", "eth0")
LOCK = Path("locks", "net1", "c1:eth0")
ENTRY = Path("results", "net1-c1-eth0")
VICTIM_TEXT = "precious\n"


def conf() -> cnilib.NetworkConfigList:
    doc = {"cniVersion": "1.1.0", "name": "net1", "plugins": [{"type": "p0"}]}
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


def answer(invocation: Invocation) -> bytes:
    if invocation.command is Command.ADD:
        return b'{"cniVersion":"1.1.0","ips":[{"address":"10.1.2.3/24"}]}'
    return b""


def runtime(cache_dir: Path, **kwargs: object) -> tuple[cnilib.CNI, MockExecutor]:
    mock = MockExecutor(answer)
    return cnilib.CNI([], cache_dir=cache_dir, executor=mock, **kwargs), mock  # type: ignore[arg-type]


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the cache that must never change."""
    path = tmp_path / "victim"
    path.write_text(VICTIM_TEXT)
    return path


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def record(lock_file: Path, pid: int, timeout: float) -> None:
    """Write a plugin record into a lock file, as the runtime does after a start."""
    from cnilib.cache import AttachmentLock

    fd = os.open(lock_file, os.O_RDWR)
    try:
        AttachmentLock(fd, str(lock_file)).record(pid, timeout, "plugin (ADD)")
    finally:
        os.close(fd)


def modes_below(root: Path) -> dict[str, int]:
    """The permission bits of every directory from ``root`` down."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


class TestPrivateDirectories:
    @pytest.mark.usefixtures("umask_000")
    def test_every_directory_made_is_0700_whatever_the_umask(self, tmp_path: Path) -> None:
        cache = tmp_path / "a" / "b" / "cache"
        cni, _ = runtime(cache)

        cni.add_network_list(conf(), RT)
        cni.gc_network_list(conf(), [("c1", "eth0")])

        made = modes_below(tmp_path / "a")
        assert {"locks", "locks/net1", "results", ".cnilib-tmp"} <= {
            str(Path(p).relative_to("b/cache")) for p in made if p.startswith("b/cache/")
        }
        assert dict.fromkeys(made, 0o700) == made

    def test_files_are_0600(self, tmp_path: Path, umask_000: None) -> None:
        cni, _ = runtime(tmp_path)
        cni.add_network_list(conf(), RT)
        assert 0o600 == stat.S_IMODE((tmp_path / ENTRY).stat().st_mode)
        assert 0o600 == stat.S_IMODE((tmp_path / LOCK).stat().st_mode)

    def test_a_world_writable_cache_subdirectory_is_tightened(self, tmp_path: Path) -> None:
        """An older cnilib (or a loose umask) left locks/ 0777: it is made private."""
        (tmp_path / "locks").mkdir()
        (tmp_path / "locks").chmod(0o777)
        cni, _ = runtime(tmp_path)

        cni.add_network_list(conf(), RT)

        assert 0o700 == stat.S_IMODE((tmp_path / "locks").stat().st_mode)


class TestPlantedLinks:
    """An unprivileged user who could write into the cache tree plants links;
    root's next operation must neither follow nor remove them."""

    def test_gc_does_not_truncate_a_lock_link(
        self, tmp_path: Path, victim: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        cni, _ = runtime(tmp_path)
        cni.add_network_list(conf(), RT)
        planted = tmp_path / "locks" / "net1" / "x:eth0"
        planted.symlink_to(victim)

        with caplog.at_level(logging.WARNING, logger="cnilib"):
            cni.gc_network_list(conf(), [])

        assert VICTIM_TEXT == victim.read_text()
        assert planted.is_symlink()  # reported and left alone
        assert any(str(planted) in r.getMessage() for r in caplog.records)

    def test_the_attachment_lock_as_a_link_is_refused(self, tmp_path: Path, victim: Path) -> None:
        (tmp_path / LOCK).parent.mkdir(parents=True)
        (tmp_path / LOCK).symlink_to(victim)
        cni, mock = runtime(tmp_path)

        with pytest.raises(cnilib.CacheError, match="symbolic link") as info:
            cni.add_network_list(conf(), RT)

        assert str(tmp_path / LOCK) == info.value.path
        assert [] == mock.invocations
        assert VICTIM_TEXT == victim.read_text()

    def test_a_link_to_a_missing_file_is_not_created_through(self, tmp_path: Path) -> None:
        """O_CREAT through a dangling link would create the target as root."""
        target = tmp_path / "created-as-root"
        (tmp_path / "cache" / LOCK).parent.mkdir(parents=True)
        (tmp_path / "cache" / LOCK).symlink_to(target)
        cni, _ = runtime(tmp_path / "cache")

        with pytest.raises(cnilib.CacheError, match="symbolic link"):
            cni.delete_network_list(conf(), RT)

        assert not target.exists()

    @pytest.mark.parametrize("directory", ["locks", "locks/net1", ".cnilib-tmp", "results"])
    def test_a_directory_link_is_refused_and_its_target_untouched(
        self, tmp_path: Path, directory: str
    ) -> None:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        old = elsewhere / "entry-old"
        old.write_text(VICTIM_TEXT)
        os.utime(old, (time.time() - 7200, time.time() - 7200))
        cache = tmp_path / "cache"
        (cache / directory).parent.mkdir(parents=True, exist_ok=True)
        (cache / directory).symlink_to(elsewhere)
        cni, _ = runtime(cache)

        with pytest.raises(cnilib.CacheError, match="symbolic link") as info:
            cni.add_network_list(conf(), RT)
        with contextlib.suppress(cnilib.CNIError):  # GC's housekeeping only logs
            cni.gc_network_list(conf(), [])

        assert str(cache / directory) == info.value.path
        assert ["entry-old"] == os.listdir(elsewhere)
        assert VICTIM_TEXT == old.read_text()

    def test_a_temp_dir_link_is_not_swept(self, tmp_path: Path) -> None:
        """GC's sweep of crash-left temp files never reaches through a link."""
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "entry-old").write_text(VICTIM_TEXT)
        os.utime(elsewhere / "entry-old", (time.time() - 7200, time.time() - 7200))
        cni, _ = runtime(tmp_path / "cache")
        cni.add_network_list(conf(), RT)
        tmp_dir = tmp_path / "cache" / ".cnilib-tmp"
        tmp_dir.rmdir()
        tmp_dir.symlink_to(elsewhere)

        cni.gc_network_list(conf(), [("c1", "eth0")])  # housekeeping failure: logged only

        assert ["entry-old"] == os.listdir(elsewhere)

    def test_a_link_inside_the_temp_dir_is_left_alone(self, tmp_path: Path, victim: Path) -> None:
        cni, _ = runtime(tmp_path)
        cni.add_network_list(conf(), RT)
        link = tmp_path / ".cnilib-tmp" / "entry-link"
        link.symlink_to(victim)
        os.utime(link, (time.time() - 7200, time.time() - 7200), follow_symlinks=False)

        cni.gc_network_list(conf(), [("c1", "eth0")])

        assert link.is_symlink()
        assert VICTIM_TEXT == victim.read_text()

    def test_an_entry_link_is_neither_read_nor_removed(self, tmp_path: Path, victim: Path) -> None:
        victim.write_text(json.dumps({"cniVersion": "1.1.0", "ips": []}))
        (tmp_path / ENTRY).parent.mkdir()
        (tmp_path / ENTRY).symlink_to(victim)
        cni, mock = runtime(tmp_path)

        with pytest.raises(cnilib.CacheError, match="symbolic link"):
            cni.cached_result(conf(), RT)
        cni.delete_network_list(conf(), RT)  # DEL goes on without a prevResult

        assert (tmp_path / ENTRY).is_symlink()
        assert b"prevResult" not in mock.invocations[-1].stdin
        assert [] == cni.cached_attachments()  # a link is no attachment

    def test_a_fifo_entry_does_not_block(self, tmp_path: Path) -> None:
        (tmp_path / "results").mkdir()
        os.mkfifo(tmp_path / ENTRY)
        cni, _ = runtime(tmp_path)

        with pytest.raises(cnilib.CacheError, match="is a FIFO, not a regular file"):
            cni.cached_result(conf(), RT)
        assert [] == cni.cached_attachments()


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


class TestLockPruning:
    def test_gc_keeps_a_lock_file_someone_holds(self, tmp_path: Path) -> None:
        """A lock file in use survives GC: deleting it would let the next DEL take
        a fresh lock beside the holder's."""
        cni, _ = runtime(tmp_path)
        cni.add_network_list(conf(), RT)
        inode = (tmp_path / LOCK).stat().st_ino
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(tmp_path / LOCK)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            assert "locked\n" == holder.stdout.readline()
            cni.gc_network_list(conf(), [("c1", "eth0")])
            kept = (tmp_path / LOCK).stat().st_ino
        finally:
            holder.communicate("")

        assert inode == kept
        cni.gc_network_list(conf(), [("c1", "eth0")])  # free now: pruned
        assert [".network"] == os.listdir(tmp_path / "locks" / "net1")

    def test_gc_keeps_a_lock_file_recording_a_live_plugin(self, tmp_path: Path) -> None:
        cni, _ = runtime(tmp_path)
        cni.add_network_list(conf(), RT)
        sleeper = subprocess.Popen(
            ["sleep", "60"],
            start_new_session=True,
            env={"CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0", "CNI_COMMAND": "ADD"},
        )
        try:
            record(tmp_path / LOCK, sleeper.pid, 60)
            cni.gc_network_list(conf(), [("c1", "eth0")])
            assert (tmp_path / LOCK).exists()
        finally:
            sleeper.kill()
            sleeper.wait()


class TestOnlyCNIErrors:
    """Wrong types where the cache expects directories or files: cnilib errors
    (or a logged warning for GC housekeeping), never OSError."""

    @pytest.mark.parametrize(
        ("path", "make"),
        [
            (LOCK, "dir"),
            (Path("locks", "net1", ".network"), "dir"),
            (Path(".cnilib-tmp"), "file"),
            (Path("results"), "file"),
            (Path("locks"), "file"),
            (Path("locks", "net1"), "file"),
        ],
    )
    def test_wrong_types_give_cache_errors_naming_the_path(
        self, tmp_path: Path, path: Path, make: str
    ) -> None:
        cni, _ = runtime(tmp_path)
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if make == "dir":
            target.mkdir()
        else:
            target.write_text("in the way")

        outcomes: list[BaseException | None] = []
        for call in (
            lambda: cni.add_network_list(conf(), RT),
            lambda: cni.check_network_list(conf(), RT),
            lambda: cni.delete_network_list(conf(), RT),
            lambda: cni.gc_network_list(conf(), []),
            lambda: cni.gc_network_list(conf(), None),
            lambda: cni.cached_attachments(),
        ):
            try:
                call()
            except cnilib.CNIError as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)

        failures = [o for o in outcomes if o is not None]
        assert failures, "nothing noticed the wrong type"
        named = [f for f in failures if str(target) in str(f)]
        assert named, [str(f) for f in failures]

    @pytest.mark.parametrize("timeout", [math.nan, -1.0, 0.0, "5"])
    def test_bad_timeouts(self, timeout: object) -> None:
        from cnilib.plugins._executor import InProcessExecutor

        for kind in (cnilib.CNI, cnilib.AsyncCNI):
            with pytest.raises(cnilib.InvalidArgumentError, match="timeout"):
                kind([], timeout=timeout)  # type: ignore[arg-type]
        for executor in (InProcessExecutor, cnilib.SubprocessExecutor):
            with pytest.raises(cnilib.InvalidArgumentError, match="timeout"):
                executor(timeout=timeout)  # type: ignore[arg-type]

    def test_nul_in_cache_dir(self) -> None:
        for kind in (cnilib.CNI, cnilib.AsyncCNI):
            with pytest.raises(cnilib.InvalidArgumentError, match="NUL"):
                kind([], cache_dir="/tmp/a\0b")

    def test_cli_prints_one_line_for_a_cache_of_the_wrong_type(self, tmp_path: Path) -> None:
        conf_path = tmp_path / "net1.conflist"
        conf_path.write_bytes(conf().bytes)
        blocker = tmp_path / "cache"
        blocker.write_text("not a directory")
        base = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}

        runs = [
            subprocess.run(
                [sys.executable, "-m", "cnilib", "--cache-dir", str(blocker), *argv],
                capture_output=True,
                text=True,
                env={**base, "CNI_PATH": str(tmp_path)},
                check=False,
                timeout=60,
            )
            for argv in (["gc", str(conf_path)], ["del", str(conf_path), "/run/netns/x"])
        ]

        for proc in runs:
            assert 1 == proc.returncode, proc.stderr
            assert "Traceback" not in proc.stderr
            assert 1 == len(proc.stderr.strip().splitlines()), proc.stderr
            assert str(blocker) in proc.stderr


def test_lock_files_are_never_inherited(tmp_path: Path) -> None:
    """Lock fds are close-on-exec: a plugin (and its daemons) gets none."""
    seen: list[list[str]] = []

    def handler(invocation: Invocation) -> bytes:
        inherited = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                if fcntl.fcntl(int(fd), fcntl.F_GETFD) & fcntl.FD_CLOEXEC == 0:
                    inherited.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                continue  # the listing's own fd, closed by now
        seen.append(inherited)
        return answer(invocation)

    cni = cnilib.CNI([], cache_dir=tmp_path, executor=MockExecutor(handler))
    cni.add_network_list(conf(), RT)

    assert [] == [p for p in seen[0] if str(tmp_path) in p]


class TestReviewReruns:
    """Defects the re-run of the outside review found in this hardening."""

    def test_a_hard_link_in_the_lock_directory_is_not_truncated(
        self, tmp_path: Path, victim: Path
    ) -> None:
        cache = tmp_path / "cache"
        (cache / LOCK).parent.mkdir(parents=True)
        os.link(victim, cache / LOCK)
        cni, mock = runtime(cache)

        with pytest.raises(cnilib.CacheError, match="2 hard links: left alone"):
            cni.add_network_list(conf(), RT)

        assert VICTIM_TEXT == victim.read_text()
        assert [] == mock.invocations

    @pytest.mark.parametrize("driver", ["sync", "async"])
    def test_a_cache_dir_linking_to_nowhere_is_a_cache_error(
        self, tmp_path: Path, driver: str
    ) -> None:
        """/var/lib/cni linked to a volume that is not mounted yet."""
        link = tmp_path / "cache"
        link.symlink_to(tmp_path / "unmounted")
        mock = MockExecutor(answer)

        def add() -> object:
            if driver == "sync":
                return cnilib.CNI([], cache_dir=link, executor=mock).add_network_list(conf(), RT)
            acni = cnilib.AsyncCNI([], cache_dir=link, executor=mock)
            return asyncio.run(acni.add_network_list(conf(), RT))

        with pytest.raises(cnilib.CacheError, match="symbolic link to a missing directory") as info:
            add()

        assert str(link) == info.value.path
        assert not (tmp_path / "unmounted").exists()

    def test_an_empty_cache_dir_is_refused(self) -> None:
        with pytest.raises(cnilib.InvalidArgumentError, match="must not be empty"):
            cnilib.CNI([], cache_dir="")

    @pytest.mark.parametrize("keep", [["c1"], "c1", [("c1",)], [("c1", "eth0", "x")]])
    def test_gc_keep_list_of_the_wrong_shape_is_refused_not_misread(
        self, tmp_path: Path, keep: object
    ) -> None:
        """["c1"] used to be read as [("c", "1")]: GC deleted what it was told to keep."""
        cni, _ = runtime(tmp_path)
        cni.add_network_list(conf(), RT)

        with pytest.raises(cnilib.InvalidArgumentError, match="pair"):
            cni.gc_network_list(conf(), keep)  # type: ignore[arg-type]

        assert 1 == len(cni.cached_attachments())

    @pytest.mark.parametrize("timeout", [30 * 86400.0, 1e308, 10**400])
    def test_huge_timeouts(self, tmp_path: Path, timeout: float) -> None:
        """More than select() takes (about 24 days) works; beyond a float is refused."""
        plugin = tmp_path / "bin" / "ok"
        plugin.parent.mkdir()
        plugin.write_text('#!/bin/sh\nprintf \'{"cniVersion":"1.0.0"}\'\n')
        plugin.chmod(0o755)
        if timeout > 1e308:
            with pytest.raises(cnilib.InvalidArgumentError, match="timeout"):
                cnilib.CNI([str(plugin.parent)], cache_dir=tmp_path / "c", timeout=timeout)
            return
        cni = cnilib.CNI([str(plugin.parent)], cache_dir=tmp_path / "c", timeout=timeout)

        cni.add_network_list(
            cnilib.conflist_from_bytes(
                b'{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"ok"}]}'
            ),
            RT,
        )

        assert 1 == len(cni.cached_attachments())

    def test_a_hand_built_config_with_a_lone_surrogate_is_a_config_error(
        self, tmp_path: Path
    ) -> None:
        import attrs

        cni, mock = runtime(tmp_path)
        plugin = conf().plugins[0]
        bad_type = attrs.evolve(plugin, type="\udcff", raw={**plugin.raw, "type": "\udcff"})
        bad_plugin = attrs.evolve(conf(), plugins=(bad_type,))
        bad_name = attrs.evolve(conf(), name="\udcff")

        with pytest.raises(cnilib.ConfigError, match="not valid UTF-8"):
            cni.add_network_list(bad_plugin, RT)
        with pytest.raises(cnilib.ConfigError, match="not valid UTF-8"):
            cni.status_network_list(bad_name)

        assert [] == mock.invocations


@pytest.mark.parametrize("environment", [{}, {"CNI_CONTAINERID": "c2", "CNI_IFNAME": "eth0"}])
def test_a_forged_record_kills_nothing(tmp_path: Path, environment: dict[str, str]) -> None:
    """A record naming a process that is no plugin of this attachment (forged, or
    a pid the record's start time happens to match) is ignored: not waited for,
    not killed, even past its deadline."""
    cni, _ = runtime(tmp_path)
    cni.add_network_list(conf(), RT)
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True, env=environment)
    try:
        record(tmp_path / LOCK, bystander.pid, 0.001)
        time.sleep(0.01)  # past the forged deadline

        cni.delete_network_list(conf(), RT)

        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_directory_that_cannot_be_tightened_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only mount (modelled: fchmod fails with EROFS) does not stop reads."""
    cni, _ = runtime(tmp_path)
    cni.add_network_list(conf(), RT)
    (tmp_path / "results").chmod(0o777)

    def read_only(fd: int, mode: int) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "fchmod", read_only)
    with caplog.at_level(logging.WARNING, logger="cnilib"):
        assert 1 == len(cni.cached_attachments())

    assert any("cannot tighten" in r.getMessage() for r in caplog.records)


def test_an_empty_chain_is_an_argument_error() -> None:
    with pytest.raises(cnilib.InvalidArgumentError):
        cnilib.invoke.ChainExecutor()
