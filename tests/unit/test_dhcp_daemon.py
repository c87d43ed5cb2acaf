"""The DHCP lease daemon against the scripted fake server (no root, no namespace, no network).

The daemon's keepers run on the system clock, so the fake server runs on
real time too, with short timers; the renewal tests speed the keepers' clock
up (:class:`FastClock`). The container namespace is an empty file (the daemon
only looks whether it exists): the fake server's sockets take the place of
real ones, and setting a link down (on a lost lease) is faked, so no
namespace is ever entered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cnilib.netlink
from cnilib.errors import CNIError, ErrorCode, PluginError
from cnilib.netlink import NetNSNotFoundError
from cnilib.netlink._dhcp import MessageType
from cnilib.plugins.ipam.dhcp._daemon import DaemonThread, LeaseDaemon, main
from cnilib.plugins.ipam.dhcp._lease import LeaseError, Timing
from cnilib.plugins.ipam.dhcp._rpc import (
    CmdArgs,
    DaemonCallError,
    DaemonUnreachableError,
    RPCFailure,
    call,
)
from cnilib.results import ResultV100
from tests.unit._dhcp_fake import SERVER_IP, FakeServer, RealClock, ack_options

NETNS = "/nonexistent/cnilib-unit/ctr"
"""Replaced by each test's namespace file (the ``netns`` fixture)."""
POOL = [f"192.0.2.{n}" for n in range(100, 120)]
TIMING = Timing(
    attempt_timeout=0.2,
    resend_max=0.1,
    resend_timeout=0.6,
    fast_delay=0.05,
    first_backoff=0.05,
    jitter=0.0,
)
WAIT = 5.0
"""The most any condition is waited for (they hold within milliseconds)."""


def netconf(name: str = "dhcpnet", **ipam: Any) -> bytes:
    return json.dumps(
        {"cniVersion": "1.1.0", "name": name, "type": "bridge", "ipam": {"type": "dhcp", **ipam}}
    ).encode()


def cmd(
    container_id: str = "cid",
    ifname: str = "eth0",
    *,
    net: str = "dhcpnet",
    netns: str | None = None,
    conf: bytes | None = None,
) -> CmdArgs:
    return CmdArgs(
        container_id=container_id,
        netns=NETNS if netns is None else netns,
        ifname=ifname,
        args="",
        path="/opt/cni/bin",
        stdin_data=netconf(net) if conf is None else conf,
    )


def gc_args(net: str, *valid: tuple[str, str]) -> CmdArgs:
    conf = json.loads(netconf(net))
    conf["cni.dev/valid-attachments"] = [{"containerID": c, "ifname": i} for c, i in valid]
    return cmd("", "", net=net, netns="", conf=json.dumps(conf).encode())


def client_id(container_id: str = "cid", ifname: str = "eth0", net: str = "dhcpnet") -> bytes:
    return f"\x00{container_id}/{net}/{ifname}".encode()


def addresses(result: ResultV100 | None) -> list[str]:
    assert result is not None
    return [str(ip.address) for ip in result.ips]


def record_files(state: Path) -> list[str]:
    return sorted(p.name for p in state.iterdir()) if state.exists() else []


def read_record(state: Path, key: str = "cid/dhcpnet/eth0") -> dict[str, Any]:
    document: dict[str, Any] = json.loads((state / (_quote(key) + ".json")).read_text())
    return document


def _quote(key: str) -> str:
    from urllib.parse import quote

    return quote(key, safe="")


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (on the loop) until ``condition`` holds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait (blocking) until ``condition`` holds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.fixture(autouse=True)
def netns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The container namespace: a file that exists (never entered)."""
    path = tmp_path / "netns" / "ctr"
    path.parent.mkdir()
    path.write_text("")
    monkeypatch.setattr(sys.modules[__name__], "NETNS", str(path))
    return str(path)


SPEED = 1000.0
FAST_TIMING = Timing(attempt_timeout=100, resend_max=100, resend_timeout=600, jitter=0.0)
"""In the keepers' fast time: 0.1 s real for an attempt."""
SHORT = ack_options(lease=100, t1=50, t2=85)
"""A lease the fast clock renews 50 ms after the ACK."""
LONG = ack_options(lease=10**6, t1=5 * 10**5, t2=8 * 10**5)
"""A lease that is not renewed during a test, even on the fast clock."""


