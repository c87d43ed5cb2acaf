"""Results as a runtime reads them: typed 1.x, and go-cni's per-interface view.

:func:`as_v1` gives any result as a :class:`ResultV100` (Go
``types100.NewResultFromResult``), so that ``.ips`` and ``.interfaces`` type-check.
:func:`interfaces_view` folds one or several networks' results into go-cni's
``Result``: each interface name with its MAC, sandbox and addresses, plus
every network's DNS and routes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Protocol, overload

import attrs

from cnilib.errors import ResultDecodeError
from cnilib.results._common import DNS, Result, Route
from cnilib.results._convert import convert_result
from cnilib.results._ip import IPAddress, IPInterface
from cnilib.results.v100 import ResultV100

__all__ = ["IPInfo", "InterfaceInfo", "InterfacesView", "NetworkResult", "as_v1", "interfaces_view"]


@overload
def as_v1(result: Result) -> ResultV100: ...
@overload
def as_v1(result: None) -> None: ...
def as_v1(result: Result | None) -> ResultV100 | None:
    """``result`` as a 1.x result; ``None`` stays ``None``.

    A 1.0.0 or 1.1.0 result is returned as it is; an older one is converted
    to 1.1.0 (as :meth:`Result.convert_to` does, raising
    :class:`~cnilib.errors.ResultConversionError` when libcni cannot). So
    ``as_v1(cni.add_network_list(conflist, rt))`` is typed ``ResultV100 | None``.
    """
    if result is None or isinstance(result, ResultV100):
        return result
    converted = convert_result(result, ResultV100.IMPLEMENTED_VERSION)
    assert isinstance(converted, ResultV100)
    return converted


@attrs.frozen
class IPInfo:
    """One address on an interface (go-cni ``IPConfig``)."""

    address: IPInterface
    """The address with its prefix length (``10.1.0.5/24``)."""
    gateway: IPAddress | None = None

    @property
    def ip(self) -> IPAddress:
        """The address without its prefix (go-cni ``IPConfig.IP``)."""
        return self.address.ip


@attrs.frozen
class InterfaceInfo:
    """What the results say about one interface (go-cni ``Config``)."""

    ip_configs: tuple[IPInfo, ...] = ()
    mac: str = ""
    sandbox: str = ""
    pci_id: str = ""
    socket_path: str = ""


@attrs.frozen
class InterfacesView:
    """Every network's result of one container, by interface name (go-cni ``Result``).

    ``interfaces`` maps each interface name to its :class:`InterfaceInfo`;
    ``dns`` holds each result's DNS settings, in order (empty ones too, as
    go-cni keeps them); ``routes`` all routes of all results, in order;
    ``results`` the 1.x results the view was made from (go-cni ``Raw()``).
    """

    interfaces: Mapping[str, InterfaceInfo]
    dns: tuple[DNS, ...] = ()
    routes: tuple[Route, ...] = ()
    results: tuple[ResultV100, ...] = ()

    def ips(self, ifname: str) -> tuple[IPAddress, ...]:
        """The addresses of ``ifname`` (none when the results name no such interface)."""
        info = self.interfaces.get(ifname)
        return tuple(c.ip for c in info.ip_configs) if info is not None else ()


class NetworkResult(Protocol):
    """One network's outcome with the interface it was attached as, as
    :class:`cnilib.Attached` (from ``setup_networks``) has it."""

    @property
    def ifname(self) -> str: ...

    @property
    def result(self) -> Result | None: ...


@attrs.define
class _Building:
    ip_configs: list[IPInfo] = attrs.field(factory=list)
    mac: str = ""
    sandbox: str = ""
    pci_id: str = ""
    socket_path: str = ""


def interfaces_view(
    results: Result | Iterable[NetworkResult] | None, *, ifname: str = "eth0"
) -> InterfacesView:
    """go-cni's view of a container's networks, by interface name.

    ``results`` is one ADD result (attached as ``ifname``), or what
    :meth:`cnilib.CNI.setup_networks` returned (each network with its own
    interface name). Results of any version are converted to 1.x first.

    As go-cni does, every attached interface name is in the view (empty when
    its result says nothing), each interface of each result is added with its
    MAC, sandbox, PCI ID and socket path, and each address goes to the
    interface its ``interface`` index names in that result; DNS and routes of
    every result are kept in order. Where go-cni differs, cnilib is more
    careful: an address without an index goes to the interface *its network*
    was attached as (go-cni puts it on the first network's), and an interface
    named by several results keeps the addresses of each, taking MAC and
    sandbox from the last that gives them (go-cni keeps only the last
    result's entry).

    Raises :class:`~cnilib.errors.ResultDecodeError` for an address whose
    interface index is outside its result's interfaces, and
    :class:`~cnilib.errors.ResultConversionError` as :func:`as_v1` does.
    """
    if results is None or isinstance(results, Result):
        pairs: list[tuple[str, Result | None]] = [(ifname, results)]
    else:
        pairs = [(item.ifname, item.result) for item in results]
    building: dict[str, _Building] = {}
    converted: list[ResultV100] = []
    dns: list[DNS] = []
    routes: list[Route] = []
    for attached_as, result in pairs:
        building.setdefault(attached_as, _Building())
        v1 = as_v1(result)
        if v1 is None:
            continue
        converted.append(v1)
        for interface in v1.interfaces:
            entry = building.setdefault(interface.name, _Building())
            for field in ("mac", "sandbox", "pci_id", "socket_path"):
                value = getattr(interface, field)
                if value:
                    setattr(entry, field, value)
        for position, ip in enumerate(v1.ips):
            if ip.address is None:
                continue  # a plugin left it out: there is no address to show
            if ip.interface is None:
                target = attached_as
            elif 0 <= ip.interface < len(v1.interfaces):
                target = v1.interfaces[ip.interface].name
            else:
                raise ResultDecodeError(
                    f"invalid IP configuration ips[{position}]: interface index {ip.interface} "
                    f"is not one of the result's {len(v1.interfaces)} interfaces"
                )
            building.setdefault(target, _Building()).ip_configs.append(
                IPInfo(ip.address, ip.gateway)
            )
        dns.append(v1.dns)
        routes.extend(v1.routes)
    interfaces = {
        name: InterfaceInfo(
            tuple(b.ip_configs), b.mac, b.sandbox, pci_id=b.pci_id, socket_path=b.socket_path
        )
        for name, b in building.items()
    }
    return InterfacesView(MappingProxyType(interfaces), tuple(dns), tuple(routes), tuple(converted))
