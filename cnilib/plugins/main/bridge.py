"""The ``bridge`` plugin: the container on a veth to a host bridge (Go ``plugins/main/bridge``).

Keys: ``bridge`` (default ``cni0``), ``isGateway``, ``isDefaultGateway``
(implies isGateway), ``forceAddress``, ``ipMasq``, ``ipMasqBackend``,
``mtu``, ``hairpinMode``, ``promiscMode`` (not together with hairpin),
``macspoofchk``, ``vlan`` (0-4094, bridge VLAN filtering), ``enabledad``,
``dns``, ``ipam`` (absent or without ``type``: layer 2 only); the container
MAC from ``CNI_ARGS MAC=``, ``args.cni.mac`` or ``runtimeConfig.mac``.

Host-side work (bridge, host veth end, gateway addresses, forwarding,
iptables and nftables rules) happens in ``req.host_netns`` (None: this process's own
namespace, as for a binary); container-side work in ``CNI_NETNS``; both on
namespace workers (:mod:`cnilib.netlink`), never on the caller's thread.

ADD, DEL, CHECK and their error texts follow Go's 1.1.1 plugin; STATUS
(spec 1.1) delegates to the IPAM plugin. Deliberate differences:

- a failed ADD is rolled back (container veth deleted, IPAM DEL, masq
  rules removed); Go 1.1.1 leaves the veth behind;
- without IPAM, a 0.1.0/0.2.0 configuration is refused before anything is
  made (code 1): those results hold only IP addresses (Go attaches the
  container, then fails to print its result and leaves it attached);
- CHECK without IPAM (layer 2) skips the IPAM CHECK (Go delegates to an
  IPAM of type "" and fails); a missing route is named readably
  (``Expected Route 0.0.0.0/0 via 10.1.0.1 not found in routing table``);
- ipMasq (:mod:`cnilib.plugins._hosttools.ipmasq`): same rules, but two iptables
  execs per family instead of about eight per address; DEL with the
  namespace, the link or ``CNI_NETNS`` gone still removes the chain (Go
  leaks it); DEL of an attachment with two addresses of one family
  succeeds (Go fails deleting the still-referenced chain);
- the veth ends keep the kernel's default ``txqueuelen`` (1000); Go 1.1.1
  creates them with 0 (later Go releases fixed that);
- routes are added exclusively (an IPv6 route to a destination already
  routed fails with EEXIST; Go's ECMP add would append a next hop);
- on a name clash of the random host veth name the draw is retried (Go
  looks for the clash in the wrong namespace); the bridge is looked up
  before it is created; the port is polled every 5 ms for operstate UP
  (Go: after 0/50/500/1000/1000 ms);
- ``macspoofchk`` (:mod:`cnilib.plugins._hosttools.spoofcheck`): Go's nftables rule
  set, made in one nft transaction instead of two; CHECK also verifies it
  (Go's does not look);
- ``ipMasqBackend`` (``iptables``/``nftables``, Go 1.5's key, which Debian's
  1.1.1 ignores): the nftables backend is Go's ``cni_plugins_masquerade``
  table (:mod:`cnilib.plugins._hosttools.masq`); DEL clears both backends;
- GC (spec 1.1; Debian's 1.1.1 has none): IPAM GC, then the masquerading
  rules of attachments not in ``cni.dev/valid-attachments``: nftables per
  attachment (as Go 1.5+), iptables per container (Go 1.1.1's chain is
  named after network and container, found here by its jump's comment).

VLAN (``vlan``) needs bridge VLAN filtering in the kernel; without it ADD
fails as Go's does (``operation not supported``).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress

import attrs

from cnilib._log import get_logger
from cnilib.errors import CNIError, PluginError
from cnilib.invoke import Command
from cnilib.netlink import (
    NetNSError,
    NetNSHandle,
    NetNSNotFoundError,
    close_netns,
    run_in_netns,
)
from cnilib.plugins._base import BasePlugin, PluginRequest
from cnilib.plugins._hostside import (
    del_link_by_name_addr,
    fail,
    open_host_netns,
    setup_veth,
    validate_expected_interface_ips,
    validate_expected_routes,
)
from cnilib.plugins._hosttools.masq import IPTABLES, Masquerade, gc_masquerade, masq_backend
from cnilib.plugins._hosttools.spoofcheck import (
    check_spoofcheck,
    setup_spoofcheck,
    spoofcheck_ref,
    teardown_spoofcheck,
)
from cnilib.plugins._linkplugin import require_layer2_version
from cnilib.plugins._netconf import (
    conf_bool,
    conf_int,
    conf_str,
    dns_override,
    ipam_type,
    mac_from_request,
    parse_mac,
)
from cnilib.plugins.main import _bridge_host as host_ops
from cnilib.results import IPInterface, Result, Route
from cnilib.results.v100 import Interface, IPConfig, ResultV100

__all__ = ["Bridge", "BridgeConf"]

log = get_logger("cnilib.plugins.main.bridge")

DEFAULT_BRIDGE = "cni0"


@attrs.frozen(kw_only=True)
class BridgeConf:
    """The bridge keys of a network configuration (Go ``NetConf`` after ``loadNetConf``)."""

    name: str
    bridge: str = DEFAULT_BRIDGE
    is_gw: bool = False
    is_default_gw: bool = False
    force_address: bool = False
    ip_masq: bool = False
    ip_masq_backend: str = IPTABLES
    mtu: int = 0
    hairpin: bool = False
    promisc: bool = False
    vlan: int = 0
    enable_dad: bool = False
    mac_spoof_check: bool = False
    ipam: str = ""
    mac: str = ""

    @classmethod
    def load(cls, req: PluginRequest) -> BridgeConf:
        """Read ``req.config`` and the MAC sources; Go's validation and texts."""
        conf = req.config
        vlan = conf_int(conf, "vlan")
        if vlan < 0 or vlan > 4094:
            raise fail(f"invalid VLAN ID {vlan} (must be between 0 and 4094)")
        is_default_gw = conf_bool(conf, "isDefaultGateway")
        ip_masq = conf_bool(conf, "ipMasq")
        return cls(
            name=req.name,
            bridge=conf_str(conf, "bridge") or DEFAULT_BRIDGE,
            is_gw=conf_bool(conf, "isGateway") or is_default_gw,
            is_default_gw=is_default_gw,
            force_address=conf_bool(conf, "forceAddress"),
            ip_masq=ip_masq,
            ip_masq_backend=masq_backend(conf) if ip_masq else IPTABLES,
            mtu=conf_int(conf, "mtu"),
            hairpin=conf_bool(conf, "hairpinMode"),
            promisc=conf_bool(conf, "promiscMode"),
            vlan=vlan,
            enable_dad=conf_bool(conf, "enabledad"),
            mac_spoof_check=conf_bool(conf, "macspoofchk"),
            ipam=ipam_type(conf),
            mac=mac_from_request(req, conf),
        )


