"""The ClusterStore contract, run against both stores: MemoryStore and etcd (EtcdStore).

The same behaviour is asked of both, so the agent's logic tested against the memory
store holds against etcd: the claim race, leases (expiry with delete events,
keepalive, revoke), watch resume from a revision, compaction, and an outage.
etcd is Debian's etcd-server on loopback with free ports (no root needed); a
server is shared by the tests of this module except the outage test, which stops
and restarts its own. Leases use etcd's minimum TTL, 2 s; waits poll with deadlines.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from cnilib.overlay import RevisionCompactedError, StoreError, StoreUnavailableError
from cnilib.overlay._memstore import MemoryStore
from cnilib.overlay._store import ClusterStore, WatchBatch, WatchEvent
from cnilib.testing._etcd import ETCD_INSTALL_HINT, EtcdServer, find_etcd
from cnilib.testing.pytest_plugin import REQUIRE_PRIVILEGED_ENV

TTL = 2
PATIENCE = 10.0  # seconds: a lease of TTL 2 is gone well within this


def _need_etcd() -> None:
    missing = []
    if find_etcd() is None:
        missing.append(f"the etcd server binary ({ETCD_INSTALL_HINT})")
    try:
        import aetcd  # noqa: F401
    except ImportError:
        missing.append("aetcd (pip install 'cnilib[overlay]')")
    if missing:
        message = f"needs {' and '.join(missing)}"
        if os.environ.get(REQUIRE_PRIVILEGED_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRE_PRIVILEGED_ENV}=1 requires it)", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    _need_etcd()
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture(params=["memory", "etcd"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def store(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[ClusterStore]:
    if kind == "memory":
        yield MemoryStore(min_ttl=2)
        return
    from cnilib.overlay._etcd import connect_etcd

    server: EtcdServer = request.getfixturevalue("shared_etcd")
    etcd = await connect_etcd(server.url, timeout=2.0)
    try:
        yield etcd
    finally:
        await etcd.close()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix of the test's own: the etcd server is shared by the module."""
    return f"/t/{request.node.name}/"


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {PATIENCE} s: {what}")
        await asyncio.sleep(0.05)


async def next_batch(watch: AsyncIterator[WatchBatch]) -> WatchBatch:
    return await asyncio.wait_for(anext(watch), PATIENCE)


async def compact(store: ClusterStore, revision: int) -> None:
    if isinstance(store, MemoryStore):
        store.compact(revision)
    else:
        await store.compact(revision)  # type: ignore[attr-defined]


# -- keys and transactions -------------------------------------------------------------


@pytest.mark.asyncio
async def test_revisions_and_compare_and_put(store: ClusterStore, prefix: str) -> None:
    key = prefix + "a"
    assert await store.get(key) is None
    before = (await store.list(prefix)).revision
    assert (await store.compare_and_put({key: 0}, {key: b"1"})).succeeded
    first = await store.get(key)
    assert first is not None
    assert first.value == b"1"
    assert first.create_revision == first.mod_revision == before + 1
    # a stale expectation changes nothing and reports the key as it is
    stale = await store.compare_and_put({key: 0}, {key: b"2"})
    assert not stale.succeeded
    assert stale.current == {key: first}
    assert (await store.compare_and_put({key: first.mod_revision}, {key: b"2"})).succeeded
    second = await store.get(key)
    assert second is not None
    assert second.create_revision == first.create_revision
    assert second.mod_revision > first.mod_revision
    snapshot = await store.list(prefix)
    assert [kv.value for kv in snapshot.items] == [b"2"]
    assert snapshot.revision >= second.mod_revision


@pytest.mark.asyncio
async def test_claim_race_has_one_winner_and_losers_see_it(
    store: ClusterStore, prefix: str
) -> None:
    key, node = prefix + "subnet", prefix + "node"
    outcomes = await asyncio.gather(
        *(
            store.compare_and_put({key: 0, node: 0}, {key: b"%d" % i, node: b"%d" % i})
            for i in range(5)
        )
    )
    winners = [i for i, outcome in enumerate(outcomes) if outcome.succeeded]
    assert len(winners) == 1
    held = await store.get(key)
    assert held is not None
    assert held.value == b"%d" % winners[0]
    for outcome in outcomes:
        if not outcome.succeeded:
            assert outcome.current[key] == held
            assert outcome.current[node] is not None


