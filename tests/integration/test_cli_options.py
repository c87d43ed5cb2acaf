"""The CLI's options, called in-process through ``cnilib.cli.main`` (plugins
are the recorder, run as a real process): global options on either side of
the command, ``--version``, ``--plugins`` / ``CNILIB_PLUGINS`` values,
cnitool's refusals (empty CNI_ARGS parts, empty CNI_IFNAME), JSON output of
``list`` and ``validate``, and plugin error texts."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnilib import InProcessExecutor
from cnilib.cli import DEFAULT_PLUGIN_SOURCE, PLUGIN_SOURCES, _parser, main
from cnilib.cli._commands import NO_PLUGIN_PATH, _executor
from cnilib.invoke import ChainExecutor, SubprocessExecutor
from cnilib.testing import install_recording_plugin, read_recording


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "recorder.jsonl"


@pytest.fixture
def conf_dir(tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """NETCONFPATH with network "net1" (one recorder); CNI_PATH holding the recorder."""
    directory = tmp_path / "net.d"
    directory.mkdir()
    doc = {
        "cniVersion": "1.1.0",
        "name": "net1",
        "plugins": [
            {
                "type": "recorder",
                "capabilities": {"portMappings": True},
                "recorder": {"log": str(log)},
            }
        ],
    }
    (directory / "10-net1.conflist").write_text(json.dumps(doc))
    install_recording_plugin(tmp_path / "bin")
    monkeypatch.setenv("NETCONFPATH", str(directory))
    monkeypatch.setenv("CNI_PATH", str(tmp_path / "bin"))
    for name in ("CNI_ARGS", "CAP_ARGS", "CNI_IFNAME", "CNILIB_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    return directory


@pytest.fixture(autouse=True)
def _restore_cnilib_logger() -> Iterator[None]:
    """-v adds a handler to the "cnilib" logger; take it off again."""
    logger = logging.getLogger("cnilib")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def parsed(*argv: str) -> dict[str, object]:
    """What main() would run with: the parsed options, -v counts added up."""
    args = _parser().parse_args(argv)
    args.verbose += vars(args).pop("verbose_after_command", 0)
    return vars(args)


class TestGlobalOptionsAnywhere:
    def test_both_placements_parse_alike(self, conf_dir: Path) -> None:
        """Global options after the command mean what they mean before it."""
        options = [
            "--json",
            "--cache-dir",
            "/tmp/c",
            "--conf-dir",
            "/tmp/n",
            "--cni-path",
            "/tmp/b",
            "--plugins",
            "in-process",
            "--timeout",
            "5",
            "--owner",
            "me",
            "-vv",
        ]
        before = parsed(*options, "add", "mynet", "/run/netns/x")
        after = parsed("add", "mynet", "/run/netns/x", *options)

        assert before == after
        assert (True, "/tmp/c", "in-process", 5.0, "me", 2) == (
            before["json"],
            before["cache_dir"],
            before["plugins"],
            before["timeout"],
            before["owner"],
            before["verbose"],
        )

    def test_after_the_command_wins_and_absent_keeps(self, conf_dir: Path) -> None:
        """An option given on both sides takes the later value; one given only
        before the command is not reset by the command's defaults."""
        args = parsed("--cache-dir", "/a", "--owner", "x", "gc", "net1", "--cache-dir", "/b")

        assert ("/b", "x", False) == (args["cache_dir"], args["owner"], args["json"])

    def test_verbose_counts_on_both_sides(self, conf_dir: Path) -> None:
        """-v before and after the command add up."""
        assert 3 == parsed("-v", "status", "net1", "-vv")["verbose"]
        assert 0 == parsed("status", "net1")["verbose"]

    @pytest.mark.parametrize("after", [False, True])
    def test_cache_dir_and_json_take_effect(
        self, conf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], after: bool
    ) -> None:
        """`add NET NETNS --json --cache-dir D` works like `--json --cache-dir D add NET NETNS`."""
        cache = tmp_path / "cache"
        options = ["--json", "--cache-dir", str(cache)]
        command = ["add", "net1", "/run/netns/x", "--container-id", "c1"]

        assert 0 == main([*command, *options] if after else [*options, *command])
        assert (cache / "results" / "net1-c1-eth0").is_file()
        capsys.readouterr()
        failing = ["del", "ghost", "/run/netns/x"]
        assert 1 == main([*failing, *options] if after else [*options, *failing])
        assert 7 == json.loads(capsys.readouterr().out)["code"]


