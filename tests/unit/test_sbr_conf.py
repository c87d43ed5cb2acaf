"""The sbr plugin's configuration and address selection, without a kernel."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

import cnilib
from cnilib.plugins.meta._sbr_conf import SbrConf, ip_configs, static_gateways
from cnilib.results import decode_result


def test_defaults() -> None:
    """No key: Go's default mode (tables from 100, prevResult's gateways, no hints)."""
    assert SbrConf.load({}) == SbrConf(table=None, gateways=(), add_source_hints=False)
    assert SbrConf.load({"table": None, "gateways": None}) == SbrConf()


def test_keys() -> None:
    """``table`` (0 is a table, not absent), ``gateways``, ``addSourceHints``."""
    conf = SbrConf.load({"table": 0, "gateways": ["10.0.0.1"], "addSourceHints": True})
    assert conf == SbrConf(table=0, gateways=("10.0.0.1",), add_source_hints=True)
    assert SbrConf.load({"table": 5001.0}).table == 5001


@pytest.mark.parametrize(
    ("config", "got", "go_type"),
    [
        ({"table": "100"}, "string", "int"),
        ({"table": 1.5}, "number 1.5", "int"),
        ({"table": True}, "bool", "int"),
        ({"gateways": "10.0.0.1"}, "string", "[]string"),
        ({"gateways": [1]}, "number", "string"),
        ({"addSourceHints": "yes"}, "string", "bool"),
    ],
)
def test_type_errors_as_go(config: dict[str, Any], got: str, go_type: str) -> None:
    """Go's ``json.Unmarshal`` texts after ``failed to parse network configuration: json: ``."""
    with pytest.raises(cnilib.PluginError) as info:
        SbrConf.load(config)
    (field,) = config
    assert info.value.code == 999
    assert info.value.msg == (
        f"failed to parse network configuration: json: cannot unmarshal {got} into "
        f"Go struct field PluginConf.{field} of type {go_type}"
    )


def test_static_gateways() -> None:
    """One per family; an IPv4-mapped IPv6 address is IPv4 (Go's ``To4``)."""
    gws = static_gateways(("fd00::1", "::ffff:10.0.0.1"))
    assert gws.for_family(4) == ipaddress.IPv4Address("10.0.0.1")
    assert gws.for_family(6) == ipaddress.IPv6Address("fd00::1")
    assert static_gateways(()).for_family(4) is None


@pytest.mark.parametrize("text", ["10.0.0.1/24", "fe80::1%eth0", "nope", "010.0.0.1", ""])
def test_static_gateway_refused(text: str) -> None:
    """What Go's ``net.ParseIP`` refuses: a prefix, a zone, a name, leading zeros."""
    with pytest.raises(cnilib.PluginError) as info:
        static_gateways((text,))
    assert info.value.msg == f"invalid static gateway IP address: {text}"


def _prev(**extra: Any) -> Any:
    obj = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0"}, {"name": "net1"}],
        "ips": [
            {"address": "10.0.0.2/24", "interface": 0},
            {"address": "10.1.0.2/24", "interface": 1},
            {"address": "10.2.0.2/24"},
            {"address": "10.3.0.2/24", "interface": 9},
        ],
        **extra,
    }
    return decode_result(obj).as_v1()


def test_ip_configs_as_go() -> None:
    """Go's ``getIPCfgs``: an address of another interface is skipped; one without an
    index, or with an index out of range, is kept."""
    kept = [str(ipc.address) for ipc in ip_configs("eth0", _prev())]
    assert kept == ["10.0.0.2/24", "10.2.0.2/24", "10.3.0.2/24"]
    kept = [str(ipc.address) for ipc in ip_configs("net1", _prev())]
    assert kept == ["10.1.0.2/24", "10.2.0.2/24", "10.3.0.2/24"]


def test_ip_configs_none() -> None:
    """No address at all: Go's text (even if the interface is another one's)."""
    with pytest.raises(cnilib.PluginError) as info:
        ip_configs("eth0", _prev(ips=[]))
    assert info.value.msg == "No IP addresses supplied on interface: eth0"
