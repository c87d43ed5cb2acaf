"""cnilib's in-process macvlan plugin against Debian's Go macvlan (1.1.1), on a real kernel.

Each side has its own node namespace (the host) with the uplink ``up0`` (a
veth whose peer is in a throwaway "lan" namespace) and its own container
namespaces (see :mod:`tests.privileged._link_world`): Go's binary is exec'd
inside its node, ours runs in process with ``host_netns=<node>``. Where Go
1.1.1 has the feature, the result JSON (modulo random MACs and the sandbox
path) and the kernel state of both namespaces (links with kind, macvlan mode,
``bcqueuelen``, MTU, flags, addresses, routes; the container interface's
``arp_notify``; the host-local store) must be equal, and errors must carry
the same code.

cnilib follows the latest upstream macvlan, so these differences from 1.1.1
are asserted as such:

- ``ndisc_notify`` is set to 1 next to ``arp_notify`` (1.1.1 leaves it 0);
- the link's ``txqueuelen`` is the kernel's default (1.1.1 sends 0);
- DEL only parses the configuration: it succeeds with the master gone;
- ``linkInContainer`` (1.1.1 ignores the key), spec version 1.1.0, STATUS;
- a missing master is named: ``failed to lookup master "x": Link not found``;
- CHECK texts start lower-case.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.plugins._executor import InProcessExecutor
from cnilib.plugins._registry import load_plugin
from cnilib.results import ResultV040, ResultV100
from cnilib.testing import NetNS
from tests.privileged import _link_world
from tests.privileged._kernel import (
    GO_PLUGINS,
    IPAM_LEFTOVERS,
    JSON,
    go_plugin_marks,
    ip_json,
    wait_until,
)
from tests.privileged._link_world import (
    CONTAINER_ID,
    MASTER,
    LinkSide,
    MakeNS,
    add_veth,
    check_then_delete_twice,
    install_plugins,
    require_link_kind,
)
from tests.privileged._netstate import assert_same

pytestmark = go_plugin_marks()

V4, V6 = "10.66.1.0/24", "fd00:66:1::/64"
MAC = "02:11:22:33:44:55"
MAC2 = "02:11:22:33:44:66"
MAC3 = "02:11:22:33:44:77"


def host_local(*subnets: str, **extra: Any) -> JSON:
    """A host-local IPAM section with one range set per subnet."""
    return {"type": "host-local", "ranges": [[{"subnet": s}] for s in subnets], **extra}


STATIC = {
    "type": "static",
    "addresses": [{"address": "10.66.2.5/24", "gateway": "10.66.2.1"}],
    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "198.51.100.0/24", "gw": "10.66.2.9"}],
    "dns": {"nameservers": ["10.66.2.53"]},
}


def macvlan(ipam: JSON | None = None, **extra: Any) -> JSON:
    """A macvlan entry on ``up0`` (host-local on :data:`V4` unless *ipam* says; ``{}``: L2)."""
    conf: JSON = {"type": "macvlan", "master": MASTER, **extra}
    ipam = host_local(V4) if ipam is None else ipam
    if ipam:
        conf["ipam"] = ipam
    return conf


CASES: dict[str, JSON] = {
    "default-mode": macvlan(),
    "bridge": macvlan(mode="bridge"),
    "private": macvlan(mode="private"),
    "vepa": macvlan(mode="vepa"),
    "passthru": macvlan(mode="passthru"),
    "mtu-1400": macvlan(mtu=1400),
    "mac-config": macvlan(mac=MAC),
    "static-ipam-dns": macvlan(STATIC, dns={"nameservers": ["10.66.2.53"], "search": ["x.y"]}),
    "l2-no-ipam": macvlan({}, mode="private", mtu=1300),
    "dual-stack": macvlan(host_local(V4, V6)),
}


# ---------------------------------------------------------------------------- fixtures

go = _link_world.go  # the shared fixtures, under this module's names
py = _link_world.py


@pytest.fixture(autouse=True)
def _macvlan_kernel(cnilib_privileged: None) -> None:
    require_link_kind("macvlan")


# ----------------------------------------------------------------------------- helpers


def comparable(state: JSON) -> JSON:
    """*state* without what differs by design: macvlan ``txqlen`` and ``ndisc_notify``."""
    out: JSON = {**state, "ctr_sysctl": {
        k: v for k, v in state["ctr_sysctl"].items() if "ndisc_notify" not in k}}  # fmt: skip
    for where in ("node", "ctr"):
        links = {}
        for name, link in state[where]["links"].items():
            if link["kind"] == "macvlan":
                link = {**link, "details": {**link["details"], "txqlen": "<txqlen>"}}
            links[name] = link
        out[where] = {**state[where], "links": links}
    return out


def assert_same_state(go: LinkSide, py: LinkSide, *, settled: bool = True, **kw: Any) -> JSON:
    """Both sides' kernel and store state agree (but for the documented differences);
    ours sets ``ndisc_notify`` wherever it set ``arp_notify``. Ours, returned."""
    go_state, py_state = go.state(settled=settled, **kw), py.state(settled=settled, **kw)
    assert_same(dump(comparable(py_state)), dump(comparable(go_state)), "between the sides")
    sysctl = py_state["ctr_sysctl"]
    arp = sysctl.get("net/ipv4/conf/eth0/arp_notify")
    if arp is not None:
        assert sysctl.get("net/ipv6/conf/eth0/ndisc_notify") == arp
    return py_state


def both_add(go: LinkSide, py: LinkSide, plugin: JSON, version: str = "1.0.0", **rt: Any) -> JSON:
    """ADD on both sides; the (equal) normalized result."""
    go_res, py_res = go.add(plugin, version, **rt), py.add(plugin, version, **rt)
    assert py_res == go_res
    return py_res


def both_fail(
    go: LinkSide, py: LinkSide, plugin: JSON, **rt: Any
) -> tuple[cnilib.CNIError, cnilib.CNIError]:
    """ADD on both sides must fail with the same code: (Go's error, ours)."""
    go_err, py_err = go.add_error(plugin, **rt), py.add_error(plugin, **rt)
    assert (py_err.code, type(py_err)) == (go_err.code, type(go_err)), (py_err, go_err)
    return go_err, py_err


def dump(state: JSON) -> str:
    """*state* as indented JSON (for a readable diff)."""
    return json.dumps(state, indent=1, sort_keys=True)


_MACS = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", re.IGNORECASE)


def norm_text(msg: str) -> str:
    """An error text without MACs or namespace paths, lower-cased (latest Go lower-cases)."""
    return re.sub(r"/run/netns/\S+", "<netns>", _MACS.sub("<mac>", msg)).lower()


def macvlans(ns: NetNS) -> list[str]:
    """The macvlan links in *ns*."""
    return [
        link["ifname"]
        for link in ip_json(ns, "-d", "link")
        if link.get("linkinfo", {}).get("info_kind") == "macvlan"
    ]


def master_unused(node: NetNS) -> bool:
    """No macvlan holds the master (it drops the promiscuity its macvlans took)."""
    return bool(link(node, MASTER)["promiscuity"] == 0)


def link(ns: NetNS, name: str) -> JSON:
    """``ip -d -j link show <name>`` in *ns*."""
    return ip_json(ns, "-d", "link", "show", name)[0]


# ------------------------------------------------------------------- ADD / CHECK / DEL


@pytest.mark.parametrize("case", list(CASES))
def test_add_check_del_match_go(go: LinkSide, py: LinkSide, case: str) -> None:
    """Same result and state after ADD and after DEL; CHECK passes on both; DEL twice is fine."""
    plugin = CASES[case]
    for side in (go, py):
        side.keep_macs = [MAC]
    res = both_add(go, py, plugin)
    state = assert_same_state(go, py)
    eth0 = state["ctr"]["links"]["eth0"]
    assert eth0["kind"] == "macvlan"
    assert eth0["details"]["mode"] == plugin.get("mode", "bridge")
    assert "UP" in eth0["flags"]
    # Promiscuous-free: the plugin sets promiscuous mode on neither link. (The
    # kernel counts the master promiscuous once a macvlan is up on a device
    # without unicast filtering, a veth here: as much for Go's.)
    container, master = link(py.ctr(), "eth0"), link(py.node, MASTER)
    assert container["promiscuity"] == 0
    assert "PROMISC" not in container["flags"]
    assert "PROMISC" not in master["flags"]
    assert master["promiscuity"] == link(go.node, MASTER)["promiscuity"]
    if plugin.get("ipam"):
        assert res["ips"]
        assert eth0["addrs"]
        assert state["ctr_sysctl"]["net/ipv6/conf/eth0/ndisc_notify"] == "1"
    else:  # L2: up, no address, no result IPs
        assert "ips" not in res
        assert eth0["addrs"] == []
    after = check_then_delete_twice(go, py, plugin, assert_same_state)
    assert py.state(settled=False) == after


def test_results_in_detail(go: LinkSide, py: LinkSide) -> None:
    """The result names one interface (the container's, with its MAC and the netns path as
    given) and points every IP at it; DNS comes from the configuration."""
    plugin = macvlan(STATIC, mac=MAC, dns={"nameservers": ["10.66.2.53"]})
    py.keep_macs = go.keep_macs = [MAC]
    res = both_add(go, py, plugin)
    assert res == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": MAC, "sandbox": "<netns>"}],
        "ips": [{"interface": 0, "address": "10.66.2.5/24", "gateway": "10.66.2.1"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "198.51.100.0/24", "gw": "10.66.2.9"}],
        "dns": {"nameservers": ["10.66.2.53"]},
    }
    raw = py.cni.cached_result(py.conflist(plugin), py.rt())
    assert isinstance(raw, ResultV100)
    assert raw.interfaces[0].sandbox == py.ctr().path


