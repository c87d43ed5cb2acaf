"""The DHCP wire layer against a real server: dnsmasq in a namespace behind a bridge.

Every exchange runs on the test's own asyncio loop, in the test thread (the
machine's namespace); each socket is made inside a container namespace by a
netlink worker and then used from that loop.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import random
from collections.abc import Callable, Iterator

import pytest

from cnilib import netlink
from cnilib.netlink import (
    DhcpLinkNotFoundError,
    DhcpReply,
    DhcpRequest,
    DhcpSocket,
    DhcpSocketError,
    MessageType,
    NetNSNotFoundError,
    open_dhcp_socket,
)
from tests.privileged._dhcp_world import (
    RANGE,
    ROUTER,
    SERVER_IP,
    Container,
    DhcpWorld,
    dnsmasq_missing,
    in_range,
    wait_for,
)

ROUTE_121 = "121,10.99.0.0/16,192.0.2.254"
ROUTE_33 = "33,10.98.0.0,192.0.2.253"
RAW_121 = bytes([16, 10, 99, 192, 0, 2, 254])
RAW_33 = bytes([10, 98, 0, 0, 192, 0, 2, 253])
TIMEOUT = 10.0
RETRANSMIT = 2.0
"""Seconds before a DISCOVER or REQUEST without an answer is sent again."""
"""Per-reply bound; dnsmasq with --no-ping answers at once."""


@pytest.fixture(scope="module")
def world(cnilib_privileged: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DhcpWorld]:
    if reason := dnsmasq_missing():
        pytest.skip(reason)
    with DhcpWorld.create(tmp_path_factory.mktemp("dhcp-wire"), options=(ROUTE_121, ROUTE_33)) as w:
        yield w


@pytest.fixture
def add_container(world: DhcpWorld) -> Iterator[Callable[[], Container]]:
    """world.add_container, retiring the netlink workers of the containers made afterwards
    (so they do not keep a deleted namespace alive)."""
    made: list[Container] = []

    def make() -> Container:
        ctr = world.add_container()
        made.append(ctr)
        return ctr

    yield make
    for ctr in made:
        netlink.close_netns(ctr.path)


def _client_id(ctr: Container) -> bytes:
    return b"\0" + f"{ctr.id}/wire/eth0".encode()


def _hex(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


async def _acquire(
    sock: DhcpSocket,
    client_id: bytes,
    *,
    parameters: tuple[int, ...] = (1, 3),
    extra: tuple[tuple[int, bytes], ...] = (),
    tries: int = 1,
) -> tuple[DhcpReply, DhcpReply]:
    """DISCOVER, OFFER, REQUEST, ACK: (offer, ack); a NAK starts over, *tries* times in all.

    dnsmasq reserves no offered address: two clients DISCOVERing at once may be
    offered the same one, and the second REQUEST is NAKed ("address in use").
    """
    for _ in range(tries - 1):
        offer, reply = await _exchange(sock, client_id, parameters, extra)
        if reply.message_type is not MessageType.NAK:
            break
    else:
        offer, reply = await _exchange(sock, client_id, parameters, extra)
    assert reply.message_type is MessageType.ACK, reply.options.get(56)
    return offer, reply


async def _exchange(
    sock: DhcpSocket,
    client_id: bytes,
    parameters: tuple[int, ...],
    extra: tuple[tuple[int, bytes], ...],
) -> tuple[DhcpReply, DhcpReply]:
    xid = random.getrandbits(32)
    discover = DhcpRequest(
        MessageType.DISCOVER,
        xid,
        sock.mac,
        client_id=client_id,
        parameters=parameters,
        broadcast=True,
        extra_options=extra,
    )
    offer = await _ask(sock, discover)
    assert offer is not None, "no OFFER"
    assert offer.message_type is MessageType.OFFER
    request = DhcpRequest(
        MessageType.REQUEST,
        xid,
        sock.mac,
        client_id=client_id,
        parameters=parameters,
        broadcast=True,
        requested_ip=offer.yiaddr,
        server_id=offer.server_id,
        extra_options=extra,
    )
    ack = await _ask(sock, request)
    assert ack is not None, "no ACK"
    return offer, ack


async def _ask(sock: DhcpSocket, message: DhcpRequest) -> DhcpReply | None:
    """Send *message* until the server answers, as a client retransmits (RFC 2131
    §4.1): one broadcast can be lost, on a freshly attached port of a busy machine
    say; None once TIMEOUT has passed without an answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while (left := deadline - loop.time()) > 0:
        await sock.send(message)
        if (reply := await sock.receive(message.xid, min(RETRANSMIT, left))) is not None:
            return reply
    return None


