"""The overlay's cluster configuration: flannel's defaults and checks, the stored JSON."""

from __future__ import annotations

import json
from ipaddress import IPv4Network
from typing import Any

import pytest

from cnilib.errors import ErrorCode
from cnilib.overlay._config import ClusterConfig
from cnilib.overlay._errors import OverlayConfigError

KEY = "/cnilib/overlay/overlay/config"


def net(text: str) -> IPv4Network:
    return IPv4Network(text)


@pytest.mark.parametrize(
    ("network", "length", "first", "last", "size"),
    [
        # flannel: /24 per node when the network is /22 or shorter, the first subnet skipped
        ("10.244.0.0/16", 24, "10.244.1.0/24", "10.244.255.0/24", 255),
        ("10.244.0.0/22", 24, "10.244.1.0/24", "10.244.3.0/24", 3),
        # longer than /22: prefix + 2, four subnets of which three are usable
        ("10.0.0.0/23", 25, "10.0.0.128/25", "10.0.1.128/25", 3),
        ("10.0.0.0/28", 30, "10.0.0.4/30", "10.0.0.12/30", 3),
        ("10.0.0.0/8", 24, "10.0.1.0/24", "10.255.255.0/24", 65535),
    ],
)
def test_defaults_follow_flannel(
    network: str, length: int, first: str, last: str, size: int
) -> None:
    config = ClusterConfig.make(network)
    assert config.subnet_len == length
    assert config.subnet_min == net(first)
    assert config.subnet_max == net(last)
    assert config.pool_size == size
    assert (config.vni, config.port) == (1, 8472)


def test_first_subnet_is_never_in_the_pool() -> None:
    config = ClusterConfig.make("10.244.0.0/22")
    assert list(config.subnets()) == [
        net("10.244.1.0/24"),
        net("10.244.2.0/24"),
        net("10.244.3.0/24"),
    ]
    assert not config.holds(net("10.244.0.0/24"))


def test_explicit_bounds_as_addresses_or_subnets() -> None:
    config = ClusterConfig.make(
        "10.244.0.0/16", subnet_len=26, subnet_min="10.244.8.0", subnet_max=net("10.244.8.192/26")
    )
    assert config.subnet_min == net("10.244.8.0/26")
    assert config.subnet_max == net("10.244.8.192/26")
    assert config.pool_size == 4
    assert [str(s) for s in config.subnets()] == [
        "10.244.8.0/26",
        "10.244.8.64/26",
        "10.244.8.128/26",
        "10.244.8.192/26",
    ]


def test_a_pool_of_one_subnet() -> None:
    config = ClusterConfig.make("10.244.0.0/16", subnet_min="10.244.7.0", subnet_max="10.244.7.0")
    assert list(config.subnets()) == [net("10.244.7.0/24")]
    assert config.pool_size == 1


