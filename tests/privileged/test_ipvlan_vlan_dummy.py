"""cnilib's in-process ipvlan, vlan and dummy plugins on a real kernel, against
Debian's Go ipvlan and vlan (1.1.1; Debian ships no dummy).

Each side has its own node namespace (the host) with the uplink ``up0`` and
its own container namespaces (see :mod:`tests.privileged._link_world`): Go's
binary is exec'd inside its node, ours runs in process with
``host_netns=<node>``.

Two groups:

- What needs no ipvlan/vlan/dummy support in the kernel: ADD on a kernel
  built without the kind fails with code 999 and a text naming the kernel
  option (Go: ``operation not supported``) and leaves nothing behind; DEL of
  nothing, DEL with the master gone, DEL after the namespace is gone; CHECK
  of an interface that is missing, elsewhere or of another kind.
- Full ADD/CHECK/DEL, differential against Go where Go 1.1.1 has the
  feature (result JSON and kernel state of both namespaces), skipped with
  the missing kernel option named when the kernel cannot make the kind
  (the probe makes one in a throwaway namespace).

The documented differences from 1.1.1 are asserted as such: ``ndisc_notify``
next to ``arp_notify`` (ipvlan), the kernel's default ``txqueuelen``, a
failed ADD that deletes the link, DEL without the master, the range in the
vlan id text, lower-case CHECK texts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.invoke import Invocation
from tests.privileged import _link_world
from tests.privileged._kernel import GO_PLUGINS, JSON, go_plugin_marks, ip_json
from tests.privileged._link_world import (
    KERNEL_OPTION,
    MASTER,
    LinkSide,
    MakeNS,
    add_veth,
    check_then_delete_twice,
    install_plugins,
    link_kind_missing,
    require_link_kind,
)

pytestmark = go_plugin_marks()

V4, V6 = "10.67.1.0/24", "fd00:67:1::/64"
KINDS = ("ipvlan", "vlan", "dummy")
GO_KINDS = ("ipvlan", "vlan")


def host_local(*subnets: str, **extra: Any) -> JSON:
    """A host-local IPAM section with one range set per subnet."""
    return {"type": "host-local", "ranges": [[{"subnet": s}] for s in subnets], **extra}


STATIC = {
    "type": "static",
    "addresses": [{"address": "10.67.2.5/24", "gateway": "10.67.2.1"}],
    "routes": [{"dst": "198.51.100.0/24", "gw": "10.67.2.9"}],
}


def plugin_conf(kind: str, ipam: JSON | None = None, **extra: Any) -> JSON:
    """A *kind* entry (on ``up0``, vlan id 7 for a vlan) with host-local on :data:`V4`
    unless *ipam* says (``{}``: no ipam)."""
    conf: JSON = {"type": kind}
    if kind != "dummy":
        conf["master"] = MASTER
    if kind == "vlan":
        conf["vlanId"] = 7
    conf.update(extra)
    ipam = host_local(V4) if ipam is None else ipam
    if ipam:
        conf["ipam"] = ipam
    return conf


# ---------------------------------------------------------------------------- fixtures

go = _link_world.go  # the shared fixtures, under this module's names
py = _link_world.py


def without_kind(kind: str) -> None:
    """Skip unless the kernel LACKS *kind* (the tests of that case)."""
    if link_kind_missing(kind) is None:
        pytest.skip(f"the kernel has {kind} links: the missing-kind error cannot happen")


# ----------------------------------------------------------------------------- helpers


_MACS = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", re.IGNORECASE)


def norm_text(msg: str) -> str:
    """An error text without MACs or namespace paths, lower-cased (latest Go lower-cases),
    without vlan's ``vlan: `` prefix."""
    text = re.sub(r"/run/netns/\S+", "<netns>", _MACS.sub("<mac>", msg)).lower()
    return text.removeprefix("vlan: ")


def kind_links(ns: Any, kind: str) -> list[str]:
    """The *kind* links in *ns*."""
    return [
        link["ifname"]
        for link in ip_json(ns, "-d", "link")
        if link.get("linkinfo", {}).get("info_kind") == kind
    ]


def assert_nothing_left(side: LinkSide) -> None:
    """No link but ``lo`` in the container, the node as built, no address allocated."""
    assert set(side.kinds(side.ctr())) == {"lo"}
    assert set(side.kinds(side.node)) == {"lo", MASTER}
    assert side.allocated() == set()


