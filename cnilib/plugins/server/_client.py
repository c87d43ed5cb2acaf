"""The thin client: what an installed plugin executable runs first.

``install`` copies this module next to the scripts it writes
(``DIR/.cnilib-plugin-client/cnilib_plugin_client.py``, see :data:`MODULE`) and
compiles it there, so each call imports compiled code instead of compiling the
source again (about 1.5 ms a call); where the ``.pyc`` cannot be used or
written, the import compiles the source, as any import does. It imports only
built-in modules (``sys``, ``posix``, ``_socket``: no ``os``, ``socket`` or
``json``, whose imports cost more than the whole call through the server) and
nothing of cnilib. It forwards one CNI call to the plugin server and prints the
answer; when no server answers it runs the plugin in its own process, as the
executables always did, and, when installed with ``--start-server``, starts a
server for the calls after it. See :mod:`cnilib.plugins.server` for the protocol.
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
MODULE = "cnilib_plugin_client"  # the name the scripts import this module by
STARTING = ".starting"  # SOCKET + this: a client is starting a server (see start_server)
STARTING_STALE = 30.0  # seconds after which that marker is a failed start's


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


def main(
    plugin_type: str, socket_path: str, import_path: list[str], start: float | None = None
) -> None:
    """Answer one CNI call: through the server at ``socket_path`` (``$CNILIB_PLUGIN_SERVER``
    overrides it, empty: none), else in this process; exit with the plugin's status.

    ``start``: when no server answers, start one (idle exit after ``start`` seconds)
    for the calls after this one, which this call does not wait for."""
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
        if sock is None and stdin is not None and start is not None:
            start_server(path, import_path, start)
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


def start_server(path: str, import_path: list[str], idle_exit: float) -> None:
    """Start ``python -m cnilib.plugins serve --socket PATH --idle-exit IDLE --on-demand``,
    detached (a session of its own, stdio on ``/dev/null``, no fd of ours, ``/`` as its
    directory, the environment without the ``CNI_*`` variables of this call); don't wait.

    One client at a time starts one: the one that creates ``PATH.starting``; the server
    removes it once it listens. Others meanwhile run their call themselves. A marker
    older than :data:`STARTING_STALE` seconds is a start that failed: it is removed,
    and a later call tries again (so a server that cannot start costs one attempt per
    that many seconds, not one per call). Failing to start is never this call's error.
    """
    marker = path + STARTING
    directory = path.rpartition("/")[0]
    try:
        if directory:
            try:  # noqa: SIM105 (contextlib is no built-in module)
                posix.mkdir(directory, 0o700)
            except FileExistsError:
                pass
        flags = posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_CLOEXEC
        posix.close(posix.open(marker, flags, 0o600))
    except FileExistsError:
        import time

        try:
            if time.time() - posix.stat(marker).st_mtime > STARTING_STALE:
                posix.unlink(marker)
        except OSError:
            pass
        return
    except OSError:
        return
    code = (
        f"import os, sys; os.chdir('/'); sys.path.extend({import_path!r}); "
        "from cnilib.plugins._main import cli; sys.exit(cli())"
    )
    argv = [sys.executable, "-IS", "-c", code, "serve", "--socket", path]
    argv += ["--idle-exit", repr(float(idle_exit)), "--on-demand"]
    env = {k: v for k, v in posix.environ.items() if not k.startswith(b"CNI_")}
    actions: list[tuple[object, ...]] = [
        (posix.POSIX_SPAWN_OPEN, 0, "/dev/null", posix.O_RDWR, 0),
        (posix.POSIX_SPAWN_DUP2, 0, 1),
        (posix.POSIX_SPAWN_DUP2, 0, 2),
    ]
    try:
        for name in posix.listdir("/proc/self/fd"):  # what the runtime let us inherit
            fd = int(name)
            try:
                if fd > 2 and posix.get_inheritable(fd):
                    actions.append((posix.POSIX_SPAWN_CLOSE, fd))
            except OSError:  # listdir's own, closed by now
                pass
        posix.posix_spawn(sys.executable, argv, env, file_actions=actions, setsid=True)
    except OSError:  # the marker stays: the next attempt waits for it to go stale
        pass


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