class FastClock:
    """The keepers' clock, running :data:`SPEED` times faster than the real one."""

    origin = (time.time(), time.monotonic())

    def time(self) -> float:
        wall, mono = self.origin
        return wall + (time.monotonic() - mono) * SPEED

    def monotonic(self) -> float:
        return time.monotonic() * SPEED

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0) / SPEED)


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch, server: FakeServer) -> None:
    """Keepers made from now on run on the fast clock; the server gives SHORT leases."""
    from cnilib.plugins.ipam.dhcp import _lease

    monkeypatch.setattr(_lease, "SystemClock", FastClock)
    server.options = SHORT


@pytest.fixture(autouse=True)
def link_downs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """Setting a link down on a lost lease, recorded instead of entering a namespace."""
    calls: list[tuple[str, tuple[Any, ...]]] = []

    async def fake(netns: str, func: Any, *args: Any) -> None:
        calls.append((netns, args))

    monkeypatch.setattr(cnilib.netlink, "arun_in_netns", fake)
    return calls


@pytest.fixture
def server() -> FakeServer:
    return FakeServer(RealClock(), attachments=None, pool=POOL)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def new_daemon(
    server: FakeServer, state: Path | None, *, timing: Timing = TIMING, **kw: Any
) -> LeaseDaemon:
    return LeaseDaemon(state_dir=state, timing=timing, open_socket=server.open_socket, **kw)


@contextlib.asynccontextmanager
async def running(daemon: LeaseDaemon) -> AsyncIterator[LeaseDaemon]:
    """The daemon, its keepers stopped (leases kept) at the end."""
    try:
        yield daemon
    finally:
        await daemon.close(release=False)


async def failure(coro: Any) -> str:
    with pytest.raises(RPCFailure) as info:
        await coro
    return info.value.text


# ------------------------------------------------------------------------- allocate


@pytest.mark.asyncio
async def test_allocate_returns_the_leases_result(server: FakeServer, state: Path) -> None:
    server.options = {
        **ack_options(),
        6: bytes([192, 0, 2, 53, 192, 0, 2, 54]),
        15: b"example.test",
    }
    async with running(new_daemon(server, state)) as daemon:
        result = await daemon.allocate(cmd(conf=netconf(priority=7)))

    [ip] = result.ips
    assert (str(ip.address), str(ip.gateway)) == ("192.0.2.100/24", "192.0.2.1")
    [route] = result.routes
    assert (str(route.dst), str(route.gw), route.priority) == ("0.0.0.0/0", "192.0.2.1", 7)
    assert [str(a) for a in result.dns.nameservers] == ["192.0.2.53", "192.0.2.54"]
    assert result.dns.domain == "example.test"
    assert server.kinds() == [MessageType.DISCOVER, MessageType.REQUEST]
    discover = server.requests[0]
    assert discover.client_id == client_id()
    assert discover.broadcast is False
    assert server.opens == server.closes == 1


@pytest.mark.asyncio
async def test_a_second_allocate_returns_the_same_lease(server: FakeServer, state: Path) -> None:
    async with running(new_daemon(server, state)) as daemon:
        first = await daemon.allocate(cmd())
        again = await daemon.allocate(cmd())
        other = await daemon.allocate(cmd(ifname="eth1"))

    assert again == first
    assert addresses(first) == ["192.0.2.100/24"]
    assert addresses(other) == ["192.0.2.101/24"]
    assert server.kinds_of(client_id()) == [MessageType.DISCOVER, MessageType.REQUEST]
    assert server.kinds_of(client_id(ifname="eth1")) == [MessageType.DISCOVER, MessageType.REQUEST]


@pytest.mark.asyncio
async def test_concurrent_allocates_for_one_key_acquire_once(
    server: FakeServer, state: Path
) -> None:
    server.latency = 0.02  # each reply takes a while: the calls overlap
    async with running(new_daemon(server, state)) as daemon:
        results = await asyncio.gather(*(daemon.allocate(cmd()) for _ in range(4)))

    assert all(r == results[0] for r in results)
    assert server.kinds() == [MessageType.DISCOVER, MessageType.REQUEST]


@pytest.mark.asyncio
async def test_broadcast_and_host_prefix(server: FakeServer, state: Path) -> None:
    server.attachments = {("/host" + NETNS, "eth0")}
    async with running(new_daemon(server, state, broadcast=True, host_prefix="/host")) as daemon:
        await daemon.allocate(cmd())
    assert [r.broadcast for r in server.requests] == [True, True]
    assert read_record(state)["netns"] == NETNS  # as the plugin gave it


