"""The DHCP lease daemon: keeps one lease per attachment for the container's lifetime.

The ``dhcp`` plugin runs for milliseconds; a lease must be renewed for as
long as the container lives. So, as in Go, a long-running daemon holds the
leases and the plugin asks it over a Unix socket, with Go's protocol (net/rpc
over HTTP, gob): Go's dhcp plugin can use this daemon and cnilib's plugin can
use Go's.

Run it as ``python -m cnilib.plugins dhcp daemon [flags]`` or as the installed
``dhcp`` executable with the argument ``daemon``; Go's flags are accepted
(``-socketpath``, ``-pidfile``, ``-hostprefix``, ``-broadcast``, ``-timeout``,
``-resendmax``, ``-resendtimeout``) plus ``-statedir``. In a runtime's own
process, :class:`LeaseDaemon` runs as an asyncio task (:meth:`LeaseDaemon.serve`)
or on its own thread (:class:`DaemonThread`).

Where it differs from Go's daemon, on purpose:

- Leases survive a restart: each is recorded in the state directory
  (:mod:`._state`) and a restarted daemon resumes renewing them; DEL of a
  container from before the restart still releases its lease. Shutting down
  (SIGTERM) releases nothing, so a daemon upgrade does not renumber containers.
- A stale socket file (the daemon was killed) is removed at start; a live one
  (another daemon answers on it) is refused. Go fails on both.
- A second ADD or a CHECK for a lease it holds returns that lease (Go's latest
  release; Debian's 1.1.1 acquires another one and leaks the first); an ADD
  naming another namespace or interface than the one the lease is kept in
  (the container was re-created and its DEL never came) acquires anew there.
- Calls for one attachment are answered one after the other (a DEL during
  its ADD waits for the ADD); calls for different attachments run at once.
- Stopping (SIGTERM) answers the calls in flight with "the dhcp daemon is
  shutting down" (code 11 from cnilib's plugin) instead of hanging up; the
  socket and the pidfile are removed, and the exit status is 0. The pidfile
  is written once the socket listens, so a daemon that cannot listen leaves
  a running one's pidfile alone. A socket passed by systemd is not removed.
- ``DHCP.Check`` and ``DHCP.GC`` exist besides Go's ``DHCP.Allocate`` and
  ``DHCP.Release``: CHECK fails for a lease the daemon does not hold instead of
  acquiring one, and GC releases the leases of attachments that are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from cnilib._log import get_logger
from cnilib.errors import CNIError
from cnilib.netlink._dhcp import DhcpReply
from cnilib.plugins.ipam.dhcp._conf import SHUTTING_DOWN, DhcpConf
from cnilib.plugins.ipam.dhcp._lease import LeaseKeeper, LeaseRequestOptions, Timing
from cnilib.plugins.ipam.dhcp._options import lease_result
from cnilib.plugins.ipam.dhcp._rpc import DHCP_METHODS, CmdArgs, RPCFailure
from cnilib.plugins.ipam.dhcp._rpc_server import serve_rpc
from cnilib.plugins.ipam.dhcp._state import LeaseRecords
from cnilib.results import ResultV100
from cnilib.results._gotext import go_quote

__all__ = [
    "DEFAULT_SOCKET_PATH",
    "DEFAULT_STATE_DIR",
    "DaemonThread",
    "LeaseDaemon",
    "main",
]

DEFAULT_SOCKET_PATH = "/run/cni/dhcp.sock"
DEFAULT_STATE_DIR = "/run/cni/dhcp"
"""Under /run: a lease does not outlive a reboot, and neither should its record."""

METHODS = (*DHCP_METHODS, "DHCP.Check", "DHCP.Status", "DHCP.GC")
"""Go's two methods, and cnilib's own (the plugin falls back when a Go daemon lacks them)."""

_DRAIN_TIMEOUT = 5.0
"""How long stopping waits for the calls in flight to be answered."""

_log = get_logger("cnilib.dhcp")


@attrs.define
class _KeyLock:
    """A key's lock and how many calls hold or wait for it (dropped at zero)."""

    lock: asyncio.Lock = attrs.Factory(asyncio.Lock)
    users: int = 0


@attrs.define
class _Attachment:
    """A lease the daemon keeps, and what it needs to answer about it."""

    container_id: str
    network: str
    ifname: str
    netns: str
    """As the plugin gave it (the daemon opens ``host_prefix + netns``)."""
    priority: int
    keeper: LeaseKeeper

    def result(self) -> ResultV100:
        ack = self.keeper.ack
        if ack is None:
            raise RPCFailure(f"{self.keeper.key}: no lease held")
        return lease_result(ack.yiaddr, ack.options, priority=self.priority)

    def record(self) -> dict[str, Any]:
        return {
            "containerID": self.container_id,
            "network": self.network,
            "ifname": self.ifname,
            "netns": self.netns,
            "priority": self.priority,
            "lease": self.keeper.to_record(),
        }


