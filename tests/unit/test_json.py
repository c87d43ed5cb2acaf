"""Tests for cnilib._json: Go's encoding/json conventions (compact, sorted, escaped, strict)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, strategies as st

from cnilib._json import JSONSyntaxError, go_dumps, loads, loads_object, type_name

# JSON values Go can round-trip: finite floats, text without lone surrogates.
_TEXT = st.text(st.characters(codec="utf-8"))
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=20,
)


class TestGoDumps:
    """go_dumps writes what Go's json.Marshal writes."""

    def test_compact_and_key_sorted(self) -> None:
        """Output has no whitespace and map keys are sorted at every level."""
        value = {"type": "bridge", "mtu": 1400, "ipam": {"type": "host-local", "b": [1, 2]}}
        expected = '{"ipam":{"b":[1,2],"type":"host-local"},"mtu":1400,"type":"bridge"}'
        assert expected == go_dumps(value)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("<", '"\\u003c"'),
            (">", '"\\u003e"'),
            ("&", '"\\u0026"'),
            ("\u2028", '"\\u2028"'),
            ("\u2029", '"\\u2029"'),
            ("a<b>&c", '"a\\u003cb\\u003e\\u0026c"'),
        ],
    )
    def test_html_and_line_separator_escapes(self, text: str, expected: str) -> None:
        """<, >, &, U+2028 and U+2029 are escaped as Go escapes them."""
        assert expected == go_dumps(text)

    def test_escapes_apply_to_keys(self) -> None:
        """Keys are escaped like values."""
        assert '{"\\u003ck\\u003e":1}' == go_dumps({"<k>": 1})

    def test_non_ascii_written_raw(self) -> None:
        """Non-ASCII text is written as UTF-8, not as \\u escapes (Go does the same)."""
        assert '"é\u4e2d"' == go_dumps("é\u4e2d")

    def test_control_characters_escaped(self) -> None:
        """Control characters are escaped so the output stays valid JSON."""
        assert '"\\n\\t\\u0001"' == go_dumps("\n\t\x01")

    def test_sort_keys_false_keeps_insertion_order(self) -> None:
        """sort_keys=False mirrors a Go struct's field order."""
        assert '{"z":1,"a":2}' == go_dumps({"z": 1, "a": 2}, sort_keys=False)

    def test_indent_matches_marshal_indent(self) -> None:
        """indent=4 gives MarshalIndent's layout: newline, indent, ': ' separator."""
        expected = '{\n    "a": [\n        1\n    ],\n    "b": "\\u0026"\n}'
        assert expected == go_dumps({"b": "&", "a": [1]}, indent=4)

    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
    def test_non_finite_floats_refused(self, value: float) -> None:
        """NaN and infinities cannot be written (Go's Marshal refuses them too)."""
        with pytest.raises(ValueError, match="Out of range"):
            go_dumps({"x": value})

    @given(JSON_VALUES)
    def test_round_trips_through_loads(self, value: object) -> None:
        """loads(go_dumps(v)) == v for every JSON value."""
        assert value == loads(go_dumps(value))

    @given(JSON_VALUES)
    def test_never_writes_html_characters(self, value: object) -> None:
        """No raw <, > or & survives in the output."""
        text = go_dumps(value)
        assert set() == {"<", ">", "&"} & set(text)


