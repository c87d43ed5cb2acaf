"""The ``ptp`` plugin: a veth pair routed point-to-point (Go ``plugins/main/ptp``, 1.1.1).

Keys: ``ipam`` (required), ``ipMasq``, ``ipMasqBackend``, ``mtu``, ``dns``.

- ADD runs IPAM ADD first, enables forwarding in the host namespace and
  makes a veth pair whose container end is ``CNI_IFNAME``. In the container
  every IPAM address is configured with IPAM's routes (via the gateway of
  their family), then the kernel's subnet route is replaced by
  ``<gw>/32 dev <if> scope link src <ip>`` and ``<subnet> via <gw> src <ip>``
  (``/128`` for IPv6), so that all traffic goes through the gateway. The
  host end gets ``<gw>/32`` and a route ``<ip>/32 dev <host veth> scope
  host``; ``ipMasq`` adds Go's ``CNI-<hash>`` nat chain (or, with
  ``ipMasqBackend: "nftables"``, a rule in Go's ``cni_plugins_masquerade``
  table, :mod:`cnilib.plugins._hosttools.masq`). Result:
  ``interfaces = [host veth, container]``, every ``ips[].interface = 1``;
  ``dns`` from the config when it sets any DNS field, else IPAM's.
- DEL: IPAM DEL first, then the container link is deleted (an empty or
  missing ``CNI_NETNS`` and a missing link are success), then ipMasq teardown.
- CHECK: IPAM CHECK; ``prevResult`` required; the container interface of
  ``prevResult`` exists in ``CNI_NETNS``, is a veth with the same mac, has
  every address and route.

Host-side work happens in ``PluginRequest.host_netns``, with the building
blocks of :mod:`cnilib.plugins._hostside` and :mod:`cnilib.plugins._hosttools.ipmasq`
(shared with ``bridge``).

Deliberate differences from Go's ptp 1.1.1:

- A failed ADD also deletes the veth pair and ipMasq rules it made; IPAM is
  released on every failure after IPAM ADD (Go forgets it for some).
- An IPAM address without a gateway of its family is refused before
  anything is created (Go fails later, on a netlink error).
- DEL whose container link or namespace is gone still removes the ipMasq
  chain (for ``prevResult``'s addresses, else every jump to the chain);
  Go leaks it.
- CHECK also verifies the ``<gw>/32`` route and the gateway of the subnet
  route in the container, and the host veth's gateway address and host
  route; the texts name what is missing.
- STATUS and GC are delegated to IPAM (1.1.0 configs; Go 1.1.1 has
  neither); GC also drops the masquerading rules of attachments that are
  not valid (nftables, as Go 1.5+ does; and iptables chains, per
  container). ``ipMasqBackend`` is Go 1.5's key (Debian's 1.1.1 ignores
  it); DEL clears both backends, as Go 1.5 does.
- A missing namespace reads ``failed to open netns "<path>": netns: open
  <path>: No such file or directory`` (Go: ``... failed to Statfs ...``);
  a 1.x result omits an empty ``dns`` (see :mod:`cnilib.plugins.main.loopback`);
  IPAM routes are added with ``NLM_F_EXCL`` (Go's ``RouteAddEcmp`` appends
  a second route to an existing destination).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
from collections.abc import Sequence

import attrs

from cnilib.errors import CNIError, PluginError
from cnilib.invoke import Command
from cnilib.netlink import (
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    Link,
    NetlinkError,
    NetNSError,
    NetNSHandle,
    NetNSNotFoundError,
    add_address,
    add_route,
    close_netns,
    delete_link,
    delete_route,
    find_link,
    list_addresses,
    list_routes,
    open_netns,
    run_in_netns,
)
from cnilib.plugins._base import BasePlugin, PluginRequest
from cnilib.plugins._hostside import (
    configure_iface,
    del_link_by_name_addr,
    enable_ip_forward,
    fail,
    go_strerror,
    interface_routes,
    open_host_netns,
    setup_veth,
    validate_expected_interface_ips,
    validate_expected_routes,
)
from cnilib.plugins._hosttools.masq import IPTABLES, Masquerade, gc_masquerade, masq_backend
from cnilib.plugins._netconf import conf_bool, conf_int, dns_override, ipam_type
from cnilib.results import DNS, IPAddress, IPInterface, Result, Route
from cnilib.results.v100 import Interface, IPConfig, ResultV100

__all__ = ["Ptp", "PtpConf"]


@attrs.frozen
class PtpConf:
    """The keys ptp reads from its configuration."""

    ipam: str
    ip_masq: bool
    ip_masq_backend: str
    mtu: int
    dns: DNS | None
    """The config's ``dns`` when it sets anything (Go ``dnsConfSet``), else None."""

    @classmethod
    def load(cls, req: PluginRequest) -> PtpConf:
        """Decode ``req.config`` as Go's ``json.Unmarshal`` into ptp's ``NetConf``."""
        config = req.config
        kind = ipam_type(config)
        if not kind:
            raise fail("no plugin name provided")  # Go: from invoke.FindInPath("")
        ip_masq = conf_bool(config, "ipMasq")
        return cls(
            ipam=kind,
            ip_masq=ip_masq,
            ip_masq_backend=masq_backend(config) if ip_masq else IPTABLES,
            mtu=conf_int(config, "mtu"),
            dns=dns_override(config),
        )