class LeaseDaemon:
    """The leases of every attachment, behind Go's RPC methods.

    ``state_dir`` None keeps the leases in memory only, as Go does.
    ``host_prefix`` is put before every namespace path (a daemon running in a
    container that sees the host's ``/run/netns`` under another path).
    """

    def __init__(
        self,
        *,
        state_dir: str | os.PathLike[str] | None = DEFAULT_STATE_DIR,
        host_prefix: str = "",
        broadcast: bool = False,
        timing: Timing | None = None,
        open_socket: Callable[..., Any] | None = None,
    ) -> None:
        self.records = LeaseRecords(state_dir) if state_dir is not None else None
        self.host_prefix = host_prefix
        self.broadcast = broadcast
        self.timing = timing if timing is not None else Timing()
        self._open_socket = open_socket
        self._attachments: dict[str, _Attachment] = {}
        self._locks: dict[str, _KeyLock] = {}
        self._acquiring: dict[str, asyncio.Future[DhcpReply]] = {}
        """The acquisitions under way, by key (a DEL cancels its attachment's)."""
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._calls = 0
        """RPC calls being answered (stopping waits for their answers)."""
        self._idle: asyncio.Event | None = None

    # -- the RPC methods ------------------------------------------------------------

    async def handle(self, method: str, args: CmdArgs) -> ResultV100 | None:
        """Answer one RPC call (the handler :func:`serve_rpc` calls).

        While :meth:`serve` runs, a call still in flight when it is asked to
        stop is cancelled and answered :data:`SHUTTING_DOWN` (an acquisition
        can take minutes; the caller gets an answer, not a hang-up).
        """
        stop = self._stop
        if stop is None:  # not serving: nothing to race against
            return await self._call(method, args)
        if stop.is_set():
            raise RPCFailure(SHUTTING_DOWN)
        self._calls += 1
        if self._idle is not None:
            self._idle.clear()
        work = asyncio.ensure_future(self._call(method, args))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((work, stopping), return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                _log.info("%s for %s: cancelled, %s", method, args.container_id, SHUTTING_DOWN)
                raise RPCFailure(SHUTTING_DOWN)
            return work.result()
        finally:
            stopping.cancel()
            work.cancel()  # the caller's task cancelled: so is the call
            self._calls -= 1
            if self._calls == 0 and self._idle is not None:
                self._idle.set()

    async def _call(self, method: str, args: CmdArgs) -> ResultV100 | None:
        if method == "DHCP.Allocate":
            return await self.allocate(args)
        if method == "DHCP.Release":
            await self.release(args)
            return None
        if method == "DHCP.Check":
            return await self.check(args)
        if method == "DHCP.GC":
            await self.gc(args)
            return None
        if method == "DHCP.Status":
            return None  # answering is the status
        raise RPCFailure(f"rpc: can't find method {method}")

    async def allocate(self, args: CmdArgs) -> ResultV100:
        """ADD: the attachment's lease, acquired now unless the daemon holds it already."""
        conf = _conf(args)
        key = conf.lease_key(args.container_id, args.ifname)
        async with self._lock(key):
            held = self._attachments.get(key)
            same = held is not None and (held.netns, held.ifname) == (args.netns, args.ifname)
            if held is not None and same and held.keeper.check():
                return held.result()
            if held is not None:
                # Lost (NAK, expiry), or kept in a namespace the container no
                # longer has (its DEL never came): renewing there would let the
                # lease run out under the new interface. Start over; the same
                # client ID gets the same binding from the server.
                await self._forget(key, release=False)
            keeper = self._new_keeper(key, args, conf)
            await self._acquire(key, keeper)
            attachment = _Attachment(
                container_id=args.container_id,
                network=conf.network,
                ifname=args.ifname,
                netns=args.netns,
                priority=conf.priority,
                keeper=keeper,
            )
            try:
                result = attachment.result()
            except CNIError:
                # An ACK the result cannot be made of (no subnet mask): as Go,
                # give the address back rather than keep renewing it unused.
                await keeper.stop(release=True)
                raise
            self._attachments[key] = attachment
            self._save(attachment)
            keeper.start()
            return result

    async def _acquire(self, key: str, keeper: LeaseKeeper) -> None:
        """``keeper.acquire()``, which a DEL of the same attachment cancels.

        Its errors are CNIErrors: the plugin gets their text.
        """
        acquiring = asyncio.ensure_future(keeper.acquire())
        self._acquiring[key] = acquiring
        try:
            await acquiring
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this call itself is cancelled (the daemon is stopping)
            raise RPCFailure(
                f"{key}: no lease acquired: the attachment was deleted (DEL) meanwhile"
            ) from None
        finally:
            if self._acquiring.get(key) is acquiring:
                del self._acquiring[key]

    async def release(self, args: CmdArgs) -> None:
        """DEL: release the attachment's lease; one the daemon does not hold is fine.

        An ADD of the attachment still acquiring its lease is given up rather
        than waited for: that can take the whole ``-resendtimeout`` (minutes),
        and the container is going away.
        """
        conf = _conf(args)
        key = conf.lease_key(args.container_id, args.ifname)
        acquiring = self._acquiring.get(key)
        if acquiring is not None:
            acquiring.cancel()
        async with self._lock(key):
            await self._forget(key, release=True)

    async def check(self, args: CmdArgs) -> ResultV100:
        """CHECK: the lease, which must be held (not lost to a NAK or expiry)."""
        conf = _conf(args)
        key = conf.lease_key(args.container_id, args.ifname)
        held = self._attachments.get(key)
        if held is None:
            raise RPCFailure(f"{key}: no DHCP lease is held for this attachment")
        if not held.keeper.check():
            raise RPCFailure(f"{key}: the DHCP lease was lost ({held.keeper.state_name})")
        return held.result()

    async def gc(self, args: CmdArgs) -> None:
        """GC: release this network's leases whose attachment is not in the valid list."""
        conf = _conf(args)
        valid = conf.valid_attachments
        stale = {
            key: held
            for key, held in self._attachments.items()
            if held.network == conf.network and (held.container_id, held.ifname) not in valid
        }
        for key in stale:
            async with self._lock(key):
                if self._attachments.get(key) is not stale[key]:
                    continue  # released, or allocated anew, while waiting for the lock
                _log.info("%s: released by GC", key)
                await self._forget(key, release=True)

    # -- lifecycle ----------------------------------------------------------------

    async def resume(self) -> None:
        """Take up the leases recorded by a previous run of the daemon.

        A record that cannot be resumed is renamed ``*.bad`` (kept for a
        human); one whose namespace is gone is dropped (its container went
        while the daemon was down: there is nothing left to renew or release).
        """
        self._resume()

    def _resume(self) -> None:
        # Synchronous: serve() calls it once the socket is bound and before the
        # loop runs again, so no call is answered before the leases are back.
        if self.records is None:
            return
        for document in self.records.load():
            key = document["key"]
            try:
                attachment = self._attachment_from(key, document)
            except (KeyError, TypeError, ValueError, CNIError) as exc:
                self.records.set_aside(key, f"cannot be resumed: {exc}")
                continue
            if not os.path.exists(attachment.keeper.netns):
                _log.info(
                    "%s: namespace %s is gone, forgetting the lease",
                    key,
                    attachment.keeper.netns,
                )
                self._drop_record(key)
                continue
            self._attachments[key] = attachment
            _log.info("%s: resuming lease of %s", key, attachment.keeper.address)
            attachment.keeper.start()

    async def serve(
        self,
        socket_path: str | os.PathLike[str] = DEFAULT_SOCKET_PATH,
        *,
        listener: socket.socket | None = None,
        ready: Callable[[], None] | None = None,
    ) -> None:
        """Serve until :meth:`request_stop`; the socket is removed afterwards.

        ``listener``: an already listening socket (systemd socket
        activation); ``socket_path`` is then only used for messages.
        Leases are kept (not released) when serving stops.
        """
        self._loop = asyncio.get_running_loop()
        stop = self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        path = Path(socket_path)
        # The socket first: a daemon that cannot listen (another one serves
        # there) must not touch the state directory the other one keeps.
        try:
            server = await serve_rpc(listener or path, self.handle, methods=METHODS)
        except (OSError, ValueError) as exc:
            self._stop = None
            if getattr(exc, "errno", None) == errno.EADDRINUSE:
                raise CNIError(f"another dhcp daemon is listening on {path}") from exc
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise CNIError(f"Error getting listener: listen unix {path}: {reason}") from exc
        owned = listener is None
        try:
            self._resume()
            _log.info("listening on %s", path)
            if ready is not None:
                ready()
            await stop.wait()
        finally:
            stop.set()  # also when cancelled: calls in flight are answered
            server.close()
            if self._calls:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_DRAIN_TIMEOUT):
                        await self._idle.wait()
            if owned:
                _unlink(path)
            await self.close(release=False)

    def request_stop(self) -> None:
        """Make :meth:`serve` return (from any thread, or a signal handler)."""
        loop, stop = self._loop, self._stop
        if loop is None or stop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: serving is over already
            loop.call_soon_threadsafe(stop.set)

    async def close(self, *, release: bool = False) -> None:
        """Stop every lease's maintenance (and release them if ``release``)."""
        attachments, self._attachments = self._attachments, {}
        for held in attachments.values():
            await held.keeper.stop(release=release)
            if release:
                self._drop_record(held.keeper.key)

    # -- the parts --------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lock(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s lock; the lock is forgotten when no call uses it any more
        (a daemon sees every container the node ever ran)."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]

    def _keeper_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"on_change": self._changed}
        if self._open_socket is not None:
            kwargs["open_socket"] = self._open_socket
        return kwargs

    def _new_keeper(self, key: str, args: CmdArgs, conf: DhcpConf) -> LeaseKeeper:
        options = LeaseRequestOptions(
            client_id=conf.client_id(args.container_id, args.ifname),
            parameters=conf.parameters,
            extra_options=conf.extra_options,
            broadcast=self.broadcast,
        )
        return LeaseKeeper(
            key,
            self.host_prefix + args.netns,
            args.ifname,
            options,
            self.timing,
            **self._keeper_kwargs(),
        )

    def _attachment_from(self, key: str, document: Mapping[str, Any]) -> _Attachment:
        keeper = LeaseKeeper.from_record(
            document["lease"], timing=self.timing, **self._keeper_kwargs()
        )
        if keeper.key != key:
            raise ValueError(f"the lease inside is {keeper.key!r}")
        # -broadcast and -hostprefix are this daemon's settings, as its timing
        # is: a daemon restarted to change them (or moved into a container)
        # applies them to the leases it resumes too.
        keeper.options = attrs.evolve(keeper.options, broadcast=self.broadcast)
        netns = str(document["netns"])
        keeper.netns = self.host_prefix + netns
        return _Attachment(
            container_id=str(document["containerID"]),
            network=str(document["network"]),
            ifname=str(document["ifname"]),
            netns=netns,
            priority=int(document["priority"]),
            keeper=keeper,
        )

    async def _forget(self, key: str, *, release: bool) -> None:
        held = self._attachments.pop(key, None)
        if held is not None:
            await held.keeper.stop(release=release)
        self._drop_record(key)

    def _changed(self, keeper: LeaseKeeper) -> None:
        """A lease changed (renewed, rebound, lost, gone): keep its record current."""
        held = self._attachments.get(keeper.key)
        if held is None or held.keeper is not keeper:
            return
        if keeper.gone:  # its namespace or link disappeared: nothing left to keep
            _log.info("%s: interface gone, forgetting the lease", keeper.key)
            self._attachments.pop(keeper.key, None)
            self._drop_record(keeper.key)
            return
        self._save(held)

    def _drop_record(self, key: str) -> None:
        if self.records is None:
            return
        try:
            self.records.drop(key)
        except OSError as exc:  # DEL must still succeed (and a retried DEL too)
            _log.error("%s: could not remove the lease record: %s", key, exc)

    def _save(self, held: _Attachment) -> None:
        if self.records is None:
            return
        try:
            self.records.write(held.keeper.key, held.record())
        except Exception as exc:  # a full disk must not stop the lease from being kept
            _log.error("%s: could not record the lease: %s", held.keeper.key, exc)


