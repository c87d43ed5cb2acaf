"""nftables in the bridge and ptp plugins: ``macspoofchk`` and ``ipMasqBackend: "nftables"``.

``macspoofchk`` is compared with Debian's Go bridge (1.1.1 has it): the same
``bridge nat`` rule set after ADD and after DEL. Both features are also
checked for what they are for, with real traffic: a container that changes
its MAC can no longer reach the gateway, and a container behind a
masquerading node reaches an outside host that has no route back to it.
The nftables masquerading backend is Go 1.5's, which Debian's 1.1.1 does
not have; its table is checked against the layout of Go's source (the
comment hashes are recomputed here independently).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.testing import NetNS
from tests.privileged._bridge_world import CONTAINER_ID, NETWORK, Side, bridge_conf, tables
from tests.privileged._kernel import GO_PLUGINS, JSON, go_plugin_marks, ip_json
from tests.privileged._ping import pings

pytestmark = go_plugin_marks()

V4, V6 = "10.78.1.0/24", "fd00:78:1::/64"
OUTSIDE_NET = "10.79.0"  # node 10.79.0.1, the outside host 10.79.0.2; no route back to V4
MakeNS = Callable[[], NetNS]


@pytest.fixture(autouse=True)
def _needs_nft() -> None:
    if subprocess.run(["sh", "-c", "command -v nft"], capture_output=True).returncode != 0:
        pytest.skip("nftables (the nft tool) is not installed; `make test` installs it")


@pytest.fixture
def sides(cnilib_container_netns: MakeNS, tmp_path: Path) -> tuple[Side, Side]:
    """Go's side and ours, each in its own node namespace."""
    go = Side("go", cnilib_container_netns(), cnilib_container_netns, tmp_path / "go")
    py = Side("py", cnilib_container_netns(), cnilib_container_netns, tmp_path / "py")
    return go, py


@pytest.fixture
def py(cnilib_container_netns: MakeNS, tmp_path: Path) -> Side:
    """Our side only."""
    return Side("py", cnilib_container_netns(), cnilib_container_netns, tmp_path / "py")


def nft_objects(ns: NetNS, *what: str) -> list[JSON]:
    """``nft -j list <what>`` in *ns* (metainfo dropped); [] when the object does not exist."""
    proc = ns.exec("nft", "-j", "list", *what, check=False)
    if proc.returncode != 0:
        assert "No such file or directory" in proc.stderr, proc.stderr
        return []
    objects: list[JSON] = json.loads(proc.stdout)["nftables"]
    return [obj for obj in objects if "metainfo" not in obj]


def normalized_nft(ns: NetNS, replace: dict[str, str], *what: str) -> list[JSON]:
    """The listing with handles dropped and the given strings (veth names, MACs) replaced."""
    text = json.dumps(nft_objects(ns, *what))
    for old, new in replace.items():
        text = text.replace(old, new)
    objects: list[JSON] = json.loads(text)
    for obj in objects:
        for body in obj.values():
            body.pop("handle", None)
    return objects


def _attachment_names(res: cnilib.Result) -> dict[str, str]:
    """Host veth name and container MAC of a bridge result, mapped to placeholders."""
    interfaces = json.loads(res.to_json())["interfaces"]
    return {interfaces[1]["name"]: "<veth>", interfaces[2]["mac"]: "<mac>"}


# ------------------------------------------------------------------- macspoofchk


def test_macspoofchk_rules_match_go(sides: tuple[Side, Side]) -> None:
    """Go's bridge and ours leave the same ``bridge nat`` table after ADD, CHECK and DEL."""
    plugin = bridge_conf(V4, isGateway=True, macspoofchk=True)
    listings = []
    for side in sides:
        conf = side.conflist(plugin)
        res = side.cni.add_network_list(conf, side.rt())
        assert res is not None
        replace = _attachment_names(res)
        after_add = normalized_nft(side.node, replace, "table", "bridge", "nat")
        side.cni.check_network_list(conf, side.rt())
        side.cni.delete_network_list(conf, side.rt())
        after_del = normalized_nft(side.node, replace, "table", "bridge", "nat")
        listings.append((after_add, after_del))
    go, py = listings
    assert py == go
    after_add, after_del = py
    rules = [obj["rule"] for obj in after_add if "rule" in obj]
    assert {rule["comment"] for rule in rules} == {f"macspoofchk-{CONTAINER_ID}-eth0"}
    assert {"drop": None} in rules[-1]["expr"]
    assert not [obj for obj in after_del if "rule" in obj]  # chain PREROUTING stays, empty


