"""The resident plugin server: :class:`PluginServer`."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import stat
import struct
import threading
import time
import traceback
from typing import TYPE_CHECKING

import attrs

from cnilib.errors import CNIError, ErrorCode
from cnilib.plugins.server._client import RESULT
from cnilib.plugins.server._protocol import (
    MAX_REQUEST,
    ProtocolError,
    Request,
    encode_refusal,
    encode_result,
    peer_allowed,
    receive_request,
)

if TYPE_CHECKING:
    from types import TracebackType

    from cnilib.plugins._executor import InProcessExecutor

__all__ = [
    "DEFAULT_SOCKET",
    "PluginServer",
    "PluginServerError",
    "wait_for_server",
]

DEFAULT_SOCKET = "/run/cni/cnilib-plugins.sock"
"""Where the server listens, and the executables look for it, unless told otherwise."""

READ_TIMEOUT = 10.0
"""Seconds a client may take to send its request (and to read the answer)."""

NETNS_IDLE = 30.0
"""Seconds the server keeps a caller's namespace open after its last call (its
plugin instances and namespace worker are reused meanwhile)."""

_TICK = 1.0  # how often the accept loop looks at idle namespaces and the idle exit


class PluginServerError(CNIError):
    """The server cannot listen (another one serves the socket, or the path is taken)."""

    default_code = ErrorCode.INTERNAL


class ServerRunningError(PluginServerError):
    """Another server listens on the socket already."""


@attrs.define(eq=False)
class _Namespace:
    """A caller's network namespace, kept while in use and a while after."""

    key: tuple[int, int]
    fd: int | None  # None: the server's own namespace
    executor: InProcessExecutor
    users: int = 0
    last_used: float = 0.0

    @property
    def path(self) -> str | None:
        return None if self.fd is None else f"/proc/{os.getpid()}/fd/{self.fd}"


class _Namespaces:
    """One entry per namespace (by nsfs device and inode, whatever fd number it came
    with), so the calls of one node share their plugin instances and the netlink pool's
    worker of that namespace instead of making new ones per call."""

    def __init__(self, idle: float) -> None:
        from cnilib.netlink._ns import NetNSHandle

        self.idle = idle
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, int], _Namespace] = {}
        with NetNSHandle.current() as own:
            self._own = own.key

    def acquire(self, fd: int) -> _Namespace:
        """The entry of the namespace ``fd`` is open on; takes ownership of ``fd``."""
        from cnilib.netlink._ns import NetNSHandle
        from cnilib.plugins._executor import InProcessExecutor

        try:
            key = NetNSHandle.from_fd(fd).key
        except BaseException:
            os.close(fd)
            raise
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                own = key == self._own
                if own:
                    os.close(fd)
                entry = _Namespace(key, None if own else fd, InProcessExecutor(timeout=None))
                entry.executor.host_netns = entry.path
                self._entries[key] = entry
            else:
                os.close(fd)
            entry.users += 1
            return entry

    def release(self, entry: _Namespace) -> None:
        with self._lock:
            entry.users -= 1
            entry.last_used = time.monotonic()

    def evict(self, *, everything: bool = False) -> None:
        """Forget the namespaces unused for ``idle`` seconds (all unused ones: ``everything``)."""
        now = time.monotonic()
        with self._lock:
            gone = [
                e
                for e in self._entries.values()
                if e.users == 0 and (everything or now - e.last_used >= self.idle)
            ]
            for entry in gone:
                del self._entries[entry.key]
        for entry in gone:
            self._forget(entry)

    @staticmethod
    def _forget(entry: _Namespace) -> None:
        entry.executor.close()
        if entry.fd is not None:
            from cnilib.netlink._pool import close_netns

            # The pool's worker keeps the namespace alive as long as this fd does.
            with contextlib.suppress(CNIError, OSError):
                close_netns(entry.path)
            os.close(entry.fd)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _discard(conn: socket.socket) -> None:
    """After a refusal: read what the client sent until it closes (at most a second),
    so that closing with its request unread does not reset the connection before it
    has read the refusal."""
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(0.2)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and conn.recv(65536):
        pass


