"""The Go types the dhcp plugin and daemon exchange over gob, and cnilib's for them.

:mod:`._gob` is the codec; this module is what travels through it:

* the schemas this side encodes: ``rpc.Request`` (:data:`REQUEST`),
  ``rpc.Response`` (:data:`RESPONSE`), ``struct{}`` (:data:`EMPTY`),
  ``skel.CmdArgs`` (:data:`CMD_ARGS`) and ``types100.Result`` (:data:`RESULT`),
  plus the variants other Go versions send (for tests);
* :func:`result_to_value` / :func:`result_from_value` and
  :func:`cmd_args_to_value` / :func:`cmd_args_from_value`, which map between
  gob struct values (dicts keyed by field name) and cnilib's types. The readers
  take fields by name and ignore the ones they do not know, so Go 1.1.1's
  ``skel.CmdArgs`` and the latest one (with ``NetnsOverride``) both decode.

Two Go details shape the Result mapping. Gob omits zero values, so a Go peer
cannot send an ``IPConfig.Interface`` pointer to index 0 (it arrives as no
index); this side sends a set pointer field even when it is 0, which Go
decodes as a pointer to 0. And the Result is sent with the latest CNI field set
(``Interface.Mtu/SocketPath/PciID``, ``Route.MTU/AdvMSS/Priority/Table/Scope``):
Go 1.1.1 peers ignore the fields they lack.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

import attrs

from cnilib.plugins.ipam.dhcp._gob import (
    BYTES,
    INT,
    STRING,
    UINT,
    Field,
    GobError,
    SliceSchema,
    StructSchema,
)
from cnilib.results import DNS, Route
from cnilib.results._ip import IPAddress, IPInterface
from cnilib.results.v100 import Interface, IPConfig, ResultV100

__all__ = [
    "CMD_ARGS",
    "CMD_ARGS_LATEST",
    "EMPTY",
    "REQUEST",
    "RESPONSE",
    "RESULT",
    "RESULT_GO_1_1_1",
    "CmdArgs",
    "cmd_args_from_value",
    "cmd_args_to_value",
    "result_from_value",
    "result_to_value",
]

# ----------------------------------------------------------------------------- schemas


def _struct(name: str, *fields: Field) -> StructSchema:
    return StructSchema(name, fields)


REQUEST = _struct("Request", Field("ServiceMethod", STRING), Field("Seq", UINT))
"""Go ``rpc.Request``."""

RESPONSE = _struct(
    "Response", Field("ServiceMethod", STRING), Field("Seq", UINT), Field("Error", STRING)
)
"""Go ``rpc.Response``."""

EMPTY = _struct("")
"""Go ``struct{}``: the Release reply, and the body of every error reply."""

_CMD_ARGS_HEAD = (
    Field("ContainerID", STRING),
    Field("Netns", STRING),
    Field("IfName", STRING),
    Field("Args", STRING),
    Field("Path", STRING),
)
CMD_ARGS = StructSchema("CmdArgs", (*_CMD_ARGS_HEAD, Field("StdinData", BYTES)))
"""Go 1.1.1's ``skel.CmdArgs`` (what this side sends: every Go version decodes it)."""

CMD_ARGS_LATEST = StructSchema(
    "CmdArgs", (*_CMD_ARGS_HEAD, Field("NetnsOverride", STRING), Field("StdinData", BYTES))
)
"""The latest CNI's ``skel.CmdArgs`` (for tests: what a newer Go plugin sends)."""

_IPNET = _struct("IPNet", Field("IP", BYTES), Field("Mask", BYTES))
_STRINGS = SliceSchema("[]string", STRING)
_DNS = _struct(
    "DNS",
    Field("Nameservers", _STRINGS),
    Field("Domain", STRING),
    Field("Search", _STRINGS),
    Field("Options", _STRINGS),
)
_IPCONFIG = _struct(
    "",
    Field("Interface", INT, pointer=True),
    Field("Address", _IPNET),
    Field("Gateway", BYTES),
)


def _result_schema(interface: StructSchema, route: StructSchema) -> StructSchema:
    # Interface, IPConfig and Route travel as slice elements through pointers
    # ([]*Interface): Go names such a type after the unnamed pointer type, so "".
    return _struct(
        "Result",
        Field("CNIVersion", STRING),
        Field("Interfaces", SliceSchema("[]*types100.Interface", interface)),
        Field("IPs", SliceSchema("[]*types100.IPConfig", _IPCONFIG)),
        Field("Routes", SliceSchema("[]*types.Route", route)),
        Field("DNS", _DNS),
    )


