"""GC (spec 1.1): the flow, and the report it returns.

Written like the other flows: it yields invocations and never performs
them. The driver holds the network's lock exclusively around it, so no ADD,
CHECK or DEL of that network runs meanwhile (the spec's requirement).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import attrs

from cnilib import spec
from cnilib._json import JSONValue
from cnilib.cache import AttachmentLock, CacheEntry
from cnilib.cache._locks import release
from cnilib.config import NetworkConfigList, request_config
from cnilib.errors import (
    CacheError,
    CNIError,
    GCError,
    OperationCancelledError,
    TryAgainLaterError,
)
from cnilib.invoke import Command, Invocation
from cnilib.runtime._conf import GCAttachment, RuntimeConf
from cnilib.runtime._flows import FlowContext, _call, _invocation, delete_flow

__all__ = ["GCReport", "gc_flow"]


@attrs.frozen
class GCReport:
    """What a GC did (or, with ``dry_run``, would do).

    ``stale`` are the cached attachments GC chose to delete; ``deleted`` those
    whose DEL succeeded (empty in a dry run); ``skipped_owners`` counts stale
    entries left alone because another runtime owns them; ``plugins_gc`` says
    whether the GC verb was sent to the plugins.
    """

    stale: tuple[CacheEntry, ...] = ()
    deleted: tuple[CacheEntry, ...] = ()
    skipped_owners: int = 0
    plugins_gc: bool = False


def _stale_entries(
    ctx: FlowContext,
    conflist: NetworkConfigList,
    valid: Sequence[GCAttachment] | None,
    all_owners: bool,
    errors: list[CNIError],
) -> tuple[list[CacheEntry], int]:
    try:
        entries = ctx.cache.attachments()
    except CacheError as exc:
        errors.append(exc)
        return [], 0
    keep = {(a.container_id, a.ifname) for a in valid or ()}
    stale: list[CacheEntry] = []
    others = 0
    for entry in entries:
        if entry.network_name != conflist.name or (entry.container_id, entry.ifname) in keep:
            continue
        if not all_owners and entry.owner != ctx.owner:
            others += 1
            continue
        stale.append(entry)
    return stale, others


def gc_flow(
    ctx: FlowContext,
    conflist: NetworkConfigList,
    valid: Sequence[GCAttachment] | None,
    *,
    all_owners: bool = False,
    dry_run: bool = False,
) -> Generator[Invocation, bytes, GCReport]:
    """GC: DEL every cached attachment of this network not in ``valid``, then
    send GC (1.1) to every plugin. Failures are collected, not fatal.

    ``valid=None`` means "no list given" (cnitool's ``gc``): every cached
    attachment of the network is deleted and plugins get no attachment key.

    Divergences: only entries with this runtime's ``owner`` tag are deleted
    (with ``owner=None``, untagged ones: those of Go tools and of untagged
    cnilib runtimes), unless ``all_owners`` (libcni deletes other runtimes'
    entries in a shared cache dir); ``dry_run`` reports and changes nothing; an
    unreadable cache directory is one of the reported failures, and plugin
    GC is still sent (libcni silently skips everything); an unparseable
    ``cniVersion`` is raised before anything runs.
    """
    if conflist.disable_gc:
        return GCReport()
    version = spec.parse_version(conflist.cni_version)
    errors: list[CNIError] = []
    stale, others = _stale_entries(ctx, conflist, valid, all_owners, errors)
    if dry_run:
        return GCReport(stale=tuple(stale), skipped_owners=others)
    deleted: list[CacheEntry] = []
    for entry in stale:
        held: AttachmentLock | None = None
        try:
            rt = RuntimeConf(
                container_id=entry.container_id,
                netns=entry.netns,
                ifname=entry.ifname,
                args=entry.cni_args,
                capability_args=entry.capability_args,
            )
            rt.validate(conflist.name)
            del_ctx = ctx
            if ctx.locks is not None:
                held = ctx.locks.try_attachment(conflist.name, rt.container_id, rt.ifname)
                if held is None:
                    raise TryAgainLaterError(
                        "busy: a plugin of an earlier, interrupted call still runs; "
                        "the next GC will retry"
                    )
                del_ctx = attrs.evolve(ctx, lock=held)
            yield from delete_flow(del_ctx, conflist, rt)
        except OperationCancelledError:
            raise  # a cancelled GC stops; what it did not reach stays for the next one
        except CNIError as exc:
            errors.append(
                exc.with_context(
                    f"failed to delete stale attachment {entry.container_id} {entry.ifname}: "
                )
            )
        else:
            deleted.append(entry)
        finally:
            if held is not None:
                held.clear()
                release([held.fd])
    send_gc = spec.has_gc(version)
    if send_gc:
        extra: dict[str, JSONValue] | None = None
        if valid is not None:
            listed: list[JSONValue] = [a.to_object() for a in valid]
            # The spec-v1.1.0 tag named the key cni.dev/attachments; send both, as libcni does.
            extra = {"cni.dev/valid-attachments": listed, "cni.dev/attachments": listed}
        for plugin in conflist.plugins:
            stdin = request_config(
                plugin, name=conflist.name, cni_version=conflist.cni_version, extra=extra
            )
            try:
                yield from _call(
                    _invocation(ctx, Command.GC, plugin, stdin),
                    f"failed to GC plugin {plugin.type}: ",
                )
            except OperationCancelledError:
                raise
            except CNIError as exc:
                errors.append(exc)
    report = GCReport(
        stale=tuple(stale), deleted=tuple(deleted), skipped_owners=others, plugins_gc=send_gc
    )
    if errors:
        error = GCError(f'GC of network "{conflist.name}" failed', errors)
        error.report = report
        raise error
    return report
