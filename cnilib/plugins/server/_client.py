"""The thin client: what an installed plugin executable runs first.

This module's source is copied into every script ``install`` writes, so it
imports only built-in modules (``sys``, ``posix``, ``_socket``: no ``os``,
``socket`` or ``json``, whose imports cost more than the whole call through
the server) and nothing of cnilib. It forwards one CNI call to the plugin
server and prints the answer; when no server answers it runs the plugin in
its own process, as the executables always did. See
:mod:`cnilib.plugins.server` for the protocol.
"""

import _socket
import posix
import sys

MAGIC = b"CNIS"
PROTOCOL_VERSION = 1
HEADER_SIZE = 12
CALL = 1  # request kind
RESULT, REFUSED, BAD_REQUEST = 1, 2, 3  # response kinds
SOCKET_ENV = "CNILIB_PLUGIN_SERVER"


def header(kind: int, size: int) -> bytes:
    """A frame's header: magic, version, kind, two reserved bytes, body size (big-endian)."""
    return MAGIC + bytes((PROTOCOL_VERSION, kind, 0, 0)) + size.to_bytes(4, "big")


def field(data: bytes) -> bytes:
    """One length-prefixed field of a body."""
    return len(data).to_bytes(4, "big") + data


def encode_request(plugin_type: bytes, env: list[bytes], stdin: bytes) -> bytes:
    """A call frame: the type, stdin, then each ``NAME=VALUE`` of the environment."""
    body = b"".join([field(plugin_type), field(stdin), *map(field, env)])
    return header(CALL, len(body)) + body


def cni_environment(environ: dict[bytes, bytes]) -> list[bytes]:
    """The variables a plugin reads (``CNI_*``; skel reads no other), as ``NAME=VALUE``."""
    return [k + b"=" + v for k, v in environ.items() if k.startswith(b"CNI_")]


def read_all(sock: _socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def decode_response(data: bytes) -> tuple[int, int, bytes, bytes] | None:
    """``(kind, status, stdout, stderr)`` of a complete response (a refusal's reason in
    ``stderr``), or ``None`` if ``data`` is not one (the server died while answering)."""
    if len(data) < HEADER_SIZE or data[:4] != MAGIC or data[4] != PROTOCOL_VERSION:
        return None
    kind, size = data[5], int.from_bytes(data[8:12], "big")
    body = data[HEADER_SIZE:]
    if len(body) != size:
        return None
    if kind != RESULT:
        return kind, 0, b"", body
    if size < 8:
        return None
    status = int.from_bytes(body[:4], "big")
    out_size = int.from_bytes(body[4:8], "big")
    stdout = body[8 : 8 + out_size]
    rest = body[8 + out_size :]
    if len(stdout) != out_size or len(rest) < 4 or len(rest) - 4 != int.from_bytes(rest[:4], "big"):
        return None
    return RESULT, status, stdout, rest[4:]


def connect(path: str) -> _socket.socket | None:
    """A connection to a server run by this user or root; ``None`` if there is none."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
        cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    except (OSError, ValueError):  # no socket, nobody listening, not ours to open; a NUL
        sock.close()
        return None
    uid = int.from_bytes(cred[4:8], sys.byteorder)
    if uid not in (0, posix.geteuid()):  # a server of another user must never answer us
        sock.close()
        return None
    return sock


def call(sock: _socket.socket, frame: bytes) -> tuple[bool, tuple[int, int, bytes, bytes] | None]:
    """Send ``frame`` with this process's network namespace; ``(sent, response)``."""
    sent = False
    try:
        netns = posix.open("/proc/self/ns/net", posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, netns.to_bytes(4, sys.byteorder))]
            done = sock.sendmsg([frame], rights)
        finally:
            posix.close(netns)
        if done < len(frame):
            sock.sendall(frame[done:])  # not with nothing left: a closed peer is EPIPE
        sent = True
    except OSError:  # the server closed early (a refusal) or never read it all
        pass
    try:
        data = read_all(sock)
    except OSError:
        data = b""
    finally:
        sock.close()
    return sent, decode_response(data)


def main(plugin_type: str, socket_path: str, import_path: list[str]) -> None:
    """Answer one CNI call: through the server at ``socket_path`` (``$CNILIB_PLUGIN_SERVER``
    overrides it, empty: none), else in this process; exit with the plugin's status."""
    environ = posix.environ
    configured = environ.get(SOCKET_ENV.encode())
    path = socket_path if configured is None else configured.decode("utf-8", "surrogateescape")
    stdin = None
    sock = None
    if path and not (plugin_type == "dhcp" and sys.argv[1:2] == ["daemon"]):
        try:
            if environ.get(b"CNI_COMMAND") == b"VERSION" and posix.isatty(0):
                stdin = b""
            else:
                stdin = sys.stdin.buffer.read()
        except OSError:  # let the plugin itself read stdin and report the failure
            stdin = None
        if stdin is not None:
            sock = connect(path)
    if sock is None or stdin is None:
        run_here(plugin_type, import_path, stdin)
        return
    frame = encode_request(plugin_type.encode(), cni_environment(environ), stdin)
    sent, response = call(sock, frame)
    if response is not None and response[0] == RESULT:
        _, status, stdout, stderr = response
        sys.stdout.buffer.write(stdout)
        sys.stdout.flush()
        sys.stderr.buffer.write(stderr)
        sys.stderr.flush()
        raise SystemExit(status)
    if response is not None or not sent:  # refused, or not read whole: it never ran
        run_here(plugin_type, import_path, stdin)
        return
    server_died(plugin_type, path, import_path)


def run_here(plugin_type: str, import_path: list[str], stdin: bytes | None) -> None:
    """Run the plugin in this process (what the executables did before the server)."""
    sys.path.extend(import_path)
    from cnilib.plugins._main import main as plugin_main

    plugin_main(plugin_type, stdin=stdin)


def server_died(plugin_type: str, path: str, import_path: list[str]) -> None:
    """The call was sent and no answer came: print a code-999 error object, exit 1.

    It is never run again here: the server may have run it (an ADD is not idempotent).
    """
    sys.path.extend(import_path)
    from cnilib.errors import ErrorCode, PluginError
    from cnilib.plugins._skel import error_output

    error = PluginError(
        f"plugin server {path} closed the connection before answering",
        code=ErrorCode.INTERNAL,
        details=f"the {plugin_type} call may or may not have run; it was not run again",
    )
    sys.stdout.buffer.write(error_output(error))
    sys.stdout.flush()
    raise SystemExit(1)
