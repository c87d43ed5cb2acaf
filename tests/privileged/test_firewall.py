"""cnilib's firewall plugin against Debian's Go firewall (1.1.1), on a real kernel.

Each world has a node namespace (the host: Go's binary is exec'd there with
``ip netns exec``, ours runs in process with ``host_netns=<node>``, or as
the installed executable under ``ip netns exec`` too) and a container
namespace holding ``eth0`` with the addresses of the ``prevResult`` the
plugin is given. Compared: the result, ``iptables-save``/``ip6tables-save``
of the node after each verb, and errors' codes and texts. Cross tests let
Go's DEL undo our ADD and the other way round.

Connectivity tests build real bridges (cnilib's bridge and host-local in
process, then firewall) in a node whose ``FORWARD`` policy is DROP, and ping
between containers.

Where cnilib follows the latest upstream or does better, these tests assert
the difference from 1.1.1: spec 1.1.0, an unknown ``ingressPolicy`` refused
before any rule is made, DEL without ``prevResult`` removing the rules of
the container's addresses, CHECK looking at the isolation rules too.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.invoke import Executor, Invocation, SubprocessExecutor
from cnilib.plugins._executor import InProcessExecutor
from cnilib.plugins._hosttools import tools
from cnilib.plugins._registry import load_plugin
from cnilib.plugins.meta import _firewall_iptables as fw_iptables
from cnilib.testing import NetNS
from tests.privileged._bridge_world import tables
from tests.privileged._kernel import GO_PLUGINS, JSON, go_plugin_marks, plugin_output
from tests.privileged._link_world import MakeNS, install_plugins
from tests.privileged._ping import pings

pytestmark = go_plugin_marks()

CID = "ctr-firewall"
IPS = ("10.1.0.2/24", "2001:db8::2/64")
IMPLS = ("go", "py", "exe")
PER_IP = (
    "-A CNI-FORWARD -d 10.1.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A CNI-FORWARD -s 10.1.0.2/32 -j ACCEPT",
)


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnilib's plugins installed as executables."""
    return install_plugins(tmp_path_factory.mktemp("bin"))


