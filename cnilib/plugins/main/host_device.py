"""The ``host-device`` plugin: move an existing host interface into the container
(Go ``plugins/main/host-device``, latest release).

Keys: one of ``device`` (name), ``hwaddr`` (MAC), ``kernelpath`` (absolute,
under ``/sys/devices/``: the first entry of ``<kernelpath>/net``),
``pciBusID`` (the first entry of ``/sys/bus/pci/devices/<id>/net``, else of
``<id>/virtio*/net``); ``runtimeConfig.deviceID`` (a PCI address, else an
auxiliary-bus device, ``/sys/bus/auxiliary/devices/<id>/net``) overrides
``pciBusID``. ``ipam`` (optional), ``dns``, and cnilib's ``dataDir`` (where
the device's host state is kept, default ``/run/cni/host-device``; Go
ignores the key). A PCI device bound to a userspace driver (``vfio-pci``,
``uio_pci_generic``, ``igb_uio``) is in DPDK mode: nothing is moved or
configured, only IPAM runs.

- ADD looks the device up in the host namespace, records its name, alias,
  MTU, up state and addresses in ``<dataDir>/<containerID>_<ifname>.json``,
  sets its alias to its name (as Go does, so that Go's DEL can restore the
  name too), and moves it into the container renamed ``CNI_IFNAME`` in one
  netlink request; it is then set up and, with IPAM, given IPAM's
  addresses and routes. Result: ``interfaces = [the device (sandbox)]``
  with the device's own MAC, every ``ips[].interface = 0``. A failed ADD
  moves the device back under its name, with its alias, addresses and up
  state restored, and releases IPAM's address.
- DEL: IPAM DEL first; then the device is set down and moved back to the
  host renamed to the recorded name (else its alias), the alias is cleared
  (or restored), its MTU, addresses and up state are restored, and the
  record is deleted. An empty or missing ``CNI_NETNS`` and a missing link
  are success.
- CHECK: IPAM CHECK; the interface of ``prevResult`` exists in
  ``CNI_NETNS`` with the result's MAC, addresses and routes (any kind).
- STATUS and GC: IPAM's (Go has no GC: a no-op).

The sysfs lookups (``kernelpath``, ``pciBusID``, ``deviceID``) read the
host namespace's view of sysfs: a network device's ``net/`` entry shows only
in a sysfs mounted from the namespace it is in. In process, with a host
namespace other than the caller's, a private sysfs instance of that
namespace is mounted (detached, never attached to the file tree; needs
``CAP_SYS_ADMIN``); where that is refused, the caller's ``/sys`` is read,
which lists only the devices of the namespace it was mounted in.

Deliberate differences from Go's host-device:

- The host's addresses (but IPv6 link-local and non-permanent ones, which
  the kernel makes again), MTU, up state and alias are restored on DEL and
  after a failed ADD; Go loses the addresses (the kernel flushes them on a
  namespace move), leaves the device down, and (1.1.1) leaves the alias set.
- The device is moved and renamed in one ``RTM_NEWLINK``: no temporary
  namespace (latest) or temporary name (1.2), and a ``CNI_IFNAME`` that
  already exists in the container is refused before anything moves
  (``failed to move link failed to move "<ifname>" (host: "<name>") to
  container NS: file exists``, latest's text); Go 1.1.1 leaves the device
  in the container under its host name.
- A failed ADD (IPAM, addresses) moves the device back; Go leaves it in
  the container.
- DEL runs IPAM DEL before anything else, also with an empty ``CNI_NETNS``
  (Go skips it: an address leak after a reboot); a missing namespace and a
  missing link are success (Go errors), and a sysfs error of the DPDK probe
  does not fail DEL. When the namespace is gone, a device the kernel gave
  back to the host (a physical one returns to the initial namespace under
  its container name) is renamed and restored from the record.
- DPDK mode returns ``{name: CNI_IFNAME, sandbox}`` as Go's latest (1.1.1:
  no interface). With IPAM, the result's ``dns`` is the config's when set,
  else IPAM's (Go: always the config's); a 1.x result omits an empty ``dns``.
- ``hwaddr`` compares hardware addresses of 6, 8 or 20 bytes as Go does;
  a missing namespace reads ``failed to open netns "<path>": netns: ...``.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any

import attrs

from cnilib.invoke import Command
from cnilib.netlink import (
    Link,
    NetlinkError,
    NetNSError,
    NetNSHandle,
    NetNSNotFoundError,
    Sysfs,
    add_address,
    find_link,
    get_link,
    list_addresses,
    list_links,
    move_link,
    namespace_sysfs,
    open_netns,
    run_in_netns,
    set_link_alias,
    set_link_down,
    set_link_mtu,
    set_link_name,
    set_link_up,
)
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._hostside import fail, go_strerror
from cnilib.plugins._linkplugin import (
    InterfacePlugin,
    check_interface,
    configure_container,
    container_netns,
    host_netns,
    interface_result,
    ipam_lease,
)
from cnilib.plugins._netconf import conf_str, dns_override, ipam_type
from cnilib.plugins._statefile import drop_state, read_state, state_path, write_state
from cnilib.results import DNS, Result
from cnilib.results.v100 import Interface

__all__ = ["DEFAULT_DATA_DIR", "DeviceState", "HostDevice", "HostDeviceConf"]

DEFAULT_DATA_DIR = "/run/cni/host-device"
"""Where the device's host state is kept between ADD and DEL (``dataDir``)."""

