"""The plugin server's frames, its refusals and its thin client (VERSION and errors
only: nothing here acts on a network namespace)."""

from __future__ import annotations

import importlib.util
import os
import posix
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnilib.plugins._main import CLIENT_DIR, install
from cnilib.plugins.server import PluginServer, PluginServerError, _client, _server
from cnilib.plugins.server._protocol import (
    ProtocolError,
    check_header,
    decode_request,
    encode_refusal,
    encode_result,
    peer_allowed,
)

VERSION_STDIN = b'{"cniVersion": "0.4.0"}'


def request_frame(plugin_type: str = "bridge", env: dict[str, str] | None = None) -> bytes:
    pairs = [f"{k}={v}".encode() for k, v in (env or {"CNI_COMMAND": "VERSION"}).items()]
    return _client.encode_request(plugin_type.encode(), pairs, VERSION_STDIN)


def send(path: Path, data: bytes, *, with_netns: bool = True) -> bytes:
    """Send ``data`` (with this process's namespace fd) and read the whole answer."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(path))
        conn.settimeout(10)
        if with_netns:
            fd = os.open("/proc/self/ns/net", os.O_RDONLY)
            try:
                conn.sendmsg(
                    [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))]
                )
            finally:
                os.close(fd)
        else:
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


# -- frames -----------------------------------------------------------------------


def test_request_round_trip() -> None:
    env = {"CNI_COMMAND": "ADD", "CNI_ARGS": "A=b;C=d", "CNI_PATH": "/opt/cni/bin"}
    frame = request_frame("host-local", env)
    size = check_header(frame[:12])
    assert size == len(frame) - 12
    request = decode_request(frame[12:], 7)
    assert (request.plugin_type, dict(request.env), request.stdin, request.netns_fd) == (
        "host-local",
        env,
        VERSION_STDIN,
        7,
    )


def test_undecodable_environment_survives_as_os_environ_keeps_it() -> None:
    body = _client.field(b"bridge") + _client.field(b"") + _client.field(b"CNI_ARGS=\xff")
    assert decode_request(body, 3).env == {"CNI_ARGS": "\udcff"}


def test_only_cni_variables_are_forwarded() -> None:
    environ = {b"CNI_COMMAND": b"ADD", b"PATH": b"/bin", b"HOME": b"/root", b"CNI_NETNS": b"/x"}
    assert _client.cni_environment(environ) == [b"CNI_COMMAND=ADD", b"CNI_NETNS=/x"]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"HTTP" + bytes((1, 1, 0, 0)) + (5).to_bytes(4, "big"), "bad magic"),
        (b"CNIS" + bytes((2, 1, 0, 0)) + (5).to_bytes(4, "big"), "protocol version 2"),
        (b"CNIS" + bytes((1, 9, 0, 0)) + (5).to_bytes(4, "big"), "unknown request kind 9"),
        (b"CNIS" + bytes((1, 1, 0, 0)) + (1 << 30).to_bytes(4, "big"), "exceeds the limit"),
    ],
)
def test_bad_headers(header: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        check_header(header)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x00\x00", "truncated field length"),
        (b"\x00\x00\x00\x09abc", "past the end"),
        (_client.field(b"bridge"), "needs the plugin type and stdin"),
        (_client.field(b"") + _client.field(b""), "empty plugin type"),
        (_client.field(b"x") + _client.field(b"") + _client.field(b"PATH=/bin"), "not a CNI_"),
        (_client.field(b"x") + _client.field(b"") + _client.field(b"CNI_X"), "not a CNI_"),
    ],
)
def test_bad_bodies(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_request(body, 3)


def test_response_round_trip() -> None:
    assert _client.decode_response(encode_result(7, b"out", b"err")) == (1, 7, b"out", b"err")
    assert _client.decode_response(encode_refusal("no")) == (2, 0, b"", b"no")
    refusal = encode_refusal("bad", bad_request=True)
    assert _client.decode_response(refusal) == (3, 0, b"", b"bad")


@pytest.mark.parametrize("cut", [0, 5, 12, 15, 20])
def test_a_cut_response_is_none(cut: int) -> None:
    """A server that died while answering: the client must not take it for an answer."""
    assert _client.decode_response(encode_result(0, b"stdout!", b"e")[:cut]) is None


def test_peer_allowed() -> None:
    assert peer_allowed(1000, 1000)
    assert peer_allowed(0, 1000)  # root may call a user's server
    assert not peer_allowed(1001, 1000)
    assert not peer_allowed(65534, 0)  # root's server serves root only


# -- a server in this process ---------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PluginServer]:
    with PluginServer(tmp_path / "run" / "plugins.sock", read_timeout=0.5) as running:
        yield running
    assert not (tmp_path / "run" / "plugins.sock").exists()


def test_socket_and_directory_modes(server: PluginServer, tmp_path: Path) -> None:
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o700
    assert Path(server.socket_path).stat().st_mode & 0o777 == 0o600


def test_version_through_the_server(server: PluginServer) -> None:
    answer = _client.decode_response(send(Path(server.socket_path), request_frame()))
    assert answer is not None
    assert answer[:2] == (1, 0)
    assert answer[2].startswith(b'{"cniVersion": "0.4.0"')
    assert server.served == 1


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"CNIS" + bytes((1, 1, 0, 0)) + (1 << 31).to_bytes(4, "big"),  # oversized
        b"CNIS" + bytes((1, 1, 0, 0)) + (3).to_bytes(4, "big") + b"\x00\x00\x00",
    ],
)
def test_garbage_is_a_bad_request_and_serving_goes_on(server: PluginServer, garbage: bytes) -> None:
    path = Path(server.socket_path)
    answer = _client.decode_response(send(path, garbage))
    assert answer is not None
    assert answer[0] == _client.BAD_REQUEST
    ok = _client.decode_response(send(path, request_frame()))
    assert ok is not None
    assert ok[:2] == (1, 0)


def test_a_request_without_the_namespace_fd_is_refused(server: PluginServer) -> None:
    answer = _client.decode_response(
        send(Path(server.socket_path), request_frame(), with_netns=False)
    )
    assert answer is not None
    assert answer[0] == _client.BAD_REQUEST
    assert b"one namespace fd, not 0" in answer[3]


def test_a_file_that_is_no_namespace_is_refused(server: PluginServer, tmp_path: Path) -> None:
    other = tmp_path / "plain"
    other.write_text("x")
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(server.socket_path)
        fd = os.open(other, os.O_RDONLY)
        try:
            conn.sendmsg(
                [request_frame()],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))],
            )
        finally:
            os.close(fd)
        answer = _client.decode_response(_client.read_all(conn))
    assert answer is not None
    assert answer[0] == _client.BAD_REQUEST
    assert b"not a network namespace" in answer[3]


def test_a_slow_client_is_dropped_and_others_are_served(server: PluginServer) -> None:
    slow = socket.socket(socket.AF_UNIX)
    slow.connect(server.socket_path)
    slow.sendall(request_frame()[:10])  # then nothing: the read timeout (0.5 s) ends it
    try:
        ok = _client.decode_response(send(Path(server.socket_path), request_frame()))
        assert ok is not None
        assert ok[:2] == (1, 0)
        slow.settimeout(10)
        assert slow.recv(100) == b""  # closed by the server without an answer
    finally:
        slow.close()


def test_another_users_call_is_refused(
    server: PluginServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_server, "_peer_uid", lambda conn: server.uid + 4242 or 1)
    answer = _client.decode_response(send(Path(server.socket_path), request_frame()))
    assert answer is not None
    assert answer[0] == _client.REFUSED
    assert f"not uid {server.uid + 4242}".encode() in answer[3]
    assert server.served == 0


def test_concurrent_calls(server: PluginServer) -> None:
    answers: list[bytes] = []

    def one() -> None:
        answers.append(send(Path(server.socket_path), request_frame()))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 8
    assert all(_client.decode_response(a) is not None for a in answers)


def test_a_second_server_on_a_live_socket_is_refused(server: PluginServer) -> None:
    with pytest.raises(PluginServerError, match="another server does"):
        PluginServer(server.socket_path).start()


def test_a_dead_servers_socket_is_replaced(tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "s.sock"))
    stale.close()  # bound, never listening: what a killed server leaves
    with PluginServer(tmp_path / "s.sock") as fresh:
        assert fresh.running


def test_idle_exit_removes_the_socket(tmp_path: Path) -> None:
    server = PluginServer(tmp_path / "s.sock", idle_exit=0.1).start()
    try:
        server.serve_forever()  # returns once idle
        assert not server.running
        assert not (tmp_path / "s.sock").exists()
    finally:
        server.stop()


# -- the installed client ---------------------------------------------------------------


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    install(tmp_path / "bin", ["bridge"], server_socket=tmp_path / "run" / "plugins.sock")
    return tmp_path / "bin"


def run(bin_dir: Path, env: dict[str, str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(bin_dir / "bridge")],
        input=stdin,
        env=env,
        capture_output=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "stdin"),
    [
        ({"CNI_COMMAND": "VERSION"}, VERSION_STDIN),
        ({"CNI_COMMAND": "VERSION"}, b"not json"),
        ({"CNI_COMMAND": "ADD"}, b"{}"),  # code 4: variables missing
        ({"CNI_COMMAND": "NOPE"}, b"{}"),
    ],
)
def test_client_answers_as_the_executable(
    bin_dir: Path, server: PluginServer, env: dict[str, str], stdin: bytes
) -> None:
    through = run(bin_dir, env, stdin)
    alone = run(bin_dir, {**env, "CNILIB_PLUGIN_SERVER": ""}, stdin)
    assert server.served == 1
    assert (through.returncode, through.stdout, through.stderr) == (
        alone.returncode,
        alone.stdout,
        alone.stderr,
    )


def test_client_without_server_runs_the_plugin(bin_dir: Path) -> None:
    done = run(bin_dir, {"CNI_COMMAND": "VERSION"}, VERSION_STDIN)
    assert done.returncode == 0
    assert done.stdout.startswith(b'{"cniVersion": "0.4.0"')


def fake_server(
    path: Path, answer: bytes | None
) -> tuple[socket.socket, threading.Thread, list[bytes]]:
    """A listener that reads one request whole, then sends ``answer`` (``None``: closes,
    as a server that died while running it)."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            head = conn.recv(12, socket.MSG_WAITALL)
            got.append(head + conn.recv(int.from_bytes(head[8:12], "big"), socket.MSG_WAITALL))
            if answer is not None:
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread, got


