"""cnilib's plugins as ordinary CNI executables, for any runtime's ``CNI_PATH``.

``python -m cnilib.plugins install DIR`` writes one small script per plugin
type into DIR (``DIR/bridge``, ``DIR/host-local``, …); each calls
:func:`main` with its type. VERSION is answered before anything heavy is
imported, so a runtime's version probe costs an interpreter start only.

The scripts run the interpreter with ``-IS``: isolated (no environment
variables, no user site, no current directory on the path) and without the
``site`` module, whose scan of every ``.pth`` file in site-packages costs
about 20 ms per start (25 against 6 ms for ``-c pass`` on the reference
machine). The import path ``site`` would have built (site-packages, and
where cnilib itself lives, for an editable install) is written into the
script instead, as it was when ``install`` ran.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from cnilib.plugins._executor import InProcessExecutor

__all__ = ["install", "main", "respond"]

_SCRIPT = """\
#!{python} -IS
# CNI plugin "{type}": cnilib's in-process plugin, run as an executable. The plugin server
# (python -m cnilib.plugins serve) answers the call when it listens on the socket below
# (${socket_env} names another; set but empty: none); else it runs here{start_note}.
# The client is imported from the directory below, where install compiled it (the installed
# package's copy if that directory is gone). -S skips the site module; the third argument
# is the directories it would have added (after the standard library, as site adds them).
import sys
sys.path.insert(0, {client_dir!r})
try:
    from {module} import main
except ImportError:
    del sys.path[0]
    sys.path.extend({path!r})
    from cnilib.plugins.server._client import main
else:
    del sys.path[0]
