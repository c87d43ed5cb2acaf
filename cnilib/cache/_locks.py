"""File locks that keep runtimes (processes, threads, tasks) out of each other's way.

The spec forbids two operations on one attachment at once, and GC of a
network during an ADD or DEL on it; libcni enforces neither
(cri-o/ocicni#41). cnilib does, with ``flock(2)`` under the cache directory::

    <cache_dir>/locks/<network>/.network       shared: ADD, CHECK, DEL   exclusive: GC
    <cache_dir>/locks/<network>/<cid>:<ifname>  exclusive: ADD, CHECK, DEL of that attachment

Ordering, which makes deadlock impossible: an operation takes its network's
lock first and its attachment's lock second, and holds at most one network.
GC takes only the network lock, exclusively; since every other operation on
that network holds the network lock (shared) for as long as it has an
attachment lock file open, GC can delete attachment lock files safely.

Waiting for a lock honours the call's deadline: past it, the call fails with
:class:`~cnilib.errors.LockTimeoutError`, naming the process that holds the
lock when ``/proc/locks`` tells.

``flock`` locks belong to an open file description, so two tasks or threads
of one process exclude each other just like two processes do, and the kernel
releases them when every descriptor of it is closed. Lock fds are close-on-exec
and are closed in a child made by ``os.fork()``, so no plugin, and no daemon a
plugin starts, ever holds one: a helper process left running can never make
an attachment undeletable.

Crash safety without inheritance: while a plugin runs, the attachment's lock
file records its pid, start time and deadline (:meth:`AttachmentLock.record`).
If the runtime dies, the plugin carries on as an orphan; the next operation on
the attachment finds the record, waits for that process (and that process
only, not its children) to exit, and kills its process group once the deadline
the dead runtime gave it has passed, as the runtime would have. So a DEL never
runs alongside an orphaned ADD.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Generator, Iterator

import attrs

from cnilib._log import get_logger
from cnilib.cache import _fs
from cnilib.errors import CacheError, LockTimeoutError
from cnilib.names import validate_container_id, validate_interface_name, validate_network_name

__all__ = ["AttachmentLock", "LockDir", "PluginRecord", "release"]

log = get_logger("cnilib.cache")

_LOCKS = "locks"
_NETWORK_LOCK = ".network"
_POLL_FIRST = 0.001
_POLL_MAX = 0.05
_KILL_WAIT = 2.0
"""After SIGKILL, how long to wait for an orphan to be gone before giving up."""


_held: set[int] = set()
"""Lock fds held by this process (closed in forked children)."""
_held_guard = threading.Lock()
"""Held across opening a lock fd and noting it (and noting its close and closing
it), and across ``fork()``: a child can never get a lock fd it does not know of."""


def _close_inherited() -> None:
    global _held_guard
    _held_guard = threading.Lock()
    for fd in list(_held):
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(
    before=lambda: _held_guard.acquire(),
    after_in_parent=lambda: _held_guard.release(),
    after_in_child=_close_inherited,
)


def _boot_id() -> str:
    """This boot's id: a record from another boot describes no live process."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


_BOOT = _boot_id()


def _try_lock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock_holders(fd: int) -> list[int]:
    """The pids ``/proc/locks`` names as holding a flock on ``fd``'s file.

    The kernel records the process that took the lock; it may have exited
    since if it passed the descriptor on. Empty when unknown.
    """
    try:
        info = os.fstat(fd)
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    inode = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    holders: list[int] = []
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; waiters have "->" after "1:".
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode:
            with contextlib.suppress(ValueError):
                holders.append(int(fields[4]))
    # 0: a holder outside our pid namespace, or gone since it passed the fd on.
    # (On btrfs subvolumes and overlayfs st_dev is not the device the kernel
    # prints here: then no holder is found.)
    return [pid for pid in holders if pid > 0]


