"""Tests for cnilib.config parsing: libcni's NetworkConfFromBytes, ConfFromBytes, ConfListFromConf.

Vectors live in tests/data/config/{conflist,conf}.json:
``[{"name", "input": <object> | "<raw text>", "error": "<substring>" | null,
"field": "<json path>" | null, "expect": {...}}]``. A string input is raw
text; anything else is JSON-encoded first. ``conf.json`` may give
``raw_hex`` instead of ``input`` for bytes that are not text.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from cnilib import CNIError
from cnilib.config import (
    NetworkConfigList,
    PluginConf,
    conf_from_bytes,
    conflist_from_bytes,
    conflist_from_conf,
)
from cnilib.config._parse import go_type
from cnilib.errors import ConfigError, ErrorCode

DATA = Path(__file__).resolve().parents[1] / "data" / "config"
SOURCE = "/etc/cni/net.d/10-test.conflist"


def _vectors(name: str) -> list[dict[str, Any]]:
    cases = json.loads((DATA / name).read_text(encoding="utf-8"))
    assert isinstance(cases, list)
    return cases


def _input(case: dict[str, Any]) -> bytes:
    if "raw_hex" in case:
        return bytes.fromhex(case["raw_hex"])
    value = case["input"]
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


def _ids(case: dict[str, Any]) -> str:
    return str(case["name"])


CONFLIST = _vectors("conflist.json")
CONF = _vectors("conf.json")


def _list_view(conflist: NetworkConfigList) -> dict[str, object]:
    return {
        "name": conflist.name,
        "cniVersion": conflist.cni_version,
        "disableCheck": conflist.disable_check,
        "disableGC": conflist.disable_gc,
        "loadOnlyInlinedPlugins": conflist.load_only_inlined_plugins,
        "cniVersions": list(conflist.cni_versions),
        "plugins": [p.type for p in conflist.plugins],
    }


def _conf_view(conf: PluginConf) -> dict[str, object]:
    return {
        "type": conf.type,
        "name": conf.name,
        "cniVersion": conf.cni_version,
        "capabilities": dict(conf.capabilities),
        "enabledCapabilities": list(conf.enabled_capabilities),
    }


class TestConflistVectors:
    """Every §1.1/§1.2/§1.3 rule, from tests/data/config/conflist.json."""

    @pytest.mark.parametrize("case", [c for c in CONFLIST if c["error"] is None], ids=_ids)
    def test_valid(self, case: dict[str, Any]) -> None:
        """Valid lists parse to the expected fields; the list keeps the original bytes."""
        data = _input(case)
        conflist = conflist_from_bytes(data)
        view = _list_view(conflist)
        actual = {key: view[key] for key in case["expect"]}
        assert (case["expect"], data) == (actual, conflist.bytes)

    @pytest.mark.parametrize("case", [c for c in CONFLIST if c["error"] is not None], ids=_ids)
    def test_invalid(self, case: dict[str, Any]) -> None:
        """Invalid lists raise ConfigError, code 7, with libcni's text and the JSON path."""
        with pytest.raises(ConfigError) as info:
            conflist_from_bytes(_input(case))
        err = info.value
        assert (True, ErrorCode.INVALID_NETWORK_CONFIG, case["field"], None) == (
            case["error"] in str(err),
            err.code,
            err.field,
            err.path,
        )

    @pytest.mark.parametrize("case", [c for c in CONFLIST if c["error"] is not None], ids=_ids)
    def test_invalid_with_source(self, case: dict[str, Any]) -> None:
        """With a source, the message is '<path>: <libcni text>[ (at <field>)]'."""
        with pytest.raises(ConfigError) as info:
            conflist_from_bytes(_input(case), source=SOURCE)
        err = info.value
        text = str(err)
        suffix = f" (at {case['field']})" if case["field"] else ""
        assert (SOURCE, True, True, True) == (
            err.path,
            text.startswith(f"{SOURCE}: "),
            text.endswith(suffix),
            case["error"] in text,
        )


