"""A node's membership against MemoryStore (etcd's semantics): the cluster config, the
claim transaction on both keys, take-over, keepalive through an outage, reclaim, leave."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv4Network

import pytest

from cnilib.errors import ErrorCode
from cnilib.overlay._config import ClusterConfig
from cnilib.overlay._errors import (
    NodeNameTakenError,
    OverlayConfigError,
    OverlayError,
    PoolExhaustedError,
)
from cnilib.overlay._membership import (
    RACE_RETRIES,
    Membership,
    Registration,
    ensure_cluster_config,
)
from cnilib.overlay._memstore import MemoryStore
from cnilib.overlay._records import Keys, NodeRecord, SubnetRecord
from cnilib.overlay._store import Snapshot, TxnOutcome

KEYS = Keys()
CLUSTER = ClusterConfig.make("10.244.0.0/16")
MAC = "0a:58:0a:f4:01:01"
MAC2 = "0a:58:0a:f4:02:02"
A = IPv4Address("192.168.250.1")
B = IPv4Address("192.168.250.2")
FAST = 0.02  # keepalive interval of the tests (the TTL stays 10 s: no lease runs down)


def net(text: str) -> IPv4Network:
    return IPv4Network(text)


def pool(count: int) -> ClusterConfig:
    """A cluster whose pool holds exactly ``count`` /24 subnets (10.244.1.0 on)."""
    return ClusterConfig.make(
        "10.244.0.0/16", subnet_min="10.244.1.0", subnet_max=f"10.244.{count}.0"
    )


def member(
    store: MemoryStore,
    node: str = "n1",
    underlay: IPv4Address = A,
    cluster: ClusterConfig = CLUSTER,
    rng: random.Random | None = None,
) -> Membership:
    return Membership(store, KEYS, cluster, node=node, underlay=underlay, interval=FAST, rng=rng)


async def dump(store: MemoryStore) -> dict[str, tuple[bytes, int]]:
    """Every key of the network: (value, lease)."""
    snapshot = await store.list(KEYS.root)
    return {kv.key: (kv.value, kv.lease) for kv in snapshot.items}


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` until it holds (a bound only against hanging, never asserted on)."""
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def assert_holds(store: MemoryStore, registration: Registration, node: str = "n1") -> None:
    """Both keys are there, under the registration's lease, saying the same subnet."""
    record = registration.record
    subnet_kv = await store.get(KEYS.subnet(record.subnet))
    node_kv = await store.get(KEYS.node(node))
    assert subnet_kv is not None
    assert node_kv is not None
    assert subnet_kv.lease == node_kv.lease == registration.lease
    assert subnet_kv.mod_revision == node_kv.mod_revision  # one transaction
    stored = SubnetRecord.from_json(KEYS, subnet_kv.key, subnet_kv.value)
    assert stored == record
    assert NodeRecord.from_json(KEYS, node_kv.key, node_kv.value).subnet == record.subnet


# ---- the cluster configuration ---------------------------------------------------------


@pytest.mark.asyncio
async def test_config_created_when_absent_then_read() -> None:
    store = MemoryStore()
    assert await ensure_cluster_config(store, KEYS, CLUSTER) == CLUSTER
    stored = await store.get(KEYS.config)
    assert stored is not None
    assert stored.lease == 0
    assert ClusterConfig.from_json(KEYS.config, stored.value) == CLUSTER
    # a later agent with no --cluster-cidr, or the same one, reads it
    assert await ensure_cluster_config(store, KEYS, None) == CLUSTER
    assert await ensure_cluster_config(store, KEYS, ClusterConfig.make("10.244.0.0/16")) == CLUSTER


@pytest.mark.asyncio
async def test_config_absent_and_not_given() -> None:
    with pytest.raises(OverlayConfigError) as info:
        await ensure_cluster_config(MemoryStore(), KEYS, None)
    assert str(info.value) == (
        f"no cluster configuration at {KEYS.config}: start an agent with --cluster-cidr"
    )