def _start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot; ``None`` if it is gone
    or a zombie (it has exited, only its parent has not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


@attrs.frozen
class PluginRecord:
    """A plugin process running for an attachment, as its lock file records it."""

    pid: int
    start: int
    deadline: float | None
    """``time.monotonic()`` value (system-wide) past which it is to be killed."""
    call: str
    boot: str = _BOOT
    """The boot it was written in: pids, start times and monotonic time are per boot."""

    def alive(self) -> bool:
        """Whether that very process (not a reuse of its pid) still runs."""
        return _start_time(self.pid) == self.start

    def runs_for(self, container_id: str, ifname: str) -> bool:
        """Whether the process is a plugin called for this attachment: its
        environment names it. A record is only ever acted on when it does, so
        a forged or stale one cannot make cnilib wait for, or kill, anything else."""
        try:
            with open(f"/proc/{self.pid}/environ", "rb") as handle:
                names = set(handle.read().split(b"\0"))
        except OSError:
            return False
        wanted = {f"CNI_CONTAINERID={container_id}", f"CNI_IFNAME={ifname}"}
        return {w.encode() for w in wanted} <= names

    def kill(self) -> None:
        """SIGKILL its process group, as the runtime that started it would have."""
        if self.pid <= 1 or self.pid in (os.getpid(), os.getpgrp()) or not self.alive():
            return
        with contextlib.suppress(OSError):
            # Plugins run as session leaders; a pid that no longer leads its
            # group is not the plugin's group any more: kill only the process.
            if os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)

    def to_bytes(self) -> bytes:
        obj = {
            "pid": self.pid,
            "start": self.start,
            "deadline": self.deadline,
            "call": self.call,
            "boot": self.boot,
        }
        return json.dumps(obj).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> PluginRecord | None:
        """The record, or ``None`` for an empty or unreadable one (a stale
        or half-written record describes no process worth waiting for)."""
        try:
            obj = json.loads(data)
            deadline = obj["deadline"]
            found = cls(
                pid=int(obj["pid"]),
                start=int(obj["start"]),
                deadline=None if deadline is None else float(deadline),
                call=str(obj["call"]),
                boot=str(obj.get("boot", "")),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        return found if found.boot == _BOOT else None


class AttachmentLock:
    """The held lock of one attachment, and the record of the plugin running for it."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path
        # The file is named "<container ID>:<ifname>"; neither part holds ":".
        self.container_id, _, self.ifname = os.path.basename(path).rpartition(":")
        self.owned = False
        """No orphan runs: the record is this call's (and cleared when it ends)."""
        self.killed_at: float | None = None

    def record(self, pid: int, timeout: float | None, call: str = "") -> None:
        """Note that plugin process ``pid`` now runs for this attachment
        (``Invocation.on_spawn``); ``timeout`` is its deadline in seconds."""
        start = _start_time(pid)
        if start is None:
            return  # already gone
        deadline = None if timeout is None else time.monotonic() + timeout
        data = PluginRecord(pid, start, deadline, call).to_bytes()
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
        except OSError as exc:  # a full disk must not fail the call; it weakens crash safety only
            log.warning("cannot record plugin pid in %s: %s", self.path, exc.strerror)

    def orphan(self) -> PluginRecord | None:
        """The plugin an interrupted call left running for this attachment, if any."""
        try:
            data = os.pread(self.fd, 4096, 0)
        except OSError:
            return None
        found = PluginRecord.from_bytes(data) if data else None
        if found is None or not found.alive():
            return None
        if not found.runs_for(self.container_id, self.ifname):
            log.warning("%s names pid %d, no plugin of it: ignored", self.path, found.pid)
            return None
        return found

    def clear(self) -> None:
        """Forget the record: no plugin of ours runs for the attachment now."""
        with contextlib.suppress(OSError):
            if os.fstat(self.fd).st_size:
                os.ftruncate(self.fd, 0)

    def poll_orphan(self) -> PluginRecord | None:
        """One look, never waiting: the orphan still running (SIGKILLed, once,
        when past the deadline its runtime gave it), or ``None``, and then the
        attachment is this call's."""
        found = self.orphan()
        if found is None:
            self.owned = True
            self.clear()
            return None
        now = time.monotonic()
        if self.killed_at is None and found.deadline is not None and now >= found.deadline:
            log.info("killing %s (pid %d): past its deadline", found.call, found.pid)
            found.kill()
            self.killed_at = now
        return found

    def next_wait(self, deadline: float | None, delay: float) -> float | None:
        """How long to sleep before the next :meth:`poll_orphan`; ``None`` when
        no orphan runs. Raises :class:`LockTimeoutError` at ``deadline`` (or, for
        an orphan that SIGKILL does not end, a moment after the kill)."""
        found = self.poll_orphan()
        if found is None:
            return None
        now = time.monotonic()
        give_up = deadline
        if self.killed_at is not None:  # let it die, then stop waiting for it
            killed = self.killed_at + _KILL_WAIT
            give_up = killed if deadline is None else max(deadline, killed)
        if give_up is not None and now >= give_up:
            raise _orphan_error(self, found)
        return delay if give_up is None else min(delay, give_up - now)


def _orphan_error(lock: AttachmentLock, found: PluginRecord) -> LockTimeoutError:
    network = os.path.basename(os.path.dirname(lock.path))
    killed = "; SIGKILL has not ended it" if lock.killed_at is not None else ""
    return LockTimeoutError(
        f"{_label(network, lock.container_id, lock.ifname)} is busy: "
        f"{found.call or 'a plugin'} (pid {found.pid}), left running by an interrupted call, "
        f"has not exited yet{killed}",
        path=lock.path,
        holder=found.pid,
    )


def _busy_error(fd: int, path: str, what: str, waited: float) -> LockTimeoutError:
    holders = lock_holders(fd)
    by = f" (held by pid {', '.join(map(str, holders))})" if holders else ""
    return LockTimeoutError(
        f"{what} is locked by another operation{by}; gave up after {waited:.1f}s",
        path=path,
        holder=holders[0] if holders else None,
    )


class LockDir:
    """The lock files of one cache directory.

    :param timeout: how long a verb may wait for a lock (seconds; ``None``:
        for ever). The runtime passes the call's deadline.
    """

    def __init__(self, cache_dir: str, timeout: float | None = None) -> None:
        self.cache_dir = cache_dir
        self.root = os.path.join(cache_dir, _LOCKS)
        self.timeout = timeout

    def _dir(self, network: str) -> int:
        """The fd of ``locks/<network>`` (created 0700, no link followed)."""
        return _fs.open_dir(self.cache_dir, (_LOCKS, network), create=True)

    def _open(self, dir_fd: int, network: str, name: str) -> tuple[int, str]:
        """Open (create) one lock file without following a link; its fd and path."""
        path = os.path.join(self.root, network, name)
        return _open_lock(name, os.O_RDWR | os.O_CREAT, dir_fd, path), path

    def _files(
        self, network: str, attachment: tuple[str, str] | None
    ) -> list[tuple[str, int, str]]:
        """The files to lock, in lock order, with their flock operation and a label."""
        validate_network_name(network)
        if attachment is None:  # GC: the whole network, exclusively
            return [(_NETWORK_LOCK, fcntl.LOCK_EX, f'network "{network}"')]
        container_id, ifname = attachment
        validate_container_id(container_id)
        validate_interface_name(ifname)
        return [
            (_NETWORK_LOCK, fcntl.LOCK_SH, f'network "{network}"'),
            # ":" appears in neither a container ID nor an interface name, so
            # unlike the cache's "<cid>-<if>" this name is unambiguous.
            (f"{container_id}:{ifname}", fcntl.LOCK_EX, _label(network, container_id, ifname)),
        ]

    def _deadline(self) -> float | None:
        return None if self.timeout is None else time.monotonic() + self.timeout

    @contextlib.contextmanager
    def hold(
        self, network: str, attachment: tuple[str, str] | None = None
    ) -> Iterator[AttachmentLock | None]:
        """Hold the locks of one attachment (or, with ``None``, a whole network
        for GC); yield the attachment's lock (``None`` for GC)."""
        taking = _Taking(self, network, attachment)
        try:
            with contextlib.closing(taking.steps()) as steps:
                for pause in steps:
                    time.sleep(pause)
            yield taking.lock
        finally:
            taking.release()

    @contextlib.asynccontextmanager
    async def ahold(
        self, network: str, attachment: tuple[str, str] | None = None
    ) -> AsyncIterator[AttachmentLock | None]:
        """:meth:`hold` for asyncio: waits by polling, so no thread blocks on a lock."""
        import asyncio  # here: blocking callers never load asyncio

        taking = _Taking(self, network, attachment)
        try:
            with contextlib.closing(taking.steps()) as steps:
                for pause in steps:
                    await asyncio.sleep(pause)
            yield taking.lock
        finally:
            taking.release()

    def try_attachment(self, network: str, container_id: str, ifname: str) -> AttachmentLock | None:
        """GC's per-attachment lock, taken without waiting (GC holds the network).

        Returns the held lock (release it with :func:`release` on its fd), or
        ``None`` when the attachment is busy: a plugin an interrupted call
        left running is still within its deadline.
        """
        name = self._files(network, (container_id, ifname))[1][0]
        dir_fd = self._dir(network)
        try:
            fd, path = self._open(dir_fd, network, name)
        finally:
            os.close(dir_fd)
        try:
            lock = AttachmentLock(fd, path)
            if _try_lock(fd, fcntl.LOCK_EX) and lock.poll_orphan() is None:
                return lock
        except BaseException:
            release([fd])
            raise
        release([fd])
        return None

    def prune(self, network: str) -> int:
        """Delete the network's attachment lock files that nobody uses; return how many.

        A file is deleted only if it can be locked at that moment and records
        no live plugin. Only call this while holding the network exclusively
        (GC): no operation can then be about to open one of these files.
        Anything that is not a regular file is logged and left alone.
        """
        validate_network_name(network)
        removed = 0
        try:
            dir_fd = _fs.open_dir(self.cache_dir, (_LOCKS, network), create=False)
        except FileNotFoundError:
            return 0
        try:
            for name in os.listdir(dir_fd):
                if name == _NETWORK_LOCK:
                    continue
                path = os.path.join(self.root, network, name)
                try:
                    fd = _open_lock(name, os.O_RDWR, dir_fd, path)
                except FileNotFoundError:
                    continue
                except CacheError as exc:
                    log.warning("not pruning %s", exc)
                    continue
                try:
                    if not _try_lock(fd, fcntl.LOCK_EX) or AttachmentLock(fd, path).orphan():
                        continue
                    removed += _fs.unlink_file(name, dir_fd, path)
                finally:
                    release([fd])
        except OSError as exc:
            raise CacheError(f"cannot prune lock files: {exc.strerror}", path=self.root) from exc
        finally:
            os.close(dir_fd)
        return removed


class _Taking:
    """Taking one call's locks, written once for :meth:`LockDir.hold` and
    :meth:`LockDir.ahold`: :meth:`steps` yields how long to pause before trying
    again, and the caller sleeps or awaits."""

    def __init__(self, locks: LockDir, network: str, attachment: tuple[str, str] | None) -> None:
        self.locks = locks
        self.network = network
        self.files = locks._files(network, attachment)
        self.fds: list[int] = []
        self.lock: AttachmentLock | None = None

    def steps(self) -> Generator[float, None, None]:
        """Take the locks in order, then wait out an orphaned plugin; raise
        :class:`LockTimeoutError` at the deadline."""
        locks = self.locks
        deadline = locks._deadline()
        dir_fd = locks._dir(self.network)
        try:
            for name, operation, what in self.files:
                # One file at a time: the attachment's is opened only once the
                # network lock is held, or a GC could unlink it in between.
                fd, path = locks._open(dir_fd, self.network, name)
                self.fds.append(fd)
                delay = _POLL_FIRST
                while not _try_lock(fd, operation):
                    now = time.monotonic()
                    if deadline is not None and now >= deadline:
                        raise _busy_error(fd, path, what, locks.timeout or 0.0)
                    yield delay if deadline is None else min(delay, deadline - now)
                    delay = min(delay * 2, _POLL_MAX)
                if name != _NETWORK_LOCK:
                    self.lock = AttachmentLock(fd, path)
                    delay = _POLL_FIRST
                    while (pause := self.lock.next_wait(deadline, delay)) is not None:
                        yield pause
                        delay = min(delay * 2, _POLL_MAX)
        finally:
            os.close(dir_fd)

    def release(self) -> None:
        """Drop the locks; clear the record unless it is an orphan's (kept for the next call)."""
        if self.lock is not None and self.lock.owned:
            self.lock.clear()
        release(self.fds)


def _label(network: str, container_id: str, ifname: str) -> str:
    return f'attachment (network "{network}", container "{container_id}", interface "{ifname}")'


def _open_lock(name: str, flags: int, dir_fd: int, path: str) -> int:
    """Open a lock file (see :func:`_fs.open_file`) and note it as held, with no
    ``fork()`` in between."""
    with _held_guard:
        fd = _fs.open_file(name, flags, dir_fd, path)
        _held.add(fd)
    return fd


def release(fds: list[int]) -> None:
    """Close lock fds (last taken first); closing the description drops its flock."""
    with _held_guard:
        for fd in reversed(fds):
            _held.discard(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