def _host_net(addr: IPAddress) -> IPInterface:
    """``<addr>/32`` or ``<addr>/128``."""
    return ipaddress.ip_interface(f"{addr}/{addr.max_prefixlen}")


def _masquerade(req: PluginRequest, conf: PtpConf) -> Masquerade:
    return Masquerade(req.name, req.container_id, req.ifname, conf.ip_masq_backend)


def _routed_ips(result: ResultV100, *, strict: bool) -> list[IPConfig]:
    """``result.ips`` on interface 1, each with an address and a gateway of its family.

    ``strict`` (ADD) refuses an address without one; else (CHECK) it is left out.
    """
    out = []
    for ipc in result.ips:
        address, gateway = ipc.address, ipc.gateway
        if address is not None and gateway is not None and gateway.version == address.version:
            out.append(IPConfig(interface=1, address=address, gateway=gateway))
        elif strict:
            raise fail(f"ptp needs a gateway for {ipc.address} but IPAM gave none of its family")
    return out


def _pairs(ips: Sequence[IPConfig]) -> list[tuple[IPInterface, IPAddress]]:
    return [(ipc.address, ipc.gateway) for ipc in ips if ipc.address and ipc.gateway]


# ------------------------------------------------------------------- container side


def _setup_container(ifname: str, ips: Sequence[IPConfig], routes: Sequence[Route]) -> None:
    """Go ``ipam.ConfigureIface``, then the subnet route replaced by the /32 scheme."""
    configure_iface(ifname, ips, routes)
    link = find_link(ifname)
    assert link is not None
    for address, gateway in _pairs(ips):
        subnet = address.network
        step = f"delete route {subnet} dev {ifname}"
        try:  # the route the kernel added with the address
            delete_route(subnet, link=link)
            step = f"add route {gateway} dev {ifname} scope link src {address.ip}"
            add_route(_host_net(gateway).network, link=link, scope=RT_SCOPE_LINK, src=address.ip)
            step = f"add route {subnet} via {gateway} dev {ifname} src {address.ip}"
            add_route(subnet, gateway=gateway, link=link, src=address.ip)
        except NetlinkError as exc:
            raise fail(f"failed to {step}: {go_strerror(exc)}") from exc


