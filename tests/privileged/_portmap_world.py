"""A world for the portmap tests: a node namespace (the host) routing between a
container, a client and a "far" host, each in its own namespace, on veth pairs.

::

    client 10.8.0.2 / fd08::2 ── vcl0 10.8.0.1 / fd08::1 ┐
    ctr    10.9.0.2 / fd09::2 ── vc0  10.9.0.1 / fd09::1 ├ node (forwarding on)
    far    10.7.0.2 / fd07::2 ── vfar 10.7.0.1 / fd07::1 ┘

portmap is called directly (Go's binary under ``ip netns exec <node>``, ours
in process with ``host_netns=<node>``) with a ``prevResult`` naming the
container's ``eth0``. Traffic is real: a small Python server runs in the
container (and in "far"), a Python client in the client namespace. Servers
are started and killed by pid here; the namespaces belong to the fixtures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cnilib
from cnilib.invoke import Executor, Invocation, SubprocessExecutor
from cnilib.plugins._executor import InProcessExecutor
from cnilib.plugins._registry import load_plugin
from cnilib.testing import NetNS
from tests.privileged._kernel import GO_PLUGINS, JSON, plugin_output

CID = "ctr-portmap"
NETWORK = "pmnet"
CTR4, CTR6 = "10.9.0.2", "fd09::2"
NODE_CLIENT4, NODE_CLIENT6 = "10.8.0.1", "fd08::1"
NODE_CTR4 = "10.9.0.1"
FAR4, FAR6 = "10.7.0.2", "fd07::2"

# A server answering every TCP connection and UDP datagram on a port with a word.
_SERVER = r"""
import socket, sys, threading
port, word, family = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
fam = socket.AF_INET6 if family == "6" else socket.AF_INET
addr = "::" if family == "6" else "0.0.0.0"
t = socket.socket(fam, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((addr, port)); t.listen(16)
u = socket.socket(fam, socket.SOCK_DGRAM); u.bind((addr, port))
def udp():
    while True:
        data, peer = u.recvfrom(2048)
        u.sendto(word + b" " + peer[0].removeprefix("::ffff:").encode(), peer)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, peer = t.accept()
    c.sendall(word + b" " + peer[0].removeprefix("::ffff:").encode()); c.close()
"""

_CLIENT = r"""
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[4]))
try:
    if proto == "tcp":
        s.connect((host, port)); print(s.recv(100).decode())
    else:
        s.sendto(b"hi", (host, port)); print(s.recvfrom(100)[0].decode())
except OSError as exc:
    print("error", type(exc).__name__)
