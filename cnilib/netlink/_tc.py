"""Traffic control: IFB links, TBF and ingress qdiscs, a redirecting u32 filter, and
reading qdiscs and filters back (what the ``bandwidth`` plugin needs).

Every function runs inside :func:`cnilib.netlink.run_in_netns` and acts on that
worker's namespace. The requests are built here with ``struct`` and sent on the
worker's lean socket (:mod:`cnilib.netlink._raw`), byte for byte what Go's
netlink package sends for the bandwidth plugin's calls (the unit tests hold
those bytes, captured from Go's binary), so the kernel ends in the same state
and ``tc -s qdisc`` prints the same. The attributes and structures are the
kernel's (``include/uapi/linux/pkt_sched.h``, ``pkt_cls.h``,
``tc_act/tc_mirred.h``); no ``tc`` process is run.

A failed request raises :class:`~cnilib.netlink.NetlinkError` naming the
operation, the link and the namespace, with the kernel's errno.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator

import attrs

from cnilib.netlink._errors import NetlinkError, netlink_errors
from cnilib.netlink._link import (
    IFF_UP,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    IFLA_MTU,
    IFLA_TXQLEN,
    LinkRef,
    _index,
    _name,
    change_link,
    ifname_attr,
)
from cnilib.netlink._pool import netns_label, raw
from cnilib.netlink._raw import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    attr,
    ifinfomsg,
    parse_attrs,
)

__all__ = [
    "INGRESS_HANDLE",
    "TC_H_INGRESS",
    "TC_H_ROOT",
    "Qdisc",
    "TcFilter",
    "add_ifb",
    "add_ingress_qdisc",
    "add_redirect_filter",
    "add_tbf_qdisc",
    "delete_qdisc",
    "list_filters",
    "list_qdiscs",
    "make_handle",
    "psched_tick_in_usec",
]

RTM_NEWQDISC = 36
RTM_DELQDISC = 37
RTM_GETQDISC = 38
RTM_NEWTFILTER = 44
RTM_GETTFILTER = 46

TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1
"""The ``parent`` of an ingress qdisc."""
INGRESS_HANDLE = 0xFFFF0000
"""``ffff:``, the ingress qdisc's handle (and its filters' parent)."""

TCA_KIND = 1
TCA_OPTIONS = 2
TCA_TBF_PARMS = 1
TCA_TBF_RATE64 = 4
TCA_U32_CLASSID = 1
TCA_U32_SEL = 5
TCA_U32_ACT = 7
TC_U32_TERMINAL = 1
TCA_ACT_KIND = 1
TCA_ACT_OPTIONS = 2
TCA_MIRRED_PARMS = 2
TCA_EGRESS_REDIR = 1
TC_ACT_OK = 0
TC_ACT_STOLEN = 4
ETH_P_ALL = 0x0003

_TCMSG = struct.Struct("=BxxxiIII")
_RATESPEC = struct.Struct("=BBHhHI")
_TBF_QOPT = struct.Struct("=12s12sIII")
_U32_SEL = struct.Struct("=BBBxHHhhI")
_U32_KEY = struct.Struct("=IIii")
_MIRRED = struct.Struct("=IIiiiiI")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")

_PSCHED = "/proc/net/psched"
_TIME_UNITS_PER_SEC = 1_000_000


def make_handle(major: int, minor: int) -> int:
    """A tc handle ``major:minor`` (``1:0`` is ``0x10000``)."""
    return ((major & 0xFFFF) << 16) | (minor & 0xFFFF)


def psched_tick_in_usec(text: str | None = None) -> float:
    """The kernel's packet-scheduler ticks per microsecond, from ``/proc/net/psched``,
    computed as Go's netlink package does (15.625 on every current kernel)."""
    if text is None:
        with open(_PSCHED) as f:
            text = f.read()
    vals = [int(part, 16) for part in text.split()[:3]]
    if vals[2] == 1_000_000_000:  # old kernels' compatibility case, as Go's
        vals[0] = vals[1]
    clock_factor = vals[2] / _TIME_UNITS_PER_SEC
    return vals[0] / vals[1] * clock_factor


def tcmsg(ifindex: int, handle: int = 0, parent: int = 0, info: int = 0) -> bytes:
    """``struct tcmsg`` (family AF_UNSPEC)."""
    return _TCMSG.pack(0, ifindex, handle, parent, info)


def _kind(name: str) -> bytes:
    return attr(TCA_KIND, name.encode() + b"\0")


# ---------------------------------------------------------------------------- requests


def ifb_request(name: str, *, mtu: int, up: bool = True, txqlen: int = 0) -> bytes:
    """The ``RTM_NEWLINK`` body of :func:`add_ifb` (Go's ``LinkAdd(&Ifb{...})``: the
    kind without a terminating NUL, and ``IFLA_TXQLEN`` always sent)."""
    flags = IFF_UP if up else 0
    body = ifinfomsg(0, flags, flags) + ifname_attr(name)
    if mtu > 0:
        body += attr(IFLA_MTU, _U32.pack(mtu))
    body += attr(IFLA_TXQLEN, _U32.pack(txqlen))
    return body + attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"ifb"))


