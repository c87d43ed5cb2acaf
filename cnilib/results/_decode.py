"""Decoding a plugin's or the cache's result (Go ``invoke.ExecPluginWithResult``).

The steps follow libcni: ``fixupResultVersion`` reads the output into a
``map[string]interface{}`` and, when ``cniVersion`` is absent, empty or not a
string, writes the request config's version into it and re-marshals the map;
``create.Create`` then picks the result family by that version, decodes the
bytes into the family's struct, and checks the decoded ``cniVersion``
belongs to the family.

Two Go effects of that re-marshal are reproduced: object keys are then
decoded in sorted order (which decides between keys differing only in case),
and every number has passed through float64 (so ``1.0`` is a valid ``mtu``
there, but not when the plugin's own bytes are decoded).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from cnilib._json import loads
from cnilib.errors import ResultConversionError, ResultDecodeError
from cnilib.results import v020, v040, v100
from cnilib.results._codec import structure
from cnilib.results._common import Result
from cnilib.results._gotext import go_quote, json_kind
from cnilib.spec import SpecVersion

__all__ = ["decode_result"]

_CREATORS: Final[Mapping[str, type[Result]]] = {
    version: cls
    for cls in (v020.ResultV020, v040.ResultV040, v100.ResultV100)
    for version in cls.SUPPORTED_VERSIONS
}
"""cniVersion -> result class (Go ``convert.Create``'s creator table)."""

_PREFIX: Final = "failed to unmarshal raw result: "


def _as_text(data: bytes | bytearray | memoryview) -> str:
    # Go's decoder keeps going over invalid UTF-8 inside strings, reading each
    # bad byte as U+FFFD; surrogateescape keeps one marker per byte, and the
    # codec turns every surrogate into U+FFFD.
    return bytes(data).decode("utf-8", "surrogateescape")


def _through_float64(value: int | float) -> int | float:
    """A number after Go decodes it as float64 and encodes it again."""
    number = float(value)
    if math.isinf(number) or math.isnan(number):
        raise OverflowError
    if number.is_integer() and abs(number) < 1e21:
        return int(number)
    return number


def _go_copy(root: Mapping[object, object], *, remarshal: bool) -> dict[object, object]:
    """Copy a decoded JSON object (iteratively: any depth), checking every number fits a
    float64 as Go's ``map[string]interface{}`` decode requires; with ``remarshal``,
    also apply what Go's re-marshal of that map does (sorted keys, float64 numbers)."""
    out: dict[object, object] = {}
    stack: list[tuple[object, dict[object, object] | list[object]]] = [(root, out)]
    while stack:
        src, dst = stack.pop()
        if isinstance(src, Mapping):
            items = list(src.items())
            if remarshal:
                items.sort(key=lambda kv: str(kv[0]))
        else:
            assert isinstance(src, list | tuple)
            items = list(enumerate(src))
        for key, value in items:
            new: object = value
            if isinstance(value, Mapping):
                new = {}
                stack.append((value, new))
            elif isinstance(value, list | tuple):
                new = []
                stack.append((value, new))
            elif isinstance(value, int | float) and not isinstance(value, bool):
                try:
                    converted = _through_float64(value)
                except OverflowError:
                    raise ResultDecodeError(
                        f"{_PREFIX}json: cannot unmarshal number into Go value of type float64"
                    ) from None
                if remarshal:
                    new = converted
            if isinstance(dst, dict):
                dst[key] = new
            else:
                dst.append(new)
    return out


def _load(data: object) -> Mapping[object, object]:
    """The raw result object; ``null`` reads as ``{}``."""
    if isinstance(data, bytes | bytearray | memoryview):
        data = _as_text(data)
    if isinstance(data, str):
        try:
            data = loads(data)
        except ValueError as exc:  # the JSON syntax error, or int too long to convert
            raise ResultDecodeError(f"{_PREFIX}{exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ResultDecodeError(
            f"{_PREFIX}json: cannot unmarshal {json_kind(data)} "
            "into Go value of type map[string]interface {}"
        )
    return data


def decode_result(
    data: bytes | bytearray | str | Mapping[str, object],
    *,
    default_version: str | SpecVersion = "",
) -> Result:
    """Decode a result as libcni does (never raises anything but :class:`~cnilib.errors.CNIError`).

    ``default_version`` is the request configuration's ``cniVersion``, used when
    the result has no (non-empty, string) ``cniVersion`` of its own; ``""``
    means 0.1.0. Raises :class:`~cnilib.errors.ResultDecodeError` for malformed
    JSON or fields (the message names the field as a JSON path) and
    :class:`~cnilib.errors.ResultConversionError` for an unknown version.
    """
    raw = _load(data)
    version = raw.get("cniVersion")
    remarshal = not isinstance(version, str) or version == ""
    if not isinstance(version, str) or version == "":
        version = str(default_version) or "0.1.0"
    obj = _go_copy(raw, remarshal=remarshal)
    if remarshal:
        obj["cniVersion"] = version
        obj = dict(sorted(obj.items(), key=lambda kv: str(kv[0])))
    cls = _CREATORS.get(version)
    if cls is None:
        raise ResultConversionError(
            f"unsupported CNI result version {go_quote(version)}", from_version=version
        )
    result = structure(obj, cls)
    if result.cni_version not in cls.SUPPORTED_VERSIONS:
        supported = " ".join(cls.SUPPORTED_VERSIONS)
        raise ResultDecodeError(
            f"result type supports [{supported}] but unmarshalled CNIVersion is "
            f"{go_quote(result.cni_version)}"
        )
    return result
