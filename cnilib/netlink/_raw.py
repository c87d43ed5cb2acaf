"""A lean rtnetlink socket for the few hot requests, built with ``struct``.

pyroute2 spends about 0.3 ms of Python per request (an asyncio loop turn,
generic message classes, full decode of every attribute); the kernel needs
a few microseconds for most of them. A bridge ADD makes about fourteen, so
the requests on its path (link lookups and changes, the veth pair, an
address, a route) go through this socket instead, which each namespace
worker opens itself: one blocking ``send``/``recv`` per request, only the
attributes :class:`~cnilib.netlink.Link` needs decoded. It also serves
link deletion, the address and route dumps, route deletion, and the
neighbour and FDB requests; the rest (the dump of every link, address
deletion, bridge-port and VLAN requests) stays on pyroute2.

The messages are the ones pyroute2 sends for the same calls (same type,
flags, header fields and attributes in the same order), so the kernel ends
in the same state; a kernel error is raised as an :class:`OSError` with the
kernel's errno, which :func:`~cnilib.netlink._errors.netlink_errors` turns
into the same :class:`~cnilib.netlink.NetlinkError` as pyroute2's would be.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

__all__ = [
    "NLM_F_ACK",
    "NLM_F_CREATE",
    "NLM_F_DUMP",
    "NLM_F_EXCL",
    "NLM_F_REPLACE",
    "NLM_F_REQUEST",
    "RawNetlink",
    "attr",
    "ifinfomsg",
    "parse_attrs",
]

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_NLATTR = struct.Struct("=HH")
_ERRNO = struct.Struct("=i")
_RECV_SIZE = 1 << 16


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = 4 + len(payload)
    return _NLATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    """``struct ifinfomsg`` (family AF_UNSPEC, type 0)."""
    return _IFINFOMSG.pack(0, 0, index, flags, change)


def parse_attrs(data: bytes | memoryview, offset: int = 0) -> dict[int, memoryview]:
    """The attributes in ``data[offset:]`` by type (the nested flag cleared); the last wins."""
    view = memoryview(data)
    found: dict[int, memoryview] = {}
    end = len(view)
    while offset + 4 <= end:
        length, kind = _NLATTR.unpack_from(view, offset)
        if length < 4 or offset + length > end:
            break
        found[kind & 0x3FFF] = view[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


class RawNetlink:
    """A netlink socket (``NETLINK_ROUTE`` unless ``protocol`` says otherwise) of the
    namespace it was opened in; one thread at a time."""

    def __init__(self, protocol: int = NETLINK_ROUTE) -> None:
        flags = socket.SOCK_RAW | socket.SOCK_CLOEXEC
        self.sock = socket.socket(socket.AF_NETLINK, flags, protocol)
        try:
            self.sock.bind((0, 0))
        except BaseException:
            self.sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def request(self, msg_type: int, flags: int, body: bytes) -> list[tuple[int, memoryview]]:
        """Send one request; its replies as (type, payload), the ACK not included.

        With ``NLM_F_ACK`` waits for the kernel's acknowledgement; with
        ``NLM_F_DUMP``, for the end of the dump (one that the kernel marks
        interrupted, because the objects changed meanwhile, is asked again);
        with neither, for the first reply (a ``GET``). A kernel error raises
        :class:`OSError`.
        """
        for _ in range(10):
            replies, interrupted = self._request(msg_type, flags, body)
            if not interrupted:
                return replies
        # The objects kept changing: say so (a transient error) rather than answer with
        # a listing that may miss or repeat some.
        raise OSError(errno.EAGAIN, "netlink dump interrupted ten times")

    def _request(
        self, msg_type: int, flags: int, body: bytes
    ) -> tuple[list[tuple[int, memoryview]], bool]:
        self._seq = seq = (self._seq + 1) & 0xFFFFFFFF or 1
        self.sock.send(_NLMSGHDR.pack(16 + len(body), msg_type, flags, seq, 0) + body)
        replies: list[tuple[int, memoryview]] = []
        interrupted = False
        while True:
            data = memoryview(self.sock.recv(_RECV_SIZE))
            offset = 0
            while offset + 16 <= len(data):
                length, kind, msg_flags, got_seq, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < 16 or offset + length > len(data):
                    raise OSError(errno.EIO, "truncated netlink message")
                payload = data[offset + 16 : offset + length]
                offset += (length + 3) & ~3
                if got_seq != seq:
                    continue  # a late answer to an earlier, abandoned request
                interrupted |= bool(msg_flags & NLM_F_DUMP_INTR)
                if kind == NLMSG_ERROR:
                    (code,) = _ERRNO.unpack_from(payload, 0)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return replies, interrupted
                if kind == NLMSG_DONE:
                    return replies, interrupted
                replies.append((kind, payload))
                if not flags & (NLM_F_ACK | NLM_F_DUMP) and not msg_flags & NLM_F_MULTI:
                    return replies, interrupted
