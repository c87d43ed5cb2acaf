"""The ``portmap`` plugin: host ports forwarded to the container (Go
``plugins/meta/portmap``, latest release).

A chained plugin: it needs ``prevResult`` and takes the container's first
IPv4 and first IPv6 address on ``CNI_IFNAME`` from it. The mappings come
from ``runtimeConfig.portMappings`` (the ``portMappings`` capability):
``hostPort``, ``containerPort``, ``protocol`` (``tcp``, ``udp``, ``sctp``)
and an optional ``hostIP``. Keys: ``backend`` (``iptables`` or
``nftables``; unset: iptables unless the host has only nftables, as Go),
``snat`` (default true: masquerade hairpin and localhost traffic),
``markMasqBit`` (0-31, default 13) or ``externalSetMarkChain`` (iptables),
``masqAll``, ``conditionsV4``/``conditionsV6`` (extra matches of the
backend's syntax before the jump), and cnilib's ``routeLocalnet`` (off by
default; see below).

- ADD: with no mappings, ``prevResult`` passed through and nothing touched.
  Else, in the namespace playing the host, the DNAT rules of either backend
  (:mod:`._portmap_iptables`, Go's chains and chain names;
  :mod:`._portmap_nft`, Go's ``cni_hostport`` table) for each address, and
  the result is ``prevResult``. Only traffic whose destination is a local
  address of the node is redirected (iptables ``addrtype LOCAL``, nftables
  ``fib daddr type local``: the CVE-2025-67499 fix of Go v1.9.0).
- CHECK: every rule ADD makes for this attachment is there (a rule removed
  by hand fails CHECK naming it; Go 1.1.1's CHECK fails on any host with
  ip6tables).
- DEL: removes this attachment's rules from both backends, also when the
  runtime passes no ``runtimeConfig`` (the iptables chain is named after the
  network and container, the nftables rules carry the container ID); Go does
  nothing then and leaks the rules. The nftables rules that go are those of
  ``prevResult``'s addresses, so the container's other networks keep theirs;
  without ``prevResult``, all of the container's, as in Go.
- STATUS and GC: no-op success; every spec version.

ADD and DEL hold an exclusive lock on the host namespace (as firewall's do), so
cnilib's concurrent first ADDs add the shared jumps once; Go's take none.

Where Go and cnilib differ on purpose: Go sets ``route_localnet=1`` on the
host interface towards the container on every IPv4 ADD with ``snat``, so
that ``127.0.0.1:<hostPort>`` on the node works. That sysctl makes the node
accept packets for 127.0.0.0/8 from that interface, which is the root of
kube-proxy's CVE-2020-8558 (containers reaching the node's localhost-only
services). cnilib sets it only with ``"routeLocalnet": true``. See
docs/divergences.md for the smaller differences.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

from cnilib.errors import PluginError
from cnilib.netlink import (
    NetlinkError,
    NetNSHandle,
    SysctlError,
    delete_udp_conntrack,
    get_link_by_index,
    list_routes,
    run_in_netns,
    write_sysctl,
)
from cnilib.plugins._base import BasePlugin, PluginRequest
from cnilib.plugins._hostside import fail, go_strerror
from cnilib.plugins._hosttools.masq import backend_works
from cnilib.plugins._hosttools.netns_lock import host_netns_lock
from cnilib.plugins._hosttools.nft import nft_available
from cnilib.plugins._linkplugin import host_netns
from cnilib.plugins.meta._chain import require_prev_result
from cnilib.plugins.meta._portmap_conf import (
    IPTABLES,
    NFTABLES,
    PortMapConf,
    container_ips,
)
from cnilib.plugins.meta._portmap_iptables import (
    check_iptables,
    forward_iptables,
    iptables_usable,
    unforward_iptables,
)
from cnilib.plugins.meta._portmap_nft import check_nft, forward_nft, unforward_nft
from cnilib.results import IPInterface, Result

__all__ = ["Portmap"]


def _detect_backend() -> str:
    """Go's default: iptables, unless iptables does not work here and nftables does."""
    if not backend_works(IPTABLES) and backend_works(NFTABLES):
        return NFTABLES
    return IPTABLES


def _load(req: PluginRequest, host: NetNSHandle, prefix: str) -> PortMapConf:
    def detect() -> str:
        return str(run_in_netns(host, _detect_backend))

    try:
        return PortMapConf.load(req.config, detect)
    except PluginError as exc:
        raise fail(f"{prefix}{exc.msg}") from None


def _routable_host_if(ip: IPInterface) -> str:
    """Go ``getRoutableHostIF``: the interface of the main-table route to ``ip``."""
    best = None
    for route in list_routes(family=socket.AF_INET):
        if route.oif is None or ip.ip not in route.dst:
            continue
        if best is None or route.dst.prefixlen > best.dst.prefixlen:
            best = route
    if best is None or best.oif is None:
        return ""
    return get_link_by_index(best.oif).name


