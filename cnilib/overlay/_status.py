"""``overlay status``: the cluster as etcd holds it, the nodes with their subnets, VTEPs
and leases, and every record that is not what the agents write.

Read-only: it lists ``subnets/`` and ``nodes/`` and asks each lease's time to live,
through the :class:`~cnilib.overlay.ClusterStore` protocol (etcd, or a
:class:`~cnilib.overlay.MemoryStore` in tests). A record that does not decode is
reported as a problem naming its key, never skipped silently.
"""

from __future__ import annotations

import json
import time
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import attrs

from cnilib.overlay._config import ClusterConfig
from cnilib.overlay._errors import OverlayConfigError, RecordError
from cnilib.overlay._records import Keys, NodeRecord, SubnetRecord
from cnilib.overlay._store import ClusterStore, KeyValue

__all__ = [
    "ClusterStatus",
    "NodeStatus",
    "cluster_status",
    "render_json",
    "render_text",
    "status_object",
]


@attrs.frozen
class NodeStatus:
    """One live node: its subnet record and its lease."""

    node: str
    subnet: IPv4Network
    underlay: IPv4Address
    vtep_mac: str
    vni: int
    joined: float
    """When the node claimed the subnet (Unix time)."""
    lease: int
    """The lease holding the node's keys (0: none, the keys never expire)."""
    ttl_left: int | None
    """Seconds until the lease expires unless renewed; None: the lease is gone."""
    ttl_granted: int | None
    """The lease's TTL; None: the lease is gone."""
    port: int = 8472

    @property
    def since_renewal(self) -> int | None:
        """Seconds since the agent last renewed its lease (TTL granted - TTL left)."""
        if self.ttl_left is None or self.ttl_granted is None:
            return None
        return max(0, self.ttl_granted - self.ttl_left)


@attrs.frozen
class ClusterStatus:
    """The overlay network as etcd holds it."""

    config: ClusterConfig | None
    """None: no configuration stored (or one that does not decode: see ``problems``)."""
    nodes: tuple[NodeStatus, ...]
    """Sorted by subnet."""
    problems: tuple[str, ...]
    """Records that do not decode or do not agree, each naming its key."""
    now: float = 0.0
    """When the status was taken (Unix time): ages are relative to it."""
    revision: int = 0
    """The store's revision the lists were taken at."""


async def cluster_status(
    store: ClusterStore, keys: Keys, *, now: float | None = None
) -> ClusterStatus:
    """The status of the network ``keys`` names. Raises
    :class:`~cnilib.overlay.StoreUnavailableError` when the store does not answer."""
    taken = time.time() if now is None else now
    problems: list[str] = []
    config = await _config(store, keys, problems)
    subnets = await store.list(keys.subnets)
    node_keys = await store.list(keys.nodes)
    ttls: dict[int, tuple[int, int] | None] = {}
    nodes: list[NodeStatus] = []
    for kv in subnets.items:
        try:
            record = SubnetRecord.from_json(keys, kv.key, kv.value)
        except RecordError as exc:
            problems.append(exc.msg)
            continue
        if kv.lease and kv.lease not in ttls:
            ttls[kv.lease] = await store.time_to_live(kv.lease)
        ttl = ttls.get(kv.lease)
        if not kv.lease:
            problems.append(f"etcd key {kv.key!r} has no lease: it never expires")
        if config is not None and not config.holds(record.subnet):
            problems.append(
                f"etcd key {kv.key!r}: subnet {record.subnet} is not in the pool of "
                f"{config.describe()}"
            )
        nodes.append(
            NodeStatus(
                node=record.node,
                subnet=record.subnet,
                underlay=record.underlay,
                vtep_mac=record.vtep_mac,
                vni=record.vni,
                port=record.port,
                joined=record.joined,
                lease=kv.lease,
                ttl_left=None if ttl is None else ttl[0],
                ttl_granted=None if ttl is None else ttl[1],
            )
        )
    problems += _cross_check(keys, nodes, node_keys.items)
    problems += _shared_macs(keys, nodes)
    return ClusterStatus(
        config=config,
        nodes=tuple(sorted(nodes, key=lambda n: n.subnet)),
        problems=tuple(problems),
        now=taken,
        revision=max(subnets.revision, node_keys.revision),
    )


async def _config(store: ClusterStore, keys: Keys, problems: list[str]) -> ClusterConfig | None:
    kv = await store.get(keys.config)
    if kv is None:
        problems.append(
            f"no cluster configuration at {keys.config!r}: no agent of network "
            f'"{keys.network}" has started with --cluster-cidr (or --network/--prefix differ)'
        )
        return None
    try:
        return ClusterConfig.from_json(kv.key, kv.value)
    except OverlayConfigError as exc:
        problems.append(exc.msg)
        return None


