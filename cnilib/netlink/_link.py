"""Links: look up, create (veth, bridge), configure and delete.

Every function here runs inside :func:`cnilib.netlink.run_in_netns` and acts
on that worker's namespace; called elsewhere it raises
:class:`~cnilib.netlink.NotOnWorkerError`. A link argument is a name, an
index or a :class:`Link`.
"""

from __future__ import annotations

import errno
import ipaddress
import struct
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from cnilib.netlink._errors import NetlinkError, netlink_errors
from cnilib.netlink._ns import open_netns
from cnilib.netlink._pool import ipr, netns_label, raw
from cnilib.netlink._raw import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    attr,
    ifinfomsg,
    parse_attrs,
)

if TYPE_CHECKING:
    from cnilib.netlink._pool import NetnsTarget

__all__ = [
    "IFF_ALLMULTI",
    "IFF_PROMISC",
    "IFF_UP",
    "Link",
    "LinkRef",
    "VxlanInfo",
    "add_bridge",
    "add_veth",
    "delete_link",
    "find_link",
    "get_link",
    "get_link_by_index",
    "list_links",
    "move_link",
    "set_link_down",
    "set_link_mac",
    "set_link_alias",
    "set_link_allmulti",
    "set_link_master",
    "set_link_mtu",
    "set_link_name",
    "set_link_promisc",
    "set_link_txqlen",
    "set_link_up",
]

IFF_UP = 0x1
IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200


@attrs.frozen(kw_only=True)
class VxlanInfo:
    """What the kernel reports of a VXLAN device (its ``IFLA_INFO_DATA``)."""

    vni: int
    local: str | None
    """The source address of encapsulated packets; None when the device has none."""
    link: int | None
    """Index of the underlay link; None when the device is bound to none."""
    port: int
    """UDP destination port (8472 unless the device was made with another)."""
    learning: bool
    """Whether the device learns remote MACs from the packets it receives."""


@attrs.frozen(kw_only=True)
class Link:
    """A network interface as the kernel reports it (``RTM_NEWLINK``)."""

    index: int
    name: str
    kind: str = ""
    """``IFLA_INFO_KIND`` (``veth``, ``bridge``, ...); ``""`` for ``lo`` and hardware."""
    mac: str = ""
    mtu: int = 0
    flags: int = 0
    oper_state: str = ""
    master: int | None = None
    """Index of the bridge (or other master) this link is enslaved to."""
    peer_index: int | None = None
    """``IFLA_LINK``: a veth's peer index (in ``peer_netnsid``'s namespace if set)."""
    peer_netnsid: int | None = None
    alias: str = ""
    """``IFLA_IFALIAS`` (``ip link set X alias ...``)."""
    mode: str = ""
    """A macvlan's or ipvlan's mode (``bridge``, ``l2``, ...); ``""`` for other kinds."""
    vlan_id: int | None = None
    """An 802.1Q vlan's id."""
    txqlen: int = 0
    """``IFLA_TXQLEN``: the transmit queue length (``ip link ... qlen``)."""
    promiscuity: int = 0
    """``IFLA_PROMISCUITY``: how many users want the link promiscuous (a bridge
    port counts as one without ``IFF_PROMISC`` being set)."""
    vxlan: VxlanInfo | None = None
    """A VXLAN device's parameters; None for other kinds."""

    @property
    def up(self) -> bool:
        """Administratively up (``IFF_UP``)."""
        return bool(self.flags & IFF_UP)


LinkRef: TypeAlias = "str | int | Link"


def _kind_data_from_msg(kind: str, msg: Any) -> tuple[str, int | None]:
    """(mode, vlan id) from a pyroute2 message's ``IFLA_INFO_DATA``."""
    data = msg.get(("linkinfo", "data"))
    if data is None:
        return "", None
    if kind == "macvlan":
        return str(data.get("IFLA_MACVLAN_MODE") or ""), None
    if kind == "ipvlan":
        return _IPVLAN_MODE_NAMES.get(data.get("IFLA_IPVLAN_MODE"), ""), None
    if kind == "vlan":
        return "", data.get("IFLA_VLAN_ID")
    return "", None


