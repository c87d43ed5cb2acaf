"""JSON as the CNI wire speaks it: Go's encoding/json conventions.

Go's ``json.Marshal`` writes compact JSON, sorts map keys, and escapes ``<``,
``>`` and ``&`` (plus U+2028/U+2029) as ``\\u003c``-style sequences. Go's
decoder rejects ``NaN``/``Infinity``, which Python's accepts. Everything
cnilib writes for plugins or the cache goes through here so that it reads the
same as what Go libcni writes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TypeAlias

__all__ = [
    "CapabilityArgs",
    "JSONLike",
    "JSONObject",
    "JSONValue",
    "go_dumps",
    "go_text",
    "loads",
    "loads_object",
    "to_json_value",
]

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
"""A decoded JSON value, as :func:`json.loads` returns it (what cnilib hands back)."""

JSONObject: TypeAlias = "dict[str, JSONValue]"
"""A decoded JSON object."""

JSONLike: TypeAlias = (
    "bool | int | float | str | Sequence[JSONLike] | Mapping[str, JSONLike] | None"
)
"""Anything shaped like JSON, read-only (what cnilib accepts from a caller).

``Sequence`` and ``Mapping`` are covariant, so a ``dict[str, list[dict[str, int]]]``
built without annotations is accepted, as is a :data:`JSONValue`; tuples and
other mappings are copied into lists and dicts on the way in.
"""

CapabilityArgs: TypeAlias = "Mapping[str, JSONLike]"
"""Capability arguments (``runtimeConfig`` by capability name), as a caller passes them."""

_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


class JSONSyntaxError(ValueError):
    """Raised by :func:`loads` with a Go-like one-line reason."""


def _reject_constant(name: str) -> None:
    raise JSONSyntaxError(f"invalid character {name[0]!r} looking for beginning of value")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        # Go: "cannot unmarshal number 1e400 into Go value of type float64".
        raise JSONSyntaxError(f"number {text} is out of range")
    return value


def _replace_lone_surrogates(value: JSONValue) -> JSONValue:
    """Go decodes an unpaired ``\\udXXX`` escape as U+FFFD; Python keeps an
    unencodable surrogate. Only called when the text has such an escape."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_replace_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {
            str(_replace_lone_surrogates(k)): _replace_lone_surrogates(v) for k, v in value.items()
        }
    return value


# Each byte that ``surrogateescape`` could not decode, as Go's decoder sees it.
_INVALID_BYTES = dict.fromkeys(range(0xDC80, 0xDD00), "\ufffd")


def go_text(data: bytes) -> str:
    """Decode UTF-8 the way Go's ``encoding/json`` reads string contents:
    every invalid byte becomes one U+FFFD (``utf8.DecodeRune`` reports a
    size-1 ``RuneError``), where Python's ``errors="replace"`` would fold a
    truncated sequence into one. Valid text is unchanged.

    An invalid byte outside a string stays an error: U+FFFD is no JSON token.
    """
    return data.decode("utf-8", "surrogateescape").translate(_INVALID_BYTES)


def loads(data: bytes | str) -> JSONValue:
    """Decode JSON strictly, as Go does; raise :class:`JSONSyntaxError`.

    UTF-8 only, no NaN/Infinity, no numbers beyond float64, unpaired
    surrogate escapes become U+FFFD.
    """
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
        value: JSONValue = json.loads(
            text, parse_constant=_reject_constant, parse_float=_finite_float
        )
    except json.JSONDecodeError as exc:
        raise JSONSyntaxError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise JSONSyntaxError("exceeded max depth") from exc
    except JSONSyntaxError:
        raise
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise JSONSyntaxError(f"invalid number: {exc}") from exc
    if "\\ud" in text or "\\uD" in text:
        value = _replace_lone_surrogates(value)
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
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def to_json_value(value: JSONLike) -> JSONValue:
    """A deep copy of ``value`` made of dicts and lists only, as :func:`loads` would give.

    Values of any other type are kept as they are, for the caller's JSON check
    (:func:`go_dumps`) to refuse. A structure nested past Python's recursion
    limit (or containing itself) raises :class:`RecursionError`.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {key: to_json_value(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        given: object = value  # bytes are a Sequence too, but no JSON: kept for the check
        if isinstance(given, bytes | bytearray):
            return value  # type: ignore[return-value]
        return [to_json_value(item) for item in value]
    return value


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