def test_txqueuelen_is_the_kernel_default(go: LinkSide, py: LinkSide) -> None:
    """Latest Go leaves the queue length to the kernel (1000); 1.1.1 sent 0."""
    both_add(go, py, macvlan())
    assert link(go.ctr(), "eth0").get("txqlen", 0) == 0
    assert link(py.ctr(), "eth0")["txqlen"] == 1000


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_spec_versions(go: LinkSide, py: LinkSide, version: str) -> None:
    """The result in the configuration's version; CHECK from 0.4.0 on."""
    plugin = macvlan()
    res = both_add(go, py, plugin, version)
    assert res["cniVersion"] == version
    assert_same_state(go, py)
    for side in (go, py):
        if version != "0.3.1":
            side.check(plugin, version)
        side.delete(plugin, version)
    assert py.allocated() == set()


def test_spec_1_1_0_is_ours_only(go: LinkSide, py: LinkSide) -> None:
    """1.1.0: ours ADDs, CHECKs, answers STATUS and DELs; Go 1.1.1 does not speak it."""
    plugin = macvlan()
    with pytest.raises(cnilib.CNIError) as info:
        go.add(plugin, "1.1.0")
    assert info.value.code == 1
    res = py.add(plugin, "1.1.0")
    assert res["cniVersion"] == "1.1.0"
    assert res["ips"][0]["address"] == "10.66.1.2/24"
    py.check(plugin, "1.1.0")
    py.cni.status_network_list(py.conflist(plugin, version="1.1.0"))
    py.delete(plugin, "1.1.0")
    assert macvlans(py.ctr()) == []
    assert py.allocated() == set()


