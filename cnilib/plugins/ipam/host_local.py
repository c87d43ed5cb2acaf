"""The ``host-local`` IPAM plugin, behaving as Go's host-local 1.1.1.

Addresses come from range sets (``ipam.ranges``, the legacy top-level
``subnet``/``rangeStart``/``rangeEnd``/``gateway``, and the ``ipRanges``
capability), one address per range set, allocated round-robin after the
last one reserved and recorded in a store shared with Go's plugin (see
:mod:`cnilib.plugins.ipam._store`). Requested addresses come from
``CNI_ARGS`` ``IP=``, ``args.cni.ips`` and the ``ips`` capability.

Deliberate differences from Go's host-local:

- GC is implemented: every allocation whose (containerID, ifname) is not in
  ``cni.dev/valid-attachments`` is released; a legacy file (container ID
  only) is kept while any valid attachment has that container ID.
- Error codes: configuration errors are code 7 (decoding errors name the
  JSON path; semantic ones keep Go's text, with the path in ``details``),
  ``CNI_ARGS`` errors code 4, store and ``resolvConf`` I/O errors code 5;
  allocation failures keep Go's 999.
- Requested addresses are matched to range sets in the order given (Go
  walks a map, so its choice and error listing are random).
- Routes keep the spec 1.1 fields (``mtu``, ``advmss``, ``priority``,
  ``table``, ``scope``), which the libcni vendored by Go 1.1.1 drops.
- An IPv4 ``rangeStart`` on the broadcast address with no ``rangeEnd`` is
  refused (Go hands out the broadcast, then loops over the whole space).
"""

from __future__ import annotations

import os
from ipaddress import ip_interface
from typing import ClassVar

from cnilib.errors import ErrorCode, PluginError
from cnilib.plugins._base import BasePlugin, PluginRequest
from cnilib.plugins.ipam._config import (
    HostLocalConfig,
    describe_ips,
    load_host_local_config,
    parse_resolv_conf,
)
from cnilib.plugins.ipam._ranges import RangeSet
from cnilib.plugins.ipam._store import Store, go_trim_space, os_error
from cnilib.results import DNS, IPAddress, IPConfig, ResultV100
from cnilib.results._ip import format_ip

__all__ = ["HostLocal"]


class _AllocationError(Exception):
    """Go's allocator error text; becomes ``failed to allocate for range <i>: <text>``."""


def _allocate(
    store: Store,
    ranges: RangeSet,
    range_id: int,
    container_id: str,
    ifname: str,
    requested: IPAddress | None,
) -> IPConfig:
    """Go ``IPAllocator.Get``, under the store lock."""
    with store.locked():
        if requested is not None:
            rng = ranges.range_for(requested)
            if rng is None:  # pragma: no cover - the caller only passes contained IPs
                raise _AllocationError(f"{format_ip(requested)} not in range set {ranges}")
            if requested == rng.gateway:
                raise _AllocationError(f"requested ip {format_ip(requested)} is subnet's gateway")
            if not store.reserve(container_id, ifname, requested, str(range_id)):
                raise _AllocationError(
                    f"requested IP address {format_ip(requested)} "
                    f"is not available in range set {ranges}"
                )
            return _ip_config(requested, rng.subnet.network.prefixlen, rng.gateway)
        for allocated in store.get_by_id(container_id, ifname):
            if ranges.contains(allocated):
                raise _AllocationError(
                    f"{format_ip(allocated)} has been allocated to {container_id}, "
                    "duplicate allocation is not allowed"
                )
        last = store.last_reserved_ip(str(range_id))
        for candidate, rng in ranges.iterate(last):
            if store.reserve(container_id, ifname, candidate, str(range_id)):
                return _ip_config(candidate, rng.subnet.network.prefixlen, rng.gateway)
    raise _AllocationError(f"no IP addresses available in range set: {ranges}")


def _ip_config(ip: IPAddress, prefix: int, gateway: IPAddress) -> IPConfig:
    return IPConfig(address=ip_interface((ip, prefix)), gateway=gateway)


def _release(store: Store, container_id: str, ifname: str) -> None:
    with store.locked():
        store.release_by_id(container_id, ifname)


class HostLocal(BasePlugin):
    """Go's ``host-local`` IPAM plugin, in process; the store is Go's."""

    type: ClassVar[str] = "host-local"

    def _load(self, req: PluginRequest) -> HostLocalConfig:
        return load_host_local_config(req.config, req.args)

    def add(self, req: PluginRequest) -> ResultV100:
        """Allocate one address per range set; return them with routes and DNS."""
        conf = self._load(req)
        dns = DNS()
        if conf.resolv_conf:
            try:
                with open(conf.resolv_conf, "rb") as fh:
                    dns = parse_resolv_conf(fh.read())
            except OSError as exc:
                raise os_error("open", exc) from exc
        pending = list(conf.requested_ips)
        ips: list[IPConfig] = []
        with Store(conf.name, conf.data_dir) as store:
            for idx, ranges in enumerate(conf.ranges):
                requested = next((ip for ip in pending if ranges.contains(ip)), None)
                if requested is not None:
                    pending.remove(requested)
                try:
                    ips.append(
                        _allocate(store, ranges, idx, req.container_id, req.ifname, requested)
                    )
                except (_AllocationError, PluginError) as exc:
                    for _ in ips:
                        _release(store, req.container_id, req.ifname)
                    raise PluginError(
                        f"failed to allocate for range {idx}: {exc}",
                        code=exc.code if isinstance(exc, PluginError) else ErrorCode.INTERNAL,
                    ) from exc
            if pending:
                for _ in ips:
                    _release(store, req.container_id, req.ifname)
                raise PluginError(
                    f"failed to allocate all requested IPs:{describe_ips(pending)}",
                    code=ErrorCode.INTERNAL,
                )
        return ResultV100(cni_version="1.1.0", ips=ips, routes=conf.routes, dns=dns)

    def check(self, req: PluginRequest) -> None:
        """Succeed iff some address in the store belongs to (containerID, ifname)."""
        conf = self._load(req)
        with Store(conf.name, conf.data_dir) as store:
            found = store.find_by_id(req.container_id, req.ifname)
        if not found:
            raise PluginError(
                f"host-local: Failed to find address added by container {req.container_id}",
                code=ErrorCode.INTERNAL,
            )

    def delete(self, req: PluginRequest) -> None:
        """Release every address of (containerID, ifname); nothing to release is success."""
        conf = self._load(req)
        with Store(conf.name, conf.data_dir) as store:
            for _ in conf.ranges:  # once per range set, as Go (legacy files go on the 2nd pass)
                _release(store, req.container_id, req.ifname)

    def gc(self, req: PluginRequest) -> None:
        """Release every allocation of no attachment in ``cni.dev/valid-attachments``."""
        conf = self._load(req)
        valid = {(go_trim_space(cid), ifname) for cid, ifname in req.valid_attachments()}
        valid_ids = {cid for cid, _ in valid}
        failures: list[str] = []
        with Store(conf.name, conf.data_dir) as store, store.locked():
            for name, cid, ifname in list(store.allocations()):
                keep = cid in valid_ids if ifname is None else (cid, ifname) in valid
                if keep:
                    continue
                try:
                    os.unlink(store.path_of(name))
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    failures.append(str(os_error("remove", exc)))
        if failures:
            raise PluginError("; ".join(failures), code=ErrorCode.IO_FAILURE)
