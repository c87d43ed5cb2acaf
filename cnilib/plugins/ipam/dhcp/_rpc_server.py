"""The daemon's side of Go ``net/rpc`` over HTTP CONNECT (:mod:`._rpc` has the protocol).

:func:`serve_rpc` is an asyncio unix server taking any number of sequential
calls per connection (Go's plugin makes one, a long-lived client may make
more), each answered with the request's ``Seq``. Unlike Go's, it drops a
connection that idles or stalls (:data:`IDLE_TIMEOUT`, :data:`REQUEST_TIMEOUT`):
any local root process may connect, and every connection it keeps open is a
file descriptor the lease renewals need. Apart from the client (:mod:`._rpc`)
so that the plugin, which only calls, does not import asyncio.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path

from cnilib._log import get_logger
from cnilib.errors import CNIError
from cnilib.plugins.ipam.dhcp._gob import Decoded, Decoder, Encoder, GobError, StructSchema
from cnilib.plugins.ipam.dhcp._gob_schemas import (
    EMPTY,
    RESPONSE,
    RESULT,
    CmdArgs,
    cmd_args_from_value,
    result_to_value,
)
from cnilib.plugins.ipam.dhcp._rpc import (
    CONNECTED,
    DHCP_METHODS,
    MAX_HANDSHAKE,
    RPC_PATH,
    RPCFailure,
)
from cnilib.results.v100 import ResultV100

__all__ = ["HANDSHAKE_TIMEOUT", "IDLE_TIMEOUT", "REQUEST_TIMEOUT", "Handler", "serve_rpc"]

_log = get_logger("cnilib.plugins.ipam.dhcp._rpc")

HANDSHAKE_TIMEOUT = 30.0
"""Seconds the server waits for a connection's HTTP request (Go waits forever)."""
IDLE_TIMEOUT = 60.0
"""Seconds the server waits for the first byte of a connection's next request (Go
waits forever; its plugin sends the request at once and hangs up after the reply)."""
REQUEST_TIMEOUT = 30.0
"""Seconds a request may take to arrive once its first byte has, and a reply to be
taken by the client: a client that stalls mid-message or does not read is dropped."""

Handler = Callable[[str, CmdArgs], Awaitable[ResultV100 | None]]
"""What :func:`serve_rpc` calls for each request: ``(method, args) -> reply``."""

# ------------------------------------------------------------------------------ server


async def serve_rpc(
    sock_or_path: socket.socket | str | os.PathLike[str],
    handler: Handler,
    *,
    methods: Collection[str] = DHCP_METHODS,
) -> asyncio.AbstractServer:
    """Serve Go ``net/rpc`` calls on a unix socket; each call goes to ``handler``.

    ``sock_or_path`` is a path to bind (its directory is made, mode 0700, as Go's
    daemon does; a stale socket file nobody listens on is replaced, a live one
    is ``EADDRINUSE``), or a bound unix stream socket (systemd socket
    activation). The caller removes the socket file when done.

    ``handler(method, args)`` returns the reply: a :class:`ResultV100`, or None
    for ``struct{}``. Raising :class:`RPCFailure` answers its text as the error;
    any other exception is logged and answered as an error, and the server goes
    on. A method outside ``methods`` is answered as Go's server does
    (``rpc: can't find method DHCP.Nope``), without calling ``handler``.
    """
    if isinstance(sock_or_path, socket.socket):
        sock = sock_or_path
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError("serve_rpc needs a unix stream socket")
    else:
        sock = _bind(Path(sock_or_path))
    serve = functools.partial(_serve_connection, handler=handler, methods=frozenset(methods))
    return await asyncio.start_unix_server(serve, sock=sock)


def _bind(path: Path) -> socket.socket:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(str(path))
        except OSError as exc:
            # Only a socket nobody listens on is replaced: never a file or a live daemon's.
            if exc.errno != errno.EADDRINUSE or not _is_socket(path) or _is_live(path):
                raise
            path.unlink()
            sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    return sock


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.lstat().st_mode)
    except OSError:
        return False


def _is_live(path: Path) -> bool:
    """Whether something accepts connections on the socket file ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError as exc:
            return exc.errno != errno.ECONNREFUSED
    return True


def _http_error(status: str, body: str) -> bytes:
    # What Go's net/http writes for http.Error / the rpc handler's 405.
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
    ).encode()


async def _server_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Read the HTTP request; answer 200 to ``CONNECT /_goRPC_``, Go's error otherwise."""
    lines: list[bytes] = []
    size = 0
    async with asyncio.timeout(HANDSHAKE_TIMEOUT):
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # a line longer than the reader's limit
                line = b"x"
            size += len(line)
            if not line.endswith(b"\n") or size > MAX_HANDSHAKE:
                if line:
                    writer.write(_http_error("400 Bad Request", "400 Bad Request"))
                return False
            if line in (b"\n", b"\r\n"):
                break
            lines.append(line)
    request_line = lines[0].strip().decode("latin-1") if lines else ""
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        writer.write(_http_error("400 Bad Request", "400 Bad Request"))
        return False
    verb, target, _proto = parts
    if target != RPC_PATH:
        writer.write(_http_error("404 Not Found", "404 page not found\n"))
        return False
    if verb != "CONNECT":
        writer.write(_http_error("405 Method Not Allowed", "405 must CONNECT\n"))
        return False
    writer.write(f"HTTP/1.0 {CONNECTED}\n\n".encode())
    return True


