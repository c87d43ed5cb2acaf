"""Property tests: decoding never raises anything but CNIError; encodings and lossless
conversions round-trip."""

from __future__ import annotations

import contextlib
import json
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cnilib.errors import CNIError
from cnilib.results import (
    DNS,
    Interface,
    IPConfig,
    Result,
    ResultV020,
    ResultV040,
    ResultV100,
    Route,
    decode_result,
    v020,
    v040,
)

ALL = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
FUZZ = settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])

# --- arbitrary input ------------------------------------------------------------------

_KEYS = st.sampled_from(
    ["cniVersion", "interfaces", "ips", "routes", "dns", "name", "mac", "mtu", "sandbox",
     "socketPath", "pciID", "interface", "address", "gateway", "version", "dst", "gw",
     "advmss", "priority", "table", "scope", "nameservers", "domain", "search", "options",
     "ip4", "ip6", "ip", "IPS", "Dst", "CNIVERSION"]
)  # fmt: skip
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.sampled_from(
        [*ALL, "", "1.2.3.4/24", "::1/64", "10.0.0.1", "::ffff:1.2.3.4", "::ffff:1.2.3.4/120"]
    ),
)
_JSON = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(_KEYS, st.text(max_size=6)), inner, max_size=6),
    ),
    max_leaves=40,
)
_DEFAULTS = st.sampled_from(["", *ALL, "9.9.9"])


def _decode_or_cnierror(data: object, default_version: str) -> Result | None:
    try:
        return decode_result(data, default_version=default_version)  # type: ignore[arg-type]
    except CNIError:
        return None


# --- well-formed results ----------------------------------------------------------------

_TEXT = st.text(max_size=12)
_INT = st.integers(min_value=-(2**53), max_value=2**53)
_V4 = st.builds(lambda a, p: IPv4Interface((a, p)), st.ip_addresses(v=4), st.integers(0, 32))


def _plain_v6(addr: IPv4Address | IPv6Address) -> bool:
    """Not IPv4-mapped (those normalize to IPv4) and without a zone (Go has none)."""
    return isinstance(addr, IPv6Address) and addr.ipv4_mapped is None and addr.scope_id is None


_PLAIN_V6 = st.ip_addresses(v=6).filter(_plain_v6)
_V6 = st.builds(lambda a, p: IPv6Interface((a, p)), _PLAIN_V6, st.integers(0, 128))
_CIDR = st.one_of(_V4, _V6)
_GW = st.one_of(
    st.none(),
    st.ip_addresses(v=4),
    _PLAIN_V6,
)
_ROUTE = st.builds(
    Route,
    dst=_CIDR,
    gw=_GW,
    mtu=_INT,
    adv_mss=_INT,
    priority=_INT,
    table=st.none() | _INT,
    scope=st.none() | _INT,
)
_DNS = st.builds(
    DNS,
    nameservers=st.lists(_TEXT, max_size=3),
    domain=_TEXT,
    search=st.lists(_TEXT, max_size=3),
    options=st.lists(_TEXT, max_size=3),
)
_IFACE_040 = st.builds(v040.Interface, name=_TEXT, mac=_TEXT, sandbox=_TEXT)
_IFACE_100 = st.builds(
    Interface, name=_TEXT, mac=_TEXT, mtu=_INT, sandbox=_TEXT, socket_path=_TEXT, pci_id=_TEXT
)
_IFACE_100_PLAIN = st.builds(Interface, name=_TEXT, mac=_TEXT, sandbox=_TEXT)
_INDEX = st.none() | st.integers(-5, 10)


@st.composite
def _ip_040(draw: st.DrawFn) -> v040.IPConfig:
    address = draw(_CIDR)
    version = "4" if isinstance(address, IPv4Interface) else "6"
    return v040.IPConfig(
        version=version, interface=draw(_INDEX), address=address, gateway=draw(_GW)
    )


def _v100(interfaces: st.SearchStrategy[Interface]) -> st.SearchStrategy[ResultV100]:
    return st.builds(
        ResultV100,
        cni_version=st.sampled_from(["1.0.0", "1.1.0"]),
        interfaces=st.lists(interfaces, max_size=3),
        ips=st.lists(st.builds(IPConfig, interface=_INDEX, address=_CIDR, gateway=_GW), max_size=3),
        routes=st.lists(_ROUTE, max_size=3),
        dns=_DNS,
    )


_RESULT_100 = _v100(_IFACE_100)
_RESULT_100_PLAIN = _v100(_IFACE_100_PLAIN)
_RESULT_040 = st.builds(
    ResultV040,
    cni_version=st.sampled_from(["0.3.0", "0.3.1", "0.4.0"]),
    interfaces=st.lists(_IFACE_040, max_size=3),
    ips=st.lists(_ip_040(), max_size=3),
    routes=st.lists(_ROUTE, max_size=3),
    dns=_DNS,
)
_IP_020 = st.none() | st.builds(
    v020.IPConfig, ip=_CIDR, gateway=_GW, routes=st.lists(_ROUTE, max_size=3)
)
_RESULT_020 = st.builds(
    ResultV020, cni_version=st.sampled_from(["0.1.0", "0.2.0"]), ip4=_IP_020, ip6=_IP_020, dns=_DNS
)
_ANY_RESULT = st.one_of(_RESULT_100, _RESULT_040, _RESULT_020)


