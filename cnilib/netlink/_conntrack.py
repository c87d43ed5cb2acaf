"""Connection tracking: dropping the entries of one UDP destination port.

A UDP "connection" to a port that had no DNAT rule yet stays in the
conntrack table, not NATed, for as long as packets keep coming: a client
that keeps sending to a host port just mapped would never reach the
container. Go's portmap (and kube-proxy) therefore delete the UDP entries
whose original destination port is the new host port right after adding the
rules; :func:`delete_udp_conntrack` does that for cnilib's.

The requests are ``ctnetlink`` messages (``NETLINK_NETFILTER``) built with
``struct``, on a socket the worker opens for the call in its namespace: a
dump of the family's table, then one ``IPCTNL_MSG_CT_DELETE`` per matching
entry, naming it by its original tuple (and zone), as Go's
``netlink.ConntrackDeleteFilters`` does.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Collection

from cnilib.netlink._errors import netlink_errors
from cnilib.netlink._pool import netns_label
from cnilib.netlink._raw import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, RawNetlink, attr, parse_attrs

__all__ = ["delete_udp_conntrack"]

NETLINK_NETFILTER = 12
_CTNETLINK = 1 << 8  # NFNL_SUBSYS_CTNETLINK, in the message type's high byte
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
CTA_TUPLE_ORIG = 1
CTA_ZONE = 18
CTA_TUPLE_PROTO = 2
CTA_PROTO_NUM = 1
CTA_PROTO_DST_PORT = 3
NLA_F_NESTED = 0x8000
_NFGENMSG = struct.Struct("=BBH")  # family, version (NFNETLINK_V0), res_id (big endian)
_HEADER = 4  # the nfgenmsg before a ctnetlink message's attributes
_BE16 = struct.Struct("!H")


def _udp_dst_port(orig: memoryview) -> int | None:
    """The destination port of an original tuple, if it is UDP."""
    proto = parse_attrs(orig).get(CTA_TUPLE_PROTO)
    if proto is None:
        return None
    fields = parse_attrs(proto)
    num, port = fields.get(CTA_PROTO_NUM), fields.get(CTA_PROTO_DST_PORT)
    if num is None or port is None or num[0] != socket.IPPROTO_UDP:
        return None
    return int(_BE16.unpack_from(port)[0])


def delete_udp_conntrack(family: int, ports: Collection[int]) -> int:
    """Delete the ``family`` (``AF_INET``/``AF_INET6``) conntrack entries of UDP
    whose original destination port is one of ``ports``; how many went.

    An entry that expires between the dump and its deletion is not an
    error. A kernel without ``ctnetlink`` raises :class:`NetlinkError`, as
    any other failure; the caller decides whether that matters.
    """
    if not ports:
        return 0
    wanted = set(ports)
    header = _NFGENMSG.pack(family, 0, 0)
    with netlink_errors("delete udp conntrack entries", netns_label()):
        conn = RawNetlink(NETLINK_NETFILTER)
        try:
            doomed = []
            dump = conn.request(_CTNETLINK | IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, header)
            for _, payload in dump:
                found = parse_attrs(payload, _HEADER)
                orig = found.get(CTA_TUPLE_ORIG)
                if orig is None or _udp_dst_port(orig) not in wanted:
                    continue
                body = header + attr(CTA_TUPLE_ORIG | NLA_F_NESTED, bytes(orig))
                if CTA_ZONE in found:
                    body += attr(CTA_ZONE, bytes(found[CTA_ZONE]))
                doomed.append(body)
            deleted = 0
            for body in doomed:
                try:
                    conn.request(_CTNETLINK | IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, body)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:  # ENOENT: it expired meanwhile
                        raise
                else:
                    deleted += 1
            return deleted
        finally:
            conn.close()
