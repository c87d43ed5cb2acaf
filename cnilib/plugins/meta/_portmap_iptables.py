"""portmap's iptables backend: Go's chain layout in the nat table, rule for rule.

::

    PREROUTING, OUTPUT:   -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
    CNI-HOSTPORT-DNAT:    -m comment --comment 'dnat name: "<net>" id: "<cid>"'
                          -m multiport -p tcp --destination-ports 8080,8081 [conditions]
                          -j CNI-DN-<hash>
    CNI-DN-<hash>:        -p tcp --dport 8080 [-d hostIP] -s <ctr>/<len> -j CNI-HOSTPORT-SETMARK
                          -p tcp --dport 8080 [-d hostIP] -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK
                          -p tcp --dport 8080 [-d hostIP] -j DNAT --to-destination <ctr>:80
    CNI-HOSTPORT-SETMARK: -m comment --comment "CNI portfwd masquerade mark"
                          -j MARK --set-xmark 0x2000/0x2000
    POSTROUTING (first):  -m comment --comment "CNI portfwd requiring masquerade"
                          -j CNI-HOSTPORT-MASQ
    CNI-HOSTPORT-MASQ:    -m mark --mark 0x2000/0x2000 -j MASQUERADE

``CNI-DN-<hash>`` is Go's ``FormatChainNameWithPrefix(network, containerID,
"DN-")``, so either implementation's DEL removes the other's ADD. Only
traffic to a local address reaches ``CNI-HOSTPORT-DNAT`` (the ``addrtype
LOCAL`` match): traffic forwarded through the node to another address on the
same port is never redirected.

Where Go execs ``iptables`` per rule, ADD lists the nat table once and applies
every change in one ``iptables-restore --noflush`` transaction (a missing shared
``CNI-HOSTPORT-*`` chain is made before, by ``iptables -N``: declared in the
transaction, a chain another ADD made meanwhile would be flushed). The plugin
holds the host namespace's lock around ADD and DEL
(:mod:`cnilib.plugins._hosttools.netns_lock`), so two cnilib ADDs do not both add
the jumps from PREROUTING, OUTPUT and POSTROUTING (two Go ADDs may). ADD rewrites
the container's own chain and its jumps (a repeated ADD leaves no stale or
doubled rule; Go appends whatever is missing). CHECK asks ``iptables -C`` for
each rule ADD makes (Go 1.1.1's CHECK fails on hosts with ip6tables). DEL
removes every jump to the container's chain (also the chain of Go's older
``CNI-HOSTPORT-SNAT`` layout) and the chain. Call these on the host
namespace's worker (:func:`cnilib.netlink.run_in_netns`).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from cnilib.errors import PluginError
from cnilib.plugins._hostside import fail
from cnilib.plugins._hosttools.ipmasq import format_chain_name
from cnilib.plugins._hosttools.iptables_text import listing_rules, restore_word
from cnilib.plugins._hosttools.tools import find_tool, run_tool, tool_exists, tool_failure
from cnilib.plugins.meta._portmap_conf import PortMapConf
from cnilib.results import IPInterface

__all__ = [
    "DNAT_CHAIN",
    "MASQ_CHAIN",
    "SETMARK_CHAIN",
    "check_iptables",
    "dnat_chain_name",
    "forward_iptables",
    "iptables_usable",
    "unforward_iptables",
]

DNAT_CHAIN = "CNI-HOSTPORT-DNAT"
SETMARK_CHAIN = "CNI-HOSTPORT-SETMARK"
MASQ_CHAIN = "CNI-HOSTPORT-MASQ"
_OLD_SNAT_CHAIN = "CNI-HOSTPORT-SNAT"
_TOOLS = {4: ("iptables", "iptables-restore"), 6: ("ip6tables", "ip6tables-restore")}
_MULTIPORT_MAX = 15

Rule = tuple[str, ...]


def dnat_chain_name(network: str, container_id: str) -> str:
    """Go's per-container chain, ``CNI-DN-`` + the sha512 of network and container."""
    return format_chain_name(network, container_id, "DN-")


def _tool(version: int, which: int = 0) -> str:
    return find_tool(_TOOLS[version][which], "failed to open iptables")


def _run(argv: list[str], stdin: str | None = None) -> str:
    proc = run_tool(argv, stdin)
    if proc.returncode != 0:
        raise tool_failure(argv, proc)
    return proc.stdout


def _list_nat(version: int) -> list[Rule]:
    return listing_rules(_run([_tool(version), "-w", "-t", "nat", "-S"]))


# One word of an iptables-restore line: it reads line by line, quotes or not, so a
# word with a line break would end this rule and start a command of its own.
_quote = restore_word