def _conf(args: CmdArgs) -> DhcpConf:
    """The request's configuration; its errors go back to the plugin as their text."""
    return DhcpConf.from_stdin(args.stdin_data, args=args.args, source="the request's netconf")


# -- the socket ---------------------------------------------------------------------


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


_LISTEN_FDS_START = 3
_LISTEN_ENV = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def activated_socket() -> socket.socket | None:
    """The listening socket systemd passed (``LISTEN_FDS``), as Go's daemon takes it.

    As go-systemd's ``activation.Listeners``: the variables count only when
    ``LISTEN_PID`` is this process and are removed from the environment
    either way (a child must not take them for its own); values that are not
    numbers mean no socket; the descriptor is made close-on-exec. One unix
    stream socket is accepted; more, or a descriptor that is not one, is an
    error.
    """
    env = {name: os.environ.pop(name, None) for name in _LISTEN_ENV}
    try:
        pid, count = int(env["LISTEN_PID"] or ""), int(env["LISTEN_FDS"] or "")
    except ValueError:
        return None
    if pid != os.getpid() or count <= 0:
        return None
    for fd in range(_LISTEN_FDS_START, _LISTEN_FDS_START + count):
        with contextlib.suppress(OSError):
            os.set_inheritable(fd, False)
    if count > 1:
        raise CNIError(f"Too many ({count}) FDs passed through socket activation")
    try:
        listener = socket.socket(fileno=_LISTEN_FDS_START)
    except OSError:
        raise CNIError("LISTEN_FDS=1 but no FD found") from None
    if listener.family != socket.AF_UNIX or listener.type != socket.SOCK_STREAM:
        listener.detach()
        raise CNIError("the socket passed through socket activation is not a unix stream socket")
    listener.setblocking(False)
    return listener


