"""cnilib's static IPAM plugin, called directly (no process, no Go binary)."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from cnilib.errors import ErrorCode, PluginError
from cnilib.invoke import Command
from cnilib.plugins._base import PluginRequest
from cnilib.plugins.ipam.static import Static
from cnilib.results import DNS, ResultV100
from tests.unit._guards import NO_SUCH_HOST

JSON = dict[str, Any]


def request(
    conf: JSON, command: Command = Command.ADD, args: tuple[tuple[str, str], ...] = ()
) -> PluginRequest:
    """A PluginRequest as the skel would build it."""
    return PluginRequest(
        command=command,
        container_id="c1",
        netns="/x",
        ifname="eth0",
        args=args,
        path=(),
        config=conf,
        stdin=json.dumps(conf).encode(),
        host_netns=NO_SUCH_HOST,
    )


def static(version: str = "1.0.0", **ipam: Any) -> JSON:
    """A static network config."""
    return {"cniVersion": version, "name": "net", "ipam": {"type": "static", **ipam}}


def ips(result: ResultV100) -> list[tuple[str, str | None]]:
    """(address, gateway) of each result IP."""
    return [(str(ip.address), None if ip.gateway is None else str(ip.gateway)) for ip in result.ips]


def error_of(conf: JSON, command: Command = Command.ADD, **kw: Any) -> PluginError:
    """The PluginError the plugin raises."""
    plugin = Static()
    method = plugin.add if command is Command.ADD else plugin.check
    with pytest.raises(PluginError) as info:
        method(request(conf, command, **kw))
    return info.value


class TestAdd:
    def test_addresses_routes_dns(self) -> None:
        """The configured addresses (host bits kept), routes and DNS are the result."""
        conf = static(
            addresses=[
                {"address": "10.10.0.1/24", "gateway": "10.10.0.254"},
                {"address": "3ffe:ffff:0:01ff::1/64"},
            ],
            routes=[{"dst": "0.0.0.0/0"}],
            dns={"nameservers": ["8.8.8.8"], "domain": "ex.com", "search": ["ex.com"]},
        )
        result = Static().add(request(conf))

        assert [("10.10.0.1/24", "10.10.0.254"), ("3ffe:ffff:0:1ff::1/64", None)] == ips(result)
        assert [ipaddress.ip_interface("0.0.0.0/0")] == [r.dst for r in result.routes]
        assert DNS(nameservers=["8.8.8.8"], domain="ex.com", search=["ex.com"]) == result.dns

    def test_no_addresses(self) -> None:
        """An empty ipam gives an empty result."""
        assert () == Static().add(request(static())).ips

    def test_cni_args_append_with_gateways(self) -> None:
        """IP= appends CIDRs; GATEWAY= sets the gateway of the CNI_ARGS addresses holding it."""
        conf = static(addresses=[{"address": "10.10.0.1/24"}])
        args = (("IP", "10.10.0.2/24, fd00::2/64"), ("GATEWAY", "10.10.0.9,fd00::1,10.10.0.1"))

        assert [
            ("10.10.0.1/24", None),
            ("10.10.0.2/24", "10.10.0.1"),
            ("fd00::2/64", "fd00::1"),
        ] == ips(Static().add(request(conf, args=args)))

    @pytest.mark.parametrize("where", ["args", "runtimeConfig"])
    def test_ips_replace_everything(self, where: str) -> None:
        """args.cni.ips and runtimeConfig.ips replace configured and CNI_ARGS addresses."""
        conf = static(addresses=[{"address": "not-parsed"}])
        ips_list = ["10.0.0.3/8", "fd00::3/64"]
        conf |= (
            {"args": {"cni": {"ips": ips_list}}}
            if where == "args"
            else {"runtimeConfig": {"ips": ips_list}}
        )

        result = Static().add(request(conf, args=(("IP", "10.1.1.1/24"),)))
        assert [("10.0.0.3/8", None), ("fd00::3/64", None)] == ips(result)

    def test_runtime_config_wins_over_args(self) -> None:
        """The ips capability is applied after args.cni.ips."""
        conf = static() | {
            "args": {"cni": {"ips": ["10.0.0.3/8"]}},
            "runtimeConfig": {"ips": ["10.0.0.4/8"]},
        }

        assert [("10.0.0.4/8", None)] == ips(Static().add(request(conf)))


class TestErrors:
    @pytest.mark.parametrize(
        ("conf", "args", "message", "code"),
        [
            (
                static(addresses=[{"address": "10.0.0.1"}]),
                (),
                "the 'address' field is expected to be in CIDR notation, got: '10.0.0.1'",
                7,
            ),
            (
                static(),
                (("IP", "10.0.0.1/24,nope"),),
                "the 'ip' field is expected to be in CIDR notation, got: 'nope'",
                4,
            ),
            (
                static(),
                (("IP", "10.0.0.1/24"), ("GATEWAY", " x")),
                "invalid gateway address:  x",
                4,
            ),
            (static(), (("FOO", "1"),), 'ARGS: unknown args ["FOO=1"]', 4),
            (
                static() | {"runtimeConfig": {"ips": ["10.0.0.4"]}},
                (),
                "an entry in the 'ips' field is NOT in CIDR notation, got: '10.0.0.4'",
                7,
            ),
            (
                static() | {"args": {"cni": {"ips": [4]}}},
                (),
                "$.args.cni.ips[0]: expected a CIDR string",
                7,
            ),
            (
                static(addresses=[{"address": "10.0.0.1/24", "gateway": "nope"}]),
                (),
                "$.ipam.addresses[0].gateway: invalid IP address: nope",
                7,
            ),
            (
                static(addresses=["10.0.0.1/24"]),
                (),
                "$.ipam.addresses[0]: expected an address object",
                7,
            ),
            (
                static(dns={"nameservers": "x"}),
                (),
                "$.ipam.dns.nameservers: json: cannot unmarshal string into Go value of type "
                "[]string",
                7,
            ),
            (
                static("0.2.0", addresses=[{"address": "10.0.0.1/24"}, {"address": "10.0.0.2/24"}]),
                (),
                "CNI version 0.2.0 does not support more than 1 address per family",
                7,
            ),
            ({"cniVersion": "1.0.0", "name": "net"}, (), "IPAM config missing 'ipam' key", 7),
        ],
    )
    def test_errors(self, conf: JSON, args: Any, message: str, code: int) -> None:
        """Go's texts; code 7 for the config, 4 for CNI_ARGS."""
        err = error_of(conf, args=args)

        assert (message, code) == (err.msg, err.code)

    def test_one_address_per_family_is_fine_before_0_3_0(self) -> None:
        """0.2.0 accepts one IPv4 and one IPv6 address."""
        conf = static("0.2.0", addresses=[{"address": "10.0.0.1/24"}, {"address": "fd00::1/64"}])

        assert 2 == len(Static().add(request(conf)).ips)

    def test_unparsable_version_with_two_addresses(self) -> None:
        """An unparsable cniVersion is not >= 0.3.0."""
        conf = static("x", addresses=[{"address": "10.0.0.1/24"}, {"address": "10.0.0.2/24"}])

        assert "CNI version x does not support" in error_of(conf).msg