def _vxlan_from_msg(msg: Any) -> VxlanInfo | None:
    """A VXLAN device's :class:`VxlanInfo` from a pyroute2 message."""
    data = msg.get(("linkinfo", "data"))
    if data is None:
        return None
    local = data.get("IFLA_VXLAN_LOCAL") or data.get("IFLA_VXLAN_LOCAL6")
    link = data.get("IFLA_VXLAN_LINK")
    return VxlanInfo(
        vni=int(data.get("IFLA_VXLAN_ID") or 0),
        local=str(local) if local else None,
        link=int(link) if link else None,
        port=int(data.get("IFLA_VXLAN_PORT") or 0),
        learning=bool(data.get("IFLA_VXLAN_LEARNING")),
    )


def _link_from_msg(msg: Any) -> Link:
    kind = str(msg.get(("linkinfo", "kind")) or "")
    mode, vlan_id = _kind_data_from_msg(kind, msg)
    vxlan = _vxlan_from_msg(msg) if kind == "vxlan" else None
    return Link(
        index=int(msg["index"]),
        name=str(msg.get("ifname") or ""),
        kind=kind,
        mac=str(msg.get("address") or ""),
        mtu=int(msg.get("mtu") or 0),
        flags=int(msg["flags"]),
        oper_state=str(msg.get("operstate") or ""),
        master=msg.get("master"),
        peer_index=msg.get("link"),
        peer_netnsid=msg.get("link_netnsid"),
        alias=str(msg.get("ifalias") or ""),
        mode=mode,
        vlan_id=vlan_id,
        txqlen=int(msg.get("txqlen") or 0),
        promiscuity=int(msg.get("promiscuity") or 0),
        vxlan=vxlan,
    )


RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_OPERSTATE = 16
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_TXQLEN = 13
IFLA_IFALIAS = 20
IFLA_PROMISCUITY = 30
IFLA_LINK_NETNSID = 37
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFLA_BR_VLAN_FILTERING = 7
_MACVLAN_MODE_NAMES = {1: "private", 2: "vepa", 4: "bridge", 8: "passthru", 16: "source"}
_IPVLAN_MODE_NAMES = {0: "l2", 1: "l3", 2: "l3s"}
_OPER_STATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")
_IFINFO = struct.Struct("=BxHiII")
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")
_U16 = struct.Struct("=H")
_BE16 = struct.Struct("!H")
IFLA_VXLAN_ID = 1
IFLA_VXLAN_LINK = 3
IFLA_VXLAN_LOCAL = 4
IFLA_VXLAN_LEARNING = 7
IFLA_VXLAN_PORT = 15
IFLA_VXLAN_LOCAL6 = 17


def _text(value: memoryview) -> str:
    return bytes(value).split(b"\0", 1)[0].decode("utf-8", "replace")


