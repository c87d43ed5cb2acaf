"""cnilib's in-process portmap against real traffic and against Debian's Go portmap (1.1.1).

Worlds (tests/privileged/_portmap_world.py): a node namespace routing between a
container, a client and a "far" host. Connectivity is real: a Python server in
the container, a Python client elsewhere; the node's rules decide who answers.
Both backends are driven (iptables: Go's chains; nftables: Go's latest
``cni_hostport`` table). Go 1.1.1 has only the iptables backend, so the
differential tests (same rules, same result, same error texts, cross ADD/DEL)
use that one.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.invoke import Invocation, SubprocessExecutor
from cnilib.testing import NetNS
from tests.privileged._kernel import JSON, go_plugin_marks
from tests.privileged._link_world import install_plugins
from tests.privileged._portmap_world import (
    CID,
    CTR4,
    FAR4,
    FAR6,
    NODE_CLIENT4,
    NODE_CLIENT6,
    NODE_CTR4,
    World,
    world_of,
)

pytestmark = go_plugin_marks()

BACKENDS = ("iptables", "nftables")
TCP = {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
UDP = {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}


@pytest.fixture
def world(cnilib_container_netns: Callable[[], NetNS]) -> Iterator[World]:
    """One world (node, ctr, client, far)."""
    yield from world_of(cnilib_container_netns)


@pytest.fixture
def worlds(cnilib_container_netns: Callable[[], NetNS]) -> Iterator[dict[str, World]]:
    """One world per implementation, for side-by-side comparisons."""
    go = world_of(cnilib_container_netns)
    py = world_of(cnilib_container_netns)
    yield {"go": next(go), "py": next(py)}
    for gen in (go, py):
        next(gen, None)


# ------------------------------------------------------------------------ traffic


@pytest.mark.parametrize("backend", BACKENDS)
def test_tcp_udp_ipv4_ipv6_reach_the_container(world: World, backend: str) -> None:
    """A client connecting to the node's hostPort reaches the server in the container,
    over TCP and UDP, IPv4 and IPv6; DEL makes the ports dead again."""
    world.serve(world.ctr, 80, "ctr", family=6)
    world.serve(world.ctr, 53, "ctr53", family=6)
    conf = world.conf([TCP, UDP], backend=backend)
    result = world.call("py", "ADD", conf)
    assert result == world.prev(conf)
    assert world.talk(world.client, NODE_CLIENT4, 8080).startswith("ctr ")
    assert world.talk(world.client, NODE_CLIENT4, 5353, "udp").startswith("ctr53 ")
    assert world.talk(world.client, NODE_CLIENT6, 8080).startswith("ctr ")
    assert world.talk(world.client, NODE_CLIENT6, 5353, "udp").startswith("ctr53 ")
    world.call("py", "CHECK", conf)
    world.call("py", "DEL", conf)
    assert world.talk(world.client, NODE_CLIENT4, 8080, timeout=1).startswith("error")


@pytest.mark.parametrize("backend", BACKENDS)
def test_forwarded_traffic_on_the_same_port_is_not_redirected(world: World, backend: str) -> None:
    """Traffic routed through the node to another address on a mapped port reaches that
    address, also when a mapping names it as hostIP (CVE-2025-67499): only traffic to
    the node's own addresses is DNATed."""
    world.serve(world.ctr, 80, "ctr", family=6)
    world.serve(world.far, 8080, "far", family=6)
    world.serve(world.far, 8081, "far81", family=6)
    far_ip = {**TCP, "hostPort": 8081, "hostIP": FAR4}
    world.call("py", "ADD", world.conf([TCP, far_ip], backend=backend))
    assert world.talk(world.client, NODE_CLIENT4, 8080).startswith("ctr ")
    assert world.talk(world.client, FAR4, 8080).startswith("far ")
    assert world.talk(world.client, FAR6, 8080).startswith("far ")
    assert world.talk(world.client, FAR4, 8081).startswith("far81 ")
    # The container too, talking to "far" through the node.
    assert world.talk(world.ctr, FAR4, 8080).startswith("far ")


@pytest.mark.parametrize("backend", BACKENDS)
def test_host_ip_limits_the_mapping_to_that_address(world: World, backend: str) -> None:
    """A mapping with hostIP answers on that node address only."""
    world.serve(world.ctr, 80, "ctr", family=6)
    mapping = {**TCP, "hostIP": NODE_CLIENT4}
    world.call("py", "ADD", world.conf([mapping], backend=backend))
    assert world.talk(world.client, NODE_CLIENT4, 8080).startswith("ctr ")
    assert world.talk(world.client, NODE_CTR4, 8080, timeout=1).startswith("error")
    assert world.talk(world.client, NODE_CLIENT6, 8080, timeout=1).startswith("error")