"""


def _veth(node: NetNS, name: str, peer: NetNS, addrs: tuple[str, str, str, str]) -> None:
    """``name`` in *node* (addresses 0 and 2), ``eth0`` in *peer* (1 and 3), routed by node."""
    node.exec("ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", peer.name)
    node.exec("ip", "addr", "add", addrs[0] + "/24", "dev", name)
    node.exec("ip", "addr", "add", addrs[2] + "/64", "dev", name, "nodad")
    node.exec("ip", "link", "set", name, "up")
    peer.exec("ip", "addr", "add", addrs[1] + "/24", "dev", "eth0")
    peer.exec("ip", "addr", "add", addrs[3] + "/64", "dev", "eth0", "nodad")
    peer.exec("ip", "link", "set", "eth0", "up")
    peer.exec("ip", "link", "set", "lo", "up")
    peer.exec("ip", "route", "add", "default", "via", addrs[0])
    peer.exec("ip", "-6", "route", "add", "default", "via", addrs[2])


@dataclass
class World:
    """node, ctr, client and far namespaces; portmap by Go or ours."""

    node: NetNS
    ctr: NetNS
    client: NetNS
    far: NetNS
    executors: dict[str, Executor] = field(default_factory=dict)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    @classmethod
    def build(cls, node: NetNS, ctr: NetNS, client: NetNS, far: NetNS) -> World:
        """Wire the namespaces up (all made by the caller's fixture)."""
        node.exec("ip", "link", "set", "lo", "up")
        _veth(node, "vc0", ctr, (NODE_CTR4, CTR4, "fd09::1", CTR6))
        _veth(node, "vcl0", client, (NODE_CLIENT4, "10.8.0.2", NODE_CLIENT6, "fd08::2"))
        _veth(node, "vfar", far, ("10.7.0.1", FAR4, "fd07::1", FAR6))
        node.exec("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        world = cls(node, ctr, client, far)
        world.executors["go"] = SubprocessExecutor(wrapper=node.exec_prefix, timeout=30.0)
        world.executors["py"] = InProcessExecutor(
            {"portmap": load_plugin("portmap")},
            builtins=False,
            installed=False,
            host_netns=node.path,
        )
        return world

    def close(self) -> None:
        """Stop the servers this world started (by pid)."""
        for proc in self.servers:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    # ------------------------------------------------------------------ plugin

    def conf(
        self,
        mappings: list[JSON] | None = None,
        version: str = "1.0.0",
        *,
        prev: bool = True,
        v6: bool = True,
        **keys: Any,
    ) -> JSON:
        """A portmap config with *mappings* in runtimeConfig and a prevResult on eth0."""
        conf: JSON = {"cniVersion": version, "name": NETWORK, "type": "portmap", **keys}
        if mappings is not None:
            conf["runtimeConfig"] = {"portMappings": mappings}
        if prev:
            conf["prevResult"] = prev_result(self.ctr.path, version, v6=v6)
        return conf

    def prev(self, conf: JSON) -> JSON:
        """*conf*'s prevResult as :meth:`call` returns results (sandbox normalized)."""
        prev: JSON = json.loads(json.dumps(conf["prevResult"]).replace(self.ctr.path, "<netns>"))
        return prev

    def call(self, impl: str, command: str, conf: JSON | bytes, *, cid: str = CID) -> JSON | None:
        """Run portmap's *command*; its stdout as JSON (None when empty)."""
        stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        out = self.executors[impl].exec(
            Invocation(
                command=command,
                plugin_type="portmap",
                stdin=stdin,
                container_id=cid,
                netns=self.ctr.path,
                ifname="eth0",
                path=(str(GO_PLUGINS),),
            )
        )
        return plugin_output(out, self.ctr.path)

    def error(self, impl: str, command: str, conf: JSON | bytes) -> cnilib.CNIError:
        """*command* that must fail: the error."""
        try:
            self.call(impl, command, conf)
        except cnilib.CNIError as exc:
            return exc
        raise AssertionError(f"{impl} {command} succeeded")

    # ----------------------------------------------------------------- traffic

    def serve(self, ns: NetNS, port: int, word: str, family: int = 4) -> None:
        """A TCP+UDP server on *port* in *ns* answering ``<word> <peer address>``."""
        proc = subprocess.Popen(
            [*ns.exec_prefix, sys.executable, "-c", _SERVER, str(port), word, str(family)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.servers.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"

    def talk(
        self, ns: NetNS, host: str, port: int, proto: str = "tcp", timeout: float = 3.0
    ) -> str:
        """What a client in *ns* gets from *host*:*port* (``error <Kind>`` when nothing)."""
        argv = [*ns.exec_prefix, sys.executable, "-c", _CLIENT, proto, host, str(port)]
        return subprocess.run(
            [*argv, str(timeout)], capture_output=True, text=True, check=True
        ).stdout.strip()

    # ------------------------------------------------------------------- state

    def iptables(self) -> dict[str, list[str]]:
        """The node's nat tables (both families), without comments and counters."""
        out = {}
        for tool in ("iptables-save", "ip6tables-save"):
            text = self.node.exec(tool, "-t", "nat").stdout
            out[tool] = [line for line in text.splitlines() if not line.startswith("#")]
        return out

    def nft(self) -> str:
        """The node's nftables ruleset as nft prints it."""
        return self.node.exec("nft", "list", "ruleset").stdout

    def sysctl(self, key: str) -> str:
        """A sysctl of the node (``net/...`` path)."""
        return self.node.exec("cat", f"/proc/sys/{key}").stdout.strip()


def prev_result(sandbox: str, version: str, *, v6: bool = True) -> JSON:
    """bridge's result for eth0 in *sandbox*, in *version*'s format."""
    if version in ("0.1.0", "0.2.0"):
        prev: JSON = {"cniVersion": version, "ip4": {"ip": f"{CTR4}/24", "gateway": NODE_CTR4}}
        if v6:
            prev["ip6"] = {"ip": f"{CTR6}/64"}
        return prev
    ips: list[JSON] = [{"address": f"{CTR4}/24", "gateway": NODE_CTR4, "interface": 1}]
    if v6:
        ips.append({"address": f"{CTR6}/64", "interface": 1})
    if version in ("0.3.0", "0.3.1", "0.4.0"):
        for ip in ips:
            ip["version"] = "6" if ":" in ip["address"] else "4"
    return {
        "cniVersion": version,
        "interfaces": [
            {"name": "vc0", "mac": "02:00:00:00:00:01"},
            {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": sandbox},
        ],
        "ips": ips,
    }


def world_of(make_ns: Any) -> Iterator[World]:
    """Build a world from the namespace factory; stop its servers afterwards."""
    world = World.build(make_ns(), make_ns(), make_ns(), make_ns())
    try:
        yield world
    finally:
        world.close()