def test_a_server_dying_mid_call_is_an_error_and_the_call_is_not_run_again(
    bin_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "run").mkdir()
    listener, thread, got = fake_server(tmp_path / "run" / "plugins.sock", None)
    try:
        # Run here, this would be a code-4 error (variables missing): it must not be.
        done = run(bin_dir, {"CNI_COMMAND": "ADD"}, b"{}")
        thread.join(10)
    finally:
        listener.close()
    assert len(got) == 1
    assert done.returncode == 1
    assert b'"code": 999' in done.stdout
    assert str(tmp_path / "run" / "plugins.sock").encode() in done.stdout
    assert b"was not run again" in done.stdout


def test_a_refusal_runs_the_plugin_here(bin_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    listener, thread, _ = fake_server(tmp_path / "run" / "plugins.sock", encode_refusal("no"))
    try:
        done = run(bin_dir, {"CNI_COMMAND": "VERSION"}, VERSION_STDIN)
        thread.join(10)
    finally:
        listener.close()
    assert done.returncode == 0
    assert done.stdout.startswith(b'{"cniVersion": "0.4.0"')


def test_the_socket_is_taken_from_the_environment(bin_dir: Path, tmp_path: Path) -> None:
    with PluginServer(tmp_path / "elsewhere.sock") as elsewhere:
        done = run(
            bin_dir, {"CNI_COMMAND": "VERSION", "CNILIB_PLUGIN_SERVER": elsewhere.socket_path}, b""
        )
        assert done.returncode == 0
        assert elsewhere.served == 1


def imports(code: str, stdin: bytes = b"") -> set[str]:
    done = subprocess.run(
        [sys.executable, "-IS", "-X", "importtime", "-c", code],
        input=stdin,
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        check=True,
    )
    return {line.split("|")[-1].strip() for line in done.stderr.decode().splitlines()[1:]}


def test_the_client_imports_nothing_but_builtins(bin_dir: Path, server: PluginServer) -> None:
    script = (bin_dir / "bridge").read_text()
    # Itself (from the directory install put it in) and _socket; marshal, which loads
    # its compiled code, is built in and imported at start-up already.
    assert imports(script, VERSION_STDIN) - imports("pass") == {"_socket", _client.MODULE}
    assert server.served == 1


def client_file(bin_dir: Path) -> Path:
    return bin_dir / CLIENT_DIR / f"{_client.MODULE}.py"


def test_the_client_runs_from_the_code_install_compiled(
    bin_dir: Path, server: PluginServer
) -> None:
    compiled = Path(importlib.util.cache_from_source(str(client_file(bin_dir))))
    before = compiled.read_bytes()
    done = subprocess.run(
        [sys.executable, "-IS", "-v", str(bin_dir / "bridge")],
        input=VERSION_STDIN,
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        check=True,
    )
    assert f"code object from {str(compiled)!r}".encode() in done.stderr
    assert compiled.read_bytes() == before
    assert server.served == 1


def test_without_its_compiled_code_the_client_compiles_the_source(
    bin_dir: Path, server: PluginServer
) -> None:
    compiled = Path(importlib.util.cache_from_source(str(client_file(bin_dir))))
    compiled.unlink()
    env = {"CNI_COMMAND": "VERSION"}
    # -B: as a directory this user may not write to (root writes anywhere)
    done = subprocess.run(
        [sys.executable, "-IS", "-B", str(bin_dir / "bridge")],
        input=VERSION_STDIN,
        env=env,
        capture_output=True,
        check=True,
    )
    assert not compiled.exists()
    # Run as usual, the import writes it again (as it does any module's).
    assert done.stdout == run(bin_dir, {**env, "CNILIB_PLUGIN_SERVER": ""}, VERSION_STDIN).stdout
    assert compiled.exists()
    assert server.served == 1


def test_without_its_directory_the_client_is_the_installed_packages(
    bin_dir: Path, server: PluginServer
) -> None:
    shutil.rmtree(bin_dir / CLIENT_DIR)
    env = {"CNI_COMMAND": "VERSION"}
    through = run(bin_dir, env, VERSION_STDIN)
    assert through.returncode == 0
    assert through.stdout == run(bin_dir, {**env, "CNILIB_PLUGIN_SERVER": ""}, VERSION_STDIN).stdout
    assert server.served == 1


def test_install_copies_the_client_verbatim(bin_dir: Path) -> None:
    assert client_file(bin_dir).read_bytes() == Path(_client.__file__).read_bytes()


# -- starting a server on demand (the spawn itself: tests/privileged) ------------------


def test_one_client_at_a_time_starts_a_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[tuple[list[str], dict[bytes, bytes], dict[str, object]]] = []

    def spawn(path: str, argv: list[str], env: dict[bytes, bytes], **kwargs: object) -> int:
        spawned.append((argv, env, kwargs))
        return 4242

    monkeypatch.setattr(posix, "posix_spawn", spawn)  # the module the client spawns with
    monkeypatch.setenv("CNI_COMMAND", "ADD")
    sock = tmp_path / "run" / "s.sock"
    marker = Path(f"{sock}{_client.STARTING}")
    _client.start_server(str(sock), ["/somewhere"], 7.0)
    assert len(spawned) == 1
    argv, env, kwargs = spawned[0]
    assert argv[:3] == [sys.executable, "-IS", "-c"]
    assert "['/somewhere']" in argv[3]
    assert argv[4:] == ["serve", "--socket", str(sock), "--idle-exit", "7.0", "--on-demand"]
    assert b"CNI_COMMAND" not in env
    assert kwargs["setsid"] is True
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o700
    assert marker.exists()

    _client.start_server(str(sock), ["/somewhere"], 7.0)  # one is starting: not another
    assert len(spawned) == 1
    old = marker.stat().st_mtime - _client.STARTING_STALE - 1
    os.utime(marker, (old, old))
    _client.start_server(str(sock), ["/somewhere"], 7.0)  # a failed start's: removed
    assert not marker.exists()
    assert len(spawned) == 1
    _client.start_server(str(sock), ["/somewhere"], 7.0)  # and the next call tries again
    assert len(spawned) == 2


def test_install_start_server_needs_a_socket(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a server socket"):
        install(tmp_path / "bin", ["bridge"], server_socket="", start_server=True)
