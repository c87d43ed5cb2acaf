"""The ``static`` IPAM plugin, behaving as Go's static 1.1.1.

ADD returns ``ipam.addresses`` (``[{address: CIDR, gateway}]``),
``ipam.routes`` and ``ipam.dns``. Overrides, in Go's order: ``CNI_ARGS``
``IP=<cidr>[,<cidr>...]`` is appended (``GATEWAY=<ip>[,...]`` sets the
gateway of each such address whose network holds it), ``args.cni.ips``
replaces the list, and then the ``ips`` capability replaces it. DEL does
nothing; CHECK compares ``prevResult`` with the configuration (no kernel
inspection), exactly as Go: a configured address found in ``prevResult``
must carry the configured gateway, and a missing one is not an error.

Deliberate differences from Go's static: configuration errors are code 7
and decoding errors name the JSON path (Go: code 999, ``json:`` texts);
``CNI_ARGS`` errors are code 4; routes keep the spec 1.1 fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import attrs

from cnilib.errors import ErrorCode, PluginError
from cnilib.plugins._base import BasePlugin, PluginRequest
from cnilib.plugins.ipam._decode import (
    JSONMap,
    check_one_per_family,
    config_error,
    get_dns,
    get_list,
    get_object,
    get_routes,
    get_str,
    load_args,
    member,
    parse_net_ip,
)
from cnilib.results import DNS, IPAddress, IPConfig, IPInterface, ResultV100, Route
from cnilib.results._ip import IPParseError, format_ip, parse_cidr, parse_ip

__all__ = ["Static", "StaticConfig"]


@attrs.frozen
class StaticConfig:
    """The ``ipam`` section after the overrides (Go ``IPAMConfig``)."""

    addresses: tuple[IPConfig, ...]
    routes: tuple[Route, ...] = ()
    dns: DNS = attrs.field(factory=DNS)


def _cidr(text: str) -> IPInterface | None:
    try:
        return parse_cidr(text)
    except IPParseError:
        return None


def _accept(_: str) -> str | None:
    return None  # types.UnmarshallableString takes anything


def _replacement(items: Sequence[object], path: str) -> list[IPConfig]:
    """``args.cni.ips`` / ``runtimeConfig.ips``: CIDRs, no gateways."""
    found = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise config_error(f"{path}[{i}]: expected a CIDR string", field=f"{path}[{i}]")
        cidr = _cidr(item)
        if cidr is None:
            raise config_error(
                f"an entry in the 'ips' field is NOT in CIDR notation, got: '{item}'",
                field=f"{path}[{i}]",
            )
        found.append(IPConfig(address=cidr))
    return found


def load_static_config(config: JSONMap, env_args: tuple[tuple[str, str], ...]) -> StaticConfig:
    """Parse ``config`` and ``CNI_ARGS`` as Go static's ``LoadIPAMConfig``."""
    ipam = get_object(config, "ipam", "$")
    if ipam is None:
        raise config_error("IPAM config missing 'ipam' key", field="$.ipam")
    version = get_str(config, "cniVersion", "$")
    runtime = get_object(config, "runtimeConfig", "$") or {}
    args = get_object(config, "args", "$") or {}
    cni_args = get_object(args, "cni", "$.args") or {}
    routes = get_routes(ipam, "$.ipam")
    dns = get_dns(ipam, "$.ipam")
    arg_ips = get_list(cni_args, "ips", "$.args.cni")
    runtime_ips = get_list(runtime, "ips", "$.runtimeConfig")

    # Configured addresses: parsed after the overrides, as Go does (errors in that order).
    entries: list[tuple[str, IPAddress | None, str]] = []
    for i, item in enumerate(get_list(ipam, "addresses", "$.ipam") or ()):
        where = f"$.ipam.addresses[{i}]"
        if not isinstance(item, dict):
            raise config_error(f"{where}: expected an address object", field=where)
        gateway = parse_net_ip(member(item, "gateway"), f"{where}.gateway")
        entries.append((get_str(item, "address", where), gateway, f"{where}.address"))

    from_env: list[IPConfig] = []
    if env_args:
        values = load_args(env_args, {"IP": _accept, "GATEWAY": _accept})
        for item in values.get("IP", "").split(",") if values.get("IP") else ():
            cidr = _cidr(item.strip())
            if cidr is None:
                raise PluginError(
                    f"the 'ip' field is expected to be in CIDR notation, got: '{item.strip()}'",
                    code=ErrorCode.INVALID_ENVIRONMENT_VARIABLES,
                )
            from_env.append(IPConfig(address=cidr))
        for item in values.get("GATEWAY", "").split(",") if values.get("GATEWAY") else ():
            try:
                gateway = parse_ip(item.strip())
            except IPParseError:
                raise PluginError(
                    f"invalid gateway address: {item}", code=ErrorCode.INVALID_ENVIRONMENT_VARIABLES
                ) from None
            from_env = [
                attrs.evolve(ip, gateway=gateway)
                if ip.address is not None
                and ip.address.version == gateway.version
                and gateway in ip.address.network
                else ip
                for ip in from_env
            ]

    addresses: list[IPConfig] | None = None
    if arg_ips:
        addresses = _replacement(arg_ips, "$.args.cni.ips")
    if runtime_ips:
        addresses = _replacement(runtime_ips, "$.runtimeConfig.ips")
    if addresses is None:
        addresses = []
        for text, gateway, where in entries:
            cidr = _cidr(text)
            if cidr is None:
                raise config_error(
                    f"the 'address' field is expected to be in CIDR notation, got: '{text}'",
                    field=where,
                )
            addresses.append(IPConfig(address=cidr, gateway=gateway))
        addresses += from_env

    v4 = sum(1 for ip in addresses if ip.address is not None and ip.address.version == 4)
    check_one_per_family(version, v4, len(addresses) - v4)
    return StaticConfig(addresses=tuple(addresses), routes=routes, dns=dns)


class Static(BasePlugin):
    """Go's ``static`` IPAM plugin, in process."""

    type: ClassVar[str] = "static"

    def add(self, req: PluginRequest) -> ResultV100:
        """The configured addresses, routes and DNS."""
        conf = load_static_config(req.config, req.args)
        return ResultV100(cni_version="1.1.0", ips=conf.addresses, routes=conf.routes, dns=conf.dns)

    def check(self, req: PluginRequest) -> None:
        """Each configured address present in ``prevResult`` has the configured gateway."""
        conf = load_static_config(req.config, req.args)
        prev = req.prev_result
        if prev is None:
            raise PluginError("Required prevResult missing", code=ErrorCode.INTERNAL)
        current = prev.convert_to("1.1.0")
        assert isinstance(current, ResultV100)
        for wanted in conf.addresses:
            assert wanted.address is not None
            for got in current.ips:
                if got.address is None or got.address.ip != wanted.address.ip:
                    continue
                if wanted.gateway is None or wanted.gateway == got.gateway:
                    break
                raise PluginError(
                    f"static: Failed to match addr {format_ip(got.address.ip)} "
                    f"on interface {req.ifname}",
                    code=ErrorCode.INTERNAL,
                )
