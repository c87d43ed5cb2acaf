"""Schema validation of a loaded network configuration list.

Loading follows libcni and stays lenient (jsonschema is not even imported);
this is the strict check a runtime or ``cnilib validate`` asks for.
"""

from __future__ import annotations

from cnilib.config._model import NetworkConfigList
from cnilib.errors import ConfigValidationError

__all__ = ["schema_problems", "validate_conflist"]


def schema_problems(conflist: NetworkConfigList) -> list[str]:
    """Every schema problem of the list and of each plugin from its subdirectory.

    Problems of the list's file are ``$.path: message``; problems of a plugin
    file from the subdirectory are prefixed with that file's path.
    """
    from cnilib import schema

    problems = schema.schema_problems("netconflist", dict(conflist.raw))
    inline = conflist.raw.get("plugins")
    inline_count = len(inline) if isinstance(inline, list) else 0
    for plugin in conflist.plugins[inline_count:]:
        problems += [
            f"{plugin.source}: {p}" for p in schema.schema_problems("plugin", dict(plugin.raw))
        ]
    return problems


def validate_conflist(conflist: NetworkConfigList) -> None:
    """Raise :class:`ConfigValidationError` listing every schema problem, if any."""
    problems = schema_problems(conflist)
    if problems:
        raise ConfigValidationError(problems, path=conflist.source)