@pytest.mark.asyncio
async def test_config_mismatch_names_both() -> None:
    store = MemoryStore()
    await ensure_cluster_config(store, KEYS, CLUSTER)
    with pytest.raises(OverlayConfigError) as info:
        await ensure_cluster_config(store, KEYS, ClusterConfig.make("10.244.0.0/16", vni=2))
    text = str(info.value)
    assert KEYS.config in text
    assert "vni 1" in text
    assert "vni 2" in text


@pytest.mark.asyncio
async def test_config_race_the_loser_reads_the_winners() -> None:
    store = MemoryStore()
    other = ClusterConfig.make("10.245.0.0/16")
    results = await asyncio.gather(
        ensure_cluster_config(store, KEYS, CLUSTER),
        ensure_cluster_config(store, KEYS, CLUSTER),
        ensure_cluster_config(store, KEYS, other),
        return_exceptions=True,
    )
    # exactly one configuration was written; those wanting another were refused
    stored = await store.get(KEYS.config)
    assert stored is not None
    assert stored.create_revision == stored.mod_revision
    winner = ClusterConfig.from_json(KEYS.config, stored.value)
    for wanted, result in zip((CLUSTER, CLUSTER, other), results, strict=True):
        if wanted == winner:
            assert result == winner
        else:
            assert isinstance(result, OverlayConfigError)


@pytest.mark.asyncio
async def test_config_that_does_not_decode_names_the_key() -> None:
    store = MemoryStore()
    await store.compare_and_put({}, {KEYS.config: b'{"network": "10.244.0.0/16", "vni": 2}'})
    with pytest.raises(OverlayConfigError) as info:
        await ensure_cluster_config(store, KEYS, None)
    assert KEYS.config in str(info.value)
    assert '"vni"' in str(info.value)


# ---- joining ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_join_claims_both_keys_under_one_lease() -> None:
    store = MemoryStore()
    membership = member(store, rng=random.Random(1))
    registration = await membership.join(MAC.upper())
    assert membership.registration == registration
    record = registration.record
    assert CLUSTER.holds(record.subnet)
    assert (record.node, record.underlay, record.vtep_mac) == ("n1", A, MAC)
    assert (record.vni, record.port) == (CLUSTER.vni, CLUSTER.port)
    assert registration.ttl == 10
    assert store.lease_ids() == (registration.lease,)
    await assert_holds(store, registration)
    assert set(await dump(store)) == {KEYS.subnet(record.subnet), KEYS.node("n1")}


@pytest.mark.asyncio
async def test_five_concurrent_joins_get_five_distinct_subnets() -> None:
    # a pool of exactly five: the joins collide and retry until each has its own
    store = MemoryStore()
    cluster = pool(5)
    members = [member(store, f"n{i}", IPv4Address(f"192.168.250.{i}"), cluster) for i in range(5)]
    registrations = await asyncio.gather(*(m.join(MAC) for m in members))
    subnets = {r.record.subnet for r in registrations}
    assert subnets == set(cluster.subnets())
    assert len({r.lease for r in registrations}) == 5
    for i, registration in enumerate(registrations):
        await assert_holds(store, registration, f"n{i}")
    assert sorted(store.lease_ids()) == sorted(r.lease for r in registrations)


@pytest.mark.asyncio
async def test_previous_subnet_is_claimed_again_when_free() -> None:
    store = MemoryStore()
    registration = await member(store).join(MAC, previous=net("10.244.42.0/24"))
    assert registration.record.subnet == net("10.244.42.0/24")


@pytest.mark.asyncio
async def test_previous_subnet_taken_by_another_node_gives_another() -> None:
    store = MemoryStore()
    cluster = pool(2)
    other = await member(store, "n2", B, cluster).join(MAC2, previous=net("10.244.1.0/24"))
    assert other.record.subnet == net("10.244.1.0/24")
    registration = await member(store, cluster=cluster).join(MAC, previous=net("10.244.1.0/24"))
    assert registration.record.subnet == net("10.244.2.0/24")


