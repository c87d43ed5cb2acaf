"""The ``firewall`` plugin: lets a container's addresses through the host's
``FORWARD`` chain, and optionally isolates its bridge from the others (Go
``plugins/meta/firewall``, latest release).

A chained plugin: it needs ``prevResult`` (``missing prevResult from earlier
plugin``) and creates no interface; ADD returns ``prevResult`` in the
config's version. Spec versions 0.4.0 and later, as Go's
(``incompatible CNI versions`` for older ones). Keys:

- ``backend``: ``"iptables"``; unset means iptables too (see
  :mod:`._firewall_conf` for firewalld, which cnilib does not support);
- ``iptablesAdminChainName`` (default ``CNI-ADMIN``): the chain
  ``CNI-FORWARD`` jumps to first, for the administrator's own rules; the
  plugin creates it and never changes it;
- ``ingressPolicy``: ``open`` (default), ``same-bridge`` (traffic into the
  bridge named first in ``prevResult.interfaces`` from another interface is
  dropped: Go's ``CNI-ISOLATION-STAGE-1``/``-2`` chains, jumped to before
  ``CNI-FORWARD``), ``isolated`` (latest Go: also drops traffic between
  ports of that bridge, which only passes iptables where the host has
  ``br_netfilter`` on); anything else fails with Go's ``unknown ingress
  policy: "<value>"``, before any rule is made (Go makes the address rules
  first);
- ``firewalldZone``: read, and used by no backend of cnilib's.

The rules (:mod:`._firewall_iptables`) are Go's, rule for rule, so Go's DEL
removes what cnilib's ADD made and the other way round. They go to the host
namespace (``host_netns``; a plugin binary: its own), for IPv4 through
``iptables`` and IPv6 through ``ip6tables``.

- ADD: the chains, jumps and per-address rules, then the isolation rules.
- CHECK: the ``FORWARD`` and admin jumps and each address's rules are there,
  with Go's texts (``expected rule [-s 10.88.0.2/32 -j ACCEPT] not found``),
  and the isolation rules of the ingress policy (Go does not check those).
  Nothing is created (Go's CHECK makes missing chains).
- DEL: each address's two rules go; chains, jumps and isolation rules stay
  (other containers may use them), as in Go. Without ``prevResult`` the
  addresses are read from ``CNI_IFNAME`` in ``CNI_NETNS`` when it is still
  there (Go removes nothing then). Always succeeds once the config parses.
- STATUS and GC: success.

nftables: the latest Go release's firewall plugin has no nftables backend
(only iptables and firewalld), so neither has cnilib's. On a host whose
``iptables`` is iptables-nft, the rules live in nftables' ``ip filter`` and
``ip6 filter`` tables through it, as Go's do.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Sequence

from cnilib.errors import CNIError
from cnilib.netlink import (
    RT_SCOPE_LINK,
    NetNSError,
    find_link,
    list_addresses,
    open_netns,
    run_in_netns,
)
from cnilib.plugins._base import BasePlugin, PluginRequest
from cnilib.plugins._hostside import fail, open_host_netns
from cnilib.plugins.meta._chain import require_prev_result
from cnilib.plugins.meta._firewall_conf import (
    BACKEND_FIREWALLD,
    FirewallConf,
)
from cnilib.plugins.meta._firewall_iptables import (
    FamilyRules,
    check_rules,
    delete_rules,
    host_cidr,
    setup_rules,
)
from cnilib.results import IPInterface, Result

__all__ = ["Firewall"]

_SUPPORTED = ("0.4.0", "1.0.0", "1.1.0")


def _families(
    conf: FirewallConf, ips: Sequence[IPInterface], bridge: str = ""
) -> list[FamilyRules]:
    """The rules of each family that has addresses (Go ``findProtos``: the isolation
    rules too only go to families with an address), in ``prevResult``'s order as Go
    appends them (a repeated address once)."""
    out = []
    for version in (4, 6):
        cidrs = list(dict.fromkeys(host_cidr(ip) for ip in ips if ip.version == version))
        if cidrs:
            out.append(FamilyRules(version, cidrs, conf.admin_chain, bridge, conf.ingress_policy))
    return out


def _prev_ips(prev: Result) -> list[IPInterface]:
    return [ip.address for ip in prev.as_v1().ips if ip.address is not None]


def _bridge(conf: FirewallConf, prev: Result) -> str:
    """The bridge an isolating ingress policy applies to: ``prevResult``'s first
    interface (Go ``setupIngressPolicySameBridge``' texts)."""
    if not conf.isolates:
        return ""
    interfaces = prev.as_v1().interfaces
    if not interfaces:
        raise fail(
            f'interface needs to be set for ingress policy "{conf.ingress_policy}", '
            'make sure to chain "firewall" plugin with "bridge"'
        )
    if not interfaces[0].name:
        raise fail("got empty bridge name")
    return interfaces[0].name


def _link_addresses(ifname: str) -> list[IPInterface]:
    """The global addresses of ``ifname`` in this worker's namespace (none if gone)."""
    link = find_link(ifname)
    if link is None:
        return []
    return [
        a.interface
        for a in list_addresses(link.index)
        if a.scope < RT_SCOPE_LINK and a.family in (socket.AF_INET, socket.AF_INET6)
    ]


class Firewall(BasePlugin):
    """Go's firewall plugin (iptables backend), in process."""

    type = "firewall"
    supported_versions = _SUPPORTED

    def add(self, req: PluginRequest) -> Result:
        """Let ``prevResult``'s addresses through ``FORWARD``; isolate the bridge."""
        prev = self._on_host(req, setup_rules)
        # Go prints prevResult after its round trip through the current types, which
        # fills in what an older result left out (a 0.4.0 address's "version").
        return prev.as_v1().convert_to(req.cni_version)

    def check(self, req: PluginRequest) -> None:
        """The jumps, each address's rules and the isolation rules are in place."""
        self._on_host(req, check_rules)

    @staticmethod
    def _on_host(req: PluginRequest, action: Callable[[Sequence[FamilyRules]], None]) -> Result:
        """ADD's and CHECK's shared part: the configuration and ``prevResult`` checked,
        then ``action`` on the rules of each family, in the host; ``prevResult``."""
        conf = FirewallConf.load(req)
        prev = require_prev_result(req, "missing prevResult from earlier plugin")
        conf.uses_iptables()
        families = _families(conf, _prev_ips(prev), _bridge(conf, prev))
        if families:
            with contextlib.closing(open_host_netns(req.host_netns)) as host:
                run_in_netns(host, action, families)
        return prev

    def delete(self, req: PluginRequest) -> None:
        """Remove each address's rules; idempotent, best effort."""
        conf = FirewallConf.load(req, lenient=True)
        if conf.backend == BACKEND_FIREWALLD:
            return  # cnilib's ADD refuses firewalld: nothing of ours to remove
        prev = req.prev_result
        ips = _prev_ips(prev) if prev is not None else self._container_ips(req)
        families = _families(conf, ips)
        if families:
            with contextlib.closing(open_host_netns(req.host_netns)) as host:
                run_in_netns(host, delete_rules, families)

    @staticmethod
    def _container_ips(req: PluginRequest) -> list[IPInterface]:
        """``CNI_IFNAME``'s addresses in ``CNI_NETNS``, for a DEL without ``prevResult``."""
        if not req.netns or not req.ifname:
            return []
        try:
            with open_netns(req.netns) as ctr:
                ips: list[IPInterface] = run_in_netns(ctr, _link_addresses, req.ifname)
        except (NetNSError, CNIError):
            return []  # the namespace or the link is gone, and we cannot know the addresses
        return ips
