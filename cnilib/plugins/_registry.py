"""Which in-process plugin serves a CNI ``type``: cnilib's own, or one that an
installed package declares in the ``cnilib.plugins`` entry-point group.

A package makes its plugin available by declaring, in its ``pyproject.toml``::

    [project.entry-points."cnilib.plugins"]
    my-plugin = "my_package.plugin:MyPlugin"

The entry point's name is the CNI ``type``; its object is a
:class:`~cnilib.plugins.BasePlugin` subclass (instantiated with no
arguments) or an instance. Nothing here imports a plugin, nor scans the
installed packages, until a type that is not built in is asked for.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING

from cnilib.errors import PluginNotFoundError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from cnilib.plugins._base import BasePlugin

__all__ = ["BUILTIN_PLUGINS", "ENTRY_POINT_GROUP", "load_plugin", "plugin_types"]

ENTRY_POINT_GROUP = "cnilib.plugins"
"""The entry-point group installed packages declare their plugins in."""

BUILTIN_PLUGINS: dict[str, str] = {
    "loopback": "cnilib.plugins.main.loopback:Loopback",
    "host-local": "cnilib.plugins.ipam.host_local:HostLocal",
    "static": "cnilib.plugins.ipam.static:Static",
    "dhcp": "cnilib.plugins.ipam.dhcp.dhcp:Dhcp",
    "bridge": "cnilib.plugins.main.bridge:Bridge",
    "ptp": "cnilib.plugins.main.ptp:Ptp",
    "macvlan": "cnilib.plugins.main.macvlan:Macvlan",
    "ipvlan": "cnilib.plugins.main.ipvlan:Ipvlan",
    "vlan": "cnilib.plugins.main.vlan:Vlan",
    "dummy": "cnilib.plugins.main.dummy:Dummy",
    "host-device": "cnilib.plugins.main.host_device:HostDevice",
    "tuning": "cnilib.plugins.meta.tuning:Tuning",
    "portmap": "cnilib.plugins.meta.portmap:Portmap",
    "bandwidth": "cnilib.plugins.meta.bandwidth:Bandwidth",
    "firewall": "cnilib.plugins.meta.firewall:Firewall",
    "sbr": "cnilib.plugins.meta.sbr:Sbr",
    "overlay": "cnilib.plugins.main.overlay:Overlay",
}
"""CNI type → ``module:Class`` of cnilib's own plugins."""

BUILTIN_ORIGIN = "cnilib"


@functools.cache
def _installed() -> dict[str, list[tuple[EntryPoint, str]]]:
    """Every entry point of the group with its origin, by name (a name two packages
    declare has two). Built-in types are reserved: an entry point of that name is
    ignored, whether or not the built-ins are in use."""
    from importlib.metadata import entry_points

    found: dict[str, list[tuple[EntryPoint, str]]] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in BUILTIN_PLUGINS:
            # The origin reads the distribution's metadata: once, here.
            found.setdefault(entry.name, []).append((entry, _origin(entry)))
    return found


def refresh() -> None:
    """Forget the scan of installed packages (after installing one at run time)."""
    _installed.cache_clear()


def _origin(entry: EntryPoint) -> str:
    dist = entry.dist
    return f"{dist.name} {dist.version}" if dist is not None else entry.value


def plugin_types(*, builtins: bool = True, installed: bool = True) -> dict[str, str]:
    """Every plugin type that can run in-process → where it comes from.

    ``"cnilib"`` for a built-in plugin, else the declaring distribution and
    its version (``"cni-plugin-dns 1.0"``). The built-in types are reserved:
    an entry point named like one is ignored, also with ``builtins=False``,
    so installing a package never replaces cnilib's ``bridge`` behind the
    user's back (pass the plugin to :class:`~cnilib.plugins.InProcessExecutor`
    to do that on purpose).
    """
    types: dict[str, str] = {}
    if installed:
        for name, entries in _installed().items():
            types[name] = ", ".join(origin for _, origin in entries)
    if builtins:
        types.update(dict.fromkeys(BUILTIN_PLUGINS, BUILTIN_ORIGIN))
    return dict(sorted(types.items()))


def load_plugin(plugin_type: str, *, builtins: bool = True, installed: bool = True) -> BasePlugin:
    """A new instance of the in-process plugin for ``plugin_type``.

    Raises :class:`cnilib.PluginNotFoundError` when there is none, when two
    installed packages declare the type, or when its entry point cannot be
    loaded or is not a plugin; the message names the package.
    """
    target = BUILTIN_PLUGINS.get(plugin_type) if builtins else None
    if target is not None:
        module_name, _, class_name = target.partition(":")
        try:
            found: object = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise PluginNotFoundError(
                f'in-process plugin "{plugin_type}" is not available: {exc}',
                plugin_type=plugin_type,
            ) from exc
        return _instance(plugin_type, found, BUILTIN_ORIGIN)
    entries = _installed().get(plugin_type, []) if installed else []
    if not entries:
        raise PluginNotFoundError(f'no in-process plugin "{plugin_type}"', plugin_type=plugin_type)
    if len(entries) > 1:
        origins = " and ".join(origin for _, origin in entries)
        raise PluginNotFoundError(
            f'in-process plugin "{plugin_type}" is declared by {origins}: '
            "uninstall one, or pass the plugin to the executor",
            plugin_type=plugin_type,
        )
    entry, origin = entries[0]
    where = f"{origin}, entry point {entry.value!r}"
    try:
        found = entry.load()
    except Exception as exc:  # a broken package: any error its import raises
        raise PluginNotFoundError(
            f'in-process plugin "{plugin_type}" ({where}) could not be loaded: '
            f"{type(exc).__name__}: {exc}",
            plugin_type=plugin_type,
        ) from exc
    return _instance(plugin_type, found, where)


def _instance(plugin_type: str, found: object, origin: str) -> BasePlugin:
    from cnilib.plugins._base import BasePlugin

    if isinstance(found, type) and issubclass(found, BasePlugin):
        try:
            return found()
        except Exception as exc:  # the plugin's own constructor failed
            raise PluginNotFoundError(
                f'in-process plugin "{plugin_type}" ({origin}) could not be created: '
                f"{type(exc).__name__}: {exc}",
                plugin_type=plugin_type,
            ) from exc
    if isinstance(found, BasePlugin):
        return found
    raise PluginNotFoundError(
        f'in-process plugin "{plugin_type}" ({origin}) is {type(found).__name__}, '
        "not a cnilib.plugins.BasePlugin subclass or instance",
        plugin_type=plugin_type,
    )
