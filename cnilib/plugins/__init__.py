"""In-process reference plugins, the framework they use, and their executor.

Plugins are looked up by their CNI ``type`` in :data:`BUILTIN_PLUGINS` and
imported on first use, so asking for one never loads the others (nor
pyroute2, for the IPAM plugins).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cnilib.errors import PluginNotFoundError

if TYPE_CHECKING:
    from cnilib.plugins._base import ALL_VERSIONS, BasePlugin, PluginRequest
    from cnilib.plugins._executor import InProcessExecutor

__all__ = [
    "ALL_VERSIONS",
    "BUILTIN_PLUGINS",
    "BasePlugin",
    "InProcessExecutor",
    "PluginRequest",
    "load_plugin",
]

# The framework (attrs, cattrs, the result models) and the executor load on
# first use: the executables import this package to answer VERSION and must
# not pay for them.
_LAZY = {
    "ALL_VERSIONS": "cnilib.plugins._base",
    "BasePlugin": "cnilib.plugins._base",
    "PluginRequest": "cnilib.plugins._base",
    "InProcessExecutor": "cnilib.plugins._executor",
}


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'cnilib.plugins' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


BUILTIN_PLUGINS: dict[str, str] = {
    "loopback": "cnilib.plugins.loopback:Loopback",
    "host-local": "cnilib.plugins.ipam.host_local:HostLocal",
    "static": "cnilib.plugins.ipam.static:Static",
    "bridge": "cnilib.plugins.bridge:Bridge",
    "ptp": "cnilib.plugins.ptp:Ptp",
}
"""CNI type → ``module:Class`` of cnilib's own plugins."""


def load_plugin(plugin_type: str) -> BasePlugin:
    """An instance of the built-in plugin for ``plugin_type``."""
    target = BUILTIN_PLUGINS.get(plugin_type)
    if target is None:
        raise PluginNotFoundError(f'no in-process plugin "{plugin_type}"', plugin_type=plugin_type)
    module_name, _, class_name = target.partition(":")
    try:
        plugin_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise PluginNotFoundError(
            f'in-process plugin "{plugin_type}" is not available: {exc}', plugin_type=plugin_type
        ) from exc
    plugin: BasePlugin = plugin_class()
    return plugin
