"""Reading IPAM configuration and ``CNI_ARGS`` the way the Go plugins' decoders do.

Go decodes stdin into typed structs with ``encoding/json``: keys match
fields case-insensitively (the last matching key wins), ``null`` leaves a
field unset, and an ``net.IP`` given as ``""`` is no address at all. The
helpers here reproduce those rules on the parsed JSON mapping and raise
:class:`~cnilib.errors.PluginError` with code 7 whose message starts with
the offending field's JSON path (``$.ipam.ranges[0][1].gateway: ...``); Go
would answer a bare ``json: ...`` text with code 999.

``CNI_ARGS`` follow Go's ``types.LoadArgs`` (code 4, Go's texts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from cnilib._json import JSONValue
from cnilib.errors import ErrorCode, PluginError, ResultDecodeError
from cnilib.results import DNS, IPAddress, IPInterface, Route
from cnilib.results._codec import structure
from cnilib.results._gotext import go_quote, json_kind
from cnilib.results._ip import IPParseError, parse_cidr, parse_ip

__all__ = [
    "JSONMap",
    "args_error",
    "config_error",
    "get_dns",
    "get_list",
    "get_object",
    "get_routes",
    "get_str",
    "load_args",
    "member",
    "parse_cidr_text",
    "parse_ip_or_cidr",
    "parse_net_ip",
]

JSONMap = Mapping[str, JSONValue]
T = TypeVar("T")


def config_error(msg: str, *, field: str | None = None) -> PluginError:
    """A code-7 error; ``field`` (a JSON path) goes into ``details``."""
    return PluginError(
        msg, code=ErrorCode.INVALID_NETWORK_CONFIG, details=f"at {field}" if field else ""
    )


def check_one_per_family(version: str, v4: int, v6: int) -> None:
    """Go: more than one address of a family needs a config version >= 0.3.0."""
    from cnilib import spec
    from cnilib.errors import VersionError

    if v4 <= 1 and v6 <= 1:
        return
    try:
        allowed = spec.parse_version(version) >= spec.parse_version("0.3.0")
    except VersionError:
        allowed = False
    if not allowed:
        raise config_error(
            f"CNI version {version} does not support more than 1 address per family",
            field="$.cniVersion",
        )


def args_error(msg: str) -> PluginError:
    """A code-4 error about ``CNI_ARGS``."""
    return PluginError(msg, code=ErrorCode.INVALID_ENVIRONMENT_VARIABLES)


def _type_error(path: str, value: JSONValue, go_type: str) -> PluginError:
    return PluginError(
        f"{path}: json: cannot unmarshal {json_kind(value)} into Go value of type {go_type}",
        code=ErrorCode.INVALID_NETWORK_CONFIG,
    )


def member(obj: JSONMap, name: str) -> JSONValue:
    """The value Go's decoder stores in field ``name``: the last key equal to it
    ignoring case; ``None`` when absent or ``null``."""
    folded = name.lower()
    value: JSONValue = None
    for key, item in obj.items():
        if key == name or key.lower() == folded:
            value = item
    return value


def get_object(obj: JSONMap, name: str, path: str) -> JSONMap | None:
    """Member ``name`` as an object (None when absent)."""
    value = member(obj, name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _type_error(f"{path}.{name}", value, "struct")
    return value


def get_list(obj: JSONMap, name: str, path: str) -> list[JSONValue] | None:
    """Member ``name`` as an array (None when absent)."""
    value = member(obj, name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _type_error(f"{path}.{name}", value, "slice")
    return value


def get_str(obj: JSONMap, name: str, path: str) -> str:
    """Member ``name`` as a string (``""`` when absent)."""
    value = member(obj, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _type_error(f"{path}.{name}", value, "string")
    return value


def parse_net_ip(value: JSONValue, path: str) -> IPAddress | None:
    """A ``net.IP`` JSON value: ``""``/``null`` is None, else ``net.ParseIP``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _type_error(path, value, "net.IP")
    if not value:
        return None
    try:
        return parse_ip(value)
    except IPParseError as exc:
        raise PluginError(f"{path}: {exc}", code=ErrorCode.INVALID_NETWORK_CONFIG) from None


def parse_cidr_text(value: JSONValue, path: str, go_type: str = "types.IPNet") -> IPInterface:
    """A CIDR string (``types.IPNet``/``net.ParseCIDR``), host bits kept."""
    if not isinstance(value, str):
        raise _type_error(path, value, go_type)
    try:
        return parse_cidr(value)
    except IPParseError as exc:
        raise PluginError(f"{path}: {exc}", code=ErrorCode.INVALID_NETWORK_CONFIG) from None


def parse_ip_or_cidr(text: str) -> IPAddress | None:
    """Go ``pkg/ip.ParseIP``: ``<ip>`` or ``<ip>/<prefix>``; None when invalid."""
    try:
        return parse_cidr(text).ip if "/" in text else parse_ip(text)
    except IPParseError:
        return None


def _structure(raw: JSONValue, cls: type[T], path: str) -> T:
    try:
        return structure(raw, cls)
    except ResultDecodeError as exc:
        # structure() names the field from "$"; graft it onto our path.
        raise PluginError(path + exc.msg[1:], code=ErrorCode.INVALID_NETWORK_CONFIG) from None


def get_routes(obj: JSONMap, path: str) -> tuple[Route, ...]:
    """``routes`` ([]*types.Route)."""
    items = get_list(obj, "routes", path)
    if items is None:
        return ()
    return tuple(_structure(item, Route, f"{path}.routes[{i}]") for i, item in enumerate(items))


def get_dns(obj: JSONMap, path: str) -> DNS:
    """``dns`` (types.DNS)."""
    raw = member(obj, "dns")
    if raw is None:
        return DNS()
    return _structure(raw, DNS, f"{path}.dns")


def _parse_bool(text: str) -> str | None:
    """Go ``UnmarshallableBool``: the error text, or None when valid."""
    if text.lower() in ("1", "true", "0", "false"):
        return None
    return f"boolean unmarshal error: invalid input {text.lower()}"


def load_args(
    pairs: Sequence[tuple[str, str]], fields: Mapping[str, Callable[[str], str | None]]
) -> dict[str, str]:
    """Go ``types.LoadArgs`` into a struct of ``types.CommonArgs`` plus ``fields``.

    Each field maps to a validator returning an error text (or None), as the
    field type's ``UnmarshalText``. Returns the last value of each field
    given. Unknown keys fail unless ``IgnoreUnknown`` is true.
    """
    validators: dict[str, Callable[[str], str | None]] = {"IgnoreUnknown": _parse_bool, **fields}
    values: dict[str, str] = {}
    unknown: list[str] = []
    for key, value in pairs:
        pair = f"{key}={value}"
        if "=" in value:
            raise args_error(f"ARGS: invalid pair {go_quote(pair)}")
        if key == "CommonArgs":
            raise args_error(
                "ARGS: cannot unmarshal into field 'CommonArgs' - type '*types.CommonArgs' "
                "does not implement encoding.TextUnmarshaler"
            )
        validate = validators.get(key)
        if validate is None:
            unknown.append(pair)
            continue
        problem = validate(value)
        if problem is not None:
            raise args_error(f"ARGS: error parsing value of pair {go_quote(pair)}: {problem}")
        values[key] = value
    ignore = values.pop("IgnoreUnknown", "false").lower() in ("1", "true")
    if unknown and not ignore:
        quoted = " ".join(go_quote(item) for item in unknown)
        raise args_error(f"ARGS: unknown args [{quoted}]")
    return values
