"""The conformance kit's output: the human table, JSON and JUnit XML of hand-made reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from cnilib.conformance import (
    CheckResult,
    CheckSpec,
    Exchange,
    Outcome,
    Report,
    junit_xml,
    table,
    to_json,
)
from cnilib.conformance._output import MAX_EVIDENCE


def _exchange(label: str = "ADD (1.0.0)", *, stdout: bytes = b"", status: int = 0) -> Exchange:
    return Exchange(
        label,
        {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0"},
        b'{"cniVersion": "1.0.0"}',
        stdout,
        b"some stderr",
        status,
    )


def _result(check_id: str, outcome: Outcome, reason: str = "", *evidence: Exchange) -> CheckResult:
    return CheckResult(
        CheckSpec(check_id, f"title of {check_id}", "SPEC §2"), outcome, reason, evidence
    )


def _report(plugin: str = "bridge", *results: CheckResult) -> Report:
    return Report(
        plugin=plugin,
        target=f"/usr/lib/cni/{plugin}",
        kind="interface",
        supported_versions=("0.4.0", "1.0.0"),
        results=results,
        notes=("no dummy in this kernel",),
    )


FAILING = _exchange("DEL (1.0.0)", stdout=b'{"code": 11, "msg": "boom-marker"}', status=1)


def _mixed(plugin: str = "bridge") -> Report:
    return _report(
        plugin,
        _result("add.result", Outcome.PASS),
        _result("del.netns-gone", Outcome.FAIL, "DEL failed with the netns gone", FAILING),
        _result("add.mtu", Outcome.WARN, "MTU not honoured", _exchange()),
        _result("check.v040", Outcome.NOT_APPLICABLE, "0.4.0 has no CHECK"),
        _result("gc.basic", Outcome.ERROR, "the kit failed: OSError"),
    )


# --- Report.ok: the exit status's source -----------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "ok"),
    [
        ((Outcome.PASS, Outcome.WARN, Outcome.NOT_APPLICABLE), True),
        ((Outcome.PASS, Outcome.FAIL), False),
        ((Outcome.PASS, Outcome.ERROR), False),
        ((), True),
    ],
)
def test_report_ok_fails_only_on_fail_or_error(outcomes: tuple[Outcome, ...], ok: bool) -> None:
    report = _report("p", *(_result(f"c.{i}", o) for i, o in enumerate(outcomes)))
    assert report.ok is ok
    assert json.loads(to_json([report]))["ok"] is ok


# --- table ------------------------------------------------------------------------------


def test_table_lines_reasons_evidence_and_summary() -> None:
    text = table([_mixed()])
    lines = text.splitlines()
    assert lines[0] == "plugin bridge (interface): /usr/lib/cni/bridge"
    assert "  supported versions: 0.4.0, 1.0.0" in lines
    assert "  note: no dummy in this kernel" in lines
    for label, check_id in (
        ("PASS", "add.result"),
        ("FAIL", "del.netns-gone"),
        ("WARN", "add.mtu"),
        ("n/a", "check.v040"),
        ("ERROR", "gc.basic"),
    ):
        assert any(line.split()[:2] == [label, check_id] for line in lines), (label, check_id)
    assert "DEL failed with the netns gone" in text
    assert "0.4.0 has no CHECK" in text
    # the failure's evidence: its exchange rendered, the plugin's output in it
    assert "--- DEL (1.0.0)" in text
    assert "boom-marker" in text
    # a warning's evidence too
    assert "--- ADD (1.0.0)" in text
    assert lines[-1] == "bridge: NOT OK: 1 pass, 1 fail, 1 warn, 1 n/a, 1 error"
    assert text.endswith("\n")


def test_table_passing_evidence_only_when_verbose() -> None:
    report = _report("p", _result("add.result", Outcome.PASS, "", _exchange("ADD (0.3.1)")))
    assert "--- ADD (0.3.1)" not in table(report)
    assert "--- ADD (0.3.1)" in table(report, verbose=True)
    assert table(report).splitlines()[-1] == "p: ok: 1 pass, 0 fail, 0 warn, 0 n/a, 0 error"


def test_table_caps_evidence_and_says_so() -> None:
    many = [_exchange(f"call-{i}", status=1) for i in range(MAX_EVIDENCE + 2)]
    report = _report("p", _result("del.x", Outcome.FAIL, "bad", *many))
    text = table(report)
    assert "--- call-0" in text
    assert f"--- call-{MAX_EVIDENCE}" not in text
    assert "2 more exchange(s) not shown" in text
    verbose = table(report, verbose=True)
    assert f"--- call-{MAX_EVIDENCE + 1}" in verbose
    assert "not shown" not in verbose


def test_table_escapes_control_characters_from_plugins() -> None:
    hostile = Exchange("ADD", {}, b"", b"\x1b[31mred\x1b]0;title\x07", b"\xe2\x80\xaeevil", 1)
    report = _report(
        "bad\x1bname",
        _result("del.x", Outcome.FAIL, "reason\x1b[2J\rhidden", hostile),
    )
    text = table(report)
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\r" not in text
    assert "\u202e" not in text
    assert "bad\\x1bname" in text
    assert "\\x1b[31mred" in text
    assert "\\u202eevil" in text
    assert "reason\\x1b[2J\\rhidden" in text


def test_table_of_several_reports_ends_with_a_matrix() -> None:
    second = _report(
        "ptp",
        _result("add.result", Outcome.FAIL, "no"),
        _result("del.netns-gone", Outcome.PASS),
    )
    text = table([_mixed(), second])
    matrix = text.split("\n\n")[-1].splitlines()
    assert matrix[0].split() == ["check", "bridge", "ptp"]
    rows = {line.split()[0]: line.split()[1:] for line in matrix[1:]}
    assert rows["add.result"] == ["pass", "FAIL"]
    assert rows["del.netns-gone"] == ["FAIL", "pass"]
    assert rows["add.mtu"] == ["warn", "-"]
    assert rows["check.v040"] == ["n/a", "-"]
    assert rows["gc.basic"] == ["ERROR", "-"]


def test_table_of_one_report_has_no_matrix() -> None:
    assert "check " not in table(_mixed()).split("\n\n")[-1].splitlines()[0]


# --- JSON -------------------------------------------------------------------------------


def test_json_shape() -> None:
    document = json.loads(to_json([_mixed(), _report("ptp", _result("a.b", Outcome.PASS))]))
    assert set(document) == {"reports", "ok"}
    assert document["ok"] is False
    first = document["reports"][0]
    assert first["plugin"] == "bridge"
    assert first["summary"] == {"pass": 1, "fail": 1, "warn": 1, "n/a": 1, "error": 1}
    failing = next(c for c in first["checks"] if c["id"] == "del.netns-gone")
    assert failing["outcome"] == "fail"
    assert "boom-marker" in failing["evidence"][0]["stdout"]
    assert document["reports"][1]["ok"] is True


def test_json_is_one_terminal_safe_line_per_value() -> None:
    text = to_json(_report("x\x1b", _result("a.b", Outcome.FAIL, "\u202e")))
    assert "\x1b" not in text
    assert "\u202e" not in text
    assert json.loads(text)["reports"][0]["plugin"] == "x\x1b"


def test_json_verbose_keeps_passing_evidence() -> None:
    report = _report("p", _result("a.b", Outcome.PASS, "", _exchange()))
    assert json.loads(to_json(report))["reports"][0]["checks"][0]["evidence"] == []
    verbose = json.loads(to_json(report, verbose=True))
    assert verbose["reports"][0]["checks"][0]["evidence"][0]["label"] == "ADD (1.0.0)"


# --- JUnit XML --------------------------------------------------------------------------


def test_junit_structure_and_counts() -> None:
    root = ET.fromstring(junit_xml([_mixed(), _report("ptp", _result("a.b", Outcome.PASS))]))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == (
        "6",
        "1",
        "1",
        "1",
    )
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [
        "cnilib-conformance.bridge",
        "cnilib-conformance.ptp",
    ]
    bridge = suites[0]
    assert (bridge.get("tests"), bridge.get("failures"), bridge.get("errors")) == ("5", "1", "1")
    assert bridge.get("skipped") == "1"
    cases = {c.get("name"): c for c in bridge.findall("testcase")}
    assert all(c.get("classname") == "bridge" for c in cases.values())
    assert list(cases["add.result"]) == []
    failure = cases["del.netns-gone"].find("failure")
    assert failure is not None
    assert failure.get("message") == "DEL failed with the netns gone"
    assert "boom-marker" in (failure.text or "")
    assert "--- DEL (1.0.0)" in (failure.text or "")
    error = cases["gc.basic"].find("error")
    assert error is not None
    assert error.get("message") == "the kit failed: OSError"
    skipped = cases["check.v040"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "0.4.0 has no CHECK"
    warn = cases["add.mtu"]
    assert warn.find("failure") is None
    assert warn.find("error") is None
    out = warn.find("system-out")
    assert out is not None
    assert "MTU not honoured" in (out.text or "")


def test_junit_survives_characters_xml_cannot_hold() -> None:
    hostile = Exchange("ADD", {}, b"\x00", b"\x1b[31m\x0cend", b"\xff\xfe", 1)
    report = _report("p\x1b", _result("del.x", Outcome.FAIL, "r\x00\x1b", hostile))
    data = junit_xml(report)
    assert data.startswith(b"<?xml")
    root = ET.fromstring(data)  # would raise on a raw control character
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("name") == "cnilib-conformance.p\\x1b"
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("message") == "r\\x00\\x1b"
    assert "\\x1b[31m\\x0cend" in (failure.text or "")


# --- assert_conforms ----------------------------------------------------------------------


def test_assert_conforms_passes_warnings_and_na() -> None:
    from cnilib.conformance import assert_conforms

    assert_conforms(
        _report(
            "p",
            _result("a.b", Outcome.PASS),
            _result("a.c", Outcome.WARN, "meh"),
            _result("a.d", Outcome.NOT_APPLICABLE, "no"),
        )
    )


@pytest.mark.parametrize("outcome", [Outcome.FAIL, Outcome.ERROR])
def test_assert_conforms_fails_with_the_table(outcome: Outcome) -> None:
    from cnilib.conformance import assert_conforms

    report = _report("p", _result("a.b", Outcome.PASS), _result("del.x", outcome, "why", FAILING))
    with pytest.raises(AssertionError) as info:
        assert_conforms(report)
    message = str(info.value)
    assert message.startswith("not conformant: del.x\n")
    assert table(report).rstrip("\n") in message
    assert "boom-marker" in message
