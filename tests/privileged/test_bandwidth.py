"""cnilib's bandwidth plugin against Debian's Go bandwidth (1.1.1), on a real kernel.

Each world has a node namespace (the host: Go's binary is exec'd there, ours runs
with ``host_netns=<node>``, and the IFB is made there) and a container namespace;
``veth0`` (node, 192.0.2.1/24) and ``eth0`` (container, 192.0.2.2/24) are a veth
pair, which ``prevResult`` lists as bridge or ptp would. Compared across Go and
ours: the result, ``tc -s qdisc`` and ``tc filter`` of the node, the IFB's link
details, CHECK and DEL of either after the other's ADD, errors' codes and texts.
A measured TCP transfer shows that the limits hold (and that without the
plugin the same transfer is much faster).

Differences from 1.1.1 asserted as such: spec 1.1.0 (ours only), CHECK failing
when a TBF or the redirect was removed by hand (Go's passes).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.invoke import Executor, Invocation, SubprocessExecutor
from cnilib.plugins._executor import InProcessExecutor
from cnilib.plugins._registry import load_plugin
from cnilib.plugins.meta._bandwidth_conf import ifb_name
from cnilib.testing import NetNS
from tests.privileged._kernel import GO_PLUGINS, JSON, go_plugin_marks, ip_json, plugin_output
from tests.privileged._link_world import install_plugins

pytestmark = go_plugin_marks()

NETWORK = "bwnet"
CID = "ctr-bandwidth"
IFB = ifb_name(NETWORK, CID)
HOST_IP, CTR_IP = "192.0.2.1", "192.0.2.2"
HOST_MAC = "02:aa:00:00:00:01"
GO_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
THROUGHPUT = Path(__file__).with_name("_throughput.py")
MakeNS = Callable[[], NetNS]


@dataclass
class World:
    """A node and a container namespace joined by a veth; bandwidth by Go, ours, or
    ours installed as an executable."""

    node: NetNS
    ctr: NetNS
    executors: dict[str, tuple[Executor, tuple[str, ...]]] = field(default_factory=dict)

    def conf(self, version: str = "1.0.0", *, prev: bool = True, **keys: Any) -> JSON:
        """A bandwidth config with a ``prevResult`` naming both veth ends."""
        conf: JSON = {"cniVersion": version, "name": NETWORK, "type": "bandwidth", **keys}
        if prev:
            conf["prevResult"] = {
                "cniVersion": version,
                "interfaces": [
                    {"name": "veth0", "mac": self.mac("veth0")},
                    {"name": "eth0", "sandbox": self.ctr.path},
                ],
                "ips": [{"address": f"{CTR_IP}/24", "interface": 1}],
            }
        return conf

    def mac(self, name: str) -> str:
        return str(ip_json(self.node, "link", "show", name)[0]["address"])

    def call(self, impl: str, command: str, conf: JSON) -> JSON | None:
        """Run *command*; its stdout as JSON with the IFB's MAC replaced (None: empty)."""
        executor, path = self.executors[impl]
        out = executor.exec(
            Invocation(
                command=command, plugin_type="bandwidth", stdin=json.dumps(conf).encode(),
                container_id=CID, netns=self.ctr.path, ifname="eth0", args=(), path=path,
            )
        )  # fmt: skip
        result = plugin_output(out, self.ctr.path)
        if result is None:
            return None
        for iface in result.get("interfaces", []):
            if iface.get("name") == IFB:
                assert iface["mac"] == self.mac(IFB)
                iface["mac"] = "<ifb-mac>"
        return result

    def error(self, impl: str, command: str, conf: JSON) -> cnilib.CNIError:
        with pytest.raises(cnilib.CNIError) as info:
            self.call(impl, command, conf)
        return info.value

    def tc(self, *args: str) -> str:
        return self.node.exec("tc", *args).stdout

    def state(self) -> JSON:
        """The node's qdiscs and veth0's ingress filters as ``tc`` prints them (counters
        aside), and the IFB's link details (its MAC and index aside)."""
        ifb = {}
        for link in ip_json(self.node, "-d", "link", "show"):
            if link["ifname"] == IFB:
                keep = ("flags", "mtu", "qdisc", "operstate", "txqlen", "linkinfo")
                ifb = {k: link.get(k) for k in keep}
        filters = self.tc("filter", "show", "dev", "veth0", "ingress") if ifb else ""
        # Without -s: the counters depend on when IPv6's own packets went out.
        return {"qdisc": self.tc("qdisc", "show"), "filters": filters, "ifb": ifb}

    def links(self) -> set[str]:
        return {link["ifname"] for link in ip_json(self.node, "link", "show")}


