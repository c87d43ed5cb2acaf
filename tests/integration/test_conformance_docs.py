"""docs/conformance.md's check table is the kit's: every check, with its level and
spec section, and no check that does not exist anywhere on the page."""

from __future__ import annotations

import re
from pathlib import Path

from cnilib.conformance import check_ids
from cnilib.conformance._registry import CHECKS

DOC = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"
GROUPS = ("version", "add", "del", "check", "chain", "ipam", "status", "gc", "errors")
# A check id written in backticks anywhere on the page: `group.name`.
MENTION = re.compile(rf"`((?:{'|'.join(GROUPS)})\.[a-z0-9-]+)`")
ROW = re.compile(r"^\| `([^`]+)` \| (must|should) \| (.*) \| (.*) \|$")


def _check_table() -> dict[str, tuple[str, str, str]]:
    """The rows of the table under '## The checks': id -> (level, title, spec)."""
    text = DOC.read_text()
    section = text.split("\n## The checks\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if match := ROW.match(line):
            check_id, level, title, spec = match.groups()
            assert check_id not in rows, f"{check_id} appears twice in the check table"
            rows[check_id] = (level, title, spec)
    return rows


def test_every_check_is_in_the_table_with_its_level() -> None:
    rows = _check_table()
    ids = check_ids()
    assert list(rows) == ids, "the table lists the checks in the order a run makes them"
    for spec, _ in CHECKS:
        level, title, section = rows[spec.id]
        assert level == spec.level, f"{spec.id}: the doc says {level}, the kit {spec.level}"
        assert title == spec.title, f"{spec.id}: the doc's title differs from the kit's"
        assert section == spec.spec, f"{spec.id}: the doc's spec section differs from the kit's"


def test_the_doc_names_no_check_that_does_not_exist() -> None:
    known = set(check_ids())
    named = set(MENTION.findall(DOC.read_text()))
    assert named, "the pattern finds the check ids the page names"
    assert named - known == set(), (
        f"checks the doc names that the kit does not have: {named - known}"
    )
