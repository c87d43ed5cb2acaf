"""Parsed network configuration: a list of plugins and each plugin's raw mapping.

The parsed fields are what the runtime needs to decide things (names,
versions, flags, capabilities); the raw mapping and bytes are kept so that
plugin-specific keys reach the plugin untouched and the cache stores exactly
the bytes that were loaded, as Go libcni does.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from cnilib._json import JSONValue
from cnilib.errors import ConfigError

__all__ = ["ConfDir", "NetworkConfigList", "PluginConf"]


@attrs.frozen
class PluginConf:
    """One plugin's configuration (Go ``PluginConfig``).

    ``raw`` is the decoded JSON object; ``bytes`` is what Go would hold in
    ``PluginConfig.Bytes``: the file's bytes for a single ``.conf``, compact
    key-sorted JSON for an entry of a list.
    """

    type: str
    raw: Mapping[str, JSONValue] = attrs.field(repr=False)
    bytes: bytes = attrs.field(repr=False)
    name: str | None = None
    """The entry's own ``name`` key, if it has one (used in error texts)."""
    cni_version: str | None = None
    """The entry's own ``cniVersion`` key (only meaningful for a single ``.conf``)."""
    capabilities: Mapping[str, bool] = attrs.field(factory=dict)
    source: str | None = None
    """The file this plugin came from, for error messages."""

    @property
    def enabled_capabilities(self) -> tuple[str, ...]:
        """Capability names set to ``true``, in declaration order."""
        return tuple(k for k, v in self.capabilities.items() if v)


@attrs.frozen
class NetworkConfigList:
    """A network configuration list (Go ``NetworkConfigList``).

    ``cni_version`` is the *selected* version (the highest supported one when
    ``cniVersions`` is present), which is what plugins receive.
    """

    name: str
    cni_version: str
    plugins: tuple[PluginConf, ...]
    bytes: bytes = attrs.field(repr=False)
    disable_check: bool = False
    disable_gc: bool = False
    load_only_inlined_plugins: bool = False
    cni_versions: tuple[str, ...] = ()
    raw: Mapping[str, JSONValue] = attrs.field(factory=dict, repr=False)
    source: str | None = None
    """The file the list was loaded from, for error messages."""

    @property
    def capabilities(self) -> tuple[str, ...]:
        """Every capability enabled by some plugin, de-duplicated, in order."""
        seen: dict[str, None] = {}
        for plugin in self.plugins:
            for cap in plugin.enabled_capabilities:
                seen.setdefault(cap, None)
        return tuple(seen)


@attrs.frozen
class ConfDir:
    """Everything found in a configuration directory.

    ``networks`` is in the order runtimes use to pick a default network (all
    extensions, sorted by file name, as containerd and kubelet do);
    ``problems`` are the files that could not be loaded.
    """

    directory: str
    networks: tuple[NetworkConfigList, ...]
    problems: tuple[ConfigError, ...]

    @property
    def default(self) -> NetworkConfigList | None:
        """The default network: the first file, in file-name order, that loads
        (containerd's and go-cni's convention); ``None`` if none does."""
        return self.networks[0] if self.networks else None

    def get(self, name: str) -> NetworkConfigList | None:
        """The first network named ``name``, ``.conflist`` files before others."""
        from cnilib.config._load import LIST_EXTENSIONS

        for want_list in (True, False):
            for net in self.networks:
                is_list = (net.source or "").endswith(LIST_EXTENSIONS)
                if net.name == name and is_list == want_list:
                    return net
        return None