@pytest.mark.asyncio
async def test_pool_exhausted_writes_nothing_and_revokes_the_lease() -> None:
    store = MemoryStore()
    cluster = pool(3)
    for i in range(3):
        await member(store, f"n{i}", IPv4Address(f"192.168.250.{10 + i}"), cluster).join(MAC2)
    before, revision, leases = await dump(store), store.revision, store.lease_ids()
    membership = member(store, "late", A, cluster)
    with pytest.raises(PoolExhaustedError) as info:
        await membership.join(MAC)
    assert str(info.value) == "no free /24 subnet left in 10.244.0.0/16: 3 of 3 leased"
    assert info.value.code == ErrorCode.TRY_AGAIN_LATER
    assert await dump(store) == before
    assert store.revision == revision
    assert store.lease_ids() == leases  # the lease granted for the attempt is gone
    assert membership.registration is None


@pytest.mark.asyncio
async def test_node_name_held_by_another_underlay() -> None:
    store = MemoryStore()
    first = await member(store, "n1", A).join(MAC)
    before, revision, leases = await dump(store), store.revision, store.lease_ids()
    with pytest.raises(NodeNameTakenError) as info:
        await member(store, "n1", B).join(MAC2)
    text = str(info.value)
    assert "'n1'" in text
    assert str(A) in text
    assert str(first.record.subnet) in text
    assert info.value.code == ErrorCode.TRY_AGAIN_LATER
    assert await dump(store) == before
    assert store.revision == revision
    assert store.lease_ids() == leases


@pytest.mark.asyncio
async def test_node_name_held_without_a_subnet_record_is_not_taken_over() -> None:
    # nodes/n1 alive, its subnet key gone: whose it is cannot be told, so it is not ours
    store = MemoryStore()
    first = await member(store, "n1", A).join(MAC)
    subnet_key = KEYS.subnet(first.record.subnet)
    kv = await store.get(subnet_key)
    assert kv is not None
    await store.compare_and_delete({subnet_key: kv.mod_revision}, [subnet_key])
    with pytest.raises(NodeNameTakenError):
        await member(store, "n1", A).join(MAC)


@pytest.mark.asyncio
async def test_restart_within_the_ttl_takes_over_its_own_registration() -> None:
    store = MemoryStore()
    first = await member(store, "n1", A).join(MAC)
    # a restarted agent: a new Membership, same node and underlay; its state file
    # may even name another subnet, the live registration wins
    second = member(store, "n1", A)
    registration = await second.join(MAC2, previous=net("10.244.200.0/24"))
    assert registration.record.subnet == first.record.subnet
    assert registration.record.vtep_mac == MAC2
    assert registration.lease != first.lease
    assert store.lease_ids() == (registration.lease,)  # the old lease was revoked
    await assert_holds(store, registration)
    assert len(await dump(store)) == 2


@pytest.mark.asyncio
async def test_invalid_vtep_mac_grants_nothing() -> None:
    store = MemoryStore()
    with pytest.raises(OverlayConfigError, match="'0a:58'"):
        await member(store).join("0a:58")
    assert store.lease_ids() == ()
    assert await dump(store) == {}


@pytest.mark.parametrize("node", ["", "a/b", " n1"])
def test_node_name_must_fit_a_key(node: str) -> None:
    with pytest.raises(OverlayConfigError):
        Membership(MemoryStore(), KEYS, CLUSTER, node=node, underlay=A)


# ---- lost races ------------------------------------------------------------------------


class RivalFirst(MemoryStore):
    """A MemoryStore where, before each of the first ``rivals`` claims, another agent
    commits its claim of the same subnet (the race is lost deterministically)."""

    def __init__(self, rivals: int) -> None:
        super().__init__()
        self.rivals = rivals
        self.claims = 0

    async def compare_and_put(
        self, expect: Mapping[str, int], puts: Mapping[str, bytes], *, lease: int = 0
    ) -> TxnOutcome:
        self.claims += 1
        if lease and self.claims <= self.rivals:
            subnet_key = next(key for key in puts if key.startswith(KEYS.subnets))
            subnet = KEYS.subnet_of(subnet_key)
            name = f"rival{self.claims}"
            rival = SubnetRecord(subnet=subnet, node=name, underlay=B, vtep_mac=MAC2)
            grant = await self.grant(10)
            won = await super().compare_and_put(
                {subnet_key: 0},
                {
                    subnet_key: rival.to_json(),
                    KEYS.node(name): NodeRecord(name=name, subnet=subnet).to_json(),
                },
                lease=grant.id,
            )
            assert won.succeeded
        return await super().compare_and_put(expect, puts, lease=lease)


