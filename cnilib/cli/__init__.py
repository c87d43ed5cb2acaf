"""``python -m cnilib``: cnitool's commands, plus ``version``, ``validate`` and ``list``.

Only argparse is imported up front; each command imports what it needs, so
``--help`` starts as fast as Python itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]

DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_CACHE_DIR = "/var/lib/cni"

_EPILOG = """\
environment (as cnitool):
  NETCONFPATH   configuration directory (default /etc/cni/net.d)
  CNI_PATH      plugin directories, ':'-separated
  CNI_ARGS      extra CNI_ARGS for plugins, 'K=V;K=V'
  CAP_ARGS      capability arguments, a JSON object
  CNI_IFNAME    interface name in the container (default eth0)

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnilib",
        description="Run CNI plugin chains against a network namespace (cnitool parity).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--conf-dir",
        default=os.environ.get("NETCONFPATH") or DEFAULT_CONF_DIR,
        help="configuration directory (env NETCONFPATH; default %(default)s)",
    )
    parser.add_argument(
        "--cni-path",
        default=os.environ.get("CNI_PATH", ""),
        help="plugin directories, ':'-separated (env CNI_PATH)",
    )
    parser.add_argument(
        "--cache-dir", default=DEFAULT_CACHE_DIR, help="result cache (default %(default)s)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds per plugin call before its process group is killed (0: none)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print errors as a CNI error object on stdout"
    )
    parser.add_argument(
        "--owner",
        default=None,
        help="owner tag written into cache entries; gc then removes only this owner's",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log plugins' stderr and cnilib's warnings to stderr",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def network_command(name: str, text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("network", help="network name in the conf dir, or a config file path")
        return cmd

    for name, text in (
        ("gc", "GC the network: DEL every cached attachment, then GC its plugins"),
        ("status", "ask the network's plugins whether they can serve ADD"),
    ):
        cmd = network_command(name, text)
        # cnitool accepts (and ignores) a netns here too.
        cmd.add_argument("netns", nargs="?", default="", help="ignored (cnitool compatibility)")
        if name == "gc":
            cmd.add_argument(
                "--dry-run", action="store_true", help="list what gc would delete; change nothing"
            )
            cmd.add_argument(
                "--all-owners", action="store_true", help="also delete other owners' entries"
            )

    def attachment(name: str, text: str) -> None:
        cmd = network_command(name, text)
        cmd.add_argument("netns", help="network namespace path, e.g. /run/netns/ctr1")
        cmd.add_argument(
            "--container-id", help="container ID (default: derived from the netns path)"
        )
        cmd.add_argument(
            "-i",
            "--ifname",
            default=os.environ.get("CNI_IFNAME") or "eth0",
            help="interface name (env CNI_IFNAME; default %(default)s)",
        )
        cmd.add_argument("--args", default=os.environ.get("CNI_ARGS", ""), help="CNI_ARGS")
        cmd.add_argument(
            "--cap-args", default=os.environ.get("CAP_ARGS", ""), help="capability args (JSON)"
        )

    attachment("add", "ADD the network to a namespace and print the result")
    attachment("check", "CHECK an attachment against its cached result")
    attachment("del", "DEL the network from a namespace")

    version = sub.add_parser("version", help="print the spec versions a plugin supports")
    version.add_argument("plugin", help="plugin type, looked up on CNI_PATH")

    validate = sub.add_parser(
        "validate", help="validate a network: schema and plugin versions, every problem listed"
    )
    validate.add_argument("network", help="network name in the conf dir, or a config file path")

    sub.add_parser(
        "list",
        help="list the networks in the conf dir; unloadable files and invalid names: exit 1",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    args = _parser().parse_args(argv)
    from cnilib.cli._commands import run  # deferred: keeps --help fast

    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
