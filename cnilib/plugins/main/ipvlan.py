"""The ``ipvlan`` plugin: an ipvlan of a host interface, in the container
(Go ``plugins/main/ipvlan``, latest release).

Keys: ``master`` (default: the interface of the default route; chained, the
single named interface of ``prevResult``), ``mode`` (``l2`` by default,
``l3``, ``l3s``), ``mtu`` (0 up to the master's), ``linkInContainer`` (the
master is in the container namespace), ``ipam`` (optional when chained:
without it, ``prevResult``'s addresses and routes are reused), ``dns``.
There is no ``mac``: an ipvlan has its master's MAC.

- ADD creates the ipvlan on the master straight into the container as
  ``CNI_IFNAME`` (see :func:`~cnilib.plugins._sublink.new_link`), sets ``arp_notify`` and
  ``ndisc_notify``, and applies the addresses and routes of IPAM (or of
  ``prevResult``). Result: ``interfaces = [the ipvlan (sandbox)]`` (it
  replaces ``prevResult``'s), every ``ips[].interface = 0``. A failed ADD
  deletes the link and releases IPAM's address.
- DEL: IPAM DEL (when configured), then the link; an empty or missing
  ``CNI_NETNS``, a missing link and a missing master are success.
- CHECK: IPAM CHECK; the interface of ``prevResult`` is an ipvlan in
  ``CNI_NETNS`` with the configured mode and the result's MAC, addresses
  and routes; the configured master exists.
- STATUS and GC: IPAM's, when configured (Go has no GC: a no-op).

Host-side work (the master lookup, the request that creates the link)
happens in ``PluginRequest.host_netns``. A kernel built without ipvlan
fails ADD with ``failed to create ipvlan: ...`` naming ``CONFIG_IPVLAN``.

Against Go's ipvlan: the latest release is followed where it differs from
Debian's 1.1.1 (``linkInContainer``, ``ndisc_notify``, STATUS, spec 1.1.0).
Deliberate differences from Go:

- A failed ADD deletes the ipvlan (Go leaks it until DEL).
- ``mtu`` is bounded by the master's MTU: ``invalid MTU 9000, must be [0,
  master MTU(1500)]``, as macvlan and vlan say (Go has no check and leaves
  a larger MTU to the kernel, and ignores a negative one).
- Without ``ipam`` and without ``prevResult`` addresses, ADD fails before
  creating anything: ``ipvlan needs an "ipam" configuration, or chained, a
  prevResult with IPs`` (Go creates the link, then fails to run a plugin
  named ``""``: ``no plugin name provided``).
- DEL neither looks the master up nor reads ``prevResult``: it succeeds
  with the master or the default route gone (Go fails with ``no default
  route interface found``).
- CHECK looks up only a configured master; without ``master`` it relies on
  the ipvlan itself (the kernel deletes an ipvlan with its master). Go
  looks up ``""`` and always fails.
- The kernel's lack of ipvlan reads ``failed to create ipvlan: ... built
  without CONFIG_IPVLAN (operation not supported)`` (Go: ``failed to create
  ipvlan: operation not supported``); the link's transmit queue length is
  the kernel's default (Go sends 0, which ipvlan ignores).
- CHECK texts are the interface plugins' shared ones, lower-case as Go's
  latest macvlan (``required prevResult missing``, ``container ipvlan mode
  l3 does not match expected value: l2``); Go's ipvlan still capitalises
  them (``Container IPVlan mode ...``).
- ``dns`` from the config when it sets any field, else IPAM's (Go always
  replaces the result's DNS with the config's, even an empty one); a 1.x
  result omits an empty ``dns`` (see :mod:`cnilib.plugins.main.loopback`);
  a missing namespace reads ``failed to open netns "<path>": netns: open
  <path>: No such file or directory`` (Go: ``... failed to Statfs ...``).
"""

from __future__ import annotations

from functools import partial

import attrs

from cnilib.netlink import ipvlan_data
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._hostside import fail
from cnilib.plugins._linkcheck import check_interface, check_master, mode_matches
from cnilib.plugins._linkplugin import ANNOUNCE_SYSCTLS, InterfacePlugin
from cnilib.plugins._netconf import conf_bool, conf_int, conf_str, dns_override, ipam_type
from cnilib.plugins._sublink import SubLink, add_on_master
from cnilib.results import DNS, Result
from cnilib.results.v100 import ResultV100

__all__ = ["Ipvlan", "IpvlanConf"]

_MODES = ("l2", "l3", "l3s")


@attrs.frozen
class IpvlanConf:
    """The keys ipvlan reads from its configuration."""

    master: str
    mode: str
    mtu: int
    link_in_container: bool
    ipam: str
    dns: DNS | None

    @classmethod
    def load(cls, req: PluginRequest) -> IpvlanConf:
        """Decode ``req.config`` as Go's ``json.Unmarshal`` into ipvlan's ``NetConf``."""
        config = req.config
        return cls(
            master=conf_str(config, "master"),
            mode=conf_str(config, "mode") or "l2",
            mtu=conf_int(config, "mtu"),
            link_in_container=conf_bool(config, "linkInContainer"),
            ipam=ipam_type(config),
            dns=dns_override(config),
        )

    def check_mode(self) -> None:
        """``unknown ipvlan mode: "<mode>"`` unless the mode is one ipvlan has."""
        if self.mode not in _MODES:
            raise fail(f'unknown ipvlan mode: "{self.mode}"')


def _chained(req: PluginRequest, conf: IpvlanConf) -> tuple[str, ResultV100 | None]:
    """ADD's master name and the ``prevResult`` whose addresses are reused (None:
    run IPAM), as Go's ``loadConf``: an unconfigured master is, chained, the
    single named interface of ``prevResult``."""
    found = req.prev_result  # a prevResult that does not decode is an error here
    prev = found.as_v1() if found is not None else None
    master = conf.master
    if not master and prev is not None:
        if len(prev.interfaces) != 1 or not prev.interfaces[0].name:
            raise fail("chained master failure. PrevResult lacks a single named interface")
        master = prev.interfaces[0].name
    reuse = prev if not conf.ipam and prev is not None and prev.ips else None
    if not conf.ipam and reuse is None:
        raise fail('ipvlan needs an "ipam" configuration, or chained, a prevResult with IPs')
    return master, reuse


class Ipvlan(InterfacePlugin):
    """Go's ipvlan plugin, in process."""

    type = "ipvlan"

    def add(self, req: PluginRequest) -> Result:
        """The ipvlan in the container, then the addresses of IPAM or ``prevResult``."""
        conf = IpvlanConf.load(req)
        master, reuse = _chained(req, conf)
        link = SubLink(
            kind="ipvlan", master=master, link_in_container=conf.link_in_container,
            mtu=conf.mtu, data=partial(ipvlan_data, conf.mode),
        )  # fmt: skip
        return add_on_master(
            req,
            link,
            conf.ipam,
            conf.dns,
            sysctls=ANNOUNCE_SYSCTLS,
            addresses=reuse,
            validate=conf.check_mode,
        )

    def check(self, req: PluginRequest) -> None:
        """IPAM CHECK, then the ipvlan against ``prevResult`` and the config."""
        conf = IpvlanConf.load(req)
        conf.check_mode()
        if conf.master:
            check_master(req, conf.master, link_in_container=conf.link_in_container)
        check_interface(req, conf.ipam, kind="ipvlan", validate=mode_matches("ipvlan", conf.mode))

    def load_ipam(self, req: PluginRequest) -> str:
        """ipvlan's configuration decoded; its IPAM type."""
        return IpvlanConf.load(req).ipam
