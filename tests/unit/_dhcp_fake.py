"""A scripted DHCP server behind fake sockets, and clocks to run it on (no network).

The lease keeper's tests drive it with :class:`FakeClock` (time passes only
when the keeper waits); the daemon's and the plugin's tests run it on
:class:`RealClock` with short timers, since the daemon's keepers use the
system clock. The server answers what it is scripted to: an OFFER for each
DISCOVER, and for each REQUEST the next entry of ``request_plan`` (``ack``,
``nak``, ``silent``, or ``("ack", options)`` for an ACK with other lease
times), else ``default_request``.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Collection
from typing import TYPE_CHECKING

from cnilib.netlink._dhcp import DhcpReply, DhcpRequest, DhcpSocket, MessageType

if TYPE_CHECKING:
    from cnilib.plugins.ipam.dhcp._lease import LeaseKeeper

__all__ = [
    "ADDRESS",
    "CLIENT_MAC",
    "IFNAME",
    "KEY",
    "NETNS",
    "SERVER_IP",
    "SERVER_MAC",
    "WALL0",
    "FakeClock",
    "FakeServer",
    "FakeSocket",
    "Plan",
    "RealClock",
    "ack_options",
    "u32",
]

KEY = "cid/dhcpnet/eth0"
NETNS = "/run/netns/ctr"
IFNAME = "eth0"
CLIENT_MAC = "02:00:00:00:00:01"
SERVER_MAC = "02:00:00:00:00:fe"
SERVER_IP = "192.0.2.1"
ADDRESS = "192.0.2.100"
WALL0 = 1_700_000_000.0

Plan = str | tuple[str, dict[int, bytes]]
"""One answer to a REQUEST: ``ack``, ``nak``, ``silent``, or ``("ack", options)``."""


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def ack_options(lease: int = 100, t1: int = 50, t2: int = 85) -> dict[int, bytes]:
    """Mask /24, router and server 192.0.2.1, and the lease times."""
    return {
        1: bytes([255, 255, 255, 0]),
        3: bytes([192, 0, 2, 1]),
        51: u32(lease),
        54: bytes([192, 0, 2, 1]),
        58: u32(t1),
        59: u32(t2),
    }


class FakeClock:
    """Time that passes only when the keeper waits; waits beyond ``limit`` park."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.limit = math.inf
        self.parked = asyncio.Event()
        self._resume = asyncio.Event()

    def time(self) -> float:
        return WALL0 + self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await self.advance(seconds)

    async def advance(self, seconds: float) -> None:
        target = self.now + max(seconds, 0.0)
        while target > self.limit:
            self.parked.set()
            self._resume.clear()
            await self._resume.wait()
        self.now = target
        await asyncio.sleep(0)

    async def run_until(self, limit: float, keeper: LeaseKeeper) -> None:
        """Let the keeper run until it waits past ``limit`` (or its task ends)."""
        self.limit = limit
        self.parked.clear()
        self._resume.set()
        task = keeper.task
        assert task is not None
        parked = asyncio.ensure_future(self.parked.wait())
        await asyncio.wait({parked, task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        parked.cancel()
        assert self.parked.is_set() or task.done(), "the keeper neither waited nor ended"
        if task.done() and not task.cancelled():
            task.result()


class RealClock:
    """The server's side of real time: a silent server really makes the client wait."""

    @property
    def now(self) -> float:
        return time.monotonic()

    async def advance(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class FakeServer:
    """A scripted DHCP server behind fake sockets; counts opens and closes.

    ``attachments``: the (netns, ifname) pairs a socket may be opened on (None:
    any). ``pool``: addresses handed out one per client ID (the same client
    gets the same address again, as a real server does); without a pool every
    client is offered ``offer_address``.
    """

    def __init__(
        self,
        clock: FakeClock | RealClock,
        *,
        attachments: Collection[tuple[str, str]] | None = ((NETNS, IFNAME),),
        pool: Collection[str] = (),
    ) -> None:
        self.clock = clock
        self.attachments = attachments
        self.sent: list[tuple[float, DhcpRequest]] = []
        self.opens = 0
        self.closes = 0
        self.answer_discover = True
        self.request_plan: list[Plan] = []
        """Answers to the next REQUESTs (then ``default_request``)."""
        self.default_request = "ack"
        self.answer_unicast = True
        self.open_error: Exception | None = None
        self.send_error: Exception | None = None
        self.offer_address = ADDRESS
        self.options = ack_options()
        self.latency = 0.0
        """Seconds each reply takes (on the server's clock)."""
        self._free = list(pool)
        self._given: dict[bytes | None, str] = {}
        self._lock = threading.Lock()  # the daemon may run on another thread than the test

    @property
    def requests(self) -> list[DhcpRequest]:
        return [request for _, request in self.sent]

    def kinds(self) -> list[MessageType]:
        return [request.message_type for request in self.requests]

    def kinds_of(self, client_id: bytes) -> list[MessageType]:
        """The message types one client sent."""
        return [r.message_type for r in self.requests if r.client_id == client_id]

    async def open_socket(self, netns: str, ifname: str) -> DhcpSocket:
        if self.attachments is not None:
            assert (netns, ifname) in self.attachments, (netns, ifname)
        if self.open_error is not None:
            raise self.open_error
        with self._lock:
            self.opens += 1
        return FakeSocket(self, ifname)

    def offer_for(self, request: DhcpRequest) -> str:
        """The address this client is offered."""
        with self._lock:
            if request.client_id in self._given:
                return self._given[request.client_id]
            if not self._free:
                return self.offer_address
            address = self._given[request.client_id] = self._free.pop(0)
            return address

    def reply(
        self,
        kind: MessageType,
        request: DhcpRequest,
        yiaddr: str,
        options: dict[int, bytes] | None = None,
    ) -> DhcpReply:
        return DhcpReply(
            message_type=kind,
            xid=request.xid,
            yiaddr=yiaddr,
            chaddr=request.mac,
            options=dict(self.options if options is None else options),
            server_mac=SERVER_MAC,
            server_ip=SERVER_IP,
        )

    def answer(self, request: DhcpRequest) -> list[DhcpReply]:
        if request.message_type is MessageType.DISCOVER:
            if not self.answer_discover:
                return []
            return [self.reply(MessageType.OFFER, request, self.offer_for(request))]
        if request.message_type is MessageType.REQUEST:
            if request.dst_ip != "255.255.255.255" and not self.answer_unicast:
                return []
            with self._lock:
                plan = self.request_plan.pop(0) if self.request_plan else self.default_request
            kind, options = plan if isinstance(plan, tuple) else (plan, None)
            asked = request.requested_ip or request.ciaddr
            if kind == "ack":
                return [self.reply(MessageType.ACK, request, asked, options)]
            if kind == "nak":
                return [self.reply(MessageType.NAK, request, "0.0.0.0")]
            return []
        return []


class FakeSocket(DhcpSocket):
    def __init__(self, server: FakeServer, ifname: str = IFNAME) -> None:
        self.server = server
        self.ifname = ifname
        self.ifindex = 2
        self.mac = CLIENT_MAC
        self.closed = False
        self.queue: list[DhcpReply] = []

    async def send(self, request: DhcpRequest) -> None:
        assert not self.closed
        if self.server.send_error is not None:
            raise self.server.send_error
        self.server.sent.append((self.server.clock.now, request))
        self.queue.extend(self.server.answer(request))

    async def receive(self, xid: int, timeout: float) -> DhcpReply | None:  # noqa: ASYNC109
        assert not self.closed
        for reply in self.queue:
            if reply.xid == xid:
                if self.server.latency:
                    await self.server.clock.advance(self.server.latency)
                self.queue.remove(reply)
                return reply
        await self.server.clock.advance(timeout)
        return None

    def close(self) -> None:
        assert not self.closed
        self.closed = True
        with self.server._lock:
            self.server.closes += 1

    async def aclose(self) -> None:
        self.close()
