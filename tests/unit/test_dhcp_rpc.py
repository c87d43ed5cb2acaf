"""The dhcp RPC: our client against our server on a unix socket (Go's side: tests/privileged)."""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import select
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from cnilib.errors import ErrorCode, PluginError, TryAgainLaterError
from cnilib.plugins.ipam.dhcp import _rpc_server
from cnilib.plugins.ipam.dhcp._gob import STRING, Decoded, Decoder, Encoder, Field, StructSchema
from cnilib.plugins.ipam.dhcp._gob_schemas import (
    CMD_ARGS,
    EMPTY,
    REQUEST,
    RESPONSE,
    CmdArgs,
    cmd_args_to_value,
    result_from_value,
)
from cnilib.plugins.ipam.dhcp._rpc import (
    DaemonCallError,
    DaemonTimeoutError,
    DaemonUnreachableError,
    RPCFailure,
    call,
)
from cnilib.plugins.ipam.dhcp._rpc_server import serve_rpc
from cnilib.results import ResultV100

ARGS = CmdArgs(
    container_id="cid1",
    netns="/run/netns/ctr",
    ifname="eth0",
    args="IgnoreUnknown=1;K8S_POD_NAME=p",
    path="/opt/cni/bin",
    stdin_data=b'{"cniVersion":"1.0.0","name":"dhcpnet","ipam":{"type":"dhcp"}}',
)
RESULT = ResultV100.from_json(
    {
        "cniVersion": "1.0.0",
        "ips": [{"address": "192.0.2.10/24", "gateway": "192.0.2.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "192.0.2.1"}],
        "dns": {"nameservers": ["192.0.2.53"]},
    }
)
Handler = Callable[[str, CmdArgs], Awaitable[ResultV100 | None]]


class Recorder:
    """A handler that records its calls and answers Allocate with RESULT."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, CmdArgs]] = []

    async def __call__(self, method: str, args: CmdArgs) -> ResultV100 | None:
        self.calls.append((method, args))
        if args.container_id == "fail":
            raise RPCFailure("no more tries")
        if args.container_id == "crash":
            raise KeyError("boom")
        if method == "DHCP.Release":
            return None
        assert isinstance(RESULT, ResultV100)
        return RESULT


@asynccontextmanager
async def serving(
    where: Path | socket.socket, handler: Handler | None = None
) -> AsyncIterator[Recorder]:
    recorder = Recorder()
    server = await serve_rpc(where, handler or recorder)
    try:
        yield recorder
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def raw_server(
    path: Path, serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
) -> AsyncIterator[None]:
    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await serve(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_unix_server(wrapped, str(path))
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


async def acall(path: Path, method: str, args: CmdArgs = ARGS, **kw: float) -> ResultV100 | None:
    return await asyncio.to_thread(call, path, method, args, **kw)


def exchange(path: Path, head: bytes, data: bytes, values: int) -> tuple[bytes, list[Decoded]]:
    """Send ``head`` + ``data`` on one connection; the answer's HTTP head and gob values."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(head + data)
        buf = b""
        while b"\n\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                return buf, []
            buf += chunk
        answer, rest = buf.split(b"\n\n", 1)
        decoder = Decoder()
        decoder.feed(rest)
        out: list[Decoded] = []
        while len(out) < values:
            value = decoder.next()
            if value is not None:
                out.append(value)
                continue
            chunk = sock.recv(65536)
            if not chunk:
                break
            decoder.feed(chunk)
        return answer, out


CONNECT = b"CONNECT /_goRPC_ HTTP/1.0\n\n"


def request(encoder: Encoder, method: str, seq: int, args: CmdArgs = ARGS) -> bytes:
    return encoder.encode(REQUEST, {"ServiceMethod": method, "Seq": seq}) + encoder.encode(
        CMD_ARGS, cmd_args_to_value(args)
    )


# ---------------------------------------------------------------------------- calls


@pytest.mark.asyncio
async def test_allocate_returns_the_handlers_result(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"
    async with serving(sock) as recorder:
        assert await acall(sock, "DHCP.Allocate") == RESULT
    assert recorder.calls == [("DHCP.Allocate", ARGS)]


@pytest.mark.asyncio
async def test_release_returns_none(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"
    async with serving(sock) as recorder:
        assert await acall(sock, "DHCP.Release", timeout=10) is None
    assert recorder.calls == [("DHCP.Release", ARGS)]


@pytest.mark.asyncio
async def test_rpc_failure_is_the_callers_error_as_go_words_it(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"
    async with serving(sock):
        with pytest.raises(DaemonCallError) as info:
            await acall(sock, "DHCP.Allocate", CmdArgs(container_id="fail"))
    assert str(info.value) == "error calling DHCP.Allocate: no more tries"
    assert info.value.reason == "no more tries"
    assert info.value.code == ErrorCode.INTERNAL
    assert isinstance(info.value, PluginError)


@pytest.mark.parametrize(
    ("method", "text"),
    [
        ("DHCP.Nope", "rpc: can't find method DHCP.Nope"),
        ("Other.Allocate", "rpc: can't find service Other.Allocate"),
        ("Allocate", "rpc: service/method request ill-formed: Allocate"),
    ],
)
@pytest.mark.asyncio
async def test_unknown_methods_are_answered_as_go_does(
    tmp_path: Path, method: str, text: str
) -> None:
    sock = tmp_path / "d.sock"
    async with serving(sock) as recorder:
        with pytest.raises(DaemonCallError, match=f"^error calling {method}: {text}$"):
            await acall(sock, method)
    assert recorder.calls == []


@pytest.mark.asyncio
async def test_a_crashing_handler_is_logged_answered_and_the_server_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sock = tmp_path / "d.sock"
    async with serving(sock):
        with (
            caplog.at_level(logging.ERROR, logger="cnilib"),
            pytest.raises(DaemonCallError, match="internal error: KeyError: 'boom'"),
        ):
            await acall(sock, "DHCP.Allocate", CmdArgs(container_id="crash"))
        assert await acall(sock, "DHCP.Allocate") == RESULT
    (record,) = caplog.records
    assert record.exc_info is not None
    assert "DHCP.Allocate for crash" in record.getMessage()


@pytest.mark.asyncio
async def test_a_result_gob_cannot_carry_is_answered_as_an_error(tmp_path: Path) -> None:
    too_big = ResultV100.from_json({"cniVersion": "1.0.0", "routes": [{"dst": "0.0.0.0/0"}]})
    assert isinstance(too_big, ResultV100)
    too_big = ResultV100(routes=[r.__class__(dst=r.dst, mtu=1 << 64) for r in too_big.routes])

    async def handler(method: str, args: CmdArgs) -> ResultV100 | None:
        return too_big

    async def wrong(method: str, args: CmdArgs) -> ResultV100 | None:
        return "not a result"  # type: ignore[return-value]

    sock = tmp_path / "d.sock"
    async with serving(sock, handler):
        with pytest.raises(DaemonCallError, match="internal error: the result cannot be encoded"):
            await acall(sock, "DHCP.Allocate")
    async with serving(tmp_path / "w.sock", wrong):
        with pytest.raises(DaemonCallError, match=r"internal error: DHCP\.Allocate returned a str"):
            await acall(tmp_path / "w.sock", "DHCP.Allocate")


def _handshake(path: Path) -> socket.socket:
    """A connection past the HTTP handshake (every read bounded: a hang fails the test)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(str(path))
    sock.sendall(CONNECT)
    head = b""
    while not head.endswith(b"\n\n"):
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head == b"HTTP/1.0 200 Connected to Go RPC\n\n"
    return sock


def _read_to_end(sock: socket.socket) -> bytes:
    """What the server sends until it hangs up (a server that never does times out)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.asyncio
async def test_a_client_that_sends_nothing_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_rpc_server, "IDLE_TIMEOUT", 0.05)
    sock = tmp_path / "d.sock"
    async with serving(sock) as recorder:
        with await asyncio.to_thread(_handshake, sock) as idle:
            assert await asyncio.to_thread(_read_to_end, idle) == b""
    assert recorder.calls == []


@pytest.mark.asyncio
async def test_a_client_that_stops_mid_request_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_rpc_server, "REQUEST_TIMEOUT", 0.05)
    sock = tmp_path / "d.sock"
    data = request(Encoder(), "DHCP.Allocate", 3)
    async with serving(sock) as recorder:
        for cut in (1, len(data) // 2, len(data) - 1):  # in the header, in the body
            with await asyncio.to_thread(_handshake, sock) as half:
                half.sendall(data[:cut])
                assert await asyncio.to_thread(_read_to_end, half) == b""
    assert recorder.calls == []


@pytest.mark.asyncio
async def test_stalled_clients_do_not_hold_up_others(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"
    async with serving(sock):
        silent = await asyncio.to_thread(_handshake, sock)
        half = await asyncio.to_thread(_handshake, sock)
        with silent, half:
            half.sendall(request(Encoder(), "DHCP.Allocate", 1)[:40])
            assert await acall(sock, "DHCP.Allocate", timeout=10) == RESULT


@pytest.mark.asyncio
async def test_a_client_that_does_not_read_its_replies_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_rpc_server, "REQUEST_TIMEOUT", 0.05)
    routes = [{"dst": f"10.{i // 256}.{i % 256}.0/24", "gw": "192.0.2.1"} for i in range(2000)]
    big = ResultV100.from_json({"cniVersion": "1.0.0", "routes": routes})
    assert isinstance(big, ResultV100)

    async def handler(method: str, args: CmdArgs) -> ResultV100 | None:
        return big

    def pipeline_and_wait_for_hang_up(path: Path) -> int:
        # ~40 KiB per reply: 30 of them fill the socket and the server's buffer.
        with _handshake(path) as client:
            encoder = Encoder()
            client.sendall(b"".join(request(encoder, "DHCP.Allocate", n) for n in range(30)))
            poller = select.poll()
            poller.register(client, select.POLLRDHUP)
            events = poller.poll(10_000)  # without reading anything
            return events[0][1] if events else 0

    sock = tmp_path / "d.sock"
    async with serving(sock, handler):
        events = await asyncio.to_thread(pipeline_and_wait_for_hang_up, sock)
        assert events & select.POLLRDHUP
        assert await acall(sock, "DHCP.Allocate", timeout=10) == big


# --------------------------------------------------------------------------- failures


@pytest.mark.asyncio
async def test_no_daemon_is_unreachable_with_gos_text(tmp_path: Path) -> None:
    sock = tmp_path / "nope.sock"
    with pytest.raises(DaemonUnreachableError) as info:
        await acall(sock, "DHCP.Allocate")
    assert str(info.value) == (
        f"error dialing DHCP daemon: dial unix {sock}: connect: no such file or directory"
    )
    assert info.value.code == ErrorCode.TRY_AGAIN_LATER
    assert isinstance(info.value, TryAgainLaterError)


@pytest.mark.asyncio
async def test_a_socket_file_nobody_listens_on_is_unreachable(tmp_path: Path) -> None:
    sock = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))
    with pytest.raises(DaemonUnreachableError, match=r"connect: connection refused$"):
        await acall(sock, "DHCP.Release")


@pytest.mark.asyncio
async def test_a_daemon_that_hangs_up_is_an_unexpected_eof(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\n\n")
        writer.write(b"HTTP/1.0 200 Connected to Go RPC\n\n")
        await reader.read(10)

    async with raw_server(sock, hang_up):
        with pytest.raises(DaemonCallError) as info:
            await acall(sock, "DHCP.Release")
    assert str(info.value) == "error calling DHCP.Release: unexpected EOF"
    assert not isinstance(info.value, DaemonTimeoutError)


@pytest.mark.asyncio
async def test_a_daemon_that_does_not_answer_times_out(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\n\n")
        writer.write(b"HTTP/1.0 200 Connected to Go RPC\n\n")
        while await reader.read(4096):
            pass

    async with raw_server(sock, silent):
        with pytest.raises(DaemonTimeoutError) as info:
            await acall(sock, "DHCP.Allocate", timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert str(info.value).startswith("error calling DHCP.Allocate: no reply within")


@pytest.mark.asyncio
async def test_a_server_that_is_not_go_rpc_is_unreachable(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\n\n")
        writer.write(b"HTTP/1.0 404 Not Found\r\n\r\n")

    async with raw_server(sock, http):
        with pytest.raises(DaemonUnreachableError) as info:
            await acall(sock, "DHCP.Allocate")
    assert str(info.value) == (
        f"error dialing DHCP daemon: dial-http unix {sock}: unexpected HTTP response: 404 Not Found"
    )


@pytest.mark.asyncio
async def test_a_garbled_reply_is_a_call_error(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\n\n")
        writer.write(b"HTTP/1.0 200 Connected to Go RPC\n\n\x03\xff\x82\x00")

    async with raw_server(sock, garbage):
        with pytest.raises(DaemonCallError, match=r"^error calling DHCP\.Allocate: gob: "):
            await acall(sock, "DHCP.Allocate")


def _reply(header: dict[str, object], body: bytes | None = b"") -> bytes:
    encoder = Encoder()
    data = encoder.encode(RESPONSE, {"ServiceMethod": "DHCP.Allocate", **header})
    if body == b"":
        body = encoder.encode(EMPTY, {})
    return data + (body or b"")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (_reply({"Seq": 5}), r"gob: unexpected reply header .*'Seq': 5"),
        (_reply({}, None), "unexpected EOF"),  # the header, then a hang-up
        (_reply({})[:-1], "unexpected EOF"),  # half of the body
        (b"\xf8" + (1 << 60).to_bytes(8, "big"), "gob: message of 1152921504606846976 bytes"),
        (_reply({}, b"\x04\x0c\x00\x01x"), "gob: Result: expected a struct, got a string"),
        (b"\x04\x0c\x00\x01x" * 2, "gob: the reply header is not an rpc.Response"),
    ],
)
@pytest.mark.asyncio
async def test_a_daemon_that_misbehaves_is_a_call_error(
    tmp_path: Path, answer: bytes, reason: str
) -> None:
    sock = tmp_path / "d.sock"

    async def misbehave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\n\n")
        writer.write(b"HTTP/1.0 200 Connected to Go RPC\n\n" + answer)
        await writer.drain()
        # Hang up (FIN), then take what the client still sends until it closes: a socket
        # closed with unread bytes is reset instead, and the client would read a reset
        # rather than the end of the reply (it did, on a busy machine).
        writer.write_eof()
        await reader.read()

    async with raw_server(sock, misbehave):
        with pytest.raises(DaemonCallError) as info:
            await acall(sock, "DHCP.Allocate", timeout=10)
    assert not isinstance(info.value, DaemonTimeoutError)
    assert re.match(reason, info.value.reason), info.value.reason


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
@pytest.mark.asyncio
async def test_a_reply_that_comes_with_the_handshake_is_read_whole(
    tmp_path: Path, newline: bytes
) -> None:
    # The head ends at its first blank line, even when the gob bytes after it
    # (read in the same recv) hold a blank line of their own.
    encoder = Encoder()
    text = "no\r\n\r\nlease\n\n"
    reply = encoder.encode(RESPONSE, {"ServiceMethod": "DHCP.Allocate", "Error": text})
    reply += encoder.encode(EMPTY, {})
    sock = tmp_path / "d.sock"

    async def eager(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\n\n")
        writer.write(b"HTTP/1.0 200 Connected to Go RPC" + newline * 2 + reply)
        await reader.read(65536)

    async with raw_server(sock, eager):
        with pytest.raises(DaemonCallError) as info:
            await acall(sock, "DHCP.Allocate")
    assert info.value.reason == text


# ------------------------------------------------------------------------- the server


@pytest.mark.asyncio
async def test_many_calls_on_one_connection_echo_their_seq(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"
    encoder = Encoder()
    data = (
        request(encoder, "DHCP.Allocate", 0)
        + request(encoder, "DHCP.Release", 7)
        + request(encoder, "DHCP.Nope", 1 << 40)
    )
    async with serving(sock) as recorder:
        head, values = await asyncio.to_thread(exchange, sock, CONNECT, data, 6)
    assert head == b"HTTP/1.0 200 Connected to Go RPC"
    # One decoder read all three answers: each type was defined once (a second
    # definition of an id is an error), so the server kept one encoder per connection.
    headers = [v.value for v in values[::2]]
    assert headers == [
        {"ServiceMethod": "DHCP.Allocate"},
        {"ServiceMethod": "DHCP.Release", "Seq": 7},
        {
            "ServiceMethod": "DHCP.Nope",
            "Seq": 1 << 40,
            "Error": "rpc: can't find method DHCP.Nope",
        },
    ]
    assert result_from_value(values[1].value) == RESULT
    assert values[3].is_empty_struct
    assert values[5].is_empty_struct
    assert [m for m, _ in recorder.calls] == ["DHCP.Allocate", "DHCP.Release"]


@pytest.mark.asyncio
async def test_args_of_the_wrong_type_are_answered_and_the_connection_goes_on(
    tmp_path: Path,
) -> None:
    wrong = StructSchema("CmdArgs", (Field("ContainerID", 2), Field("IfName", STRING)))
    encoder = Encoder()
    data = encoder.encode(REQUEST, {"ServiceMethod": "DHCP.Allocate"})
    data += encoder.encode(wrong, {"ContainerID": 5, "IfName": "eth0"})
    data += request(encoder, "DHCP.Release", 1)
    sock = tmp_path / "d.sock"
    async with serving(sock) as recorder:
        _, values = await asyncio.to_thread(exchange, sock, CONNECT, data, 4)
    assert values[0].value == {
        "ServiceMethod": "DHCP.Allocate",
        "Error": "gob: CmdArgs.ContainerID: expected a Go string, got an integer",
    }
    assert values[2].value == {"ServiceMethod": "DHCP.Release", "Seq": 1}
    assert recorder.calls == [("DHCP.Release", ARGS)]


@pytest.mark.asyncio
async def test_a_malformed_stream_closes_the_connection_not_the_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sock = tmp_path / "d.sock"
    async with serving(sock):
        with caplog.at_level(logging.WARNING, logger="cnilib"):
            head, values = await asyncio.to_thread(exchange, sock, CONNECT, b"\x80", 1)
        assert head == b"HTTP/1.0 200 Connected to Go RPC"
        assert values == []  # closed without an answer
        assert "invalid message length" in caplog.text
        assert await acall(sock, "DHCP.Allocate") == RESULT


@pytest.mark.parametrize(
    ("head", "status", "body"),
    [
        (b"GET /_goRPC_ HTTP/1.0\r\n\r\n", b"405 Method Not Allowed", b"405 must CONNECT\n"),
        (b"CONNECT /other HTTP/1.0\n\n", b"404 Not Found", b"404 page not found\n"),
        (b"CONNECT\n\n", b"400 Bad Request", b"400 Bad Request"),
    ],
)
@pytest.mark.asyncio
async def test_a_bad_handshake_gets_gos_http_answer_and_is_closed(
    tmp_path: Path, head: bytes, status: bytes, body: bytes
) -> None:
    sock = tmp_path / "d.sock"

    def talk() -> bytes:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(sock))
            s.sendall(head)
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
            return answer

    async with serving(sock) as recorder:
        answer = await asyncio.to_thread(talk)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 " + status
    assert rest.endswith(b"\r\n\r\n" + body)
    assert recorder.calls == []


@pytest.mark.asyncio
async def test_a_prebound_socket_is_served(tmp_path: Path) -> None:
    # What systemd socket activation hands over: a bound (and listening) unix socket.
    sock = tmp_path / "act.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen()
    async with serving(listener):
        assert await acall(sock, "DHCP.Allocate") == RESULT


@pytest.mark.asyncio
async def test_a_prebound_socket_must_be_unix_stream() -> None:
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dgram,
        pytest.raises(ValueError, match="unix stream socket"),
    ):
        await serve_rpc(dgram, Recorder())


@pytest.mark.asyncio
async def test_a_stale_socket_file_is_replaced_a_live_one_is_not(tmp_path: Path) -> None:
    sock = tmp_path / "run" / "cni" / "d.sock"
    sock.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(sock))
    async with serving(sock):
        assert await acall(sock, "DHCP.Release") is None
        with pytest.raises(OSError, match="in use") as info:
            await serve_rpc(sock, Recorder())
        assert info.value.errno == errno.EADDRINUSE
        assert await acall(sock, "DHCP.Release") is None


@pytest.mark.asyncio
async def test_a_file_that_is_no_socket_is_not_replaced(tmp_path: Path) -> None:
    # A daemonSocketPath or -socketpath naming some other file must not delete it.
    path = tmp_path / "important.conf"
    path.write_text("keep me")
    with pytest.raises(OSError, match="in use") as info:
        await serve_rpc(path, Recorder())
    assert info.value.errno == errno.EADDRINUSE
    assert path.read_text() == "keep me"


@pytest.mark.asyncio
async def test_the_socket_directory_is_made_private(tmp_path: Path) -> None:
    sock = tmp_path / "new" / "d.sock"
    async with serving(sock):
        assert (sock.parent.stat().st_mode & 0o777) == 0o700
        assert await acall(sock, "DHCP.Release") is None


def test_a_loop_shutting_down_with_a_connection_open_is_quiet(tmp_path: Path) -> None:
    # asyncio.run cancels the open connection's task on the way out; Python 3.11's stream
    # callback then reports a cancelled task as an "Exception in callback".
    sock = tmp_path / "d.sock"
    reported: list[dict[str, object]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: reported.append(ctx))
        server = await serve_rpc(sock, Recorder())
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(CONNECT)
        await reader.readuntil(b"\n\n")
        server.close()
        writer.close()

    asyncio.run(main())
    assert reported == []
