"""The request configuration a plugin reads on stdin (spec: "Deriving request configuration").

Injection works on a copy of the plugin's raw mapping, so every key the
runtime does not own reaches the plugin untouched. Output is compact,
key-sorted JSON, as Go's ``InjectConf`` writes it.

Deliberate choice: ``capabilities`` is passed through, as libcni does (spec
1.0 says to remove it, 1.1 says it must not be set). Plugins ignore it, and a
runtime moving from Go to cnilib sees byte-for-byte the same stdin.
"""

from __future__ import annotations

from collections.abc import Mapping

from cnilib._json import JSONObject, JSONValue, go_dumps
from cnilib.config._model import PluginConf
from cnilib.config._parse import conf_from_bytes
from cnilib.errors import ConfigError

__all__ = ["inject_conf", "request_config", "runtime_config_for"]


def runtime_config_for(plugin: PluginConf, capability_args: Mapping[str, JSONValue]) -> JSONObject:
    """The ``runtimeConfig`` a plugin gets: only the capabilities it enables."""
    return {
        cap: capability_args[cap] for cap in plugin.enabled_capabilities if cap in capability_args
    }


def request_config(
    plugin: PluginConf,
    *,
    name: str,
    cni_version: str,
    prev_result: JSONObject | None = None,
    capability_args: Mapping[str, JSONValue] | None = None,
    extra: Mapping[str, JSONValue] | None = None,
) -> bytes:
    """Build the stdin bytes for one plugin call.

    ``name`` and ``cniVersion`` always overwrite the plugin's own;
    ``prevResult`` is set only when given; ``runtimeConfig`` replaces any
    static one only when at least one enabled capability has an argument;
    ``extra`` adds verb-specific keys (GC's ``cni.dev/valid-attachments``).
    """
    request: JSONObject = dict(plugin.raw)
    request["name"] = name
    request["cniVersion"] = cni_version
    if prev_result is not None:
        request["prevResult"] = prev_result
    if capability_args:
        runtime_config = runtime_config_for(plugin, capability_args)
        if runtime_config:
            request["runtimeConfig"] = runtime_config
    if extra:
        request.update(extra)
    try:
        return go_dumps(request).encode()
    except UnicodeEncodeError as exc:  # a hand-built config; the loaders never make one
        raise ConfigError(
            f"plugin {plugin.type!r} of network {name!r}: configuration is not valid UTF-8: "
            f"{exc.reason} at {exc.object[exc.start : exc.end]!r}"
        ) from exc


def inject_conf(plugin: PluginConf, values: Mapping[str, JSONValue]) -> PluginConf:
    """A copy of ``plugin`` with top-level keys set (Go ``InjectConf``)."""
    request: JSONObject = dict(plugin.raw)
    for key, value in values.items():
        if key == "":
            raise ConfigError("keys cannot be empty")
        if value is None:
            raise ConfigError(f"key '{key}' value must not be nil")
        request[key] = value
    return conf_from_bytes(go_dumps(request).encode(), source=plugin.source)
