"""Typed 1.x results and go-cni's per-interface view of a container's networks."""

from __future__ import annotations

import ipaddress

import attrs
import pytest

import cnilib
from cnilib.results import (
    InterfaceInfo,
    IPInfo,
    ResultV020,
    ResultV040,
    ResultV100,
    as_v1,
    decode_result,
    interfaces_view,
)

BRIDGE_RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa"},
        {"name": "veth1", "mac": "bb:bb:bb:bb:bb:bb"},
        {"name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "sandbox": "/run/netns/c1"},
    ],
    "ips": [{"interface": 2, "address": "10.1.0.5/24", "gateway": "10.1.0.1"}],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {"nameservers": ["10.1.0.1"]},
}


def _attached(network: str, ifname: str, result: cnilib.Result | None) -> cnilib.Attached:
    return cnilib.Attached(network, ifname, result)


class TestAsV1:
    def test_v1_result_is_returned_as_is(self) -> None:
        """A 1.0.0 result comes back unchanged (same object, same version)."""
        result = decode_result(b'{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}')

        assert as_v1(result) is result
        assert result.as_v1() is result

    @pytest.mark.parametrize(
        "data",
        [
            b'{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.2/24"}]}',
            b'{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24"}}',
        ],
    )
    def test_older_results_are_converted(self, data: bytes) -> None:
        """0.4.0 and 0.2.0 results become ResultV100 at 1.1.0 with their addresses."""
        result = decode_result(data)
        assert not isinstance(result, ResultV100)

        v1 = as_v1(result)

        assert isinstance(v1, ResultV100)
        assert "1.1.0" == v1.cni_version
        assert [ipaddress.ip_interface("10.0.0.2/24")] == [ip.address for ip in v1.ips]

    def test_none_stays_none(self) -> None:
        """as_v1(None) is None, so an ADD without a result can be passed straight in."""
        assert as_v1(None) is None

    def test_unconvertible_version_raises(self) -> None:
        """A result claiming an unknown version raises ResultConversionError."""
        odd = attrs.evolve(ResultV040(cni_version="0.4.0"), cni_version="0.9.0")

        with pytest.raises(cnilib.ResultConversionError, match=r"0\.9\.0"):
            odd.as_v1()


class TestInterfacesView:
    def test_single_result(self) -> None:
        """Each interface with its MAC and sandbox; the address on the indexed interface."""
        view = interfaces_view(decode_result(BRIDGE_RESULT))

        assert ["eth0", "cni0", "veth1"] == list(view.interfaces)
        eth0 = view.interfaces["eth0"]
        assert "cc:cc:cc:cc:cc:cc" == eth0.mac
        assert "/run/netns/c1" == eth0.sandbox
        assert (
            IPInfo(ipaddress.ip_interface("10.1.0.5/24"), ipaddress.ip_address("10.1.0.1")),
        ) == eth0.ip_configs
        assert (ipaddress.ip_address("10.1.0.5"),) == view.ips("eth0")
        assert () == view.interfaces["cni0"].ip_configs
        assert ["0.0.0.0/0"] == [str(r.dst) for r in view.routes]
        assert (("10.1.0.1",),) == tuple(d.nameservers for d in view.dns)

    def test_address_without_index_goes_to_the_attached_interface(self) -> None:
        """An ips entry without "interface" belongs to the interface the network was added as."""
        result = decode_result(b'{"cniVersion":"1.0.0","ips":[{"address":"10.2.0.3/16"}]}')

        view = interfaces_view(result, ifname="net1")

        assert (ipaddress.ip_address("10.2.0.3"),) == view.ips("net1")
        assert ["net1"] == list(view.interfaces)

    def test_attached_interface_is_present_even_when_empty(self) -> None:
        """As in go-cni, the attached interface is in the view even if no result names it."""
        view = interfaces_view(None)

        assert {"eth0": InterfaceInfo()} == dict(view.interfaces)
        assert () == view.results

    def test_several_networks(self) -> None:
        """Results of setup_networks merge: each network's addresses on its own interface."""
        first = decode_result(BRIDGE_RESULT)
        second = decode_result(
            b'{"cniVersion":"0.4.0","ips":[{"version":"6","address":"fd00::5/64"}],'
            b'"dns":{"search":["svc"]}}'
        )

        view = interfaces_view([_attached("a", "eth0", first), _attached("b", "eth1", second)])

        assert (ipaddress.ip_address("10.1.0.5"),) == view.ips("eth0")
        assert (ipaddress.ip_address("fd00::5"),) == view.ips("eth1")
        assert 2 == len(view.dns)
        assert ("svc",) == view.dns[1].search
        assert all(isinstance(r, ResultV100) for r in view.results)
        assert 2 == len(view.results)

    def test_interface_in_several_results_keeps_all_addresses(self) -> None:
        """A shared host interface named by two results keeps both results' addresses."""
        one = decode_result(
            b'{"cniVersion":"1.0.0","interfaces":[{"name":"br0","mac":"aa:aa:aa:aa:aa:aa"}],'
            b'"ips":[{"interface":0,"address":"10.0.0.1/24"}]}'
        )
        two = decode_result(
            b'{"cniVersion":"1.0.0","interfaces":[{"name":"br0"}],'
            b'"ips":[{"interface":0,"address":"10.0.1.1/24"}]}'
        )

        view = interfaces_view([_attached("a", "eth0", one), _attached("b", "eth1", two)])

        assert 2 == len(view.interfaces["br0"].ip_configs)
        assert "aa:aa:aa:aa:aa:aa" == view.interfaces["br0"].mac

    @pytest.mark.parametrize("index", [1, 5])
    def test_index_outside_the_interfaces_is_refused(self, index: int) -> None:
        """An interface index at or past the number of interfaces is a ResultDecodeError."""
        result = decode_result(
            b'{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],'
            b'"ips":[{"interface":%d,"address":"10.0.0.2/24"}]}' % index
        )

        with pytest.raises(cnilib.ResultDecodeError, match=f"interface index {index}"):
            interfaces_view(result)

    def test_legacy_result(self) -> None:
        """A 0.2.0 result's ip4 appears on the attached interface."""
        view = interfaces_view(ResultV020(cni_version="0.2.0").as_v1(), ifname="eth0")
        assert () == view.ips("eth0")

        result = decode_result(b'{"cniVersion":"0.2.0","ip4":{"ip":"10.9.0.2/24"}}')
        assert (ipaddress.ip_address("10.9.0.2"),) == interfaces_view(result).ips("eth0")
