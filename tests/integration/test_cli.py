"""``python -m cnilib``: cnitool parity and error reporting, run as a real process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cnilib.cli._commands import cnitool_container_id
from cnilib.testing import read_recording


@pytest.fixture
def conf_dir(tmp_path: Path, cnilib_recorder_log: Path) -> Path:
    """A NETCONFPATH with one recorder network, "net1"."""
    directory = tmp_path / "net.d"
    directory.mkdir()
    doc = {
        "cniVersion": "1.1.0",
        "name": "net1",
        "plugins": [
            {
                "type": "recorder",
                "capabilities": {"portMappings": True},
                "recorder": {"log": str(cnilib_recorder_log)},
            }
        ],
    }
    (directory / "10-net1.conflist").write_text(json.dumps(doc))
    return directory


def run_cli(
    *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cnilib`` with ``env`` added to a CNI_*-free environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    return subprocess.run(
        [sys.executable, "-m", "cnilib", *argv],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        check=False,
        timeout=timeout,
    )


@pytest.fixture
def cli_env(conf_dir: Path, cnilib_cni_bin_dir: Path, cnilib_cache_dir: Path) -> dict[str, str]:
    """cnitool's environment pointing at the test conf dir and recorder."""
    return {"NETCONFPATH": str(conf_dir), "CNI_PATH": str(cnilib_cni_bin_dir)}


def cache_args(cache_dir: Path) -> list[str]:
    return ["--cache-dir", str(cache_dir)]


class TestCnitoolParity:
    def test_container_id_matches_cnitool(self) -> None:
        """The derived container ID is cnitool's: 10 bytes of sha512 of the absolute path."""
        expected = "cnitool-" + hashlib.sha512(b"/var/run/netns/probe-a").hexdigest()[:20]

        assert expected == cnitool_container_id("/var/run/netns/probe-a")

    def test_go_cache_file_name_matches(self) -> None:
        """The ID derived for the Go-written cache's netns is the one in its file name."""
        assert "cnitool-f5a5ada46aa61a4e2abe" == cnitool_container_id("/var/run/netns/probe-a")

    def test_add_check_del_cycle(
        self, cli_env: dict[str, str], cnilib_cache_dir: Path, cnilib_recorder_log: Path
    ) -> None:
        """add prints the result; env CNI_ARGS, CAP_ARGS, CNI_IFNAME reach the plugin."""
        env = {
            **cli_env,
            "CNI_ARGS": "IgnoreUnknown=1;K=V",
            "CAP_ARGS": '{"portMappings":[{"hostPort":80}]}',
            "CNI_IFNAME": "net7",
        }

        add = run_cli(*cache_args(cnilib_cache_dir), "add", "net1", "/run/netns/demo", env=env)
        check = run_cli(*cache_args(cnilib_cache_dir), "check", "net1", "/run/netns/demo", env=env)
        delete = run_cli(*cache_args(cnilib_cache_dir), "del", "net1", "/run/netns/demo", env=env)

        assert (0, 0, 0) == (add.returncode, check.returncode, delete.returncode), (
            add.stderr + check.stderr + delete.stderr
        )
        result = json.loads(add.stdout)
        assert "1.1.0" == result["cniVersion"]
        assert add.stdout.startswith('{\n    "cniVersion"')  # Go's 4-space Print()
        (call, *_) = read_recording(cnilib_recorder_log)
        env_seen: dict[str, Any] = call["env"]  # type: ignore[assignment]
        assert "IgnoreUnknown=1;K=V" == env_seen["CNI_ARGS"]
        assert "net7" == env_seen["CNI_IFNAME"]
        assert cnitool_container_id("/run/netns/demo") == env_seen["CNI_CONTAINERID"]
        stdin: dict[str, Any] = call["stdin"]  # type: ignore[assignment]
        assert {"portMappings": [{"hostPort": 80}]} == stdin["runtimeConfig"]
        assert ["ADD", "CHECK", "DEL"] == [c["verb"] for c in read_recording(cnilib_recorder_log)]

    def test_container_id_override_and_file_path(
        self,
        cli_env: dict[str, str],
        cnilib_cache_dir: Path,
        conf_dir: Path,
        cnilib_recorder_log: Path,
    ) -> None:
        """--container-id wins, and a config file path works in place of a name."""
        path = str(conf_dir / "10-net1.conflist")

        proc = run_cli(
            *cache_args(cnilib_cache_dir),
            "add",
            path,
            "/run/netns/x",
            "--container-id",
            "abc",
            env=cli_env,
        )

        assert 0 == proc.returncode, proc.stderr
        assert (cnilib_cache_dir / "results" / "net1-abc-eth0").exists()

    def test_gc_and_status(
        self, cli_env: dict[str, str], cnilib_cache_dir: Path, cnilib_recorder_log: Path
    ) -> None:
        """gc removes every cached attachment of the network; status asks each plugin."""
        run_cli(*cache_args(cnilib_cache_dir), "add", "net1", "/run/netns/a", env=cli_env)

        gc = run_cli(*cache_args(cnilib_cache_dir), "gc", "net1", env=cli_env)
        status = run_cli(*cache_args(cnilib_cache_dir), "status", "net1", env=cli_env)

        assert (0, 0) == (gc.returncode, status.returncode), gc.stderr + status.stderr
        assert ["ADD", "DEL", "GC", "STATUS"] == [
            c["verb"] for c in read_recording(cnilib_recorder_log)
        ]
        assert [] == os.listdir(cnilib_cache_dir / "results")


