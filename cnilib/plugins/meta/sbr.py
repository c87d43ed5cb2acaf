"""The ``sbr`` plugin: source-based routing in the container (Go ``plugins/meta/sbr``,
latest release).

A chained plugin: it needs ``prevResult`` and creates no interface. The
addresses it acts on are those of ``prevResult`` on ``CNI_IFNAME`` (an
address whose ``interface`` index names another interface is skipped; one
without an index, or with an index out of range, counts). Keys:
``table``, ``gateways``, ``addSourceHints`` (see :class:`SbrConf`).

- ADD, in ``CNI_NETNS`` and holding an exclusive ``flock`` on the namespace
  file (as Go, so Go's and ours serialise): for each address, in order, the
  first table from 100 up that no rule looks up; the rule ``from
  <address>/32`` (``/128``) ``lookup <table>`` (priority chosen by the
  kernel); a default route via the address's gateway (or the configured
  one of its family) in that table; a copy of each of the interface's
  main-table routes whose source or gateway is in the address's subnet, or
  that has neither. Then the interface's routes leave the main table (with
  ``addSourceHints``, each subnet route is put back there with the address
  as source, and only the others leave). With ``table``, only the rules are
  added, all looking up that table. The result is ``prevResult``.
- DEL: deletes every rule (of ``table`` when set) whose source is an address
  the interface still has. The tables' routes are the interface's and go
  with it, as in Go. Success when the namespace or the interface is gone.
- CHECK (Go's does nothing): each address has its ``from`` rule; without
  ``table``, the table it looks up holds the address's subnet route, the
  default route via its gateway, and ``prevResult``'s routes reachable
  through it; with ``table``, the rule looks up that table.
- STATUS and GC: no-op success; every spec version.

The latest release is followed where Debian's 1.1.1 differs: the
``table``, ``gateways`` and ``addSourceHints`` keys, and DEL succeeding when
the interface is gone (1.1.1: ``Failed to get link eth0: Link not found``).
Deliberately different from both: DEL with a missing or empty ``CNI_NETNS``
succeeds (Go creates an empty file at a missing path while locking it and
fails with ``unknown FS magic``; with an empty one it fails with ``no such
file or directory``); ADD opens the namespace before locking it, so a
missing one is ``failed to open netns "<path>": ...``; CHECK checks; a
failed ADD deletes the rules and routes it added and puts back the main-table
routes it deleted (Go leaves them until DEL); a 1.x result with an empty
``dns`` omits it (Go prints ``"dns": {}``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import logging
import os
from collections.abc import Callable, Iterator, Sequence

import attrs

from cnilib.errors import CNIError
from cnilib.netlink import (
    RT_SCOPE_LINK,
    RT_TABLE_MAIN,
    Link,
    NetlinkError,
    NetNSError,
    NetNSNotFoundError,
    RouteEntry,
    Rule,
    add_route,
    add_rule,
    delete_route,
    delete_rule,
    find_link,
    list_addresses,
    list_routes,
    list_rules,
    open_netns,
    replace_route,
    run_in_netns,
)
from cnilib.plugins._base import BasePlugin, PluginRequest
from cnilib.plugins._hostside import fail, go_strerror
from cnilib.plugins._linkplugin import container_netns
from cnilib.plugins.meta._chain import require_prev_result
from cnilib.plugins.meta._sbr_check import verify
from cnilib.plugins.meta._sbr_conf import (
    FIRST_TABLE,
    IPNetwork,
    SbrConf,
    StaticGateways,
    in_subnet,
    ip_configs,
    source_of,
    static_gateways,
)
from cnilib.results import Result
from cnilib.results.v100 import IPConfig, ResultV100

__all__ = ["Sbr"]

_log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def netns_lock(path: str) -> Iterator[None]:
    """Go's ``filemutex`` on the namespace file: an exclusive ``flock`` for the block.
    The file is opened for the lock alone: two callers sharing one descriptor would
    not exclude each other. A namespace file that went meanwhile (the runtime deleted
    the namespace after it was opened) is :class:`NetNSNotFoundError`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise NetNSNotFoundError(path) from exc
        raise fail(f'failed to lock netns "{path}": {exc.strerror}') from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _next_table(used: set[int], candidate: int) -> int:
    """Go's ``getNextTableID``: the first table from ``candidate`` up not in ``used``."""
    while candidate in used:
        candidate += 1
    return candidate


