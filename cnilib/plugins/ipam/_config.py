"""host-local's configuration (Go ``backend/allocator/config.go`` ``LoadIPAMConfig``).

The order of the steps, the defaults and the semantic error texts are Go's;
decoding errors name the JSON path instead of Go's ``json:`` texts, and
every configuration error has code 7 (Go: 999).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from cnilib.plugins.ipam._decode import (
    JSONMap,
    check_one_per_family,
    config_error,
    get_list,
    get_object,
    get_routes,
    get_str,
    load_args,
    member,
    parse_cidr_text,
    parse_ip_or_cidr,
    parse_net_ip,
)
from cnilib.plugins.ipam._ranges import RangeError, RangeSet, RawRange, canonicalize_set
from cnilib.results import DNS, IPAddress, Route
from cnilib.results._ip import format_ip

__all__ = ["HostLocalConfig", "load_host_local_config"]


@attrs.frozen
class HostLocalConfig:
    """The parsed and canonical ``ipam`` section (Go ``IPAMConfig``)."""

    name: str
    cni_version: str
    ranges: tuple[RangeSet, ...]
    routes: tuple[Route, ...] = ()
    data_dir: str = ""
    resolv_conf: str = ""
    requested_ips: tuple[IPAddress, ...] = ()


def _validate_env_ip(text: str) -> str | None:
    return None if parse_ip_or_cidr(text) is not None else f"invalid IP address {text}"


def _ip_list(items: Sequence[object] | None, path: str) -> list[IPAddress]:
    """``[]*ip.IP``: each ``<ip>`` or ``<ip>/<prefix>``."""
    found: list[IPAddress] = []
    for i, item in enumerate(items or ()):
        where = f"{path}[{i}]"
        if not isinstance(item, str):
            raise config_error(f"{where}: expected an IP address string", field=where)
        addr = parse_ip_or_cidr(item)
        if addr is None:
            raise config_error(f"{where}: invalid IP address {item}", field=where)
        found.append(addr)
    return found


def _raw_range(obj: object, path: str) -> RawRange:
    if not isinstance(obj, dict):
        raise config_error(f"{path}: expected a range object", field=path)
    subnet_value = member(obj, "subnet")
    subnet = None
    mapped = False
    if subnet_value is not None:
        subnet = parse_cidr_text(subnet_value, f"{path}.subnet")
        assert isinstance(subnet_value, str)
        mapped = subnet.version == 4 and ":" in subnet_value.partition("/")[0]
    return RawRange(
        path=path,
        subnet=subnet,
        subnet_mapped=mapped,
        range_start=parse_net_ip(member(obj, "rangeStart"), f"{path}.rangeStart"),
        range_end=parse_net_ip(member(obj, "rangeEnd"), f"{path}.rangeEnd"),
        gateway=parse_net_ip(member(obj, "gateway"), f"{path}.gateway"),
    )


def _range_sets(items: Sequence[object] | None, path: str) -> list[tuple[list[RawRange], str]]:
    sets = []
    for i, item in enumerate(items or ()):
        where = f"{path}[{i}]"
        if item is None:
            item = []
        if not isinstance(item, list):
            raise config_error(f"{where}: expected a list of ranges", field=where)
        sets.append(([_raw_range(r, f"{where}[{j}]") for j, r in enumerate(item)], where))
    return sets


def load_host_local_config(config: JSONMap, env_args: Sequence[tuple[str, str]]) -> HostLocalConfig:
    """Parse and validate ``config`` (the plugin's stdin) and ``CNI_ARGS`` as Go does."""
    ipam = get_object(config, "ipam", "$")
    if ipam is None:
        raise config_error("IPAM config missing 'ipam' key", field="$.ipam")
    name = get_str(config, "name", "$")
    version = get_str(config, "cniVersion", "$")
    runtime = get_object(config, "runtimeConfig", "$") or {}
    args = get_object(config, "args", "$") or {}
    cni_args = get_object(args, "cni", "$.args") or {}
    routes = get_routes(ipam, "$.ipam")
    data_dir = get_str(ipam, "dataDir", "$.ipam")
    resolv_conf = get_str(ipam, "resolvConf", "$.ipam")
    legacy = _raw_range(ipam, "$.ipam")
    configured = _range_sets(get_list(ipam, "ranges", "$.ipam"), "$.ipam.ranges")
    runtime_ranges = _range_sets(
        get_list(runtime, "ipRanges", "$.runtimeConfig"), "$.runtimeConfig.ipRanges"
    )
    arg_ips = _ip_list(get_list(cni_args, "ips", "$.args.cni"), "$.args.cni.ips")
    runtime_ips = _ip_list(get_list(runtime, "ips", "$.runtimeConfig"), "$.runtimeConfig.ips")

    # Requested IPs: CNI_ARGS IP=, then args.cni.ips, then runtimeConfig.ips.
    requested: list[IPAddress] = []
    if env_args:
        values = load_args(env_args, {"IP": _validate_env_ip})
        if "IP" in values:
            env_ip = parse_ip_or_cidr(values["IP"])
            assert env_ip is not None
            requested.append(env_ip)
    requested += arg_ips + runtime_ips

    # Ranges: runtimeConfig.ipRanges, the legacy top-level range, then ipam.ranges.
    raw_sets = list(runtime_ranges)
    if legacy.subnet is not None:
        raw_sets.append(([legacy], "$.ipam"))
    raw_sets += configured
    if not raw_sets:
        raise config_error("no IP ranges specified", field="$.ipam.ranges")
    ranges: list[RangeSet] = []
    for i, (raws, where) in enumerate(raw_sets):
        try:
            ranges.append(canonicalize_set(raws, where))
        except RangeError as exc:
            raise config_error(f"invalid range set {i}: {exc}", field=exc.field) from None

    v4 = sum(1 for rs in ranges if rs[0].range_start.version == 4)
    check_one_per_family(version, v4, len(ranges) - v4)
    for i, first in enumerate(ranges[:-1]):
        for j, second in enumerate(ranges[i + 1 :]):
            if any(a.overlaps(b) for a in first for b in second):
                raise config_error(
                    f"range set {i} overlaps with {i + j + 1}", field=raw_sets[i + j + 1][1]
                )
    return HostLocalConfig(
        name=name,
        cni_version=version,
        ranges=tuple(ranges),
        routes=routes,
        data_dir=data_dir,
        resolv_conf=resolv_conf,
        requested_ips=tuple(dict.fromkeys(requested)),
    )


def parse_resolv_conf(data: bytes) -> DNS:
    """Go host-local ``parseResolvConf``: nameserver, domain, search, options."""
    nameservers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    domain = ""
    for raw_line in data.decode("utf-8", "surrogateescape").split("\n"):
        line = raw_line.strip()
        if not line or line[0] in "#;":
            continue
        fields = line.split()
        if len(fields) < 2:
            continue
        if fields[0] == "nameserver":
            nameservers.append(fields[1])
        elif fields[0] == "domain":
            domain = fields[1]
        elif fields[0] == "search":
            search += fields[1:]
        elif fields[0] == "options":
            options += fields[1:]
    return DNS(nameservers=nameservers, domain=domain, search=search, options=options)


def describe_ips(ips: Sequence[IPAddress]) -> str:
    """Go's space-joined list of addresses."""
    return "".join(" " + format_ip(ip) for ip in ips)