USERSPACE_DRIVERS = ("vfio-pci", "uio_pci_generic", "igb_uio")
"""PCI drivers that hand the device to userspace (DPDK): no netdev to move."""

_SYS_BUS_PCI = "/sys/bus/pci/devices"
_SYS_BUS_AUX = "/sys/bus/auxiliary/devices"
_IFA_F_PERMANENT = 0x80
_IFA_F_NODAD = 0x02


# --------------------------------------------------------------------------- config


@attrs.frozen
class HostDeviceConf:
    """The keys host-device reads from its configuration."""

    device: str
    hwaddr: str
    kernelpath: str
    pci_bus_id: str
    device_id: str
    ipam: str
    dns: DNS | None
    data_dir: Path
    aux_device: str = ""
    dpdk: bool = False

    @classmethod
    def load(cls, req: PluginRequest) -> HostDeviceConf:
        """Decode ``req.config`` as Go's ``json.Unmarshal`` into host-device's ``NetConf``."""
        config = req.config
        return cls(
            device=conf_str(config, "device"),
            hwaddr=conf_str(config, "hwaddr"),
            kernelpath=conf_str(config, "kernelpath"),
            pci_bus_id=conf_str(config, "pciBusID"),
            device_id=conf_str(req.runtime_config, "deviceID", "NetConf.RuntimeConfig"),
            ipam=ipam_type(config),
            dns=dns_override(config),
            data_dir=Path(conf_str(config, "dataDir") or DEFAULT_DATA_DIR),
        )

    @property
    def needs_sysfs(self) -> bool:
        """Whether resolving the device reads sysfs."""
        return bool(self.device_id or self.pci_bus_id or self.kernelpath)

    def resolve(self, sysfs: Sysfs, *, lenient: bool = False) -> HostDeviceConf:
        """Go's ``loadConf`` after unmarshalling: ``deviceID``, the one-key rule, DPDK.

        ``lenient`` (DEL) treats a failed DPDK probe as "not DPDK".
        """
        conf = self
        if self.device_id:
            if sysfs.exists(f"{_SYS_BUS_PCI}/{self.device_id}"):
                conf = attrs.evolve(conf, pci_bus_id=self.device_id)
            elif sysfs.exists(f"{_SYS_BUS_AUX}/{self.device_id}"):
                conf = attrs.evolve(conf, pci_bus_id="", aux_device=self.device_id)
            else:
                raise fail(f"runtime config DeviceID {self.device_id} not found or unsupported")
        if not (conf.device or conf.hwaddr or conf.kernelpath or conf.pci_bus_id
                or conf.aux_device):  # fmt: skip
            raise fail('specify either "device", "hwaddr", "kernelpath" or "pciBusID"')
        if conf.pci_bus_id:
            try:
                conf = attrs.evolve(conf, dpdk=_has_dpdk_driver(sysfs, conf.pci_bus_id))
            except OSError as exc:
                if not lenient:
                    raise fail(f"error with host device: {exc.strerror}") from exc
        return conf


def _has_dpdk_driver(sysfs: Sysfs, pci: str) -> bool:
    """Go ``hasDpdkDriver``; its ``EvalSymlinks`` error names the first missing part,
    the device's symlink resolved (``lstat /sys/devices/pci0000:00/<id>/driver``)."""
    device = f"{_SYS_BUS_PCI}/{pci}"
    if not sysfs.lexists(device):
        raise OSError(errno.ENOENT, f"lstat {device}: no such file or directory")
    with contextlib.suppress(OSError):
        device = os.path.normpath(os.path.join(_SYS_BUS_PCI, sysfs.readlink(device)))
    if not sysfs.lexists(f"{device}/driver"):
        raise OSError(errno.ENOENT, f"lstat {device}/driver: no such file or directory")
    driver = os.path.basename(sysfs.readlink(f"{device}/driver").rstrip("/"))
    return driver in USERSPACE_DRIVERS


# --------------------------------------------------------------------------- lookup


_HEX_GROUPS = re.compile(r"[0-9a-fA-F]{2}([:-])(?:[0-9a-fA-F]{2}\1)*[0-9a-fA-F]{2}")
_HEX_DOTTED = re.compile(r"[0-9a-fA-F]{4}(?:\.[0-9a-fA-F]{4})+")


