"""portmap's configuration without a kernel: Go's defaults, refusals and texts, the
backend choice, the container addresses, and the iptables/nftables rules it leads to."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from cnilib._json import JSONValue
from cnilib.errors import PluginError
from cnilib.plugins.meta import _portmap_iptables as ipt, _portmap_nft as nft
from cnilib.plugins.meta._portmap_conf import PortMapConf, container_ips
from cnilib.results import decode_result

TCP: dict[str, JSONValue] = {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
HOST = ("-p", "tcp", "--dport", "8443", "-d", "192.0.2.1")
MARK = "CNI-HOSTPORT-SETMARK"


def mapped(**entry: Any) -> dict[str, Any]:
    """A config key set with one mapping: TCP with *entry* changed."""
    return {"runtimeConfig": {"portMappings": [{**TCP, **entry}]}}


def load(detect: str = "iptables", **keys: Any) -> PortMapConf:
    calls: list[str] = []

    def probe() -> str:
        calls.append("probe")
        return detect

    return PortMapConf.load({"name": "net", **keys}, probe)


def refused(**keys: Any) -> str:
    with pytest.raises(PluginError) as info:
        load(**keys)
    assert info.value.code == 999
    return info.value.msg


def test_defaults_are_gos() -> None:
    conf = load(runtimeConfig={"portMappings": [TCP]})
    assert (conf.snat, conf.mark_bit, conf.mark, conf.masq_all) == (
        True,
        13,
        "0x2000/0x2000",
        False,
    )
    assert conf.backend == "iptables"
    assert not conf.route_localnet


@pytest.mark.parametrize(
    ("keys", "text"),
    [
        ({"markMasqBit": 32}, "MasqMarkBit must be between 0 and 31"),
        ({"markMasqBit": -1}, "MasqMarkBit must be between 0 and 31"),
        (
            {"markMasqBit": 1, "externalSetMarkChain": "X"},
            "Cannot specify externalSetMarkChain and markMasqBit",
        ),
        (
            {"runtimeConfig": {"portMappings": [{**TCP, "containerPort": 0}]}},
            "Invalid container port number: 0",
        ),
        (mapped(hostPort=-5), "Invalid host port number: -5"),
        (
            {"snat": 1},
            "failed to parse network configuration: json: cannot unmarshal number into "
            "Go struct field PortMapConf.snat of type bool",
        ),
        (
            {"conditionsV4": "-d x"},
            "failed to parse network configuration: json: cannot unmarshal string into "
            "Go struct field PortMapConf.conditionsV4 of type []string",
        ),
        (
            {"backend": "nftables", "conditionsV4": ["-d", "1.2.3.4"]},
            "nftables backend was requested but configuration contains iptables-specific "
            "options [conditionsV4]",
        ),
        ({"backend": "ebpf"}, 'unrecognized backend "ebpf"'),
        (mapped(hostIP="x"), "Invalid host IP: 'x'"),
        (mapped(hostPort=70000), "Invalid host port number: 70000"),
        (mapped(protocol="tcp dport"), "Invalid protocol: 'tcp dport' (tcp, udp or sctp)"),
        (
            {"backend": "nftables", "conditionsV4": ["ip daddr 1.2.3.4\nflush ruleset"]},
            "Invalid nftables condition 'ip daddr 1.2.3.4\\nflush ruleset' in conditionsV4: "
            "it may not hold a newline or ';'",
        ),
        (
            # iptables-restore reads a command a line, quoted or not: this would
            # append a DROP to the filter table's INPUT.
            {"conditionsV6": ["-m", "comment", "--comment",
                              "x\nCOMMIT\n*filter\n-A INPUT -j DROP"]},
            "Invalid iptables condition 'x\\nCOMMIT\\n*filter\\n-A INPUT -j DROP' in conditionsV6: "
            "it may not hold a newline",
        ),
        (
            {"conditionsV4": ["-s", "10.0.0.0/8\r"]},
            "Invalid iptables condition '10.0.0.0/8\\r' in conditionsV4: it may not hold a newline",
        ),
        (
            {"externalSetMarkChain": "MARK\n-A INPUT -j DROP"},
            "Invalid externalSetMarkChain 'MARK\\n-A INPUT -j DROP': not an iptables chain name",
        ),
        (
            {"externalSetMarkChain": ""},
            "Invalid externalSetMarkChain '': not an iptables chain name",
        ),
    ],
)  # fmt: skip
def test_refusals(keys: dict[str, Any], text: str) -> None:
    assert refused(**keys) == text


def test_backend_is_probed_only_when_it_matters() -> None:
    """No backend key: the host's default decides, unless nothing depends on it."""
    probed: list[int] = []

    def probe() -> str:
        probed.append(1)
        return "nftables"

    conf = PortMapConf.load({"runtimeConfig": {"portMappings": [TCP]}}, probe)
    assert conf.backend == "nftables"
    assert probed == [1]
    assert PortMapConf.load({"backend": "iptables"}, probe).backend == "iptables"
    assert probed == [1]


def test_conditions_pick_the_backend_they_belong_to() -> None:
    assert refused(detect="nftables", conditionsV6=["-s", "::1"]) == (
        "nftables backend was requested but configuration contains iptables-specific "
        "options [conditionsV6]"
    )
    assert load(detect="nftables", conditionsV4=["ip", "saddr", "1.2.3.4"]).backend == "nftables"


