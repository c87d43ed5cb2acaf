"""cnilib: the runtime side of the Container Network Interface, in Python.

Layout: ``config`` (load and validate network configuration), ``results``
(result models and version conversion), ``invoke`` (the executor seam and
the subprocess executor), ``cache`` (Go-compatible result cache),
``runtime`` (the verb algorithms and the ``CNI`` API), ``cli``
(``python -m cnilib``), ``testing`` (fixtures and a recording plugin).

Errors are imported eagerly (they cost nothing); everything else is loaded
on first use, so that ``python -m cnilib --help`` does not pay for attrs,
cattrs, jsonschema or pyroute2.
"""

from __future__ import annotations

from cnilib._lazy import lazy_exports
from cnilib._version import __version__ as __version__
from cnilib.errors import (
    CacheCollisionError as CacheCollisionError,
    CacheError as CacheError,
    CheckNotSupportedError as CheckNotSupportedError,
    ClosedError as ClosedError,
    CNIError as CNIError,
    CNIErrorGroup as CNIErrorGroup,
    ConfigError as ConfigError,
    ConfigNotFoundError as ConfigNotFoundError,
    ConfigValidationError as ConfigValidationError,
    ErrorCode as ErrorCode,
    ExecError as ExecError,
    GCError as GCError,
    IncompatibleVersionError as IncompatibleVersionError,
    InvalidArgumentError as InvalidArgumentError,
    LimitedConnectivityError as LimitedConnectivityError,
    LockTimeoutError as LockTimeoutError,
    NoConfigsFoundError as NoConfigsFoundError,
    OperationCancelledError as OperationCancelledError,
    PluginError as PluginError,
    PluginNotAvailableError as PluginNotAvailableError,
    PluginNotFoundError as PluginNotFoundError,
    PluginOutputError as PluginOutputError,
    PluginStartError as PluginStartError,
    PluginTimeoutError as PluginTimeoutError,
    ResultConversionError as ResultConversionError,
    ResultDecodeError as ResultDecodeError,
    RollbackOutcome as RollbackOutcome,
    TeardownError as TeardownError,
    TryAgainLaterError as TryAgainLaterError,
    ValidationGroupError as ValidationGroupError,
    VersionError as VersionError,
)

TYPE_CHECKING = False  # not typing's: importing typing costs ``--help`` milliseconds
if TYPE_CHECKING:
    from cnilib._json import (
        CapabilityArgs as CapabilityArgs,
        JSONLike as JSONLike,
        JSONObject as JSONObject,
        JSONValue as JSONValue,
    )
    from cnilib.cache import CacheEntry as CacheEntry, FileCache as FileCache
    from cnilib.config import (
        NetworkConfigList as NetworkConfigList,
        PluginConf as PluginConf,
        conf_files as conf_files,
        conf_from_bytes as conf_from_bytes,
        conf_from_dict as conf_from_dict,
        conf_from_file as conf_from_file,
        conflist_from_bytes as conflist_from_bytes,
        conflist_from_conf as conflist_from_conf,
        conflist_from_dict as conflist_from_dict,
        conflist_from_file as conflist_from_file,
        load_conflist as load_conflist,
        scan_conf_dir as scan_conf_dir,
    )
    from cnilib.invoke import (
        ChainExecutor as ChainExecutor,
        Executor as Executor,
        Invocation as Invocation,
        PluginInfo as PluginInfo,
        SubprocessExecutor as SubprocessExecutor,
    )
    from cnilib.plugins import InProcessExecutor as InProcessExecutor
    from cnilib.results import Result as Result, decode_result as decode_result
    from cnilib.runtime import (
        CNI as CNI,
        AsyncCNI as AsyncCNI,
        Attached as Attached,
        GCAttachment as GCAttachment,
        GCReport as GCReport,
        RuntimeConf as RuntimeConf,
        StatusReport as StatusReport,
    )
    from cnilib.spec import SpecVersion as SpecVersion

_LAZY: dict[str, str] = {
    "CapabilityArgs": "cnilib._json",
    "JSONLike": "cnilib._json",
    "JSONObject": "cnilib._json",
    "JSONValue": "cnilib._json",
    "CNI": "cnilib.runtime",
    "AsyncCNI": "cnilib.runtime",
    "Attached": "cnilib.runtime",
    "GCReport": "cnilib.runtime",
    "GCAttachment": "cnilib.runtime",
    "RuntimeConf": "cnilib.runtime",
    "StatusReport": "cnilib.runtime",
    "CacheEntry": "cnilib.cache",
    "FileCache": "cnilib.cache",
    "NetworkConfigList": "cnilib.config",
    "PluginConf": "cnilib.config",
    "conf_files": "cnilib.config",
    "conf_from_bytes": "cnilib.config",
    "conf_from_dict": "cnilib.config",
    "conflist_from_dict": "cnilib.config",
    "conf_from_file": "cnilib.config",
    "conflist_from_bytes": "cnilib.config",
    "conflist_from_conf": "cnilib.config",
    "conflist_from_file": "cnilib.config",
    "load_conflist": "cnilib.config",
    "scan_conf_dir": "cnilib.config",
    "ChainExecutor": "cnilib.invoke",
    "Executor": "cnilib.invoke",
    "InProcessExecutor": "cnilib.plugins",
    "Invocation": "cnilib.invoke",
    "PluginInfo": "cnilib.invoke",
    "SubprocessExecutor": "cnilib.invoke",
    "Result": "cnilib.results",
    "decode_result": "cnilib.results",
    "SpecVersion": "cnilib.spec",
}

__all__ = [
    # runtime
    "CNI",
    "AsyncCNI",
    "Attached",
    "GCReport",
    "GCAttachment",
    "RuntimeConf",
    "StatusReport",
    # configuration
    "NetworkConfigList",
    "PluginConf",
    "conf_files",
    "conf_from_bytes",
    "conf_from_dict",
    "conf_from_file",
    "conflist_from_bytes",
    "conflist_from_conf",
    "conflist_from_dict",
    "conflist_from_file",
    "load_conflist",
    "scan_conf_dir",
    # types for signatures
    "CapabilityArgs",
    "JSONLike",
    "JSONObject",
    "JSONValue",
    # results, versions, cache
    "CacheEntry",
    "FileCache",
    "Result",
    "SpecVersion",
    "decode_result",
    # executors
    "ChainExecutor",
    "Executor",
    "InProcessExecutor",
    "Invocation",
    "PluginInfo",
    "SubprocessExecutor",
    # errors
    "CNIError",
    "CNIErrorGroup",
    "CacheCollisionError",
    "LockTimeoutError",
    "CacheError",
    "CheckNotSupportedError",
    "ClosedError",
    "ConfigError",
    "ConfigNotFoundError",
    "ConfigValidationError",
    "ErrorCode",
    "ExecError",
    "GCError",
    "IncompatibleVersionError",
    "InvalidArgumentError",
    "LimitedConnectivityError",
    "NoConfigsFoundError",
    "OperationCancelledError",
    "PluginError",
    "PluginNotAvailableError",
    "PluginNotFoundError",
    "PluginOutputError",
    "PluginStartError",
    "PluginTimeoutError",
    "ResultConversionError",
    "ResultDecodeError",
    "RollbackOutcome",
    "TeardownError",
    "TryAgainLaterError",
    "ValidationGroupError",
    "VersionError",
    "__version__",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