def _restore(version: int, lines: Sequence[Rule]) -> None:
    if not lines:
        return
    body = [" ".join(_quote(word) for word in line) for line in lines]
    text = "\n".join(["*nat", *body, "COMMIT", ""])
    _run([_tool(version, 1), "-w", "--noflush"], stdin=text)


def iptables_usable(version: int) -> bool:
    """Go ``maybeGetIptables``: the tool is there and can list the nat table."""
    if not tool_exists(_TOOLS[version][0]):
        return False
    try:
        path = _tool(version)
    except PluginError:
        return False
    return run_tool([path, "-w", "-t", "nat", "-S", "OUTPUT"]).returncode == 0


# ----------------------------------------------------------------------------- rules


def _comment(network: str, container_id: str) -> str:
    """Go's ``trimComment``: iptables comments hold at most 255 characters."""
    text = f'dnat name: "{network}" id: "{container_id}"'
    return text if len(text) <= 255 else text[:253] + "..."


def _host_port(ip: str, port: int, version: int) -> str:
    return f"[{ip}]:{port}" if version == 6 else f"{ip}:{port}"


def _setmark_rule(conf: PortMapConf) -> Rule:
    return ("-m", "comment", "--comment", "CNI portfwd masquerade mark",
            "-j", "MARK", "--set-xmark", conf.mark)  # fmt: skip


def _masq_rule(conf: PortMapConf) -> Rule:
    return ("-m", "mark", "--mark", conf.mark, "-j", "MASQUERADE")


_MASQ_ENTRY: Rule = ("-m", "comment", "--comment", "CNI portfwd requiring masquerade")
_DNAT_ENTRY: Rule = ("-m", "addrtype", "--dst-type", "LOCAL")


def entry_rules(conf: PortMapConf, network: str, container_id: str, version: int) -> list[Rule]:
    """The jumps from ``CNI-HOSTPORT-DNAT`` to the container's chain (without ``-j``):
    one per protocol (sorted) and group of 15 ports, every entry counted (Go's
    ``fillDnatRules``: also those whose ``hostIP`` is of the other family)."""
    by_proto: dict[str, list[int]] = {}
    for mapping in conf.mappings:
        by_proto.setdefault(mapping.protocol, []).append(mapping.host_port)
    comment = _comment(network, container_id)
    rules = []
    for proto in sorted(by_proto):
        ports = by_proto[proto]
        for start in range(0, len(ports), _MULTIPORT_MAX):
            group = ",".join(str(p) for p in ports[start : start + _MULTIPORT_MAX])
            rules.append(
                ("-m", "comment", "--comment", comment, "-m", "multiport", "-p", proto,
                 "--destination-ports", group, *conf.conditions(version))
            )  # fmt: skip
    return rules


def chain_rules(conf: PortMapConf, ip: IPInterface) -> list[Rule]:
    """The container chain's rules, in Go's order: per entry the hairpin mark, the
    localhost mark (IPv4, unless ``masqAll``), then the DNAT."""
    version = ip.version
    setmark = conf.external_set_mark_chain or SETMARK_CHAIN
    rules: list[Rule] = []
    for mapping in conf.mappings:
        host = mapping.host_address(version)
        if host is None:
            continue
        base: Rule = ("-p", mapping.protocol, "--dport", str(mapping.host_port))
        if host:
            base += ("-d", host)
        if conf.snat:
            source = ("0.0.0.0/0" if version == 4 else "::/0") if conf.masq_all else str(ip)
            rules.append((*base, "-s", source, "-j", setmark))
            if version == 4 and not conf.masq_all:
                rules.append((*base, "-s", "127.0.0.1", "-j", setmark))
        target = _host_port(str(ip.ip), mapping.container_port, version)
        rules.append((*base, "-j", "DNAT", "--to-destination", target))
    return rules


# ------------------------------------------------------------------------------- ADD