@pytest.mark.asyncio
async def test_allocate_without_a_server_fails_and_keeps_nothing(
    server: FakeServer, state: Path
) -> None:
    server.answer_discover = False
    async with running(new_daemon(server, state)) as daemon:
        with pytest.raises(LeaseError, match="no more tries"):
            await daemon.allocate(cmd())
        assert "no DHCP lease is held" in await failure(daemon.check(cmd()))
    assert record_files(state) == []
    assert set(server.kinds()) == {MessageType.DISCOVER}


@pytest.mark.asyncio
async def test_a_bad_netconf_is_the_callers_error(server: FakeServer, state: Path) -> None:
    async with running(new_daemon(server, state)) as daemon:
        with pytest.raises(PluginError) as info:
            await daemon.allocate(cmd(conf=b"{nope"))
        assert info.value.code == ErrorCode.DECODING_FAILURE
        assert "error parsing netconf" in str(info.value)
        with pytest.raises(PluginError, match="ipam"):
            await daemon.allocate(cmd(conf=b'{"name": "n"}'))
    assert server.sent == []


# -------------------------------------------------------------------- release, check


@pytest.mark.asyncio
async def test_release_sends_release_and_drops_the_record(server: FakeServer, state: Path) -> None:
    async with running(new_daemon(server, state)) as daemon:
        await daemon.allocate(cmd())
        assert record_files(state) == ["cid%2Fdhcpnet%2Feth0.json"]
        await daemon.release(cmd())
        text = await failure(daemon.check(cmd()))

    assert text == "cid/dhcpnet/eth0: no DHCP lease is held for this attachment"
    assert server.kinds() == [MessageType.DISCOVER, MessageType.REQUEST, MessageType.RELEASE]
    release = server.requests[-1]
    assert (release.ciaddr, release.server_id) == ("192.0.2.100", SERVER_IP)
    assert release.client_id == client_id()
    assert record_files(state) == []


@pytest.mark.asyncio
async def test_release_of_an_unknown_key_succeeds(server: FakeServer, state: Path) -> None:
    async with running(new_daemon(server, state)) as daemon:
        await daemon.release(cmd())
        await daemon.allocate(cmd())
        await daemon.release(cmd(ifname="eth9"))
        await daemon.release(cmd())
        await daemon.release(cmd())  # twice: fine, and no second RELEASE
    assert server.kinds().count(MessageType.RELEASE) == 1


@pytest.mark.asyncio
async def test_check(server: FakeServer, state: Path) -> None:
    async with running(new_daemon(server, state)) as daemon:
        text = await failure(daemon.check(cmd()))
        assert text == "cid/dhcpnet/eth0: no DHCP lease is held for this attachment"
        allocated = await daemon.allocate(cmd())
        assert await daemon.check(cmd()) == allocated
        other = await failure(daemon.check(cmd(net="othernet")))
        assert other == "cid/othernet/eth0: no DHCP lease is held for this attachment"
    assert server.kinds() == [MessageType.DISCOVER, MessageType.REQUEST]  # CHECK acquires nothing


# ----------------------------------------------------------------------------- gc


@pytest.mark.asyncio
async def test_gc_releases_only_this_networks_leases_not_in_the_list(
    server: FakeServer, state: Path
) -> None:
    async with running(new_daemon(server, state)) as daemon:
        await daemon.allocate(cmd("c1"))
        await daemon.allocate(cmd("c2"))
        await daemon.allocate(cmd("c2", "eth1"))
        await daemon.allocate(cmd("c3", net="othernet"))
        await daemon.gc(gc_args("dhcpnet", ("c1", "eth0"), ("c2", "eth1"), ("c9", "eth0")))

        released = {r.client_id for r in server.requests if r.message_type is MessageType.RELEASE}
        assert released == {client_id("c2")}
        for kept in (cmd("c1"), cmd("c2", "eth1"), cmd("c3", net="othernet")):
            await daemon.check(kept)
        assert "no DHCP lease" in await failure(daemon.check(cmd("c2")))
        assert record_files(state) == [
            "c1%2Fdhcpnet%2Feth0.json",
            "c2%2Fdhcpnet%2Feth1.json",
            "c3%2Fothernet%2Feth0.json",
        ]

        await daemon.gc(gc_args("dhcpnet"))  # an empty list: every lease of the network
        assert record_files(state) == ["c3%2Fothernet%2Feth0.json"]