def tbf_request(ifindex: int, *, rate: int, limit: int, buffer: int) -> bytes:
    """The ``RTM_NEWQDISC`` body of :func:`add_tbf_qdisc`."""
    ratespec = _RATESPEC.pack(0, 0, 0, 0, 0, min(rate, 0xFFFFFFFF))
    parms = _TBF_QOPT.pack(ratespec, bytes(_RATESPEC.size), limit, buffer, 0)
    options = attr(TCA_TBF_PARMS, parms)
    if rate >= 1 << 32:
        options += attr(TCA_TBF_RATE64, _U64.pack(rate))
    body = tcmsg(ifindex, make_handle(1, 0), TC_H_ROOT)
    return body + _kind("tbf") + attr(TCA_OPTIONS, options)


def ingress_request(ifindex: int) -> bytes:
    """The ``RTM_NEWQDISC`` body of :func:`add_ingress_qdisc` (empty options, as Go's)."""
    return tcmsg(ifindex, INGRESS_HANDLE, TC_H_INGRESS) + _kind("ingress") + attr(TCA_OPTIONS, b"")


def _mirred(order: int, action: int, to_index: int) -> bytes:
    parms = _MIRRED.pack(0, 0, action, 0, 0, TCA_EGRESS_REDIR, to_index)
    options = attr(TCA_MIRRED_PARMS, parms)
    return attr(order, attr(TCA_ACT_KIND, b"mirred\0") + attr(TCA_ACT_OPTIONS, options))


def redirect_filter_request(ifindex: int, to_index: int) -> bytes:
    """The ``RTM_NEWTFILTER`` body of :func:`add_redirect_filter`."""
    sel = _U32_SEL.pack(TC_U32_TERMINAL, 0, 1, 0, 0, 0, 0, 0) + _U32_KEY.pack(0, 0, 0, 0)
    # Go's netlink turns the filter's RedirIndex into a first mirred action (stolen)
    # before the one the plugin lists (pass): the kernel keeps both.
    actions = _mirred(1, TC_ACT_STOLEN, to_index) + _mirred(2, TC_ACT_OK, to_index)
    options = (
        attr(TCA_U32_SEL, sel)
        + attr(TCA_U32_CLASSID, _U32.pack(make_handle(1, 1)))
        + attr(TCA_U32_ACT, actions)
    )
    # tcm_info: the priority (1) and the protocol in network order (Go's Swap16).
    protocol = ((ETH_P_ALL & 0xFF) << 8) | (ETH_P_ALL >> 8)
    body = tcmsg(ifindex, 0, INGRESS_HANDLE, make_handle(1, protocol))
    return body + _kind("u32") + attr(TCA_OPTIONS, options)


def _send(msg_type: int, body: bytes) -> None:
    raw().request(msg_type, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)


def add_ifb(name: str, *, mtu: int, up: bool = True, txqlen: int = 0) -> None:
    """Create an IFB link ``name`` with ``mtu`` (administratively up unless not ``up``)."""
    with netlink_errors(f"add ifb {name}", netns_label()):
        change_link(ifb_request(name, mtu=mtu, up=up, txqlen=txqlen), NLM_F_CREATE | NLM_F_EXCL)


def add_tbf_qdisc(link: LinkRef, *, rate: int, limit: int, buffer: int) -> None:
    """``tc qdisc add dev <link> root handle 1: tbf`` with ``rate`` (bytes/s), ``limit``
    (bytes) and ``buffer`` (scheduler ticks), as Go's ``netlink.Tbf``."""
    with netlink_errors(f"add tbf qdisc on {_name(link)}", netns_label()):
        _send(RTM_NEWQDISC, tbf_request(_index(link), rate=rate, limit=limit, buffer=buffer))


def add_ingress_qdisc(link: LinkRef) -> None:
    """``tc qdisc add dev <link> handle ffff: ingress``."""
    with netlink_errors(f"add ingress qdisc on {_name(link)}", netns_label()):
        _send(RTM_NEWQDISC, ingress_request(_index(link)))


def add_redirect_filter(link: LinkRef, to: LinkRef) -> None:
    """On ``link``'s ingress qdisc: a u32 filter (priority 1, every protocol) that
    matches every packet and redirects it to the egress of ``to`` (an IFB)."""
    with netlink_errors(f"add redirect filter on {_name(link)} to {_name(to)}", netns_label()):
        _send(RTM_NEWTFILTER, redirect_filter_request(_index(link), _index(to)))


