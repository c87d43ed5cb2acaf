"""``python -m cnilib.overlay`` (also ``python -m cnilib overlay``): ``agent`` runs a
node's agent, ``status`` prints the cluster as etcd holds it.

Only argparse is imported up front; the agent and the etcd client are imported by
the command that needs them. A user error (bad flag value, etcd unreachable, any
:class:`cnilib.CNIError`) is one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from cnilib.cli._argtypes import positive_seconds
from cnilib.overlay._records import DEFAULT_PREFIX
from cnilib.plugins.main._overlay_state import DEFAULT_RUN_DIR

if TYPE_CHECKING:
    from cnilib.overlay._agent import AgentConfig

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130

_LOG_LEVELS = ("debug", "info", "warning", "error")


def _ipv4(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _name(text: str) -> str:
    """A network or node name: it becomes an etcd key and a file name (the state file),
    so CNI's network name rule applies to both."""
    from cnilib.errors import CNIError
    from cnilib.names import validate_network_name

    try:
        validate_network_name(text)
    except CNIError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid name (letters, digits, _ . -; starting with a letter"
            " or digit)"
        ) from None
    return text


def _endpoints(text: str) -> tuple[str, ...]:
    endpoints = tuple(part.strip() for part in text.split(",") if part.strip())
    if not endpoints:
        raise argparse.ArgumentTypeError("no etcd endpoint given")
    return endpoints


def _common(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--etcd",
        metavar="URL[,URL]",
        type=_endpoints,
        required=True,
        help="etcd endpoints, e.g. http://127.0.0.1:2379 (comma-separated: tried in turn)",
    )
    cmd.add_argument(
        "--network",
        metavar="NAME",
        type=_name,
        default="overlay",
        help="the overlay network's name: its etcd keys and the CNI network name (default overlay)",
    )
    cmd.add_argument(
        "--prefix",
        metavar="P",
        default=DEFAULT_PREFIX,
        help=f"the etcd key prefix (default {DEFAULT_PREFIX})",
    )


def _parser(prog: str = "python -m cnilib.overlay") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The multi-node VXLAN overlay: a node's agent, and the cluster's status.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    agent = sub.add_parser(
        "agent",
        help="join this node to the overlay and keep its routes, neighbours and FDB in step",
        description="Join this node to the overlay network: claim a subnet in etcd under a "
        "lease, make the VXLAN device and the node bridge, write the node state file the "
        "overlay CNI plugin reads, and follow the other nodes until SIGTERM/SIGINT.",
    )
    _common(agent)
    agent.add_argument("--node", metavar="NAME", type=_name, required=True, help="this node's name")
    agent.add_argument(
        "--underlay",
        metavar="IP",
        type=_ipv4,
        required=True,
        help="this node's address on the network between the nodes (VXLAN packets go there)",
    )
    agent.add_argument(
        "--underlay-link", metavar="IF", help="the underlay address's link (default: found)"
    )
    agent.add_argument(
        "--netns",
        metavar="PATH",
        help="the network namespace playing this node's host (default: the agent's own)",
    )
    cluster = agent.add_argument_group(
        "cluster configuration (stored in etcd by the first agent; must match it afterwards)"
    )
    cluster.add_argument("--cluster-cidr", metavar="CIDR", help="the overlay's IPv4 CIDR")
    cluster.add_argument(
        "--subnet-len",
        metavar="N",
        type=_positive,
        help="prefix length of a node's subnet (default 24, or the CIDR's + 2 if longer than /22)",
    )
    cluster.add_argument("--subnet-min", metavar="S", help="the first subnet nodes may claim")
    cluster.add_argument("--subnet-max", metavar="S", help="the last subnet nodes may claim")
    cluster.add_argument("--vni", metavar="N", type=_positive, help="VXLAN network ID (default 1)")
    cluster.add_argument(
        "--port", metavar="N", type=_positive, help="VXLAN UDP port (default 8472)"
    )
    agent.add_argument(
        "--ttl",
        metavar="S",
        type=_positive,
        default=10,
        help="seconds the node's keys outlive a dead agent (default 10)",
    )
    agent.add_argument(
        "--run-dir",
        metavar="DIR",
        default=DEFAULT_RUN_DIR,
        help=f"where the node state file is written (default {DEFAULT_RUN_DIR})",
    )
    agent.add_argument(
        "--bridge", metavar="NAME", default="ovbr0", help="the node bridge (default ovbr0)"
    )
    agent.add_argument("--vxlan", metavar="NAME", help="the VXLAN device (default ovx<vni>)")
    agent.add_argument(
        "--release-on-exit",
        action="store_true",
        help="on SIGTERM/SIGINT revoke the lease: the subnet is freed and peers drop "
        "this node at once (default: the keys expire after --ttl)",
    )
    agent.add_argument(
        "--ip-masq",
        action="store_true",
        help="masquerade the node's containers' traffic that leaves the cluster CIDR, in the "
        "node's nat table (use it instead of the plugin's ipMasq, which would also rewrite "
        "traffic to other nodes)",
    )
    agent.add_argument(
        "--log-level", choices=_LOG_LEVELS, default="info", help="log level (default info)"
    )

    status = sub.add_parser(
        "status",
        help="print the nodes, subnets, VTEPs and leases etcd holds",
        description="Print the overlay network as etcd holds it: its configuration, each "
        "node's subnet, underlay address, VTEP MAC, lease and its time left, and every "
        "record that is not what the agents write. Exit 1 if etcd cannot be reached.",
    )
    _common(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=5.0,
        help="seconds to wait for etcd per request (default 5)",
    )
    return parser


