"""Files and directories → configuration models.

Follows Go libcni's search order (``.conflist`` first, then the deprecated
``.conf``/``.json``, each sorted by name) with one deliberate improvement: a
file that cannot be parsed does not stop the search for other networks. It
is logged, skipped, and named in the error if the network is not found.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from cnilib.config._parse import (
    MAX_CONFIG_BYTES,
    PlainConfList,
    PlainPluginConf,
    check_plugin_count,
    check_size,
    conflist_from_conf,
    plain_conf_from_bytes,
    plain_conflist_from_bytes,
    plain_conflist_from_conf,
    to_conflist,
    to_plugin_conf,
)
from cnilib.errors import (
    ConfigError,
    ConfigNotFoundError,
    InvalidArgumentError,
    NoConfigsFoundError,
)
from cnilib.names import validate_network_name

# Neither attrs (the models) nor logging is imported here: ``cnilib list`` reads
# plain records (see _parse) and logs nothing, and both cost it start-up time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.config._model import ConfDir, NetworkConfigList, PluginConf

__all__ = [
    "ConfDir",
    "conf_files",
    "conf_from_file",
    "conflist_from_file",
    "load_conflist",
    "plugin_confs_from_dir",
    "scan_conf_dir",
]


def _warn_unloadable(problem: ConfigError) -> None:
    from cnilib._log import get_logger

    get_logger("cnilib.config").warning("skipping unloadable network configuration: %s", problem)


def __getattr__(name: str) -> object:
    """``ConfDir`` where it used to be defined (it lives with the other models now)."""
    if name == "ConfDir":
        from cnilib.config._model import ConfDir

        return ConfDir
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


LIST_EXTENSIONS = (".conflist",)
SINGLE_EXTENSIONS = (".conf", ".json")
ALL_EXTENSIONS = (".conf", ".conflist", ".json")


def conf_files(directory: str | os.PathLike[str], extensions: Sequence[str]) -> list[str]:
    """Paths of the files in ``directory`` whose extension is in ``extensions``.

    Sorted by file name, not recursive; a missing directory gives ``[]``
    (Go ``ConfFiles``).
    """
    try:
        entries = sorted(os.scandir(directory), key=lambda e: os.fsencode(e.name))
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


def read_conf_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a configuration file: a regular file of at most
    :data:`MAX_CONFIG_BYTES` bytes, checked before anything is read.

    A FIFO or a device is refused without blocking: it is opened (if the
    first ``stat`` did not already refuse it) with ``O_NONBLOCK``, and ``fstat``
    on the open file decides.
    """
    where = str(path)

    def not_regular() -> ConfigError:
        return ConfigError(f"error reading {where}: not a regular file", path=where)

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise not_regular()
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with open(fd, "rb") as handle:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise not_regular()
            check_size(info.st_size, where, "file")
            # The file may grow after fstat: read one byte past the limit to tell.
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"error reading {where}: {exc.strerror}", path=where) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"file is more than the limit of {MAX_CONFIG_BYTES} bytes", path=where)
    return data


def conf_from_file(path: str | os.PathLike[str]) -> PluginConf:
    """Load a single plugin configuration file (Go ``ConfFromFile``)."""
    return to_plugin_conf(plain_conf_from_file(path))


def plain_conf_from_file(path: str | os.PathLike[str]) -> PlainPluginConf:
    """:func:`conf_from_file`, as a plain record."""
    return plain_conf_from_bytes(read_conf_file(path), source=str(path))


def plugin_confs_from_dir(directory: str | os.PathLike[str], network: str) -> list[PluginConf]:
    """The 1.1 plugin subdirectory: ``<directory>/<network>/*.conf``, sorted.

    A missing or empty subdirectory gives ``[]``. A network name that is not a
    valid name is never joined into a path.
    """
    paths = _subdir_paths(directory, network)
    check_plugin_count(len(paths), os.path.join(directory, network))
    return [conf_from_file(path) for path in paths]


def _subdir_paths(directory: str | os.PathLike[str], network: str) -> list[str]:
    try:
        validate_network_name(network)
    except ValueError:
        return []
    return conf_files(os.path.join(directory, network), (".conf",))


def conflist_from_file(path: str | os.PathLike[str]) -> NetworkConfigList:
    """Load a ``.conflist`` file (Go ``ConfListFromFile``), merging its plugin subdirectory."""
    plain = plain_conflist_from_file(path)
    return to_conflist(plain)


