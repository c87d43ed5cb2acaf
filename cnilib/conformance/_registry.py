"""The checks, in the order a run makes them, and how each says what it found."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from cnilib.conformance._model import CheckSpec, Exchange, Outcome

if TYPE_CHECKING:
    from cnilib.conformance._session import Session

__all__ = ["CHECKS", "Finding", "check", "failed", "not_applicable", "passed", "warned"]


@attrs.frozen
class Finding:
    """What a check function found. ``FAIL`` of a ``should`` check is reported as WARN."""

    outcome: Outcome
    reason: str = ""
    evidence: tuple[Exchange, ...] = ()


def passed(*evidence: Exchange, reason: str = "") -> Finding:
    return Finding(Outcome.PASS, reason, evidence)


def failed(reason: str, *evidence: Exchange) -> Finding:
    return Finding(Outcome.FAIL, reason, evidence)


def warned(reason: str, *evidence: Exchange) -> Finding:
    """A SHOULD not followed inside a check whose level is ``must`` (the plugin failed
    as it must, say, but not with the code the spec's table gives)."""
    return Finding(Outcome.WARN, reason, evidence)


def not_applicable(reason: str) -> Finding:
    return Finding(Outcome.NOT_APPLICABLE, reason)


CheckFunction = Callable[["Session"], Finding]

CHECKS: list[tuple[CheckSpec, CheckFunction]] = []
"""Every check, in registration order (the modules of ``_checks`` in their order)."""


def check(
    id: str, title: str, spec: str, *, level: str = "must"
) -> Callable[[CheckFunction], CheckFunction]:
    """Register the decorated function as check ``id``."""
    if level not in ("must", "should"):
        raise ValueError(f"level must be 'must' or 'should', not {level!r}")

    def register(fn: CheckFunction) -> CheckFunction:
        if any(spec_.id == id for spec_, _ in CHECKS):
            raise ValueError(f"check {id!r} registered twice")
        CHECKS.append((CheckSpec(id, title, spec, level), fn))
        return fn

    return register