class TestLoads:
    """loads decodes strictly, like Go's json.Unmarshal."""

    def test_bytes_and_str(self) -> None:
        """Both bytes and str are decoded."""
        assert {"a": [1, 2.5, None, True]} == loads(b'{"a":[1,2.5,null,true]}')
        assert {"a": "é"} == loads('{"a":"é"}')

    @pytest.mark.parametrize("data", [b"", b"   ", "\n\t", ""])
    def test_empty_input(self, data: bytes | str) -> None:
        """Empty or blank input reads as Go's "unexpected end of JSON input"."""
        with pytest.raises(JSONSyntaxError, match=r"^unexpected end of JSON input$"):
            loads(data)

    @pytest.mark.parametrize(
        ("data", "char"),
        [(b"NaN", "N"), (b"Infinity", "I"), (b"-Infinity", "-"), (b'{"a": NaN}', "N")],
    )
    def test_nan_and_infinity_rejected(self, data: bytes, char: str) -> None:
        """NaN/Infinity literals, which Python accepts, are rejected with a Go-like text."""
        with pytest.raises(JSONSyntaxError) as info:
            loads(data)
        assert f"invalid character '{char}' looking for beginning of value" in str(info.value)

    def test_invalid_utf8(self) -> None:
        """Invalid UTF-8 is a syntax error naming the byte offset."""
        with pytest.raises(JSONSyntaxError, match=r"^invalid UTF-8 at byte 6$"):
            loads(b'{"a":"\xff"}')

    def test_syntax_error_position(self) -> None:
        """Syntax errors name the line and column."""
        with pytest.raises(JSONSyntaxError, match=r"at line 2 column 1$"):
            loads(b'{"a":1,\n}')

    def test_bom_rejected(self) -> None:
        """A UTF-8 byte order mark is not JSON (Go rejects it as well)."""
        with pytest.raises(JSONSyntaxError):
            loads(b'\xef\xbb\xbf{"a":1}')

    def test_trailing_data_rejected(self) -> None:
        """Anything after the value is an error."""
        with pytest.raises(JSONSyntaxError):
            loads(b'{"a":1} {"b":2}')

    def test_deep_nesting(self) -> None:
        """Nesting past the recursion limit is a syntax error, not a RecursionError."""
        with pytest.raises(JSONSyntaxError, match=r"^exceeded max depth$"):
            loads(b"[" * 100_000 + b"]" * 100_000)

    def test_duplicate_keys_last_wins(self) -> None:
        """A repeated key keeps its last value, as in Go."""
        assert {"a": 2} == loads(b'{"a":1,"a":2}')

    def test_is_value_error(self) -> None:
        """JSONSyntaxError is a ValueError."""
        assert issubclass(JSONSyntaxError, ValueError)

    def test_out_of_range_float_rejected(self) -> None:
        """A number outside float64's range is a syntax error, as in Go."""
        with pytest.raises(JSONSyntaxError):
            loads(b'{"a":1e400}')

    def test_huge_integer_is_syntax_error(self) -> None:
        """An integer with more digits than Python converts is a JSONSyntaxError, not ValueError."""
        with pytest.raises(JSONSyntaxError):
            loads(b'{"a":' + b"1" * 5000 + b"}")

    def test_lone_surrogate_becomes_replacement_character(self) -> None:
        """ "\\ud800" decodes to U+FFFD, as Go's decoder does."""
        assert "\ufffd" == loads(b'"\\ud800"')

    def test_valid_surrogate_pair(self) -> None:
        """A proper surrogate pair decodes to the astral character."""
        assert "\U0001f600" == loads(b'"\\ud83d\\ude00"')


class TestLoadsObject:
    """loads_object requires a JSON object."""

    def test_object(self) -> None:
        """An object is returned as a dict."""
        assert {"a": 1} == loads_object(b'{"a":1}')

    @pytest.mark.parametrize(
        ("data", "kind"),
        [
            (b"[]", "array"),
            (b"1", "number"),
            (b'"s"', "string"),
            (b"null", "null"),
            (b"true", "boolean"),
        ],
    )
    def test_non_object_refused(self, data: bytes, kind: str) -> None:
        """Any other JSON value is refused, naming its type."""
        with pytest.raises(JSONSyntaxError, match=f"^expected a JSON object, got {kind}$"):
            loads_object(data)


class TestTypeName:
    """type_name names the JSON type of a decoded value."""

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (None, "null"),
            (True, "boolean"),
            (False, "boolean"),
            (0, "number"),
            (1.5, "number"),
            ("", "string"),
            ([], "array"),
            ({}, "object"),
            ((), "array"),  # a sequence about to be encoded
        ],
    )
    def test_names(self, value: object, expected: str) -> None:
        """Each JSON type has its JSON name; bool is not a number."""
        assert expected == type_name(value)

    def test_matches_python_json_module(self) -> None:
        """Sanity: what the stdlib decodes is named as a JSON type."""
        assert "object" == type_name(json.loads("{}"))
