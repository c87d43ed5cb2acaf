"""``ipMasq`` with iptables, as Go's ``pkg/ip/ipmasq_linux.go`` and ``pkg/utils`` do it.

For each container address the nat table gets a chain named by
:func:`format_chain_name` (``CNI-`` + the first 24 hex digits of
``sha512(network + containerID)``), holding ``-d <subnet> -j ACCEPT`` and
``! -d <multicast> -j MASQUERADE``, jumped to from ``POSTROUTING -s <ip>``;
every rule carries the comment ``name: "<network>" id: "<containerID>"``.
IPv6 addresses go to ``ip6tables``. The resulting rule set is exactly Go's.

The functions here run ``iptables`` and must be called on a worker of
:func:`cnilib.netlink.run_in_netns` for the host namespace: the child
process inherits that thread's namespace, so the rules land there and
nowhere else. (They refuse to run on any other thread.)

Where Go execs ``iptables`` once per check and per change (about eight times
per address), these list the nat table once per family and apply every
change in one ``iptables-restore --noflush`` transaction. Teardown also
works without addresses (the container's link or namespace already gone):
it then removes every ``POSTROUTING`` jump to the chain carrying this
attachment's comment, so nothing leaks (Go's bridge leaks the chain there).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

from cnilib.plugins._hosttools.iptables_text import listing_rules, restore_line
from cnilib.plugins._hosttools.tools import find_tool, run_tool, tool_failure
from cnilib.results import IPInterface

__all__ = [
    "format_chain_name",
    "format_comment",
    "gc_ipmasq",
    "setup_ipmasq",
    "teardown_ipmasq",
]

_CHAIN_PREFIX = "CNI-"
_MAX_CHAIN_LENGTH = 28
_MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}
_TOOLS = {4: ("iptables", "iptables-restore"), 6: ("ip6tables", "ip6tables-restore")}
# A comment of format_comment for names that need no escaping (network names
# and container IDs are restricted to such characters by the spec).
_COMMENT = re.compile(r'name: "([^"\\]*)" id: "([^"\\]*)"')

Rule = tuple[str, ...]


def format_chain_name(network: str, container_id: str, prefix: str = "") -> str:
    """Go ``utils.FormatChainNameWithPrefix``: ``CNI-<prefix><sha512 hex>`` cut to 28 chars."""
    digest = hashlib.sha512((network + container_id).encode()).hexdigest()
    return f"{_CHAIN_PREFIX}{prefix}{digest}"[:_MAX_CHAIN_LENGTH]


def _go_quote(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    out.append('"')
    return "".join(out)


def format_comment(network: str, container_id: str) -> str:
    """Go ``utils.FormatComment``: ``name: "<network>" id: "<containerID>"``."""
    return f"name: {_go_quote(network)} id: {_go_quote(container_id)}"


def _run(argv: list[str], stdin: str | None = None) -> str:
    proc = run_tool(argv, stdin)
    if proc.returncode != 0:
        raise tool_failure(argv, proc)
    return proc.stdout


def _tool(version: int, which: int) -> str:
    return find_tool(_TOOLS[version][which], "failed to locate iptables")


def _list_nat(version: int) -> list[Rule]:
    """``iptables -t nat -S``, each line split into words (quotes removed)."""
    return listing_rules(_run([_tool(version, 0), "-w", "-t", "nat", "-S"]))


def _restore(version: int, lines: Sequence[Rule]) -> None:
    if not lines:
        return
    text = "\n".join(["*nat", *(restore_line(rule) for rule in lines), "COMMIT", ""])
    _run([_tool(version, 1), "-w", "--noflush"], stdin=text)


def _host(ipn: IPInterface) -> str:
    return f"{ipn.ip}/{ipn.max_prefixlen}"


def _jump(chain: str, comment: str, source: str) -> Rule:
    return ("-A", "POSTROUTING", "-s", source, "-m", "comment", "--comment", comment, "-j", chain)


def _by_version(ips: Iterable[IPInterface]) -> dict[int, list[IPInterface]]:
    out: dict[int, list[IPInterface]] = {}
    for ipn in ips:
        out.setdefault(ipn.version, []).append(ipn)
    return out


def setup_ipmasq(ips: Sequence[IPInterface], chain: str, comment: str) -> None:
    """Masquerade traffic from each of ``ips`` leaving its subnet (Go ``ip.SetupIPMasq``).

    Rules already present are not added again (Go's ``AppendUnique``), so a
    repeated call or a second address of the same attachment only adds what
    is missing, in Go's order.
    """
    for version, family_ips in sorted(_by_version(ips).items()):
        existing = _list_nat(version)
        have = set(existing)
        lines: list[Rule] = []
        if ("-N", chain) not in have:
            lines.append((f":{chain}", "-", "[0:0]"))
        for ipn in family_ips:
            wanted = (
                ("-A", chain, "-d", str(ipn.network), "-m", "comment", "--comment", comment,
                 "-j", "ACCEPT"),
                ("-A", chain, "!", "-d", _MULTICAST[version], "-m", "comment", "--comment",
                 comment, "-j", "MASQUERADE"),
                _jump(chain, comment, _host(ipn)),
            )  # fmt: skip
            for rule in wanted:
                if rule not in have:
                    have.add(rule)
                    lines.append(rule)
        _restore(version, lines)


def teardown_ipmasq(ips: Sequence[IPInterface] | None, chain: str, comment: str) -> None:
    """Undo :func:`setup_ipmasq` (Go ``ip.TeardownIPMasq``); idempotent.

    With ``ips``, the ``POSTROUTING`` jumps from those addresses go (also the
    legacy ``-s <subnet>`` form); with None (addresses unknown), every jump
    to ``chain`` with this ``comment`` in both families. The chain is then
    flushed and deleted unless some other jump still uses it.
    """
    versions = sorted(_by_version(ips)) if ips is not None else [4, 6]
    for version in versions:
        sources = None
        if ips is not None:
            family_ips = [ipn for ipn in ips if ipn.version == version]
            sources = {_host(ipn) for ipn in family_ips} | {str(ipn.network) for ipn in family_ips}
        _restore(version, _teardown_lines(_list_nat(version), chain, comment, sources))


def _teardown_lines(
    existing: Sequence[Rule], chain: str, comment: str, sources: set[str] | None
) -> list[Rule]:
    """The restore lines removing ``chain``'s jumps (from ``sources``; None: all of this
    ``comment``) and then the chain itself, unless another jump still uses it."""
    lines: list[Rule] = []
    others = 0
    for rule in existing:
        if rule[:2] != ("-A", "POSTROUTING") or rule[-2:] != ("-j", chain):
            continue
        ours = (
            len(rule) == 10
            and rule[2] == "-s"
            and rule[4:8] == ("-m", "comment", "--comment", comment)
        )
        if ours and (sources is None or rule[3] in sources):
            lines.append(("-D", *rule[1:]))
        else:
            others += 1
    if ("-N", chain) in existing and not others:
        lines += [("-F", chain), ("-X", chain)]
    return lines


def gc_ipmasq(network: str, valid_container_ids: set[str]) -> None:
    """Tear down ``network``'s chains of containers not in ``valid_container_ids``.

    A chain is recognised by its ``POSTROUTING`` jumps: commented for this
    network and a container ID whose hashed chain name is the jump's
    target, so chains of other networks or tools are never touched. Go
    1.1.1 names chains after network and container only, so a container
    with any valid interface keeps its chain. Each family's table is listed
    once and changed in one transaction.
    """
    listings = {version: _list_nat(version) for version in (4, 6)}
    stale: set[str] = set()
    for existing in listings.values():
        for rule in existing:
            if rule[:2] != ("-A", "POSTROUTING") or len(rule) != 10 or rule[4:7] != (
                "-m", "comment", "--comment"
            ):  # fmt: skip
                continue
            found = _COMMENT.fullmatch(rule[7])
            if found is None or found[1] != network or found[2] in valid_container_ids:
                continue
            if rule[9] == format_chain_name(network, found[2]):
                stale.add(found[2])
    for version, existing in listings.items():
        lines: list[Rule] = []
        for container_id in sorted(stale):
            chain = format_chain_name(network, container_id)
            lines += _teardown_lines(existing, chain, format_comment(network, container_id), None)
        _restore(version, lines)
