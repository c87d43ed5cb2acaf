"""The cluster configuration: the overlay's CIDR, how it is cut into node subnets, the VXLAN.

One JSON document at ``<prefix>/<network>/config`` (no lease), written by the first agent
given ``--cluster-cidr`` and read by every other. The rules are flannel's
(``CheckNetworkConfig``), adapted:

- ``subnet_len`` defaults to 24 when the network's prefix is /22 or shorter, else to the
  prefix + 2 (four subnets); a network longer than /28 is too small; an explicit length is
  at most 30 and at least the prefix + 2;
- ``subnet_min`` defaults to the SECOND subnet: the first one, which starts at the network
  address, is never a node's (a node's VTEP address is its subnet's network address, and
  that would be the whole network's); ``subnet_max`` defaults to the last subnet;
- both bounds lie in the network, on a subnet boundary, ``subnet_min <= subnet_max``
  (at least one subnet in the pool); an explicit ``subnet_min`` may not be the first
  subnet either;
- VXLAN: ``vni`` in 1..16777215, UDP ``port`` in 1..65535 (default 8472, the kernel's and
  flannel's, not IANA's 4789).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from ipaddress import IPv4Network
from typing import Any

import attrs

from cnilib.overlay._errors import OverlayConfigError
from cnilib.overlay._records import decode_object

__all__ = ["DEFAULT_PORT", "DEFAULT_VNI", "ClusterConfig"]

DEFAULT_VNI = 1
DEFAULT_PORT = 8472
_MAX_VNI = (1 << 24) - 1
_KEYS = frozenset({"network", "subnetLen", "subnetMin", "subnetMax", "backend"})
_BACKEND_KEYS = frozenset({"type", "vni", "port"})


def _network(field: str, value: str | IPv4Network) -> IPv4Network:
    if isinstance(value, IPv4Network):
        return value
    try:
        return IPv4Network(value)
    except ValueError as exc:
        raise OverlayConfigError(f"cluster {field} {value!r} is not an IPv4 CIDR: {exc}") from exc


def _bound(
    field: str, value: str | IPv4Network | None, default: IPv4Network, network: IPv4Network
) -> IPv4Network:
    """A pool bound, given as an address (flannel's form) or as a subnet of the right length."""
    if value is None:
        return default
    length = default.prefixlen
    if isinstance(value, IPv4Network):
        subnet = value
    else:
        text = value if "/" in value else f"{value}/{length}"
        try:
            subnet = IPv4Network(text)
        except ValueError as exc:
            # strict=True refuses host bits: flannel's "not on a SubnetLen boundary"
            raise OverlayConfigError(
                f"cluster {field} {value!r} is not a /{length} subnet address: {exc}"
            ) from exc
    if subnet.prefixlen != length:
        raise OverlayConfigError(
            f"cluster {field} {subnet} is not a /{length} subnet (the subnet length)"
        )
    if not subnet.subnet_of(network):
        raise OverlayConfigError(f"cluster {field} {subnet} is not in the network {network}")
    return subnet


def _check_range(field: str, value: object, low: int, high: int) -> int:
    # bool is an int to Python, never a VNI or a port
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise OverlayConfigError(f"cluster {field} {value!r} is not in {low}..{high}")
    return value


@attrs.frozen
class ClusterConfig:
    """The overlay's cluster configuration (build it with :meth:`make`, which checks it)."""

    network: IPv4Network
    """The cluster CIDR: every node subnet lies in it."""
    subnet_len: int
    """The prefix length of a node's subnet."""
    subnet_min: IPv4Network
    """The first subnet a node may claim."""
    subnet_max: IPv4Network
    """The last subnet a node may claim."""
    vni: int = DEFAULT_VNI
    port: int = DEFAULT_PORT

    @classmethod
    def make(
        cls,
        network: str | IPv4Network,
        *,
        subnet_len: int | None = None,
        subnet_min: str | IPv4Network | None = None,
        subnet_max: str | IPv4Network | None = None,
        vni: int = DEFAULT_VNI,
        port: int = DEFAULT_PORT,
    ) -> ClusterConfig:
        """A checked configuration, with flannel's defaults for what is not given;
        :class:`~cnilib.overlay.OverlayConfigError` naming the field and value otherwise."""
        net = _network("network", network)
        prefix = net.prefixlen
        if subnet_len is None:
            if prefix > 28:
                raise OverlayConfigError(
                    f"cluster network {net} is too small: a prefix of /28 or shorter is needed"
                )
            length = 24 if prefix <= 22 else prefix + 2
        else:
            length = _check_range("subnet length", subnet_len, 0, 32)
            if length > 30:
                raise OverlayConfigError(
                    f"cluster subnet length /{length} is too long: at most /30 "
                    "(a node's VTEP address, its bridge, a container and the broadcast address)"
                )
            if length < prefix + 2:
                raise OverlayConfigError(
                    f"cluster subnet length /{length} leaves fewer than four subnets in "
                    f"{net}: use /{prefix + 2} or longer"
                )
        size = 1 << (32 - length)
        first = IPv4Network((int(net.network_address) + size, length))
        last = IPv4Network((int(net.broadcast_address) + 1 - size, length))
        low = _bound("subnet min", subnet_min, first, net)
        if low.network_address == net.network_address:
            raise OverlayConfigError(
                f"cluster subnet min {low} is the network's first subnet, which no node "
                f"may hold (its address is the network address of {net}): use {first} or later"
            )
        high = _bound("subnet max", subnet_max, last, net)
        if low.network_address > high.network_address:
            raise OverlayConfigError(
                f"cluster subnet min {low} is after subnet max {high}: the pool holds no subnet"
            )
        return cls(
            network=net,
            subnet_len=length,
            subnet_min=low,
            subnet_max=high,
            vni=_check_range("vni", vni, 1, _MAX_VNI),
            port=_check_range("port", port, 1, 65535),
        )

    @property
    def pool_size(self) -> int:
        """How many subnets nodes may claim."""
        step = 1 << (32 - self.subnet_len)
        span = int(self.subnet_max.network_address) - int(self.subnet_min.network_address)
        return span // step + 1

    def subnets(self) -> Iterator[IPv4Network]:
        """The pool, in address order: ``subnet_min`` to ``subnet_max``."""
        step = 1 << (32 - self.subnet_len)
        start = int(self.subnet_min.network_address)
        for index in range(self.pool_size):
            yield IPv4Network((start + index * step, self.subnet_len))

    def holds(self, subnet: IPv4Network) -> bool:
        """Whether ``subnet`` is one of the pool's (right length, within the bounds)."""
        return (
            subnet.prefixlen == self.subnet_len
            and self.subnet_min.network_address
            <= subnet.network_address
            <= self.subnet_max.network_address
        )

    def describe(self) -> str:
        """One line for messages, e.g.
        ``10.244.0.0/16 (/24 subnets 10.244.1.0-10.244.255.0, vni 1, port 8472)``."""
        return (
            f"{self.network} (/{self.subnet_len} subnets {self.subnet_min.network_address}"
            f"-{self.subnet_max.network_address}, vni {self.vni}, port {self.port})"
        )

    def to_json(self) -> bytes:
        """The stored form (bounds as addresses, like flannel's SubnetMin/SubnetMax)."""
        return json.dumps(
            {
                "network": str(self.network),
                "subnetLen": self.subnet_len,
                "subnetMin": str(self.subnet_min.network_address),
                "subnetMax": str(self.subnet_max.network_address),
                "backend": {"type": "vxlan", "vni": self.vni, "port": self.port},
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, key: str, value: bytes) -> ClusterConfig:
        """Decode and check the configuration stored at ``key``.

        Only ``network`` is required (an operator may write the key by hand, as with
        flannel); the rest takes :meth:`make`'s defaults. Unknown fields are refused, so
        a misspelt one is not silently ignored. Errors name the key and the field.
        """
        data = decode_object(key, value, OverlayConfigError)
        _no_unknown(key, "", data, _KEYS)
        backend = data.get("backend", {})
        if not isinstance(backend, dict):
            raise OverlayConfigError(f'etcd key {key!r}: field "backend" must be an object')
        _no_unknown(key, "backend.", backend, _BACKEND_KEYS)
        kind = backend.get("type", "vxlan")
        if kind != "vxlan":
            raise OverlayConfigError(
                f'etcd key {key!r}: field "backend.type": {kind!r} is not supported (only "vxlan")'
            )
        try:
            return cls.make(
                _typed(key, data, "network", str, required=True),
                subnet_len=_typed(key, data, "subnetLen", int),
                subnet_min=_typed(key, data, "subnetMin", str),
                subnet_max=_typed(key, data, "subnetMax", str),
                vni=_typed(key, backend, "vni", int, prefix="backend.", default=DEFAULT_VNI),
                port=_typed(key, backend, "port", int, prefix="backend.", default=DEFAULT_PORT),
            )
        except OverlayConfigError as exc:
            raise OverlayConfigError(f"etcd key {key!r}: {exc.msg}") from exc


def _no_unknown(key: str, prefix: str, data: Mapping[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise OverlayConfigError(
            f'etcd key {key!r}: unknown field "{prefix}{unknown[0]}" '
            f"(known: {', '.join(prefix + name for name in sorted(known))})"
        )


def _typed(
    key: str,
    data: Mapping[str, Any],
    name: str,
    kind: type,
    *,
    prefix: str = "",
    required: bool = False,
    default: Any = None,
) -> Any:
    if name not in data:
        if required:
            raise OverlayConfigError(f'etcd key {key!r}: field "{prefix}{name}" is missing')
        return default
    value = data[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise OverlayConfigError(
            f'etcd key {key!r}: field "{prefix}{name}" must be a JSON '
            f"{'string' if kind is str else 'integer'}, got {json.dumps(value)}"
        )
    return value
