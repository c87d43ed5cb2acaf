"""portmap's nftables backend: the table of Go's latest release (the v1.9.0 layout).

One table per family, ``ip cni_hostport`` / ``ip6 cni_hostport``::

    table ip cni_hostport {
        comment "CNI portmap plugin"
        chain hostports {            # every mapping, comment = container ID
            tcp dport 8080 dnat to 10.9.0.2:80 comment "<cid>"
            ip daddr 192.0.2.1 udp dport 53 dnat to 10.9.0.2:1053 comment "<cid>"
        }
        chain hostip_hostports { }   # older releases' hostIP rules, still jumped to
        chain hostports_all { jump hostip_hostports; jump hostports }
        chain prerouting {
            type nat hook prerouting priority dstnat;
            [conditions] fib daddr type local jump hostports_all
        }
        chain output {
            type nat hook output priority -100;
            [conditions] fib daddr type local jump hostports_all
        }
        chain masquerading {         # with snat
            type nat hook postrouting priority srcnat;
            ip saddr 10.9.0.2 ip daddr 10.9.0.2 masquerade comment "<cid>"
            ip saddr 127.0.0.1 ip daddr 10.9.0.2 masquerade comment "<cid>"
        }
    }

``fib daddr type local`` before every mapping is the CVE-2025-67499 fix (Go
v1.9.0): only traffic addressed to the node itself is redirected, never
traffic forwarded through it to another address on the same port. With
``masqAll`` the masquerade rule matches any source (``ip saddr 0.0.0.0/0``)
and there is no localhost rule.

ADD writes nft's own syntax (``nft -f -``), as Go's knftables does, because
``conditionsV4``/``conditionsV6`` are nft text; every other value in the
script is a number, a parsed address, a protocol word or the container ID in
quotes (checked before). ADD first deletes this container's rules for the
same address, so a repeated ADD leaves no doubles (Go adds them again) and the
container's attachments to other networks keep theirs. Reads and deletions use
nft's JSON. Call these on the host namespace's worker.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from cnilib.errors import PluginError
from cnilib.plugins._hostside import fail
from cnilib.plugins._hosttools.nft import NFT, nft_apply, nft_list
from cnilib.plugins._hosttools.tools import find_tool, run_tool, tool_failure
from cnilib.plugins.meta._portmap_conf import PortMapConf
from cnilib.results import IPInterface

__all__ = [
    "HOSTPORTS",
    "HOSTPORTS_ALL",
    "MASQUERADING",
    "TABLE",
    "check_nft",
    "forward_nft",
    "unforward_nft",
]

TABLE = "cni_hostport"
HOSTPORTS = "hostports"
HOSTIP_HOSTPORTS = "hostip_hostports"
HOSTPORTS_ALL = "hostports_all"
MASQUERADING = "masquerading"
_RULE_CHAINS = (HOSTPORTS, HOSTIP_HOSTPORTS, MASQUERADING)
_FAMILY = {4: "ip", 6: "ip6"}


def _q(text: str) -> str:
    """A double-quoted nft string (the caller has refused quotes and line breaks)."""
    return f'"{text}"'


def _container_comment(container_id: str) -> str:
    if any(ch in container_id for ch in '"\\\n\r;'):
        raise fail(f"container ID {container_id!r} cannot be an nftables comment")
    return _q(container_id)


def _dnat_target(ip: IPInterface, port: int) -> str:
    return f"[{ip.ip}]:{port}" if ip.version == 6 else f"{ip.ip}:{port}"


def _script(conf: PortMapConf, container_id: str, ip: IPInterface, stale: Iterable[str]) -> str:
    """The ADD transaction for one container address, in nft syntax."""
    fam = _FAMILY[ip.version]
    at = f"{fam} {TABLE}"
    comment = _container_comment(container_id)
    conditions = " ".join(conf.conditions(ip.version))
    entry = f"{conditions} fib daddr type local jump {HOSTPORTS_ALL}".strip()
    lines = [
        f'add table {at} {{ comment "CNI portmap plugin" ; }}',
        f"add chain {at} {HOSTPORTS}",
        f"add chain {at} {HOSTIP_HOSTPORTS}",
        f"add chain {at} {HOSTPORTS_ALL}",
        f"flush chain {at} {HOSTPORTS_ALL}",
        f"add rule {at} {HOSTPORTS_ALL} jump {HOSTIP_HOSTPORTS}",
        f"add rule {at} {HOSTPORTS_ALL} jump {HOSTPORTS}",
        f"add chain {at} prerouting {{ type nat hook prerouting priority dstnat ; }}",
        f"flush chain {at} prerouting",
        f"add rule {at} prerouting {entry}",
        # dstnat is refused on the output hook; its number is not.
        f"add chain {at} output {{ type nat hook output priority -100 ; }}",
        f"flush chain {at} output",
        f"add rule {at} output {entry}",
    ]
    if conf.snat:
        lines.append(
            f"add chain {at} {MASQUERADING} {{ type nat hook postrouting priority srcnat ; }}"
        )
    lines += list(stale)
    for mapping in conf.mappings:
        host = mapping.host_address(ip.version)
        if host is None:
            continue
        match = f"{fam} daddr {host} " if host else ""
        lines.append(
            f"add rule {at} {HOSTPORTS} {match}{mapping.protocol} dport {mapping.host_port} "
            f"dnat to {_dnat_target(ip, mapping.container_port)} comment {comment}"
        )
    if conf.snat:
        source = ("0.0.0.0/0" if ip.version == 4 else "::/0") if conf.masq_all else str(ip.ip)
        lines.append(
            f"add rule {at} {MASQUERADING} {fam} saddr {source} {fam} daddr {ip.ip} "
            f"masquerade comment {comment}"
        )
        if ip.version == 4 and not conf.masq_all:
            lines.append(
                f"add rule {at} {MASQUERADING} {fam} saddr 127.0.0.1 {fam} daddr {ip.ip} "
                f"masquerade comment {comment}"
            )
    return "\n".join(lines) + "\n"


def _table(version: int) -> list[dict[str, Any]] | None:
    return nft_list("table", _FAMILY[version], TABLE)


def _rules_of(
    objects: Sequence[Mapping[str, Any]] | None,
    container_id: str,
    addrs: Collection[str] | None = None,
) -> list[Any]:
    """This container's rules in the table's mapping and masquerading chains; with
    ``addrs``, only those of these container addresses.

    The comment is the container ID alone (Go's layout, so that Go's DEL finds
    cnilib's rules): a container on two networks has both attachments' rules
    under one comment, told apart by the address they DNAT to or masquerade.
    """
    found = []
    for obj in objects or ():
        rule = obj.get("rule")
        if not rule or rule.get("chain") not in _RULE_CHAINS:
            continue
        if rule.get("comment") != container_id:
            continue
        if addrs is None or _container_addr(rule) in addrs:
            found.append(rule)
    return found


def _container_addr(rule: Mapping[str, Any]) -> str | None:
    """The container address a rule of :data:`_RULE_CHAINS` serves: its DNAT's
    address, or the destination its masquerading matches."""
    for expr in rule.get("expr", ()):
        if "dnat" in expr:
            return str(expr["dnat"].get("addr"))
        match = expr.get("match")
        left = match.get("left", {}) if match else {}
        if rule.get("chain") == MASQUERADING and left.get("payload", {}).get("field") == "daddr":
            return str(match.get("right"))
    return None


def forward_nft(conf: PortMapConf, container_id: str, ip: IPInterface) -> None:
    """ADD for one container address, one transaction (this container's old rules go)."""
    fam = _FAMILY[ip.version]
    stale = [
        f"delete rule {fam} {TABLE} {rule['chain']} handle {int(rule['handle'])}"
        for rule in _rules_of(_table(ip.version), container_id, {str(ip.ip)})
    ]
    argv = [find_tool(NFT, "could not find nftables binary"), "-f", "-"]
    proc = run_tool(argv, _script(conf, container_id, ip, stale))
    if proc.returncode != 0:
        raise fail(
            f"unable to set up nftables rules for port mappings: {tool_failure(argv, proc).msg}"
        )


# ----------------------------------------------------------------------------- CHECK


def _summary(rule: Mapping[str, Any]) -> tuple[Any, ...]:
    """A rule's matches and action, in a form that compares with :func:`_wanted`."""
    parts: list[Any] = []
    for expr in rule.get("expr", ()):
        if "match" in expr:
            m = expr["match"]
            left = m.get("left", {})
            right = m.get("right")
            if isinstance(right, dict) and "prefix" in right:
                right = f"{right['prefix']['addr']}/{right['prefix']['len']}"
            if "payload" in left:
                pl = left["payload"]
                parts.append((m.get("op"), pl.get("protocol"), pl.get("field"), right))
            elif "fib" in left:
                parts.append((m.get("op"), "fib", tuple(left["fib"].get("flags", ())), right))
            else:
                parts.append(("other", repr(m)))
        elif "dnat" in expr:
            parts.append(("dnat", expr["dnat"].get("addr"), expr["dnat"].get("port")))
        elif "masquerade" in expr:
            parts.append(("masquerade",))
        elif "jump" in expr:
            parts.append(("jump", expr["jump"].get("target")))
        else:
            parts.append(("other", repr(expr)))
    return tuple(parts)


def _wanted(conf: PortMapConf, ip: IPInterface) -> list[tuple[str, tuple[Any, ...], str]]:
    """(chain, summary, text) of every rule ADD makes for this container address."""
    fam = _FAMILY[ip.version]
    addr = str(ip.ip)
    out = []
    for mapping in conf.mappings:
        host = mapping.host_address(ip.version)
        if host is None:
            continue
        matches: list[Any] = [("==", fam, "daddr", host)] if host else []
        matches += [
            ("==", mapping.protocol, "dport", mapping.host_port),
            ("dnat", addr, mapping.container_port),
        ]
        text = f"{mapping.protocol} dport {mapping.host_port} dnat to " + _dnat_target(
            ip, mapping.container_port
        )
        out.append((HOSTPORTS, tuple(matches), (f"{fam} daddr {host} " if host else "") + text))
    if conf.snat:
        sources = [("0.0.0.0/0" if ip.version == 4 else "::/0") if conf.masq_all else addr]
        if ip.version == 4 and not conf.masq_all:
            sources.append("127.0.0.1")
        for source in sources:
            summary = (("==", fam, "saddr", source), ("==", fam, "daddr", addr), ("masquerade",))
            text = f"{fam} saddr {source} {fam} daddr {addr} masquerade"
            out.append((MASQUERADING, summary, text))
    return out


def check_nft(conf: PortMapConf, container_id: str, ip: IPInterface) -> None:
    """CHECK for one container address: the table's hooks lead to the mappings through
    ``fib daddr type local``, and each rule ADD makes for this container is there."""
    fam = _FAMILY[ip.version]
    objects = _table(ip.version)
    if objects is None:
        raise fail(f"table {fam} {TABLE} not found in nftables")
    rules = [obj["rule"] for obj in objects if "rule" in obj]
    summaries = {(r.get("chain"), _summary(r)) for r in rules}
    mine = {(r.get("chain"), _summary(r)) for r in _rules_of(objects, container_id)}
    for hook in ("prerouting", "output"):
        if not any(
            chain == hook
            and ("jump", HOSTPORTS_ALL) in summary
            and ("==", "fib", ("daddr",), "local") in summary
            for chain, summary in summaries
        ):
            raise fail(
                f'missing rule "fib daddr type local jump {HOSTPORTS_ALL}" '
                f"in chain {hook} of table {fam} {TABLE}"
            )
    if (HOSTPORTS_ALL, (("jump", HOSTPORTS),)) not in summaries:
        raise fail(
            f'missing rule "jump {HOSTPORTS}" in chain {HOSTPORTS_ALL} of table {fam} {TABLE}'
        )
    for chain, summary, text in _wanted(conf, ip):
        found = (chain, summary) in mine or (
            chain == HOSTPORTS and (HOSTIP_HOSTPORTS, summary) in mine
        )
        if not found:
            raise fail(
                f'missing hostport rule "{text} comment \\"{container_id}\\"" '
                f"in chain {chain} of table {fam} {TABLE}"
            )


# ------------------------------------------------------------------------------- DEL


def unforward_nft(container_id: str, addrs: Collection[str] | None = None) -> None:
    """DEL: this container's rules in both families' tables (Go: by the comment);
    with ``addrs`` (the attachment's addresses), only the rules serving them."""
    for version in (4, 6):
        try:
            objects = _table(version)
        except PluginError as exc:
            raise fail(f"could not list rules in table {TABLE}: {exc.msg}") from exc
        deletes = [
            {"delete": {"rule": {"family": _FAMILY[version], "table": TABLE,
                                 "chain": rule["chain"], "handle": rule["handle"]}}}
            for rule in _rules_of(objects, container_id, addrs)
        ]  # fmt: skip
        try:
            nft_apply(deletes)
        except PluginError as exc:
            raise fail(f"error deleting nftables rules: {exc.msg}") from exc
