"""cnilib's in-process sbr plugin against Debian's Go sbr (1.1.1), on a real kernel.

Direct calls: each world has a node namespace (where Go's binary is exec'd)
and a container namespace holding ``eth0`` (a veth) with the addresses and
routes a main plugin would have made; sbr gets a ``prevResult`` naming them.
Compared after ADD and DEL: ``ip -d rule`` and ``ip -d route show table all``
of the container (both families), the result, errors. Chains go through
cnilib.CNI: bridge + host-local + sbr, ours against Go's binaries; and two
bridge networks in one container, where only sbr makes replies from the
second address leave through the second interface.

cnilib follows the latest upstream sbr (``table``, ``gateways``,
``addSourceHints``; DEL succeeds when the interface is gone). Deliberate
differences asserted here: CHECK checks (Go's does nothing), DEL succeeds
with a missing ``CNI_NETNS``, and bridge's CHECK finds the routes sbr moved.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.invoke import Executor, Invocation, SubprocessExecutor
from cnilib.netlink import add_rule, open_netns, run_in_netns
from cnilib.plugins._executor import InProcessExecutor
from cnilib.plugins._hostside import validate_expected_interface_ips, validate_expected_routes
from cnilib.plugins._registry import load_plugin
from cnilib.results import decode_result
from cnilib.results.v100 import IPConfig
from cnilib.testing import NetNS
from tests.privileged._bridge_world import Side
from tests.privileged._kernel import GO_PLUGINS, JSON, go_plugin_marks, plugin_output
from tests.privileged._link_world import MakeNS, add_veth, install_plugins
from tests.privileged._ping import pings

pytestmark = go_plugin_marks()

CID = "ctr-sbr"
IMPLS = ("go", "py")

V4 = [
    {"address": "10.61.0.5/24", "gateway": "10.61.0.1", "interface": 0},
    {"address": "10.61.0.6/24", "interface": 0},
]
V6 = [{"address": "fd61::5/64", "gateway": "fd61::1", "interface": 0}]


def _prev(ctr: NetNS, version: str, ips: list[JSON]) -> JSON:
    """A ``prevResult`` of *version* naming ``eth0`` and *ips*."""
    if version in ("0.1.0", "0.2.0"):
        prev: JSON = {"cniVersion": version}
        for ipc in ips:
            key = "ip6" if ":" in ipc["address"] else "ip4"
            if key not in prev:
                entry = {"ip": ipc["address"]}
                if "gateway" in ipc:
                    entry["gateway"] = ipc["gateway"]
                prev[key] = entry
        return prev
    prev = {
        "cniVersion": version,
        "interfaces": [{"name": "eth0", "sandbox": ctr.path}],
        "ips": [dict(ipc) for ipc in ips],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.62.0.0/16", "gw": "10.61.0.1"}],
    }
    if version in ("0.3.1", "0.4.0"):
        for ipc in prev["ips"]:
            ipc["version"] = "6" if ":" in ipc["address"] else "4"
    return prev


@dataclass
class World:
    """A node and a container namespace with ``eth0`` addressed and routed; sbr by Go or us."""

    node: NetNS
    ctr: NetNS
    executors: dict[str, tuple[Executor, tuple[str, ...]]] = field(default_factory=dict)

    def conf(
        self,
        version: str = "1.0.0",
        ips: list[JSON] | None = None,
        *,
        prev: bool = True,
        **keys: Any,
    ) -> JSON:
        """An sbr config; ``prevResult`` holds *ips* (default: two IPv4, one IPv6)."""
        conf: JSON = {"cniVersion": version, "name": "sbrnet", "type": "sbr", **keys}
        if prev:
            conf["prevResult"] = _prev(self.ctr, version, V4 + V6 if ips is None else ips)
        return conf

    def call(
        self, impl: str, command: str, conf: JSON, *, ifname: str = "eth0", netns: str | None = None
    ) -> JSON | None:
        """Run *command*; its stdout as JSON (None when empty), the netns path normalised."""
        executor, path = self.executors[impl]
        out = executor.exec(
            Invocation(
                command=command,
                plugin_type="sbr",
                stdin=json.dumps(conf).encode(),
                container_id=CID,
                netns=self.ctr.path if netns is None else netns,
                ifname=ifname,
                path=path,
            )
        )
        return plugin_output(out, self.ctr.path)

    def error(self, impl: str, command: str, conf: JSON, **kw: Any) -> cnilib.CNIError:
        """*command* that must fail: the error."""
        with pytest.raises(cnilib.CNIError) as info:
            self.call(impl, command, conf, **kw)
        return info.value

    def state(self) -> list[str]:
        """The container's rules and routes of every table, both families."""
        return routing_state(self.ctr)