def parse_hwaddr(text: str) -> bytes:
    """Go ``net.ParseMAC``: a 6-, 8- or 20-byte address, ``:``/``-`` or dotted."""
    if _HEX_GROUPS.fullmatch(text) or _HEX_DOTTED.fullmatch(text):
        raw = bytes.fromhex(re.sub(r"[:.-]", "", text))
        if len(raw) in (6, 8, 20):
            return raw
    raise ValueError(f"address {text}: invalid MAC address")


def _link_from_path(sysfs: Sysfs, path: str) -> Link:
    """Go ``linkFromPath``: the first entry of ``path``, looked up by name."""
    try:
        entries = sysfs.read_dir(path)
    except OSError as exc:
        reason = f"open {path}: {go_strerror(exc)}"
        raise fail(f"failed to read directory {path}: {json.dumps(reason)}") from exc
    if not entries:
        raise fail(f"failed to find network device in path {path}")
    return _by_name(entries[0])


def _by_name(name: str) -> Link:
    try:
        return get_link(name)
    except NetlinkError as exc:
        if exc.errno == errno.ENODEV:
            raise fail("Link not found") from exc
        raise fail(go_strerror(exc)) from exc


def _lookup(conf: HostDeviceConf, sysfs: Sysfs) -> Link:
    """Go ``getLink`` (in the host): device > hwaddr > kernelpath > pciBusID > auxiliary."""
    if conf.device:
        return _by_name(conf.device)
    if conf.hwaddr:
        try:
            wanted = parse_hwaddr(conf.hwaddr)
        except ValueError as exc:
            raise fail(f'failed to parse MAC address "{conf.hwaddr}": {exc}') from exc
        for link in list_links():
            if link.mac and bytes.fromhex(link.mac.replace(":", "")) == wanted:
                return link
    elif conf.kernelpath:
        path = conf.kernelpath
        if not (path.startswith("/sys/devices/") and os.path.isabs(path)):
            raise fail(f'kernel device path "{path}" must be absolute and begin with /sys/devices/')
        return _link_from_path(sysfs, os.path.normpath(f"{path}/net"))
    elif conf.pci_bus_id:
        net_dir = f"{_SYS_BUS_PCI}/{conf.pci_bus_id}/net"
        if not sysfs.lexists(net_dir):
            matches = sysfs.glob(f"{_SYS_BUS_PCI}/{glob.escape(conf.pci_bus_id)}/virtio*/net")
            if not matches:
                raise fail(f"no net directory under pci device {conf.pci_bus_id}")
            net_dir = matches[0]
        return _link_from_path(sysfs, net_dir)
    elif conf.aux_device:
        return _link_from_path(sysfs, f"{_SYS_BUS_AUX}/{conf.aux_device}/net")
    raise fail("failed to find physical interface")


def _find_device(conf: HostDeviceConf, sysfs: Sysfs) -> Link:
    try:
        return _lookup(conf, sysfs)
    except Exception as exc:
        raise fail(f"failed to find host device: {exc}") from exc


# ---------------------------------------------------------------------------- state


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
        doc = attrs.asdict(self)
        doc["addresses"] = [
            {"address": a, "scope": s, "broadcast": b, "nodad": n} for a, s, b, n in self.addresses
        ]
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
                   int(doc.get("mtu", 0)), bool(doc.get("up", False)), addresses)  # fmt: skip

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


def _read_record(path: Path) -> DeviceState | None:
    text = read_state(path, what="host device state")
    if text is None:
        return None
    try:
        return DeviceState.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise fail(f"failed to read host device state from {path}: {exc}") from exc


def _host_sysfs(req: PluginRequest, needed: bool) -> contextlib.AbstractContextManager[Sysfs]:
    """The host namespace's sysfs (the caller's ``/sys`` when nothing is read)."""
    return namespace_sysfs(req.host_netns if needed else None)


# ------------------------------------------------------------------------------ moves


def _move_in(dev: Link, ctr: NetNSHandle, ifname: str) -> None:
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


def _in_container(ifname: str) -> bool:
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


def _restore_in_host(state: DeviceState) -> None:
    state.restore(get_link(state.name))


def _undo_add(ctr: NetNSHandle, host: NetNSHandle, state: DeviceState, ifname: str) -> None:
    """After a failed ADD: the device back in the host, as it was (best effort)."""
    with contextlib.suppress(Exception):
        run_in_netns(ctr, _move_back, state, (ifname, state.name), host)
    with contextlib.suppress(Exception):
        run_in_netns(host, _restore_in_host, state)


def _move_out(ifname: str, host: NetNSHandle, state: DeviceState | None) -> DeviceState | None:
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


