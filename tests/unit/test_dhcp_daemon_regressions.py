"""Regression tests for the lease daemon, its flags and the dhcp plugin's daemon calls.

No network: leases come from the scripted server of ``_dhcp_fake`` behind fake
sockets; the RPC runs on unix sockets in ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from cnilib._json import JSONValue
from cnilib.errors import CNIError, ErrorCode, PluginError, TryAgainLaterError
from cnilib.invoke import Command
from cnilib.netlink._dhcp import MessageType
from cnilib.plugins._base import PluginRequest
from cnilib.plugins.ipam.dhcp import _daemon, dhcp
from cnilib.plugins.ipam.dhcp._conf import SHUTTING_DOWN
from cnilib.plugins.ipam.dhcp._daemon import LeaseDaemon, activated_socket
from cnilib.plugins.ipam.dhcp._flags import FlagsHelp, parse_flags
from cnilib.plugins.ipam.dhcp._lease import Timing
from cnilib.plugins.ipam.dhcp._rpc import CmdArgs, DaemonCallError, RPCFailure, call
from cnilib.plugins.ipam.dhcp._rpc_server import serve_rpc
from tests.unit._dhcp_fake import FakeServer, RealClock
from tests.unit._guards import NO_SUCH_HOST

CONF: dict[str, JSONValue] = {"cniVersion": "1.0.0", "name": "dhcpnet", "ipam": {"type": "dhcp"}}
TIMING = Timing(attempt_timeout=0.05, resend_max=0.05, resend_timeout=0.5, fast_delay=0.01)


def cmd_args(
    netns: str, container_id: str = "cid", ifname: str = "eth0", conf: object = CONF
) -> CmdArgs:
    return CmdArgs(
        container_id=container_id,
        netns=netns,
        ifname=ifname,
        args="",
        path="/opt/cni/bin",
        stdin_data=json.dumps(conf).encode(),
    )


@pytest.fixture
def netns(tmp_path: Path) -> str:
    """A path that exists, standing for a container namespace."""
    path = tmp_path / "ns1"
    path.touch()
    return str(path)


def daemon_with(server: FakeServer, state_dir: Path | None = None) -> LeaseDaemon:
    return LeaseDaemon(state_dir=state_dir, timing=TIMING, open_socket=server.open_socket)


@asynccontextmanager
async def serving(daemon: LeaseDaemon, sock: Path) -> AsyncIterator[asyncio.Task[None]]:
    started = asyncio.Event()
    task = asyncio.create_task(daemon.serve(sock, ready=started.set))
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()
    try:
        yield task
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)


# ------------------------------------------------------------------- the daemon


@pytest.mark.asyncio
async def test_the_per_key_locks_are_forgotten_once_unused(netns: str) -> None:
    server = FakeServer(RealClock(), attachments=None)
    daemon = daemon_with(server)
    for cid in ("a", "b", "c"):
        await daemon.allocate(cmd_args(netns, cid))
        await daemon.release(cmd_args(netns, cid))
    await daemon.release(cmd_args(netns, "never"))
    assert daemon._locks == {}
    await daemon.close()


@pytest.mark.asyncio
async def test_an_add_from_another_namespace_does_not_return_the_old_lease(
    netns: str, tmp_path: Path
) -> None:
    # The container was re-created under the same ID and its DEL never came:
    # the lease kept in the old namespace must not be what the new one gets.
    server = FakeServer(RealClock(), attachments=None)
    daemon = daemon_with(server)
    await daemon.allocate(cmd_args(netns))
    other = tmp_path / "ns2"
    other.touch()
    await daemon.allocate(cmd_args(str(other)))
    (held,) = daemon._attachments.values()
    assert held.netns == str(other)
    assert held.keeper.netns == str(other)
    await daemon.close()


@pytest.mark.asyncio
async def test_gc_spares_an_attachment_allocated_again_while_it_waited(netns: str) -> None:
    server = FakeServer(RealClock(), attachments=None)
    daemon = daemon_with(server)
    await daemon.allocate(cmd_args(netns))
    key = next(iter(daemon._attachments))
    gc_args = cmd_args(netns, conf={**CONF, "cni.dev/valid-attachments": []})
    async with daemon._lock(key):
        gc = asyncio.create_task(daemon.gc(gc_args))
        await asyncio.sleep(0.01)  # GC picked its stale keys and waits for the lock
        # Meanwhile the attachment was released and added again (a new container).
        await daemon._forget(key, release=True)
        fresh = daemon._new_keeper(key, cmd_args(netns), _daemon._conf(cmd_args(netns)))
        await fresh.acquire()
        daemon._attachments[key] = _daemon._Attachment(
            container_id="cid", network="dhcpnet", ifname="eth0", netns=netns, priority=0,
            keeper=fresh,
        )  # fmt: skip
    await gc
    assert daemon._attachments.get(key) is not None
    assert daemon._attachments[key].keeper is fresh
    await daemon.close()


@pytest.mark.asyncio
async def test_an_allocate_in_flight_at_stop_is_answered_shutting_down(
    netns: str, tmp_path: Path
) -> None:
    server = FakeServer(RealClock(), attachments=None)
    server.answer_discover = False  # no server: the acquisition would take resend_timeout
    daemon = LeaseDaemon(
        state_dir=None,
        timing=Timing(attempt_timeout=30, resend_timeout=60),
        open_socket=server.open_socket,
    )
    sock = tmp_path / "d.sock"
    async with serving(daemon, sock) as task:
        pending = asyncio.create_task(
            asyncio.to_thread(call, sock, "DHCP.Allocate", cmd_args(netns))
        )
        while not server.sent:  # noqa: ASYNC110 -- the fake server has no event
            await asyncio.sleep(0.01)
        daemon.request_stop()
        await asyncio.wait_for(task, 10)
        with pytest.raises(DaemonCallError) as info:
            await asyncio.wait_for(pending, 10)
    assert info.value.reason == SHUTTING_DOWN
    assert not sock.exists()


@pytest.mark.asyncio
async def test_a_daemon_refused_at_a_live_socket_leaves_the_state_dir_alone(
    tmp_path: Path,
) -> None:
    sock = tmp_path / "d.sock"
    state = tmp_path / "state"
    state.mkdir()
    bad = state / "x.json"
    bad.write_text('{"version": 1, "key": "x", "lease": {}}')
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(sock))
        live.listen()
        daemon = LeaseDaemon(state_dir=state)
        with pytest.raises(CNIError, match="another dhcp daemon"):
            await daemon.serve(sock)
    assert bad.exists()
    assert sorted(os.listdir(state)) == ["x.json"]


def test_a_daemon_refused_at_a_live_socket_keeps_the_other_ones_pidfile(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"
    pidfile = tmp_path / "dhcp.pid"
    pidfile.write_text("4242\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(sock))
        live.listen()
        argv = ["-socketpath", str(sock), "-pidfile", str(pidfile), "-statedir", ""]
        assert _daemon.main(argv) == 1
    assert pidfile.read_text() == "4242\n"


@pytest.mark.asyncio
async def test_a_record_that_cannot_be_resumed_is_set_aside_not_deleted(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    record = state / "x.json"
    record.write_text('{"version": 1, "key": "x", "lease": {}}')
    daemon = LeaseDaemon(state_dir=state)
    await daemon.resume()
    assert not record.exists()
    assert (state / "x.json.bad").exists()
    assert daemon._attachments == {}


@pytest.mark.asyncio
async def test_a_record_with_a_malformed_ack_option_is_set_aside(
    netns: str, tmp_path: Path
) -> None:
    server = FakeServer(RealClock(), attachments=None)
    state = tmp_path / "state"
    first = daemon_with(server, state)
    await first.allocate(cmd_args(netns))
    await first.close()
    (path,) = state.glob("*.json")
    document: dict[str, Any] = json.loads(path.read_text())
    document["lease"]["ack"]["options"]["51"] = "0001"  # two bytes for a 4-byte option
    path.write_text(json.dumps(document))
    second = daemon_with(server, state)
    await second.resume()  # must not crash the daemon's start
    assert second._attachments == {}
    assert path.with_name(path.name + ".bad").exists()


@pytest.mark.asyncio
async def test_a_record_whose_namespace_is_gone_is_dropped(netns: str, tmp_path: Path) -> None:
    server = FakeServer(RealClock(), attachments=None)
    state = tmp_path / "state"
    first = daemon_with(server, state)
    await first.allocate(cmd_args(netns))
    await first.close()
    assert len(list(state.glob("*.json"))) == 1
    os.unlink(netns)
    second = daemon_with(server, state)
    await second.resume()
    assert second._attachments == {}
    assert list(state.iterdir()) == []


@pytest.mark.asyncio
async def test_del_succeeds_when_the_record_cannot_be_removed(
    netns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = FakeServer(RealClock(), attachments=None)
    daemon = daemon_with(server, tmp_path / "state")
    await daemon.allocate(cmd_args(netns))
    assert daemon.records is not None

    def refuse(key: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(daemon.records, "drop", refuse)
    await daemon.release(cmd_args(netns))
    await daemon.release(cmd_args(netns))  # and again
    assert daemon._attachments == {}


# ------------------------------------------------------------- socket activation


@pytest.fixture
def listen_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_FDNAMES", "dhcp")
    return monkeypatch


def test_activation_takes_the_socket_and_clears_the_environment(
    listen_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp_path / "a.sock"))
    sock.listen()
    sock.set_inheritable(True)
    listen_env.setattr(_daemon, "_LISTEN_FDS_START", sock.fileno())
    listener = activated_socket()
    assert listener is not None
    assert listener.fileno() == sock.fileno()
    assert not os.get_inheritable(sock.fileno())
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        assert name not in os.environ
    listener.detach()
    sock.close()


def test_activation_for_another_process_only_clears_the_environment(
    listen_env: pytest.MonkeyPatch,
) -> None:
    listen_env.setenv("LISTEN_PID", str(os.getpid() + 1))
    assert activated_socket() is None
    assert "LISTEN_FDS" not in os.environ


@pytest.mark.parametrize("fds", ["", "x", "-1", "0"])
def test_activation_with_a_count_that_is_no_number_means_no_socket(
    listen_env: pytest.MonkeyPatch, fds: str
) -> None:
    listen_env.setenv("LISTEN_FDS", fds)
    assert activated_socket() is None


def test_activation_of_a_descriptor_that_is_no_socket_is_an_error(
    listen_env: pytest.MonkeyPatch,
) -> None:
    read, write = os.pipe()
    try:
        listen_env.setattr(_daemon, "_LISTEN_FDS_START", read)
        with pytest.raises(CNIError, match="LISTEN_FDS=1 but no FD found"):
            activated_socket()
    finally:
        os.close(read)
        os.close(write)


# ------------------------------------------------------------------------ flags


@pytest.mark.parametrize(
    ("value", "expected"),
    [("True", True), ("T", True), ("1", True), ("False", False), ("F", False), ("0", False)],
)
def test_broadcast_takes_gos_parsebool_spellings(value: str, expected: bool) -> None:
    assert parse_flags([f"-broadcast={value}"]).broadcast is expected


@pytest.mark.parametrize("argv", [["-timeout", "0"], ["-resendmax=0s"], ["--resendtimeout=0"]])
def test_a_zero_duration_is_a_flag_error(argv: list[str]) -> None:
    with pytest.raises(CNIError, match="must be positive"):
        parse_flags(argv)


def test_a_zero_duration_is_exit_status_2_not_a_traceback(tmp_path: Path) -> None:
    assert _daemon.main(["-timeout", "0", "-socketpath", str(tmp_path / "s")]) == 2


@pytest.mark.parametrize("arg", ["---socketpath=x", "-=x", "--=x"])
def test_bad_flag_syntax_is_refused_as_go_does(arg: str) -> None:
    with pytest.raises(CNIError, match="bad flag syntax"):
        parse_flags([arg])


@pytest.mark.parametrize("arg", ["-h", "-help", "--help"])
def test_help_is_the_usage_and_exit_status_0(arg: str) -> None:
    with pytest.raises(FlagsHelp, match="-socketpath"):
        parse_flags([arg])
    assert _daemon.main([arg]) == 0


# ------------------------------------------------------------------- the plugin


def status_request(sock: Path) -> PluginRequest:
    config: dict[str, JSONValue] = {
        **CONF,
        "ipam": {"type": "dhcp", "daemonSocketPath": str(sock)},
    }
    return PluginRequest(
        command=Command.STATUS,
        container_id="",
        netns="",
        ifname="",
        args=(),
        path=(),
        config=config,
        stdin=json.dumps(config).encode(),
        host_netns=NO_SUCH_HOST,
    )


@asynccontextmanager
async def raw_daemon(sock: Path, *, hang_up: bool) -> AsyncIterator[None]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        await reader.readline()
        writer.write(b"HTTP/1.0 200 Connected to Go RPC\n\n")
        await writer.drain()
        if not hang_up:
            await reader.read()  # never answers
        writer.close()

    server = await asyncio.start_unix_server(serve, path=str(sock))
    try:
        yield
    finally:
        server.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("hang_up", [False, True])
async def test_status_of_a_daemon_that_does_not_answer_is_code_50(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hang_up: bool
) -> None:
    monkeypatch.setattr(dhcp, "_STATUS_TIMEOUT", 0.2)
    sock = tmp_path / "d.sock"
    async with raw_daemon(sock, hang_up=hang_up):
        with pytest.raises(PluginError) as info:
            await asyncio.to_thread(dhcp.Dhcp().status, status_request(sock))
    assert info.value.code == ErrorCode.PLUGIN_NOT_AVAILABLE


@pytest.mark.asyncio
async def test_a_daemon_shutting_down_is_try_again_later(netns: str, tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"

    async def stopping(method: str, args: CmdArgs) -> None:
        raise RPCFailure(SHUTTING_DOWN)

    server = await serve_rpc(sock, stopping, methods=_daemon.METHODS)
    try:
        with pytest.raises(TryAgainLaterError) as info:
            await asyncio.to_thread(dhcp.call, str(sock), "DHCP.Allocate", cmd_args(netns))
    finally:
        server.close()
    assert info.value.code == ErrorCode.TRY_AGAIN_LATER
    assert SHUTTING_DOWN in str(info.value)


def test_daemon_thread_raises_a_failure_after_start_up_on_exit(tmp_path: Path) -> None:
    """A daemon that fails while serving is not lost in its thread: leaving says so."""

    class Failing(LeaseDaemon):
        async def close(self, *, release: bool = False) -> None:
            raise RuntimeError("the state directory vanished")

    daemon = Failing(state_dir=None, timing=TIMING)
    thread = _daemon.DaemonThread(daemon, tmp_path / "d.sock")
    thread.__enter__()
    assert (tmp_path / "d.sock").exists()
    with pytest.raises(RuntimeError, match="state directory vanished"):
        thread.__exit__(None, None, None)


def test_main_logs_through_one_handler_however_often_it_runs() -> None:
    import logging

    root = logging.getLogger("cnilib")
    before = list(root.handlers)
    # Earlier main() calls in this process may have added theirs: start without it.
    root.handlers[:] = [h for h in before if not getattr(h, "_cnilib_dhcp_daemon", False)]
    try:
        others = len(root.handlers)
        _daemon._configure_logging()
        _daemon._configure_logging()
        assert len(root.handlers) == others + 1
    finally:
        root.handlers[:] = before


@pytest.mark.asyncio
async def test_an_ack_without_a_subnet_mask_is_released_not_kept(
    netns: str, tmp_path: Path
) -> None:
    """ADD fails (Go's text) and, as Go, the address goes back to the server: no lease
    left renewing, no record."""
    server = FakeServer(RealClock(), attachments=None)
    server.options = {code: value for code, value in server.options.items() if code != 1}
    daemon = daemon_with(server, tmp_path / "state")
    with pytest.raises(CNIError, match="Subnet Mask not found in DHCPACK"):
        await daemon.allocate(cmd_args(netns))
    assert server.kinds()[-1] == MessageType.RELEASE
    with pytest.raises(RPCFailure, match="no DHCP lease is held"):
        await daemon.check(cmd_args(netns))
    assert not list((tmp_path / "state").glob("*.json"))
    await daemon.close()


@pytest.mark.asyncio
async def test_a_del_gives_up_the_add_still_acquiring_instead_of_waiting_for_it(
    netns: str,
) -> None:
    """No server answers: the ADD would retry for its whole budget (here 1000 s, Go's
    default is 208). The container's DEL cancels it and returns; the ADD fails saying why."""
    server = FakeServer(RealClock(), attachments=None)
    server.answer_discover = False
    slow = Timing(attempt_timeout=0.05, resend_max=0.05, resend_timeout=1000.0, fast_delay=0.01)
    daemon = LeaseDaemon(state_dir=None, timing=slow, open_socket=server.open_socket)
    add = asyncio.ensure_future(daemon.allocate(cmd_args(netns)))
    for _ in range(3000):  # until the ADD is under way
        if server.requests:
            break
        await asyncio.sleep(0.01)
    # A bound that only turns a hang (the DEL waiting for the ADD) into a failure.
    await asyncio.wait_for(daemon.release(cmd_args(netns)), timeout=30)
    with pytest.raises(RPCFailure, match=r"deleted \(DEL\) meanwhile"):
        await add
    assert MessageType.REQUEST not in server.kinds()
    await daemon.close()