class TestCheck:
    CONF = static(
        addresses=[
            {"address": "10.10.0.1/24", "gateway": "10.10.0.254"},
            {"address": "10.10.0.2/24"},
        ]
    )

    @pytest.mark.parametrize(
        "prev_ips",
        [
            [{"address": "10.10.0.1/24", "gateway": "10.10.0.254"}],
            [{"address": "10.10.0.2/24", "gateway": "10.10.0.77"}],
            [{"address": "10.10.0.7/24"}],
            [],
        ],
    )
    def test_matching_or_absent_addresses_pass(self, prev_ips: list[JSON]) -> None:
        """Matching gateways, unconfigured gateways and missing addresses are all fine (Go)."""
        conf = self.CONF | {"prevResult": {"cniVersion": "1.0.0", "ips": prev_ips}}

        Static().check(request(conf, Command.CHECK))

    @pytest.mark.parametrize("gateway", ["10.10.0.9", None])
    def test_wrong_gateway_fails(self, gateway: str | None) -> None:
        """A configured address with another (or no) gateway fails with Go's text."""
        ip: JSON = {"address": "10.10.0.1/24"}
        if gateway:
            ip["gateway"] = gateway
        conf = self.CONF | {"prevResult": {"cniVersion": "0.4.0", "ips": [{"version": "4", **ip}]}}

        assert "static: Failed to match addr 10.10.0.1 on interface eth0" == (
            error_of(conf, Command.CHECK).msg
        )

    def test_prev_result_required(self) -> None:
        """CHECK without prevResult fails as Go."""
        err = error_of(self.CONF, Command.CHECK)

        assert ("Required prevResult missing", ErrorCode.INTERNAL) == (err.msg, err.code)
