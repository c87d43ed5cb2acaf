"""The cluster store the overlay needs, as a small typed protocol.

The agent and ``overlay status`` speak only this protocol; :mod:`._etcd` implements it
over etcd's v3 API (the only module that imports an etcd client) and
:class:`~cnilib.overlay.MemoryStore` in memory, with the same revisions, leases,
transactions and compaction, for tests and simulations.

Semantics are etcd's: every change bumps one store-wide revision; a key's
``mod_revision`` is the revision of its last change, 0 for an absent key; a key put
with a lease is deleted when the lease expires or is revoked, and watchers see
that as a delete.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Literal, Protocol

import attrs

__all__ = [
    "ClusterStore",
    "KeyValue",
    "LeaseGrant",
    "Snapshot",
    "TxnOutcome",
    "WatchBatch",
    "WatchEvent",
]


@attrs.frozen
class KeyValue:
    """One key as the store holds it."""

    key: str
    value: bytes = attrs.field(repr=False)
    create_revision: int
    mod_revision: int
    lease: int = 0
    """The lease the key is attached to; 0: none."""


@attrs.frozen
class Snapshot:
    """The keys under a prefix, as of ``revision``."""

    items: tuple[KeyValue, ...]
    revision: int


@attrs.frozen
class LeaseGrant:
    """A lease the store granted: its ID and the TTL it chose (it may raise a small one)."""

    id: int
    ttl: int


@attrs.frozen
class TxnOutcome:
    """The answer to :meth:`ClusterStore.compare_and_put` and ``compare_and_delete``."""

    succeeded: bool
    current: Mapping[str, KeyValue | None]
    """On failure, each compared key as it is now (None: absent); empty on success."""


@attrs.frozen
class WatchEvent:
    """A change of one key."""

    type: Literal["put", "delete"]
    key: str
    value: bytes = attrs.field(repr=False)
    """The new value; ``b""`` for a delete."""
    mod_revision: int


@attrs.frozen
class WatchBatch:
    """The changes of one store revision or more, in order."""

    events: tuple[WatchEvent, ...]
    revision: int
    """The store's revision when the batch was sent: resume from ``revision + 1``."""


class ClusterStore(Protocol):
    """What the overlay asks of etcd. Every method may raise
    :class:`~cnilib.overlay.StoreUnavailableError`."""

    async def get(self, key: str) -> KeyValue | None:
        """One key, or None."""
        ...

    async def list(self, prefix: str) -> Snapshot:
        """Every key starting with ``prefix``, sorted by key, and the store's revision."""
        ...

    async def compare_and_put(
        self, expect: Mapping[str, int], puts: Mapping[str, bytes], *, lease: int = 0
    ) -> TxnOutcome:
        """In one transaction: if every key of ``expect`` has that ``mod_revision``
        (0: the key is absent), put every key of ``puts`` (with ``lease``, 0: none);
        otherwise change nothing and report the compared keys as they are."""
        ...

    async def compare_and_delete(
        self, expect: Mapping[str, int], deletes: Sequence[str]
    ) -> TxnOutcome:
        """In one transaction: if every key of ``expect`` has that ``mod_revision``,
        delete every key of ``deletes`` (absent ones are fine)."""
        ...

    async def grant(self, ttl: int) -> LeaseGrant:
        """A new lease of about ``ttl`` seconds."""
        ...

    async def keepalive(self, lease: int) -> int:
        """Renew ``lease`` to its full TTL; the TTL now, 0 when the lease is gone."""
        ...

    async def time_to_live(self, lease: int) -> tuple[int, int] | None:
        """(seconds left, TTL granted) of ``lease``; None when it is gone."""
        ...

    async def revoke(self, lease: int) -> None:
        """End ``lease`` now, deleting its keys (a lease already gone is fine)."""
        ...

    def watch(self, prefix: str, *, start_revision: int) -> AsyncGenerator[WatchBatch, None]:
        """Changes under ``prefix`` from ``start_revision`` on, until the generator is
        closed (``aclose()``, or :func:`contextlib.aclosing`: that ends the store's
        server-side watch at once, not when the generator is collected).

        Raises :class:`~cnilib.overlay.RevisionCompactedError` when that revision was
        compacted, :class:`~cnilib.overlay.StoreUnavailableError` when the connection
        is lost (the caller lists again and resumes)."""
        ...

    async def close(self) -> None:
        """Release the connection (idempotent)."""
        ...
