"""Worlds for the interface plugins (macvlan, ipvlan, vlan, host-device, dummy), Go vs ours.

A :class:`LinkSide` is a :class:`tests.privileged._bridge_world.Side` (node
namespace playing the host, container namespaces, host-local store, cache and
a cnilib.CNI running Go's binaries under ``ip netns exec <node>`` or ours in
process with ``host_netns=<node>``) whose node also has an *uplink*: a veth
``up0`` in the node (the master the plugins hang their links on) whose peer
``lan0`` sits in a throwaway "lan" namespace, both up.

:meth:`LinkSide.state` snapshots both namespaces in a form that compares
across sides: every link with its kind and driver data (macvlan/ipvlan mode,
vlan id, ``bcqueuelen``), parent, MTU, flags, addresses and main-table
routes, plus the container interface's ``arp_notify``/``ndisc_notify``
sysctls and the host-local store. Random MACs become ``<mac>`` (the master's
own becomes ``<master-mac>``, MACs a test configured stay as they are) and
random temp names ``<veth>``. Everything here only reads or builds inside
the namespaces the fixtures made (and delete).
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.invoke import ChainExecutor, Executor, SubprocessExecutor
from cnilib.testing import NetNS, create_netns
from tests.privileged._bridge_world import Side, norm_name, norm_result, ns_state, sysctls
from tests.privileged._kernel import GO_PLUGINS, IPAM_LEFTOVERS, JSON, ip_json

__all__ = [
    "CONTAINER_ID",
    "KERNEL_OPTION",
    "LAN_PEER",
    "MASTER",
    "NETWORK",
    "LinkSide",
    "MakeNS",
    "add_veth",
    "link_kind_missing",
    "link_state",
    "norm_result",
    "require_link_kind",
]

NETWORK = "linkdiff"
CONTAINER_ID = "ctr-link-diff"
MASTER = "up0"
LAN_PEER = "lan0"

MakeNS = Callable[[], NetNS]

KERNEL_OPTION = {
    "macvlan": "CONFIG_MACVLAN",
    "ipvlan": "CONFIG_IPVLAN",
    "vlan": "CONFIG_VLAN_8021Q",
    "dummy": "CONFIG_DUMMY",
}
"""The kernel option a link kind needs (named in the skip reason)."""

_PROBE_ARGS = {
    "macvlan": ("link", "p0", "type", "macvlan", "mode", "bridge"),
    "ipvlan": ("link", "p0", "type", "ipvlan", "mode", "l2"),
    "vlan": ("link", "p0", "type", "vlan", "id", "7"),
    "dummy": ("type", "dummy"),
}


# ------------------------------------------------------------------------------ kernel


@functools.cache
def link_kind_missing(kind: str) -> str | None:
    """``None`` if the kernel can make a *kind* link (on a veth parent where it needs
    one), else why not. Probed once, in a throwaway namespace."""
    ns = create_netns("cnilib-probe")
    try:
        add_veth(ns, "p0", ns, "p1")
        proc = ns.exec("ip", "link", "add", "k0", *_PROBE_ARGS[kind], check=False)
        if proc.returncode == 0:
            return None
        option = KERNEL_OPTION[kind]
        return f"the kernel cannot make {kind} links ({option}): {proc.stderr.strip()}"
    finally:
        ns.delete()


def require_link_kind(kind: str) -> None:
    """Skip the calling test unless the kernel has *kind* links (call it after the
    privileged probe, e.g. from a fixture that takes ``cnilib_privileged``)."""
    reason = link_kind_missing(kind)
    if reason is not None:
        pytest.skip(reason)


def add_veth(ns: NetNS, name: str, peer_ns: NetNS, peer: str, *, mtu: int = 1500) -> None:
    """A veth pair *name* (in *ns*) / *peer* (in *peer_ns*), both up."""
    where = () if peer_ns is ns else ("netns", peer_ns.name)
    ns.exec("ip", "link", "add", name, "mtu", str(mtu), "type", "veth",
            "peer", "name", peer, "mtu", str(mtu), *where)  # fmt: skip
    ns.exec("ip", "link", "set", name, "up")
    peer_ns.exec("ip", "link", "set", peer, "up")


# ------------------------------------------------------------------------------- state

_DETAIL_KEYS = ("mode", "flags", "bcqueuelen", "usedbcqueuelen", "id", "protocol")


def link_state(
    ns: NetNS, *, keep_macs: Iterable[str] = (), master_mac: str = "", settled: bool = True
) -> JSON:
    """:func:`tests.privileged._bridge_world.ns_state` of *ns* plus each link's MAC,
    ``txqlen``, parent and driver data (``ip -d -j link``), normalized."""
    keep = {m.lower() for m in keep_macs}
    state = ns_state(ns, settled=settled)

    def mac(value: str) -> str:
        if value in keep:
            return value
        return "<master-mac>" if value == master_mac else "<mac>"

    for link in ip_json(ns, "-d", "link"):
        info = link.get("linkinfo", {})
        data = info.get("info_data", {})
        entry = state["links"][norm_name(link["ifname"])]
        entry["details"] = {
            "address": mac(link.get("address", "")),
            "txqlen": link.get("txqlen"),
            # The parent's name when it is in the same namespace; else only that it is elsewhere.
            "parent": link.get("link") or ("<other-netns>" if "link_netnsid" in link else ""),
            **{k: data[k] for k in _DETAIL_KEYS if k in data},
        }
    return state


# -------------------------------------------------------------------------------- side


def install_plugins(dest: Path) -> Path:
    """``python -m cnilib.plugins install <dest>``: every in-process plugin as a CNI
    executable in *dest*, which is returned."""
    subprocess.run(
        [sys.executable, "-m", "cnilib.plugins", "install", str(dest)],
        check=True,
        capture_output=True,
    )
    return dest


@dataclass
class LinkSide(Side):
    """A :class:`~tests.privileged._bridge_world.Side` whose node has the uplink
    ``up0`` (peer ``lan0`` in :attr:`lan`), its network named :data:`NETWORK`."""

    lan: NetNS | None = None
    network: str = NETWORK
    keep_macs: list[str] = field(default_factory=list)
    """MACs a test configured: kept as they are in :meth:`state`."""

    @classmethod
    def build(
        cls, kind: str, make_ns: MakeNS, tmp: Path, executor: Executor | None = None
    ) -> LinkSide:
        """A fresh side: node and lan namespaces from *make_ns*, the uplink between them."""
        node, lan = make_ns(), make_ns()
        add_veth(node, MASTER, lan, LAN_PEER)
        return cls(kind, node, make_ns, tmp, executor=executor, lan=lan)

    @classmethod
    def executables(cls, make_ns: MakeNS, tmp: Path, bin_dir: Path) -> LinkSide:
        """A fresh side running cnilib's plugins *installed as executables* in *bin_dir*
        (:func:`install_plugins`), exec'd as Go's are, under ``ip netns exec <node>``;
        Go's binaries come after them on the plugin path."""
        side = cls.build("go", make_ns, tmp)
        side.kind = "exe"
        side.cni = cnilib.CNI(
            [str(bin_dir), str(GO_PLUGINS)], cache_dir=tmp / "cache", executor=side.executor
        )
        return side

    @classmethod
    def mixed_link(cls, like: LinkSide, tmp: Path, first: Executor, *, binaries_first: bool = False,
                   path: list[str] | None = None) -> LinkSide:  # fmt: skip
        """A side in *like*'s namespaces whose plugins come from *first* where it has
        them, else from Go's binaries under ``ip netns exec <node>`` (the other way
        round with *binaries_first*); *path* replaces the plugin search path."""
        go = SubprocessExecutor(wrapper=like.node.exec_prefix, timeout=30.0)
        chain = ChainExecutor(go, first) if binaries_first else ChainExecutor(first, go)
        side = cls("mixed", like.node, like.make_ns, tmp, executor=chain, lan=like.lan)
        side.ctrs = like.ctrs
        if path is not None:
            side.cni = cnilib.CNI(path, cache_dir=tmp / "cache", executor=chain)
        return side

    # ----------------------------------------------------------------- running

    def rt(  # adds ifname; the base's signature is a prefix of this one
        self, i: int = 0, container_id: str = CONTAINER_ID, ifname: str = "eth0", **kw: Any
    ) -> cnilib.RuntimeConf:
        """The attachment *ifname* of container *i*."""
        return cnilib.RuntimeConf(container_id, self.ctr(i).path, ifname, **kw)

    def add(self, plugin: JSON, version: str = "1.0.0", *, i: int = 0, **rt: Any) -> JSON:
        """ADD a one-plugin conflist for container *i*; the result, normalized."""
        res = self.cni.add_network_list(self.conflist(plugin, version=version), self.rt(i, **rt))
        assert res is not None
        return norm_result(res, keep_mac=self.keep_macs[0] if self.keep_macs else "")

    def add_error(self, plugin: JSON, version: str = "1.0.0", **rt: Any) -> cnilib.CNIError:
        """ADD that must fail: the error."""
        with pytest.raises(cnilib.CNIError) as info:
            self.cni.add_network_list(self.conflist(plugin, version=version), self.rt(**rt))
        return info.value

    def check(self, plugin: JSON, version: str = "1.0.0", **rt: Any) -> None:
        """CHECK a one-plugin conflist (after its ADD)."""
        self.cni.check_network_list(self.conflist(plugin, version=version), self.rt(**rt))

    def delete(self, plugin: JSON, version: str = "1.0.0", **rt: Any) -> None:
        """DEL a one-plugin conflist."""
        self.cni.delete_network_list(self.conflist(plugin, version=version), self.rt(**rt))

    # ------------------------------------------------------------------- state

    def allocated(self) -> set[str]:
        """The addresses host-local holds for the network (its files but the bookkeeping)."""
        return {
            name
            for name in self.store()
            if name not in IPAM_LEFTOVERS and not name.startswith("last_reserved_ip")
        }

    def master_mac(self) -> str:
        """The uplink's MAC (a passthru macvlan takes it over)."""
        return str(ip_json(self.node, "link", "show", MASTER)[0]["address"])

    def state(self, *, settled: bool = True, i: int = 0, ifname: str = "eth0") -> JSON:
        """Both namespaces (node, container *i*), the container interface's
        notify sysctls and the host-local store, normalized."""
        ctr = self.ctr(i)
        try:
            master_mac = self.master_mac()
        except Exception:  # the uplink was deleted by the test
            master_mac = ""
        kw: dict[str, Any] = {"keep_macs": self.keep_macs, "master_mac": master_mac,
                              "settled": settled}  # fmt: skip
        return {
            "node": link_state(self.node, **kw),
            "ctr": link_state(ctr, **kw),
            "ctr_sysctl": self.notify_sysctls(i, ifname),
            "store": self.store(),
        }

    def notify_sysctls(self, i: int = 0, ifname: str = "eth0") -> dict[str, str]:
        """``arp_notify`` and ``ndisc_notify`` of *ifname* in container *i* (absent if no link)."""
        keys = (f"net/ipv4/conf/{ifname}/arp_notify", f"net/ipv6/conf/{ifname}/ndisc_notify")
        return sysctls(self.ctr(i), keys)

    def kinds(self, ns: NetNS) -> dict[str, str]:
        """Link name -> kind (``""`` for none) in *ns*."""
        return {
            link["ifname"]: link.get("linkinfo", {}).get("info_kind", "")
            for link in ip_json(ns, "-d", "link")
        }


