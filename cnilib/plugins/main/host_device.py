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
  MTU, up state and addresses in ``<dataDir>/<network>/<containerID>:<ifname>.json``,
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
  record is deleted. An empty or missing ``CNI_NETNS``, a missing link and
  a ``deviceID`` that no longer resolves (the device was unplugged) are
  success.
- CHECK: IPAM CHECK; the interface of ``prevResult`` exists in
  ``CNI_NETNS`` with the result's MAC, addresses and routes (any kind).
- STATUS: IPAM's. GC: IPAM's, and the records of attachments not in
  ``cni.dev/valid-attachments`` are dropped, after restoring a device the
  kernel gave back to the host (Go has no GC: a no-op).

The sysfs lookups (``kernelpath``, ``pciBusID``, ``deviceID``) read the
host namespace's view of sysfs: a network device's ``net/`` entry shows only
in a sysfs mounted from the namespace it is in. In process, with a
``host_netns``, a private sysfs instance of that namespace is mounted for
the lookup only (detached, never attached to the file tree; needs
``CAP_SYS_ADMIN`` and Linux 5.2). Where that is refused, ADD and CHECK fail
(``failed to find host device: cannot read the sysfs of <host_netns>:
fsopen: operation not permitted (needs CAP_SYS_ADMIN)``) and DEL goes by
``CNI_IFNAME``: the caller's ``/sys`` lists another namespace's devices. A
plugin binary run under ``ip netns exec`` reads its own ``/sys``, which
``ip netns exec`` mounts from the namespace it enters.

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
  missing link are success (Go errors), and neither a sysfs error of the
  DPDK probe nor a ``deviceID`` that no longer resolves fails DEL. When
  the namespace is gone, a device the kernel gave back to the host (a
  physical one returns to the initial namespace under its container name)
  is renamed and restored from the record.
- Without IPAM, an ADD whose ``cniVersion`` is 0.1.0 or 0.2.0 (a result of
  IP addresses only) is refused before anything moves; Go moves the device,
  then fails to print the result and leaves it in the container.
- DPDK mode returns ``{name: CNI_IFNAME, sandbox}`` as Go's latest (1.1.1:
  no interface). With IPAM, the result's ``dns`` is the config's when set,
  else IPAM's (Go: always the config's); a 1.x result omits an empty ``dns``.
- ``hwaddr`` compares hardware addresses of 6, 8 or 20 bytes as Go does;
  a missing namespace reads ``failed to open netns "<path>": netns: ...``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import attrs

from cnilib.invoke import Command
from cnilib.netlink import (
    Link,
    NetNSError,
    NetNSHandle,
    NetNSNotFoundError,
    close_netns,
    get_link,
    open_netns,
    run_in_netns,
)
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._hostside import fail
from cnilib.plugins._linkcheck import check_interface, checked_prev_result
from cnilib.plugins._linkplugin import (
    InterfacePlugin,
    configure_container,
    container_netns,
    host_netns,
    interface_result,
    ipam_lease,
    require_layer2_version,
)
from cnilib.plugins._statefile import drop_state, write_state
from cnilib.plugins.main._hostdevice_lookup import (
    DEFAULT_DATA_DIR,
    HostDeviceConf,
    find_device,
    host_sysfs,
    resolve_for_del,
)
from cnilib.plugins.main._hostdevice_state import (
    DeviceState,
    in_container,
    list_records,
    move_in,
    move_out,
    read_record,
    reclaim,
    record_path,
    restore_in_host,
    return_stray,
    undo_add,
)
from cnilib.results import Result
from cnilib.results.v100 import Interface

__all__ = ["DEFAULT_DATA_DIR", "DeviceState", "HostDevice", "HostDeviceConf"]