def _masquerade(req: PluginRequest, conf: BridgeConf) -> Masquerade:
    return Masquerade(req.name, req.container_id, req.ifname, conf.ip_masq_backend)


def _calc_gateways(
    conf: BridgeConf, ips: list[IPConfig], routes: list[Route]
) -> dict[int, list[IPInterface]]:
    """Go ``calcGateways``: interface 2, gateways, default routes; gateway CIDRs by family."""
    gws: dict[int, list[IPInterface]] = {4: [], 6: []}
    default_found = {4: False, 6: False}
    for i, ipc in enumerate(ips):
        address = ipc.address
        if address is None:
            raise fail(f"Unknown IP object: {ipc}")
        family = address.version
        gateway = ipc.gateway
        if gateway is None and conf.is_gw:
            gateway = address.network.network_address + 1
        ips[i] = ipc = attrs.evolve(ipc, interface=2, gateway=gateway)
        if conf.is_default_gw:
            zero = ipaddress.ip_interface("0.0.0.0/0" if family == 4 else "::/0")
            if any(r.gw is not None and r.dst == zero for r in routes):
                default_found[family] = True
            if not default_found[family]:
                routes.append(Route(dst=zero, gw=gateway))
                default_found[family] = True
        if conf.is_gw and gateway is not None:
            gws[family].append(ipaddress.ip_interface(f"{gateway}/{address.network.prefixlen}"))
    return gws


