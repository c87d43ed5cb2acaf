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

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["install", "main"]

_SCRIPT = """\
#!{python} -IS
# CNI plugin "{type}": cnilib's in-process plugin, run as an executable.
# -S skips the site module; these are the directories it would have added (after the
# standard library, as site adds them).
import sys
sys.path.extend({path!r})
from cnilib.plugins._main import main
main({type!r})
"""


def main(plugin_type: str) -> None:
    """Run one CNI call of ``plugin_type`` from this process's env and stdin; exit."""
    from cnilib.plugins._registry import BUILTIN_PLUGINS

    if plugin_type == "dhcp" and sys.argv[1:2] == ["daemon"]:  # as Go's: `dhcp daemon [flags]`
        from cnilib.plugins.ipam.dhcp._daemon import main as daemon_main

        raise SystemExit(daemon_main(sys.argv[2:]))
    if os.environ.get("CNI_COMMAND") == "VERSION" and plugin_type in BUILTIN_PLUGINS:
        from cnilib.plugins._versions import version_only

        # The request says which version to answer in; a person at a terminal typing
        # CNI_COMMAND=VERSION gets the newest rather than a wait for stdin.
        stdin = b"" if sys.stdin.isatty() else sys.stdin.buffer.read()
        sys.stdout.buffer.write(version_only(plugin_type, stdin))
        raise SystemExit(0)
    from cnilib.errors import CNIError, ErrorCode, PluginError
    from cnilib.plugins import load_plugin
    from cnilib.plugins._skel import error_output, handle

    try:
        plugin = load_plugin(plugin_type)
        output = handle(plugin, os.environ, sys.stdin.buffer.read())
    except CNIError as exc:
        error = exc if isinstance(exc, PluginError) else PluginError(str(exc), code=exc.code)
        sys.stdout.buffer.write(error_output(error))
        raise SystemExit(1) from None
    except OSError as exc:  # reading stdin
        error = PluginError(f"error reading from stdin: {exc}", code=ErrorCode.IO_FAILURE)
        sys.stdout.buffer.write(error_output(error))
        raise SystemExit(1) from None
    sys.stdout.buffer.write(output)
    raise SystemExit(0)


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


def install(directory: str | os.PathLike[str], types: Sequence[str] | None = None) -> list[Path]:
    """Write an executable for each plugin type into ``directory``; return their paths.

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
    path = import_path()
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for plugin_type in chosen:
        script = target / plugin_type
        tmp = script.with_name(f".{plugin_type}.tmp")
        tmp.write_text(_SCRIPT.format(python=sys.executable, type=plugin_type, path=path))
        tmp.chmod(0o755)
        tmp.replace(script)  # atomic: a runtime exec'ing it never sees half a script
        written.append(script)
    return written


def cli(argv: Sequence[str] | None = None) -> int:
    """``python -m cnilib.plugins install DIR [TYPE ...]``, ``python -m cnilib.plugins list``
    and ``python -m cnilib.plugins dhcp daemon [flags]``."""
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
    sub.add_parser("list", help="the in-process plugin types and where each comes from")
    dhcp = sub.add_parser("dhcp", help="the dhcp plugin's lease daemon: dhcp daemon [flags]")
    dhcp.add_argument("daemon", choices=["daemon"], help="run the lease daemon (Go's flags)")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for plugin_type, origin in plugin_types().items():
                print(f"{plugin_type}\t{origin}")
            return 0
        for path in install(args.directory, args.types or None):
            print(path)
    except (CNIError, OSError) as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0