def test_gc_reaches_ipam(py: LinkSide) -> None:
    """GC (1.1.0) passes to IPAM: host-local frees an address no valid attachment holds
    (one allocated behind the runtime's back), and keeps the valid container's."""
    plugin = macvlan()
    res = py.add(plugin, "1.1.0")
    kept = res["ips"][0]["address"].split("/")[0]
    store = py.data_dir / py.network
    (store / "10.66.1.99").write_bytes(b"ghost-container\r\neth0")
    assert py.allocated() == {kept, "10.66.1.99"}
    py.cni.gc_network_list(py.conflist(plugin, version="1.1.0"), [(CONTAINER_ID, "eth0")])
    assert py.allocated() == {kept}
    assert macvlans(py.ctr()) == ["eth0"]
    py.delete(plugin, "1.1.0")


def test_status_passes_ipam_through(py: LinkSide) -> None:
    """STATUS asks the IPAM plugin: host-local is fine, an unknown IPAM type is not."""
    py.cni.status_network_list(py.conflist(macvlan(), version="1.1.0"))
    py.cni.status_network_list(py.conflist(macvlan({}), version="1.1.0"))
    with pytest.raises(cnilib.CNIError):
        py.cni.status_network_list(py.conflist(macvlan({"type": "nosuch-ipam"}), version="1.1.0"))


# -------------------------------------------------------------------------------- MACs