def call(side: LinkSide, command: str, conf: JSON, version: str = "1.0.0", **kw: Any) -> bytes:
    """One plugin call through the side's executor (no cache, no libcni checks): for
    CHECK with a made-up ``prevResult``, and DEL without an ADD."""
    full = {"cniVersion": version, "name": side.network, **conf}
    if isinstance(full.get("ipam"), dict) and full["ipam"].get("type") == "host-local":
        full["ipam"] = {**full["ipam"], "dataDir": str(side.data_dir)}
    params: JSON = {"container_id": "ctr-x", "netns": side.ctr().path, "ifname": "eth0", **kw}
    assert side.executor is not None
    return side.executor.exec(Invocation(
        command=command, plugin_type=conf["type"], stdin=json.dumps(full).encode(),
        path=(str(GO_PLUGINS),), **params,
    ))  # fmt: skip


def call_error(side: LinkSide, command: str, conf: JSON, **kw: Any) -> cnilib.CNIError:
    """A call that must fail: its error."""
    with pytest.raises(cnilib.CNIError) as info:
        call(side, command, conf, **kw)
    return info.value


def prev_result(side: LinkSide, *, sandbox: str | None = None) -> JSON:
    """A ``prevResult`` naming ``eth0`` in the side's container with static's address."""
    return {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": sandbox or side.ctr().path}],
        "ips": [{"interface": 0, "address": "10.67.2.5/24", "gateway": "10.67.2.1"}],
    }


# ================================================== without the kind in the kernel


@pytest.mark.parametrize("kind", KINDS)
def test_add_without_the_kernel_kind_names_the_option(py: LinkSide, kind: str) -> None:
    """ADD on a kernel built without *kind*: code 999, ``failed to create <kind>: ...``
    naming the kernel option; nothing is left in either namespace, no address held."""
    without_kind(kind)
    err = py.add_error(plugin_conf(kind))
    assert err.code == 999
    assert err.msg == (
        f"failed to create {kind}: this kernel has no {kind} links: it was built without "
        f"{KERNEL_OPTION[kind]} (operation not supported)"
    )
    assert_nothing_left(py)


@pytest.mark.parametrize("kind", KINDS)
def test_installed_executable_without_the_kernel_kind(
    cnilib_container_netns: MakeNS, tmp_path: Path, kind: str
) -> None:
    """Installed as an executable and exec'd under ``ip netns exec <node>``, the plugin
    fails as in process: code 999, the kernel option named, nothing left behind."""
    without_kind(kind)
    bin_dir = install_plugins(tmp_path / "bin")
    exe = LinkSide.executables(cnilib_container_netns, tmp_path / "exe", bin_dir)
    try:
        err = exe.add_error(plugin_conf(kind))
        assert err.code == 999
        assert KERNEL_OPTION[kind] in err.msg
        assert err.msg.startswith(f"failed to create {kind}: this kernel has no {kind} links")
        assert_nothing_left(exe)
    finally:
        exe.cni.close()


@pytest.mark.parametrize("kind", GO_KINDS)
def test_go_without_the_kernel_kind_says_operation_not_supported(
    go: LinkSide, py: LinkSide, kind: str
) -> None:
    """Go 1.1.1 fails with the same code and the bare errno text; neither leaves anything."""
    without_kind(kind)
    go_err, py_err = go.add_error(plugin_conf(kind)), py.add_error(plugin_conf(kind))
    assert go_err.code == py_err.code == 999
    assert go_err.msg == f"failed to create {kind}: operation not supported"
    assert py_err.msg.startswith(f"failed to create {kind}: ")
    for side in (go, py):
        assert_nothing_left(side)


def test_chained_ipvlan_without_the_kernel_kind(py: LinkSide) -> None:
    """Chained ipvlan (no ipam, ``prevResult`` addresses) fails the same way."""
    without_kind("ipvlan")
    conf = plugin_conf("ipvlan", {}, master="", prevResult={
        **prev_result(py), "interfaces": [{"name": MASTER}]})  # fmt: skip
    err = call_error(py, "ADD", conf)
    assert err.code == 999
    assert KERNEL_OPTION["ipvlan"] in err.msg
    assert_nothing_left(py)