class TestErrors:
    def test_user_error_is_one_line_without_traceback(
        self, cli_env: dict[str, str], cnilib_cache_dir: Path
    ) -> None:
        """A missing network is one clear line on stderr and exit status 1."""
        proc = run_cli(*cache_args(cnilib_cache_dir), "add", "nope", "/run/netns/x", env=cli_env)

        assert 1 == proc.returncode
        assert "Traceback" not in proc.stderr
        assert 1 == len(proc.stderr.strip().splitlines())
        assert 'no net configuration with name "nope"' in proc.stderr

    def test_json_error_object(self, cli_env: dict[str, str], cnilib_cache_dir: Path) -> None:
        """--json prints the CNI error object with the spec code."""
        proc = run_cli(
            *cache_args(cnilib_cache_dir),
            "--json",
            "add",
            "net1",
            "/run/netns/x",
            "-i",
            "a/b",
            env=cli_env,
        )

        assert 1 == proc.returncode
        error = json.loads(proc.stdout)
        assert 4 == error["code"]
        assert "interface name contains / or : or whitespace characters" == error["msg"]

    @pytest.mark.parametrize(
        ("env_key", "value", "text"),
        [
            ("CAP_ARGS", "{bad", "CAP_ARGS must be a JSON object"),
            ("CNI_ARGS", "A=1;B", "invalid CNI_ARGS pair"),
        ],
    )
    def test_bad_environment(
        self, cli_env: dict[str, str], cnilib_cache_dir: Path, env_key: str, value: str, text: str
    ) -> None:
        """Malformed CAP_ARGS or CNI_ARGS are user errors, not tracebacks."""
        proc = run_cli(
            *cache_args(cnilib_cache_dir),
            "add",
            "net1",
            "/run/netns/x",
            env={**cli_env, env_key: value},
        )

        assert 1 == proc.returncode
        assert text in proc.stderr
        assert "Traceback" not in proc.stderr

    def test_broken_config_names_file_and_field(
        self, cli_env: dict[str, str], cnilib_cache_dir: Path, conf_dir: Path
    ) -> None:
        """A malformed config file is reported with its path and the JSON path of the field."""
        (conf_dir / "20-bad.conflist").write_text('{"name":"bad","plugins":[{"type":""}]}')

        proc = run_cli(
            *cache_args(cnilib_cache_dir),
            "validate",
            str(conf_dir / "20-bad.conflist"),
            env=cli_env,
        )

        assert 1 == proc.returncode
        assert str(conf_dir / "20-bad.conflist") in proc.stderr
        assert "$.plugins[0].type" in proc.stderr