def plain_conflist_from_file(path: str | os.PathLike[str]) -> PlainConfList:
    """:func:`conflist_from_file`, as a plain record."""
    source = str(path)
    conflist = plain_conflist_from_bytes(read_conf_file(path), source=source)
    if not conflist.load_only_inlined_plugins:
        directory = os.path.dirname(source)
        # Counted before any subdirectory file is read.
        paths = _subdir_paths(directory, conflist.name)
        inline = len(conflist.plugins)
        detail = f" ({inline} inline, {len(paths)} in {os.path.join(directory, conflist.name)})"
        check_plugin_count(inline + len(paths), source, detail)
        extra = [plain_conf_from_file(path) for path in paths]
        if extra:
            conflist.plugins = (*conflist.plugins, *extra)
    if not conflist.plugins:
        raise ConfigError("no plugin configs found", path=source, field="$.plugins")
    return conflist


def invalid_name_reason(name: str) -> str | None:
    """Why ``name`` is not a valid network name (the spec's rules), or ``None``."""
    try:
        validate_network_name(name)
    except InvalidArgumentError as exc:
        return exc.msg.rstrip(":")
    return None


def network_name_error(conflist: NetworkConfigList | PlainConfList) -> ConfigError | None:
    """The error for a network whose name breaks the spec's rules, else ``None``.

    The parsers accept any string as Go's do (libcni checks the name only at
    ADD); this lets the loaders say which file and field are at fault.
    """
    reason = invalid_name_reason(conflist.name)
    if reason is None:
        return None
    return ConfigError(
        f'invalid network name "{conflist.name}": {reason}', path=conflist.source, field="$.name"
    )


def _load_any(path: str) -> NetworkConfigList:
    if path.endswith(LIST_EXTENSIONS):
        return conflist_from_file(path)
    return conflist_from_conf(conf_from_file(path))


def plain_load_any(path: str) -> PlainConfList:
    """The network of a ``.conflist``, ``.conf`` or ``.json`` file, as a plain record."""
    if path.endswith(LIST_EXTENSIONS):
        return plain_conflist_from_file(path)
    return plain_conflist_from_conf(plain_conf_from_file(path))


def scan_conf_dir(directory: str | os.PathLike[str], *, max_networks: int | None = None) -> ConfDir:
    """Load the configurations in ``directory``; broken files become ``problems``.

    Files are read in file-name order (``.conf``, ``.conflist`` and ``.json``
    together), as containerd reads them. ``max_networks`` stops after that
    many networks have loaded: ``1`` loads only the default network
    (containerd's ``max_conf_num`` default); ``None`` or ``0`` loads all. A
    file that cannot be loaded, or whose network name breaks the spec's
    rules, is logged at WARNING and listed in ``problems``; it never hides
    the files after it.
    """
    if max_networks is not None and max_networks < 0:
        raise InvalidArgumentError(f"max_networks must be 0 or more, got {max_networks}")
    networks: list[NetworkConfigList] = []
    problems: list[ConfigError] = []
    for path in conf_files(directory, ALL_EXTENSIONS):
        if max_networks and len(networks) >= max_networks:
            break
        try:
            conflist = _load_any(path)
            error = network_name_error(conflist)
            if error is not None:
                raise error
        except ConfigError as exc:
            _warn_unloadable(exc)
            problems.append(exc)
            continue
        networks.append(conflist)
    from cnilib.config._model import ConfDir

    return ConfDir(str(directory), tuple(networks), tuple(problems))


def load_conflist(directory: str | os.PathLike[str], name: str) -> NetworkConfigList:
    """Find the network ``name`` in ``directory`` (Go ``LoadNetworkConf``).

    Unlike libcni, files that fail to parse are skipped, not fatal; if the
    network is not found they are listed in the error. A network found under
    a name that is not a valid network name (``../x``, control characters) is
    a :class:`ConfigError` naming its file and ``$.name``.
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
                _warn_unloadable(exc)
                problems.append(exc)
                continue
            if conflist.name == name:
                error = network_name_error(conflist)
                if error is not None:
                    raise error
                return conflist
    if not found_any:
        raise NoConfigsFoundError(directory)
    error = ConfigNotFoundError(directory, name)
    if problems:
        listed = "; ".join(str(p) for p in problems)
        error.details = f"{len(problems)} file(s) could not be loaded: {listed}"
    error.problems = tuple(problems)
    raise error