@pytest.mark.parametrize("backend", BACKENDS)
def test_ipv4_mapped_host_ip_is_the_ipv4_address(world: World, backend: str) -> None:
    """hostIP ``::ffff:<node address>`` counts as that IPv4 address (as in Go): the
    mapping answers there, and only there."""
    world.serve(world.ctr, 80, "ctr", family=6)
    world.call(
        "py", "ADD", world.conf([{**TCP, "hostIP": f"::ffff:{NODE_CLIENT4}"}], backend=backend)
    )
    assert world.talk(world.client, NODE_CLIENT4, 8080).startswith("ctr ")
    assert world.talk(world.client, NODE_CTR4, 8080, timeout=1).startswith("error")


@pytest.mark.parametrize("backend", BACKENDS)
def test_hairpin_is_masqueraded(world: World, backend: str) -> None:
    """The container reaches itself through the node's hostPort: snat masquerades it
    (the server sees the node's address); with snat off it does not get through."""
    world.serve(world.ctr, 80, "ctr", family=6)
    world.call("py", "ADD", world.conf([TCP], backend=backend))
    assert world.talk(world.ctr, NODE_CTR4, 8080) == f"ctr {NODE_CTR4}"
    world.call("py", "DEL", world.conf([TCP], backend=backend))
    world.call("py", "ADD", world.conf([TCP], backend=backend, snat=False))
    assert world.talk(world.ctr, NODE_CTR4, 8080, timeout=1).startswith("error")


@pytest.mark.parametrize("backend", BACKENDS)
def test_masq_all_masquerades_every_source(world: World, backend: str) -> None:
    """masqAll: the container sees the node's address for outside clients too."""
    world.serve(world.ctr, 80, "ctr", family=6)
    world.call("py", "ADD", world.conf([TCP], backend=backend, masqAll=True))
    assert world.talk(world.client, NODE_CLIENT4, 8080) == f"ctr {NODE_CTR4}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_localhost_dnat_needs_the_opt_in(world: World, backend: str) -> None:
    """route_localnet stays 0 by default (127.0.0.1:<hostPort> on the node does not
    reach the container); with routeLocalnet it is set on the interface towards the
    container and the node's localhost reaches it, masqueraded."""
    world.serve(world.ctr, 80, "ctr", family=6)
    world.call("py", "ADD", world.conf([TCP], backend=backend))
    assert world.sysctl("net/ipv4/conf/vc0/route_localnet") == "0"
    assert world.talk(world.node, "127.0.0.1", 8080, timeout=1).startswith("error")
    assert world.talk(world.node, NODE_CLIENT4, 8080).startswith("ctr ")
    world.call("py", "ADD", world.conf([TCP], backend=backend, routeLocalnet=True))
    assert world.sysctl("net/ipv4/conf/vc0/route_localnet") == "1"
    assert world.talk(world.node, "127.0.0.1", 8080) == f"ctr {NODE_CTR4}"


# -------------------------------------------------------------------- CHECK / DEL


def _drop_iptables_dnat(world: World) -> None:
    rules = world.node.exec("iptables", "-t", "nat", "-S").stdout.splitlines()
    dnat = next(r for r in rules if "--to-destination" in r)
    world.node.exec("iptables", "-t", "nat", *dnat.replace("-A", "-D", 1).split())


def _drop_nft_dnat(world: World) -> None:
    listing = world.node.exec("nft", "-a", "list", "chain", "ip", "cni_hostport", "hostports")
    line = next(x for x in listing.stdout.splitlines() if "dnat to" in x)
    handle = line.rsplit("handle", 1)[1].strip()
    world.node.exec("nft", "delete", "rule", "ip", "cni_hostport", "hostports", "handle", handle)


@pytest.mark.parametrize("backend", BACKENDS)
def test_check_fails_once_a_rule_is_removed_by_hand(world: World, backend: str) -> None:
    """CHECK passes after ADD and fails, naming the missing rule, once it is gone."""
    conf = world.conf([TCP, UDP], backend=backend)
    world.call("py", "ADD", conf)
    world.call("py", "CHECK", conf)
    (_drop_iptables_dnat if backend == "iptables" else _drop_nft_dnat)(world)
    exc = world.error("py", "CHECK", conf)
    assert exc.code == 999
    if backend == "iptables":
        assert "could not check ipv4 dnat: rule [-p tcp --dport 8080 -j DNAT" in exc.msg
        assert "not found in table nat" in exc.msg
    else:
        assert 'missing hostport rule "tcp dport 8080 dnat to 10.9.0.2:80' in exc.msg
        assert "in chain hostports of table ip cni_hostport" in exc.msg


