"""The overlay's etcd keys and the JSON records stored under them.

Under ``<prefix>/<network>/`` (prefix default ``/cnilib/overlay``):

- ``config``: the cluster configuration (:class:`~cnilib.overlay.ClusterConfig`), no lease;
- ``subnets/<a.b.c.d>-<len>``: a :class:`SubnetRecord`, under its node's lease;
- ``nodes/<name>``: a :class:`NodeRecord`, under the same lease, written in the same
  transaction, so a node name and a subnet are each held by one live agent at most.

Decoding is strict and names the key and the field, because a peer's record drives
this node's kernel: a record that does not decode is skipped, never half-applied.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import attrs

from cnilib.overlay._errors import OverlayError, RecordError

__all__ = [
    "DEFAULT_PREFIX",
    "Keys",
    "NodeRecord",
    "SubnetRecord",
    "decode_object",
]

DEFAULT_PREFIX = "/cnilib/overlay"

_SUBNET_KEY = re.compile(r"(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})-(\d{1,2})")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


@attrs.frozen
class Keys:
    """The key names of one overlay network."""

    prefix: str = DEFAULT_PREFIX
    network: str = "overlay"

    @property
    def root(self) -> str:
        """``<prefix>/<network>/``: every key of the network starts with it."""
        return f"{self.prefix.rstrip('/')}/{self.network}/"

    @property
    def config(self) -> str:
        return self.root + "config"

    @property
    def subnets(self) -> str:
        """The prefix of the subnet keys (watch and list it)."""
        return self.root + "subnets/"

    @property
    def nodes(self) -> str:
        """The prefix of the node keys."""
        return self.root + "nodes/"

    def subnet(self, subnet: IPv4Network) -> str:
        """``subnets/10.244.1.0-24`` (flannel's spelling, without ``/`` in the name)."""
        return f"{self.subnets}{subnet.network_address}-{subnet.prefixlen}"

    def node(self, name: str) -> str:
        return self.nodes + name

    def subnet_of(self, key: str) -> IPv4Network:
        """The subnet a ``subnets/`` key names; :class:`RecordError` otherwise."""
        name = key.removeprefix(self.subnets)
        match = _SUBNET_KEY.fullmatch(name) if name != key else None
        if match is None:
            raise RecordError(f"etcd key {key!r} is not a subnet key ({self.subnets}A.B.C.D-LEN)")
        try:
            return IPv4Network(f"{match[1]}/{match[2]}")
        except ValueError as exc:
            raise RecordError(f"etcd key {key!r}: {exc}") from exc


def decode_object(
    key: str, value: bytes, error: type[OverlayError] = RecordError
) -> Mapping[str, Any]:
    """The JSON object stored at ``key``; ``error`` naming the key otherwise."""
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"etcd key {key!r}: value is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"etcd key {key!r}: value is not a JSON object")
    return data


def _field(key: str, data: Mapping[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    # bool is an int to Python, never to JSON's readers
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        got = "missing" if value is None else f"a JSON {type(value).__name__}"
        raise RecordError(f'etcd key {key!r}: field "{name}" must be a {kind.__name__}, got {got}')
    return value


def _address(key: str, data: Mapping[str, Any], name: str) -> IPv4Address:
    text = _field(key, data, name, str)
    try:
        return IPv4Address(text)
    except ValueError as exc:
        raise RecordError(f'etcd key {key!r}: field "{name}": {exc}') from exc


@attrs.frozen
class SubnetRecord:
    """A node's claim on a subnet and how to reach it (its VTEP)."""

    subnet: IPv4Network
    node: str
    underlay: IPv4Address
    """The node's address on the underlay network: the VXLAN packets' destination."""
    vtep_mac: str
    """The MAC of the node's VXLAN device (lower case)."""
    vni: int = 1
    port: int = 8472
    joined: float = 0.0
    """When the node claimed the subnet (Unix time)."""
    backend: str = "vxlan"

    @property
    def gateway(self) -> IPv4Address:
        """The subnet's first address: the node bridge's address, containers' gateway."""
        return self.subnet.network_address + 1

    @property
    def vtep_address(self) -> IPv4Address:
        """The subnet's network address, on the node's VXLAN device (flannel's choice):
        peers route the subnet via it, on-link, and resolve it to ``vtep_mac``."""
        return self.subnet.network_address

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "node": self.node,
                "underlay": str(self.underlay),
                "backend": self.backend,
                "vtepMAC": self.vtep_mac,
                "vni": self.vni,
                "port": self.port,
                "joined": self.joined,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, keys: Keys, key: str, value: bytes) -> SubnetRecord:
        """Decode the record stored at ``key``; :class:`RecordError` naming key and field."""
        subnet = keys.subnet_of(key)
        data = decode_object(key, value)
        mac = _field(key, data, "vtepMAC", str).lower()
        if not _MAC.fullmatch(mac):
            raise RecordError(f'etcd key {key!r}: field "vtepMAC": {mac!r} is not a MAC address')
        vni = _field(key, data, "vni", int)
        port = _field(key, data, "port", int)
        if not 0 < vni < 1 << 24:
            raise RecordError(f'etcd key {key!r}: field "vni": {vni} is not in 1..16777215')
        if not 0 < port < 1 << 16:
            raise RecordError(f'etcd key {key!r}: field "port": {port} is not in 1..65535')
        joined = data.get("joined", 0.0)
        if isinstance(joined, bool) or not isinstance(joined, int | float):
            raise RecordError(f'etcd key {key!r}: field "joined" must be a number')
        return cls(
            subnet=subnet,
            node=_field(key, data, "node", str),
            underlay=_address(key, data, "underlay"),
            vtep_mac=mac,
            vni=vni,
            port=port,
            joined=float(joined),
            backend=_field(key, data, "backend", str),
        )


@attrs.frozen
class NodeRecord:
    """Which subnet a node name holds."""

    name: str
    subnet: IPv4Network

    def to_json(self) -> bytes:
        return json.dumps({"subnet": str(self.subnet)}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, keys: Keys, key: str, value: bytes) -> NodeRecord:
        data = decode_object(key, value)
        text = _field(key, data, "subnet", str)
        try:
            subnet = ipaddress.IPv4Network(text)
        except ValueError as exc:
            raise RecordError(f'etcd key {key!r}: field "subnet": {exc}') from exc
        return cls(name=key.removeprefix(keys.nodes), subnet=subnet)