# ============================================================ DEL, on any kernel


@pytest.mark.parametrize("kind", GO_KINDS)
def test_del_of_nothing(go: LinkSide, py: LinkSide, kind: str) -> None:
    """DEL with no link in the container (and no address held) succeeds, twice, on both."""
    for side in (go, py):
        for _ in range(2):
            side.delete(plugin_conf(kind))
        assert_nothing_left(side)


def test_dummy_del_of_nothing(py: LinkSide) -> None:
    py.delete(plugin_conf("dummy"))
    py.delete(plugin_conf("dummy", {}))  # Go's needs ipam even here
    assert_nothing_left(py)


@pytest.mark.parametrize("kind", GO_KINDS)
def test_del_with_the_master_gone(go: LinkSide, py: LinkSide, kind: str) -> None:
    """Ours: DEL never needs the master. Go 1.1.1's vlan fails (``Link not found``, from
    its MTU probe); its ipvlan does not look the master up on DEL."""
    conf = plugin_conf(kind, master="gone0")
    py.delete(conf)
    if kind == "vlan":
        with pytest.raises(cnilib.CNIError) as info:
            go.delete(conf)
        assert info.value.msg == "Link not found"
    else:
        go.delete(conf)


def test_ipvlan_del_without_master_or_default_route(go: LinkSide, py: LinkSide) -> None:
    """No ``master`` and no default route: Go's DEL looks for the route and fails."""
    conf = plugin_conf("ipvlan", master="")
    del conf["master"]
    err = call_error(go, "DEL", conf)
    assert err.msg == "no default route interface found"
    call(py, "DEL", conf)


@pytest.mark.parametrize("kind", KINDS)
def test_del_after_the_container_netns_is_gone(py: LinkSide, kind: str) -> None:
    """A ``CNI_NETNS`` that no longer exists is success."""
    call(py, "DEL", plugin_conf(kind), netns="/run/netns/cnilib-no-such-ns")
    call(py, "DEL", plugin_conf(kind), netns="")


@pytest.mark.parametrize("kind", GO_KINDS)
def test_go_del_after_the_container_netns_is_gone(go: LinkSide, kind: str) -> None:
    call(go, "DEL", plugin_conf(kind), netns="/run/netns/cnilib-no-such-ns")


# ========================================================== CHECK, on any kernel


@pytest.mark.parametrize("kind", GO_KINDS)
def test_check_without_the_interface(go: LinkSide, py: LinkSide, kind: str) -> None:
    """``prevResult`` names ``eth0``, the container has none: the same error (case and
    vlan's ``vlan: `` prefix aside)."""
    errors = [
        call_error(side, "CHECK", plugin_conf(kind, STATIC, prevResult=prev_result(side)))
        for side in (go, py)
    ]
    assert errors[1].code == errors[0].code == 999
    assert norm_text(errors[1].msg) == norm_text(errors[0].msg) == (
        "container interface name in prevresult: eth0 not found")  # fmt: skip


@pytest.mark.parametrize("kind", GO_KINDS)
def test_check_of_another_kind(go: LinkSide, py: LinkSide, kind: str) -> None:
    """``eth0`` is a veth: ``not of type <kind>``, as Go."""
    errors = []
    for side in (go, py):
        add_veth(side.ctr(), "eth0", side.ctr(), "peer0")
        conf = plugin_conf(kind, STATIC, prevResult=prev_result(side))
        errors.append(call_error(side, "CHECK", conf))
    assert errors[1].code == errors[0].code == 999
    assert norm_text(errors[1].msg) == norm_text(errors[0].msg) == (
        f"error: container interface eth0 not of type {kind}")  # fmt: skip


def test_dummy_check_of_another_kind(py: LinkSide) -> None:
    add_veth(py.ctr(), "eth0", py.ctr(), "peer0")
    err = call_error(py, "CHECK", plugin_conf("dummy", STATIC, prevResult=prev_result(py)))
    assert err.msg == "error: Container interface eth0 not of type dummy"


