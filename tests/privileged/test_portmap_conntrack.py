"""Stale UDP conntrack entries and portmap: a UDP flow that reached a host port before
it was mapped must reach the container once it is (Go's portmap deletes the host
port's UDP conntrack entries after ADD; so does cnilib's).

The world is tests/privileged/_portmap_world.py's: a node routing between a client,
a container and a far host, each in its own namespace.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from cnilib import netlink
from cnilib.testing import NetNS
from tests.privileged._portmap_world import NODE_CLIENT4, NODE_CLIENT6, World, world_of

BACKENDS = ("iptables", "nftables")
TCP = {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
UDP = {"hostPort": 5353, "containerPort": 53, "protocol": "UDP"}  # Go lower-cases it
CLIENT_PORT = 40053

# One datagram from a fixed source port (the same "flow" every time), the reply or
# ``error <kind>``.
_SEND_FROM = r"""
import socket, sys
host, port, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", sport))
s.settimeout(3.0)
s.connect((host, port))  # connected: the node's "port unreachable" ends the wait at once
try:
    s.send(b"hi"); print(s.recv(100).decode())
except OSError as exc:
    print("error", type(exc).__name__)
"""


@pytest.fixture
def world(cnilib_container_netns: Callable[[], NetNS]) -> Iterator[World]:
    yield from world_of(cnilib_container_netns)


def send_from(ns: NetNS, host: str, port: int) -> str:
    argv = [*ns.exec_prefix, sys.executable, "-c", _SEND_FROM, host, str(port), str(CLIENT_PORT)]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def open_flow(world: World, host: str, port: int) -> None:
    """Start the client's flow to *host*:*port* while nothing is mapped there: the node
    answers (port unreachable), and conntrack remembers the flow un-NATed."""
    # Another container's mapping first: it gives the node a nat table, which is what
    # turns connection tracking on in a namespace.
    world.call("py", "ADD", world.conf([TCP]), cid="ctr-other")
    assert send_from(world.client, host, port).startswith("error")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("host", [NODE_CLIENT4, NODE_CLIENT6])
def test_udp_flow_started_before_the_mapping_reaches_the_container(
    world: World, backend: str, host: str
) -> None:
    """The same client socket, before and after ADD: after, it reaches the container."""
    world.serve(world.ctr, 53, "ctr53", family=6)
    open_flow(world, host, 5353)
    world.call("py", "ADD", world.conf([UDP], backend=backend))
    assert send_from(world.client, host, 5353).startswith("ctr53 ")


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, NODE_CLIENT4),
                                              (socket.AF_INET6, NODE_CLIENT6)])  # fmt: skip
def test_delete_udp_conntrack_takes_only_the_ports_asked(
    world: World, family: int, host: str
) -> None:
    """delete_udp_conntrack() removes the entries of the ports and family asked, once."""
    open_flow(world, host, 5353)
    assert send_from(world.client, host, 5354).startswith("error")
    other = socket.AF_INET6 if family == socket.AF_INET else socket.AF_INET

    def delete(fam: int, ports: list[int]) -> int:
        return netlink.run_in_netns(world.node.path, netlink.delete_udp_conntrack, fam, ports)

    assert delete(other, [5353, 5354]) == 0
    assert delete(family, [5353]) == 1
    assert delete(family, [5353]) == 0
    assert delete(family, [5354, 9999]) == 1
    assert delete(family, []) == 0
