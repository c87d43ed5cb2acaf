"""Every error cnilib raises.

::

    CNIError                                  base; .code .msg .details (the spec's error object)
    ├── InvalidArgumentError (+ ValueError)   bad container ID, network, ifname, CNI_ARGS
    ├── ClosedError (+ RuntimeError)          a CNI, AsyncCNI or executor used after close()
    ├── ConfigError                           loading/parsing network configuration (.path .field)
    │   ├── ConfigNotFoundError (+ FileNotFoundError)   .directory .name
    │   ├── NoConfigsFoundError                         .directory
    │   └── ConfigValidationError (+ ValueError)        .problems: every problem, with path
    ├── VersionError                          spec code 1
    │   ├── IncompatibleVersionError          a plugin does not support the config's version
    │   ├── CheckNotSupportedError            CHECK asked of a config version below 0.4.0
    │   └── ResultConversionError             a result cannot be expressed in the wanted version
    ├── ResultDecodeError (+ ValueError)      plugin or cache result JSON is malformed (code 6)
    ├── ExecError                             a plugin could not be run or understood
    │   ├── PluginNotFoundError (+ FileNotFoundError)   .plugin_type .search_path
    │   ├── PluginStartError                  fork/exec failed: the plugin never ran
    │   ├── PluginOutputError                 failed without a decodable error object
    │   ├── PluginTimeoutError (+ TimeoutError)         .elapsed
    │   └── OperationCancelledError           an asyncio call was cancelled (ADD rolls back)
    ├── PluginError                           the plugin answered with a CNI error object
    │   ├── TryAgainLaterError                code 11
    │   ├── PluginNotAvailableError           code 50 (STATUS)
    │   └── LimitedConnectivityError          code 51 (STATUS)
    ├── CacheError                            unreadable or corrupt cache entry; .path
    │   ├── CacheCollisionError               the entry's file holds another attachment
    │   └── LockTimeoutError (+ TimeoutError) still locked at the deadline (code 11); .holder
    └── CNIErrorGroup (+ ExceptionGroup)      several independent failures
        ├── GCError                           stale DELs and plugin GCs that failed
        ├── TeardownError                     networks of a multi-network teardown that failed
        └── ValidationGroupError              validate_network_list found several problems

Every error can add context without losing its type or code: the runtime
wraps chain failures as ``plugin type="bridge" failed (add): <original>``,
exactly as Go libcni words them, through :meth:`CNIError.with_context`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

# Neither typing nor json at import time: every command of the CLI, ``--help``
# too, imports this module, and they are a third of its start-up cost.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "CNIError",
    "CacheCollisionError",
    "CacheError",
    "CheckNotSupportedError",
    "ConfigError",
    "ConfigNotFoundError",
    "ConfigValidationError",
    "ErrorCode",
    "ExecError",
    "CNIErrorGroup",
    "GCError",
    "IncompatibleVersionError",
    "InvalidArgumentError",
    "LimitedConnectivityError",
    "LockTimeoutError",
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
    "error_from_object",
]


class ErrorCode(enum.IntEnum):
    """The well-known CNI error codes (spec table; 0, 8 and 999 are Go libcni's)."""

    UNKNOWN = 0
    INCOMPATIBLE_CNI_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENVIRONMENT_VARIABLES = 4
    IO_FAILURE = 5
    DECODING_FAILURE = 6
    INVALID_NETWORK_CONFIG = 7
    INVALID_NETNS = 8
    TRY_AGAIN_LATER = 11
    PLUGIN_NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51
    INTERNAL = 999


def _code(value: int) -> int:
    """Well-known codes become ErrorCode members; plugin-specific ones stay ints."""
    try:
        return ErrorCode(value)
    except ValueError:
        return value


class RollbackOutcome:
    """What cnilib did to undo a failed ADD (transactional ADD).

    ``deleted`` names the plugins that got DEL and succeeded, in the order
    they ran; ``failures`` holds each DEL that failed. An ADD whose rollback
    is ``clean`` left nothing behind, not even a cache entry; otherwise the
    entry is kept (marked pending) so that a later DEL or GC can finish the job.
    """

    __slots__ = ("deleted", "failures")

    def __init__(self, deleted: Sequence[str] = (), failures: Sequence[CNIError] = ()) -> None:
        self.deleted = tuple(deleted)
        self.failures = tuple(failures)

    @property
    def clean(self) -> bool:
        """Every DEL of the rollback succeeded."""
        return not self.failures

    def __repr__(self) -> str:
        return f"RollbackOutcome(deleted={self.deleted!r}, failures={self.failures!r})"

    def describe(self) -> str:
        """One line for an error note."""
        done = ", ".join(self.deleted) or "nothing to undo"
        if self.clean:
            return f"rolled back: DEL {done}"
        failed = "; ".join(str(f) for f in self.failures)
        return f"rollback incomplete (DEL done: {done}); failed: {failed}"


class CNIError(Exception):
    """Base of everything cnilib raises.

    Mirrors the spec's error object: ``code`` (an :class:`ErrorCode` or a
    plugin-specific int >= 100), ``msg`` and ``details``. ``str(err)`` reads
    like Go's ``types.Error``: ``msg`` or ``msg; details``, after any context
    prefixes added by :meth:`with_context`.
    """

    default_code: int = ErrorCode.UNKNOWN
    rollback: RollbackOutcome | None = None
    """Set on an ADD failure when cnilib rolled the chain back (see :class:`RollbackOutcome`)."""

    def __init__(self, msg: str, *, code: int | None = None, details: str = "") -> None:
        self.msg = msg
        self.code: int = _code(self.default_code if code is None else code)
        self.details = details
        self.context: tuple[str, ...] = ()
        super().__init__(msg)

    def __str__(self) -> str:
        text = self.msg if not self.details else f"{self.msg}; {self.details}"
        return "".join(self.context) + text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={int(self.code)}, msg={self.msg!r})"

    def with_context(self, prefix: str) -> Self:
        """A copy of this error whose text starts with ``prefix`` (type and code kept)."""
        # Not copy.copy: that re-runs __init__ with args, and subclasses take keywords.
        clone = type(self).__new__(type(self), *self.args)
        clone.__dict__.update(self.__dict__)
        clone.args = self.args
        clone.context = (prefix, *self.context)
        clone.__cause__ = self.__cause__
        return clone

    def to_object(self, cni_version: str | None = None) -> dict[str, object]:
        """The spec's error object; ``msg`` carries the context prefixes."""
        obj: dict[str, object] = {}
        if cni_version is not None:
            obj["cniVersion"] = cni_version
        obj["code"] = int(self.code)
        obj["msg"] = "".join(self.context) + self.msg
        if self.details:
            obj["details"] = self.details
        return obj

    def to_json(self, cni_version: str | None = None) -> str:
        """The error object as a plugin prints it (4-space indent, like skel)."""
        import json

        return json.dumps(self.to_object(cni_version), indent=4)


