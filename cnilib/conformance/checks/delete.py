"""DEL: it succeeds whenever it can, and takes away everything its ADD made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cnilib.conformance._registry import Finding, check, failed, not_applicable, passed, warned
from cnilib.conformance._sandbox import Container
from cnilib.conformance._session import Session, carries_prev_result
from cnilib.conformance.checks._observe import left_behind, settled_node
from cnilib.conformance.checks._verdicts import add_blocked, failed_add, unexpected

_MUST_DEL = (
    "SPEC 1.1 §2 DEL (plugins must accept multiple DELs and succeed if what they made is gone)"
)


@check(
    "del.after-add",
    "DEL after ADD succeeds and returns the container's namespace to what it was",
    "SPEC 1.1 §2 DEL",
)
def del_after_add(session: Session) -> Finding:
    return _add_then_delete(session, judge="container")


@check(
    "del.leaves-nothing",
    "after ADD and DEL nothing the ADD made stays on the host: no link, address, route, "
    "rule, iptables rule, qdisc, or file in the plugin's state directories",
    "SPEC 1.1 §2 DEL (release all resources held); §3 Attachment lifecycle",
    level="should",
)
def del_leaves_nothing(session: Session) -> Finding:
    return _add_then_delete(session)


@check("del.twice", "a second DEL of the same attachment succeeds", _MUST_DEL)
def del_twice(session: Session) -> Finding:
    if (blocked := add_blocked(session)) is not None:
        return blocked
    ctr = session.container()
    add = session.add(ctr)
    if not add.succeeded:
        return failed(failed_add(add), add)
    version = session.attachments[ctr.id].version
    prev = session.prev_result(ctr)
    first = session.delete(ctr)
    # The runtime's second DEL carries what it still has: the same prevResult.
    extra: dict[str, Any] = (
        {"prevResult": prev} if prev is not None and carries_prev_result(version) else {}
    )
    second = session.call(
        f"DEL ({version}, again)", session.env("DEL", ctr), session.config(version, **extra)
    )
    if not first.succeeded:
        return failed(f"the first DEL failed: {first.describe()}", add, first)
    if not second.succeeded:
        return failed(f"the second DEL failed: {second.describe()}", first, second)
    return passed(first, second)


@check("del.without-add", "DEL of an attachment that was never added succeeds", _MUST_DEL)
def del_without_add(session: Session) -> Finding:
    if not session.supported:
        return not_applicable("VERSION listed no version the kit knows")
    if session.profile.needs_daemon is not None:
        return not_applicable(session.profile.needs_daemon)  # its DEL asks the daemon too
    ctr = session.container()
    before = session.snapshot_node()
    delete = session.delete(ctr, prev_result=False)
    if not delete.succeeded:
        return failed(f"DEL failed: {delete.describe()}", delete)
    if left := left_behind(session, before):
        return warned(f"DEL without ADD changed the host: {unexpected(left)}", delete)
    return passed(delete)


@check(
    "del.netns-gone",
    "DEL after the container's namespace is gone succeeds and still cleans up the host",
    f"{_MUST_DEL}; §2 DEL (an IPAM plugin releases even when the namespace is gone)",
)
def del_netns_gone(session: Session) -> Finding:
    return _add_then_delete(session, before_delete=lambda ctr: ctr.ns.delete())


@check(
    "del.no-prevresult",
    "DEL without prevResult succeeds and cleans up as much as it can",
    "SPEC 1.1 §2 DEL (when CNI_NETNS and/or prevResult are not provided)",
    level="should",
)
def del_no_prev_result(session: Session) -> Finding:
    label = f"DEL ({session.newest}, no prevResult)"
    return _add_then_delete(session, oldest="0.4.0", prev_result=False, label=label)


@check(
    "del.no-netns",
    "DEL with CNI_NETNS empty succeeds and releases what it can without the namespace",
    "SPEC 1.1 §2 DEL (when CNI_NETNS and/or prevResult are not provided)",
    level="should",
)
def del_no_netns(session: Session) -> Finding:
    label = f"DEL ({session.newest}, CNI_NETNS empty)"
    return _add_then_delete(session, judge="none", netns="", label=label)


def _add_then_delete(
    session: Session,
    *,
    oldest: str = "0.1.0",
    judge: str = "host",
    before_delete: Callable[[Container], None] | None = None,
    **delete: Any,
) -> Finding:
    """ADD a container, optionally change the world (``before_delete``), DEL it with
    ``delete``'s arguments; the DEL must succeed and leave nothing behind where
    ``judge`` says: on the ``host`` (the node and state directories, against the
    settled node), in the ``container`` (against its namespace as made), or ``none``."""
    if (blocked := add_blocked(session, oldest)) is not None:
        return blocked
    before = settled_node(session) if judge == "host" else None
    ctr = session.container()
    add = session.add(ctr)
    if not add.succeeded:
        return failed(failed_add(add), add)
    if before_delete is not None:
        before_delete(ctr)
    result = session.delete(ctr, **delete)
    if not result.succeeded:
        session.attachments.pop(ctr.id, None)  # the kit's tidying must not retry it
        return failed(f"DEL failed: {result.describe()}", add, result)
    # What a DEL leaves behind is a SHOULD (release what it held); its success a MUST.
    if before is not None and (left := left_behind(session, before)):
        return warned(f"left on the host: {unexpected(left)}", add, result)
    if judge == "container":
        left = session.snapshot_container(ctr).added_since(session.container_baseline(ctr))
        if left:
            return warned(f"left in the container: {unexpected(left)}", add, result)
    return passed(add, result)
