"""The conformance kit's checks can fail: each deliberately broken plugin of
``_conformance_faulty`` fails (or, for a SHOULD, warns) exactly the check of the
obligation it breaks, while the checks around it still pass, so a verdict points
at the fault and not at the plugin as a whole.

The broken in-process plugins are cnilib's ptp with one verb changed (ptp itself
passes everything, see ``test_conformance_cnilib``); the broken executables are
small scripts with one fault each, beside the same script without it. Each run
is kept to the checks it is about (``only``): the kit makes and deletes its own
namespaces for every run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from cnilib.conformance import ConformanceRunner, Outcome, Report
from cnilib.plugins import BasePlugin
from tests.privileged import _conformance_faulty as faulty

PASS, FAIL, WARN, NA = Outcome.PASS, Outcome.FAIL, Outcome.WARN, Outcome.NOT_APPLICABLE


def outcomes(report: Report) -> dict[str, Outcome]:
    return {r.check.id: r.outcome for r in report.results}


def assert_outcomes(report: Report, expected: Mapping[str, Outcome]) -> None:
    """Every check of the run has the expected outcome (shown with the reasons if not)."""
    got = outcomes(report)
    if got != dict(expected):
        lines = [
            f"{r.check.id}: got {r.outcome.value}, expected "
            f"{expected[r.check.id].value if r.check.id in expected else '(not run)'}: {r.reason}"
            for r in report.results
        ]
        raise AssertionError("\n".join(["unexpected outcomes:", *lines, *report.notes]))


# --------------------------------------------------------------------------- ptp, one verb broken

PTP_CASES: list[tuple[Callable[[], BasePlugin], dict[str, Outcome]]] = [
    (
        faulty.DelDoesNothing,
        # DEL succeeds (the MUST) and leaves it all (the SHOULD): warnings.
        {"add.result": PASS, "del.after-add": WARN, "del.leaves-nothing": WARN},
    ),
    (
        faulty.DelFailsWhenNetnsGone,
        {"del.after-add": PASS, "del.twice": PASS, "del.netns-gone": FAIL},
    ),
    (
        faulty.DelFailsWithoutAdd,
        {"del.after-add": PASS, "del.twice": PASS, "del.without-add": FAIL},
    ),
    (
        faulty.DelFailsTwice,
        {"del.after-add": PASS, "del.twice": FAIL, "del.without-add": PASS},
    ),
    (
        faulty.DelNeedsPrevResult,
        {"del.after-add": PASS, "del.no-prevresult": WARN},
    ),
    (
        faulty.DelNeedsNetns,
        {"del.after-add": PASS, "del.netns-gone": PASS, "del.no-netns": WARN},
    ),
    (
        faulty.BadInterfaceIndex,
        {"add.interfaces": FAIL, "add.sandbox": PASS, "del.after-add": PASS},
    ),
    (
        faulty.NoSandbox,
        {"add.result": PASS, "add.sandbox": WARN, "del.after-add": PASS},
    ),
    (
        faulty.WrongResultVersion,
        {"add.result": FAIL, "add.interfaces": PASS, "del.after-add": PASS},
    ),
    (
        faulty.AddTwiceCrashes,
        {"add.result": PASS, "add.twice": FAIL, "del.twice": PASS, "errors.object": WARN},
    ),
    (
        faulty.AddCrashesWhenNetnsMissing,
        {"add.missing-netns": FAIL, "del.without-add": PASS, "errors.object": WARN},
    ),
    (
        faulty.CheckAlwaysFails,
        {"del.after-add": PASS, "check.after-add": FAIL, "check.detects-break": PASS},
    ),
    (
        faulty.CheckAlwaysSucceeds,
        {"check.after-add": PASS, "check.detects-break": WARN},
    ),
    (
        faulty.CheckRaisesKeyError,
        {"del.after-add": PASS, "check.after-add": FAIL, "errors.object": WARN},
    ),
    (
        faulty.IgnoresVersion,
        {"version.object": PASS, "version.unsupported": WARN, "add.result": PASS},
    ),
    (
        faulty.GcReleasesEverything,
        {"del.after-add": PASS, "status.answers": PASS, "gc.keeps-valid": FAIL},
    ),
]


@pytest.mark.parametrize(
    ("make", "expected"), PTP_CASES, ids=[make.__name__ for make, _ in PTP_CASES]
)
def test_broken_ptp_fails_that_check(
    cnilib_conformance: ConformanceRunner,
    make: Callable[[], BasePlugin],
    expected: dict[str, Outcome],
) -> None:
    report = cnilib_conformance("ptp", plugin=make(), only=expected)
    assert_outcomes(report, expected)
    assert report.ok is all(o is not FAIL for o in expected.values())


def test_a_crash_is_told_from_an_error(cnilib_conformance: ConformanceRunner) -> None:
    """The escaped KeyError is a crash (with its traceback as evidence), not merely
    a failed CHECK; the CHECK that failed on purpose in the same kind of run is not."""
    crashed = cnilib_conformance(
        "ptp", plugin=faulty.CheckRaisesKeyError(), only=["check.after-add", "errors.object"]
    )
    result = crashed.result("errors.object")
    assert result.outcome is WARN  # the spec's "should output an error result"
    assert "CHECK" in result.reason
    assert "crashed" in result.reason
    assert any(b"KeyError" in e.stderr for e in result.evidence)

    deliberate = cnilib_conformance(
        "ptp", plugin=faulty.CheckAlwaysFails(), only=["check.after-add", "errors.object"]
    )
    assert deliberate.result("check.after-add").outcome is FAIL
    assert deliberate.result("errors.object").outcome is PASS


# --------------------------------------------------------------------------- chained


@pytest.mark.parametrize(
    ("make", "verdict"),
    [(faulty.ChainPassesThrough, PASS), (faulty.ChainDropsInterfaces, FAIL)],
    ids=["passes-through", "drops-interfaces"],
)
def test_chained_plugin_must_keep_prev_result(
    cnilib_conformance: ConformanceRunner, make: Callable[[], BasePlugin], verdict: Outcome
) -> None:
    report = cnilib_conformance(
        faulty.ChainPassesThrough.type,
        plugin=make(),
        config={"type": faulty.ChainPassesThrough.type},
        kind="chained",
        only=["chain.prev-result", "del.after-add", "check.after-add"],
    )
    assert_outcomes(
        report, {"chain.prev-result": verdict, "del.after-add": PASS, "check.after-add": PASS}
    )
    if verdict is FAIL:
        assert "interface 'eth0' of prevResult is gone" in report.result("chain.prev-result").reason


# --------------------------------------------------------------------------- executables

SCRIPT_CORRECT: dict[str, Outcome] = {
    "version.object": PASS,
    "version.consistent": PASS,
    "version.echo": PASS,
    "version.unsupported": PASS,
    "add.missing-env": PASS,
    "add.missing-command-or-path": PASS,
    "add.undecodable-config": PASS,
    "add.invalid-config": PASS,
    "del.without-add": PASS,
    "check.old-version": PASS,
    "status.answers": PASS,
    "errors.object": PASS,
    "errors.codes": PASS,
}

SCRIPT_BYSTANDERS = ("version.object", "add.undecodable-config", "errors.object")

SCRIPT_CASES: list[tuple[str, dict[str, Outcome]]] = [
    ("none", {}),
    ("version-newest", {"version.echo": FAIL}),  # skel's way
    ("version-inconsistent", {"version.consistent": FAIL}),
    ("error-details", {"errors.object": WARN}),
    ("env-code", {"add.missing-env": WARN}),  # failed as it must, with another code
    ("decode-code", {"add.undecodable-config": WARN}),
    ("odd-code", {"add.invalid-config": WARN, "errors.codes": WARN}),
    ("check-old", {"check.old-version": WARN}),
    ("status-code", {"status.answers": FAIL}),
    (
        # Text instead of an error object: every check of a failure sees a crash.
        "stdout-text",
        {
            "errors.object": WARN,
            "version.unsupported": WARN,
            "add.missing-env": FAIL,
            "add.missing-command-or-path": WARN,
            "add.undecodable-config": FAIL,
            "add.invalid-config": WARN,
            "check.old-version": WARN,
        },
    ),
]


@pytest.mark.parametrize(("fault", "changed"), SCRIPT_CASES, ids=[f for f, _ in SCRIPT_CASES])
def test_broken_executable_fails_that_check(
    cnilib_conformance: ConformanceRunner, tmp_path: Path, fault: str, changed: dict[str, Outcome]
) -> None:
    faulty.write_script(tmp_path, fault)
    # The correct script and the one whose fault shows everywhere run every check; the
    # others run theirs and a few bystanders (each call of a script costs a process).
    everything = fault in ("none", "stdout-text")
    only = set(SCRIPT_CORRECT) if everything else {*changed, *SCRIPT_BYSTANDERS}
    report = cnilib_conformance(
        faulty.SCRIPT_TYPE,
        path=[str(tmp_path)],
        config=faulty.script_config(),
        kind="interface",
        only=only,
    )
    assert_outcomes(report, {i: o for i, o in SCRIPT_CORRECT.items() if i in only} | changed)
    assert report.target == str(tmp_path / faulty.SCRIPT_TYPE)


def test_version_without_a_list_fails_and_leaves_the_rest_na(
    cnilib_conformance: ConformanceRunner, tmp_path: Path
) -> None:
    faulty.write_script(tmp_path, "version-no-list")
    report = cnilib_conformance(
        faulty.SCRIPT_TYPE,
        path=[str(tmp_path)],
        config=faulty.script_config(),
        kind="interface",
        only=["version", "add.undecodable-config", "del.without-add"],
    )
    assert_outcomes(
        report,
        {
            "version.object": FAIL,
            "version.consistent": NA,
            "version.echo": NA,
            "version.unsupported": PASS,  # code 1 still: what it lists is not asked
            "add.undecodable-config": PASS,
            "del.without-add": NA,
        },
    )
    assert report.supported_versions == ()
    assert any("VERSION gave no list" in note for note in report.notes)
