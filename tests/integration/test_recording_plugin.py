"""The recording CNI plugin of cnilib.testing, exec'd as a real process (no privileges needed)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cnilib.testing import RECORDING_PLUGIN, install_recording_plugin, read_recording

ALL = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def run(
    exe: Path | list[str],
    verb: str,
    stdin: Any,
    **env: str,
) -> subprocess.CompletedProcess[bytes]:
    """Invoke the plugin like a runtime would: CNI_* env and JSON on stdin."""
    argv = [str(exe)] if isinstance(exe, Path) else exe
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "RECORDER_"))}
    full_env = {
        **base,
        "CNI_COMMAND": verb,
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/run/netns/x",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/nowhere",
        **env,
    }
    data = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    return subprocess.run(argv, input=data, env=full_env, capture_output=True, timeout=30)


@pytest.fixture
def recorder(cnilib_cni_bin_dir: Path) -> Path:
    """The installed wrapper on the fixture's CNI_PATH directory."""
    return cnilib_cni_bin_dir / "recorder"


def conf(log: Path, version: str = "1.0.0", **recorder: Any) -> dict[str, Any]:
    """A plugin config for the recorder logging to *log*."""
    return {
        "cniVersion": version,
        "name": "net",
        "type": "recorder",
        "recorder": {"log": str(log), **recorder},
    }


class TestInstall:
    """install_recording_plugin writes a runnable wrapper; the source runs standalone too."""

    def test_wrapper_is_executable_with_isolated_shebang(self, recorder: Path) -> None:
        """The wrapper is mode 0755 and starts with an isolated-mode shebang."""
        assert recorder.stat().st_mode & 0o777 == 0o755
        assert recorder.read_text().splitlines()[0].endswith(" -IS")

    def test_source_runs_as_isolated_script(self, cnilib_recorder_log: Path) -> None:
        """``python3 -I -S recording_plugin.py`` works without cnilib importable."""
        argv = ["python3", "-I", "-S", str(RECORDING_PLUGIN)]
        proc = run(argv, "ADD", conf(cnilib_recorder_log))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["ips"][0]["address"] == "10.250.0.2/24"


class TestRecording:
    """Every invocation is logged with verb, CNI_* env, parsed stdin and program name."""

    def test_logs_each_invocation(self, recorder: Path, cnilib_recorder_log: Path) -> None:
        """Two calls give two lines, oldest first, with only CNI_* variables in env."""
        run(recorder, "ADD", conf(cnilib_recorder_log), CNI_ARGS="A=1")
        run(recorder, "DEL", conf(cnilib_recorder_log))
        entries = read_recording(cnilib_recorder_log)
        assert [e["verb"] for e in entries] == ["ADD", "DEL"]
        env = entries[0]["env"]
        assert isinstance(env, dict)
        assert env["CNI_ARGS"] == "A=1"
        assert all(k.startswith("CNI_") for k in env)
        assert entries[0]["stdin"] == conf(cnilib_recorder_log)
        assert entries[0]["argv0"] == "recorder"

    def test_non_json_stdin_is_logged_raw(self, recorder: Path, tmp_path: Path) -> None:
        """Unparseable stdin is recorded as text (log taken from RECORDER_LOG)."""
        log = tmp_path / "env.jsonl"
        run(recorder, "DEL", b"not json", RECORDER_LOG=str(log))
        assert read_recording(log)[0]["stdin"] == "not json"

    def test_missing_log_reads_empty(self, tmp_path: Path) -> None:
        """read_recording of a log never written is empty."""
        assert read_recording(tmp_path / "absent.jsonl") == []


class TestDefaults:
    """Without an instruction the recorder behaves like a well-mannered plugin."""

    @pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
    def test_add_pre_030_uses_ip4_layout(
        self, recorder: Path, cnilib_recorder_log: Path, version: str
    ) -> None:
        """ADD for 0.1.0/0.2.0 answers ``ip4``."""
        out = json.loads(run(recorder, "ADD", conf(cnilib_recorder_log, version)).stdout)
        assert out == {"cniVersion": version, "ip4": {"ip": "10.250.0.2/24"}}

    @pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    def test_add_answers_in_config_version(
        self, recorder: Path, cnilib_recorder_log: Path, version: str
    ) -> None:
        """ADD answers CNI_IFNAME in CNI_NETNS and one IP, in the config's version."""
        out = json.loads(run(recorder, "ADD", conf(cnilib_recorder_log, version)).stdout)
        assert out["cniVersion"] == version
        assert out["interfaces"] == [{"name": "eth0", "sandbox": "/run/netns/x"}]
        assert out["ips"][0]["address"] == "10.250.0.2/24"
        assert ("version" in out["ips"][0]) == (version < "1.0.0")

    def test_add_echoes_prev_result(self, recorder: Path, cnilib_recorder_log: Path) -> None:
        """A chained ADD passes prevResult through unchanged."""
        prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.250.9.9/24"}]}
        proc = run(recorder, "ADD", {**conf(cnilib_recorder_log), "prevResult": prev})
        assert json.loads(proc.stdout) == prev

    @pytest.mark.parametrize("verb", ["DEL", "CHECK", "GC", "STATUS"])
    def test_other_verbs_succeed_silently(
        self, recorder: Path, cnilib_recorder_log: Path, verb: str
    ) -> None:
        """DEL, CHECK, GC and STATUS exit 0 with empty stdout."""
        proc = run(recorder, verb, conf(cnilib_recorder_log))
        assert (proc.returncode, proc.stdout) == (0, b"")