# -- embedding ---------------------------------------------------------------------


class DaemonThread:
    """A :class:`LeaseDaemon` serving on its own thread and event loop.

    For a runtime that runs the ``dhcp`` plugin in process: the plugin's
    calls are synchronous, so the daemon must not share their thread::

        with DaemonThread(LeaseDaemon(state_dir="/run/cni/dhcp"), "/run/cni/dhcp.sock"):
            runtime.run()

    Entering waits until the socket accepts calls (or raises the start-up
    error); leaving stops the daemon and keeps its leases recorded.
    """

    def __init__(self, daemon: LeaseDaemon, socket_path: str | os.PathLike[str]) -> None:
        self.daemon = daemon
        self.socket_path = socket_path
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="cnilib-dhcp-daemon", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self.daemon.serve(self.socket_path, ready=self._ready.set))
        except BaseException as exc:
            self._error = exc
            if self._ready.is_set():  # after start-up: nobody is waiting to hear it
                _log.error("the dhcp lease daemon stopped: %s", exc)
        finally:
            self._ready.set()

    def __enter__(self) -> DaemonThread:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.request_stop()
        self._thread.join()
        if self._error is not None and exc[0] is None:
            # Serving failed after it started: say so, rather than let the
            # plugin calls that found no daemon be the only sign.
            raise self._error


