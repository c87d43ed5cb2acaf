"""``python -m cnilib -v`` / ``-vv``: a line per plugin call, or the whole exchange.

The recording plugin touches nothing, so it runs here without a namespace.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnilib.cli import main


@pytest.fixture
def cli_env(tmp_path: Path, cnilib_cni_bin_dir: Path) -> dict[str, str]:
    """A conf dir with "net1" (one recorder plugin) and the recorder on CNI_PATH."""
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    doc = {
        "cniVersion": "1.1.0",
        "name": "net1",
        "plugins": [
            {"type": "recorder", "recorder": {"DEL": {"error": {"code": 7, "msg": "no bridge"}}}}
        ],
    }
    (conf_dir / "10-net1.conflist").write_text(json.dumps(doc))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "TRACE"))}
    return {**base, "NETCONFPATH": str(conf_dir), "CNI_PATH": str(cnilib_cni_bin_dir)}


def run_cli(env: dict[str, str], cache: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cnilib", "--cache-dir", str(cache), *argv],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def _lines(stderr: str, logger: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"{logger}: ")]


class TestVerbose:
    def test_v_shows_one_line_per_call(
        self, cli_env: dict[str, str], tmp_path: Path, cnilib_cni_bin_dir: Path
    ) -> None:
        """-v: each call's path, verdict and duration on cnilib.invoke; no exchange."""
        proc = run_cli(cli_env, tmp_path / "cache", "-v", "add", "net1", "/run/netns/x")

        assert 0 == proc.returncode, proc.stderr
        path = cnilib_cni_bin_dir / "recorder"
        (call,) = _lines(proc.stderr, "cnilib.invoke")
        assert call.startswith(f'cnilib.invoke: plugin "recorder" ADD {path}: ok in ')
        assert call.endswith(" ms")
        assert [] == _lines(proc.stderr, "cnilib.invoke.exchange")
        (operation,) = _lines(proc.stderr, "cnilib.runtime")
        assert operation.startswith("cnilib.runtime: add net1 cnitool-")

    def test_v_shows_a_failure_with_its_code(self, cli_env: dict[str, str], tmp_path: Path) -> None:
        """-v: a failed call says failed, with the plugin's error code."""
        run_cli(cli_env, tmp_path / "cache", "add", "net1", "/run/netns/x")

        proc = run_cli(cli_env, tmp_path / "cache", "-v", "del", "net1", "/run/netns/x")

        assert 1 == proc.returncode
        (call,) = _lines(proc.stderr, "cnilib.invoke")
        assert ": failed (code 7) in " in call
        assert call.endswith("no bridge")

    def test_vv_shows_the_exchange(self, cli_env: dict[str, str], tmp_path: Path) -> None:
        """-vv: the CNI_* environment, stdin, exit status and stdout of each call."""
        proc = run_cli(
            cli_env,
            tmp_path / "cache",
            "-vv",
            "add",
            "net1",
            "/run/netns/x",
            "--container-id",
            "c1",
        )

        assert 0 == proc.returncode, proc.stderr
        exchange = _lines(proc.stderr, "cnilib.invoke.exchange")
        prefix = 'cnilib.invoke.exchange: plugin "recorder" ADD '
        env, stdin, status, stdout = (line.split(": ", 2)[2] for line in exchange)
        assert all(line.startswith(prefix) for line in exchange)
        assert "CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_NETNS=/run/netns/x" in env
        assert "PATH=" not in env.replace("CNI_PATH=", "")  # only CNI_* variables
        assert "net1" == json.loads(stdin)["name"]
        assert "0" == status
        assert "10.250.0.2/24" == json.loads(stdout)["ips"][0]["address"]

    def test_in_process_run_restores_logging(
        self,
        cli_env: dict[str, str],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """main() with -vv shows the exchange, then leaves logging as it found it
        (the exchange logger back at its opt-in INFO, no handler left behind)."""
        for name in ("NETCONFPATH", "CNI_PATH"):
            monkeypatch.setenv(name, cli_env[name])
        library, exchange = logging.getLogger("cnilib"), logging.getLogger("cnilib.invoke.exchange")
        before = (list(library.handlers), library.level, exchange.level)

        status = main(
            ["--cache-dir", str(tmp_path / "cache"), "-vv", "add", "net1", "/run/netns/x"]
        )

        assert 0 == status
        assert 4 == len(_lines(capsys.readouterr().err, "cnilib.invoke.exchange"))
        assert before == (list(library.handlers), library.level, exchange.level)
        assert logging.INFO == exchange.level

    def test_plugin_text_is_escaped(self, cli_env: dict[str, str], tmp_path: Path) -> None:
        """-vv: what a plugin prints reaches the terminal escaped."""
        conf = Path(cli_env["NETCONFPATH"]) / "10-net1.conflist"
        doc = json.loads(conf.read_text())
        doc["plugins"][0]["recorder"]["STATUS"] = {"stdout": "evil\x1b[2J"}
        conf.write_text(json.dumps(doc))

        proc = run_cli(cli_env, tmp_path / "cache", "-vv", "status", "net1")

        assert 0 == proc.returncode, proc.stderr
        assert "\x1b" not in proc.stderr
        assert "stdout: evil\\x1b[2J" in proc.stderr

    def test_quiet_without_v(self, cli_env: dict[str, str], tmp_path: Path) -> None:
        """Without -v nothing is logged."""
        proc = run_cli(cli_env, tmp_path / "cache", "add", "net1", "/run/netns/x")

        assert (0, "") == (proc.returncode, proc.stderr)

    def test_help_imports_no_telemetry(self) -> None:
        """``python -m cnilib --help`` imports neither OpenTelemetry nor prometheus_client."""
        code = (
            "import sys, runpy\n"
            "sys.argv = ['cnilib', '--help']\n"
            "try:\n    runpy.run_module('cnilib', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'prometheus'))))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )

        assert proc.stdout.splitlines()[-1] == "[]"
