"""The node agent: joins the cluster, keeps its lease, and makes the kernel follow etcd.

One :class:`Agent` per node. :meth:`Agent.run` joins (cluster configuration, a lease,
a subnet claimed in one transaction, then the VXLAN device and the bridge, then the
node state file) and serves until stopped:

- the lease is kept alive; when it is lost (etcd expired it, or our key was deleted)
  the same subnet is claimed again under a new lease;
- ``subnets/`` is listed, then watched from the listing's revision; every change is
  applied to the peer table and the kernel is reconciled against it. After a
  compaction or a lost connection the agent lists again (backing off 0.1 s to 1 s),
  and while etcd is unreachable it changes nothing in the kernel, so traffic between
  existing containers keeps flowing;
- every ``resync_interval`` the kernel is reconciled again, which repairs entries
  changed by hand.

Reconciliation compares the kernel, not the agent's memory, with etcd: a restarted
agent removes the entries of nodes that left while it was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Collection, Iterator, Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Protocol

import attrs

from cnilib.errors import CNIError
from cnilib.overlay._config import ClusterConfig
from cnilib.overlay._datapath import DatapathConfig, Peer, ReconcileReport, VxlanDatapath
from cnilib.overlay._errors import (
    OverlayError,
    RecordError,
    RevisionCompactedError,
    StoreError,
    StoreUnavailableError,
)
from cnilib.overlay._masq import install_masquerade, remove_masquerade
from cnilib.overlay._membership import Membership, Registration, ensure_cluster_config
from cnilib.overlay._records import DEFAULT_PREFIX, Keys, SubnetRecord
from cnilib.overlay._store import ClusterStore, WatchBatch
from cnilib.plugins.main._overlay_state import (
    DEFAULT_RUN_DIR,
    NodeState,
    read_node_state,
    state_path,
    write_node_state,
)

__all__ = ["Agent", "AgentConfig", "Datapath", "run_agent"]

log = logging.getLogger("cnilib.overlay")

# Retrying an unreachable etcd: cheap for etcd, and a node that joined during an
# outage is reached within a second of etcd's return.
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 1.0
# How long a graceful stop waits for the agent's tasks, then for etcd to take the leave.
_STOP_GRACE = 5.0
# A reconcile that failed (a kernel error) is tried again this soon, not at the resync.
_RETRY_DELAY = 1.0


@attrs.frozen(kw_only=True)
class AgentConfig:
    """How one node joins one overlay network."""

    etcd: tuple[str, ...] = ()
    """etcd endpoints (``http://127.0.0.1:2379``); unused when a store is given to the agent."""
    node: str
    """This node's name, unique among the live nodes of the network."""
    underlay: IPv4Address = attrs.field(converter=IPv4Address)
    """This node's address on the network joining the nodes: VXLAN packets go between these."""
    network: str = "overlay"
    """The overlay network's name: the etcd key space and the CNI network name."""
    prefix: str = DEFAULT_PREFIX
    netns: str | None = None
    """The namespace playing this node's host (None: the agent's own)."""
    underlay_link: str | None = None
    """The link of the underlay address (None: found by the address)."""
    cluster: ClusterConfig | None = None
    """Stored in etcd when it holds none yet; must equal what it holds otherwise."""
    ttl: int = 10
    """Seconds the node's keys outlive the agent: peers drop a dead node after it."""
    run_dir: str = DEFAULT_RUN_DIR
    bridge: str = "ovbr0"
    vxlan: str | None = None
    """The VXLAN device's name (None: ``ovx<vni>``)."""
    release_on_exit: bool = False
    """On a graceful stop, revoke the lease (peers drop this node at once, and the
    subnet is free for others) instead of letting it expire."""
    ip_masq: bool = False
    """Masquerade the node's containers' traffic that leaves the cluster CIDR (flanneld's
    ``--ip-masq``): a nat chain in the node namespace, made with the bridge and removed
    by a graceful stop with ``release_on_exit``."""
    resync_interval: float = 30.0

    @property
    def state_file(self) -> Path:
        return state_path(self.run_dir, self.network)


class Datapath(Protocol):
    """What the agent asks of a node's data path (:class:`VxlanDatapath` by default).

    This is where an encrypted transport plugs in: one that publishes its key material
    in the node's record and programs WireGuard peers or IPsec policies instead of
    VXLAN neighbour and FDB entries (see ``docs/overlay.md``).
    """

    async def probe_underlay(self) -> tuple[str, int]: ...
    async def current_mac(self) -> str | None: ...
    async def setup(self, subnet: IPv4Network, vtep_mac: str) -> int: ...
    async def reconcile(self, peers: Collection[Peer]) -> ReconcileReport: ...


def _retry_delays() -> Iterator[float]:
    """The pauses between attempts on an unreachable etcd: 0.1 s, doubling, at most 1 s."""
    delay = _BACKOFF_FIRST
    while True:
        yield delay
        delay = min(delay * 2, _BACKOFF_MAX)


def _random_mac() -> str:
    """A random locally administered unicast MAC, as flannel gives its VXLAN device."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in octets)


class Agent:
    """The overlay's node agent; :meth:`run` it as an asyncio task."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        store: ClusterStore | None = None,
        datapath: Callable[[DatapathConfig], Datapath] = VxlanDatapath,
    ) -> None:
        """``store``: the cluster store (default: etcd at ``config.etcd``, connected by
        :meth:`run` and closed when it ends); ``datapath``: makes the node's data path."""
        self.config = config
        self._store = store
        self._make_datapath = datapath
        self._keys = Keys(config.prefix, config.network)
        self._joined = asyncio.Event()
        self._stopping = asyncio.Event()
        self._key_lost = asyncio.Event()
        self._reconcile_lock = asyncio.Lock()
        self._retry_soon = asyncio.Event()
        self._failure: BaseException | None = None
        self._state: NodeState | None = None
        self._cluster: ClusterConfig | None = None
        self._membership: Membership | None = None
        self._datapath: Datapath | None = None
        self._peers: dict[IPv4Network, Peer] = {}
        self._bad_records: set[tuple[str, int]] = set()
        self._skipped: set[IPv4Network] = set()

    @property
    def state(self) -> NodeState | None:
        """This node's share of the network once joined; None before."""
        return self._state

    @property
    def peers(self) -> Mapping[IPv4Network, Peer]:
        """The other nodes as etcd last said, by subnet."""
        return self._peer_set()

    @property
    def registration(self) -> Registration | None:
        return self._membership.registration if self._membership else None

    async def wait_joined(self) -> NodeState:
        """Wait until the node has joined; re-raises what made :meth:`run` fail first."""
        joined = asyncio.ensure_future(self._joined.wait())
        stopped = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({joined, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()
            stopped.cancel()
        if self._state is None:
            # (a cancelled run() is no reason to look cancelled to the waiter)
            if self._failure is not None and not isinstance(self._failure, asyncio.CancelledError):
                raise self._failure
            raise OverlayError(f"overlay agent {self.config.node!r} stopped before joining")
        return self._state

    def stop(self) -> None:
        """Ask :meth:`run` to leave gracefully and return (safe from signal handlers)."""
        self._stopping.set()

    async def run(self) -> None:
        """Join, then serve until :meth:`stop` (graceful) or cancellation (as if killed:
        nothing is released, the node's keys expire after the TTL)."""
        store = self._store
        owned = store is None
        try:
            # Like flannel, a node that starts while etcd is down waits for it: nodes
            # and etcd may boot in any order.
            delays = _retry_delays()
            while True:
                delay = next(delays)
                try:
                    if store is None:
                        from cnilib.overlay._etcd import connect_etcd

                        store = await connect_etcd(self.config.etcd)
                    await self._join(store)
                    break
                except StoreUnavailableError as exc:
                    log.warning("etcd unreachable, joining when it answers (retry in %.1fs): %s",
                                delay, exc)  # fmt: skip
                if await self._stopped_within(delay):
                    return
            await self._serve(store)
        except BaseException as exc:
            self._failure = exc
            self._stopping.set()
            raise
        finally:
            if owned and store is not None:
                with contextlib.suppress(CNIError):
                    await store.close()

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if :meth:`stop` is called; whether it was."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        return self._stopping.is_set()

    # ---- joining -------------------------------------------------------------------

    async def _join(self, store: ClusterStore) -> None:
        config = self.config
        cluster = await ensure_cluster_config(store, self._keys, config.cluster)
        self._cluster = cluster
        datapath = self._make_datapath(
            DatapathConfig(
                netns=config.netns,
                underlay=config.underlay,
                underlay_link=config.underlay_link,
                vxlan_name=config.vxlan or f"ovx{cluster.vni}",
                bridge_name=config.bridge,
                vni=cluster.vni,
                port=cluster.port,
                cluster=cluster.network,
            )
        )
        self._datapath = datapath
        # Everything that can fail on this node is checked before the claim: a wrong
        # flag must not leave a registered node without a data path.
        await datapath.probe_underlay()
        mac = await datapath.current_mac() or _random_mac()
        membership = Membership(
            store, self._keys, cluster, node=config.node, underlay=config.underlay, ttl=config.ttl
        )
        registration = await membership.join(mac, previous=self._previous_subnet(cluster))
        self._membership = membership
        try:
            await self._install(registration)
        except BaseException:
            with contextlib.suppress(CNIError):
                await membership.leave(release=True)
            raise
        log.info(
            "node %s joined overlay %s with subnet %s (VTEP %s %s)",
            config.node,
            config.network,
            registration.record.subnet,
            config.underlay,
            mac,
        )

    def _previous_subnet(self, cluster: ClusterConfig) -> IPv4Network | None:
        """The subnet this node held before a restart, to ask for it again."""
        try:
            state = read_node_state(self.config.state_file)
        except CNIError as exc:
            log.warning("ignoring the previous node state: %s", exc)
            return None
        if state is None or state.node != self.config.node or not cluster.holds(state.subnet):
            return None
        return state.subnet

    async def _install(self, registration: Registration) -> None:
        """Make the node's device and bridge for its subnet and publish the state file."""
        assert self._datapath is not None
        assert self._cluster is not None
        record = registration.record
        # Not while a reconcile changes the same devices (after a reclaim onto another
        # subnet, the watch and the resync keep running).
        async with self._reconcile_lock:
            mtu = await self._datapath.setup(record.subnet, record.vtep_mac)
        if self.config.ip_masq:
            # Before the state file: no container is attached without it.
            await install_masquerade(
                self.config.netns, self.config.network, self._cluster.network, record.subnet
            )
        state = NodeState(
            name=self.config.network,
            node=self.config.node,
            cluster=self._cluster.network,
            subnet=record.subnet,
            bridge=self.config.bridge,
            mtu=mtu,
            vni=self._cluster.vni,
        )
        await asyncio.to_thread(write_node_state, self.config.state_file, state)
        self._state = state
        self._joined.set()

    # ---- serving -------------------------------------------------------------------

    async def _serve(self, store: ClusterStore) -> None:
        tasks = {
            asyncio.create_task(self._keep_lease(store), name="overlay-lease"),
            asyncio.create_task(self._follow(store), name="overlay-watch"),
            asyncio.create_task(self._resync(), name="overlay-resync"),
        }
        stop = asyncio.create_task(self._stopping.wait(), name="overlay-stop")
        try:
            done, _ = await asyncio.wait({stop, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stop}:
                task.result()  # a task only ends by failing: re-raise it
        finally:
            for task in (stop, *tasks):
                task.cancel()
            # A task stuck in a call the store never answers must not keep a stopping
            # agent alive: it is abandoned after the grace period.
            _, stuck = await asyncio.wait({stop, *tasks}, timeout=_STOP_GRACE)
            for task in stuck:
                log.warning("task %s did not end within %.0fs of the stop", task.get_name(),
                            _STOP_GRACE)  # fmt: skip
        try:
            async with asyncio.timeout(_STOP_GRACE):
                await self._leave()
        except TimeoutError:
            log.warning("etcd did not answer the leave within %.0fs: the node's keys expire "
                        "with its lease", _STOP_GRACE)  # fmt: skip
        if self.config.release_on_exit and self.config.ip_masq:
            # Kernel state, outside the etcd bound: the subnet may go to another node.
            try:
                await remove_masquerade(self.config.netns, self.config.network)
            except CNIError as exc:
                log.warning("could not remove the masquerading rules: %s", exc)

    async def _leave(self) -> None:
        assert self._membership is not None
        release = self.config.release_on_exit
        try:
            await self._membership.leave(release=release)
        except StoreUnavailableError as exc:
            log.warning("could not release the subnet, it expires with the lease: %s", exc)
        if release:
            # The subnet may go to another node now: the plugin must not use it.
            with contextlib.suppress(FileNotFoundError):
                self.config.state_file.unlink()
        log.info(
            "node %s left overlay %s (released: %s)", self.config.node, self.config.network, release
        )

    async def _keep_lease(self, store: ClusterStore) -> None:
        assert self._membership is not None
        while True:
            alive = asyncio.create_task(self._membership.keep_alive())
            lost = asyncio.create_task(self._key_lost.wait())
            try:
                await asyncio.wait({alive, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                alive.cancel()
                lost.cancel()
                await asyncio.gather(alive, lost, return_exceptions=True)
            if alive.done() and not alive.cancelled() and alive.exception() is not None:
                raise alive.exception()  # type: ignore[misc]
            self._key_lost.clear()
            if alive.cancelled() and await self._still_held(store):
                continue
            old = self._membership.registration
            log.warning("node %s lost its registration: claiming it again", self.config.node)
            registration = await self._reclaim()
            if old is None or registration.record.subnet != old.record.subnet:
                log.warning(
                    "node %s now holds subnet %s", self.config.node, registration.record.subnet
                )
                await self._install(registration)
                await self._reconcile()

    async def _still_held(self, store: ClusterStore) -> bool:
        """Whether the own subnet key, which the watch saw deleted or overwritten, is
        under our lease after all: the change was from before our last claim (the
        keepalive noticed the lost lease first and the subnet was claimed again)."""
        registration = self.registration
        if registration is None:
            return False
        try:
            kv = await store.get(self._keys.subnet(registration.record.subnet))
        except StoreUnavailableError:
            return False  # the reclaim waits for etcd and takes over what is still ours
        return kv is not None and kv.lease == registration.lease

    async def _reclaim(self) -> Registration:
        assert self._membership is not None
        delays = _retry_delays()
        while True:
            try:
                return await self._membership.reclaim()
            except StoreUnavailableError as exc:
                log.warning("etcd unreachable while re-registering: %s", exc)
                await asyncio.sleep(next(delays))

    async def _follow(self, store: ClusterStore) -> None:
        """List, reconcile, watch; list again after a compaction or a lost connection."""
        delays = _retry_delays()
        while True:
            try:
                snapshot = await store.list(self._keys.subnets)
                before, self._peers = self._peers, {}
                for item in snapshot.items:
                    self._apply_put(item.key, item.value, item.mod_revision, before)
                for subnet in sorted(before.keys() - self._peers.keys()):
                    log.info("peer with subnet %s left", subnet)
                await self._reconcile()
                delays = _retry_delays()  # etcd answered: the next outage starts short
                changes = store.watch(self._keys.subnets, start_revision=snapshot.revision + 1)
                async with contextlib.aclosing(changes):
                    async for batch in changes:
                        self._apply(batch)
                        await self._reconcile()
            except RevisionCompactedError as exc:
                log.info("watch fell behind a compaction, listing again: %s", exc)
                continue
            except StoreError as exc:
                # Unreachable, or etcd ended the watch itself (it cancels watches for
                # reasons of its own): either way the kernel is kept and the agent lists again.
                delay = next(delays)
                log.warning("etcd: %s; kernel state kept, listing again in %.1fs", exc, delay)
            else:
                delay = next(delays)
                log.warning("etcd ended the watch; listing again in %.1fs", delay)
            await asyncio.sleep(delay)

    def _apply(self, batch: WatchBatch) -> None:
        for event in batch.events:
            if event.type == "put":
                self._apply_put(event.key, event.value, event.mod_revision)
                continue
            try:
                subnet = self._keys.subnet_of(event.key)
            except RecordError:
                continue
            if self._own_subnet() == subnet:
                self._key_lost.set()
            if self._peers.pop(subnet, None) is not None:
                log.info("peer with subnet %s left", subnet)

    def _apply_put(
        self,
        key: str,
        value: bytes,
        revision: int,
        known: Mapping[IPv4Network, Peer] | None = None,
    ) -> None:
        """Apply one record to the peer table (``known``: the table before a re-list,
        so that only changes are logged)."""
        own = self._own_subnet()
        try:
            record = SubnetRecord.from_json(self._keys, key, value)
        except RecordError as exc:
            if own is not None and key == self._keys.subnet(own):
                self._key_lost.set()  # overwritten: no longer our record
            if (key, revision) not in self._bad_records:
                self._bad_records.add((key, revision))
                log.warning("skipping a record that does not decode: %s", exc)
            return
        if record.subnet == own and record.node != self.config.node:
            self._key_lost.set()  # another node wrote our subnet key
        if record.node == self.config.node or not self._usable(record):
            # Our own records (also one under an older lease, until it goes) are no peers.
            self._peers.pop(record.subnet, None)
            return
        peer = Peer.from_record(record)
        if (self._peers if known is None else known).get(record.subnet) != peer:
            log.info("peer %s: subnet %s via %s", record.node, record.subnet, record.underlay)
        self._peers[record.subnet] = peer

    def _peer_set(self) -> dict[IPv4Network, Peer]:
        """The peers the kernel must reach: the table without this node's own subnet,
        also while a reclaim moves it (the subnet claimed and the one still installed)."""
        own = {self._own_subnet(), self._state.subnet if self._state else None}
        return {subnet: peer for subnet, peer in self._peers.items() if subnet not in own}

    def _usable(self, record: SubnetRecord) -> bool:
        """Only subnets inside the cluster CIDR on our VNI become routes: a bad record must
        never route anything else through the overlay."""
        cluster = self._cluster
        assert cluster is not None
        if (
            record.backend == "vxlan"
            and record.subnet.subnet_of(cluster.network)
            and record.vni == cluster.vni
        ):
            return True
        if record.subnet not in self._skipped:
            self._skipped.add(record.subnet)
            log.warning(
                "skipping node %s: %s subnet %s VNI %d is not a vxlan subnet of %s VNI %d",
                record.node, record.backend, record.subnet, record.vni, cluster.network,
                cluster.vni,
            )  # fmt: skip
        return False

    def _own_subnet(self) -> IPv4Network | None:
        registration = self.registration
        return registration.record.subnet if registration else None

    async def _resync(self) -> None:
        """Reconcile every ``resync_interval``, and soon after a reconcile that failed."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.resync_interval):
                    await self._retry_soon.wait()
                    await asyncio.sleep(_RETRY_DELAY)
            self._retry_soon.clear()
            await self._reconcile()

    async def _reconcile(self) -> None:
        assert self._datapath is not None
        async with self._reconcile_lock:
            try:
                report = await self._datapath.reconcile(list(self._peer_set().values()))
            except CNIError as exc:
                log.error("reconciling the kernel failed, retrying in %.0fs: %s", _RETRY_DELAY,
                          exc)  # fmt: skip
                self._retry_soon.set()
                return
        if report.failed:
            self._retry_soon.set()
        if report.added or report.removed or report.repaired:
            log.info(
                "kernel reconciled: %d added, %d removed, %d repaired",
                len(report.added), len(report.removed), report.repaired,
            )  # fmt: skip


def run_agent(config: AgentConfig) -> int:
    """Run an agent until SIGTERM or SIGINT (a graceful stop); the exit status."""

    async def main() -> None:
        agent = Agent(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        await agent.run()

    try:
        asyncio.run(main())
    except CNIError as exc:
        print(f"overlay agent {config.node}: {exc}", file=sys.stderr)
        return 1
    return 0