def _world(make_ns: MakeNS, bin_dir: Path | None = None) -> World:
    node, ctr = make_ns(), make_ns()
    node.exec("ip", "link", "add", "veth0", "address", HOST_MAC, "type", "veth",
              "peer", "name", "eth0", "netns", ctr.name)  # fmt: skip
    node.exec("ip", "addr", "add", f"{HOST_IP}/24", "dev", "veth0")
    ctr.exec("ip", "addr", "add", f"{CTR_IP}/24", "dev", "eth0")
    node.exec("ip", "link", "set", "veth0", "up")
    ctr.exec("ip", "link", "set", "eth0", "up")
    ctr.exec("ip", "link", "set", "lo", "up")
    world = World(node, ctr)
    go = SubprocessExecutor(wrapper=node.exec_prefix, timeout=30.0)
    world.executors["go"] = (go, (str(GO_PLUGINS),))
    ours = InProcessExecutor(
        {"bandwidth": load_plugin("bandwidth")}, builtins=False, installed=False,
        host_netns=node.path,
    )  # fmt: skip
    world.executors["py"] = (ours, (str(GO_PLUGINS),))
    if bin_dir is not None:
        world.executors["exe"] = (go, (str(bin_dir),))
    return world


@pytest.fixture
def worlds(cnilib_container_netns: MakeNS) -> dict[str, World]:
    """One world per implementation (Go's, ours)."""
    return {impl: _world(cnilib_container_netns) for impl in ("go", "py")}


@pytest.fixture
def world(cnilib_container_netns: MakeNS) -> World:
    """One world both implementations act on (cross ADD/CHECK/DEL)."""
    return _world(cnilib_container_netns)


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnilib's plugins installed as CNI executables."""
    return install_plugins(tmp_path_factory.mktemp("bin"))


BOTH: JSON = {"ingressRate": 8_000_000, "ingressBurst": 80_000,
        "egressRate": 16_000_000, "egressBurst": 160_000}  # fmt: skip
CASES: dict[str, JSON] = {
    "both": BOTH,
    "ingress-only": {"ingressRate": 1_000_000, "ingressBurst": 12_000},
    "egress-only": {"egressRate": 2_000_000, "egressBurst": 24_000},
    "runtime-config": {"runtimeConfig": {"bandwidth": BOTH}},
    "top-level-wins": {
        "egressRate": 3_000_000,
        "egressBurst": 30_000,
        "runtimeConfig": {"bandwidth": BOTH},
    },
    "large-burst": {"ingressRate": 1000, "ingressBurst": 1_000_000},
    "zero": {"ingressRate": 0, "runtimeConfig": {"bandwidth": BOTH}},
    # Go's decoder matches keys case-insensitively, the last one winning.
    "keys-in-any-case": {"IngressRate": 1_000_000, "INGRESSBURST": 12_000,
                         "RuntimeConfig": {"Bandwidth": {"egressrate": 9, "egressBurst": 8}}},
    "runtime-keys-in-any-case": {"runtimeconfig": {"BANDWIDTH": {
        "EgressRate": 2_000_000, "egressburst": 1, "EgressBurst": 24_000}}},
}  # fmt: skip


# ------------------------------------------------------------------ ADD / CHECK / DEL


@pytest.mark.parametrize("version", GO_VERSIONS)
@pytest.mark.parametrize("case", list(CASES))
def test_add_check_del_same_as_go(worlds: dict[str, World], case: str, version: str) -> None:
    results, states = {}, {}
    for impl, w in worlds.items():
        conf = w.conf(version, **CASES[case])
        results[impl] = w.call(impl, "ADD", conf)
        states[impl] = w.state()
        if version not in ("0.3.0", "0.3.1"):  # CHECK came with 0.4.0
            w.call(impl, "CHECK", conf)
    assert results["py"] == results["go"]
    assert states["py"] == states["go"]
    for impl, w in worlds.items():
        w.call(impl, "DEL", w.conf(version, **CASES[case]))
        assert IFB not in w.links()
        w.call(impl, "DEL", w.conf(version, **CASES[case]))  # again: nothing left to do