@pytest.mark.parametrize("kind", GO_KINDS)
def test_check_sandbox_mismatch(go: LinkSide, py: LinkSide, kind: str) -> None:
    """``prevResult``'s interface is in another sandbox: ours names it; Go matches on
    name and sandbox, finds nothing and prints an empty sandbox."""
    errors = [
        call_error(side, "CHECK", plugin_conf(
            kind, STATIC, prevResult=prev_result(side, sandbox="/var/run/elsewhere")))
        for side in (go, py)
    ]  # fmt: skip
    assert errors[1].code == errors[0].code == 999
    tail = "doesn't match configured netns: <netns>"
    assert norm_text(errors[0].msg) == f"sandbox in prevresult  {tail}"
    assert norm_text(errors[1].msg) == f"sandbox in prevresult /var/run/elsewhere {tail}"


@pytest.mark.parametrize("kind", KINDS)
def test_check_without_prev_result(py: LinkSide, kind: str) -> None:
    """IPAM CHECK runs first (as Go's): static's own text, then ours without IPAM."""
    err = call_error(py, "CHECK", plugin_conf(kind, STATIC))
    assert (err.code, err.msg) == (999, "Required prevResult missing")
    if kind == "ipvlan":
        err = call_error(py, "CHECK", plugin_conf(kind, {}))
        assert (err.code, err.msg) == (999, "required prevResult missing")


def test_ipvlan_check_without_master_does_not_look_up_nothing(go: LinkSide, py: LinkSide) -> None:
    """No ``master``: Go's CHECK looks up ``""`` and fails; ours goes on to the interface."""
    conf = plugin_conf("ipvlan", STATIC)
    del conf["master"]
    go_err = call_error(go, "CHECK", {**conf, "prevResult": prev_result(go)})
    assert go_err.msg.startswith('failed to lookup master "": ')
    py_err = call_error(py, "CHECK", {**conf, "prevResult": prev_result(py)})
    assert py_err.msg == "container Interface name in prevResult: eth0 not found"


def test_vlan_check_needs_the_master(py: LinkSide) -> None:
    err = call_error(py, "CHECK", plugin_conf("vlan", STATIC, master="gone0",
                                               prevResult=prev_result(py)))  # fmt: skip
    assert err.msg == 'failed to lookup master "gone0": Link not found'


# ================================================== with the kind in the kernel

# ----------------------------------------------------------------------------- helpers


def comparable(state: JSON) -> JSON:
    """*state* without what differs from Go 1.1.1 by design: the links' ``txqlen``
    (1.1.1 sends 0) and ``ndisc_notify`` (1.1.1 leaves it)."""
    out: JSON = {**state, "ctr_sysctl": {
        k: v for k, v in state["ctr_sysctl"].items() if "ndisc_notify" not in k}}  # fmt: skip
    for where in ("node", "ctr"):
        links = {}
        for name, link in state[where]["links"].items():
            if link["kind"] in ("ipvlan", "vlan"):
                link = {**link, "details": {**link["details"], "txqlen": "<txqlen>"}}
            links[name] = link
        out[where] = {**state[where], "links": links}
    return out


def assert_same_state(go: LinkSide, py: LinkSide, *, settled: bool = True) -> JSON:
    """Both sides' kernel and store state agree but for the documented differences. Ours."""
    go_state, py_state = go.state(settled=settled), py.state(settled=settled)
    assert comparable(py_state) == comparable(go_state)
    return py_state


def both_add(go: LinkSide, py: LinkSide, plugin: JSON, version: str = "1.0.0") -> JSON:
    """ADD on both sides; the (equal) normalized result."""
    go_res, py_res = go.add(plugin, version), py.add(plugin, version)
    assert py_res == go_res
    return py_res


def both_check_error(go: LinkSide, py: LinkSide, plugin: JSON) -> tuple[str, str]:
    """CHECK fails on both with the same code: the normalized texts (Go's, ours)."""
    errors = []
    for side in (go, py):
        with pytest.raises(cnilib.CNIError) as info:
            side.check(plugin)
        errors.append(info.value)
    assert errors[1].code == errors[0].code
    return norm_text(errors[0].msg), norm_text(errors[1].msg)


def link(ns: Any, name: str) -> JSON:
    """``ip -d -j link show <name>`` in *ns*."""
    return ip_json(ns, "-d", "link", "show", name)[0]


