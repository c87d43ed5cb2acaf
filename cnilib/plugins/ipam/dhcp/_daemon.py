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
  release; Debian's 1.1.1 acquires another one and leaks the first).
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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from cnilib._log import get_logger
from cnilib.errors import CNIError
from cnilib.plugins.ipam.dhcp._conf import DhcpConf
from cnilib.plugins.ipam.dhcp._lease import LeaseError, LeaseKeeper, LeaseRequestOptions, Timing
from cnilib.plugins.ipam.dhcp._options import lease_result
from cnilib.plugins.ipam.dhcp._rpc import DHCP_METHODS, CmdArgs, RPCFailure, serve_rpc
from cnilib.plugins.ipam.dhcp._state import LeaseRecords
from cnilib.results import ResultV100

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

_log = get_logger("cnilib.dhcp")


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
        self._locks: dict[str, asyncio.Lock] = {}
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the RPC methods ------------------------------------------------------------

    async def handle(self, method: str, args: CmdArgs) -> ResultV100 | None:
        """Answer one RPC call (the handler :func:`serve_rpc` calls)."""
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
            if held is not None and held.keeper.check():
                return held.result()
            if held is not None:  # lost (NAK, expiry): start over
                await self._forget(key, release=False)
            keeper = self._new_keeper(key, args, conf)
            await keeper.acquire()  # its errors are CNIErrors: the plugin gets their text
            attachment = _Attachment(
                container_id=args.container_id,
                network=conf.network,
                ifname=args.ifname,
                netns=args.netns,
                priority=conf.priority,
                keeper=keeper,
            )
            self._attachments[key] = attachment
            self._save(attachment)
            keeper.start()
            return attachment.result()

    async def release(self, args: CmdArgs) -> None:
        """DEL: release the attachment's lease; one the daemon does not hold is fine."""
        conf = _conf(args)
        key = conf.lease_key(args.container_id, args.ifname)
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
        stale = [
            key
            for key, held in self._attachments.items()
            if held.network == conf.network and (held.container_id, held.ifname) not in valid
        ]
        for key in stale:
            async with self._lock(key):
                _log.info("%s: released by GC", key)
                await self._forget(key, release=True)

    # -- lifecycle ----------------------------------------------------------------

    async def resume(self) -> None:
        """Take up the leases recorded by a previous run of the daemon."""
        if self.records is None:
            return
        for document in self.records.load():
            key = document["key"]
            try:
                attachment = self._attachment_from(key, document)
            except (KeyError, TypeError, ValueError, LeaseError) as exc:
                _log.error("%s: lease record cannot be resumed: %s", key, exc)
                self.records.drop(key)
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
        self._stop = asyncio.Event()
        path = Path(socket_path)
        await self.resume()
        try:
            server = await serve_rpc(listener or path, self.handle, methods=METHODS)
        except OSError as exc:
            await self.close(release=False)
            if exc.errno == errno.EADDRINUSE:
                raise CNIError(f"another dhcp daemon is listening on {path}") from exc
            raise CNIError(f"Error getting listener: listen unix {path}: {exc.strerror}") from exc
        owned = listener is None
        try:
            _log.info("listening on %s", path)
            if ready is not None:
                ready()
            await self._stop.wait()
        finally:
            server.close()
            await server.wait_closed()
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
            if release and self.records is not None:
                self.records.drop(held.keeper.key)

    # -- the parts --------------------------------------------------------------

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

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
        return _Attachment(
            container_id=str(document["containerID"]),
            network=str(document["network"]),
            ifname=str(document["ifname"]),
            netns=str(document["netns"]),
            priority=int(document["priority"]),
            keeper=keeper,
        )

    async def _forget(self, key: str, *, release: bool) -> None:
        held = self._attachments.pop(key, None)
        if held is not None:
            await held.keeper.stop(release=release)
        if self.records is not None:
            self.records.drop(key)

    def _changed(self, keeper: LeaseKeeper) -> None:
        """A lease changed (renewed, rebound, lost, gone): keep its record current."""
        held = self._attachments.get(keeper.key)
        if held is None or held.keeper is not keeper:
            return
        if keeper.gone:  # its namespace or link disappeared: nothing left to keep
            _log.info("%s: interface gone, forgetting the lease", keeper.key)
            self._attachments.pop(keeper.key, None)
            if self.records is not None:
                self.records.drop(keeper.key)
            return
        self._save(held)

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


def activated_socket() -> socket.socket | None:
    """The listening socket systemd passed (``LISTEN_FDS``), as Go's daemon takes it."""
    from cnilib.errors import CNIError

    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    if count == 0:
        return None
    if count > 1:
        raise CNIError(f"Too many ({count}) FDs passed through socket activation")
    listener = socket.socket(fileno=3)
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


# -- the command --------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    """``dhcp daemon [flags]``: serve until SIGTERM or SIGINT; the exit status."""
    from cnilib.errors import CNIError
    from cnilib.plugins.ipam.dhcp._flags import parse_flags

    try:
        flags = parse_flags(argv)
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
    try:
        listener = activated_socket()
        if flags.pidfile:
            _write_pidfile(flags.pidfile)
        asyncio.run(_serve_until_signal(daemon, socket_path, listener))
    except CNIError as exc:
        _log.error("%s", exc)
        return 1
    finally:
        if flags.pidfile:
            _unlink(Path(flags.pidfile))
    return 0


async def _serve_until_signal(
    daemon: LeaseDaemon, socket_path: Path, listener: socket.socket | None
) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.request_stop)
    await daemon.serve(socket_path, listener=listener)
    _log.info("stopped; leases are kept")


def _write_pidfile(path: str) -> None:
    from cnilib.errors import CNIError

    if not os.path.isabs(path):
        raise CNIError(f"Error writing pidfile {path!r}: path not absolute")
    try:
        Path(path).write_text(f"{os.getpid()}\n")
    except OSError as exc:
        raise CNIError(f"Error writing pidfile {path!r}: {exc.strerror}") from exc


def _configure_logging() -> None:
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("cnilib")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
