"""Network configuration: models, loaders, and the request a plugin receives."""

from cnilib.config._dict import conf_from_dict, conflist_from_dict
from cnilib.config._inject import inject_conf, request_config, runtime_config_for
from cnilib.config._load import (
    ConfDir,
    conf_files,
    conf_from_file,
    conflist_from_file,
    load_conflist,
    plugin_confs_from_dir,
    scan_conf_dir,
)
from cnilib.config._model import NetworkConfigList, PluginConf
from cnilib.config._parse import (
    MAX_CONFIG_BYTES,
    MAX_PLUGINS,
    conf_from_bytes,
    conflist_from_bytes,
    conflist_from_conf,
)
from cnilib.config._schema import schema_problems, validate_conflist
from cnilib.config._watch import ConfDirWatcher, awatch_conf_dir, watch_conf_dir

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
