"""Worlds for the bridge tests: one side (Go's binary or ours in process) in its own namespaces.

A :class:`Side` owns a node namespace (the host) and container namespaces, a
cnilib.CNI bound to them (Go's plugins exec'd with ``ip netns exec <node>``,
ours in process with ``host_netns=<node>``), its own host-local store and
cache. :meth:`Side.state` snapshots the kernel and disk state in a form that
compares across sides: veth names, MACs and link-local addresses (derived
from random MACs) are normalized away. Everything here only reads the
namespaces; the fixtures create and delete them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cnilib
from cnilib.invoke import ChainExecutor, Executor, SubprocessExecutor
from cnilib.plugins._executor import InProcessExecutor
from cnilib.testing import NetNS
from tests.privileged._kernel import GO_PLUGINS, JSON, ip_json
from tests.privileged._netstate import nft_ruleset

NETWORK = "brdiff"
CONTAINER_ID = "ctr-bridge-diff"
_VETH = re.compile(r"veth[0-9a-f]{8}")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def norm_name(name: str) -> str:
    """A host veth's random name becomes ``<veth>``."""
    return _VETH.sub("<veth>", name)


@dataclass
class Side:
    """One implementation's world: node + containers, store, cache, a CNI."""

    kind: str  # "go" or "py"
    node: NetNS
    make_ns: Callable[[], NetNS]
    tmp: Path
    executor: Executor | None = None
    ctrs: list[NetNS] = field(default_factory=list)
    network: str = NETWORK
    """The network's name, in the conflists and host-local's store."""

    def __post_init__(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        if self.executor is None:
            self.executor = (
                SubprocessExecutor(wrapper=self.node.exec_prefix, timeout=30.0)
                if self.kind == "go"
                else InProcessExecutor(host_netns=self.node.path)
            )
        self.cni = cnilib.CNI(
            [str(GO_PLUGINS)], cache_dir=self.tmp / "cache", executor=self.executor
        )

    @classmethod
    def mixed(cls, node: NetNS, make_ns: Callable[[], NetNS], tmp: Path, first: Executor) -> Side:
        """A side whose plugins come from ``first`` when it has them, else Go's binaries."""
        chain = ChainExecutor(first, SubprocessExecutor(wrapper=node.exec_prefix, timeout=30.0))
        return cls("mixed", node, make_ns, tmp, executor=chain)

    @property
    def data_dir(self) -> Path:
        """host-local's store."""
        return self.tmp / "ipam"

    def ctr(self, i: int = 0) -> NetNS:
        """The i-th container namespace (made on first use)."""
        while len(self.ctrs) <= i:
            self.ctrs.append(self.make_ns())
        return self.ctrs[i]

    def conflist(self, *plugins: JSON, version: str = "1.0.0") -> cnilib.NetworkConfigList:
        """A conflist of *plugins*, IPAM stores under this side's tmp dir."""
        fixed = []
        for plugin in plugins:
            p = dict(plugin)
            if isinstance(p.get("ipam"), dict) and p["ipam"].get("type") == "host-local":
                p["ipam"] = {**p["ipam"], "dataDir": str(self.data_dir)}
            if p["type"] == "tuning":
                p.setdefault("dataDir", str(self.tmp / "tuning"))
            fixed.append(p)
        raw = {"cniVersion": version, "name": self.network, "plugins": fixed}
        return cnilib.conflist_from_bytes(json.dumps(raw).encode())

    def rt(self, i: int = 0, container_id: str = CONTAINER_ID, **kw: Any) -> cnilib.RuntimeConf:
        """The attachment eth0 of container *i*."""
        return cnilib.RuntimeConf(container_id, self.ctr(i).path, "eth0", **kw)

    # ------------------------------------------------------------------ state

    def store(self) -> dict[str, str]:
        """host-local's files for the network (name -> content)."""
        d = self.data_dir / self.network
        if not d.is_dir():
            return {}
        return {p.name: p.read_bytes().decode() for p in sorted(d.iterdir())}

    def state(self, *, settled: bool = True) -> JSON:
        """Everything the two sides must agree on after a verb.

        ``settled=False`` leaves out carrier flags and operstate, which the kernel
        updates asynchronously after a port goes away.
        """
        ctr = self.ctr(0)
        return {
            "node": ns_state(self.node, settled=settled),
            "ctr": ns_state(ctr, settled=settled),
            "node_sysctl": sysctls(self.node, (
                "net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding",
                *(f"net/ipv6/conf/{n}/accept_ra" for n in link_names(self.node)),
            )),
            "ctr_sysctl": sysctls(ctr, tuple(
                f"net/{k}" for k in ("ipv6/conf/eth0/accept_dad", "ipv4/conf/eth0/arp_notify",
                                     "ipv6/conf/eth0/disable_ipv6", "ipv6/conf/lo/disable_ipv6")
            )),
            "iptables": tables(self.node),
            "nftables": [norm_name(line) for line in nft_ruleset(self.node)],
            "store": self.store(),
        }  # fmt: skip


def link_names(ns: NetNS) -> list[str]:
    """Every link name in *ns*."""
    return [link["ifname"] for link in ip_json(ns, "link")]


def ns_state(ns: NetNS, *, settled: bool = True) -> JSON:
    """Links, addresses and main-table routes of *ns*, normalized."""
    links = {}
    unsettled = {"NO-CARRIER", "LOWER_UP"}
    for link in ip_json(ns, "-d", "addr"):
        info = link.get("linkinfo", {})
        links[norm_name(link["ifname"])] = {
            "kind": info.get("info_kind", ""),
            "master": norm_name(link.get("master", "")),
            "mtu": link["mtu"],
            "flags": sorted(f for f in link["flags"] if settled or f not in unsettled),
            "operstate": link["operstate"] if settled else "",
            "promiscuity": link.get("promiscuity"),
            "hairpin": info.get("info_slave_data", {}).get("hairpin"),
            "addrs": sorted(
                f"{a['local']}/{a['prefixlen']} {a.get('scope')} {a.get('broadcast', '')}"
                for a in link.get("addr_info", [])
                if a.get("scope") != "link"
            ),
        }
    fields = ("dst", "gateway", "dev", "protocol", "scope", "metric", "prefsrc")
    routes = [
        " ".join(norm_name(str(r.get(f, ""))) for f in fields)
        for family in ("-4", "-6")
        for r in ip_json(ns, family, "route", "show", "table", "main")
    ]
    return {"links": links, "routes": sorted(routes)}


def sysctls(ns: NetNS, keys: tuple[str, ...]) -> dict[str, str]:
    """The values of *keys* (``net/...`` paths) inside *ns*; missing ones are left out."""
    script = "; ".join(f'echo "{k}=$(cat /proc/sys/{k} 2>/dev/null)"' for k in keys)
    out = ns.exec("sh", "-c", script).stdout
    values = dict(line.split("=", 1) for line in out.splitlines())
    return {norm_name(k): v for k, v in values.items() if v}


def tables(ns: NetNS) -> dict[str, list[str]]:
    """``iptables-save``/``ip6tables-save`` of *ns*, without the timestamp comments."""
    out = {}
    for tool in ("iptables-save", "ip6tables-save"):
        text = ns.exec(tool).stdout
        out[tool] = [line for line in text.splitlines() if not line.startswith("#")]
    return out


def norm_result(res: cnilib.Result, keep_mac: str = "") -> JSON:
    """A result's JSON with random MACs, veth names and sandbox paths replaced."""
    obj: JSON = json.loads(res.to_json())
    for intf in obj.get("interfaces", []):
        intf["name"] = norm_name(intf["name"])
        if "mac" in intf and _MAC.match(intf["mac"]) and intf["mac"] != keep_mac:
            intf["mac"] = "<mac>"
        if "sandbox" in intf:
            intf["sandbox"] = "<netns>"
    return obj


def bridge_conf(*subnets: str, ipam: bool = True, **extra: Any) -> JSON:
    """A bridge plugin entry (bridge ``cnidiff0``) with one host-local range set per subnet."""
    conf: JSON = {"type": "bridge", "bridge": "cnidiff0", **extra}
    if ipam:
        conf["ipam"] = {"type": "host-local", "ranges": [[{"subnet": s}] for s in subnets]}
    return conf
