"""cnilib's bridge on a real kernel: CHECK drift, DEL, connectivity, mixed chains, binary mode.

Drift: the same damage done to Go's attachment and ours gives the same CHECK
error (route texts excepted: ours name the route readably). Connectivity:
pings from the container namespace to the gateway and between two
containers on one bridge. Mixed chains: our bridge with Go's tuning and
portmap, our bridge with Go's host-local, Go's bridge with our loopback,
through ADD/CHECK/DEL (portmap CHECK is not run with mappings: a known bug
of Go 1.1.1). Every namespace is the tests' own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.invoke import SubprocessExecutor
from cnilib.plugins._executor import InProcessExecutor
from cnilib.plugins._skel import handle
from cnilib.plugins.ipam.host_local import HostLocal
from cnilib.plugins.main.bridge import Bridge
from cnilib.plugins.main.loopback import Loopback
from cnilib.results import ResultV100
from cnilib.testing import NetNS, create_netns
from tests.privileged._bridge_world import CONTAINER_ID, NETWORK, Side, bridge_conf, tables
from tests.privileged._kernel import go_plugin_marks, ip_json

pytestmark = go_plugin_marks()

V4 = "10.78.1.0/24"
MakeNS = Callable[[], NetNS]


@pytest.fixture
def go(cnilib_container_netns: MakeNS, tmp_path: Path) -> Side:
    """Go's plugins, exec'd in their own node namespace."""
    return Side("go", cnilib_container_netns(), cnilib_container_netns, tmp_path / "go")


@pytest.fixture
def py(cnilib_container_netns: MakeNS, tmp_path: Path) -> Side:
    """cnilib's plugins in process, host side in their own node namespace."""
    return Side("py", cnilib_container_netns(), cnilib_container_netns, tmp_path / "py")


def _check_error(side: Side, plugin: dict[str, Any]) -> str:
    with pytest.raises(cnilib.CNIError) as info:
        side.cni.check_network_list(side.conflist(plugin), side.rt())
    return str(info.value)


def _host_veth(side: Side) -> str:
    [name] = [link["ifname"] for link in ip_json(side.node, "link") if link["ifname"][:4] == "veth"]
    return str(name)


DRIFTS: dict[str, Callable[[Side], object]] = {
    "container address": lambda s: s.ctr(0).exec("ip", "addr", "del", "10.78.1.2/24", "dev",
                                                 "eth0"),
    "default route": lambda s: s.ctr(0).exec("ip", "route", "del", "default"),
    "host veth": lambda s: s.node.exec("ip", "link", "del", _host_veth(s)),
    "bridge port": lambda s: s.node.exec("ip", "link", "set", _host_veth(s), "nomaster"),
    "bridge": lambda s: s.node.exec("ip", "link", "del", "cnidiff0"),
    "promisc": lambda s: s.node.exec("ip", "link", "set", "cnidiff0", "promisc", "on"),
    "ipam store": lambda s: (s.data_dir / NETWORK / "10.78.1.2").unlink(),
}  # fmt: skip

EXPECTED = {
    "container address": "Failed to match addr 10.78.1.2/24 on interface eth0",
    "default route": "not found in routing table",
    "host veth": "Interface name eth0 not found",
    "bridge port": "CNI veth created for bridge cnidiff0 was not found",
    "bridge": "Interface name cnidiff0 not found",
    "promisc": "Bridge interface cnidiff0 configured Promisc Mode false doesn't match current",
    "ipam store": f"Failed to find address added by container {CONTAINER_ID}",
}


@pytest.mark.parametrize("drift", list(DRIFTS))
def test_check_names_the_drift_like_go(go: Side, py: Side, drift: str) -> None:
    """CHECK passes on a fresh attachment, then fails naming what was removed."""
    plugin = bridge_conf(V4, isDefaultGateway=True, ipMasq=True)
    messages = []
    for side in (go, py):
        conf = side.conflist(plugin)
        side.cni.add_network_list(conf, side.rt())
        side.cni.check_network_list(conf, side.rt())
        DRIFTS[drift](side)
        messages.append(_check_error(side, plugin))
        side.cni.delete_network_list(conf, side.rt())
    go_msg, py_msg = messages
    assert EXPECTED[drift] in go_msg
    assert EXPECTED[drift] in py_msg
    if drift == "default route":
        assert "Expected Route 0.0.0.0/0 via 10.78.1.1 not found in routing table" in py_msg
    else:
        assert py_msg == go_msg


