"""Decoding results as libcni does: version fixup, Go's JSON rules, error texts and codes."""

from __future__ import annotations

import ast
import json
from ipaddress import IPv4Address, IPv4Interface, ip_interface as decode_cidr
from pathlib import Path

import pytest

from cnilib.errors import (
    CNIError,
    ErrorCode,
    ResultConversionError,
    ResultDecodeError,
    VersionError,
)
from cnilib.results import (
    DNS,
    Interface,
    IPConfig,
    ResultV020,
    ResultV040,
    ResultV100,
    Route,
    decode_result,
    v020,
)
from cnilib.results._gotext import go_quote, json_kind


def _decode_error(data: object, default_version: str = "") -> ResultDecodeError:
    with pytest.raises(ResultDecodeError) as info:
        decode_result(data, default_version=default_version)  # type: ignore[arg-type]
    assert info.value.code == ErrorCode.DECODING_FAILURE
    return info.value


class TestRawOutput:
    @pytest.mark.parametrize("data", [b"", "", b"  \n\t", "\n"])
    def test_empty_output(self, data: bytes | str) -> None:
        """Empty stdout fails with Go's text and the decoding-failure code."""
        err = _decode_error(data)
        assert str(err) == "failed to unmarshal raw result: unexpected end of JSON input"

    @pytest.mark.parametrize(
        ("data", "kind"), [("[]", "array"), ('"x"', "string"), ("5", "number"), ("true", "bool")]
    )
    def test_non_object_output(self, data: str, kind: str) -> None:
        """A JSON value that is not an object is rejected as Go rejects it for a map."""
        err = _decode_error(data)
        assert str(err) == (
            f"failed to unmarshal raw result: json: cannot unmarshal {kind} "
            "into Go value of type map[string]interface {}"
        )

    @pytest.mark.parametrize("data", ["{", '{"a":}', "NaN", '{"a": Infinity}', "{}{}", "\ufeff{}"])
    def test_malformed_json(self, data: str) -> None:
        """Malformed JSON (including NaN/Infinity) fails with the libcni prefix."""
        assert str(_decode_error(data)).startswith("failed to unmarshal raw result: ")

    def test_null_is_an_empty_object(self) -> None:
        """``null`` reads as ``{}`` and takes the config's version."""
        result = decode_result(b"null", default_version="0.4.0")
        assert result == ResultV040(cni_version="0.4.0")

    def test_bytes_str_bytearray_and_mapping_agree(self) -> None:
        """The same result decodes identically from bytes, str, bytearray and a mapping."""
        obj: dict[str, object] = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}
        text = json.dumps(obj)
        inputs: list[bytes | bytearray | str | dict[str, object]] = [
            text,
            text.encode(),
            bytearray(text.encode()),
            obj,
        ]
        decoded = [decode_result(d) for d in inputs]
        assert all(r == decoded[0] for r in decoded)

    def test_invalid_utf8_inside_strings_becomes_replacement_chars(self) -> None:
        """Go reads each invalid UTF-8 byte in a string as U+FFFD instead of failing."""
        data = b'{"cniVersion":"1.0.0","interfaces":[{"name":"e\xe2\x82th\xff"}]}'
        result = decode_result(data)
        assert isinstance(result, ResultV100)
        assert result.interfaces[0].name == "e\ufffd\ufffdth\ufffd"

    def test_escaped_lone_surrogate_becomes_replacement_char(self) -> None:
        """A lone UTF-16 surrogate escape decodes to U+FFFD, as in Go."""
        result = decode_result('{"cniVersion":"1.0.0","dns":{"domain":"a\\ud800b"}}')
        assert isinstance(result, ResultV100)
        assert result.dns.domain == "a\ufffdb"

    @pytest.mark.parametrize("number", ["1e400", "-1e400", "1" + "0" * 400])
    def test_number_beyond_float64_anywhere_fails(self, number: str) -> None:
        """Go decodes the whole output into a map first, so any number past float64 fails."""
        err = _decode_error('{"cniVersion":"1.0.0","unknown":[' + number + "]}")
        assert str(err).startswith("failed to unmarshal raw result: ")
        assert "number" in str(err)

    def test_overlong_integer_literal_is_a_decode_error(self) -> None:
        """An integer too long for Python's int parser is still a ResultDecodeError."""
        _decode_error('{"x": ' + "9" * 5000 + "}")

    def test_deep_nesting_is_a_decode_error(self) -> None:
        """Pathologically deep JSON fails cleanly instead of raising RecursionError."""
        _decode_error('{"x":' + "[" * 100_000 + "]" * 100_000 + "}")


