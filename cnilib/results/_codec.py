"""The one cattrs converter between result models and CNI wire JSON.

Python field names become wire names only through :data:`WIRE_NAMES`; every
other field's wire name is its Python name. The hooks reproduce what Go's
``encoding/json`` does to the libcni result structs:

* object keys match field names case-insensitively, the last match wins,
  unknown keys are dropped;
* ``null`` leaves a string, int or struct field at its zero value, sets a
  pointer or slice to nil, and reaches ``address``/``dst``/``ip`` as an empty
  string (``invalid CIDR address: ``);
* an empty ``gateway``/``gw`` string means no gateway;
* fields are emitted in the model's declaration order (Go's struct order),
  with ``omitempty`` fields left out when they hold their default. A field
  whose metadata holds :data:`ALWAYS_EMIT` is always written; a missing CIDR
  prints as ``<nil>``, as ``net.IPNet.String()`` does for a zero IPNet.

A problem becomes a :class:`~cnilib.errors.ResultDecodeError` naming the field
as a JSON path, e.g. ``$.ips[0].address: invalid CIDR address: foo``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from types import NoneType
from typing import Final, TypeVar, cast, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from cnilib._json import JSONObject, JSONValue
from cnilib.errors import ResultDecodeError
from cnilib.results._gotext import clean_str, json_kind
from cnilib.results._ip import IPParseError, format_cidr, format_ip, parse_cidr, parse_ip

__all__ = [
    "ALWAYS_EMIT",
    "NULL_ITEMS_ARE_ZERO",
    "WIRE_NAMES",
    "go_map_roundtrip",
    "structure",
    "unstructure",
]

T = TypeVar("T")

WIRE_NAMES: Final[Mapping[str, str]] = {
    "cni_version": "cniVersion",
    "socket_path": "socketPath",
    "pci_id": "pciID",
    "adv_mss": "advmss",
}
"""Python field name -> wire key, for every field whose names differ."""

ALWAYS_EMIT: Final[Mapping[str, bool]] = {"cnilib.always_emit": True}
"""Field metadata: the Go field has no ``omitempty``, write it even when default."""

NULL_ITEMS_ARE_ZERO: Final[Mapping[str, bool]] = {"cnilib.null_items_are_zero": True}
"""Field metadata: a Go slice of struct values, where a ``null`` item decodes as a zero struct."""

_CIDR_ARGS: Final = frozenset({IPv4Interface, IPv6Interface, NoneType})
_IP_ARGS: Final = frozenset({IPv4Address, IPv6Address, NoneType})
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


class _WireError(Exception):
    """One field's decode problem, worded as Go words it."""


def wire_name(py_name: str) -> str:
    """The wire key of a model field."""
    return WIRE_NAMES.get(py_name, py_name)


def _type_error(value: object, go_type: str) -> _WireError:
    return _WireError(f"json: cannot unmarshal {json_kind(value)} into Go value of type {go_type}")


def _go_type(cls: type) -> str:
    name: str = getattr(cls, "GO_TYPE", cls.__name__)
    return name


# --- structuring: JSON value -> model -------------------------------------------------