def test_state_after_add_is_what_tc_shows_for_go(worlds: dict[str, World]) -> None:
    """The exact tc view (one case spelled out, so a drift on both sides shows)."""
    for impl, w in worlds.items():
        w.call(impl, "ADD", w.conf(**BOTH))
        qdisc = w.tc("qdisc", "show")
        assert "qdisc tbf 1: dev veth0 root refcnt 3 rate 8Mbit burst 10000b lat 25ms" in qdisc
        assert f"qdisc tbf 1: dev {IFB} root refcnt 2 rate 16Mbit burst 20000b lat 25ms" in qdisc
        assert "qdisc ingress ffff: dev veth0 parent ffff:fff1" in qdisc
        filters = w.tc("filter", "show", "dev", "veth0", "ingress")
        assert f"action order 1: mirred (Egress Redirect to device {IFB}) stolen" in filters
        assert f"action order 2: mirred (Egress Redirect to device {IFB}) pass" in filters
        assert w.state()["ifb"]["mtu"] == 1500


@pytest.mark.parametrize(("adder", "other"), [("go", "py"), ("py", "go")])
def test_cross_check_and_del(world: World, adder: str, other: str) -> None:
    conf = world.conf(**BOTH)
    world.call(adder, "ADD", conf)
    world.call(other, "CHECK", conf)
    world.call(other, "DEL", conf)
    assert IFB not in world.links()
    world.call(adder, "DEL", conf)  # the IFB is already gone


def test_spec_1_1_0_and_executables(cnilib_container_netns: MakeNS, bin_dir: Path) -> None:
    for impl in ("py", "exe"):
        w = _world(cnilib_container_netns, bin_dir)
        conf = w.conf("1.1.0", **BOTH)
        result = w.call(impl, "ADD", conf)
        assert result is not None
        assert result["cniVersion"] == "1.1.0"
        assert result["interfaces"][-1] == {"name": IFB, "mac": "<ifb-mac>"}
        w.call(impl, "CHECK", conf)
        w.call(impl, "STATUS", {k: v for k, v in conf.items() if k != "prevResult"})
        w.call(impl, "DEL", conf)
        assert IFB not in w.links()


@pytest.mark.parametrize("version", GO_VERSIONS)
def test_executable_same_as_go(cnilib_container_netns: MakeNS, bin_dir: Path, version: str) -> None:
    go, exe = _world(cnilib_container_netns), _world(cnilib_container_netns, bin_dir)
    results = {}
    for impl, w in (("go", go), ("exe", exe)):
        conf = w.conf(version, **BOTH)
        results[impl] = (w.call(impl, "ADD", conf), w.state())
        if version not in ("0.3.0", "0.3.1"):
            w.call(impl, "CHECK", conf)
        w.call(impl, "DEL", conf)
    assert results["exe"] == results["go"]


# ----------------------------------------------------------------------------- CHECK


@pytest.mark.parametrize("adder", ["go", "py"])
def test_check_fails_on_changed_rate_as_go(world: World, adder: str) -> None:
    conf = world.conf(**BOTH)
    world.call(adder, "ADD", conf)
    world.node.exec("tc", "qdisc", "change", "dev", "veth0", "root", "handle", "1:", "tbf",
                    "rate", "4mbit", "burst", "10000", "latency", "25ms")  # fmt: skip
    errors = {impl: world.error(impl, "CHECK", conf) for impl in ("go", "py")}
    assert (errors["py"].code, errors["py"].msg) == (errors["go"].code, errors["go"].msg)
    assert errors["py"].msg == "Rate doesn't match"


