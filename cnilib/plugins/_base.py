"""What a Python CNI plugin is: an object with one method per verb.

The plugin side of the spec, as Go's ``skel`` package gives it to Go
plugins: the framework (:mod:`cnilib.plugins._skel`) parses the request,
checks the environment and versions, calls one method, and turns its
result or error into the protocol's answer. A plugin only does its job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, TypeVar

import attrs

from cnilib import spec
from cnilib._json import JSONValue
from cnilib.invoke import Command, Executor, Invocation
from cnilib.results import Result

__all__ = ["ALL_VERSIONS", "BasePlugin", "PluginRequest"]

ALL_VERSIONS: tuple[str, ...] = tuple(str(v) for v in spec.ALL_VERSIONS)

_T = TypeVar("_T")


@attrs.frozen
class PluginRequest:
    """One call of a plugin: the ``CNI_*`` parameters and the parsed stdin."""

    command: Command
    container_id: str
    netns: str
    ifname: str
    args: tuple[tuple[str, str], ...]
    path: tuple[str, ...]
    config: Mapping[str, JSONValue] = attrs.field(repr=False)
    stdin: bytes = attrs.field(repr=False)
    delegate_executor: Executor | None = attrs.field(default=None, repr=False, eq=False)
    """Runs delegated plugins; default: cnilib's in-process plugins, else binaries."""
    host_netns: str | None = None
    """The namespace that plays the host for this call (bridges, host veth
    ends, iptables, sysctls go there): a path, or ``None`` for the calling
    process's own namespace, which is what a plugin binary gets."""

    @property
    def cni_version(self) -> str:
        """The config's ``cniVersion`` (``""`` becomes ``"0.1.0"``, as Go decodes it)."""
        version = self.config.get("cniVersion")
        return version if isinstance(version, str) and version else "0.1.0"

    @property
    def name(self) -> str:
        """The network name."""
        name = self.config.get("name")
        return name if isinstance(name, str) else ""

    @property
    def prev_result(self) -> Result | None:
        """The ``prevResult``, converted to the config's version as Go's
        ``version.ParsePrevResult`` does (None when absent)."""
        prev = self.config.get("prevResult")
        if not isinstance(prev, dict):
            return None
        from cnilib.errors import CNIError, ErrorCode, PluginError
        from cnilib.results import decode_result

        try:
            return decode_result(prev, default_version=self.cni_version).convert_to(
                self.cni_version
            )
        except CNIError as exc:
            raise PluginError(
                f"could not convert result to current version: {exc}",
                code=ErrorCode.DECODING_FAILURE,
            ) from exc

    @property
    def runtime_config(self) -> Mapping[str, JSONValue]:
        """``runtimeConfig`` (the capability arguments this plugin was given)."""
        runtime = self.config.get("runtimeConfig")
        return runtime if isinstance(runtime, dict) else {}

    def valid_attachments(self) -> set[tuple[str, str]]:
        """GC's ``cni.dev/valid-attachments``: (containerID, ifname) pairs as given (no
        trimming; host-local trims as its store does); code 7 if malformed."""
        from cnilib.plugins.ipam._decode import config_error, get_list, get_str

        key = "cni.dev/valid-attachments"
        if key not in self.config:
            raise config_error(f"GC needs {key} in the configuration", field=f'$["{key}"]')
        pairs = set()
        for i, item in enumerate(get_list(self.config, key, "$") or ()):
            where = f'$["{key}"][{i}]'
            if not isinstance(item, dict):
                raise config_error(f"{where}: expected an object", field=where)
            pairs.add((get_str(item, "containerID", where), get_str(item, "ifname", where)))
        return pairs

    def delegate(self, plugin_type: str, command: Command | str | None = None) -> bytes:
        """Run another plugin (an IPAM) with this request's parameters and stdin,
        as Go's ``invoke.Delegate*`` do; return its stdout or raise its error.

        ``command`` defaults to this request's verb; ``"DEL"`` and
        ``Command.DEL`` are the same.
        """
        executor = self.delegate_executor
        if executor is None:
            from cnilib.invoke import ChainExecutor, SubprocessExecutor
            from cnilib.plugins._executor import InProcessExecutor

            executor = ChainExecutor(InProcessExecutor(), SubprocessExecutor())
        return executor.exec(
            Invocation(
                command=command or self.command,
                plugin_type=plugin_type,
                stdin=self.stdin,
                container_id=self.container_id,
                netns=self.netns,
                ifname=self.ifname,
                args=self.args,
                path=self.path,
            )
        )

    def delegate_add(self, plugin_type: str) -> Result:
        """ADD through a delegated plugin; its result, decoded."""
        from cnilib.results import decode_result

        return decode_result(
            self.delegate(plugin_type, Command.ADD), default_version=self.cni_version
        )

    def get_str(self, key: str, default: str = "") -> str:
        """The configuration's string ``key`` (``default`` when absent or null)."""
        return _typed(self.config, key, str, "a string", default)

    def get_int(self, key: str, default: int = 0) -> int:
        """The configuration's integer ``key`` (``default`` when absent or null)."""
        value = self.config.get(key)
        if isinstance(value, float) and value.is_integer():
            return int(value)  # JSON has one number type: 1500.0 is 1500
        return _typed(self.config, key, int, "an integer", default)

    def get_bool(self, key: str, default: bool = False) -> bool:
        """The configuration's boolean ``key`` (``default`` when absent or null)."""
        return _typed(self.config, key, bool, "true or false", default)

    def get_object(self, key: str) -> Mapping[str, JSONValue]:
        """The configuration's object ``key`` (empty when absent or null)."""
        return _typed(self.config, key, dict, "an object", {})

    def get_list(self, key: str) -> list[JSONValue]:
        """The configuration's array ``key`` (empty when absent or null)."""
        return _typed(self.config, key, list, "an array", [])

    @property
    def ipam_type(self) -> str:
        """``ipam.type``, the plugin to :meth:`delegate_add` to; ``""`` when there is no IPAM."""
        return _typed(self.get_object("ipam"), "type", str, "a string", "", where="ipam.")

    def cni_arg(self, key: str) -> str | None:
        """The value of ``key`` in ``CNI_ARGS`` (the last one wins), or None."""
        value = None
        for name, item in self.args:
            if name == key:
                value = item
        return value


