"""JSON Schemas for every CNI document cnilib reads or writes, and a validator.

The schemas live in ``schemas/*.schema.json`` (draft 2020-12, ``$id`` under
``https://cnilib.dev/schemas/``) and reference each other by ``$id``; they
are resolved from the bundled files only, never fetched.

Validation reports *every* problem, not only the first::

    >>> from cnilib.schema import schema_problems
    >>> schema_problems("plugin", {"type": "a/b", "capabilities": {"mac": 1}})
    ["$.capabilities.mac: expected boolean, got number", "$.type: 'a/b' is not a valid plugin type"]

Importing this package is cheap: jsonschema is loaded on first validation.
"""

from __future__ import annotations

from cnilib.errors import ConfigValidationError
from cnilib.schema._validate import (
    SCHEMA_NAMES,
    load_schema,
    result_schema_for,
    schema_problems,
)

__all__ = [
    "SCHEMA_NAMES",
    "load_schema",
    "result_schema_for",
    "schema_problems",
    "validate",
]


def validate(name: str, instance: object, *, path: str | None = None) -> None:
    """Check ``instance`` against schema ``name``.

    Raise :class:`~cnilib.errors.ConfigValidationError` listing every
    problem (``path`` names the file the instance came from, if any), or
    :class:`ValueError` if ``name`` is not one of :data:`SCHEMA_NAMES`.
    """
    problems = schema_problems(name, instance)
    if problems:
        raise ConfigValidationError(problems, path=path)
