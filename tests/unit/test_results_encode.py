"""Encoding results as libcni prints them, canonical IP forms, and conversion corner cases."""

from __future__ import annotations

import json
import re
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

import pytest

from cnilib.errors import ResultConversionError, ResultDecodeError
from cnilib.results import (
    DNS,
    Interface,
    IPConfig,
    ResultV020,
    ResultV040,
    ResultV100,
    Route,
    convert_result,
    decode_result,
    v020,
    v040,
)
from cnilib.results._convert import CONVERTERS
from cnilib.spec import parse_version


def _gateway(text: str) -> object:
    result = decode_result({"cniVersion": "1.0.0", "ips": [{"address": "::/0", "gateway": text}]})
    return result.to_object()["ips"][0]["gateway"]  # type: ignore[call-overload,index]


def _address(text: str) -> object:
    result = decode_result({"cniVersion": "0.4.0", "ips": [{"address": text}]})
    return result.to_object()["ips"][0]["address"]  # type: ignore[call-overload,index]


class TestCanonicalIP:
    @pytest.mark.parametrize(
        ("given", "printed"),
        [
            ("10.0.0.1", "10.0.0.1"),
            ("::FFFF:10.0.0.1", "10.0.0.1"),
            ("2001:DB8::1", "2001:db8::1"),
            ("2001:0db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
            ("0:0:1:0:0:0:1:0", "0:0:1::1:0"),
            ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
            ("::", "::"),
            ("::1.2.3.4", "::102:304"),
        ],
    )
    def test_gateway_prints_like_go(self, given: str, printed: str) -> None:
        """Gateways re-print as Go's net.IP.String(): lower-case, RFC 5952, mapped v4 dotted."""
        assert _gateway(given) == printed

    @pytest.mark.parametrize(
        "bad", ["01.2.3.4", "1.2.3", "256.0.0.1", "fe80::1%eth0", "1.2.3.4/24", " 1.2.3.4", "::g"]
    )
    def test_invalid_gateway(self, bad: str) -> None:
        """What Go's net.ParseIP rejects fails with Go's text."""
        with pytest.raises(ResultDecodeError) as info:
            _gateway(bad)
        assert str(info.value) == f"$.ips[0].gateway: invalid IP address: {bad}"

    @pytest.mark.parametrize(
        ("given", "printed"),
        [
            ("1.2.3.30/24", "1.2.3.30/24"),
            ("1.2.3.4/024", "1.2.3.4/24"),
            ("2001:DB8::5/64", "2001:db8::5/64"),
            ("::ffff:1.2.3.4/120", "1.2.3.4/24"),
            ("::ffff:1.2.3.4/64", "1.2.3.4/0"),
            ("0.0.0.0/0", "0.0.0.0/0"),
        ],
    )
    def test_cidr_keeps_host_bits(self, given: str, printed: str) -> None:
        """Addresses keep their host bits; a mapped IPv4 CIDR prints as IPv4 like Go's IPNet."""
        assert _address(given) == printed

    @pytest.mark.parametrize(
        "bad",
        ["1.2.3.4", "1.2.3.4/33", "1.2.3.4/", "1.2.3.4/+8", "1.2.3.4/ 8", "::1/129",
         "fe80::1%eth0/64", "1.2.3.4/24/1", "", "1.2.3.4/\u0668", "01.2.3.4/8"],
    )  # fmt: skip
    def test_invalid_cidr(self, bad: str) -> None:
        """What Go's net.ParseCIDR rejects fails with Go's text."""
        with pytest.raises(ResultDecodeError) as info:
            _address(bad)
        assert str(info.value) == f"$.ips[0].address: invalid CIDR address: {bad}"

    def test_constructed_mapped_addresses_print_as_ipv4(self) -> None:
        """Models built by hand with IPv4-mapped IPv6 values still print Go's way."""
        result = ResultV100(
            cni_version="1.0.0",
            ips=[
                IPConfig(
                    address=IPv6Interface("::ffff:10.0.0.2/104"),
                    gateway=IPv6Address("::ffff:10.0.0.1"),
                )
            ],
        )
        assert result.to_object()["ips"] == [{"address": "10.0.0.2/8", "gateway": "10.0.0.1"}]
        assert result.convert_to("0.4.0").to_object()["ips"] == [
            {"version": "4", "address": "10.0.0.2/8", "gateway": "10.0.0.1"}
        ]


class TestEncode:
    def test_1x_omits_empty_collections_and_dns(self) -> None:
        """A bare 1.x result is just its version: no interfaces, ips, routes or dns."""
        assert ResultV100(cni_version="1.1.0").to_json() == '{"cniVersion":"1.1.0"}'

    @pytest.mark.parametrize("cls", [ResultV040, ResultV020])
    def test_legacy_results_always_emit_dns(self, cls: type[ResultV040 | ResultV020]) -> None:
        """0.4.0-family and 0.2.0-family results always write "dns":{}."""
        assert cls(cni_version="0.3.0").to_json() == '{"cniVersion":"0.3.0","dns":{}}'

    def test_empty_version_is_omitted(self) -> None:
        """An empty cniVersion is left out (omitempty)."""
        assert ResultV040().to_json() == '{"dns":{}}'

    def test_1x_keys_are_sorted_at_every_level(self) -> None:
        """1.x output goes through Go's map re-marshal, so keys come out sorted."""
        result = ResultV100(
            cni_version="1.1.0",
            interfaces=[Interface(name="eth0", sandbox="/ns", mac="aa", pci_id="p", mtu=1)],
            dns=DNS(search=["s"], nameservers=["n"]),
        )
        assert result.to_json() == (
            '{"cniVersion":"1.1.0","dns":{"nameservers":["n"],"search":["s"]},'
            '"interfaces":[{"mac":"aa","mtu":1,"name":"eth0","pciID":"p","sandbox":"/ns"}]}'
        )

    def test_zero_values_and_pointers(self) -> None:
        """Index 0 and table/scope 0 are written; zero mtu/advmss/priority and None are not."""
        route = Route(dst=IPv4Interface("10.0.0.0/8"), table=0, scope=0, mtu=0, priority=0)
        result = ResultV100(
            cni_version="1.0.0",
            interfaces=[Interface()],
            ips=[IPConfig(address=IPv4Interface("10.0.0.2/8"), interface=0)],
            routes=[route, Route(dst=IPv4Interface("0.0.0.0/0"), adv_mss=1460)],
        )
        assert result.to_object() == {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": ""}],
            "ips": [{"address": "10.0.0.2/8", "interface": 0}],
            "routes": [
                {"dst": "10.0.0.0/8", "scope": 0, "table": 0},
                {"advmss": 1460, "dst": "0.0.0.0/0"},
            ],
        }

    def test_040_ip_version_always_written(self) -> None:
        """In 0.3/0.4 every ip carries "version", even an empty one; 1.x has none."""
        ip = v040.IPConfig(address=IPv4Interface("10.0.0.2/8"))
        assert ResultV040(cni_version="0.4.0", ips=[ip]).to_json() == (
            '{"cniVersion":"0.4.0","ips":[{"version":"","address":"10.0.0.2/8"}],"dns":{}}'
        )

    def test_print_format(self) -> None:
        """indent=4 reproduces Go's Print() (MarshalIndent with four spaces)."""
        ip4 = v020.IPConfig(ip=IPv4Interface("10.0.0.2/8"), gateway=IPv4Address("10.0.0.1"))
        result = ResultV020(cni_version="0.2.0", ip4=ip4)
        assert result.to_json(indent=4) == (
            "{\n"
            '    "cniVersion": "0.2.0",\n'
            '    "ip4": {\n'
            '        "ip": "10.0.0.2/8",\n'
            '        "gateway": "10.0.0.1"\n'
            "    },\n"
            '    "dns": {}\n'
            "}"
        )

    def test_html_characters_are_escaped(self) -> None:
        """Like Go's json.Marshal, <, > and & are written as \\u escapes."""
        result = ResultV100(cni_version="1.0.0", dns=DNS(domain="a<b>&c"))
        assert '"domain":"a\\u003cb\\u003e\\u0026c"' in result.to_json()

    def test_1x_numbers_pass_through_float64(self) -> None:
        """Go's 1.x re-marshal turns numbers into float64, so huge ints lose precision."""
        result = ResultV100(
            cni_version="1.1.0", routes=[Route(dst=IPv4Interface("0.0.0.0/0"), table=2**53 + 1)]
        )
        assert json.loads(result.to_json())["routes"][0]["table"] == 2**53

    def test_models_are_frozen_values(self) -> None:
        """Models take any iterable, hold tuples, compare by value and are hashable."""
        a = ResultV100(cni_version="1.0.0", ips=[IPConfig(address=IPv4Interface("10.0.0.2/8"))])
        b = ResultV100(cni_version="1.0.0", ips=(IPConfig(address=IPv4Interface("10.0.0.2/8")),))
        assert a == b
        assert hash(a) == hash(b)
        assert isinstance(a.ips, tuple)
        with pytest.raises(AttributeError):
            a.cni_version = "1.1.0"  # type: ignore[misc]

    def test_dns_is_empty(self) -> None:
        """DNS.is_empty matches Go: empty only when every field is empty."""
        assert DNS().is_empty()
        assert not DNS(nameservers=[""]).is_empty()
        assert not DNS(options=["ndots:1"]).is_empty()

    def test_dns_rejects_a_bare_string(self) -> None:
        """DNS lists refuse a plain string rather than splitting it into characters."""
        with pytest.raises(TypeError):
            DNS(nameservers="8.8.8.8")


class TestMissingAddresses:
    def test_missing_1x_address_converts_as_ipv6(self) -> None:
        """A missing address has no IPv4 form (Go To4() is nil), so 1.x -> 0.4 calls it "6"."""
        result = decode_result('{"cniVersion":"1.0.0","ips":[{}]}')
        assert result.convert_to("0.4.0").to_object()["ips"] == [
            {"version": "6", "address": "<nil>"}
        ]

    def test_route_without_dst_files_under_ip6(self) -> None:
        """-> 0.2 files a route with no dst under ip6, as its dst is not IPv4."""
        result = decode_result(
            '{"cniVersion":"0.4.0","ips":[{"version":"6","address":"fd00::2/64"}],'
            '"routes":[{"gw":"fd00::1"}]}'
        )
        assert result.convert_to("0.2.0").to_object()["ip6"] == {
            "ip": "fd00::2/64",
            "routes": [{"dst": "<nil>", "gw": "fd00::1"}],
        }


class TestConvert:
    def test_same_version_returns_the_same_object(self) -> None:
        """Converting to the result's own version returns it unchanged (no copy)."""
        result = ResultV040(cni_version="0.3.1")
        assert result.convert_to("0.3.1") is result

    @pytest.mark.parametrize(
        ("result", "highest"),
        [(ResultV100(), "1.1.0"), (ResultV040(), "0.4.0"), (ResultV020(), "0.2.0")],
    )
    def test_empty_version_is_the_family_highest(
        self, result: ResultV100 | ResultV040 | ResultV020, highest: str
    ) -> None:
        """A result without cniVersion is taken as its family's highest version."""
        assert result.convert_to(highest).cni_version == highest
        with pytest.raises(
            ResultConversionError, match=rf"version {re.escape(highest)} to 9\.9\.9$"
        ):
            result.convert_to("9.9.9")

    def test_spec_version_target_uses_its_text(self) -> None:
        """A SpecVersion target converts by its text, so "1" is not "1.0.0"."""
        result = ResultV040(cni_version="0.4.0")
        assert result.convert_to(parse_version("1.0.0")).cni_version == "1.0.0"
        with pytest.raises(ResultConversionError, match=r"version 0\.4\.0 to 1$"):
            result.convert_to(parse_version("1"))

    def test_version_outside_the_class_family_has_no_converter(self) -> None:
        """A hand-built result labelled with another family's version cannot convert."""
        with pytest.raises(ResultConversionError) as info:
            convert_result(ResultV100(cni_version="0.4.0"), "0.2.0")
        assert str(info.value) == "no converter for CNI result version 0.4.0 to 0.2.0"
        assert (info.value.from_version, info.value.to_version) == ("0.4.0", "0.2.0")

    def test_conversion_drops_1_1_interface_fields(self) -> None:
        """1.x -> 0.4 -> 1.x loses interface mtu, socketPath and pciID, keeps the rest."""
        iface = Interface(name="eth0", mac="m", sandbox="s", mtu=9000, socket_path="p", pci_id="x")
        back = ResultV100(cni_version="1.1.0", interfaces=[iface]).convert_to("0.4.0")
        assert back.convert_to("1.1.0") == ResultV100(
            cni_version="1.1.0", interfaces=[Interface(name="eth0", mac="m", sandbox="s")]
        )

    def test_table_is_explicit_and_complete(self) -> None:
        """The converter table is a literal covering all nine family pairs."""
        families = ("0.2", "0.4", "1.x")
        assert set(CONVERTERS) == {(a, b) for a in families for b in families}
