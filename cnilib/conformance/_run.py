"""A conformance run: the plugin found, its sandbox made, every check run, a report."""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cnilib.conformance._model import CheckResult, Outcome, Report
from cnilib.conformance._profile import Kind, Profile
from cnilib.conformance._registry import CHECKS, Finding
from cnilib.conformance._sandbox import Sandbox
from cnilib.conformance._session import KNOWN_VERSIONS, Session
from cnilib.conformance._target import find_target
from cnilib.errors import InvalidArgumentError
from cnilib.testing import CommandError

if TYPE_CHECKING:
    from cnilib.plugins import BasePlugin

__all__ = ["DEFAULT_PATH", "check_ids", "run_conformance", "select_checks"]

DEFAULT_PATH = ("/opt/cni/bin",)
"""Where plugins are looked for when neither ``path`` nor ``CNI_PATH`` says."""


def check_ids() -> list[str]:
    """Every check's id, in the order a run makes them."""
    _load_checks()
    return [spec.id for spec, _ in CHECKS]


def _load_checks() -> None:
    import cnilib.conformance.checks  # noqa: F401  (registers the checks, in order)


def run_conformance(
    plugin_type: str,
    *,
    path: Sequence[str] | None = None,
    in_process: bool = False,
    config: Mapping[str, Any] | None = None,
    kind: Kind | str | None = None,
    state_dirs: Iterable[str | os.PathLike[str]] = (),
    only: Iterable[str] | None = None,
    timeout: float = 30.0,
    plugin: BasePlugin | None = None,
) -> Report:
    """Run every check (or those ``only`` names) against plugin ``plugin_type``.

    :param path: directories to find the plugin and its delegates in (default
        ``$CNI_PATH``, else ``/opt/cni/bin``); also its ``CNI_PATH``.
    :param in_process: test cnilib's in-process plugin of that type instead of
        an executable.
    :param config: the plugin's configuration object (without ``name`` and
        ``cniVersion``) for a plugin the kit has no profile for, or to replace
        the profile's; needs ``kind``.
    :param kind: ``interface``, ``ipam``, ``chained`` or ``loopback``.
    :param state_dirs: directories where the plugin keeps per-attachment files,
        which a DEL must leave empty of them.
    :param timeout: seconds per call of an executable.
    :param plugin: a :class:`~cnilib.plugins.BasePlugin` instance to test in
        process as type ``plugin_type`` (a plugin of your own, not installed).

    Needs root: everything happens in namespaces the run makes and removes.
    """
    from cnilib.conformance.profiles import profile_for

    _load_checks()
    chosen = select_checks(only)
    search = tuple(path) if path is not None else _default_path()
    # The profile first: a configuration that is no plugin's is reported as such, not
    # as a plugin that cannot be found.
    profile = profile_for(plugin_type, config=config, kind=kind, state_dirs=state_dirs)
    target = find_target(plugin_type, search, in_process=in_process, plugin=plugin)
    try:
        with Sandbox() as sandbox:
            session = Session(target, profile, sandbox, search, timeout=timeout)
            try:
                return _run(session, chosen)
            finally:
                session.close()
    finally:
        target.close()


def _default_path() -> tuple[str, ...]:
    env = os.environ.get("CNI_PATH", "")
    return tuple(p for p in env.split(":") if p) or DEFAULT_PATH


def select_checks(only: Iterable[str] | None) -> set[str] | None:
    """The ids ``only`` selects (check ids, or groups such as ``del``); ``None``: all.
    An unknown name is an :class:`cnilib.InvalidArgumentError` listing the checks."""
    if only is None:
        return None
    wanted = set(only)
    known = {spec.id for spec, _ in CHECKS}
    prefixes = {i.split(".")[0] for i in known}
    unknown = sorted(w for w in wanted if w not in known and w not in prefixes)
    if unknown:
        raise InvalidArgumentError(
            f"no conformance check {', '.join(unknown)}; the checks are: {', '.join(sorted(known))}"
        )
    return {i for i in known if i in wanted or i.split(".")[0] in wanted}


def _supported(session: Session) -> tuple[tuple[str, ...], list[str]]:
    """The versions VERSION lists that the kit knows, and notes on what it said."""
    exchange = session.version()
    answer = exchange.stdout_json() if exchange.succeeded else None
    listed = answer.get("supportedVersions") if isinstance(answer, dict) else None
    if not isinstance(listed, list):
        said = exchange.describe()
        return (), [f"VERSION gave no list of versions ({said}): the checks that need one are n/a"]
    known = tuple(v for v in KNOWN_VERSIONS if v in listed)
    notes = []
    if unknown := [v for v in listed if v not in KNOWN_VERSIONS]:
        notes.append(
            f"VERSION lists versions the kit does not know: {', '.join(map(str, unknown))}"
        )
    return known, notes


def _run(session: Session, chosen: set[str] | None) -> Report:
    profile: Profile = session.profile
    session.supported, notes = _supported(session)
    unavailable = profile.requires() if profile.requires is not None else None
    if unavailable is None and profile.needs_daemon is not None:
        unavailable = profile.needs_daemon
    # The node is set up even where no ADD can succeed: a DEL (of nothing) may still
    # look for what the configuration names, such as vlan's master.
    if profile.setup is not None:
        try:
            profile.setup(session.sandbox)
        except CommandError as exc:
            unavailable = unavailable or f"the kit could not set up the node: {exc}"
    if unavailable is not None:
        notes.append(f"no ADD can succeed here: {unavailable}")
    session.unavailable = unavailable
    results = []
    for spec, fn in CHECKS:
        if chosen is not None and spec.id not in chosen:
            continue
        try:
            finding = _run_one(session, fn)
        finally:
            session.finish_check()
        outcome = finding.outcome
        if outcome is Outcome.FAIL and spec.level == "should":
            outcome = Outcome.WARN
        results.append(CheckResult(spec, outcome, finding.reason, finding.evidence))
    return Report(
        plugin=session.target.plugin_type,
        target=session.target.description,
        kind=str(profile.kind),
        supported_versions=session.supported,
        results=tuple(results),
        notes=tuple(notes),
    )


def _run_one(session: Session, fn: Any) -> Finding:
    try:
        finding: Finding = fn(session)
    except Exception as exc:  # the kit's own failure: shown, never passed
        text = "".join(traceback.format_exception(exc)).strip().splitlines()
        return Finding(Outcome.ERROR, f"the kit failed running this check: {exc!r} ({text[-1]})")
    return finding