def test_container_ips_skip_other_interfaces() -> None:
    prev = decode_result(
        {
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "br0"},
                {"name": "eth0", "sandbox": "/x"},
                {"name": "eth1", "sandbox": "/x"},
            ],
            "ips": [
                {"address": "10.0.0.1/24", "interface": 0},
                {"address": "10.1.0.2/24", "interface": 2},
                {"address": "10.0.0.2/24", "interface": 1},
                {"address": "fd00::2/64", "interface": 1},
                {"address": "10.0.0.3/24", "interface": 1},
            ],
        }
    )  # fmt: skip
    v4, v6 = container_ips(prev, "eth0")
    assert (str(v4), str(v6)) == ("10.0.0.2/24", "fd00::2/64")


def test_iptables_rules_follow_gos_fill_dnat_rules() -> None:
    conf = load(
        runtimeConfig={
            "portMappings": [
                TCP,
                {**TCP, "hostPort": 8443, "containerPort": 443, "hostIP": "192.0.2.1"},
                {**TCP, "hostPort": 9000, "hostIP": "2001:db8::1"},
            ]
        },
        conditionsV4=["-s", "10.0.0.0/8"],
    )
    ip = ipaddress.ip_interface("10.9.0.2/24")
    assert ipt.chain_rules(conf, ip) == [
        ("-p", "tcp", "--dport", "8080", "-s", "10.9.0.2/24", "-j", MARK),
        ("-p", "tcp", "--dport", "8080", "-s", "127.0.0.1", "-j", MARK),
        ("-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.9.0.2:80"),
        (*HOST, "-s", "10.9.0.2/24", "-j", MARK),
        (*HOST, "-s", "127.0.0.1", "-j", MARK),
        (*HOST, "-j", "DNAT", "--to-destination", "10.9.0.2:443"),
    ]  # fmt: skip
    # Every entry's port is in the jump, also the IPv6 hostIP one (as in Go).
    assert ipt.entry_rules(conf, "net", "cid", 4) == [
        ("-m", "comment", "--comment", 'dnat name: "net" id: "cid"', "-m", "multiport",
         "-p", "tcp", "--destination-ports", "8080,8443,9000", "-s", "10.0.0.0/8"),
    ]  # fmt: skip
    assert ipt.dnat_chain_name("net", "cid").startswith("CNI-DN-")
    assert len(ipt.dnat_chain_name("net", "cid")) == 28


def test_iptables_masq_all_and_external_chain() -> None:
    conf = load(
        runtimeConfig={"portMappings": [TCP]}, masqAll=True, externalSetMarkChain="KUBE-MARK-MASQ"
    )
    rules = ipt.chain_rules(conf, ipaddress.ip_interface("fd00::2/64"))
    assert rules == [
        ("-p", "tcp", "--dport", "8080", "-s", "::/0", "-j", "KUBE-MARK-MASQ"),
        ("-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "[fd00::2]:80"),
    ]  # fmt: skip


def test_sixteen_ports_make_two_multiport_jumps() -> None:
    mappings = [{"hostPort": 9000 + i, "containerPort": 80, "protocol": "udp"} for i in range(16)]
    rules = ipt.entry_rules(load(runtimeConfig={"portMappings": mappings}), "n", "c", 6)
    assert [r[9].count(",") + 1 for r in rules] == [15, 1]


def test_nft_script_has_fib_local_before_every_mapping() -> None:
    conf = load(
        detect="nftables",
        runtimeConfig={
            "portMappings": [TCP, {**TCP, "hostPort": 53, "protocol": "udp", "hostIP": "192.0.2.1"}]
        },
        conditionsV4=["ip", "saddr", "!=", "10.0.0.0/8"],
    )  # fmt: skip
    script = nft._script(conf, "cid", ipaddress.ip_interface("10.9.0.2/24"), [])
    entry = "ip saddr != 10.0.0.0/8 fib daddr type local jump hostports_all"
    assert f"add rule ip cni_hostport prerouting {entry}\n" in script
    assert f"add rule ip cni_hostport output {entry}\n" in script
    dnat = 'ip daddr 192.0.2.1 udp dport 53 dnat to 10.9.0.2:80 comment "cid"'
    assert f"add rule ip cni_hostport hostports {dnat}\n" in script
    assert "add rule ip cni_hostport hostports_all jump hostports\n" in script
    assert "add rule ip cni_hostport hostports_all jump hostip_hostports\n" in script
    assert 'ip saddr 127.0.0.1 ip daddr 10.9.0.2 masquerade comment "cid"' in script


def test_iptables_restore_words_never_hold_a_line_break() -> None:
    """The last guard before iptables-restore: a word with a line break is refused
    whichever way it got there (quoted, it would still end the line)."""
    assert ipt._quote('dnat name: "n"') == '"dnat name: \\"n\\""'
    for word in ("a\nCOMMIT", "a\rb", "a\0b"):
        with pytest.raises(PluginError, match="holds a line break"):
            ipt._quote(word)


def test_nft_refuses_a_container_id_that_breaks_the_script() -> None:
    conf = load(detect="nftables", runtimeConfig={"portMappings": [TCP]})
    with pytest.raises(PluginError, match="cannot be an nftables comment"):
        nft._script(conf, 'a" ; flush ruleset', ipaddress.ip_interface("10.9.0.2/24"), [])