def _peer_uid(conn: socket.socket) -> int:
    cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", cred)[1])


class PluginServer:
    """Answers CNI calls for the installed plugin executables over a Unix socket.

    Each call runs through the executables' own code
    (:func:`cnilib.plugins._main.respond`, skel's :func:`~cnilib.plugins._skel.handle`),
    with the caller's network namespace as the host namespace, on a thread of its
    own: results, error objects, exit status and stderr are the executable's.

    :param socket_path: where to listen (its directory is made ``0700`` if missing;
        the socket is ``0600``).
    :param idle_exit: stop after this many seconds without a call (``None``: never).
    :param read_timeout: seconds a client may take to send its request.
    :param max_request: the largest request body read, in bytes.
    :param netns_idle: seconds a caller's namespace is kept after its last call.

    Only clients of the server's own user, or root, are served (``SO_PEERCRED``);
    others get a refusal (their executable then runs the plugin itself).

    Use it as a context manager (``with PluginServer(path) as server: ...``), or
    :meth:`start` and :meth:`stop`; :meth:`serve_forever` blocks until stopped.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] = DEFAULT_SOCKET,
        *,
        idle_exit: float | None = None,
        read_timeout: float = READ_TIMEOUT,
        max_request: int = MAX_REQUEST,
        netns_idle: float = NETNS_IDLE,
    ) -> None:
        self.socket_path = os.fspath(socket_path)
        self.idle_exit = idle_exit
        self.read_timeout = read_timeout
        self.max_request = max_request
        self.uid = os.geteuid()
        self.served = 0
        """Calls answered (run, whatever their outcome)."""
        self.refused = 0
        """Connections refused: another user's, or a bad request."""
        self._netns = _Namespaces(netns_idle)
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._wake_r, self._wake_w = -1, -1
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._active: set[threading.Thread] = set()
        self._last_call = time.monotonic()

    def __repr__(self) -> str:
        return f"PluginServer({self.socket_path!r})"

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> PluginServer:
        """Listen, and answer calls on a background thread; return ``self``."""
        if self._thread is not None:
            return self
        self._listener = self._listen()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._last_call = time.monotonic()
        self._thread = threading.Thread(
            target=self._accept_loop, name="cnilib-plugin-server", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """:meth:`start` if needed, then wait until stopped (by :meth:`stop`, the idle
        exit, or Ctrl-C, which stops it)."""
        self.start()
        try:
            while not self._stopped.wait(3600):
                pass
        finally:
            self.stop()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop listening (the socket file goes), finish the calls in progress (waiting
        at most ``timeout`` seconds for them) and release every namespace. Idempotent."""
        self._stopped.set()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                active = next(iter(self._active), None)
            if active is None or time.monotonic() >= deadline:
                break
            active.join(max(0.0, deadline - time.monotonic()))
        self._netns.evict(everything=True)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1

    @property
    def running(self) -> bool:
        """Listening and answering."""
        return self._thread is not None and not self._stopped.is_set()

    def __enter__(self) -> PluginServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the socket ----------------------------------------------------------

    def _listen(self) -> socket.socket:
        path = self.socket_path
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        # Servers starting at once (executables start them on demand) take turns: else
        # one could find another's socket bound but not yet listening, take it for a
        # dead server's and remove it.
        lock = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._clear_stale(path)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                listener.bind(path)
                os.chmod(path, 0o600)
                listener.listen(128)
                st = os.stat(path)
            except OSError as exc:
                listener.close()
                raise PluginServerError(f"plugin server cannot listen on {path}: {exc}") from exc
        finally:
            os.close(lock)  # releases the lock
        self._inode = (st.st_dev, st.st_ino)
        return listener

    @staticmethod
    def _clear_stale(path: str) -> None:
        """Remove the socket a dead server left; refuse a live one or another file."""
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise PluginServerError(f"plugin server cannot listen on {path}: not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # nobody listens: a dead server's
            return
        except OSError as exc:
            raise PluginServerError(f"plugin server cannot listen on {path}: {exc}") from exc
        finally:
            probe.close()
        raise ServerRunningError(f"plugin server cannot listen on {path}: another server does")

    def _unlink(self) -> None:
        """Remove the socket file if it is still ours (not a successor's)."""
        try:
            st = os.lstat(self.socket_path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.socket_path)
        except OSError:
            pass

    # -- accepting -----------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        try:
            while not self._stopped.is_set():
                ready, _, _ = select.select([listener.fileno(), self._wake_r], [], [], _TICK)
                if listener.fileno() in ready:
                    self._accept(listener)
                self._netns.evict()
                if self._idle_expired():
                    self._stopped.set()
        finally:
            # New clients find no socket (and run the plugin themselves); those that
            # connected already are answered: accept what is queued, then close.
            self._unlink()
            listener.setblocking(False)
            while self._accept(listener):
                pass
            listener.close()

    def _idle_expired(self) -> bool:
        if self.idle_exit is None:
            return False
        with self._lock:
            busy = bool(self._active)
            last = self._last_call
        return not busy and time.monotonic() - last >= self.idle_exit

    def _accept(self, listener: socket.socket) -> bool:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False
        except OSError:  # EMFILE and the like: the client finds no answer, not a crash
            return False
        thread = threading.Thread(
            target=self._connection, args=(conn,), name="cnilib-plugin-call", daemon=True
        )
        with self._lock:
            self._active.add(thread)
            self._last_call = time.monotonic()
        thread.start()
        return True

    # -- one call ------------------------------------------------------------

    def _connection(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(self.read_timeout)
                answer = self._answer(conn)
                with contextlib.suppress(OSError):  # the client is gone: nobody to tell
                    conn.sendall(answer)
                    if answer and answer[5] != RESULT:
                        _discard(conn)
        finally:
            with self._lock:
                self._active.discard(threading.current_thread())
                self._last_call = time.monotonic()

    def _answer(self, conn: socket.socket) -> bytes:
        try:
            peer = _peer_uid(conn)
        except OSError as exc:
            self._count_refusal()
            return encode_refusal(f"cannot tell who is calling: {exc}")
        if not peer_allowed(peer, self.uid):
            self._count_refusal()
            return encode_refusal(
                f"plugin server {self.socket_path} serves uid {self.uid} and root, not uid {peer}"
            )
        try:
            request = receive_request(conn, max_size=self.max_request)
        except ProtocolError as exc:
            self._count_refusal()
            return encode_refusal(f"bad request: {exc}", bad_request=True)
        except OSError:  # too slow, or gone
            self._count_refusal()
            return b""
        try:
            namespace = self._netns.acquire(request.netns_fd)
        except CNIError as exc:
            self._count_refusal()
            return encode_refusal(f"bad request: {exc}", bad_request=True)
        try:
            return encode_result(*self._run(request, namespace.executor))
        finally:
            self._netns.release(namespace)

    def _count_refusal(self) -> None:
        with self._lock:
            self.refused += 1

    def _run(self, request: Request, executor: InProcessExecutor) -> tuple[int, bytes, bytes]:
        from cnilib.plugins._main import respond

        with self._lock:
            self.served += 1
        try:
            return respond(request.plugin_type, request.env, request.stdin, executor=executor)
        except Exception:  # what the executable's interpreter would print and exit with
            return 1, b"", traceback.format_exc().encode()


def wait_for_server(path: str | os.PathLike[str], timeout: float = 10.0) -> None:
    """Wait until a server answers connections at ``path`` (one started as a process);
    :class:`PluginServerError` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            probe.connect(os.fspath(path))
            return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise PluginServerError(f"no plugin server at {os.fspath(path)}: {exc}") from exc
        finally:
            probe.close()
        time.sleep(0.02)