class TestExtraCommands:
    def test_version(self, cli_env: dict[str, str]) -> None:
        """version prints the plugin's VERSION answer as JSON."""
        proc = run_cli("version", "recorder", env=cli_env)

        assert 0 == proc.returncode, proc.stderr
        assert "1.1.0" in json.loads(proc.stdout)["supportedVersions"]

    def test_validate_ok(self, cli_env: dict[str, str]) -> None:
        """validate of a good network reports its version and capabilities."""
        proc = run_cli("validate", "net1", env=cli_env)

        assert 0 == proc.returncode, proc.stderr
        assert "capabilities: portMappings" in proc.stdout

    def test_validate_lists_every_problem(self, cli_env: dict[str, str], tmp_path: Path) -> None:
        """validate lists schema problems and plugin problems together."""
        path = tmp_path / "x.conflist"
        path.write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "bad name!",
                    "plugins": [
                        {
                            "type": "recorder",
                            "ipam": {"type": "host-local", "subnet": "10.1.2.3/33"},
                        },
                        {"type": "ghost"},
                    ],
                }
            )
        )

        proc = run_cli("validate", str(path), env=cli_env)

        assert 1 == proc.returncode
        assert "$.name" in proc.stderr
        assert "$.plugins[0].ipam.subnet" in proc.stderr
        assert 'failed to find plugin "ghost"' in proc.stderr

    def test_validate_unloadable_file_lists_schema_problems(
        self, cli_env: dict[str, str], tmp_path: Path
    ) -> None:
        """When the loader refuses a file, validate still lists every schema problem in it."""
        path = tmp_path / "y.conflist"
        path.write_text(
            json.dumps(
                {
                    "name": "y",
                    "disableCheck": "maybe",
                    "plugins": [{"type": "a", "capabilities": {"mac": "yes"}}, {"type": ""}],
                }
            )
        )

        proc = run_cli("validate", str(path), env=cli_env)

        assert 1 == proc.returncode
        for field in ("$.disableCheck", "$.plugins[0].capabilities.mac", "$.plugins[1].type"):
            assert field in proc.stderr

    def test_list_reports_networks_and_problems(
        self, cli_env: dict[str, str], conf_dir: Path
    ) -> None:
        """list shows loadable networks and names each broken file, exit 1 if any."""
        (conf_dir / "05-broken.conflist").write_text("{")

        proc = run_cli("list", env=cli_env)

        assert 1 == proc.returncode
        assert proc.stdout.startswith("net1\t1.1.0\trecorder\t")
        assert "05-broken.conflist" in proc.stderr

    def test_help_imports_nothing_heavy(self) -> None:
        """--help loads neither pyroute2, jsonschema nor cattrs."""
        code = (
            "import sys\nfrom cnilib.cli import main\ntry:\n main(['--help'])\n"
            "except SystemExit:\n pass\n"
            "heavy = ('pyroute2', 'jsonschema', 'cattrs', 'attrs')\n"
            "print(sorted(m for m in heavy if m in sys.modules))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )

        assert "[]" == proc.stdout.strip().splitlines()[-1]


def _hostile_conf_dir(directory: Path) -> Path:
    """A conf dir with networks whose names are hostile, plus one good network."""
    directory.mkdir()
    names = {
        "10-dots.conflist": "../../bad",
        "20-ansi.conflist": "x\x1b[2Jy",
        "30-lines.conflist": "a\nb\rc",
        "40-good.conflist": "good",
    }
    for file_name, name in names.items():
        doc = {"cniVersion": "1.0.0", "name": name, "plugins": [{"type": "t\x1b[31m"}]}
        (directory / file_name).write_text(json.dumps(doc))
    return directory


class TestHostileNames:
    """Names and paths from a conf dir never reach the terminal raw."""

    def test_list_escapes_and_flags_invalid_names(self, tmp_path: Path) -> None:
        """list shows every network on one line, escaped, with invalid names flagged; exit 1."""
        conf = _hostile_conf_dir(tmp_path / "net.d")

        proc = run_cli("--conf-dir", str(conf), "list")

        assert 1 == proc.returncode
        assert "\x1b" not in proc.stdout + proc.stderr
        assert "\r" not in proc.stdout + proc.stderr
        lines = proc.stdout.splitlines()
        assert 4 == len(lines), proc.stdout
        by_name = {line.split("\t")[0]: line.split("\t") for line in lines}
        assert {"../../bad", "x\\x1b[2Jy", "a\\nb\\rc", "good"} == set(by_name)
        assert ["good", "1.0.0", "t\\x1b[31m", str(conf / "40-good.conflist")] == by_name["good"]
        for name in ("../../bad", "x\\x1b[2Jy", "a\\nb\\rc"):
            assert 5 == len(by_name[name]), by_name[name]
            assert (
                "invalid network name: invalid characters found in network name"
                == (by_name[name][4])
            )
        assert "10-dots.conflist" in proc.stderr

    def test_list_of_valid_names_exits_zero(self, tmp_path: Path) -> None:
        """Valid names are not flagged and list exits 0."""
        conf = tmp_path / "net.d"
        conf.mkdir()
        doc = {"cniVersion": "1.0.0", "name": "ok-1.a_b", "plugins": [{"type": "x"}]}
        (conf / "10.conflist").write_text(json.dumps(doc))

        proc = run_cli("--conf-dir", str(conf), "list")

        assert (0, "", 4) == (proc.returncode, proc.stderr, len(proc.stdout.split("\t")))

    def test_list_escapes_file_names(self, tmp_path: Path) -> None:
        """A file name with control characters or invalid UTF-8 is printed escaped."""
        conf = tmp_path / "net.d"
        conf.mkdir()
        doc = {"cniVersion": "1.0.0", "name": "n1", "plugins": [{"type": "x"}]}
        (conf / "10-\x1b]0;owned\x07.conflist").write_text(json.dumps(doc))
        doc2 = {"cniVersion": "1.0.0", "name": "n2", "plugins": [{"type": "x"}]}
        Path(os.fsdecode(os.fsencode(conf) + b"/20-\xff.conflist")).write_text(json.dumps(doc2))

        proc = run_cli("--conf-dir", str(conf), "list")

        assert "Traceback" not in proc.stderr
        assert 0 == proc.returncode, proc.stderr
        assert [
            f"{conf}/10-\\x1b]0;owned\\x07.conflist",
            f"{conf}/20-\\xff.conflist",
        ] == [line.split("\t")[3] for line in proc.stdout.splitlines()]

    def test_error_message_is_escaped(self, tmp_path: Path) -> None:
        """An error naming a hostile network is one escaped line on stderr."""
        conf = _hostile_conf_dir(tmp_path / "net.d")

        proc = run_cli("--conf-dir", str(conf), "status", "nope\x1b[2J\nfake line")

        assert 1 == proc.returncode
        assert "\x1b" not in proc.stderr
        assert [
            f'cnilib status: error: no net configuration with name "nope\\x1b[2J\\nfake line" '
            f"in {conf}"
        ] == proc.stderr.splitlines()

    def test_json_error_stays_valid_json(self, tmp_path: Path) -> None:
        """With --json the error object is valid JSON carrying the raw name."""
        conf = _hostile_conf_dir(tmp_path / "net.d")

        proc = run_cli("--conf-dir", str(conf), "--json", "status", "nope\x1b[2J")

        assert 1 == proc.returncode
        assert "\x1b" not in proc.stdout
        assert (
            f'no net configuration with name "nope\x1b[2J" in {conf}'
            == (json.loads(proc.stdout)["msg"])
        )

    def test_invalid_name_by_name_is_a_config_error(self, tmp_path: Path) -> None:
        """Using a network whose name is invalid names the file and the field, escaped."""
        conf = _hostile_conf_dir(tmp_path / "net.d")

        proc = run_cli("--conf-dir", str(conf), "status", "x\x1b[2Jy")

        assert 1 == proc.returncode
        assert [
            f"cnilib status: error: {conf}/20-ansi.conflist: invalid network name "
            '"x\\x1b[2Jy": invalid characters found in network name (at $.name)'
        ] == proc.stderr.splitlines()

    def test_validate_escapes_header_and_problems(self, tmp_path: Path) -> None:
        """validate prints a hostile name and path escaped."""
        conf = _hostile_conf_dir(tmp_path / "net.d")
        path = conf / "20-ansi.conflist"

        proc = run_cli("--conf-dir", str(conf), "validate", str(path))

        assert 1 == proc.returncode
        assert "\x1b" not in proc.stderr
        assert proc.stderr.startswith(f'network "x\\x1b[2Jy" ({path}): ')

    def test_verbose_log_is_escaped(self, tmp_path: Path) -> None:
        """-v log lines about skipped files are escaped too."""
        conf = tmp_path / "net.d"
        conf.mkdir()
        (conf / "05-\x1b[2J.conflist").write_text("{")

        proc = run_cli("--conf-dir", str(conf), "-v", "status", "nope")

        assert 1 == proc.returncode
        assert "\x1b" not in proc.stderr
        assert "05-\\x1b[2J.conflist" in proc.stderr


class TestUnreadableConfigs:
    """Special files and oversize files in a conf dir: problems, not hangs."""

    def test_fifo_in_conf_dir(self, tmp_path: Path) -> None:
        """list and validate name a FIFO as not a regular file and do not block on it."""
        conf = tmp_path / "net.d"
        conf.mkdir()
        fifo = conf / "05-fifo.conflist"
        os.mkfifo(fifo)
        doc = {"cniVersion": "1.0.0", "name": "good", "plugins": [{"type": "x"}]}
        (conf / "10-good.conflist").write_text(json.dumps(doc))

        listed = run_cli("--conf-dir", str(conf), "list", timeout=20)
        validated = run_cli("--conf-dir", str(conf), "validate", str(fifo), timeout=20)

        assert (1, 1) == (listed.returncode, validated.returncode)
        assert listed.stdout.startswith("good\t1.0.0\tx\t")
        assert [f"problem: {fifo}: error reading {fifo}: not a regular file"] == (
            listed.stderr.splitlines()
        )
        assert [
            f"cnilib validate: error: {fifo}: error reading {fifo}: not a regular file"
        ] == validated.stderr.splitlines()

    def test_oversize_file_in_conf_dir(self, tmp_path: Path) -> None:
        """list names an oversize file with the limit and still lists the others."""
        conf = tmp_path / "net.d"
        conf.mkdir()
        with (conf / "05-big.conflist").open("wb") as handle:
            handle.truncate(64 * 1024 * 1024)
        doc = {"cniVersion": "1.0.0", "name": "good", "plugins": [{"type": "x"}]}
        (conf / "10-good.conflist").write_text(json.dumps(doc))

        proc = run_cli("--conf-dir", str(conf), "list", timeout=20)

        assert 1 == proc.returncode
        assert proc.stdout.startswith("good\t")
        assert [
            f"problem: {conf}/05-big.conflist: file is 67108864 bytes, "
            "more than the limit of 4194304 bytes"
        ] == proc.stderr.splitlines()

    def test_help_states_limits_and_exit_status(self) -> None:
        """--help gives the loader's limits (as the library defines them) and exit statuses."""
        from cnilib.config import MAX_CONFIG_BYTES, MAX_PLUGINS

        proc = run_cli("--help")

        text = " ".join(proc.stdout.split())
        assert 0 == proc.returncode
        assert f"at most {MAX_CONFIG_BYTES // 2**20} MiB with at most {MAX_PLUGINS} plugins" in text
        assert "1 a cnilib error, or problems found by validate or list" in text
        assert "a network whose name is not a valid network name" in text
