"""``python -m cnilib conformance`` / ``python -m cnilib.conformance``: options, errors,
exit status, JSON and JUnit output.

The error paths run before any namespace is made (argument checks, the root check,
looking the plugin up). The tests that run a plugin use the privileged fixtures and
cnilib's in-process plugins; the kit makes and deletes the namespaces they run in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cnilib.conformance import Kind, Outcome, Report, check_ids
from cnilib.conformance._cli import KINDS, main


def run(*argv: str, module: str = "cnilib") -> subprocess.CompletedProcess[str]:
    """``python -m <module> [conformance] argv`` with no CNI_* variable set."""
    prefix = ["conformance"] if module == "cnilib" else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    return subprocess.run(
        [sys.executable, "-m", module, *prefix, *argv],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not root, whoever runs the tests."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root as far as the root check goes (the tests using it fail before any namespace)."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)


def test_kind_choices_are_the_kinds() -> None:
    assert KINDS == tuple(k.value for k in Kind)


# --- --list: no root, no namespace -------------------------------------------------------


@pytest.mark.parametrize("module", ["cnilib", "cnilib.conformance"])
def test_list_prints_every_check(module: str) -> None:
    proc = run("--list", module=module)
    assert proc.returncode == 0, proc.stderr
    ids = [line.split()[0] for line in proc.stdout.splitlines()]
    assert ids == check_ids()
    assert all(line.split()[1] in ("must", "should") for line in proc.stdout.splitlines())
    assert "[SPEC" in proc.stdout
    assert proc.stderr == ""


def test_list_needs_no_root(as_user: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == check_ids()
    assert set(rows[0]) == {"id", "title", "spec", "level"}


def test_run_needs_root(as_user: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--in-process", "ptp"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("cnilib conformance: needs root")
    assert "--list" in line


# --- usage errors: exit 2 ----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--bogus", "ptp"],
        ["--kind", "sideways", "ptp"],
        ["--timeout", "0", "ptp"],
        ["--timeout", "soon", "ptp"],
        ["--list", "ptp"],
        ["--cni-path", ":", "ptp"],
        ["--config"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    proc = run(*argv)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "usage: cnilib conformance" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_usage_error_of_the_module_names_it() -> None:
    proc = run(module="cnilib.conformance")
    assert proc.returncode == 2
    assert "usage: python -m cnilib.conformance" in proc.stderr


def test_help_goes_to_the_kit_and_warns() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    assert "--in-process" in proc.stdout
    assert "never in this machine's own namespace" in proc.stdout
    assert "needs root" in " ".join(proc.stdout.split())


# --- cnilib errors: one line, exit 1 -----------------------------------------------------


def test_unknown_plugin(as_root: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A type the path does not have is one line naming it and where it was looked for
    (its configuration given: without one the missing profile is said first)."""
    conf = tmp_path / "conf.json"
    conf.write_text('{"type": "no-such-plugin"}')
    argv = ["--cni-path", str(tmp_path), "--config", str(conf), "--kind", "interface"]
    assert main([*argv, "no-such-plugin"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("cnilib conformance: no-such-plugin: failed to find plugin")
    assert str(tmp_path) in line


def test_a_type_without_profile_or_config(
    as_root: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--cni-path", str(tmp_path), "no-such-plugin"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("cnilib conformance: no-such-plugin: ")
    assert "--config" in line


def test_unknown_plugin_json(
    as_root: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--json", "--cni-path", str(tmp_path), "no-such-plugin"]) == 1
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert (document["reports"], document["ok"]) == ([], False)
    [error] = document["errors"]
    assert error["plugin"] == "no-such-plugin"
    assert isinstance(error["code"], int)
    assert "no-such-plugin" in error["msg"]
    assert captured.err == ""


def test_a_type_that_cannot_run_does_not_stop_the_others(
    cnilib_privileged: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The unknown type is one line on stderr after the table of the one that ran."""
    status = main(["--in-process", "--only", "version.object", "no-such-plugin", "ptp"])
    assert status == 1
    captured = capsys.readouterr()
    assert "plugin ptp" in captured.out
    [line] = captured.err.splitlines()
    assert line.startswith("cnilib conformance: no-such-plugin: ")


def test_unknown_in_process_plugin(as_root: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--in-process", "no-such-plugin"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("cnilib conformance: ")
    assert "no-such-plugin" in line


def test_unknown_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--only", "no-such-check", "ptp"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("cnilib conformance: no conformance check no-such-check")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "No such file or directory"),
        (b"{not json", "not a JSON object"),
        (b"[1, 2]", "not a JSON object"),
    ],
)
def test_bad_config_file(
    tmp_path: Path, content: bytes | None, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "my\x1bplugin.json"
    if content is not None:
        path.write_bytes(content)
    # before the root check: a user learns of a bad file without sudo
    assert main(["--config", str(path), "--kind", "interface", "myplugin"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"cnilib conformance: --config {tmp_path}/my\\x1bplugin.json: ")
    assert expected in line


def test_bad_config_file_through_cnilib(tmp_path: Path) -> None:
    path = tmp_path / "conf.json"
    path.write_text('"a string"')
    proc = run("--config", str(path), "myplugin")
    assert proc.returncode == 1
    assert proc.stderr == f"cnilib conformance: --config {path}: not a JSON object: " + (
        "expected a JSON object, got string\n"
    )
    assert "Traceback" not in proc.stderr


# --- real runs (in namespaces the kit makes) ----------------------------------------------


@pytest.mark.usefixtures("cnilib_privileged")
def test_json_report_and_junit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junit = tmp_path / "out" / "conformance.xml"
    junit.parent.mkdir()
    junit.write_text("old")
    status = main(
        [
            "--in-process",
            "--only",
            "version",
            "--json",
            "--junit",
            str(junit),
            "loopback",
            "ptp",
        ]
    )
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"reports", "ok"}
    assert [r["plugin"] for r in document["reports"]] == ["loopback", "ptp"]
    assert status == (0 if document["ok"] else 1)
    for report in document["reports"]:
        assert report["target"] == f"cnilib in-process {report['plugin']}"
        assert {c["id"].split(".")[0] for c in report["checks"]} == {"version"}
        assert "1.0.0" in report["supportedVersions"]
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    assert [s.get("name") for s in root] == [
        "cnilib-conformance.loopback",
        "cnilib-conformance.ptp",
    ]
    assert list(junit.parent.iterdir()) == [junit]  # the temporary file was renamed over it


def test_fixture_and_assert_conforms(cnilib_conformance: object) -> None:
    from cnilib.conformance import ConformanceRunner, assert_conforms

    assert isinstance(cnilib_conformance, ConformanceRunner)
    report = cnilib_conformance("ptp", in_process=True, only=["version.object", "errors"])
    assert isinstance(report, Report)
    assert [r.check.id for r in report.results] == [
        "version.object",
        "errors.object",
        "errors.codes",
    ]
    assert report.result("version.object").outcome is Outcome.PASS
    assert_conforms(report)
