"""JSON as the CNI wire speaks it: Go's encoding/json conventions.

Go's ``json.Marshal`` writes compact JSON, sorts map keys, and escapes ``<``,
``>`` and ``&`` (plus U+2028/U+2029) as ``\\u003c``-style sequences. Go's
decoder rejects ``NaN``/``Infinity``, which Python's accepts. Everything
cnilib writes for plugins or the cache goes through here so that it reads the
same as what Go libcni writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TypeAlias

__all__ = ["JSONObject", "JSONValue", "go_dumps", "loads", "loads_object"]

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
JSONObject: TypeAlias = "dict[str, JSONValue]"

_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


class JSONSyntaxError(ValueError):
    """Raised by :func:`loads` with a Go-like one-line reason."""


def _reject_constant(name: str) -> None:
    raise JSONSyntaxError(f"invalid character {name[0]!r} looking for beginning of value")


def loads(data: bytes | str) -> JSONValue:
    """Decode JSON strictly (UTF-8, no NaN/Infinity); raise :class:`JSONSyntaxError`."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONSyntaxError(f"invalid UTF-8 at byte {exc.start}") from exc
    else:
        text = data
    if not text.strip():
        raise JSONSyntaxError("unexpected end of JSON input")
    try:
        value: JSONValue = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise JSONSyntaxError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise JSONSyntaxError("exceeded max depth") from exc
    return value


def loads_object(data: bytes | str) -> JSONObject:
    """Decode JSON that must be an object."""
    value = loads(data)
    if not isinstance(value, dict):
        raise JSONSyntaxError(f"expected a JSON object, got {type_name(value)}")
    return value


def type_name(value: object) -> str:
    """The JSON type of a decoded value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def go_dumps(value: object, *, sort_keys: bool = True, indent: int | None = None) -> str:
    """Encode like Go's ``json.Marshal`` (or ``MarshalIndent`` with ``indent``).

    Maps are key-sorted as Go sorts them; pass ``sort_keys=False`` to keep an
    insertion order that mirrors a Go struct's field order.
    """
    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(
        value,
        sort_keys=sort_keys,
        separators=separators,
        indent=indent,
        ensure_ascii=False,
        allow_nan=False,
    )
    return text.translate(_GO_ESCAPES)
