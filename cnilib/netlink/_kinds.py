"""Virtual links on a parent (macvlan, ipvlan, vlan), parentless ones (dummy)
and VXLAN tunnel endpoints.

:func:`add_link` sends one ``RTM_NEWLINK`` with ``NLM_F_CREATE | NLM_F_EXCL``;
the kind's ``IFLA_INFO_DATA`` comes from :func:`macvlan_data`,
:func:`ipvlan_data`, :func:`vlan_data` or :func:`vxlan_data`. The attributes, their types and
byte order are the kernel's (``include/uapi/linux/if_link.h``), which is
what pyroute2 and Go's netlink package send for the same request; the unit
tests decode these requests with pyroute2 to prove it.

A kernel built without a kind answers ``EOPNOTSUPP``: :func:`add_link`
turns that into :class:`LinkKindUnsupportedError`, which names the kernel
option to turn on, instead of the bare ``operation not supported``.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import struct
from typing import TYPE_CHECKING

from cnilib.netlink._errors import NetlinkError, netlink_errors
from cnilib.netlink._link import (
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_LINK,
    IFLA_LINKINFO,
    IFLA_MTU,
    IFLA_NET_NS_FD,
    IFLA_TXQLEN,
    IFLA_VXLAN_ID,
    IFLA_VXLAN_LEARNING,
    IFLA_VXLAN_LINK,
    IFLA_VXLAN_LOCAL,
    IFLA_VXLAN_LOCAL6,
    IFLA_VXLAN_PORT,
    change_link,
    delete_link,
    ifname_attr,
    mac_attr,
)
from cnilib.netlink._ns import open_netns
from cnilib.netlink._pool import netns_label
from cnilib.netlink._raw import NLM_F_CREATE, NLM_F_EXCL, attr, ifinfomsg

if TYPE_CHECKING:
    from cnilib.netlink._pool import NetnsTarget

__all__ = [
    "IPVLAN_MODES",
    "KERNEL_OPTIONS",
    "MACVLAN_MODES",
    "LinkKindUnsupportedError",
    "add_link",
    "ipvlan_data",
    "macvlan_data",
    "vlan_data",
    "vxlan_data",
]

MACVLAN_MODES: dict[str, int] = {
    "private": 1,
    "vepa": 2,
    "bridge": 4,
    "passthru": 8,
    "source": 16,
}
"""``IFLA_MACVLAN_MODE`` values (``enum macvlan_mode``)."""

IPVLAN_MODES: dict[str, int] = {"l2": 0, "l3": 1, "l3s": 2}
"""``IFLA_IPVLAN_MODE`` values (``enum ipvlan_mode``)."""

KERNEL_OPTIONS: dict[str, str] = {
    "macvlan": "CONFIG_MACVLAN",
    "ipvlan": "CONFIG_IPVLAN",
    "vlan": "CONFIG_VLAN_8021Q",
    "dummy": "CONFIG_DUMMY",
    "vxlan": "CONFIG_VXLAN",
}
"""The kernel option that builds each link kind."""

IFLA_MACVLAN_MODE = 1
IFLA_MACVLAN_BC_QUEUE_LEN = 7
IFLA_IPVLAN_MODE = 1
IFLA_IPVLAN_FLAGS = 2
IFLA_VLAN_ID = 1
_U8 = struct.Struct("=B")
_U16 = struct.Struct("=H")
_BE16 = struct.Struct("!H")
_U32 = struct.Struct("=I")


class LinkKindUnsupportedError(NetlinkError):
    """The kernel has no such link kind (built without it, and no module to load).

    ``kind`` is the link kind, ``option`` the kernel option that builds it.
    """

    def __init__(self, operation: str, netns: str, kind: str) -> None:
        self.kind = kind
        self.option = KERNEL_OPTIONS[kind]
        super().__init__(
            operation, netns, errno.EOPNOTSUPP,
            f"this kernel has no {kind} links: it was built without {self.option}"
            " (operation not supported)",
        )  # fmt: skip


def macvlan_data(mode: str, *, bc_queue_len: int = 0) -> bytes:
    """``IFLA_INFO_DATA`` of a macvlan: its mode (u32), and the broadcast queue
    length (u32) when not 0. :class:`KeyError` for an unknown mode."""
    data = attr(IFLA_MACVLAN_MODE, _U32.pack(MACVLAN_MODES[mode]))
    if bc_queue_len:
        data += attr(IFLA_MACVLAN_BC_QUEUE_LEN, _U32.pack(bc_queue_len))
    return data


def ipvlan_data(mode: str) -> bytes:
    """``IFLA_INFO_DATA`` of an ipvlan: its mode and flags (u16 each; flags 0 is
    the ``bridge`` flag, as Go's plugin sends). :class:`KeyError` for an unknown mode."""
    return attr(IFLA_IPVLAN_MODE, _U16.pack(IPVLAN_MODES[mode])) + attr(
        IFLA_IPVLAN_FLAGS, _U16.pack(0)
    )


def vlan_data(vlan_id: int) -> bytes:
    """``IFLA_INFO_DATA`` of an 802.1Q vlan: its id (u16, host order)."""
    return attr(IFLA_VLAN_ID, _U16.pack(vlan_id))


def vxlan_data(
    vni: int,
    *,
    local: str | ipaddress.IPv4Address | ipaddress.IPv6Address,
    link: int,
    port: int = 8472,
    learning: bool = False,
) -> bytes:
    """``IFLA_INFO_DATA`` of a VXLAN tunnel endpoint (``ip link add ... type vxlan``).

    ``vni`` (u32), the source address ``local`` of the encapsulated packets
    (``IFLA_VXLAN_LOCAL``, or ``IFLA_VXLAN_LOCAL6`` for IPv6), the underlay
    link's index ``link`` (u32), whether the device learns remote MACs from
    received packets (u8), and the UDP destination ``port`` (big-endian u16,
    as the kernel wants it: 8472 is Linux's default, 4789 IANA's). No group and
    no remote: peers are reached through FDB entries (:func:`~cnilib.netlink.append_fdb`).
    :class:`ValueError` for a VNI outside 0..2**24-1 or a port outside 1..65535.
    """
    if not 0 <= vni < 1 << 24:
        raise ValueError(f"VXLAN id {vni} is not in 0..16777215")
    if not 0 < port < 1 << 16:
        raise ValueError(f"VXLAN port {port} is not in 1..65535")
    address = ipaddress.ip_address(local) if isinstance(local, str) else local
    local_kind = IFLA_VXLAN_LOCAL if address.version == 4 else IFLA_VXLAN_LOCAL6
    return (
        attr(IFLA_VXLAN_ID, _U32.pack(vni))
        + attr(IFLA_VXLAN_LINK, _U32.pack(link))
        + attr(local_kind, address.packed)
        + attr(IFLA_VXLAN_LEARNING, _U8.pack(int(learning)))
        + attr(IFLA_VXLAN_PORT, _BE16.pack(port))
    )


def link_request(
    name: str,
    kind: str,
    *,
    parent: int | None = None,
    netns_fd: int | None = None,
    mtu: int | None = None,
    mac: str | None = None,
    txqlen: int | None = None,
    data: bytes = b"",
) -> bytes:
    """The body of the ``RTM_NEWLINK`` that :func:`add_link` sends."""
    body = ifinfomsg() + ifname_attr(name)
    if parent is not None:
        body += attr(IFLA_LINK, _U32.pack(parent))
    if mtu is not None:
        body += attr(IFLA_MTU, _U32.pack(mtu))
    if txqlen is not None:
        body += attr(IFLA_TXQLEN, _U32.pack(txqlen))
    if mac is not None:
        body += mac_attr(mac)
    if netns_fd is not None:
        body += attr(IFLA_NET_NS_FD, _U32.pack(netns_fd))
    info = attr(IFLA_INFO_KIND, kind.encode() + b"\0")
    if data:
        info += attr(IFLA_INFO_DATA, data)
    return body + attr(IFLA_LINKINFO, info)


def _kind_missing(kind: str, parent: int | None) -> bool:
    """After ``EOPNOTSUPP``: is it the kernel that lacks ``kind``?

    A parentless link (dummy) fails so only then. A vlan on a master that
    cannot carry VLANs fails the same way with 802.1Q built in, so ask the
    kernel again without the parent: a kernel with the kind refuses that
    with ``EINVAL`` ("link not specified"), one without it with
    ``EOPNOTSUPP`` again. (Should the probe make a link after all, it is
    deleted at once.)
    """
    if kind not in KERNEL_OPTIONS:
        return False
    if parent is None:
        return True
    probe = f"cniprobe{os.urandom(3).hex()}"
    try:
        change_link(link_request(probe, kind), NLM_F_CREATE | NLM_F_EXCL)
    except OSError as exc:
        return exc.errno == errno.EOPNOTSUPP
    with contextlib.suppress(Exception):
        delete_link(probe)
    return False


def add_link(
    name: str,
    kind: str,
    *,
    parent: int | None = None,
    netns: NetnsTarget = None,
    mtu: int | None = None,
    mac: str | None = None,
    txqlen: int | None = None,
    data: bytes = b"",
) -> None:
    """Create a link of ``kind`` named ``name``, on the link with index
    ``parent`` (in this namespace) when given.

    With ``netns``, the kernel creates it directly in that namespace (the
    parent stays here); ``name`` must then be free there. The link starts
    down. ``data`` is the kind's ``IFLA_INFO_DATA`` (:func:`macvlan_data`...).
    """
    handle = open_netns(netns) if netns is not None else None
    where = f" into {handle.label}" if handle is not None else ""
    on = f" on link #{parent}" if parent is not None else ""
    try:
        body = link_request(
            name, kind, parent=parent, netns_fd=handle.fd if handle is not None else None,
            mtu=mtu, mac=mac, txqlen=txqlen, data=data,
        )  # fmt: skip
        operation = f"add {kind} {name}{on}{where}"
        try:
            with netlink_errors(operation, netns_label()):
                change_link(body, NLM_F_CREATE | NLM_F_EXCL)
        except NetlinkError as exc:
            if exc.errno == errno.EOPNOTSUPP and _kind_missing(kind, parent):
                raise LinkKindUnsupportedError(operation, exc.netns, kind) from exc
            raise
    finally:
        if handle is not None:
            handle.close()
