"""In-process reference plugins, the framework they use, and their executor.

Plugins are looked up by their CNI ``type``: cnilib's own in
:data:`BUILTIN_PLUGINS`, then those installed packages declare in the
``cnilib.plugins`` entry-point group (:data:`ENTRY_POINT_GROUP`). Each is
imported on first use, so asking for one never loads the others (nor
pyroute2, for the IPAM plugins).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnilib._lazy import lazy_exports
from cnilib.plugins._registry import (
    BUILTIN_PLUGINS as BUILTIN_PLUGINS,
    ENTRY_POINT_GROUP as ENTRY_POINT_GROUP,
    load_plugin as load_plugin,
    plugin_types as plugin_types,
    refresh as refresh_installed,
)

if TYPE_CHECKING:
    from cnilib.plugins._base import ALL_VERSIONS, BasePlugin, PluginRequest
    from cnilib.plugins._executor import InProcessExecutor

__all__ = [
    "ALL_VERSIONS",
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "BasePlugin",
    "InProcessExecutor",
    "PluginRequest",
    "load_plugin",
    "plugin_types",
    "refresh_installed",
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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