class TestConfVectors:
    """Single plugin configurations (.conf), from tests/data/config/conf.json."""

    @pytest.mark.parametrize("case", [c for c in CONF if c["error"] is None], ids=_ids)
    def test_valid(self, case: dict[str, Any]) -> None:
        """Valid confs parse; bytes are the input bytes, raw the decoded object."""
        data = _input(case)
        conf = conf_from_bytes(data, source="/x.conf")
        view = _conf_view(conf)
        actual = {key: view[key] for key in case["expect"]}
        assert (case["expect"], data, json.loads(data), "/x.conf") == (
            actual,
            conf.bytes,
            dict(conf.raw),
            conf.source,
        )

    @pytest.mark.parametrize("case", [c for c in CONF if c["error"] is not None], ids=_ids)
    def test_invalid(self, case: dict[str, Any]) -> None:
        """Invalid confs raise ConfigError, code 7, with libcni's text and the JSON path."""
        with pytest.raises(ConfigError) as info:
            conf_from_bytes(_input(case), source="/x.conf")
        err = info.value
        assert (True, ErrorCode.INVALID_NETWORK_CONFIG, case["field"], "/x.conf") == (
            case["error"] in str(err),
            err.code,
            err.field,
            err.path,
        )


class TestPluginBytes:
    """§1.2.10: list entries are re-marshalled compact, key-sorted, with Go's escapes."""

    def test_compact_sorted(self) -> None:
        """An entry's bytes are compact JSON with sorted keys."""
        data = (
            b'{"name":"n","plugins":[ {"type" : "bridge",\n "mtu": 1400,'
            b' "ipam": {"type": "host-local", "a": 1}} ]}'
        )
        conflist = conflist_from_bytes(data)
        expected = b'{"ipam":{"a":1,"type":"host-local"},"mtu":1400,"type":"bridge"}'
        assert expected == conflist.plugins[0].bytes

    def test_html_escapes(self) -> None:
        """<, > and & are written as \\u003c, \\u003e, \\u0026; non-ASCII stays UTF-8."""
        data = json.dumps({"name": "n", "plugins": [{"type": "b", "note": "<a&b> é"}]}).encode()
        expected = '{"note":"\\u003ca\\u0026b\\u003e é","type":"b"}'.encode()
        assert expected == conflist_from_bytes(data).plugins[0].bytes

    def test_bytes_decode_to_raw(self) -> None:
        """Each entry's bytes decode to the same object as its raw mapping."""
        conflist = conflist_from_bytes(
            json.dumps(
                {
                    "name": "n",
                    "plugins": [{"type": "a", "x": [1, {"y": None}]}, {"type": "b", "z": 1.5}],
                }
            ).encode()
        )
        assert [dict(p.raw) for p in conflist.plugins] == [
            json.loads(p.bytes) for p in conflist.plugins
        ]

    def test_list_bytes_are_original(self) -> None:
        """The list's bytes are exactly what was given (cached as-is, §5.3)."""
        data = b'{"name":"n",  "plugins":[{"type":"b"}], "x-keep": true}\n'
        conflist = conflist_from_bytes(data)
        assert (data, True) == (conflist.bytes, conflist.raw["x-keep"])

    def test_source_on_plugins(self) -> None:
        """Every plugin of a list remembers the list's source."""
        conflist = conflist_from_bytes(
            b'{"name":"n","plugins":[{"type":"a"},{"type":"b"}]}', source=SOURCE
        )
        assert [SOURCE, SOURCE, SOURCE] == [conflist.source, *(p.source for p in conflist.plugins)]

    def test_plugin_own_name_and_version(self) -> None:
        """A list entry keeps its own name/cniVersion as parsed fields."""
        data = (
            b'{"name":"n","cniVersion":"1.0.0",'
            b'"plugins":[{"type":"a","name":"own","cniVersion":"0.3.1"}]}'
        )
        plugin = conflist_from_bytes(data).plugins[0]
        assert ("own", "0.3.1") == (plugin.name, plugin.cni_version)


class TestCapabilities:
    """Capability bookkeeping on plugins and lists."""

    def test_list_capabilities_deduplicated_in_order(self) -> None:
        """The list's capabilities are every enabled one, first-seen order, no duplicates."""
        data = json.dumps(
            {
                "name": "n",
                "plugins": [
                    {"type": "a", "capabilities": {"mac": True, "ips": False}},
                    {"type": "b", "capabilities": {"portMappings": True, "mac": True}},
                    {"type": "c"},
                ],
            }
        ).encode()
        assert ("mac", "portMappings") == conflist_from_bytes(data).capabilities