RESULT = _result_schema(
    _struct(
        "",
        Field("Name", STRING),
        Field("Mac", STRING),
        Field("Mtu", INT),
        Field("Sandbox", STRING),
        Field("SocketPath", STRING),
        Field("PciID", STRING),
    ),
    _struct(
        "",
        Field("Dst", _IPNET),
        Field("GW", BYTES),
        Field("MTU", INT),
        Field("AdvMSS", INT),
        Field("Priority", INT),
        Field("Table", INT, pointer=True),
        Field("Scope", INT, pointer=True),
    ),
)
"""The latest CNI's ``types100.Result`` (what this side sends)."""

RESULT_GO_1_1_1 = _result_schema(
    _struct("", Field("Name", STRING), Field("Mac", STRING), Field("Sandbox", STRING)),
    _struct("", Field("Dst", _IPNET), Field("GW", BYTES)),
)
"""The ``types100.Result`` of Go 1.1.1's daemon (for tests: its bytes are known)."""


# ------------------------------------------------------------------- cnilib <-> values


@attrs.frozen
class CmdArgs:
    """Go ``skel.CmdArgs``: what the plugin sends the daemon for every call.

    ``netns`` is absolute (the plugin makes it so); ``stdin_data`` is the whole
    network configuration the plugin was given.
    """

    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: str = ""
    path: str = ""
    stdin_data: bytes = b""


def cmd_args_to_value(args: CmdArgs) -> dict[str, object]:
    """``args`` as a :data:`CMD_ARGS` value."""
    return {
        "ContainerID": args.container_id,
        "Netns": args.netns,
        "IfName": args.ifname,
        "Args": args.args,
        "Path": args.path,
        "StdinData": args.stdin_data,
    }


def _get(value: Mapping[str, object], name: str, kind: type, where: str) -> object:
    """Field ``name`` of a decoded struct, checked to be a ``kind`` (None when absent)."""
    item = value.get(name)
    if item is None:
        return None
    if not isinstance(item, kind) or (kind is int and isinstance(item, bool)):
        raise GobError(f"{where}.{name}: expected a Go {_kind_name(kind)}, got {_what(item)}")
    return item


def _kind_name(kind: type) -> str:
    names = {str: "string", bytes: "[]byte", int: "int", list: "slice", dict: "struct"}
    return names.get(kind, kind.__name__)


def _what(item: object) -> str:
    return {str: "a string", bytes: "a []byte", bool: "a bool", int: "an integer"}.get(
        type(item), f"a {type(item).__name__}"
    )


