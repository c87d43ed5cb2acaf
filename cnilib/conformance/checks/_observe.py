"""What checks look at: the node once it has settled, what is left behind after a
DEL, and what the kernel says about a result's interfaces."""

from __future__ import annotations

import json
import time
from typing import Any

from cnilib.conformance._profile import Kind
from cnilib.conformance._sandbox import Container, Snapshot
from cnilib.conformance._session import Session
from cnilib.testing import NetNS

__all__ = [
    "SETTLE_SECONDS",
    "addresses_of",
    "container_iface",
    "interfaces_in",
    "left_behind",
    "settled_node",
]


SETTLE_SECONDS = 3.0
"""How long a leftover may take to go: the kernel destroys a deleted namespace,
and the veth end inside it, asynchronously."""


def settled_node(session: Session) -> Snapshot:
    """The node after one attachment has come and gone (not recorded as evidence).

    What the first ADD makes for every attachment alike (a bridge, a top-level
    iptables chain, host-local's last-reserved file) may stay after its DEL; a
    snapshot taken after such a cycle counts only what a later ADD and DEL
    leave behind themselves.
    """
    if session.settled is None:
        ctr = session.container()
        exchange = session.add(ctr, session.newest, label="ADD (settling the node)")
        if exchange.succeeded:
            session.delete(ctr, label="DEL (settling the node)", record=False)
        session.exchanges.remove(exchange)  # tidying, not evidence
        session.settled = session.snapshot_node()
    return session.snapshot_node()


def left_behind(session: Session, before: Snapshot, ctr: Container | None = None) -> list[str]:
    """What is on the node (and in ``ctr``) that was not in ``before`` (and in the
    container when it was made), once the kernel has caught up."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        left = session.snapshot_node().added_since(before)
        if ctr is not None and ctr.ns.exists():
            left += session.snapshot_container(ctr).added_since(session.container_baseline(ctr))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def interfaces_in(ns: NetNS) -> dict[str, dict[str, Any]]:
    """The links of ``ns`` by name, with their addresses (``ip -j addr``)."""
    proc = ns.exec("ip", "-j", "addr", "show")
    links = json.loads(proc.stdout or "[]")
    return {link["ifname"]: link for link in links}


def addresses_of(link: dict[str, Any]) -> set[str]:
    """``address/prefix`` of every address of a link from :func:`interfaces_in`."""
    return {f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])}


def container_iface(session: Session, ctr: Container) -> str:
    """The interface the plugin works on in the container."""
    return "lo" if session.profile.kind is Kind.LOOPBACK else ctr.ifname
