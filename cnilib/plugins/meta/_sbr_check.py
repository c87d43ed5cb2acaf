"""The ``sbr`` plugin's CHECK (Go's does nothing): each address's source rule, and the
routes its table must hold, in the container namespace."""

from __future__ import annotations

import socket
from collections.abc import Sequence

from cnilib.netlink import RouteEntry, Rule, find_link, list_routes, list_rules
from cnilib.plugins._hostside import fail
from cnilib.plugins.meta._sbr_conf import (
    IPAddress,
    IPNetwork,
    SbrConf,
    in_subnet,
    source_of,
    static_gateways,
)
from cnilib.results.v100 import IPConfig, ResultV100

__all__ = ["verify"]


def _rule_table(rules: Sequence[Rule], ipc: IPConfig) -> int | None:
    source = source_of(ipc)
    for rule in rules:
        if rule.src == source and rule.table:
            return rule.table
    return None


def _via(route: RouteEntry, gateway: IPAddress | None, ipc: IPConfig) -> bool:
    """Whether ``route`` goes via ``gateway`` (None: any). For a default route, a gateway
    in the address's subnet is right too: ADD copies the interface's default route from
    main over the one it made via the configured gateway (as Go does)."""
    if gateway is None or route.gateway == gateway:
        return True
    return route.dst.prefixlen == 0 and in_subnet(ipc, route.gateway)


def verify(ipcs: Sequence[IPConfig], ifname: str, conf: SbrConf, prev: ResultV100) -> None:
    """CHECK in the container namespace: rules, and the routes of each address's table."""
    link = find_link(ifname)
    if link is None:
        raise fail(f"Cannot find container link {ifname}")
    rules = list_rules(table=conf.table)
    static = static_gateways(conf.gateways)
    # A prevResult route without a gateway went via its family's first gateway (Go's
    # ConfigureIface), so it is in the table of the address in that gateway's subnet.
    family_gateway: dict[int, IPAddress] = {}
    for ipc in ipcs:
        if ipc.gateway is not None:
            family_gateway.setdefault(ipc.gateway.version, ipc.gateway)
    for ipc in ipcs:
        assert ipc.address is not None
        table = _rule_table(rules, ipc)
        if table is None:
            where = f" lookup {conf.table}" if conf.table is not None else ""
            raise fail(
                f"Expected rule from {ipc.address.ip}{where} for interface {ifname} not found"
            )
        if conf.table is not None:
            continue  # Go moves no route in this mode
        family = socket.AF_INET if ipc.address.version == 4 else socket.AF_INET6
        held = [r for r in list_routes(family=family, table=table) if r.oif == link.index]
        wanted: list[tuple[IPNetwork, IPAddress | None]] = [(ipc.address.network, None)]
        gateway = static.for_family(ipc.address.version) or ipc.gateway
        if gateway is not None:
            wanted.append((ipc.address.network.supernet(new_prefix=0), gateway))
        for route in prev.routes:
            if route.dst is None or route.dst.version != ipc.address.version:
                continue
            via = route.gw if route.gw is not None else family_gateway.get(route.dst.version)
            if via is None or in_subnet(ipc, via):
                wanted.append((route.dst.network, route.gw))
        for dst, via in wanted:
            if not any(r.dst == dst and _via(r, via, ipc) for r in held):
                text = f"{dst} via {via}" if via is not None else str(dst)
                raise fail(
                    f"Expected Route {text} not found in table {table} "
                    f"(rule from {ipc.address.ip}, interface {ifname})"
                )
