"""What the kit must know about a plugin to exercise it: its kind, a working
configuration, what it needs on the node, and how to break what it made."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from cnilib.conformance._sandbox import Container, Sandbox
    from cnilib.conformance._session import Session

__all__ = ["Kind", "Profile"]


class Kind(enum.StrEnum):
    """How a plugin takes part in an attachment (what the kit can expect of it)."""

    INTERFACE = "interface"
    """Makes the container's interface ``CNI_IFNAME`` (bridge, ptp, macvlan, ...)."""
    IPAM = "ipam"
    """Allocates addresses and reports them without interfaces (host-local, static)."""
    CHAINED = "chained"
    """Runs after an interface plugin and works on its ``prevResult`` (portmap, tuning)."""
    LOOPBACK = "loopback"
    """Works on the container's ``lo`` whatever ``CNI_IFNAME`` says."""


JSONObject = dict[str, Any]


@attrs.frozen
class Profile:
    """How to exercise one plugin type.

    ``config(sandbox)`` returns the plugin configuration object without ``name``
    and ``cniVersion`` (the kit adds them) and, for interface plugins that take
    one (``uses_ipam``), without ``ipam``: the kit adds host-local's, or
    static's, in the sandbox's subnet. For IPAM plugins it returns the object
    whose ``ipam`` section is the plugin's.
    """

    kind: Kind
    config: Callable[[Sandbox], JSONObject]
    uses_ipam: bool = False
    setup: Callable[[Sandbox], None] | None = None
    """Prepares the node once per run (an uplink for macvlan, a device for host-device)."""
    breaker: Callable[[Session, Container, JSONObject], str] | None = None
    """Breaks an attachment so that CHECK must fail: given the session, the container
    and the ADD result, it changes the kernel (or the plugin's state) and says what
    it did. ``None``: the kit deletes the container's interface, where the plugin
    made one, and has nothing to break otherwise."""
    requires: Callable[[], str | None] | None = None
    """``None`` where this machine can run the plugin, else the reason it cannot
    (a kernel without the link type): the checks that need an ADD are then n/a."""
    state_dirs: Callable[[Sandbox], list[Path]] = attrs.field(factory=lambda: _no_dirs)
    """Directories whose files the plugin keeps per attachment (host-local's data
    dir, the plugin's own state): a DEL must not leave a file there."""
    runtime_config: Mapping[str, Any] | None = None
    """``runtimeConfig`` sent with ADD, CHECK and DEL (capability arguments)."""
    max_attachments: int | None = None
    """How many attachments can exist at once (host-device has one device to
    move); ``None``: no limit. Checks that need two are n/a below that."""
    needs_daemon: str | None = None
    """Why ADD cannot work without a daemon or agent the kit does not run (dhcp,
    cnilib's overlay): the checks that need an ADD are n/a with this reason."""


def _no_dirs(sandbox: Sandbox) -> list[Path]:
    return []