def _enable_localnet_routing(ip: IPInterface) -> None:
    name = _routable_host_if(ip)
    if not name:
        return
    try:
        write_sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")
    except SysctlError as exc:
        raise fail(f"unable to enable route_localnet: {go_strerror(exc)}") from exc


def _forward(conf: PortMapConf, network: str, cid: str, ips: list[IPInterface]) -> None:
    """ADD on the host worker: each address's rules, in Go's order. A failure takes
    the rules already made for this attachment away again (Go leaves them to DEL).
    The host namespace is locked from the first listing to the last change: two ADDs
    listing the table at once would both add the shared jumps they found missing."""
    with host_netns_lock("portmap"):
        try:
            _forward_each(conf, network, cid, ips)
        except PluginError:
            with contextlib.suppress(PluginError):
                if conf.backend == NFTABLES:
                    unforward_nft(cid, [str(ip.ip) for ip in ips])
                else:
                    for ip in ips:
                        unforward_iptables(network, cid, ip.version)
            raise


def _forward_each(conf: PortMapConf, network: str, cid: str, ips: list[IPInterface]) -> None:
    for ip in ips:
        if conf.backend == NFTABLES:
            forward_nft(conf, cid, ip)
        else:
            forward_iptables(conf, network, cid, ip)
        _drop_stale_udp_flows(conf, ip)
        if ip.version == 4 and conf.snat and conf.route_localnet:
            _enable_localnet_routing(ip)


def _drop_stale_udp_flows(conf: PortMapConf, ip: IPInterface) -> None:
    """Go's ``deletePortmapStaleConnections``: a UDP flow to a host port that began
    before the mapping is remembered un-NATed and would keep missing the container;
    its conntrack entries go, now that the rules are in. Best effort, as Go's."""
    ports = [m.host_port for m in conf.mappings if m.protocol == "udp"]
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    with contextlib.suppress(NetlinkError):
        delete_udp_conntrack(family, ports)


def _check(conf: PortMapConf, network: str, cid: str, ips: list[IPInterface]) -> None:
    for ip in ips:
        if conf.backend == NFTABLES:
            check_nft(conf, cid, ip)
        else:
            check_iptables(conf, network, cid, ip)


def _unforward(network: str, cid: str, addrs: list[str] | None) -> None:
    """DEL on the host worker: both backends, as far as each works on this host.
    ``addrs``: the attachment's addresses from ``prevResult`` (None: not given),
    which tell its nftables rules from those of the container's other networks.

    A backend's failure counts only if the backend works here: a tool whose
    kernel side is missing cannot hold rules, so it must not fail every DEL.
    """
    failures: list[str] = []
    steps: list[tuple[str, Callable[[], None], Callable[[], bool]]] = [
        (IPTABLES, lambda: unforward_iptables(network, cid, 4), lambda: iptables_usable(4)),
        (IPTABLES, lambda: unforward_iptables(network, cid, 6), lambda: iptables_usable(6)),
        (NFTABLES, lambda: unforward_nft(cid, addrs), lambda: backend_works(NFTABLES)),
    ]
    with host_netns_lock("portmap"):
        for backend, step, works in steps:
            if backend == NFTABLES and not nft_available():
                continue
            try:
                step()
            except PluginError as exc:
                if works():
                    failures.append(exc.msg)
    if failures:
        raise fail("\n".join(failures))


def _addresses(req: PluginRequest, prev: Result) -> list[IPInterface]:
    v4, v6 = container_ips(prev, req.ifname)
    return [ip for ip in (v4, v6) if ip is not None]


def _chained(
    req: PluginRequest, host: NetNSHandle, parse_prefix: str, missing: str
) -> tuple[PortMapConf, Result]:
    """ADD's and CHECK's configuration and ``prevResult`` (Go's texts, which differ)."""
    conf = _load(req, host, parse_prefix)
    return conf, require_prev_result(req, missing)


class Portmap(BasePlugin):
    """Go's portmap plugin, in process."""

    type = "portmap"

    def add(self, req: PluginRequest) -> Result:
        """The DNAT (and masquerade) rules of each mapping; ``prevResult`` passed on."""
        with host_netns(req) as host:
            prefix, missing = "failed to parse config: ", "must be called as chained plugin"
            conf, prev = _chained(req, host, prefix, missing)
            if conf.mappings:
                ips = _addresses(req, prev)
                run_in_netns(host, _forward, conf, req.name, req.container_id, ips)
        return prev

    def check(self, req: PluginRequest) -> None:
        """Every rule ADD makes for this attachment is in place."""
        with host_netns(req) as host:
            conf, prev = _chained(req, host, "", "Required prevResult missing")
            if conf.mappings:
                ips = _addresses(req, prev)
                run_in_netns(host, _check, conf, req.name, req.container_id, ips)

    def delete(self, req: PluginRequest) -> None:
        """This attachment's rules go, whatever the runtime still passes."""
        with host_netns(req) as host:
            _load(req, host, "failed to parse config: ")
            prev = req.prev_result
            addrs = None if prev is None else [str(ip.ip) for ip in _addresses(req, prev)]
            run_in_netns(host, _unforward, req.name, req.container_id, addrs)
