"""MemoryStore: the etcd semantics the contract test does not reach, and its test hooks.

(tests/integration/test_overlay_store.py runs the shared contract against it and etcd.)
"""

from __future__ import annotations

import asyncio

import pytest

from cnilib.overlay import RevisionCompactedError, StoreUnavailableError
from cnilib.overlay._memstore import MemoryStore


@pytest.mark.asyncio
async def test_a_transaction_bumps_the_revision_once_and_a_no_op_not_at_all() -> None:
    store = MemoryStore()
    assert (await store.list("")).revision == 1  # etcd's empty store
    await store.compare_and_put({}, {"a": b"1", "b": b"2"})
    assert store.revision == 2
    a, b = (await store.list("")).items
    assert a.mod_revision == b.mod_revision == 2
    await store.compare_and_delete({}, ["absent"])
    await store.compare_and_put({}, {})
    assert store.revision == 2


@pytest.mark.asyncio
async def test_a_put_moves_the_key_to_the_new_lease() -> None:
    store = MemoryStore()
    old, new = await store.grant(30), await store.grant(30)
    await store.compare_and_put({}, {"k": b"1"}, lease=old.id)
    await store.compare_and_put({}, {"k": b"2"}, lease=new.id)
    await store.revoke(old.id)
    kv = await store.get("k")
    assert kv is not None
    assert kv.lease == new.id
    await store.compare_and_put({}, {"k": b"3"})  # no lease: detached
    await store.revoke(new.id)
    assert await store.get("k") is not None


@pytest.mark.asyncio
async def test_expire_hook_deletes_now_and_watchers_see_it() -> None:
    store = MemoryStore()
    grant = await store.grant(3600)
    await store.compare_and_put({}, {"p/a": b"1"}, lease=grant.id)
    watch = store.watch("p/", start_revision=store.revision + 1)
    pending = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0)
    store.expire(grant.id)
    batch = await asyncio.wait_for(pending, 5)
    assert [(e.type, e.key) for e in batch.events] == [("delete", "p/a")]
    assert await store.keepalive(grant.id) == 0
    store.expire(grant.id)  # gone already: fine
    await watch.aclose()


@pytest.mark.asyncio
async def test_watch_from_revision_zero_streams_only_new_changes() -> None:
    store = MemoryStore()
    await store.compare_and_put({}, {"p/old": b"1"})
    watch = store.watch("p/", start_revision=0)
    pending = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0)
    await store.compare_and_put({}, {"p/new": b"1"})
    batch = await asyncio.wait_for(pending, 5)
    assert [e.key for e in batch.events] == ["p/new"]
    await watch.aclose()


@pytest.mark.asyncio
async def test_compaction_ends_a_watch_still_behind_it() -> None:
    store = MemoryStore()
    await store.compare_and_put({}, {"p/a": b"1"})
    watch = store.watch("p/", start_revision=1)
    await store.compare_and_put({}, {"p/a": b"2"})
    store.compact(store.revision)
    with pytest.raises(RevisionCompactedError) as caught:
        await anext(watch)
    assert caught.value.compact_revision == 3
    with pytest.raises(ValueError, match="revision 9"):
        store.compact(9)
    store.compact(2)  # older than the compaction point: nothing to do


@pytest.mark.asyncio
async def test_outage_ends_open_watches_and_freezes_leases() -> None:
    store = MemoryStore()
    grant = await store.grant(1)
    await store.compare_and_put({}, {"p/a": b"1"}, lease=grant.id)
    watch = store.watch("p/", start_revision=0)
    pending = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0)
    store.set_available(False)
    assert not store.available
    with pytest.raises(StoreUnavailableError, match="unavailable"):
        await asyncio.wait_for(pending, 5)
    await asyncio.sleep(1.2)  # past the TTL: a lease does not run down in an outage
    store.set_available(True)
    assert await store.get("p/a") is not None
    left = await store.time_to_live(grant.id)
    assert left is not None
    assert left[1] == 1


@pytest.mark.asyncio
async def test_small_ttls_are_raised_to_the_minimum() -> None:
    store = MemoryStore(min_ttl=2)
    grant = await store.grant(1)
    assert grant.ttl == 2
    assert store.lease_ids() == (grant.id,)
