"""VERSION of one plugin and of a network's plugins, as flows (see
:mod:`cnilib.runtime._flows`), and the plain driver that runs them.

They live here, apart from the other flows, because they need neither the
cache nor results: ``python -m cnilib validate`` runs them without importing
the runtime (cattrs, the cache, the result models), which is most of its
start-up time.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, TypeVar

from cnilib.errors import (
    CNIError,
    IncompatibleVersionError,
    OperationCancelledError,
    ValidationGroupError,
)
from cnilib.invoke._decode import decode_version_info, is_pre_version_plugin
from cnilib.invoke._invocation import Executor, Invocation, PluginInfo

if TYPE_CHECKING:
    from cnilib.config import NetworkConfigList

__all__ = ["drive", "validate_flow", "version_flow"]

T = TypeVar("T")


def version_flow(
    plugin_type: str, path: Sequence[str], timeout: float | None = None
) -> Generator[Invocation, bytes, PluginInfo]:
    """VERSION of one plugin (Go ``GetVersionInfo``)."""
    try:
        stdout = yield Invocation.version(plugin_type, path, timeout=timeout)
    except CNIError as exc:
        if is_pre_version_plugin(exc):
            return PluginInfo("0.1.0", ("0.1.0",))
        raise
    return decode_version_info(stdout)


def validate_flow(
    conflist: NetworkConfigList, path: Sequence[str], timeout: float | None = None
) -> Generator[Invocation, bytes, tuple[str, ...]]:
    """Check every plugin exists and supports the list's version; return the
    enabled capabilities. Every problem is reported, not just the first."""
    expected = conflist.cni_version or "0.1.0"
    errors: list[CNIError] = []
    for plugin in conflist.plugins:
        try:
            info = yield from version_flow(plugin.type, path, timeout)
        except OperationCancelledError:
            raise
        except CNIError as exc:
            errors.append(exc.with_context(f"plugin {plugin.type}: "))
            continue
        if not info.supports(expected):
            errors.append(
                IncompatibleVersionError(
                    f'plugin {plugin.type} does not support config version "{expected}"',
                    config_version=expected,
                    supported=info.supported_versions,
                )
            )
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ValidationGroupError(f'network "{conflist.name}" is not valid', errors)
    return conflist.capabilities


def drive(flow: Generator[Invocation, bytes, T], executor: Executor) -> T:
    """Run a flow that has nothing to undo, each invocation through ``executor``;
    no events, spans or operation log (``CNI`` adds those: see ``run_flow``)."""
    try:
        invocation = next(flow)
        while True:
            try:
                stdout = executor.exec(invocation)
            except CNIError as exc:
                invocation = flow.throw(exc)
            else:
                invocation = flow.send(stdout)
    except StopIteration as stop:
        value: T = stop.value
        return value
