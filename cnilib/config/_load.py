"""Files and directories → configuration models.

Follows Go libcni's search order (``.conflist`` first, then the deprecated
``.conf``/``.json``, each sorted by name) with one deliberate improvement: a
file that cannot be parsed does not stop the search for other networks. It
is logged, skipped, and named in the error if the network is not found.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import attrs

from cnilib._log import get_logger
from cnilib.config._model import NetworkConfigList, PluginConf
from cnilib.config._parse import conf_from_bytes, conflist_from_bytes, conflist_from_conf
from cnilib.errors import ConfigError, ConfigNotFoundError, NoConfigsFoundError
from cnilib.names import validate_network_name

__all__ = [
    "ConfDir",
    "conf_files",
    "conf_from_file",
    "conflist_from_file",
    "load_conflist",
    "plugin_confs_from_dir",
    "scan_conf_dir",
]

log = get_logger("cnilib.config")

LIST_EXTENSIONS = (".conflist",)
SINGLE_EXTENSIONS = (".conf", ".json")
ALL_EXTENSIONS = (".conf", ".conflist", ".json")


def conf_files(directory: str | os.PathLike[str], extensions: Sequence[str]) -> list[str]:
    """Paths of the files in ``directory`` whose extension is in ``extensions``.

    Sorted by file name, not recursive; a missing directory gives ``[]``
    (Go ``ConfFiles``).
    """
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name.encode())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"error reading directory: {exc.strerror}", path=str(directory)) from exc
    # Go's filepath.Ext: from the last "." (so ".conflist" alone has that
    # extension); a symlink to a directory is listed, as os.ReadDir does.
    return [
        entry.path
        for entry in entries
        if not entry.is_dir(follow_symlinks=False) and _extension(entry.name) in extensions
    ]


def _extension(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else ""


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"error reading {path}: {exc.strerror}", path=str(path)) from exc


def conf_from_file(path: str | os.PathLike[str]) -> PluginConf:
    """Load a single plugin configuration file (Go ``ConfFromFile``)."""
    return conf_from_bytes(_read(path), source=str(path))


def plugin_confs_from_dir(directory: str | os.PathLike[str], network: str) -> list[PluginConf]:
    """The 1.1 plugin subdirectory: ``<directory>/<network>/*.conf``, sorted.

    A missing or empty subdirectory gives ``[]``. A network name that is not a
    valid name is never joined into a path.
    """
    try:
        validate_network_name(network)
    except ValueError:
        return []
    subdir = os.path.join(directory, network)
    return [conf_from_file(path) for path in conf_files(subdir, (".conf",))]


def conflist_from_file(path: str | os.PathLike[str]) -> NetworkConfigList:
    """Load a ``.conflist`` file (Go ``ConfListFromFile``), merging its plugin subdirectory."""
    source = str(path)
    conflist = conflist_from_bytes(_read(path), source=source)
    if not conflist.load_only_inlined_plugins:
        extra = plugin_confs_from_dir(os.path.dirname(source), conflist.name)
        if extra:
            conflist = attrs.evolve(conflist, plugins=(*conflist.plugins, *extra))
    if not conflist.plugins:
        raise ConfigError("no plugin configs found", path=source, field="$.plugins")
    return conflist


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

    def get(self, name: str) -> NetworkConfigList | None:
        """The first network named ``name``, ``.conflist`` files before others."""
        for want_list in (True, False):
            for net in self.networks:
                is_list = (net.source or "").endswith(LIST_EXTENSIONS)
                if net.name == name and is_list == want_list:
                    return net
        return None


def _load_any(path: str) -> NetworkConfigList:
    if path.endswith(LIST_EXTENSIONS):
        return conflist_from_file(path)
    return conflist_from_conf(conf_from_file(path))


def scan_conf_dir(directory: str | os.PathLike[str]) -> ConfDir:
    """Load every configuration in ``directory``; broken files become ``problems``."""
    networks: list[NetworkConfigList] = []
    problems: list[ConfigError] = []
    for path in conf_files(directory, ALL_EXTENSIONS):
        try:
            networks.append(_load_any(path))
        except ConfigError as exc:
            log.warning("skipping unloadable network configuration: %s", exc)
            problems.append(exc)
    return ConfDir(str(directory), tuple(networks), tuple(problems))


def load_conflist(directory: str | os.PathLike[str], name: str) -> NetworkConfigList:
    """Find the network ``name`` in ``directory`` (Go ``LoadNetworkConf``).

    Unlike libcni, files that fail to parse are skipped, not fatal; if the
    network is not found they are listed in the error.
    """
    directory = str(directory)
    problems: list[ConfigError] = []
    found_any = False
    for extensions in (LIST_EXTENSIONS, SINGLE_EXTENSIONS):
        for path in conf_files(directory, extensions):
            found_any = True
            try:
                conflist = _load_any(path)
            except ConfigError as exc:
                log.warning("skipping unloadable network configuration: %s", exc)
                problems.append(exc)
                continue
            if conflist.name == name:
                return conflist
    if not found_any:
        raise NoConfigsFoundError(directory)
    error = ConfigNotFoundError(directory, name)
    if problems:
        listed = "; ".join(str(p) for p in problems)
        error.details = f"{len(problems)} file(s) could not be loaded: {listed}"
    error.problems = tuple(problems)
    raise error
