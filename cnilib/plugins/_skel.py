"""The plugin side of the exec protocol (Go's ``skel``): environment and stdin
in, result or error object out.

:func:`handle` is shared by the in-process executor and by the plugins'
executables, so a plugin answers identically however it is called. The
checks, their order, texts and codes follow Go's skel: required variables
per verb (code 4), network config decoding (6) and name (7), container ID
and interface name, version compatibility (1), CHECK below 0.4.0 and
GC/STATUS below 1.1.0 refused (1). A plugin's :class:`CNIError` becomes the
error object; any other exception becomes code 999, as skel wraps it.

Deliberate difference: skel's ADD/DEL check that ``CNI_NETNS`` is not the
plugin's own namespace; in-process plugins share the runtime's namespace by
design, so the check is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping

from cnilib import spec
from cnilib._json import JSONObject, JSONSyntaxError, go_dumps, loads_object
from cnilib.errors import CNIError, ErrorCode, PluginError
from cnilib.invoke import Command, Executor
from cnilib.names import validate_container_id, validate_interface_name, validate_network_name
from cnilib.plugins._base import BasePlugin, PluginRequest
from cnilib.plugins._versions import answer_version

__all__ = ["EscapedError", "handle", "version_answer"]

# Go's order of the variables, and which verbs need each (CNI_COMMAND: all).
_REQUIRED: tuple[tuple[str, frozenset[str]], ...] = (
    ("CNI_COMMAND", frozenset()),
    ("CNI_CONTAINERID", frozenset({"ADD", "CHECK", "DEL"})),
    ("CNI_NETNS", frozenset({"ADD", "CHECK"})),
    ("CNI_IFNAME", frozenset({"ADD", "CHECK", "DEL"})),
    ("CNI_ARGS", frozenset()),
    ("CNI_PATH", frozenset({"ADD", "CHECK", "DEL", "GC", "STATUS"})),
)

_MIN_VERSION = {
    Command.CHECK: spec.parse_version("0.4.0"),
    Command.GC: spec.parse_version("1.1.0"),
    Command.STATUS: spec.parse_version("1.1.0"),
}


class EscapedError(PluginError):
    """Code 999 made by skel from an exception that escaped the plugin (not a
    :class:`cnilib.CNIError` it raised on purpose): what Go's skel makes of any
    plain ``error``, and what the conformance kit counts as a crash of a Python
    plugin (the exception is the ``__cause__``)."""


def version_answer(plugin: type[BasePlugin] | BasePlugin, stdin: bytes = b"") -> bytes:
    """What the plugin prints for VERSION (in the version ``stdin`` asks for)."""
    return answer_version(list(plugin.supported_versions), stdin)


def _check_env(env: Mapping[str, str]) -> Command:
    command = env.get("CNI_COMMAND", "")
    missing = [
        name
        for name, needed_by in _REQUIRED
        if not env.get(name) and (name == "CNI_COMMAND" or command in needed_by)
    ]
    if missing:
        raise PluginError(
            f"required env variables [{','.join(missing)}] missing",
            code=ErrorCode.INVALID_ENVIRONMENT_VARIABLES,
        )
    try:
        return Command(command)
    except ValueError:
        raise PluginError(
            f"unknown CNI_COMMAND: {command}", code=ErrorCode.INVALID_ENVIRONMENT_VARIABLES
        ) from None


def _parse_args(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in text.split(";") if text else ():
        key, sep, value = item.partition("=")
        if not sep:
            raise PluginError(
                f"ARGS: invalid pair {item!r}", code=ErrorCode.INVALID_ENVIRONMENT_VARIABLES
            )
        pairs.append((key, value))
    return tuple(pairs)


def _decode_config(stdin: bytes) -> JSONObject:
    try:
        config = loads_object(stdin)
    except JSONSyntaxError as exc:
        raise PluginError(
            f"error unmarshall network config: {exc}", code=ErrorCode.DECODING_FAILURE
        ) from exc
    name = config.get("name")
    if not isinstance(name, str) or not name:
        raise PluginError("missing network name", code=ErrorCode.INVALID_NETWORK_CONFIG)
    _as_plugin_error(validate_network_name, name)
    return config


def _as_plugin_error(check: object, value: str) -> None:
    try:
        check(value)  # type: ignore[operator]
    except CNIError as exc:
        raise PluginError(exc.msg, code=exc.code, details=exc.details) from exc


def _check_version(plugin: BasePlugin, command: Command, version: str) -> None:
    try:
        parsed = spec.parse_version(version)
    except CNIError as exc:
        raise PluginError(str(exc), code=ErrorCode.DECODING_FAILURE) from exc
    minimum = _MIN_VERSION.get(command)
    if minimum is not None and parsed < minimum:
        raise PluginError(
            f"config version does not allow {command.value}",
            code=ErrorCode.INCOMPATIBLE_CNI_VERSION,
        )
    if version not in plugin.supported_versions:
        supported = " ".join(f'"{v}"' for v in plugin.supported_versions)
        raise PluginError(
            "incompatible CNI versions",
            code=ErrorCode.INCOMPATIBLE_CNI_VERSION,
            details=f'config is "{version}", plugin supports [{supported}]',
        )


def handle(
    plugin: BasePlugin,
    env: Mapping[str, str],
    stdin: bytes,
    *,
    delegate_executor: Executor | None = None,
    host_netns: str | None = None,
) -> bytes:
    """Run one call of ``plugin``; return its stdout, or raise :class:`PluginError`.

    The error raised is what the plugin would print as its error object.
    """
    command = _check_env(env)
    if command is Command.VERSION:
        return version_answer(plugin, stdin)
    config = _decode_config(stdin)
    if command in (Command.ADD, Command.CHECK, Command.DEL):
        _as_plugin_error(validate_container_id, env.get("CNI_CONTAINERID", ""))
        _as_plugin_error(validate_interface_name, env.get("CNI_IFNAME", ""))
    version = config.get("cniVersion")
    version = version if isinstance(version, str) and version else "0.1.0"
    _check_version(plugin, command, version)
    request = PluginRequest(
        command=command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        args=_parse_args(env.get("CNI_ARGS", "")),
        path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
        config=config,
        stdin=stdin,
        delegate_executor=delegate_executor,
        host_netns=host_netns,
    )
    try:
        if command is Command.ADD:
            result = plugin.add(request)
            return result.convert_to(version).to_json(indent=4).encode()
        if command is Command.CHECK:
            plugin.check(request)
        elif command is Command.DEL:
            plugin.delete(request)
        elif command is Command.STATUS:
            plugin.status(request)
        else:
            plugin.gc(request)
    except PluginError:
        raise
    except CNIError as exc:
        raise PluginError(str(exc), code=exc.code) from exc
    except Exception as exc:  # skel: any other error is code 999 with its text
        raise EscapedError(str(exc) or type(exc).__name__, code=ErrorCode.INTERNAL) from exc
    return b""


def error_output(error: CNIError) -> bytes:
    """The error object as skel prints it (4-space indent, no cniVersion)."""
    return go_dumps(error.to_object(), sort_keys=False, indent=4).encode()