class InvalidArgumentError(CNIError, ValueError):
    """A runtime argument is invalid: container ID, network name, interface
    name, CNI_ARGS or capability arguments. Raised before any plugin runs."""

    default_code = ErrorCode.INVALID_ENVIRONMENT_VARIABLES


class ClosedError(CNIError, RuntimeError):
    """A :class:`cnilib.CNI`, :class:`cnilib.AsyncCNI` or in-process executor was
    used after ``close()``. Nothing was done."""


class ConfigError(CNIError):
    """Network configuration could not be loaded or is malformed.

    ``path`` names the file when the config came from one, ``field`` the
    offending key as a JSON path (``$.plugins[1].type``).
    """

    default_code = ErrorCode.INVALID_NETWORK_CONFIG

    def __init__(
        self,
        msg: str,
        *,
        path: str | None = None,
        field: str | None = None,
        code: int | None = None,
        details: str = "",
    ) -> None:
        self.path = path
        self.field = field
        text = msg
        if field is not None:
            text = f"{text} (at {field})"
        if path is not None:
            text = f"{path}: {text}"
        super().__init__(text, code=code, details=details)


class ConfigNotFoundError(ConfigError, FileNotFoundError):
    """No configuration in ``directory`` has the network ``name`` (Go ``NotFoundError``)."""

    def __init__(self, directory: str, name: str) -> None:
        self.directory = directory
        self.name = name
        self.problems: tuple[ConfigError, ...] = ()
        """Files in ``directory`` that could not be loaded (so may have held ``name``)."""
        ConfigError.__init__(self, f'no net configuration with name "{name}" in {directory}')