async def _release(sock: DhcpSocket, client_id: bytes, ack: DhcpReply) -> None:
    assert ack.server_id is not None
    await sock.send(
        DhcpRequest(
            MessageType.RELEASE,
            random.getrandbits(32),
            sock.mac,
            client_id=client_id,
            ciaddr=ack.yiaddr,
            server_id=ack.server_id,
            dst_mac=ack.server_mac,
            src_ip=ack.yiaddr,
            dst_ip=ack.server_id,
        )
    )


def _lease_ips(world: DhcpWorld, client_id: bytes) -> list[str]:
    return [le.ip for le in world.leases() if le.client_id == _hex(client_id)]


def test_discover_offer_request_ack_release(
    world: DhcpWorld, add_container: Callable[[], Container]
) -> None:
    ctr = add_container()
    cid = _client_id(ctr)

    async def run() -> DhcpReply:
        async with await open_dhcp_socket(ctr.path, "eth0") as sock:
            assert (sock.ifname, sock.mac) == ("eth0", ctr.mac())
            offer, ack = await _acquire(sock, cid, parameters=(1, 3, 121, 33, 51))
            assert ack.yiaddr == offer.yiaddr
            assert _lease_ips(world, cid) == [ack.yiaddr]
            await _release(sock, cid, ack)
            return ack

    ack = asyncio.run(run())
    assert in_range(ack.yiaddr, RANGE)
    assert ack.chaddr == ctr.mac()
    assert ack.server_id == SERVER_IP
    assert ack.server_ip == SERVER_IP
    assert ack.options[1] == ipaddress.IPv4Address("255.255.255.0").packed
    assert ack.options[3] == ipaddress.IPv4Address(ROUTER).packed
    assert ack.options[121] == RAW_121
    assert ack.options[33] == RAW_33
    assert len(ack.options[51]) == 4
    wait_for(lambda: not _lease_ips(world, cid), what="the RELEASE to remove the lease")


def test_options_come_only_when_requested(
    world: DhcpWorld, add_container: Callable[[], Container]
) -> None:
    ctr = add_container()
    cid = _client_id(ctr)

    async def run() -> DhcpReply:
        async with await open_dhcp_socket(ctr.path, "eth0") as sock:
            _, ack = await _acquire(sock, cid)
            await _release(sock, cid, ack)
            return ack

    ack = asyncio.run(run())
    assert 121 not in ack.options
    assert 33 not in ack.options
    assert 3 in ack.options


def test_extra_options_reach_the_server(
    world: DhcpWorld, add_container: Callable[[], Container]
) -> None:
    ctr = add_container()
    cid = _client_id(ctr)
    user_class = f"wire{ctr.id[-8:]}".encode()
    hostname = f"pod-{ctr.id[-8:]}".encode()

    async def run() -> DhcpReply:
        async with await open_dhcp_socket(ctr.path, "eth0") as sock:
            _, ack = await _acquire(sock, cid, extra=((77, user_class), (12, hostname)))
            return ack

    ack = asyncio.run(run())
    log = world.log_text()
    assert f"user class: {user_class.decode()}" in log
    assert f"client provides name: {hostname.decode()}" in log
    lease = next(le for le in world.leases() if le.client_id == _hex(cid))
    assert (lease.ip, lease.hostname) == (ack.yiaddr, hostname.decode())

    async def release() -> None:
        async with await open_dhcp_socket(ctr.path, "eth0") as sock:
            await _release(sock, cid, ack)

    asyncio.run(release())
    wait_for(lambda: not _lease_ips(world, cid), what="the RELEASE to remove the lease")


def test_socket_made_in_the_namespace_serves_the_loop_thread(
    world: DhcpWorld,
    add_container: Callable[[], Container],
) -> None:
    ctr = add_container()
    here = os.stat("/proc/thread-self/ns/net")
    there = os.stat(ctr.path)
    assert (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino)

    async def run() -> None:
        async with await open_dhcp_socket(ctr.path, "eth0") as sock:
            # The packet socket is bound to the container's eth0 (index there, not here).
            assert sock.ifindex == netlink.run_in_netns(ctr.path, netlink.get_link, "eth0").index
            _, ack = await _acquire(sock, _client_id(ctr))
            await _release(sock, _client_id(ctr), ack)

    asyncio.run(run())


