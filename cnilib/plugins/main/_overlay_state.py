"""The overlay's node state file: what the node agent tells the ``overlay`` plugin.

It lives beside the plugin, and the agent (:mod:`cnilib.overlay`) imports it from
here: the plugin, which runs as an executable too, depends on nothing of the agent's.

The agent writes ``<run_dir>/<network>.json`` once it has joined (subnet claimed,
VXLAN device and bridge made) and reads it back on restart to ask for the same
subnet again. The plugin reads it to attach containers; it never talks to etcd.
Written atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import attrs

from cnilib.errors import ErrorCode, PluginError

__all__ = ["DEFAULT_RUN_DIR", "NodeState", "read_node_state", "state_path", "write_node_state"]

DEFAULT_RUN_DIR = "/run/cnilib/overlay"


@attrs.frozen
class NodeState:
    """A joined node's share of the overlay network."""

    name: str
    """The overlay network's name (the CNI network name the plugin is configured with)."""
    node: str
    cluster: IPv4Network
    """The whole cluster CIDR: containers route it via their gateway."""
    subnet: IPv4Network
    """This node's subnet: containers' addresses come from it."""
    bridge: str
    mtu: int
    """The VXLAN device's MTU; the bridge and containers' interfaces use it."""
    vni: int = 1

    @property
    def gateway(self) -> IPv4Address:
        """The bridge's address, the subnet's first host."""
        return self.subnet.network_address + 1

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "node": self.node,
                "cluster": str(self.cluster),
                "subnet": str(self.subnet),
                "gateway": str(self.gateway),
                "bridge": self.bridge,
                "mtu": self.mtu,
                "vni": self.vni,
            },
            indent=2,
        )


def state_path(run_dir: str | Path, network: str) -> Path:
    return Path(run_dir) / f"{network}.json"


def write_node_state(path: Path, state: NodeState) -> None:
    """Write ``state`` atomically (mode 0600)."""
    from cnilib.plugins._statefile import write_state

    write_state(path, state.to_json() + "\n", what="overlay node state")


def read_node_state(path: Path) -> NodeState | None:
    """The state at ``path``; None when there is no file (the agent has not joined).

    A file that does not decode raises :class:`~cnilib.PluginError` (code 6, decoding
    failure) naming the file and the field.
    """
    from cnilib.plugins._statefile import read_state

    text = read_state(path, what="overlay node state")
    if text is None:
        return None
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        fields = {
            "name": str,
            "node": str,
            "cluster": str,
            "subnet": str,
            "bridge": str,
            "mtu": int,
            "vni": int,
        }
        for field, kind in fields.items():
            if not isinstance(data.get(field), kind) or isinstance(data.get(field), bool):
                raise TypeError(f'field "{field}" must be a {kind.__name__}')
        return NodeState(
            name=data["name"],
            node=data["node"],
            cluster=IPv4Network(data["cluster"]),
            subnet=IPv4Network(data["subnet"]),
            bridge=data["bridge"],
            mtu=data["mtu"],
            vni=data["vni"],
        )
    except (ValueError, TypeError) as exc:
        raise PluginError(
            f"overlay node state {path}: {exc}", code=ErrorCode.DECODING_FAILURE
        ) from exc