main({type!r}, {socket!r}, {path!r}{start})
"""

CLIENT_DIR = ".cnilib-plugin-client"
"""The directory ``install`` puts the thin client (and its compiled code) in, in DIR."""

START_IDLE_EXIT = 60.0
"""Seconds a server started by an executable (``install --start-server``) waits for a
call before it exits."""


def _install_client(target: Path) -> Path:
    """Copy the thin client into ``target/CLIENT_DIR`` and compile it there; its directory.

    The ``.pyc`` is hash-checked against the source, not by modification time, so a
    copy of the directory (new times) still uses it; an interpreter that cannot use it
    (another version) compiles the source and writes its own ``.pyc`` where it may.
    """
    import importlib.util
    import py_compile

    from cnilib.plugins.server import _client

    directory = target / CLIENT_DIR
    directory.mkdir(exist_ok=True)
    source = directory / f"{_client.MODULE}.py"
    tmp = directory / f".{_client.MODULE}.py.tmp"
    with open(_client.__file__, "rb") as original:
        tmp.write_bytes(original.read())
    tmp.replace(source)
    py_compile.compile(
        str(source),
        cfile=importlib.util.cache_from_source(str(source)),
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
    )
    return directory


def main(plugin_type: str, *, stdin: bytes | None = None) -> None:
    """Run one CNI call of ``plugin_type`` from this process's env and stdin; exit.

    ``stdin``: the request, when the caller has read it already (the thin client
    that found no plugin server); ``None`` reads this process's stdin.
    """
    if plugin_type == "dhcp" and sys.argv[1:2] == ["daemon"]:  # as Go's: `dhcp daemon [flags]`
        from cnilib.plugins.ipam.dhcp._daemon import main as daemon_main

        raise SystemExit(daemon_main(sys.argv[2:]))
    env = os.environ
    status, stdout, stderr = respond(plugin_type, env, _read_stdin(env) if stdin is None else stdin)
    sys.stdout.buffer.write(stdout)
    sys.stdout.flush()
    if stderr:
        sys.stderr.buffer.write(stderr)
        sys.stderr.flush()
    raise SystemExit(status)


def _read_stdin(env: Mapping[str, str]) -> Callable[[], bytes]:
    def read() -> bytes:
        # The request says which version to answer in; a person at a terminal typing
        # CNI_COMMAND=VERSION gets the newest rather than a wait for stdin.
        if env.get("CNI_COMMAND") == "VERSION" and sys.stdin.isatty():
            return b""
        return sys.stdin.buffer.read()

    return read


def respond(
    plugin_type: str,
    env: Mapping[str, str],
    stdin: bytes | Callable[[], bytes],
    *,
    executor: InProcessExecutor | None = None,
) -> tuple[int, bytes, bytes]:
    """One CNI call of ``plugin_type``, as its executable answers it: ``(exit status,
    stdout, stderr)``. The executables and the plugin server both answer through here.

    ``stdin`` is the request, or a function reading it (called once, after the plugin
    is found). ``executor`` runs the plugin (the server's, whose ``host_netns`` is the
    caller's namespace); ``None``: the plugin runs in this process's namespace.
    VERSION of a built-in type is answered without importing its plugin.
    """
    from cnilib.plugins._registry import BUILTIN_PLUGINS

    def read() -> bytes:
        return stdin if isinstance(stdin, bytes) else stdin()

    if env.get("CNI_COMMAND") == "VERSION" and plugin_type in BUILTIN_PLUGINS:
        from cnilib.plugins._versions import version_only

        return 0, version_only(plugin_type, read()), b""
    from cnilib.errors import CNIError, ErrorCode, PluginError
    from cnilib.plugins._skel import error_output, handle

    try:
        if executor is None:
            from cnilib.plugins import load_plugin

            output = handle(load_plugin(plugin_type), env, read())
        else:
            executor.plugin(plugin_type)  # not found: before stdin, as above
            output = executor.handle(plugin_type, env, read())
    except CNIError as exc:
        error = exc if isinstance(exc, PluginError) else PluginError(str(exc), code=exc.code)
        return 1, error_output(error), b""
    except OSError as exc:  # reading stdin
        error = PluginError(f"error reading from stdin: {exc}", code=ErrorCode.IO_FAILURE)
        return 1, error_output(error), b""
    return 0, output, b""


def import_path() -> list[str]:
    """The directories a ``-S`` interpreter needs for cnilib and its dependencies:
    where cnilib is (an editable install adds it through a ``.pth``), then every
    site-packages directory of this interpreter, in the order ``site`` adds them."""
    import site

    import cnilib

    here = os.path.dirname(os.path.dirname(os.path.abspath(cnilib.__file__)))
    found = [here]
    for directory in site.getsitepackages():
        if directory not in found and os.path.isdir(directory):
            found.append(directory)
    return found


def install(
    directory: str | os.PathLike[str],
    types: Sequence[str] | None = None,
    *,
    server_socket: str | os.PathLike[str] | None = None,
    start_server: bool = False,
    idle_exit: float = START_IDLE_EXIT,
) -> list[Path]:
    """Write an executable for each plugin type into ``directory``; return their paths.

    Each asks the plugin server at ``server_socket`` (default
    :data:`cnilib.plugins.server.DEFAULT_SOCKET`; ``""``: none) to answer its call
    and runs the plugin itself when no server does; ``$CNILIB_PLUGIN_SERVER``
    overrides the socket when the executable runs.

    ``start_server``: an executable that finds no server starts one (``serve
    --on-demand``, detached, which exits after ``idle_exit`` seconds without a call)
    and runs its own call itself, without waiting for it; the calls after it find the
    server. At most one is started at a time.

    ``types`` defaults to every in-process plugin: cnilib's own and those of
    installed packages (the ``cnilib.plugins`` entry points). An unknown type
    is a :class:`cnilib.PluginNotFoundError`, raised before anything is written.
    """
    from pathlib import Path

    from cnilib.errors import PluginNotFoundError
    from cnilib.plugins._registry import plugin_types

    available = plugin_types()
    unknown = [t for t in types or () if t not in available]
    if unknown:
        raise PluginNotFoundError(
            f"no in-process plugin {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(available)}",
            plugin_type=unknown[0],
        )
    chosen = list(types or available)
    for plugin_type in chosen:
        if os.sep in plugin_type or plugin_type in ("", ".", ".."):
            raise PluginNotFoundError(
                f"plugin type {plugin_type!r} cannot be a file name", plugin_type=plugin_type
            )
    from cnilib.plugins.server import DEFAULT_SOCKET, SOCKET_ENV
    from cnilib.plugins.server._client import MODULE

    socket_path = DEFAULT_SOCKET if server_socket is None else os.fspath(server_socket)
    if socket_path and not os.path.isabs(socket_path):
        raise ValueError(f"the server socket must be an absolute path, not {socket_path!r}")
    if start_server and not socket_path:
        raise ValueError("--start-server needs a server socket")
    if not idle_exit > 0:
        raise ValueError(f"the idle exit must be a positive number of seconds, not {idle_exit!r}")
    path = import_path()
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    client_dir = _install_client(target.absolute())
    written = []
    for plugin_type in chosen:
        script = target / plugin_type
        tmp = script.with_name(f".{plugin_type}.tmp")
        tmp.write_text(
            _SCRIPT.format(
                python=sys.executable,
                type=plugin_type,
                path=path,
                client_dir=str(client_dir),
                module=MODULE,
                socket=socket_path,
                socket_env=SOCKET_ENV,
                start=f", start={float(idle_exit)!r}" if start_server else "",
                start_note=", and it starts a server for the calls after it"
                if start_server
                else "",
            )
        )
        tmp.chmod(0o755)
        tmp.replace(script)  # atomic: a runtime exec'ing it never sees half a script
        written.append(script)
    return written


def cli(argv: Sequence[str] | None = None) -> int:
    """``python -m cnilib.plugins install DIR [TYPE ...]``, ``... list``, ``... serve`` (the
    plugin server) and ``... dhcp daemon [flags]``."""
    import argparse

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["dhcp", "daemon"]:  # Go's flags, parsed the Go way
        from cnilib.plugins.ipam.dhcp._daemon import main as daemon_main

        return daemon_main(argv[2:])

    from cnilib.errors import CNIError
    from cnilib.plugins._registry import plugin_types

    parser = argparse.ArgumentParser(prog="python -m cnilib.plugins")
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="write CNI executables for in-process plugins into DIR")
    inst.add_argument("directory")
    inst.add_argument(
        "types", nargs="*", help="plugin types (default: all, installed packages' included)"
    )
    inst.add_argument(
        "--server-socket",
        metavar="PATH",
        help="the plugin server socket the executables try first "
        "(default: /run/cni/cnilib-plugins.sock; '': none)",
    )
    inst.add_argument(
        "--start-server",
        action="store_true",
        help="an executable that finds no server starts one (detached) for the calls after it",
    )
    inst.add_argument(
        "--idle-exit",
        metavar="SECONDS",
        type=float,
        default=START_IDLE_EXIT,
        help="with --start-server: the started server exits after this many seconds "
        "without a call (default: 60)",
    )
    serve = sub.add_parser("serve", help="run the plugin server the executables hand calls to")
    serve.add_argument(
        "--socket", metavar="PATH", help="where to listen (default: /run/cni/cnilib-plugins.sock)"
    )
    serve.add_argument(
        "--idle-exit",
        metavar="SECONDS",
        type=float,
        help="stop after this many seconds without a call (default: never)",
    )
    serve.add_argument(
        "--on-demand",
        action="store_true",
        help="started by an executable (install --start-server): exit quietly when another "
        "server listens on the socket already, and remove SOCKET.starting once listening",
    )
    sub.add_parser("list", help="the in-process plugin types and where each comes from")
    dhcp = sub.add_parser("dhcp", help="the dhcp plugin's lease daemon: dhcp daemon [flags]")
    dhcp.add_argument("daemon", choices=["daemon"], help="run the lease daemon (Go's flags)")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for plugin_type, origin in plugin_types().items():
                print(f"{plugin_type}\t{origin}")
            return 0
        if args.command == "serve":
            return _serve(args.socket, args.idle_exit, on_demand=args.on_demand)
        written = install(
            args.directory,
            args.types or None,
            server_socket=args.server_socket,
            start_server=args.start_server,
            idle_exit=args.idle_exit,
        )
        for path in written:
            print(path)
    except (CNIError, OSError, ValueError) as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _serve(socket_path: str | None, idle_exit: float | None, *, on_demand: bool = False) -> int:
    """``serve``: listen until SIGTERM, SIGINT or the idle exit; the socket goes with it.

    ``on_demand`` (a server an executable started): another server listening on the
    socket already is no error (several executables may start one at once; all but
    one lose), and the executable's ``SOCKET.starting`` marker is removed once this
    one listens, so that the next executable to find no server starts another.
    """
    import signal

    from cnilib.plugins.server import DEFAULT_SOCKET, PluginServer
    from cnilib.plugins.server._client import STARTING
    from cnilib.plugins.server._server import ServerRunningError

    server = PluginServer(socket_path or DEFAULT_SOCKET, idle_exit=idle_exit)
    # SIGTERM (systemd, kill) stops it as Ctrl-C does: calls in progress finish first.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            server.start()
        except ServerRunningError:
            if on_demand:
                return 0
            raise
        if on_demand:
            with contextlib.suppress(OSError):
                os.unlink(server.socket_path + STARTING)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