class TestNeverRaisesForeignErrors:
    @FUZZ
    @given(_JSON, _DEFAULTS)
    def test_any_json_text(self, value: object, default_version: str) -> None:
        """Any JSON text decodes to a Result or fails with a CNIError, never anything else."""
        result = _decode_or_cnierror(json.dumps(value), default_version)
        if result is not None:
            for version in ALL:
                with contextlib.suppress(CNIError):
                    result.convert_to(version).to_json()

    @FUZZ
    @given(st.dictionaries(st.one_of(_KEYS, st.text(max_size=6)), _JSON, max_size=8), _DEFAULTS)
    def test_any_mapping(self, value: dict[str, object], default_version: str) -> None:
        """Any already-decoded JSON object decodes to a Result or fails with a CNIError."""
        result = _decode_or_cnierror(value, default_version)
        if result is not None:
            result.to_json(indent=4)

    @FUZZ
    @given(st.binary(max_size=64), _DEFAULTS)
    def test_any_bytes(self, data: bytes, default_version: str) -> None:
        """Arbitrary bytes decode to a Result or fail with a CNIError."""
        _decode_or_cnierror(data, default_version)


class TestRoundTrips:
    @FUZZ
    @given(_ANY_RESULT)
    def test_json_round_trip(self, result: Result) -> None:
        """decode_result(r.to_json()) == r, compact and indented."""
        assert decode_result(result.to_json()) == result
        assert decode_result(result.to_json(indent=4)) == result

    @FUZZ
    @given(_ANY_RESULT)
    def test_object_round_trip(self, result: Result) -> None:
        """decode_result(r.to_object()) == r."""
        assert decode_result(result.to_object()) == result

    @FUZZ
    @given(_ANY_RESULT, st.sampled_from(ALL))
    def test_converted_results_round_trip(self, result: Result, version: str) -> None:
        """Whatever a conversion yields also survives its own JSON round trip."""
        try:
            converted = result.convert_to(version)
        except CNIError:
            return
        assert decode_result(converted.to_json()) == converted

    @FUZZ
    @given(_RESULT_100)
    def test_between_1_0_and_1_1(self, result: ResultV100) -> None:
        """1.0.0 <-> 1.1.0 keeps everything, 1.1-only fields included."""
        other = "1.0.0" if result.cni_version == "1.1.0" else "1.1.0"
        assert result.convert_to(other).convert_to(result.cni_version) == result

    @FUZZ
    @given(_RESULT_040, st.sampled_from(["0.3.0", "0.3.1", "0.4.0"]))
    def test_within_0_3_and_0_4(self, result: ResultV040, other: str) -> None:
        """0.3.0, 0.3.1 and 0.4.0 convert among themselves without loss."""
        assert result.convert_to(other).convert_to(result.cni_version) == result

    @FUZZ
    @given(_RESULT_020)
    def test_between_0_1_and_0_2(self, result: ResultV020) -> None:
        """0.1.0 <-> 0.2.0 keeps everything."""
        other = "0.1.0" if result.cni_version == "0.2.0" else "0.2.0"
        assert result.convert_to(other).convert_to(result.cni_version) == result

    @FUZZ
    @given(_RESULT_040, st.sampled_from(["1.0.0", "1.1.0"]))
    def test_040_through_1x(self, result: ResultV040, via: str) -> None:
        """0.4 -> 1.x -> 0.4 is lossless when each ip's version matches its address."""
        assert result.convert_to(via).convert_to(result.cni_version) == result

    @FUZZ
    @given(_RESULT_100_PLAIN, st.sampled_from(["0.3.0", "0.3.1", "0.4.0"]))
    def test_1x_through_040(self, result: ResultV100, via: str) -> None:
        """1.x -> 0.4 -> 1.x is lossless for results without 1.1-only interface fields."""
        assert result.convert_to(via).convert_to(result.cni_version) == result

    @FUZZ
    @given(st.one_of(_RESULT_100, _RESULT_040))
    def test_legacy_conversion_keeps_one_ip_per_family(self, result: Result) -> None:
        """0.3+ -> 0.2.0 keeps one address per family and bare routes, or fails with no IPs."""
        assert isinstance(result, ResultV100 | ResultV040)
        if not result.ips:
            with pytest.raises(CNIError, match=r"^cannot convert: no valid IP addresses$"):
                result.convert_to("0.2.0")
            return
        legacy = result.convert_to("0.2.0")
        assert isinstance(legacy, ResultV020)
        for ipc, family in ((legacy.ip4, IPv4Address), (legacy.ip6, IPv6Address)):
            if ipc is not None:
                assert ipc.ip is not None
                assert isinstance(ipc.ip.ip, family)
                assert all(r.mtu == 0 and r.table is None for r in ipc.routes)
