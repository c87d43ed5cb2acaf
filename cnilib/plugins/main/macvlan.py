"""The ``macvlan`` plugin: a macvlan of a host interface, in the container
(Go ``plugins/main/macvlan``, latest release).

Keys: ``master`` (default: the interface of the default route), ``mode``
(``bridge`` by default, ``private``, ``vepa``, ``passthru``), ``mtu`` (0 up to
the master's), ``mac`` (also ``CNI_ARGS MAC=`` and ``runtimeConfig.mac``,
which win), ``linkInContainer`` (the master is in the container namespace),
``bcqueuelen``, ``ipam`` (optional: without it the interface is layer 2
only, up and without addresses), ``dns``.

- ADD creates the macvlan on the master straight into the container as
  ``CNI_IFNAME`` (see :func:`~cnilib.plugins._sublink.new_link`); with IPAM it sets
  ``arp_notify`` and ``ndisc_notify`` (the neighbours learn the new MAC) and
  applies IPAM's addresses and routes. Result: ``interfaces = [the
  macvlan (sandbox)]``, every ``ips[].interface = 0``. A failed ADD deletes
  the link and releases IPAM's address.
- DEL: IPAM DEL, then the link; an empty or missing ``CNI_NETNS``, a missing
  link and a missing master are success.
- CHECK: IPAM CHECK; the interface of ``prevResult`` is a macvlan in
  ``CNI_NETNS`` with the configured mode and the result's MAC, addresses
  and routes; the master exists.
- STATUS and GC: IPAM's (Go has no GC: a no-op).

Host-side work (the master lookup, the request that creates the link)
happens in ``PluginRequest.host_netns``.

Against Go's macvlan: the latest release is followed where it differs from
Debian's 1.1.1 (``linkInContainer``, ``bcqueuelen``, ``ndisc_notify``, a
DEL that does not look the master up, STATUS, spec 1.1.0, the kernel's
default transmit queue length, lower-case CHECK texts). Deliberately
different from both:

- A missing master reads ``failed to lookup master "eth9": Link not found``
  (Go: a bare ``Link not found``, from its MTU probe); a namespace that
  cannot be opened is named (Go prints ``%!q(<nil>)``).
- CHECK fails for an unknown ``mode`` (1.1.1 ignored it); a 1.x result
  omits an empty ``dns`` (see :mod:`cnilib.plugins.main.loopback`).
"""

from __future__ import annotations

from functools import partial

import attrs

from cnilib.netlink import macvlan_data
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._hostside import fail
from cnilib.plugins._linkcheck import check_interface, check_master, mode_matches
from cnilib.plugins._linkplugin import ANNOUNCE_SYSCTLS, InterfacePlugin
from cnilib.plugins._netconf import (
    conf_bool,
    conf_int,
    conf_str,
    dns_override,
    ipam_type,
    load_error,
)
from cnilib.plugins._sublink import SubLink, add_on_master, requested_mac
from cnilib.results import DNS, Result

__all__ = ["Macvlan", "MacvlanConf"]

_MODES = ("bridge", "private", "vepa", "passthru")


@attrs.frozen
class MacvlanConf:
    """The keys macvlan reads from its configuration."""

    master: str
    mode: str
    mtu: int
    link_in_container: bool
    bc_queue_len: int
    ipam: str
    dns: DNS | None

    @classmethod
    def load(cls, req: PluginRequest) -> MacvlanConf:
        """Decode ``req.config`` as Go's ``json.Unmarshal`` into macvlan's ``NetConf``."""
        config = req.config
        bc_queue_len = conf_int(config, "bcqueuelen")
        if not 0 <= bc_queue_len <= 0xFFFFFFFF:  # a uint32 in Go's NetConf
            raise load_error(
                f"json: cannot unmarshal number {bc_queue_len} into Go struct field "
                "NetConf.bcqueuelen of type uint32"
            )
        return cls(
            master=conf_str(config, "master"),
            mode=conf_str(config, "mode") or "bridge",
            mtu=conf_int(config, "mtu"),
            link_in_container=conf_bool(config, "linkInContainer"),
            bc_queue_len=bc_queue_len,
            ipam=ipam_type(config),
            dns=dns_override(config),
        )

    def check_mode(self) -> None:
        """``unknown macvlan mode: "<mode>"`` unless the mode is one macvlan has."""
        if self.mode not in _MODES:
            raise fail(f'unknown macvlan mode: "{self.mode}"')


class Macvlan(InterfacePlugin):
    """Go's macvlan plugin, in process."""

    type = "macvlan"

    def add(self, req: PluginRequest) -> Result:
        """The macvlan in the container, then IPAM's addresses (or just up, without IPAM)."""
        conf = MacvlanConf.load(req)
        mac = requested_mac(req)
        link = SubLink(
            kind="macvlan", master=conf.master, link_in_container=conf.link_in_container,
            mtu=conf.mtu, mac=mac,
            data=partial(macvlan_data, conf.mode, bc_queue_len=conf.bc_queue_len),
        )  # fmt: skip
        return add_on_master(
            req, link, conf.ipam, conf.dns, sysctls=ANNOUNCE_SYSCTLS, validate=conf.check_mode
        )

    def check(self, req: PluginRequest) -> None:
        """IPAM CHECK, then the macvlan against ``prevResult`` and the config."""
        conf = MacvlanConf.load(req)
        conf.check_mode()
        check_master(req, conf.master, link_in_container=conf.link_in_container)
        check_interface(req, conf.ipam, kind="macvlan", validate=mode_matches("macvlan", conf.mode))

    def load_ipam(self, req: PluginRequest) -> str:
        """macvlan's configuration decoded; its IPAM type."""
        return MacvlanConf.load(req).ipam