IPVLAN_CASES: dict[str, JSON] = {
    "default-l2": plugin_conf("ipvlan"),
    "l3": plugin_conf("ipvlan", mode="l3"),
    "l3s": plugin_conf("ipvlan", mode="l3s"),
    "mtu-1400": plugin_conf("ipvlan", mtu=1400),
    "static": plugin_conf("ipvlan", STATIC),
    "dual-stack": plugin_conf("ipvlan", host_local(V4, V6)),
}
VLAN_CASES: dict[str, JSON] = {
    "id-7": plugin_conf("vlan"),
    "id-0": plugin_conf("vlan", vlanId=0),
    "id-4094": plugin_conf("vlan", vlanId=4094),
    "mtu-1400": plugin_conf("vlan", mtu=1400),
    "static": plugin_conf("vlan", STATIC),
    "dual-stack": plugin_conf("vlan", host_local(V4, V6)),
}


# -------------------------------------------------------------------- ipvlan and vlan


@pytest.mark.parametrize(
    "plugin",
    [pytest.param(c, id=f"ipvlan-{n}") for n, c in IPVLAN_CASES.items()]
    + [pytest.param(c, id=f"vlan-{n}") for n, c in VLAN_CASES.items()],
)
def test_add_check_del_match_go(go: LinkSide, py: LinkSide, plugin: JSON) -> None:
    """Same result and state after ADD and after DEL; CHECK passes on both; DEL twice."""
    kind = plugin["type"]
    require_link_kind(kind)
    res = both_add(go, py, plugin)
    state = assert_same_state(go, py)
    eth0 = state["ctr"]["links"]["eth0"]
    assert eth0["kind"] == kind
    assert "UP" in eth0["flags"]
    assert res["ips"]
    assert eth0["addrs"]
    if kind == "ipvlan":
        assert eth0["details"]["mode"] == plugin.get("mode", "l2")
        assert state["ctr_sysctl"]["net/ipv4/conf/eth0/arp_notify"] == "1"
        assert state["ctr_sysctl"]["net/ipv6/conf/eth0/ndisc_notify"] == "1"
    else:
        assert eth0["details"]["id"] == plugin["vlanId"]
    if "mtu" in plugin:
        assert eth0["mtu"] == plugin["mtu"]
    check_then_delete_twice(go, py, plugin, assert_same_state)


@pytest.mark.parametrize("kind", GO_KINDS)
def test_result_in_detail(go: LinkSide, py: LinkSide, kind: str) -> None:
    """One interface (the container's, its MAC the master's for ipvlan), every IP on it."""
    require_link_kind(kind)
    plugin = plugin_conf(kind, STATIC, dns={"nameservers": ["10.67.2.53"]})
    res = both_add(go, py, plugin)
    assert res == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "<mac>", "sandbox": "<netns>"}],
        "ips": [{"interface": 0, "address": "10.67.2.5/24", "gateway": "10.67.2.1"}],
        "routes": [{"dst": "198.51.100.0/24", "gw": "10.67.2.9"}],
        "dns": {"nameservers": ["10.67.2.53"]},
    }
    if kind == "ipvlan":
        assert link(py.ctr(), "eth0")["address"] == py.master_mac()


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
@pytest.mark.parametrize("kind", GO_KINDS)
def test_spec_versions(go: LinkSide, py: LinkSide, kind: str, version: str) -> None:
    require_link_kind(kind)
    plugin = plugin_conf(kind)
    assert both_add(go, py, plugin, version)["cniVersion"] == version
    for side in (go, py):
        if version != "0.3.1":
            side.check(plugin, version)
        side.delete(plugin, version)
    assert py.allocated() == set()


@pytest.mark.parametrize("kind", KINDS)
def test_spec_1_1_0_and_status(py: LinkSide, kind: str) -> None:
    """1.1.0 (Go 1.1.1 does not speak it): ADD, CHECK, STATUS (IPAM's), DEL."""
    require_link_kind(kind)
    plugin = plugin_conf(kind)
    assert py.add(plugin, "1.1.0")["cniVersion"] == "1.1.0"
    py.check(plugin, "1.1.0")
    py.cni.status_network_list(py.conflist(plugin, version="1.1.0"))
    py.delete(plugin, "1.1.0")
    assert_nothing_left(py)