@pytest.mark.parametrize("backend", BACKENDS)
def test_del_without_runtime_config_removes_the_rules(world: World, backend: str) -> None:
    """DEL with neither runtimeConfig nor prevResult still removes this attachment's
    rules (Go's DEL does nothing without portMappings and leaks them)."""
    before = (world.iptables(), world.nft())
    world.call("py", "ADD", world.conf([TCP, UDP], backend=backend))
    assert "8080" in json.dumps(world.iptables()) + world.nft()
    world.call("py", "DEL", world.conf(None, prev=False))
    assert "8080" not in json.dumps(world.iptables()) + world.nft()
    world.call("py", "DEL", world.conf(None, prev=False))  # twice: still fine
    assert before[0]["iptables-save"][0] == world.iptables()["iptables-save"][0]


def test_del_keeps_other_containers_rules(world: World) -> None:
    """Two containers on the same port: DEL of one leaves the other's chain (iptables)
    and rules (nftables)."""
    for backend in BACKENDS:
        world.call("py", "ADD", world.conf([TCP], backend=backend))
        world.call("py", "ADD", world.conf([UDP], backend=backend), cid="other")
        world.call("py", "DEL", world.conf([TCP], backend=backend))
        state = json.dumps(world.iptables()) + world.nft()
        assert "5353" in state
        assert "8080" not in state
        world.call("py", "DEL", world.conf([UDP], backend=backend), cid="other")


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeated_add_leaves_one_set_of_rules(world: World, backend: str) -> None:
    """ADD twice (a runtime retrying) leaves the same rules as ADD once."""
    conf = world.conf([TCP, UDP], backend=backend)
    world.call("py", "ADD", conf)
    once = (world.iptables(), world.nft())
    world.call("py", "ADD", conf)
    assert (world.iptables(), world.nft()) == once


def test_no_mappings_is_a_pass_through(world: World) -> None:
    """No portMappings: the result is prevResult, and no table or chain appears."""
    before = (world.iptables(), world.nft())
    for version in ("1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.2.0", "0.1.0"):
        conf = world.conf([], version)
        assert world.call("py", "ADD", conf) == world.prev(conf)
    assert (world.iptables(), world.nft()) == before


def test_nftables_table_is_gos_latest_layout(world: World) -> None:
    """The nftables table as Go's latest release writes it: fib daddr type local before
    every mapping, hostIP mappings in hostports, masquerade per container."""
    mapping = {**UDP, "hostIP": NODE_CLIENT4}
    world.call("py", "ADD", world.conf([TCP, mapping], backend="nftables"))
    table = world.node.exec("nft", "list", "table", "ip", "cni_hostport").stdout
    lines = [line.strip() for line in table.splitlines() if line.strip()]
    assert lines == [
        "table ip cni_hostport {",
        'comment "CNI portmap plugin"',
        "chain hostports {",
        f'tcp dport 8080 dnat to {CTR4}:80 comment "{CID}"',
        f'ip daddr {NODE_CLIENT4} udp dport 5353 dnat to {CTR4}:53 comment "{CID}"',
        "}",
        "chain hostip_hostports {",
        "}",
        "chain hostports_all {",
        "jump hostip_hostports",
        "jump hostports",
        "}",
        "chain prerouting {",
        "type nat hook prerouting priority dstnat; policy accept;",
        "fib daddr type local jump hostports_all",
        "}",
        "chain output {",
        "type nat hook output priority -100; policy accept;",
        "fib daddr type local jump hostports_all",
        "}",
        "chain masquerading {",
        "type nat hook postrouting priority srcnat; policy accept;",
        f'ip saddr {CTR4} ip daddr {CTR4} masquerade comment "{CID}"',
        f'ip saddr 127.0.0.1 ip daddr {CTR4} masquerade comment "{CID}"',
        "}",
        "}",
    ]


# ------------------------------------------------------------------ against Go 1.1.1