class TestExtraPlugins:
    """extra_plugins are appended after the inline ones."""

    def test_appended_after_inline(self) -> None:
        """Inline plugins come first, then the extras in order."""
        extra = (conf_from_bytes(b'{"type":"x"}'), conf_from_bytes(b'{"type":"y"}'))
        conflist = conflist_from_bytes(
            b'{"name":"n","plugins":[{"type":"a"}]}', extra_plugins=extra
        )
        assert ["a", "x", "y"] == [p.type for p in conflist.plugins]

    def test_extras_without_plugins_key(self) -> None:
        """A list without 'plugins' gets only the extras."""
        extra = (conf_from_bytes(b'{"type":"x"}'),)
        conflist = conflist_from_bytes(b'{"name":"n"}', extra_plugins=extra)
        assert ["x"] == [p.type for p in conflist.plugins]


class TestConflistFromConf:
    """§1.4: a single .conf wrapped into a list."""

    def test_wrap(self) -> None:
        """The list takes the conf's name and version; the plugin keeps its own keys."""
        conf = conf_from_bytes(
            b'{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"br0"}',
            source="/d/a.conf",
        )
        conflist = conflist_from_conf(conf)
        plugin = conflist.plugins[0]
        assert ("single", "0.4.0", "/d/a.conf", 1) == (
            conflist.name,
            conflist.cni_version,
            conflist.source,
            len(conflist.plugins),
        )
        assert {
            "cniVersion": "0.4.0",
            "name": "single",
            "type": "bridge",
            "bridge": "br0",
        } == json.loads(plugin.bytes)

    def test_list_bytes(self) -> None:
        """The list's bytes are Go's marshalled wrapper: compact, sorted keys."""
        conf = conf_from_bytes(b'{"type":"b","name":"n","cniVersion":"1.0.0"}')
        expected = (
            b'{"cniVersion":"1.0.0","name":"n",'
            b'"plugins":[{"cniVersion":"1.0.0","name":"n","type":"b"}]}'
        )
        assert expected == conflist_from_conf(conf).bytes

    def test_missing_name_and_version_become_empty(self) -> None:
        """Missing name and cniVersion wrap as '' (the key exists, so parsing succeeds)."""
        conflist = conflist_from_conf(conf_from_bytes(b'{"type":"b"}'))
        assert ("", "") == (conflist.name, conflist.cni_version)

    def test_inner_plugin_has_no_injected_keys(self) -> None:
        """The inner plugin does not gain name/cniVersion keys it did not have."""
        conflist = conflist_from_conf(conf_from_bytes(b'{"type":"b","mtu":9000}'))
        assert {"type": "b", "mtu": 9000} == json.loads(conflist.plugins[0].bytes)

    def test_too_high_version_kept(self) -> None:
        """The conf's version is kept verbatim (no cniVersions to choose from)."""
        conflist = conflist_from_conf(
            conf_from_bytes(b'{"type":"b","cniVersion":"9.9.9","name":"n"}')
        )
        assert "9.9.9" == conflist.cni_version


class TestGoType:
    """go_type reproduces Go's %T for values decoded into interface{}."""

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (None, "<nil>"),
            (True, "bool"),
            (1, "float64"),
            (1.5, "float64"),
            ("s", "string"),
            ([], "[]interface {}"),
            ({}, "map[string]interface {}"),
        ],
    )
    def test_names(self, value: object, expected: str) -> None:
        """Every JSON type gets Go's type name."""
        assert expected == go_type(value)