@pytest.mark.asyncio
async def test_compare_and_delete(store: ClusterStore, prefix: str) -> None:
    key = prefix + "a"
    await store.compare_and_put({}, {key: b"x"})
    kv = await store.get(key)
    assert kv is not None
    missed = await store.compare_and_delete({key: kv.mod_revision + 100}, [key])
    assert not missed.succeeded
    assert missed.current == {key: kv}
    assert (
        await store.compare_and_delete({key: kv.mod_revision}, [key, prefix + "absent"])
    ).succeeded
    assert await store.get(key) is None


# -- leases ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_lease_expiry_deletes_keys_with_delete_events(
    store: ClusterStore, prefix: str
) -> None:
    grant = await store.grant(TTL)
    assert grant.ttl >= TTL
    start = (await store.list(prefix)).revision + 1
    assert (
        await store.compare_and_put({}, {prefix + "a": b"1", prefix + "b": b"2"}, lease=grant.id)
    ).succeeded
    kv = await store.get(prefix + "a")
    assert kv is not None
    assert kv.lease == grant.id
    watch = store.watch(prefix, start_revision=start)
    try:
        puts = await next_batch(watch)
        assert {(e.type, e.key) for e in puts.events} == {
            ("put", prefix + "a"),
            ("put", prefix + "b"),
        }
        deletes: list[WatchEvent] = []
        while len(deletes) < 2:  # the expiry, without any keepalive
            deletes.extend((await next_batch(watch)).events)
    finally:
        await watch.aclose()
    assert {(e.type, e.key, e.value) for e in deletes} == {
        ("delete", prefix + "a", b""),
        ("delete", prefix + "b", b""),
    }
    assert len({e.mod_revision for e in deletes}) == 1  # one revision for the lease's keys
    assert (await store.list(prefix)).items == ()
    assert await store.keepalive(grant.id) == 0
    assert await store.time_to_live(grant.id) is None


@pytest.mark.asyncio
async def test_keepalive_holds_the_lease(store: ClusterStore, prefix: str) -> None:
    grant = await store.grant(TTL)
    await store.compare_and_put({}, {prefix + "a": b"1"}, lease=grant.id)
    deadline = time.monotonic() + grant.ttl + 0.5  # longer than the TTL
    while time.monotonic() < deadline:
        assert await store.keepalive(grant.id) == grant.ttl
        await asyncio.sleep(0.5)
    assert await store.get(prefix + "a") is not None
    left = await store.time_to_live(grant.id)
    assert left is not None
    assert left[1] == grant.ttl
    assert 0 <= left[0] <= grant.ttl
    await store.revoke(grant.id)


@pytest.mark.asyncio
async def test_revoke_deletes_keys_and_is_idempotent(store: ClusterStore, prefix: str) -> None:
    grant = await store.grant(30)
    await store.compare_and_put({}, {prefix + "a": b"1"}, lease=grant.id)
    await store.revoke(grant.id)
    assert await store.get(prefix + "a") is None
    assert await store.keepalive(grant.id) == 0
    assert await store.time_to_live(grant.id) is None
    await store.revoke(grant.id)  # gone already: fine


@pytest.mark.asyncio
async def test_put_with_unknown_lease_fails(store: ClusterStore, prefix: str) -> None:
    grant = await store.grant(30)
    await store.revoke(grant.id)
    with pytest.raises(StoreError, match="lease"):
        await store.compare_and_put({}, {prefix + "a": b"1"}, lease=grant.id)
    assert await store.get(prefix + "a") is None


