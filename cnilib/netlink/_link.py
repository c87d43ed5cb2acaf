"""Links: look up, create (veth, bridge), configure and delete.

Every function here runs inside :func:`cnilib.netlink.run_in_netns` and acts
on that worker's namespace; called elsewhere it raises
:class:`~cnilib.netlink.NotOnWorkerError`. A link argument is a name, an
index or a :class:`Link`.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from cnilib.netlink._errors import NetlinkError, netlink_errors
from cnilib.netlink._ns import open_netns
from cnilib.netlink._pool import ipr, netns_label

if TYPE_CHECKING:
    from cnilib.netlink._pool import NetnsTarget

__all__ = [
    "IFF_UP",
    "Link",
    "LinkRef",
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
    "set_link_master",
    "set_link_mtu",
    "set_link_up",
]

IFF_UP = 0x1


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

    @property
    def up(self) -> bool:
        """Administratively up (``IFF_UP``)."""
        return bool(self.flags & IFF_UP)


LinkRef: TypeAlias = "str | int | Link"


def _link_from_msg(msg: Any) -> Link:
    return Link(
        index=int(msg["index"]),
        name=str(msg.get("ifname") or ""),
        kind=str(msg.get(("linkinfo", "kind")) or ""),
        mac=str(msg.get("address") or ""),
        mtu=int(msg.get("mtu") or 0),
        flags=int(msg["flags"]),
        oper_state=str(msg.get("operstate") or ""),
        master=msg.get("master"),
        peer_index=msg.get("link"),
        peer_netnsid=msg.get("link_netnsid"),
    )


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
        [msg] = ipr().link("get", ifname=name)
    return _link_from_msg(msg)


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
        [msg] = ipr().link("get", index=index)
    return _link_from_msg(msg)


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
    peer: dict[str, Any] = {"ifname": peer_name}
    if mtu is not None:
        peer["mtu"] = mtu
    if peer_mac is not None:
        peer["address"] = peer_mac
    attrs_: dict[str, Any] = {}
    if mtu is not None:
        attrs_["mtu"] = mtu
    if mac is not None:
        attrs_["address"] = mac
    where = ""
    handle = None
    if peer_netns is not None:
        handle = open_netns(peer_netns)
        peer["net_ns_fd"] = handle.fd
        where = f" in {handle.label}"
    try:
        with netlink_errors(f"add veth {name} (peer {peer_name}{where})", netns_label()):
            ipr().link("add", ifname=name, kind="veth", peer=peer, **attrs_)
    finally:
        if handle is not None:
            handle.close()
    return get_link(name)


def add_bridge(name: str, *, mtu: int | None = None, mac: str | None = None) -> Link:
    """Create a bridge ``name``; returns it."""
    attrs_: dict[str, Any] = {}
    if mtu is not None:
        attrs_["mtu"] = mtu
    if mac is not None:
        attrs_["address"] = mac
    with netlink_errors(f"add bridge {name}", netns_label()):
        ipr().link("add", ifname=name, kind="bridge", **attrs_)
    return get_link(name)


def _set(link: LinkRef, what: str, **changes: Any) -> None:
    with netlink_errors(f"{what} {_name(link)}", netns_label()):
        if isinstance(link, str) and "ifname" not in changes:
            # index 0 + IFLA_IFNAME: the kernel finds the link by name (one request, not two)
            ipr().link("set", ifname=link, **changes)
        else:
            ipr().link("set", index=_index(link), **changes)


def set_link_up(link: LinkRef) -> None:
    """Set ``link`` administratively up."""
    _set(link, "set up", state="up")


def set_link_down(link: LinkRef) -> None:
    """Set ``link`` administratively down."""
    _set(link, "set down", state="down")


def set_link_mtu(link: LinkRef, mtu: int) -> None:
    """Set the MTU of ``link``."""
    _set(link, f"set mtu {mtu} on", mtu=mtu)


def set_link_mac(link: LinkRef, mac: str) -> None:
    """Set the hardware address of ``link``."""
    _set(link, f"set mac {mac} on", address=mac)


def set_link_master(link: LinkRef, master: LinkRef | None) -> None:
    """Enslave ``link`` to ``master`` (a bridge), or release it with None."""
    if master is None:
        _set(link, "release from master", master=0)
    else:
        _set(link, f"set master {_name(master)} of", master=_index(master))


def move_link(link: LinkRef, netns: NetnsTarget, *, new_name: str | None = None) -> None:
    """Move ``link`` into another namespace (optionally renaming it on the way)."""
    with open_netns(netns) as handle:
        changes: dict[str, Any] = {"net_ns_fd": handle.fd}
        if new_name is not None:
            changes["ifname"] = new_name
        _set(link, f"move to {handle.label}:", **changes)


def delete_link(link: LinkRef) -> None:
    """Delete ``link`` (a veth takes its peer with it)."""
    with netlink_errors(f"delete link {_name(link)}", netns_label()):
        ipr().link("del", index=_index(link))