def _copy_route(route: RouteEntry, table: int) -> None:
    """``route`` again in ``table``, flags cleared (Go's ``RouteReplace`` of the listed route)."""
    replace_route(
        route.dst,
        gateway=route.gateway,
        link=route.oif,
        scope=route.scope,
        table=table,
        priority=route.priority,
        src=route.prefsrc,
        mtu=route.mtu,
        adv_mss=route.adv_mss,
        proto=route.proto,
        kind=route.type,
    )


def _delete_route(route: RouteEntry) -> None:
    delete_route(
        route.dst,
        gateway=route.gateway,
        link=route.oif,
        table=route.table,
        priority=route.priority,
    )


Undo = list[Callable[[], None]]
"""What a failed ADD takes back, last step first (Go's leaves it all until DEL)."""


def _take_back(undo: Undo) -> None:
    for step in reversed(undo):
        try:
            step()
        except NetlinkError as exc:  # the original error matters more
            _log.warning("sbr: undoing a failed ADD: %s", exc)


def _added_rule(src: IPNetwork, table: int, before: Sequence[Rule]) -> Callable[[], None]:
    """The step deleting the rule ``from src lookup table`` that was not there ``before``
    (the kernel chose its priority)."""
    old = set(before)

    def step() -> None:
        for rule in list_rules(table=table):
            if rule.src == src and rule not in old:
                delete_rule(rule)

    return step


def _link(ifname: str, what: str) -> Link:
    link = find_link(ifname)
    if link is None:
        raise fail(f"{what} {ifname}: Link not found")
    return link


# --------------------------------------------------------------------------------- ADD


def _do_routes(ipcs: Sequence[IPConfig], ifname: str, conf: SbrConf) -> None:
    """Go's ``doRoutes``, in the container namespace."""
    try:
        rules = list_rules()
    except NetlinkError as exc:
        raise fail(f"Failed to list all rules: {go_strerror(exc)}") from exc
    try:
        main = list_routes(table=RT_TABLE_MAIN)  # Go's RouteList(nil, ...) is main only
    except NetlinkError as exc:
        raise fail(f"Failed to list all routes: {go_strerror(exc)}") from exc
    taken = {rule.table for rule in rules}
    table = _next_table(taken | {r.table for r in main}, FIRST_TABLE)
    link = _link(ifname, "Cannot find network interface")
    try:
        routes = list_routes(table=RT_TABLE_MAIN, link=link)
    except NetlinkError as exc:
        raise fail(f"Unable to list routes: {go_strerror(exc)}") from exc
    static = static_gateways(conf.gateways)
    undo: Undo = []
    try:
        for ipc in ipcs:
            _source_table(ipc, link, table, routes, static, rules, undo)
            table = _next_table(taken | {r.table for r in routes}, table + 1)
        if conf.add_source_hints:
            _keep_subnet_routes(ipcs, link, routes)
            return
        # Deleted only now: a second address of the same subnet still needs them to copy.
        for route in routes:
            try:
                _delete_route(route)
            except NetlinkError as exc:
                raise fail(f"Failed to delete route: {go_strerror(exc)}") from exc
            undo.append(functools.partial(_copy_route, route, RT_TABLE_MAIN))
    except CNIError:
        _take_back(undo)
        raise


def _source_table(
    ipc: IPConfig,
    link: Link,
    table: int,
    routes: Sequence[RouteEntry],
    static: StaticGateways,
    rules: Sequence[Rule],
    undo: Undo,
) -> None:
    """One address's rule, default route and copied routes, in ``table``; each change's
    undoing step appended to ``undo``."""
    assert ipc.address is not None
    try:
        add_rule(table, src=source_of(ipc))
    except NetlinkError as exc:
        raise fail(f"Failed to add rule: {go_strerror(exc)}") from exc
    undo.append(_added_rule(source_of(ipc), table, rules))
    gateway = static.for_family(ipc.address.version) or ipc.gateway
    if gateway is not None:
        try:
            add_route(ipc.address.network.supernet(new_prefix=0), gateway=gateway, link=link,
                      table=table)  # fmt: skip
        except NetlinkError as exc:
            raise fail(f"Failed to add default route to {gateway}: {go_strerror(exc)}") from exc
        default = ipc.address.network.supernet(new_prefix=0)
        undo.append(lambda: delete_route(default, gateway=gateway, link=link, table=table))
    for route in routes:
        generic = route.prefsrc is None and route.gateway is None
        if generic or in_subnet(ipc, route.prefsrc) or in_subnet(ipc, route.gateway):
            try:
                _copy_route(route, table)
            except NetlinkError as exc:
                raise fail(f"Failed to readd route: {go_strerror(exc)}") from exc
            undo.append(functools.partial(_delete_route, attrs.evolve(route, table=table)))