class TestVersionFixup:
    @pytest.mark.parametrize(
        "raw", [{}, {"cniVersion": ""}, {"cniVersion": 5}, {"cniVersion": None}]
    )
    def test_missing_version_takes_config_version(self, raw: dict[str, object]) -> None:
        """cniVersion absent, empty or not a string: the config's version is used."""
        result = decode_result(raw, default_version="1.1.0")
        assert isinstance(result, ResultV100)
        assert result.cni_version == "1.1.0"

    def test_no_config_version_means_010(self) -> None:
        """Without either version the result is 0.1.0 (Go ``DecodeVersion``)."""
        result = decode_result(b"{}")
        assert isinstance(result, ResultV020)
        assert result.cni_version == "0.1.0"

    def test_result_version_wins_over_config(self) -> None:
        """A plugin's own known version is kept, not forced to the config's."""
        result = decode_result('{"cniVersion":"0.3.1"}', default_version="1.0.0")
        assert type(result) is ResultV040
        assert result.cni_version == "0.3.1"

    @pytest.mark.parametrize("version", ["1.2.0", "0.4567.0", "1", "x"])
    def test_unknown_version(self, version: str) -> None:
        """An unknown result version fails with Go's text and the version code."""
        with pytest.raises(ResultConversionError) as info:
            decode_result({"cniVersion": version})
        assert str(info.value) == f'unsupported CNI result version "{version}"'
        assert isinstance(info.value, VersionError)
        assert info.value.code == ErrorCode.INCOMPATIBLE_CNI_VERSION

    def test_unknown_config_version(self) -> None:
        """An unknown config version is reported when the result has none of its own."""
        with pytest.raises(ResultConversionError, match=r'version "0\.5\.0"$'):
            decode_result(b"{}", default_version="0.5.0")

    def test_version_is_quoted_like_go(self) -> None:
        """The version in the message is quoted with Go's %q escapes."""
        with pytest.raises(ResultConversionError) as info:
            decode_result({"cniVersion": 'a"\n\x01\u200b'})
        assert str(info.value) == 'unsupported CNI result version "a\\"\\n\\x01\\u200b"'

    def test_decoded_version_must_stay_in_family(self) -> None:
        """A case-variant key that rewrites cniVersion out of the family fails as in Go."""
        err = _decode_error('{"cniVersion":"0.2.0","CNIVERSION":"0.4.0"}')
        assert str(err) == (
            'result type supports [ 0.1.0 0.2.0] but unmarshalled CNIVersion is "0.4.0"'
        )

    def test_legacy_family_accepts_empty_decoded_version(self) -> None:
        """types020 lists "" as supported, so an emptied cniVersion is accepted there."""
        result = decode_result('{"cniVersion":"0.2.0","cniversion":""}')
        assert result == ResultV020(cni_version="")

    def test_fixup_remarshal_sorts_keys(self) -> None:
        """After the fixup Go decodes sorted keys, so "cniversion" beats the inserted version."""
        err = _decode_error('{"cniversion":"0.4.0"}', default_version="1.0.0")
        assert str(err).endswith('but unmarshalled CNIVersion is "0.4.0"')

    def test_fixup_remarshal_passes_numbers_through_float64(self) -> None:
        """Only after the fixup does 1.0 read as an int, and big ints lose precision."""
        raw = '{"routes":[{"dst":"0.0.0.0/0","mtu":1.0,"table":9007199254740993}]}'
        result = decode_result(raw, default_version="1.0.0")
        assert isinstance(result, ResultV100)
        assert (result.routes[0].mtu, result.routes[0].table) == (1, 9007199254740992)
        err = _decode_error('{"cniVersion":"1.0.0",' + raw[1:])
        assert str(err) == (
            "$.routes[0].mtu: json: cannot unmarshal number 1.0 into Go value of type int"
        )


