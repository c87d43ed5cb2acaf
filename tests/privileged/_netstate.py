"""Kernel state of a test's namespaces, in comparable form (differential tests vs Go).

Everything reads: ``ip -j``, ``cat /proc/sys/...`` and ``iptables-save`` run
inside a test's own namespace. What depends on randomness (MACs, the
link-local addresses made from them) or on timing (carrier flags, which
follow the kernel's linkwatch up to 1 s late) is left out.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

import cnilib
from cnilib.testing import NetNS
from tests.privileged._kernel import JSON, ip_json

__all__ = [
    "addrs",
    "assert_same",
    "links",
    "nat_rules",
    "nft_ruleset",
    "node_snapshot",
    "normalized_result",
    "routes",
    "settled",
    "snapshot_diff",
    "sysctls",
]


def normalized_result(res: cnilib.Result, ctr: NetNS) -> JSON:
    """The result as JSON, its MACs, host veth name and sandbox path replaced."""
    obj: JSON = json.loads(res.to_json())
    for iface in obj.get("interfaces", []):
        iface["mac"] = "<mac>"
        if iface.get("sandbox") == ctr.path:
            iface["sandbox"] = "<ctr>"
        elif iface["name"].startswith("veth"):
            iface["name"] = "<veth>"
    return obj


def links(ns: NetNS) -> list[JSON]:
    """Each link's index, name, flags (no carrier flags), mtu, type and kind."""
    keys = ("ifindex", "ifname", "flags", "mtu", "link_type")
    out = []
    for link in ip_json(ns, "-d", "link"):
        kind = link.get("linkinfo", {}).get("info_kind")
        entry = {**{k: link.get(k) for k in keys}, "kind": kind}
        entry["flags"] = [f for f in link["flags"] if f not in ("NO-CARRIER", "LOWER_UP")]
        out.append(entry)
    return out


def addrs(ns: NetNS) -> list[JSON]:
    """Each address but IPv6 link-local ones (made from the random MAC)."""
    keys = ("family", "local", "prefixlen", "scope", "broadcast")
    return [
        {"dev": link["ifname"], **{k: a.get(k) for k in keys}}
        for link in ip_json(ns, "addr")
        for a in link.get("addr_info", [])
        if not (a["family"] == "inet6" and a["scope"] == "link")  # fe80::, from the random mac
    ]


def routes(ns: NetNS) -> list[JSON]:
    """Every route of every table, both families, but those of ``fe80::/64``."""
    keys = ("type", "dst", "gateway", "dev", "protocol", "scope", "prefsrc", "metric", "table")
    return [
        {k: r.get(k) for k in keys}
        for family in ("-4", "-6")
        for r in ip_json(ns, family, "-d", "route", "show", "table", "all")
        if not str(r.get("dst", "")).startswith("fe80")
    ]


def sysctls(ns: NetNS, names: list[str]) -> dict[str, str]:
    """``/proc/sys/<name>`` for each name (``net/ipv4/ip_forward``) as seen in *ns*."""
    paths = ["/proc/sys/" + n for n in names]
    values = ns.exec("cat", *paths).stdout.split()
    return dict(zip(names, values, strict=True))


def nat_rules(ns: NetNS) -> str:
    """``iptables-save`` + ``ip6tables-save`` of *ns*, without the timestamped comments,
    then the whole nftables ruleset (tables iptables does not show included)."""
    saved = "".join(
        line + "\n"
        for tool in ("iptables-save", "ip6tables-save")
        for line in ns.exec(tool).stdout.splitlines()
        if not line.startswith("#")
    )
    return saved + "".join(line + "\n" for line in nft_ruleset(ns))


_COUNTER = re.compile(r"counter packets \d+ bytes \d+")


def nft_ruleset(ns: NetNS) -> list[str]:
    """``nft list ruleset`` of *ns*, counters zeroed (traffic is timing, not state)."""
    return [
        _COUNTER.sub("counter", line)
        for line in ns.exec("nft", "list", "ruleset").stdout.splitlines()
    ]


def settled(ns: NetNS) -> bool:
    """No IPv6 address of *ns* is tentative (duplicate address detection is over)."""
    return not ip_json(ns, "-6", "addr", "show", "tentative")


