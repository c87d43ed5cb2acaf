"""cnilib's in-process bridge plugin against Debian's Go bridge (1.1.1), differentially.

For each configuration, Go's binary (exec'd inside its own node namespace)
and ours (in process, ``host_netns`` = our own node namespace) attach one
container each, with the same network name and container ID, and the
results and the kernel/disk state are compared: links (kind, master, MTU,
flags, promiscuity, hairpin), addresses, main-table routes on both sides,
sysctls (forwarding, accept_ra, accept_dad, arp_notify), the full
``iptables-save``/``ip6tables-save`` of the node (chain names hashed like
Go's, so no normalization) and the host-local store. Then CHECK passes on
both, DEL on both, and the states are compared again.

Normalized away: veth names, random MACs, link-local addresses, sandbox
paths. Documented differences asserted as such: the veth ``txqueuelen``
(Go 1.1.1: 0, ours: the kernel default 1000) and what a DEL after the
container namespace is gone leaves behind (Go leaks the ipMasq chain).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.testing import NetNS
from tests.privileged._bridge_world import (
    CONTAINER_ID,
    NETWORK,
    Side,
    bridge_conf,
    norm_result,
    tables,
)
from tests.privileged._kernel import go_plugin_marks, ip_json

pytestmark = go_plugin_marks()

V4, V4B = "10.77.1.0/24", "10.77.2.0/24"
V6 = "fd00:77:1::/64"
MAC = "0a:58:0a:4d:01:63"

CASES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "v4-plain": ((V4,), {}),
    "v4-gw-masq": ((V4,), {"isGateway": True, "ipMasq": True}),
    "v4-defgw-mtu-hairpin": ((V4,), {"isDefaultGateway": True, "mtu": 1400, "hairpinMode": True}),
    "v6-gw-masq": ((V6,), {"isGateway": True, "ipMasq": True}),
    "dual-defgw-masq-promisc": ((V4, V6), {"isDefaultGateway": True, "ipMasq": True,
                                           "promiscMode": True}),
    "dual-defgw-mtu-dns": ((V4, V6), {"isDefaultGateway": True, "mtu": 9000,
                                      "dns": {"nameservers": ["10.77.1.53"], "search": ["a.b"]}}),
    "l2-only": ((), {"mtu": 1450}),
}  # fmt: skip

MakeNS = Callable[[], NetNS]


@pytest.fixture
def sides(cnilib_container_netns: MakeNS, tmp_path: Path) -> tuple[Side, Side]:
    """Go's side and ours, each in its own node namespace."""
    go = Side("go", cnilib_container_netns(), cnilib_container_netns, tmp_path / "go")
    py = Side("py", cnilib_container_netns(), cnilib_container_netns, tmp_path / "py")
    return go, py