def _link_from_raw(payload: memoryview) -> Link:
    """A :class:`Link` from an ``RTM_NEWLINK`` payload: what pyroute2's decode gives."""
    _, _, index, flags, _ = _IFINFO.unpack_from(payload, 0)
    found = parse_attrs(payload, _IFINFO.size)
    kind, mode, vlan_id, vxlan = "", "", None, None
    if IFLA_LINKINFO in found:
        info = parse_attrs(found[IFLA_LINKINFO])
        if IFLA_INFO_KIND in info:
            kind = _text(info[IFLA_INFO_KIND])
        if IFLA_INFO_DATA in info:
            mode, vlan_id = _kind_data_from_raw(kind, info[IFLA_INFO_DATA])
            if kind == "vxlan":
                vxlan = _vxlan_from_raw(info[IFLA_INFO_DATA])
    mac = found.get(IFLA_ADDRESS)
    oper = found.get(IFLA_OPERSTATE)
    master, peer = found.get(IFLA_MASTER), found.get(IFLA_LINK)
    netnsid = found.get(IFLA_LINK_NETNSID)
    txqlen, promiscuity = found.get(IFLA_TXQLEN), found.get(IFLA_PROMISCUITY)
    state = ""
    if oper is not None and len(oper) >= 1:
        state = _OPER_STATES[oper[0]] if oper[0] < len(_OPER_STATES) else str(oper[0])
    return Link(
        index=index,
        name=_text(found[IFLA_IFNAME]) if IFLA_IFNAME in found else "",
        kind=kind,
        mac=":".join(f"{b:02x}" for b in mac) if mac is not None else "",
        mtu=_U32.unpack(found[IFLA_MTU])[0] if IFLA_MTU in found else 0,
        flags=flags,
        oper_state=state,
        master=_U32.unpack(master)[0] if master is not None else None,
        peer_index=_U32.unpack(peer)[0] if peer is not None else None,
        peer_netnsid=_S32.unpack(netnsid)[0] if netnsid is not None else None,
        alias=_text(found[IFLA_IFALIAS]) if IFLA_IFALIAS in found else "",
        mode=mode,
        vlan_id=vlan_id,
        txqlen=_U32.unpack(txqlen)[0] if txqlen is not None else 0,
        promiscuity=_U32.unpack(promiscuity)[0] if promiscuity is not None else 0,
        vxlan=vxlan,
    )


def _kind_data_from_raw(kind: str, payload: memoryview) -> tuple[str, int | None]:
    """(mode, vlan id) from ``IFLA_INFO_DATA``: the first attribute (type 1) of a
    macvlan (u32 mode), an ipvlan (u16 mode) or a vlan (u16 id)."""
    first = parse_attrs(payload).get(1)
    if first is None:
        return "", None
    if kind == "macvlan" and len(first) >= 4:
        return _MACVLAN_MODE_NAMES.get(_U32.unpack_from(first)[0], ""), None
    if kind == "ipvlan" and len(first) >= 2:
        return _IPVLAN_MODE_NAMES.get(_U16.unpack_from(first)[0], ""), None
    if kind == "vlan" and len(first) >= 2:
        return "", _U16.unpack_from(first)[0]
    return "", None


def _vxlan_from_raw(payload: memoryview) -> VxlanInfo:
    """A VXLAN device's :class:`VxlanInfo` from its ``IFLA_INFO_DATA`` (the
    attributes of ``include/uapi/linux/if_link.h``; the port is big-endian)."""
    data = parse_attrs(payload)
    vni, link = data.get(IFLA_VXLAN_ID), data.get(IFLA_VXLAN_LINK)
    local = data.get(IFLA_VXLAN_LOCAL)
    if local is None:
        local = data.get(IFLA_VXLAN_LOCAL6)
    port, learning = data.get(IFLA_VXLAN_PORT), data.get(IFLA_VXLAN_LEARNING)
    link_index = _U32.unpack_from(link)[0] if link is not None and len(link) >= 4 else 0
    return VxlanInfo(
        vni=_U32.unpack_from(vni)[0] if vni is not None and len(vni) >= 4 else 0,
        local=str(ipaddress.ip_address(bytes(local))) if local is not None else None,
        link=link_index or None,
        port=_BE16.unpack_from(port)[0] if port is not None and len(port) >= 2 else 0,
        learning=bool(learning[0]) if learning is not None and len(learning) >= 1 else False,
    )


def ifname_attr(name: str) -> bytes:
    """``IFLA_IFNAME``."""
    return attr(IFLA_IFNAME, name.encode() + b"\0")


def mac_attr(mac: str) -> bytes:
    """``IFLA_ADDRESS`` from ``aa:bb:cc:dd:ee:ff``; :class:`ValueError` if it is not one."""
    return attr(IFLA_ADDRESS, bytes(int(part, 16) for part in mac.split(":")))