# -- watch -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_watch_resumes_from_a_revision(store: ClusterStore, prefix: str) -> None:
    start = (await store.list(prefix)).revision + 1
    for i in range(3):
        await store.compare_and_put({}, {prefix + f"k{i}": b"%d" % i})
    await store.compare_and_put({}, {"/elsewhere/" + prefix: b"not watched"})
    watch = store.watch(prefix, start_revision=start)
    seen: list[WatchEvent] = []
    try:
        while len(seen) < 3:
            batch = await next_batch(watch)
            seen.extend(batch.events)
    finally:
        await watch.aclose()
    assert [e.key for e in seen] == [prefix + f"k{i}" for i in range(3)]
    # resume after the first event: no gap, no duplicate, then live changes
    watch = store.watch(prefix, start_revision=seen[0].mod_revision + 1)
    try:
        again: list[WatchEvent] = []
        while len(again) < 2:
            again.extend((await next_batch(watch)).events)
        assert again == seen[1:]
        await store.compare_and_delete({}, [prefix + "k0"])
        live = await next_batch(watch)
        assert [(e.type, e.key) for e in live.events] == [("delete", prefix + "k0")]
        assert live.revision >= live.events[-1].mod_revision
    finally:
        await watch.aclose()


@pytest.mark.asyncio
async def test_watch_from_a_compacted_revision_raises(store: ClusterStore, prefix: str) -> None:
    start = (await store.list(prefix)).revision + 1
    await store.compare_and_put({}, {prefix + "a": b"1"})
    await store.compare_and_put({}, {prefix + "a": b"2"})
    now = (await store.list(prefix)).revision
    await compact(store, now)
    watch = store.watch(prefix, start_revision=start)
    with pytest.raises(RevisionCompactedError) as caught:
        await next_batch(watch)
    assert caught.value.compact_revision == now
    # what the agent does next: list again and watch from there
    snapshot = await store.list(prefix)
    watch = store.watch(prefix, start_revision=snapshot.revision + 1)
    try:
        await store.compare_and_put({}, {prefix + "a": b"3"})
        batch = await next_batch(watch)
        assert [e.value for e in batch.events] == [b"3"]
    finally:
        await watch.aclose()


# -- outage ----------------------------------------------------------------------------


@pytest_asyncio.fixture
async def outage_store(
    kind: str, tmp_path: Path
) -> AsyncIterator[tuple[ClusterStore, Callable[[bool], Awaitable[None]]]]:
    """A store and ``set_up(bool)``: for etcd, its own server stopped and started."""
    if kind == "memory":
        memory = MemoryStore(min_ttl=2)

        async def set_memory(up: bool) -> None:
            memory.set_available(up)

        yield memory, set_memory
        return
    _need_etcd()
    from cnilib.overlay._etcd import connect_etcd

    server = EtcdServer(tmp_path / "etcd")
    await asyncio.to_thread(server.start)
    try:
        etcd = await connect_etcd(server.url, timeout=2.0)

        async def set_etcd(up: bool) -> None:
            await asyncio.to_thread(server.start if up else server.stop)

        try:
            yield etcd, set_etcd
        finally:
            await etcd.close()
    finally:
        server.stop(kill=True)


@pytest.mark.asyncio
async def test_outage_fails_calls_ends_watches_and_recovers(
    outage_store: tuple[ClusterStore, Callable[[bool], Awaitable[None]]],
) -> None:
    store, set_up = outage_store
    await store.compare_and_put({}, {"/o/a": b"1"})
    grant = await store.grant(TTL)
    await store.compare_and_put({}, {"/o/leased": b"1"}, lease=grant.id)
    revision = (await store.list("/o/")).revision
    watch = store.watch("/o/", start_revision=revision + 1)
    pending = asyncio.ensure_future(next_batch(watch))
    await asyncio.sleep(0.2)  # the watch is established
    await set_up(False)
    with pytest.raises(StoreUnavailableError):
        await pending
    began = time.monotonic()
    for call in (
        store.get("/o/a"),
        store.list("/o/"),
        store.compare_and_put({}, {"/o/b": b"1"}),
        store.keepalive(grant.id),
    ):
        with pytest.raises(StoreUnavailableError):
            await call
    assert time.monotonic() - began < 3.0  # quick: no retry loop hides the outage
    await set_up(True)
    # back: the data is there and leases got their TTL back (etcd renews them on restart)
    await eventually(lambda: _answers(store), "the store answers again")
    assert (await store.get("/o/a")) is not None
    assert await store.keepalive(grant.id) == grant.ttl
    assert (await store.get("/o/leased")) is not None
    watch = store.watch("/o/", start_revision=revision + 1)
    try:
        await store.compare_and_put({}, {"/o/c": b"1"})
        batch = await next_batch(watch)
        assert [e.key for e in batch.events] == ["/o/c"]
    finally:
        await watch.aclose()


