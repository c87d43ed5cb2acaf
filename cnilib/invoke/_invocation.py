"""What a plugin call is, independent of how it is carried out.

An :class:`Invocation` holds everything the spec passes to a plugin: the
verb, the ``CNI_*`` parameters and the stdin bytes. An :class:`Executor`
carries it out: as a subprocess, in-process, or as a test fake.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs

__all__ = [
    "Command",
    "Executor",
    "Invocation",
    "PluginInfo",
    "check_timeout",
    "format_cni_args",
    "to_command",
]


class Command(enum.StrEnum):
    """The CNI verbs, as they appear in ``CNI_COMMAND``."""

    ADD = "ADD"
    DEL = "DEL"
    CHECK = "CHECK"
    GC = "GC"
    STATUS = "STATUS"
    VERSION = "VERSION"

    @property
    def verb(self) -> str:
        """The lower-case word libcni uses in error texts (``failed (add)``)."""
        return "delete" if self is Command.DEL else self.value.lower()


VERSION_STDIN = b'{"cniVersion":"1.1.0"}'
"""What VERSION reads on stdin: libcni sends its ``version.Current()``."""


def check_timeout(timeout: float | None) -> None:
    """A deadline must be a positive number of seconds (``math.inf``, or
    ``None``, for none)."""
    from cnilib.errors import InvalidArgumentError  # lazily: this module imports no cnilib module

    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidArgumentError(f"timeout must be a number of seconds, got {timeout!r}")
    try:
        seconds = float(timeout)
    except OverflowError:
        seconds = math.nan
    if math.isnan(seconds) or seconds <= 0:
        raise InvalidArgumentError(f"timeout must be a positive number of seconds, got {timeout!r}")


def to_command(value: Command | str) -> Command:
    """A verb given as ``Command.ADD`` or as its text ``"ADD"``; anything else
    is an :class:`cnilib.InvalidArgumentError` naming the verbs there are."""
    if isinstance(value, Command):
        return value
    try:
        return Command(value)
    except ValueError:
        from cnilib.errors import InvalidArgumentError

        verbs = ", ".join(command.value for command in Command)
        raise InvalidArgumentError(f"unknown CNI verb {value!r}: expected one of {verbs}") from None


def format_cni_args(args: Sequence[tuple[str, str]]) -> str:
    """``CNI_ARGS`` text: ``K=V`` pairs joined by ``;`` (no escaping, as libcni)."""
    return ";".join(f"{key}={value}" for key, value in args)


@attrs.frozen
class Invocation:
    """One plugin call: verb, parameters and stdin.

    ``timeout`` (seconds) overrides the executor's default deadline for this
    call; ``None`` keeps the default and ``math.inf`` means no deadline.
    """

    command: Command = attrs.field(converter=to_command)
    plugin_type: str
    stdin: bytes = attrs.field(repr=False)
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: tuple[tuple[str, str], ...] = ()
    path: tuple[str, ...] = ()
    plugin_name: str | None = None
    timeout: float | None = None
    hold_fds: tuple[int, ...] = attrs.field(default=(), repr=False)
    """Deprecated, always empty: cnilib no longer hands lock fds to plugins
    (a daemon a plugin started would inherit them); see ``on_spawn``."""
    on_spawn: Callable[[int, float | None], None] | None = attrs.field(
        default=None, repr=False, eq=False
    )
    """Called by a process-starting executor right after the plugin process
    starts, with its pid and its deadline in seconds (``None``: none). The
    runtime records both in the attachment's lock file, so that if the runtime
    dies, the next operation on the attachment waits for the orphaned plugin
    (and kills it past that deadline) instead of racing it. Executors that
    start no process never call it."""

    @classmethod
    def version(
        cls, plugin_type: str, path: Sequence[str], *, timeout: float | None = None
    ) -> Invocation:
        """A VERSION call; stdin names the newest version we speak, as libcni does."""
        return cls(
            command=Command.VERSION,
            plugin_type=plugin_type,
            stdin=VERSION_STDIN,
            path=tuple(path),
            timeout=timeout,
        )

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The plugin's environment: ``base`` (default ``os.environ``) with every
        ``CNI_*`` parameter set, replacing inherited values (later wins)."""
        env = dict(os.environ if base is None else base)
        if self.command is Command.VERSION:
            # Very old plugins insist on these; libcni sends the same dummies.
            netns, ifname, path = "dummy", "dummy", "dummy"
        else:
            netns, ifname, path = self.netns, self.ifname, os.pathsep.join(self.path)
        env.update(
            CNI_COMMAND=self.command.value,
            CNI_CONTAINERID=self.container_id,
            CNI_NETNS=netns,
            CNI_IFNAME=ifname,
            CNI_ARGS=format_cni_args(self.args),
            CNI_PATH=path,
        )
        return env

    def describe(self) -> str:
        """``plugin "bridge" (ADD)``, for messages."""
        return f'plugin "{self.plugin_type}" ({self.command.value})'


@attrs.frozen
class PluginInfo:
    """A plugin's answer to VERSION."""

    cni_version: str
    supported_versions: tuple[str, ...]

    def supports(self, version: str) -> bool:
        """Exact membership, as libcni's validation checks it."""
        return version in self.supported_versions


@runtime_checkable
class Executor(Protocol):
    """The one seam between the runtime and plugins (Go ``invoke.Exec``).

    ``exec`` (and its asyncio twin ``aexec``) returns the plugin's stdout on success and raises a
    :class:`cnilib.CNIError` otherwise (a :class:`cnilib.PluginError` when the
    plugin answered with an error object).
    """

    def find(self, plugin_type: str, path: Sequence[str]) -> str:
        """Where ``plugin_type`` would run from; raise ``PluginNotFoundError``."""
        ...

    def exec(self, invocation: Invocation) -> bytes:
        """Run one plugin call to completion."""
        ...

    async def aexec(self, invocation: Invocation) -> bytes:
        """:meth:`exec` for asyncio; cancellation must leave no plugin running."""
        ...

    def version_info(self, plugin_type: str, path: Sequence[str]) -> PluginInfo:
        """Ask a plugin which spec versions it supports."""
        ...