async def _read_request(
    reader: asyncio.StreamReader, decoder: Decoder
) -> tuple[Decoded, Decoded] | None:
    """The next request's header and body, None when the client hung up.

    Its first byte may take :data:`IDLE_TIMEOUT`, the rest :data:`REQUEST_TIMEOUT`
    (raising TimeoutError), so a stalled client holds the connection only so long.
    """
    if not decoder.pending:
        async with asyncio.timeout(IDLE_TIMEOUT):
            data = await reader.read(65536)
        if not data:
            return None
        decoder.feed(data)
    async with asyncio.timeout(REQUEST_TIMEOUT):
        header = await _next_value(reader, decoder)
        if header is None:
            return None
        body = await _next_value(reader, decoder)
    return None if body is None else (header, body)


async def _next_value(reader: asyncio.StreamReader, decoder: Decoder) -> Decoded | None:
    """The next gob value, None at a clean end of the stream."""
    while True:
        value = decoder.next()
        if value is not None:
            return value
        data = await reader.read(65536)
        if not data:
            if decoder.pending:
                raise GobError("unexpected EOF")
            return None
        decoder.feed(data)


def _route(method: str, methods: frozenset[str]) -> str:
    """Go's error for a method the server does not have, or "" for one it has."""
    if method in methods:
        return ""
    service, dot, _ = method.rpartition(".")
    if not dot:
        return f"rpc: service/method request ill-formed: {method}"
    if not any(m.rpartition(".")[0] == service for m in methods):
        return f"rpc: can't find service {method}"
    return f"rpc: can't find method {method}"


async def _dispatch(
    handler: Handler, method: str, body: Decoded, methods: frozenset[str]
) -> tuple[str, ResultV100 | None]:
    """Run one call: (error text, reply)."""
    error = _route(method, methods)
    if error:
        return error, None
    try:
        args = cmd_args_from_value(body.value)
    except GobError as exc:
        return str(exc), None
    try:
        reply: object = await handler(method, args)
    except RPCFailure as exc:
        return exc.text, None
    except CNIError as exc:
        _log.info("%s for %s failed: %s", method, args.container_id, exc)
        return str(exc), None
    except Exception as exc:
        _log.exception("%s for %s: unexpected error in the handler", method, args.container_id)
        return f"internal error: {type(exc).__name__}: {exc}", None
    if reply is None or isinstance(reply, ResultV100):
        return "", reply
    _log.error("%s: the handler returned %r, not a ResultV100 or None", method, reply)
    return f"internal error: {method} returned a {type(reply).__name__}", None


def _reply_body(
    method: str, error: str, reply: ResultV100 | None
) -> tuple[StructSchema, dict[str, object]]:
    """The reply's schema and value: ``struct{}`` for an error, a None reply or one that
    gob cannot carry (checked before the header, which must go first, is encoded)."""
    if error or reply is None:
        return EMPTY, {}
    value = result_to_value(reply)
    try:
        Encoder().encode(RESULT, value)
    except GobError as exc:
        _log.error("%s: cannot encode the handler's result: %s", method, exc)
        return EMPTY, {}
    return RESULT, value


async def _serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    handler: Handler,
    methods: frozenset[str],
) -> None:
    try:
        if not await _server_handshake(reader, writer):
            await writer.drain()
            return
        decoder = Decoder()
        encoder = Encoder()
        while True:
            request = await _read_request(reader, decoder)
            if request is None:
                return
            header, body = request
            fields = header.value if isinstance(header.value, dict) else {}
            method, seq = fields.get("ServiceMethod", ""), fields.get("Seq", 0)
            if not isinstance(method, str) or not isinstance(seq, int) or seq < 0:
                raise GobError(f"the request header is not an rpc.Request: {header.value!r}")
            error, reply = await _dispatch(handler, method, body, methods)
            schema, value = _reply_body(method, error, reply)
            if schema is EMPTY and not error and reply is not None:
                error = "internal error: the result cannot be encoded"
            out = encoder.encode(RESPONSE, {"ServiceMethod": method, "Seq": seq, "Error": error})
            out += encoder.encode(schema, value)
            writer.write(out)
            async with asyncio.timeout(REQUEST_TIMEOUT):
                await writer.drain()
    except GobError as exc:
        _log.warning("closing an RPC connection: %s", exc)
    except TimeoutError:
        # Closing would wait for a client that does not read to take the reply.
        writer.transport.abort()
    except ConnectionError:
        pass
    except asyncio.CancelledError:
        # The loop is going down (nothing awaits this task: asyncio's server made it).
        # Ending normally keeps Python 3.11's stream callback from reporting the
        # cancelled task as an "Exception in callback".
        pass
    finally:
        # Not awaiting wait_closed: the transport closes on its own, and a second
        # wait here is what a shutting-down loop would cancel.
        writer.close()
