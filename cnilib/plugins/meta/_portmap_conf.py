"""The ``portmap`` plugin's configuration: its keys as Go decodes them (``PortMapConf``),
Go's refusals and their texts, the backend choice, and the container addresses
taken from ``prevResult``.

Every refusal here is a code-999 error with Go's text; the plugin prefixes it
as Go's verbs do (``failed to parse config: ...`` on ADD and DEL, bare on CHECK).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import attrs

from cnilib._json import JSONValue
from cnilib.errors import PluginError
from cnilib.plugins._hostside import fail
from cnilib.plugins._netconf import conf_bool, conf_int, conf_str
from cnilib.results import IPInterface, Result
from cnilib.results._ip import is_ipv4

__all__ = [
    "DEFAULT_MARK_BIT",
    "IPTABLES",
    "NFTABLES",
    "PortMapConf",
    "PortMapping",
    "container_ips",
]

DEFAULT_MARK_BIT = 13
"""Go's ``DefaultMarkBit`` (Kubernetes uses 14 and 15, Calico 20-31)."""

IPTABLES = "iptables"
NFTABLES = "nftables"

_T = TypeVar("_T")
_STRUCT = "PortMapConf"
_ENTRY = "PortMapEntry.runtimeConfig.portMappings"  # Go names the innermost struct


def _parse_error(message: str) -> PluginError:
    return fail(f"failed to parse network configuration: {message}")


def _go_type(value: JSONValue) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _mismatch(where: str, value: JSONValue, go_type: str) -> PluginError:
    return _parse_error(
        f"json: cannot unmarshal {_go_type(value)} into Go struct field {where} of type {go_type}"
    )


def _typed(get: Callable[[], _T]) -> _T:
    """Run a ``conf_*`` getter, rewording its ``failed to load netconf`` as portmap's."""
    try:
        return get()
    except PluginError as exc:
        raise _parse_error(exc.msg.removeprefix("failed to load netconf: ")) from None


def _strings(conf: Mapping[str, JSONValue], key: str) -> tuple[str, ...] | None:
    """A ``*[]string`` key: None when absent or null."""
    value = conf.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _mismatch(f"{_STRUCT}.{key}", value, "[]string")
    for item in value:
        if not isinstance(item, str):
            raise _mismatch(f"{_STRUCT}.{key}", item, "string")
    return tuple(str(item) for item in value)


@attrs.frozen
class PortMapping:
    """One ``runtimeConfig.portMappings`` entry (Go ``PortMapEntry``)."""

    host_port: int
    container_port: int
    protocol: str
    host_ip: str = ""

    def host_address(self, version: int) -> str | None:
        """The ``hostIP`` to match for a container address of IP ``version``:
        ``""`` for any address (none given, or unspecified), None when this entry
        belongs to the other family (Go skips it)."""
        if not self.host_ip:
            return ""
        addr = ipaddress.ip_address(self.host_ip)
        family = 4 if addr.version == 4 or _mapped(addr) else 6
        if family != version:
            return None
        return "" if addr.is_unspecified else str(addr)


