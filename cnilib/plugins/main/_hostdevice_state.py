"""host-device: the device's host state, its record, and the moves in and out.

ADD records what the host knew of the device (:class:`DeviceState`) in
``<dataDir>/<network>/<containerID>:<ifname>.json`` before moving it; DEL moves it back
and restores that state. Container IDs and interface names cannot hold a
``:``, so no two attachments share a file; the record also names its
attachment, and a record of another attachment is never used or dropped.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from cnilib.netlink import (
    Link,
    NetlinkError,
    NetNSHandle,
    add_address,
    find_link,
    get_link,
    list_addresses,
    list_links,
    move_link,
    run_in_netns,
    set_link_alias,
    set_link_down,
    set_link_mtu,
    set_link_name,
    set_link_up,
)
from cnilib.plugins._hostside import fail, go_strerror
from cnilib.plugins._statefile import read_state

__all__ = [
    "DeviceState",
    "in_container",
    "list_records",
    "move_in",
    "move_out",
    "read_record",
    "reclaim",
    "record_path",
    "restore_in_host",
    "return_stray",
    "undo_add",
]

_IFA_F_PERMANENT = 0x80
_IFA_F_NODAD = 0x02
_WHAT = "host device state"


@attrs.frozen
class DeviceState:
    """What the host knew of the device before ADD: restored by DEL."""

    name: str
    mac: str
    alias: str = ""
    mtu: int = 0
    up: bool = False
    addresses: tuple[tuple[str, int, bool, bool], ...] = ()
    """(address/prefix, scope, has broadcast, nodad) of each address to restore."""
    container_id: str = ""
    ifname: str = ""
    """The attachment the record belongs to."""

    @classmethod
    def of(cls, link: Link) -> DeviceState:
        """``link``'s state (in the host): addresses but link-local IPv6 and dynamic ones."""
        kept = []
        for a in list_addresses(link):
            if a.interface.version == 6 and (
                a.interface.ip.is_link_local or not a.flags & _IFA_F_PERMANENT
            ):
                continue
            kept.append((str(a.interface), a.scope, a.broadcast is not None,
                         bool(a.flags & _IFA_F_NODAD)))  # fmt: skip
        return cls(link.name, link.mac, link.alias, link.mtu, link.up, tuple(kept))

    def to_json(self) -> str:
        """The record's file content."""
        doc = {
            "containerID": self.container_id,
            "ifname": self.ifname,
            "name": self.name,
            "mac": self.mac,
            "alias": self.alias,
            "mtu": self.mtu,
            "up": self.up,
            "addresses": [
                {"address": a, "scope": s, "broadcast": b, "nodad": n}
                for a, s, b, n in self.addresses
            ],
        }
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DeviceState:
        """A record read back (``ValueError``/``KeyError``/``TypeError`` when malformed)."""
        doc: dict[str, Any] = json.loads(text)
        addresses = tuple(
            (str(ipaddress.ip_interface(a["address"])), int(a["scope"]), bool(a["broadcast"]),
             bool(a.get("nodad", False)))
            for a in doc.get("addresses", [])
        )  # fmt: skip
        return cls(str(doc["name"]), str(doc.get("mac", "")), str(doc.get("alias", "")),
                   int(doc.get("mtu", 0)), bool(doc.get("up", False)), addresses,
                   str(doc.get("containerID", "")), str(doc.get("ifname", "")))  # fmt: skip

    def restore(self, link: Link) -> None:
        """In the host, on the device moved back: alias, MTU, addresses, up state."""
        if link.alias != self.alias:
            set_link_alias(link, self.alias)
        if self.mtu and link.mtu != self.mtu:
            with contextlib.suppress(NetlinkError):
                set_link_mtu(link, self.mtu)
        present = {str(a.interface) for a in list_addresses(link)}
        for address, scope, broadcast, nodad in self.addresses:
            if address in present:
                continue
            try:
                add_address(link, address, broadcast=broadcast, scope=scope, nodad=nodad)
            except NetlinkError as exc:
                if exc.errno != errno.EEXIST:
                    raise fail(f'failed to restore address {address} on "{self.name}": '
                               f"{go_strerror(exc)}") from exc  # fmt: skip
        if self.up:
            set_link_up(link)


# --------------------------------------------------------------------------- record


def record_path(data_dir: Path, network: str, container_id: str, ifname: str) -> Path:
    """``<data_dir>/<network>/<containerID>:<ifname>.json``: one directory per network,
    so that GC of one network never sees another's records (the default ``dataDir``
    is shared). Refused if that would leave ``data_dir``."""
    name = f"{container_id}:{ifname}.json"
    for part in (network, name):
        if not part or "/" in part or part.startswith(".") or "\0" in part:
            raise fail(f"invalid network, container ID or interface name for a state file: "
                       f"{network!r}, {name!r}")  # fmt: skip
    return data_dir / network / name


