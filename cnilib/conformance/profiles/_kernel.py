"""What the profiles ask of the kernel and do in the node: link-kind probes and
the links a plugin needs in the node namespace before it can run.

The probes run in a throwaway namespace of their own, once per process (the
kernel does not grow a link kind while it runs); the node's links are made only
in the sandbox's node namespace, never in the machine's own.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING

from cnilib.netlink import KERNEL_OPTIONS
from cnilib.testing import create_netns

if TYPE_CHECKING:
    from cnilib.conformance._sandbox import Sandbox
    from cnilib.testing import NetNS

__all__ = ["KIND_OPTIONS", "ensure_veth", "link_kind_missing", "requires_link_kind"]

KIND_OPTIONS: dict[str, str] = {**KERNEL_OPTIONS, "vrf": "CONFIG_NET_VRF"}
"""The kernel option that builds each link kind a profile probes."""

# How to make a throwaway link of each kind, on the veth "cp0" where it needs a parent.
_PROBE_ARGS: dict[str, tuple[str, ...]] = {
    "macvlan": ("link", "cp0", "type", "macvlan", "mode", "bridge"),
    "ipvlan": ("link", "cp0", "type", "ipvlan", "mode", "l2"),
    "vlan": ("link", "cp0", "type", "vlan", "id", "7"),
    "dummy": ("type", "dummy"),
    "vrf": ("type", "vrf", "table", "10"),
}


@functools.cache
def link_kind_missing(kind: str) -> str | None:
    """``None`` if this kernel can make ``kind`` links (on a veth where the kind
    needs a parent), else why not, naming the kernel option. Probed once, in a
    namespace made for the probe and deleted after it."""
    ns = create_netns("cnilib-conf-probe")
    try:
        ns.exec("ip", "link", "add", "cp0", "type", "veth", "peer", "name", "cp1")
        proc = ns.exec("ip", "link", "add", "ck0", *_PROBE_ARGS[kind], check=False)
        if proc.returncode == 0:
            return None
        said = proc.stderr.strip() or f"ip exited with status {proc.returncode}"
        return f"this kernel cannot make {kind} links (built without {KIND_OPTIONS[kind]}): {said}"
    finally:
        ns.delete()


def requires_link_kind(kind: str) -> functools.partial[str | None]:
    """A profile's ``requires``: the probe of ``kind``."""
    return functools.partial(link_kind_missing, kind)


def _has_link(ns: NetNS, name: str) -> bool:
    return ns.exec("ip", "link", "show", "dev", name, check=False).returncode == 0


def _intact(ns: NetNS, name: str, peer: str) -> bool:
    """Is the pair still there: ``peer`` in ``ns``, and ``name`` in ``ns`` or in a
    namespace that still has its name (a container's)?

    Deleting a namespace's name destroys it, and a veth end in it with it, only
    once nothing holds the namespace open (cnilib's in-process plugins keep the
    namespaces they worked in open until their executor closes), and the kernel
    destroys it a moment later: meanwhile it has an id in the node's list, but
    no name.
    """
    shown = ns.exec("ip", "-j", "link", "show", "dev", peer, check=False)
    links = json.loads(shown.stdout or "[]") if shown.returncode == 0 else []
    if not links:
        return False
    nsid = links[0].get("link_netnsid")
    if nsid is None or _has_link(ns, name):
        return True
    listed = json.loads(ns.exec("ip", "-j", "netns", "list-id").stdout or "[]")
    return any(entry.get("nsid") == nsid and entry.get("name") for entry in listed)


def ensure_veth(sandbox: Sandbox, name: str, peer: str, *, up: bool = True) -> None:
    """A veth pair ``name``/``peer`` in the node (``name`` up if ``up``, ``peer``
    always), unless it is still there.

    ``peer`` stays in the node: while it exists, so does ``name``, in the node
    or in the container a plugin moved it to. The pair is (re)made when a
    namespace holding ``name`` was destroyed (which destroys a veth pair) or is
    only waiting for that, its name deleted without a DEL (``peer`` is deleted
    first, which takes ``name`` with it).
    """
    node = sandbox.node
    if _intact(node, name, peer):
        return
    node.exec("ip", "link", "del", "dev", peer, check=False)
    node.exec("ip", "link", "add", name, "type", "veth", "peer", "name", peer)
    if up:
        node.exec("ip", "link", "set", name, "up")
    node.exec("ip", "link", "set", peer, "up")
