"""Network configuration: models, loaders, and the request a plugin receives."""

from cnilib._lazy import lazy_exports

# Each name is imported from its module on first use: ``cnilib list`` needs the
# loaders, not the models' attrs, the watcher's threads or the schema checks.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.config._dict import (
        conf_from_dict as conf_from_dict,
        conflist_from_dict as conflist_from_dict,
    )
    from cnilib.config._inject import (
        inject_conf as inject_conf,
        request_config as request_config,
        runtime_config_for as runtime_config_for,
    )
    from cnilib.config._load import (
        conf_files as conf_files,
        conf_from_file as conf_from_file,
        conflist_from_file as conflist_from_file,
        load_conflist as load_conflist,
        plugin_confs_from_dir as plugin_confs_from_dir,
        scan_conf_dir as scan_conf_dir,
    )
    from cnilib.config._model import (
        ConfDir as ConfDir,
        NetworkConfigList as NetworkConfigList,
        PluginConf as PluginConf,
    )
    from cnilib.config._parse import (
        MAX_CONFIG_BYTES as MAX_CONFIG_BYTES,
        MAX_PLUGINS as MAX_PLUGINS,
        conf_from_bytes as conf_from_bytes,
        conflist_from_bytes as conflist_from_bytes,
        conflist_from_conf as conflist_from_conf,
    )
    from cnilib.config._schema import (
        schema_problems as schema_problems,
        validate_conflist as validate_conflist,
    )
    from cnilib.config._watch import (
        ConfDirWatcher as ConfDirWatcher,
        awatch_conf_dir as awatch_conf_dir,
        watch_conf_dir as watch_conf_dir,
    )

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ConfDir": "cnilib.config._model",
        "ConfDirWatcher": "cnilib.config._watch",
        "MAX_CONFIG_BYTES": "cnilib.config._parse",
        "MAX_PLUGINS": "cnilib.config._parse",
        "NetworkConfigList": "cnilib.config._model",
        "PluginConf": "cnilib.config._model",
        "awatch_conf_dir": "cnilib.config._watch",
        "conf_files": "cnilib.config._load",
        "conf_from_bytes": "cnilib.config._parse",
        "conf_from_dict": "cnilib.config._dict",
        "conf_from_file": "cnilib.config._load",
        "conflist_from_bytes": "cnilib.config._parse",
        "conflist_from_conf": "cnilib.config._parse",
        "conflist_from_dict": "cnilib.config._dict",
        "conflist_from_file": "cnilib.config._load",
        "inject_conf": "cnilib.config._inject",
        "load_conflist": "cnilib.config._load",
        "plugin_confs_from_dir": "cnilib.config._load",
        "request_config": "cnilib.config._inject",
        "runtime_config_for": "cnilib.config._inject",
        "scan_conf_dir": "cnilib.config._load",
        "schema_problems": "cnilib.config._schema",
        "validate_conflist": "cnilib.config._schema",
        "watch_conf_dir": "cnilib.config._watch",
    },
)

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_PLUGINS",
    "ConfDir",
    "ConfDirWatcher",
    "NetworkConfigList",
    "PluginConf",
    "awatch_conf_dir",
    "conf_files",
    "conf_from_bytes",
    "conf_from_dict",
    "conf_from_file",
    "conflist_from_bytes",
    "conflist_from_conf",
    "conflist_from_dict",
    "conflist_from_file",
    "inject_conf",
    "load_conflist",
    "plugin_confs_from_dir",
    "request_config",
    "runtime_config_for",
    "scan_conf_dir",
    "schema_problems",
    "validate_conflist",
    "watch_conf_dir",
]