@pytest.mark.asyncio
async def test_lost_race_relists_and_claims_another() -> None:
    store = RivalFirst(rivals=2)
    cluster = pool(3)
    membership = member(store, cluster=cluster)
    registration = await membership.join(MAC, previous=net("10.244.2.0/24"))
    assert store.claims == 3
    # the rivals hold two subnets; ours is the third, and theirs are untouched
    subnets = {KEYS.subnet_of(k) for k in await dump(store) if k.startswith(KEYS.subnets)}
    assert subnets == set(cluster.subnets())
    rival = await store.get(KEYS.subnet(net("10.244.2.0/24")))
    assert rival is not None
    assert b"rival1" in rival.value
    await assert_holds(store, registration)


@pytest.mark.asyncio
async def test_too_many_lost_races_give_up_and_revoke() -> None:
    store = RivalFirst(rivals=RACE_RETRIES)
    membership = member(store)
    with pytest.raises(OverlayError, match="lost the race") as info:
        await membership.join(MAC)
    assert info.value.code == ErrorCode.TRY_AGAIN_LATER
    assert store.claims == RACE_RETRIES
    assert await store.get(KEYS.node("n1")) is None
    # only the rivals' leases are left
    assert len(store.lease_ids()) == RACE_RETRIES


class LeaseRunsOut(MemoryStore):
    """A MemoryStore where the lease of the first claim expires just before the claim's
    transaction reaches the store (a slow store, or a loop that stalled past the TTL)."""

    def __init__(self) -> None:
        super().__init__()
        self.expired: list[int] = []

    async def compare_and_put(
        self, expect: Mapping[str, int], puts: Mapping[str, bytes], *, lease: int = 0
    ) -> TxnOutcome:
        if lease and not self.expired:
            self.expired.append(lease)
            self.expire(lease)
        return await super().compare_and_put(expect, puts, lease=lease)


@pytest.mark.asyncio
async def test_lease_expired_before_the_claim_is_granted_again() -> None:
    store = LeaseRunsOut()
    membership = member(store)
    registration = await membership.join(MAC)
    assert store.expired
    assert registration.lease not in store.expired
    assert store.lease_ids() == (registration.lease,)
    await assert_holds(store, registration)


class ExpiresBetweenReads(MemoryStore):
    """A MemoryStore where the lease of ``nodes/n1`` expires after the claim read that
    key and before it lists the subnets (an agent restarted just as its old lease ends)."""

    def __init__(self) -> None:
        super().__init__()
        self.fired = False

    async def list(self, prefix: str) -> Snapshot:
        held = self._kv.get(KEYS.node("n1"))
        if prefix == KEYS.subnets and held is not None and not self.fired:
            self.fired = True
            self.expire(held.lease)
        return await super().list(prefix)


@pytest.mark.asyncio
async def test_restart_as_the_old_lease_expires_mid_claim_joins() -> None:
    store = ExpiresBetweenReads()
    first = await member(store, "n1", A).join(MAC)
    registration = await member(store, "n1", A).join(MAC2, previous=first.record.subnet)
    assert store.fired
    assert registration.record.subnet == first.record.subnet
    await assert_holds(store, registration)


# ---- keepalive, loss, reclaim ----------------------------------------------------------


async def keep(membership: Membership) -> asyncio.Task[None]:
    return asyncio.create_task(membership.keep_alive())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.asyncio
async def test_lease_loss_ends_keep_alive_and_reclaim_gets_the_same_subnet() -> None:
    store = MemoryStore()
    membership = member(store)
    first = await membership.join(MAC)
    task = await keep(membership)
    try:
        store.expire(first.lease)
        await asyncio.wait_for(task, 10)  # returns: the lease is gone
    finally:
        await stop(task)
    assert await dump(store) == {}
    again = await membership.reclaim()
    assert again.record.subnet == first.record.subnet
    assert again.record.vtep_mac == MAC
    assert again.lease != first.lease
    await assert_holds(store, again)