def read_record(path: Path, container_id: str, ifname: str) -> DeviceState | None:
    """The record at ``path`` if it belongs to ``(container_id, ifname)``, else None."""
    text = read_state(path, what=_WHAT)
    if text is None:
        return None
    try:
        state = DeviceState.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise fail(f"failed to read {_WHAT} from {path}: {exc}") from exc
    if (state.container_id, state.ifname) != (container_id, ifname):
        return None
    return state


def list_records(data_dir: Path, network: str) -> Iterator[tuple[Path, str, str]]:
    """Every record of ``network``: (path, container ID, ifname), from its name."""
    try:
        paths = sorted((data_dir / network).glob("*:*.json"))
    except (OSError, ValueError):
        return
    for path in paths:
        container_id, _, ifname = path.name.removesuffix(".json").partition(":")
        if container_id and ifname and not container_id.startswith("."):
            yield path, container_id, ifname


# ---------------------------------------------------------------------------- moves


def move_in(dev: Link, ctr: NetNSHandle, ifname: str) -> None:
    """In the host: alias = name, then into ``ctr`` renamed ``ifname`` (one request)."""
    try:
        set_link_alias(dev, dev.name)
    except NetlinkError as exc:
        raise fail(f'failed to set alias to "{dev.name}": {go_strerror(exc)}') from exc
    try:
        move_link(dev, ctr, new_name=ifname)
    except NetlinkError as exc:
        raise fail(f'failed to move "{ifname}" (host: "{dev.name}") to container NS: '
                   f"{go_strerror(exc)}") from exc  # fmt: skip


def in_container(ifname: str) -> bool:
    """In the container: whether ``ifname`` exists."""
    return find_link(ifname) is not None


def _find_moved(state: DeviceState, names: tuple[str, ...]) -> Link | None:
    """The device under one of ``names`` (its MAC must match): where a move left it."""
    for name in names:
        link = find_link(name)
        if link is not None and link.mac == state.mac:
            return link
    return None


def _move_back(state: DeviceState, names: tuple[str, ...], host: NetNSHandle) -> bool:
    """In the container: the device (under one of ``names``) down and back to the
    host under its name. False when it is not here."""
    link = _find_moved(state, names)
    if link is None:
        return False
    with contextlib.suppress(NetlinkError):
        set_link_down(link)
    move_link(link, host, new_name=state.name)
    return True


def restore_in_host(state: DeviceState) -> None:
    """In the host: the device, back under its name, as ``state`` says."""
    state.restore(get_link(state.name))


def undo_add(ctr: NetNSHandle, host: NetNSHandle, state: DeviceState, ifname: str) -> bool:
    """After a failed ADD: the device back in the host, as it was (best effort).
    False when that failed: the record must stay for DEL to finish the job."""
    try:
        run_in_netns(ctr, _move_back, state, (ifname, state.name), host)
        run_in_netns(host, restore_in_host, state)
    except Exception:
        return False
    return True


def move_out(ifname: str, host: NetNSHandle, state: DeviceState | None) -> DeviceState | None:
    """DEL in the container: ``ifname`` down and back to the host under its recorded
    name (else its alias). Returns the state to restore (None: ``ifname`` is gone)."""
    link = find_link(ifname)
    if link is None:
        return None
    if state is None or state.mac != link.mac:  # no record (a Go ADD): the alias has the name
        if not link.alias:
            raise fail(f'failed to find original ifname for "{ifname}" (alias is not set)')
        state = DeviceState(link.alias, link.mac)
    try:
        set_link_down(link)
    except NetlinkError as exc:
        raise fail(f'failed to set "{ifname}" down: {go_strerror(exc)}') from exc
    try:
        move_link(link, host, new_name=state.name)
    except NetlinkError as exc:
        raise fail(f'failed to restore "{ifname}" to original name "{state.name}": '
                   f"{go_strerror(exc)}") from exc  # fmt: skip
    return state


def return_stray(state: DeviceState, ifname: str, ctr: NetNSHandle) -> None:
    """In the host, after a failed move out: the kernel may have moved the device
    but not renamed it (its recorded name is taken here), so it sits in the host
    as ``ifname``: back into the container ``ctr``, where a later DEL finds it."""
    link = _find_moved(state, (ifname,))
    if link is not None:
        move_link(link, ctr, new_name=ifname)


def reclaim(state: DeviceState) -> bool:
    """In the host, the container gone: a device the kernel gave back (a physical one
    returns under its container name, or ``devN``) still carrying our alias is
    renamed and restored. False when the host has no such device."""
    for link in list_links():
        if link.mac == state.mac and link.alias == state.name:
            if link.name != state.name:
                set_link_down(link)
                set_link_name(link, state.name)
            state.restore(get_link(state.name))
            return True
    return False