def _check_container(iface: Interface, ips: Sequence[IPConfig], routes: Sequence[Route]) -> None:
    link = find_link(iface.name)
    if link is None:
        raise fail(f"ptp: Container Interface name in prevResult: {iface.name} not found")
    if link.kind != "veth":
        raise fail(f"Error: Container interface {iface.name} not of type veth/p2p")
    if iface.mac and iface.mac.lower() != link.mac.lower():
        raise fail(
            f"ptp: Interface {iface.name} Mac {iface.mac} doesn't match container Mac: {link.mac}"
        )
    validate_expected_interface_ips(iface.name, ips)
    here = interface_routes(link.index)  # main's, or moved by sbr
    for address, gateway in _pairs(ips):
        to_gw = _host_net(gateway).network
        if not any(r.dst == to_gw and r.gateway is None for r in here):
            raise fail(f"ptp: route {to_gw} dev {iface.name} (scope link) is missing")
        if not any(r.dst == address.network and r.gateway == gateway for r in here):
            raise fail(f"ptp: route {address.network} via {gateway} dev {iface.name} is missing")
    validate_expected_routes(routes, iface.name)


# ------------------------------------------------------------------------ host side


def _setup_host(
    link: Link, ips: Sequence[IPConfig], masq: Masquerade | None, made: list[str]
) -> Link:
    """On the host worker, right after the veth is made: Go's ``setupHostVeth`` + ipMasq."""
    made.append(link.name)  # from here on, a failed ADD deletes the pair
    for address, gateway in _pairs(ips):
        try:
            add_address(link, _host_net(gateway))
        except NetlinkError as exc:
            raise fail(
                f"failed to add IP addr {_host_net(gateway)} to veth: {go_strerror(exc)}"
            ) from exc
        try:  # dst happens to be the same as IP/net of host veth
            add_route(_host_net(address.ip).network, link=link, scope=RT_SCOPE_HOST)
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST:
                raise fail(f"failed to add route on host: {go_strerror(exc)}") from exc
    if masq is not None:
        masq.setup([address for address, _ in _pairs(ips)])
    return link


def _undo_host(name: str, ips: Sequence[IPConfig], masq: Masquerade | None) -> None:
    if masq is not None:
        with contextlib.suppress(PluginError):
            masq.teardown([address for address, _ in _pairs(ips)])
    link = find_link(name)
    if link is not None:
        delete_link(link)


def _check_host(name: str, ips: Sequence[IPConfig]) -> None:
    link = find_link(name)
    if link is None:
        raise fail(f"ptp: host veth {name} of prevResult not found")
    present = {a.interface for a in list_addresses(link)}
    routed = {r.dst for r in list_routes(link=link)}
    for address, gateway in _pairs(ips):
        if _host_net(gateway) not in present:
            raise fail(f"ptp: host veth {name} lacks the gateway address {_host_net(gateway)}")
        if _host_net(address.ip).network not in routed:
            raise fail(f"ptp: host route {_host_net(address.ip)} dev {name} is missing")


# --------------------------------------------------------------------------- plugin


