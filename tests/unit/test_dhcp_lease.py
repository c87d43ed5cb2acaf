"""The DHCP lease keeper against a scripted fake server and a fake clock (no real sleeping)."""

from __future__ import annotations

import errno
import json
import logging
import math
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from cnilib.netlink import NetlinkError, NetNSNotFoundError
from cnilib.netlink._dhcp import (
    BROADCAST_MAC,
    DhcpLinkNotFoundError,
    DhcpReply,
    DhcpRequest,
    DhcpSocketError,
    MessageType,
)
from cnilib.plugins.ipam.dhcp._lease import (
    LeaseError,
    LeaseKeeper,
    LeaseRecordError,
    LeaseRequestOptions,
    LeaseState,
    Timing,
)
from tests.unit._dhcp_fake import (
    ADDRESS,
    CLIENT_MAC,
    IFNAME,
    KEY,
    NETNS,
    SERVER_IP,
    SERVER_MAC,
    WALL0,
    FakeClock,
    FakeServer,
    ack_options,
)

OPTIONS = LeaseRequestOptions(
    client_id=b"\x00" + KEY.encode(),
    parameters=(3, 1, 121),
    extra_options=((12, b"podfive"), (77, b"cnitest")),
    broadcast=True,
)


class World:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.server = FakeServer(self.clock)
        self.changes: list[LeaseState] = []
        self.downs: list[tuple[str, str]] = []
        self.xids = iter(range(1000, 10_000))

    async def link_down(self, netns: str, ifname: str) -> None:
        self.downs.append((netns, ifname))

    def kwargs(self) -> dict[str, Any]:
        return {
            "open_socket": self.server.open_socket,
            "clock": self.clock,
            "rand": lambda: 0.5,  # no jitter: the delays are exact
            "new_xid": lambda: next(self.xids),
            "set_link_down": self.link_down,
            "on_change": lambda keeper: self.changes.append(keeper.state),
        }

    def keeper(self, timing: Timing | None = None) -> LeaseKeeper:
        return LeaseKeeper(KEY, NETNS, IFNAME, OPTIONS, timing, **self.kwargs())

    def resume(self, record: dict[str, Any]) -> LeaseKeeper:
        return LeaseKeeper.from_record(json.loads(json.dumps(record)), **self.kwargs())


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    assert w.server.opens == w.server.closes, "a socket was left open"


def state(keeper: LeaseKeeper) -> LeaseState:
    """The keeper's state, read afresh (the keeper changes it while the test awaits)."""
    return keeper.state


async def bound(world: World) -> LeaseKeeper:
    keeper = world.keeper()
    await keeper.acquire()
    world.server.sent.clear()
    world.server.opens = world.server.closes = 0
    world.clock.sleeps.clear()
    world.changes.clear()
    return keeper


def good_record() -> dict[str, Any]:
    """A valid record of a bound lease, written by hand: the bad ones vary it."""
    return {
        "key": KEY,
        "netns": NETNS,
        "ifname": IFNAME,
        "options": OPTIONS.to_json(),
        "state": "bound",
        "obtained": WALL0,
        "ack": {
            "yiaddr": ADDRESS,
            "chaddr": CLIENT_MAC,
            "server_mac": SERVER_MAC,
            "server_ip": SERVER_IP,
            "options": {"51": "00000064"},
        },
    }


# -- timing -----------------------------------------------------------------------


def test_backoff_schedule_is_four_fast_retries_then_doubling_capped() -> None:
    delays = Timing().delays(lambda: 0.5)
    assert [next(delays) for _ in range(11)] == [2, 2, 2, 2, 4, 8, 16, 32, 62, 62, 62]
    low = Timing(resend_max=10).delays(lambda: 0.0)
    assert [next(low) for _ in range(7)] == [1, 1, 1, 1, 3, 7, 9]
    high = Timing().delays(lambda: 0.999)
    assert next(high) == pytest.approx(2.998)


def test_timing_refuses_non_positive_values() -> None:
    with pytest.raises(ValueError, match="attempt_timeout"):
        Timing(attempt_timeout=0)
    with pytest.raises(ValueError, match="resend_timeout"):
        Timing(resend_timeout=-1)