CASES: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {
    "tcp-udp-sctp": (
        [TCP, UDP, {"hostPort": 9132, "containerPort": 132, "protocol": "sctp"}],
        {},
    ),
    "host-ips": (
        [
            {**TCP, "hostIP": NODE_CLIENT4},
            {**UDP, "hostIP": NODE_CLIENT6},
            {**TCP, "hostPort": 8081, "hostIP": "0.0.0.0"},
        ],
        {},
    ),
    "no-snat": ([TCP], {"snat": False}),
    "mark-bit": ([TCP, UDP], {"markMasqBit": 5}),
    "external-chain": ([TCP], {"externalSetMarkChain": "KUBE-MARK-MASQ"}),
    "conditions": (
        [TCP],
        {"conditionsV4": ["-s", "10.8.0.0/24"], "conditionsV6": ["-d", "fd08::1/128"]},
    ),
    "sixteen-ports": (
        [{"hostPort": 9000 + i, "containerPort": 80, "protocol": "tcp"} for i in range(16)],
        {},
    ),
}


@pytest.mark.parametrize("version", ["1.0.0", "0.4.0", "0.3.1", "0.2.0"])
@pytest.mark.parametrize("case", list(CASES))
def test_same_rules_and_result_as_go(worlds: dict[str, World], case: str, version: str) -> None:
    """ADD: the same result and the same nat tables (iptables-save of the node) as Go's;
    DEL: the same tables again (the shared CNI-HOSTPORT-* chains stay, as in Go)."""
    mappings, keys = CASES[case]
    if keys.get("externalSetMarkChain"):
        for w in worlds.values():
            for tool in ("iptables", "ip6tables"):
                w.node.exec(tool, "-t", "nat", "-N", "KUBE-MARK-MASQ")
    seen = {}
    for impl, w in worlds.items():
        conf = w.conf(mappings, version, **keys)
        result = w.call(impl, "ADD", conf)
        added = w.iptables()
        w.call(impl, "DEL", conf)
        seen[impl] = (result, added, w.iptables())
    assert seen["py"] == seen["go"]
    assert "CNI-DN-" in json.dumps(seen["py"][1])
    assert "CNI-DN-" not in json.dumps(seen["py"][2])


@pytest.mark.parametrize(("adder", "deleter"), [("go", "py"), ("py", "go")])
def test_del_removes_the_other_ones_add(world: World, adder: str, deleter: str) -> None:
    """Go's DEL cleans up after our ADD and ours after Go's: same chain names."""
    world.node.exec("iptables", "-t", "nat", "-S")  # the nat table exists in both families
    world.node.exec("ip6tables", "-t", "nat", "-S")
    before = world.iptables()
    conf = world.conf([TCP, UDP], backend="iptables")
    go_conf = {k: v for k, v in conf.items() if k != "backend"}
    world.call(adder, "ADD", go_conf if adder == "go" else conf)
    world.call(deleter, "DEL", go_conf if deleter == "go" else conf)
    after = world.iptables()
    # The shared chains (CNI-HOSTPORT-*) stay, as in Go; nothing of this container does.
    assert not any("CNI-DN-" in line for lines in after.values() for line in lines)
    assert "8080" not in json.dumps(after)
    assert before["iptables-save"][0] == after["iptables-save"][0]


def test_go_check_after_our_add_and_ours_after_gos(world: World) -> None:
    """Our CHECK passes on Go's ADD (same rules), on the IPv4-only attachment that Go's
    own CHECK also passes."""
    conf = world.conf([TCP, UDP], v6=False)
    world.call("go", "ADD", conf)
    world.call("py", "CHECK", conf)
    world.call("go", "DEL", conf)
    world.call("py", "ADD", conf)
    world.call("py", "CHECK", conf)


BAD: dict[str, dict[str, Any]] = {
    "container-port-zero": {"runtimeConfig": {"portMappings": [{**TCP, "containerPort": 0}]}},
    "host-port-negative": {"runtimeConfig": {"portMappings": [{**TCP, "hostPort": -1}]}},
    "mark-bit-32": {"markMasqBit": 32},
    "mark-bit-negative": {"markMasqBit": -1},
    "mark-and-external": {"markMasqBit": 14, "externalSetMarkChain": "KUBE-MARK-MASQ"},
    "snat-string": {"snat": "yes"},
    "host-port-string": {"runtimeConfig": {"portMappings": [{**TCP, "hostPort": "80"}]}},
}