@pytest.mark.asyncio
async def test_gc_needs_the_valid_attachments(server: FakeServer, state: Path) -> None:
    async with running(new_daemon(server, state)) as daemon:
        await daemon.allocate(cmd())
        with pytest.raises(PluginError) as info:
            await daemon.gc(cmd())
        assert info.value.code == ErrorCode.INVALID_NETWORK_CONFIG
        assert "cni.dev/valid-attachments" in str(info.value)
        await daemon.check(cmd())


# ------------------------------------------------------------------ renew and loss


@pytest.mark.asyncio
@pytest.mark.usefixtures("fast")
async def test_a_renewal_rewrites_the_record(server: FakeServer, state: Path) -> None:
    server.request_plan = ["ack", ("ack", LONG)]  # renewed once, then kept
    async with running(new_daemon(server, state, timing=FAST_TIMING)) as daemon:
        await daemon.allocate(cmd())
        first = read_record(state)
        await until(lambda: len(server.sent) == 3, "the renewal")
        await until(lambda: read_record(state)["lease"]["obtained"] != first["lease"]["obtained"],
                    "the renewed record")  # fmt: skip
        renewed = read_record(state)
        await daemon.check(cmd())

    renew = server.requests[2]
    assert (renew.message_type, renew.ciaddr, renew.dst_ip) == (
        MessageType.REQUEST,
        "192.0.2.100",
        SERVER_IP,
    )
    assert first["lease"]["ack"]["options"]["51"] == "00000064"
    assert renewed["lease"]["ack"]["options"]["51"] == LONG[51].hex()
    assert renewed["lease"]["obtained"] > first["lease"]["obtained"]
    assert (renewed["containerID"], renewed["network"], renewed["ifname"], renewed["netns"]) == (
        "cid",
        "dhcpnet",
        "eth0",
        NETNS,
    )


@pytest.mark.asyncio
@pytest.mark.usefixtures("fast")
async def test_a_lease_lost_on_renewal_fails_check_and_allocate_starts_over(
    server: FakeServer, state: Path, link_downs: list[tuple[str, tuple[Any, ...]]]
) -> None:
    server.request_plan = ["ack", "nak"]
    async with running(new_daemon(server, state, timing=FAST_TIMING)) as daemon:
        await daemon.allocate(cmd())
        await until(lambda: bool(link_downs), "the loss")
        server.options = LONG
        await until(lambda: read_record(state)["lease"]["state"] == "lost", "the lost record")
        text = await failure(daemon.check(cmd()))
        assert text == "cid/dhcpnet/eth0: the DHCP lease was lost (lost)"
        assert link_downs == [(NETNS, ("eth0",))]

        again = await daemon.allocate(cmd())
        assert addresses(again) == ["192.0.2.100/24"]
        await daemon.check(cmd())
        assert read_record(state)["lease"]["state"] == "bound"

    assert server.kinds() == [
        MessageType.DISCOVER,
        MessageType.REQUEST,
        MessageType.REQUEST,  # the renewal, NAK'd
        MessageType.DISCOVER,  # started over, no RELEASE of a lost lease
        MessageType.REQUEST,
    ]


@pytest.mark.asyncio
@pytest.mark.usefixtures("fast")
async def test_a_lease_whose_namespace_vanished_is_forgotten(
    server: FakeServer, state: Path, link_downs: list[tuple[str, tuple[Any, ...]]]
) -> None:
    async with running(new_daemon(server, state, timing=FAST_TIMING)) as daemon:
        await daemon.allocate(cmd())
        server.open_error = NetNSNotFoundError(NETNS)  # at the renewal
        await until(lambda: record_files(state) == [], "the record dropped")
        text = await failure(daemon.check(cmd()))
    assert text == "cid/dhcpnet/eth0: no DHCP lease is held for this attachment"
    assert server.kinds() == [MessageType.DISCOVER, MessageType.REQUEST]
    assert link_downs == []


@pytest.mark.asyncio
async def test_an_allocate_from_another_namespace_acquires_there(
    server: FakeServer, state: Path, tmp_path: Path
) -> None:
    other = str(tmp_path / "netns" / "ctr2")
    async with running(new_daemon(server, state)) as daemon:
        first = await daemon.allocate(cmd())
        again = await daemon.allocate(cmd(netns=other))
        assert await daemon.check(cmd(netns=other)) == again
    assert addresses(again) == addresses(first)  # the same client ID: the same address
    assert server.kinds() == [MessageType.DISCOVER, MessageType.REQUEST] * 2
    assert read_record(state)["netns"] == other


