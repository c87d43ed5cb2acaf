"""CHECK of the interface plugins (macvlan, ipvlan, vlan, dummy, host-device).

Go's interface plugins check in one order, kept here: ``CNI_NETNS`` opens,
IPAM CHECK passes, ``prevResult`` is given (:func:`checked_prev_result`);
its interface named ``CNI_IFNAME`` is in ``CNI_NETNS``, exists there, is of
the plugin's kind, passes the plugin's own test (:func:`mode_matches`...),
has the result's MAC, addresses and routes (:func:`check_interface`); the
master is still there (:func:`check_master`). Texts are Go's latest
release's, lower-case (``required prevResult missing``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cnilib.invoke import Command
from cnilib.netlink import Link, find_link, run_in_netns
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._hostside import (
    fail,
    validate_expected_interface_ips,
    validate_expected_routes,
)
from cnilib.plugins._linkplugin import container_netns, host_netns
from cnilib.plugins._sublink import find_master
from cnilib.results import Route
from cnilib.results.v100 import Interface, IPConfig, ResultV100

__all__ = ["check_interface", "check_master", "checked_prev_result", "mode_matches"]


def checked_prev_result(req: PluginRequest, ipam_type: str) -> ResultV100:
    """CHECK's first steps, with ``CNI_NETNS`` open: IPAM CHECK (when configured),
    then ``prevResult``, which must be given; it is returned as a 1.x result."""
    if ipam_type:
        req.delegate(ipam_type, Command.CHECK)
    if req.config.get("prevResult") is None:
        raise fail("required prevResult missing")
    prev = req.prev_result
    assert prev is not None
    return prev.as_v1()


def mode_matches(kind: str, mode: str) -> Callable[[Link], None]:
    """A ``validate`` for :func:`check_interface`: the link's mode is ``mode``."""

    def validate(link: Link) -> None:
        if link.mode != mode:
            raise fail(f"container {kind} mode {link.mode} does not match expected value: {mode}")

    return validate


def _validate(
    iface: Interface,
    kind: str | None,
    validate: Callable[[Link], None] | None,
    ips: Sequence[IPConfig],
    routes: Sequence[Route] | None,
) -> None:
    link = find_link(iface.name)
    if link is None:
        raise fail(f"container Interface name in prevResult: {iface.name} not found")
    if kind is not None and link.kind != kind:
        raise fail(f"error: Container interface {iface.name} not of type {kind}")
    if validate is not None:
        validate(link)
    if iface.mac and iface.mac.lower() != link.mac.lower():
        raise fail(
            f"interface {iface.name} Mac {iface.mac} doesn't match container Mac: {link.mac}"
        )
    validate_expected_interface_ips(iface.name, ips)
    if routes is not None:
        validate_expected_routes(routes, iface.name)


def check_interface(
    req: PluginRequest,
    ipam_type: str,
    *,
    kind: str | None,
    validate: Callable[[Link], None] | None = None,
    routes: bool = True,
) -> None:
    """CHECK of an interface plugin: :func:`checked_prev_result`, then the container
    interface of ``prevResult`` exists in ``CNI_NETNS``, is a ``kind`` link (any
    kind: None), passes ``validate`` (run in the container), has its MAC,
    addresses and (if ``routes``) routes."""
    with container_netns(req) as ctr:
        result = checked_prev_result(req, ipam_type)
        found = [i for i in result.interfaces if i.name == req.ifname]
        sandbox = found[0].sandbox if found else ""
        if sandbox != req.netns:
            raise fail(
                f"sandbox in prevResult {sandbox} doesn't match configured netns: {req.netns}"
            )
        iface = found[0]
        mine = [ipc for ipc in result.ips if ipc.address is not None]
        run_in_netns(ctr, _validate, iface, kind, validate, mine, result.routes if routes else None)


def check_master(req: PluginRequest, name: str, *, link_in_container: bool) -> None:
    """The master (``""``: the default route's link) is still there, where ADD found it."""
    with container_netns(req) as ctr, host_netns(req) as host:
        find_master(name, ctr if link_in_container else host)