@pytest.mark.parametrize(
    ("config_mac", "args", "caps", "expected"),
    [
        (MAC, {}, {}, MAC),
        ("", {"MAC": MAC2}, {}, MAC2),
        (MAC, {"MAC": MAC2}, {}, MAC2),  # CNI_ARGS wins over the configuration
        ("", {}, {"mac": MAC3}, MAC3),
        (MAC, {"MAC": MAC2}, {"mac": MAC3}, MAC3),  # runtimeConfig wins over both
    ],
    ids=["config", "cni-args", "args-over-config", "runtime-config", "runtime-over-all"],
)
def test_mac_sources(
    go: LinkSide, py: LinkSide, config_mac: str, args: dict[str, str], caps: JSON, expected: str
) -> None:
    """The MAC from ``mac``, ``CNI_ARGS MAC=`` or ``runtimeConfig.mac`` (capability ``mac``).
    host-local refuses CNI_ARGS it does not know, hence ``IgnoreUnknown``."""
    if args:
        args = {"IgnoreUnknown": "1", **args}
    plugin = macvlan(capabilities={"mac": True})
    if config_mac:
        plugin["mac"] = config_mac
    for side in (go, py):
        side.keep_macs = [expected]
    res = both_add(go, py, plugin, args=args, capability_args=caps)
    assert res["interfaces"][0]["mac"] == expected
    assert_same_state(go, py)
    assert link(py.ctr(), "eth0")["address"] == expected
    for side in (go, py):
        side.check(plugin, args=args, capability_args=caps)
        side.delete(plugin, args=args, capability_args=caps)


# ----------------------------------------------------------------------- master and mode


def test_passthru_is_one_per_master(go: LinkSide, py: LinkSide) -> None:
    """A second passthru macvlan on the same master fails like Go's and leaves nothing."""
    plugin = macvlan(mode="passthru")
    both_add(go, py, plugin)
    _, py_err = both_fail(go, py, plugin, i=1, container_id="second")
    assert py_err.code == 999
    assert macvlans(py.ctr(1)) == []
    assert macvlans(go.ctr(1)) == []
    assert len(py.allocated()) == len(go.allocated()) == 1
    assert_same_state(go, py)
    assert_same_state(go, py, i=1)


def test_mtu_above_the_masters(go: LinkSide, py: LinkSide) -> None:
    """An MTU above the master's is refused with Go's code and text; nothing is allocated."""
    go_err, py_err = both_fail(go, py, macvlan(mtu=9000))
    assert py_err.code == 999
    assert py_err.msg == go_err.msg == "invalid MTU 9000, must be [0, master MTU(1500)]"
    assert py.store() == {}
    assert macvlans(py.ctr()) == []


def _default_route_via(side: LinkSide, dev: str) -> None:
    """A second uplink ``up1`` (lan peer ``lan1``); the node's default route goes via *dev*."""
    assert side.lan is not None
    add_veth(side.node, "up1", side.lan, "lan1")
    side.node.exec("ip", "addr", "add", "192.0.2.10/24", "dev", dev)
    side.node.exec("ip", "route", "add", "default", "via", "192.0.2.1", "dev", dev)


def test_master_defaults_to_the_default_route_interface(go: LinkSide, py: LinkSide) -> None:
    """No ``master``: the interface of the node's default route (here the second uplink)."""
    plugin = macvlan()
    del plugin["master"]
    for side in (go, py):
        _default_route_via(side, "up1")
    both_add(go, py, plugin)
    assert_same_state(go, py)
    for side in (go, py):
        up1 = link(side.node, "up1")["ifindex"]
        assert link(side.ctr(), "eth0")["link_index"] == up1
        side.check({**plugin, "master": "up1"})
        side.delete(plugin)
    assert py.allocated() == set()


def test_no_master_and_no_default_route(go: LinkSide, py: LinkSide) -> None:
    """No ``master`` and no default route in the node: Go's error."""
    plugin = macvlan()
    del plugin["master"]
    go_err, py_err = both_fail(go, py, plugin)
    assert py_err.msg == go_err.msg == "no default route interface found"
    assert py.store() == {}


