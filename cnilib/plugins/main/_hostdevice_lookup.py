"""host-device: its configuration and how it finds the device in the host.

Go ``loadConf`` (:meth:`HostDeviceConf.load` and :meth:`HostDeviceConf.resolve`:
``runtimeConfig.deviceID``, the one-key rule, DPDK mode) and ``getLink``
(:func:`find_device`: by name, MAC, kernel path, PCI address or auxiliary
device). The sysfs lookups read the host namespace's own sysfs
(:func:`host_sysfs`); Go's error texts (latest release).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import attrs

from cnilib.netlink import (
    Link,
    NetlinkError,
    Sysfs,
    SysfsError,
    get_link,
    list_links,
    namespace_sysfs,
)
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._hostside import fail, go_strerror
from cnilib.plugins._netconf import conf_str, dns_override, ipam_type
from cnilib.results import DNS

__all__ = [
    "DEFAULT_DATA_DIR",
    "USERSPACE_DRIVERS",
    "HostDeviceConf",
    "find_device",
    "host_sysfs",
    "parse_hwaddr",
    "resolve_for_del",
]

DEFAULT_DATA_DIR = "/run/cni/host-device"
"""Where the device's host state is kept between ADD and DEL (``dataDir``)."""

USERSPACE_DRIVERS = ("vfio-pci", "uio_pci_generic", "igb_uio")
"""PCI drivers that hand the device to userspace (DPDK): no netdev to move."""

_SYS_BUS_PCI = "/sys/bus/pci/devices"
_SYS_BUS_AUX = "/sys/bus/auxiliary/devices"


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

        ``lenient`` (DEL) treats a failed DPDK probe as "not DPDK", and a
        ``deviceID`` that no longer resolves (the device was unplugged) as no
        device to look up: DEL then goes by ``CNI_IFNAME`` alone.
        """
        conf = self
        if self.device_id:
            if sysfs.exists(f"{_SYS_BUS_PCI}/{self.device_id}"):
                conf = attrs.evolve(conf, pci_bus_id=self.device_id)
            elif sysfs.exists(f"{_SYS_BUS_AUX}/{self.device_id}"):
                conf = attrs.evolve(conf, pci_bus_id="", aux_device=self.device_id)
            elif lenient:
                return conf
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


@contextlib.contextmanager
def host_sysfs(req: PluginRequest, conf: HostDeviceConf) -> Iterator[Sysfs]:
    """The host namespace's sysfs for the block (the caller's ``/sys`` when
    ``conf`` reads none, or the host is the caller's own namespace).

    A host namespace whose sysfs cannot be mounted fails: the caller's
    ``/sys`` would list another namespace's devices under names that may
    belong to other links in the host.
    """
    with contextlib.ExitStack() as stack:
        try:
            sysfs = stack.enter_context(
                namespace_sysfs(req.host_netns if conf.needs_sysfs else None)
            )
        except SysfsError as exc:
            raise fail(f"failed to find host device: {exc}") from exc
        yield sysfs


def resolve_for_del(req: PluginRequest, conf: HostDeviceConf) -> HostDeviceConf:
    """DEL's :meth:`HostDeviceConf.resolve` (lenient): a host sysfs that cannot be
    mounted leaves DPDK mode undecided, read as "not DPDK": IPAM DEL still runs,
    and DEL goes by ``CNI_IFNAME`` (a DPDK device has no link there)."""
    try:
        with namespace_sysfs(req.host_netns if conf.needs_sysfs else None) as sysfs:
            return conf.resolve(sysfs, lenient=True)
    except SysfsError:
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


def find_device(conf: HostDeviceConf, sysfs: Sysfs) -> Link:
    """In the host: the device ``conf`` names (``failed to find host device: ...``)."""
    try:
        return _lookup(conf, sysfs)
    except Exception as exc:
        raise fail(f"failed to find host device: {exc}") from exc
