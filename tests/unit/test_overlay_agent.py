"""The node agent against MemoryStore (etcd's semantics) and a fake data path: the join
order, the node state file, peers following the store, compaction, outages, lost leases
and keys, stopping and cancelling, and run_agent's exit code. No kernel, no root."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from cnilib.errors import CNIError
from cnilib.overlay import _agent
from cnilib.overlay._agent import Agent, AgentConfig, run_agent
from cnilib.overlay._config import ClusterConfig
from cnilib.overlay._datapath import DatapathConfig, Peer, ReconcileReport
from cnilib.overlay._errors import (
    NodeNameTakenError,
    OverlayConfigError,
    OverlayError,
    PoolExhaustedError,
    StoreError,
)
from cnilib.overlay._membership import Membership
from cnilib.overlay._memstore import MemoryStore
from cnilib.overlay._records import Keys, SubnetRecord
from cnilib.overlay._store import LeaseGrant, Snapshot, WatchBatch
from cnilib.plugins.main._overlay_state import NodeState, read_node_state, write_node_state

KEYS = Keys()
CLUSTER = ClusterConfig.make("10.244.0.0/16")
A = IPv4Address("192.168.250.1")
B = IPv4Address("192.168.250.2")
C = IPv4Address("192.168.250.3")
MAC_A = "0a:58:0a:f4:01:01"
MAC_B = "0a:58:0a:f4:02:02"
MAC_C = "0a:58:0a:f4:03:03"


def net(text: str) -> IPv4Network:
    return IPv4Network(text)


def pool(count: int) -> ClusterConfig:
    """A cluster whose pool holds exactly ``count`` /24 subnets (10.244.1.0 on)."""
    return ClusterConfig.make(
        "10.244.0.0/16", subnet_min="10.244.1.0", subnet_max=f"10.244.{count}.0"
    )


class FakeDatapath:
    """Records what the agent asks of the data path; can be told to fail or to block."""

    def __init__(self, config: DatapathConfig, *, mac: str | None = None) -> None:
        self.config = config
        self.mac = mac
        self.fail_probe: CNIError | None = None
        self.fail_setup: CNIError | None = None
        self.fail_reconcile: BaseException | None = None
        self.report_failed: tuple[IPv4Network, ...] = ()  # reported as not written
        self.setups: list[tuple[IPv4Network, str]] = []
        self.reconciles: list[frozenset[IPv4Network]] = []
        self.gate = asyncio.Event()  # reconcile waits for it (set: never blocks)
        self.gate.set()
        self.blocked = 0  # reconciles waiting at the gate now

    async def probe_underlay(self) -> tuple[str, int]:
        if self.fail_probe is not None:
            raise self.fail_probe
        return "eth0", 1500

    async def current_mac(self) -> str | None:
        return self.mac

    async def setup(self, subnet: IPv4Network, vtep_mac: str) -> int:
        if self.fail_setup is not None:
            raise self.fail_setup
        self.setups.append((subnet, vtep_mac))
        return 1450

    async def reconcile(self, peers: Collection[Peer]) -> ReconcileReport:
        subnets = [peer.subnet for peer in peers]
        assert len(subnets) == len(set(subnets)), f"a subnet twice in {peers}"
        if not self.gate.is_set():
            self.blocked += 1
            try:
                await self.gate.wait()
            finally:
                self.blocked -= 1
        if self.fail_reconcile is not None:
            raise self.fail_reconcile
        self.reconciles.append(frozenset(subnets))
        return ReconcileReport(added=(), removed=(), repaired=0, failed=self.report_failed)

    @property
    def last(self) -> frozenset[IPv4Network] | None:
        return self.reconciles[-1] if self.reconciles else None


class Factory:
    """The agent's ``datapath`` argument: makes (and keeps) one FakeDatapath, which a
    test may prepare before the agent makes it through ``prepare``."""

    def __init__(self, prepare: Callable[[FakeDatapath], None] | None = None) -> None:
        self.prepare = prepare
        self.made: list[FakeDatapath] = []

    def __call__(self, config: DatapathConfig) -> FakeDatapath:
        fake = FakeDatapath(config)
        if self.prepare is not None:
            self.prepare(fake)
        self.made.append(fake)
        return fake

    @property
    def fake(self) -> FakeDatapath:
        assert self.made, "the agent made no data path"
        return self.made[-1]


_UNGATED: contextvars.ContextVar[bool] = contextvars.ContextVar("ungated", default=False)


class SpyStore(MemoryStore):
    """A MemoryStore that counts grants and lists, and can hold back the grants of
    tasks made before :meth:`ungated` (the agent's)."""

    def __init__(self) -> None:
        super().__init__()
        self.grants = 0
        self.lists = 0
        self.grant_gate = asyncio.Event()
        self.grant_gate.set()

    @contextlib.contextmanager
    def ungated(self) -> Iterator[None]:
        """Grants of the calling task pass the gate (tasks made before keep their view)."""
        token = _UNGATED.set(True)
        try:
            yield
        finally:
            _UNGATED.reset(token)

    async def grant(self, ttl: int) -> LeaseGrant:
        if not _UNGATED.get():
            await self.grant_gate.wait()
        self.grants += 1
        return await super().grant(ttl)

    async def list(self, prefix: str) -> Snapshot:
        if prefix == KEYS.subnets:
            self.lists += 1
        return await super().list(prefix)


@pytest.fixture(autouse=True)
def fast_keepalive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keepalives every 20 ms: a lost lease is noticed at once, while the 10 s TTL never
    runs down by itself during a test (the tests expire leases with the store's hook)."""
    monkeypatch.setattr(_agent, "Membership", functools.partial(Membership, interval=0.02))


@pytest.fixture
def store() -> SpyStore:
    return SpyStore()


def config(tmp_path: Path, node: str = "n1", underlay: IPv4Address = A, **kw: Any) -> AgentConfig:
    kwargs: dict[str, Any] = {
        "node": node,
        "underlay": underlay,
        "cluster": CLUSTER,
        "run_dir": str(tmp_path / "run"),
    }
    kwargs.update(kw)
    return AgentConfig(**kwargs)


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` until it holds (a bound only against hanging, never asserted on)."""
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def settle(rounds: int = 50) -> None:
    """Let every ready task run a few steps."""
    for _ in range(rounds):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[asyncio.Task[None]]:
    """The agent's run() as a task, joined; cancelled (as if killed) when the block ends."""
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.wait_joined(), 10)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, CNIError):
            await task


@contextlib.asynccontextmanager
async def running_unjoined(agent: Agent) -> AsyncIterator[asyncio.Task[None]]:
    """The agent's run() as a task, not waited for; cancelled when the block ends."""
    task = asyncio.create_task(agent.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, CNIError):
            await task


async def join(store: MemoryStore, node: str, underlay: IPv4Address, mac: str, **kw: Any) -> Any:
    """Another node joins (as its agent would): its Membership and registration."""
    member = Membership(store, KEYS, kw.pop("cluster", CLUSTER), node=node, underlay=underlay)
    registration = await member.join(mac, **kw)
    return member, registration


async def held(store: MemoryStore) -> dict[str, int]:
    """The node and subnet keys of the network: their leases."""
    snapshot = await store.list(KEYS.root)
    return {kv.key: kv.lease for kv in snapshot.items if kv.key != KEYS.config}


def own_subnet(agent: Agent) -> IPv4Network:
    assert agent.registration is not None
    return agent.registration.record.subnet


def assert_never_own(agent: Agent, fake: FakeDatapath, *own: IPv4Network) -> None:
    for peers in fake.reconciles:
        for subnet in own:
            assert subnet not in peers, f"own subnet {subnet} given to reconcile: {peers}"


# ---- joining -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_probe_failure_registers_nothing(store: SpyStore, tmp_path: Path) -> None:
    def bad_probe(fake: FakeDatapath) -> None:
        fake.fail_probe = OverlayConfigError("underlay 192.168.250.1 is on no link")

    agent = Agent(config(tmp_path), store=store, datapath=Factory(bad_probe))
    with pytest.raises(OverlayConfigError, match="on no link"):
        await agent.run()
    with pytest.raises(OverlayConfigError, match="on no link"):
        await agent.wait_joined()
    assert {} == await held(store)
    assert () == store.lease_ids()
    assert 0 == store.grants
    assert not (tmp_path / "run" / "overlay.json").exists()


@pytest.mark.asyncio
async def test_setup_failure_releases_the_claim(store: SpyStore, tmp_path: Path) -> None:
    def bad_setup(fake: FakeDatapath) -> None:
        fake.fail_setup = OverlayConfigError('"ovbr0" is not a bridge')

    agent = Agent(config(tmp_path), store=store, datapath=Factory(bad_setup))
    with pytest.raises(OverlayConfigError, match="not a bridge"):
        await agent.run()
    with pytest.raises(OverlayConfigError, match="not a bridge"):
        await agent.wait_joined()
    assert 1 == store.grants  # it did claim ...
    assert {} == await held(store)  # ... and released it at once
    assert () == store.lease_ids()
    assert agent.state is None
    assert not (tmp_path / "run" / "overlay.json").exists()


@pytest.mark.asyncio
async def test_joined_state_file_and_record(store: SpyStore, tmp_path: Path) -> None:
    factory = Factory(lambda fake: setattr(fake, "mac", "0A:58:0A:F4:09:09"))
    agent = Agent(config(tmp_path, vxlan="vx0", bridge="br9"), store=store, datapath=factory)
    async with running(agent):
        state = agent.state
        assert state is not None
        subnet = own_subnet(agent)
        assert (
            NodeState(
                name="overlay",
                node="n1",
                cluster=net("10.244.0.0/16"),
                subnet=subnet,
                bridge="br9",
                mtu=1450,
                vni=1,
            )
            == state
        )
        assert state == read_node_state(tmp_path / "run" / "overlay.json")
        # the device keeps the MAC it has; the record publishes it
        assert [(subnet, "0a:58:0a:f4:09:09")] == factory.fake.setups
        kv = await store.get(KEYS.subnet(subnet))
        assert kv is not None
        record = SubnetRecord.from_json(KEYS, kv.key, kv.value)
        assert (record.node, record.underlay, record.vtep_mac) == ("n1", A, "0a:58:0a:f4:09:09")
        cfg = factory.fake.config
        assert (cfg.vxlan_name, cfg.bridge_name, cfg.vni, cfg.underlay) == ("vx0", "br9", 1, A)


@pytest.mark.asyncio
async def test_restart_asks_for_the_previous_subnet(store: SpyStore, tmp_path: Path) -> None:
    # far beyond the first 100 free subnets a fresh node picks from
    previous = net("10.244.200.0/24")
    path = tmp_path / "run" / "overlay.json"
    path.parent.mkdir()
    write_node_state(
        path,
        NodeState(
            name="overlay",
            node="n1",
            cluster=CLUSTER.network,
            subnet=previous,
            bridge="ovbr0",
            mtu=1450,
        ),
    )
    agent = Agent(config(tmp_path), store=store, datapath=Factory())
    async with running(agent):
        assert previous == own_subnet(agent)
    # another node's state file is not ours to follow
    path.write_text(path.read_text().replace('"n1"', '"n7"'))
    agent = Agent(config(tmp_path, node="n2", underlay=B), store=store, datapath=Factory())
    async with running(agent):
        assert previous != own_subnet(agent)


@pytest.mark.asyncio
async def test_a_stale_state_file_that_does_not_decode_is_ignored(
    store: SpyStore, tmp_path: Path
) -> None:
    path = tmp_path / "run" / "overlay.json"
    path.parent.mkdir()
    path.write_text("{not json")
    agent = Agent(config(tmp_path), store=store, datapath=Factory())
    async with running(agent):
        assert agent.state == read_node_state(path)


@pytest.mark.asyncio
async def test_pool_exhausted(store: SpyStore, tmp_path: Path) -> None:
    await join(store, "n2", B, MAC_B, cluster=pool(1))
    before = await held(store)
    agent = Agent(config(tmp_path, cluster=pool(1)), store=store, datapath=Factory())
    task = asyncio.create_task(agent.run())
    with pytest.raises(PoolExhaustedError, match="no free"):
        await agent.wait_joined()
    with pytest.raises(PoolExhaustedError):
        await task
    assert before == await held(store)
    assert 1 == len(store.lease_ids())


@pytest.mark.asyncio
async def test_node_name_taken(store: SpyStore, tmp_path: Path) -> None:
    await join(store, "n1", B, MAC_B)
    agent = Agent(config(tmp_path), store=store, datapath=Factory())
    task = asyncio.create_task(agent.run())
    with pytest.raises(NodeNameTakenError, match=r"192\.168\.250\.2"):
        await agent.wait_joined()
    with pytest.raises(NodeNameTakenError):
        await task
    assert not (tmp_path / "run" / "overlay.json").exists()


@pytest.mark.asyncio
async def test_wait_joined_after_a_stop_before_joining(store: SpyStore, tmp_path: Path) -> None:
    agent = Agent(config(tmp_path), store=store, datapath=Factory())
    agent.stop()
    with pytest.raises(OverlayError, match="stopped before joining"):
        await agent.wait_joined()


@pytest.mark.asyncio
async def test_wait_joined_after_run_was_cancelled_before_joining(
    store: SpyStore, tmp_path: Path
) -> None:
    store.set_available(False)  # the agent waits for etcd to join
    agent = Agent(config(tmp_path), store=store, datapath=Factory())
    task = asyncio.create_task(agent.run())
    await settle()
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the waiter is told the agent stopped; it is not cancelled itself
    with pytest.raises(OverlayError, match="stopped before joining"):
        await agent.wait_joined()


@pytest.mark.asyncio
async def test_joins_once_etcd_answers(store: SpyStore, tmp_path: Path) -> None:
    store.set_available(False)
    agent = Agent(config(tmp_path), store=store, datapath=Factory())
    async with running_unjoined(agent) as task:
        await settle()  # it tries, and waits
        assert not task.done()
        store.set_available(True)
        await asyncio.wait_for(agent.wait_joined(), 10)
        assert 2 == len(await held(store))


@pytest.mark.asyncio
async def test_stop_while_waiting_for_etcd(store: SpyStore, tmp_path: Path) -> None:
    store.set_available(False)
    agent = Agent(config(tmp_path), store=store, datapath=Factory())
    task = asyncio.create_task(agent.run())
    await settle()
    agent.stop()
    await task  # returns, no error
    with pytest.raises(OverlayError, match="stopped before joining"):
        await agent.wait_joined()


# ---- peers ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_peers_follow_puts_and_deletes(store: SpyStore, tmp_path: Path) -> None:
    factory = Factory()
    agent = Agent(config(tmp_path), store=store, datapath=factory)
    async with running(agent) as task:
        fake = factory.fake
        own = own_subnet(agent)
        await eventually(lambda: fake.last == frozenset(), "the first reconcile, no peers")
        m2, r2 = await join(store, "n2", B, MAC_B)
        _, r3 = await join(store, "n3", C, MAC_C)
        both = frozenset({r2.record.subnet, r3.record.subnet})
        await eventually(lambda: fake.last == both, "n2 and n3 reconciled")
        assert Peer(r2.record.subnet, B, MAC_B) == agent.peers[r2.record.subnet]
        await m2.leave(release=True)
        await eventually(lambda: fake.last == frozenset({r3.record.subnet}), "n2 gone")
        store.expire(r3.lease)
        await eventually(lambda: fake.last == frozenset(), "n3 gone")
        assert {} == agent.peers
        assert_never_own(agent, fake, own)
        assert not task.done()


class EndingWatchStore(SpyStore):
    """A SpyStore whose first watch of subnets/ ends after its first batch: with
    ``error`` (etcd cancelling the watch) or without one (the stream just ends)."""

    def __init__(self, error: CNIError | None) -> None:
        super().__init__()
        self.error = error
        self.ended = False

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncGenerator[WatchBatch, None]:
        inner = super().watch(prefix, start_revision=start_revision)
        async with contextlib.aclosing(inner):
            async for batch in inner:
                yield batch
                if prefix == KEYS.subnets and not self.ended:
                    self.ended = True
                    if self.error is not None:
                        raise self.error
                    return


@pytest.mark.asyncio
@pytest.mark.parametrize("error", [StoreError("etcd at x: watch: cancelled by the server"), None])
async def test_a_watch_etcd_ends_is_listed_again(error: CNIError | None, tmp_path: Path) -> None:
    store = EndingWatchStore(error)
    factory = Factory()
    agent = Agent(config(tmp_path), store=store, datapath=factory)
    async with running(agent) as task:
        _, r2 = await join(store, "n2", B, MAC_B)  # the batch after which the watch ends
        _, r3 = await join(store, "n3", C, MAC_C)  # made while no watch may be open
        both = frozenset({r2.record.subnet, r3.record.subnet})
        await eventually(lambda: factory.fake.last == both, "n2 and n3 after the re-list")
        assert store.ended
        _, r4 = await join(store, "n4", IPv4Address("192.168.250.4"), "0a:58:0a:f4:04:04")
        await eventually(lambda: r4.record.subnet in (factory.fake.last or ()), "n4 watched")
        assert not task.done()


class StuckRevokeStore(SpyStore):
    """A SpyStore whose revoke never answers (etcd taking the call and going silent)."""

    async def revoke(self, lease: int) -> None:
        await asyncio.Event().wait()


@pytest.mark.asyncio
async def test_a_stop_is_not_held_up_by_a_store_that_never_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_agent, "_STOP_GRACE", 0.05)
    store = StuckRevokeStore()
    agent = Agent(config(tmp_path, release_on_exit=True), store=store, datapath=Factory())
    task = asyncio.create_task(agent.run())
    await agent.wait_joined()
    agent.stop()
    await asyncio.wait_for(task, 10)  # a bound against hanging only
    assert task.exception() is None


def bad_records() -> dict[str, bytes]:
    good = SubnetRecord(subnet=net("10.244.50.0/24"), node="x", underlay=B, vtep_mac=MAC_B)

    def record(subnet: str, **changes: Any) -> tuple[str, bytes]:
        data = json.loads(good.to_json())
        data.update(changes)
        return KEYS.subnet(net(subnet)), json.dumps(data).encode()

    return dict(
        [
            record("192.168.5.0/24"),  # outside the cluster CIDR
            record("10.244.51.0/24", vni=7),
            record("10.244.52.0/24", backend="wireguard"),
            (KEYS.subnet(net("10.244.53.0/24")), b"{not json"),
            record("10.244.54.0/24", vtepMAC="nope"),
            (KEYS.subnets + "garbage", b"{}"),
        ]
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("when", ["listed", "watched"])
async def test_bad_records_are_skipped(
    store: SpyStore, tmp_path: Path, when: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "cnilib.overlay")
    good = SubnetRecord(subnet=net("10.244.60.0/24"), node="n2", underlay=B, vtep_mac=MAC_B)
    if when == "listed":
        await store.compare_and_put({}, bad_records())
    factory = Factory()
    agent = Agent(config(tmp_path), store=store, datapath=factory)
    async with running(agent) as task:
        if when == "watched":
            await store.compare_and_put({}, bad_records())
        await store.compare_and_put({}, {KEYS.subnet(good.subnet): good.to_json()})
        await eventually(
            lambda: factory.fake.last == frozenset({good.subnet}), "the good record added"
        )
        assert {good.subnet} == set(agent.peers)
        assert all(len(peers) <= 1 for peers in factory.fake.reconciles)
        assert not task.done()
    text = caplog.text
    for name in ("192.168.5.0", "10.244.51.0", "10.244.52.0", "10.244.53.0", "10.244.54.0"):
        assert name in text, f"{name} skipped without a word"


@pytest.mark.asyncio
async def test_compaction_during_a_watch_lists_again(store: SpyStore, tmp_path: Path) -> None:
    factory = Factory()
    agent = Agent(config(tmp_path), store=store, datapath=factory)
    async with running(agent) as task:
        fake = factory.fake
        fake.gate.clear()  # the agent is busy with n2's change ...
        m2, _ = await join(store, "n2", B, MAC_B)
        await eventually(lambda: fake.blocked == 1, "a reconcile waiting")
        lists = store.lists
        # ... while n3 joins, n2 leaves and the store is compacted past both
        _, r3 = await join(store, "n3", C, MAC_C)
        await m2.leave(release=True)
        store.compact(store.revision)
        fake.gate.set()
        await eventually(lambda: fake.last == frozenset({r3.record.subnet}), "converged on n3")
        assert store.lists > lists  # by listing again
        assert not task.done()


@pytest.mark.asyncio
async def test_an_outage_keeps_the_peers(
    store: SpyStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cnilib.overlay")
    factory = Factory()
    agent = Agent(config(tmp_path, resync_interval=0.01), store=store, datapath=factory)
    async with running(agent) as task:
        fake = factory.fake
        _, r2 = await join(store, "n2", B, MAC_B)
        only_n2 = frozenset({r2.record.subnet})
        await eventually(lambda: fake.last == only_n2, "n2 added")
        store.set_available(False)
        lists = store.lists
        seen = len(fake.reconciles)
        # the agent keeps trying to list, and keeps reconciling (resync) meanwhile
        await eventually(lambda: store.lists >= lists + 2, "lists tried during the outage")
        await eventually(lambda: len(fake.reconciles) >= seen + 3, "resyncs during the outage")
        assert {only_n2} == set(fake.reconciles[seen:])
        assert only_n2 == set(agent.peers)
        store.set_available(True)
        _, r3 = await join(store, "n3", C, MAC_C)
        both = frozenset({r2.record.subnet, r3.record.subnet})
        await eventually(lambda: fake.last == both, "n3 added after the outage")
        assert all(r2.record.subnet in peers for peers in fake.reconciles[seen:])
        # listing again is no news about n2
        assert 1 == caplog.text.count("peer n2: subnet")
        assert not task.done()


@pytest.mark.asyncio
async def test_a_failing_reconcile_does_not_stop_the_agent(store: SpyStore, tmp_path: Path) -> None:
    factory = Factory()
    agent = Agent(config(tmp_path), store=store, datapath=factory)
    async with running(agent) as task:
        fake = factory.fake
        fake.fail_reconcile = OverlayError("netlink said no")
        _, r2 = await join(store, "n2", B, MAC_B)
        await eventually(lambda: r2.record.subnet in agent.peers, "n2 seen")
        await settle()
        fake.fail_reconcile = None
        _, r3 = await join(store, "n3", C, MAC_C)
        both = frozenset({r2.record.subnet, r3.record.subnet})
        await eventually(lambda: fake.last == both, "both added once it works again")
        assert not task.done()


@pytest.mark.asyncio
async def test_a_failed_reconcile_is_retried_without_waiting_for_a_change(
    store: SpyStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_agent, "_RETRY_DELAY", 0.01)
    factory = Factory()
    agent = Agent(config(tmp_path, resync_interval=3600), store=store, datapath=factory)
    async with running(agent):
        fake = factory.fake
        fake.fail_reconcile = OverlayError("netlink said no")
        _, r2 = await join(store, "n2", B, MAC_B)
        await eventually(lambda: r2.record.subnet in agent.peers, "n2 seen")
        await settle()
        fake.fail_reconcile = None  # the kernel takes it now; etcd has nothing new to say
        await eventually(lambda: fake.last == frozenset({r2.record.subnet}), "n2 retried")


@pytest.mark.asyncio
async def test_entries_the_kernel_refused_are_retried(
    store: SpyStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_agent, "_RETRY_DELAY", 0.01)
    factory = Factory()
    agent = Agent(config(tmp_path, resync_interval=3600), store=store, datapath=factory)
    async with running(agent):
        fake = factory.fake
        _, r2 = await join(store, "n2", B, MAC_B)
        fake.report_failed = (r2.record.subnet,)
        await eventually(lambda: fake.last == frozenset({r2.record.subnet}), "n2 reconciled")
        passes = len(fake.reconciles)
        await eventually(lambda: len(fake.reconciles) > passes + 2, "retries of n2")
        fake.report_failed = ()
        await eventually(lambda: not agent._retry_soon.is_set(), "retries end")
        await settle()
        passes = len(fake.reconciles)
        await asyncio.sleep(0.1)  # ten retry delays: none may come now
        assert passes == len(fake.reconciles)


@pytest.mark.asyncio
async def test_a_bug_in_the_data_path_is_not_swallowed(store: SpyStore, tmp_path: Path) -> None:
    factory = Factory()
    agent = Agent(config(tmp_path), store=store, datapath=factory)
    task = asyncio.create_task(agent.run())
    await agent.wait_joined()
    factory.fake.fail_reconcile = ZeroDivisionError("a bug")
    await join(store, "n2", B, MAC_B)
    with pytest.raises(ZeroDivisionError):
        await task


# ---- losing the registration ---------------------------------------------------------


@pytest.mark.asyncio
async def test_lease_expiry_reclaims_the_same_subnet(store: SpyStore, tmp_path: Path) -> None:
    factory = Factory()
    agent = Agent(config(tmp_path), store=store, datapath=factory)
    async with running(agent) as task:
        assert agent.registration is not None
        first = agent.registration
        state = agent.state
        store.expire(first.lease)
        await eventually(
            lambda: agent.registration is not None and agent.registration.lease != first.lease,
            "a new lease",
        )
        new = agent.registration
        assert first.record.subnet == new.record.subnet
        assert {
            KEYS.subnet(first.record.subnet): new.lease,
            KEYS.node("n1"): new.lease,
        } == await held(store)
        assert state == agent.state == read_node_state(tmp_path / "run" / "overlay.json")
        assert [first.record.subnet] == [s for s, _ in factory.fake.setups]
        assert not task.done()


@pytest.mark.asyncio
async def test_own_subnet_key_deleted_is_claimed_again(store: SpyStore, tmp_path: Path) -> None:
    factory = Factory()
    agent = Agent(config(tmp_path), store=store, datapath=factory)
    async with running(agent) as task:
        subnet = own_subnet(agent)
        key = KEYS.subnet(subnet)
        await store.compare_and_delete({}, [key])
        await eventually(lambda: key in store._kv, "the subnet key back")
        assert agent.registration is not None
        lease = agent.registration.lease
        assert {key: lease, KEYS.node("n1"): lease} == await held(store)
        assert subnet == own_subnet(agent)
        assert (lease,) == store.lease_ids()  # the old lease was revoked
        assert_never_own(agent, factory.fake, subnet)
        assert not task.done()


@pytest.mark.asyncio
async def test_own_subnet_key_overwritten_by_another_node(store: SpyStore, tmp_path: Path) -> None:
    factory = Factory()
    agent = Agent(config(tmp_path), store=store, datapath=factory)
    async with running(agent) as task:
        fake = factory.fake
        old = own_subnet(agent)
        intruder = SubnetRecord(subnet=old, node="n2", underlay=B, vtep_mac=MAC_B)
        await store.compare_and_put({}, {KEYS.subnet(old): intruder.to_json()})
        await eventually(lambda: own_subnet(agent) != old, "the agent moved")
        new = own_subnet(agent)
        await eventually(lambda: fake.last == frozenset({old}), "the old subnet routed to n2")
        assert agent.state is not None
        assert new == agent.state.subnet
        assert_never_own(agent, fake, new)
        assert not task.done()


@pytest.mark.asyncio
async def test_a_reclaim_onto_another_subnet_routes_the_old_one(
    store: SpyStore, tmp_path: Path
) -> None:
    """The agent loses its lease and, before it claims again, another node takes its
    subnet: the agent moves to a new subnet and routes its old one to that node."""
    factory = Factory()
    agent = Agent(config(tmp_path), store=store, datapath=factory)
    async with running(agent) as task:
        fake = factory.fake
        old = own_subnet(agent)
        assert agent.registration is not None
        store.grant_gate.clear()  # the agent's new claim waits ...
        seen = len(fake.reconciles)
        store.expire(agent.registration.lease)
        await eventually(lambda: len(fake.reconciles) > seen, "the delete seen")
        await settle()
        seen = len(fake.reconciles)
        with store.ungated():  # ... while n2 takes the subnet
            _, r2 = await join(store, "n2", B, MAC_B, previous=old)
        assert old == r2.record.subnet
        await eventually(lambda: len(fake.reconciles) > seen, "n2's put seen")
        store.grant_gate.set()
        await eventually(lambda: own_subnet(agent) != old, "the agent moved")
        new = own_subnet(agent)
        await eventually(lambda: fake.last == frozenset({old}), "the old subnet routed to n2")
        assert Peer(old, B, MAC_B) == agent.peers[old]
        await eventually(lambda: agent.state is not None and agent.state.subnet == new, "state")
        assert new == read_node_state(tmp_path / "run" / "overlay.json").subnet  # type: ignore[union-attr]
        assert (new, fake.setups[0][1]) == fake.setups[-1]
        assert_never_own(agent, fake, new)
        assert not task.done()


@pytest.mark.asyncio
async def test_a_stale_delete_of_the_own_key_claims_nothing_again(
    store: SpyStore, tmp_path: Path
) -> None:
    """The keepalive finds the lease gone and the agent claims its subnet again before
    the watch delivers the expiry's delete: that delete is history, not a new loss."""
    factory = Factory()
    agent = Agent(config(tmp_path), store=store, datapath=factory)
    async with running(agent) as task:
        fake = factory.fake
        await eventually(lambda: fake.last == frozenset(), "the first reconcile")
        fake.gate.clear()  # the watch is busy with n2 ...
        await join(store, "n2", B, MAC_B)
        await eventually(lambda: fake.blocked == 1, "a reconcile waiting")
        assert agent.registration is not None
        first = agent.registration.lease
        store.expire(first)  # ... when the lease expires: the keepalive notices first
        await eventually(
            lambda: agent.registration is not None and agent.registration.lease != first,
            "claimed again",
        )
        second = agent.registration.lease
        grants = store.grants
        fake.gate.set()  # now the watch sees the delete (and our put) of the own key
        _, r3 = await join(store, "n3", C, MAC_C)
        await eventually(lambda: r3.record.subnet in agent.peers, "n3 seen after it")
        await settle()
        assert second == agent.registration.lease
        assert grants + 1 == store.grants  # n3's
        assert not task.done()


# ---- leaving -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stop_leaves_the_keys_to_expire(store: SpyStore, tmp_path: Path) -> None:
    agent = Agent(config(tmp_path), store=store, datapath=Factory())
    task = asyncio.create_task(agent.run())
    await agent.wait_joined()
    assert agent.registration is not None
    lease = agent.registration.lease
    agent.stop()
    await task  # returns
    assert {KEYS.subnet(agent.state.subnet), KEYS.node("n1")} == set(await held(store))  # type: ignore[union-attr]
    assert (lease,) == store.lease_ids()
    assert (tmp_path / "run" / "overlay.json").exists()
    store.expire(lease)
    assert {} == await held(store)


@pytest.mark.asyncio
async def test_stop_with_release_removes_everything(store: SpyStore, tmp_path: Path) -> None:
    agent = Agent(config(tmp_path, release_on_exit=True), store=store, datapath=Factory())
    task = asyncio.create_task(agent.run())
    await agent.wait_joined()
    agent.stop()
    await task
    assert {} == await held(store)
    assert () == store.lease_ids()
    assert not (tmp_path / "run" / "overlay.json").exists()


@pytest.mark.asyncio
async def test_stop_with_release_during_an_outage(store: SpyStore, tmp_path: Path) -> None:
    agent = Agent(config(tmp_path, release_on_exit=True), store=store, datapath=Factory())
    task = asyncio.create_task(agent.run())
    await agent.wait_joined()
    store.set_available(False)
    agent.stop()
    await task  # the lease is left to expire, the stop still graceful
    store.set_available(True)
    assert 2 == len(await held(store))
    assert not (tmp_path / "run" / "overlay.json").exists()


@pytest.mark.asyncio
async def test_cancelled_leaves_the_keys_to_expire(store: SpyStore, tmp_path: Path) -> None:
    agent = Agent(config(tmp_path, release_on_exit=True), store=store, datapath=Factory())
    task = asyncio.create_task(agent.run())
    await agent.wait_joined()
    before = await held(store)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert before == await held(store)
    assert 1 == len(store.lease_ids())
    assert (tmp_path / "run" / "overlay.json").exists()


@pytest.mark.asyncio
async def test_run_leaves_no_task_behind(store: SpyStore, tmp_path: Path) -> None:
    before = asyncio.all_tasks()
    agent = Agent(config(tmp_path), store=store, datapath=Factory())
    task = asyncio.create_task(agent.run())
    await agent.wait_joined()
    await join(store, "n2", B, MAC_B)
    agent.stop()
    await task
    await settle()
    assert before == asyncio.all_tasks()


# ---- run_agent -----------------------------------------------------------------------


def test_run_agent_prints_one_line_on_a_cni_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def bad_probe(fake: FakeDatapath) -> None:
        fake.fail_probe = OverlayConfigError("underlay 192.168.250.1 is on no link")

    # run_agent connects to etcd: give it a store and the fake data path instead
    monkeypatch.setattr(
        _agent, "Agent", functools.partial(Agent, store=MemoryStore(), datapath=Factory(bad_probe))
    )
    assert 1 == run_agent(config(tmp_path))
    err = capsys.readouterr().err
    assert "overlay agent n1: underlay 192.168.250.1 is on no link\n" == err


def test_run_agent_stops_gracefully_on_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    store = MemoryStore()

    class Killed(FakeDatapath):
        async def setup(self, subnet: IPv4Network, vtep_mac: str) -> int:
            # joined: now the process is asked to stop
            asyncio.get_running_loop().call_soon(signal.raise_signal, signal.SIGTERM)
            return await super().setup(subnet, vtep_mac)

    monkeypatch.setattr(_agent, "Agent", functools.partial(Agent, store=store, datapath=Killed))
    assert 0 == run_agent(config(tmp_path, release_on_exit=True))
    assert not store._kv.keys() - {KEYS.config}