@pytest.mark.parametrize("kind", GO_KINDS)
def test_mtu_above_the_masters(go: LinkSide, py: LinkSide, kind: str) -> None:
    """Ours: ``invalid MTU``, before anything is made. Go's vlan says the same; Go's
    ipvlan has no check and leaves it to the kernel (which refuses with ``invalid
    argument`` or, bounding by the master's maximum MTU, accepts)."""
    require_link_kind(kind)
    plugin = plugin_conf(kind, mtu=9000)
    py_err = py.add_error(plugin)
    assert (py_err.code, py_err.msg) == (999, "invalid MTU 9000, must be [0, master MTU(1500)]")
    assert_nothing_left(py)
    if kind == "vlan":
        go_err = go.add_error(plugin)
        assert (go_err.code, go_err.msg) == (py_err.code, py_err.msg)
        return
    failure: tuple[int, str] | None = None
    try:
        go.add(plugin)
    except cnilib.CNIError as exc:
        failure = (exc.code, exc.msg)
    if failure is None:
        assert link(go.ctr(), "eth0")["mtu"] == 9000
    else:
        assert failure == (999, "failed to create ipvlan: invalid argument")


def test_ipvlan_master_defaults_to_the_default_route_interface(go: LinkSide, py: LinkSide) -> None:
    require_link_kind("ipvlan")
    plugin = plugin_conf("ipvlan")
    del plugin["master"]
    for side in (go, py):
        side.node.exec("ip", "addr", "add", "10.67.9.1/24", "dev", MASTER)
        side.node.exec("ip", "route", "add", "default", "via", "10.67.9.254")
    both_add(go, py, plugin)
    assert_same_state(go, py)
    for side in (go, py):
        assert link(side.ctr(), "eth0")["link_index"] == link(side.node, MASTER)["ifindex"]
    py.delete(plugin)
    assert py.allocated() == set()


def test_ipvlan_chained_reuses_prev_result(go: LinkSide, py: LinkSide) -> None:
    """No ipam, chained: the master is ``prevResult``'s single interface, its addresses
    and routes are reused; the result's interfaces are the ipvlan alone."""
    require_link_kind("ipvlan")
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": MASTER}],
            "ips": [{"address": "10.67.4.5/24", "gateway": "10.67.4.1", "interface": 0}],
            "routes": [{"dst": "198.51.100.0/24"}]}  # fmt: skip
    conf = {"type": "ipvlan", "prevResult": prev}
    results = []
    for side in (go, py):
        out = json.loads(call(side, "ADD", conf))
        for intf in out["interfaces"]:
            intf["mac"], intf["sandbox"] = "<mac>", "<netns>"
        out.pop("dns", None)
        results.append(out)
    assert results[1] == results[0]
    assert results[1]["interfaces"] == [{"name": "eth0", "mac": "<mac>", "sandbox": "<netns>"}]
    assert results[1]["ips"][0]["interface"] == 0
    assert_same_state(go, py)


def test_link_in_container(py: LinkSide) -> None:
    """``linkInContainer``: the master is in the container; the link is made there."""
    for kind in GO_KINDS:
        require_link_kind(kind)
    add_veth(py.ctr(), "cup0", py.ctr(), "cup1")
    for kind in GO_KINDS:
        plugin = plugin_conf(kind, master="cup0", linkInContainer=True)
        py.add(plugin)
        assert link(py.ctr(), "eth0")["link"] == "cup0"
        py.check(plugin)
        py.delete(plugin)
        assert kind_links(py.ctr(), kind) == []
    assert py.allocated() == set()


@pytest.mark.parametrize(
    ("plugin", "changed", "expected_go", "expected_py"),
    [
        (plugin_conf("ipvlan"), {"mode": "l3"},
         "container ipvlan mode l2 does not match expected value: l3",
         "container ipvlan mode l2 does not match expected value: l3"),
        (plugin_conf("vlan"), {"vlanId": 8},
         "error: tuning link eth0 configured promisc is 8, current value is 7",
         "container vlan id 7 does not match expected value: 8"),
        (plugin_conf("vlan"), {"mtu": 1400},
         "error: tuning configured mtu of eth0 is 1400, current value is 1500",
         "container vlan mtu 1500 does not match expected value: 1400"),
    ],
    ids=["ipvlan-mode", "vlan-id", "vlan-mtu"],
)  # fmt: skip
def test_check_names_the_drift(
    go: LinkSide, py: LinkSide, plugin: JSON, changed: JSON, expected_go: str, expected_py: str
) -> None:
    """CHECK against a configuration that no longer matches the link: Go's code;
    Go's vlan texts are copied from tuning, ours say what differs."""
    require_link_kind(plugin["type"])
    both_add(go, py, plugin)
    go_text, py_text = both_check_error(go, py, {**plugin, **changed})
    assert (go_text, py_text) == (expected_go, expected_py)


