"""``python -m cnilib``: cnitool's commands, plus ``version``, ``validate``,
``list``, ``doctor``, and ``overlay`` and ``conformance`` (each another module's CLI).

Only argparse is imported up front; each command imports what it needs, so
``--help`` starts as fast as Python itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cnilib._version import __version__

__all__ = ["main"]

DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_CACHE_DIR = "/var/lib/cni"

_EPILOG = """\
environment (as cnitool, but CNILIB_PLUGINS):
  NETCONFPATH     configuration directory (default /etc/cni/net.d)
  CNI_PATH        plugin directories, ':'-separated
  CNI_ARGS        extra CNI_ARGS for plugins, 'K=V;K=V' (no empty key or value)
  CAP_ARGS        capability arguments, a JSON object
  CNI_IFNAME      interface name in the container (default eth0; set but
                  empty is an error, as in cnitool)
  CNILIB_PLUGINS  where plugins come from, as --plugins (default binaries)

The container ID defaults to cnitool's: 'cnitool-' + 20 hex digits of
sha512(absolute netns path), so cnitool and cnilib share cache entries.

Names, paths and messages are printed with control and invisible characters
escaped (ESC as \\x1b, newline as \\n, U+202E as \\u202e).
Configuration files must be regular files of at most 4 MiB with at most 1024
plugins.

exit status:
  0    success
  1    a cnilib error, or problems found by validate or list (a file that
       cannot be loaded, a network whose name is not a valid network name)
  2    usage error
  130  interrupted
"""


PLUGIN_SOURCES = ("in-process", "binaries", "in-process-first", "binaries-first")
"""Values of ``--plugins`` / ``CNILIB_PLUGINS``: where plugins come from."""

DEFAULT_PLUGIN_SOURCE = "binaries"
"""Exactly cnitool: only binaries on CNI_PATH. A command line that fails with
cnitool fails here too, instead of silently running an in-process plugin (and
``add`` and ``del`` of one attachment can never run different plugins because
CNI_PATH differed between them); in-process plugins run only on request."""

PLUGINS_ENV = "CNILIB_PLUGINS"

_PLUGINS_HELP = (
    "where plugins come from: in-process (cnilib's Python plugins only), binaries "
    "(executables on CNI_PATH only), in-process-first or binaries-first (the other "
    f"kind for a plugin the first has not). Env {PLUGINS_ENV}; default "
    f"{DEFAULT_PLUGIN_SOURCE}, exactly as cnitool: a missing binary is an error, never "
    "a silent switch to an in-process plugin. cnilib's plugins do their host-side "
    "work in this process's network namespace (run the CLI under 'ip netns exec "
    "<node>' to choose it)"
)


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options accepted before the command (``top``) and after it.

    After the command they default to SUPPRESS, so that an option given
    there overrides the same option given before the command, and one not
    given leaves the value from before the command (or its default) alone.
    """

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    group = parser if top else parser.add_argument_group("global options (also before COMMAND)")
    group.add_argument(
        "--conf-dir",
        metavar="DIR",
        default=default(os.environ.get("NETCONFPATH") or DEFAULT_CONF_DIR),
        help=f"configuration directory (env NETCONFPATH; default {DEFAULT_CONF_DIR})",
    )
    group.add_argument(
        "--cni-path",
        metavar="PATH",
        default=default(os.environ.get("CNI_PATH", "")),
        help="plugin directories, ':'-separated (env CNI_PATH)",
    )
    group.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=default(DEFAULT_CACHE_DIR),
        help=f"result cache (default {DEFAULT_CACHE_DIR})",
    )
    group.add_argument(
        "--plugins",
        metavar="{" + ",".join(PLUGIN_SOURCES) + "}",
        # Checked when the command runs, so that a bad value from the option
        # and from the environment are reported alike (one line, exit 1).
        default=default(None),
        help=_PLUGINS_HELP,
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=default(60.0),
        help="seconds per plugin call, binary or in-process (0: none; default 60)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print errors as a CNI error object on stdout; list and validate print JSON",
    )
    group.add_argument(
        "--owner",
        metavar="TAG",
        default=default(None),
        help="owner tag written into cache entries; gc then removes only this owner's",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        # After the command, counted apart and added up in main(): a subcommand
        # parses into a namespace of its own, so it cannot add to the count.
        dest="verbose" if top else "verbose_after_command",
        default=default(0),
        help="log to stderr: -v one line per plugin call, -vv the whole exchange",
    )


_NETWORK_HELP = "network name in the conf dir, or a config file path"


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, without importing shutil (and the
    compression modules it loads), which argparse does for every parser it builds."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns or 80


