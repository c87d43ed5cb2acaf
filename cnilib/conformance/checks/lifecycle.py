"""STATUS and GC, the verbs of spec 1.1.0."""

from __future__ import annotations

from typing import Any

from cnilib.conformance._registry import Finding, check, failed, not_applicable, passed
from cnilib.conformance._session import Session
from cnilib.conformance.checks._verdicts import failed_add, unexpected
from cnilib.errors import ErrorCode

V11 = "1.1.0"
_STATUS_CODES = (ErrorCode.PLUGIN_NOT_AVAILABLE, ErrorCode.LIMITED_CONNECTIVITY)


@check(
    "status.answers",
    "STATUS succeeds, or fails with code 50 or 51 (not available, limited connectivity)",
    "SPEC 1.1 §2 STATUS",
)
def status_answers(session: Session) -> Finding:
    if not session.supports(V11):
        return not_applicable("the plugin does not support 1.1.0")
    conf = session.config(V11, runtime_config=False)
    exchange = session.call(f"STATUS ({V11})", session.env("STATUS"), conf)
    if exchange.succeeded:
        return passed(exchange)
    code = exchange.error_code()
    if code in _STATUS_CODES:
        return passed(exchange, reason=f"not ready: {exchange.describe()}")
    return failed(f"{exchange.describe()}: neither success nor code 50 or 51", exchange)


@check(
    "gc.keeps-valid",
    "GC with cni.dev/valid-attachments succeeds and leaves the valid attachments working",
    "SPEC 1.1 §2 GC",
)
def gc_keeps_valid(session: Session) -> Finding:
    if not session.supports(V11):
        return not_applicable("the plugin does not support 1.1.0")
    if session.unavailable is not None:
        return not_applicable(session.unavailable)
    if (most := session.profile.max_attachments) is not None and most < 2:
        return not_applicable(f"the plugin can attach {most} container at a time; GC needs two")
    keep, drop = session.container(), session.container()
    evidence = []
    for ctr in (keep, drop):
        add = session.add(ctr, V11)
        evidence.append(add)
        if not add.succeeded:
            return failed(failed_add(add), add)
    kept_before = session.snapshot_container(keep)
    valid = [{"containerID": keep.id, "ifname": keep.ifname}]
    # Both keys: cni.dev/attachments is the name of spec drafts that plugins still read.
    keys: dict[str, Any] = {"cni.dev/valid-attachments": valid, "cni.dev/attachments": valid}
    conf = session.config(V11, runtime_config=False, **keys)
    gc = session.call(f"GC ({V11}, one of two valid)", session.env("GC"), conf)
    evidence.append(gc)
    problems = []
    if not gc.succeeded:
        problems.append(f"GC failed: {gc.describe()}")
    changed = session.snapshot_container(keep).removed_since(kept_before)
    if changed:
        problems.append(f"GC took from the valid attachment: {unexpected(changed)}")
    verify = session.check(keep, V11, label=f"CHECK ({V11}) of the valid attachment after GC")
    evidence.append(verify)
    if not verify.succeeded:
        problems.append(f"CHECK of the valid attachment failed after GC: {verify.describe()}")
    if problems:
        return failed("; ".join(problems), *evidence)
    return passed(gc, verify)