class TestGoJSONRules:
    def test_unknown_keys_are_dropped(self) -> None:
        """Keys libcni's structs do not know are dropped at every level."""
        result = decode_result(
            {"cniVersion": "1.1.0", "x": 1, "ips": [{"address": "10.0.0.2/8", "y": [1]}]}
        )
        assert result.to_object() == {"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/8"}]}

    def test_keys_match_case_insensitively(self) -> None:
        """Go matches object keys to fields ignoring case (and folds the long s and Kelvin)."""
        result = decode_result(
            '{"cniVersion":"1.0.0","IPS":[{"Address":"10.0.0.2/8","GateWay":"10.0.0.1"}],'
            '"routes":[{"dst":"::/0","\u017fcope":253}],"dns":{"Domain":"\u212a"}}'
        )
        assert result == ResultV100(
            cni_version="1.0.0",
            ips=[IPConfig(address=IPv4Interface("10.0.0.2/8"), gateway=IPv4Address("10.0.0.1"))],
            routes=[Route(dst=decode_cidr("::/0"), scope=253)],
            dns=DNS(domain="\u212a"),
        )

    def test_last_matching_key_wins(self) -> None:
        """With several keys for one field, the last one in the object wins."""
        result = decode_result('{"cniVersion":"1.0.0","dns":{"domain":"a","DOMAIN":"b"}}')
        assert isinstance(result, ResultV100)
        assert result.dns.domain == "b"

    def test_null_leaves_scalars_and_structs_alone(self) -> None:
        """null for a string, int or struct field is a no-op, even after an earlier value."""
        result = decode_result(
            '{"cniVersion":"1.0.0","dns":null,"interfaces":[{"name":"a","mtu":5,"MTU":null}]}'
        )
        assert result == ResultV100(cni_version="1.0.0", interfaces=[Interface(name="a", mtu=5)])

    def test_null_clears_pointers_and_slices(self) -> None:
        """null sets a pointer or slice field to nil."""
        result = decode_result(
            '{"cniVersion":"1.0.0","interfaces":null,"ips":[{"address":"10.0.0.2/8",'
            '"gateway":null,"interface":null}],"routes":null}'
        )
        assert result == ResultV100(
            cni_version="1.0.0", ips=[IPConfig(address=decode_cidr("10.0.0.2/8"))]
        )

    def test_empty_gateway_means_none(self) -> None:
        """An empty gateway string is no gateway (net.IP.UnmarshalText)."""
        result = decode_result(
            '{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/8","gateway":""}]}'
        )
        assert isinstance(result, ResultV100)
        assert result.ips[0].gateway is None

    def test_null_strings_in_lists_become_empty(self) -> None:
        """A null item in a list of strings decodes as ""."""
        result = decode_result('{"cniVersion":"1.0.0","dns":{"nameservers":["1.1.1.1",null]}}')
        assert isinstance(result, ResultV100)
        assert result.dns.nameservers == ("1.1.1.1", "")

    def test_null_address_is_an_invalid_cidr(self) -> None:
        """A null address reaches types.IPNet's decoder as "" and fails."""
        err = _decode_error('{"cniVersion":"1.0.0","ips":[{"address":null}]}')
        assert str(err) == "$.ips[0].address: invalid CIDR address: "

    def test_missing_address_prints_as_nil(self) -> None:
        """A missing address decodes (Go keeps a zero IPNet) and prints as "<nil>"."""
        result = decode_result('{"cniVersion":"0.4.0","ips":[{"version":"4"}]}')
        assert result.to_json() == (
            '{"cniVersion":"0.4.0","ips":[{"version":"4","address":"\\u003cnil\\u003e"}],"dns":{}}'
        )
        _decode_error(result.to_json())

    def test_null_route_in_legacy_result_is_a_zero_route(self) -> None:
        """0.2.0 routes are Go values, so a null item is a zero route."""
        result = decode_result('{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/8","routes":[null]}}')
        assert result == ResultV020(
            cni_version="0.2.0", ip4=v020.IPConfig(ip=decode_cidr("10.0.0.2/8"), routes=[Route()])
        )

    @pytest.mark.parametrize("field", ["interfaces", "ips", "routes"])
    def test_null_list_entries_are_rejected(self, field: str) -> None:
        """A null entry in interfaces/ips/routes is refused (libcni would panic converting it)."""
        err = _decode_error(f'{{"cniVersion":"1.0.0","{field}":[null]}}')
        assert str(err).startswith(f"$.{field}[0]: null is not accepted")