class TestVersionOption:
    def test_version_prints_name_and_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--version prints `cnilib <version>` and exits 0."""
        import cnilib

        with pytest.raises(SystemExit) as exited:
            main(["--version"])

        assert 0 == exited.value.code
        assert f"cnilib {cnilib.__version__}\n" == capsys.readouterr().out


class TestPluginSource:
    @pytest.mark.parametrize(
        ("argv", "env", "shown"),
        [
            (["--plugins", "inprocess"], None, 'invalid --plugins value "inprocess"'),
            (["--plugins", ""], None, 'invalid --plugins value ""'),
            ([], "Binaries", 'invalid CNILIB_PLUGINS value "Binaries"'),
        ],
    )
    def test_invalid_value_is_one_line_exit_1(
        self,
        conf_dir: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        log: Path,
        argv: list[str],
        env: str | None,
        shown: str,
    ) -> None:
        """A bad value, from the option or the environment, fails before any plugin runs."""
        if env is not None:
            monkeypatch.setenv("CNILIB_PLUGINS", env)

        status = main([*argv, "--cache-dir", str(tmp_path / "c"), "add", "net1", "/run/netns/x"])

        choices = "in-process, binaries, in-process-first, binaries-first"
        assert 1 == status
        assert [f"cnilib add: error: {shown}: expected one of {choices}"] == (
            capsys.readouterr().err.splitlines()
        )
        assert [] == read_recording(log)

    def test_option_wins_over_environment(
        self, conf_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--plugins is used even when CNILIB_PLUGINS holds something else (even junk)."""
        monkeypatch.setenv("CNILIB_PLUGINS", "junk")

        assert 0 == main(["--plugins", "binaries", "validate", "net1"])

    def test_empty_environment_means_the_default(
        self, conf_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """CNILIB_PLUGINS set but empty is the default, as an empty NETCONFPATH is."""
        monkeypatch.setenv("CNILIB_PLUGINS", "")

        assert 0 == main(["validate", "net1"])

    @pytest.mark.parametrize("source", PLUGIN_SOURCES)
    def test_executor_per_source(self, conf_dir: Path, source: str) -> None:
        """Each value builds its executors in its order, every one with --timeout."""
        args = _parser().parse_args(["--plugins", source, "--timeout", "7", "list"])

        executor = _executor(args)

        parts = executor.executors if isinstance(executor, ChainExecutor) else (executor,)
        kinds = {InProcessExecutor: "in-process", SubprocessExecutor: "binaries"}
        expected = {
            "in-process": ["in-process"],
            "binaries": ["binaries"],
            "in-process-first": ["in-process", "binaries"],
            "binaries-first": ["binaries", "in-process"],
        }
        assert expected[source] == [kinds[type(part)] for part in parts]
        assert all(getattr(part, "timeout", None) == 7.0 for part in parts)
        assert all(getattr(part, "host_netns", None) is None for part in parts)

    def test_default_is_binaries_only(self, conf_dir: Path) -> None:
        """With neither option nor environment, only binaries on CNI_PATH, as cnitool:
        no silent fallback to an in-process plugin."""
        executor = _executor(_parser().parse_args(["list"]))

        assert "binaries" == DEFAULT_PLUGIN_SOURCE
        assert isinstance(executor, SubprocessExecutor)

    def test_no_timeout(self, conf_dir: Path) -> None:
        """--timeout 0 means no deadline for either kind."""
        args = ["--plugins", "binaries-first", "--timeout", "0", "list"]
        executor = _executor(_parser().parse_args(args))

        assert isinstance(executor, ChainExecutor)
        assert [None, None] == [getattr(e, "timeout", 1) for e in executor.executors]


class TestInProcessNeedsAPluginPath:
    """In-process plugins get the plugin path as CNI_PATH, which they require
    (Go's skel rule): with none, the CLI refuses before anything runs."""

    @pytest.mark.parametrize("source", ["in-process", "in-process-first", "binaries-first"])
    @pytest.mark.parametrize("verb", ["add", "check", "del", "gc", "status"])
    def test_empty_path_is_refused_up_front(
        self,
        conf_dir: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        log: Path,
        source: str,
        verb: str,
    ) -> None:
        monkeypatch.setenv("CNI_PATH", "")
        target = ["/run/netns/x"] if verb in ("add", "check", "del") else []

        status = main(
            ["--plugins", source, "--cache-dir", str(tmp_path / "c"), verb, "net1", *target]
        )

        assert 1 == status
        assert [f"cnilib {verb}: error: {NO_PLUGIN_PATH}"] == capsys.readouterr().err.splitlines()
        assert [] == read_recording(log)

    def test_json_error_object(
        self,
        conf_dir: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """--cni-path '' (over a set CNI_PATH) counts as empty; --json prints code 4."""
        args = ["--plugins", "in-process", "--cni-path", "", "--json"]

        assert 1 == main([*args, "--cache-dir", str(tmp_path / "c"), "del", "net1", "/run/netns/x"])
        assert {"code": 4, "msg": NO_PLUGIN_PATH} == json.loads(capsys.readouterr().out)

    def test_version_and_validate_need_no_path(
        self, conf_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """VERSION needs no CNI_PATH (skel sends "dummy"), so these still run."""
        monkeypatch.setenv("CNI_PATH", "")

        assert 0 == main(["--plugins", "in-process", "version", "loopback"])
        assert "1.1.0" in json.loads(capsys.readouterr().out)["supportedVersions"]

    def test_binaries_keep_libcnis_error(
        self,
        conf_dir: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """With binaries only (the default), an empty path fails as in libcni."""
        monkeypatch.setenv("CNI_PATH", "")

        assert 1 == main(["--cache-dir", str(tmp_path / "c"), "add", "net1", "/run/netns/x"])
        assert "no paths provided" in capsys.readouterr().err


class TestCnitoolRefusals:
    @pytest.mark.parametrize(
        ("args", "shown"),
        [
            ("K=", 'invalid CNI_ARGS pair "K=": empty value'),
            ("A=1;=V", 'invalid CNI_ARGS pair "=V": empty key'),
        ],
    )
    def test_empty_cni_args_parts(
        self,
        conf_dir: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        log: Path,
        args: str,
        shown: str,
    ) -> None:
        """CNI_ARGS with an empty key or value is refused before any plugin runs."""
        monkeypatch.setenv("CNI_ARGS", args)

        assert 1 == main(["--cache-dir", str(tmp_path / "c"), "add", "net1", "/run/netns/x"])
        assert [f"cnilib add: error: {shown}"] == capsys.readouterr().err.splitlines()
        assert [] == read_recording(log)

    @pytest.mark.parametrize("verb", ["add", "check", "del"])
    @pytest.mark.parametrize("how", ["env", "option"])
    def test_empty_ifname(
        self,
        conf_dir: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        log: Path,
        verb: str,
        how: str,
    ) -> None:
        """CNI_IFNAME set but empty, or --ifname '', is an error (libcni's text), not eth0."""
        argv = ["--cache-dir", str(tmp_path / "c"), verb, "net1", "/run/netns/x"]
        if how == "env":
            monkeypatch.setenv("CNI_IFNAME", "")
        else:
            argv += ["--ifname", ""]

        assert 1 == main(argv)
        assert [f"cnilib {verb}: error: interface name is empty"] == (
            capsys.readouterr().err.splitlines()
        )
        assert [] == read_recording(log)

    def test_unset_ifname_is_eth0(self, conf_dir: Path, tmp_path: Path, log: Path) -> None:
        """Without CNI_IFNAME and --ifname the interface is eth0."""
        assert 0 == main(["--cache-dir", str(tmp_path / "c"), "add", "net1", "/run/netns/x"])

        (call,) = read_recording(log)
        env = call["env"]
        assert isinstance(env, dict)
        assert "eth0" == env["CNI_IFNAME"]


class TestPluginErrorText:
    @pytest.mark.parametrize(
        ("error", "shown"),
        [
            ({"code": 100, "msg": "boom\n"}, "boom"),
            ({"code": 100, "msg": "boom\r\n\n", "details": "why \n"}, "boom; why"),
            ({"code": 100, "msg": "line one\nline two\n"}, "line one\\nline two"),
        ],
    )
    def test_trailing_newlines_are_dropped(
        self,
        conf_dir: Path,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        log: Path,
        error: dict[str, object],
        shown: str,
    ) -> None:
        """A message or details ending in newlines print as one line with no
        trailing escape; a newline inside the text is still escaped."""
        doc = {
            "cniVersion": "1.1.0",
            "name": "bad",
            "plugins": [{"type": "recorder", "recorder": {"ADD": {"error": error}}}],
        }
        (conf_dir / "20-bad.conflist").write_text(json.dumps(doc))

        assert 1 == main(["--cache-dir", str(tmp_path / "c"), "add", "bad", "/run/netns/x"])

        assert [f'cnilib add: error: plugin type="recorder" failed (add): {shown}'] == (
            capsys.readouterr().err.splitlines()
        )

    def test_json_error_keeps_the_plugins_text(
        self, conf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--json prints the plugin's msg as it came: JSON has no stray line to fear."""
        doc = {
            "cniVersion": "1.1.0",
            "name": "bad",
            "plugins": [
                {"type": "recorder", "recorder": {"ADD": {"error": {"code": 100, "msg": "x\n"}}}}
            ],
        }
        (conf_dir / "20-bad.conflist").write_text(json.dumps(doc))

        assert 1 == main(
            ["--cache-dir", str(tmp_path / "c"), "add", "bad", "/run/netns/x", "--json"]
        )

        assert (
            'plugin type="recorder" failed (add): x\n' == json.loads(capsys.readouterr().out)["msg"]
        )


class TestListJSON:
    def test_shape(self, conf_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """list --json: every network and every unloadable file, in file-name order."""
        bad_name = {
            "cniVersion": "1.0.0",
            "name": "../x",
            "plugins": [{"type": "a"}, {"type": "b"}],
        }
        (conf_dir / "30-badname.conflist").write_text(json.dumps(bad_name))
        (conf_dir / "20-broken.conflist").write_text("{")
        (conf_dir / "40-solo.conf").write_text(json.dumps({"name": "solo", "type": "t"}))

        assert 1 == main(["list", "--json"])

        out, err = capsys.readouterr()
        assert "" == err
        listed = json.loads(out)
        assert [
            {
                "name": "net1",
                "cniVersion": "1.1.0",
                "plugins": ["recorder"],
                "source": str(conf_dir / "10-net1.conflist"),
                "invalidName": None,
                "problems": [],
            },
            {
                "name": None,
                "cniVersion": None,
                "plugins": [],
                "source": str(conf_dir / "20-broken.conflist"),
                "invalidName": None,
                "problems": [listed[1]["problems"][0]],
            },
            {
                "name": "../x",
                "cniVersion": "1.0.0",
                "plugins": ["a", "b"],
                "source": str(conf_dir / "30-badname.conflist"),
                "invalidName": "invalid characters found in network name",
                "problems": [
                    f'{conf_dir / "30-badname.conflist"}: invalid network name "../x": '
                    "invalid characters found in network name (at $.name)"
                ],
            },
            {
                "name": "solo",
                "cniVersion": None,
                "plugins": ["t"],
                "source": str(conf_dir / "40-solo.conf"),
                "invalidName": None,
                "problems": [],
            },
        ] == listed
        assert listed[1]["problems"][0].startswith(str(conf_dir / "20-broken.conflist") + ": ")

    def test_all_good_exits_0(self, conf_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """With nothing wrong, list --json exits 0."""
        assert 0 == main(["--json", "list"])
        assert ["net1"] == [n["name"] for n in json.loads(capsys.readouterr().out)]

    def test_empty_dir(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An empty conf dir: an empty array and exit 1."""
        monkeypatch.setenv("NETCONFPATH", str(tmp_path))

        assert 1 == main(["list", "--json"])
        out, err = capsys.readouterr()
        assert ([], "") == (json.loads(out), err)

    def test_hostile_text_stays_json(
        self, conf_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Control characters in names come out escaped, and the JSON parses back to them."""
        doc = {"cniVersion": "1.0.0", "name": "x\x1b[2J\u202ey", "plugins": [{"type": "t"}]}
        (conf_dir / "20-evil.conflist").write_text(json.dumps(doc))

        assert 1 == main(["list", "--json"])

        out = capsys.readouterr().out
        assert "\x1b" not in out
        assert "\u202e" not in out
        assert "x\x1b[2J\u202ey" == json.loads(out)[1]["name"]


class TestValidateJSON:
    def test_valid(self, conf_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """validate --json of a good network: valid, its version and capabilities."""
        assert 0 == main(["validate", "net1", "--json"])

        assert {
            "network": "net1",
            "source": str(conf_dir / "10-net1.conflist"),
            "valid": True,
            "cniVersion": "1.1.0",
            "capabilities": ["portMappings"],
            "problems": [],
        } == json.loads(capsys.readouterr().out)

    def test_problems(
        self, conf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Schema and plugin problems are listed together; exit 1; nothing on stderr."""
        path = tmp_path / "x.conflist"
        doc = {"cniVersion": "1.0.0", "name": "bad name!", "plugins": [{"type": "ghost"}]}
        path.write_text(json.dumps(doc))

        assert 1 == main(["--json", "validate", str(path)])

        out, err = capsys.readouterr()
        shown = json.loads(out)
        assert "" == err
        assert ("bad name!", str(path), False, "1.0.0", []) == (
            shown["network"],
            shown["source"],
            shown["valid"],
            shown["cniVersion"],
            shown["capabilities"],
        )
        assert any("$.name" in p for p in shown["problems"])
        assert any('failed to find plugin "ghost"' in p for p in shown["problems"])

    def test_file_the_loader_refuses(
        self, conf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A file the loader refuses, but that is JSON, gives the same object."""
        path = tmp_path / "y.conflist"
        doc = {
            "name": "y",
            "cniVersion": "1.0.0",
            "disableCheck": "maybe",
            "plugins": [{"type": ""}],
        }
        path.write_text(json.dumps(doc))

        assert 1 == main(["validate", "--json", str(path)])

        shown = json.loads(capsys.readouterr().out)
        assert ("y", str(path), False, "1.0.0", []) == (
            shown["network"],
            shown["source"],
            shown["valid"],
            shown["cniVersion"],
            shown["capabilities"],
        )
        assert any("$.disableCheck" in p for p in shown["problems"])

    def test_file_that_is_not_json_is_an_error_object(
        self, conf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A file that is not even JSON: the CNI error object, as for any error."""
        path = tmp_path / "z.conflist"
        path.write_text("{{{")

        assert 1 == main(["validate", "--json", str(path)])

        assert 7 == json.loads(capsys.readouterr().out)["code"]