def _get(body: bytes) -> Link:
    replies = raw().request(RTM_GETLINK, NLM_F_REQUEST, body)
    if not replies:  # pragma: no cover - the kernel answers a GET or fails it
        raise OSError(errno.ENODEV, "no answer")
    return _link_from_raw(replies[0][1])


def change_link(body: bytes, flags: int = 0) -> None:
    """Send one ``RTM_NEWLINK`` (acknowledged) with ``body``."""
    raw().request(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | flags, body)


def _name(link: LinkRef) -> str:
    if isinstance(link, Link):
        return link.name
    return link if isinstance(link, str) else f"link #{link}"


def _index(link: LinkRef) -> int:
    if isinstance(link, Link):
        return link.index
    if isinstance(link, int):
        return link
    return get_link(link).index


def get_link(name: str) -> Link:
    """The link called ``name``; :class:`NetlinkError` (``ENODEV``) when there is none."""
    with netlink_errors(f"get link {name}", netns_label()):
        return _get(ifinfomsg() + ifname_attr(name))


def find_link(name: str) -> Link | None:
    """The link called ``name``, or None."""
    try:
        return get_link(name)
    except NetlinkError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise


def get_link_by_index(index: int) -> Link:
    """The link with ``index``."""
    with netlink_errors(f"get link #{index}", netns_label()):
        return _get(ifinfomsg(index))


def list_links() -> list[Link]:
    """Every link in the namespace, by index."""
    with netlink_errors("list links", netns_label()):
        msgs = list(ipr().link("dump"))
    return sorted((_link_from_msg(m) for m in msgs), key=lambda link: link.index)


def add_veth(
    name: str,
    peer_name: str,
    *,
    peer_netns: NetnsTarget = None,
    mtu: int | None = None,
    mac: str | None = None,
    peer_mac: str | None = None,
) -> Link:
    """Create a veth pair ``name`` here and ``peer_name`` in ``peer_netns``.

    ``peer_netns`` None keeps the peer here. The kernel creates the peer
    directly in its namespace, so a name clash there fails the whole call and
    leaves nothing behind. Returns this end.
    """
    # The attributes and their order are pyroute2's for ``link("add", kind="veth", peer=...)``.
    mtu_attr = attr(IFLA_MTU, _U32.pack(mtu)) if mtu is not None else b""
    peer = ifinfomsg() + ifname_attr(peer_name) + mtu_attr
    if peer_mac is not None:
        peer += mac_attr(peer_mac)
    where = ""
    handle = None
    if peer_netns is not None:
        handle = open_netns(peer_netns)
        peer += attr(IFLA_NET_NS_FD, _U32.pack(handle.fd))
        where = f" in {handle.label}"
    try:
        with netlink_errors(f"add veth {name} (peer {peer_name}{where})", netns_label()):
            body = ifinfomsg() + ifname_attr(name) + mtu_attr
            if mac is not None:
                body += mac_attr(mac)
            info = attr(IFLA_INFO_KIND, b"veth\0")
            info += attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer))
            change_link(body + attr(IFLA_LINKINFO, info), NLM_F_CREATE | NLM_F_EXCL)
    finally:
        if handle is not None:
            handle.close()
    return get_link(name)


def add_bridge(
    name: str, *, mtu: int | None = None, mac: str | None = None, vlan_filtering: bool = False
) -> Link:
    """Create a bridge ``name`` (with VLAN filtering on, if asked); returns it."""
    body = ifinfomsg() + ifname_attr(name)
    if mtu is not None:
        body += attr(IFLA_MTU, _U32.pack(mtu))
    if mac is not None:
        body += mac_attr(mac)
    info = attr(IFLA_INFO_KIND, b"bridge\0")
    if vlan_filtering:
        info += attr(IFLA_INFO_DATA, attr(IFLA_BR_VLAN_FILTERING, b"\1"))
    with netlink_errors(f"add bridge {name}", netns_label()):
        change_link(body + attr(IFLA_LINKINFO, info), NLM_F_CREATE | NLM_F_EXCL)
        return get_link(name)


