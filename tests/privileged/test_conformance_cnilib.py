"""cnilib's own in-process plugins pass every conformance check that applies to them,
and the kit's verdicts on two of Debian's Go binaries are what they are known to be.

A plugin this machine cannot run (a link type the kernel lacks) or that needs a
daemon the kit does not start (dhcp) still answers VERSION and fails properly; its
checks that need an ADD are n/a. The overlay plugin runs against the node state file
the kit writes in the agent's place. No cnilib plugin may even warn: each follows the
spec's SHOULDs the kit checks too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cnilib.conformance import ConformanceRunner, Outcome, assert_conforms
from cnilib.plugins import BUILTIN_PLUGINS

GO_DIR = Path("/usr/lib/cni")

NEEDS_DAEMON = {"dhcp"}
"""The kit has no daemon for these: no ADD of theirs can succeed in its sandbox."""

ADD_CHECKS = ("add.result", "add.interfaces", "del.after-add", "check.after-add")
"""Checks that need a successful ADD (n/a where none can succeed)."""


@pytest.mark.parametrize("plugin_type", sorted(BUILTIN_PLUGINS))
def test_cnilib_plugin_conforms(cnilib_conformance: ConformanceRunner, plugin_type: str) -> None:
    report = cnilib_conformance(plugin_type, in_process=True)
    assert_conforms(report)
    assert not [r.check.id for r in report.results if r.outcome is Outcome.WARN]
    assert report.result("version.object").outcome is Outcome.PASS
    assert report.result("errors.object").outcome in (Outcome.PASS, Outcome.NOT_APPLICABLE)
    no_add = any(note.startswith("no ADD can succeed here") for note in report.notes)
    if plugin_type in NEEDS_DAEMON:
        assert no_add, report.notes
    if no_add:
        assert {report.result(c).outcome for c in ADD_CHECKS} == {Outcome.NOT_APPLICABLE}
        assert report.result("version.unsupported").outcome is Outcome.PASS
        assert report.result("add.missing-env").outcome is Outcome.PASS
    else:
        assert {report.result(c).outcome for c in ADD_CHECKS} == {Outcome.PASS}


def _go(plugin_type: str) -> None:
    if not (GO_DIR / plugin_type).is_file():
        pytest.skip(f"containernetworking-plugins are not installed ({GO_DIR / plugin_type})")


def test_go_portmap_check_after_add_fails(cnilib_conformance: ConformanceRunner) -> None:
    """Go's portmap 1.1.1 fails its own CHECK right after ADD: the kit says so."""
    _go("portmap")
    report = cnilib_conformance("portmap", path=[str(GO_DIR)], only=["check"])
    result = report.result("check.after-add")
    assert result.outcome is Outcome.FAIL, result.reason
    assert result.reason.startswith("CHECK failed")
    assert [e.label for e in result.evidence][-1].startswith("CHECK")
    assert report.target == str(GO_DIR / "portmap")


def test_go_bridge_conforms_but_for_its_version_answer(
    cnilib_conformance: ConformanceRunner,
) -> None:
    """Go's bridge passes every check but version.echo: its skel answers VERSION with
    its newest version where the spec has the version asked for."""
    _go("bridge")
    report = cnilib_conformance("bridge", path=[str(GO_DIR)])
    assert [r.check.id for r in report.failed] == ["version.echo"]
    assert report.result("del.leaves-nothing").outcome is Outcome.PASS