def test_macspoofchk_drops_frames_from_another_mac(py: Side) -> None:
    """The container reaches its gateway; with a changed MAC it does not, and again once
    the MAC is restored (so the drop is the rule's doing, not a broken link)."""
    conf = py.conflist(bridge_conf(V4, isGateway=True, macspoofchk=True))
    res = py.cni.add_network_list(conf, py.rt())
    assert res is not None
    ctr, own_mac = py.ctr(0), json.loads(res.to_json())["interfaces"][2]["mac"]
    assert pings(ctr, "10.78.1.1")
    ctr.exec("ip", "link", "set", "eth0", "address", "0a:58:0a:4e:01:63")
    ctr.exec("ip", "neigh", "flush", "dev", "eth0")
    assert not pings(ctr, "10.78.1.1", tries=5)
    ctr.exec("ip", "link", "set", "eth0", "address", own_mac)
    assert pings(ctr, "10.78.1.1")


@pytest.mark.parametrize(
    ("chain", "position", "named"),
    [
        ("PREROUTING", 0, "the jump from {veth} to cni-br-iface-{ref} is missing"),
        ("cni-br-iface-{ref}", 0, "the jump to cni-br-iface-{ref}-mac is missing"),
        ("cni-br-iface-{ref}-mac", 0, "the rule admitting {mac} is missing"),
        ("cni-br-iface-{ref}-mac", 1, "the rule dropping every other source is missing"),
    ],
)
def test_macspoofchk_check_names_a_removed_rule(
    py: Side, chain: str, position: int, named: str
) -> None:
    """CHECK (cnilib's addition) notices each of the four rules going, and says which."""
    conf = py.conflist(bridge_conf(V4, macspoofchk=True))
    res = py.cni.add_network_list(conf, py.rt())
    assert res is not None
    interfaces = json.loads(res.to_json())["interfaces"]
    names = {
        "veth": interfaces[1]["name"],
        "mac": interfaces[2]["mac"],
        "ref": f"{CONTAINER_ID}-eth0",
    }
    py.cni.check_network_list(conf, py.rt())
    chain = chain.format(**names)
    rules = [
        obj["rule"]
        for obj in nft_objects(py.node, "chain", "bridge", "nat", chain)
        if "rule" in obj
    ]
    handle = str(rules[position]["handle"])
    py.node.exec("nft", "delete", "rule", "bridge", "nat", chain, "handle", handle)
    with pytest.raises(cnilib.CNIError, match=re.escape(named.format(**names))):
        py.cni.check_network_list(conf, py.rt())


def test_del_survives_a_failing_spoofcheck_teardown(
    py: Side, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As Go's bridge, DEL only reports a macspoofchk teardown failure (here nft cannot
    list the table): the address is released and the masquerading chain still removed."""
    from cnilib.plugins._hosttools import spoofcheck as _spoofcheck

    conf = py.conflist(bridge_conf(V4, isGateway=True, ipMasq=True, macspoofchk=True))
    py.cni.add_network_list(conf, py.rt())

    def broken(*_: object) -> None:
        raise cnilib.PluginError("nft: Operation not permitted")

    monkeypatch.setattr(_spoofcheck, "nft_list", broken)
    py.cni.delete_network_list(conf, py.rt())
    assert "Operation not permitted" in caplog.text
    assert not any("CNI-" in line for line in tables(py.node)["iptables-save"])
    assert "10.78.1.2" not in py.store()


def test_both_backends_work_in_a_node_namespace(py: Side) -> None:
    """The probe that decides whether a backend's failure counts says yes for both here."""
    from cnilib.netlink import run_in_netns
    from cnilib.plugins._hosttools.masq import backend_works

    assert run_in_netns(py.node.path, backend_works, "iptables") is True
    assert run_in_netns(py.node.path, backend_works, "nftables") is True


def test_failed_add_removes_macspoofchk_chains(py: Side) -> None:
    """An ADD that fails after the rules were made (IPAM refuses the requested address)
    takes them away again with the veth."""
    conf = py.conflist(bridge_conf(V4, macspoofchk=True))
    with pytest.raises(cnilib.CNIError):
        py.cni.add_network_list(conf, py.rt(args=[("IP", "10.99.9.9")]))
    chains = {
        obj["chain"]["name"]
        for obj in nft_objects(py.node, "table", "bridge", "nat")
        if "chain" in obj
    }
    assert chains <= {"PREROUTING"}
    assert [link["ifname"] for link in ip_json(py.ctr(0), "link")] == ["lo"]