def _keep_subnet_routes(ipcs: Sequence[IPConfig], link: Link, routes: Sequence[RouteEntry]) -> None:
    """``addSourceHints``: each subnet route in main with its address as source; the
    interface's other routes leave main. Failures are only logged, as in Go."""
    for ipc in ipcs:
        assert ipc.address is not None
        try:
            replace_route(ipc.address.network, link=link, src=ipc.address.ip,
                          table=RT_TABLE_MAIN, scope=RT_SCOPE_LINK)  # fmt: skip
        except NetlinkError as exc:
            _log.warning("sbr: failed to add subnet route to main table: %s", exc)
    for route in routes:
        if route.scope != RT_SCOPE_LINK:
            try:
                _delete_route(route)
            except NetlinkError as exc:
                _log.warning("sbr: failed to delete route: %s", exc)


def _rules_only(ipcs: Sequence[IPConfig], table: int) -> None:
    """Go's ``doRoutesWithTable``: the rules, all looking up the configured table."""
    rules = list_rules(table=table)
    undo: Undo = []
    for ipc in ipcs:
        try:
            add_rule(table, src=source_of(ipc))
        except NetlinkError as exc:
            _take_back(undo)
            raise fail(f"failed to add rule: {go_strerror(exc)}") from exc
        undo.append(_added_rule(source_of(ipc), table, rules))


# --------------------------------------------------------------------------------- DEL


def _tidy_rules(ifname: str, table: int | None) -> None:
    """Go's ``tidyRules``: delete the rules from the interface's addresses; go on after a
    failed delete and report the last one."""
    try:
        rules = list_rules(table=table)
    except NetlinkError as exc:
        if table is not None:
            raise fail(
                f"failed to list rules of table {table} to tidy: {go_strerror(exc)}"
            ) from exc
        raise fail(f"Failed to list all rules to tidy: {go_strerror(exc)}") from exc
    link = find_link(ifname)
    if link is None:
        return  # the interface is gone, and its addresses with it
    try:
        addresses = {a.interface.ip for a in list_addresses(link)}
    except NetlinkError as exc:
        raise fail(f"Failed to list all addrs: {go_strerror(exc)}") from exc
    last: CNIError | None = None
    for rule in rules:
        if rule.src is not None and rule.src.network_address in addresses:
            try:
                delete_rule(rule)
            except NetlinkError as exc:
                last = fail(f"Failed to delete rule {go_strerror(exc)}")
    if last is not None:
        raise last


# ------------------------------------------------------------------------------ plugin


def _prev(req: PluginRequest) -> ResultV100:
    return require_prev_result(req, "This plugin must be called as chained plugin").as_v1()


class Sbr(BasePlugin):
    """Go's sbr plugin, in process."""

    type = "sbr"

    def add(self, req: PluginRequest) -> Result:
        """Rules and per-address tables for ``CNI_IFNAME``; ``prevResult`` passed on."""
        conf = SbrConf.load(req.config)
        prev = _prev(req)
        ipcs = ip_configs(req.ifname, prev)
        with container_netns(req) as ctr, netns_lock(req.netns):
            if conf.table is not None:
                run_in_netns(ctr, _rules_only, ipcs, conf.table)
            else:
                run_in_netns(ctr, _do_routes, ipcs, req.ifname, conf)
        # Through the 1.x form and back, as Go prints its current.Result.
        return prev.convert_to(req.cni_version)

    def check(self, req: PluginRequest) -> None:
        """Each address's rule, and its table's routes (Go's CHECK does nothing)."""
        conf = SbrConf.load(req.config)
        prev = _prev(req)
        ipcs = ip_configs(req.ifname, prev)
        with container_netns(req) as ctr, netns_lock(req.netns):
            run_in_netns(ctr, verify, ipcs, req.ifname, conf, prev)

    def delete(self, req: PluginRequest) -> None:
        """Delete the interface's source rules; success when the namespace is gone."""
        conf = SbrConf.load(req.config)
        if not req.netns:
            return
        try:
            handle = open_netns(req.netns)
        except NetNSError:
            return
        with contextlib.suppress(NetNSNotFoundError), handle, netns_lock(req.netns):
            run_in_netns(handle, _tidy_rules, req.ifname, conf.table)
