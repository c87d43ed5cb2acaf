"""Go ``net/rpc`` over HTTP CONNECT on a unix socket: how the dhcp plugin reaches its daemon.

The protocol is Go's, so either side interoperates with Go's: the client writes
``CONNECT /_goRPC_ HTTP/1.0`` and a blank line, the server answers
``HTTP/1.0 200 Connected to Go RPC`` and a blank line, then each side writes a
gob stream (:mod:`._gob`, :mod:`._gob_schemas`): an ``rpc.Request`` header and a ``skel.CmdArgs``
per call, an ``rpc.Response`` header and the reply (``types100.Result`` for
``DHCP.Allocate``, ``struct{}`` for ``DHCP.Release`` and for every error).

* :func:`call` is the plugin's side: one call per connection, as Go's plugin
  dials per call. Go's has no timeout; ``timeout`` bounds connect and call.
* :func:`~._rpc_server.serve_rpc` is the daemon's side (:mod:`._rpc_server`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time

from cnilib._log import get_logger
from cnilib.errors import ErrorCode, PluginError, TryAgainLaterError
from cnilib.plugins._gotext import go_strerror
from cnilib.plugins.ipam.dhcp._gob import Decoded, Decoder, Encoder, GobError
from cnilib.plugins.ipam.dhcp._gob_schemas import (
    CMD_ARGS,
    REQUEST,
    CmdArgs,
    cmd_args_to_value,
    result_from_value,
)
from cnilib.results.v100 import ResultV100

__all__ = [
    "DHCP_METHODS",
    "CmdArgs",
    "DaemonCallError",
    "DaemonTimeoutError",
    "DaemonUnreachableError",
    "RPCFailure",
    "call",
]

_log = get_logger(__name__)

DHCP_METHODS = ("DHCP.Allocate", "DHCP.Release")
"""The methods Go's dhcp daemon registers."""

RPC_PATH = "/_goRPC_"
CONNECTED = "200 Connected to Go RPC"
"""The status line's text after the HTTP version, as Go's server sends it."""
MAX_HANDSHAKE = 8192
"""The most bytes of HTTP request or response head read before giving up on it."""


class RPCFailure(Exception):  # noqa: N818 -- the contract's name
    """Raised by a :data:`Handler`: ``text`` becomes the Response's ``Error``.

    The Go plugin reports it as ``error calling <method>: <text>``.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class DaemonUnreachableError(TryAgainLaterError):
    """The daemon's socket could not be connected to, or it did not answer as Go's RPC server.

    Text as Go's plugin: ``error dialing DHCP daemon: dial unix <path>: connect:
    no such file or directory``. Go's plugin reports it with code 999 (skel's
    default); this is code 11, "try again later", because a daemon that is not
    running (yet) is a transient condition of the node, not of the request:
    the runtime may retry the same ADD once the daemon is up.
    """


class DaemonCallError(PluginError):
    """The daemon answered the call with an error, or the call broke off.

    Text as Go's plugin: ``error calling DHCP.Allocate: <text>`` (``reason`` is
    ``<text>``), e.g. ``error calling DHCP.Release: unexpected EOF`` when the
    daemon hung up. Code 999, as Go's plugin reports it.
    """

    default_code = ErrorCode.INTERNAL

    def __init__(
        self,
        msg: str,
        *,
        code: int | None = None,
        details: str = "",
        stderr: bytes = b"",
        reason: str = "",
    ) -> None:
        super().__init__(msg, code=code, details=details, stderr=stderr)
        self.reason = reason


class DaemonTimeoutError(DaemonCallError, TimeoutError):
    """:func:`call` ran out of its ``timeout`` waiting for the daemon's reply."""


# ------------------------------------------------------------------------------ client


class _Deadline:
    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._end = None if timeout is None else time.monotonic() + timeout

    def arm(self, sock: socket.socket) -> None:
        """Give ``sock`` the time left; raise TimeoutError when none is."""
        if self._end is None:
            sock.settimeout(None)
            return
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)


def _recv(sock: socket.socket, deadline: _Deadline) -> bytes:
    deadline.arm(sock)
    return sock.recv(65536)