def routing_state(ns: NetNS) -> list[str]:
    """``ip -d rule`` and ``ip -d route show table all`` of *ns* (v4 and v6), one
    normalised line each (veth names and link-local addresses masked), sorted (the
    kernel lists the routes of different links in no fixed order)."""
    lines = []
    for family in ("-4", "-6"):
        lines += ns.exec("ip", "-d", family, "rule").stdout.splitlines()
        lines += ns.exec("ip", "-d", family, "route", "show", "table", "all").stdout.splitlines()
    lines = [re.sub(r"veth[0-9a-f]{8}", "<veth>", " ".join(line.split())) for line in lines]
    return sorted(re.sub(r"fe80::[0-9a-f:]+ ", "<link-local> ", line) for line in lines)


def source_rules(state: list[str]) -> list[str]:
    """The ``from <address>`` rules in *state*."""
    return [line for line in state if re.match(r"\d+: from [0-9a-f.:]+ lookup", line)]


def _world(make_ns: MakeNS, bin_dir: Path | None = None) -> World:
    node, ctr = make_ns(), make_ns()
    ctr.exec("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "p0")
    for name in ("eth0", "p0"):
        ctr.exec("ip", "link", "set", name, "up")
    ctr.exec("ip", "addr", "add", "10.61.0.5/24", "dev", "eth0")
    ctr.exec("ip", "addr", "add", "10.61.0.6/24", "dev", "eth0")
    ctr.exec("ip", "addr", "add", "fd61::5/64", "dev", "eth0", "nodad")
    ctr.exec("ip", "route", "add", "default", "via", "10.61.0.1", "dev", "eth0")
    ctr.exec("ip", "route", "add", "10.62.0.0/16", "via", "10.61.0.1", "dev", "eth0")
    ctr.exec("ip", "route", "add", "10.63.0.0/16", "dev", "eth0", "mtu", "1400")
    ctr.exec("ip", "-6", "route", "add", "default", "via", "fd61::1", "dev", "eth0")
    world = World(node, ctr)
    go = SubprocessExecutor(wrapper=node.exec_prefix, timeout=30.0)
    world.executors["go"] = (go, (str(GO_PLUGINS),))
    ours = InProcessExecutor(
        {"sbr": load_plugin("sbr")}, builtins=False, installed=False, host_netns=node.path
    )
    world.executors["py"] = (ours, (str(GO_PLUGINS),))
    if bin_dir is not None:
        world.executors["exe"] = (go, (str(bin_dir),))
    return world


@pytest.fixture
def worlds(cnilib_container_netns: MakeNS) -> dict[str, World]:
    """One world per implementation (Go's, ours)."""
    return {impl: _world(cnilib_container_netns) for impl in IMPLS}


@pytest.fixture
def world(cnilib_container_netns: MakeNS) -> World:
    """One world both implementations act on (cross ADD/DEL)."""
    return _world(cnilib_container_netns)


# ------------------------------------------------------------------ ADD / CHECK / DEL

IP_SETS = {"v4-v4-v6": V4 + V6, "v4": V4[:1], "v6": V6, "v4-no-gateway": V4[1:]}


@pytest.mark.parametrize("version", ["1.0.0", "0.4.0", "0.3.1", "0.2.0", "0.1.0"])
@pytest.mark.parametrize("ips", list(IP_SETS))
def test_add_check_del_same_as_go(worlds: dict[str, World], ips: str, version: str) -> None:
    """ADD: the same rules, tables and result as Go's (a table per address from 100 up,
    the interface's routes moved there); CHECK passes; DEL removes the rules, as Go's."""
    seen: dict[str, list[Any]] = {}
    for impl, w in worlds.items():
        conf = w.conf(version, IP_SETS[ips])
        result = w.call(impl, "ADD", conf)
        after = w.state()
        if version not in ("0.1.0", "0.2.0", "0.3.1"):
            w.call(impl, "CHECK", {**conf, "prevResult": result})
        w.call(impl, "DEL", conf)
        seen[impl] = [result, after, w.state()]
        assert source_rules(after)
        assert not source_rules(w.state())
    assert seen["py"] == seen["go"]


def test_routes_moved_as_go(worlds: dict[str, World]) -> None:
    """What Go's ADD makes, spelled out: table 100 for 10.61.0.5 (its gateway's default
    route, the routes through its subnet, the generic ones, a multicast route staying
    multicast), 101 for 10.61.0.6 and 102 for fd61::5; nothing of eth0's left in main."""
    for w in worlds.values():
        w.ctr.exec("ip", "route", "add", "multicast", "239.1.0.0/16", "dev", "eth0")
    w = worlds["py"]
    w.call("py", "ADD", w.conf())
    state = w.state()
    assert source_rules(state) == [
        "32764: from 10.61.0.6 lookup 101 proto unspec",
        "32765: from 10.61.0.5 lookup 100 proto unspec",
        "32765: from fd61::5 lookup 102 proto unspec",
    ]
    table100 = [line for line in state if " table 100 " in line and "." in line]
    assert table100 == [
        "multicast 239.1.0.0/16 dev eth0 table 100 proto boot scope link",
        "unicast 10.61.0.0/24 dev eth0 table 100 proto kernel scope link src 10.61.0.5",
        "unicast 10.62.0.0/16 via 10.61.0.1 dev eth0 table 100 proto boot scope global",
        "unicast 10.63.0.0/16 dev eth0 table 100 proto boot scope link mtu 1400",
        "unicast default via 10.61.0.1 dev eth0 table 100 proto boot scope global",
    ]
    assert not [line for line in state if "dev eth0 table main" in line]
    g = worlds["go"]
    g.call("go", "ADD", g.conf())
    assert g.state() == state


@pytest.mark.parametrize(("adder", "deleter"), [("go", "py"), ("py", "go")])
def test_del_removes_the_other_ones_rules(world: World, adder: str, deleter: str) -> None:
    """Go's DEL undoes our ADD's rules and ours Go's; a second DEL is a no-op."""
    before = source_rules(world.state())
    conf = world.conf()
    world.call(adder, "ADD", conf)
    assert len(source_rules(world.state())) == 3
    world.call(deleter, "DEL", conf)
    world.call("py", "DEL", conf)
    assert source_rules(world.state()) == before == []


def test_first_unused_table(worlds: dict[str, World]) -> None:
    """A rule already looking up table 100 moves the choice to 101, as Go."""
    states = {}
    for impl, w in worlds.items():
        w.ctr.exec("ip", "rule", "add", "fwmark", "7", "lookup", "100")
        w.call(impl, "ADD", w.conf(ips=V4[:1]))
        states[impl] = w.state()
        assert "32764: from 10.61.0.5 lookup 101 proto unspec" in states[impl]
    assert states["py"] == states["go"]


def test_del_without_link_or_netns_succeeds(world: World) -> None:
    """Ours: DEL succeeds with the interface gone (latest Go; 1.1.1 fails), and with a
    missing or empty ``CNI_NETNS`` (Go fails and even creates a file at a missing path)."""
    conf = world.conf()
    world.call("py", "ADD", conf)
    world.call("py", "DEL", conf, ifname="nosuch")
    err = world.error("go", "DEL", conf, ifname="nosuch")
    assert err.msg == "Failed to get link nosuch: Link not found"
    missing = "/run/netns/cnilib-sbr-no-such-netns"
    world.call("py", "DEL", conf, netns=missing)
    world.call("py", "DEL", conf, netns="")
    assert not os.path.exists(missing)
    err = world.error("go", "DEL", conf, netns="")
    assert err.msg == "no such file or directory"


@pytest.mark.parametrize(
    ("keys", "prev", "ips", "ifname", "text"),
    [
        ({}, False, None, "eth0", "This plugin must be called as chained plugin"),
        ({}, True, [], "eth0", "No IP addresses supplied on interface: eth0"),
        ({}, True, None, "eth9", "Cannot find network interface eth9: Link not found"),
        (
            {"table": "x"},
            True,
            None,
            "eth0",
            "failed to parse network configuration: json: cannot unmarshal string into "
            "Go struct field PluginConf.table of type int",
        ),
    ],
    ids=["no-prev-result", "no-ips", "no-link", "table-string"],
)
def test_errors_same_as_go(
    worlds: dict[str, World],
    keys: JSON,
    prev: bool,
    ips: list[JSON] | None,
    ifname: str,
    text: str,
) -> None:
    """Go's code and text (1.1.1 ignores ``table``, so only ours for that one); nothing
    changed in the namespace."""
    for impl, w in worlds.items():
        before = w.state()
        conf = w.conf(ips=ips, prev=prev, **keys)
        if impl == "go" and keys:
            continue
        err = w.error(impl, "ADD", conf, ifname=ifname)
        assert (err.code, err.msg) == (999, text)
        assert w.state() == before


def test_addresses_of_other_interfaces_skipped(worlds: dict[str, World]) -> None:
    """An address whose ``interface`` names another interface gets no rule; one with an
    index out of range does (Go assumes it matches)."""
    states = {}
    for impl, w in worlds.items():
        conf = w.conf()
        prev = conf["prevResult"]
        prev["interfaces"].append({"name": "net1"})
        prev["ips"][0]["interface"] = 1
        prev["ips"][1]["interface"] = 7
        w.call(impl, "ADD", conf)
        states[impl] = w.state()
    assert states["py"] == states["go"]
    assert [r.split(": ", 1)[1] for r in source_rules(states["py"])] == [
        "from 10.61.0.6 lookup 100 proto unspec",
        "from fd61::5 lookup 101 proto unspec",
    ]


@pytest.mark.parametrize(
    ("ips", "keys", "text"),
    [
        (V4[:1], {"gateways": ["10.99.0.1"]},
         "Failed to add default route to 10.99.0.1: network is unreachable"),
        ([V4[0], {"address": "10.81.0.5/24", "gateway": "10.99.0.1", "interface": 0}], {},
         "Failed to add default route to 10.99.0.1: network is unreachable"),
    ],
    ids=["first-address", "second-address"],
)  # fmt: skip
def test_failed_add_takes_its_changes_back(
    world: World, ips: list[JSON], keys: JSON, text: str
) -> None:
    """Ours: a failed ADD deletes the rules and routes it added before failing (the second
    case after the first address's table was filled); Go's leaves them until DEL. The
    same ADD, fixed, then gets table 100."""
    world.ctr.exec("ip", "addr", "add", "10.81.0.5/24", "dev", "eth0")
    before = world.state()
    err = world.error("py", "ADD", world.conf(ips=ips, **keys))
    assert (err.code, err.msg) == (999, text)
    assert world.state() == before
    world.call("py", "ADD", world.conf(ips=V4[:1]))
    assert "32765: from 10.61.0.5 lookup 100 proto unspec" in world.state()


# ---------------------------------------------------------------------------- CHECK


@pytest.mark.parametrize(
    ("drift", "text"),
    [
        (
            ("ip", "rule", "del", "from", "10.61.0.6", "lookup", "101"),
            "Expected rule from 10.61.0.6 for interface eth0 not found",
        ),
        (
            ("ip", "route", "del", "10.62.0.0/16", "table", "100"),
            "Expected Route 10.62.0.0/16 via 10.61.0.1 not found in table 100 "
            "(rule from 10.61.0.5, interface eth0)",
        ),
        (
            ("ip", "route", "del", "default", "table", "100"),
            "Expected Route 0.0.0.0/0 via 10.61.0.1 not found in table 100 "
            "(rule from 10.61.0.5, interface eth0)",
        ),
        (
            ("ip", "-6", "route", "del", "fd61::/64", "table", "102"),
            "Expected Route fd61::/64 not found in table 102 (rule from fd61::5, interface eth0)",
        ),
    ],
    ids=["rule", "route", "default", "subnet-v6"],
)
def test_check_finds_drift_go_does_not(
    worlds: dict[str, World], drift: tuple[str, ...], text: str
) -> None:
    """Our CHECK fails once a rule or a moved route is gone; Go's CHECK is a no-op."""
    for impl, w in worlds.items():
        conf = w.conf()
        w.call(impl, "ADD", conf)
        w.call(impl, "CHECK", conf)
        w.ctr.exec(*drift)
        if impl == "go":
            w.call(impl, "CHECK", conf)
            continue
        err = w.error(impl, "CHECK", conf)
        assert (err.code, err.msg) == (999, text)


def test_check_two_subnets_route_without_gateway(world: World) -> None:
    """A ``prevResult`` route without a gateway went via the family's first gateway
    (10.61.0.1), so ADD copies it to 10.61.0.5's table only; CHECK does not look for it
    in the table of 10.81.0.5, whose subnet that gateway is not in."""
    world.ctr.exec("ip", "addr", "add", "10.81.0.5/24", "dev", "eth0")
    conf = world.conf(ips=[V4[0], {"address": "10.81.0.5/24", "interface": 0}])
    conf["prevResult"]["routes"] = [{"dst": "10.62.0.0/16"}]
    world.call("py", "ADD", conf)
    state = world.state()
    assert [line for line in state if line.startswith("unicast 10.62.0.0/16")] == [
        "unicast 10.62.0.0/16 via 10.61.0.1 dev eth0 table 100 proto boot scope global"
    ]
    world.call("py", "CHECK", conf)
    world.ctr.exec("ip", "route", "del", "10.62.0.0/16", "table", "100")
    err = world.error("py", "CHECK", conf)
    assert err.msg == (
        "Expected Route 10.62.0.0/16 not found in table 100 (rule from 10.61.0.5, interface eth0)"
    )


# ------------------------------------------------------------------------ latest keys


def test_table_key_rules_only(world: World) -> None:
    """``table`` (latest Go): every address's rule looks up that table, no route moves;
    DEL removes only the rules of that table; CHECK wants the rules."""
    before = world.state()
    world.ctr.exec("ip", "rule", "add", "from", "10.61.0.5", "lookup", "300")
    conf = world.conf(table=5001)
    world.call("py", "ADD", conf)
    state = world.state()
    assert [r.split(": ", 1)[1] for r in source_rules(state)] == [
        "from 10.61.0.6 lookup 5001 proto unspec",
        "from 10.61.0.5 lookup 5001 proto unspec",
        "from 10.61.0.5 lookup 300 proto unspec",
        "from fd61::5 lookup 5001 proto unspec",
    ]
    assert [line for line in state if "rule" not in line and "lookup" not in line] == [
        line for line in before if "lookup" not in line
    ]
    world.call("py", "CHECK", conf)
    world.call("py", "DEL", conf)
    assert [r.split(": ", 1)[1] for r in source_rules(world.state())] == [
        "from 10.61.0.5 lookup 300 proto unspec"
    ]
    err = world.error("py", "CHECK", conf)
    assert err.msg == "Expected rule from 10.61.0.5 lookup 5001 for interface eth0 not found"


def test_gateways_key(world: World) -> None:
    """``gateways`` (latest Go): the default route of each family's table goes via the
    configured gateway instead of ``prevResult``'s; but a default route of the
    interface's in main, copied after it, replaces it (as in Go). CHECK passes either way."""
    conf = world.conf(gateways=["10.61.0.254", "fd61::fe"])
    world.ctr.exec("ip", "-6", "route", "del", "default", "via", "fd61::1")
    world.call("py", "ADD", conf)
    state = world.state()
    for table in (100, 101):
        line = f"unicast default via 10.61.0.1 dev eth0 table {table} proto boot scope global"
        assert line in state
    assert any(line.startswith("unicast default via fd61::fe dev eth0 table 102") for line in state)
    world.call("py", "CHECK", conf)


@pytest.mark.parametrize(
    ("gateways", "text"),
    [
        (["10.0.0.1", "fd00::1", "10.0.0.2"], "gateways list cannot contain more than 2 entries "
         "(one IPv4, one IPv6)"),
        (["10.0.0.1/24"], "invalid static gateway IP address: 10.0.0.1/24"),
        (["10.0.0.1", "10.0.0.2"], "gateways list contains multiple IPv4 addresses: "
         "10.0.0.1 and 10.0.0.2"),
        (["fd00::1", "fd00::2"], "gateways list contains multiple IPv6 addresses: "
         "fd00::1 and fd00::2"),
    ],
)  # fmt: skip
def test_gateways_refused_before_any_change(world: World, gateways: list[str], text: str) -> None:
    """Go's texts; the namespace is untouched."""
    before = world.state()
    err = world.error("py", "ADD", world.conf(gateways=gateways))
    assert (err.code, err.msg) == (999, text)
    assert world.state() == before


def test_add_source_hints(world: World) -> None:
    """``addSourceHints`` (latest Go): the subnet route stays in main with the address as
    source; the interface's other routes leave main; the tables are as without it."""
    world.call("py", "ADD", world.conf(ips=V4[:1], addSourceHints=True))
    main = [line for line in world.state() if "dev eth0 table main" in line]
    assert main == [
        "unicast 10.61.0.0/24 dev eth0 table main proto boot scope link src 10.61.0.5",
        "unicast 10.63.0.0/16 dev eth0 table main proto boot scope link mtu 1400",
    ]
    assert "unicast default via 10.61.0.1 dev eth0 table 100 proto boot scope global" in (
        world.state()
    )


def test_versions_status_gc(world: World) -> None:
    """Every spec version (1.1.0 too, which 1.1.1 lacks); STATUS and GC succeed; an ADD at
    1.1.0 works."""
    executor, _ = world.executors["py"]
    info = executor.version_info("sbr", ())
    assert info.supported_versions == ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0",
                                       "1.1.0")  # fmt: skip
    for command in ("STATUS", "GC"):
        conf = {"cniVersion": "1.1.0", "name": "s", "type": "sbr", "cni.dev/valid-attachments": []}
        executor.exec(
            Invocation(
                command=command, plugin_type="sbr", path=("/x",), stdin=json.dumps(conf).encode()
            )
        )
    conf = world.conf("1.1.0")
    world.call("py", "ADD", conf)
    world.call("py", "CHECK", conf)
    world.call("py", "DEL", conf)