def _cross_check(keys: Keys, nodes: list[NodeStatus], node_keys: tuple[KeyValue, ...]) -> list[str]:
    """``nodes/<name>`` and ``subnets/<subnet>`` are written together: report where
    they disagree (one without the other, another subnet, another lease)."""
    problems: list[str] = []
    by_name = {n.node: n for n in nodes}
    named: set[str] = set()
    for kv in node_keys:
        try:
            record = NodeRecord.from_json(keys, kv.key, kv.value)
        except RecordError as exc:
            problems.append(exc.msg)
            continue
        named.add(record.name)
        node = by_name.get(record.name)
        if node is None:
            problems.append(
                f"etcd key {kv.key!r} names subnet {record.subnet}, which no subnet record "
                "of that node holds"
            )
        elif node.subnet != record.subnet:
            problems.append(
                f"etcd key {kv.key!r} names subnet {record.subnet}, but node "
                f'"{record.name}" holds {keys.subnet(node.subnet)!r}'
            )
        elif node.lease != kv.lease:
            problems.append(
                f"etcd key {kv.key!r} is under another lease than {keys.subnet(node.subnet)!r}"
            )
    problems.extend(
        f"etcd key {keys.subnet(node.subnet)!r} is held by node "
        f'"{node.node}", which has no key {keys.node(node.node)!r}'
        for node in nodes
        if node.node not in named
    )
    return problems


def _shared_macs(keys: Keys, nodes: list[NodeStatus]) -> list[str]:
    """A VTEP MAC published from two underlay addresses: a peer's FDB holds one
    destination per MAC, so peers reach only the lowest subnet's node (the data path
    leaves the others out)."""
    first: dict[str, NodeStatus] = {}
    problems: list[str] = []
    for node in sorted(nodes, key=lambda n: n.subnet):
        owner = first.setdefault(node.vtep_mac, node)
        if owner is not node and owner.underlay != node.underlay:
            problems.append(
                f"etcd key {keys.subnet(node.subnet)!r} publishes VTEP MAC {node.vtep_mac}, "
                f"which {keys.subnet(owner.subnet)!r} publishes from another underlay "
                f"address ({owner.underlay}): peers reach only the latter"
            )
    return problems


# --------------------------------------------------------------------------- rendering


def _lease_id(lease: int) -> str:
    """etcdctl's spelling of a lease ID (hex)."""
    return format(lease, "x") if lease else "-"


def _age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: how long ago, roughly."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def render_text(status: ClusterStatus, keys: Keys) -> str:
    """A header, a table of the nodes, and the problems, one per line."""
    config = status.config.describe() if status.config is not None else "no configuration"
    lines = [f'overlay network "{keys.network}" at {keys.root}: {config}']
    count = len(status.nodes)
    lines.append(f"{count} node{'' if count == 1 else 's'}")
    if status.nodes:
        header = ("NODE", "SUBNET", "UNDERLAY", "VTEP MAC", "VNI", "JOINED", "LEASE", "TTL LEFT")
        rows = [header]
        for node in status.nodes:
            if node.ttl_left is None:
                ttl = "gone"
            else:
                ttl = f"{node.ttl_left}/{node.ttl_granted}s (renewed {node.since_renewal}s ago)"
            joined = f"{_age(status.now - node.joined)} ago" if node.joined else "-"
            rows.append(
                (
                    node.node,
                    str(node.subnet),
                    str(node.underlay),
                    node.vtep_mac,
                    str(node.vni),
                    joined,
                    _lease_id(node.lease),
                    ttl,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines.extend(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
        )
    lines += [f"problem: {problem}" for problem in status.problems]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def status_object(status: ClusterStatus, keys: Keys) -> dict[str, Any]:
    """The status as a JSON object (lease IDs as etcdctl's hex strings: they exceed
    the integers JSON readers keep exactly)."""
    config = status.config
    return {
        "network": keys.network,
        "prefix": keys.prefix,
        "revision": status.revision,
        "time": status.now,
        "config": None if config is None else json.loads(config.to_json()),
        "nodes": [
            {
                "node": n.node,
                "subnet": str(n.subnet),
                "underlay": str(n.underlay),
                "vtepMAC": n.vtep_mac,
                "vni": n.vni,
                "port": n.port,
                "joined": n.joined,
                "lease": _lease_id(n.lease) if n.lease else None,
                "ttlLeft": n.ttl_left,
                "ttlGranted": n.ttl_granted,
            }
            for n in status.nodes
        ],
        "problems": list(status.problems),
    }


def render_json(status: ClusterStatus, keys: Keys) -> str:
    """:func:`status_object`, indented, with a final newline."""
    return json.dumps(status_object(status, keys), indent=2) + "\n"
