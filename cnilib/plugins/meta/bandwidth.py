"""The ``bandwidth`` plugin: rate limits on a container's traffic with kernel traffic
control (Go ``plugins/meta/bandwidth``, latest release).

A chained plugin after one that made a veth pair (bridge, ptp): it finds the
host end of ``CNI_IFNAME`` (the container link's veth peer, which
``prevResult`` must list without a sandbox) and, in the host namespace:

- ingress (to the container): a TBF qdisc at the root of the host veth;
- egress (from the container): an IFB link ``bwp`` + 12 hex digits of
  sha512(network name + container ID), up, with the veth's MTU; an ingress
  qdisc on the veth with a u32 filter that redirects every packet to the IFB
  (with Go's two mirred actions); a TBF qdisc on the IFB. The IFB is
  appended to the result's interfaces (name and MAC).

Keys: ``ingressRate``/``egressRate`` (bits per second), ``ingressBurst``/
``egressBurst`` (bits), at the top level or in ``runtimeConfig.bandwidth``
(the ``bandwidth`` capability); any of the four at the top level makes the
top-level ones apply. Keys match in any case, as in Go's decoder. A rate
needs its burst and a burst its rate; a burst is below 4 GB. The TBF's
parameters are Go's: rate / 8 bytes per second, the bucket as the burst's
time at that rate in scheduler ticks, a queue of 25 ms of the rate plus the
burst; the netlink requests are byte for byte Go's
(:mod:`cnilib.netlink._tc`).

- DEL: deletes the IFB (the qdiscs go with the veth, which the main plugin
  deletes); nothing to do when it is gone.
- CHECK: the root TBF of the veth (ingress) and of the IFB (egress) have
  the configured rate, limit and buffer.
- STATUS and GC: no-op success. Spec versions 0.3.0 to 1.1.0.

Debian's 1.1.1 does the same (TBF; the latest release's HTB variant was
reverted before it), supporting spec versions up to 1.0.0. Deliberately
different from both:

- CHECK fails when the veth's or the IFB's root qdisc is not a TBF
  (``no tbf qdisc at the root of <link>``) and, with an egress limit, when
  no ingress filter of the veth redirects to the IFB; Go passes when a
  TBF was deleted by hand (it stops at the first qdisc that is not one).
- A failed ADD removes what it made (the veth's TBF, the IFB, the veth's
  ingress qdisc and its redirect), so the same ADD can be tried again; Go
  leaves them for DEL (a half-made egress limit redirects the container's
  traffic through an IFB without a TBF, unlimited).
- ADD without ``prevResult`` and no limits fails (``must be called as
  chained plugin``), and CHECK without limits succeeds: Go crashes on both.
- Opening ``CNI_NETNS`` fails as ``failed to open netns "<path>": ...``
  (Go prints ``%!q(<nil>)`` for the path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial

import attrs

from cnilib.errors import CNIError
from cnilib.netlink import (
    INGRESS_HANDLE,
    TC_H_INGRESS,
    TC_H_ROOT,
    Link,
    NetlinkError,
    NetNSHandle,
    add_ifb,
    add_ingress_qdisc,
    add_redirect_filter,
    add_tbf_qdisc,
    delete_link,
    delete_qdisc,
    find_link,
    get_link,
    get_link_by_index,
    list_filters,
    list_qdiscs,
    psched_tick_in_usec,
    run_in_netns,
)
from cnilib.plugins._base import BasePlugin, PluginRequest
from cnilib.plugins._hostside import fail, go_strerror
from cnilib.plugins._linkplugin import container_netns, host_netns
from cnilib.plugins.meta._bandwidth_conf import (
    BandwidthConf,
    BandwidthEntry,
    Tbf,
    ifb_name,
    tbf_params,
)
from cnilib.plugins.meta._chain import require_prev_result
from cnilib.results import Interface, Result
from cnilib.results.v100 import ResultV100

__all__ = ["Bandwidth"]

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
TBF_HANDLE = 0x10000
"""``1:``, the handle of the TBFs (Go's ``MakeHandle(1, 0)``)."""


# ----------------------------------------------------------------- the host interface


def _veth_peer_index(ifname: str) -> int:
    """In the container: Go's ``ip.GetVethPeerIfindex`` (its errors, wrapped as Go's)."""
    link = find_link(ifname)
    if link is None:
        err = f'could not look up "{ifname}": Link not found'
    elif link.kind != "veth":
        err = f'interface "{ifname}" was not a veth interface'
    elif not link.peer_index:
        err = "<nil>"
    else:
        return link.peer_index
    raise fail(f"container interface {ifname} has no veth peer: {err}")


def _host_link_name(index: int) -> str:
    try:
        return get_link_by_index(index).name
    except NetlinkError as exc:
        raise fail(f"veth peer with index {index} is not in host ns") from exc


def _host_interface(result: ResultV100, ifname: str, ctr: NetNSHandle, host: NetNSHandle) -> str:
    """Go's ``getHostInterface``: the name of ``ifname``'s veth peer in the host, which
    ``prevResult`` must list as a host interface (no sandbox)."""
    if not result.interfaces:
        raise fail("no interfaces provided")
    peer = run_in_netns(ctr, _veth_peer_index, ifname)
    name = run_in_netns(host, _host_link_name, peer)
    for iface in result.interfaces:
        if not iface.sandbox and iface.name == name:
            return name
    raise fail("no veth peer of container interface found in host ns")


# -------------------------------------------------------------------------------- ADD


def _tbf(link: Link, params: Tbf) -> None:
    try:
        add_tbf_qdisc(link, rate=params.rate, limit=params.limit, buffer=params.buffer)
    except NetlinkError as exc:
        raise fail(f"create qdisc: {go_strerror(exc)}") from exc


def _quietly(undo: Callable[[], None]) -> None:
    """Undo one step of a failed ADD: a failure to undo must not hide why ADD failed."""
    with contextlib.suppress(NetlinkError):
        undo()


def _shape(bw: BandwidthEntry, host_name: str, ifb: str, tick: float) -> str:
    """ADD in the host namespace, in Go's order; the IFB's MAC (``""``: no egress limit).

    On failure, what this call made is removed again (last first: the redirect
    before its IFB), so that nothing but the veth is left to DEL and the same ADD
    can be tried again; Go leaves it. What was there before is never touched."""
    with contextlib.ExitStack() as made:
        mac = _shape_steps(bw, host_name, ifb, tick, made)
        made.pop_all()
    return mac


def _shape_steps(
    bw: BandwidthEntry, host_name: str, ifb: str, tick: float, made: contextlib.ExitStack
) -> str:
    if bw.ingress:
        link = find_link(host_name)
        if link is None:
            raise fail("get host device: Link not found")
        _tbf(link, tbf_params(bw.ingress_rate, bw.ingress_burst, tick))
        made.callback(_quietly, partial(delete_qdisc, link, parent=TC_H_ROOT, handle=TBF_HANDLE))
    if not bw.egress:
        return ""
    host = find_link(host_name)
    if host is None:
        raise fail("Link not found")
    try:
        add_ifb(ifb, mtu=host.mtu)
    except NetlinkError as exc:
        raise fail(f"adding link: {go_strerror(exc)}") from exc
    made.callback(_quietly, partial(delete_link, ifb))
    device = get_link(ifb)
    try:
        add_ingress_qdisc(host)
    except NetlinkError as exc:
        raise fail(f"create ingress qdisc: {go_strerror(exc)}") from exc
    # Its filter goes with it: no packet is left redirected to a deleted IFB.
    undo = partial(delete_qdisc, host, parent=TC_H_INGRESS, handle=INGRESS_HANDLE)
    made.callback(_quietly, undo)
    try:
        add_redirect_filter(host, device)
    except NetlinkError as exc:
        raise fail(f"add filter: {go_strerror(exc)}") from exc
    try:
        _tbf(device, tbf_params(bw.egress_rate, bw.egress_burst, tick))
    except CNIError as exc:
        raise fail(f"create ifb qdisc: {exc.msg}") from exc
    return device.mac


# ------------------------------------------------------------------------------ CHECK


def _verify_tbf(link: Link, params: Tbf) -> None:
    """Go's qdisc comparison, and (unlike Go) that the root qdisc is a TBF at all."""
    qdiscs = [q for q in list_qdiscs(link) if q.kind != "pfifo_fast"]
    if not qdiscs:
        raise fail("Failed to find qdisc")
    tbf = next((q for q in qdiscs if q.parent == TC_H_ROOT and q.kind == "tbf"), None)
    if tbf is None:
        raise fail(f"no tbf qdisc at the root of {link.name}: its rate limit was removed")
    if tbf.rate != params.rate:
        raise fail("Rate doesn't match")
    if tbf.limit != params.limit:
        raise fail("Limit doesn't match")
    if tbf.buffer != params.buffer:
        raise fail("Buffer doesn't match")


def _verify(bw: BandwidthEntry, host_name: str, ifb: str, tick: float) -> None:
    """CHECK in the host namespace."""
    link = find_link(host_name)
    if link is None:
        raise fail("Link not found")
    if bw.ingress:
        _verify_tbf(link, tbf_params(bw.ingress_rate, bw.ingress_burst, tick))
    if bw.egress:
        device = find_link(ifb)
        if device is None:
            raise fail("get ifb device: Link not found")
        _verify_tbf(device, tbf_params(bw.egress_rate, bw.egress_burst, tick))
        if not any(device.index in f.redirects for f in list_filters(link)):
            raise fail(
                f"no ingress filter of {link.name} redirects to {ifb}: "
                "the egress rate limit is not applied"
            )


# -------------------------------------------------------------------------------- DEL


def _teardown(ifb: str) -> None:
    """Go's ``TeardownIfb``: delete the link by name; gone already is fine."""
    link = find_link(ifb)
    if link is None:
        return
    try:
        delete_link(link)
    except NetlinkError as exc:
        raise fail(f'failed to delete "{ifb}": {go_strerror(exc)}') from exc


class Bandwidth(BasePlugin):
    """Go's bandwidth plugin, in process."""

    type = "bandwidth"
    supported_versions = SUPPORTED_VERSIONS

    def add(self, req: PluginRequest) -> Result:
        """TBF on the host veth (ingress); IFB + redirect + TBF (egress)."""
        conf = BandwidthConf.load(req)
        bw = conf.bandwidth
        prev = require_prev_result(req, "must be called as chained plugin")
        if bw is None or bw.is_zero:
            return prev
        result = prev.as_v1()
        ifb = ifb_name(req.name, req.container_id)
        tick = psched_tick_in_usec()
        with container_netns(req) as ctr, host_netns(req) as host:
            host_name = _host_interface(result, req.ifname, ctr, host)
            mac = run_in_netns(host, _shape, bw, host_name, ifb, tick)
        if bw.egress:
            interfaces = (*result.interfaces, Interface(name=ifb, mac=mac))
            result = attrs.evolve(result, interfaces=interfaces)
        return result.convert_to(req.cni_version)

    def check(self, req: PluginRequest) -> None:
        """The TBFs ADD made are there with the configured parameters."""
        conf = BandwidthConf.load(req)
        prev = require_prev_result(req, "must be called as a chained plugin")
        result = prev.as_v1()
        with container_netns(req) as ctr, host_netns(req) as host:
            host_name = _host_interface(result, req.ifname, ctr, host)
            if conf.bandwidth is None:
                return
            ifb = ifb_name(req.name, req.container_id)
            run_in_netns(host, _verify, conf.bandwidth, host_name, ifb, psched_tick_in_usec())

    def delete(self, req: PluginRequest) -> None:
        """Delete the IFB of this network and container, if it is there."""
        BandwidthConf.load(req)
        with host_netns(req) as host:
            run_in_netns(host, _teardown, ifb_name(req.name, req.container_id))