@pytest.mark.asyncio
async def test_reclaim_after_the_subnet_went_to_another_node() -> None:
    store = MemoryStore()
    cluster = pool(2)
    membership = member(store, cluster=cluster)
    first = await membership.join(MAC)
    store.expire(first.lease)
    other = await member(store, "n2", B, cluster).join(MAC2, previous=first.record.subnet)
    assert other.record.subnet == first.record.subnet
    again = await membership.reclaim()
    assert again.record.subnet != first.record.subnet
    await assert_holds(store, again)


@pytest.mark.asyncio
async def test_reclaim_with_the_lease_alive_takes_over_its_own_keys() -> None:
    # the agent saw its subnet key deleted (by hand) while its lease lives on: the
    # node key under that lease is its own
    store = MemoryStore()
    membership = member(store)
    first = await membership.join(MAC)
    subnet_key = KEYS.subnet(first.record.subnet)
    kv = await store.get(subnet_key)
    assert kv is not None
    await store.compare_and_delete({subnet_key: kv.mod_revision}, [subnet_key])
    again = await membership.reclaim()
    assert again.record.subnet == first.record.subnet
    assert store.lease_ids() == (again.lease,)
    await assert_holds(store, again)


@pytest.mark.asyncio
async def test_keep_alive_survives_a_store_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cnilib.overlay")
    store = MemoryStore()
    membership = member(store)
    registration = await membership.join(MAC)
    task = await keep(membership)

    def failures() -> int:
        return sum(
            "keepalive of lease" in r.getMessage() and "failed" in r.getMessage()
            for r in caplog.records
        )

    try:
        store.set_available(False)
        await eventually(lambda: failures() >= 3, "three failed keepalives")
        assert not task.done()
        assert all(r.name == "cnilib.overlay" for r in caplog.records)
        store.set_available(True)
        await eventually(
            lambda: any("works again" in r.getMessage() for r in caplog.records),
            "a keepalive after the outage",
        )
        assert not task.done()
    finally:
        await stop(task)
    await assert_holds(store, registration)
    assert store.lease_ids() == (registration.lease,)


class FirstKeepaliveHangs(MemoryStore):
    """The first keepalive call never answers (a half-open connection); later ones do."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def keepalive(self, lease: int) -> int:
        self.calls += 1
        if self.calls == 1:
            await asyncio.Event().wait()
        return await super().keepalive(lease)


@pytest.mark.asyncio
async def test_keep_alive_gives_up_on_a_hung_call_and_tries_again() -> None:
    # a hung call must not keep the next one from renewing the lease before it lapses
    store = FirstKeepaliveHangs()
    membership = member(store)
    registration = await membership.join(MAC)
    task = await keep(membership)
    try:
        await eventually(lambda: store.calls >= 3, "keepalives after the hung one")
        assert not task.done()
    finally:
        await stop(task)
    await assert_holds(store, registration)


@pytest.mark.asyncio
async def test_keep_alive_before_join() -> None:
    with pytest.raises(OverlayError, match="not joined"):
        await member(MemoryStore()).keep_alive()
    with pytest.raises(OverlayError, match="not joined"):
        await member(MemoryStore()).reclaim()


# ---- leaving ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_leave_with_release_deletes_both_keys() -> None:
    store = MemoryStore()
    membership = member(store)
    await membership.join(MAC)
    await membership.leave(release=True)
    assert await dump(store) == {}
    assert store.lease_ids() == ()
    assert membership.registration is None


@pytest.mark.asyncio
async def test_leave_without_release_leaves_the_lease_to_expire() -> None:
    store = MemoryStore()
    membership = member(store)
    registration = await membership.join(MAC)
    await membership.leave(release=False)
    assert membership.registration is None
    await assert_holds(store, registration)
    # and a restart within the TTL takes it over
    again = await member(store).join(MAC)
    assert again.record.subnet == registration.record.subnet


def test_record_json_is_what_peers_decode() -> None:
    # the record a join writes is the one the research digest's schema names
    record = SubnetRecord(subnet=net("10.244.1.0/24"), node="n1", underlay=A, vtep_mac=MAC)
    assert set(json.loads(record.to_json())) == {
        "node",
        "underlay",
        "backend",
        "vtepMAC",
        "vni",
        "port",
        "joined",
    }
