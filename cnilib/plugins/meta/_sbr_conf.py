"""The ``sbr`` plugin's configuration: its keys as Go decodes them (``PluginConf``),
and its ``gateways`` list as Go's ``doRoutes`` reads it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

import attrs

from cnilib._json import JSONValue
from cnilib.errors import ErrorCode, PluginError
from cnilib.plugins._hostside import fail
from cnilib.results.v100 import IPConfig, ResultV100

__all__ = [
    "FIRST_TABLE",
    "SbrConf",
    "StaticGateways",
    "in_subnet",
    "ip_configs",
    "parse_error",
    "source_of",
    "static_gateways",
]

FIRST_TABLE = 100
"""The first table ID ADD considers (Go's ``firstTableID``)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_error(message: str) -> PluginError:
    """Go's ``failed to parse network configuration: <json error>`` (code 999)."""
    return PluginError(f"failed to parse network configuration: {message}", code=ErrorCode.INTERNAL)


def _json_kind(value: JSONValue) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number" if isinstance(value, int) or value.is_integer() else f"number {value}"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _mismatch(field: str, value: JSONValue, go_type: str) -> PluginError:
    return parse_error(
        f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
        f"PluginConf.{field} of type {go_type}"
    )


def _table(config: Mapping[str, JSONValue]) -> int | None:
    value = config.get("table")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _mismatch("table", value, "int")
    if isinstance(value, float) and not value.is_integer():
        raise _mismatch("table", value, "int")
    return int(value)


def _gateways(config: Mapping[str, JSONValue]) -> tuple[str, ...]:
    value = config.get("gateways")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _mismatch("gateways", value, "[]string")
    for item in value:
        if not isinstance(item, str):
            raise _mismatch("gateways", item, "string")
    return tuple(str(item) for item in value)


def _bool(config: Mapping[str, JSONValue], key: str) -> bool:
    value = config.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _mismatch(key, value, "bool")
    return value


@attrs.frozen
class SbrConf:
    """What ``sbr`` does: one table per address (Go's default), or rules only."""

    table: int | None = None
    """``table``: only add the rules, looking up this table (routes stay where they are)."""
    gateways: tuple[str, ...] = ()
    """``gateways``: at most one IPv4 and one IPv6 default gateway, instead of ``prevResult``'s."""
    add_source_hints: bool = False
    """``addSourceHints``: keep each subnet route in ``main``, with the address as source."""

    @classmethod
    def load(cls, config: Mapping[str, JSONValue]) -> SbrConf:
        """Go's ``parseConfig`` of the plugin's own keys."""
        return cls(
            table=_table(config),
            gateways=_gateways(config),
            add_source_hints=_bool(config, "addSourceHints"),
        )


@attrs.frozen
class StaticGateways:
    """The ``gateways`` list split by family (None: take ``prevResult``'s)."""

    v4: IPAddress | None = None
    v6: IPAddress | None = None

    def for_family(self, version: int) -> IPAddress | None:
        """The configured gateway for IP ``version`` (4 or 6)."""
        return self.v4 if version == 4 else self.v6


def _parse_ip(text: str) -> IPAddress | None:
    """Go's ``net.ParseIP``: a plain address (no zone, no prefix); an IPv4-mapped IPv6
    address is IPv4 (Go's ``To4``)."""
    if "%" in text or "/" in text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def static_gateways(gateways: tuple[str, ...]) -> StaticGateways:
    """Go's check of ``gateways``, with its texts: at most two, valid, one per family."""
    if len(gateways) > 2:
        raise fail("gateways list cannot contain more than 2 entries (one IPv4, one IPv6)")
    v4: IPAddress | None = None
    v6: IPAddress | None = None
    for text in gateways:
        ip = _parse_ip(text)
        if ip is None:
            raise fail(f"invalid static gateway IP address: {text}")
        if ip.version == 4:
            if v4 is not None:
                raise fail(f"gateways list contains multiple IPv4 addresses: {v4} and {text}")
            v4 = ip
        else:
            if v6 is not None:
                raise fail(f"gateways list contains multiple IPv6 addresses: {v6} and {text}")
            v6 = ip
    return StaticGateways(v4, v6)


# --------------------------------------------------------------------------- addresses


def ip_configs(ifname: str, prev: ResultV100) -> list[IPConfig]:
    """Go's ``getIPCfgs``: the addresses of ``prevResult`` that may be ``ifname``'s."""
    if not prev.ips:
        raise fail(f"No IP addresses supplied on interface: {ifname}")
    found = []
    for ipc in prev.ips:
        index = ipc.interface
        if (
            index is not None
            and 0 <= index < len(prev.interfaces)
            and prev.interfaces[index].name != ifname
        ):
            continue
        if ipc.address is not None:
            found.append(ipc)
    return found


def source_of(ipc: IPConfig) -> IPNetwork:
    """The rule source of an address: the address alone (``/32`` or ``/128``)."""
    assert ipc.address is not None
    return ipaddress.ip_network(ipc.address.ip)  # /32 or /128


def in_subnet(ipc: IPConfig, ip: IPAddress | None) -> bool:
    """Go's ``ipCfg.Address.Contains(ip)``: ``ip`` is in the address's subnet."""
    assert ipc.address is not None
    return ip is not None and ip in ipc.address.network