# --------------------------------------------------------------------- fixtures


@contextlib.contextmanager
def link_side(kind: str, make_ns: MakeNS, tmp: Path) -> Iterator[LinkSide]:
    """A fresh ``go`` or ``py`` side under ``tmp/<kind>``, its CNI closed afterwards."""
    side = LinkSide.build(kind, make_ns, tmp / kind)
    try:
        yield side
    finally:
        side.cni.close()


@pytest.fixture
def go(cnilib_container_netns: MakeNS, tmp_path: Path) -> Iterator[LinkSide]:
    """Go's binaries, exec'd in their own node namespace (import it as a fixture)."""
    with link_side("go", cnilib_container_netns, tmp_path) as side:
        yield side


@pytest.fixture
def py(cnilib_container_netns: MakeNS, tmp_path: Path) -> Iterator[LinkSide]:
    """Ours, in process, in its own node namespace (import it as a fixture)."""
    with link_side("py", cnilib_container_netns, tmp_path) as side:
        yield side


def check_then_delete_twice(
    go: LinkSide, py: LinkSide, plugin: JSON, same_state: Callable[..., JSON]
) -> JSON:
    """CHECK and DEL *plugin* on both sides; the two then agree (``same_state``, unsettled)
    with no ``eth0`` in the container and no address held; a second DEL succeeds on both.
    The state after the first DEL."""
    for side in (go, py):
        side.check(plugin)
        side.delete(plugin)
    after = same_state(go, py, settled=False)
    assert "eth0" not in after["ctr"]["links"]
    assert py.allocated() == set()
    for side in (go, py):
        side.delete(plugin)
    return after