async def _answers(store: ClusterStore) -> bool:
    try:
        await store.list("/o/")
    except StoreUnavailableError:
        return False
    return True


# -- the etcd client's own edges -------------------------------------------------------


@pytest.mark.asyncio
async def test_closing_the_store_ends_pending_calls_with_a_store_error(
    shared_etcd: EtcdServer,
) -> None:
    """A call or watch in flight when the store is closed ends with StoreError, not
    with grpc's CancelledError (which would look like the caller's task was cancelled)."""
    from cnilib.overlay._etcd import connect_etcd

    etcd = await connect_etcd(shared_etcd.url, timeout=2.0)
    watch = etcd.watch("/closing/", start_revision=0)
    watching = asyncio.ensure_future(next_batch(watch))
    await asyncio.sleep(0.2)  # the watch is established
    calls = [asyncio.ensure_future(etcd.keepalive(1)), asyncio.ensure_future(etcd.get("/c"))]
    await asyncio.sleep(0)
    await etcd.close()
    for pending in (watching, *calls):
        with pytest.raises(StoreError, match="closed"):
            await pending
    await watch.aclose()


@pytest.mark.asyncio
async def test_cancelling_a_call_or_watch_still_cancels(shared_etcd: EtcdServer) -> None:
    from cnilib.overlay._etcd import connect_etcd

    etcd = await connect_etcd(shared_etcd.url, timeout=2.0)
    try:
        watch = etcd.watch("/cancel/", start_revision=0)
        pending = [asyncio.ensure_future(next_batch(watch)), asyncio.ensure_future(etcd.get("/c"))]
        await asyncio.sleep(0)
        for task in pending:
            task.cancel()
        for task in pending:
            with pytest.raises(asyncio.CancelledError):
                await task
        await watch.aclose()
        assert await etcd.get("/cancel/none") is None  # the store still works
    finally:
        await etcd.close()


@pytest.mark.asyncio
async def test_a_cancel_while_a_watch_opens_is_never_lost(shared_etcd: EtcdServer) -> None:
    """A task cancelled at any moment of opening a watch ends: Python 3.11's wait_for
    could swallow a cancel arriving as the stream's first write completed, leaving the
    task waiting for an event that may never come (an agent's stop then hung)."""
    from cnilib.overlay._etcd import connect_etcd

    etcd = await connect_etcd(shared_etcd.url, timeout=2.0)

    async def follow() -> None:
        async for _ in etcd.watch("/cancel-race/", start_revision=0):
            pass

    try:
        for step in range(40):  # cancel after 0, 1, 2, ... loop turns of the opening
            task = asyncio.ensure_future(follow())
            for _ in range(step):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=PATIENCE)
            assert task in done, f"cancelled after {step} loop turns, the task went on"
            assert task.cancelled()
    finally:
        await etcd.close()


@pytest.mark.asyncio
async def test_a_proxy_in_the_environment_is_not_used_for_loopback(
    shared_etcd: EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """grpc sends every channel through $http_proxy; a proxy cannot reach this host's
    loopback etcd (etcd's own Go client never proxies loopback either)."""
    from cnilib.overlay._etcd import connect_etcd

    for name in ("http_proxy", "https_proxy", "grpc_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.delenv("no_proxy", raising=False)
    etcd = await connect_etcd(shared_etcd.url, timeout=2.0)
    try:
        await etcd.list("/proxy/")
    finally:
        await etcd.close()


def test_etcd_server_starts_with_a_proxy_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The health check asks the loopback etcd directly, not through $http_proxy."""
    _need_etcd()
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    # urlopen's default opener reads the environment once, when first used
    monkeypatch.setattr(urllib.request, "_opener", None)
    server = EtcdServer(tmp_path / "etcd")
    try:
        server.start(timeout=5.0)
        assert server.running
    finally:
        server.stop(kill=True)