def _structure_str(value: object, _: object = None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return clean_str(value)
    raise _type_error(value, "string")


def _structure_int(value: object, _: object = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(value, "int")
    if isinstance(value, float) or not _INT64_MIN <= value <= _INT64_MAX:
        raise _WireError(f"json: cannot unmarshal number {value!r} into Go value of type int")
    return value


def _structure_opt_int(value: object, _: object) -> int | None:
    return None if value is None else _structure_int(value)


def _structure_cidr(value: object, _: object) -> IPv4Interface | IPv6Interface:
    # types.IPNet.UnmarshalJSON decodes into a string first, so null reads as "".
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _type_error(value, "string")
    try:
        return parse_cidr(value)
    except IPParseError as exc:
        raise _WireError(str(exc)) from None


def _structure_ip(value: object, _: object) -> IPv4Address | IPv6Address | None:
    # net.IP.UnmarshalText: empty text (and JSON null) mean "no IP".
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _type_error(value, "net.IP")
    try:
        return parse_ip(value)
    except IPParseError as exc:
        raise _WireError(str(exc)) from None


def _args_are(args: frozenset[object]) -> Callable[[object], bool]:
    return lambda t: frozenset(get_args(t)) == args


def _is_var_tuple(t: object) -> bool:
    args = get_args(t)
    return get_origin(t) is tuple and len(args) == 2 and args[1] is Ellipsis


def _optional_attrs_class(t: object) -> type | None:
    args = get_args(t)
    if len(args) == 2 and NoneType in args:
        inner = args[0] if args[1] is NoneType else args[1]
        if isinstance(inner, type) and attrs.has(inner):
            return inner
    return None


def _elem_go_type(elem: object) -> str:
    if isinstance(elem, type) and attrs.has(elem):
        return f"*{_go_type(elem)}"
    return "string" if elem is str else "int" if elem is int else str(elem)


def _make_tuple_hook(
    conv: cattrs.Converter, t: object, *, nulls_are_zero: bool = False
) -> Callable[[object, object], tuple[object, ...]]:
    elem = get_args(t)[0]
    go_type = f"[]{_elem_go_type(elem)}"
    if nulls_are_zero:
        go_type = go_type.replace("*", "")

    def hook(value: object, _: object) -> tuple[object, ...]:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            raise _type_error(value, go_type)
        items = []
        for index, item in enumerate(value):
            try:
                items.append(conv.structure({} if item is None and nulls_are_zero else item, elem))
            except Exception as exc:
                exc.add_note(IterableValidationNote(f"@ index {index}", index, elem))
                raise IterableValidationError("while structuring", [exc], tuple) from None
        return tuple(items)

    return hook


def _fold_key(key: str) -> str | None:
    # encoding/json matches keys with bytes.EqualFold; for ASCII field names
    # that is ASCII case folding plus the Kelvin sign and the long s.
    key = key.replace("\u212a", "k").replace("\u017f", "s")
    return key.lower() if key.isascii() else None


def _make_class_hook(conv: cattrs.Converter, cls: type) -> Callable[[object, object], object]:
    fields = attrs.fields(attrs.resolve_types(cls))
    overrides: dict[str, object] = {}
    by_fold: dict[str, str] = {}
    null_is_noop: set[str] = set()
    for field in fields:
        wire = wire_name(field.name)
        by_fold[wire.lower()] = wire
        ftype = field.type
        if ftype in (str, int) or (isinstance(ftype, type) and attrs.has(ftype)):
            null_is_noop.add(wire)
        struct_hook = None
        if field.metadata.get("cnilib.null_items_are_zero"):
            struct_hook = _make_tuple_hook(conv, ftype, nulls_are_zero=True)
        overrides[field.name] = override(rename=wire, struct_hook=struct_hook)
    # cattrs types **kwargs as the union of its keyword parameters, hence the ignore.
    base: Callable[[Mapping[str, object], type], object] = make_dict_structure_fn(
        cls,
        conv,
        _cattrs_forbid_extra_keys=False,
        _cattrs_use_linecache=False,
        **overrides,  # type: ignore[arg-type]
    )
    go_type = _go_type(cls)

    def hook(value: object, _: object) -> object:
        if value is None:
            raise _WireError(f"null is not accepted as a {go_type} (libcni cannot convert it)")
        if not isinstance(value, Mapping):
            raise _type_error(value, go_type)
        folded: dict[str, object] = {}
        for key, item in value.items():
            wire = by_fold.get(_fold_key(key) or "") if isinstance(key, str) else None
            if wire is None or (item is None and wire in null_is_noop):
                continue
            folded[wire] = item
        return base(folded, cls)

    return hook


def _make_optional_class_hook(
    conv: cattrs.Converter, t: object
) -> Callable[[object, object], object]:
    inner = _optional_attrs_class(t)
    assert inner is not None
    return lambda value, _: None if value is None else conv.structure(value, inner)


# --- unstructuring: model -> JSON value ------------------------------------------------


def _unstructure_cidr(value: IPv4Interface | IPv6Interface | None) -> str:
    return "<nil>" if value is None else format_cidr(value)


def _unstructure_ip(value: IPv4Address | IPv6Address | None) -> str | None:
    return None if value is None else format_ip(value)


def _make_class_unhook(conv: cattrs.Converter, cls: type) -> Callable[[object], object]:
    overrides: dict[str, object] = {
        field.name: override(
            rename=wire_name(field.name),
            omit_if_default=False if field.metadata.get("cnilib.always_emit") else None,
        )
        for field in attrs.fields(attrs.resolve_types(cls))
    }
    base: Callable[[object], dict[str, object]] = make_dict_unstructure_fn(
        cls,
        conv,
        _cattrs_omit_if_default=True,
        _cattrs_use_linecache=False,
        **overrides,  # type: ignore[arg-type]
    )
    # cattrs writes always-emitted fields before omittable ones; Go keeps struct order.
    order = [wire_name(field.name) for field in attrs.fields(cls)]

    def unhook(obj: object) -> dict[str, object]:
        encoded = base(obj)
        return {key: encoded[key] for key in order if key in encoded}

    return unhook


def _make_tuple_unhook(conv: cattrs.Converter, t: object) -> Callable[[tuple[object, ...]], object]:
    elem = get_args(t)[0]
    return lambda value: [conv.unstructure(item, elem) for item in value]


@functools.cache
def _converter() -> cattrs.Converter:
    """Build the converter on first use (no import-time work, nothing global mutated)."""
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook_func(_args_are(frozenset({int, NoneType})), _structure_opt_int)
    conv.register_structure_hook_func(_args_are(_CIDR_ARGS), _structure_cidr)
    conv.register_structure_hook_func(_args_are(_IP_ARGS), _structure_ip)
    conv.register_structure_hook_factory(_is_var_tuple, lambda t: _make_tuple_hook(conv, t))
    conv.register_structure_hook_factory(attrs.has, lambda cls: _make_class_hook(conv, cls))
    conv.register_structure_hook_factory(
        lambda t: _optional_attrs_class(t) is not None,
        lambda t: _make_optional_class_hook(conv, t),
    )
    conv.register_unstructure_hook(str, clean_str)
    conv.register_unstructure_hook_func(_args_are(_CIDR_ARGS), _unstructure_cidr)
    conv.register_unstructure_hook_func(_args_are(_IP_ARGS), _unstructure_ip)
    conv.register_unstructure_hook_factory(_is_var_tuple, lambda t: _make_tuple_unhook(conv, t))
    conv.register_unstructure_hook_factory(attrs.has, lambda cls: _make_class_unhook(conv, cls))
    return conv


def _first_problem(exc: BaseException, path: str) -> tuple[str, BaseException]:
    """The first leaf error of a cattrs error tree, with its JSON path (wire names)."""
    while isinstance(exc, ClassValidationError | IterableValidationError):
        with_notes, without = exc.group_exceptions()
        if with_notes:
            inner, note = with_notes[0]
            if isinstance(note, IterableValidationNote):
                path = f"{path}[{note.index}]"
            else:
                path = f"{path}.{wire_name(note.name)}"
            exc = inner
        else:  # pragma: no cover - every hook error carries a cattrs note
            exc = without[0]
    return path, exc


def structure(raw: object, cls: type[T]) -> T:
    """Decode a result object into ``cls``; raise :class:`ResultDecodeError` naming the field."""
    try:
        return _converter().structure(raw, cls)
    except Exception as exc:
        path, leaf = _first_problem(exc, "$")
        raise ResultDecodeError(f"{path}: {leaf}") from exc


def unstructure(obj: object) -> JSONObject:
    """Encode a model as Go's ``json.Marshal`` would lay it out (keys in struct order)."""
    return cast(JSONObject, _converter().unstructure(obj))


def go_map_roundtrip(value: JSONValue) -> JSONValue:
    """What a ``json.Marshal`` -> ``map[string]interface{}`` -> ``json.Marshal`` round trip
    does: keys sorted at every level, numbers passed through float64."""
    if isinstance(value, dict):
        return {key: go_map_roundtrip(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [go_map_roundtrip(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return int(float(value))
    return value