def _client_handshake(sock: socket.socket, deadline: _Deadline, path: str) -> bytes:
    """Send the CONNECT, read the answer; the bytes after it belong to the gob stream."""
    dialing = f"error dialing DHCP daemon: dial-http unix {path}"
    deadline.arm(sock)
    sock.sendall(f"CONNECT {RPC_PATH} HTTP/1.0\n\n".encode())
    buf = b""
    while True:
        # The head ends at its first blank line (the gob stream after it may hold any bytes).
        ends = [(buf.find(end), end) for end in (b"\n\n", b"\n\r\n")]
        found = [(at, end) for at, end in ends if at >= 0]
        if found:
            at, end = min(found)
            head, rest = buf[:at], buf[at + len(end) :]
            break
        if len(buf) > MAX_HANDSHAKE:
            raise DaemonUnreachableError(f"{dialing}: HTTP response head too long")
        data = _recv(sock, deadline)
        if not data:
            raise DaemonUnreachableError(f"{dialing}: unexpected EOF")
        buf += data
    status_line = head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    _proto, _, status = status_line.partition(" ")
    if status != CONNECTED:
        raise DaemonUnreachableError(f"{dialing}: unexpected HTTP response: {status}")
    return rest


def _read_value(sock: socket.socket, deadline: _Deadline, decoder: Decoder) -> Decoded:
    while True:
        value = decoder.next()
        if value is not None:
            return value
        data = _recv(sock, deadline)
        if not data:
            raise EOFError
        decoder.feed(data)


def call(
    socket_path: str | os.PathLike[str],
    method: str,
    args: CmdArgs,
    *,
    timeout: float | None = None,
) -> ResultV100 | None:
    """Call ``method`` on the daemon at ``socket_path``, as Go's plugin does.

    Returns the reply's Result, or None for a ``struct{}`` reply (Release).
    ``timeout`` (seconds) bounds the whole call, connect included; None waits
    as long as the daemon takes (Go's plugin does: a lease can take minutes).

    Raises :class:`DaemonUnreachableError` when the socket cannot be connected
    to (or is no Go RPC server), :class:`DaemonCallError` when the daemon
    answers an error, hangs up (``unexpected EOF``) or sends a malformed reply,
    and :class:`DaemonTimeoutError` when ``timeout`` runs out.
    """
    path = os.fspath(socket_path)
    deadline = _Deadline(timeout)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            deadline.arm(sock)
            sock.connect(path)
        except TimeoutError as exc:
            raise DaemonUnreachableError(
                f"error dialing DHCP daemon: dial unix {path}: i/o timeout"
            ) from exc
        except OSError as exc:
            raise DaemonUnreachableError(
                f"error dialing DHCP daemon: dial unix {path}: connect: {go_strerror(exc)}"
            ) from exc
        try:
            return _call_connected(sock, deadline, path, method, args)
        except TimeoutError as exc:
            raise DaemonTimeoutError(
                f"error calling {method}: no reply within {timeout}s",
                reason=f"no reply within {timeout}s",
            ) from exc


def _call_connected(
    sock: socket.socket, deadline: _Deadline, path: str, method: str, args: CmdArgs
) -> ResultV100 | None:
    def failed(reason: str) -> DaemonCallError:
        return DaemonCallError(f"error calling {method}: {reason}", reason=reason)

    try:
        rest = _client_handshake(sock, deadline, path)
    except OSError as exc:
        if isinstance(exc, TimeoutError):
            raise
        raise DaemonUnreachableError(
            f"error dialing DHCP daemon: dial-http unix {path}: {go_strerror(exc)}"
        ) from exc
    encoder = Encoder()
    request = encoder.encode(REQUEST, {"ServiceMethod": method, "Seq": 0})
    request += encoder.encode(CMD_ARGS, cmd_args_to_value(args))
    decoder = Decoder()
    decoder.feed(rest)
    try:
        deadline.arm(sock)
        # A daemon that hung up may have answered first: read what it sent either way.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        header = _read_value(sock, deadline, decoder)
        body = _read_value(sock, deadline, decoder)
    except EOFError as exc:
        raise failed("unexpected EOF") from exc
    except GobError as exc:
        raise failed(str(exc)) from exc
    except OSError as exc:
        if isinstance(exc, TimeoutError):
            raise
        raise failed(go_strerror(exc)) from exc
    if not isinstance(header.value, dict):
        raise failed("gob: the reply header is not an rpc.Response")
    error = header.value.get("Error", "")
    seq = header.value.get("Seq", 0)
    if not isinstance(error, str) or seq != 0:
        raise failed(f"gob: unexpected reply header {header.value!r}")
    if error:
        raise failed(error)
    if body.is_empty_struct:
        return None
    try:
        return result_from_value(body.value)
    except GobError as exc:
        raise failed(str(exc)) from exc