def test_flock_on_the_netns_as_go(world: World) -> None:
    """ADD waits for the exclusive ``flock`` on the namespace file that Go's sbr takes."""
    fd = os.open(world.ctr.path, os.O_RDONLY)
    done = threading.Event()
    errors: list[BaseException] = []

    def add() -> None:
        try:
            world.call("py", "ADD", world.conf())
        except BaseException as exc:  # reported below
            errors.append(exc)
        done.set()

    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        thread = threading.Thread(target=add)
        thread.start()
        assert not done.wait(0.5)
        assert source_rules(world.state()) == []
    finally:
        os.close(fd)
    thread.join(30)
    assert errors == []
    assert len(source_rules(world.state())) == 3


def test_namespace_file_gone_before_the_lock(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The runtime deletes the namespace file between sbr opening the namespace and
    locking its file: DEL succeeds (the namespace is going away); ADD fails with a
    cnilib error naming the path, not an OSError."""
    from cnilib.plugins.meta import sbr

    gone = tmp_path / "netns-gone"
    gone.touch()
    real_lock = sbr.netns_lock

    def lock_after_removal(path: str) -> Any:
        gone.unlink(missing_ok=True)
        return real_lock(path)

    monkeypatch.setattr(sbr, "netns_lock", lock_after_removal)
    monkeypatch.setattr(sbr, "open_netns", lambda path: open_netns(world.ctr.path))
    world.call("py", "DEL", world.conf(), netns=str(gone))
    gone.touch()
    monkeypatch.setattr(sbr, "container_netns", lambda req: open_netns(world.ctr.path))
    err = world.error("py", "ADD", world.conf(), netns=str(gone))
    assert err.msg == f"netns: open {gone}: No such file or directory"
    with (
        pytest.raises(cnilib.PluginError, match='failed to lock netns "/dev/null/x": Not a'),
        real_lock("/dev/null/x"),
    ):
        pass


# --------------------------------------------------------------------- executable


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """cnilib's plugins installed as executables."""
    d = tmp_path / "bin"
    d.mkdir()
    return install_plugins(d)


def test_installed_executable_same_as_go(cnilib_container_netns: MakeNS, bin_dir: Path) -> None:
    """The installed ``sbr`` executable (exec'd as Go's is) gives Go's result and state."""
    seen = {}
    for impl in ("go", "exe"):
        w = _world(cnilib_container_netns, bin_dir)
        conf = w.conf()
        result = w.call(impl, "ADD", conf)
        if result is not None:
            result["interfaces"][0]["sandbox"] = "<netns>"
        seen[impl] = (result, w.state())
        w.call(impl, "CHECK", conf)
        w.call(impl, "DEL", conf)
        assert not source_rules(w.state())
    assert seen["exe"] == seen["go"]


# --------------------------------------------------------- _hostside with moved routes


def test_validate_expected_routes_sees_moved_routes_only(world: World) -> None:
    """bridge's CHECK helpers: a route sbr moved (to a table a ``from`` rule of the route's
    interface looks up) counts; a missing route, or one in a table no such rule looks up,
    still fails."""
    conf = world.conf(ips=V4[:1])
    world.call("py", "ADD", conf)
    prev = decode_result(conf["prevResult"])
    ips = [IPConfig(address=ipc.address, gateway=ipc.gateway) for ipc in prev.as_v1().ips]
    run_in_netns(world.ctr.path, validate_expected_routes, prev.as_v1().routes, "eth0")
    run_in_netns(world.ctr.path, validate_expected_interface_ips, "eth0", ips)
    missing = decode_result({"cniVersion": "1.0.0", "routes": [{"dst": "10.64.0.0/16"}]})
    with pytest.raises(cnilib.CNIError, match=re.escape("Expected Route 10.64.0.0/16 not found")):
        run_in_netns(world.ctr.path, validate_expected_routes, missing.as_v1().routes, "eth0")
    world.ctr.exec("ip", "route", "del", "10.62.0.0/16", "table", "100")
    with pytest.raises(
        cnilib.CNIError, match=re.escape("Expected Route 10.62.0.0/16 via 10.61.0.1")
    ):
        run_in_netns(world.ctr.path, validate_expected_routes, prev.as_v1().routes, "eth0")
    # A table holding the route but looked up by no rule of eth0's addresses: not enough.
    world.ctr.exec("ip", "route", "add", "10.62.0.0/16", "via", "10.61.0.1", "dev", "eth0",
                  "onlink", "table", "200")  # fmt: skip
    with pytest.raises(cnilib.CNIError, match=re.escape("Expected Route 10.62.0.0/16")):
        run_in_netns(world.ctr.path, validate_expected_routes, prev.as_v1().routes, "eth0")
    run_in_netns(world.ctr.path, add_rule, 200, src="10.61.0.5/32")
    run_in_netns(world.ctr.path, validate_expected_routes, prev.as_v1().routes, "eth0")
    # A rule from an address that is not eth0's does not count either.
    world.ctr.exec("ip", "route", "add", "10.65.0.0/16", "via", "10.61.0.1", "dev", "eth0",
                  "onlink", "table", "201")  # fmt: skip
    world.ctr.exec("ip", "rule", "add", "from", "10.99.0.1", "lookup", "201")
    routes = decode_result({"cniVersion": "1.0.0", "routes": [{"dst": "10.65.0.0/16"}]})
    with pytest.raises(cnilib.CNIError, match=re.escape("Expected Route 10.65.0.0/16")):
        run_in_netns(world.ctr.path, validate_expected_routes, routes.as_v1().routes, "eth0")


# --------------------------------------------------------------------------- chains

BRIDGE = "cnisbr0"


def _chain_side(kind: str, make_ns: MakeNS, tmp: Path) -> Side:
    node = make_ns()
    if kind == "go":
        return Side("go", node, make_ns, tmp)
    return Side("py", node, make_ns, tmp, executor=InProcessExecutor(host_netns=node.path))


def _bridge(side: Side, bridge: str, subnet: str, *, gateway: bool, routes: bool) -> JSON:
    ipam: JSON = {
        "type": "host-local",
        "ranges": [[{"subnet": subnet}]],
        "dataDir": str(side.tmp / "ipam"),
    }
    if routes:
        ipam["routes"] = [{"dst": "0.0.0.0/0"}, {"dst": "10.68.0.0/16"}]
    return {"type": "bridge", "bridge": bridge, "isGateway": gateway, "ipam": ipam}


def _conflist(name: str, *plugins: JSON) -> cnilib.NetworkConfigList:
    raw = {"cniVersion": "1.0.0", "name": name, "plugins": list(plugins)}
    return cnilib.conflist_from_bytes(json.dumps(raw).encode())


@pytest.fixture
def chain_sides(cnilib_container_netns: MakeNS, tmp_path: Path) -> Iterator[dict[str, Side]]:
    """bridge + host-local + sbr: Go's binaries, and ours in process."""
    sides = {k: _chain_side(k, cnilib_container_netns, tmp_path / k) for k in IMPLS}
    try:
        yield sides
    finally:
        for side in sides.values():
            side.cni.close()


def test_bridge_chain_same_as_go_and_check_passes(chain_sides: dict[str, Side]) -> None:
    """bridge → sbr: the same result and container routing as Go's chain. CHECK passes
    ours; Go 1.1.1's fails in bridge, which looks for the moved subnet route in main. DEL
    leaves no rule, no route of the container's."""
    results, states = {}, {}
    for impl, side in chain_sides.items():
        conf = _conflist(
            "sbrchain", _bridge(side, BRIDGE, "10.67.0.0/24", gateway=True, routes=True),
            {"type": "sbr"},
        )  # fmt: skip
        rt = side.rt()
        res = side.cni.add_network_list(conf, rt)
        assert res is not None
        obj = json.loads(res.to_json().replace(side.ctr().path, "<netns>"))
        obj["interfaces"] = [{"name": i["name"][:4]} for i in obj["interfaces"]]
        results[impl] = obj
        states[impl] = routing_state(side.ctr())
        if impl == "py":
            side.cni.check_network_list(conf, rt)
        else:
            with pytest.raises(cnilib.CNIError) as info:
                side.cni.check_network_list(conf, rt)
            assert str(info.value) == (
                'plugin type="bridge" failed (check): '
                "Failed to find Gateway 10.67.0.1 for interface eth0"
            )
        side.cni.delete_network_list(conf, rt)
        after = routing_state(side.ctr())
        assert not source_rules(after)
        assert not [line for line in after if "eth0" in line]
    assert results["py"] == results["go"]
    assert states["py"] == states["go"]
    assert "32765: from 10.67.0.2 lookup 100 proto unspec" in states["py"]


def test_bridge_chain_check_still_fails_for_a_missing_route(chain_sides: dict[str, Side]) -> None:
    """Ours: once a route sbr moved is deleted from its table, bridge's CHECK fails."""
    side = chain_sides["py"]
    conf = _conflist(
        "sbrchain", _bridge(side, BRIDGE, "10.67.0.0/24", gateway=True, routes=True),
        {"type": "sbr"},
    )  # fmt: skip
    side.cni.add_network_list(conf, side.rt())
    side.cni.check_network_list(conf, side.rt())
    side.ctr().exec("ip", "route", "del", "10.68.0.0/16", "table", "100")
    with pytest.raises(cnilib.CNIError) as info:
        side.cni.check_network_list(conf, side.rt())
    assert 'plugin type="bridge" failed (check)' in str(info.value)
    assert "Expected Route 10.68.0.0/16 not found in routing table" in str(info.value)


def test_check_of_another_interface_not_met_by_sbr_tables(chain_sides: dict[str, Side]) -> None:
    """Ours: a route missing from main fails bridge's CHECK of net1 (no sbr) even though
    eth0's sbr table holds a route to the same destination: only the checked
    interface's own source-routing tables stand in for main."""
    side = chain_sides["py"]
    first = _conflist("sbrfirst", _bridge(side, "cnisbr1", "10.66.1.0/24", gateway=True,
                                          routes=True), {"type": "sbr"})  # fmt: skip
    second = _conflist("sbrsecond", _bridge(side, "cnisbr2", "10.66.2.0/24", gateway=True,
                                            routes=True))  # fmt: skip
    ctr = side.ctr()
    side.cni.add_network_list(first, cnilib.RuntimeConf(CID, ctr.path, "eth0"))
    net1 = cnilib.RuntimeConf(CID, ctr.path, "net1")
    side.cni.add_network_list(second, net1)
    side.cni.check_network_list(second, net1)
    ctr.exec("ip", "route", "del", "default", "dev", "net1")
    with pytest.raises(cnilib.CNIError) as info:
        side.cni.check_network_list(second, net1)
    assert str(info.value) == (
        'plugin type="bridge" failed (check): Expected Route 0.0.0.0/0 not found in routing table'
    )


def test_ptp_chain_check_finds_moved_routes(chain_sides: dict[str, Side]) -> None:
    """Ours: ptp → sbr passes CHECK (ptp finds its gateway route in sbr's table), and
    fails once that route is gone from the table."""
    side = chain_sides["py"]
    ipam: JSON = {"type": "host-local", "ranges": [[{"subnet": "10.77.0.0/24"}]],
                  "dataDir": str(side.tmp / "ipam"), "routes": [{"dst": "0.0.0.0/0"}]}  # fmt: skip
    conf = _conflist("ptpsbr", {"type": "ptp", "ipam": ipam}, {"type": "sbr"})
    side.cni.add_network_list(conf, side.rt())
    assert "32765: from 10.77.0.2 lookup 100 proto unspec" in routing_state(side.ctr())
    side.cni.check_network_list(conf, side.rt())
    side.ctr().exec("ip", "route", "del", "10.77.0.1", "table", "100")
    with pytest.raises(cnilib.CNIError) as info:
        side.cni.check_network_list(conf, side.rt())
    assert str(info.value) == (
        'plugin type="ptp" failed (check): ptp: route 10.77.0.1/32 dev eth0 (scope link) is missing'
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("with_sbr", [True, False], ids=["sbr", "no-sbr"])
def test_replies_leave_through_the_second_interface(
    cnilib_container_netns: MakeNS, tmp_path: Path, impl: str, with_sbr: bool
) -> None:
    """Two bridge networks in one container: eth0's (default route via a gateway that
    does not answer) and net1's (gateway on the node). A client that only routes to
    net1's subnet via the node gets echo replies from net1's address only with sbr
    after net1's bridge: without it the reply follows main's default route out of eth0."""
    side = _chain_side(impl, cnilib_container_netns, tmp_path / impl)
    client = cnilib_container_netns()
    try:
        add_veth(side.node, "cl0", client, "cl1")
        side.node.exec("ip", "addr", "add", "192.168.69.1/24", "dev", "cl0")
        client.exec("ip", "addr", "add", "192.168.69.2/24", "dev", "cl1")
        client.exec("ip", "route", "add", "10.66.2.0/24", "via", "192.168.69.1")
        first = _conflist("sbrfirst", _bridge(side, "cnisbr1", "10.66.1.0/24", gateway=False,
                                              routes=True))  # fmt: skip
        second_plugins = [_bridge(side, "cnisbr2", "10.66.2.0/24", gateway=True, routes=False)]
        if with_sbr:
            second_plugins.append({"type": "sbr"})
        second = _conflist("sbrsecond", *second_plugins)
        ctr = side.ctr()
        side.cni.add_network_list(first, cnilib.RuntimeConf(CID, ctr.path, "eth0"))
        res = side.cni.add_network_list(second, cnilib.RuntimeConf(CID, ctr.path, "net1"))
        assert res is not None
        address = str(res.as_v1().ips[0].address.ip)  # type: ignore[union-attr]
        assert address.startswith("10.66.2.")
        assert pings(client, address, tries=10 if with_sbr else 3) is with_sbr
        side.cni.delete_network_list(second, cnilib.RuntimeConf(CID, ctr.path, "net1"))
        side.cni.delete_network_list(first, cnilib.RuntimeConf(CID, ctr.path, "eth0"))
        assert not source_rules(routing_state(ctr))
    finally:
        side.cni.close()
