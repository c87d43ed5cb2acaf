"""Profiles: how the kit exercises each plugin type it knows, and
:func:`profile_for`, the profile of one run (a known type's, or one made from a
configuration the user gives).

Known types: the reference plugins (Go's executables and cnilib's in-process
plugins alike) and cnilib's ``overlay``. See :data:`PROFILES`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from cnilib.conformance._profile import JSONObject, Kind, Profile
from cnilib.conformance.profiles._builtin import BUILDERS, PROFILES
from cnilib.errors import InvalidArgumentError

if TYPE_CHECKING:
    from cnilib.conformance._sandbox import Sandbox

__all__ = ["PROFILES", "parse_kind", "profile_for"]

_SET_BY_KIT = ("name", "cniVersion")
"""Keys of a given configuration the kit sets itself on every call (dropped)."""


def parse_kind(kind: Kind | str) -> Kind:
    """``kind`` as a :class:`Kind` (its value, any case); :class:`InvalidArgumentError`
    listing the kinds for anything else."""
    if isinstance(kind, Kind):
        return kind
    try:
        return Kind(str(kind).strip().lower())
    except ValueError:
        kinds = ", ".join(k.value for k in Kind)
        raise InvalidArgumentError(f"unknown plugin kind {kind!r}: the kinds are {kinds}") from None


def profile_for(
    plugin_type: str,
    *,
    config: Mapping[str, Any] | None = None,
    kind: Kind | str | None = None,
    state_dirs: Iterable[str | os.PathLike[str]] = (),
) -> Profile:
    """The profile a run of ``plugin_type`` uses.

    Without ``config``, the known type's own profile (:data:`PROFILES`).
    With ``config`` (the plugin's configuration object; ``name`` and
    ``cniVersion`` in it are dropped, the kit sets them), a profile that sends
    it: of a known type, its profile's setup, breaker and state directories
    around that configuration, and no daemon is assumed missing (the
    configuration points at the user's); of an unknown type, one of ``kind``
    with nothing to set up or break. A ``runtimeConfig`` in ``config`` replaces
    the profile's. ``kind`` (a :class:`Kind` or its name) replaces the known
    type's and is required for an unknown type. ``state_dirs`` are added to the
    profile's.

    :raises InvalidArgumentError: an unknown type without ``config`` or without
        ``kind``, a ``kind`` that is none, a ``config`` that is not one plugin's
        JSON object.
    """
    chosen = parse_kind(kind) if kind is not None else None
    extra = tuple(Path(d) for d in state_dirs)
    build = BUILDERS.get(plugin_type)
    if config is None:
        if build is None:
            raise InvalidArgumentError(
                f"the conformance kit has no profile for plugin type {plugin_type!r}"
                f" (it knows {', '.join(sorted(PROFILES))}): give its configuration"
                " with --config and its kind with --kind"
            )
        profile = PROFILES[plugin_type]
    else:
        body = _given_config(plugin_type, config)

        def given(sandbox: Sandbox) -> JSONObject:
            return copy.deepcopy(body)

        if build is not None:
            profile = build(given)
        elif chosen is None:
            kinds = ", ".join(k.value for k in Kind)
            raise InvalidArgumentError(
                f"the conformance kit has no profile for plugin type {plugin_type!r}:"
                f" give its kind with --kind ({kinds})"
            )
        else:
            profile = Profile(kind=chosen, config=given)
        if "runtimeConfig" in body:
            profile = attrs.evolve(profile, runtime_config=None)
    if chosen is not None and chosen is not profile.kind:
        profile = attrs.evolve(profile, kind=chosen)
    if extra:
        own = profile.state_dirs

        def dirs(sandbox: Sandbox) -> list[Path]:
            return [*own(sandbox), *extra]

        profile = attrs.evolve(profile, state_dirs=dirs)
    return profile


def _given_config(plugin_type: str, config: Mapping[str, Any]) -> JSONObject:
    if not isinstance(config, Mapping):
        raise InvalidArgumentError(
            f"the configuration of plugin {plugin_type!r} must be a JSON object,"
            f" not {type(config).__name__}"
        )
    if "plugins" in config:
        raise InvalidArgumentError(
            f"the configuration given for plugin {plugin_type!r} is a network configuration"
            " list: give the configuration object of the one plugin to test"
        )
    body = {k: copy.deepcopy(v) for k, v in config.items() if k not in _SET_BY_KIT}
    given_type = body.get("type")
    if given_type is not None and given_type != plugin_type:
        raise InvalidArgumentError(
            f"the configuration given is of plugin type {given_type!r}, not {plugin_type!r}"
        )
    return body