def _set(
    link: LinkRef,
    what: str,
    attrs_: bytes = b"",
    *,
    flags: int = 0,
    change: int = 0,
    renames: bool = False,
) -> None:
    """One ``RTM_NEWLINK`` changing ``link``: ``attrs_`` and the ``flags`` bits in ``change``."""
    with netlink_errors(f"{what} {_name(link)}", netns_label()):
        if isinstance(link, str) and not renames:
            # index 0 + IFLA_IFNAME: the kernel finds the link by name (one request, not two)
            change_link(ifinfomsg(0, flags, change) + ifname_attr(link) + attrs_)
        else:
            change_link(ifinfomsg(_index(link), flags, change) + attrs_)


def set_link_up(link: LinkRef) -> None:
    """Set ``link`` administratively up."""
    _set(link, "set up", flags=IFF_UP, change=IFF_UP)


def set_link_down(link: LinkRef) -> None:
    """Set ``link`` administratively down."""
    _set(link, "set down", flags=0, change=IFF_UP)


def set_link_promisc(link: LinkRef, on: bool = True) -> None:
    """Turn promiscuous mode of ``link`` on (or off)."""
    flags = IFF_PROMISC if on else 0
    _set(link, f"set promisc {'on' if on else 'off'} on", flags=flags, change=IFF_PROMISC)


def set_link_allmulti(link: LinkRef, on: bool = True) -> None:
    """Turn all-multicast mode of ``link`` on (or off)."""
    flags = IFF_ALLMULTI if on else 0
    _set(link, f"set allmulticast {'on' if on else 'off'} on", flags=flags, change=IFF_ALLMULTI)


def set_link_txqlen(link: LinkRef, qlen: int) -> None:
    """Set the transmit queue length of ``link``."""
    _set(link, f"set txqueuelen {qlen} on", attr(IFLA_TXQLEN, _U32.pack(qlen)))


def set_link_mtu(link: LinkRef, mtu: int) -> None:
    """Set the MTU of ``link``."""
    _set(link, f"set mtu {mtu} on", attr(IFLA_MTU, _U32.pack(mtu)))


def set_link_mac(link: LinkRef, mac: str) -> None:
    """Set the hardware address of ``link``."""
    _set(link, f"set mac {mac} on", mac_attr(mac))


def set_link_master(link: LinkRef, master: LinkRef | None) -> None:
    """Enslave ``link`` to ``master`` (a bridge), or release it with None."""
    if master is None:
        _set(link, "release from master", attr(IFLA_MASTER, _U32.pack(0)))
    else:
        index = _index(master)
        _set(link, f"set master {_name(master)} of", attr(IFLA_MASTER, _U32.pack(index)))


def move_link(link: LinkRef, netns: NetnsTarget, *, new_name: str | None = None) -> None:
    """Move ``link`` into another namespace (optionally renaming it on the way)."""
    with open_netns(netns) as handle:
        changes = attr(IFLA_NET_NS_FD, _U32.pack(handle.fd))
        if new_name is not None:
            changes = ifname_attr(new_name) + changes
        _set(link, f"move to {handle.label}:", changes, renames=new_name is not None)


def set_link_name(link: LinkRef, name: str) -> None:
    """Rename ``link`` (it must be down, unless the kernel allows renaming it up)."""
    _set(link, f"rename to {name}:", ifname_attr(name), renames=True)


def set_link_alias(link: LinkRef, alias: str) -> None:
    """Set the alias of ``link``; ``""`` clears it."""
    _set(link, f"set alias {alias!r} on", attr(IFLA_IFALIAS, alias.encode()))


def delete_link(link: LinkRef) -> None:
    """Delete ``link`` (a veth takes its peer with it)."""
    with netlink_errors(f"delete link {_name(link)}", netns_label()):
        raw().request(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, ifinfomsg(_index(link)))
