"""The runtime's verb semantics (spec-notes §3), driven through real plugin
processes: the recording plugin, exec'd by the subprocess executor."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.testing import read_recording

Conf = Callable[..., cnilib.NetworkConfigList]


@pytest.fixture
def make_conf(cnilib_recorder_log: Path) -> Conf:
    """Build a conflist of recorder plugins; each dict is merged into one plugin entry."""

    def make(
        *plugins: dict[str, Any], version: str = "1.1.0", name: str = "net1", **top: Any
    ) -> cnilib.NetworkConfigList:
        entries = []
        for extra in plugins or ({},):
            recorder = {"log": str(cnilib_recorder_log), **extra.pop("recorder", {})}
            entries.append({"type": "recorder", "recorder": recorder, **extra})
        doc = {"cniVersion": version, "name": name, "plugins": entries, **top}
        return cnilib.conflist_from_bytes(json.dumps(doc).encode())

    return make


@pytest.fixture
def cni(cnilib_cni_bin_dir: Path, cnilib_cache_dir: Path) -> cnilib.CNI:
    """A runtime whose CNI_PATH holds the recorder, caching into a tmp dir."""
    return cnilib.CNI([str(cnilib_cni_bin_dir)], cache_dir=cnilib_cache_dir, timeout=20)


RT = cnilib.RuntimeConf(container_id="ctr1", netns="/run/netns/ctr1", ifname="eth0")

RESULT_A = {
    "cniVersion": "1.1.0",
    "interfaces": [{"name": "eth0", "sandbox": "/run/netns/ctr1"}],
    "ips": [{"address": "10.250.0.5/24", "gateway": "10.250.0.1", "interface": 0}],
}


def wire(result: cnilib.Result) -> Any:
    """A result's JSON, loosely typed for assertions."""
    return json.loads(result.to_json())


def calls(log: Path, verb: str | None = None) -> list[dict[str, Any]]:
    """The recorded invocations, optionally of one verb."""
    return [c for c in read_recording(log) if verb is None or c["verb"] == verb]