@pytest.mark.parametrize("adder", ["go", "py"])
def test_check_fails_when_a_limit_was_removed(world: World, adder: str) -> None:
    conf = world.conf(**BOTH)
    world.call(adder, "ADD", conf)
    world.node.exec("tc", "qdisc", "del", "dev", "veth0", "root")
    world.call("go", "CHECK", conf)  # Go stops at the first qdisc that is not a TBF
    err = world.error("py", "CHECK", conf)
    assert err.msg == "no tbf qdisc at the root of veth0: its rate limit was removed"
    world.node.exec("tc", "qdisc", "add", "dev", "veth0", "root", "handle", "1:", "tbf",
                    "rate", "8mbit", "burst", "10000", "latency", "25ms")  # fmt: skip
    world.call("py", "CHECK", conf)
    world.node.exec("tc", "qdisc", "del", "dev", IFB, "root")
    err = world.error("py", "CHECK", conf)
    assert err.msg == f"no tbf qdisc at the root of {IFB}: its rate limit was removed"


def test_check_fails_when_the_redirect_was_removed(world: World) -> None:
    conf = world.conf(egressRate=2_000_000, egressBurst=24_000)
    world.call("py", "ADD", conf)
    world.node.exec("tc", "filter", "del", "dev", "veth0", "ingress")
    err = world.error("py", "CHECK", conf)
    assert err.msg == (
        f"no ingress filter of veth0 redirects to {IFB}: the egress rate limit is not applied"
    )


@pytest.mark.parametrize("impl", ["go", "py"])
def test_check_without_the_ifb(world: World, impl: str) -> None:
    conf = world.conf(**BOTH)
    world.call("py", "ADD", conf)
    world.node.exec("ip", "link", "del", IFB)
    err = world.error(impl, "CHECK", conf)
    assert (err.code, err.msg) == (999, "get ifb device: Link not found")


# ----------------------------------------------------------------------------- errors

ERRORS: dict[str, tuple[str, JSON, bool]] = {
    "no-prev-result": ("ADD", {"ingressRate": 1000, "ingressBurst": 100}, False),
    "check-no-prev-result": ("CHECK", {"ingressRate": 1000, "ingressBurst": 100}, False),
    "rate-without-burst": ("ADD", {"egressRate": 1000}, True),
    "del-invalid": ("DEL", {"ingressBurst": 5}, True),
    "negative": ("ADD", {"ingressRate": -1}, True),
    "no-host-peer": ("ADD", {"ingressRate": 1000, "ingressBurst": 100, "_no_host": True}, True),
}


FAILED_ADDS: dict[str, tuple[JSON, bool, str]] = {
    # The kernel refuses a TBF of 0 bytes/s (a rate below 8 bits/s): on the IFB, after
    # the IFB, the veth's ingress qdisc and the redirect were made.
    "ifb-tbf": ({"egressRate": 7, "egressBurst": 800}, False,
                "create ifb qdisc: create qdisc: invalid argument"),
    "ifb-tbf-after-ingress": ({**BOTH, "egressRate": 7}, False,
                              "create ifb qdisc: create qdisc: invalid argument"),
    # The veth has an ingress qdisc already (not the plugin's: it stays).
    "ingress-qdisc-taken": (BOTH, True, "create ingress qdisc: file exists"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FAILED_ADDS))
def test_failed_add_leaves_nothing_behind(world: World, case: str) -> None:
    """What a failed ADD made is removed (Go leaves the IFB, its redirect and the
    veth's TBF until DEL), so that the same ADD can be tried again."""
    keys, taken, text = FAILED_ADDS[case]
    if taken:
        world.node.exec("tc", "qdisc", "add", "dev", "veth0", "ingress")
    before = world.state()
    go = world.error("go", "ADD", world.conf(**keys))
    assert go.msg == text
    assert world.state() != before  # Go left what it had made
    world.call("go", "DEL", world.conf(**keys))  # the IFB; the veth's qdiscs by hand:
    world.node.exec("tc", "qdisc", "del", "dev", "veth0", "root", check=False)
    if not taken:
        world.node.exec("tc", "qdisc", "del", "dev", "veth0", "ingress")
    assert world.state() == before
    err = world.error("py", "ADD", world.conf(**keys))
    assert (err.code, err.msg) == (go.code, go.msg)
    assert world.state() == before
    assert IFB not in world.links()
    if taken:
        world.node.exec("tc", "qdisc", "del", "dev", "veth0", "ingress")
    world.call("py", "ADD", world.conf(**BOTH))  # nothing in the way of a new ADD
    world.call("py", "CHECK", world.conf(**BOTH))


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_as_go(world: World, case: str) -> None:
    command, keys, prev = ERRORS[case]
    keys = dict(keys)
    no_host = keys.pop("_no_host", False)
    conf = world.conf(prev=prev, **keys)
    if no_host:
        conf["prevResult"]["interfaces"] = [{"name": "eth0", "sandbox": world.ctr.path}]
    errors = {impl: world.error(impl, command, conf) for impl in ("go", "py")}
    assert (errors["py"].code, errors["py"].msg) == (errors["go"].code, errors["go"].msg)


