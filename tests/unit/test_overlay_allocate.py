"""Choosing a free subnet: the preferred one first, else a random one of the first 100 free."""

from __future__ import annotations

import random
from ipaddress import IPv4Network

import pytest

from cnilib.errors import ErrorCode
from cnilib.overlay._allocate import CANDIDATES, free_subnets, pick_subnet
from cnilib.overlay._config import ClusterConfig
from cnilib.overlay._errors import PoolExhaustedError


def net(text: str) -> IPv4Network:
    return IPv4Network(text)


SMALL = ClusterConfig.make("10.244.0.0/22")  # 10.244.1.0/24 .. 10.244.3.0/24


def test_free_skips_taken_and_keeps_address_order() -> None:
    assert free_subnets(SMALL, [net("10.244.2.0/24")]) == [
        net("10.244.1.0/24"),
        net("10.244.3.0/24"),
    ]


def test_a_taken_key_of_another_length_occupies_its_addresses() -> None:
    # a hand-written /23 over 10.244.2.0-10.244.3.255 leaves only 10.244.1.0/24
    assert free_subnets(SMALL, [net("10.244.2.0/23")]) == [net("10.244.1.0/24")]
    assert pick_subnet(SMALL, [net("10.244.2.0/23")]) == net("10.244.1.0/24")


def test_preferred_subnet_wins_when_free() -> None:
    config = ClusterConfig.make("10.244.0.0/16")
    for seed in range(20):
        got = pick_subnet(config, [], preferred=net("10.244.77.0/24"), rng=random.Random(seed))
        assert got == net("10.244.77.0/24")


@pytest.mark.parametrize(
    "preferred",
    [
        "10.244.2.0/24",  # taken
        "10.244.0.0/24",  # the skipped first subnet
        "10.244.1.0/25",  # wrong length
        "10.245.1.0/24",  # outside the network
    ],
)
def test_preferred_subnet_ignored_when_taken_or_not_the_pools(preferred: str) -> None:
    got = pick_subnet(SMALL, [net("10.244.2.0/24")], preferred=net(preferred))
    assert got in (net("10.244.1.0/24"), net("10.244.3.0/24"))


def test_random_pick_among_the_first_hundred_free() -> None:
    config = ClusterConfig.make("10.0.0.0/8")  # 65535 subnets
    taken = [net("10.0.1.0/24"), net("10.0.3.0/24")]
    first = free_subnets(config, taken, limit=CANDIDATES)
    assert len(first) == CANDIDATES
    picks = {pick_subnet(config, taken, rng=random.Random(seed)) for seed in range(200)}
    assert picks <= set(first)
    # spread: concurrent starters rarely choose the same subnet
    assert len(picks) > 50


def test_the_rng_decides() -> None:
    config = ClusterConfig.make("10.244.0.0/16")
    a = [pick_subnet(config, [], rng=random.Random(7)) for _ in range(3)]
    b = [pick_subnet(config, [], rng=random.Random(7)) for _ in range(3)]
    assert a == b


def test_last_free_subnet_is_found() -> None:
    taken = [net("10.244.1.0/24"), net("10.244.3.0/24")]
    assert pick_subnet(SMALL, taken) == net("10.244.2.0/24")


def test_pool_exhausted() -> None:
    taken = [net("10.244.1.0/24"), net("10.244.2.0/24"), net("10.244.3.0/24")]
    with pytest.raises(PoolExhaustedError) as info:
        pick_subnet(SMALL, taken, preferred=net("10.244.1.0/24"))
    assert str(info.value) == "no free /24 subnet left in 10.244.0.0/22: 3 of 3 leased"
    assert info.value.code == ErrorCode.TRY_AGAIN_LATER