@dataclass
class World:
    """A node and a container (``eth0`` with :data:`IPS`); firewall by Go, ours, or ours
    installed."""

    node: NetNS
    ctr: NetNS
    executors: dict[str, tuple[Executor, tuple[str, ...]]] = field(default_factory=dict)

    def conf(self, version: str = "1.0.0", *, prev: bool = True, **keys: Any) -> JSON:
        """A firewall config whose ``prevResult`` has bridge ``br0``, ``eth0`` and :data:`IPS`."""
        conf: JSON = {"cniVersion": version, "name": "fw", "type": "firewall", **keys}
        if prev:
            conf["prevResult"] = {
                "cniVersion": version,
                "interfaces": [
                    {"name": "br0", "mac": "02:00:00:00:00:01"},
                    {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": self.ctr.path},
                ],
                "ips": [{"address": ip, "interface": 1} for ip in IPS],
            }
        return conf

    def call(self, impl: str, command: str, conf: JSON) -> JSON | None:
        """Run *command*; its stdout as JSON (None when empty)."""
        executor, path = self.executors[impl]
        out = executor.exec(
            Invocation(
                command=command,
                plugin_type="firewall",
                stdin=json.dumps(conf).encode(),
                container_id=CID,
                netns=self.ctr.path,
                ifname="eth0",
                path=path,
            )
        )
        return plugin_output(out, self.ctr.path)

    def error(self, impl: str, command: str, conf: JSON) -> cnilib.CNIError:
        """*command* that must fail: the error."""
        with pytest.raises(cnilib.CNIError) as info:
            self.call(impl, command, conf)
        return info.value

    def tables(self) -> dict[str, list[str]]:
        """The node's iptables-save and ip6tables-save."""
        return tables(self.node)

    def rules(self) -> list[str]:
        """The node's IPv4 and IPv6 rules (``-A`` lines)."""
        return [line for lines in self.tables().values() for line in lines if line[:2] == "-A"]


def _world(make_ns: MakeNS, bin_dir: Path) -> World:
    node, ctr = make_ns(), make_ns()
    ctr.exec("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "p0")
    ctr.exec("ip", "link", "set", "eth0", "up")
    for ip in IPS:
        ctr.exec("ip", "addr", "add", ip, "dev", "eth0", *(("nodad",) if ":" in ip else ()))
    world = World(node, ctr)
    go = SubprocessExecutor(wrapper=node.exec_prefix, timeout=30.0)
    world.executors["go"] = (go, (str(GO_PLUGINS),))
    ours = InProcessExecutor(
        {"firewall": load_plugin("firewall")}, builtins=False, installed=False, host_netns=node.path
    )
    world.executors["py"] = (ours, (str(GO_PLUGINS),))
    world.executors["exe"] = (go, (str(bin_dir),))
    return world


@pytest.fixture
def worlds(cnilib_container_netns: MakeNS, bin_dir: Path) -> dict[str, World]:
    """One world per implementation."""
    return {impl: _world(cnilib_container_netns, bin_dir) for impl in IMPLS}


@pytest.fixture
def world(cnilib_container_netns: MakeNS, bin_dir: Path) -> World:
    """One world every implementation acts on (cross ADD/DEL)."""
    return _world(cnilib_container_netns, bin_dir)


# ------------------------------------------------------------------ ADD / CHECK / DEL

KEYS: dict[str, JSON] = {
    "default": {},
    "iptables": {"backend": "iptables"},
    "admin-chain": {"backend": "iptables", "iptablesAdminChainName": "MY-ADMIN"},
    "open": {"ingressPolicy": "open"},
    "same-bridge": {"backend": "iptables", "ingressPolicy": "same-bridge"},
}


@pytest.mark.parametrize("version", ["1.0.0", "0.4.0"])
@pytest.mark.parametrize("case", list(KEYS))
def test_add_check_del_same_as_go(worlds: dict[str, World], case: str, version: str) -> None:
    """ADD, CHECK, DEL (twice): the same result and node tables as Go's, in process and
    as an executable."""
    seen: dict[str, list[Any]] = {}
    for impl, w in worlds.items():
        conf = w.conf(version, **KEYS[case])
        result = w.call(impl, "ADD", conf)
        added = w.tables()
        w.call(impl, "CHECK", {**conf, "prevResult": result})
        w.call(impl, "DEL", conf)
        deleted = w.tables()
        w.call(impl, "DEL", conf)
        assert w.tables() == deleted
        seen[impl] = [result, added, deleted]
    assert seen["py"] == seen["go"]
    assert seen["exe"] == seen["go"]
    added_v4 = seen["py"][1]["iptables-save"]
    assert all(rule in added_v4 for rule in PER_IP)
    assert not any(rule in seen["py"][2]["iptables-save"] for rule in PER_IP)
    assert "-A CNI-FORWARD -s 2001:db8::2/128 -j ACCEPT" in seen["py"][1]["ip6tables-save"]
    prev = json.dumps(worlds["py"].conf(version)["prevResult"])
    if version == "1.0.0":  # 0.4.0 gains each address's "version", as in Go
        assert seen["py"][0] == json.loads(prev.replace(worlds["py"].ctr.path, "<netns>"))


def test_forward_layout(world: World) -> None:
    """Go's layout: ``CNI-FORWARD`` jumped to first from ``FORWARD`` (before a rule that
    was there), the admin chain first from ``CNI-FORWARD``, then the address rules;
    a second container's ADD adds its two rules only."""
    world.node.exec("iptables", "-A", "FORWARD", "-j", "ACCEPT")
    world.call("py", "ADD", world.conf(iptablesAdminChainName="MY-ADMIN"))
    other = world.conf(iptablesAdminChainName="MY-ADMIN")
    other["prevResult"]["ips"] = [{"address": "10.1.0.3/24", "interface": 1}]
    world.call("py", "ADD", other)
    assert world.tables()["iptables-save"][4:] == [
        ":CNI-FORWARD - [0:0]",
        ":MY-ADMIN - [0:0]",
        '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD',
        "-A FORWARD -j ACCEPT",
        '-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j MY-ADMIN',
        *PER_IP,
        "-A CNI-FORWARD -d 10.1.0.3/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A CNI-FORWARD -s 10.1.0.3/32 -j ACCEPT",
        "COMMIT",
    ]


def test_several_addresses_keep_prev_result_order_as_go(worlds: dict[str, World]) -> None:
    """Several addresses of each family, not in sorted order: the same rules in the same
    order as Go's (``prevResult``'s); CHECK passes and DEL removes them all."""
    ips = ["10.1.0.9/24", "10.1.0.10/24", "2001:db8::b/64", "2001:db8::a/64"]
    seen = {}
    for impl, w in worlds.items():
        conf = w.conf()
        conf["prevResult"]["ips"] = [{"address": ip, "interface": 1} for ip in ips]
        w.call(impl, "ADD", conf)
        seen[impl] = w.tables()
        w.call(impl, "CHECK", conf)
        w.call(impl, "DEL", conf)
        assert not any(" -s " in rule for rule in w.rules()), impl
    assert seen["py"] == seen["go"]
    assert seen["exe"] == seen["go"]


def test_chains_with_quotes_in_their_names_on_the_node(world: World) -> None:
    """Chains named with a quote or a backslash (iptables prints them unquoted), and an
    admin chain named so: ADD, CHECK and DEL work, twice."""
    world.node.exec("iptables", "-N", "it's")
    world.node.exec("iptables", "-N", "back\\slash")
    conf = world.conf(iptablesAdminChainName="O'ADMIN")
    for _ in range(2):
        world.call("py", "ADD", conf)
        world.call("py", "CHECK", conf)
        assert all(rule in world.rules() for rule in PER_IP)
        admin = '"CNI firewall plugin admin overrides" -j O\'ADMIN'
        assert f"-A CNI-FORWARD -m comment --comment {admin}" in world.rules()
        world.call("py", "DEL", conf)
        assert not any(rule in world.rules() for rule in PER_IP)


def test_concurrent_adds_and_dels_in_one_node(world: World) -> None:
    """Many containers' ADDs at once, as separate processes and in process: every rule
    once (the list-then-change of each call is serialized per host namespace); then
    their DELs at once remove every address rule."""
    count = 24

    def conf(i: int) -> JSON:
        c = world.conf(ingressPolicy="same-bridge")
        c["prevResult"]["ips"] = [{"address": f"10.1.{i}.2/16", "interface": 1}]
        return c

    def run(command: str) -> None:
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            calls = [
                pool.submit(world.call, "exe" if i % 3 else "py", command, conf(i))
                for i in range(count)
            ]
            for call in calls:
                call.result()

    run("ADD")
    rules = world.tables()["iptables-save"]
    assert [r for r in rules if rules.count(r) > 1 and r.startswith("-A")] == []
    assert sum(r.startswith("-A CNI-FORWARD -s ") for r in rules) == count
    run("DEL")
    assert not any(r.startswith("-A CNI-FORWARD -s ") for r in world.rules())


def test_add_waits_for_a_concurrent_add_of_another_process(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's ADD that starts between our ADD's listing and its change waits
    for it (it would otherwise see no jump either, and both would insert one): every
    rule once. The other ADD is given a few seconds while ours holds the namespace."""
    other = world.conf(ingressPolicy="same-bridge")
    other["prevResult"]["ips"] = [{"address": "10.1.0.3/24", "interface": 1}]
    started: list[threading.Thread] = []

    def run_tool(argv: list[str], stdin: str | None = None) -> Any:
        if argv[0].endswith("iptables-restore") and not started:
            started.append(threading.Thread(target=world.call, args=("exe", "ADD", other)))
            started[0].start()
            started[0].join(3.0)  # done by then unless it waits for us
        return tools.run_tool(argv, stdin)

    monkeypatch.setattr(fw_iptables, "run_tool", run_tool)
    world.call("py", "ADD", world.conf(ingressPolicy="same-bridge"))
    started[0].join()
    rules = world.tables()["iptables-save"]
    assert [r for r in rules if r.startswith("-A") and rules.count(r) > 1] == []
    assert all(rule in rules for rule in PER_IP)
    assert "-A CNI-FORWARD -s 10.1.0.3/32 -j ACCEPT" in rules


def test_failed_add_leaves_no_address_rule_of_another_family(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IPv6's change fails after IPv4's went in: the error, and IPv4's address rules are
    taken out again (a rule that was there before the ADD stays)."""
    other = world.conf()
    other["prevResult"]["ips"] = [{"address": "10.1.0.3/24", "interface": 1}]
    world.call("py", "ADD", other)

    def run_tool(argv: list[str], stdin: str | None = None) -> Any:
        if argv[0].endswith("ip6tables-restore"):
            return subprocess.CompletedProcess(argv, 4, "", "ip6tables-restore: broken")
        return tools.run_tool(argv, stdin)

    monkeypatch.setattr(fw_iptables, "run_tool", run_tool)
    err = world.error("py", "ADD", world.conf())
    assert "ip6tables-restore: broken" in err.msg
    assert not any("10.1.0.2" in rule for rule in world.rules())
    assert "-A CNI-FORWARD -s 10.1.0.3/32 -j ACCEPT" in world.rules()


@pytest.mark.parametrize(("adder", "deleter"), [("py", "go"), ("go", "py"), ("exe", "go")])
def test_del_undoes_the_other_ones_add(worlds: dict[str, World], adder: str, deleter: str) -> None:
    """Go's DEL removes what our ADD made and ours what Go's made: the node ends as
    after Go's own ADD and DEL; each one's CHECK accepts the other's ADD."""
    keys = KEYS["same-bridge"]
    base = worlds["go"]
    base.call("go", "ADD", base.conf(**keys))
    base.call("go", "DEL", base.conf(**keys))
    w = worlds["py"]
    w.call(adder, "ADD", w.conf(**keys))
    w.call(deleter, "CHECK", w.conf(**keys))
    w.call(deleter, "DEL", w.conf(**keys))
    assert w.tables() == base.tables()


@pytest.mark.parametrize("impl", ["py", "exe"])
def test_spec_110_ours_only(worlds: dict[str, World], impl: str) -> None:
    """Spec 1.1.0 (latest Go): ours serves it, STATUS and GC included, with the same
    rules as for 1.0.0; Debian's 1.1.1 refuses it."""
    w = worlds[impl]
    assert w.call(impl, "ADD", w.conf("1.1.0")) is not None
    assert all(rule in w.rules() for rule in PER_IP)
    w.call(impl, "CHECK", w.conf("1.1.0"))
    w.call(impl, "STATUS", w.conf("1.1.0", prev=False))
    w.call(impl, "GC", {**w.conf("1.1.0", prev=False), "cni.dev/valid-attachments": []})
    w.call(impl, "DEL", w.conf("1.1.0"))
    assert not any(rule in w.rules() for rule in PER_IP)
    err = worlds["go"].error("go", "ADD", worlds["go"].conf("1.1.0"))
    assert (err.code, err.msg) == (1, "incompatible CNI versions")


@pytest.mark.parametrize("version", ["0.3.1", "0.3.0", "0.2.0", "0.1.0"])
def test_versions_before_040_refused_as_go(worlds: dict[str, World], version: str) -> None:
    """Before 0.4.0: Go's ``incompatible CNI versions``, naming the versions served; no rule."""
    errs = {impl: w.error(impl, "ADD", w.conf(version)) for impl, w in worlds.items()}
    for impl in ("py", "exe"):
        assert (errs[impl].code, errs[impl].msg) == (errs["go"].code, errs["go"].msg)
        assert errs[impl].details == (
            f'config is "{version}", plugin supports ["0.4.0" "1.0.0" "1.1.0"]'
        )
        assert worlds[impl].rules() == []


@pytest.mark.parametrize("command", ["ADD", "CHECK"])
def test_prev_result_required_as_go(worlds: dict[str, World], command: str) -> None:
    """ADD and CHECK without ``prevResult``: Go's error, nothing made."""
    errs = {impl: w.error(impl, command, w.conf(prev=False)) for impl, w in worlds.items()}
    for impl in ("py", "exe"):
        assert (errs[impl].code, errs[impl].msg) == (999, "missing prevResult from earlier plugin")
        assert (errs[impl].code, errs[impl].msg) == (errs["go"].code, errs["go"].msg)
        assert worlds[impl].rules() == []


@pytest.mark.parametrize("impl", ["py", "exe"])
def test_del_without_prev_result_uses_the_container_addresses(world: World, impl: str) -> None:
    """DEL without ``prevResult`` removes the rules of ``eth0``'s addresses (Go's DEL
    removes nothing then); without the namespace it still succeeds."""
    world.call(impl, "ADD", world.conf())
    world.call(impl, "DEL", world.conf(prev=False))
    assert not any("10.1.0.2" in r or "2001:db8::2" in r for r in world.rules())
    world.call("go", "ADD", world.conf())
    world.call("go", "DEL", world.conf(prev=False))
    assert all(rule in world.rules() for rule in PER_IP)  # Go leaves them
    world.ctr.exec("ip", "link", "del", "eth0")
    world.call(impl, "DEL", world.conf(prev=False))


def test_unknown_ingress_policy_refused_before_any_rule(worlds: dict[str, World]) -> None:
    """An unknown ``ingressPolicy``: Go's text; ours fails before any rule (Go makes the
    address rules first and leaves them). Go's DEL removes the address rules, then fails
    the same way; ours succeeds (DEL does not need the policy)."""
    errs = {}
    left = {}
    for impl, w in worlds.items():
        errs[impl] = w.error(impl, "ADD", w.conf(ingressPolicy="bogus"))
        left[impl] = w.rules()
    go = worlds["go"]
    del_err = go.error("go", "DEL", go.conf(ingressPolicy="bogus"))
    assert (del_err.code, del_err.msg) == (errs["go"].code, errs["go"].msg)
    assert not any(rule in go.rules() for rule in PER_IP)  # removed before it failed
    for impl in ("py", "exe"):
        worlds[impl].call(impl, "DEL", worlds[impl].conf(ingressPolicy="bogus"))
        assert (errs[impl].code, errs[impl].msg) == (999, 'unknown ingress policy: "bogus"')
        assert (errs[impl].code, errs[impl].msg) == (errs["go"].code, errs["go"].msg)
        assert left[impl] == []
    assert all(rule in left["go"] for rule in PER_IP)


def test_same_bridge_needs_an_interface_as_go(worlds: dict[str, World]) -> None:
    """``same-bridge`` with no interface in ``prevResult``: Go's text, and no rule."""
    errs = {}
    for impl, w in worlds.items():
        conf = w.conf(ingressPolicy="same-bridge")
        conf["prevResult"]["interfaces"] = []
        conf["prevResult"]["ips"] = [{"address": IPS[0]}]
        errs[impl] = w.error(impl, "ADD", conf)
    for impl in ("py", "exe"):
        assert (errs[impl].code, errs[impl].msg) == (errs["go"].code, errs["go"].msg)
        assert errs[impl].msg == (
            'interface needs to be set for ingress policy "same-bridge", '
            'make sure to chain "firewall" plugin with "bridge"'
        )
        assert worlds[impl].rules() == []


def test_isolated_policy_adds_the_bridge_drop(world: World) -> None:
    """``isolated`` (latest Go): the same-bridge chains plus a drop of traffic between the
    bridge's ports; CHECK wants it; DEL keeps the chains as for same-bridge."""
    conf = world.conf(ingressPolicy="isolated")
    world.call("py", "ADD", conf)
    stage1 = [
        r for r in world.tables()["iptables-save"] if r.startswith("-A CNI-ISOLATION-STAGE-1")
    ]
    same = '-m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)"'
    assert stage1 == [
        "-A CNI-ISOLATION-STAGE-1 -i br0 -o br0 -m comment --comment "
        '"CNI firewall plugin rules (ingressPolicy: isolated)" -j DROP',
        f"-A CNI-ISOLATION-STAGE-1 -i br0 ! -o br0 {same} -j CNI-ISOLATION-STAGE-2",
        f"-A CNI-ISOLATION-STAGE-1 {same} -j RETURN",
    ]
    world.call("py", "CHECK", conf)
    world.node.exec("iptables", "-D", "CNI-ISOLATION-STAGE-1", "1")
    err = world.error("py", "CHECK", conf)
    assert err.msg.startswith("expected CNI-ISOLATION-STAGE-1 rule [-i br0 -o br0 ")
    world.call("py", "DEL", conf)


# ----------------------------------------------------------------------------- CHECK

DRIFT: dict[str, tuple[tuple[str, ...], str]] = {
    "address-rule": (
        ("iptables", "-D", "CNI-FORWARD", "-s", "10.1.0.2/32", "-j", "ACCEPT"),
        "expected rule [-s 10.1.0.2/32 -j ACCEPT] not found",
    ),
    "ipv6-reply-rule": (
        ("ip6tables", "-D", "CNI-FORWARD", "-d", "2001:db8::2/128", "-m", "conntrack",
         "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
        "expected rule [-d 2001:db8::2/128 -m conntrack --ctstate RELATED,ESTABLISHED "
        "-j ACCEPT] not found",
    ),
    "admin-jump": (
        ("iptables", "-D", "CNI-FORWARD", "-m", "comment", "--comment",
         "CNI firewall plugin admin overrides", "-j", "CNI-ADMIN"),
        "expected CNI-FORWARD rule [-m comment --comment CNI firewall plugin admin overrides "
        "-j CNI-ADMIN] not found",
    ),
    "forward-jump": (
        ("iptables", "-D", "FORWARD", "-m", "comment", "--comment", "CNI firewall plugin rules",
         "-j", "CNI-FORWARD"),
        "expected FORWARD rule [-m comment --comment CNI firewall plugin rules -j CNI-FORWARD] "
        "not found",
    ),
    "forward-chain": (
        ("sh", "-c", "iptables -D FORWARD 1 && iptables -F CNI-FORWARD && iptables -X CNI-FORWARD"),
        "expected FORWARD rule [-m comment --comment CNI firewall plugin rules -j CNI-FORWARD] "
        "not found",
    ),
}  # fmt: skip


@pytest.mark.parametrize("drift", list(DRIFT))
def test_check_fails_when_a_rule_is_removed(worlds: dict[str, World], drift: str) -> None:
    """A rule or chain removed by hand: CHECK fails with Go's text, creating nothing."""
    command, text = DRIFT[drift]
    for impl, w in worlds.items():
        conf = w.conf(backend="iptables")
        w.call(impl, "ADD", conf)
        w.node.exec(*command)
        before = w.tables()
        err = w.error(impl, "CHECK", conf)
        assert (err.code, err.msg) == (999, text), impl
        if impl != "go":  # Go's CHECK makes the chains it misses
            assert w.tables() == before


def test_check_sees_a_missing_isolation_rule_go_does_not(worlds: dict[str, World]) -> None:
    """CHECK with ``same-bridge`` also wants the isolation rules (Go's does not look)."""
    for impl, w in worlds.items():
        conf = w.conf(ingressPolicy="same-bridge")
        w.call(impl, "ADD", conf)
        w.node.exec("iptables", "-F", "CNI-ISOLATION-STAGE-2")
        if impl == "go":
            w.call(impl, "CHECK", conf)
            continue
        err = w.error(impl, "CHECK", conf)
        assert err.msg == (
            "expected CNI-ISOLATION-STAGE-2 rule [-o br0 -m comment --comment CNI firewall "
            "plugin rules (ingressPolicy: same-bridge) -j DROP] not found"
        )


# ------------------------------------------------------------------------- backends


def test_firewalld_backend_refused_clearly(worlds: dict[str, World]) -> None:
    """``"backend": "firewalld"``: a cnilib error naming the way out (Go's fails here too,
    without a system bus); DEL succeeds."""
    go_err = worlds["go"].error("go", "ADD", worlds["go"].conf(backend="firewalld"))
    assert "dbus" in go_err.msg
    for impl in ("py", "exe"):
        w = worlds[impl]
        for command in ("ADD", "CHECK"):
            err = w.error(impl, command, w.conf(backend="firewalld"))
            assert err.code == 999
            assert err.msg == (
                'firewall backend "firewalld" is not supported by cnilib (it has no D-Bus '
                'client): use "backend": "iptables", or Go\'s firewall binary'
            )
        w.call(impl, "DEL", w.conf(backend="firewalld"))
        assert w.rules() == []


def test_unknown_backend_refused(worlds: dict[str, World]) -> None:
    """An unknown ``backend`` is a config error (Go silently takes its default)."""
    w = worlds["py"]
    err = w.error("py", "ADD", w.conf(backend="nftables"))
    assert err.code == 7
    assert err.msg.startswith('unknown firewall backend "nftables"')
    assert w.rules() == []


def test_admin_chain_named_like_a_target_is_a_config_error(world: World) -> None:
    """iptables refuses a chain named like a target (``MARK``): a config error naming
    the key, not the tool's usage text (Go passes iptables' text on, code 999)."""
    err = world.error("py", "ADD", world.conf(iptablesAdminChainName="MARK"))
    assert err.code == 7
    assert err.msg == (
        'invalid iptablesAdminChainName "MARK": iptables refuses it: chain name may not '
        "clash with target name"
    )
    assert not any(r.startswith("-A CNI-FORWARD -s ") for r in world.rules())


@pytest.mark.parametrize(
    "keys",
    [{"iptablesAdminChainName": "bad name"}, {"backend": "nft"}, {"ingressPolicy": "x"}],
    ids=["admin-chain", "backend", "ingress-policy"],
)
def test_del_ignores_what_only_add_needs(world: World, keys: JSON) -> None:
    """DEL with a configuration ADD would refuse (changed since, say) still removes the
    addresses' rules: DEL needs none of those keys (Go's DEL ignores the first two, and
    fails on the third once it has removed the rules)."""
    world.call("py", "ADD", world.conf())
    assert all(rule in world.rules() for rule in PER_IP)
    world.call("py", "DEL", world.conf(**keys))
    assert not any(rule in world.rules() for rule in PER_IP)


def test_del_tries_again_when_a_rule_went_meanwhile(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule deleted by someone else between DEL's listing and its transaction (a Go
    DEL takes no lock) fails that transaction; DEL lists again and removes the rest."""
    world.call("py", "ADD", world.conf())
    raced: list[bool] = []

    def run_tool(argv: list[str], stdin: str | None = None) -> Any:
        if argv[0].endswith("iptables-restore") and not raced:
            raced.append(True)
            world.node.exec("iptables", "-D", "CNI-FORWARD", "-s", "10.1.0.2/32", "-j", "ACCEPT")
        return tools.run_tool(argv, stdin)

    monkeypatch.setattr(fw_iptables, "run_tool", run_tool)
    world.call("py", "DEL", world.conf())
    assert raced
    assert not any(rule in world.rules() for rule in PER_IP)


# ----------------------------------------------------------------------- connectivity

SUBNETS = {"foo": "10.88.3", "bar": "10.88.4"}


@dataclass
class Node:
    """A node whose ``FORWARD`` policy is DROP, bridges ``fwfoo``/``fwbar`` made by
    cnilib's bridge plugin in process, and containers on them."""

    ns: NetNS
    make_ns: MakeNS
    tmp: Path
    ctrs: list[tuple[NetNS, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        executor = InProcessExecutor(host_netns=self.ns.path)
        self.cni = cnilib.CNI([str(GO_PLUGINS)], cache_dir=self.tmp / "cache", executor=executor)
        self.ns.exec("iptables", "-P", "FORWARD", "DROP")

    def conflist(self, net: str, firewall: JSON | None) -> cnilib.NetworkConfigList:
        plugins: list[JSON] = [
            {
                "type": "bridge",
                "bridge": f"fw{net}",
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(self.tmp / "ipam"),
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": f"{SUBNETS[net]}.0/24"}]],
                },
            }
        ]
        if firewall is not None:
            plugins.append({"type": "firewall", **firewall})
        raw = {"cniVersion": "1.0.0", "name": net, "plugins": plugins}
        return cnilib.conflist_from_bytes(json.dumps(raw).encode())

    def attach(self, net: str, firewall: JSON | None) -> str:
        """A new container on *net*; its address."""
        ctr = self.make_ns()
        rt = cnilib.RuntimeConf(f"ctr-{len(self.ctrs)}", ctr.path, "eth0")
        conf = self.conflist(net, firewall)
        res = self.cni.add_network_list(conf, rt)
        assert res is not None
        self.cni.check_network_list(conf, rt)
        ip = str(res.as_v1().ips[0].address.ip)  # type: ignore[union-attr]
        self.ctrs.append((ctr, net, ip))
        return ip

    def bridged_traffic_filtered(self) -> bool:
        """Whether bridged traffic passes iptables in this node (``br_netfilter``'s
        ``bridge-nf-call-iptables``, on wherever the module is loaded)."""
        path = "/proc/sys/net/bridge/bridge-nf-call-iptables"
        return self.ns.exec("cat", path, check=False).stdout.strip() == "1"

    def reaches(self, src: int, dst: int) -> bool:
        return pings(self.ctrs[src][0], self.ctrs[dst][2], tries=10)


@pytest.fixture
def make_node(cnilib_container_netns: MakeNS, tmp_path: Path) -> Callable[[], Node]:
    """Nodes, each with its own namespace and files."""
    made: list[Node] = []

    def make() -> Node:
        node = Node(cnilib_container_netns(), cnilib_container_netns, tmp_path / str(len(made)))
        made.append(node)
        return node

    return make


def test_forward_drop_passes_only_with_the_plugin(make_node: Callable[[], Node]) -> None:
    """With ``FORWARD`` DROP, traffic routed to a container on another bridge is dropped
    without the firewall plugin and passes with it; so does traffic on one bridge where
    bridged traffic passes iptables (else it passes either way)."""
    bare = make_node()
    for net in ("foo", "foo", "bar"):
        bare.attach(net, None)
    assert bare.reaches(0, 1) is not bare.bridged_traffic_filtered()
    assert not bare.reaches(2, 0)
    assert not bare.reaches(0, 2)
    with_fw = make_node()
    for net in ("foo", "foo", "bar"):
        with_fw.attach(net, {})
    assert with_fw.reaches(0, 1)
    assert with_fw.reaches(2, 0)
    assert with_fw.reaches(0, 2)


def test_same_bridge_isolates_the_bridges(make_node: Callable[[], Node]) -> None:
    """``same-bridge``: a container on the same bridge reaches the container, one on
    another bridge of the node does not, either way; with ``open`` it does."""
    node = make_node()
    for net in ("foo", "foo", "bar"):
        node.attach(net, {"backend": "iptables", "ingressPolicy": "same-bridge"})
    assert node.reaches(1, 0)
    assert node.reaches(0, 1)
    assert not node.reaches(2, 0)
    assert not node.reaches(0, 2)
    open_node = make_node()
    for net in ("foo", "foo", "bar"):
        open_node.attach(net, {"backend": "iptables", "ingressPolicy": "open"})
    assert open_node.reaches(2, 0)


def test_isolated_drops_traffic_on_the_bridge(make_node: Callable[[], Node]) -> None:
    """``isolated``: not even a container on the same bridge reaches the container
    (where bridged traffic passes iptables; elsewhere nothing can stop it there)."""
    node = make_node()
    if not node.bridged_traffic_filtered():
        pytest.skip("bridged traffic does not pass iptables here (br_netfilter is not loaded)")
    for net in ("foo", "foo", "bar"):
        node.attach(net, {"ingressPolicy": "isolated"})
    assert not node.reaches(1, 0)
    assert not node.reaches(2, 0)
