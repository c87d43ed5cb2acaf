"""Choosing a free subnet of the cluster's pool (flannel's ``allocateSubnet``), without I/O.

The node's preferred subnet (the one it held before a restart) comes first when it is
still free. Otherwise one of the first 100 free subnets is picked at random, so agents
starting together rarely pick the same one and lose the claim race; the claim itself is
an etcd transaction (:mod:`._membership`), this module only proposes.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from ipaddress import IPv4Network

from cnilib.overlay._config import ClusterConfig
from cnilib.overlay._errors import PoolExhaustedError

__all__ = ["CANDIDATES", "free_subnets", "pick_subnet"]

CANDIDATES = 100
"""How many free subnets the random pick chooses among (flannel's bound)."""


def free_subnets(
    config: ClusterConfig, taken: Collection[IPv4Network], *, limit: int | None = None
) -> list[IPv4Network]:
    """The pool's subnets that overlap none of ``taken``, in address order (``limit``: at
    most that many)."""
    same = {subnet for subnet in taken if subnet.prefixlen == config.subnet_len}
    # Keys of another length only appear if someone wrote them by hand; they still
    # occupy their addresses.
    other = [subnet for subnet in taken if subnet.prefixlen != config.subnet_len]
    free: list[IPv4Network] = []
    for subnet in config.subnets():
        if subnet in same or any(subnet.overlaps(o) for o in other):
            continue
        free.append(subnet)
        if limit is not None and len(free) >= limit:
            break
    return free


def pick_subnet(
    config: ClusterConfig,
    taken: Collection[IPv4Network],
    *,
    preferred: IPv4Network | None = None,
    rng: random.Random | None = None,
) -> IPv4Network:
    """A free subnet of ``config``'s pool: ``preferred`` if it is one of the pool's and
    free, else a random one of the first 100 free.

    Raises :class:`~cnilib.overlay.PoolExhaustedError` when none is free.
    """
    if (
        preferred is not None
        and config.holds(preferred)
        and not any(preferred.overlaps(subnet) for subnet in taken)
    ):
        return preferred
    candidates = free_subnets(config, taken, limit=CANDIDATES)
    if not candidates:
        size = config.pool_size
        raise PoolExhaustedError(
            f"no free /{config.subnet_len} subnet left in {config.network}: {size} of {size} leased"
        )
    return (rng or random).choice(candidates)
