"""Routing policy rules: add, list, delete (inside :func:`cnilib.netlink.run_in_netns`).

The requests are ``struct fib_rule_hdr`` messages sent on the worker's raw
socket. A rule added without a priority gets the kernel's default one (just
below the lowest non-zero priority already there, 32765 on a fresh
namespace), as ``ip rule add`` and Go's netlink ``RuleAdd`` do.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import TypeAlias

import attrs

from cnilib.netlink._errors import netlink_errors
from cnilib.netlink._pool import netns_label, raw
from cnilib.netlink._raw import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    attr,
    parse_attrs,
)

__all__ = ["FR_ACT_TO_TBL", "Rule", "add_rule", "delete_rule", "list_rules"]

IPNetwork: TypeAlias = "ipaddress.IPv4Network | ipaddress.IPv6Network"

RTM_NEWRULE = 32
RTM_DELRULE = 33
RTM_GETRULE = 34
FR_ACT_TO_TBL = 1
FRA_DST = 1
FRA_SRC = 2
FRA_IIFNAME = 3
FRA_PRIORITY = 6
FRA_FWMARK = 10
FRA_TABLE = 15
FRA_FWMASK = 16
FRA_OIFNAME = 17
_FIB_RULE_HDR = struct.Struct("=BBBBBBBBI")
_U32 = struct.Struct("=I")
_FAMILIES = (socket.AF_INET, socket.AF_INET6)


@attrs.frozen(kw_only=True)
class Rule:
    """A routing policy rule as the kernel reports it (``RTM_NEWRULE``)."""

    family: int
    """``socket.AF_INET`` or ``socket.AF_INET6``."""
    priority: int = 0
    table: int = 0
    """The table the rule looks up (0 for rules with another action)."""
    action: int = FR_ACT_TO_TBL
    src: IPNetwork | None = None
    """``from`` (None: all)."""
    dst: IPNetwork | None = None
    """``to`` (None: all)."""
    iifname: str | None = None
    oifname: str | None = None
    fwmark: int | None = None
    fwmask: int | None = None


def _net(family: int, payload: memoryview | None, length: int) -> IPNetwork | None:
    if payload is None or not length:
        return None
    address = ipaddress.ip_address(bytes(payload))
    return ipaddress.ip_network(f"{address}/{length}", strict=False)


def _text(payload: memoryview | None) -> str | None:
    return bytes(payload).split(b"\0", 1)[0].decode() if payload is not None else None


def _u32(payload: memoryview | None) -> int | None:
    return _U32.unpack(payload)[0] if payload is not None else None


def _rule_from_raw(data: memoryview) -> Rule:
    family, dst_len, src_len, _tos, table, _r1, _r2, action, _flags = _FIB_RULE_HDR.unpack_from(
        data, 0
    )
    found = parse_attrs(data, _FIB_RULE_HDR.size)
    full_table = _u32(found.get(FRA_TABLE))
    return Rule(
        family=family,
        priority=_u32(found.get(FRA_PRIORITY)) or 0,
        table=full_table if full_table is not None else table,
        action=action,
        src=_net(family, found.get(FRA_SRC), src_len),
        dst=_net(family, found.get(FRA_DST), dst_len),
        iifname=_text(found.get(FRA_IIFNAME)),
        oifname=_text(found.get(FRA_OIFNAME)),
        fwmark=_u32(found.get(FRA_FWMARK)),
        fwmask=_u32(found.get(FRA_FWMASK)),
    )


def _encode(
    family: int,
    *,
    table: int,
    action: int,
    priority: int | None,
    src: IPNetwork | None,
    dst: IPNetwork | None,
    iifname: str | None = None,
    oifname: str | None = None,
    fwmark: int | None = None,
    fwmask: int | None = None,
) -> bytes:
    body = [
        _FIB_RULE_HDR.pack(
            family,
            dst.prefixlen if dst is not None else 0,
            src.prefixlen if src is not None else 0,
            0,
            table if 0 <= table < 256 else 0,
            0,
            0,
            action,
            0,
        )
    ]
    if dst is not None:
        body.append(attr(FRA_DST, dst.network_address.packed))
    if src is not None:
        body.append(attr(FRA_SRC, src.network_address.packed))
    if iifname is not None:
        body.append(attr(FRA_IIFNAME, iifname.encode() + b"\0"))
    if oifname is not None:
        body.append(attr(FRA_OIFNAME, oifname.encode() + b"\0"))
    if priority is not None:
        body.append(attr(FRA_PRIORITY, _U32.pack(priority)))
    if fwmark is not None:
        body.append(attr(FRA_FWMARK, _U32.pack(fwmark)))
    if fwmask is not None:
        body.append(attr(FRA_FWMASK, _U32.pack(fwmask)))
    body.append(attr(FRA_TABLE, _U32.pack(table)))
    return b"".join(body)


def _network(value: str | IPNetwork | None) -> IPNetwork | None:
    if value is None or not isinstance(value, str):
        return value
    return ipaddress.ip_network(value, strict=False)


def _describe(src: IPNetwork | None, table: int, priority: int | None) -> str:
    text = f"from {src if src is not None else 'all'} lookup {table}"
    return f"{priority}: {text}" if priority is not None else text


def add_rule(
    table: int,
    *,
    src: str | IPNetwork | None = None,
    priority: int | None = None,
    family: int | None = None,
) -> None:
    """``ip rule add [from SRC] [priority P] lookup TABLE``.

    ``family`` defaults to ``src``'s (IPv4 without one). Without ``priority``
    the kernel picks one. An identical rule at the same priority is
    :class:`~cnilib.netlink.NetlinkError` ``EEXIST``.
    """
    net = _network(src)
    if family is None:
        family = socket.AF_INET6 if net is not None and net.version == 6 else socket.AF_INET
    body = _encode(family, table=table, action=FR_ACT_TO_TBL, priority=priority, src=net, dst=None)
    with netlink_errors(f"add rule {_describe(net, table, priority)}", netns_label()):
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        raw().request(RTM_NEWRULE, flags, body)


def list_rules(*, family: int | None = None, table: int | None = None) -> list[Rule]:
    """IPv4 and IPv6 rules (or one ``family``'s), in the kernel's order; only those
    looking up ``table`` when given."""
    with netlink_errors("list rules", netns_label()):
        header = _FIB_RULE_HDR.pack(family or socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)
        replies = raw().request(RTM_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, header)
        rules = [_rule_from_raw(payload) for kind, payload in replies if kind == RTM_NEWRULE]
    return [
        r
        for r in rules
        if r.family in _FAMILIES
        and (family is None or r.family == family)
        and (table is None or r.table == table)
    ]


def delete_rule(rule: Rule) -> None:
    """Delete ``rule`` (as :func:`list_rules` gave it); ``ENOENT`` if it is gone."""
    body = _encode(
        rule.family,
        table=rule.table,
        action=rule.action,
        priority=rule.priority,
        src=rule.src,
        dst=rule.dst,
        iifname=rule.iifname,
        oifname=rule.oifname,
        fwmark=rule.fwmark,
        fwmask=rule.fwmask,
    )
    with netlink_errors(f"delete rule {_describe(rule.src, rule.table, rule.priority)}",
                        netns_label()):  # fmt: skip
        raw().request(RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK, body)