class Ptp(BasePlugin):
    """Go's ptp plugin, in process."""

    type = "ptp"

    def add(self, req: PluginRequest) -> Result:
        """IPAM ADD, then the veth pair, addresses, routes and ipMasq."""
        conf = PtpConf.load(req)
        ipam = req.delegate_add(conf.ipam)
        try:
            with contextlib.closing(open_host_netns(req.host_netns)) as host:
                return self._add(req, conf, ipam.as_v1(), host)
        except BaseException:
            with contextlib.suppress(Exception):  # do not leak the address (Go: ipam.ExecDel)
                req.delegate(conf.ipam, Command.DEL)
            raise

    def _add(
        self, req: PluginRequest, conf: PtpConf, ipam: ResultV100, host: NetNSHandle
    ) -> Result:
        if not ipam.ips:
            raise fail("IPAM plugin returned missing IP config")
        ips = _routed_ips(ipam, strict=True)
        for version in sorted({ipc.address.version for ipc in ips if ipc.address}):
            try:
                run_in_netns(host, enable_ip_forward, version)
            except PluginError as exc:
                raise fail(f"Could not enable IP forwarding: {exc}") from exc
        try:
            ctr = open_netns(req.netns)
        except NetNSError as exc:
            raise fail(f'failed to open netns "{req.netns}": {exc}') from exc
        masq = _masquerade(req, conf) if conf.ip_masq else None
        made: list[str] = []
        with ctr:
            try:
                veth = setup_veth(
                    ctr, host, req.ifname, mtu=conf.mtu,
                    host_setup=lambda link: _setup_host(link, ips, masq, made),
                )  # fmt: skip
                run_in_netns(ctr, _setup_container, req.ifname, ips, ipam.routes)
            except BaseException:
                if made:
                    with contextlib.suppress(Exception):
                        run_in_netns(host, _undo_host, made[0], ips, masq)
                raise
        return ResultV100(
            cni_version=ResultV100.IMPLEMENTED_VERSION,
            interfaces=[
                Interface(name=veth.host.name, mac=veth.host.mac),
                Interface(name=req.ifname, mac=veth.container.mac, sandbox=req.netns),
            ],
            ips=ips,
            routes=ipam.routes,
            dns=conf.dns if conf.dns is not None else ipam.dns,
        )

    def delete(self, req: PluginRequest) -> None:
        """IPAM DEL, then the container link, then ipMasq; what is gone already is fine."""
        conf = PtpConf.load(req)
        req.delegate(conf.ipam, Command.DEL)
        addrs: list[IPInterface] | None = None
        if req.netns:
            with contextlib.suppress(NetNSNotFoundError):
                addrs = run_in_netns(req.netns, del_link_by_name_addr, req.ifname)
            # The container is going away: do not keep its namespace alive (a deleted
            # one too: the worker that entered it at ADD would hold it).
            close_netns(req.netns)
        if not conf.ip_masq or addrs == []:
            return
        if addrs is None:
            addrs = _prev_addresses(req)
        with contextlib.closing(open_host_netns(req.host_netns)) as host:
            run_in_netns(host, _masquerade(req, conf).teardown, addrs)

    def check(self, req: PluginRequest) -> None:
        """IPAM CHECK, then the container (and host) state against ``prevResult``."""
        conf = PtpConf.load(req)
        try:
            ctr = open_netns(req.netns)
        except NetNSError as exc:
            raise fail(f'failed to open netns "{req.netns}": {exc}') from exc
        with ctr:
            req.delegate(conf.ipam, Command.CHECK)
            if req.config.get("prevResult") is None:
                raise fail("ptp: Required prevResult missing")
            prev = req.prev_result
            assert prev is not None
            result = prev.as_v1()
            found = [
                i for i in result.interfaces if i.name == req.ifname and i.sandbox == req.netns
            ]
            if not found:  # Go's text, with its empty sandbox
                raise fail(f"Sandbox in prevResult  doesn't match configured netns: {req.netns}")
            ips = [ipc for ipc in result.ips if ipc.address is not None]
            run_in_netns(ctr, _check_container, found[0], ips, result.routes)
        hosts = [i for i in result.interfaces if i.name and not i.sandbox]
        if hosts:
            with contextlib.closing(open_host_netns(req.host_netns)) as host:
                run_in_netns(host, _check_host, hosts[0].name, _routed_ips(result, strict=False))

    def status(self, req: PluginRequest) -> None:
        """STATUS: IPAM's."""
        req.delegate(PtpConf.load(req).ipam, Command.STATUS)

    def gc(self, req: PluginRequest) -> None:
        """GC: IPAM's, then the masquerading rules (both backends) of attachments no longer
        valid."""
        conf = PtpConf.load(req)
        req.delegate(conf.ipam, Command.GC)
        if conf.ip_masq:
            valid = req.valid_attachments()
            with contextlib.closing(open_host_netns(req.host_netns)) as host:
                run_in_netns(host, gc_masquerade, req.name, valid)


def _prev_addresses(req: PluginRequest) -> list[IPInterface] | None:
    """The container interface's addresses in ``prevResult`` (DEL, link gone); None if unknown."""
    try:
        prev = req.prev_result
        if prev is None:
            return None
        result = prev.as_v1()
    except CNIError:
        return None
    mine = {i for i, iface in enumerate(result.interfaces) if iface.name == req.ifname}
    addrs = [ipc.address for ipc in result.ips if ipc.interface in mine and ipc.address]
    return addrs or None