def test_link_in_container(go: LinkSide, py: LinkSide) -> None:
    """``linkInContainer``: the master is a link of the container namespace and the macvlan
    is made on it there (ours, as latest Go). Go 1.1.1 ignores the key and looks the master
    up in the node, where there is none."""
    plugin = macvlan(master="cup0", linkInContainer=True)
    for side in (go, py):
        add_veth(side.ctr(), "cup0", side.ctr(), "cup1")
    go_err = go.add_error(plugin)
    assert go_err.msg == "Link not found"
    py.add(plugin)
    eth0 = link(py.ctr(), "eth0")
    assert eth0["linkinfo"]["info_kind"] == "macvlan"
    assert eth0["link"] == "cup0"  # the parent is in the same namespace
    assert py.allocated() == {"10.66.1.2"}
    assert macvlans(py.node) == []
    py.check(plugin)
    py.delete(plugin)
    assert macvlans(py.ctr()) == []
    assert {"cup0", "cup1"} <= set(py.kinds(py.ctr()))
    assert py.allocated() == set()


# ------------------------------------------------------------------------------- CHECK


def _drift_delete(side: LinkSide) -> None:
    side.ctr().exec("ip", "link", "del", "eth0")


def _drift_mac(side: LinkSide) -> None:
    side.ctr().exec("ip", "link", "set", "eth0", "address", MAC2)


def _drift_addr(side: LinkSide) -> None:
    side.ctr().exec("ip", "addr", "flush", "dev", "eth0", "scope", "global")


@pytest.mark.parametrize(
    ("drift", "config", "expected"),
    [
        (_drift_delete, {}, "container interface name in prevresult: eth0 not found"),
        (_drift_mac, {}, "interface eth0 mac <mac> doesn't match container mac: <mac>"),
        (_drift_addr, {}, "failed to match addr 10.66.1.2/24 on interface eth0"),
        (None, {"mode": "vepa"}, "container macvlan mode bridge does not match expected "
                                 "value: vepa"),
    ],
    ids=["link-deleted", "mac-changed", "address-removed", "mode-differs"],
)  # fmt: skip
def test_check_names_the_drift_like_go(
    go: LinkSide, py: LinkSide, drift: Any, config: JSON, expected: str
) -> None:
    """CHECK after a change in the container fails with Go's code; the texts agree but for
    case (latest Go lower-cases them)."""
    plugin = macvlan()
    both_add(go, py, plugin)
    errors = []
    for side in (go, py):
        if drift is not None:
            drift(side)
        with pytest.raises(cnilib.CNIError) as info:
            side.check({**plugin, **config})
        errors.append(info.value)
    go_err, py_err = errors
    assert py_err.code == go_err.code
    assert norm_text(py_err.msg) == norm_text(go_err.msg) == expected


def test_check_needs_the_master(go: LinkSide, py: LinkSide) -> None:
    """CHECK with the master gone fails on both (it is looked up)."""
    plugin = macvlan()
    both_add(go, py, plugin)
    for side in (go, py):
        side.node.exec("ip", "link", "set", MASTER, "name", "gone0")
    with pytest.raises(cnilib.CNIError) as go_info:
        go.check(plugin)
    with pytest.raises(cnilib.CNIError) as py_info:
        py.check(plugin)
    assert py_info.value.code == go_info.value.code
    assert "Link not found" in py_info.value.msg


# --------------------------------------------------------------------------------- DEL


def test_del_after_the_container_netns_is_gone(go: LinkSide, py: LinkSide) -> None:
    """DEL with the namespace already deleted succeeds and releases the address (both)."""
    plugin = macvlan()
    both_add(go, py, plugin)
    for side in (go, py):
        side.ctr().delete()
        side.delete(plugin)
        assert side.allocated() == set()
    for node in (go.node, py.node):  # the kernel dismantles a deleted netns's links later
        wait_until(functools.partial(master_unused, node))
    assert_same_state(go, py, i=1)  # i=1: a fresh, empty container


def test_del_with_empty_netns_releases_ipam(go: LinkSide, py: LinkSide) -> None:
    """DEL with no netns at all (runtime lost it): IPAM released, nothing else touched."""
    plugin = macvlan()
    both_add(go, py, plugin)
    for side in (go, py):
        rt = cnilib.RuntimeConf("ctr-link-diff", "", "eth0")
        side.cni.delete_network_list(side.conflist(plugin), rt)
        assert side.allocated() == set()
        assert macvlans(side.ctr()) == ["eth0"]