# -- the command --------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    """``dhcp daemon [flags]``: serve until SIGTERM or SIGINT; the exit status.

    0 after a signal (leases kept and recorded, socket and pidfile removed),
    1 when it cannot start, 2 for bad flags (0 for ``-h``), as Go's.
    The pidfile is written once the socket listens and removed only by the
    daemon that wrote it: a second daemon refused at the socket leaves the
    first one's pidfile alone.
    """
    from cnilib.plugins.ipam.dhcp._flags import FlagsHelp, parse_flags

    try:
        flags = parse_flags(argv)
    except FlagsHelp as exc:
        print(exc, file=sys.stderr)
        return 0
    except CNIError as exc:
        print(f"dhcp daemon: {exc}", file=sys.stderr)
        return 2
    _configure_logging()
    daemon = LeaseDaemon(
        state_dir=flags.state_dir or None,
        host_prefix=flags.host_prefix,
        broadcast=flags.broadcast,
        timing=Timing(
            attempt_timeout=flags.timeout,
            resend_max=flags.resend_max,
            resend_timeout=flags.resend_timeout,
        ),
    )
    socket_path = Path(flags.host_prefix + flags.socket_path)
    pidfile = Path(flags.pidfile) if flags.pidfile else None
    written: list[Path] = []
    try:
        if flags.pidfile and not os.path.isabs(flags.pidfile):
            raise CNIError(f"Error writing pidfile {go_quote(flags.pidfile)}: path not absolute")
        listener = activated_socket()

        def ready() -> None:
            if pidfile is not None:
                _write_pidfile(pidfile)
                written.append(pidfile)

        asyncio.run(_serve_until_signal(daemon, socket_path, listener, ready))
    except CNIError as exc:
        _log.error("%s", exc)
        return 1
    finally:
        for path in written:
            _unlink(path)
    return 0


async def _serve_until_signal(
    daemon: LeaseDaemon,
    socket_path: Path,
    listener: socket.socket | None,
    ready: Callable[[], None],
) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.request_stop)
    await daemon.serve(socket_path, listener=listener, ready=ready)
    _log.info("stopped; leases are kept")


def _write_pidfile(path: Path) -> None:
    try:
        path.write_text(f"{os.getpid()}\n")
    except OSError as exc:
        raise CNIError(f"Error writing pidfile {go_quote(str(path))}: {exc.strerror}") from exc


def _configure_logging() -> None:
    import logging

    root = logging.getLogger("cnilib")
    if any(getattr(h, "_cnilib_dhcp_daemon", False) for h in root.handlers):
        return  # main() ran before in this process: one handler, not two
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler._cnilib_dhcp_daemon = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
