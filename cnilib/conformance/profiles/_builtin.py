"""The kit's profile of each reference plugin type (Go's and cnilib's alike).

Each builder takes the function that gives the plugin's configuration (the
profile's own, or one a user gave) and returns the profile around it: the
breaker and the state directories read what they need from that configuration.

Names made in the node: ``cup0`` (up) / ``cup0p``, the veth whose ``cup0`` is
the parent of macvlan, ipvlan and vlan links; ``cuphd0`` / ``cuphd0p``, the veth
whose ``cuphd0`` host-device moves into containers; ``cnicf0``, bridge's bridge.
They exist only in the sandbox's node namespace.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from cnilib.conformance._profile import JSONObject, Kind, Profile
from cnilib.conformance._session import NETWORK
from cnilib.conformance.profiles import _breakers as brk
from cnilib.conformance.profiles._kernel import ensure_veth, requires_link_kind
from cnilib.plugins.main._overlay_state import NodeState, state_path, write_node_state

if TYPE_CHECKING:
    from cnilib.conformance._sandbox import Sandbox

__all__ = ["BUILDERS", "PROFILES", "ConfigFn", "HOST_DEVICE", "UPLINK"]

ConfigFn = Callable[["Sandbox"], JSONObject]
Builder = Callable[[ConfigFn | None], Profile]

UPLINK = ("cup0", "cup0p")
"""The node's veth pair whose first end is the parent of macvlan, ipvlan and vlan links."""
HOST_DEVICE = ("cuphd0", "cuphd0p")
"""The node's veth pair whose first end host-device moves into containers."""
BRIDGE = "cnicf0"
VRF = "cnicfvrf"
HOST_PORT = 28080
"""portmap's host port: the node namespace is new, so any port is free there."""

DHCP_NEEDS = (
    "the dhcp plugin needs its lease daemon and a DHCP server on the container's network:"
    " run the kit with --config pointing at yours"
)
OVERLAY_BRIDGE = "cnicfov0"

_DEFAULT_DIRS = {
    "host-local": "/var/lib/cni/networks",
    "host-device": "/run/cni/host-device",
    "tuning": "/run/cni/tuning",
    "overlay": "/run/cnilib/overlay",
}
"""Where each plugin keeps its files when the configuration does not say."""


# ----------------------------------------------------------------------------- helpers


def _state_dirs(
    config: ConfigFn, *, own: tuple[str, str] | None = None, ipam: bool = False
) -> Callable[[Sandbox], list[Path]]:
    """The directories of ``own`` (a config key and the plugin whose default it
    takes) and, with ``ipam``, host-local's data dir: the configuration's
    ``ipam.dataDir`` for a host-local section of its own, else the one of the
    section the session adds (or the base's, for a chained plugin)."""

    def dirs(sandbox: Sandbox) -> list[Path]:
        conf = config(sandbox)
        found: list[Path] = []
        if own is not None:
            key, plugin = own
            found.append(Path(conf.get(key) or _DEFAULT_DIRS[plugin]))
        if ipam:
            section = conf.get("ipam")
            if not isinstance(section, dict):
                found.append(sandbox.directory("host-local"))
            elif section.get("type") == "host-local":
                # The kit's network only: other networks' files in a shared data dir
                # (the default /var/lib/cni/networks) come and go with other containers.
                data_dir = Path(section.get("dataDir") or _DEFAULT_DIRS["host-local"])
                found.append(data_dir / NETWORK)
        return found

    return dirs


def _fixed(body: JSONObject) -> ConfigFn:
    def config(sandbox: Sandbox) -> JSONObject:
        return copy.deepcopy(body)

    return config


def _uplink(sandbox: Sandbox) -> None:
    ensure_veth(sandbox, *UPLINK)


def _on_uplink(plugin: str, **keys: Any) -> ConfigFn:
    return _fixed({"type": plugin, "master": UPLINK[0], **keys})


def _interface(
    default: ConfigFn,
    config: ConfigFn | None,
    *,
    setup: Callable[[Sandbox], None] | None = None,
    link_kind: str | None = None,
    own_dir: str | None = None,
) -> Profile:
    """An interface plugin that takes an IPAM section (host-local by the session)."""
    fn = config or default
    return Profile(
        kind=Kind.INTERFACE,
        config=fn,
        uses_ipam=True,
        setup=setup,
        breaker=brk.container_address_breaker,
        requires=requires_link_kind(link_kind) if link_kind else None,
        state_dirs=_state_dirs(fn, own=("dataDir", own_dir) if own_dir else None, ipam=True),
    )


