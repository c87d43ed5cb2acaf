"""The dhcp plugin's ipam keys, option names, CNI_ARGS and client ID, against Go's
``prepareOptions``/``generateClientID`` (texts from Go's source and observed runs)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cnilib.errors import ErrorCode, PluginError
from cnilib.invoke import Command
from cnilib.plugins._base import PluginRequest
from cnilib.plugins.ipam.dhcp._conf import (
    CLIENT_DEFAULT_PARAMETERS,
    DEFAULT_SOCKET_PATH,
    DhcpConf,
    OptionNameError,
    client_id,
    lease_key,
    parse_cni_args,
    parse_option_name,
)
from tests.unit._guards import NO_SUCH_HOST

JSON = dict[str, Any]


def conf(args: Any = (), name: str = "dhcpnet", **ipam: Any) -> DhcpConf:
    config: JSON = {"cniVersion": "1.0.0", "name": name, "ipam": {"type": "dhcp", **ipam}}
    return DhcpConf.from_netconf(config, args=args, source="stdin")


def error(args: Any = (), **ipam: Any) -> PluginError:
    with pytest.raises(PluginError) as info:
        conf(args, **ipam)
    return info.value


def test_defaults() -> None:
    c = conf()
    assert c.network == "dhcpnet"
    assert c.cni_version == "1.0.0"
    assert c.socket_path == DEFAULT_SOCKET_PATH == "/run/cni/dhcp.sock"
    assert c.priority == 0
    # Go's requestOptionsDefault: routers, then subnet-mask.
    assert c.parameters == (3, 1, 6, 15)
    assert c.extra_options == ()
    assert c.client_id_override is None


def test_socket_path_and_priority() -> None:
    c = conf(daemonSocketPath="/tmp/d.sock", priority=100)
    assert (c.socket_path, c.priority) == ("/tmp/d.sock", 100)
    assert conf(daemonSocketPath="").socket_path == DEFAULT_SOCKET_PATH
    assert conf(priority=None).priority == 0
    assert conf(priority=5.0).priority == 5


def test_keys_match_case_insensitively_like_go() -> None:
    c = conf(
        DaemonSocketPath="/a.sock", PRIORITY=3, Request=[{"Option": "121", "SKIPDEFAULT": True}]
    )
    assert (c.socket_path, c.priority, c.parameters) == ("/a.sock", 3, (121,))


@pytest.mark.parametrize(
    ("key", "value", "path", "go_type"),
    [
        ("daemonSocketPath", 1, "$.ipam.daemonSocketPath", "string"),
        ("priority", "1", "$.ipam.priority", "int"),
        ("priority", 1.5, "$.ipam.priority", "int"),
        ("priority", True, "$.ipam.priority", "int"),
        ("priority", 2.0**70, "$.ipam.priority", "int"),
        ("request", {}, "$.ipam.request", "[]main.RequestOption"),
        ("provide", "x", "$.ipam.provide", "[]main.ProvideOption"),
        ("request", ["x"], "$.ipam.request[0]", "main.RequestOption"),
        ("request", [{"skipDefault": "true"}], "$.ipam.request[0].skipDefault", "bool"),
        ("request", [{"option": 3}], "$.ipam.request[0].option", "main.DHCPOption"),
        ("provide", [{"option": "12", "value": 1}], "$.ipam.provide[0].value", "string"),
        ("provide", [{"option": "12", "fromArg": []}], "$.ipam.provide[0].fromArg", "string"),
    ],
)
def test_type_errors_name_the_field(key: str, value: Any, path: str, go_type: str) -> None:
    exc = error(**{key: value})
    assert exc.code == ErrorCode.INVALID_NETWORK_CONFIG
    assert exc.msg.startswith(f"{path}: json: cannot unmarshal ")
    assert exc.msg.endswith(f"into Go value of type {go_type}")
    assert exc.details == "in stdin"


def test_missing_ipam_is_a_config_error() -> None:
    with pytest.raises(PluginError) as info:
        DhcpConf.from_netconf({"name": "n"}, source="stdin")
    assert info.value.code == ErrorCode.INVALID_NETWORK_CONFIG
    assert info.value.msg == "$.ipam: IPAM config missing 'ipam' key"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("dhcp-client-identifier", 61),
        ("subnet-mask", 1),
        ("routers", 3),
        ("host-name", 12),
        ("user-class", 77),
        ("vendor-class-identifier", 60),
        ("0", 0),
        ("121", 121),
        ("255", 255),
        ("007", 7),
    ],
)
def test_option_names(name: str, code: int) -> None:
    assert parse_option_name(name) == code


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("bogus", "invalid syntax"),
        ("", "invalid syntax"),
        ("-1", "invalid syntax"),
        ("+1", "invalid syntax"),
        (" 1", "invalid syntax"),
        ("1_0", "invalid syntax"),
        ("0x10", "invalid syntax"),
        ("Routers", "invalid syntax"),  # names are case-sensitive in Go's map
        ("256", "value out of range"),
        ("99999999999999999999999", "value out of range"),
        # strconv stops at the first digit past the range, before the 'x'.
        ("999x", "value out of range"),
        ("25x", "invalid syntax"),
    ],
)
def test_option_name_errors_are_gos(name: str, problem: str) -> None:
    with pytest.raises(OptionNameError) as info:
        parse_option_name(name)
    assert str(info.value) == (
        f'Can not parse option: strconv.ParseUint: parsing "{name}": {problem}'
    )


def test_bad_request_option_observed_text() -> None:
    # Observed from Go's daemon: "error calling DHCP.Allocate: " + this text.
    exc = error(request=[{"option": "bogus"}])
    assert exc.code == ErrorCode.INVALID_NETWORK_CONFIG
    assert exc.msg == (
        '$.ipam.request[0].option: Can not parse option "bogus": Can not parse option: '
        'strconv.ParseUint: parsing "bogus": invalid syntax'
    )


def test_bad_provide_option() -> None:
    exc = error(provide=[{"option": "host-name", "value": "a"}, {"option": "300", "value": "b"}])
    assert exc.msg == (
        '$.ipam.provide[1].option: Can not parse option "300": Can not parse option: '
        'strconv.ParseUint: parsing "300": value out of range'
    )
    # A provide entry without an option is parsed (and refused) even without a value.
    assert error(provide=[{}]).msg.startswith('$.ipam.provide[0].option: Can not parse option ""')


def test_provide_errors_come_before_request_errors_as_in_go() -> None:
    exc = error(request=[{"option": "x"}], provide=[{"option": "y"}])
    assert exc.msg.startswith("$.ipam.provide[0].option")


def test_request_list_order_and_duplicates() -> None:
    # Go: requested codes in order, then routers and subnet-mask (and cnilib: DNS servers,
    # domain name) if not there yet.
    def asked(*codes: str) -> tuple[int, ...]:
        return conf(request=[{"option": code} for code in codes]).parameters

    assert asked("121", "33") == (121, 33, 3, 1, 6, 15)
    assert asked("subnet-mask", "121") == (1, 121, 3, 6, 15)
    assert asked("6", "6", "3") == (6, 3, 1, 15)


def test_skip_default_anywhere_drops_the_defaults() -> None:
    got = conf(request=[{"option": "121"}, {"option": "33", "skipDefault": True}])
    assert got.parameters == (121, 33)
    got = conf(request=[{"skipDefault": True}, {"option": "routers"}])
    assert got.parameters == (3,)
    assert conf(request=[{"option": "6", "skipDefault": False}]).parameters == (6, 3, 1, 15)


def test_request_entries_without_option_are_skipped() -> None:
    assert conf(request=[{"option": ""}, None, {"option": "15"}]).parameters == (15, 3, 1, 6)


def test_empty_request_list_leaves_the_client_libraries_list() -> None:
    # Go sets no option 55 then; its DHCP library's own list stays.
    assert conf(request=[{"skipDefault": True}]).parameters == CLIENT_DEFAULT_PARAMETERS
    assert CLIENT_DEFAULT_PARAMETERS == (1, 3, 15, 6)
    # ... unless option 55 was provided: that one is sent as given.
    provided = conf(
        request=[{"skipDefault": True}], provide=[{"option": "55", "value": "\x01\x79"}]
    )
    assert provided.parameters == (1, 121)
    assert provided.extra_options == ()


def test_provided_55_is_replaced_by_the_request_list() -> None:
    got = conf(provide=[{"option": "55", "value": "\x01"}])
    assert got.parameters == (3, 1, 6, 15)
    assert got.extra_options == ()


def test_provide_values_and_from_arg() -> None:
    # The observed run: host-name from K8S_POD_NAME, a literal user-class.
    got = conf(
        "IgnoreUnknown=1;K8S_POD_NAME=podfive",
        provide=[
            {"option": "user-class", "value": "cnitest"},
            {"option": "host-name", "fromArg": "K8S_POD_NAME"},
        ],
    )
    assert got.extra_options == ((12, b"podfive"), (77, b"cnitest"))


def test_from_arg_wins_over_value_and_later_entries_win() -> None:
    entries = [{"option": "host-name", "value": "fixed", "fromArg": "POD"}]
    assert conf("POD=fromargs", provide=entries).extra_options == ((12, b"fromargs"),)
    assert conf("OTHER=x", provide=entries).extra_options == ((12, b"fixed"),)
    twice = [{"option": "12", "value": "a"}, {"option": "host-name", "value": "b"}]
    assert conf(provide=twice).extra_options == ((12, b"b"),)


def test_provide_from_parsed_pairs() -> None:
    pairs = (("K8S_POD_NAME", "a"), ("K8S_POD_NAME", "b"))
    got = conf(pairs, provide=[{"option": "host-name", "fromArg": "K8S_POD_NAME"}])
    assert got.extra_options == ((12, b"b"),)


def test_empty_values() -> None:
    # An empty value sends nothing; an empty CNI_ARGS value is sent (as Go: zero length).
    assert conf(provide=[{"option": "12", "value": ""}]).extra_options == ()
    assert conf("A=", provide=[{"option": "12", "fromArg": "A"}]).extra_options == ((12, b""),)


def test_empty_from_arg_takes_nothing() -> None:
    # Go would look up the key "" (a pair "=x"); cnilib does not.
    assert conf("=x", provide=[{"option": "12", "fromArg": ""}]).extra_options == ()


def test_pad_and_end_are_never_sent() -> None:
    got = conf(provide=[{"option": "0", "value": "x"}, {"option": "255", "value": "y"}])
    assert got.extra_options == ()


def test_message_type_cannot_be_provided() -> None:
    exc = error(provide=[{"option": "53", "value": "\x01"}])
    assert exc.code == ErrorCode.INVALID_NETWORK_CONFIG
    assert exc.msg.startswith("$.ipam.provide[0].option: option 53")
    # Naming it without a value sends nothing, so it is harmless.
    assert conf(provide=[{"option": "53"}]).extra_options == ()


def test_extra_options_are_in_code_order() -> None:
    got = conf(provide=[{"option": "77", "value": "u"}, {"option": "60", "value": "v"}])
    assert got.extra_options == ((60, b"v"), (77, b"u"))


def test_value_length_limit() -> None:
    assert conf(provide=[{"option": "12", "value": "a" * 255}]).extra_options == ((12, b"a" * 255),)
    exc = error(provide=[{"option": "host-name", "value": "a" * 256}])
    assert exc.code == ErrorCode.INVALID_NETWORK_CONFIG
    assert (
        exc.msg == f'$.ipam.provide[0].value: value too long for option "host-name": "{"a" * 256}"'
    )
    # The limit is in bytes: 128 two-byte characters are 256 bytes.
    assert error(provide=[{"option": "12", "value": "é" * 128}]).msg.startswith(
        "$.ipam.provide[0].value: value too long"
    )


def test_from_arg_length_limit() -> None:
    ok = conf("N=" + "a" * 255, provide=[{"option": "12", "fromArg": "N"}])
    assert ok.extra_options == ((12, b"a" * 255),)
    exc = error("N=" + "b" * 256, provide=[{"option": "host-name", "fromArg": "N"}])
    assert exc.code == ErrorCode.INVALID_ENVIRONMENT_VARIABLES
    assert exc.msg == (
        f'$.ipam.provide[0].fromArg: value too long for option "host-name" from CNI_ARGS "N": '
        f'"{"b" * 256}"'
    )


def test_cni_args_parsing_is_gos() -> None:
    assert parse_cni_args("") == {}
    assert parse_cni_args("A=1;B;C=x=y;A=2;=z") == {"A": "2", "C": "x=y", "": "z"}


def test_provided_client_id_replaces_the_generated_one() -> None:
    got = conf(provide=[{"option": "dhcp-client-identifier", "value": "\x01mine"}])
    assert got.extra_options == ()
    assert got.client_id("cid", "eth0") == b"\x01mine"
    assert got.lease_key("cid", "eth0") == "cid/dhcpnet/eth0"
    assert conf().client_id("cid", "eth0") == b"\x00cid/dhcpnet/eth0"


def test_client_id_as_observed() -> None:
    # dnsmasq's lease file: 00:63:69:64:33:2f:64:68:63:70:6e:65:74:2f:65:74:68:30
    assert client_id("cid3", "dhcpnet", "eth0").hex(":") == (
        "00:63:69:64:33:2f:64:68:63:70:6e:65:74:2f:65:74:68:30"
    )
    assert lease_key("cid3", "dhcpnet", "eth0") == "cid3/dhcpnet/eth0"


def test_client_id_is_cut_to_254_bytes() -> None:
    cid = "c" * 300
    assert lease_key(cid, "net", "eth0") == "c" * 254
    assert client_id(cid, "net", "eth0") == b"\x00" + b"c" * 254
    exact = "c" * (254 - len("/net/eth0"))
    assert lease_key(exact, "net", "eth0") == exact + "/net/eth0"
    # A cut through a character keeps Go's bytes; the key stays distinct text.
    cut = "c" * 253 + "é"
    assert client_id(cut, "n", "i")[1:] == b"c" * 253 + b"\xc3"
    assert lease_key(cut, "n", "i") == "c" * 253 + "\\xc3"


def test_from_request_and_from_stdin_agree() -> None:
    config: JSON = {
        "cniVersion": "1.0.0",
        "name": "net",
        "ipam": {"type": "dhcp", "provide": [{"option": "host-name", "fromArg": "POD"}]},
    }
    stdin = json.dumps(config).encode()
    request = PluginRequest(
        command=Command.ADD,
        container_id="c",
        netns="/x",
        ifname="eth0",
        args=(("IgnoreUnknown", "1"), ("POD", "p1")),
        path=(),
        config=config,
        stdin=stdin,
        host_netns=NO_SUCH_HOST,
    )
    via_plugin = DhcpConf.from_request(request)
    via_daemon = DhcpConf.from_stdin(stdin, args="IgnoreUnknown=1;POD=p1", source="DHCP.Allocate")
    assert via_plugin == via_daemon
    assert via_plugin.extra_options == ((12, b"p1"),)


def test_from_stdin_decoding_error() -> None:
    with pytest.raises(PluginError) as info:
        DhcpConf.from_stdin(b"{", args="", source="DHCP.Allocate")
    assert info.value.code == ErrorCode.DECODING_FAILURE
    assert info.value.msg.startswith("error parsing netconf: ")
    assert info.value.details == "in DHCP.Allocate"


def test_valid_attachments_for_gc() -> None:
    config: JSON = {
        "name": "net",
        "ipam": {"type": "dhcp"},
        "cni.dev/valid-attachments": [
            {"containerID": "c1", "ifname": "eth0"},
            {"containerID": "c2", "ifname": "net1"},
        ],
    }
    got = DhcpConf.from_netconf(config, source="stdin")
    assert got.valid_attachments == {("c1", "eth0"), ("c2", "net1")}
    assert (
        DhcpConf.from_netconf(
            {**config, "cni.dev/valid-attachments": []}, source="x"
        ).valid_attachments
        == frozenset()
    )
    with pytest.raises(PluginError) as info:
        _ = conf().valid_attachments
    assert info.value.code == ErrorCode.INVALID_NETWORK_CONFIG
    assert "cni.dev/valid-attachments" in info.value.msg
    with pytest.raises(PluginError) as info:
        DhcpConf.from_netconf({**config, "cni.dev/valid-attachments": [1]}, source="x")
    assert info.value.msg.startswith('$["cni.dev/valid-attachments"][0]: json: cannot unmarshal')