# -- acquire ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_acquire_sends_discover_then_request_for_the_offer(world: World) -> None:
    keeper = world.keeper()
    ack = await keeper.acquire()

    assert ack.message_type is MessageType.ACK
    assert keeper.address == ADDRESS
    assert state(keeper) is LeaseState.BOUND
    assert keeper.check()
    discover, request = world.server.requests
    for message in (discover, request):
        assert message.client_id == b"\x00cid/dhcpnet/eth0"
        assert message.parameters == (3, 1, 121)
        assert message.extra_options == ((12, b"podfive"), (77, b"cnitest"))
        assert message.broadcast is True
        assert message.mac == CLIENT_MAC
        assert (message.dst_mac, message.dst_ip) == (BROADCAST_MAC, "255.255.255.255")
        assert message.ciaddr == "0.0.0.0"
    assert discover.message_type is MessageType.DISCOVER
    assert (discover.requested_ip, discover.server_id) == (None, None)
    assert request.message_type is MessageType.REQUEST
    assert (request.requested_ip, request.server_id) == (ADDRESS, SERVER_IP)
    assert request.xid == discover.xid
    assert world.server.opens == 1
    assert world.changes == [LeaseState.BOUND]
    assert keeper.obtained == WALL0
    assert (keeper.renew_at, keeper.rebind_at, keeper.expires_at) == (
        WALL0 + 50,
        WALL0 + 85,
        WALL0 + 100,
    )


@pytest.mark.asyncio
async def test_lease_times_default_and_sanity(world: World) -> None:
    world.server.options = {1: bytes([255, 255, 255, 0]), 54: bytes([192, 0, 2, 1])}
    keeper = world.keeper()
    await keeper.acquire()
    assert keeper.expires_at == WALL0 + 3600
    assert keeper.rebind_at == WALL0 + 3060
    assert keeper.renew_at == WALL0 + 1800

    world.server.options = ack_options(lease=100, t1=90, t2=200)
    keeper = world.keeper()
    await keeper.acquire()
    assert (keeper.renew_at, keeper.rebind_at) == (WALL0 + 50, WALL0 + 85)


