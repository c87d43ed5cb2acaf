"""Is the runtime ready to attach containers? (go-cni ``Status()``, richer.)

A :class:`StatusReport` says which networks are loaded, whether each plugin
of each is found (by the executor: on ``CNI_PATH`` or in-process), and what
STATUS answered for the spec 1.1 lists. ``CNI.status_report`` builds one;
``CNI.ready`` raises when it is not ready. The plugin lookups are here; the
STATUS calls are made by the two drivers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from cnilib import spec
from cnilib.config import ConfDir, NetworkConfigList
from cnilib.errors import CNIError, CNIErrorGroup, ConfigError, InvalidArgumentError
from cnilib.invoke import Executor

__all__ = ["NetworkStatus", "PluginCheck", "StatusReport", "find_plugins", "networks_of"]


@attrs.frozen
class PluginCheck:
    """One plugin a network needs, and where the executor finds it."""

    plugin_type: str
    role: str
    """``"plugin"`` for an entry of the list, ``"ipam"`` for the IPAM plugin it delegates to."""
    location: str | None = None
    """The path (or the in-process pseudo-path) it would run from; ``None`` if not found."""
    error: CNIError | None = None

    @property
    def found(self) -> bool:
        """The executor can run it."""
        return self.error is None


@attrs.frozen
class NetworkStatus:
    """One network: its plugins and, for a spec 1.1 list, STATUS's answer."""

    name: str
    cni_version: str
    source: str | None
    plugins: tuple[PluginCheck, ...]
    status_checked: bool = False
    """STATUS ran: the list is 1.1.0 or later and every plugin was found."""
    status_error: CNIError | None = None

    @property
    def ready(self) -> bool:
        """Every plugin is found and STATUS (where it ran) succeeded."""
        return all(p.found for p in self.plugins) and self.status_error is None

    def errors(self) -> list[CNIError]:
        """What makes this network not ready, each prefixed with the network's name."""
        found = [p.error for p in self.plugins if p.error is not None]
        if self.status_error is not None:
            found.append(self.status_error)
        return [e.with_context(f'network "{self.name}": ') for e in found]


@attrs.frozen
class StatusReport:
    """What a runtime needs to say whether it can attach containers.

    ``networks`` in the order given (the default network first for a
    :class:`~cnilib.config.ConfDir`); ``problems`` the configuration files
    that could not be loaded; ``min_networks`` how many ready networks
    :attr:`ready` asks for (go-cni ``WithMinNetworkCount``).
    """

    networks: tuple[NetworkStatus, ...]
    problems: tuple[ConfigError, ...] = ()
    min_networks: int = 1

    @property
    def ready(self) -> bool:
        """At least ``min_networks`` networks, and every network ready."""
        return len(self.networks) >= self.min_networks and all(n.ready for n in self.networks)

    def errors(self) -> list[CNIError]:
        """Everything that makes the report not ready (empty when it is)."""
        found: list[CNIError] = []
        if len(self.networks) < self.min_networks:
            unloadable = ""
            if self.problems:
                unloadable = f"; {len(self.problems)} file(s) could not be loaded"
            found.append(
                ConfigError(
                    f"cni plugin not initialized: {len(self.networks)} network(s) loaded, "
                    f"{self.min_networks} needed{unloadable}"
                )
            )
        for network in self.networks:
            found.extend(network.errors())
        return found

    def raise_for_status(self) -> None:
        """Raise the one error, or a :class:`~cnilib.CNIErrorGroup` of several, when not ready."""
        found = self.errors()
        if len(found) == 1:
            raise found[0]
        if found:
            raise CNIErrorGroup("CNI is not ready", found)


def networks_of(
    networks: Iterable[NetworkConfigList] | ConfDir, min_networks: int
) -> tuple[tuple[NetworkConfigList, ...], tuple[ConfigError, ...]]:
    """The networks to check and the problems already known."""
    if min_networks < 0:
        raise InvalidArgumentError(f"min_networks must be 0 or more, got {min_networks}")
    if isinstance(networks, ConfDir):
        return networks.networks, networks.problems
    return tuple(networks), ()


def find_plugins(
    executor: Executor, path: Sequence[str], conflist: NetworkConfigList
) -> tuple[PluginCheck, ...]:
    """Look each plugin (and each IPAM plugin) of ``conflist`` up with ``executor.find``."""
    wanted: list[tuple[str, str]] = []
    for plugin in conflist.plugins:
        wanted.append((plugin.type, "plugin"))
        ipam = plugin.raw.get("ipam")
        if isinstance(ipam, dict) and isinstance(ipam.get("type"), str) and ipam["type"]:
            wanted.append((str(ipam["type"]), "ipam"))
    checks: list[PluginCheck] = []
    for plugin_type, role in dict.fromkeys(wanted):  # each (type, role) once, in order
        try:
            checks.append(PluginCheck(plugin_type, role, executor.find(plugin_type, path)))
        except CNIError as exc:
            checks.append(PluginCheck(plugin_type, role, None, exc))
    return tuple(checks)


def runs_status(conflist: NetworkConfigList, plugins: Sequence[PluginCheck]) -> bool:
    """STATUS is worth sending: a 1.1 list whose plugins are all there."""
    try:
        version = spec.parse_version(conflist.cni_version)
    except CNIError:
        return False
    return spec.has_status(version) and all(p.found for p in plugins)


def network_status(
    conflist: NetworkConfigList,
    plugins: tuple[PluginCheck, ...],
    checked: bool,
    error: CNIError | None,
) -> NetworkStatus:
    """Assemble one network's line of the report."""
    return NetworkStatus(
        conflist.name, conflist.cni_version, conflist.source, plugins, checked, error
    )