def test_del_is_idempotent_and_needs_no_netns(py: Side) -> None:
    """DEL twice; DEL with an empty CNI_NETNS releases the address too."""
    plugin = bridge_conf(V4, isGateway=True, ipMasq=True)
    conf = py.conflist(plugin)
    py.cni.add_network_list(conf, py.rt())
    py.cni.delete_network_list(conf, py.rt())
    py.cni.delete_network_list(conf, py.rt())
    assert {link["ifname"] for link in ip_json(py.ctr(0), "link")} == {"lo"}
    assert "10.78.1.2" not in py.store()
    assert not any("CNI-" in line for line in tables(py.node)["iptables-save"])

    py.cni.add_network_list(conf, py.rt(container_id="ctr-2"))
    ipam = {**plugin["ipam"], "dataDir": str(py.data_dir)}
    stdin = json.dumps({**plugin, "cniVersion": "1.0.0", "name": NETWORK, "ipam": ipam}).encode()
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "ctr-2", "CNI_NETNS": "",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}  # fmt: skip
    assert handle(Bridge(), env, stdin, host_netns=py.node.path) == b""
    assert py.store().keys() <= {"lock", "last_reserved_ip.0"}
    assert not any("CNI-" in line for line in tables(py.node)["iptables-save"])


_SERVER = (
    "import socket,sys; s=socket.create_server((sys.argv[1], 7777)); print('ready', flush=True);"
    " c,_=s.accept(); c.sendall(b'pong'); c.close()"
)
_CLIENT = (
    "import socket,sys; print(socket.create_connection((sys.argv[1], 7777), 2).recv(4).decode())"
)


def _reach(src: NetNS, dst: NetNS, address: str) -> None:
    """A TCP connection from *src* to a listener on *address* in *dst* (and a ping, if
    this machine has ``ping``)."""
    with subprocess.Popen(
        [*dst.exec_prefix, sys.executable, "-c", _SERVER, address],
        stdout=subprocess.PIPE, text=True,
    ) as server:  # fmt: skip
        try:
            assert server.stdout is not None
            assert server.stdout.readline().strip() == "ready"
            out = src.exec(sys.executable, "-c", _CLIENT, address).stdout
            assert out.strip() == "pong"
        finally:
            server.kill()
    if shutil.which("ping"):
        proc = src.exec("ping", "-c1", "-W1", address, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_connectivity_gateway_and_neighbour(py: Side) -> None:
    """Two containers on one bridge reach the gateway and each other."""
    conf = py.conflist(bridge_conf(V4, isDefaultGateway=True))
    first = py.cni.add_network_list(conf, py.rt(0, container_id="ping-a"))
    second = py.cni.add_network_list(conf, py.rt(1, container_id="ping-b"))
    assert isinstance(first, ResultV100)
    assert isinstance(second, ResultV100)
    a, b = (str(r.ips[0].address.ip) for r in (first, second) if r.ips[0].address)
    _reach(py.ctr(0), py.node, "10.78.1.1")
    _reach(py.ctr(0), py.ctr(1), b)
    _reach(py.ctr(1), py.ctr(0), a)


def test_status_delegates_to_ipam(py: Side) -> None:
    """STATUS (1.1.0) asks the IPAM plugin: a missing one makes STATUS fail."""
    py.cni.status_network_list(py.conflist(bridge_conf(V4), version="1.1.0"))
    broken = {**bridge_conf(V4), "ipam": {"type": "no-such-ipam"}}
    with pytest.raises(cnilib.CNIError, match="no-such-ipam"):
        py.cni.status_network_list(py.conflist(broken, version="1.1.0"))
    py.cni.status_network_list(py.conflist(bridge_conf(ipam=False), version="1.1.0"))


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_layer2_below_030_is_refused_before_anything_is_made(py: Side, version: str) -> None:
    """A bridge without IPAM cannot be answered in a 0.1.0/0.2.0 result (IP addresses
    only): refused with code 1 before the bridge or the veth pair is made."""
    with pytest.raises(cnilib.CNIError) as info:
        py.cni.add_network_list(py.conflist(bridge_conf(ipam=False), version=version), py.rt())
    assert info.value.code == 1
    assert "no valid IP addresses" in info.value.msg
    assert [link["ifname"] for link in ip_json(py.node, "link")] == ["lo"]
    assert [link["ifname"] for link in ip_json(py.ctr(), "link")] == ["lo"]


# ----------------------------------------------------------------------- mixed chains


def test_our_bridge_with_go_tuning_and_portmap(py: Side, tmp_path: Path) -> None:
    """ADD/CHECK/DEL through our bridge then Go's tuning and portmap; DNAT with a mapping."""
    # Only bridge and host-local in process: cnilib has a tuning of its own now.
    ours = InProcessExecutor(
        {"bridge": Bridge(), "host-local": HostLocal()},
        builtins=False, installed=False, host_netns=py.node.path,
    )  # fmt: skip
    side = Side.mixed(py.node, py.make_ns, tmp_path / "mixed", ours)
    tuning = {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"}}
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}}
    conf = side.conflist(bridge_conf(V4, isGateway=True, ipMasq=True), tuning, portmap)
    side.cni.add_network_list(conf, side.rt())
    side.cni.check_network_list(conf, side.rt())
    assert side.ctr(0).exec("cat", "/proc/sys/net/ipv4/conf/eth0/arp_filter").stdout.strip() == "1"
    side.cni.delete_network_list(conf, side.rt())
    assert {link["ifname"] for link in ip_json(side.ctr(0), "link")} == {"lo"}

    mapping = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    rt = side.rt(1, container_id="pm-1", capability_args=mapping)
    side.cni.add_network_list(conf, rt)
    assert any("--to-destination 10.78.1.3:80" in line or "10.78.1.2:80" in line
               for line in tables(side.node)["iptables-save"])  # fmt: skip
    side.cni.delete_network_list(conf, rt)
    assert not any("--to-destination" in line for line in tables(side.node)["iptables-save"])