def _return_stray(state: DeviceState, ifname: str, host: NetNSHandle) -> None:
    """In the container after a failed move out: the kernel may have moved the device
    under ``ifname`` (its name was taken in the host): bring it back here."""
    link = _find_moved(state, (ifname,))
    if link is not None:
        move_link(link, host, new_name=ifname)


def _reclaim(state: DeviceState) -> None:
    """In the host, the container gone: a device the kernel gave back (a physical one
    returns under its container name, or ``devN``) still carrying our alias is
    renamed and restored."""
    for link in list_links():
        if link.mac == state.mac and link.alias == state.name:
            if link.name != state.name:
                set_link_down(link)
                set_link_name(link, state.name)
            state.restore(get_link(state.name))
            return


# ---------------------------------------------------------------------------- plugin


class HostDevice(InterfacePlugin):
    """Go's host-device plugin, in process."""

    type = "host-device"

    def add(self, req: PluginRequest) -> Result:
        """Move the host device into the container (renamed), then IPAM's addresses."""
        conf = HostDeviceConf.load(req)
        with (
            _host_sysfs(req, conf.needs_sysfs) as sysfs,
            container_netns(req) as ctr,
            host_netns(req) as host,
        ):
            conf = conf.resolve(sysfs)
            if conf.dpdk:
                return self._add_dpdk(req, conf)
            dev = run_in_netns(host, _find_device, conf, sysfs)
            if run_in_netns(ctr, _in_container, req.ifname):
                raise fail(f'failed to move link failed to move "{req.ifname}" '
                           f'(host: "{dev.name}") to container NS: file exists')  # fmt: skip
            state = run_in_netns(host, DeviceState.of, dev)
            record = state_path(conf.data_dir, req)
            write_state(record, state.to_json(), what="host device state")
            try:
                try:
                    run_in_netns(host, _move_in, dev, ctr, req.ifname)
                except Exception as exc:
                    raise fail(f"failed to move link {exc}") from exc
                with ipam_lease(req, conf.ipam) as ipam:
                    configure_container(ctr, req.ifname, ipam)
                link = run_in_netns(ctr, get_link, req.ifname)
            except BaseException:
                _undo_add(ctr, host, state, req.ifname)
                drop_state(record)
                raise
            return interface_result(req, link, ipam, conf.dns)

    def _add_dpdk(self, req: PluginRequest, conf: HostDeviceConf) -> Result:
        """DPDK mode: IPAM only; the interface is named, it has no MAC (Go's latest)."""
        with ipam_lease(req, conf.ipam) as ipam:
            pass
        result = interface_result(req, Link(index=0, name=req.ifname), ipam, conf.dns)
        return attrs.evolve(result, interfaces=[Interface(name=req.ifname, sandbox=req.netns)])

    def delete(self, req: PluginRequest) -> None:
        """IPAM DEL, then the device back to the host under its name, as it was."""
        conf = HostDeviceConf.load(req)
        with _host_sysfs(req, conf.needs_sysfs) as sysfs:
            conf = conf.resolve(sysfs, lenient=True)
        if conf.ipam:
            req.delegate(conf.ipam, Command.DEL)
        if conf.dpdk:
            return
        record = state_path(conf.data_dir, req)
        state = _read_record(record)
        with host_netns(req) as host:
            ctr = _open_or_none(req.netns)
            if ctr is None:
                if state is not None:
                    with contextlib.suppress(Exception):
                        run_in_netns(host, _reclaim, state)
                drop_state(record)
                return
            with ctr:
                try:
                    moved = run_in_netns(ctr, _move_out, req.ifname, host, state)
                except BaseException:
                    if state is not None:
                        with contextlib.suppress(Exception):
                            run_in_netns(host, _return_stray, state, req.ifname, ctr)
                    raise
            if moved is not None:
                run_in_netns(host, _restore_in_host, moved)
        drop_state(record)

    def check(self, req: PluginRequest) -> None:
        """IPAM CHECK, then the device against ``prevResult`` (any link kind)."""
        conf = HostDeviceConf.load(req)
        with _host_sysfs(req, conf.needs_sysfs) as sysfs:
            conf = conf.resolve(sysfs)
        if conf.dpdk:
            with container_netns(req):
                if conf.ipam:
                    req.delegate(conf.ipam, Command.CHECK)
                if req.config.get("prevResult") is None:
                    raise fail("required prevResult missing")
            return
        check_interface(req, conf.ipam, kind=None)


def _open_or_none(path: str) -> NetNSHandle | None:
    """``CNI_NETNS`` opened, or None when it is empty or gone."""
    if not path:
        return None
    try:
        return open_netns(path)
    except NetNSNotFoundError:
        return None
    except NetNSError as exc:
        raise fail(f'failed to open netns "{path}": {exc}') from exc
