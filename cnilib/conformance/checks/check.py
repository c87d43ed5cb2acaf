"""CHECK (0.4.0 on): it passes on a fresh attachment and notices a broken one."""

from __future__ import annotations

from cnilib.conformance._profile import Kind
from cnilib.conformance._registry import Finding, check, failed, not_applicable, passed
from cnilib.conformance._sandbox import Container
from cnilib.conformance._session import Session
from cnilib.conformance.checks._verdicts import add_blocked, failed_add

CHECK_FROM = "0.4.0"


@check(
    "check.after-add",
    "CHECK right after ADD, with the ADD's result as prevResult, succeeds",
    "SPEC 1.1 §2 CHECK (the plugin must handle CHECK called immediately after ADD)",
)
def check_after_add(session: Session) -> Finding:
    if (blocked := add_blocked(session, CHECK_FROM)) is not None:
        return blocked
    ctr = session.container()
    add = session.add(ctr, session.newest)
    if not add.succeeded:
        return failed(failed_add(add), add)
    result = session.check(ctr)
    if not result.succeeded:
        return failed(f"CHECK failed: {result.describe()}", add, result)
    return passed(result)


def _break(session: Session, ctr: Container) -> str | None:
    """Break the attachment the profile's way, or by deleting the container's
    interface; what was done, or ``None`` where the kit knows nothing to break."""
    result = session.prev_result(ctr) or {}
    if session.profile.breaker is not None:
        return session.profile.breaker(session, ctr, result)
    if session.profile.kind is Kind.INTERFACE:
        ctr.ns.exec("ip", "link", "del", ctr.ifname)
        return f"deleted {ctr.ifname} in the container"
    return None


@check(
    "check.detects-break",
    "CHECK fails, with an error object, once the attachment is broken (the interface "
    "deleted, or what the plugin's profile breaks)",
    "SPEC 1.1 §2 CHECK (return an error if a resource it created is missing or invalid)",
    level="should",
)
def check_detects_break(session: Session) -> Finding:
    if (blocked := add_blocked(session, CHECK_FROM)) is not None:
        return blocked
    if session.profile.breaker is None and session.profile.kind is not Kind.INTERFACE:
        return not_applicable("the kit knows nothing of this plugin's to break")
    ctr = session.container()
    add = session.add(ctr, session.newest)
    if not add.succeeded:
        return failed(failed_add(add), add)
    done = _break(session, ctr)
    result = session.check(ctr, label=f"CHECK ({session.newest}, after the kit {done})")
    if result.succeeded:
        return failed(f"CHECK succeeded after the kit {done}", add, result)
    if result.crashed:
        return failed(f"CHECK crashed after the kit {done}: {result.describe()}", add, result)
    return passed(result, reason=f"after the kit {done}")


@check(
    "check.old-version",
    "CHECK in a configuration older than 0.4.0 fails with code 1 (CHECK did not exist)",
    "SPEC 0.4.0 (CHECK is new in it); §2 Errors (code 1); Go skel's behaviour",
    level="should",
)
def check_old_version(session: Session) -> Finding:
    older = [v for v in session.supported if v in ("0.3.0", "0.3.1", "0.2.0", "0.1.0")]
    if not older:
        return not_applicable("the plugin supports no version before 0.4.0")
    version = older[-1]
    ctr = session.container()
    conf = session.config(version)
    result = session.call(f"CHECK ({version})", session.env("CHECK", ctr), conf)
    if result.succeeded:
        return failed(f"CHECK in {version} succeeded", result)
    if result.error_code() != 1:
        return failed(f"CHECK in {version}: {result.describe()}, not code 1", result)
    return passed(result)
