"""A DHCPACK's options as the dhcp plugin's result and lease timers, against Go's
daemon (``Allocate``/``Routes``/``commit``) and its observed output."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from cnilib._json import go_dumps
from cnilib.errors import ErrorCode
from cnilib.plugins.ipam.dhcp._options import (
    DEFAULT_LEASE_TIME,
    SCOPE_LINK,
    DhcpOptionError,
    LeaseTimes,
    classless_routes,
    domain_search,
    lease_dns,
    lease_result,
    lease_routes,
    lease_times,
    static_routes,
    subnet_prefix,
)
from cnilib.results import DNS, Route


def ip(text: str) -> bytes:
    return IPv4Address(text).packed


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def as_json(options: dict[int, bytes], version: str = "1.0.0", **kw: Any) -> str:
    return go_dumps(lease_result("192.0.2.105", options, **kw).convert_to(version).to_object())


BASIC = {1: ip("255.255.255.0"), 3: ip("192.0.2.1")}

# dnsmasq --dhcp-option=121,10.99.0.0/16,192.0.2.254,0.0.0.0/0,192.0.2.1,192.0.2.128/25,0.0.0.0
DNSMASQ_121 = (
    bytes([16, 10, 99])
    + ip("192.0.2.254")
    + bytes([0])
    + ip("192.0.2.1")
    + bytes([25, 192, 0, 2, 128])
    + ip("0.0.0.0")
)
# dnsmasq --dhcp-option=33,10.98.0.0,192.0.2.253
DNSMASQ_33 = ip("10.98.0.0") + ip("192.0.2.253")


def test_basic_lease_is_gos_observed_result() -> None:
    # Go 1.1.1 against dnsmasq, cniVersion 1.0.0 and 0.4.0: byte for byte.
    assert as_json(BASIC) == (
        '{"cniVersion":"1.0.0","ips":[{"address":"192.0.2.105/24","gateway":"192.0.2.1"}],'
        '"routes":[{"dst":"0.0.0.0/0","gw":"192.0.2.1"}]}'
    )
    assert as_json(BASIC, "0.4.0") == (
        '{"cniVersion":"0.4.0","dns":{},"ips":[{"address":"192.0.2.105/24","gateway":"192.0.2.1",'
        '"version":"4"}],"routes":[{"dst":"0.0.0.0/0","gw":"192.0.2.1"}]}'
    )


def test_result_has_no_interface_and_no_version() -> None:
    result = lease_result(IPv4Address("192.0.2.105"), BASIC)
    assert result.cni_version == ""
    assert result.interfaces == ()
    assert result.ips[0].interface is None
    assert result.ips[0].address == IPv4Interface("192.0.2.105/24")


def test_option_121_replaces_router_and_33_with_link_scope_on_link() -> None:
    # Go's observed routes (1.1.1), plus latest Go's scope 253 on the on-link one.
    options = {**BASIC, 121: DNSMASQ_121, 33: DNSMASQ_33}
    assert as_json(options) == (
        '{"cniVersion":"1.0.0","ips":[{"address":"192.0.2.105/24","gateway":"192.0.2.1"}],'
        '"routes":[{"dst":"10.99.0.0/16","gw":"192.0.2.254"},{"dst":"0.0.0.0/0","gw":"192.0.2.1"},'
        '{"dst":"192.0.2.128/25","gw":"0.0.0.0","scope":253}]}'
    )


def test_option_33_then_default_route() -> None:
    assert as_json({**BASIC, 33: DNSMASQ_33}) == (
        '{"cniVersion":"1.0.0","ips":[{"address":"192.0.2.105/24","gateway":"192.0.2.1"}],'
        '"routes":[{"dst":"10.98.0.0/8","gw":"192.0.2.253"},{"dst":"0.0.0.0/0","gw":"192.0.2.1"}]}'
    )


@pytest.mark.parametrize(
    ("dest", "cidr"),
    [
        ("10.98.0.0", "10.98.0.0/8"),
        ("0.0.0.0", "0.0.0.0/8"),
        ("127.1.2.3", "127.1.2.3/8"),
        ("128.0.0.1", "128.0.0.1/16"),
        ("172.16.5.0", "172.16.5.0/16"),
        ("191.255.1.1", "191.255.1.1/16"),
        ("192.168.7.9", "192.168.7.9/24"),
        ("224.1.1.1", "224.1.1.1/24"),
        ("255.255.255.255", "255.255.255.255/24"),
    ],
)
def test_option_33_is_classful_and_not_masked(dest: str, cidr: str) -> None:
    (route,) = static_routes(ip(dest) + ip("192.0.2.9"))
    assert route == Route(dst=IPv4Interface(cidr), gw=IPv4Address("192.0.2.9"))
    assert str(route.dst) == cidr  # host bits kept, as Go prints them


def test_no_router_no_default_route_and_no_gateway() -> None:
    result = lease_result("192.0.2.105", {1: ip("255.255.0.0")})
    assert result.ips[0].gateway is None
    assert result.routes == ()
    assert lease_routes({33: DNSMASQ_33}) == (
        Route(dst=IPv4Interface("10.98.0.0/8"), gw=IPv4Address("192.0.2.253")),
    )


def test_first_router_is_the_gateway() -> None:
    result = lease_result(
        "192.0.2.105", {1: ip("255.255.255.0"), 3: ip("192.0.2.2") + ip("192.0.2.3")}
    )
    assert result.ips[0].gateway == IPv4Address("192.0.2.2")
    assert [r.gw for r in result.routes] == [IPv4Address("192.0.2.2")]


def test_gateway_is_the_router_even_with_121() -> None:
    result = lease_result("192.0.2.105", {**BASIC, 121: bytes([8, 10]) + ip("192.0.2.254")})
    assert result.ips[0].gateway == IPv4Address("192.0.2.1")
    assert result.routes == (Route(dst=IPv4Interface("10.0.0.0/8"), gw=IPv4Address("192.0.2.254")),)


def test_priority_on_every_route() -> None:
    routes = lease_routes({**BASIC, 121: DNSMASQ_121}, priority=100)
    assert [r.priority for r in routes] == [100, 100, 100]
    assert routes[2].scope == SCOPE_LINK
    assert [r.priority for r in lease_routes({**BASIC, 33: DNSMASQ_33}, priority=7)] == [7, 7]
    assert as_json(BASIC, priority=5).endswith(
        '"routes":[{"dst":"0.0.0.0/0","gw":"192.0.2.1","priority":5}]}'
    )


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # RFC 3442's examples of the destination encoding.
        (bytes([0]) + ip("10.0.0.1"), [("0.0.0.0/0", "10.0.0.1")]),
        (bytes([8, 10]) + ip("10.0.0.1"), [("10.0.0.0/8", "10.0.0.1")]),
        (bytes([9, 10, 0]) + ip("10.0.0.1"), [("10.0.0.0/9", "10.0.0.1")]),
        (bytes([24, 10, 17, 0]) + ip("10.0.0.1"), [("10.17.0.0/24", "10.0.0.1")]),
        (bytes([25, 10, 229, 0, 128]) + ip("10.0.0.1"), [("10.229.0.128/25", "10.0.0.1")]),
        (bytes([32, 10, 1, 2, 3]) + ip("10.0.0.1"), [("10.1.2.3/32", "10.0.0.1")]),
        # Host bits inside a significant octet are kept, as Go copies them.
        (bytes([9, 10, 255]) + ip("10.0.0.1"), [("10.255.0.0/9", "10.0.0.1")]),
        (b"", []),
    ],
)
def test_rfc3442_vectors(payload: bytes, expected: list[tuple[str, str]]) -> None:
    routes = classless_routes(payload)
    assert [(str(r.dst), str(r.gw)) for r in routes] == expected
    assert all(r.scope is None for r in routes)


def test_rfc3442_on_link_route() -> None:
    (route,) = classless_routes(bytes([24, 192, 0, 2]) + ip("0.0.0.0"))
    assert route == Route(dst=IPv4Interface("192.0.2.0/24"), gw=IPv4Address("0.0.0.0"), scope=253)


def test_empty_121_falls_back_to_router() -> None:
    assert lease_routes({**BASIC, 121: b""}) == (
        Route(dst=IPv4Interface("0.0.0.0/0"), gw=IPv4Address("192.0.2.1")),
    )


def test_subnet_mask() -> None:
    assert subnet_prefix({1: ip("255.255.255.0")}) == 24
    assert subnet_prefix({1: ip("0.0.0.0")}) == 0
    assert subnet_prefix({1: ip("255.255.255.255")}) == 32
    assert subnet_prefix({1: ip("255.128.0.0")}) == 9


@pytest.mark.parametrize("options", [{}, {1: b""}, {3: ip("192.0.2.1")}])
def test_missing_subnet_mask_is_gos_error(options: dict[int, bytes]) -> None:
    with pytest.raises(DhcpOptionError) as info:
        lease_result("192.0.2.105", options)
    assert info.value.msg == "DHCP option Subnet Mask not found in DHCPACK"
    assert info.value.code == ErrorCode.INTERNAL


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({1: b"\xff\xff\xff"}, 1),
        ({1: ip("255.0.255.0")}, 1),
        ({1: ip("255.255.255.0") + b"\x00"}, 1),
        ({**BASIC, 3: b"\xc0\x00\x02"}, 3),
        ({**BASIC, 6: b"\x01\x02\x03\x04\x05"}, 6),
        ({**BASIC, 33: DNSMASQ_33 + b"\x01"}, 33),
        ({**BASIC, 33: DNSMASQ_33[:4]}, 33),
        ({**BASIC, 121: bytes([33, 10, 0, 0, 0, 0]) + ip("10.0.0.1")}, 121),
        ({**BASIC, 121: bytes([24, 10, 0])}, 121),
        ({**BASIC, 121: bytes([24, 10, 0, 0, 10, 0, 0])}, 121),
        ({**BASIC, 121: DNSMASQ_121 + bytes([8])}, 121),
        ({**BASIC, 15: b"exa mple.com"}, 15),
        ({**BASIC, 15: b"example..com"}, 15),
        ({**BASIC, 15: b"evil\nnameserver 1.2.3.4"}, 15),
        ({**BASIC, 119: b"\x07example"}, 119),
    ],
)
def test_malformed_options_name_the_option(options: dict[int, bytes], code: int) -> None:
    with pytest.raises(DhcpOptionError) as info:
        lease_result("192.0.2.105", options)
    assert info.value.msg.startswith(f"DHCP option {code} (")
    assert "is malformed" in info.value.msg


def test_bad_yiaddr() -> None:
    with pytest.raises(DhcpOptionError, match="yiaddr"):
        lease_result("nope", BASIC)


def test_dns_from_options_6_15_119() -> None:
    search = b"\x07example\x03com\x00\x03sub\xc0\x00"
    dns = lease_dns({6: ip("192.0.2.53") + ip("192.0.2.54"), 15: b"example.com\x00", 119: search})
    assert dns == DNS(
        nameservers=("192.0.2.53", "192.0.2.54"),
        domain="example.com",
        search=("example.com", "sub.example.com"),
    )
    assert lease_dns({}) == DNS()
    assert lease_dns({15: b"example.com."}).domain == "example.com."


def test_rfc1035_compression() -> None:
    # RFC 3397's example: eng.apple.com, marketing.apple.com.
    payload = b"\x03eng\x05apple\x03com\x00\x09marketing\xc0\x04"
    assert domain_search(payload) == ("eng.apple.com", "marketing.apple.com")
    # A pointer to a pointer, each further back.
    chained = b"\x03com\x00\x05apple\xc0\x00\x03www\xc0\x05"
    assert domain_search(chained) == ("com", "apple.com", "www.apple.com")
    assert domain_search(b"") == ()
    assert domain_search(b"\x00") == ()


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc0\x00",  # points at itself
        b"\x01a\xc0\x00",  # points at its own start: a loop
        b"\x01a\x00\x01b\xc0\x05",  # points forwards
        b"\x01a\x00\xc0",  # truncated pointer
        b"\x05ab",  # truncated label
        b"\x41abc\x00",  # reserved label type 01
        b"\x81abc\x00",  # reserved label type 10
        b"\x03a.b\x00",  # a dot inside a label
        b"\x3f"
        + b"a" * 63
        + b"\x3f"
        + b"b" * 63
        + b"\x3f"
        + b"c" * 63
        + b"\x3f"
        + b"d" * 63
        + b"\x00",
    ],
)
def test_rfc1035_malformed(payload: bytes) -> None:
    with pytest.raises(DhcpOptionError, match=r"^DHCP option 119 \(domain search\) is malformed"):
        domain_search(payload)


def test_lease_times_defaults() -> None:
    # Latest Go: 60 minutes without option 51; T2 85 %, T1 50 %.
    assert lease_times({}) == LeaseTimes(DEFAULT_LEASE_TIME, 1800.0, 3060.0)
    assert lease_times({51: u32(120)}) == LeaseTimes(120.0, 60.0, 102.0)
    assert lease_times({51: u32(61)}) == LeaseTimes(61.0, 30.5, 51.85)


def test_lease_times_from_options() -> None:
    # dnsmasq --dhcp-option=option:T1,4 --dhcp-option=option:T2,8 (lease 2m).
    assert lease_times({51: u32(120), 58: u32(4), 59: u32(8)}) == LeaseTimes(120.0, 4.0, 8.0)
    assert lease_times({51: u32(0xFFFFFFFF)}).lease == 4294967295.0


def test_lease_times_out_of_order_follow_go_111() -> None:
    # T2 past the lease: 85 %; T1 past T2: 50 %.
    assert lease_times({51: u32(100), 59: u32(200), 58: u32(10)}) == LeaseTimes(100.0, 10.0, 85.0)
    assert lease_times({51: u32(100), 58: u32(90), 59: u32(80)}) == LeaseTimes(100.0, 50.0, 80.0)
    # 50 % would still be past a small T2: T1 is never after T2.
    assert lease_times({51: u32(100), 59: u32(10)}) == LeaseTimes(100.0, 10.0, 10.0)


@pytest.mark.parametrize("code", [51, 58, 59])
def test_lease_times_malformed(code: int) -> None:
    with pytest.raises(DhcpOptionError, match=rf"^DHCP option {code} "):
        lease_times({code: b"\x00\x01"})


_CODES = st.sampled_from([1, 3, 6, 15, 33, 51, 58, 59, 119, 121])


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(_CODES, st.binary(max_size=64), max_size=6))
def test_arbitrary_options_raise_only_the_modules_error(options: dict[int, bytes]) -> None:
    with contextlib.suppress(DhcpOptionError):
        lease_result("192.0.2.105", options, priority=1)
    try:
        times = lease_times(options)
    except DhcpOptionError:
        return
    assert 0 <= times.t1 <= times.t2 <= times.lease


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=96))
def test_arbitrary_search_lists_raise_only_the_modules_error(payload: bytes) -> None:
    try:
        names = domain_search(payload)
    except DhcpOptionError:
        return
    assert all(len(name) <= 254 for name in names)


def test_rfc1035_pointer_loops_end_at_the_first_jump() -> None:
    # A pointer back into the name being read is a loop: refused at once, not
    # after the chase has gathered 255 bytes of labels.
    with pytest.raises(DhcpOptionError, match="does not point backwards"):
        domain_search(b"\x01a\xc0\x00")
    with pytest.raises(DhcpOptionError, match="does not point backwards"):
        domain_search(b"\x01x\x00\x01a\x01b\xc0\x03")