@pytest.mark.parametrize("verb", ["ADD", "DEL", "CHECK"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_config_errors_are_gos(worlds: dict[str, World], case: str, verb: str) -> None:
    """Go's code and text for each refused configuration, on every verb."""
    errors = {}
    for impl, w in worlds.items():
        conf = {**w.conf([TCP]), **BAD[case]}
        exc = w.error(impl, verb, conf)
        errors[impl] = (exc.code, exc.msg)
    assert errors["py"] == errors["go"]


@pytest.mark.parametrize("verb", ["ADD", "CHECK"])
def test_missing_prev_result_is_gos_error(worlds: dict[str, World], verb: str) -> None:
    """ADD: ``must be called as chained plugin``; CHECK: ``Required prevResult missing``."""
    errors = {}
    for impl, w in worlds.items():
        exc = w.error(impl, verb, w.conf([TCP], prev=False))
        errors[impl] = (exc.code, exc.msg)
    assert errors["py"] == errors["go"]
    assert errors["py"][1] in ("must be called as chained plugin", "Required prevResult missing")


def test_backend_options_of_the_other_backend_are_refused(world: World) -> None:
    """Go's validateBackend texts; an unknown backend; a hostIP that is no address."""
    conf = world.conf([TCP], backend="nftables", externalSetMarkChain="X", conditionsV4=["-d", "x"])
    assert world.error("py", "ADD", conf).msg == (
        "failed to parse config: nftables backend was requested but configuration "
        "contains iptables-specific options [externalSetMarkChain conditionsV4]"
    )
    conf = world.conf([TCP], backend="iptables", conditionsV6=["ip6", "daddr", "::1"])
    assert world.error("py", "CHECK", conf).msg == (
        "iptables backend was requested but configuration contains nftables-specific "
        "options [conditionsV6]"
    )
    conf = world.conf([TCP], backend="pf")
    assert world.error("py", "ADD", conf).msg == 'failed to parse config: unrecognized backend "pf"'
    conf = world.conf([{**TCP, "hostIP": "not-an-ip"}])
    assert (
        world.error("py", "ADD", conf).msg == "failed to parse config: Invalid host IP: 'not-an-ip'"
    )


@pytest.mark.parametrize("version", ["1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.3.0", "0.2.0", "0.1.0"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_version_add_check_del(world: World, version: str, backend: str) -> None:
    """ADD (result = prevResult), CHECK (from 0.4.0), DEL, in every spec version."""
    world.serve(world.ctr, 80, "ctr", family=6)
    conf = world.conf([TCP], version, backend=backend)
    assert world.call("py", "ADD", conf) == world.prev(conf)
    assert world.talk(world.client, NODE_CLIENT4, 8080).startswith("ctr ")
    if version not in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
        world.call("py", "CHECK", conf)
    world.call("py", "DEL", conf)
    assert "8080" not in json.dumps(world.iptables()) + world.nft()


def test_registered_and_versions() -> None:
    """portmap is a built-in type supporting every spec version."""
    from cnilib.plugins._registry import load_plugin

    plugin = load_plugin("portmap")
    assert plugin.type == "portmap"
    assert "1.1.0" in plugin.supported_versions
    assert "0.1.0" in plugin.supported_versions
    assert isinstance(plugin, cnilib.plugins.BasePlugin)


def test_nat_chains_with_quotes_in_their_names_on_the_node(world: World) -> None:
    """A nat chain named with a quote or a backslash (iptables prints them unquoted,
    which shell splitting refused): ADD, CHECK and DEL work, and DEL leaves the chains."""
    world.node.exec("iptables", "-t", "nat", "-N", "it's")
    world.node.exec("iptables", "-t", "nat", "-N", "back\\slash")
    conf = world.conf([TCP], backend="iptables")
    world.call("py", "ADD", conf)
    world.call("py", "CHECK", conf)
    world.call("py", "DEL", conf)
    chains = world.node.exec("iptables", "-t", "nat", "-S").stdout.splitlines()
    assert {"-N it's", "-N back\\slash"} <= set(chains)
    assert not any(line.startswith("-N CNI-DN-") for line in chains)


# -------------------------------------------------------------------- concurrency


def test_racing_first_adds_keep_each_others_jumps(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two first ADDs on a node (two runtimes or plugin processes) both list the nat
    table before either has made CNI-HOSTPORT-DNAT. The later transaction must not
    empty the chain the earlier one made (an iptables-restore --noflush declaration
    of an existing chain flushes it): both containers keep their jump."""
    from cnilib.plugins.meta import _portmap_iptables as ipt
    from cnilib.plugins.meta._portmap_conf import PortMapConf

    real = ipt._list_nat
    raced: list[int] = []

    def listing_then_other_add(version: int) -> list[ipt.Rule]:
        listing = real(version)
        if not raced:  # the other ADD commits between this listing and this commit
            raced.append(version)
            other = PortMapConf.load(world.conf([UDP], backend="iptables"), lambda: "iptables")
            ipt.forward_iptables(other, "pmnet", "other", ipaddress.ip_interface("10.9.0.3/24"))
        return listing

    monkeypatch.setattr(ipt, "_list_nat", listing_then_other_add)
    world.call("py", "ADD", world.conf([TCP], backend="iptables", v6=False))
    assert raced == [4]
    jumps = world.node.exec("iptables", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT").stdout
    assert "--dports 8080 -j CNI-DN-" in jumps
    assert "--dports 5353 -j CNI-DN-" in jumps


def test_concurrent_first_adds_make_each_shared_rule_once(world: World, tmp_path: Path) -> None:
    """Many containers' first ADDs on a node at once, as plugin processes (in process,
    the node's one worker thread serializes them): the jumps from PREROUTING, OUTPUT
    and POSTROUTING and the shared chains' rules are each there once (DEL never removes
    a second copy); then their DELs at once leave no container chain."""
    count = 12
    bin_dir = install_plugins(tmp_path / "bin")
    exe = SubprocessExecutor(wrapper=world.node.exec_prefix, timeout=30.0)

    def conf(i: int) -> JSON:
        mapping = {**TCP, "hostPort": 9000 + i}
        c = world.conf([mapping], backend="iptables", v6=False)
        c["prevResult"]["ips"][0]["address"] = f"10.9.0.{10 + i}/24"
        return c

    def call(command: str, i: int) -> None:
        stdin = json.dumps(conf(i)).encode()
        exe.exec(
            Invocation(command=command, plugin_type="portmap", stdin=stdin, container_id=f"c{i}",
                       netns=world.ctr.path, ifname="eth0", path=(str(bin_dir),))
        )  # fmt: skip

    def run(command: str) -> None:
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            for call_done in [pool.submit(call, command, i) for i in range(count)]:
                call_done.result()

    run("ADD")
    rules = world.iptables()["iptables-save"]
    assert [r for r in rules if r.startswith("-A") and rules.count(r) > 1] == []
    assert sum(r.startswith("-A CNI-HOSTPORT-DNAT ") for r in rules) == count
    run("DEL")
    assert not any("CNI-DN-" in r for r in world.iptables()["iptables-save"])


def test_nftables_two_networks_of_one_container_keep_each_others_rules(world: World) -> None:
    """The nftables rules carry only the container ID (Go's layout), so a container on
    two networks has two attachments' rules with the same comment: ADD of the second
    and DEL of either leave the other attachment's rules (found by address)."""
    first = world.conf([TCP], backend="nftables", v6=False)
    second = world.conf([UDP], backend="nftables", v6=False)
    second["name"] = "pmnet2"
    second["prevResult"]["ips"][0]["address"] = "10.9.0.3/24"
    world.call("py", "ADD", first)
    world.call("py", "ADD", second)
    table = world.nft()
    assert "tcp dport 8080 dnat to 10.9.0.2:80" in table
    assert "udp dport 5353 dnat to 10.9.0.3:53" in table
    world.call("py", "CHECK", first)
    world.call("py", "DEL", second)
    table = world.nft()
    assert "tcp dport 8080 dnat to 10.9.0.2:80" in table
    assert "10.9.0.3" not in table
    world.call("py", "CHECK", first)
    world.call("py", "DEL", first)
    assert "10.9.0.2" not in world.nft()


@pytest.mark.parametrize("backend", BACKENDS)
def test_failed_add_leaves_no_rule(world: World, backend: str) -> None:
    """ADD whose IPv6 rules the tool refuses, after the IPv4 ones are in: the error is
    the tool's, and the IPv4 rules are gone again (Go leaves them for DEL)."""
    bad6 = ["-m", "nosuchmatch"] if backend == "iptables" else ["meta", "nosuchkey", "1"]
    conf = world.conf([TCP], backend=backend, conditionsV6=bad6)
    exc = world.error("py", "ADD", conf)
    assert exc.code == 999
    assert exc.msg.startswith(
        "unable to setup DNAT: " if backend == "iptables" else "unable to set up nftables rules"
    )
    assert "8080" not in json.dumps(world.iptables()) + world.nft()