@pytest.mark.parametrize("kind", GO_KINDS)
def test_failed_add_deletes_the_link(go: LinkSide, py: LinkSide, kind: str) -> None:
    """IPAM fails after the link was made (its range is used up): ours deletes the link,
    Go 1.1.1 leaks it; both fail with IPAM's code; vlan prefixes Go's delegate text."""
    require_link_kind(kind)
    one = {"subnet": "10.67.3.0/24", "rangeStart": "10.67.3.5", "rangeEnd": "10.67.3.5"}
    plugin = plugin_conf(kind, {"type": "host-local", "ranges": [[one]]})
    for side in (go, py):
        side.add(plugin, i=1, container_id="holder")
    go_err, py_err = go.add_error(plugin), py.add_error(plugin)
    assert py_err.code == go_err.code
    if kind == "vlan":
        assert py_err.msg.startswith("failed to execute IPAM delegate: ")
    assert kind_links(py.ctr(), kind) == []
    assert kind_links(go.ctr(), kind) == ["eth0"]
    assert py.allocated() == {"10.67.3.5"}  # the holder's


@pytest.mark.parametrize("kind", GO_KINDS)
def test_name_taken_in_the_container(py: LinkSide, kind: str) -> None:
    """``eth0`` exists in the container: ADD fails with Go's text, makes no link of
    the kind and holds no address; the container's ``eth0`` is untouched."""
    require_link_kind(kind)
    add_veth(py.ctr(), "eth0", py.ctr(), "peer0")
    err = py.add_error(plugin_conf(kind))
    assert err.msg == f'failed to rename {kind} to "eth0": file exists'
    assert kind_links(py.ctr(), kind) == []
    assert py.allocated() == set()
    assert link(py.ctr(), "eth0")["linkinfo"]["info_kind"] == "veth"


# ----------------------------------------------------------------------------- dummy


def test_dummy_add_check_del(py: LinkSide) -> None:
    """A dummy ``eth0``, up, with IPAM's addresses and routes; IPAM's DNS, not the
    config's (as Go's dummy); CHECK wants it up; DEL removes it and the address."""
    require_link_kind("dummy")
    plugin = plugin_conf("dummy", {**STATIC, "dns": {"nameservers": ["10.67.2.53"]}},
                         dns={"nameservers": ["192.0.2.1"]})  # fmt: skip
    res = py.add(plugin)
    assert res == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "<mac>", "sandbox": "<netns>"}],
        "ips": [{"interface": 0, "address": "10.67.2.5/24", "gateway": "10.67.2.1"}],
        "routes": [{"dst": "198.51.100.0/24", "gw": "10.67.2.9"}],
        "dns": {"nameservers": ["10.67.2.53"]},
    }
    state = py.state()
    eth0 = state["ctr"]["links"]["eth0"]
    assert eth0["kind"] == "dummy"
    assert "UP" in eth0["flags"]
    assert eth0["addrs"][0].startswith("10.67.2.5/24")
    assert set(py.kinds(py.node)) == {"lo", MASTER}
    py.check(plugin)
    py.ctr().exec("ip", "route", "del", "198.51.100.0/24")
    py.check(plugin)  # no route check, as Go's
    py.ctr().exec("ip", "link", "set", "eth0", "down")
    with pytest.raises(cnilib.CNIError) as info:
        py.check(plugin)
    assert info.value.msg == "Interface eth0 is down"
    py.delete(plugin)
    py.delete(plugin)
    assert_nothing_left(py)


def test_dummy_failed_add_deletes_the_link_and_releases_ipam(py: LinkSide) -> None:
    require_link_kind("dummy")
    plugin = plugin_conf("dummy", host_local(V4, routes=[{"dst": "198.51.100.0/24",
                                                          "gw": "192.0.2.77"}]))  # fmt: skip
    py.add_error(plugin)
    assert_nothing_left(py)
