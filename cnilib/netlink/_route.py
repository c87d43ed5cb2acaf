"""Routes: add, replace, list, delete (inside :func:`cnilib.netlink.run_in_netns`).

Routes are added with protocol ``boot`` (3), as Go's netlink and ``ip route``
do, not pyroute2's default ``static``, so that kernel states compare equal
with the Go plugins'. Every request goes through the worker's lean socket
(:mod:`cnilib.netlink._raw`): a route dump through pyroute2 cost about 2 ms
of Python, which made sbr's ADD (two dumps, a few deletions) slower than
Go's binary.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any, TypeAlias

import attrs

from cnilib.netlink._errors import netlink_errors
from cnilib.netlink._link import LinkRef, _index, _name
from cnilib.netlink._pool import netns_label, raw
from cnilib.netlink._raw import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    attr,
    parse_attrs,
)

__all__ = [
    "RT_SCOPE_HOST",
    "RT_SCOPE_LINK",
    "RT_SCOPE_UNIVERSE",
    "RT_TABLE_MAIN",
    "RTPROT_BOOT",
    "RouteEntry",
    "add_route",
    "delete_route",
    "list_routes",
    "replace_route",
]

IPNetwork: TypeAlias = "ipaddress.IPv4Network | ipaddress.IPv6Network"
IPAddr: TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address"

RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RT_SCOPE_NOWHERE = 255  # in a delete request: any scope
RTPROT_BOOT = 3
RTNH_F_ONLINK = 4
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
RTN_UNSPEC = 0  # in a delete request: any type
RTN_UNICAST = 1
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_PREFSRC = 7
RTA_METRICS = 8
RTA_TABLE = 15
RTAX_MTU = 2
RTAX_ADVMSS = 8
_RTMSG = struct.Struct("=BBBBBBBBI")
_U32 = struct.Struct("=I")


@attrs.frozen(kw_only=True)
class RouteEntry:
    """A route as the kernel reports it (``RTM_NEWROUTE``)."""

    dst: IPNetwork
    """Destination; the default route is ``0.0.0.0/0`` or ``::/0``."""
    gateway: IPAddr | None = None
    oif: int | None = None
    table: int = RT_TABLE_MAIN
    scope: int = RT_SCOPE_UNIVERSE
    proto: int = 0
    type: int = 1
    priority: int | None = None
    prefsrc: IPAddr | None = None
    mtu: int | None = None
    adv_mss: int | None = None

    @property
    def family(self) -> int:
        """``socket.AF_INET`` or ``socket.AF_INET6``."""
        return socket.AF_INET if self.dst.version == 4 else socket.AF_INET6


def _u32(value: memoryview | None) -> int | None:
    return None if value is None else int(_U32.unpack_from(value)[0])


def _route_from_raw(payload: memoryview) -> RouteEntry:
    """A :class:`RouteEntry` from an ``RTM_NEWROUTE`` payload."""
    family, dst_len, _, _, table, proto, scope, kind, _ = _RTMSG.unpack_from(payload, 0)
    found = parse_attrs(payload, _RTMSG.size)
    dst = found.get(RTA_DST)
    zero = ipaddress.IPv4Address(0) if family == socket.AF_INET else ipaddress.IPv6Address(0)
    address = ipaddress.ip_address(bytes(dst)) if dst is not None else zero
    gateway, prefsrc = found.get(RTA_GATEWAY), found.get(RTA_PREFSRC)
    metrics = parse_attrs(found[RTA_METRICS]) if RTA_METRICS in found else {}
    return RouteEntry(
        dst=ipaddress.ip_network(f"{address}/{dst_len}", strict=False),
        gateway=ipaddress.ip_address(bytes(gateway)) if gateway is not None else None,
        oif=_u32(found.get(RTA_OIF)),
        table=_u32(found.get(RTA_TABLE)) or table,
        scope=scope,
        proto=proto,
        type=kind,
        priority=_u32(found.get(RTA_PRIORITY)),
        prefsrc=ipaddress.ip_address(bytes(prefsrc)) if prefsrc is not None else None,
        mtu=_u32(metrics.get(RTAX_MTU)),
        adv_mss=_u32(metrics.get(RTAX_ADVMSS)),
    )


def _request(
    dst: str | IPNetwork,
    *,
    gateway: str | IPAddr | None,
    link: LinkRef | None,
    scope: int | None,
    table: int | None,
    priority: int | None,
    src: str | IPAddr | None,
    mtu: int | None,
    adv_mss: int | None,
    onlink: bool,
    proto: int | None,
    kind: int = RTN_UNICAST,
) -> tuple[dict[str, Any], str]:
    net = ipaddress.ip_network(dst, strict=False) if isinstance(dst, str) else dst
    request: dict[str, Any] = {
        "dst": str(net.network_address),
        "dst_len": net.prefixlen,
        "family": socket.AF_INET if net.version == 4 else socket.AF_INET6,
        "type": kind,
    }
    text = str(net)
    if gateway is not None:
        request["gateway"] = str(gateway)
        text += f" via {gateway}"
    if link is not None:
        request["oif"] = _index(link)
        text += f" dev {_name(link)}"
    if scope is not None:
        request["scope"] = scope
    if table is not None:
        request["table"] = table
        text += f" table {table}"
    if priority is not None:
        request["priority"] = priority
    if src is not None:
        request["prefsrc"] = str(src)
    metrics = {}
    if mtu:
        metrics["mtu"] = mtu
    if adv_mss:
        metrics["advmss"] = adv_mss
    if metrics:
        request["metrics"] = metrics
    if onlink:
        request["flags"] = RTNH_F_ONLINK
    if proto is not None:
        request["proto"] = proto
    return request, text


def _route_change(
    command: str,
    dst: str | IPNetwork,
    gateway: str | IPAddr | None,
    link: LinkRef | None,
    scope: int | None,
    table: int | None,
    priority: int | None,
    src: str | IPAddr | None,
    mtu: int | None,
    adv_mss: int | None,
    onlink: bool,
    proto: int | None = None,
    kind: int = RTN_UNICAST,
) -> None:
    request, text = _request(
        dst, gateway=gateway, link=link, scope=scope, table=table, priority=priority,
        src=src, mtu=mtu, adv_mss=adv_mss, onlink=onlink,
        proto=RTPROT_BOOT if proto is None else proto, kind=kind,
    )  # fmt: skip
    with netlink_errors(f"{command} route {text}", netns_label()):
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
        flags |= NLM_F_EXCL if command == "add" else NLM_F_REPLACE
        raw().request(RTM_NEWROUTE, flags, _encode(request))


def _encode(request: dict[str, Any]) -> bytes:
    """``RTM_NEWROUTE`` for a :func:`_request`: pyroute2's message, attributes in its order."""
    family = request["family"]
    table = request.get("table")
    header = _RTMSG.pack(
        family,
        request["dst_len"],
        0,
        0,
        table if table is not None and 0 < table < 255 else RT_TABLE_MAIN,
        request["proto"],
        request.get("scope", RT_SCOPE_UNIVERSE),
        request["type"],
        request.get("flags", 0),
    )
    body = [header]
    if request["dst_len"]:
        body.append(attr(RTA_DST, socket.inet_pton(family, request["dst"])))
    if "gateway" in request:
        body.append(attr(RTA_GATEWAY, socket.inet_pton(family, request["gateway"])))
    if "oif" in request:
        body.append(attr(RTA_OIF, _U32.pack(request["oif"])))
    if table is not None:
        body.append(attr(RTA_TABLE, _U32.pack(table)))
    if "priority" in request:
        body.append(attr(RTA_PRIORITY, _U32.pack(request["priority"])))
    if "prefsrc" in request:
        body.append(attr(RTA_PREFSRC, socket.inet_pton(family, request["prefsrc"])))
    metrics = request.get("metrics")
    if metrics:
        nested = b""
        if "mtu" in metrics:
            nested += attr(RTAX_MTU, _U32.pack(metrics["mtu"]))
        if "advmss" in metrics:
            nested += attr(RTAX_ADVMSS, _U32.pack(metrics["advmss"]))
        body.append(attr(RTA_METRICS, nested))
    return b"".join(body)