def test_concurrent_go_and_cnilib_attachments_share_the_tables(
    cnilib_container_netns: MakeNS, tmp_path: Path
) -> None:
    """Eight containers by Go's bridge and eight by ours, all at once on one node, with
    macspoofchk (both use the bridge nat table) and ipMasq: every attachment gets its own
    rules, and after all the DELs only the shared base chains are left."""
    from concurrent.futures import ThreadPoolExecutor

    node = cnilib_container_netns()
    go = Side("go", node, cnilib_container_netns, tmp_path / "go")
    py = Side("py", node, cnilib_container_netns, tmp_path / "py")
    confs = {
        "go": go.conflist(bridge_conf("10.78.3.0/24", bridge="brgo", isGateway=True,
                                      ipMasq=True, macspoofchk=True)),
        "py": py.conflist(bridge_conf("10.78.4.0/24", bridge="brpy", isGateway=True,
                                      ipMasq=True, ipMasqBackend="nftables", macspoofchk=True)),
    }  # fmt: skip
    jobs = [(side, i) for i in range(8) for side in (go, py)]

    def attach(job: tuple[Side, int]) -> None:
        side, i = job
        side.cni.add_network_list(confs[side.kind], side.rt(i, container_id=f"{side.kind}{i}"))

    def detach(job: tuple[Side, int]) -> None:
        side, i = job
        side.cni.delete_network_list(confs[side.kind], side.rt(i, container_id=f"{side.kind}{i}"))

    for job in jobs:  # the namespaces, made before the race
        job[0].ctr(job[1])
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(attach, jobs))
    comments = [
        obj["rule"]["comment"]
        for obj in nft_objects(node, "chain", "bridge", "nat", "PREROUTING")
        if "rule" in obj
    ]
    assert sorted(comments) == sorted(
        f"macspoofchk-{s}{i}-eth0" for s in ("go", "py") for i in range(8)
    )
    assert len(_masq_rules(node)) == 8
    assert len([line for line in tables(node)["iptables-save"] if line.startswith(":CNI-")]) == 8
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(detach, jobs))
    left = nft_objects(node, "table", "bridge", "nat")
    assert [obj["chain"]["name"] for obj in left if "chain" in obj] == ["PREROUTING"]
    assert not [obj for obj in left if "rule" in obj]
    assert _masq_rules(node) == []
    assert not any(line.startswith(":CNI-") for line in tables(node)["iptables-save"])


# ------------------------------------------------------------ nftables ipMasq


def _instance_hash(ifname: str, container_id: str) -> str:
    def h(text: str) -> str:
        return hashlib.sha512(text.encode()).hexdigest()[:16]

    return f"{h(NETWORK)}-{h(f'{ifname}:{container_id}')}"


def _masq_rules(ns: NetNS) -> list[JSON]:
    return [
        obj["rule"]
        for obj in nft_objects(ns, "chain", "inet", "cni_plugins_masquerade", "masq_checks")
        if "rule" in obj
    ]


def test_nftables_masq_table_layout_and_teardown(py: Side) -> None:
    """Dual stack: one masquerade rule per address in Go's table, nothing in iptables;
    DEL removes the attachment's rules and leaves the shared table."""
    plugin = bridge_conf(V4, V6, isGateway=True, ipMasq=True, ipMasqBackend="nftables")
    conf = py.conflist(plugin)
    py.cni.add_network_list(conf, py.rt())
    comment = (
        f"{_instance_hash('eth0', CONTAINER_ID)}, net: {NETWORK}, if: eth0, id: {CONTAINER_ID}"
    )
    rules = _masq_rules(py.node)
    assert [rule["comment"] for rule in rules] == [comment, comment]
    sources = [rule["expr"][0]["match"]["right"] for rule in rules]
    assert sorted(sources) == ["10.78.1.2", "fd00:78:1::2"]
    assert {"masquerade": None} in rules[0]["expr"]
    postrouting = nft_objects(py.node, "chain", "inet", "cni_plugins_masquerade", "postrouting")
    (chain,) = [obj["chain"] for obj in postrouting if "chain" in obj]
    assert (chain["type"], chain["hook"], chain["prio"]) == ("nat", "postrouting", 100)
    assert len([obj for obj in postrouting if "rule" in obj]) == 3
    assert not any("CNI-" in line for line in tables(py.node)["iptables-save"])
    py.cni.delete_network_list(conf, py.rt())
    assert _masq_rules(py.node) == []