def test_many_namespaces_from_one_loop(
    world: DhcpWorld, add_container: Callable[[], Container]
) -> None:
    containers = [add_container() for _ in range(20)]

    async def one(ctr: Container) -> str:
        cid = _client_id(ctr)
        async with await open_dhcp_socket(ctr.path, "eth0") as sock:
            _, ack = await _acquire(sock, cid, tries=5)
            assert ack.chaddr == ctr.mac()
            return ack.yiaddr

    async def run() -> list[str]:
        return list(await asyncio.gather(*(one(c) for c in containers)))

    ips = asyncio.run(run())
    assert len(set(ips)) == len(containers)
    held = {le.client_id: le.ip for le in world.leases()}
    assert [held.get(_hex(_client_id(c))) for c in containers] == ips

    async def release_all() -> None:
        async def release(ctr: Container, ip: str) -> None:
            async with await open_dhcp_socket(ctr.path, "eth0") as sock:
                ack = DhcpReply(MessageType.ACK, 0, ip, sock.mac, {54: bytes((192, 0, 2, 1))},
                                server_mac=_server_mac(world), server_ip=SERVER_IP)  # fmt: skip
                await _release(sock, _client_id(ctr), ack)

        await asyncio.gather(*(release(c, ip) for c, ip in zip(containers, ips, strict=True)))

    asyncio.run(release_all())
    wait_for(
        lambda: not any(_lease_ips(world, _client_id(c)) for c in containers),
        what="the RELEASEs to remove the leases",
    )


def _server_mac(world: DhcpWorld) -> str:
    return str(netlink.run_in_netns(world.server.path, netlink.get_link, "eth0").mac)


def test_a_down_link_is_set_up(world: DhcpWorld, add_container: Callable[[], Container]) -> None:
    ctr = add_container()
    ctr.ns.exec("ip", "link", "set", "eth0", "down")

    async def run() -> None:
        async with await open_dhcp_socket(ctr.path, "eth0"):
            pass

    asyncio.run(run())
    assert netlink.run_in_netns(ctr.path, netlink.get_link, "eth0").up


def test_missing_namespace(world: DhcpWorld) -> None:
    path = f"/run/netns/cnilib-dhcp-nosuch-{random.getrandbits(32):08x}"
    with pytest.raises(NetNSNotFoundError) as info:
        asyncio.run(open_dhcp_socket(path, "eth0"))
    assert path in str(info.value)


def test_missing_link(world: DhcpWorld, add_container: Callable[[], Container]) -> None:
    ctr = add_container()
    with pytest.raises(DhcpLinkNotFoundError) as info:
        asyncio.run(open_dhcp_socket(ctr.path, "nosuch"))
    assert 'error looking up "nosuch": Link not found' in str(info.value)
    assert ctr.path in str(info.value)
    assert info.value.go_message == 'error looking up "nosuch": Link not found'


def test_send_after_the_link_vanished(
    world: DhcpWorld, add_container: Callable[[], Container]
) -> None:
    ctr = add_container()

    async def run() -> DhcpSocketError:
        async with await open_dhcp_socket(ctr.path, "eth0") as sock:
            ctr.ns.exec("ip", "link", "del", "eth0")
            with pytest.raises(DhcpSocketError) as info:
                await sock.send(DhcpRequest(MessageType.DISCOVER, 1, sock.mac, broadcast=True))
            assert await sock.receive(1, 0.05) is None
            return info.value

    error = asyncio.run(run())
    assert error.errno in (errno.ENXIO, errno.ENODEV)  # ENXIO seen: the bound ifindex is gone
    assert f"send DHCPDISCOVER on eth0 in {ctr.path}" in str(error)


def test_unicast_replies_and_renewal_without_an_address(
    world: DhcpWorld, add_container: Callable[[], Container]
) -> None:
    """Without the BROADCAST bit dnsmasq unicasts OFFER and ACK to the new address (it
    writes a neighbour entry for it first), and that entry lets a later renewal's ACK,
    sent to ciaddr, reach a client whose interface has no address at all."""
    ctr = add_container()
    cid = _client_id(ctr)

    async def run() -> tuple[DhcpReply, DhcpReply | None]:
        async with await open_dhcp_socket(ctr.path, "eth0") as sock:
            xid = random.getrandbits(32)
            discover = DhcpRequest(MessageType.DISCOVER, xid, sock.mac, client_id=cid)
            offer = await _ask(sock, discover)
            assert offer is not None
            request = DhcpRequest(
                MessageType.REQUEST,
                xid,
                sock.mac,
                client_id=cid,
                requested_ip=offer.yiaddr,
                server_id=offer.server_id,
            )
            ack = await _ask(sock, request)
            assert ack is not None
            assert ack.message_type is MessageType.ACK
            assert ack.server_id is not None
            renew = DhcpRequest(
                MessageType.REQUEST,
                random.getrandbits(32),
                sock.mac,
                client_id=cid,
                ciaddr=ack.yiaddr,
                dst_mac=ack.server_mac,
                src_ip=ack.yiaddr,
                dst_ip=ack.server_id,
            )
            renewed = await _ask(sock, renew)
            await _release(sock, cid, ack)
            return ack, renewed

    assert not ctr.addresses()
    ack, renewed = asyncio.run(run())
    assert renewed is not None
    assert (renewed.message_type, renewed.yiaddr) == (MessageType.ACK, ack.yiaddr)