def test_del_after_the_master_is_gone(go: LinkSide, py: LinkSide) -> None:
    """The master's deletion takes the macvlan with it. Go 1.1.1's DEL then fails (it
    re-reads the master's MTU) and keeps the address; ours, like latest Go, succeeds."""
    plugin = macvlan()
    both_add(go, py, plugin)
    for side in (go, py):
        side.node.exec("ip", "link", "del", MASTER)
        assert macvlans(side.ctr()) == []
    with pytest.raises(cnilib.CNIError) as info:
        go.delete(plugin)
    assert info.value.msg == "Link not found"
    assert go.allocated() == {"10.66.1.2"}
    py.delete(plugin)
    assert py.allocated() == set()
    py.delete(plugin)


# ------------------------------------------------------------------------- bad configs


@pytest.mark.parametrize(
    ("extra", "go_msg", "py_msg"),
    [
        ({"mode": "foo"}, 'unknown macvlan mode: "foo"', 'unknown macvlan mode: "foo"'),
        ({"master": "nosuch0"}, "Link not found",
         'failed to lookup master "nosuch0": Link not found'),
        ({"mac": "zz"}, "invalid args zz for MAC addr: address zz: invalid MAC address",
         "invalid args zz for MAC addr: address zz: invalid MAC address"),
        ({"mac": "02:11:22:33:44"}, "invalid args 02:11:22:33:44 for MAC addr: address "
         "02:11:22:33:44: invalid MAC address", "invalid args 02:11:22:33:44 for MAC addr: "
         "address 02:11:22:33:44: invalid MAC address"),
        ({"mtu": -1}, "invalid MTU -1, must be [0, master MTU(1500)]",
         "invalid MTU -1, must be [0, master MTU(1500)]"),
    ],
    ids=["unknown-mode", "missing-master", "bad-mac", "short-mac", "negative-mtu"],
)  # fmt: skip
def test_bad_config(go: LinkSide, py: LinkSide, extra: JSON, go_msg: str, py_msg: str) -> None:
    """Refused with Go's code and the text given, before any link or address is made."""
    go_err, py_err = both_fail(go, py, macvlan(**extra))
    assert go_err.msg == go_msg
    assert py_err.msg == py_msg
    assert py.allocated() == set()
    assert macvlans(py.ctr()) == []
    assert_same_state(go, py)


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_layer2_below_030_is_refused_before_anything_is_made(
    go: LinkSide, py: LinkSide, version: str
) -> None:
    """Without IPAM a 0.1.0/0.2.0 result (IP addresses only) cannot describe the
    attachment: ours refuses before making the link (code 1); Go makes it, then
    fails to print its result, and leaves the link in the container."""
    plugin = macvlan({})
    py_err = py.add_error(plugin, version)
    assert py_err.code == 1
    assert py_err.msg.startswith("cannot convert: no valid IP addresses")
    assert macvlans(py.ctr()) == []
    go_err = go.add_error(plugin, version)
    assert "no valid IP addresses" in go_err.msg
    assert macvlans(go.ctr()) == ["eth0"]


@pytest.mark.parametrize("args", [{"cni": {"mac": MAC}}, {"cni": "not an object"}])
def test_args_cni_is_not_read(go: LinkSide, py: LinkSide, args: JSON) -> None:
    """Go's macvlan has no ``args`` in its configuration: ``args.cni.mac`` sets
    nothing and a malformed ``args`` fails nothing, on both sides (without IPAM:
    host-local reads ``args.cni``)."""
    res = both_add(go, py, macvlan({}, args=args))
    assert link(py.ctr(), "eth0")["address"] != MAC
    assert res["interfaces"][0]["mac"] == "<mac>"


def test_del_of_a_bad_config_is_lenient(go: LinkSide, py: LinkSide) -> None:
    """DEL only parses the JSON (latest Go): a missing master does not fail it (1.1.1's does)."""
    plugin = macvlan(master="nosuch0")
    with pytest.raises(cnilib.CNIError, match="Link not found"):
        go.delete(plugin)
    py.delete(plugin)