def _chained(
    default: ConfigFn,
    config: ConfigFn | None,
    breaker: brk.Breaker | None,
    *,
    own_dir: str | None = None,
    runtime_config: Mapping[str, Any] | None = None,
    link_kind: str | None = None,
) -> Profile:
    """A chained plugin, after the session's base (ptp and host-local)."""
    fn = config or default
    return Profile(
        kind=Kind.CHAINED,
        config=fn,
        breaker=breaker,
        requires=requires_link_kind(link_kind) if link_kind else None,
        state_dirs=_state_dirs(fn, own=("dataDir", own_dir) if own_dir else None, ipam=True),
        runtime_config=runtime_config,
    )


# ----------------------------------------------------------------------------- interface


def _bridge(config: ConfigFn | None) -> Profile:
    default = _fixed({"type": "bridge", "bridge": BRIDGE, "isGateway": True})
    return _interface(default, config)


def _ptp(config: ConfigFn | None) -> Profile:
    return _interface(_fixed({"type": "ptp"}), config)


def _macvlan(config: ConfigFn | None) -> Profile:
    default = _on_uplink("macvlan", mode="bridge")
    return _interface(default, config, setup=_uplink, link_kind="macvlan")


def _ipvlan(config: ConfigFn | None) -> Profile:
    default = _on_uplink("ipvlan", mode="l2")
    return _interface(default, config, setup=_uplink, link_kind="ipvlan")


def _vlan(config: ConfigFn | None) -> Profile:
    default = _on_uplink("vlan", vlanId=7)
    return _interface(default, config, setup=_uplink, link_kind="vlan")


def _dummy(config: ConfigFn | None) -> Profile:
    return _interface(_fixed({"type": "dummy"}), config, link_kind="dummy")


def _host_device_device(sandbox: Sandbox) -> None:
    # Down, as a device waiting to be handed to a container is: Go's host-device
    # gives it back down, so an up device would come back changed.
    ensure_veth(sandbox, *HOST_DEVICE, up=False)


def _host_device_config(sandbox: Sandbox) -> JSONObject:
    # A check that deletes a container's namespace with the device in it destroys
    # the veth pair; it is made again here, before the next call needs it.
    _host_device_device(sandbox)
    return {
        "type": "host-device",
        "device": HOST_DEVICE[0],
        # cnilib's record of the device's host state (Go's plugin ignores the key).
        "dataDir": str(sandbox.directory("host-device")),
    }


def _host_device(config: ConfigFn | None) -> Profile:
    profile = _interface(
        _host_device_config,
        config,
        setup=_host_device_device,
        own_dir="host-device",
    )
    return attrs.evolve(profile, max_attachments=1)  # one device to move


def _overlay_config(sandbox: Sandbox) -> JSONObject:
    return {
        "type": "overlay",
        "runDir": str(sandbox.directory("overlay")),
        "dataDir": str(sandbox.directory("host-local")),
    }


def _overlay(config: ConfigFn | None) -> Profile:
    fn = config or _overlay_config

    def dirs(sandbox: Sandbox) -> list[Path]:
        conf = fn(sandbox)
        return [
            Path(conf.get("runDir") or _DEFAULT_DIRS["overlay"]),
            Path(conf.get("dataDir") or _DEFAULT_DIRS["host-local"]),
        ]

    def joined(sandbox: Sandbox) -> None:
        # What the node agent writes once it has joined: the plugin reads this file,
        # never etcd, so the kit can play the agent and exercise the plugin itself.
        # Only in the kit's own runDir: with a configuration of the user's, the real
        # agent's file is used as it is.
        run_dir = _overlay_config(sandbox)["runDir"]
        state = NodeState(
            name=NETWORK,
            node="conformance",
            cluster=sandbox.subnet.supernet(new_prefix=16),
            subnet=sandbox.subnet,
            bridge=OVERLAY_BRIDGE,
            mtu=1450,
        )
        write_node_state(state_path(run_dir, NETWORK), state)

    return Profile(
        kind=Kind.INTERFACE,
        config=fn,
        setup=joined if config is None else None,
        breaker=brk.container_address_breaker,
        state_dirs=dirs,
    )


def _loopback(config: ConfigFn | None) -> Profile:
    return Profile(
        kind=Kind.LOOPBACK,
        config=config or _fixed({"type": "loopback"}),
        breaker=brk.loopback_breaker,
    )