class Bridge(BasePlugin):
    """Go's bridge plugin, in process."""

    type = "bridge"

    # --------------------------------------------------------------------- ADD

    def add(self, req: PluginRequest) -> Result:
        """Attach the container to the bridge; configure IPAM's addresses."""
        conf = BridgeConf.load(req)
        if conf.hairpin and conf.promisc:
            raise fail("cannot set hairpin mode and promiscuous mode at the same time")
        if not conf.ipam:
            require_layer2_version(req)
        mac = ""
        if conf.mac:
            try:
                mac = parse_mac(conf.mac)
            except ValueError as exc:
                raise fail(f"failed to make veth pair: {exc}") from exc
        with contextlib.closing(open_host_netns(req.host_netns)) as host:
            return _Add(req, conf, host, mac).run()

    # --------------------------------------------------------------------- DEL

    def delete(self, req: PluginRequest) -> None:
        """Delete the container veth, release IPAM, remove the masquerading rules."""
        conf = BridgeConf.load(req)
        addrs: list[IPInterface] | None = None
        if req.netns:
            with contextlib.suppress(NetNSNotFoundError):
                addrs = run_in_netns(req.netns, del_link_by_name_addr, req.ifname)
            # The container is going away: do not keep its namespace alive (a deleted
            # one too: the worker that entered it at ADD would hold it).
            close_netns(req.netns)
        if conf.ipam:
            req.delegate(conf.ipam, Command.DEL)
        masq = conf.ipam and conf.ip_masq
        if masq and addrs is None:
            addrs = _prev_addresses(req)
        if masq or conf.mac_spoof_check:
            with contextlib.closing(open_host_netns(req.host_netns)) as host:
                if masq:
                    run_in_netns(host, _masquerade(req, conf).teardown, addrs)
                if conf.mac_spoof_check:
                    ref = spoofcheck_ref(req.container_id, req.ifname)
                    try:
                        run_in_netns(host, teardown_spoofcheck, ref)
                    except PluginError as exc:  # Go prints it and lets DEL succeed
                        log.warning("bridge DEL %s: %s", ref, exc.msg)

    # ------------------------------------------------------------------- CHECK

    def check(self, req: PluginRequest) -> None:
        """Go's CHECK: bridge, container veth and its host peer, addresses and routes."""
        conf = BridgeConf.load(req)
        _require_netns(req)
        if conf.ipam:
            req.delegate(conf.ipam, Command.CHECK)
        if "prevResult" not in req.config or req.config.get("prevResult") is None:
            raise fail("Required prevResult missing")
        try:
            prev = req.prev_result
            assert prev is not None
            result = prev.convert_to(ResultV100.IMPLEMENTED_VERSION)
        except CNIError as exc:
            raise fail(f"could not parse prevResult: {exc}") from exc
        assert isinstance(result, ResultV100)
        br_if = Interface()
        cont_if = Interface()
        for intf in result.interfaces:
            if intf.name == conf.bridge:
                br_if = intf
            elif intf.name == req.ifname and intf.sandbox == req.netns:
                cont_if = intf
        with contextlib.closing(open_host_netns(req.host_netns)) as host:
            bridge = run_in_netns(host, host_ops.validate_bridge, br_if, conf.promisc)
            if req.netns != cont_if.sandbox:
                raise fail(
                    f"Sandbox in prevResult {cont_if.sandbox} doesn't match configured netns: "
                    f"{req.netns}"
                )
            container = run_in_netns(req.netns, host_ops.validate_container, cont_if)
            others = [i for i in result.interfaces if i.name not in (br_if.name, cont_if.name)]
            found = run_in_netns(host, host_ops.find_host_veth, others, bridge.index, container)
            if found is not None and conf.mac_spoof_check:
                ref = spoofcheck_ref(req.container_id, req.ifname)
                run_in_netns(host, check_spoofcheck, found, container.mac, ref)
        if found is None:
            raise fail(f"CNI veth created for bridge {conf.bridge} was not found")
        run_in_netns(req.netns, _validate_addressing, req.ifname, result)

    # ------------------------------------------------------------------ STATUS

    def status(self, req: PluginRequest) -> None:
        """Ask the IPAM plugin (layer 2: always ready)."""
        kind = ipam_type(req.config)
        if kind:
            req.delegate(kind, Command.STATUS)

    # ---------------------------------------------------------------------- GC

    def gc(self, req: PluginRequest) -> None:
        """IPAM's GC, then the masquerading rules (both backends) of attachments no longer
        valid."""
        conf = BridgeConf.load(req)
        if conf.ipam:
            req.delegate(conf.ipam, Command.GC)
        if conf.ip_masq:
            valid = req.valid_attachments()
            with contextlib.closing(open_host_netns(req.host_netns)) as host:
                run_in_netns(host, gc_masquerade, req.name, valid)


def _validate_addressing(ifname: str, result: ResultV100) -> None:
    validate_expected_interface_ips(ifname, result.ips)
    validate_expected_routes(result.routes, ifname)


def _require_netns(req: PluginRequest) -> None:
    try:
        run_in_netns(req.netns, lambda: None)
    except NetNSError as exc:
        raise fail(f'failed to open netns "{req.netns}": {exc}') from exc


