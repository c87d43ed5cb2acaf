"""A conformance run's reports for people (a table), for programs (JSON) and for CI
(JUnit XML).

Plugin names, reasons and the plugin's own output come from outside cnilib, so the
table shows them with control and invisible characters escaped (as every CLI
command does) and the XML drops nothing but replaces what XML 1.0 cannot hold.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence

from cnilib.cli._commands import printable
from cnilib.conformance._model import CheckResult, Outcome, Report

__all__ = ["MAX_EVIDENCE", "junit_xml", "table", "to_json"]

MAX_EVIDENCE = 3
"""Exchanges shown per check in the table (all of them with ``verbose``)."""

_LABELS = {
    Outcome.PASS: "PASS",
    Outcome.FAIL: "FAIL",
    Outcome.WARN: "WARN",
    Outcome.NOT_APPLICABLE: "n/a",
    Outcome.ERROR: "ERROR",
}
_CELLS = {
    Outcome.PASS: "pass",
    Outcome.FAIL: "FAIL",
    Outcome.WARN: "warn",
    Outcome.NOT_APPLICABLE: "n/a",
    Outcome.ERROR: "ERROR",
}
_SHOWN = (Outcome.FAIL, Outcome.WARN, Outcome.ERROR)
"""Outcomes whose evidence the table shows without ``verbose``."""


def _lines(text: str) -> list[str]:
    """``text``'s lines, each escaped: only a newline breaks a line (a carriage
    return, which could hide what precedes it, is shown as ``\\r``)."""
    return [printable(line) for line in text.rstrip("\n").split("\n")]


def _summary(report: Report) -> str:
    parts = [f"{report.count(o)} {o.value}" for o in Outcome]
    verdict = "ok" if report.ok else "NOT OK"
    return f"{printable(report.plugin)}: {verdict}: {', '.join(parts)}"


def _check_lines(result: CheckResult, *, width: int, verbose: bool) -> list[str]:
    label = _LABELS[result.outcome]
    check_id = printable(result.check.id).ljust(width)
    lines = [f"  {label:<5} {check_id}  {printable(result.check.title)}"]
    if result.reason and (result.outcome is not Outcome.PASS or verbose):
        reason = _lines(result.reason)
        lines.append(f"        {reason[0]}")
        lines.extend(f"        {line}" for line in reason[1:])
    if not result.evidence or not (verbose or result.outcome in _SHOWN):
        return lines
    shown = result.evidence if verbose else result.evidence[:MAX_EVIDENCE]
    for exchange in shown:
        lines.extend(f"          {line}" for line in _lines(exchange.render()))
    if hidden := len(result.evidence) - len(shown):
        lines.append(f"          ({hidden} more exchange(s) not shown; -v shows them all)")
    return lines


def _report_lines(report: Report, *, verbose: bool) -> list[str]:
    versions = ", ".join(report.supported_versions) or "none the kit knows"
    lines = [
        f"plugin {printable(report.plugin)} ({printable(report.kind)}): {printable(report.target)}",
        f"  supported versions: {printable(versions)}",
    ]
    lines.extend(f"  note: {line}" for note in report.notes for line in _lines(note))
    width = max((len(printable(r.check.id)) for r in report.results), default=0)
    for result in report.results:
        lines.extend(_check_lines(result, width=width, verbose=verbose))
    lines.append(_summary(report))
    return lines


def _matrix(reports: Sequence[Report]) -> list[str]:
    """Checks (rows) against plugins (columns); ``-`` where a check did not run."""
    ids: list[str] = []
    for report in reports:
        ids.extend(r.check.id for r in report.results if r.check.id not in ids)
    names = [printable(r.plugin) for r in reports]
    first = max([len("check"), *(len(printable(i)) for i in ids)])
    widths = [max(len(n), 5) for n in names]

    def row(head: str, cells: Sequence[str]) -> str:
        text = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        return f"{head.ljust(first)}  {text}".rstrip()

    lines = [row("check", names)]
    for check_id in ids:
        cells = []
        for report in reports:
            try:
                cells.append(_CELLS[report.result(check_id).outcome])
            except KeyError:
                cells.append("-")
        lines.append(row(printable(check_id), cells))
    return lines


def table(reports: Report | Sequence[Report], *, verbose: bool = False) -> str:
    """The reports as text for a terminal, ending with a newline.

    Per plugin: what ran, its versions and the kit's notes; a line per check
    (outcome, id, title) with the reason of anything that did not pass and the
    evidence of a FAIL, WARN or ERROR (the first :data:`MAX_EVIDENCE` exchanges;
    every exchange of every check with ``verbose``); a summary line. With more
    than one report, a matrix of checks against plugins ends it.
    """
    if isinstance(reports, Report):
        reports = [reports]
    blocks = ["\n".join(_report_lines(r, verbose=verbose)) for r in reports]
    if len(reports) > 1:
        blocks.append("\n".join(_matrix(reports)))
    return "\n\n".join(blocks) + "\n"


def ok(reports: Sequence[Report]) -> bool:
    """No check of any report failed or errored."""
    return all(r.ok for r in reports)


def to_json(
    reports: Report | Sequence[Report],
    *,
    verbose: bool = False,
    errors: Sequence[Mapping[str, object]] = (),
) -> str:
    """``{"reports": [...], "ok": bool}`` as JSON text (each report as
    :meth:`Report.to_json`; ``verbose``: the evidence of every check). ``errors``
    (plugins that could not be run, each an object) are listed under ``errors``
    and make ``ok`` false."""
    if isinstance(reports, Report):
        reports = [reports]
    document: dict[str, object] = {
        "reports": [r.to_json(all_evidence=verbose) for r in reports],
        "ok": ok(reports) and not errors,
    }
    if errors:
        document["errors"] = list(errors)
    # ensure_ascii (the default) escapes every control and non-ASCII character.
    return json.dumps(document, indent=2) + "\n"


# Characters XML 1.0 cannot hold at all, even as character references.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """``text`` with what XML 1.0 cannot carry written as a Python-style escape."""
    return _NOT_XML.sub(lambda m: printable(m.group()), text)


def _evidence_text(result: CheckResult) -> str:
    parts = [result.reason] if result.reason else []
    parts.extend(e.render() for e in result.evidence)
    return _xml("\n\n".join(parts))


def _testcase(suite: ET.Element, plugin: str, result: CheckResult) -> None:
    case = ET.SubElement(suite, "testcase", classname=plugin, name=printable(result.check.id))
    reason = printable(result.reason)
    if result.outcome is Outcome.FAIL:
        failure = ET.SubElement(case, "failure", message=reason, type="fail")
        failure.text = _evidence_text(result)
    elif result.outcome is Outcome.ERROR:
        error = ET.SubElement(case, "error", message=reason, type="error")
        error.text = _evidence_text(result)
    elif result.outcome is Outcome.NOT_APPLICABLE:
        ET.SubElement(case, "skipped", message=reason)
    elif result.outcome is Outcome.WARN:
        out = ET.SubElement(case, "system-out")
        out.text = f"WARN ({result.check.spec}: {result.check.title}): " + _evidence_text(result)


def _counts(element: ET.Element, tests: int, failures: int, errors: int, skipped: int) -> None:
    element.set("tests", str(tests))
    element.set("failures", str(failures))
    element.set("errors", str(errors))
    element.set("skipped", str(skipped))


def junit_xml(reports: Report | Sequence[Report]) -> bytes:
    """The reports as JUnit XML (UTF-8, with a declaration): a ``<testsuites>``
    root, a ``<testsuite name="cnilib-conformance.<plugin>">`` per report and a
    ``<testcase classname="<plugin>" name="<check id>">`` per check.

    FAIL is a ``<failure>``, ERROR an ``<error>`` (both with the reason as
    ``message`` and the evidence as text), n/a is ``<skipped>``, and WARN a
    passing test case whose ``<system-out>`` carries the warning.
    """
    if isinstance(reports, Report):
        reports = [reports]
    root = ET.Element("testsuites", name="cnilib-conformance")
    totals = [0, 0, 0, 0]
    for report in reports:
        plugin = printable(report.plugin)
        suite = ET.SubElement(root, "testsuite", name=f"cnilib-conformance.{plugin}")
        counts = [
            len(report.results),
            report.count(Outcome.FAIL),
            report.count(Outcome.ERROR),
            report.count(Outcome.NOT_APPLICABLE),
        ]
        _counts(suite, *counts)
        properties = ET.SubElement(suite, "properties")
        for name, value in (
            ("target", report.target),
            ("kind", report.kind),
            ("supportedVersions", ", ".join(report.supported_versions)),
            *(("note", note) for note in report.notes),
        ):
            ET.SubElement(properties, "property", name=name, value=printable(value))
        for result in report.results:
            _testcase(suite, plugin, result)
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
    _counts(root, *totals)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"
