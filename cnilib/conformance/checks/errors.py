"""Every failure the run saw: an error object on stdout, shaped as the spec says.

These checks read the exchanges of all the checks before them, so they run last.
"""

from __future__ import annotations

from cnilib.conformance._model import Exchange
from cnilib.conformance._registry import Finding, check, failed, not_applicable, passed
from cnilib.conformance._session import Session
from cnilib.schema import schema_problems

WELL_KNOWN = {1, 2, 3, 4, 5, 6, 7, 11, 50, 51}
"""The codes of the spec's table; 0-99 are reserved for it."""


def _failures(session: Session) -> list[Exchange]:
    return [e for e in session.exchanges if not e.succeeded]


@check(
    "errors.object",
    "every failed call exits non-zero with an error object on stdout (code, msg, optional "
    "details), and nothing is a crash",
    "SPEC 1.1 §2 Errors (on an error, a plugin should output an error result); §5 Error",
    level="should",
)
def errors_object(session: Session) -> Finding:
    failures = _failures(session)
    if not failures:
        return not_applicable("no call of the run failed")
    wrong = []
    reasons = []
    for exchange in failures:
        obj = exchange.stdout_json()
        if exchange.crashed:
            problem = "crashed" if obj is not None else "no error object on stdout"
        elif problems := schema_problems("error", obj):
            problem = "; ".join(problems)
        else:
            continue
        wrong.append(exchange)
        reasons.append(f"{exchange.label}: {problem}")
    if wrong:
        return failed("; ".join(reasons[:6]), *wrong[:6])
    return passed(reason=f"{len(failures)} failures, each with an error object")


@check(
    "errors.codes",
    "the codes below 100 that failures use are the spec's well-known ones",
    "SPEC 1.1 §2 Errors (codes 0-99 are reserved for well-known errors)",
    level="should",
)
def errors_codes(session: Session) -> Finding:
    failures = _failures(session)
    odd = [
        e
        for e in failures
        if (code := e.error_code()) is not None and code < 100 and code not in WELL_KNOWN
    ]
    if not failures:
        return not_applicable("no call of the run failed")
    if odd:
        codes = sorted({e.error_code() or 0 for e in odd})
        return failed(f"codes {codes} are reserved and not the spec's", *odd[:3])
    return passed()
