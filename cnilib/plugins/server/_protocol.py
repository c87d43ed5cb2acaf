"""The plugin server's frames, server side (the client's half is in :mod:`._client`)."""

from __future__ import annotations

import array
import contextlib
import os
import socket
from collections.abc import Mapping

import attrs

from cnilib.plugins.server._client import (
    BAD_REQUEST,
    CALL,
    HEADER_SIZE,
    MAGIC,
    PROTOCOL_VERSION,
    REFUSED,
    RESULT,
    field,
    header,
)

__all__ = [
    "MAX_REQUEST",
    "ProtocolError",
    "Request",
    "decode_request",
    "encode_refusal",
    "encode_result",
    "peer_allowed",
    "receive_request",
]

MAX_REQUEST = 16 * 1024 * 1024
"""The largest request body the server reads (a network config with its prevResult
is kilobytes; this only bounds what a broken client can make the server hold)."""


class ProtocolError(Exception):
    """A request that is not one: answered with a bad-request frame, never run."""


@attrs.frozen
class Request:
    """One call: the plugin type, its ``CNI_*`` environment, stdin and the caller's
    network namespace (an fd the receiver owns)."""

    plugin_type: str
    env: Mapping[str, str]
    stdin: bytes
    netns_fd: int


def peer_allowed(peer_uid: int, server_uid: int) -> bool:
    """Whether a client running as ``peer_uid`` may be served: the server's own user,
    or root (a runtime calling a server its administrator started as that user)."""
    return peer_uid in (server_uid, 0)


def _fields(body: bytes) -> list[bytes]:
    found = []
    offset = 0
    while offset < len(body):
        if len(body) - offset < 4:
            raise ProtocolError("truncated field length")
        size = int.from_bytes(body[offset : offset + 4], "big")
        offset += 4
        if size > len(body) - offset:
            raise ProtocolError("field runs past the end of the request")
        found.append(body[offset : offset + size])
        offset += size
    return found


def _text(data: bytes) -> str:
    # As os.environ decodes the environment: undecodable bytes survive the round trip.
    return data.decode("utf-8", "surrogateescape")


def check_header(data: bytes, *, max_size: int = MAX_REQUEST) -> int:
    """The body size a request header announces; :class:`ProtocolError` if it is not one."""
    if data[:4] != MAGIC:
        raise ProtocolError("not a cnilib plugin server request (bad magic)")
    if data[4] != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {data[4]} not supported (this server speaks {PROTOCOL_VERSION})"
        )
    if data[5] != CALL:
        raise ProtocolError(f"unknown request kind {data[5]}")
    size = int.from_bytes(data[8:12], "big")
    if size > max_size:
        raise ProtocolError(f"request of {size} bytes exceeds the limit of {max_size}")
    return size


def decode_request(body: bytes, netns_fd: int) -> Request:
    """The call a request body carries; :class:`ProtocolError` if it is malformed."""
    fields = _fields(body)
    if len(fields) < 2:
        raise ProtocolError("a request needs the plugin type and stdin")
    plugin_type, stdin, *pairs = fields
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition(b"=")
        if not sep or not name.startswith(b"CNI_"):
            raise ProtocolError(f"environment entry {pair[:40]!r} is not a CNI_ variable")
        env[_text(name)] = _text(value)
    if not plugin_type:
        raise ProtocolError("empty plugin type")
    return Request(_text(plugin_type), env, stdin, netns_fd)


def _recv_exactly(conn: socket.socket, size: int, fds: list[int]) -> bytes:
    """``size`` bytes, collecting any fds passed along; :class:`ProtocolError` at EOF."""
    chunks = []
    left = size
    space = socket.CMSG_SPACE(4 * array.array("i").itemsize)
    while left:
        data, ancillary, _flags, _ = conn.recvmsg(
            min(left, 1 << 20), space, socket.MSG_CMSG_CLOEXEC
        )
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
                fds.extend(received)
        if not data:
            raise ProtocolError(f"the client closed the connection {left} bytes short")
        chunks.append(data)
        left -= len(data)
    return b"".join(chunks)


def receive_request(conn: socket.socket, *, max_size: int = MAX_REQUEST) -> Request:
    """Read one request from ``conn`` (its timeout bounds each read); the caller owns
    the returned fd. :class:`ProtocolError` for anything but exactly one request with
    one fd; ``OSError`` (``TimeoutError``) from the socket."""
    fds: list[int] = []
    try:
        size = check_header(_recv_exactly(conn, HEADER_SIZE, fds), max_size=max_size)
        body = _recv_exactly(conn, size, fds)
        if len(fds) != 1:
            raise ProtocolError(f"a request carries one namespace fd, not {len(fds)}")
        return decode_request(body, fds[0])
    except BaseException:
        for fd in fds:
            _close(fd)
        raise


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def encode_result(status: int, stdout: bytes, stderr: bytes) -> bytes:
    """The answer to a call that ran: exit status, stdout, stderr."""
    body = status.to_bytes(4, "big") + field(stdout) + field(stderr)
    return header(RESULT, len(body)) + body


def encode_refusal(reason: str, *, bad_request: bool = False) -> bytes:
    """The answer to a call that did not run (refused peer, or a bad request)."""
    body = reason.encode()
    return header(BAD_REQUEST if bad_request else REFUSED, len(body)) + body
