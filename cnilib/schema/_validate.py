"""Loading the bundled JSON Schemas and turning their errors into problem strings.

jsonschema and referencing cost about 60 ms to import, so they (and the
smaller ipaddress and importlib.resources) are imported inside the functions
that need them, never at module level; each validator is built once and cached.

A problem reads ``"<json path>: <message>"``. The path starts at ``$`` and
names the offending value: ``.key`` for identifier-like keys, ``['key']``
otherwise, ``[i]`` for array items. For a missing required property the path
names the property that is missing (``$.plugins[0].type``), not its parent.

Messages come from the failing keyword. Value definitions in the schemas
carry a ``title`` ("CIDR", "network name", ...), which turns pattern, format
and anyOf failures into ``'10.1.2.3/33' is not a valid CIDR``. A ``required``
inside a ``then``/``else`` branch uses that branch's ``description`` as its
message (``required when loadOnlyInlinedPlugins is true``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, cast

from cnilib._json import JSONValue, type_name

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from jsonschema import FormatChecker, ValidationError
    from jsonschema.protocols import Validator
    from referencing import Registry

__all__ = [
    "SCHEMA_BASE_URI",
    "SCHEMA_NAMES",
    "load_schema",
    "result_schema_for",
    "schema_problems",
]

SCHEMA_BASE_URI = "https://cnilib.dev/schemas/"

SCHEMA_NAMES: tuple[str, ...] = (
    "netconflist",
    "plugin",
    "result-1.x",
    "result-0.4",
    "result-0.2",
    "error",
    "version",
    "cache-entry",
)

# Spec result versions and the schema of their family. Go's create.Create
# matches the exact string, so "1" or "1.0" are unknown here as they are there.
_RESULT_SCHEMA_BY_VERSION: Mapping[str, str] = {
    "": "result-0.2",
    "0.1.0": "result-0.2",
    "0.2.0": "result-0.2",
    "0.3.0": "result-0.4",
    "0.3.1": "result-0.4",
    "0.4.0": "result-0.4",
    "1.0.0": "result-1.x",
    "1.1.0": "result-1.x",
}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PREFIX_DIGITS = re.compile(r"[0-9]+\Z")
_FORMAT_NAMES: Mapping[str, str] = {"cidr": "CIDR", "ip": "IP address"}
_SHOW_LIMIT = 60


def result_schema_for(version: str) -> str:
    """The schema name for a result whose ``cniVersion`` is ``version``.

    An empty version means 0.1.0, as in Go. Raise :class:`ValueError` for a
    version libcni has no result type for.
    """
    try:
        return _RESULT_SCHEMA_BY_VERSION[version]
    except KeyError:
        raise ValueError(f'unsupported CNI result version "{version}"') from None


# -- loading ------------------------------------------------------------------


def _schema_dir() -> Traversable:
    from importlib import resources

    return resources.files("cnilib") / "schemas"


@functools.cache
def _raw_schemas() -> dict[str, dict[str, object]]:
    """Every ``*.schema.json`` shipped with cnilib, by file stem (``plugin``)."""
    found: dict[str, dict[str, object]] = {}
    for entry in _schema_dir().iterdir():
        if not entry.name.endswith(".schema.json"):
            continue
        document = json.loads(entry.read_text(encoding="utf-8"))
        found[entry.name.removesuffix(".schema.json")] = document
    return found


def load_schema(name: str) -> dict[str, object]:
    """A deep copy of schema ``name`` as stored; raise :class:`ValueError` if unknown."""
    _check_name(name)
    copied: dict[str, object] = json.loads(json.dumps(_raw_schemas()[name]))
    return copied


def _check_name(name: str) -> None:
    if name not in SCHEMA_NAMES:
        known = ", ".join(SCHEMA_NAMES)
        raise ValueError(f"unknown schema {name!r} (known: {known})")


@functools.cache
def _registry() -> Registry:
    """All bundled schemas, addressable by their ``$id``; nothing is fetched."""
    from referencing import Registry, Resource

    resources_ = [Resource.from_contents(document) for document in _raw_schemas().values()]
    registry: Registry = Registry().with_resources(
        (str(resource.id()), resource) for resource in resources_
    )
    return registry.crawl()


@functools.cache
def _validator(name: str) -> Validator:
    from jsonschema import Draft202012Validator

    schema = _raw_schemas()[name]
    validator: Validator = Draft202012Validator(
        schema, registry=_registry(), format_checker=_format_checker()
    )
    return validator


# -- formats ------------------------------------------------------------------


def _is_ip(text: str) -> bool:
    """Go ``net.ParseIP``: IPv4 or IPv6, no zone, no prefix."""
    import ipaddress

    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_cidr(text: str) -> bool:
    """Go ``net.ParseCIDR``: ``<ip>/<decimal prefix>``, prefix within the family."""
    import ipaddress

    address, slash, bits = text.partition("/")
    if not slash or not _PREFIX_DIGITS.match(bits) or not _is_ip(address):
        return False
    return len(bits) <= 3 and int(bits) <= ipaddress.ip_address(address).max_prefixlen


def _format_checker() -> FormatChecker:
    """The standard draft 2020-12 formats plus cnilib's ``cidr`` and ``ip``."""
    from jsonschema import FormatChecker

    checker = FormatChecker()

    @checker.checks("cidr")
    def _cidr(instance: object) -> bool:
        return not isinstance(instance, str) or _is_cidr(instance)

    @checker.checks("ip")
    def _ip(instance: object) -> bool:
        return not isinstance(instance, str) or _is_ip(instance)

    return checker