@pytest.mark.parametrize("impl", ["go", "py"])
def test_container_link_not_a_veth(world: World, impl: str) -> None:
    world.ctr.exec("ip", "link", "add", "br9", "type", "bridge")
    conf = world.conf(ingressRate=1000, ingressBurst=100)
    with pytest.raises(cnilib.CNIError) as info:
        world.executors[impl][0].exec(
            Invocation(
                command="ADD",
                plugin_type="bandwidth",
                stdin=json.dumps(conf).encode(),
                container_id=CID,
                netns=world.ctr.path,
                ifname="br9",
                path=world.executors[impl][1],
            )
        )
    assert (
        info.value.msg
        == 'container interface br9 has no veth peer: interface "br9" was not a veth interface'
    )


@pytest.mark.parametrize("impl", ["go", "py"])
def test_old_versions_refused(world: World, impl: str) -> None:
    err = world.error(impl, "ADD", world.conf("0.2.0", prev=False))
    assert err.code == 1
    assert err.msg == "incompatible CNI versions"


# ------------------------------------------------------------------------ throughput


def _rate(sender: NetNS, receiver: NetNS, addr: str, port: int) -> float:
    """Bits per second of a TCP transfer from *sender* to *receiver* (*addr* is the
    receiver's), measured by the receiver over at most 2 s."""
    recv = subprocess.Popen(
        [*receiver.exec_prefix, sys.executable, str(THROUGHPUT), "recv", addr, str(port), "2"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert recv.stdout is not None
        assert recv.stdout.readline().strip() == "ready"
        sender.exec(sys.executable, str(THROUGHPUT), "send", addr, str(port), "3")
        out, _ = recv.communicate(timeout=15)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    measured = json.loads(out)
    return float(measured["bytes"]) * 8 / max(float(measured["seconds"]), 1e-3)


RATE = 4_000_000
BURST = 40_000
TOLERANCE = 1.5
"""The measured rate may exceed the configured one by this factor: the bucket (5 kB),
the queue (25 ms of rate + the burst) and the first segments in flight all arrive
on top of the rate within a 2 s window."""


def test_transfer_is_throttled_both_ways(world: World) -> None:
    conf = world.conf(ingressRate=RATE, ingressBurst=BURST, egressRate=RATE, egressBurst=BURST)
    unlimited_out = _rate(world.ctr, world.node, HOST_IP, 5201)
    unlimited_in = _rate(world.node, world.ctr, CTR_IP, 5202)
    world.call("py", "ADD", conf)
    limited_out = _rate(world.ctr, world.node, HOST_IP, 5203)  # egress: via the IFB
    limited_in = _rate(world.node, world.ctr, CTR_IP, 5204)  # ingress: the veth's TBF
    print(f"rates (bit/s): out {limited_out:.0f} (unlimited {unlimited_out:.0f}), "
          f"in {limited_in:.0f} (unlimited {unlimited_in:.0f})")  # fmt: skip
    assert limited_out < RATE * TOLERANCE, (limited_out, unlimited_out)
    assert limited_in < RATE * TOLERANCE, (limited_in, unlimited_in)
    # Without the plugin the same transfers are far faster: the limit came from it.
    assert unlimited_out > 5 * RATE * TOLERANCE
    assert unlimited_in > 5 * RATE * TOLERANCE
    world.call("py", "DEL", conf)


def test_ifb_names_are_per_network_and_container() -> None:
    assert re.fullmatch(r"bwp[0-9a-f]{12}", IFB)
    assert ifb_name(NETWORK, "other") != IFB
