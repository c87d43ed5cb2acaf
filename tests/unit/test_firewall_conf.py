"""The firewall plugin's configuration, backend choice and rule texts, without a kernel
(see tests/privileged/test_firewall.py for the plugin against Go's)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from cnilib.errors import CNIError
from cnilib.invoke import Command
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._registry import load_plugin
from cnilib.plugins.meta import _firewall_conf as fwconf, firewall
from cnilib.plugins.meta._firewall_conf import FirewallConf
from cnilib.plugins.meta._firewall_iptables import (
    FamilyRules,
    address_rules,
    admin_jump,
    filter_jump,
    host_cidr,
    saved_words,
)
from tests.unit._guards import NO_SUCH_HOST

JSON = dict[str, Any]


def request(conf: JSON, command: Command = Command.ADD) -> PluginRequest:
    """A PluginRequest as the skel would build it."""
    return PluginRequest(
        command=command,
        container_id="c1",
        netns="/x",
        ifname="eth0",
        args=(),
        path=(),
        config=conf,
        stdin=json.dumps(conf).encode(),
        host_netns=NO_SUCH_HOST,
    )


def load(**conf: Any) -> FirewallConf:
    """FirewallConf of a config with *conf*'s keys."""
    return FirewallConf.load(request({"cniVersion": "1.0.0", "name": "n", **conf}))


def error(**conf: Any) -> CNIError:
    with pytest.raises(CNIError) as info:
        load(**conf)
    return info.value


def test_defaults() -> None:
    assert load() == FirewallConf(
        backend="", admin_chain="CNI-ADMIN", zone="trusted", ingress_policy=""
    )
    assert not load().isolates


def test_keys() -> None:
    conf = load(
        backend="iptables",
        iptablesAdminChainName="MY-ADMIN",
        firewalldZone="public",
        ingressPolicy="same-bridge",
    )
    assert conf == FirewallConf("iptables", "MY-ADMIN", "public", "same-bridge")
    assert conf.isolates
    assert load(ingressPolicy="isolated").isolates
    assert not load(ingressPolicy="open").isolates


@pytest.mark.parametrize("key", ["backend", "iptablesAdminChainName", "ingressPolicy"])
def test_wrong_type_is_gos_decode_error(key: str) -> None:
    err = error(**{key: 3})
    assert (err.code, err.msg) == (
        999,
        f"failed to load netconf: json: cannot unmarshal number into Go struct field "
        f"FirewallNetConf.{key} of type string",
    )


def test_unknown_ingress_policy_is_gos_text() -> None:
    err = error(ingressPolicy="strict")
    assert (err.code, err.msg) == (999, 'unknown ingress policy: "strict"')


def test_unknown_backend_refused() -> None:
    err = error(backend="nftables")
    assert err.code == 7
    assert err.msg == (
        'unknown firewall backend "nftables": use "iptables" '
        '(or "firewalld", which cnilib does not support)'
    )


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("A" * 29, "longer than 28 characters"),
        ("MY ADMIN", "has a blank, quote or control character"),
        ('MY"ADMIN', "has a blank, quote or control character"),
        ("-j", "starts with '-'"),
        ("!X", "starts with '!'"),
        ("ACCEPT", "is a built-in chain or target, or the plugin's own CNI-FORWARD"),
        ("FORWARD", "is a built-in chain or target, or the plugin's own CNI-FORWARD"),
        ("CNI-FORWARD", "is a built-in chain or target, or the plugin's own CNI-FORWARD"),
    ],
)
def test_bad_admin_chain_names_refused(name: str, why: str) -> None:
    err = error(iptablesAdminChainName=name)
    assert err.code == 7
    assert err.msg == f"invalid iptablesAdminChainName {json.dumps(name)}: {why}"


def test_admin_chain_of_28_characters_accepted() -> None:
    assert load(iptablesAdminChainName="A" * 28).admin_chain == "A" * 28


