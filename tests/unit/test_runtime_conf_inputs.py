"""RuntimeConf takes what a runtime has at hand: path objects, mappings, tuples."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import attrs
import pytest

import cnilib
from cnilib.config import request_config


class _BytesPath:
    def __fspath__(self) -> bytes:
        return b"/run/netns/ctr1"


class TestNetnsPath:
    def test_path_object_becomes_str(self) -> None:
        """A pathlib.Path netns is kept as the same path, as a str."""
        rt = cnilib.RuntimeConf("ctr1", Path("/run/netns/ctr1"), "eth0")

        assert "/run/netns/ctr1" == rt.netns
        assert type(rt.netns) is str

    def test_evolve_with_path(self) -> None:
        """attrs.evolve converts a path object too."""
        rt = attrs.evolve(cnilib.RuntimeConf("ctr1", "", "eth0"), netns=Path("/proc/1/ns/net"))

        assert "/proc/1/ns/net" == rt.netns

    @pytest.mark.parametrize("netns", [b"/run/netns/ctr1", _BytesPath()])
    def test_bytes_are_refused(self, netns: object) -> None:
        """A bytes path, given directly or by __fspath__, is an InvalidArgumentError."""
        with pytest.raises(cnilib.InvalidArgumentError, match="netns path must be a str"):
            cnilib.RuntimeConf("ctr1", netns, "eth0")  # type: ignore[arg-type]

    def test_none_is_no_namespace(self) -> None:
        """netns=None (the namespace is gone, as for a late DEL) is the empty path."""
        rt = cnilib.RuntimeConf("ctr1", None, "eth0")

        assert "" == rt.netns
        rt.validate("net")

    def test_other_types_are_type_errors(self) -> None:
        """A value that is no path at all is Python's TypeError, as os.fspath raises it."""
        with pytest.raises(TypeError):
            cnilib.RuntimeConf("ctr1", 3, "eth0")  # type: ignore[arg-type]


class TestArgs:
    def test_mapping_gives_pairs_in_order(self) -> None:
        """A dict of CNI_ARGS becomes its (key, value) pairs, in insertion order."""
        rt = cnilib.RuntimeConf("c", "", "eth0", args={"K8S_POD_NAME": "web", "IgnoreUnknown": "1"})

        assert (("K8S_POD_NAME", "web"), ("IgnoreUnknown", "1")) == rt.args

    def test_two_letter_keys_are_not_split(self) -> None:
        """A dict whose keys have two letters is not read as pairs of letters."""
        rt = cnilib.RuntimeConf("c", "", "eth0", args={"ab": "x"})

        assert (("ab", "x"),) == rt.args

    def test_mapping_values_must_be_strings(self) -> None:
        """A non-string value in a mapping is refused like a bad pair."""
        with pytest.raises(cnilib.InvalidArgumentError, match="string pairs"):
            cnilib.RuntimeConf("c", "", "eth0", args={"K": 1})  # type: ignore[arg-type]

    def test_string_is_refused(self) -> None:
        """A 'K=V' string is not taken for pairs of characters."""
        with pytest.raises(cnilib.InvalidArgumentError, match="not a string"):
            cnilib.RuntimeConf("c", "", "eth0", args="ab")  # type: ignore[arg-type]

    def test_string_items_are_refused(self) -> None:
        """A list of 'K=V'-like two-letter strings is not read as pairs of letters."""
        with pytest.raises(cnilib.InvalidArgumentError, match="string pairs"):
            cnilib.RuntimeConf("c", "", "eth0", args=["ab"])  # type: ignore[list-item]

    def test_none_is_no_args(self) -> None:
        """args=None is no CNI_ARGS at all."""
        rt = cnilib.RuntimeConf("c", "", "eth0", args=None)

        assert () == rt.args

    def test_pairs_still_work(self) -> None:
        """Pairs and two-item lists are accepted as before, repeats kept."""
        rt = cnilib.RuntimeConf("c", "", "eth0", args=[("A", "1"), ["A", "2"]])

        assert (("A", "1"), ("A", "2")) == rt.args


class TestCapabilityArgs:
    def test_nested_containers_become_dicts_and_lists(self) -> None:
        """Tuples and read-only mappings inside become lists and dicts, as JSON decodes."""
        inner: MappingProxyType[str, cnilib.JSONValue] = MappingProxyType(
            {"hostPort": 8080, "protocol": "tcp"}
        )
        rt = cnilib.RuntimeConf("c", "", "eth0", capability_args={"portMappings": (inner,)})

        assert {"portMappings": [{"hostPort": 8080, "protocol": "tcp"}]} == dict(rt.capability_args)
        assert isinstance(rt.capability_args["portMappings"], list)

    def test_plugin_receives_them(self) -> None:
        """Converted capability args reach a plugin's runtimeConfig (json.dumps takes them)."""
        conf = cnilib.conflist_from_bytes(
            b'{"cniVersion":"1.0.0","name":"n","plugins":'
            b'[{"type":"portmap","capabilities":{"portMappings":true}}]}'
        )
        ports = MappingProxyType({"hostPort": 8080})
        rt = cnilib.RuntimeConf("c", "", "eth0", capability_args={"portMappings": (ports,)})

        stdin = request_config(
            conf.plugins[0], name="n", cni_version="1.0.0", capability_args=rt.capability_args
        )

        assert b'"runtimeConfig":{"portMappings":[{"hostPort":8080}]}' in stdin

    def test_caller_changes_do_not_leak_in(self) -> None:
        """Changing the caller's nested list afterwards does not change the RuntimeConf."""
        ports: list[cnilib.JSONValue] = [{"hostPort": 8080}]
        rt = cnilib.RuntimeConf("c", "", "eth0", capability_args={"portMappings": ports})
        ports.append({"hostPort": 9090})

        assert [{"hostPort": 8080}] == rt.capability_args["portMappings"]

    def test_self_containing_value_is_invalid_argument(self) -> None:
        """A structure containing itself is an InvalidArgumentError, not a RecursionError."""
        loop: list[cnilib.JSONValue] = []
        loop.append(loop)

        with pytest.raises(cnilib.InvalidArgumentError, match="nested too deeply"):
            cnilib.RuntimeConf("c", "", "eth0", capability_args={"x": loop})

    def test_none_is_no_capability_args(self) -> None:
        """capability_args=None is an empty mapping, which validates."""
        rt = cnilib.RuntimeConf("c", "", "eth0", capability_args=None)

        assert {} == dict(rt.capability_args)
        rt.validate("net")

    @pytest.mark.parametrize("caps", [[("portMappings", [])], "portMappings", 3])
    def test_not_a_mapping_is_a_type_error(self, caps: object) -> None:
        """A value that is no mapping is Python's TypeError, saying what is expected."""
        with pytest.raises(TypeError, match="capability_args must be a mapping"):
            cnilib.RuntimeConf("c", "", "eth0", capability_args=caps)  # type: ignore[arg-type]

    def test_non_json_value_still_fails_validation(self) -> None:
        """A value that is no JSON is kept, and validate() refuses it as before."""
        rt = cnilib.RuntimeConf("c", "", "eth0", capability_args={"x": float("nan")})

        with pytest.raises(cnilib.InvalidArgumentError, match="not JSON"):
            rt.validate("net")