# ----------------------------------------------------------------------------- IPAM


def _host_local_config(sandbox: Sandbox) -> JSONObject:
    subnet = sandbox.subnet
    return {
        "type": "host-local",
        "ipam": {
            "type": "host-local",
            "ranges": [
                [
                    {
                        "subnet": str(subnet),
                        "rangeStart": str(subnet[100]),
                        "rangeEnd": str(subnet[199]),
                    }
                ]
            ],
            "dataDir": str(sandbox.directory("host-local-target")),
        },
    }


def _host_local(config: ConfigFn | None) -> Profile:
    fn = config or _host_local_config
    return Profile(
        kind=Kind.IPAM,
        config=fn,
        breaker=brk.host_local_breaker,
        state_dirs=_state_dirs(fn, ipam=True),
    )


def _static_config(sandbox: Sandbox) -> JSONObject:
    subnet = sandbox.subnet
    return {
        "type": "static",
        "ipam": {
            "type": "static",
            "addresses": [
                {"address": f"{subnet[210]}/{subnet.prefixlen}", "gateway": str(subnet[1])}
            ],
        },
    }


def _static(config: ConfigFn | None) -> Profile:
    # static keeps nothing and checks its configuration only: nothing to break.
    return Profile(kind=Kind.IPAM, config=config or _static_config)


def _dhcp(config: ConfigFn | None) -> Profile:
    return Profile(
        kind=Kind.IPAM,
        config=config or _fixed({"type": "dhcp", "ipam": {"type": "dhcp"}}),
        needs_daemon=None if config else DHCP_NEEDS,
    )


# ----------------------------------------------------------------------------- chained


def _tuning_config(sandbox: Sandbox) -> JSONObject:
    return {
        "type": "tuning",
        # Not IFNAME: Go 1.1.1's CHECK does not replace it (it reads a directory "IFNAME").
        "sysctl": {"net.ipv4.conf.all.arp_notify": "1"},
        "mtu": 1400,  # a saved original, so DEL has a file to restore from and delete
        "dataDir": str(sandbox.directory("tuning")),
    }


def _tuning(config: ConfigFn | None) -> Profile:
    return _chained(_tuning_config, config, brk.tuning_breaker, own_dir="tuning")


def _portmap(config: ConfigFn | None) -> Profile:
    mappings = [{"hostPort": HOST_PORT, "containerPort": 80, "protocol": "tcp"}]
    return _chained(
        _fixed({"type": "portmap"}),
        config,
        brk.portmap_breaker,
        runtime_config={"portMappings": mappings},
    )


def _bandwidth(config: ConfigFn | None) -> Profile:
    # Both limits: ingress is a TBF on the host veth, egress an IFB with its own TBF.
    limits = {
        "ingressRate": 8_000_000,
        "ingressBurst": 1_000_000,
        "egressRate": 8_000_000,
        "egressBurst": 1_000_000,
    }
    return _chained(_fixed({"type": "bandwidth", **limits}), config, brk.bandwidth_breaker)


def _firewall(config: ConfigFn | None) -> Profile:
    default = _fixed({"type": "firewall", "backend": "iptables"})
    return _chained(default, config, brk.firewall_breaker)


def _sbr(config: ConfigFn | None) -> Profile:
    return _chained(_fixed({"type": "sbr"}), config, brk.sbr_breaker)


def _vrf(config: ConfigFn | None) -> Profile:
    default = _fixed({"type": "vrf", "vrfname": VRF})
    return _chained(default, config, brk.vrf_breaker, link_kind="vrf")


BUILDERS: Mapping[str, Builder] = MappingProxyType(
    {
        "bridge": _bridge,
        "ptp": _ptp,
        "macvlan": _macvlan,
        "ipvlan": _ipvlan,
        "vlan": _vlan,
        "host-device": _host_device,
        "dummy": _dummy,
        "loopback": _loopback,
        "overlay": _overlay,
        "host-local": _host_local,
        "static": _static,
        "dhcp": _dhcp,
        "tuning": _tuning,
        "portmap": _portmap,
        "bandwidth": _bandwidth,
        "firewall": _firewall,
        "sbr": _sbr,
        "vrf": _vrf,
    }
)
"""Each known plugin type's profile builder (``None``: the profile's own configuration)."""

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {plugin: build(None) for plugin, build in BUILDERS.items()}
)
"""The profile of each plugin type the kit knows."""
