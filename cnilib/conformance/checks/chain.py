"""Plugins in chains: a chained plugin keeps prevResult; an interface plugin
works with the IPAM plugins it delegates to."""

from __future__ import annotations

import ipaddress
from typing import Any

from cnilib.conformance._profile import Kind
from cnilib.conformance._registry import Finding, check, failed, not_applicable, passed
from cnilib.conformance._session import Session
from cnilib.conformance.checks._observe import (
    addresses_of,
    interfaces_in,
    left_behind,
    settled_node,
)
from cnilib.conformance.checks._verdicts import (
    add_blocked,
    attached,
    judged,
    kind_of,
    unexpected,
)


def _key(iface: dict[str, Any]) -> tuple[Any, Any, Any]:
    return iface.get("name"), str(iface.get("mac", "")).lower(), iface.get("sandbox", "")


@check(
    "chain.prev-result",
    "a chained plugin's result keeps prevResult's interfaces, addresses, routes and DNS "
    "(passed through or extended), with its indexes still right",
    "SPEC 1.1 §2 ADD (a plugin given prevResult must pass it through or modify it); "
    "§3 Execution of network configurations",
)
def chain_prev_result(session: Session) -> Finding:
    if session.profile.kind is not Kind.CHAINED:
        return not_applicable(f"{kind_of(session)} is not run after another")
    if (blocked := add_blocked(session, "0.3.0")) is not None:
        return blocked
    ctr, add, result, why = attached(session)
    if why is not None:
        return why
    prev = session.attachments[ctr.id].base_result or {}
    problems: list[str] = []
    out_ifaces = [_key(i) for i in result.get("interfaces") or []]
    prev_ifaces = prev.get("interfaces") or []
    problems += [
        f"interface {iface.get('name')!r} of prevResult is gone or changed"
        for iface in prev_ifaces
        if _key(iface) not in out_ifaces
    ]
    out_ips = {(ip.get("address"), _iface_name(result, ip)) for ip in result.get("ips") or []}
    problems += [
        f"address {ip.get('address')} of prevResult is gone or moved"
        for ip in prev.get("ips") or []
        if (ip.get("address"), _iface_name(prev, ip)) not in out_ips
    ]
    out_routes = {(r.get("dst"), r.get("gw")) for r in result.get("routes") or []}
    problems += [
        f"route {route.get('dst')} of prevResult is gone"
        for route in prev.get("routes") or []
        if (route.get("dst"), route.get("gw")) not in out_routes
    ]
    if prev.get("dns") and result.get("dns") != prev.get("dns"):
        problems.append("prevResult's dns changed")
    if problems:
        return failed(unexpected(problems), add)
    return passed(add)


def _iface_name(result: dict[str, Any], ip: dict[str, Any]) -> Any:
    """The name of the interface an ``ips`` entry points at (``None`` if none)."""
    index = ip.get("interface")
    interfaces = result.get("interfaces") or []
    if isinstance(index, int) and 0 <= index < len(interfaces):
        return interfaces[index].get("name")
    return None


def _ipam_applies(session: Session) -> Finding | None:
    if session.profile.kind is not Kind.INTERFACE or not session.profile.uses_ipam:
        return not_applicable(f"{kind_of(session)} without an ipam section")
    return add_blocked(session)


@check(
    "ipam.host-local",
    "with host-local as its IPAM, the container's interface gets an address of the range, "
    "reported in the result; DEL releases it",
    "SPEC 1.1 §4 Plugin delegation; §5 Delegated plugins (IPAM)",
)
def ipam_host_local(session: Session) -> Finding:
    if (blocked := _ipam_applies(session)) is not None:
        return blocked
    before = settled_node(session)
    ctr, add, result, why = attached(session, ipam="host-local")
    if why is not None:
        return why
    subnet = session.sandbox.subnet
    have = addresses_of(interfaces_in(ctr.ns).get(ctr.ifname, {}))
    problems = []
    ours = [
        ip["address"]
        for ip in result.get("ips") or []
        if isinstance(ip.get("address"), str) and ipaddress.ip_interface(ip["address"]).ip in subnet
    ]
    if not ours:
        problems.append(f"no address of {subnet} in the result")
    problems += [f"{a} is not on {ctr.ifname} in the container" for a in ours if a not in have]
    delete = session.delete(ctr)
    if not delete.succeeded:
        problems.append(f"DEL failed: {delete.describe()}")
    elif left := left_behind(session, before, ctr):
        return judged(problems, [f"left after DEL: {unexpected(left)}"], add, delete)
    if problems:
        return failed("; ".join(problems), add, delete)
    return passed(add, delete)


@check(
    "ipam.static",
    "with static as its IPAM, the container's interface gets exactly the configured "
    "address, reported in the result",
    "SPEC 1.1 §4 Plugin delegation; §5 Delegated plugins (IPAM)",
)
def ipam_static(session: Session) -> Finding:
    if (blocked := _ipam_applies(session)) is not None:
        return blocked
    ctr, add, result, why = attached(session, ipam="static")
    if why is not None:
        return why
    wanted = session.ipam_config("static")["addresses"][0]["address"]
    have = addresses_of(interfaces_in(ctr.ns).get(ctr.ifname, {}))
    said = [ip.get("address") for ip in result.get("ips") or []]
    problems = []
    if wanted not in said:
        problems.append(f"the result's addresses are {said}, not {wanted}")
    if wanted not in have:
        problems.append(f"{wanted} is not on {ctr.ifname} in the container")
    delete = session.delete(ctr)
    if not delete.succeeded:
        problems.append(f"DEL failed: {delete.describe()}")
    if problems:
        return failed("; ".join(problems), add, delete)
    return passed(add, delete)