class TestFieldErrors:
    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            (
                '{"cniVersion":"1.0.0","interfaces":[{"name":"a"},{"mtu":"9000"}]}',
                "$.interfaces[1].mtu: json: cannot unmarshal string into Go value of type int",
            ),
            (
                '{"cniVersion":"1.0.0","interfaces":{}}',
                "$.interfaces: json: cannot unmarshal object into Go value of type "
                "[]*types100.Interface",
            ),
            (
                '{"cniVersion":"1.0.0","ips":[{"address":5}]}',
                "$.ips[0].address: json: cannot unmarshal number into Go value of type string",
            ),
            (
                '{"cniVersion":"0.4.0","ips":[{"address":"10.0.0.1/8","version":4}]}',
                "$.ips[0].version: json: cannot unmarshal number into Go value of type string",
            ),
            (
                '{"cniVersion":"1.1.0","routes":[{"dst":"0.0.0.0/0","gw":true}]}',
                "$.routes[0].gw: json: cannot unmarshal bool into Go value of type net.IP",
            ),
            (
                '{"cniVersion":"1.1.0","routes":[{"dst":"0.0.0.0/0","table":1e3}]}',
                "$.routes[0].table: json: cannot unmarshal number 1000.0 into Go value of type int",
            ),
            (
                '{"cniVersion":"1.1.0","routes":[{"dst":"0.0.0.0/0","scope":9223372036854775808}]}',
                "$.routes[0].scope: json: cannot unmarshal number 9223372036854775808 "
                "into Go value of type int",
            ),
            (
                '{"cniVersion":"1.1.0","ips":[{"address":"10.0.0.1/8","interface":false}]}',
                "$.ips[0].interface: json: cannot unmarshal bool into Go value of type int",
            ),
            (
                '{"cniVersion":"1.1.0","dns":{"search":"a.b"}}',
                "$.dns.search: json: cannot unmarshal string into Go value of type []string",
            ),
            (
                '{"cniVersion":"1.1.0","dns":[]}',
                "$.dns: json: cannot unmarshal array into Go value of type types.DNS",
            ),
            (
                '{"cniVersion":"1.1.0","interfaces":[{"socketPath":["x"]}]}',
                "$.interfaces[0].socketPath: json: cannot unmarshal array "
                "into Go value of type string",
            ),
            (
                '{"cniVersion":"0.2.0","ip4":[]}',
                "$.ip4: json: cannot unmarshal array into Go value of type types020.IPConfig",
            ),
            (
                '{"cniVersion":"0.1.0","ip6":{"ip":"::1/128","routes":[{"dst":"::/0","gw":"::g"}]}}',
                "$.ip6.routes[0].gw: invalid IP address: ::g",
            ),
        ],
    )
    def test_message_names_the_field(self, raw: str, message: str) -> None:
        """A malformed field fails with its JSON path (wire names) and Go's reason."""
        assert str(_decode_error(raw)) == message

    def test_errors_are_cnierrors_with_a_cause(self) -> None:
        """Field errors are CNIErrors chained to the underlying problem."""
        err = _decode_error('{"cniVersion":"1.0.0","ips":[{"address":"x"}]}')
        assert isinstance(err, CNIError)
        assert isinstance(err, ValueError)
        assert err.__cause__ is not None


class TestGoText:
    @pytest.mark.parametrize(
        ("text", "quoted"),
        [
            ("1.0.0", '"1.0.0"'),
            ('a"b\\c', '"a\\"b\\\\c"'),
            ("\t\x7f\x00", '"\\t\\x7f\\x00"'),
            ("\u00e9\u4e16", '"\u00e9\u4e16"'),
            ("\u00a0\U000e0001", '"\\u00a0\\U000e0001"'),
            ("\ud800", '"\ufffd"'),
        ],
    )
    def test_go_quote(self, text: str, quoted: str) -> None:
        """go_quote escapes like Go's %q: printable Unicode kept, the rest escaped."""
        assert go_quote(text) == quoted

    @pytest.mark.parametrize(
        ("value", "kind"),
        [(None, "null"), (True, "bool"), (1.5, "number"), ("", "string"), ((), "array"),
         ({}, "object"), ({1}, "set")],
    )  # fmt: skip
    def test_json_kind(self, value: object, kind: str) -> None:
        """json_kind names values as Go's UnmarshalTypeError does (Python types by name)."""
        assert json_kind(value) == kind

    def test_non_json_values_in_a_mapping(self) -> None:
        """A mapping holding non-JSON values fails with a CNIError naming the type."""
        err = _decode_error({"cniVersion": "1.0.0", "dns": {"search": {"a"}}})
        assert str(err) == "$.dns.search: json: cannot unmarshal set into Go value of type []string"
        err = _decode_error({"cniVersion": "1.0.0", "x": [float("inf")]})
        assert str(err).startswith("failed to unmarshal raw result: ")


class TestImportHygiene:
    def test_results_package_imports_only_light_modules(self) -> None:
        """cnilib.results imports stdlib, attrs, cattrs and core cnilib modules only."""
        allowed_roots = {
            "__future__",
            "collections",
            "functools",
            "ipaddress",
            "math",
            "re",
            "types",
            "typing",
            "attrs",
            "cattrs",
            "cnilib",
        }
        package = Path(__file__).resolve().parents[2] / "cnilib" / "results"
        for path in package.glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    assert name.split(".")[0] in allowed_roots, f"{path.name} imports {name}"
                    assert not name.startswith(("cnilib.schema", "cnilib.runtime", "cnilib.cli"))


class TestResultFromJson:
    def test_round_trip_through_the_base_class(self) -> None:
        """Result.from_json picks the family from cniVersion and round-trips to_json."""
        from cnilib.results import Result, ResultV040

        text = '{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.0.2/24"}],"dns":{}}'

        result = Result.from_json(text)

        assert isinstance(result, ResultV040)
        assert text == result.to_json()

    def test_default_version_applies_when_missing(self) -> None:
        """Without cniVersion the given default decides the family."""
        from cnilib.results import Result

        assert "1.0.0" == Result.from_json(b"{}", default_version="1.0.0").cni_version