def _mapped(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None


def _mappings(conf: Mapping[str, JSONValue]) -> tuple[PortMapping, ...]:
    runtime = conf.get("runtimeConfig")
    if runtime is None:
        return ()
    if not isinstance(runtime, dict):
        go_type = 'struct { PortMaps []main.PortMapEntry "json:\\"portMappings,omitempty\\"" }'
        raise _mismatch(f"{_STRUCT}.runtimeConfig", runtime, go_type)
    entries = runtime.get("portMappings")
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise _mismatch(f"{_STRUCT}.runtimeConfig.portMappings", entries, "[]main.PortMapEntry")
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise _mismatch(f"{_STRUCT}.runtimeConfig.portMappings", entry, "main.PortMapEntry")
        out.append(_mapping(entry))
    return tuple(out)


def _mapping(entry: Mapping[str, JSONValue]) -> PortMapping:
    return PortMapping(
        host_port=_typed(lambda: conf_int(entry, "hostPort", _ENTRY)),
        container_port=_typed(lambda: conf_int(entry, "containerPort", _ENTRY)),
        # iptables reads protocol names in any case and Go lower-cases them for
        # nftables and conntrack: one spelling from here on.
        protocol=_typed(lambda: conf_str(entry, "protocol", _ENTRY)).lower(),
        host_ip=_typed(lambda: conf_str(entry, "hostIP", _ENTRY)),
    )


def _backend_of_conditions(conditions: Sequence[str] | None) -> str:
    """Go ``detectBackendOfConditions``: iptables conditions start with ``-``."""
    if not conditions or conditions[0] == "":
        return ""
    return IPTABLES if conditions[0].startswith("-") else NFTABLES


@attrs.frozen
class PortMapConf:
    """What portmap does, after Go's defaults and checks."""

    name: str
    mappings: tuple[PortMapping, ...]
    backend: str
    snat: bool = True
    masq_all: bool = False
    mark_bit: int = DEFAULT_MARK_BIT
    external_set_mark_chain: str | None = None
    conditions_v4: tuple[str, ...] | None = None
    conditions_v6: tuple[str, ...] | None = None
    route_localnet: bool = False
    """cnilib's opt-in (``routeLocalnet``): set ``route_localnet`` on the host
    interface towards the container, so ``127.0.0.1:<hostPort>`` on the node
    reaches it (Go always does; see docs/divergences.md)."""

    @classmethod
    def load(cls, config: Mapping[str, JSONValue], detect: Callable[[], str]) -> PortMapConf:
        """Go's ``parseConfig`` without the addresses; ``detect()`` names the host's
        default backend (called only when ``backend`` is not set)."""
        snat_value = config.get("snat")
        snat = True if snat_value is None else _typed(lambda: conf_bool(config, "snat", _STRUCT))
        cond4 = _strings(config, "conditionsV4")
        cond6 = _strings(config, "conditionsV6")
        masq_all = _typed(lambda: conf_bool(config, "masqAll", _STRUCT))
        mark_given = config.get("markMasqBit") is not None
        mark_bit = _typed(lambda: conf_int(config, "markMasqBit", _STRUCT))
        external = (
            _typed(lambda: conf_str(config, "externalSetMarkChain", _STRUCT))
            if config.get("externalSetMarkChain") is not None
            else None
        )
        backend_given = (
            _typed(lambda: conf_str(config, "backend", _STRUCT))
            if config.get("backend") is not None
            else None
        )
        route_localnet = _typed(lambda: conf_bool(config, "routeLocalnet", _STRUCT))
        mappings = _mappings(config)
        if mark_given and external is not None:
            raise fail("Cannot specify externalSetMarkChain and markMasqBit")
        if not mark_given:
            mark_bit = DEFAULT_MARK_BIT
        if not 0 <= mark_bit <= 31:
            raise fail("MasqMarkBit must be between 0 and 31")
        if backend_given is None and not mappings:
            # Nothing will be forwarded: only the other backend's options could be
            # refused, and they can be only where the host's default is known.
            lazy = detect
            detect = lambda: lazy() if (external is not None or cond4 or cond6) else IPTABLES  # noqa: E731
        backend = _choose_backend(backend_given, external, cond4, cond6, detect)
        for mapping in mappings:
            if mapping.container_port <= 0:
                raise fail(f"Invalid container port number: {mapping.container_port}")
            if mapping.host_port <= 0:
                raise fail(f"Invalid host port number: {mapping.host_port}")
        for mapping in mappings:
            _check_mapping(mapping)
        for key, conditions in (("conditionsV4", cond4), ("conditionsV6", cond6)):
            _check_conditions(key, conditions, backend)
        if external is not None:
            _check_chain_name(external)
        return cls(
            name=conf_str(config, "name"),
            mappings=mappings,
            backend=backend,
            snat=snat,
            masq_all=masq_all,
            mark_bit=mark_bit,
            external_set_mark_chain=external,
            conditions_v4=cond4,
            conditions_v6=cond6,
            route_localnet=route_localnet,
        )

    def conditions(self, version: int) -> tuple[str, ...]:
        """The configured conditions of IP ``version`` (empty: none)."""
        return (self.conditions_v4 if version == 4 else self.conditions_v6) or ()

    @property
    def mark(self) -> str:
        """The masquerade mark, as Go formats it (``0x2000/0x2000``)."""
        value = 1 << self.mark_bit
        return f"{value:#x}/{value:#x}"


def _choose_backend(
    given: str | None,
    external: str | None,
    cond4: Sequence[str] | None,
    cond6: Sequence[str] | None,
    detect: Callable[[], str],
) -> str:
    """Go ``validateBackend``: the backend, refusing options of the other one."""
    options: dict[str, list[str]] = {IPTABLES: [], NFTABLES: []}
    if external is not None:
        options[IPTABLES].append("externalSetMarkChain")
    for key, conditions in (("conditionsV4", cond4), ("conditionsV6", cond6)):
        kind = _backend_of_conditions(conditions)
        if kind:
            options[kind].append(key)
    backend = given if given is not None else detect()
    wrong = NFTABLES if backend == IPTABLES else IPTABLES
    if options[wrong]:
        raise fail(
            f"{backend} backend was requested but configuration contains "
            f"{wrong}-specific options [{' '.join(options[wrong])}]"
        )
    if backend not in (IPTABLES, NFTABLES):
        raise fail(f'unrecognized backend "{backend}"')
    return backend


def _check_mapping(mapping: PortMapping) -> None:
    """Refuse what Go would hand to the tool and fail on half-way (or put into another
    rule): a ``hostIP`` that is not an address, a port above 65535, a protocol name
    that is not a word."""
    if mapping.host_ip:
        try:
            ipaddress.ip_address(mapping.host_ip)
        except ValueError:
            raise fail(f"Invalid host IP: {mapping.host_ip!r}") from None
    if mapping.host_port > 65535:
        raise fail(f"Invalid host port number: {mapping.host_port}")
    if mapping.container_port > 65535:
        raise fail(f"Invalid container port number: {mapping.container_port}")
    if not mapping.protocol.isascii() or not mapping.protocol.isalnum():
        raise fail(f"Invalid protocol: {mapping.protocol!r} (tcp, udp or sctp)")


_LINE_BREAKS = "\n\r\0"


def _check_conditions(key: str, conditions: Sequence[str] | None, backend: str) -> None:
    """Conditions become part of one script for the backend's tool (``nft -f -``,
    ``iptables-restore``), which reads a command a line: a line break (or, for nft,
    ``;``) would start another command there, in any table (Go execs iptables with
    the words as arguments, where a line break is just a character)."""
    stops = _LINE_BREAKS + (";" if backend == NFTABLES else "")
    what = "a newline or ';'" if backend == NFTABLES else "a newline"
    for word in conditions or ():
        if any(ch in word for ch in stops):
            raise fail(f"Invalid {backend} condition {word!r} in {key}: it may not hold {what}")


def _check_chain_name(chain: str) -> None:
    """``externalSetMarkChain`` is a jump target in an ``iptables-restore`` line."""
    if not chain or chain.startswith(("-", "!")) or any(ch.isspace() for ch in chain):
        raise fail(f"Invalid externalSetMarkChain {chain!r}: not an iptables chain name")


def container_ips(prev: Result, ifname: str) -> tuple[IPInterface | None, IPInterface | None]:
    """Go's choice of the container's addresses in ``prevResult``: the first IPv4 and
    the first IPv6 address not on a known interface other than ``ifname`` in a sandbox."""
    result = prev.as_v1()
    v4: IPInterface | None = None
    v6: IPInterface | None = None
    for ipc in result.ips:
        if ipc.address is None:
            continue
        four = is_ipv4(ipc.address)
        if (four and v4 is not None) or (not four and v6 is not None):
            continue
        index = ipc.interface
        if index is not None and 0 <= index < len(result.interfaces):
            intf = result.interfaces[index]
            if intf.name != ifname or not intf.sandbox:
                continue
        if four:
            v4 = ipc.address
        else:
            v6 = ipc.address
    return v4, v6