class TestVersion:
    """VERSION answers from stdin, env, or the program name."""

    def test_all_versions_by_default(self, recorder: Path) -> None:
        """With no hint it supports all seven versions."""
        out = json.loads(run(recorder, "VERSION", {"cniVersion": "1.1.0"}).stdout)
        assert out == {"cniVersion": "1.1.0", "supportedVersions": ALL}

    def test_v040_name_limits_versions(self, cnilib_cni_bin_dir: Path) -> None:
        """A plugin named ``*-v040`` supports 0.1.0 to 0.4.0 only."""
        exe = install_recording_plugin(cnilib_cni_bin_dir, "old-v040")
        out = json.loads(run(exe, "VERSION", {"cniVersion": "1.1.0"}).stdout)
        assert out["supportedVersions"] == ALL[:5]

    def test_env_overrides_name(self, cnilib_cni_bin_dir: Path) -> None:
        """RECORDER_VERSIONS wins over the program name."""
        exe = install_recording_plugin(cnilib_cni_bin_dir, "old-v040")
        proc = run(exe, "VERSION", {"cniVersion": "1.1.0"}, RECORDER_VERSIONS="1.0.0, 1.1.0")
        assert json.loads(proc.stdout)["supportedVersions"] == ["1.0.0", "1.1.0"]

    def test_stdin_overrides_env(self, recorder: Path, cnilib_recorder_log: Path) -> None:
        """``recorder.versions`` wins over RECORDER_VERSIONS."""
        c = conf(cnilib_recorder_log, versions=["0.4.0"])
        proc = run(recorder, "VERSION", c, RECORDER_VERSIONS="1.0.0")
        assert json.loads(proc.stdout)["supportedVersions"] == ["0.4.0"]


class TestInstructions:
    """Per-verb instructions in ``recorder`` script failures and odd outputs."""

    def test_error_object_and_exit_1(self, recorder: Path, cnilib_recorder_log: Path) -> None:
        """``error`` prints the object and exits 1."""
        err = {"code": 7, "msg": "bad", "details": "d"}
        proc = run(recorder, "ADD", conf(cnilib_recorder_log, ADD={"error": err}))
        assert (proc.returncode, json.loads(proc.stdout)) == (1, err)

    def test_result_with_exit_code(self, recorder: Path, cnilib_recorder_log: Path) -> None:
        """``result`` is printed verbatim and ``exit`` sets the status."""
        res = {"cniVersion": "1.0.0"}
        proc = run(recorder, "CHECK", conf(cnilib_recorder_log, CHECK={"result": res, "exit": 3}))
        assert (proc.returncode, json.loads(proc.stdout)) == (3, res)

    def test_stderr_and_exit(self, recorder: Path, cnilib_recorder_log: Path) -> None:
        """``stderr`` goes to stderr only; stdout stays empty."""
        proc = run(recorder, "DEL", conf(cnilib_recorder_log, DEL={"stderr": "boom", "exit": 1}))
        assert (proc.returncode, proc.stdout, proc.stderr) == (1, b"", b"boom")

    def test_raw_stdout_and_bytes(self, recorder: Path, cnilib_recorder_log: Path) -> None:
        """``stdout`` and ``stdout_bytes_hex`` are written as given."""
        text = run(recorder, "ADD", conf(cnilib_recorder_log, ADD={"stdout": "{oops"}))
        raw = run(recorder, "ADD", conf(cnilib_recorder_log, ADD={"stdout_bytes_hex": "ff00fe"}))
        assert (text.stdout, raw.stdout) == (b"{oops", b"\xff\x00\xfe")

    def test_stdout_size_pads_valid_json(self, recorder: Path, cnilib_recorder_log: Path) -> None:
        """``stdout_size`` pads the default result with spaces to exactly N bytes."""
        proc = run(recorder, "ADD", conf(cnilib_recorder_log, ADD={"stdout_size": 200_000}))
        assert len(proc.stdout) == 200_000
        assert json.loads(proc.stdout)["ips"][0]["address"] == "10.250.0.2/24"

    def test_signal_kills_after_logging(self, recorder: Path, cnilib_recorder_log: Path) -> None:
        """``signal: KILL`` kills the plugin, after its invocation was logged."""
        proc = run(recorder, "DEL", conf(cnilib_recorder_log, DEL={"signal": "KILL"}))
        assert proc.returncode == -9
        assert [e["verb"] for e in read_recording(cnilib_recorder_log)] == ["DEL"]

    def test_sleep_delays(self, recorder: Path, cnilib_recorder_log: Path) -> None:
        """``sleep`` makes the call last at least that long."""
        with pytest.raises(subprocess.TimeoutExpired):
            subprocess.run(
                [str(recorder)],
                input=json.dumps(conf(cnilib_recorder_log, ADD={"sleep": 5})).encode(),
                env={**os.environ, "CNI_COMMAND": "ADD"},
                capture_output=True,
                timeout=0.5,
            )