def test_our_bridge_with_go_host_local(py: Side, tmp_path: Path) -> None:
    """Our bridge delegating to Go's host-local binary (file-only: it runs outside the node)."""
    ours = InProcessExecutor({"bridge": Bridge()}, builtins=False, host_netns=py.node.path)
    side = Side.mixed(py.node, py.make_ns, tmp_path / "hl", ours)
    conf = side.conflist(bridge_conf(V4, isGateway=True))
    side.cni.add_network_list(conf, side.rt())
    assert side.store()["10.78.1.2"] == f"{CONTAINER_ID}\r\neth0"
    side.cni.check_network_list(conf, side.rt())
    side.cni.delete_network_list(conf, side.rt())
    assert "10.78.1.2" not in side.store()


def test_go_bridge_with_our_loopback(go: Side, tmp_path: Path) -> None:
    """Go's bridge then our loopback (in process): prevResult passes through ours."""
    ours = InProcessExecutor({"loopback": Loopback()}, builtins=False, host_netns=go.node.path)
    side = Side.mixed(go.node, go.make_ns, tmp_path / "lo", ours)
    side.ctr(0).exec("ip", "link", "set", "lo", "down")
    conf = side.conflist(bridge_conf(V4, isGateway=True), {"type": "loopback"})
    res = side.cni.add_network_list(conf, side.rt())
    assert isinstance(res, ResultV100)
    assert [i.name for i in res.interfaces][::2] == ["cnidiff0", "eth0"]
    assert "UP" in ip_json(side.ctr(0), "link", "show", "lo")[0]["flags"]
    side.cni.check_network_list(conf, side.rt())
    side.cni.delete_network_list(conf, side.rt())
    assert "UP" not in ip_json(side.ctr(0), "link", "show", "lo")[0]["flags"]


# ------------------------------------------------------------------------ binary, vlan


def test_as_executable_matches_in_process(py: Side, tmp_path: Path) -> None:
    """Our bridge as a binary under ``ip netns exec`` (host = its own namespace) works too."""
    from cnilib.plugins._main import install

    bin_dir = tmp_path / "bin"
    install(bin_dir, ["bridge", "host-local"])
    executor = SubprocessExecutor(wrapper=py.node.exec_prefix, timeout=30.0)
    exe = cnilib.CNI([str(bin_dir)], cache_dir=tmp_path / "exe-cache", executor=executor)
    conf = py.conflist(bridge_conf(V4, isGateway=True, ipMasq=True))
    res = exe.add_network_list(conf, py.rt())
    assert isinstance(res, ResultV100)
    assert [str(ip.address) for ip in res.ips] == ["10.78.1.2/24"]
    assert any("-s 10.78.1.2/32" in line for line in tables(py.node)["iptables-save"])
    exe.check_network_list(conf, py.rt())
    exe.delete_network_list(conf, py.rt())
    assert not any("CNI-" in line for line in tables(py.node)["iptables-save"])


def _vlan_filtering_reason() -> str | None:
    ns = create_netns("cnilib-probe")
    try:
        proc = ns.exec("ip", "link", "add", "p0", "type", "bridge", "vlan_filtering", "1",
                       check=False)  # fmt: skip
        return None if proc.returncode == 0 else proc.stderr.strip() or "failed"
    finally:
        ns.delete()


def test_vlan_matches_go(go: Side, py: Side) -> None:
    """An access VLAN on the port (and a gateway interface ``<bridge>.<vlan>``)."""
    reason = _vlan_filtering_reason()
    if reason is not None:
        pytest.skip(f"the kernel has no bridge VLAN filtering: {reason}")
    plugin = bridge_conf(V4, isGateway=True, vlan=100)
    for side in (go, py):
        res = side.cni.add_network_list(side.conflist(plugin), side.rt())
        assert isinstance(res, ResultV100)
        assert [i.name for i in res.interfaces][3] == "cnidiff0.100"
    vlans = [json.loads(side.node.exec("bridge", "-j", "vlan", "show").stdout) for side in (go, py)]
    assert vlans[0]
    assert len(vlans[0]) == len(vlans[1])