class TestAdd:
    def test_chain_threads_prev_result(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path
    ) -> None:
        """ADD runs plugins in order; each gets the previous result, the first none."""
        conf = make_conf(
            {"recorder": {"ADD": {"result": RESULT_A}}, "tag": "first"}, {"tag": "second"}
        )

        result = cni.add_network_list(conf, RT)

        adds = calls(cnilib_recorder_log, "ADD")
        assert ["first", "second"] == [c["stdin"]["tag"] for c in adds]
        assert "prevResult" not in adds[0]["stdin"]
        assert RESULT_A["ips"] == adds[1]["stdin"]["prevResult"]["ips"]
        assert result is not None
        assert "10.250.0.5/24" == wire(result)["ips"][0]["address"]

    def test_injects_name_version_and_environment(
        self,
        cni: cnilib.CNI,
        make_conf: Conf,
        cnilib_recorder_log: Path,
        cnilib_cni_bin_dir: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """List name and version overwrite the plugin's; CNI_* env replaces inherited values."""
        monkeypatch.setenv("CNI_IFNAME", "bogus")
        monkeypatch.setenv("UNRELATED", "kept")
        conf = make_conf({"name": "plugin-own", "cniVersion": "0.1.0"}, version="1.0.0")
        rt = cnilib.RuntimeConf(
            "ctr1", "/run/netns/ctr1", "eth3", args=(("K1", "V1"), ("K2", "V2"))
        )

        cni.add_network_list(conf, rt)

        (call,) = calls(cnilib_recorder_log, "ADD")
        assert ("net1", "1.0.0") == (call["stdin"]["name"], call["stdin"]["cniVersion"])
        env = call["env"]
        assert {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "ctr1",
            "CNI_NETNS": "/run/netns/ctr1",
            "CNI_IFNAME": "eth3",
            "CNI_ARGS": "K1=V1;K2=V2",
            "CNI_PATH": str(cnilib_cni_bin_dir),
        } == {k: env[k] for k in env if k.startswith("CNI_")}

    def test_capability_args_only_to_declaring_plugins(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path
    ) -> None:
        """runtimeConfig carries only declared capabilities and replaces a static one only then."""
        conf = make_conf(
            {"capabilities": {"portMappings": True, "mac": False}, "runtimeConfig": {"old": 1}},
            {"runtimeConfig": {"static": True}},
        )
        rt = cnilib.RuntimeConf(
            "ctr1",
            "/run/netns/ctr1",
            "eth0",
            capability_args={"portMappings": [{"hostPort": 8080}], "mac": "aa:bb:cc:dd:ee:ff"},
        )

        cni.add_network_list(conf, rt)

        first, second = (c["stdin"] for c in calls(cnilib_recorder_log, "ADD"))
        assert {"portMappings": [{"hostPort": 8080}]} == first["runtimeConfig"]
        assert {"static": True} == second["runtimeConfig"]
        assert {"portMappings": True, "mac": False} == first["capabilities"]

    def test_caches_final_result_in_go_format(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_cache_dir: Path
    ) -> None:
        """A successful ADD writes a 0600 cniCacheV1 entry holding the list bytes in base64."""
        conf = make_conf({"recorder": {"ADD": {"result": RESULT_A}}})
        rt = cnilib.RuntimeConf(
            "ctr1", "/run/netns/ctr1", "eth0", args=(("A", "b"),), capability_args={"x": 1}
        )

        cni.add_network_list(conf, rt)

        path = cnilib_cache_dir / "results" / "net1-ctr1-eth0"
        entry = json.loads(path.read_bytes())
        assert [
            "kind",
            "containerId",
            "config",
            "ifName",
            "networkName",
            "netns",
            "cniArgs",
            "capabilityArgs",
            "result",
        ] == list(entry)
        assert conf.bytes == base64.b64decode(entry["config"])
        assert [["A", "b"]] == entry["cniArgs"]
        assert 0o600 == stat.S_IMODE(path.stat().st_mode)
        assert 0o700 == stat.S_IMODE(path.parent.stat().st_mode)
        assert [] == os.listdir(path.parent.parent / ".cnilib-tmp")

    def test_failure_wraps_error_keeps_code_and_caches_nothing(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path, cnilib_cache_dir: Path
    ) -> None:
        """A failing plugin stops the chain; its error is wrapped as libcni does, code kept."""
        conf = make_conf(
            {},
            {
                "name": "second",
                "recorder": {"ADD": {"error": {"code": 7, "msg": "bad", "details": "d"}}},
            },
            {},
        )

        with pytest.raises(cnilib.PluginError) as info:
            cni.add_network_list(conf, RT)

        assert 'plugin type="recorder" name="second" failed (add): bad; d' == str(info.value)
        assert 7 == info.value.code
        assert 2 == len(calls(cnilib_recorder_log, "ADD"))
        assert not (cnilib_cache_dir / "results" / "net1-ctr1-eth0").exists()

    def test_undecodable_result_is_a_clear_error(self, cni: cnilib.CNI, make_conf: Conf) -> None:
        """Exit 0 with garbage on stdout is a decode error naming the plugin (code 6)."""
        conf = make_conf({"recorder": {"ADD": {"stdout": "this is not json"}}})

        with pytest.raises(cnilib.CNIError) as info:
            cni.add_network_list(conf, RT)

        assert str(info.value).startswith('plugin type="recorder" failed (add): ')
        assert cnilib.ErrorCode.DECODING_FAILURE == info.value.code

    def test_result_without_version_takes_config_version(
        self, cni: cnilib.CNI, make_conf: Conf
    ) -> None:
        """A result lacking cniVersion is read as the config's version (libcni fixup)."""
        bare = {"ips": [{"address": "10.250.0.9/24"}]}
        conf = make_conf({"recorder": {"ADD": {"result": bare}}}, version="0.4.0")

        result = cni.add_network_list(conf, RT)

        assert result is not None
        assert "0.4.0" == result.cni_version


class TestDelete:
    def test_reverse_order_with_cached_prev_result(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path, cnilib_cache_dir: Path
    ) -> None:
        """DEL runs plugins in reverse, each with the cached result; the entry is removed."""
        conf = make_conf({"tag": "a", "recorder": {"ADD": {"result": RESULT_A}}}, {"tag": "b"})
        cni.add_network_list(conf, RT)

        cni.delete_network_list(conf, RT)

        dels = calls(cnilib_recorder_log, "DEL")
        assert ["b", "a"] == [c["stdin"]["tag"] for c in dels]
        assert all(RESULT_A["ips"] == c["stdin"]["prevResult"]["ips"] for c in dels)
        assert not (cnilib_cache_dir / "results" / "net1-ctr1-eth0").exists()

    def test_corrupt_cache_is_dropped_and_del_goes_on(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path, cnilib_cache_dir: Path
    ) -> None:
        """An unreadable cache entry is removed; DEL still runs, without prevResult."""
        conf = make_conf()
        results = cnilib_cache_dir / "results"
        results.mkdir(mode=0o700)
        (results / "net1-ctr1-eth0").write_text('{"kind":"cniCacheV1","config":')

        cni.delete_network_list(conf, RT)

        (call,) = calls(cnilib_recorder_log, "DEL")
        assert "prevResult" not in call["stdin"]
        assert not (results / "net1-ctr1-eth0").exists()

    def test_old_versions_get_no_prev_result(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path
    ) -> None:
        """Below 0.4.0 DEL neither reads the cache nor sends prevResult."""
        conf = make_conf(version="0.3.1")
        cni.add_network_list(conf, RT)

        cni.delete_network_list(conf, RT)

        (call,) = calls(cnilib_recorder_log, "DEL")
        assert "prevResult" not in call["stdin"]

    def test_failure_keeps_cache_entry(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path, cnilib_cache_dir: Path
    ) -> None:
        """A failing DEL stops, is wrapped with '(delete)', and leaves the entry for a retry."""
        conf = make_conf({}, {"recorder": {"DEL": {"error": {"code": 11, "msg": "busy"}}}})
        cni.add_network_list(conf, RT)

        with pytest.raises(cnilib.TryAgainLaterError) as info:
            cni.delete_network_list(conf, RT)

        assert 'plugin type="recorder" failed (delete): busy' == str(info.value)
        assert 1 == len(calls(cnilib_recorder_log, "DEL"))
        assert (cnilib_cache_dir / "results" / "net1-ctr1-eth0").exists()

    @pytest.mark.parametrize(
        ("container_id", "ifname"),
        [("../../etc", "eth0"), ("ctr1", "../x"), ("", "eth0"), ("ctr1", "a" * 16)],
    )
    def test_names_are_validated_before_any_plugin(
        self,
        cni: cnilib.CNI,
        make_conf: Conf,
        cnilib_recorder_log: Path,
        container_id: str,
        ifname: str,
    ) -> None:
        """Every verb, not only ADD, refuses IDs and names that could escape the cache dir."""
        rt = cnilib.RuntimeConf(container_id, "/run/netns/x", ifname)
        for verb in (cni.delete_network_list, cni.check_network_list, cni.add_network_list):
            with pytest.raises(cnilib.InvalidArgumentError):
                verb(make_conf(), rt)
        assert [] == calls(cnilib_recorder_log)


class TestCheck:
    def test_passes_cached_result_to_every_plugin(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path
    ) -> None:
        """CHECK runs plugins in order, each with the same cached result."""
        conf = make_conf({"tag": "a", "recorder": {"ADD": {"result": RESULT_A}}}, {"tag": "b"})
        cni.add_network_list(conf, RT)

        cni.check_network_list(conf, RT)

        checks = calls(cnilib_recorder_log, "CHECK")
        assert ["a", "b"] == [c["stdin"]["tag"] for c in checks]
        assert all(RESULT_A["ips"] == c["stdin"]["prevResult"]["ips"] for c in checks)

    @pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", ""])
    def test_refused_below_040(self, cni: cnilib.CNI, make_conf: Conf, version: str) -> None:
        """CHECK is refused for configs older than 0.4.0 with libcni's text."""
        with pytest.raises(cnilib.CheckNotSupportedError) as info:
            cni.check_network_list(make_conf(version=version), RT)

        expected = f'configuration version "{version}" does not support the CHECK command'
        assert expected == str(info.value)

    def test_disable_check_runs_nothing(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path
    ) -> None:
        """disableCheck (also as the string "true") skips every plugin."""
        cni.check_network_list(make_conf(disableCheck="TRUE"), RT)

        assert [] == calls(cnilib_recorder_log, "CHECK")

    def test_corrupt_cache_is_reported(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_cache_dir: Path
    ) -> None:
        """CHECK does not guess: a corrupt entry is an error naming the network and file."""
        results = cnilib_cache_dir / "results"
        results.mkdir(mode=0o700)
        (results / "net1-ctr1-eth0").write_text("{not json")

        with pytest.raises(cnilib.CacheError) as info:
            cni.check_network_list(make_conf(), RT)

        assert str(info.value).startswith('failed to get network "net1" cached result: ')
        assert str(results / "net1-ctr1-eth0") in str(info.value)

    def test_plugin_failure_names_plugin(self, cni: cnilib.CNI, make_conf: Conf) -> None:
        """A CHECK failure keeps the plugin's code and names the plugin."""
        conf = make_conf({"recorder": {"CHECK": {"error": {"code": 101, "msg": "drift"}}}})
        cni.add_network_list(conf, RT)

        with pytest.raises(cnilib.PluginError) as info:
            cni.check_network_list(conf, RT)

        assert 101 == info.value.code
        assert 'plugin type="recorder" failed (check): drift' == str(info.value)


class TestGC:
    def _attach(self, cni: cnilib.CNI, conf: cnilib.NetworkConfigList, *ids: str) -> None:
        for cid in ids:
            cni.add_network_list(conf, cnilib.RuntimeConf(cid, f"/run/netns/{cid}", "eth0"))

    def test_deletes_stale_attachments_then_sends_gc(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path
    ) -> None:
        """Cached attachments not in the valid list get DEL; plugins get GC with both keys."""
        conf = make_conf()
        self._attach(cni, conf, "keep", "stale")

        cni.gc_network_list(conf, [("keep", "eth0")])

        assert ["stale"] == [c["env"]["CNI_CONTAINERID"] for c in calls(cnilib_recorder_log, "DEL")]
        (gc,) = calls(cnilib_recorder_log, "GC")
        listed = [{"containerID": "keep", "ifname": "eth0"}]
        assert listed == gc["stdin"]["cni.dev/valid-attachments"]
        assert listed == gc["stdin"]["cni.dev/attachments"]
        assert "" == gc["env"]["CNI_CONTAINERID"]
        assert ["keep"] == [a.container_id for a in cni.cached_attachments()]

    def test_other_networks_are_untouched(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path
    ) -> None:
        """GC of one network never deletes another network's attachments."""
        self._attach(cni, make_conf(name="other"), "c1")

        cni.gc_network_list(make_conf(), [])

        assert [] == calls(cnilib_recorder_log, "DEL")
        assert ["other"] == [a.network_name for a in cni.cached_attachments()]

    def test_plugin_gc_only_from_110(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path
    ) -> None:
        """Below 1.1.0 stale attachments are still deleted but no GC verb is sent."""
        conf = make_conf(version="1.0.0")
        self._attach(cni, conf, "stale")

        cni.gc_network_list(conf, None)

        assert 1 == len(calls(cnilib_recorder_log, "DEL"))
        assert [] == calls(cnilib_recorder_log, "GC")

    def test_disable_gc(self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path) -> None:
        """disableGC skips both phases."""
        conf = make_conf(disableGC=True)
        self._attach(cni, conf, "stale")

        cni.gc_network_list(conf, [])

        assert [] == calls(cnilib_recorder_log, "DEL") + calls(cnilib_recorder_log, "GC")

    def test_failures_are_collected(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path
    ) -> None:
        """Every plugin gets GC even after one fails; all failures come back in a GCError."""
        conf = make_conf(
            {"tag": "a", "recorder": {"GC": {"error": {"code": 5, "msg": "io"}}}},
            {"tag": "b", "recorder": {"GC": {"stderr": "oops", "exit": 2}}},
            {"tag": "c"},
        )

        with pytest.raises(cnilib.GCError) as info:
            cni.gc_network_list(conf, [])

        assert 3 == len(calls(cnilib_recorder_log, "GC"))
        messages = [str(e) for e in info.value.exceptions]
        assert "failed to GC plugin recorder: io" == messages[0]
        assert messages[1].startswith('failed to GC plugin recorder: netplugin failed: "oops"')


class TestStatus:
    def test_not_ready_raises_code_50(self, cni: cnilib.CNI, make_conf: Conf) -> None:
        """STATUS surfaces a plugin's code 50 as PluginNotAvailableError."""
        conf = make_conf({"recorder": {"STATUS": {"error": {"code": 50, "msg": "no IPs left"}}}})

        with pytest.raises(cnilib.PluginNotAvailableError) as info:
            cni.status_network_list(conf)

        assert 50 == info.value.code

    def test_skipped_below_110(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path
    ) -> None:
        """STATUS is a no-op success for configs older than 1.1.0."""
        conf = make_conf(
            {"recorder": {"STATUS": {"error": {"code": 50, "msg": "x"}}}}, version="1.0.0"
        )

        cni.status_network_list(conf)

        assert [] == calls(cnilib_recorder_log)

    def test_sends_no_attachment_parameters(
        self, cni: cnilib.CNI, make_conf: Conf, cnilib_recorder_log: Path
    ) -> None:
        """STATUS has name and cniVersion only: no container, netns or ifname."""
        cni.status_network_list(make_conf())

        (call,) = calls(cnilib_recorder_log, "STATUS")
        assert ("", "", "") == tuple(
            call["env"][k] for k in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME")
        )
        assert "prevResult" not in call["stdin"]


class TestValidateAndVersion:
    def test_returns_capabilities(self, cni: cnilib.CNI, make_conf: Conf) -> None:
        """A valid list returns its enabled capabilities, de-duplicated."""
        conf = make_conf(
            {"capabilities": {"portMappings": True, "ips": False}},
            {"capabilities": {"portMappings": True, "mac": True}},
        )

        assert ("portMappings", "mac") == cni.validate_network_list(conf)

    def test_reports_every_problem(
        self, cni: cnilib.CNI, cnilib_cni_bin_dir: Path, make_conf: Conf
    ) -> None:
        """Unsupported versions and missing plugins are all reported together."""
        from cnilib.testing import install_recording_plugin

        install_recording_plugin(cnilib_cni_bin_dir, "old-v040")
        conf = make_conf({"type": "old-v040"}, {"type": "missing"}, version="1.0.0")

        with pytest.raises(cnilib.ValidationGroupError) as info:
            cni.validate_network_list(conf)

        texts = [str(e) for e in info.value.exceptions]
        assert 'plugin old-v040 does not support config version "1.0.0"' == texts[0]
        assert texts[1].startswith('plugin missing: failed to find plugin "missing" in path [')

    def test_version_info(self, cni: cnilib.CNI) -> None:
        """VERSION is decoded into the supported list."""
        info = cni.get_version_info("recorder")

        assert "1.1.0" in info.supported_versions
        assert info.supports("0.3.1")


class TestExecErrors:
    def _add(
        self, cni: cnilib.CNI, make_conf: Conf, instruction: dict[str, Any]
    ) -> cnilib.CNIError:
        with pytest.raises(cnilib.CNIError) as info:
            cni.add_network_list(make_conf({"recorder": {"ADD": instruction}}), RT)
        return info.value

    def test_stderr_only_failure(self, cni: cnilib.CNI, make_conf: Conf) -> None:
        """A failure with only stderr quotes it, with code 0 and the exit status."""
        err = self._add(cni, make_conf, {"stderr": "no such bridge", "stdout": "", "exit": 1})

        assert str(err).endswith('netplugin failed: "no such bridge": exit status 1')
        assert 0 == err.code

    def test_silent_failure(self, cni: cnilib.CNI, make_conf: Conf) -> None:
        """A failure with no output at all still says how the plugin ended."""
        err = self._add(cni, make_conf, {"stdout": "", "exit": 3})

        assert str(err).endswith("netplugin failed with no error message: exit status 3")

    def test_killed_by_signal(self, cni: cnilib.CNI, make_conf: Conf) -> None:
        """A plugin killed by a signal is reported as Go does ('signal: killed')."""
        err = self._add(cni, make_conf, {"signal": "KILL"})

        assert str(err).endswith("netplugin failed with no error message: signal: killed")

    def test_garbage_error_output(self, cni: cnilib.CNI, make_conf: Conf) -> None:
        """Non-JSON stdout on failure is quoted in the error, not swallowed."""
        err = self._add(cni, make_conf, {"stdout": "panic: oh no", "exit": 2})

        assert isinstance(err, cnilib.PluginOutputError)
        assert 'error parsing its diagnostic message "panic: oh no"' in str(err)

    def test_error_carries_stderr_tail(self, cni: cnilib.CNI, make_conf: Conf) -> None:
        """A plugin's stderr is attached to its error (the tail, bounded)."""
        err = self._add(
            cni, make_conf, {"stderr": "x" * 10000 + "END", "error": {"code": 7, "msg": "bad"}}
        )

        assert isinstance(err, cnilib.PluginError)
        assert err.stderr.endswith(b"END")
        assert len(err.stderr) <= 4096

    def test_stderr_is_logged(
        self, cni: cnilib.CNI, make_conf: Conf, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A successful plugin's stderr goes to the cnilib.plugin logger."""
        caplog.set_level(logging.DEBUG, logger="cnilib.plugin")

        cni.add_network_list(make_conf({"recorder": {"ADD": {"stderr": "hello from plugin"}}}), RT)

        assert any("hello from plugin" in r.getMessage() for r in caplog.records)

    def test_timeout_kills_plugin(
        self, cnilib_cni_bin_dir: Path, cnilib_cache_dir: Path, make_conf: Conf
    ) -> None:
        """A hung plugin is killed at the deadline; the error names plugin, verb and time."""
        cni = cnilib.CNI([str(cnilib_cni_bin_dir)], cache_dir=cnilib_cache_dir, timeout=0.5)
        started = time.monotonic()

        with pytest.raises(cnilib.PluginTimeoutError) as info:
            cni.add_network_list(make_conf({"recorder": {"ADD": {"sleep": 30}}}), RT)

        assert time.monotonic() - started < 10
        assert 'plugin "recorder" (ADD) timed out after' in str(info.value)
        assert info.value.elapsed >= 0.5

    @pytest.mark.parametrize(
        ("plugin_type", "message"),
        [
            ("../recorder", "invalid plugin name: ../recorder"),
            ("/usr/bin/true", "invalid plugin name: /usr/bin/true"),
            ("nope", 'failed to find plugin "nope" in path ['),
        ],
    )
    def test_plugin_lookup(
        self, cni: cnilib.CNI, make_conf: Conf, plugin_type: str, message: str
    ) -> None:
        """Plugin names with a path separator are refused (CVE-2021-20206); missing ones named."""
        with pytest.raises(cnilib.PluginNotFoundError) as info:
            cni.add_network_list(make_conf({"type": plugin_type}), RT)

        assert message in str(info.value)


class TestCachedQueries:
    def test_cached_result_converted_to_list_version(
        self, cni: cnilib.CNI, make_conf: Conf
    ) -> None:
        """cached_result returns the cached result in the list's version."""
        cni.add_network_list(make_conf({"recorder": {"ADD": {"result": RESULT_A}}}), RT)

        result = cni.cached_result(make_conf(version="0.4.0"), RT)

        assert result is not None
        assert "0.4.0" == result.cni_version
        assert "4" == wire(result)["ips"][0]["version"]

    def test_cached_config_returns_bytes_and_args(self, cni: cnilib.CNI, make_conf: Conf) -> None:
        """cached_config gives back the exact list bytes and the runtime args used."""
        conf = make_conf()
        rt = cnilib.RuntimeConf(
            "ctr1", "/run/netns/ctr1", "eth0", args=(("A", "1"),), capability_args={"mac": "x"}
        )
        cni.add_network_list(conf, rt)

        cached = cni.cached_config(conf, RT)

        assert cached is not None
        assert conf.bytes == cached[0]
        assert (("A", "1"),) == cached[1].args
        assert {"mac": "x"} == dict(cached[1].capability_args)

    def test_nothing_cached(self, cni: cnilib.CNI, make_conf: Conf) -> None:
        """With no entry, both queries return None."""
        assert cni.cached_result(make_conf(), RT) is None
        assert cni.cached_config(make_conf(), RT) is None

    def test_attachments_by_container(self, cni: cnilib.CNI, make_conf: Conf) -> None:
        """cached_attachments filters by container ID."""
        for cid in ("a1", "b2"):
            cni.add_network_list(make_conf(), cnilib.RuntimeConf(cid, "/x", "eth0"))

        assert ["a1"] == [a.container_id for a in cni.cached_attachments("a1")]
        assert ["a1", "b2"] == [a.container_id for a in cni.cached_attachments()]


class TestGoWrittenCache:
    def test_del_driven_by_go_cache_file(
        self, cni: cnilib.CNI, cnilib_cache_dir: Path, cnilib_recorder_log: Path
    ) -> None:
        """A cache file written by Go libcni drives DEL: its result arrives as prevResult."""
        go_file = Path(__file__).parent.parent / "data" / "cache" / "cniCacheV1" / "go-bridge.json"
        results = cnilib_cache_dir / "results"
        results.mkdir(mode=0o700)
        target = results / "pa-cnitool-f5a5ada46aa61a4e2abe-eth0"
        target.write_bytes(go_file.read_bytes())
        doc = {
            "cniVersion": "1.0.0",
            "name": "pa",
            "plugins": [{"type": "recorder", "recorder": {"log": str(cnilib_recorder_log)}}],
        }
        conf = cnilib.conflist_from_bytes(json.dumps(doc).encode())
        rt = cnilib.RuntimeConf("cnitool-f5a5ada46aa61a4e2abe", "/var/run/netns/probe-a", "eth0")

        cni.delete_network_list(conf, rt)

        (call,) = calls(cnilib_recorder_log, "DEL")
        prev = call["stdin"]["prevResult"]
        assert [{"address": "10.88.10.2/24", "gateway": "10.88.10.1", "interface": 2}] == prev[
            "ips"
        ]
        assert "cnipa0" == prev["interfaces"][0]["name"]
        assert not target.exists()
