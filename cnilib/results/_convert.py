"""Converting results between spec versions (Go ``pkg/types/internal/convert.go``).

libcni registers converters from ``init()`` functions; here the graph is the
literal table :data:`CONVERTERS`, keyed by (from family, to family). Every
pair among the seven released versions converts; any other version pair
fails with Go's ``no converter for CNI result version <from> to <to>``.

What each step keeps (SPEC 1.1 section 5, ``types{020,040,100}/types.go``):

* within a family only ``cniVersion`` changes;
* 1.x -> 0.3/0.4 drops interface ``mtu``/``socketPath``/``pciID`` and sets
  each ip's ``version`` from its address family ("4", else "6");
* 0.3/0.4 -> 1.x drops ``version``;
* -> 0.1/0.2 (through 0.4.0) keeps the first ip of version "4" as ``ip4`` and
  the first of version "6" as ``ip6``, files each route under the family of
  its ``dst`` (only ``dst``/``gw`` survive), drops interfaces, and fails with
  ``cannot convert: no valid IP addresses`` when neither family is present;
* 0.1/0.2 -> later makes ``ips = [ip4, ip6]`` and ``routes = ip4.routes + ip6.routes``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final, Literal, TypeAlias

import attrs

from cnilib.errors import ResultConversionError
from cnilib.results import v020, v040, v100
from cnilib.results._common import Result, Route
from cnilib.results._ip import is_ipv4
from cnilib.spec import SpecVersion

__all__ = ["CONVERTERS", "FAMILY_OF_VERSION", "convert_result"]

Family: TypeAlias = Literal["0.2", "0.4", "1.x"]

FAMILY_OF_VERSION: Final[Mapping[str, Family]] = {
    "0.1.0": "0.2",
    "0.2.0": "0.2",
    "0.3.0": "0.4",
    "0.3.1": "0.4",
    "0.4.0": "0.4",
    "1.0.0": "1.x",
    "1.1.0": "1.x",
}
"""Each released version's result family."""

_FAMILY_OF_CLASS: Final[Mapping[type[Result], Family]] = {
    v020.ResultV020: "0.2",
    v040.ResultV040: "0.4",
    v100.ResultV100: "1.x",
}


def _relabel(result: Result, to_version: str) -> Result:
    return attrs.evolve(result, cni_version=to_version)  # type: ignore[misc]


def _from_020_to_040(result: Result, to_version: str) -> v040.ResultV040:
    assert isinstance(result, v020.ResultV020)
    ips: list[v040.IPConfig] = []
    routes: list[Route] = []
    for version, ipc in (("4", result.ip4), ("6", result.ip6)):
        if ipc is not None:
            ips.append(v040.IPConfig(version=version, address=ipc.ip, gateway=ipc.gateway))
            routes.extend(ipc.routes)
    return v040.ResultV040(cni_version=to_version, ips=ips, routes=routes, dns=result.dns)


def _from_040_to_020(result: Result, to_version: str) -> v020.ResultV020:
    assert isinstance(result, v040.ResultV040)
    ip4 = ip6 = None
    for ipc in result.ips:
        if ipc.version == "4" and ip4 is None:
            ip4 = ipc
        elif ipc.version == "6" and ip6 is None:
            ip6 = ipc
    if ip4 is None and ip6 is None:
        raise ResultConversionError(
            "cannot convert: no valid IP addresses",
            from_version=result.cni_version,
            to_version=to_version,
        )
    routes4: list[Route] = []
    routes6: list[Route] = []
    for route in result.routes:
        bucket = routes4 if is_ipv4(route.dst) else routes6
        if (bucket is routes4 and ip4 is not None) or (bucket is routes6 and ip6 is not None):
            bucket.append(Route(dst=route.dst, gw=route.gw))

    def legacy(ipc: v040.IPConfig | None, routes: list[Route]) -> v020.IPConfig | None:
        if ipc is None:
            return None
        return v020.IPConfig(ip=ipc.address, gateway=ipc.gateway, routes=routes)

    return v020.ResultV020(
        cni_version=to_version,
        ip4=legacy(ip4, routes4),
        ip6=legacy(ip6, routes6),
        dns=result.dns,
    )


def _from_040_to_100(result: Result, to_version: str) -> v100.ResultV100:
    assert isinstance(result, v040.ResultV040)
    return v100.ResultV100(
        cni_version=to_version,
        interfaces=[
            v100.Interface(name=i.name, mac=i.mac, sandbox=i.sandbox) for i in result.interfaces
        ],
        ips=[
            v100.IPConfig(interface=i.interface, address=i.address, gateway=i.gateway)
            for i in result.ips
        ],
        routes=result.routes,
        dns=result.dns,
    )


def _from_100_to_040(result: Result, to_version: str) -> v040.ResultV040:
    assert isinstance(result, v100.ResultV100)
    return v040.ResultV040(
        cni_version=to_version,
        interfaces=[
            v040.Interface(name=i.name, mac=i.mac, sandbox=i.sandbox) for i in result.interfaces
        ],
        ips=[
            v040.IPConfig(
                version="4" if is_ipv4(i.address) else "6",
                interface=i.interface,
                address=i.address,
                gateway=i.gateway,
            )
            for i in result.ips
        ],
        routes=result.routes,
        dns=result.dns,
    )


def _from_020_to_100(result: Result, to_version: str) -> Result:
    return _from_040_to_100(_from_020_to_040(result, "0.4.0"), to_version)


def _from_100_to_020(result: Result, to_version: str) -> Result:
    return _from_040_to_020(_from_100_to_040(result, "0.4.0"), to_version)


CONVERTERS: Final[Mapping[tuple[Family, Family], Callable[[Result, str], Result]]] = {
    ("0.2", "0.2"): _relabel,
    ("0.2", "0.4"): _from_020_to_040,
    ("0.2", "1.x"): _from_020_to_100,
    ("0.4", "0.2"): _from_040_to_020,
    ("0.4", "0.4"): _relabel,
    ("0.4", "1.x"): _from_040_to_100,
    ("1.x", "0.2"): _from_100_to_020,
    ("1.x", "0.4"): _from_100_to_040,
    ("1.x", "1.x"): _relabel,
}
"""(from family, to family) -> conversion; the whole graph, fixed at import."""


def convert_result(result: Result, version: str | SpecVersion) -> Result:
    """``result`` as ``version`` (Go ``Result.GetAsVersion``).

    ``version`` is compared as text, as Go does: ``""`` means 0.1.0, and a
    :class:`SpecVersion` contributes the text it was parsed from (so ``"1"``
    is not ``"1.0.0"``). A result whose ``cni_version`` is empty is taken to
    be its family's highest version. Returns ``result`` itself when no
    conversion is needed.
    """
    to_version = str(version) or "0.1.0"
    from_version = result.cni_version
    if from_version == "":
        from_version = result.IMPLEMENTED_VERSION
        result = _relabel(result, from_version)
    if from_version == to_version:
        return result
    from_family = FAMILY_OF_VERSION.get(from_version)
    to_family = FAMILY_OF_VERSION.get(to_version)
    if (
        from_family is None
        or to_family is None
        or _FAMILY_OF_CLASS.get(type(result)) != from_family
    ):
        raise ResultConversionError(
            f"no converter for CNI result version {from_version} to {to_version}",
            from_version=from_version,
            to_version=to_version,
        )
    return CONVERTERS[from_family, to_family](result, to_version)
