"""A node's membership of the overlay: the cluster config, the subnet claim, its lease.

The claim is one transaction on two keys, flannel's ``createSubnet`` extended to the node
name: ``subnets/<s>`` and ``nodes/<name>`` must both be absent (or, for a take-over,
unchanged since they were read) and are then both put under the node's lease. So a
subnet and a node name are each held by one live agent at most, and a node that joins
either holds both keys or wrote nothing.

Preference order when joining (research digest 4.2):

1. ``nodes/<name>`` is alive and this node's own (the same underlay address in its subnet
   record: an agent restarted within the TTL, or the lease this object held): take it over
   with the new lease, keeping its subnet when the pool still holds it, and revoke the old
   lease; held by another underlay: :class:`~cnilib.overlay.NodeNameTakenError`;
2. the ``previous`` subnet (from the node state file), if free;
3. a random one of the first 100 free subnets (:func:`._allocate.pick_subnet`).

A lost race (another agent committed first) re-lists and tries again, up to 10 times.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Collection, Mapping
from ipaddress import IPv4Address, IPv4Network

import attrs

from cnilib.errors import ErrorCode
from cnilib.overlay._allocate import pick_subnet
from cnilib.overlay._config import ClusterConfig
from cnilib.overlay._errors import (
    NodeNameTakenError,
    OverlayConfigError,
    OverlayError,
    RecordError,
    StoreError,
    StoreUnavailableError,
)
from cnilib.overlay._records import Keys, NodeRecord, SubnetRecord
from cnilib.overlay._store import ClusterStore, KeyValue, LeaseGrant, Snapshot

__all__ = ["RACE_RETRIES", "Membership", "Registration", "ensure_cluster_config"]

log = logging.getLogger("cnilib.overlay")

RACE_RETRIES = 10
"""How many lost claim races a join tolerates (flannel's ``raceRetries``)."""

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_FIRST_RETRY = 0.25
"""Seconds before the first keepalive retry after a failure (doubling up to the interval)."""


async def ensure_cluster_config(
    store: ClusterStore, keys: Keys, wanted: ClusterConfig | None
) -> ClusterConfig:
    """The cluster configuration in the store, created from ``wanted`` if absent.

    A configuration already there must equal ``wanted`` (when given): every node cuts the
    same network the same way. Raises :class:`~cnilib.overlay.OverlayConfigError` for a
    mismatch, for an absent configuration and no ``wanted``, and for a stored one that
    does not decode.
    """
    # Two rounds: an absent key we lose the race to create is the winner's.
    for _ in range(2):
        current = await store.get(keys.config)
        if current is None:
            if wanted is None:
                raise OverlayConfigError(
                    f"no cluster configuration at {keys.config}: start an agent with --cluster-cidr"
                )
            outcome = await store.compare_and_put({keys.config: 0}, {keys.config: wanted.to_json()})
            if outcome.succeeded:
                log.info("created the cluster configuration %s: %s", keys.config, wanted.describe())
                return wanted
            current = outcome.current.get(keys.config)
            if current is None:  # created and deleted meanwhile: look again
                continue
        stored = ClusterConfig.from_json(keys.config, current.value)
        if wanted is not None and stored != wanted:
            raise OverlayConfigError(
                f"the cluster configuration at {keys.config} is {stored.describe()}, "
                f"not the {wanted.describe()} this agent was given"
            )
        return stored
    raise OverlayConfigError(
        f"the cluster configuration at {keys.config} keeps changing: try again",
        code=ErrorCode.TRY_AGAIN_LATER,
    )


@attrs.frozen
class Registration:
    """What a node holds: its subnet record, and the lease both its keys are under."""

    record: SubnetRecord
    lease: int
    ttl: int
    """The TTL the store granted (seconds)."""


class Membership:
    """Join the overlay as ``node``, keep the lease alive, claim again after losing it,
    leave. One object per agent; its methods are not meant to run concurrently with
    each other, except :meth:`keep_alive` alongside nothing but a cancellation.

    ``interval`` is the time between keepalives, by default a third of the granted TTL.
    """

    def __init__(
        self,
        store: ClusterStore,
        keys: Keys,
        cluster: ClusterConfig,
        *,
        node: str,
        underlay: IPv4Address,
        ttl: int = 10,
        rng: random.Random | None = None,
        interval: float | None = None,
    ) -> None:
        if not node or "/" in node or node != node.strip():
            raise OverlayConfigError(
                f"node name {node!r} is not usable in an etcd key (empty, '/' or spaces)"
            )
        if ttl < 1:
            raise OverlayConfigError(f"lease TTL {ttl} is not a positive number of seconds")
        self._store = store
        self._keys = keys
        self._cluster = cluster
        self._node = node
        self._underlay = underlay
        self._ttl = ttl
        self._rng = rng
        self._interval = interval
        self._registration: Registration | None = None

    @property
    def registration(self) -> Registration | None:
        """What the node holds (or held, until :meth:`reclaim`/:meth:`leave`); None
        before :meth:`join`."""
        return self._registration

    # ---- joining -------------------------------------------------------------------

    async def join(self, vtep_mac: str, *, previous: IPv4Network | None = None) -> Registration:
        """Grant a lease and claim a subnet and the node name under it.

        Raises :class:`~cnilib.overlay.PoolExhaustedError` when no subnet is free,
        :class:`~cnilib.overlay.NodeNameTakenError` when a live agent with another
        underlay holds the name, :class:`~cnilib.overlay.OverlayError` after
        :data:`RACE_RETRIES` lost races, and the store's errors. On every failure the
        new lease is revoked and nothing was written.
        """
        mac = vtep_mac.lower()
        if not _MAC.fullmatch(mac):
            raise OverlayConfigError(f"VTEP MAC {vtep_mac!r} is not a MAC address")
        known = self._registration.lease if self._registration else 0
        grant = await self._store.grant(self._ttl)
        try:
            for _ in range(RACE_RETRIES):
                try:
                    claimed, old_lease = await self._try_claim(mac, previous, grant, known)
                except StoreUnavailableError:
                    raise
                except StoreError:
                    # etcd refuses a put under a lease that expired since the grant (a
                    # slow store, a stalled loop): that is a lost race, not a failure
                    if await self._store.time_to_live(grant.id) is not None:
                        raise
                    log.warning(
                        "node %s: lease %x expired before the claim: granting another",
                        self._node,
                        grant.id,
                    )
                    grant = await self._store.grant(self._ttl)
                    continue
                if claimed is not None:
                    break
            else:
                raise OverlayError(
                    f"node {self._node} lost the race for a subnet {RACE_RETRIES} times in "
                    "a row (many agents joining at once): try again",
                    code=ErrorCode.TRY_AGAIN_LATER,
                )
        except BaseException:
            # Nothing was written: the lease holds no key, it only has to go.
            await self._revoke_quietly(grant.id)
            raise
        self._registration = claimed
        if old_lease and old_lease != grant.id:
            # The keys moved to the new lease; what is left under the old one (a subnet
            # the pool no longer holds) goes with it.
            await self._revoke_quietly(old_lease)
        return claimed

    async def _try_claim(
        self, mac: str, previous: IPv4Network | None, grant: LeaseGrant, known: int
    ) -> tuple[Registration | None, int]:
        """One claim attempt: (the registration, the lease to revoke now; 0: none),
        or (None, 0) after a lost race."""
        keys = self._keys
        node_key = keys.node(self._node)
        held = await self._store.get(node_key)
        snapshot = await self._store.list(keys.subnets)
        old_lease = known
        if held is None:
            subnet = pick_subnet(
                self._cluster,
                _taken(keys, snapshot, skip_lease=0),
                preferred=previous,
                rng=self._rng,
            )
            expect = {keys.subnet(subnet): 0, node_key: 0}
        else:
            try:
                subnet = self._take_over(held, snapshot, previous, known)
            except NodeNameTakenError:
                # The key and the subnets were read apart: if the key changed meanwhile
                # (its lease expired, say), the snapshot did not show its holder's
                # subnet record. Read again rather than refuse a name that is free.
                again = await self._store.get(node_key)
                if again is None or again.mod_revision != held.mod_revision:
                    return None, 0
                raise
            subnet_kv = _find(snapshot, keys.subnet(subnet))
            expect = {
                keys.subnet(subnet): subnet_kv.mod_revision if subnet_kv else 0,
                node_key: held.mod_revision,
            }
            old_lease = held.lease
        record = SubnetRecord(
            subnet=subnet,
            node=self._node,
            underlay=self._underlay,
            vtep_mac=mac,
            vni=self._cluster.vni,
            port=self._cluster.port,
            joined=time.time(),
        )
        puts = {
            keys.subnet(subnet): record.to_json(),
            node_key: NodeRecord(name=self._node, subnet=subnet).to_json(),
        }
        outcome = await self._store.compare_and_put(expect, puts, lease=grant.id)
        if not outcome.succeeded:
            log.info(
                "node %s lost the race for subnet %s: %s",
                self._node,
                subnet,
                _describe(outcome.current),
            )
            return None, 0
        verb = "took over" if held is not None else "claimed"
        log.info("node %s %s subnet %s under lease %x", self._node, verb, subnet, grant.id)
        return Registration(record=record, lease=grant.id, ttl=grant.ttl), old_lease

    def _take_over(
        self, held: KeyValue, snapshot: Snapshot, previous: IPv4Network | None, known: int
    ) -> IPv4Network:
        """The subnet to claim when ``nodes/<name>`` is alive, if it is this node's own;
        :class:`NodeNameTakenError` otherwise."""
        keys = self._keys
        try:
            node_record: NodeRecord | None = NodeRecord.from_json(keys, held.key, held.value)
        except RecordError as exc:
            log.warning("%s", exc)
            node_record = None
        owner: SubnetRecord | None = None
        if node_record is not None:
            subnet_kv = _find(snapshot, keys.subnet(node_record.subnet))
            if subnet_kv is not None and subnet_kv.lease == held.lease:
                try:
                    owner = SubnetRecord.from_json(keys, subnet_kv.key, subnet_kv.value)
                except RecordError as exc:
                    log.warning("%s", exc)
        mine = (known != 0 and held.lease == known) or (
            owner is not None and owner.node == self._node and owner.underlay == self._underlay
        )
        if not mine:
            if owner is not None:
                whose = f"the agent at underlay {owner.underlay} (subnet {owner.subnet})"
            else:
                whose = "an agent whose subnet record cannot tell which"
            raise NodeNameTakenError(
                f"node name {self._node!r} is held by {whose} under a live lease "
                f"({held.key}): give this node another --node name, or stop that agent "
                "and wait for its lease to expire"
            )
        # Ours: keep the subnet if the pool still holds it and it is not someone else's.
        if node_record is not None and self._cluster.holds(node_record.subnet):
            subnet_kv = _find(snapshot, keys.subnet(node_record.subnet))
            if subnet_kv is None or subnet_kv.lease == held.lease:
                return node_record.subnet
        # Its keys under the old lease go with it: they do not count as taken.
        taken = _taken(keys, snapshot, skip_lease=held.lease)
        return pick_subnet(self._cluster, taken, preferred=previous, rng=self._rng)

    async def _revoke_quietly(self, lease: int) -> None:
        """Revoke a lease no one keeps alive; if the store cannot be reached, it expires."""
        try:
            await self._store.revoke(lease)
        except StoreError as exc:
            log.warning("could not revoke lease %x (it will expire): %s", lease, exc)

    # ---- keeping -------------------------------------------------------------------

    async def keep_alive(self) -> None:
        """Renew the lease every interval until it is gone, then return (call
        :meth:`reclaim`). An unreachable store is logged and retried, sooner at first
        and then every interval, never given up on: the lease may outlive the outage."""
        registration = self._registration
        if registration is None:
            raise OverlayError(f"node {self._node} has not joined: nothing to keep alive")
        lease = registration.lease
        interval = self._interval if self._interval is not None else registration.ttl / 3
        delay = interval
        failures = 0
        while True:
            await asyncio.sleep(delay)
            try:
                # Each call is bounded by the interval, not only by the store's own
                # timeout (etcd's: 5 s): a call that hangs while etcd answers others (a
                # half-open connection) would otherwise let a short lease lapse before
                # the next call, which is a new one and may well get through.
                async with asyncio.timeout(interval):
                    ttl = await self._store.keepalive(lease)
            except (StoreError, TimeoutError) as exc:
                failures += 1
                log.warning(
                    "node %s: keepalive of lease %x failed (%d in a row), retrying: %s",
                    self._node,
                    lease,
                    failures,
                    exc if isinstance(exc, StoreError) else f"no answer within {interval:g} s",
                )
                delay = min(interval, _FIRST_RETRY * 2 ** (failures - 1))
                continue
            if failures:
                log.info(
                    "node %s: keepalive of lease %x works again after %d failures",
                    self._node,
                    lease,
                    failures,
                )
                failures = 0
            delay = interval
            if ttl <= 0:
                log.warning(
                    "node %s: lease %x is gone: subnet %s is no longer held",
                    self._node,
                    lease,
                    registration.record.subnet,
                )
                return

    async def reclaim(self) -> Registration:
        """After the lease was lost: claim again with a new lease, the same subnet if it
        is still free, else another (the same errors as :meth:`join`)."""
        old = self._registration
        if old is None:
            raise OverlayError(f"node {self._node} has not joined: nothing to reclaim")
        return await self.join(old.record.vtep_mac, previous=old.record.subnet)

    async def leave(self, *, release: bool) -> None:
        """Stop being a member. ``release``: revoke the lease now, so both keys go and
        peers drop this node at once (the store's errors are raised); otherwise the
        lease is left to expire (a restart within the TTL takes it over)."""
        registration, self._registration = self._registration, None
        if registration is not None and release:
            await self._store.revoke(registration.lease)
            log.info("node %s released subnet %s", self._node, registration.record.subnet)


def _describe(current: Mapping[str, KeyValue | None]) -> str:
    return ", ".join(
        f"{key} {'absent' if kv is None else f'at revision {kv.mod_revision}'}"
        for key, kv in current.items()
    )


def _find(snapshot: Snapshot, key: str) -> KeyValue | None:
    for item in snapshot.items:
        if item.key == key:
            return item
    return None


def _taken(keys: Keys, snapshot: Snapshot, *, skip_lease: int) -> Collection[IPv4Network]:
    """The subnets the listed keys hold, but those under ``skip_lease`` (when not 0)."""
    taken: list[IPv4Network] = []
    for item in snapshot.items:
        if skip_lease and item.lease == skip_lease:
            continue
        try:
            taken.append(keys.subnet_of(item.key))
        except RecordError as exc:
            # a stray key holds no subnet of ours
            log.warning("ignoring %s", exc)
    return taken