def assert_same(ours: str, go: str, when: str) -> None:
    """Equal kernel states, else fail with a unified diff (Go's as the expected side)."""
    if ours != go:
        diff = difflib.unified_diff(go.splitlines(), ours.splitlines(), "go", "ours", lineterm="")
        pytest.fail(f"kernel state differs {when}:\n" + "\n".join(diff))


_SAVE_COUNTS = re.compile(r" \[\d+:\d+\]$")


def node_snapshot(ns: NetNS, dirs: Iterable[Path] = ()) -> dict[str, set[str]]:
    """Everything a plugin can leave behind in *ns* and on disk, one line per item,
    by kind: links (name, kind, master), addresses (but IPv6 link-local ones),
    routes of every table, policy rules, qdiscs, ``iptables-save`` and
    ``ip6tables-save`` lines (packet counters dropped; a rule repeated within one
    table's listing counted, ``<line> (copy 2)``), the nftables ruleset
    (counters zeroed, each line prefixed with its table: ``ip nat| ...``) and every
    file under *dirs* (its path from the directory above it). Compare two
    with :func:`snapshot_diff`."""
    snap: dict[str, set[str]] = {
        "links": {
            f"{link['ifname']} {link.get('linkinfo', {}).get('info_kind', '')} "
            f"{link.get('master', '')}".strip()
            for link in ip_json(ns, "-d", "link")
        },
        "addrs": {f"{a['dev']} {a['local']}/{a['prefixlen']}" for a in addrs(ns)},
        "routes": {" ".join(f"{k}={v}" for k, v in r.items() if v is not None) for r in routes(ns)},
        "rules": {
            " ".join(f"{k}={v}" for k, v in sorted(rule.items()))
            for family in ("-4", "-6")
            for rule in ip_json(ns, family, "rule")
        },
        "qdiscs": {
            f"{q.get('dev')} {q.get('kind')} {q.get('handle')} {q.get('parent', 'root')}"
            for q in json.loads(ns.exec("tc", "-j", "qdisc", "show").stdout or "[]")
            if q.get("kind") not in ("noqueue",)
        },
        "iptables": {
            line
            for tool in ("iptables-save", "ip6tables-save")
            for line in _numbered_copies(
                _SAVE_COUNTS.sub("", line)
                for line in ns.exec(tool).stdout.splitlines()
                if not line.startswith("#") and line != "COMMIT"
            )
        },
        "nft": _nft_lines(ns),
        "files": {
            str(path.relative_to(root.parent))
            for root in dirs
            if root.exists()
            for path in root.rglob("*")
            if not path.is_dir()
        },
    }
    return snap


def _numbered_copies(lines: Iterable[str]) -> list[str]:
    """``iptables-save`` *lines*, one repeated within a table (from its ``*<table>``
    line on) numbered from its second copy on (``<line> (copy 2)``): a set of lines
    would hide a rule made twice, which no DEL removes."""
    seen: dict[str, int] = {}
    out = []
    for line in lines:
        if line.startswith("*"):
            seen = {}
        seen[line] = seen.get(line, 0) + 1
        out.append(line if seen[line] == 1 else f"{line} (copy {seen[line]})")
    return out


def _nft_lines(ns: NetNS) -> set[str]:
    """Each line of the nftables ruleset prefixed with its table (``ip nat| ...``)."""
    out, table = set(), ""
    for raw in nft_ruleset(ns):
        line = raw.strip()
        if raw.startswith("table "):
            table = line.removeprefix("table ").removesuffix(" {")
        if line and line != "}":
            out.add(f"{table}| {line}")
    return out


def snapshot_diff(
    before: dict[str, set[str]], after: dict[str, set[str]]
) -> dict[str, tuple[set[str], set[str]]]:
    """Per kind of :func:`node_snapshot`, what *after* has that *before* had not and what
    it lost; kinds without a difference are left out."""
    out = {}
    for kind in before.keys() | after.keys():
        added = after.get(kind, set()) - before.get(kind, set())
        removed = before.get(kind, set()) - after.get(kind, set())
        if added or removed:
            out[kind] = (added, removed)
    return out
