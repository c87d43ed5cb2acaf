"""The bandwidth plugin without a kernel: its configuration as Go decodes and validates
it, Go's IFB name and TBF arithmetic, and the traffic-control requests, compared with
the bytes Go's bandwidth binary (1.1.1) sent for the same ADD (captured with strace).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cnilib.errors import CNIError
from cnilib.invoke import Command
from cnilib.netlink import _tc
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._registry import load_plugin
from cnilib.plugins._versions import version_only
from cnilib.plugins.meta._bandwidth_conf import BandwidthConf, BandwidthEntry, ifb_name, tbf_params
from tests.unit._guards import NO_SUCH_HOST


def _req(**conf: Any) -> PluginRequest:
    config = {"cniVersion": "1.0.0", "name": "net1", "type": "bandwidth", **conf}
    return PluginRequest(
        command=Command.ADD, container_id="c1", netns="/run/netns/x", ifname="eth0",
        args=(), path=(), config=config, stdin=json.dumps(config).encode(),
        host_netns=NO_SUCH_HOST,
    )  # fmt: skip


def _error(**conf: Any) -> str:
    with pytest.raises(CNIError) as info:
        BandwidthConf.load(_req(**conf))
    assert info.value.code == 999
    return info.value.msg


# ------------------------------------------------------------------------ precedence


def test_top_level_limits() -> None:
    conf = BandwidthConf.load(_req(ingressRate=8000, ingressBurst=800, egressRate=1, egressBurst=9))
    assert conf.bandwidth == BandwidthEntry(8000, 800, 1, 9)


def test_runtime_config_when_no_top_level_key() -> None:
    rt = {"bandwidth": {"egressRate": 1000, "egressBurst": 100}}
    conf = BandwidthConf.load(_req(runtimeConfig=rt))
    assert conf.bandwidth == BandwidthEntry(0, 0, 1000, 100)
    assert conf.bandwidth.egress
    assert not conf.bandwidth.ingress


def test_any_top_level_key_even_null_wins_over_runtime_config() -> None:
    # Go allocates the embedded *BandwidthEntry for the first of its keys it sees.
    rt = {"bandwidth": {"ingressRate": 1000}}  # invalid, but ignored
    conf = BandwidthConf.load(_req(ingressRate=None, runtimeConfig=rt))
    assert conf.bandwidth == BandwidthEntry()
    assert conf.bandwidth.is_zero


def test_keys_match_in_any_case_the_last_winning() -> None:
    # Go's encoding/json: a key matches a field case-insensitively; a later one overrides.
    conf = BandwidthConf.load(_req(IngressRate=8000, ingressrate=9000, INGRESSBURST=800))
    assert conf.bandwidth == BandwidthEntry(9000, 800, 0, 0)
    rt = {"Bandwidth": {"EGRESSRATE": 1000, "egressBurst": 100}}
    conf = BandwidthConf.load(_req(RuntimeConfig=rt))
    assert conf.bandwidth == BandwidthEntry(0, 0, 1000, 100)


def test_nothing_configured() -> None:
    assert BandwidthConf.load(_req()).bandwidth is None
    assert BandwidthConf.load(_req(runtimeConfig={"bandwidth": None})).bandwidth is None


# ------------------------------------------------------------------------ Go's texts

GO_TEXTS: dict[str, tuple[dict[str, Any], str]] = {
    # Each text is what Debian's Go bandwidth 1.1.1 answers.
    "negative": (
        {"ingressRate": -1, "ingressBurst": 5},
        "failed to parse network configuration: json: cannot unmarshal number -1 into "
        "Go struct field PluginConf.ingressRate of type uint64",
    ),
    "string": (
        {"ingressRate": "x"},
        "failed to parse network configuration: json: cannot unmarshal string into "
        "Go struct field PluginConf.ingressRate of type uint64",
    ),
    "bool": (
        {"ingressRate": True, "egressRate": "x"},
        "failed to parse network configuration: json: cannot unmarshal bool into "
        "Go struct field PluginConf.ingressRate of type uint64",
    ),
    "fraction": (
        {"ingressRate": 1.5},
        "failed to parse network configuration: json: cannot unmarshal number 1.5 into "
        "Go struct field PluginConf.ingressRate of type uint64",
    ),
    "too-big": (
        {"ingressRate": 1 << 64},
        "failed to parse network configuration: json: cannot unmarshal number "
        "18446744073709551616 into Go struct field PluginConf.ingressRate of type uint64",
    ),
    "array": (
        {"egressBurst": [1]},
        "failed to parse network configuration: json: cannot unmarshal array into "
        "Go struct field PluginConf.egressBurst of type uint64",
    ),
    "runtime-fraction": (
        {"runtimeConfig": {"bandwidth": {"ingressRate": 1.5}}},
        "failed to parse network configuration: json: cannot unmarshal number 1.5 into "
        "Go struct field BandwidthEntry.runtimeConfig.bandwidth.ingressRate of type uint64",
    ),
    "runtime-not-object": (
        {"runtimeConfig": "x"},
        "failed to parse network configuration: json: cannot unmarshal string into Go struct "
        "field PluginConf.runtimeConfig of type struct { Bandwidth *main.BandwidthEntry "
        '"json:\\"bandwidth,omitempty\\"" }',
    ),
    "runtime-bandwidth-not-object": (
        {"runtimeConfig": {"bandwidth": "x"}},
        "failed to parse network configuration: json: cannot unmarshal string into Go struct "
        "field .runtimeConfig.bandwidth of type main.BandwidthEntry",
    ),
    # Go reports the first wrong value in the document's order.
    "first-in-document": (
        {"egressRate": "x", "ingressRate": True},
        "failed to parse network configuration: json: cannot unmarshal string into "
        "Go struct field PluginConf.egressRate of type uint64",
    ),
    "runtime-first-in-document": (
        {"runtimeConfig": {"bandwidth": {"egressRate": "x"}}, "ingressRate": True},
        "failed to parse network configuration: json: cannot unmarshal string into Go struct "
        "field BandwidthEntry.runtimeConfig.bandwidth.egressRate of type uint64",
    ),
    "any-case": (
        {"IngressRate": "x"},
        "failed to parse network configuration: json: cannot unmarshal string into "
        "Go struct field PluginConf.ingressRate of type uint64",
    ),
    "rate-without-burst": ({"ingressRate": 100}, "if rate is set, burst must also be set"),
    "burst-without-rate": ({"ingressBurst": 100}, "if burst is set, rate must also be set"),
    "egress-rate-without-burst": (
        {"egressRate": 5, "egressBurst": 0},
        "if rate is set, burst must also be set",
    ),
    "burst-4gb": (
        {"ingressRate": 5, "ingressBurst": 34359738360},
        "burst cannot be more than 4GB",
    ),
    "runtime-rate-without-burst": (
        {"runtimeConfig": {"bandwidth": {"egressRate": 100}}},
        "if rate is set, burst must also be set",
    ),
}


@pytest.mark.parametrize("case", list(GO_TEXTS))
def test_refusals_have_go_texts(case: str) -> None:
    conf, text = GO_TEXTS[case]
    assert _error(**conf) == text


def test_largest_burst_is_accepted() -> None:
    conf = BandwidthConf.load(_req(ingressRate=5, ingressBurst=34359738352))
    assert conf.bandwidth is not None
    assert conf.bandwidth.ingress_burst == 34359738352


def test_versions_are_go_ones() -> None:
    plugin = load_plugin("bandwidth")
    assert plugin.supported_versions == ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
    answer = json.loads(version_only("bandwidth"))
    assert answer["supportedVersions"] == list(plugin.supported_versions)


# ------------------------------------------------------------------------ Go's numbers


def test_ifb_name_is_go_one() -> None:
    # The name Go's binary gave the IFB of network "net1", container "c1".
    assert ifb_name("net1", "c1") == "bwpc2d892b58e87"
    assert len(ifb_name("n" * 300, "c" * 300)) == 15


@pytest.mark.parametrize(
    ("rate", "burst", "expected"),
    [
        # What Go's binary sent (TCA_TBF_PARMS: rate bytes/s, limit bytes, buffer ticks).
        (8_000_000, 80_000, (1_000_000, 35_000, 156_250)),
        (16_000_000, 160_000, (2_000_000, 70_000, 156_250)),
        # Worked through Go's float64/uint32 steps by hand:
        # buffer = uint32(uint32(125000 * 1e6 / 125) * 15.625) wraps past 2^32.
        (1000, 1_000_000, (125, 125_003, (1_000_000_000 * 15_625 // 1000) % (1 << 32))),
        (7, 800, (0, 100, 0)),  # below 8 bits/s: Go divides by zero (+Inf -> 0)
    ],
)
def test_tbf_params_are_go_ones(rate: int, burst: int, expected: tuple[int, int, int]) -> None:
    tbf = tbf_params(rate, burst, 15.625)
    assert (tbf.rate, tbf.limit, tbf.buffer) == expected


def test_psched_ticks() -> None:
    assert _tc.psched_tick_in_usec("000003e8 00000040 000f4240 3b9aca00\n") == 15.625
    # The compatibility case Go's netlink keeps for old kernels.
    assert _tc.psched_tick_in_usec("000003e8 00000040 3b9aca00 3b9aca00\n") == 1000.0


# ------------------------------------------------------------------- netlink requests

# The bodies (after the netlink header) Go's bandwidth sent for ADD with ingress
# 8 Mbit/10000 B and egress 16 Mbit/20000 B on veth index 2, IFB index 4.
GO_TBF_INGRESS = (
    "000000000200000000000100ffffffff0000000008000100746266002c000200280001000000000000000000"
    "40420f00000000000000000000000000b88800005a62020000000000"
)
GO_IFB = (
    "00000000000000000100000001000000140003006277706332643839326235386538370008000400dc050000"
    "08000d00000000000c0012000700010069666200"
)
GO_INGRESS = "00000000020000000000fffff1ffffff000000000c000100696e67726573730004000200"
GO_FILTER = (
    "0000000002000000000000000000ffff0003010008000100753332009c000200240005000100010000000000"
    "00000000000000000000000000000000000000000000000008000100010001006c000700340001000b000100"
    "6d69727265640000240002002000020000000000000000000400000000000000000000000100000004000000"
    "340002000b0001006d6972726564000024000200200002000000000000000000000000000000000000000000"
    "0100000004000000"
)
GO_TBF_IFB = (
    "000000000400000000000100ffffffff0000000008000100746266002c000200280001000000000000000000"
    "80841e00000000000000000000000000701101005a62020000000000"
)


def test_requests_are_go_bytes() -> None:
    ingress = tbf_params(8_000_000, 80_000, 15.625)
    egress = tbf_params(16_000_000, 160_000, 15.625)
    assert (
        _tc.tbf_request(2, rate=ingress.rate, limit=ingress.limit, buffer=ingress.buffer).hex()
        == GO_TBF_INGRESS
    )
    assert _tc.ifb_request("bwpc2d892b58e87", mtu=1500).hex() == GO_IFB
    assert _tc.ingress_request(2).hex() == GO_INGRESS
    assert _tc.redirect_filter_request(2, 4).hex() == GO_FILTER
    assert (
        _tc.tbf_request(4, rate=egress.rate, limit=egress.limit, buffer=egress.buffer).hex()
        == GO_TBF_IFB
    )


def test_tbf_rate_above_32_bits_goes_in_rate64() -> None:
    body = _tc.tbf_request(2, rate=1 << 33, limit=1, buffer=1)
    assert len(body) == len(bytes.fromhex(GO_TBF_INGRESS)) + 12
    assert body.endswith((1 << 33).to_bytes(8, "little"))