def _both_add(
    sides: tuple[Side, Side], plugin: dict[str, Any], version: str = "1.0.0", **rt: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    results = []
    for side in sides:
        conf = side.conflist(plugin, version=version)
        res = side.cni.add_network_list(conf, side.rt(**rt))
        assert res is not None
        results.append(norm_result(res, keep_mac=MAC))
    return results[0], results[1]


@pytest.mark.parametrize("case", list(CASES))
def test_add_check_del_match_go(sides: tuple[Side, Side], case: str) -> None:
    """Same result, same kernel and store state after ADD and after DEL; CHECK passes on both."""
    subnets, extra = CASES[case]
    plugin = bridge_conf(*subnets, ipam=bool(subnets), **extra)
    go_res, py_res = _both_add(sides, plugin)
    assert py_res == go_res
    go, py = sides
    go_state, py_state = go.state(), py.state()
    assert py_state == go_state
    if extra.get("ipMasq"):
        assert any("CNI-" in line for line in py_state["iptables"]["iptables-save"] + py_state[
            "iptables"]["ip6tables-save"])  # fmt: skip
    for side in sides:
        conf = side.conflist(plugin)
        if side is go and not subnets:  # Go's CHECK delegates to an IPAM of type "": it fails
            with pytest.raises(cnilib.CNIError, match="no plugin name provided"):
                side.cni.check_network_list(conf, side.rt())
        else:
            side.cni.check_network_list(conf, side.rt())
        side.cni.delete_network_list(conf, side.rt())
    assert py.state(settled=False) == go.state(settled=False)


def test_two_addresses_one_masq_chain(sides: tuple[Side, Side]) -> None:
    """Two IPv4 addresses share the attachment's chain, rules in Go's order. Go's DEL then
    fails (it deletes the chain while the second jump still uses it); ours cleans up."""
    plugin = bridge_conf(V4, V4B, ipMasq=True)
    go_res, py_res = _both_add(sides, plugin)
    assert py_res == go_res
    go, py = sides
    assert py.state() == go.state()
    with pytest.raises(cnilib.CNIError, match="CHAIN_DEL failed"):
        go.cni.delete_network_list(go.conflist(plugin), go.rt())
    py.cni.delete_network_list(py.conflist(plugin), py.rt())
    assert not any("CNI-" in line for line in tables(py.node)["iptables-save"])
    assert py.store().keys() <= {"lock", "last_reserved_ip.0", "last_reserved_ip.1"}


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0"])
def test_older_config_versions_match_go(sides: tuple[Side, Side], version: str) -> None:
    """The result is converted to the config's version exactly as Go prints it."""
    go_res, py_res = _both_add(sides, bridge_conf(V4, V6, isGateway=True), version=version)
    assert py_res == go_res
    assert py_res["cniVersion"] == version


@pytest.mark.parametrize("how", ["runtimeConfig", "args", "CNI_ARGS"])
def test_requested_mac_matches_go(sides: tuple[Side, Side], how: str) -> None:
    """The container MAC comes from runtimeConfig.mac, args.cni.mac or CNI_ARGS MAC=."""
    plugin = bridge_conf(V4, isGateway=True)
    rt: dict[str, Any] = {}
    if how == "runtimeConfig":
        plugin["capabilities"] = {"mac": True}
        rt["capability_args"] = {"mac": MAC}
    elif how == "args":
        plugin["args"] = {"cni": {"mac": MAC}}
    else:
        rt["args"] = [("IgnoreUnknown", "1"), ("MAC", MAC), ("K8S_POD_NAME", "p")]
    go_res, py_res = _both_add(sides, plugin, **rt)
    assert py_res == go_res
    assert py_res["interfaces"][2]["mac"] == MAC
    for side in sides:
        assert ip_json(side.ctr(0), "link", "show", "eth0")[0]["address"] == MAC


def _error(side: Side, plugin: dict[str, Any], **rt: Any) -> str:
    with pytest.raises(cnilib.CNIError) as info:
        side.cni.add_network_list(side.conflist(plugin), side.rt(**rt))
    return str(info.value)


@pytest.mark.parametrize(
    ("extra", "rt", "fragment"),
    [
        ({"hairpinMode": True, "promiscMode": True}, {}, "cannot set hairpin mode and promisc"),
        ({"vlan": 5000}, {}, "invalid VLAN ID 5000"),
        ({"mtu": "big"}, {}, "cannot unmarshal string into Go struct field NetConf.mtu"),
        ({}, {"args": [("FOO", "1")]}, 'ARGS: unknown args ["FOO=1"]'),
        ({"args": {"cni": {"mac": "nonsense"}}}, {}, "invalid MAC address"),
    ],
)
def test_config_errors_match_go(
    sides: tuple[Side, Side], extra: dict[str, Any], rt: dict[str, Any], fragment: str
) -> None:
    """Bad configurations fail on both sides with Go's wording."""
    plugin = bridge_conf(V4, isGateway=True, **extra)
    go_msg, py_msg = (_error(side, plugin, **rt) for side in sides)
    assert fragment in go_msg
    assert fragment in py_msg


def test_existing_bridge_address_needs_force_address(sides: tuple[Side, Side]) -> None:
    """A bridge already holding another IPv4 address: error, unless forceAddress replaces it."""
    for side in sides:
        side.node.exec("ip", "link", "add", "cnidiff0", "type", "bridge")
        side.node.exec("ip", "addr", "add", "10.99.0.1/24", "dev", "cnidiff0")
    plugin = bridge_conf(V4, isGateway=True)
    msgs = [_error(side, plugin) for side in sides]
    assert all('"cnidiff0" already has an IP address different from 10.77.1.1/24' in m
               for m in msgs), msgs  # fmt: skip
    # A failed ADD: Go leaves the container's veth behind, ours rolls it back.
    go, py = sides
    assert "eth0" in {link["ifname"] for link in ip_json(go.ctr(0), "link")}
    assert "eth0" not in {link["ifname"] for link in ip_json(py.ctr(0), "link")}
    go_res, py_res = _both_add(sides, {**plugin, "forceAddress": True}, i=1)
    assert py_res == go_res
    for side in sides:  # (Go's node still has the veth of its failed ADD)
        assert side.state()["node"]["links"]["cnidiff0"]["addrs"] == [
            "10.77.1.1/24 global 10.77.1.255"
        ]


@pytest.mark.parametrize("ipam", [True, False])
def test_result_macs_are_the_links_macs(sides: tuple[Side, Side], ipam: bool) -> None:
    """The reported MACs are those the links have after ADD, for both plugins. The bridge's
    changes when its first port joins (it takes the port's), so a MAC read when the
    bridge was made would be stale."""
    for side in sides:
        conf = side.conflist(bridge_conf(V4, ipam=ipam, isGateway=ipam))
        res = side.cni.add_network_list(conf, side.rt())
        assert res is not None
        bridge, host_veth, ctr = json.loads(res.to_json())["interfaces"]
        node_links = {link["ifname"]: link["address"] for link in ip_json(side.node, "link")}
        assert bridge["mac"] == node_links["cnidiff0"]
        assert host_veth["mac"] == node_links[host_veth["name"]]
        assert ctr["mac"] == ip_json(side.ctr(0), "link", "show", "eth0")[0]["address"]


def test_veth_txqueuelen_is_a_documented_difference(sides: tuple[Side, Side]) -> None:
    """Go 1.1.1 creates both veth ends with txqueuelen 0; ours keep the kernel default."""
    _both_add(sides, bridge_conf(V4))
    go, py = sides
    assert ip_json(go.ctr(0), "link", "show", "eth0")[0].get("txqlen", 0) == 0
    assert ip_json(py.ctr(0), "link", "show", "eth0")[0]["txqlen"] == 1000


def test_del_without_namespace_releases_ip_and_masq_unlike_go(sides: tuple[Side, Side]) -> None:
    """DEL after the container namespace is gone succeeds on both and releases the address;
    Go leaks the ipMasq chain there, ours removes it."""
    plugin = bridge_conf(V4, isGateway=True, ipMasq=True)
    _both_add(sides, plugin)
    for side in sides:
        side.ctr(0).delete()
        side.cni.delete_network_list(side.conflist(plugin), side.rt())
        side.cni.delete_network_list(side.conflist(plugin), side.rt())  # and again
        assert "10.77.1.2" not in side.store()
    go, py = sides
    assert any("CNI-" in line for line in tables(go.node)["iptables-save"])
    assert not any("CNI-" in line for line in tables(py.node)["iptables-save"])


def test_masq_chain_name_is_gos_hash(sides: tuple[Side, Side]) -> None:
    """The chain is CNI- + 24 hex digits of sha512(network + containerID), as Go names it."""
    import hashlib

    _both_add(sides, bridge_conf(V4, isGateway=True, ipMasq=True))
    chain = "CNI-" + hashlib.sha512((NETWORK + CONTAINER_ID).encode()).hexdigest()[:24]
    for side in sides:
        assert f":{chain} - [0:0]" in tables(side.node)["iptables-save"]


def test_machine_namespace_untouched(sides: tuple[Side, Side]) -> None:
    """The rules land in the node namespace only: the machine's own tables are unchanged."""
    before = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    _both_add(sides, bridge_conf(V4, isGateway=True, ipMasq=True))
    after = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout

    def strip(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert strip(after) == strip(before)
    assert "cnidiff0" not in json.dumps(
        json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout)
    )
