"""The ``vlan`` plugin: an 802.1Q vlan of a host interface, in the container
(Go ``plugins/main/vlan``, latest release).

Keys: ``master`` (required), ``vlanId`` (0 to 4094; 0 when absent), ``mtu``
(0 up to the master's), ``linkInContainer`` (the master is in the container
namespace), ``ipam`` (required), ``dns``.

- ADD creates the vlan on the master straight into the container as
  ``CNI_IFNAME`` (see :func:`~cnilib.plugins._sublink.new_link`) and applies IPAM's addresses
  and routes. Result: ``interfaces = [the vlan (sandbox)]``, every
  ``ips[].interface = 0``. A failed ADD deletes the link and releases
  IPAM's address.
- DEL: IPAM DEL, then the link; an empty or missing ``CNI_NETNS``, a missing
  link and a missing master are success.
- CHECK: IPAM CHECK; the interface of ``prevResult`` is a vlan in
  ``CNI_NETNS`` with the configured vlan id, MTU (when configured) and the
  result's MAC, addresses and routes; the master exists.
- STATUS and GC: IPAM's (Go has no GC: a no-op).

Host-side work (the master lookup, the request that creates the link)
happens in ``PluginRequest.host_netns``. A kernel built without 802.1Q
fails ADD with ``failed to create vlan: ...`` naming ``CONFIG_VLAN_8021Q``.

Against Go's vlan: the latest release is followed where it differs from
Debian's 1.1.1 (``linkInContainer``, the master-required text without a
final period, STATUS, spec 1.1.0). Deliberate differences from Go:

- A failed ADD deletes the vlan (Go leaks it until DEL).
- An out-of-range id reads ``invalid VLAN ID 4095 (must be between 0 and
  4094 inclusive)``: Go's text says 4095, which it refuses.
- Without ``ipam``, ADD fails before creating anything: ``vlan interface
  requires an IPAM configuration`` (as dummy says; Go creates the link, then
  fails with ``failed to execute IPAM delegate: no plugin name provided``).
  IPAM ADD's own errors keep their code under Go's ``failed to execute IPAM
  delegate: `` prefix (Go answers 999).
- DEL checks the configuration (``master`` set, ``vlanId`` in range) but
  neither looks the master up nor runs IPAM DEL without ``ipam``: it
  succeeds with the master gone (Go fails with ``Link not found``, and
  without ``ipam`` with ``no plugin name provided``).
- A missing master reads ``failed to lookup master "eth9": Link not found``
  (Go: a bare ``Link not found``, from its MTU probe); CHECK validates the
  configuration too (Go only decodes it, and looks up ``""``).
- CHECK's vlan id and MTU texts are ``container vlan id 7 does not match
  expected value: 8`` and ``container vlan MTU 1500 does not match expected
  value: 1400`` (Go's, copied from the tuning plugin: ``Error: Tuning link
  eth0 configured promisc is 8, current value is 7`` and ``Error: Tuning
  configured MTU of eth0 is 1400, current value is 1500``); the other
  CHECK texts are the interface plugins' shared ones, lower-case as Go's
  latest macvlan (Go's vlan: ``vlan: Required prevResult missing``,
  ``vlan: Container Interface name ...``).
- The kernel's lack of 802.1Q reads ``failed to create vlan: ... built
  without CONFIG_VLAN_8021Q (operation not supported)`` (Go: ``failed to
  create vlan: operation not supported``); the link's transmit queue
  length is the kernel's default (Go sends 0, which vlan ignores).
- ``dns`` from the config when it sets any field, else IPAM's (Go always
  replaces the result's DNS with the config's, even an empty one); a 1.x
  result omits an empty ``dns`` (see :mod:`cnilib.plugins.main.loopback`);
  a missing namespace reads ``failed to open netns "<path>": netns: open
  <path>: No such file or directory`` (Go: ``... failed to Statfs ...``).
"""

from __future__ import annotations

from functools import partial

import attrs

from cnilib.netlink import Link, vlan_data
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._hostside import fail
from cnilib.plugins._linkcheck import check_interface, check_master
from cnilib.plugins._linkplugin import InterfacePlugin
from cnilib.plugins._netconf import conf_bool, conf_int, conf_str, dns_override, ipam_type
from cnilib.plugins._sublink import SubLink, add_on_master
from cnilib.results import DNS, Result

__all__ = ["Vlan", "VlanConf"]

MAX_VLAN_ID = 4094
"""802.1Q ids are 12 bits; 4095 is reserved."""


@attrs.frozen
class VlanConf:
    """The keys vlan reads from its configuration."""

    master: str
    vlan_id: int
    mtu: int
    link_in_container: bool
    ipam: str
    dns: DNS | None

    @classmethod
    def load(cls, req: PluginRequest) -> VlanConf:
        """Decode ``req.config`` as Go's ``json.Unmarshal`` into vlan's ``NetConf``,
        then Go's checks: ``master`` set, ``vlanId`` in range."""
        config = req.config
        conf = cls(
            master=conf_str(config, "master"),
            vlan_id=conf_int(config, "vlanId"),
            mtu=conf_int(config, "mtu"),
            link_in_container=conf_bool(config, "linkInContainer"),
            ipam=ipam_type(config),
            dns=dns_override(config),
        )
        if not conf.master:
            raise fail(
                '"master" field is required. It specifies the host interface name'
                " to create the VLAN for"
            )
        if not 0 <= conf.vlan_id <= MAX_VLAN_ID:
            raise fail(
                f"invalid VLAN ID {conf.vlan_id} (must be between 0 and {MAX_VLAN_ID} inclusive)"
            )
        return conf


class Vlan(InterfacePlugin):
    """Go's vlan plugin, in process."""

    type = "vlan"
    requires_ipam = True

    def add(self, req: PluginRequest) -> Result:
        """The vlan in the container, then IPAM's addresses."""
        conf = VlanConf.load(req)
        self.require_ipam(conf.ipam)
        link = SubLink(
            kind="vlan", master=conf.master, link_in_container=conf.link_in_container,
            mtu=conf.mtu, data=partial(vlan_data, conf.vlan_id),
        )  # fmt: skip
        return add_on_master(
            req, link, conf.ipam, conf.dns, ipam_error_prefix="failed to execute IPAM delegate: "
        )

    def check(self, req: PluginRequest) -> None:
        """IPAM CHECK, then the vlan against ``prevResult`` and the config."""
        conf = VlanConf.load(req)
        self.require_ipam(conf.ipam)

        def same_vlan(link: Link) -> None:
            if link.vlan_id != conf.vlan_id:
                raise fail(
                    f"container vlan id {link.vlan_id} does not match expected value: "
                    f"{conf.vlan_id}"
                )
            if conf.mtu and link.mtu != conf.mtu:
                raise fail(
                    f"container vlan MTU {link.mtu} does not match expected value: {conf.mtu}"
                )

        check_master(req, conf.master, link_in_container=conf.link_in_container)
        check_interface(req, conf.ipam, kind="vlan", validate=same_vlan)

    def load_ipam(self, req: PluginRequest) -> str:
        """vlan's configuration decoded (``master`` and ``vlanId`` checked); its IPAM type."""
        return VlanConf.load(req).ipam