class HostDevice(InterfacePlugin):
    """Go's host-device plugin, in process."""

    type = "host-device"

    def load_ipam(self, req: PluginRequest) -> str:
        """The configuration decoded; its IPAM type (``""``: none)."""
        return HostDeviceConf.load(req).ipam

    def add(self, req: PluginRequest) -> Result:
        """Move the host device into the container (renamed), then IPAM's addresses."""
        conf = HostDeviceConf.load(req)
        if not conf.ipam:
            require_layer2_version(req)
        with container_netns(req) as ctr, host_netns(req) as host:
            with host_sysfs(req, conf) as sysfs:  # held for the lookup only
                conf = conf.resolve(sysfs)
                dev = None if conf.dpdk else run_in_netns(host, find_device, conf, sysfs)
            if dev is None:
                return self._add_dpdk(req, conf)
            if run_in_netns(ctr, in_container, req.ifname):
                raise fail(f'failed to move link failed to move "{req.ifname}" '
                           f'(host: "{dev.name}") to container NS: file exists')  # fmt: skip
            state = attrs.evolve(
                run_in_netns(host, DeviceState.of, dev),
                container_id=req.container_id,
                ifname=req.ifname,
            )
            record = record_path(conf.data_dir, req.name, req.container_id, req.ifname)
            write_state(record, state.to_json(), what="host device state")
            try:
                try:
                    run_in_netns(host, move_in, dev, ctr, req.ifname)
                except Exception as exc:
                    raise fail(f"failed to move link {exc}") from exc
                with ipam_lease(req, conf.ipam) as ipam:
                    configure_container(ctr, req.ifname, ipam)
                link = run_in_netns(ctr, get_link, req.ifname)
            except BaseException:
                if undo_add(ctr, host, state, req.ifname):
                    drop_state(record)  # else DEL still needs it
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
        conf = resolve_for_del(req, HostDeviceConf.load(req))
        if conf.ipam:
            req.delegate(conf.ipam, Command.DEL)
        if conf.dpdk:
            return
        record = record_path(conf.data_dir, req.name, req.container_id, req.ifname)
        state = read_record(record, req.container_id, req.ifname)
        with host_netns(req) as host:
            ctr = _open_or_none(req.netns)
            if ctr is None:
                if state is not None:
                    reclaimed = False
                    with contextlib.suppress(Exception):
                        reclaimed = run_in_netns(host, reclaim, state)
                    # With no CNI_NETNS the sandbox may still hold the device: keep
                    # the record for a later DEL (or GC) unless the host has it back.
                    if reclaimed or req.netns:
                        drop_state(record)
                return
            with ctr:
                try:
                    moved = run_in_netns(ctr, move_out, req.ifname, host, state)
                except BaseException:
                    if state is not None:
                        with contextlib.suppress(Exception):
                            run_in_netns(host, return_stray, state, req.ifname, ctr)
                    raise
            close_netns(req.netns)  # the container is going away: do not keep it open
            if moved is not None:
                run_in_netns(host, restore_in_host, moved)
        if state is not None:  # a record of another attachment is not ours to drop
            drop_state(record)

    def check(self, req: PluginRequest) -> None:
        """IPAM CHECK, then the device against ``prevResult`` (any link kind)."""
        conf = HostDeviceConf.load(req)
        with host_sysfs(req, conf) as sysfs:
            conf = conf.resolve(sysfs)
        if conf.dpdk:  # no netdev to look at: IPAM and prevResult only (Go's latest)
            with container_netns(req):
                checked_prev_result(req, conf.ipam)
            return
        check_interface(req, conf.ipam, kind=None)

    def gc(self, req: PluginRequest) -> None:
        """GC: the records of attachments no longer valid (a device the kernel gave
        back to the host is restored first), then IPAM's GC."""
        conf = HostDeviceConf.load(req)
        if "cni.dev/valid-attachments" in req.config:  # no list: nothing is known stale
            valid = req.valid_attachments()
            stale = [
                (path, cid, ifname)
                for path, cid, ifname in list_records(conf.data_dir, req.name)
                if (cid, ifname) not in valid
            ]
            if stale:
                with host_netns(req) as host:
                    for path, cid, ifname in stale:
                        _collect(host, path, cid, ifname)
        super().gc(req)


def _collect(host: NetNSHandle, path: Path, container_id: str, ifname: str) -> None:
    """GC of one stale record: its device restored if the host has it back (best
    effort: a device still in a namespace stays there), then the record dropped."""
    with contextlib.suppress(Exception):
        state = read_record(path, container_id, ifname)
        if state is not None:
            run_in_netns(host, reclaim, state)
    drop_state(path)


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
