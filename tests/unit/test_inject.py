"""Tests for cnilib.config injection: the request config a plugin reads on stdin (§1.5).

Vectors live in tests/data/config/inject.json:
``[{"name", "plugin": {...}, "listName", "cniVersion", "prevResult"?,
"capabilityArgs"?, "expect": {...}}]``; an absent key means "not given".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from cnilib._json import JSONValue, go_dumps
from cnilib.config import (
    PluginConf,
    conf_from_bytes,
    inject_conf,
    request_config,
    runtime_config_for,
)
from cnilib.errors import ConfigError, ErrorCode

DATA = Path(__file__).resolve().parents[1] / "data" / "config"
VECTORS: list[dict[str, Any]] = json.loads((DATA / "inject.json").read_text(encoding="utf-8"))


def _plugin(raw: dict[str, Any], source: str | None = None) -> PluginConf:
    return conf_from_bytes(json.dumps(raw).encode(), source=source)


def _request(case: dict[str, Any]) -> bytes:
    return request_config(
        _plugin(case["plugin"]),
        name=case["listName"],
        cni_version=case["cniVersion"],
        prev_result=case.get("prevResult"),
        capability_args=case.get("capabilityArgs"),
    )


class TestRequestConfigVectors:
    """§1.5 rules, from tests/data/config/inject.json."""

    @pytest.mark.parametrize("case", VECTORS, ids=lambda c: str(c["name"]))
    def test_request(self, case: dict[str, Any]) -> None:
        """The request decodes to the expected object."""
        assert case["expect"] == json.loads(_request(case))

    @pytest.mark.parametrize("case", VECTORS, ids=lambda c: str(c["name"]))
    def test_compact_sorted(self, case: dict[str, Any]) -> None:
        """The bytes are compact, key-sorted JSON with Go escapes (InjectConf's json.Marshal)."""
        out = _request(case)
        assert go_dumps(json.loads(out)).encode() == out


class TestRequestConfig:
    """Specific injection behaviours."""

    def test_exact_bytes(self) -> None:
        """A typical request, byte for byte."""
        plugin = _plugin({"type": "bridge", "bridge": "cni0", "capabilities": {"mac": True}})
        out = request_config(
            plugin,
            name="net",
            cni_version="1.0.0",
            prev_result={"cniVersion": "1.0.0", "ips": []},
            capability_args={"mac": "aa:bb:cc:dd:ee:ff", "ips": ["10.0.0.2/24"]},
        )
        expected = (
            b'{"bridge":"cni0","capabilities":{"mac":true},"cniVersion":"1.0.0","name":"net",'
            b'"prevResult":{"cniVersion":"1.0.0","ips":[]},"runtimeConfig":{"mac":"aa:bb:cc:dd:ee:ff"},'
            b'"type":"bridge"}'
        )
        assert expected == out

    def test_no_prev_result_key_when_not_given(self) -> None:
        """Without prev_result no prevResult key appears (first ADD plugin)."""
        assert "prevResult" not in json.loads(
            request_config(_plugin({"type": "b"}), name="n", cni_version="")
        )

    def test_capabilities_passed_through(self) -> None:
        """capabilities stays in the request, as libcni sends it (§1.5.6, libcni-compat)."""
        plugin = _plugin({"type": "b", "capabilities": {"mac": True, "ips": False}})
        out = json.loads(request_config(plugin, name="n", cni_version="1.0.0"))
        assert {"mac": True, "ips": False} == out["capabilities"]

    def test_args_not_injected(self) -> None:
        """No args key is added (§1.5.7)."""
        out = json.loads(request_config(_plugin({"type": "b"}), name="n", cni_version="1.0.0"))
        assert {"type", "name", "cniVersion"} == set(out)

    def test_extra_keys_added_last(self) -> None:
        """extra adds verb-specific keys (GC's valid-attachments) and overrides everything else."""
        extra: dict[str, JSONValue] = {
            "cni.dev/valid-attachments": [{"containerID": "c", "ifname": "eth0"}],
            "name": "override",
        }
        out = json.loads(
            request_config(_plugin({"type": "b"}), name="n", cni_version="1.1.0", extra=extra)
        )
        assert ([{"containerID": "c", "ifname": "eth0"}], "override") == (
            out["cni.dev/valid-attachments"],
            out["name"],
        )

    def test_plugin_not_modified(self) -> None:
        """Injection works on a copy: the plugin's raw mapping and bytes are unchanged."""
        plugin = _plugin({"type": "b", "capabilities": {"mac": True}})
        before = (dict(plugin.raw), plugin.bytes)
        request_config(
            plugin, name="n", cni_version="1.0.0", prev_result={}, capability_args={"mac": "x"}
        )
        assert before == (dict(plugin.raw), plugin.bytes)

    def test_html_characters_escaped(self) -> None:
        """<, > and & in pass-through values are written with Go's escapes."""
        out = request_config(_plugin({"type": "b", "k": "<&>"}), name="n", cni_version="1.0.0")
        assert b'"k":"\\u003c\\u0026\\u003e"' in out

    @given(
        st.dictionaries(
            st.text(max_size=6).map(lambda k: "x-" + k),
            st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=6),
            max_size=6,
        )
    )
    def test_unknown_keys_preserved(self, extra_keys: dict[str, Any]) -> None:
        """Every key the runtime does not own reaches the plugin with its value."""
        plugin = _plugin({"type": "b", **extra_keys})
        out = json.loads(request_config(plugin, name="n", cni_version="1.0.0"))
        assert {"type": "b", "name": "n", "cniVersion": "1.0.0", **extra_keys} == out