def _typed(
    config: Mapping[str, JSONValue],
    key: str,
    kind: type[_T],
    expected: str,
    default: _T,
    *,
    where: str = "",
) -> _T:
    """``config[key]`` if it is a ``kind``; a code-7 error naming the field if not."""
    value = config.get(key)
    if value is None:
        return default
    # bool is an int in Python, not in JSON.
    if isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool):
        return value
    from cnilib.errors import ErrorCode, PluginError

    raise PluginError(
        f'invalid network configuration: "{where}{key}" must be {expected}, got {value!r}',
        code=ErrorCode.INVALID_NETWORK_CONFIG,
    )


class BasePlugin:
    """Base of the in-process plugins: every verb but ADD succeeds by default.

    Subclasses set ``type`` (the configuration's ``"type"``) and implement
    :meth:`add`; they raise :class:`cnilib.PluginError` with a spec code for
    CNI errors. Any other exception becomes code 999, as in Go's skel.
    """

    type: ClassVar[str]
    supported_versions: ClassVar[tuple[str, ...]] = ALL_VERSIONS

    def add(self, req: PluginRequest) -> Result:
        """ADD: create the attachment, return its result."""
        raise NotImplementedError

    def check(self, req: PluginRequest) -> None:
        """CHECK: raise if the attachment is not as ADD left it."""

    def delete(self, req: PluginRequest) -> None:
        """DEL: remove the attachment; must succeed if it is already gone."""

    def status(self, req: PluginRequest) -> None:
        """STATUS: raise (code 50/51) if the plugin cannot serve ADD now."""

    def gc(self, req: PluginRequest) -> None:
        """GC: release what belongs to no attachment in ``cni.dev/valid-attachments``."""