def delete_qdisc(link: LinkRef, *, parent: int, handle: int) -> None:
    """``tc qdisc del dev <link> parent <parent> handle <handle>`` (its filters and
    classes go with it)."""
    with netlink_errors(f"delete qdisc {handle:#x} of {_name(link)}", netns_label()):
        raw().request(RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK, tcmsg(_index(link), handle, parent))


# ----------------------------------------------------------------------------- reading


@attrs.frozen(kw_only=True)
class Qdisc:
    """A queueing discipline as the kernel reports it (``RTM_NEWQDISC``)."""

    ifindex: int
    handle: int
    parent: int
    kind: str
    rate: int | None = None
    """A TBF's rate in bytes per second (else None)."""
    limit: int | None = None
    """A TBF's queue limit in bytes."""
    buffer: int | None = None
    """A TBF's bucket size in scheduler ticks (as Go's ``Tbf.Buffer``)."""

    @property
    def root(self) -> bool:
        """Attached at the link's root (egress)."""
        return self.parent == TC_H_ROOT


@attrs.frozen(kw_only=True)
class TcFilter:
    """A classifier as the kernel reports it (``RTM_NEWTFILTER``)."""

    ifindex: int
    parent: int
    kind: str
    handle: int
    redirects: tuple[int, ...] = ()
    """The link indexes its mirred actions redirect to (to their egress)."""


def _text(value: memoryview) -> str:
    return bytes(value).split(b"\0", 1)[0].decode("utf-8", "replace")


def _dump(msg_type: int, body: bytes) -> Iterator[tuple[tuple[int, ...], dict[int, memoryview]]]:
    for _, payload in raw().request(msg_type, NLM_F_REQUEST | NLM_F_DUMP, body):
        yield _TCMSG.unpack_from(payload, 0), parse_attrs(payload, _TCMSG.size)


def _qdisc(head: tuple[int, ...], found: dict[int, memoryview]) -> Qdisc:
    _, ifindex, handle, parent, _ = head
    kind = _text(found[TCA_KIND]) if TCA_KIND in found else ""
    rate = limit = buffer = None
    if kind == "tbf" and TCA_OPTIONS in found:
        options = parse_attrs(found[TCA_OPTIONS])
        parms = options.get(TCA_TBF_PARMS)
        if parms is not None and len(parms) >= _TBF_QOPT.size:
            ratespec, _, limit, buffer, _ = _TBF_QOPT.unpack_from(parms)
            rate = _RATESPEC.unpack(ratespec)[5]
        rate64 = options.get(TCA_TBF_RATE64)
        if rate64 is not None and len(rate64) >= 8:
            rate = _U64.unpack_from(rate64)[0]
    return Qdisc(ifindex=ifindex, handle=handle, parent=parent, kind=kind,
                 rate=rate, limit=limit, buffer=buffer)  # fmt: skip


def list_qdiscs(link: LinkRef) -> list[Qdisc]:
    """The qdiscs of ``link``, in the kernel's order (root first)."""
    index = _index(link)
    with netlink_errors(f"list qdiscs of {_name(link)}", netns_label()):
        dumped = list(_dump(RTM_GETQDISC, tcmsg(index)))
    return [_qdisc(head, found) for head, found in dumped if head[1] == index]


def _redirects(actions: memoryview) -> tuple[int, ...]:
    targets = []
    for _, table in sorted(parse_attrs(actions).items()):
        action = parse_attrs(table)
        if TCA_ACT_KIND not in action or _text(action[TCA_ACT_KIND]) != "mirred":
            continue
        parms = parse_attrs(action.get(TCA_ACT_OPTIONS, memoryview(b""))).get(TCA_MIRRED_PARMS)
        if parms is None or len(parms) < _MIRRED.size:
            continue
        *_, eaction, ifindex = _MIRRED.unpack_from(parms)
        if eaction == TCA_EGRESS_REDIR:
            targets.append(ifindex)
    return tuple(targets)


def list_filters(link: LinkRef, parent: int = INGRESS_HANDLE) -> list[TcFilter]:
    """The filters of ``link`` under the qdisc ``parent`` (default: its ingress qdisc);
    empty when there is no such qdisc."""
    index = _index(link)
    try:
        with netlink_errors(f"list filters of {_name(link)}", netns_label()):
            dumped = list(_dump(RTM_GETTFILTER, tcmsg(index, 0, parent)))
    except NetlinkError as exc:
        if exc.errno in (errno.ENOENT, errno.EINVAL):  # no such qdisc: no filters
            return []
        raise
    filters = []
    for head, found in dumped:
        kind = _text(found[TCA_KIND]) if TCA_KIND in found else ""
        redirects: tuple[int, ...] = ()
        if kind == "u32" and TCA_OPTIONS in found:
            actions = parse_attrs(found[TCA_OPTIONS]).get(TCA_U32_ACT)
            if actions is not None:
                redirects = _redirects(actions)
        filters.append(TcFilter(ifindex=head[1], parent=head[3], kind=kind,
                                handle=head[2], redirects=redirects))  # fmt: skip
    return filters
