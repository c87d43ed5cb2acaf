"""VERSION, and what every verb must do with a version the plugin does not support."""

from __future__ import annotations

from cnilib.conformance._model import Exchange
from cnilib.conformance._registry import Finding, check, failed, not_applicable, passed
from cnilib.conformance._session import KNOWN_VERSIONS, Session
from cnilib.conformance.checks._observe import left_behind
from cnilib.conformance.checks._verdicts import unexpected
from cnilib.errors import ErrorCode
from cnilib.schema import schema_problems

UNSUPPORTED = "99.0.0"
"""A well-formed version no plugin supports."""


@check(
    "version.object",
    "VERSION prints a version object: cniVersion and a non-empty supportedVersions, exit 0",
    "SPEC 1.1 §2 VERSION; §5 Version success",
)
def version_object(session: Session) -> Finding:
    exchange = session.version("1.1.0")
    if not exchange.succeeded:
        return failed("VERSION failed", exchange)
    answer = exchange.stdout_json()
    problems = schema_problems("version", answer)
    if not problems and not answer.get("supportedVersions"):
        problems.append("supportedVersions is empty")
    if problems:
        return failed(f"not a version object: {unexpected(problems)}", exchange)
    return passed(exchange)


@check(
    "version.consistent",
    "VERSION asked in each version the plugin supports answers with the same list, "
    "which holds the version asked",
    "SPEC 1.1 §2 VERSION",
)
def version_consistent(session: Session) -> Finding:
    if not session.supported:
        return not_applicable("VERSION listed no version the kit knows")
    wrong: list[Exchange] = []
    reasons = []
    for version in session.supported:
        exchange = session.version(version)
        answer = exchange.stdout_json() if exchange.succeeded else None
        listed = answer.get("supportedVersions") if isinstance(answer, dict) else None
        if not isinstance(listed, list) or version not in listed:
            wrong.append(exchange)
            reasons.append(f"asked as {version}: {exchange.describe()}, list {listed!r}")
        elif tuple(v for v in KNOWN_VERSIONS if v in listed) != session.supported:
            wrong.append(exchange)
            reasons.append(f"asked as {version}: another list, {listed!r}")
    if wrong:
        return failed(unexpected(reasons), *wrong)
    return passed(reason=f"asked as {', '.join(session.supported)}")


@check(
    "version.echo",
    "VERSION's cniVersion is the one the request gave",
    "SPEC 1.1 §5 Version success (plugins must output cniVersion: the value specified on input)",
)
def version_echo(session: Session) -> Finding:
    if not session.supported:
        return not_applicable("VERSION listed no version the kit knows")
    wrong = []
    for version in session.supported:
        exchange = session.version(version)
        answer = exchange.stdout_json() if exchange.succeeded else None
        said = answer.get("cniVersion") if isinstance(answer, dict) else None
        if said != version:
            wrong.append((version, said, exchange))
    if wrong:
        text = ", ".join(f"asked as {v}, answered {s!r}" for v, s, _ in wrong)
        return failed(text, *(e for _, _, e in wrong[:3]))
    return passed()


def _incompatible(exchange: Exchange) -> str | None:
    """Why ``exchange`` is not the error code 1 the spec wants, or ``None``."""
    if exchange.succeeded:
        return f"{exchange.label} succeeded"
    if exchange.crashed:
        return f"{exchange.label} crashed ({exchange.describe()})"
    code = exchange.error_code()
    if code != ErrorCode.INCOMPATIBLE_CNI_VERSION:
        return f"{exchange.label} gave code {code}, not 1"
    return None


@check(
    "version.unsupported",
    "a request in a version the plugin does not support fails with code 1, on every verb, "
    "and changes nothing",
    "SPEC 1.1 §2 Errors (code 1, Incompatible CNI version); §1 Version considerations",
    level="should",
)
def version_unsupported(session: Session) -> Finding:
    versions = [UNSUPPORTED]
    older = [v for v in KNOWN_VERSIONS if v not in session.supported]
    if older:
        versions.append(older[0])  # a version the kit knows and the plugin does not list
    ctr = session.container()
    node_before = session.snapshot_node()
    # STATUS and GC exist from 1.1.0 on: a plugin of an older spec need not know them.
    verbs = ["ADD", "CHECK", "DEL"] + (["STATUS", "GC"] if session.supports("1.1.0") else [])
    exchanges = []
    problems = []
    for version in versions:
        conf = session.config(version)
        for verb in verbs:
            target = ctr if verb in ("ADD", "CHECK", "DEL") else None
            exchange = session.call(f"{verb} ({version})", session.env(verb, target), conf)
            exchanges.append(exchange)
            if (problem := _incompatible(exchange)) is not None:
                problems.append((problem, exchange))
    changed = left_behind(session, node_before, ctr)
    if problems or changed:
        reasons = [p for p, _ in problems]
        if changed:
            reasons.append(f"and it changed the namespaces: {unexpected(changed)}")
        return failed("; ".join(reasons), *(e for _, e in problems[:4]))
    return passed(reason=f"code 1 for {', '.join(verbs)} in {', '.join(versions)}")