def test_host_link_named_like_the_container_interface(
    py: LinkSide, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before Linux 6.14 the kernel looks a new link's name up in the namespace the
    request comes from: with an ``eth0`` in the host, making the container's ``eth0``
    from there fails (``EEXIST``). That kernel is emulated here; ADD still gives the
    container its ``eth0`` (under a temporary name, renamed), CHECK and DEL pass, and
    the host's ``eth0`` is untouched."""
    from cnilib import netlink
    from cnilib.plugins import _sublink

    real_add_link = netlink.add_link  # what _sublink calls

    def add_link_before_6_14(name: str, kind: str, **kw: Any) -> None:
        if netlink.find_link(name) is not None:  # on the sender's namespace worker
            raise netlink.NetlinkError(f"add {kind} {name}", "sender", errno.EEXIST)
        real_add_link(name, kind, **kw)

    monkeypatch.setattr(_sublink, "add_link", add_link_before_6_14)
    assert py.lan is not None
    add_veth(py.node, "eth0", py.lan, "lan-eth0")
    res = py.add(macvlan())
    assert [i["name"] for i in res["interfaces"]] == ["eth0"]
    assert link(py.ctr(), "eth0")["linkinfo"]["info_kind"] == "macvlan"
    py.check(macvlan())
    py.delete(macvlan())
    assert macvlans(py.ctr()) == []
    assert link(py.node, "eth0")["linkinfo"]["info_kind"] == "veth"


# ------------------------------------------------------------------------- failed ADDs


def _exhaust(side: LinkSide) -> JSON:
    """A one-address range, its address taken by another container."""
    one = {"subnet": "10.66.3.0/24", "rangeStart": "10.66.3.5", "rangeEnd": "10.66.3.5"}
    plugin = macvlan({"type": "host-local", "ranges": [[one]]})
    side.add(plugin, i=1, container_id="holder")
    return plugin


def _clash(side: LinkSide) -> JSON:
    """The container already has an ``eth0``."""
    add_veth(side.ctr(), "eth0", side.ctr(), "peer0")
    return macvlan()


def _unreachable_route(side: LinkSide) -> JSON:
    """host-local hands out a route via a gateway no address reaches: after IPAM's ADD."""
    return macvlan(host_local(V4, routes=[{"dst": "198.51.100.0/24", "gw": "192.0.2.77"}]))


@pytest.mark.parametrize(
    ("setup", "go_leaks_link"),
    [(_exhaust, True), (_clash, False), (_unreachable_route, True)],
    ids=["ipam-exhausted", "ifname-clash", "route-fails-after-ipam"],
)
def test_failed_add_leaves_nothing(
    go: LinkSide, py: LinkSide, setup: Any, go_leaks_link: bool
) -> None:
    """A failed ADD of ours leaves no macvlan in either namespace and no address
    allocated; it fails with Go's code. Go 1.1.1 releases the address too but leaks the
    link when IPAM or the address setup fails (its cleanup tests a shadowed ``err``)."""
    plugins = [setup(go), setup(py)]
    before = py.allocated()
    assert plugins[0] == plugins[1]
    both_fail(go, py, plugins[1])
    assert macvlans(py.ctr()) == []
    assert macvlans(py.node) == []
    assert py.allocated() == before
    assert macvlans(go.ctr()) == (["eth0"] if go_leaks_link else [])
    assert macvlans(go.node) == []
    assert go.allocated() == before
    if not go_leaks_link:
        assert_same_state(go, py)


# ------------------------------------------------------------------------------ chains


def test_ours_delegating_to_go_host_local(py: LinkSide, tmp_path: Path) -> None:
    """Our macvlan with Go's host-local binary as its IPAM (file-only: it runs outside the
    node), found through the executor chain."""
    ours = InProcessExecutor(
        {"macvlan": load_plugin("macvlan")}, builtins=False, host_netns=py.node.path
    )
    side = LinkSide.mixed_link(py, tmp_path / "hl", ours)
    plugin = macvlan()
    res = side.add(plugin)
    assert res["ips"][0]["address"] == "10.66.1.2/24"
    assert side.store()["10.66.1.2"] == "ctr-link-diff\r\neth0"
    side.check(plugin)
    side.delete(plugin)
    assert side.allocated() == set()
    assert macvlans(side.ctr()) == []
    ours.close()


TUNING = {"type": "tuning", "promisc": True, "mtu": 1450,
          "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"}}  # fmt: skip


@pytest.mark.parametrize("binaries_first", [False, True], ids=["in-process-first",
                                                                "binaries-first"])  # fmt: skip