class TestLibcniDivergences:
    """Inputs where Go's decoder semantics matter (null as absent, typed dns, prevResult)."""

    def test_lone_surrogate_in_plugin(self) -> None:
        """A lone surrogate escape reads as U+FFFD, as Go decodes it."""
        conflist = conflist_from_bytes(b'{"name":"n","plugins":[{"type":"b","k":"\\ud800"}]}')
        assert "\ufffd" == conflist.plugins[0].raw["k"]

    def test_out_of_range_number_in_plugin(self) -> None:
        """A number beyond float64 in a list is a ConfigError, not a ValueError."""
        with pytest.raises(ConfigError, match="error parsing configuration list: "):
            conflist_from_bytes(b'{"name":"n","plugins":[{"type":"b","k":1e400}]}')

    def test_huge_integer(self) -> None:
        """A huge integer is a ConfigError, not a ValueError."""
        with pytest.raises(ConfigError):
            conflist_from_bytes(b'{"name":"n","plugins":[{"type":"b","k":' + b"9" * 5000 + b"}]}")

    @pytest.mark.parametrize(
        "plugin",
        [
            {"type": "b", "name": None},
            {"type": "b", "cniVersion": None},
            {"type": "b", "ipam": {"type": None}},
            {"type": "b", "capabilities": {"mac": None}},
        ],
        ids=["name", "cniVersion", "ipam.type", "capability"],
    )
    def test_null_typed_field_accepted(self, plugin: dict[str, Any]) -> None:
        """A JSON null in a typed string field is treated as absent, as Go does."""
        data = json.dumps({"name": "n", "plugins": [plugin]}).encode()
        assert ["b"] == [p.type for p in conflist_from_bytes(data).plugins]

    def test_null_type_is_missing_type(self) -> None:
        """'type': null is reported as missing 'type'."""
        with pytest.raises(ConfigError, match="missing 'type'"):
            conf_from_bytes(b'{"type":null}')

    @pytest.mark.parametrize(
        "value", [5, "x", [1], True], ids=["number", "string", "array", "bool"]
    )
    def test_prev_result_must_be_object(self, value: object) -> None:
        """A non-object prevResult is a ConfigError at $.prevResult."""
        data = json.dumps({"type": "b", "prevResult": value}).encode()
        with pytest.raises(ConfigError) as info:
            conf_from_bytes(data)
        assert "$.prevResult" == info.value.field

    @pytest.mark.parametrize(
        "dns",
        [
            {"nameservers": "8.8.8.8"},
            {"nameservers": [1]},
            {"domain": 5},
            {"search": "a"},
            {"options": [True]},
        ],
        ids=["nameservers-str", "nameservers-num", "domain-num", "search-str", "options-bool"],
    )
    def test_dns_fields_typed(self, dns: dict[str, object]) -> None:
        """dns sub-fields with the wrong type are a ConfigError."""
        with pytest.raises(ConfigError):
            conf_from_bytes(json.dumps({"type": "b", "dns": dns}).encode())


# --- property tests: any input gives a model or a CNIError -------------------------------

_KEYS = st.sampled_from(
    [
        "name",
        "cniVersion",
        "cniVersions",
        "disableCheck",
        "disableGC",
        "loadOnlyInlinedPlugins",
        "plugins",
        "type",
        "capabilities",
        "ipam",
        "dns",
        "prevResult",
        "runtimeConfig",
        "x",
    ]
)
_TEXT = st.text(st.characters(codec="utf-8"), max_size=8)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
    | st.sampled_from(["", "1.0.0", "1.1.0", "1.2.0", "0.4", "1..0", "true", "FALSE", "bridge"])
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_KEYS | _TEXT, children, max_size=6)
    ),
    max_leaves=30,
)


def _parses_or_cni_error(data: bytes) -> None:
    for parse in (conflist_from_bytes, conf_from_bytes):
        with contextlib.suppress(CNIError):
            parse(data)


class TestNeverCrashes:
    """Hypothesis: any JSON value or bytes yields a model or a CNIError, nothing else."""

    @settings(max_examples=300)
    @given(JSON_VALUES)
    def test_any_json_value(self, value: object) -> None:
        """Any JSON document parses or raises a CNIError subclass."""
        _parses_or_cni_error(json.dumps(value).encode())

    @settings(max_examples=300)
    @given(
        st.fixed_dictionaries(
            {"name": _SCALARS},
            optional={
                "cniVersion": _SCALARS,
                "cniVersions": st.lists(_SCALARS, max_size=4) | _SCALARS,
                "disableCheck": _SCALARS,
                "disableGC": _SCALARS,
                "loadOnlyInlinedPlugins": _SCALARS,
                "plugins": st.lists(JSON_VALUES, max_size=3) | _SCALARS,
            },
        )
    )
    def test_any_conflist_shape(self, value: dict[str, object]) -> None:
        """Conflist-shaped documents with arbitrary values parse or raise a CNIError."""
        _parses_or_cni_error(json.dumps(value).encode())

    @settings(max_examples=300)
    @given(st.binary(max_size=64))
    def test_any_bytes(self, data: bytes) -> None:
        """Arbitrary bytes parse or raise a CNIError subclass."""
        _parses_or_cni_error(data)

    @given(st.text(alphabet='{}[]":,0123456789.e-+ ntrufalsbx\\', max_size=40))
    def test_json_like_text(self, text: str) -> None:
        """JSON-like garbage parses or raises a CNIError subclass."""
        _parses_or_cni_error(text.encode())
