"""The throwaway world a conformance run happens in, and snapshots of it.

A *node* namespace plays the host: the plugin's host-side work (bridges, host
veth ends, iptables rules) happens there, never in the machine's own
namespace. Each container is a namespace of its own. Everything is removed
when the sandbox closes, also after a failure.

A snapshot is the set of things a plugin can leave behind, each a line of
text (``link veth1a2b kind=veth master=cni0``, ``addr eth0 10.1.0.2/24``,
``ipt filter -A CNI-FORWARD ...``, ``file 10.1.0.2``), so that what a plugin
added is a set difference a human can read.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import attrs

from cnilib.testing import NetNS, create_netns

__all__ = ["Container", "Sandbox", "Snapshot", "snapshot"]

_SEP = "@@cnilib-conformance@@"
# What one shell in the namespace prints, sections separated by _SEP. Tools that
# are missing print nothing (their section is empty).
_SNAPSHOT_SCRIPT = "; ".join(
    f"{cmd} 2>/dev/null; echo {_SEP}"
    for cmd in (
        "ip -j -d link show",
        "ip -j addr show",
        "ip -j route show table all",
        "ip -j -6 route show table all",
        "ip -j rule show",
        "ip -j -6 rule show",
        "iptables-save",
        "ip6tables-save",
        "tc -j qdisc show",
    )
)

# Routes the kernel makes for addresses and links by itself: they come and go
# with the address or link, which the snapshot already shows.
_KERNEL_ROUTE_TYPES = {"local", "broadcast", "multicast", "anycast"}
_DEFAULT_RULE_PRIORITIES = {0, 32766, 32767}
# host-local's (Go's and cnilib's) bookkeeping of a whole network, made by the first
# call of any verb: not an attachment's, so never a leftover of one.
_SHARED_FILES = {"lock", "last_reserved_ip.0", "last_reserved_ip.1"}


@attrs.frozen
class Snapshot:
    """What exists in one namespace (and, optionally, under some directories)."""

    items: frozenset[str]

    def added_since(self, before: Snapshot) -> list[str]:
        """What is here and was not in ``before``, sorted."""
        return sorted(self.items - before.items)

    def removed_since(self, before: Snapshot) -> list[str]:
        """What was in ``before`` and is not here, sorted."""
        return sorted(before.items - self.items)


def _link_items(links: list[dict[str, Any]]) -> Iterator[str]:
    for link in links:
        kind = link.get("linkinfo", {}).get("info_kind", link.get("link_type", ""))
        master = link.get("master")
        up = "UP" in link.get("flags", [])
        yield (
            f"link {link['ifname']} kind={kind} mtu={link.get('mtu')}"
            f"{f' master={master}' if master else ''}{' up' if up else ''}"
        )


def _addr_items(links: list[dict[str, Any]]) -> Iterator[str]:
    for link in links:
        for info in link.get("addr_info", []):
            local = info.get("local", "")
            if ipaddress.ip_address(local).is_link_local and info.get("family") == "inet6":
                continue  # made from the MAC by the kernel: comes and goes with the link
            yield f"addr {link['ifname']} {local}/{info.get('prefixlen')}"


def _route_items(routes: list[dict[str, Any]]) -> Iterator[str]:
    for route in routes:
        if route.get("type") in _KERNEL_ROUTE_TYPES or route.get("protocol") == "kernel":
            continue
        dst = route.get("dst", "")
        if dst.startswith(("fe80::", "ff00::", "multicast")):
            continue
        table = route.get("table", "main")
        via = f" via {route['gateway']}" if "gateway" in route else ""
        dev = f" dev {route['dev']}" if "dev" in route else ""
        yield f"route table={table} {dst}{via}{dev}"


def _rule_items(rules: list[dict[str, Any]]) -> Iterator[str]:
    for rule in rules:
        if rule.get("priority") in _DEFAULT_RULE_PRIORITIES:
            continue
        selector = " ".join(
            f"{key}={rule[key]}" for key in ("src", "dst", "iif", "oif") if key in rule
        )
        yield f"rule {rule.get('priority')} {selector} lookup {rule.get('table')}"


def _ipt_items(text: str, family: str) -> Iterator[str]:
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            # ":CHAIN POLICY [packets:bytes]": the counters change with traffic.
            yield f"{family} {table} {' '.join(line.split()[:2])}"
        elif line.startswith("-A"):
            yield f"{family} {table} {line}"


def _qdisc_items(qdiscs: list[dict[str, Any]]) -> Iterator[str]:
    for qdisc in qdiscs:
        if qdisc.get("root") and qdisc.get("kind") in ("noqueue", "pfifo_fast", "mq", "fq_codel"):
            continue  # the kernel's default for the device
        yield f"qdisc {qdisc.get('dev')} {qdisc.get('kind')} {qdisc.get('handle')}"


def _json_list(text: str) -> list[dict[str, Any]]:
    text = text.strip()
    if not text:
        return []
    value = json.loads(text)
    return value if isinstance(value, list) else []


def snapshot(ns: NetNS, *, directories: Iterable[Path] = ()) -> Snapshot:
    """Links, addresses, routes, rules, iptables rules and qdiscs of ``ns``, and
    the files under ``directories`` (their paths relative to each directory)."""
    proc = ns.exec("sh", "-c", _SNAPSHOT_SCRIPT)
    parts = proc.stdout.split(_SEP)
    links, addrs, routes4, routes6, rules4, rules6, ipt4, ipt6, qdiscs = (
        p.strip("\n") for p in parts[:9]
    )
    items: set[str] = set()
    items.update(_link_items(_json_list(links)))
    items.update(_addr_items(_json_list(addrs)))
    items.update(_route_items(_json_list(routes4) + _json_list(routes6)))
    items.update(_rule_items(_json_list(rules4) + _json_list(rules6)))
    items.update(_ipt_items(ipt4, "ipt"))
    items.update(_ipt_items(ipt6, "ip6t"))
    items.update(_qdisc_items(_json_list(qdiscs)))
    for directory in directories:
        if directory.is_dir():
            for path in directory.rglob("*"):
                if path.is_file() and path.name not in _SHARED_FILES:
                    items.add(f"file {directory.name}/{path.relative_to(directory)}")
    return Snapshot(frozenset(items))


@attrs.frozen
class Container:
    """A container namespace and the attachment the kit makes in it."""

    ns: NetNS
    id: str
    ifname: str = "eth0"

    @property
    def netns(self) -> str:
        return self.ns.path


class Sandbox:
    """A node namespace, container namespaces and a work directory, all removed by
    :meth:`close` (or the ``with`` block).

    ``subnet`` is a /24 of 198.18.0.0/15 (RFC 2544's benchmarking range) chosen at
    random per sandbox: it only ever exists inside the sandbox's namespaces.
    """

    def __init__(self, *, prefix: str = "cnilib-conf") -> None:
        self._stack = ExitStack()
        self._prefix = prefix
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
        self._stack.callback(shutil.rmtree, self.workdir, ignore_errors=True)
        try:
            self.node = create_netns(f"{prefix}-node")  # loopback up, as a host's
            self._stack.callback(self.node.delete)
        except BaseException:
            self._stack.close()
            raise
        third = secrets.randbelow(512)
        self.subnet = ipaddress.IPv4Network(f"198.{18 + third // 256}.{third % 256}.0/24")
        self._count = 0

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def container(self, *, ifname: str = "eth0") -> Container:
        """A new container namespace (loopback down, as a runtime makes it) and ID."""
        self._count += 1
        ns = create_netns(f"{self._prefix}-c{self._count}")
        self._stack.callback(ns.delete)
        ns.exec("ip", "link", "set", "lo", "down")
        return Container(ns, f"conformance-{self._count}-{secrets.token_hex(6)}", ifname)

    def directory(self, name: str) -> Path:
        """A directory of the sandbox's (made if missing), e.g. a host-local data dir."""
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def exists(self, ns: NetNS) -> bool:
        return os.path.exists(ns.path)

    def ip(self, ns: NetNS, *argv: str) -> subprocess.CompletedProcess[str]:
        """``ip ARGV`` in ``ns``, checked."""
        return ns.exec("ip", *argv)