class NoConfigsFoundError(ConfigError):
    """``directory`` holds no configuration file at all (Go ``NoConfigsFoundError``)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        super().__init__(f"no net configurations found in {directory}")


class ConfigValidationError(ConfigError, ValueError):
    """A configuration failed its JSON Schema; ``problems`` lists every one,
    each as ``"$.path: message"``, not just the first."""

    def __init__(self, problems: Sequence[str], *, path: str | None = None) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        summary = f"{count} {noun}: " + "; ".join(self.problems)
        super().__init__(summary, path=path)


class VersionError(CNIError):
    """A CNI spec version is malformed, unsupported or incompatible (code 1)."""

    default_code = ErrorCode.INCOMPATIBLE_CNI_VERSION


class IncompatibleVersionError(VersionError):
    """A plugin does not support the version a configuration asks for."""

    def __init__(
        self, msg: str, *, config_version: str = "", supported: Sequence[str] = ()
    ) -> None:
        self.config_version = config_version
        self.supported = tuple(supported)
        super().__init__(msg)


class CheckNotSupportedError(VersionError):
    """CHECK was asked of a configuration whose version predates it (< 0.4.0).

    The text matches Go's ``ErrorCheckNotSupp`` wrapping.
    """

    def __init__(self, config_version: str) -> None:
        self.config_version = config_version
        super().__init__(
            f'configuration version "{config_version}" does not support the CHECK command'
        )


class ResultConversionError(VersionError):
    """A result cannot be converted between two spec versions."""

    def __init__(self, msg: str, *, from_version: str = "", to_version: str = "") -> None:
        self.from_version = from_version
        self.to_version = to_version
        super().__init__(msg)


class ResultDecodeError(CNIError, ValueError):
    """A result (from a plugin or the cache) is not valid result JSON."""

    default_code = ErrorCode.DECODING_FAILURE


class ExecError(CNIError):
    """A plugin could not be found, started, or understood."""


class PluginNotFoundError(ExecError, FileNotFoundError):
    """No executable for ``plugin_type`` on the search path."""

    def __init__(self, msg: str, *, plugin_type: str = "", search_path: Sequence[str] = ()) -> None:
        self.plugin_type = plugin_type
        self.search_path = tuple(search_path)
        super().__init__(msg)


class PluginStartError(ExecError):
    """The plugin's executable could not be started (fork/exec failed): it
    never ran, so it has nothing to undo."""


class PluginOutputError(ExecError):
    """A plugin failed without a decodable error object, or printed something
    that is not what the verb needs. ``stdout``/``stderr`` keep what it wrote."""

    def __init__(
        self,
        msg: str,
        *,
        stdout: bytes = b"",
        stderr: bytes = b"",
        returncode: int | None = None,
    ) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.returncode = returncode
        super().__init__(msg)


class PluginTimeoutError(ExecError, TimeoutError):
    """A plugin ran past its deadline: an executable's whole process group was
    killed; an in-process plugin (which cannot be killed) runs on in its thread."""

    def __init__(self, msg: str, *, elapsed: float, stderr: bytes = b"") -> None:
        self.elapsed = elapsed
        self.stderr = stderr
        super().__init__(msg)


class OperationCancelledError(ExecError):
    """A plugin call was cancelled (asyncio) and its process group killed.

    The async driver throws it into the running flow, so that a cancelled
    ADD rolls back like a failed one; the caller then sees
    :class:`asyncio.CancelledError`, with this error as its context.
    """


class PluginError(CNIError):
    """The plugin answered with a CNI error object; ``code`` is the plugin's own.

    ``stderr`` holds the tail of what the plugin logged, when it ran as a process.
    """

    def __init__(
        self,
        msg: str,
        *,
        code: int | None = None,
        details: str = "",
        stderr: bytes = b"",
    ) -> None:
        self.stderr = stderr
        super().__init__(msg, code=code, details=details)


class TryAgainLaterError(PluginError):
    """The plugin reported a transient condition (code 11)."""

    default_code = ErrorCode.TRY_AGAIN_LATER


class PluginNotAvailableError(PluginError):
    """STATUS: the plugin cannot service ADD requests now (code 50)."""

    default_code = ErrorCode.PLUGIN_NOT_AVAILABLE


class LimitedConnectivityError(PluginError):
    """STATUS: not available, and existing containers may have limited
    connectivity (code 51)."""

    default_code = ErrorCode.LIMITED_CONNECTIVITY


_PLUGIN_ERROR_BY_CODE: dict[int, type[PluginError]] = {
    ErrorCode.TRY_AGAIN_LATER: TryAgainLaterError,
    ErrorCode.PLUGIN_NOT_AVAILABLE: PluginNotAvailableError,
    ErrorCode.LIMITED_CONNECTIVITY: LimitedConnectivityError,
}


def error_from_object(obj: Mapping[str, object], *, stderr: bytes = b"") -> PluginError:
    """Build the right :class:`PluginError` subclass from a decoded error object.

    Raises :class:`ValueError` when ``obj`` is not an error object (the caller
    then reports the raw output instead).
    """
    if "code" not in obj and "msg" not in obj:
        raise ValueError("not an error object: it has neither 'code' nor 'msg'")
    code = obj.get("code", 0)
    msg = obj.get("msg", "")
    details = obj.get("details", "")
    if isinstance(code, bool) or not isinstance(code, int) or code < 0:
        raise ValueError(f"error object 'code' must be a non-negative integer, got {code!r}")
    if not isinstance(msg, str) or not isinstance(details, str):
        raise ValueError("error object 'msg' and 'details' must be strings")
    cls = _PLUGIN_ERROR_BY_CODE.get(code, PluginError)
    return cls(msg, code=code, details=details, stderr=stderr)


class CacheError(CNIError):
    """A cache entry could not be read, parsed, or written; ``path`` names it."""

    default_code = ErrorCode.IO_FAILURE

    def __init__(self, msg: str, *, path: str, code: int | None = None) -> None:
        self.path = path
        super().__init__(f"{msg} ({path})", code=code)


# N818: a group of errors, named like ExceptionGroup.
class CNIErrorGroup(ExceptionGroup[CNIError], CNIError):  # noqa: N818
    """Several independent failures of one operation (Go joins them with
    ``errors.Join``). ``exceptions`` holds each; ``str()`` gives one per line."""

    def __new__(cls, msg: str, errors: Sequence[CNIError]) -> Self:
        return super().__new__(cls, msg, errors)

    def __init__(self, msg: str, errors: Sequence[CNIError]) -> None:
        ExceptionGroup.__init__(self, msg, errors)
        self.msg = msg
        self.code = ErrorCode.UNKNOWN
        # The error object (CLI --json) carries every member in its details.
        self.details = "\n".join(str(e) for e in errors)
        self.context = ()

    def __str__(self) -> str:
        return "".join(self.context) + "\n".join(str(e) for e in self.exceptions)

    def derive(self, excs: Sequence[CNIError]) -> Self:  # type: ignore[override]
        return type(self)(self.msg, excs)


class CacheCollisionError(CacheError):
    """The cache file of an attachment holds another attachment's entry.

    Go libcni names entries ``<network>-<containerID>-<ifname>``, which is
    ambiguous (network ``n-a`` with container ``b`` and network ``n`` with
    container ``a-b`` share a name); cnilib checks and refuses to mix them.
    """


class LockTimeoutError(CacheError, TimeoutError):
    """An attachment (or its network) stayed busy past the call's deadline.

    Another operation held its lock, or a plugin that an interrupted call
    left running had not exited. ``holder`` is that process's pid when it is
    known. Code 11 (try again later): nothing was done.
    """

    default_code = ErrorCode.TRY_AGAIN_LATER

    def __init__(self, msg: str, *, path: str, holder: int | None = None) -> None:
        self.holder = holder
        super().__init__(msg, path=path)


class GCError(CNIErrorGroup):
    """Several steps of a GC failed: stale-attachment DELs and plugins' GC.

    ``report`` is the :class:`cnilib.GCReport` of what did succeed.
    """

    report: object | None = None


class TeardownError(CNIErrorGroup):
    """Removing several networks from a container failed for some of them
    (each was still attempted)."""


class ValidationGroupError(CNIErrorGroup):
    """Validating a network list found several problems (one per plugin)."""