# ------------------------------------------------------------------------ restart


def netns_file(path: str) -> None:
    """A namespace file (never entered) at ``path``."""
    Path(path).parent.mkdir(parents=True)
    Path(path).write_text("")


async def allocated_then_stopped(
    server: FakeServer, state: Path, age: float = 0.0
) -> dict[str, Any]:
    """A lease acquired by a daemon that then stopped; its record made ``age`` s older."""
    async with running(new_daemon(server, state)) as daemon:
        await daemon.allocate(cmd())
    document = read_record(state)
    document["lease"]["obtained"] -= age
    (state / "cid%2Fdhcpnet%2Feth0.json").write_text(json.dumps(document))
    server.sent.clear()
    return document


@pytest.mark.asyncio
async def test_stopping_keeps_the_lease(server: FakeServer, state: Path) -> None:
    await allocated_then_stopped(server, state)
    assert server.sent == []  # no RELEASE
    assert record_files(state) == ["cid%2Fdhcpnet%2Feth0.json"]


@pytest.mark.asyncio
async def test_a_restarted_daemon_resumes(server: FakeServer, state: Path) -> None:
    await allocated_then_stopped(server, state)
    async with running(new_daemon(server, state)) as daemon:
        await daemon.resume()
        result = await daemon.check(cmd())
        assert addresses(result) == ["192.0.2.100/24"]
        assert await daemon.allocate(cmd()) == result
        assert server.sent == []  # before T1: nothing to say to the server
        await daemon.release(cmd())
    [release] = server.requests
    assert release.message_type is MessageType.RELEASE
    assert (release.ciaddr, release.client_id) == ("192.0.2.100", client_id())
    assert record_files(state) == []


@pytest.mark.asyncio
async def test_a_restarted_daemon_past_t1_renews_instead_of_discovering(
    server: FakeServer, state: Path
) -> None:
    before = await allocated_then_stopped(server, state, age=60)  # T1 50, T2 85
    async with running(new_daemon(server, state)) as daemon:
        await daemon.resume()
        await until(lambda: read_record(state)["lease"]["obtained"] > before["lease"]["obtained"],
                    "the renewed record")  # fmt: skip
        await daemon.check(cmd())
    [renew] = server.requests
    assert renew.message_type is MessageType.REQUEST
    assert (renew.ciaddr, renew.dst_ip, renew.requested_ip) == ("192.0.2.100", SERVER_IP, None)


@pytest.mark.asyncio
async def test_a_restarted_daemon_applies_its_own_broadcast_flag_to_resumed_leases(
    server: FakeServer, state: Path
) -> None:
    """``-broadcast`` is the daemon's setting (as its timing is), not the record's: a
    daemon restarted with it asks for the expired lease with the BROADCAST flag."""
    await allocated_then_stopped(server, state, age=200)  # lease 100: expired, INIT-REBOOT
    async with running(new_daemon(server, state, broadcast=True)) as daemon:
        await daemon.resume()
        await until(lambda: bool(server.requests), "the INIT-REBOOT request")
    reboot = server.requests[0]
    assert (reboot.message_type, reboot.requested_ip) == (MessageType.REQUEST, "192.0.2.100")
    assert reboot.broadcast


@pytest.mark.asyncio
async def test_a_restarted_daemon_applies_its_own_host_prefix_to_resumed_leases(
    server: FakeServer, state: Path, tmp_path: Path
) -> None:
    """A daemon moved into a container (now with ``-hostprefix``) renews the leases
    it resumes through its prefix, as it would open a new one, not the old path."""
    before = await allocated_then_stopped(server, state, age=60)  # past T1: renews at once
    prefix = str(tmp_path / "host")
    netns_file(prefix + NETNS)
    server.attachments = {(prefix + NETNS, "eth0")}
    async with running(new_daemon(server, state, host_prefix=prefix)) as daemon:
        await daemon.resume()
        await until(lambda: read_record(state)["lease"]["obtained"] > before["lease"]["obtained"],
                    "the renewed record")  # fmt: skip
    assert read_record(state)["netns"] == NETNS  # as the plugin gave it