class TestRuntimeConfigFor:
    """runtime_config_for selects the capability arguments a plugin enabled."""

    def test_only_enabled_and_given(self) -> None:
        """Enabled capabilities with an argument; disabled or unadvertised ones are dropped."""
        plugin = _plugin(
            {"type": "b", "capabilities": {"mac": True, "ips": False, "bandwidth": True}}
        )
        args: dict[str, JSONValue] = {
            "mac": "m",
            "ips": ["i"],
            "portMappings": [],
            "bandwidth": {"ingressRate": 1},
        }
        assert {"mac": "m", "bandwidth": {"ingressRate": 1}} == runtime_config_for(plugin, args)

    def test_no_capabilities(self) -> None:
        """A plugin without capabilities gets nothing."""
        assert {} == runtime_config_for(_plugin({"type": "b"}), {"mac": "m"})


class TestInjectConf:
    """inject_conf follows Go's InjectConf."""

    def test_sets_keys_and_reparses(self) -> None:
        """Keys are set; the result is a PluginConf re-parsed from compact sorted bytes."""
        plugin = _plugin({"type": "b", "z": 1}, source="/d/x.conf")
        injected = inject_conf(
            plugin, {"name": "n", "cniVersion": "1.0.0", "capabilities": {"mac": True}}
        )
        assert (
            b'{"capabilities":{"mac":true},"cniVersion":"1.0.0","name":"n","type":"b","z":1}',
            "n",
            "1.0.0",
            ("mac",),
            "/d/x.conf",
        ) == (
            injected.bytes,
            injected.name,
            injected.cni_version,
            injected.enabled_capabilities,
            injected.source,
        )

    def test_overwrites_existing(self) -> None:
        """An existing key is replaced."""
        injected = inject_conf(_plugin({"type": "b", "name": "old"}), {"name": "new"})
        assert "new" == injected.name

    def test_empty_key(self) -> None:
        """An empty key is libcni's 'keys cannot be empty'."""
        with pytest.raises(ConfigError, match=r"^keys cannot be empty$") as info:
            inject_conf(_plugin({"type": "b"}), {"": 1})
        assert ErrorCode.INVALID_NETWORK_CONFIG == info.value.code

    def test_nil_value(self) -> None:
        """A None value is libcni's "key '<k>' value must not be nil"."""
        with pytest.raises(ConfigError, match=r"^key 'runtimeConfig' value must not be nil$"):
            inject_conf(_plugin({"type": "b"}), {"runtimeConfig": None})

    def test_type_still_required(self) -> None:
        """The output is re-parsed, so removing the type is an error."""
        with pytest.raises(ConfigError, match="missing 'type'"):
            inject_conf(_plugin({"type": "b"}), {"type": ""})

    def test_original_unchanged(self) -> None:
        """The original plugin is not modified."""
        plugin = _plugin({"type": "b"})
        inject_conf(plugin, {"x": 1})
        assert {"type": "b"} == dict(plugin.raw)