def _struct_value(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise GobError(f"{where}: expected a struct, got {_what(value)}")
    return value


def _str(value: Mapping[str, object], name: str, where: str) -> str:
    item = _get(value, name, str, where)
    return item if isinstance(item, str) else ""


def _int(value: Mapping[str, object], name: str, where: str) -> int | None:
    item = _get(value, name, int, where)
    return item if isinstance(item, int) else None


def _bytes(value: Mapping[str, object], name: str, where: str) -> bytes:
    item = _get(value, name, bytes, where)
    return item if isinstance(item, bytes) else b""


def _list(value: Mapping[str, object], name: str, where: str) -> list[object]:
    item = _get(value, name, list, where)
    return item if isinstance(item, list) else []


def _strings(value: Mapping[str, object], name: str, where: str) -> tuple[str, ...]:
    items = _list(value, name, where)
    for item in items:
        if not isinstance(item, str):
            raise GobError(f"{where}.{name}: expected strings, got {_what(item)}")
    return tuple(str(item) for item in items)


def cmd_args_from_value(value: object) -> CmdArgs:
    """A decoded ``skel.CmdArgs`` of any Go version (fields by name, unknown ones ignored)."""
    fields = _struct_value(value, "CmdArgs")
    return CmdArgs(
        container_id=_str(fields, "ContainerID", "CmdArgs"),
        netns=_str(fields, "Netns", "CmdArgs"),
        ifname=_str(fields, "IfName", "CmdArgs"),
        args=_str(fields, "Args", "CmdArgs"),
        path=_str(fields, "Path", "CmdArgs"),
        stdin_data=_bytes(fields, "StdinData", "CmdArgs"),
    )


def _ip_bytes(addr: IPAddress | None) -> bytes:
    return b"" if addr is None else addr.packed


def _ipnet_value(net: IPInterface | None) -> dict[str, object]:
    if net is None:
        return {}
    return {"IP": net.ip.packed, "Mask": net.network.netmask.packed}


def result_to_value(result: ResultV100) -> dict[str, object]:
    """``result`` as a :data:`RESULT` value (IPv4 addresses as 4 bytes, as Go's daemon)."""
    return {
        "CNIVersion": result.cni_version,
        "Interfaces": [
            {
                "Name": i.name,
                "Mac": i.mac,
                "Mtu": i.mtu,
                "Sandbox": i.sandbox,
                "SocketPath": i.socket_path,
                "PciID": i.pci_id,
            }
            for i in result.interfaces
        ],
        "IPs": [
            {
                "Interface": ip.interface,
                "Address": _ipnet_value(ip.address),
                "Gateway": _ip_bytes(ip.gateway),
            }
            for ip in result.ips
        ],
        "Routes": [
            {
                "Dst": _ipnet_value(r.dst),
                "GW": _ip_bytes(r.gw),
                "MTU": r.mtu,
                "AdvMSS": r.adv_mss,
                "Priority": r.priority,
                "Table": r.table,
                "Scope": r.scope,
            }
            for r in result.routes
        ],
        "DNS": {
            "Nameservers": list(result.dns.nameservers),
            "Domain": result.dns.domain,
            "Search": list(result.dns.search),
            "Options": list(result.dns.options),
        },
    }


def _ip_from(raw: bytes, where: str) -> IPAddress | None:
    """A Go ``net.IP``: empty is none, 16 bytes of a mapped IPv4 address are IPv4."""
    if not raw:
        return None
    if len(raw) == 4:
        return IPv4Address(raw)
    if len(raw) == 16:
        addr = IPv6Address(raw)
        return addr.ipv4_mapped or addr
    raise GobError(f"{where}: an IP address of {len(raw)} bytes")


def _prefix_length(mask: bytes, where: str) -> int:
    bits = int.from_bytes(mask, "big")
    total = len(mask) * 8
    ones = total - (((~bits) & ((1 << total) - 1)).bit_length())
    if bits != ((1 << total) - 1) ^ ((1 << (total - ones)) - 1):
        raise GobError(f"{where}: non-canonical mask {mask.hex()}")
    return ones


def _ipnet_from(value: object, where: str) -> IPInterface | None:
    """A Go ``net.IPNet`` as libcni prints it (a zero one is none)."""
    fields = _struct_value(value, where)
    ip = _ip_from(_bytes(fields, "IP", where), f"{where}.IP")
    if ip is None:
        return None
    mask = _bytes(fields, "Mask", where)
    # Go's IPNet.String: an IPv4 address takes a 16-byte mask's last 4 bytes.
    if isinstance(ip, IPv4Address) and len(mask) == 16:
        mask = mask[12:]
    if len(mask) != len(ip.packed):
        raise GobError(f"{where}: a {len(mask)}-byte mask for {ip}")
    prefix = _prefix_length(mask, f"{where}.Mask")
    if isinstance(ip, IPv4Address):
        return IPv4Interface((ip, prefix))
    return IPv6Interface((ip, prefix))


def result_from_value(value: object) -> ResultV100:
    """A decoded ``types100.Result`` of any Go version, as a :class:`ResultV100`."""
    fields = _struct_value(value, "Result")
    interfaces = []
    for item in _list(fields, "Interfaces", "Result"):
        i = _struct_value(item, "Result.Interfaces")
        where = "Interface"
        interfaces.append(
            Interface(
                name=_str(i, "Name", where),
                mac=_str(i, "Mac", where),
                mtu=_int(i, "Mtu", where) or 0,
                sandbox=_str(i, "Sandbox", where),
                socket_path=_str(i, "SocketPath", where),
                pci_id=_str(i, "PciID", where),
            )
        )
    ips = []
    for item in _list(fields, "IPs", "Result"):
        ip = _struct_value(item, "Result.IPs")
        ips.append(
            IPConfig(
                interface=_int(ip, "Interface", "IPConfig"),
                address=_ipnet_from(ip.get("Address", {}), "IPConfig.Address"),
                gateway=_ip_from(_bytes(ip, "Gateway", "IPConfig"), "IPConfig.Gateway"),
            )
        )
    routes = []
    for item in _list(fields, "Routes", "Result"):
        r = _struct_value(item, "Result.Routes")
        routes.append(
            Route(
                dst=_ipnet_from(r.get("Dst", {}), "Route.Dst"),
                gw=_ip_from(_bytes(r, "GW", "Route"), "Route.GW"),
                mtu=_int(r, "MTU", "Route") or 0,
                adv_mss=_int(r, "AdvMSS", "Route") or 0,
                priority=_int(r, "Priority", "Route") or 0,
                table=_int(r, "Table", "Route"),
                scope=_int(r, "Scope", "Route"),
            )
        )
    dns = _struct_value(fields.get("DNS", {}), "Result.DNS")
    return ResultV100(
        cni_version=_str(fields, "CNIVersion", "Result"),
        interfaces=interfaces,
        ips=ips,
        routes=routes,
        dns=DNS(
            nameservers=_strings(dns, "Nameservers", "DNS"),
            domain=_str(dns, "Domain", "DNS"),
            search=_strings(dns, "Search", "DNS"),
            options=_strings(dns, "Options", "DNS"),
        ),
    )