@pytest.mark.asyncio
async def test_a_record_of_a_vanished_namespace_is_dropped(
    server: FakeServer, state: Path, netns: str
) -> None:
    await allocated_then_stopped(server, state)
    os.unlink(netns)
    async with running(new_daemon(server, state)) as daemon:
        await daemon.resume()
        assert "no DHCP lease" in await failure(daemon.check(cmd()))
        await daemon.release(cmd())
    assert record_files(state) == []
    assert server.sent == []  # nothing to release in a namespace that is gone


@pytest.mark.asyncio
async def test_a_corrupted_record_is_set_aside(
    server: FakeServer, state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await allocated_then_stopped(server, state)
    (state / "x%2Fdhcpnet%2Feth0.json").write_text("{garbage")
    async with running(new_daemon(server, state)) as daemon:
        with caplog.at_level(logging.ERROR, "cnilib.dhcp"):
            await daemon.resume()
        await daemon.check(cmd())
        assert "no DHCP lease" in await failure(daemon.check(cmd("x")))
    assert record_files(state) == ["cid%2Fdhcpnet%2Feth0.json", "x%2Fdhcpnet%2Feth0.json.bad"]
    assert "x%2Fdhcpnet%2Feth0.json" in caplog.text


@pytest.mark.asyncio
async def test_a_record_that_cannot_be_resumed_is_set_aside(
    server: FakeServer, state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    document = await allocated_then_stopped(server, state)
    document["lease"]["ack"]["yiaddr"] = "not an address"
    (state / "cid%2Fdhcpnet%2Feth0.json").write_text(json.dumps(document))
    async with running(new_daemon(server, state)) as daemon:
        with caplog.at_level(logging.ERROR, "cnilib.dhcp"):
            await daemon.resume()
        assert "no DHCP lease" in await failure(daemon.check(cmd()))
        await daemon.allocate(cmd())  # starts over
    assert "cid%2Fdhcpnet%2Feth0.json cannot be resumed" in caplog.text
    assert record_files(state) == ["cid%2Fdhcpnet%2Feth0.json", "cid%2Fdhcpnet%2Feth0.json.bad"]


@pytest.mark.asyncio
async def test_without_a_state_dir_nothing_is_written(server: FakeServer, tmp_path: Path) -> None:
    async with running(new_daemon(server, None)) as daemon:
        await daemon.allocate(cmd())
        await daemon.resume()
        await daemon.check(cmd())
    assert os.listdir(tmp_path) == ["netns"]


# ---------------------------------------------------------------- serving over RPC


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "run" / "dhcp.sock"


@pytest.fixture
def serving(server: FakeServer, state: Path, sock: Path) -> Iterator[DaemonThread]:
    with DaemonThread(new_daemon(server, state), sock) as thread:
        yield thread


def rpc_error(method: str, args: CmdArgs, path: Path) -> str:
    with pytest.raises(DaemonCallError) as info:
        call(path, method, args, timeout=WAIT)
    return str(info.value)


@pytest.mark.usefixtures("serving")
def test_rpc_methods(server: FakeServer, sock: Path) -> None:
    result = call(sock, "DHCP.Allocate", cmd(), timeout=WAIT)
    assert addresses(result) == ["192.0.2.100/24"]
    assert call(sock, "DHCP.Check", cmd(), timeout=WAIT) == result
    assert call(sock, "DHCP.Status", cmd(), timeout=WAIT) is None
    assert call(sock, "DHCP.GC", gc_args("dhcpnet", ("cid", "eth0")), timeout=WAIT) is None
    assert call(sock, "DHCP.Check", cmd(), timeout=WAIT) == result
    assert call(sock, "DHCP.Release", cmd(), timeout=WAIT) is None
    assert rpc_error("DHCP.Check", cmd(), sock) == (
        "error calling DHCP.Check: cid/dhcpnet/eth0: no DHCP lease is held for this attachment"
    )
    assert call(sock, "DHCP.Release", cmd(), timeout=WAIT) is None
    assert rpc_error("DHCP.Nope", cmd(), sock) == (
        "error calling DHCP.Nope: rpc: can't find method DHCP.Nope"
    )
    assert rpc_error("DHCP.GC", cmd(), sock).startswith("error calling DHCP.GC: ")
    assert "error parsing netconf" in rpc_error("DHCP.Allocate", cmd(conf=b"{"), sock)
    assert server.kinds() == [MessageType.DISCOVER, MessageType.REQUEST, MessageType.RELEASE]


@pytest.mark.usefixtures("serving")
def test_rpc_calls_in_parallel(server: FakeServer, sock: Path) -> None:
    server.latency = 0.02
    results: list[ResultV100 | None] = [None] * 6

    def one(n: int) -> None:
        results[n] = call(sock, "DHCP.Allocate", cmd(f"c{n % 3}"), timeout=WAIT)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [addresses(r) == addresses(results[n % 3]) for n, r in enumerate(results)] == [True] * 6
    assert len({addresses(r)[0] for r in results}) == 3
    assert server.kinds().count(MessageType.DISCOVER) == 3


def test_a_call_in_flight_when_stopping_is_answered(
    server: FakeServer, state: Path, sock: Path
) -> None:
    server.answer_discover = False
    slow = Timing(attempt_timeout=WAIT, resend_timeout=WAIT)  # would wait for long
    errors: list[Exception] = []

    def allocate() -> None:
        try:
            call(sock, "DHCP.Allocate", cmd(), timeout=WAIT * 2)
        except DaemonCallError as exc:
            errors.append(exc)

    with DaemonThread(new_daemon(server, state, timing=slow), sock):
        caller = threading.Thread(target=allocate)
        caller.start()
        wait_for(lambda: bool(server.sent), "the DISCOVER")
    caller.join(WAIT)
    assert [str(e) for e in errors] == [
        "error calling DHCP.Allocate: the dhcp daemon is shutting down"
    ]
    assert record_files(state) == []


def test_stopping_removes_the_socket_and_keeps_the_records(
    server: FakeServer, state: Path, sock: Path
) -> None:
    with DaemonThread(new_daemon(server, state), sock):
        assert sock.is_socket()
        call(sock, "DHCP.Allocate", cmd(), timeout=WAIT)
    assert not sock.exists()
    assert record_files(state) == ["cid%2Fdhcpnet%2Feth0.json"]
    assert MessageType.RELEASE not in server.kinds()
    with pytest.raises(DaemonUnreachableError):
        call(sock, "DHCP.Status", cmd(), timeout=WAIT)


def test_serve_resumes_the_records(server: FakeServer, state: Path, sock: Path) -> None:
    with DaemonThread(new_daemon(server, state), sock):
        first = call(sock, "DHCP.Allocate", cmd(), timeout=WAIT)
    with DaemonThread(new_daemon(server, state), sock):
        assert call(sock, "DHCP.Check", cmd(), timeout=WAIT) == first
        call(sock, "DHCP.Release", cmd(), timeout=WAIT)
    assert server.kinds() == [MessageType.DISCOVER, MessageType.REQUEST, MessageType.RELEASE]


def test_a_live_socket_is_refused(
    serving: DaemonThread, server: FakeServer, state: Path, sock: Path
) -> None:
    second = DaemonThread(new_daemon(server, state), sock)
    with pytest.raises(CNIError) as info, second:
        pass
    assert str(info.value) == f"another dhcp daemon is listening on {sock}"
    assert not second._thread.is_alive()
    # The first one still serves.
    assert call(sock, "DHCP.Status", cmd(), timeout=WAIT) is None


def test_a_stale_socket_is_replaced(server: FakeServer, state: Path, sock: Path) -> None:
    sock.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()  # the file stays, nobody listens: a daemon that was killed
    with DaemonThread(new_daemon(server, state), sock):
        assert call(sock, "DHCP.Status", cmd(), timeout=WAIT) is None
    assert not sock.exists()


def test_a_socket_dir_that_cannot_be_made_fails_start_up(
    server: FakeServer, state: Path, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "dhcp.sock"
    thread = DaemonThread(new_daemon(server, state), path)
    with pytest.raises(CNIError) as info, thread:
        pass
    assert str(info.value).startswith(f"Error getting listener: listen unix {path}: ")
    assert not thread._thread.is_alive()


def test_daemon_thread_exit_joins_the_thread(server: FakeServer, state: Path, sock: Path) -> None:
    thread = DaemonThread(new_daemon(server, state), sock)
    with thread:
        assert thread._thread.is_alive()
        assert sock.is_socket()  # entering waited for the socket
    assert not thread._thread.is_alive()


@pytest.mark.asyncio
async def test_serve_and_request_stop(server: FakeServer, state: Path, sock: Path) -> None:
    daemon = new_daemon(server, state)
    ready = asyncio.Event()
    task = asyncio.create_task(daemon.serve(sock, ready=ready.set))
    await asyncio.wait_for(ready.wait(), WAIT)
    result = await asyncio.to_thread(call, sock, "DHCP.Allocate", cmd(), timeout=WAIT)
    assert addresses(result) == ["192.0.2.100/24"]
    daemon.request_stop()
    await asyncio.wait_for(task, WAIT)
    assert not os.path.exists(sock)  # noqa: ASYNC240 (a test: one stat)
    assert record_files(state) == ["cid%2Fdhcpnet%2Feth0.json"]
    daemon.request_stop()  # after the end: harmless


# --------------------------------------------------------------------------- main


@pytest.fixture
def cnilib_logger() -> Iterator[None]:
    """main() configures the ``cnilib`` logger; put it back afterwards."""
    logger = logging.getLogger("cnilib")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.mark.usefixtures("cnilib_logger")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-nope"], "dhcp daemon: flag provided but not defined: -nope"),
        (["-socketpath"], "dhcp daemon: flag needs an argument: -socketpath"),
        (["-timeout=10"], 'dhcp daemon: invalid value "10" for flag -timeout: '),
        (["extra"], "dhcp daemon: unexpected argument 'extra'"),
    ],
)
def test_main_flag_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(message)


@pytest.mark.usefixtures("cnilib_logger")
def test_main_zero_timeout_is_a_flag_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["-timeout=0", "-socketpath", str(tmp_path / "d.sock"), "-statedir", str(tmp_path)]
    assert main(argv) == 2
    assert "-timeout" in capsys.readouterr().err


@pytest.mark.usefixtures("cnilib_logger")
def test_main_relative_pidfile_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = tmp_path / "d.sock"
    argv = ["-pidfile", "relative.pid", "-socketpath", str(sock), "-statedir", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Error writing pidfile" in err
    assert "relative.pid" in err
    assert "path not absolute" in err
    assert "Traceback" not in err
    assert not sock.exists()


@pytest.mark.usefixtures("cnilib_logger")
def test_main_relative_pidfile_gos_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["-pidfile", "relative.pid", "-socketpath", str(tmp_path / "d.sock")]
    assert main(argv) == 1
    assert 'Error writing pidfile "relative.pid": path not absolute' in capsys.readouterr().err


@pytest.mark.usefixtures("cnilib_logger")
def test_main_relative_pidfile_leaves_the_file_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "relative.pid").write_text("someone else's\n")
    assert main(["-pidfile", "relative.pid", "-socketpath", str(tmp_path / "d.sock")]) == 1
    assert (tmp_path / "relative.pid").read_text() == "someone else's\n"


def _connectable(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _run_daemon_process(command: list[str], tmp_path: Path, signum: int) -> str:
    """Start the daemon, see it serve, stop it with ``signum``; its stderr."""
    sock, pidfile, state = tmp_path / "run" / "d.sock", tmp_path / "d.pid", tmp_path / "state"
    argv = [*command, "-socketpath", str(sock), "-statedir", str(state), "-pidfile", str(pidfile)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        # The pidfile is written once the socket listens: wait for both.
        while not (_connectable(sock) and _read(pidfile).strip() == str(proc.pid)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the daemon did not start listening"
            time.sleep(0.02)
        assert call(sock, "DHCP.Status", cmd(), timeout=WAIT) is None
        assert "no DHCP lease" in rpc_error("DHCP.Check", cmd(), sock)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out == ""
    assert not sock.exists()
    assert not pidfile.exists()
    return err


def test_the_daemon_process_stops_on_sigterm(tmp_path: Path) -> None:
    err = _run_daemon_process(
        [sys.executable, "-m", "cnilib.plugins", "dhcp", "daemon"], tmp_path, signal.SIGTERM
    )
    assert f"listening on {tmp_path / 'run' / 'd.sock'}" in err
    assert "Traceback" not in err


def test_the_installed_executable_runs_the_daemon(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    subprocess.run(
        [sys.executable, "-m", "cnilib.plugins", "install", str(bindir), "dhcp"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    err = _run_daemon_process([str(bindir / "dhcp"), "daemon"], tmp_path, signal.SIGINT)
    assert "Traceback" not in err

    env = {"CNI_COMMAND": "VERSION", "PATH": os.environ.get("PATH", "")}
    version = subprocess.run(
        [str(bindir / "dhcp")], input=b"{}", env=env, capture_output=True, timeout=30, check=True
    )
    from cnilib.plugins.ipam.dhcp.dhcp import Dhcp

    answer = json.loads(version.stdout)
    assert answer["supportedVersions"] == list(Dhcp().supported_versions)
    assert {"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} <= set(
        answer["supportedVersions"]
    )
