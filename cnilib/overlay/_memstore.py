"""An in-memory :class:`~cnilib.overlay.ClusterStore` with etcd's semantics, for tests.

What it copies from etcd (v3 API, as measured against etcd 3.4):

* one store-wide revision, 1 when empty; a transaction that changes keys bumps it
  once (all its puts/deletes share the new revision), one that changes nothing does not;
* ``create_revision``/``mod_revision`` per key, ``mod_revision`` 0 for an absent key;
* leases that run down on the running asyncio loop's clock and, when they expire or
  are revoked, delete their keys in one revision (watchers see delete events);
  ``keepalive`` answers 0 for a lease that is gone; a put with an unknown lease fails;
* ``watch`` replays the history from ``start_revision`` and then streams live
  changes; a revision below the compaction point raises
  :class:`~cnilib.overlay.RevisionCompactedError`.

Test hooks: :meth:`MemoryStore.compact`, :meth:`MemoryStore.set_available` (an outage:
every call and every open watch raises :class:`~cnilib.overlay.StoreUnavailableError`;
leases do not run down meanwhile and get their full TTL back when it ends, as etcd's do
across a restart) and :meth:`MemoryStore.expire`.

Several clients (agents) may share one store, as several agents share one etcd:
:meth:`MemoryStore.close` therefore keeps the data.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence

import attrs

from cnilib.overlay._errors import RevisionCompactedError, StoreError, StoreUnavailableError
from cnilib.overlay._store import KeyValue, LeaseGrant, Snapshot, TxnOutcome, WatchBatch, WatchEvent

__all__ = ["MemoryStore"]


@attrs.define
class _Lease:
    id: int
    ttl: int
    loop: asyncio.AbstractEventLoop
    deadline: float = 0.0
    keys: set[str] = attrs.field(factory=set)
    timer: asyncio.TimerHandle | None = None


@attrs.frozen
class _Change:
    revision: int
    event: WatchEvent


class MemoryStore:
    """A :class:`~cnilib.overlay.ClusterStore` in memory (see the module docstring).

    ``min_ttl`` plays etcd's minimum lease TTL (etcd raises a smaller request to it;
    2 s with its default election timeout); the default 1 keeps tests short.
    """

    def __init__(self, *, min_ttl: int = 1, name: str = "memory") -> None:
        self.name = name
        self._min_ttl = min_ttl
        self._revision = 1
        self._compacted = 0
        self._kv: dict[str, KeyValue] = {}
        self._history: list[_Change] = []
        self._leases: dict[int, _Lease] = {}
        # etcd's lease IDs are large int64s; distinct, positive, never reused
        self._lease_ids = itertools.count(0x694D_0000_0000_0001)
        self._up = True
        self._wakeups: set[asyncio.Event] = set()

    # -- test hooks --------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The store's current revision."""
        return self._revision

    @property
    def available(self) -> bool:
        """False during an outage made by :meth:`set_available`."""
        return self._up

    def compact(self, revision: int) -> None:
        """Drop the history below ``revision`` (etcd's compaction): a watch from an
        older revision raises :class:`RevisionCompactedError`, also one already open
        that has not been sent those changes yet."""
        if revision > self._revision:
            raise ValueError(
                f"cannot compact {self.name} at revision {revision}: "
                f"the store is at {self._revision}"
            )
        if revision <= self._compacted:
            return
        self._compacted = revision
        self._history = [c for c in self._history if c.revision >= revision]
        self._wake()

    def set_available(self, up: bool) -> None:
        """Start (``False``) or end (``True``) an outage. During one every call raises
        :class:`StoreUnavailableError` and open watches end with it; leases do not
        expire, and each gets its full TTL back when the outage ends."""
        if up == self._up:
            return
        self._up = up
        if up:
            for lease in list(self._leases.values()):
                self._arm(lease)
        else:
            for lease in self._leases.values():
                if lease.timer is not None:
                    lease.timer.cancel()
                    lease.timer = None
        self._wake()

    def expire(self, lease: int) -> None:
        """Expire ``lease`` now: its keys are deleted (watchers see the deletes).
        A lease already gone is fine."""
        self._end_lease(lease)

    def lease_ids(self) -> tuple[int, ...]:
        """The leases alive now."""
        return tuple(self._leases)

    # -- ClusterStore ------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        await self._call("get", key)
        return self._kv.get(key)

    async def list(self, prefix: str) -> Snapshot:
        await self._call("list", prefix)
        items = tuple(self._kv[k] for k in sorted(self._kv) if k.startswith(prefix))
        return Snapshot(items=items, revision=self._revision)

    async def compare_and_put(
        self, expect: Mapping[str, int], puts: Mapping[str, bytes], *, lease: int = 0
    ) -> TxnOutcome:
        await self._call("compare_and_put", ", ".join(puts))
        failed = self._compare(expect)
        if failed is not None:
            return failed
        if lease and lease not in self._leases:
            raise StoreError(
                f"{self.name}: compare_and_put of {', '.join(puts)}: lease {lease} not found"
            )
        if puts:
            revision = self._revision + 1
            changes = [self._put(key, value, lease, revision) for key, value in puts.items()]
            self._commit(revision, changes)
        return TxnOutcome(succeeded=True, current={})

    async def compare_and_delete(
        self, expect: Mapping[str, int], deletes: Sequence[str]
    ) -> TxnOutcome:
        await self._call("compare_and_delete", ", ".join(deletes))
        failed = self._compare(expect)
        if failed is not None:
            return failed
        self._delete_keys(deletes)
        return TxnOutcome(succeeded=True, current={})

    async def grant(self, ttl: int) -> LeaseGrant:
        await self._call("grant", str(ttl))
        ttl = max(ttl, self._min_ttl)
        lease = _Lease(id=next(self._lease_ids), ttl=ttl, loop=asyncio.get_running_loop())
        self._leases[lease.id] = lease
        self._arm(lease)
        return LeaseGrant(id=lease.id, ttl=ttl)

    async def keepalive(self, lease: int) -> int:
        await self._call("keepalive", str(lease))
        held = self._leases.get(lease)
        if held is None:
            return 0
        self._arm(held)
        return held.ttl

    async def time_to_live(self, lease: int) -> tuple[int, int] | None:
        await self._call("time_to_live", str(lease))
        held = self._leases.get(lease)
        if held is None:
            return None
        # etcd truncates the remaining time to whole seconds
        left = int(max(0.0, held.deadline - held.loop.time()))
        return left, held.ttl

    async def revoke(self, lease: int) -> None:
        await self._call("revoke", str(lease))
        self._end_lease(lease)

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncGenerator[WatchBatch, None]:
        await self._call("watch", prefix)
        wakeup = asyncio.Event()
        self._wakeups.add(wakeup)
        next_revision = start_revision if start_revision > 0 else self._revision + 1
        try:
            while True:
                if not self._up:
                    raise self._unavailable("watch", prefix)
                if next_revision < self._compacted:
                    raise RevisionCompactedError(
                        f"{self.name}: watch of {prefix!r} from revision {next_revision}: "
                        f"the store was compacted at revision {self._compacted}",
                        compact_revision=self._compacted,
                    )
                events = tuple(
                    c.event
                    for c in self._history
                    if c.revision >= next_revision and c.event.key.startswith(prefix)
                )
                if events:
                    batch = WatchBatch(events=events, revision=self._revision)
                    next_revision = self._revision + 1
                    yield batch
                    continue
                next_revision = max(next_revision, self._revision + 1)
                wakeup.clear()
                await wakeup.wait()
        finally:
            self._wakeups.discard(wakeup)

    async def close(self) -> None:
        """Nothing to release: the data and leases stay (other clients may share them)."""

    # -- internals ---------------------------------------------------------------------

    async def _call(self, operation: str, what: str) -> None:
        # yield like a network call would, so concurrent callers interleave
        await asyncio.sleep(0)
        if not self._up:
            raise self._unavailable(operation, what)

    def _unavailable(self, operation: str, what: str) -> StoreUnavailableError:
        return StoreUnavailableError(f"{self.name}: {operation} {what!r}: the store is unavailable")

    def _compare(self, expect: Mapping[str, int]) -> TxnOutcome | None:
        if all(self._mod_revision(key) == rev for key, rev in expect.items()):
            return None
        return TxnOutcome(succeeded=False, current={key: self._kv.get(key) for key in expect})

    def _mod_revision(self, key: str) -> int:
        kv = self._kv.get(key)
        return 0 if kv is None else kv.mod_revision

    def _put(self, key: str, value: bytes, lease: int, revision: int) -> WatchEvent:
        old = self._kv.get(key)
        if old is not None and old.lease and old.lease in self._leases:
            self._leases[old.lease].keys.discard(key)
        if lease:
            self._leases[lease].keys.add(key)
        created = old.create_revision if old is not None else revision
        self._kv[key] = KeyValue(
            key=key, value=value, create_revision=created, mod_revision=revision, lease=lease
        )
        return WatchEvent(type="put", key=key, value=value, mod_revision=revision)

    def _delete_keys(self, keys: Iterable[str]) -> None:
        present = [key for key in keys if key in self._kv]
        if not present:
            return
        revision = self._revision + 1
        changes = []
        for key in sorted(present):
            old = self._kv.pop(key)
            if old.lease and old.lease in self._leases:
                self._leases[old.lease].keys.discard(key)
            changes.append(WatchEvent(type="delete", key=key, value=b"", mod_revision=revision))
        self._commit(revision, changes)

    def _commit(self, revision: int, events: Sequence[WatchEvent]) -> None:
        self._revision = revision
        self._history.extend(_Change(revision, event) for event in events)
        self._wake()

    def _wake(self) -> None:
        for wakeup in self._wakeups:
            wakeup.set()

    def _arm(self, lease: _Lease) -> None:
        """(Re)start ``lease``'s full TTL on the clock of the loop that granted it
        (so a hook called outside the loop, like :meth:`set_available`, works)."""
        if lease.timer is not None:
            lease.timer.cancel()
        lease.deadline = lease.loop.time() + lease.ttl
        lease.timer = lease.loop.call_at(lease.deadline, self._on_timer, lease.id)

    def _on_timer(self, lease_id: int) -> None:
        lease = self._leases.get(lease_id)
        if lease is None or not self._up:
            return
        lease.timer = None
        self._end_lease(lease_id)

    def _end_lease(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            return
        if lease.timer is not None:
            lease.timer.cancel()
        self._delete_keys(lease.keys)