def agent_config(args: argparse.Namespace) -> AgentConfig:
    """The :class:`~cnilib.overlay.AgentConfig` the agent flags describe."""
    from cnilib.overlay._agent import AgentConfig
    from cnilib.overlay._config import ClusterConfig

    cluster = None
    if args.cluster_cidr is not None:
        extra = {"vni": args.vni, "port": args.port}
        cluster = ClusterConfig.make(
            args.cluster_cidr,
            subnet_len=args.subnet_len,
            subnet_min=args.subnet_min,
            subnet_max=args.subnet_max,
            **{k: v for k, v in extra.items() if v is not None},
        )
    return AgentConfig(
        etcd=args.etcd,
        node=args.node,
        underlay=args.underlay,
        network=args.network,
        prefix=args.prefix,
        netns=args.netns,
        underlay_link=args.underlay_link,
        cluster=cluster,
        ttl=args.ttl,
        run_dir=args.run_dir,
        bridge=args.bridge,
        vxlan=args.vxlan,
        release_on_exit=args.release_on_exit,
        ip_masq=args.ip_masq,
    )


def _run_agent(args: argparse.Namespace) -> int:
    import logging

    config = agent_config(args)  # a bad flag value fails before anything is set up
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from cnilib.overlay._agent import run_agent

    return run_agent(config)


def _run_status(args: argparse.Namespace) -> int:
    import asyncio

    from cnilib.overlay._records import Keys
    from cnilib.overlay._status import ClusterStatus, cluster_status, render_json, render_text

    keys = Keys(prefix=args.prefix, network=args.network)

    async def fetch() -> ClusterStatus:
        from cnilib.overlay._etcd import connect_etcd

        store = await connect_etcd(args.etcd, timeout=args.timeout)
        try:
            return await cluster_status(store, keys)
        finally:
            await store.close()

    status = asyncio.run(fetch())
    render = render_json if args.json else render_text
    sys.stdout.write(render(status, keys))
    return EXIT_OK


_COMMANDS = {"agent": _run_agent, "status": _run_status}


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run ``agent`` or ``status``; return the exit status (2: usage error)."""
    from cnilib.errors import CNIError

    parser = _parser() if prog is None else _parser(prog)
    args = parser.parse_args(argv)
    if args.command == "agent" and args.cluster_cidr is None:
        given = [
            flag
            for flag, value in (
                ("--subnet-len", args.subnet_len),
                ("--subnet-min", args.subnet_min),
                ("--subnet-max", args.subnet_max),
                ("--vni", args.vni),
                ("--port", args.port),
            )
            if value is not None
        ]
        if given:
            parser.error(f"{', '.join(given)}: only with --cluster-cidr")
    try:
        return _COMMANDS[args.command](args)
    except CNIError as exc:
        print(f"{parser.prog} {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
