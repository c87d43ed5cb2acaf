"""DHCPv4 on the wire: messages and a raw socket on one interface of one namespace.

CONTRACT SKELETON (to be implemented): the types and signatures below are what
cnilib.plugins.ipam.dhcp codes against. Keep them; add what you need.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from cnilib.netlink._pool import NetnsTarget

__all__ = [
    "DhcpReply",
    "DhcpRequest",
    "DhcpSocket",
    "MessageType",
    "open_dhcp_socket",
]


class MessageType(enum.IntEnum):
    """Option 53 values (RFC 2132 9.6)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"


@attrs.frozen
class DhcpRequest:
    """A message the client sends, and how it is framed."""

    message_type: MessageType
    xid: int
    mac: str
    """chaddr, and the Ethernet source."""
    client_id: bytes | None = None
    """Option 61's payload as sent (Go: ``b"\\x00" + id``); None: no option 61."""
    ciaddr: str = "0.0.0.0"
    requested_ip: str | None = None
    """Option 50."""
    server_id: str | None = None
    """Option 54."""
    parameters: tuple[int, ...] = ()
    """Option 55, in this order; empty: no option 55."""
    extra_options: tuple[tuple[int, bytes], ...] = ()
    """Further options as (code, payload), sent as given (Go's ``provide``)."""
    broadcast: bool = False
    """The BROADCAST bit of ``flags``."""
    dst_mac: str = BROADCAST_MAC
    src_ip: str = "0.0.0.0"
    dst_ip: str = "255.255.255.255"


@attrs.frozen
class DhcpReply:
    """A server's message (OFFER, ACK or NAK) as received."""

    message_type: MessageType
    xid: int
    yiaddr: str
    chaddr: str
    options: Mapping[int, bytes]
    """Every option's raw payload by code (split options joined, RFC 3396)."""
    server_mac: str
    """The Ethernet source of the frame."""
    server_ip: str
    """The IPv4 source of the packet."""

    @property
    def server_id(self) -> str | None:
        """Option 54 as dotted quad, if present."""
        raise NotImplementedError


class DhcpSocket:
    """An AF_PACKET socket bound to one interface, made inside its namespace.

    Used from an asyncio loop on any thread: the socket stays in the
    namespace it was made in. Close it after each transaction (it holds a
    reference on the namespace).
    """

    ifname: str
    ifindex: int
    mac: str

    async def send(self, request: DhcpRequest) -> None:
        raise NotImplementedError

    async def receive(self, xid: int, timeout: float) -> DhcpReply | None:
        """The next server message for ``xid`` (others and undecodable frames
        are skipped); None when ``timeout`` seconds pass first."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> DhcpSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


async def open_dhcp_socket(netns: NetnsTarget, ifname: str) -> DhcpSocket:
    """A :class:`DhcpSocket` on ``ifname`` in ``netns``, set up (as Go does)."""
    raise NotImplementedError