@pytest.mark.asyncio
async def test_acquire_retries_after_a_nak_of_the_offer(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cnilib.dhcp")
    world.server.request_plan = ["nak"]
    keeper = world.keeper()
    await keeper.acquire()

    assert world.server.kinds() == [MessageType.DISCOVER, MessageType.REQUEST] * 2
    assert world.clock.sleeps == [2.0]
    assert world.server.opens == 2
    assert state(keeper) is LeaseState.BOUND
    assert "NAK'd its own offer" in caplog.text
    assert f"{KEY}: retrying in 2.000000 seconds" in caplog.text


@pytest.mark.asyncio
async def test_no_server_fails_after_the_budget_with_gos_backoff(world: World) -> None:
    world.server.answer_discover = False
    keeper = world.keeper()
    with pytest.raises(LeaseError) as info:
        await keeper.acquire()

    message = str(info.value)
    assert message.startswith("no more tries")
    assert IFNAME in message
    assert NETNS in message
    assert "208 s" in message
    assert "no DHCPOFFER received within 10s" in message
    # 10 s attempts; delays 2, 2, 2, 2, 4, 8, 16, 32, then the 62 s one cut at the budget.
    assert world.clock.sleeps == [2, 2, 2, 2, 4, 8, 16, 32, 50]
    assert world.clock.now == 208
    assert world.server.kinds() == [MessageType.DISCOVER] * 9
    assert state(keeper) is LeaseState.INIT
    assert not keeper.check()
    assert world.changes == []


@pytest.mark.asyncio
async def test_acquire_raises_at_once_when_the_link_is_missing(world: World) -> None:
    world.server.open_error = NetlinkError("get link eth0", NETNS, errno.ENODEV)
    keeper = world.keeper()
    with pytest.raises(NetlinkError):
        await keeper.acquire()
    assert world.clock.sleeps == []
    assert world.server.sent == []


# -- maintenance ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_renews_at_t1_with_a_unicast_request(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cnilib.dhcp")
    keeper = await bound(world)
    keeper.start()
    await world.clock.run_until(60, keeper)

    assert world.clock.sleeps[0] == 50
    [(when, renew)] = world.server.sent
    assert when == 50
    assert renew.message_type is MessageType.REQUEST
    assert (renew.ciaddr, renew.src_ip) == (ADDRESS, ADDRESS)
    assert (renew.dst_mac, renew.dst_ip) == (SERVER_MAC, SERVER_IP)
    assert (renew.requested_ip, renew.server_id) == (None, None)
    assert renew.client_id == OPTIONS.client_id
    assert renew.parameters == OPTIONS.parameters
    assert renew.extra_options == OPTIONS.extra_options
    assert state(keeper) is LeaseState.BOUND
    assert keeper.obtained == WALL0 + 50
    assert world.changes == [LeaseState.BOUND]
    assert f"{KEY}: renewing lease" in caplog.text
    assert f"{KEY}: lease renewed, expiration is" in caplog.text
    await keeper.stop(release=False)


@pytest.mark.asyncio
async def test_renew_failures_until_t2_then_broadcast_rebind(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cnilib.dhcp")
    keeper = await bound(world)
    world.server.answer_unicast = False
    keeper.start()
    await world.clock.run_until(90, keeper)

    unicast = [(t, r) for t, r in world.server.sent if r.dst_ip == SERVER_IP]
    broadcast = [(t, r) for t, r in world.server.sent if r.dst_ip == "255.255.255.255"]
    assert unicast
    assert all(50 <= t < 85 for t, _ in unicast)
    [(when, rebind)] = broadcast
    assert when == 85
    assert rebind.message_type is MessageType.REQUEST
    assert (rebind.ciaddr, rebind.src_ip, rebind.dst_mac) == (ADDRESS, ADDRESS, BROADCAST_MAC)
    assert (rebind.requested_ip, rebind.server_id) == (None, None)
    assert MessageType.DISCOVER not in world.server.kinds()
    assert state(keeper) is LeaseState.BOUND
    assert keeper.obtained == WALL0 + 85
    assert f"{KEY}: renewal time expired, rebinding" in caplog.text
    assert f"{KEY}: lease rebound, expiration is" in caplog.text
    assert world.server.opens == len(world.server.sent)
    await keeper.stop(release=False)


@pytest.mark.asyncio
async def test_nak_on_renew_loses_the_lease_without_a_new_address(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    keeper = await bound(world)
    world.server.request_plan = ["nak"]
    keeper.start()
    await world.clock.run_until(1000, keeper)

    assert keeper.task is not None
    assert keeper.task.done()
    assert world.server.kinds() == [MessageType.REQUEST]
    assert state(keeper) is LeaseState.LOST
    assert keeper.state_name == "lost"
    assert not keeper.check()
    assert world.changes == [LeaseState.LOST]
    assert world.downs == [(NETNS, IFNAME)]
    assert any(
        r.levelno == logging.ERROR and "lease lost" in r.getMessage() for r in caplog.records
    )
    await keeper.stop()
    assert world.server.kinds() == [MessageType.REQUEST]  # no RELEASE for a lost lease


@pytest.mark.asyncio
async def test_ack_for_another_address_is_a_loss(world: World) -> None:
    keeper = await bound(world)

    def answer(request: DhcpRequest) -> list[DhcpReply]:
        return [world.server.reply(MessageType.ACK, request, "192.0.2.200")]

    world.server.answer = answer  # type: ignore[method-assign]
    keeper.start()
    await world.clock.run_until(1000, keeper)
    assert state(keeper) is LeaseState.LOST
    assert world.downs == [(NETNS, IFNAME)]


@pytest.mark.asyncio
async def test_expiry_sets_the_link_down(world: World, caplog: pytest.LogCaptureFixture) -> None:
    keeper = await bound(world)
    world.server.default_request = "silent"
    keeper.start()
    await world.clock.run_until(10_000, keeper)

    assert keeper.task is not None
    assert keeper.task.done()
    assert state(keeper) is LeaseState.EXPIRED
    assert not keeper.check()
    assert world.clock.now == 100
    assert all(t < 100 for t, _ in world.server.sent)
    assert MessageType.DISCOVER not in world.server.kinds()
    assert world.downs == [(NETNS, IFNAME)]
    assert world.changes == [LeaseState.EXPIRED]
    assert f"{KEY}: lease expired, bringing interface DOWN" in caplog.text
    await keeper.stop()
    assert MessageType.RELEASE not in world.server.kinds()


@pytest.mark.asyncio
async def test_expiry_without_set_link_down_leaves_the_link(world: World) -> None:
    keeper = LeaseKeeper(KEY, NETNS, IFNAME, OPTIONS, **{**world.kwargs(), "set_link_down": None})
    await keeper.acquire()
    world.server.default_request = "silent"
    keeper.start()
    await world.clock.run_until(10_000, keeper)
    assert state(keeper) is LeaseState.EXPIRED
    assert world.downs == []


@pytest.mark.asyncio
async def test_vanished_link_stops_maintenance_without_release(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    keeper = await bound(world)
    world.server.open_error = NetNSNotFoundError(NETNS)
    keeper.start()
    await world.clock.run_until(1000, keeper)

    assert keeper.task is not None
    assert keeper.task.done()
    assert state(keeper) is LeaseState.GONE
    assert not keeper.check()
    assert world.server.sent == []
    assert world.downs == []
    assert world.changes == [LeaseState.GONE]
    assert "no longer exists" in caplog.text
    await keeper.stop(release=True)
    assert world.server.sent == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("where", "error"),
    [
        ("open", DhcpLinkNotFoundError(IFNAME, NETNS)),
        ("send", DhcpSocketError("send DHCPREQUEST", IFNAME, NETNS, errno.ENXIO)),
    ],
)
async def test_link_vanishing_while_renewing_ends_maintenance(
    world: World, where: str, error: Exception
) -> None:
    keeper = await bound(world)
    setattr(world.server, f"{where}_error", error)
    keeper.start()
    await world.clock.run_until(1000, keeper)
    assert state(keeper) is LeaseState.GONE
    assert keeper.gone
    assert world.clock.now == 50
    assert world.downs == []
    await keeper.stop()
    assert world.server.sent == []


@pytest.mark.asyncio
async def test_a_down_link_while_renewing_is_retried(world: World) -> None:
    keeper = await bound(world)
    world.server.send_error = DhcpSocketError("send DHCPREQUEST", IFNAME, NETNS, errno.ENETDOWN)
    keeper.start()
    await world.clock.run_until(51, keeper)
    assert state(keeper) is LeaseState.RENEWING
    world.server.send_error = None
    await world.clock.run_until(60, keeper)
    assert state(keeper) is LeaseState.BOUND
    assert keeper.obtained == WALL0 + 52
    await keeper.stop(release=False)


@pytest.mark.asyncio
async def test_other_socket_errors_while_renewing_are_retried(world: World) -> None:
    keeper = await bound(world)
    world.server.open_error = NetlinkError("get link eth0", NETNS, errno.EPERM)
    keeper.start()
    await world.clock.run_until(51, keeper)  # failed at T1 (50), waits 2 s
    assert state(keeper) is LeaseState.RENEWING
    world.server.open_error = None
    await world.clock.run_until(60, keeper)
    assert state(keeper) is LeaseState.BOUND
    assert keeper.obtained == WALL0 + 52
    await keeper.stop(release=False)


# -- stop -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stop_releases_the_lease(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "cnilib.dhcp")
    keeper = await bound(world)
    keeper.start()
    await world.clock.run_until(10, keeper)
    await keeper.stop()

    [release] = world.server.requests
    assert release.message_type is MessageType.RELEASE
    assert release.client_id == OPTIONS.client_id
    assert (release.ciaddr, release.src_ip, release.server_id) == (ADDRESS, ADDRESS, SERVER_IP)
    assert (release.dst_mac, release.dst_ip) == (SERVER_MAC, SERVER_IP)
    assert (release.parameters, release.extra_options, release.broadcast) == ((), (), False)
    assert state(keeper) is LeaseState.RELEASED
    assert not keeper.check()
    assert keeper.task is None
    assert f"{KEY}: releasing lease" in caplog.text


@pytest.mark.asyncio
async def test_stop_without_release_sends_nothing(world: World) -> None:
    keeper = await bound(world)
    keeper.start()
    await world.clock.run_until(10, keeper)
    await keeper.stop(release=False)
    assert world.server.sent == []
    assert state(keeper) is LeaseState.BOUND


@pytest.mark.asyncio
async def test_stop_while_renewing_releases_and_closes_the_socket(world: World) -> None:
    keeper = await bound(world)
    world.server.default_request = "silent"
    keeper.start()
    await world.clock.run_until(55, keeper)  # parked inside an attempt's wait
    assert state(keeper) is LeaseState.RENEWING
    await keeper.stop()
    assert world.server.kinds()[-1] is MessageType.RELEASE


@pytest.mark.asyncio
async def test_release_failure_is_only_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    keeper = await bound(world)
    world.server.open_error = NetlinkError("open socket", NETNS, errno.EPERM)
    await keeper.stop()
    assert "failed to release DHCP lease" in caplog.text


# -- records and resume -----------------------------------------------------------


@pytest.mark.asyncio
async def test_record_round_trip(world: World) -> None:
    keeper = await bound(world)
    record = keeper.to_record()
    assert record["state"] == "bound"
    assert record["obtained"] == WALL0
    assert record["ack"]["options"]["51"] == "00000064"
    again = world.resume(record)
    assert keeper.ack is not None
    assert again.ack == attrs.evolve(keeper.ack, xid=0)
    assert again.options == OPTIONS
    assert (again.key, again.netns, again.ifname) == (KEY, NETNS, IFNAME)
    assert (again.renew_at, again.rebind_at, again.expires_at) == (
        keeper.renew_at,
        keeper.rebind_at,
        keeper.expires_at,
    )
    assert state(again) is LeaseState.BOUND
    assert again.check()
    assert again.to_record() == record


async def saved_then_resumed(world: World, after: float) -> LeaseKeeper:
    keeper = await bound(world)
    record = keeper.to_record()
    world.clock.now += after
    return world.resume(record)


@pytest.mark.asyncio
async def test_resume_before_t1_waits_for_t1(world: World) -> None:
    keeper = await saved_then_resumed(world, 20)
    assert state(keeper) is LeaseState.BOUND
    keeper.start()
    await world.clock.run_until(25, keeper)
    assert world.clock.sleeps == [30]
    assert world.server.sent == []
    await keeper.stop(release=False)


@pytest.mark.asyncio
async def test_resume_past_t1_renews_at_once(world: World) -> None:
    keeper = await saved_then_resumed(world, 60)
    keeper.start()
    await world.clock.run_until(61, keeper)
    [(when, renew)] = world.server.sent
    assert when == 60
    assert renew.dst_ip == SERVER_IP
    assert renew.ciaddr == ADDRESS
    assert state(keeper) is LeaseState.BOUND
    assert keeper.obtained == WALL0 + 60
    assert world.changes == [LeaseState.BOUND]
    await keeper.stop(release=False)


@pytest.mark.asyncio
async def test_resume_past_t2_rebinds_at_once(world: World) -> None:
    keeper = await saved_then_resumed(world, 90)
    assert state(keeper) is LeaseState.REBINDING
    keeper.start()
    await world.clock.run_until(91, keeper)
    [(when, rebind)] = world.server.sent
    assert when == 90
    assert rebind.dst_ip == "255.255.255.255"
    assert rebind.ciaddr == ADDRESS
    assert state(keeper) is LeaseState.BOUND
    await keeper.stop(release=False)


@pytest.mark.asyncio
async def test_resume_past_expiry_asks_for_the_same_address(world: World) -> None:
    keeper = await saved_then_resumed(world, 500)
    assert state(keeper) is LeaseState.REBOOTING
    assert not keeper.check()
    keeper.start()
    await world.clock.run_until(501, keeper)
    [reboot] = world.server.requests
    assert reboot.message_type is MessageType.REQUEST
    assert (reboot.requested_ip, reboot.ciaddr, reboot.server_id) == (ADDRESS, "0.0.0.0", None)
    assert reboot.dst_ip == "255.255.255.255"
    assert reboot.broadcast is True
    assert state(keeper) is LeaseState.BOUND
    assert keeper.address == ADDRESS
    assert world.changes == [LeaseState.BOUND]
    await keeper.stop(release=False)


@pytest.mark.asyncio
async def test_resume_past_expiry_falls_back_to_a_discover_for_the_address(world: World) -> None:
    keeper = await saved_then_resumed(world, 500)
    world.server.request_plan = ["silent"]
    keeper.start()
    await world.clock.run_until(520, keeper)
    kinds = world.server.kinds()
    assert kinds == [MessageType.REQUEST, MessageType.DISCOVER, MessageType.REQUEST]
    assert world.server.requests[1].requested_ip == ADDRESS
    assert state(keeper) is LeaseState.BOUND
    assert keeper.address == ADDRESS
    await keeper.stop(release=False)


@pytest.mark.asyncio
async def test_resume_past_expiry_refuses_another_address(world: World) -> None:
    keeper = await saved_then_resumed(world, 500)
    world.server.request_plan = ["silent"]
    world.server.offer_address = "192.0.2.150"
    keeper.start()
    await world.clock.run_until(10_000, keeper)
    assert state(keeper) is LeaseState.LOST
    assert world.downs == [(NETNS, IFNAME)]
    assert MessageType.REQUEST not in world.server.kinds()[2:]


@pytest.mark.asyncio
async def test_resume_past_expiry_nak_is_a_loss(world: World) -> None:
    keeper = await saved_then_resumed(world, 500)
    world.server.request_plan = ["nak"]
    keeper.start()
    await world.clock.run_until(10_000, keeper)
    assert state(keeper) is LeaseState.LOST
    assert world.server.kinds() == [MessageType.REQUEST]


@pytest.mark.asyncio
async def test_resume_keeps_a_lost_lease_lost(world: World) -> None:
    keeper = await bound(world)
    world.server.request_plan = ["nak"]
    keeper.start()
    await world.clock.run_until(1000, keeper)
    again = world.resume(keeper.to_record())
    assert state(again) is LeaseState.LOST
    again.start()
    await world.clock.run_until(2000, again)
    assert world.server.kinds() == [MessageType.REQUEST]


def test_bad_records_are_refused() -> None:
    good = good_record()
    LeaseKeeper.from_record(good)
    for bad in (
        {k: v for k, v in good.items() if k != "netns"},
        {**good, "state": "dancing"},
        {**good, "ack": None},
        {**good, "ack": {**good["ack"], "yiaddr": "nope"}},
        {**good, "options": {**good["options"], "client_id": "zz"}},
    ):
        with pytest.raises(LeaseRecordError):
            LeaseKeeper.from_record(bad)


@pytest.mark.asyncio
async def test_on_change_failure_does_not_stop_the_keeper(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(keeper: LeaseKeeper) -> None:
        raise OSError("disk full")

    keeper = LeaseKeeper(KEY, NETNS, IFNAME, OPTIONS, **{**world.kwargs(), "on_change": broken})
    await keeper.acquire()
    assert state(keeper) is LeaseState.BOUND
    assert "saving the lease failed" in caplog.text


# -- replies a careful client refuses, and lease times from the right moment -------------


@pytest.mark.asyncio
async def test_lease_times_count_from_the_request_not_the_ack(world: World) -> None:
    world.server.latency = 3.0  # each reply arrives 3 s after what it answers
    keeper = world.keeper()
    await keeper.acquire()
    assert world.clock.now == 6  # OFFER at 3 s, REQUEST then, ACK at 6 s
    # RFC 2131 4.4.1: the lease began when the REQUEST was sent.
    assert keeper.obtained == WALL0 + 3
    assert (keeper.renew_at, keeper.expires_at) == (WALL0 + 53, WALL0 + 103)
    world.server.sent.clear()
    keeper.start()
    await world.clock.run_until(60, keeper)
    [(when, _renew)] = world.server.sent
    assert when == 53
    assert keeper.obtained == WALL0 + 53
    await keeper.stop(release=False)


@pytest.mark.asyncio
async def test_an_offer_without_an_address_is_ignored(world: World) -> None:
    plain = world.server.answer

    def answer(request: DhcpRequest) -> list[DhcpReply]:
        if request.message_type is MessageType.DISCOVER:
            return [world.server.reply(MessageType.OFFER, request, "0.0.0.0"), *plain(request)]
        return plain(request)

    world.server.answer = answer  # type: ignore[method-assign]
    keeper = world.keeper()
    await keeper.acquire()
    request = world.server.requests[1]
    assert request.requested_ip == ADDRESS
    assert keeper.address == ADDRESS
    assert world.clock.sleeps == []


@pytest.mark.asyncio
async def test_while_selecting_only_the_chosen_servers_ack_for_the_offer_counts(
    world: World,
) -> None:
    plain = world.server.answer

    def answer(request: DhcpRequest) -> list[DhcpReply]:
        if request.message_type is not MessageType.REQUEST:
            return plain(request)
        other = world.server.reply(MessageType.NAK, request, "0.0.0.0")
        other = attrs.evolve(other, options={**other.options, 54: bytes([192, 0, 2, 2])})
        wrong = world.server.reply(MessageType.ACK, request, "192.0.2.200")
        return [other, wrong, *plain(request)]

    world.server.answer = answer  # type: ignore[method-assign]
    keeper = world.keeper()
    await keeper.acquire()
    assert keeper.address == ADDRESS
    assert world.server.kinds() == [MessageType.DISCOVER, MessageType.REQUEST]
    assert world.clock.sleeps == []


class BackToBackError(Exception):
    pass


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("lease", "t1", "t2", "times"),
    [
        (100, 0, 0, (50, 85, 100)),  # T1/T2 of 0: absent
        (0, 0, 0, (10, 17, 20)),  # lease 0: MIN_LEASE_TIME
        (5, 1, 2, (1, 2, 20)),  # a tiny lease: only the expiry moves
    ],
)
async def test_tiny_lease_times_do_not_renew_back_to_back(
    world: World, lease: int, t1: int, t2: int, times: tuple[int, int, int]
) -> None:
    world.server.options = ack_options(lease=lease, t1=t1, t2=t2)
    plain = world.server.answer

    def answer(request: DhcpRequest) -> list[DhcpReply]:
        if len(world.server.sent) > 20:
            raise BackToBackError("renewed back to back")
        return plain(request)

    world.server.answer = answer  # type: ignore[method-assign]
    keeper = await bound(world)
    assert (keeper.renew_at, keeper.rebind_at, keeper.expires_at) == tuple(WALL0 + t for t in times)
    keeper.start()
    await world.clock.run_until(times[0] + 0.5, keeper)
    assert len(world.server.sent) == 1
    assert state(keeper) is LeaseState.BOUND
    await keeper.stop(release=False)


@pytest.mark.asyncio
async def test_a_renewal_ack_with_malformed_times_is_a_failed_attempt(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    keeper = await bound(world)
    world.server.options = {**ack_options(), 58: b"\x00\x01"}
    keeper.start()
    await world.clock.run_until(10_000, keeper)  # the task must not die of the option

    assert state(keeper) is LeaseState.EXPIRED
    assert world.downs == [(NETNS, IFNAME)]
    assert keeper.address == ADDRESS
    assert "sent an unusable DHCPACK: DHCP option 58" in caplog.text


@pytest.mark.asyncio
async def test_acquire_retries_after_an_ack_with_malformed_times(world: World) -> None:
    good = world.server.options
    world.server.options = {**good, 51: b"\x01"}
    plain = world.server.answer

    def answer(request: DhcpRequest) -> list[DhcpReply]:
        replies = plain(request)
        if request.message_type is MessageType.REQUEST:
            world.server.options = good
        return replies

    world.server.answer = answer  # type: ignore[method-assign]
    keeper = world.keeper()
    await keeper.acquire()
    assert state(keeper) is LeaseState.BOUND
    assert world.clock.sleeps == [2.0]
    assert keeper.expires_at == WALL0 + 2 + 100


@pytest.mark.asyncio
async def test_a_record_from_the_future_renews_at_once(world: World) -> None:
    keeper = await bound(world)
    record = keeper.to_record()
    record["obtained"] = WALL0 + 1000  # the wall clock went back since
    again = world.resume(record)
    again.start()
    await world.clock.run_until(1, again)
    [(when, renew)] = world.server.sent
    assert when == 0
    assert renew.ciaddr == ADDRESS
    assert state(again) is LeaseState.BOUND
    await again.stop(release=False)


def test_odd_records_are_lease_record_errors() -> None:
    good = good_record()
    LeaseKeeper.from_record(good)
    bads: list[Any] = [
        {**good, "ack": {**good["ack"], "options": {"51": "0064"}}},
        {**good, "ack": {**good["ack"], "options": {"999": "00"}}},
        {**good, "ack": {**good["ack"], "server_mac": "nope"}},
        {**good, "ack": {**good["ack"], "chaddr": 7}},
        {**good, "obtained": 1e300},
        {**good, "obtained": math.nan},
        {**good, "obtained": math.inf},
        {**good, "obtained": "yesterday"},
        {**good, "options": {**good["options"], "extra_options": [[300, "00"]]}},
        {**good, "options": {**good["options"], "parameters": [0]}},
        {**good, "options": {**good["options"], "client_id": ""}},
        [],
    ]
    for bad in bads:
        with pytest.raises(LeaseRecordError):
            LeaseKeeper.from_record(bad)