class _WidthMixin:
    """Gives argparse's formatter the width it would compute itself."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _terminal_columns() - 2  # argparse's own margin
        super().__init__(prog, indent_increment, max_help_position, width)  # type: ignore[call-arg]


class _HelpFormatter(_WidthMixin, argparse.HelpFormatter):
    pass


class _RawDescriptionFormatter(_WidthMixin, argparse.RawDescriptionHelpFormatter):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnilib",
        description="Run CNI plugin chains against a network namespace (cnitool parity).",
        epilog=_EPILOG,
        formatter_class=_RawDescriptionFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cnilib {__version__}")
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, usage: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(
            name,
            help=text,
            description=text,
            usage=f"%(prog)s {usage}",
            formatter_class=_HelpFormatter,
        )
        _add_global_options(cmd, top=False)
        return cmd

    for name, text in (
        ("gc", "GC the network: DEL every cached attachment, then GC its plugins"),
        ("status", "ask the network's plugins whether they can serve ADD"),
    ):
        cmd = command(name, text, "[options] NETWORK [NETNS]")
        cmd.add_argument("network", metavar="NETWORK", help=_NETWORK_HELP)
        # cnitool accepts (and ignores) a netns here too.
        cmd.add_argument(
            "netns", metavar="NETNS", nargs="?", default="", help="ignored (cnitool compatibility)"
        )
        if name == "gc":
            cmd.add_argument(
                "--dry-run", action="store_true", help="list what gc would delete; change nothing"
            )
            cmd.add_argument(
                "--all-owners", action="store_true", help="also delete other owners' entries"
            )

    def attachment(name: str, text: str) -> None:
        cmd = command(name, text, "[options] NETWORK NETNS")
        cmd.add_argument("network", metavar="NETWORK", help=_NETWORK_HELP)
        cmd.add_argument(
            "netns", metavar="NETNS", help="network namespace path, e.g. /run/netns/ctr1"
        )
        cmd.add_argument(
            "--container-id",
            metavar="ID",
            help="container ID (default: derived from the netns path)",
        )
        cmd.add_argument(
            "-i",
            "--ifname",
            metavar="NAME",
            # Set but empty is kept, and refused when the command runs, as cnitool does.
            default=os.environ.get("CNI_IFNAME", "eth0"),
            help="interface name (env CNI_IFNAME; default eth0)",
        )
        cmd.add_argument(
            "--args", metavar="K=V;K=V", default=os.environ.get("CNI_ARGS", ""), help="CNI_ARGS"
        )
        cmd.add_argument(
            "--cap-args",
            metavar="JSON",
            default=os.environ.get("CAP_ARGS", ""),
            help="capability args, a JSON object (env CAP_ARGS)",
        )

    attachment("add", "ADD the network to a namespace and print the result")
    attachment("check", "CHECK an attachment against its cached result")
    attachment("del", "DEL the network from a namespace")

    version = command("version", "print the spec versions a plugin supports", "[options] PLUGIN")
    version.add_argument("plugin", metavar="PLUGIN", help="plugin type, found as --plugins chooses")

    validate = command(
        "validate",
        "validate a network: schema and plugin versions, every problem listed",
        "[options] NETWORK",
    )
    validate.add_argument("network", metavar="NETWORK", help=_NETWORK_HELP)

    doctor = command(
        "doctor",
        "report whether networks can attach containers: where each plugin runs from, its "
        "spec versions against the list's, STATUS; exit 1 unless every one is ready",
        "[options] [NETWORK]",
    )
    doctor.add_argument(
        "network", metavar="NETWORK", nargs="?", default="", help=_NETWORK_HELP + " (default: all)"
    )

    command(
        "list",
        "list the networks in the conf dir; unloadable files and invalid names: exit 1",
        "[options]",
    )

    # Everything after "overlay agent|status" is python -m cnilib.overlay's, --help too.
    overlay = sub.add_parser(
        "overlay",
        help="the multi-node overlay network: a node's agent, the cluster's status",
        description="python -m cnilib.overlay's commands: 'overlay agent [options]' joins "
        "this node to the overlay, 'overlay status --etcd URL' prints the cluster; "
        "'cnilib overlay COMMAND --help' lists each one's options (docs/overlay.md).",
        usage="%(prog)s {agent,status} [options]",
        formatter_class=_HelpFormatter,
    )
    overlay.add_argument("rest", nargs=argparse.REMAINDER, metavar="{agent,status} [options]")

    # Everything after "conformance" is python -m cnilib.conformance's, options and --help
    # too: no prefix character is "-" here, so argparse takes every word as a REMAINDER one.
    conformance = sub.add_parser(
        "conformance",
        help="test plugins against the CNI spec in namespaces of its own (needs root); "
        "'cnilib conformance --help' lists its options",
        usage="%(prog)s [options] TYPE [TYPE ...]",
        add_help=False,
        prefix_chars="\0",
        formatter_class=_HelpFormatter,
    )
    conformance.add_argument("rest", nargs="*", metavar="[options] TYPE [TYPE ...]")
    return parser


def discard_stdout() -> None:
    """stdout's reader has gone (a closed pipe, ``| head``): point stdout at
    /dev/null, as Python's documentation recommends for a BrokenPipeError, so
    that later writes, and the flush at exit, do not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _flush_stdout() -> None:
    """Flush now, while a reader that has gone can still be handled quietly
    (at interpreter exit it would be an ``Exception ignored`` message)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        discard_stdout()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code.

    A reader of stdout that stops early changes neither: the rest of the
    output is discarded and the status is the command's own (docs/cli.md).
    """
    try:
        args = _parser().parse_args(argv)
        # -v before and after the command add up (see _add_global_options).
        args.verbose += vars(args).pop("verbose_after_command", 0)
        from cnilib.cli._commands import run  # deferred: keeps --help fast

        return run(args)
    finally:
        _flush_stdout()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