@pytest.mark.parametrize("name", ["forward", "accept", "Drop", "it's"])
def test_admin_chain_names_iptables_takes_accepted(name: str) -> None:
    """Chain names are case-sensitive: ``iptables -N forward`` works, as in Go."""
    assert load(iptablesAdminChainName=name).admin_chain == name


def test_firewalld_backend_refused_for_add() -> None:
    with pytest.raises(CNIError) as info:
        load(backend="firewalld").uses_iptables()
    assert "not supported by cnilib" in info.value.msg


def test_default_backend_refuses_where_firewalld_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Go would use a running firewalld; cnilib says so instead of using iptables."""
    monkeypatch.setattr(fwconf, "firewalld_running", lambda: True)
    with pytest.raises(CNIError) as info:
        load().uses_iptables()
    assert info.value.msg.startswith("firewalld is running")
    assert load(backend="iptables").uses_iptables()
    monkeypatch.setattr(fwconf, "firewalld_running", lambda: False)
    assert load().uses_iptables()


def test_firewalld_running_needs_the_bus_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fwconf, "_SYSTEM_BUS", (Path("/nonexistent/system_bus_socket"),))
    assert not fwconf.firewalld_running()


# ------------------------------------------------------------------------------ rules


def test_rules_are_gos() -> None:
    v4 = host_cidr(ipaddress.ip_interface("10.88.0.2/16"))
    v6 = host_cidr(ipaddress.ip_interface("2001:DB8:0::2/64"))
    assert (v4, v6) == ("10.88.0.2/32", "2001:db8::2/128")
    assert address_rules(v4) == (
        ("-d", v4, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
        ("-s", v4, "-j", "ACCEPT"),
    )
    assert filter_jump() == ("-m", "comment", "--comment", "CNI firewall plugin rules", "-j",
                             "CNI-FORWARD")  # fmt: skip
    assert admin_jump("X")[-2:] == ("-j", "X")


def test_isolation_rules_order() -> None:
    """Go's order: FORWARD jump, STAGE-1 bridge rule, RETURN, STAGE-2 drop, RETURN;
    ``isolated`` adds the drop inside the bridge; no bridge, no rules."""
    same = FamilyRules(4, ["10.0.0.2/32"], "CNI-ADMIN", "br0", "same-bridge").isolation()
    assert [(chain, spec[-1], prepend) for chain, spec, prepend in same] == [
        ("FORWARD", "CNI-ISOLATION-STAGE-1", True),
        ("CNI-ISOLATION-STAGE-1", "CNI-ISOLATION-STAGE-2", True),
        ("CNI-ISOLATION-STAGE-1", "RETURN", False),
        ("CNI-ISOLATION-STAGE-2", "DROP", True),
        ("CNI-ISOLATION-STAGE-2", "RETURN", False),
    ]
    isolated = FamilyRules(4, [], "CNI-ADMIN", "br0", "isolated").isolation()
    assert isolated[2][1][:4] == ("-i", "br0", "-o", "br0")
    assert FamilyRules(4, [], "CNI-ADMIN").isolation() == []


def test_saved_words_as_iptables_quotes_them() -> None:
    r"""``iptables -S`` quotes a comment, escaping ``\ " '`` in it, and prints chain names
    as they are, quotes and backslashes included."""
    line = r'-A FORWARD -m comment --comment "it\'s \"q\" \\ x" -j ACCEPT'
    assert saved_words(line) == (
        "-A", "FORWARD", "-m", "comment", "--comment", "it's \"q\" \\ x", "-j", "ACCEPT"
    )  # fmt: skip
    assert saved_words("-N it's") == ("-N", "it's")
    assert saved_words(r"-A CNI-FORWARD -j a\b") == ("-A", "CNI-FORWARD", "-j", "a\\b")
    assert saved_words('-A X -m comment --comment "" -j Y') == (
        "-A", "X", "-m", "comment", "--comment", "", "-j", "Y"
    )  # fmt: skip


def test_registered_and_versions() -> None:
    plugin = load_plugin("firewall")
    assert isinstance(plugin, firewall.Firewall)
    assert plugin.supported_versions == ("0.4.0", "1.0.0", "1.1.0")
