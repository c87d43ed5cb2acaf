"""How checks word what they found: whether an ADD can be tried at all, why one
that should have worked did not, and what is wrong with a result."""

from __future__ import annotations

import json
from typing import Any

from cnilib.conformance._model import Exchange
from cnilib.conformance._registry import Finding, failed, not_applicable, passed, warned
from cnilib.conformance._sandbox import Container
from cnilib.conformance._session import Session
from cnilib.schema import result_schema_for, schema_problems

__all__ = [
    "add_blocked",
    "attached",
    "failed_add",
    "judged",
    "kind_of",
    "malformed",
    "result_problems",
    "unexpected",
]


def add_blocked(session: Session, oldest: str = "0.1.0") -> Finding | None:
    """n/a when no ADD can succeed here, or the plugin supports no version from ``oldest``."""
    if session.unavailable is not None:
        return not_applicable(session.unavailable)
    if not session.versions_from(oldest):
        return not_applicable(f"the plugin supports no version from {oldest} on")
    return None


def failed_add(exchange: Exchange) -> str:
    """The reason text for an ADD that should have worked and did not."""
    return f"ADD failed, so nothing else could be checked: {exchange.describe()}"


def result_problems(result: Any, version: str) -> list[str]:
    """Why ``result`` is not a valid ADD result of ``version`` (empty: it is)."""
    if not isinstance(result, dict):
        return [f"stdout is not a JSON object: {json.dumps(result)[:200]}"]
    problems = schema_problems(result_schema_for(version), result)
    said = result.get("cniVersion")
    if said != version:
        problems.append(f"cniVersion is {said!r}, the request's is {version!r}")
    return problems


def malformed(result: Any) -> str | None:
    """Why ``result`` cannot be read as an ADD result (not an object, or interfaces,
    ips or routes not lists of objects), or ``None``: checks that read its entries
    fail on it instead of failing themselves."""
    if not isinstance(result, dict):
        return f"stdout is not a JSON object: {json.dumps(result)[:200]}"
    for key in ("interfaces", "ips", "routes"):
        value = result.get(key)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(entry, dict) for entry in value)
        ):
            return f"the result's {key} is not a list of objects: {json.dumps(value)[:200]}"
    return None


def unexpected(items: list[str], limit: int = 12) -> str:
    shown = "; ".join(items[:limit])
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return f"{shown}{more}"


def kind_of(session: Session) -> str:
    """ "an interface plugin", "a chained plugin", ...: the plugin's kind, in a sentence."""
    kind = str(session.profile.kind)
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} plugin"


def attached(
    session: Session, version: str | None = None, **add: Any
) -> tuple[Container, Exchange, dict[str, Any], Finding | None]:
    """A new container ADDed (``add``: :meth:`Session.add`'s keywords): the container,
    the ADD, its result, and the finding to return instead when the ADD failed or its
    result cannot be read as one (interfaces, ips or routes not lists of objects)."""
    ctr = session.container()
    exchange = session.add(ctr, version, **add)
    result = exchange.stdout_json()
    if not exchange.succeeded:
        return ctr, exchange, {}, failed(failed_add(exchange), exchange)
    if (why := malformed(result)) is not None:
        return ctr, exchange, {}, failed(why, exchange)
    return ctr, exchange, result, None


def judged(musts: list[str], shoulds: list[str], *evidence: Exchange) -> Finding:
    """FAIL for any broken MUST, else WARN for any SHOULD not followed, else PASS; the
    reason names them all."""
    if musts:
        return failed("; ".join(musts + shoulds), *evidence)
    if shoulds:
        return warned("; ".join(shoulds), *evidence)
    return passed(*evidence)