def test_holds() -> None:
    config = ClusterConfig.make("10.244.0.0/16", subnet_min="10.244.2.0", subnet_max="10.244.9.0")
    assert config.holds(net("10.244.2.0/24"))
    assert config.holds(net("10.244.9.0/24"))
    assert not config.holds(net("10.244.1.0/24"))  # below min
    assert not config.holds(net("10.244.10.0/24"))  # above max
    assert not config.holds(net("10.244.2.0/25"))  # wrong length
    assert not config.holds(net("10.245.2.0/24"))  # another network


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"network": "10.0.0.0/29"}, ["10.0.0.0/29", "/28"]),
        ({"network": "10.0.0.0/24", "subnet_len": 31}, ["subnet length", "/31"]),
        ({"network": "10.0.0.0/24", "subnet_len": 25}, ["subnet length", "/25", "four subnets"]),
        ({"network": "10.0.0.0/24", "subnet_len": 40}, ["subnet length", "40"]),
        ({"network": "10.244.0.0/16", "subnet_min": "10.244.1.5"}, ["subnet min", "10.244.1.5"]),
        ({"network": "10.244.0.0/16", "subnet_max": "10.244.1.0/25"}, ["subnet max", "/24"]),
        ({"network": "10.244.0.0/16", "subnet_min": "10.245.1.0"}, ["subnet min", "10.245.1.0"]),
        ({"network": "10.244.0.0/16", "subnet_max": "10.0.0.0"}, ["subnet max", "10.0.0.0"]),
        ({"network": "10.244.0.0/16", "subnet_min": "10.244.0.0"}, ["subnet min", "first subnet"]),
        (
            {"network": "10.244.0.0/16", "subnet_min": "10.244.5.0", "subnet_max": "10.244.4.0"},
            ["subnet min", "10.244.5.0/24", "subnet max", "10.244.4.0/24"],
        ),
        ({"network": "10.244.0.0/16", "vni": 0}, ["vni", "0", "1..16777215"]),
        ({"network": "10.244.0.0/16", "vni": 1 << 24}, ["vni", "16777216"]),
        ({"network": "10.244.0.0/16", "port": 0}, ["port", "0", "1..65535"]),
        ({"network": "10.244.0.0/16", "port": 65536}, ["port", "65536"]),
        ({"network": "10.244.0.0/16", "port": True}, ["port", "True"]),
        ({"network": "10.244.0.1/16"}, ["network", "10.244.0.1/16"]),
        ({"network": "fd00::/64"}, ["network", "fd00::/64"]),
    ],
)
def test_invalid_configs_name_the_field_and_value(kwargs: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(OverlayConfigError) as info:
        ClusterConfig.make(**kwargs)
    for name in names:
        assert name in str(info.value)
    assert info.value.code == ErrorCode.INVALID_NETWORK_CONFIG


def test_json_round_trip() -> None:
    config = ClusterConfig.make(
        "10.10.0.0/16", subnet_len=26, subnet_min="10.10.4.0", vni=42, port=4789
    )
    data = json.loads(config.to_json())
    assert data == {
        "network": "10.10.0.0/16",
        "subnetLen": 26,
        "subnetMin": "10.10.4.0",
        "subnetMax": "10.10.255.192",
        "backend": {"type": "vxlan", "vni": 42, "port": 4789},
    }
    assert ClusterConfig.from_json(KEY, config.to_json()) == config


def test_from_json_fills_defaults_of_a_hand_written_config() -> None:
    assert ClusterConfig.from_json(KEY, b'{"network": "10.244.0.0/16"}') == ClusterConfig.make(
        "10.244.0.0/16"
    )
    assert ClusterConfig.from_json(
        KEY, b'{"network": "10.244.0.0/16", "backend": {"vni": 7}}'
    ) == ClusterConfig.make("10.244.0.0/16", vni=7)


@pytest.mark.parametrize(
    ("value", "names"),
    [
        (b"not json", ["not JSON"]),
        (b"[1]", ["not a JSON object"]),
        (b"{}", ['"network"', "missing"]),
        (b'{"network": 10}', ['"network"', "string", "10"]),
        (b'{"network": "10.244.0.0/16", "subnetLen": "24"}', ['"subnetLen"', "integer"]),
        (b'{"network": "10.244.0.0/16", "subnetLen": true}', ['"subnetLen"', "integer", "true"]),
        (b'{"network": "10.244.0.0/16", "subnetMin": 1}', ['"subnetMin"', "string"]),
        (b'{"network": "10.244.0.0/16", "subnetlen": 24}', ['"subnetlen"', "unknown"]),
        (b'{"network": "10.244.0.0/16", "backend": "vxlan"}', ['"backend"', "object"]),
        (b'{"network": "10.244.0.0/16", "backend": {"type": "udp"}}', ['"backend.type"', "udp"]),
        (b'{"network": "10.244.0.0/16", "backend": {"VNI": 1}}', ['"backend.VNI"', "unknown"]),
        (b'{"network": "10.244.0.0/16", "backend": {"vni": 1.5}}', ['"backend.vni"', "integer"]),
        (b'{"network": "10.244.0.0/16", "backend": {"port": 0}}', ["port", "0"]),
        (b'{"network": "10.244.0.0/16", "subnetLen": 31}', ["subnet length", "/31"]),
        (b'{"network": "10.244.0.0/33"}', ["network", "10.244.0.0/33"]),
    ],
)
def test_from_json_is_strict_and_names_key_and_field(value: bytes, names: list[str]) -> None:
    with pytest.raises(OverlayConfigError) as info:
        ClusterConfig.from_json(KEY, value)
    text = str(info.value)
    assert KEY in text
    for name in names:
        assert name in text


def test_describe_reads_as_one_line() -> None:
    assert ClusterConfig.make("10.244.0.0/22", vni=3).describe() == (
        "10.244.0.0/22 (/24 subnets 10.244.1.0-10.244.3.0, vni 3, port 8472)"
    )