# -- problems -----------------------------------------------------------------


def schema_problems(name: str, instance: object) -> list[str]:
    """Every way ``instance`` breaks schema ``name``, sorted by JSON path.

    Each problem reads ``"$.plugins[1].type: missing required property"``.
    Raise :class:`ValueError` if ``name`` is not one of :data:`SCHEMA_NAMES`.
    """
    _check_name(name)
    found: dict[tuple[tuple[tuple[int, int | str], ...], str], str] = {}
    for error in _leaf_errors(_validator(name).iter_errors(cast("JSONValue", instance))):
        segments = list(error.absolute_path)
        missing = _missing_property(error)
        if missing is not None:
            segments.append(missing)
        path = format_path(segments)
        message = _message(error)
        key = (tuple(_sort_segment(s) for s in segments), message)
        found[key] = f"{path}: {message}"
    return [found[key] for key in sorted(found)]


def format_path(segments: Sequence[int | str]) -> str:
    """``["plugins", 1, "type"]`` → ``$.plugins[1].type``; odd keys as ``['a.b']``."""
    parts = ["$"]
    for segment in segments:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif _IDENTIFIER.match(segment):
            parts.append(f".{segment}")
        else:
            escaped = segment.replace("\\", "\\\\").replace("'", "\\'")
            parts.append(f"['{escaped}']")
    return "".join(parts)


def _sort_segment(segment: int | str) -> tuple[int, int | str]:
    return (0, segment) if isinstance(segment, int) else (1, segment)


def _leaf_errors(errors: Iterator[ValidationError]) -> Iterator[ValidationError]:
    """The errors themselves; an untitled anyOf/oneOf is replaced by its branches'.

    A titled anyOf (such as "boolean ...") already says what was expected, so
    it is reported as one problem rather than one per rejected alternative.
    """
    for error in errors:
        if error.validator in ("anyOf", "oneOf") and not _title(error) and error.context:
            yield from _leaf_errors(iter(error.context))
        else:
            yield error


def _missing_property(error: ValidationError) -> str | None:
    """The key a ``required`` error is about (jsonschema only puts it in the text)."""
    if error.validator != "required" or not isinstance(error.instance, Mapping):
        return None
    wanted = error.validator_value
    if not isinstance(wanted, list):
        return None
    for key in wanted:
        if key not in error.instance and error.message == f"{key!r} is a required property":
            return str(key)
    return None


def _title(error: ValidationError) -> str | None:
    schema = error.schema
    if isinstance(schema, Mapping):
        title = schema.get("title")
        if isinstance(title, str):
            return title
    return None


def _show(value: object) -> str:
    """A short rendering of a JSON value: strings as ``'x'``, others as JSON."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if len(text) > _SHOW_LIMIT:
        text = text[: _SHOW_LIMIT - 3] + "..."
    return text


def _expected_types(value: object) -> str:
    names = [value] if isinstance(value, str) else list(value) if isinstance(value, list) else []
    return " or ".join(str(name) for name in names)


def _message(error: ValidationError) -> str:
    keyword = error.validator
    value = error.validator_value
    instance = error.instance
    title = _title(error)
    if keyword == "type":
        return f"expected {_expected_types(value)}, got {type_name(instance)}"
    if keyword == "required":
        return _required_message(error)
    if keyword in ("pattern", "format", "anyOf", "oneOf", "enum") and title:
        return f"{_show(instance)} is not a valid {title}"
    if keyword == "format":
        return f"{_show(instance)} is not a valid {_FORMAT_NAMES.get(str(value), str(value))}"
    if keyword == "pattern":
        return f"{_show(instance)} does not match {value!r}"
    if keyword == "enum" and isinstance(value, list):
        return f"{_show(instance)} is not one of {', '.join(_show(v) for v in value)}"
    if keyword == "const":
        return f"expected {_show(value)}, got {_show(instance)}"
    if keyword in ("minItems", "minLength") and value == 1:
        return "must not be empty"
    if keyword == "minItems":
        return f"must have at least {value} items"
    if keyword == "maxItems":
        return f"must have at most {value} items"
    if keyword == "minimum":
        return f"{_show(instance)} is less than the minimum of {value}"
    if keyword == "maximum":
        return f"{_show(instance)} is greater than the maximum of {value}"
    if keyword in ("anyOf", "oneOf"):
        return f"{_show(instance)} does not match any allowed form"
    return error.message


def _required_message(error: ValidationError) -> str:
    schema_path = list(error.relative_schema_path)
    schema = error.schema
    if (
        len(schema_path) >= 2
        and schema_path[-2] in ("then", "else")
        and isinstance(schema, Mapping)
        and isinstance(schema.get("description"), str)
    ):
        return str(schema["description"])
    return "missing required property"
