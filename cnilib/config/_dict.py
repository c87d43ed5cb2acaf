"""Configuration built in code: dicts → models, with exactly the checks of the byte parsers.

A dict is encoded as Go's ``json.Marshal`` would (compact, keys sorted) and
the bytes go through :func:`conflist_from_bytes` / :func:`conf_from_bytes`,
so the same rules, limits and error texts apply, and the bytes cached for
the network are what a Go runtime would cache for the same object.
"""

from __future__ import annotations

from collections.abc import Mapping

from cnilib._json import JSONLike, go_dumps, to_json_value
from cnilib.config._model import NetworkConfigList, PluginConf
from cnilib.config._parse import conf_from_bytes, conflist_from_bytes, conflist_from_conf
from cnilib.errors import ConfigError

__all__ = ["conf_from_dict", "conflist_from_dict"]


def _encode(obj: JSONLike, what: str, source: str | None) -> bytes:
    try:
        return go_dumps(to_json_value(obj)).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"error parsing {what}: not JSON: {exc}", path=source) from exc


def conf_from_dict(obj: JSONLike, *, source: str | None = None) -> PluginConf:
    """A single plugin configuration from a dict (``{"type": "bridge", ...}``).

    Checked as :func:`conf_from_bytes` checks a ``.conf`` file; ``source``
    names the configuration in errors. A value that is no JSON (a NaN, a set)
    is a :class:`~cnilib.ConfigError`.
    """
    return conf_from_bytes(_encode(obj, "configuration", source), source=source)


def conflist_from_dict(obj: JSONLike, *, source: str | None = None) -> NetworkConfigList:
    """A network configuration list from a dict, checked as :func:`conflist_from_bytes`.

    A dict without ``plugins`` but with a ``type`` is a single plugin's
    configuration and is wrapped in a list that takes its ``name`` and
    ``cniVersion`` (as a ``.conf`` file is loaded). A list that ends up with
    no plugin is refused, as :func:`conflist_from_file` refuses one: a dict has
    no plugin subdirectory to add any.
    """
    if isinstance(obj, Mapping) and "plugins" not in obj and "type" in obj:
        return conflist_from_conf(conf_from_dict(obj, source=source))
    conflist = conflist_from_bytes(_encode(obj, "configuration list", source), source=source)
    if not conflist.plugins:
        raise ConfigError("no plugin configs found", path=source, field="$.plugins")
    return conflist