def test_ours_then_go_tuning(
    go: LinkSide, py: LinkSide, tmp_path: Path, binaries_first: bool
) -> None:
    """Our macvlan then Go's tuning in one conflist driven by cnilib.CNI, whichever way the
    chain executor prefers: the same result and state as Go's macvlan + tuning."""
    path = None
    if binaries_first:  # Go's tuning and host-local, but no macvlan binary: ours is used
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for name in ("tuning", "host-local"):
            (bin_dir / name).symlink_to(GO_PLUGINS / name)
        path = [str(bin_dir)]
    # Only macvlan and host-local in process: cnilib has a tuning of its own now.
    ours = InProcessExecutor(
        {"macvlan": load_plugin("macvlan"), "host-local": load_plugin("host-local")},
        builtins=False, installed=False, host_netns=py.node.path,
    )  # fmt: skip
    mixed = LinkSide.mixed_link(py, tmp_path / "mixed", ours, binaries_first=binaries_first,
                                path=path)  # fmt: skip
    results = []
    for side in (go, mixed):
        conf = side.conflist(macvlan(), TUNING)
        res = side.cni.add_network_list(conf, side.rt())
        assert isinstance(res, ResultV100)
        results.append(res)
    assert [i.name for i in results[1].interfaces] == ["eth0"]
    assert [str(ip.address) for ip in results[1].ips] == ["10.66.1.2/24"]
    eth0 = link(mixed.ctr(), "eth0")
    assert eth0["mtu"] == 1450
    assert eth0["promiscuity"] == 1
    assert mixed.ctr().exec("cat", "/proc/sys/net/ipv4/conf/eth0/arp_filter").stdout == "1\n"
    assert comparable(mixed.state()) == comparable(go.state())
    for side in (go, mixed):
        conf = side.conflist(macvlan(), TUNING)
        side.cni.check_network_list(conf, side.rt())
        side.cni.delete_network_list(conf, side.rt())
    assert macvlans(mixed.ctr()) == []
    assert mixed.allocated() == set()
    mixed.cni.close()


# ------------------------------------------------------------------------- concurrency


def test_concurrency_50_attachments_on_one_master(py: LinkSide) -> None:
    """Concurrency: 50 ADDs at once on one master (each container its own namespace,
    host-local IPAM), then 50 DELs at once: distinct addresses, nothing left anywhere."""
    n = 50
    plugin = macvlan(host_local("10.66.8.0/24"))
    conf = py.conflist(plugin)
    ctrs = [py.ctr(i) for i in range(n)]
    rts = [py.rt(i, container_id=f"conc-{i}") for i in range(n)]

    def add(rt: cnilib.RuntimeConf) -> str:
        res = py.cni.add_network_list(conf, rt)
        assert isinstance(res, ResultV040 | ResultV100)
        return str(res.ips[0].address)

    with ThreadPoolExecutor(16) as pool:
        addresses = list(pool.map(add, rts))
    assert len(set(addresses)) == n
    subnet = ipaddress.ip_network("10.66.8.0/24")
    assert all(ipaddress.ip_interface(a).ip in subnet for a in addresses)
    assert len(py.allocated()) == n
    for ctr in ctrs[:: n // 5]:
        assert macvlans(ctr) == ["eth0"]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda rt: py.cni.delete_network_list(conf, rt), rts))
    assert all(macvlans(ctr) == [] for ctr in ctrs)
    assert macvlans(py.node) == []
    assert set(py.store()) <= IPAM_LEFTOVERS


# -------------------------------------------------------------------------- executable


@pytest.mark.parametrize("case", ["vepa", "l2-no-ipam", "static-ipam-dns"])
def test_installed_executable_matches_go(
    go: LinkSide, cnilib_container_netns: MakeNS, tmp_path: Path, case: str
) -> None:
    """Our macvlan (and host-local) installed as executables and exec'd like Go's, under
    ``ip netns exec <node>``: the same result and kernel state as Go's binary, through
    ADD, CHECK and DEL."""
    bin_dir = install_plugins(tmp_path / "bin")
    exe = LinkSide.executables(cnilib_container_netns, tmp_path / "exe", bin_dir)
    try:
        plugin = CASES[case]
        both_add(go, exe, plugin)
        assert_same_state(go, exe)
        for side in (go, exe):
            side.check(plugin)
            side.delete(plugin)
        assert_same_state(go, exe)
        assert macvlans(exe.ctr()) == []
    finally:
        exe.cni.close()