def add_route(
    dst: str | IPNetwork,
    *,
    gateway: str | IPAddr | None = None,
    link: LinkRef | None = None,
    scope: int | None = None,
    table: int | None = None,
    priority: int | None = None,
    src: str | IPAddr | None = None,
    mtu: int | None = None,
    adv_mss: int | None = None,
    onlink: bool = False,
) -> None:
    """Add a route; :class:`~cnilib.netlink.NetlinkError` ``EEXIST`` if it exists."""
    _route_change("add", dst, gateway, link, scope, table, priority, src, mtu, adv_mss, onlink)


def replace_route(
    dst: str | IPNetwork,
    *,
    gateway: str | IPAddr | None = None,
    link: LinkRef | None = None,
    scope: int | None = None,
    table: int | None = None,
    priority: int | None = None,
    src: str | IPAddr | None = None,
    mtu: int | None = None,
    adv_mss: int | None = None,
    onlink: bool = False,
    proto: int | None = None,
    kind: int = RTN_UNICAST,
) -> None:
    """Add a route, or replace the one with the same destination (``ip route replace``).

    ``proto`` defaults to ``boot`` and ``kind`` (the route type) to unicast; a route
    copied from a listing keeps its own (``kernel`` for a subnet route, ``multicast``
    for a multicast one), as Go's netlink ``RouteReplace`` of it does.
    """
    _route_change(
        "replace", dst, gateway, link, scope, table, priority, src, mtu, adv_mss, onlink, proto,
        kind,
    )  # fmt: skip


def delete_route(
    dst: str | IPNetwork,
    *,
    gateway: str | IPAddr | None = None,
    link: LinkRef | None = None,
    table: int | None = None,
    priority: int | None = None,
) -> None:
    """Delete the route matching ``dst`` (and the given keys), of any type; ``ESRCH`` if
    none."""
    request, text = _request(
        dst, gateway=gateway, link=link, scope=RT_SCOPE_NOWHERE, table=table, priority=priority,
        src=None, mtu=None, adv_mss=None, onlink=False, proto=None, kind=RTN_UNSPEC,
    )  # fmt: skip
    request["proto"] = 0  # any protocol
    with netlink_errors(f"delete route {text}", netns_label()):
        raw().request(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, _encode(request))


def list_routes(
    *, family: int | None = None, table: int | None = RT_TABLE_MAIN, link: LinkRef | None = None
) -> list[RouteEntry]:
    """Routes of ``table`` (None: every table), optionally of one family or output link."""
    with netlink_errors("list routes", netns_label()):
        oif = _index(link) if link is not None else None
        body = _RTMSG.pack(family or socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)
        replies = raw().request(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, body)
        routes = [
            _route_from_raw(payload)
            for kind, payload in replies
            if kind == RTM_NEWROUTE and payload[0] in (socket.AF_INET, socket.AF_INET6)
        ]
    return [
        r
        for r in routes
        if (table is None or r.table == table)
        and (oif is None or r.oif == oif)
        and (family is None or r.family == family)
    ]