def test_del_under_the_other_backend_still_removes_nft_rules(py: Side) -> None:
    """Teardown clears both backends (as Go's does): rules made with nftables go even when
    the configuration at DEL time no longer names that backend."""
    made = bridge_conf(V4, isGateway=True, ipMasq=True, ipMasqBackend="nftables")
    py.cni.add_network_list(py.conflist(made), py.rt())
    assert len(_masq_rules(py.node)) == 1
    later = bridge_conf(V4, isGateway=True, ipMasq=True)
    py.cni.delete_network_list(py.conflist(later), py.rt())
    assert _masq_rules(py.node) == []


def _iptables_chains(ns: NetNS) -> set[str]:
    return {line.split()[0][1:] for line in tables(ns)["iptables-save"] if line.startswith(":CNI-")}


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_gc_drops_masq_rules_of_unknown_attachments(py: Side, tmp_path: Path, backend: str) -> None:
    """GC from a runtime that lost its cache: the masquerading rules (and addresses) of
    attachments not in valid-attachments go; the valid one's and another network's stay."""
    plugin = bridge_conf(V4, isGateway=True, ipMasq=True, ipMasqBackend=backend)
    conf = py.conflist(plugin, version="1.1.0")  # GC is a 1.1 verb
    py.cni.add_network_list(conf, py.rt(0, container_id="keep"))
    py.cni.add_network_list(conf, py.rt(1, container_id="stale"))
    other = {**json.loads(conf.bytes), "name": "othernet"}
    other_conf = cnilib.conflist_from_bytes(json.dumps(other).encode())
    py.cni.add_network_list(other_conf, py.rt(2, container_id="stale"))
    before = _masq_rules(py.node) if backend == "nftables" else _iptables_chains(py.node)
    assert len(before) == 3
    amnesiac = cnilib.CNI([str(GO_PLUGINS)], cache_dir=tmp_path / "lost", executor=py.executor)
    amnesiac.gc_network_list(conf, [("keep", "eth0")])
    if backend == "nftables":
        ids = [rule["comment"].split(", net: ")[-1] for rule in _masq_rules(py.node)]
        assert sorted(ids) == [f"{NETWORK}, if: eth0, id: keep", "othernet, if: eth0, id: stale"]
    else:
        chains = _iptables_chains(py.node)
        assert chains == {
            _chain_of(NETWORK, "keep"),
            _chain_of("othernet", "stale"),
        }
    assert "10.78.1.3" not in py.store()
    assert "10.78.1.2" in py.store()


def _chain_of(network: str, container_id: str) -> str:
    return "CNI-" + hashlib.sha512((network + container_id).encode()).hexdigest()[:24]


# ---------------------------------------------------------- masquerading, for real


def _outside_host(node: NetNS, make_ns: MakeNS) -> NetNS:
    """A host on a second link of the node, with no route to the containers' subnet."""
    outside = make_ns()
    node.exec("ip", "link", "add", "out0", "type", "veth", "peer", "name", "out1",
              "netns", outside.name)  # fmt: skip
    node.exec("ip", "addr", "add", f"{OUTSIDE_NET}.1/24", "dev", "out0")
    node.exec("ip", "link", "set", "out0", "up")
    outside.exec("ip", "addr", "add", f"{OUTSIDE_NET}.2/24", "dev", "out1")
    outside.exec("ip", "link", "set", "out1", "up")
    return outside


def _plugin(kind: str, **masq: Any) -> JSON:
    if kind == "bridge":
        return bridge_conf(V4, isDefaultGateway=True, **masq)
    ipam = {"type": "host-local", "ranges": [[{"subnet": V4}]], "routes": [{"dst": "0.0.0.0/0"}]}
    return {"type": "ptp", "ipam": ipam, **masq}


@pytest.mark.parametrize("kind", ["bridge", "ptp"])
@pytest.mark.parametrize("backend", ["iptables", "nftables", None])
def test_masquerading_lets_the_container_reach_outside(
    py: Side, cnilib_container_netns: MakeNS, kind: str, backend: str | None
) -> None:
    """The outside host answers the container only when the node masquerades (backend
    None: no ipMasq at all, the control case that must fail)."""
    masq: dict[str, Any] = {} if backend is None else {"ipMasq": True, "ipMasqBackend": backend}
    _outside_host(py.node, cnilib_container_netns)
    conf = py.conflist(_plugin(kind, **masq))
    py.cni.add_network_list(conf, py.rt())
    reached = pings(py.ctr(0), f"{OUTSIDE_NET}.2", tries=5 if backend is None else 20)
    assert reached is (backend is not None)
    py.cni.delete_network_list(conf, py.rt())
    assert _masq_rules(py.node) == []
    assert not any("CNI-" in line for line in tables(py.node)["iptables-save"])
