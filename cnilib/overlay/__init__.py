"""A multi-node overlay network: containers on many nodes in one network, state in etcd.

Each node runs an :class:`Agent` (``python -m cnilib.overlay agent``). It claims a
subnet of the cluster CIDR in etcd, registers its VXLAN endpoint under a lease it
keeps alive, makes the VXLAN device and the node bridge, and programs routes,
neighbour and FDB entries for every other node, following etcd. The ``overlay`` CNI
plugin attaches containers to the node bridge with an address of the node's subnet.
See ``docs/overlay.md``.

Importing this package is cheap: the etcd client is imported only when
:func:`connect_etcd` (or the agent) first needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnilib._lazy import lazy_exports

if TYPE_CHECKING:
    from cnilib.overlay._agent import Agent, AgentConfig
    from cnilib.overlay._config import ClusterConfig
    from cnilib.overlay._errors import (
        NodeNameTakenError,
        OverlayConfigError,
        OverlayError,
        PoolExhaustedError,
        RecordError,
        RevisionCompactedError,
        StoreError,
        StoreUnavailableError,
    )
    from cnilib.overlay._etcd import connect_etcd
    from cnilib.overlay._memstore import MemoryStore
    from cnilib.overlay._records import Keys, NodeRecord, SubnetRecord
    from cnilib.overlay._status import NodeStatus, cluster_status
    from cnilib.overlay._store import ClusterStore
    from cnilib.plugins.main._overlay_state import NodeState, read_node_state

__all__ = [
    "Agent",
    "AgentConfig",
    "ClusterConfig",
    "ClusterStore",
    "Keys",
    "MemoryStore",
    "NodeNameTakenError",
    "NodeRecord",
    "NodeState",
    "NodeStatus",
    "OverlayConfigError",
    "OverlayError",
    "PoolExhaustedError",
    "RecordError",
    "RevisionCompactedError",
    "StoreError",
    "StoreUnavailableError",
    "SubnetRecord",
    "cluster_status",
    "connect_etcd",
    "read_node_state",
]

# the node state file's module is the plugin's: the overlay depends on the plugins, never back
_HOMES = {
    "Agent": "cnilib.overlay._agent",
    "AgentConfig": "cnilib.overlay._agent",
    "ClusterConfig": "cnilib.overlay._config",
    "ClusterStore": "cnilib.overlay._store",
    "Keys": "cnilib.overlay._records",
    "MemoryStore": "cnilib.overlay._memstore",
    "NodeNameTakenError": "cnilib.overlay._errors",
    "NodeRecord": "cnilib.overlay._records",
    "NodeState": "cnilib.plugins.main._overlay_state",
    "NodeStatus": "cnilib.overlay._status",
    "OverlayConfigError": "cnilib.overlay._errors",
    "OverlayError": "cnilib.overlay._errors",
    "PoolExhaustedError": "cnilib.overlay._errors",
    "RecordError": "cnilib.overlay._errors",
    "RevisionCompactedError": "cnilib.overlay._errors",
    "StoreError": "cnilib.overlay._errors",
    "StoreUnavailableError": "cnilib.overlay._errors",
    "SubnetRecord": "cnilib.overlay._records",
    "cluster_status": "cnilib.overlay._status",
    "connect_etcd": "cnilib.overlay._etcd",
    "read_node_state": "cnilib.plugins.main._overlay_state",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