def _prev_addresses(req: PluginRequest) -> list[IPInterface] | None:
    """The addresses of ``prevResult`` (a DEL whose link is gone), or None."""
    try:
        prev = req.prev_result
        if prev is None:
            return None
        result = prev.convert_to(ResultV100.IMPLEMENTED_VERSION)
    except CNIError:
        return None
    assert isinstance(result, ResultV100)
    addrs = [ipc.address for ipc in result.ips if ipc.address is not None]
    return addrs or None


class _Add:
    """One ADD, with what it created so far (for the rollback)."""

    def __init__(self, req: PluginRequest, conf: BridgeConf, host: NetNSHandle, mac: str) -> None:
        self.req = req
        self.conf = conf
        self.host = host
        self.mac = mac
        self.veth_made = False
        self.ipam_done = False
        self.masq_ips: list[IPInterface] = []
        self.spoofcheck_made = False

    def run(self) -> Result:
        try:
            return self._run()
        except BaseException:
            self._rollback()
            raise

    def _run(self) -> Result:
        req, conf = self.req, self.conf
        bridge = run_in_netns(
            self.host, host_ops.ensure_bridge, conf.bridge, conf.mtu, conf.promisc, conf.vlan != 0
        )
        attach = functools.partial(
            host_ops.attach_port, bridge=bridge.index, hairpin=conf.hairpin, vlan=conf.vlan
        )
        try:
            veth = setup_veth(
                req.netns, self.host, req.ifname, mtu=conf.mtu, mac=self.mac, host_setup=attach
            )
        except NetNSError as exc:
            if exc.path != req.netns:
                raise
            raise fail(f'failed to open netns "{req.netns}": {exc}') from exc
        self.veth_made = True
        if conf.mac_spoof_check:
            self.spoofcheck_made = True  # the batch is atomic; teardown of nothing is fine
            ref = spoofcheck_ref(req.container_id, req.ifname)
            run_in_netns(self.host, setup_spoofcheck, veth.host.name, veth.container.mac, ref)
        ips: list[IPConfig] = []
        routes: list[Route] = []
        dns = None
        gws: dict[int, list[IPInterface]] = {}
        if conf.ipam:
            ipam_result = req.delegate_add(conf.ipam)
            self.ipam_done = True
            converted = ipam_result.convert_to(ResultV100.IMPLEMENTED_VERSION)
            assert isinstance(converted, ResultV100)
            ips, routes, dns = list(converted.ips), list(converted.routes), converted.dns
            if not ips:
                raise fail("IPAM plugin returned missing IP config")
            gws = _calc_gateways(conf, ips, routes)
            run_in_netns(
                req.netns, host_ops.configure_container, req.ifname, conf.enable_dad, ips, routes
            )
            if conf.ip_masq:
                self.masq_ips = [ipc.address for ipc in ips if ipc.address is not None]
        else:
            run_in_netns(req.netns, host_ops.set_container_up, req.ifname)
        finished = run_in_netns(
            self.host,
            host_ops.finish_host,
            conf.bridge,
            veth.host.name,
            gws if conf.is_gw else {},
            conf.vlan,
            conf.force_address,
            self.masq_ips,
            _masquerade(req, conf) if self.masq_ips else None,
        )
        interfaces = [
            Interface(name=finished.bridge.name, mac=finished.bridge.mac),
            Interface(name=veth.host.name, mac=finished.host_veth.mac),
            Interface(name=veth.container.name, mac=veth.container.mac, sandbox=req.netns),
        ]
        if finished.vlan_iface is not None:
            interfaces.append(Interface(name=finished.vlan_iface.name, mac=finished.vlan_iface.mac))
        override = dns_override(req.config)
        return ResultV100(
            cni_version=ResultV100.IMPLEMENTED_VERSION,
            interfaces=interfaces,
            ips=ips,
            routes=routes,
            dns=override if override is not None else (dns or ResultV100().dns),
        )

    def _rollback(self) -> None:
        req = self.req
        if self.veth_made:
            with contextlib.suppress(Exception):
                run_in_netns(req.netns, del_link_by_name_addr, req.ifname)
        if self.ipam_done:
            with contextlib.suppress(Exception):
                req.delegate(self.conf.ipam, Command.DEL)
        if self.masq_ips:
            with contextlib.suppress(Exception):
                run_in_netns(self.host, _masquerade(req, self.conf).teardown, self.masq_ips)
        if self.spoofcheck_made:
            with contextlib.suppress(Exception):
                ref = spoofcheck_ref(req.container_id, req.ifname)
                run_in_netns(self.host, teardown_spoofcheck, ref)
