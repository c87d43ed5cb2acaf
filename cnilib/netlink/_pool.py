"""Running work inside a network namespace (see :mod:`cnilib.netlink._ns`).

:func:`run_in_netns` switches the calling thread into the target namespace
for the duration of the job and back (as Go's ``ns.Do`` does), so a job costs
two ``setns(2)`` calls rather than a hand-off to another thread and back.
Jobs for one namespace still run one at a time: each namespace has a lock,
held for the job's length. A job that itself asks for its own namespace runs
inline, so a helper may call another helper freely.

:meth:`NetnsPool.submit` and :func:`arun_in_netns` (whose caller must not
block: an asyncio loop) hand the job to a worker thread that lives in one
namespace instead; :class:`NetnsPool` owns the workers, and the module
functions use one default pool, made on first use.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, ParamSpec, TypeAlias, TypeVar

from cnilib._fork import reset_after_fork
from cnilib.netlink._errors import NetNSError, NotOnWorkerError
from cnilib.netlink._ns import NetNSHandle, open_netns, setns

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from cnilib.netlink._raw import RawNetlink

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_WORKERS",
    "NetnsPool",
    "NetnsTarget",
    "arun_in_netns",
    "close_netns",
    "default_pool",
    "ipr",
    "netns_label",
    "raw",
    "run_here",
    "run_in_netns",
]

T = TypeVar("T")
P = ParamSpec("P")
NetnsTarget: TypeAlias = "str | os.PathLike[str] | int | NetNSHandle | None"
"""Where to run: a namespace path, an open fd, a handle, or None (the caller's own)."""

_HOME_FLAGS = os.O_RDONLY | os.O_CLOEXEC
DEFAULT_MAX_WORKERS = 32
DEFAULT_IDLE_TIMEOUT = 5.0


class _Job:
    __slots__ = ("args", "fn", "future", "kwargs", "label")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        label: str,
        future: Future[Any],
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.label = label
        self.future = future


class _Local(threading.local):
    worker: _Worker | _Switched | None = None
    label: str = ""


_local = _Local()


class _Sockets:
    """The netlink sockets of one namespace, made on first use inside it."""

    pool: NetnsPool
    key: tuple[int, int]
    label: str
    _ipr: IPRoute | None = None
    _raw: RawNetlink | None = None

    def ipr(self) -> IPRoute:
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
        return self._ipr

    def raw(self) -> RawNetlink:
        if self._raw is None:
            from cnilib.netlink._raw import RawNetlink

            self._raw = RawNetlink()
        return self._raw

    def close_sockets(self) -> None:
        # A socket holds its namespace alive: never keep one past the job's end,
        # nor leave the second open when closing the first raises.
        ipr, raw = self._ipr, self._raw
        self._ipr = self._raw = None
        try:
            if ipr is not None:
                ipr.close()
        finally:
            if raw is not None:
                raw.close()


class _Switched(_Sockets):
    """A job running on its caller's thread, switched into the job's namespace."""

    def __init__(self, pool: NetnsPool, key: tuple[int, int], label: str) -> None:
        self.pool = pool
        self.key = key
        self.label = label


class _Worker(_Sockets):
    """One thread inside one namespace; ends when stopped or idle, never re-targeted."""

    def __init__(self, pool: NetnsPool, key: tuple[int, int], fd: int, label: str) -> None:
        self.pool = pool
        self.key = key
        self.label = label
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.last_used = time.monotonic()
        self.retired = False
        self._started: Future[None] = Future()
        self.thread = threading.Thread(
            target=self._main, args=(fd,), name=f"cnilib-netns:{label}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        self._started.result()  # raises the setns failure, if any

    def _enter(self, fd: int) -> None:
        try:
            setns(fd)
            st = os.stat("/proc/thread-self/ns/net")
            if (st.st_dev, st.st_ino) != self.key:  # pragma: no cover - kernel guarantee
                raise NetNSError(self.label, "setns did not enter the namespace")
        finally:
            os.close(fd)

    def _main(self, fd: int) -> None:
        try:
            self._enter(fd)
        except OSError as exc:
            self._started.set_exception(
                NetNSError(self.label, f"setns: {exc.strerror}", errno=exc.errno or 0)
            )
            return
        except BaseException as exc:  # pragma: no cover - defensive
            self._started.set_exception(exc)
            return
        _local.worker = self
        self._started.set_result(None)
        try:
            self._serve()
        finally:
            _local.worker = None
            self.close_sockets()

    def _serve(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=self.pool.idle_timeout)
            except queue.Empty:
                if self.pool._retire_if_idle(self):
                    return
                continue
            if job is None:
                return
            if not job.future.set_running_or_notify_cancel():
                continue
            _local.label = job.label
            try:
                with self.pool._namespace_lock(self.key):
                    result = job.fn(*job.args, **job.kwargs)
            except BaseException as exc:
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
            finally:
                _local.label = ""
                del job


class NetnsPool:
    """Worker threads by namespace: at most ``max_workers``, each retired after
    ``idle_timeout`` seconds without work, least recently used first when full."""

    def __init__(
        self, *, max_workers: int = DEFAULT_MAX_WORKERS, idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._workers: collections.OrderedDict[tuple[int, int], _Worker] = collections.OrderedDict()
        # One lock per namespace in use (held by a switched caller or a worker for a
        # job's length), with how many threads hold or wait for it: dropped at zero, so
        # a node that has seen a thousand containers keeps no thousand locks.
        self._ns_locks: dict[tuple[int, int], tuple[threading.RLock, int]] = {}
        # A child forked while another thread holds a namespace's lock would wait for
        # that thread for ever: it forgets the locks (and the workers) at once.
        reset_after_fork(self)

    # -- submitting ----------------------------------------------------------

    def submit(
        self, target: NetnsTarget, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[T]:
        """Queue ``fn(*args, **kwargs)`` on the worker of ``target``'s namespace."""
        future: Future[T] = Future()
        with open_netns(target) as handle:
            current = _local.worker
            if current is not None and current.pool is self and current.key == handle.key:
                _run_inline(future, handle.label, fn, args, kwargs)
                return future
            self._queue(handle, _Job(fn, args, kwargs, handle.label, future))
        return future

    def run(
        self, target: NetnsTarget, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn(*args, **kwargs)`` inside ``target``'s namespace and return its result.

        The calling thread itself enters the namespace for the job and comes back
        (two ``setns(2)`` calls, no other thread), holding the namespace's lock.
        """
        with open_netns(target) as handle:
            current = _local.worker
            if current is not None and current.pool is self and current.key == handle.key:
                return _call_labelled(handle.label, fn, args, kwargs)
            if _loop_running():
                # pyroute2's synchronous calls run an event loop of their own, which
                # asyncio refuses on a thread whose loop is running: a worker's job.
                future: Future[T] = Future()
                self._queue(handle, _Job(fn, args, kwargs, handle.label, future))
                return future.result()
            with self._namespace_lock(handle.key):
                return _switched_call(self, handle, fn, args, kwargs)

    @contextlib.contextmanager
    def _namespace_lock(self, key: tuple[int, int]) -> Iterator[None]:
        """Hold ``key``'s namespace lock: one job at a time per namespace."""
        with self._lock:
            lock, users = self._ns_locks.get(key) or (threading.RLock(), 0)
            self._ns_locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                # Not ours after a fork inside the job: the child dropped the table.
                entry = self._ns_locks.get(key)
                if entry is not None and entry[0] is lock:
                    if entry[1] == 1:
                        del self._ns_locks[key]
                    else:
                        self._ns_locks[key] = (lock, entry[1] - 1)

    async def arun(
        self, target: NetnsTarget, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """:meth:`run` for asyncio: the event loop is never blocked by the job."""
        import asyncio

        return await asyncio.wrap_future(self.submit(target, fn, *args, **kwargs))

    def _queue(self, handle: NetNSHandle, job: _Job) -> None:
        """Queue ``job`` on the namespace's worker, starting one if needed.

        Queued under the lock, so an idle worker cannot retire in between.
        """
        with self._lock:
            worker = self._workers.get(handle.key)
            if worker is None:
                while len(self._workers) >= self.max_workers:
                    _, oldest = self._workers.popitem(last=False)
                    self._stop(oldest)
                worker = _Worker(self, handle.key, os.dup(handle.fd), handle.label)
                worker.start()
                self._workers[handle.key] = worker
            else:
                self._workers.move_to_end(handle.key)
            worker.last_used = time.monotonic()
            worker.jobs.put(job)

    # -- retiring ------------------------------------------------------------

    def _retire_if_idle(self, worker: _Worker) -> bool:
        with self._lock:
            if worker.retired:
                return True
            idle = time.monotonic() - worker.last_used >= self.idle_timeout
            if not (idle and worker.jobs.empty()):
                return False
            if self._workers.get(worker.key) is worker:
                del self._workers[worker.key]
            worker.retired = True
            return True

    @staticmethod
    def _stop(worker: _Worker) -> None:
        worker.retired = True
        worker.jobs.put(None)  # after any queued job

    def close_netns(self, target: NetnsTarget) -> bool:
        """Retire the worker of ``target``'s namespace; False if there was none.

        A namespace no longer at its path (deleted by the runtime before a DEL)
        cannot be opened to find its worker: the workers that were opened by that
        path are retired instead. Their threads are what keeps such a namespace,
        and the container's end of a veth pair with it, alive; retiring one that
        something else still uses costs that user a new thread, nothing more.
        """
        try:
            with open_netns(target) as handle:
                key = handle.key
        except NetNSError:
            if not isinstance(target, str | os.PathLike):
                return False
            path = os.fspath(target)
            with self._lock:
                gone = [w for w in self._workers.values() if w.label == path]
                for stale in gone:
                    del self._workers[stale.key]
            for stale in gone:
                self._stop(stale)
            return bool(gone)
        with self._lock:
            worker = self._workers.pop(key, None)
        if worker is None:
            return False
        self._stop(worker)
        return True

    def close(self, *, wait: bool = True) -> None:
        """Retire every worker (and wait for the threads to end)."""
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            self._stop(worker)
        if wait:
            for worker in workers:
                if worker.thread is not threading.current_thread():
                    worker.thread.join()

    def stats(self) -> dict[str, int]:
        """How many workers are alive."""
        with self._lock:
            return {"workers": len(self._workers)}

    def _reset_after_fork(self) -> None:
        # The threads did not survive the fork; forget them (their fds were dup'd & closed).
        self._lock = threading.Lock()
        self._workers.clear()
        self._ns_locks = {}


def _run_inline(
    future: Future[T],
    label: str,
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    try:
        future.set_result(_call_labelled(label, fn, args, kwargs))
    except BaseException as exc:
        future.set_exception(exc)


def _call_labelled(
    label: str, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    """``fn(*args, **kwargs)`` in the current namespace, which messages call ``label``."""
    saved = _local.label
    _local.label = label
    try:
        return fn(*args, **kwargs)
    finally:
        _local.label = saved


def _switched_call(
    pool: NetnsPool,
    handle: NetNSHandle,
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    """``fn(*args, **kwargs)`` on this thread, switched into ``handle``'s namespace.

    The thread comes back to the namespace it was in, also when ``fn`` raises (or
    closing a socket does), before anything else; then the sockets the job made in
    the namespace are closed (they would keep it alive). Should the way back fail
    (it cannot, short of a kernel fault: the fd of the namespace left is held
    open), the thread is no longer where its caller believes, so the process is
    told loudly: a :class:`NetNSError` naming it.
    """
    saved_worker, saved_label = _local.worker, _local.label
    switched = _Switched(pool, handle.key, handle.label)
    entered = True  # before the call: an interruption right after it must come back too
    home = os.open("/proc/thread-self/ns/net", _HOME_FLAGS)
    try:
        try:
            setns(handle.fd)
        except OSError as exc:
            entered = False
            raise NetNSError(handle.label, f"setns: {exc.strerror}", errno=exc.errno or 0) from None
        _local.worker, _local.label = switched, handle.label
        return fn(*args, **kwargs)
    finally:
        # Back first, then the rest: nothing that may raise comes before the way home.
        try:
            if entered:
                _come_back(home, handle.label)
        finally:
            _local.worker, _local.label = saved_worker, saved_label
            try:
                switched.close_sockets()
            finally:
                os.close(home)


def _come_back(home: int, label: str) -> None:
    try:
        setns(home)
    except OSError as exc:  # pragma: no cover - kernel fault
        raise NetNSError(
            label,
            f"setns back to the thread's own namespace failed ({exc.strerror}): "
            f"thread {threading.current_thread().name} is stranded in it",
            errno=exc.errno or 0,
        ) from exc


def _loop_running() -> bool:
    """Whether this thread runs an asyncio loop (asyncio is never imported for it)."""
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and asyncio._get_running_loop() is not None


_default: NetnsPool | None = None
_default_lock = threading.Lock()


def default_pool() -> NetnsPool:
    """The pool behind :func:`run_in_netns` (made on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = NetnsPool()
        return _default


def run_in_netns(
    target: NetnsTarget, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run ``fn(*args, **kwargs)`` inside ``target``'s network namespace.

    ``target`` is a path (opened read-only, never created), an fd, a
    :class:`NetNSHandle`, or None for the caller's own namespace. The
    caller's thread enters the namespace for the job and comes back (on a
    thread running an asyncio loop, a worker thread runs it instead). Inside
    ``fn``, the helpers of :mod:`cnilib.netlink` act on that namespace.

    Everything ``fn`` does on that thread happens inside the namespace:
    children it starts and threads it creates live there, and so does a log
    record's handling. A logging handler that opens its connection lazily
    (``SocketHandler``, ``DatagramHandler``, ``HTTPHandler``, an exporter
    sending synchronously) would open it from inside the container: hand the
    records to a ``QueueHandler`` whose listener runs on a thread of its own.
    """
    return default_pool().run(target, fn, *args, **kwargs)


async def arun_in_netns(
    target: NetnsTarget, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """:func:`run_in_netns` for asyncio."""
    return await default_pool().arun(target, fn, *args, **kwargs)


def run_here(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn(*args, **kwargs)`` in the caller's own namespace, with its netlink sockets."""
    return default_pool().run(None, fn, *args, **kwargs)


def close_netns(target: NetnsTarget) -> bool:
    """Retire the default pool's worker for ``target`` (e.g. before deleting it)."""
    return default_pool().close_netns(target)


def ipr() -> IPRoute:
    """The worker's own pyroute2 ``IPRoute`` (bound to its namespace), made on first use."""
    worker = _local.worker
    if worker is None:
        raise NotOnWorkerError("cnilib.netlink helpers must run inside run_in_netns()")
    return worker.ipr()


def raw() -> RawNetlink:
    """The worker's own lean netlink socket (:mod:`cnilib.netlink._raw`), made on first use."""
    worker = _local.worker
    if worker is None:
        raise NotOnWorkerError("cnilib.netlink helpers must run inside run_in_netns()")
    return worker.raw()


def netns_label() -> str:
    """How the current job named its namespace (for messages); needs a worker."""
    if _local.worker is None:
        raise NotOnWorkerError("cnilib.netlink helpers must run inside run_in_netns()")
    return _local.label or _local.worker.label