def forward_iptables(conf: PortMapConf, network: str, container_id: str, ip: IPInterface) -> None:
    """ADD for one container address: Go's chains and rules, in one transaction."""
    version = ip.version
    existing = _list_nat(version)
    have = set(existing)
    lines: list[Rule] = []

    def ensure_chain(chain: str) -> None:
        if ("-N", chain) not in have:
            have.add(("-N", chain))
            _new_shared_chain(version, chain)

    def append_unique(chain: str, rule: Rule, *, first: bool = False) -> None:
        if ("-A", chain, *rule) in have:
            return
        have.add(("-A", chain, *rule))
        lines.append(("-I", chain, "1", *rule) if first else ("-A", chain, *rule))

    if conf.snat and conf.external_set_mark_chain is None:
        ensure_chain(SETMARK_CHAIN)
        append_unique(SETMARK_CHAIN, _setmark_rule(conf))
        ensure_chain(MASQ_CHAIN)
        append_unique(MASQ_CHAIN, _masq_rule(conf))
        append_unique("POSTROUTING", (*_MASQ_ENTRY, "-j", MASQ_CHAIN), first=True)
    ensure_chain(DNAT_CHAIN)
    for hook in ("PREROUTING", "OUTPUT"):
        append_unique(hook, (*_DNAT_ENTRY, "-j", DNAT_CHAIN))
    chain = dnat_chain_name(network, container_id)
    # The container's chain is declared (which flushes it under --noflush) and its
    # jumps are replaced: a repeated ADD leaves exactly this ADD's rules.
    lines += [("-D", *rule[1:]) for rule in existing if _jumps_to(rule, chain, DNAT_CHAIN)]
    lines.append((f":{chain}", "-", "[0:0]"))
    lines += [("-A", chain, *rule) for rule in chain_rules(conf, ip)]
    lines += [
        ("-A", DNAT_CHAIN, *rule, "-j", chain)
        for rule in entry_rules(conf, network, container_id, version)
    ]
    try:
        _restore(version, lines)
    except PluginError as exc:
        raise fail(f"unable to setup DNAT: {exc.msg}") from exc


def _new_shared_chain(version: int, chain: str) -> None:
    """``iptables -N`` for a chain every container shares, outside the transaction.

    Declared in the ``iptables-restore --noflush`` text instead, an existing chain
    would be flushed: two first ADDs that both listed the table before either
    committed would each empty the chain the other just filled. Another ADD may make
    the chain between the listing and here; then it is there, as wanted.
    """
    argv = [_tool(version), "-w", "-t", "nat", "-N", chain]
    proc = run_tool(argv)
    if proc.returncode == 0:
        return
    if run_tool([_tool(version), "-w", "-t", "nat", "-S", chain]).returncode != 0:
        raise fail(f"unable to create chain {chain}: {tool_failure(argv, proc).msg}")


def _jumps_to(rule: Rule, chain: str, source: str | None = None) -> bool:
    return (
        len(rule) >= 4
        and rule[0] == "-A"
        and rule[-2:] == ("-j", chain)
        and (source is None or rule[1] == source)
    )


# ----------------------------------------------------------------------------- CHECK


def _exists(version: int, chain: str, rule: Rule) -> bool:
    """``iptables -C``: iptables itself compares (it knows how it prints a rule)."""
    argv = [_tool(version), "-w", "-t", "nat", "-C", chain, *rule]
    return run_tool(argv).returncode == 0


def check_iptables(conf: PortMapConf, network: str, container_id: str, ip: IPInterface) -> None:
    """CHECK for one container address: every rule ADD makes is in the nat table."""
    version = ip.version
    family = f"ipv{version}"
    chain = dnat_chain_name(network, container_id)
    if not iptables_usable(version):
        raise fail(f"could not check {family} dnat: {_TOOLS[version][0]} is not usable")
    existing = set(_list_nat(version))
    for needed in (chain, DNAT_CHAIN):
        if ("-N", needed) not in existing:
            raise fail(f"could not check {family} dnat: chain {needed} not found in table nat")
    wanted: list[tuple[str, Rule]] = [(chain, rule) for rule in chain_rules(conf, ip)]
    wanted += [
        (DNAT_CHAIN, (*rule, "-j", chain))
        for rule in entry_rules(conf, network, container_id, version)
    ]
    wanted += [(hook, (*_DNAT_ENTRY, "-j", DNAT_CHAIN)) for hook in ("PREROUTING", "OUTPUT")]
    if conf.snat and conf.external_set_mark_chain is None:
        wanted += [
            (SETMARK_CHAIN, _setmark_rule(conf)),
            (MASQ_CHAIN, _masq_rule(conf)),
            ("POSTROUTING", (*_MASQ_ENTRY, "-j", MASQ_CHAIN)),
        ]
    for where, rule in wanted:
        if not _exists(version, where, rule):
            raise fail(
                f"could not check {family} dnat: rule [{shlex.join(rule)}] "
                f"in chain {where} not found in table nat"
            )


# ------------------------------------------------------------------------------- DEL


def unforward_iptables(network: str, container_id: str, version: int) -> None:
    """DEL in one family: every jump to the container's chain (and to the chain of Go's
    older SNAT layout), then the chains; nothing to do if they are not there."""
    existing = _list_nat(version)
    lines: list[Rule] = []
    for chain in (
        dnat_chain_name(network, container_id),
        format_chain_name(network, container_id, "SN-"),
    ):
        lines += [("-D", *rule[1:]) for rule in existing if _jumps_to(rule, chain)]
        if ("-N", chain) in existing:
            lines += [("-F", chain), ("-X", chain)]
    try:
        _restore(version, lines)
    except PluginError as exc:
        raise fail(f"could not teardown ipv{version} dnat: {exc.msg}") from exc
