"""Tests for cnilib.spec: Go-compatible version parsing, ordering, and per-version verbs.

Parse vectors live in tests/data/config/versions.json:
``[{"name", "input", "error": <substring> | null, "expect": [major, minor, micro] | null}]``.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from cnilib import spec
from cnilib.errors import ErrorCode, VersionError
from cnilib.spec import SpecVersion, parse_version

DATA = Path(__file__).resolve().parents[1] / "data" / "config"
VECTORS: list[dict[str, Any]] = json.loads((DATA / "versions.json").read_text(encoding="utf-8"))


def _ids(case: dict[str, Any]) -> str:
    return str(case["name"])


class TestParseVersion:
    """parse_version follows Go's version.ParseVersion."""

    @pytest.mark.parametrize("case", [c for c in VECTORS if c["error"] is None], ids=_ids)
    def test_valid(self, case: dict[str, Any]) -> None:
        """Valid strings parse to (major, minor, micro) and keep their text."""
        parsed = parse_version(case["input"])
        assert (tuple(case["expect"]), case["input"]) == (parsed.key, str(parsed))

    @pytest.mark.parametrize("case", [c for c in VECTORS if c["error"] is not None], ids=_ids)
    def test_invalid(self, case: dict[str, Any]) -> None:
        """Invalid strings raise VersionError (code 1) with Go's leading text."""
        with pytest.raises(VersionError) as info:
            parse_version(case["input"])
        assert (True, ErrorCode.INCOMPATIBLE_CNI_VERSION) == (
            case["error"] in str(info.value),
            info.value.code,
        )

    @given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
    def test_any_three_numbers(self, major: int, minor: int, micro: int) -> None:
        """Any three non-negative numbers parse to themselves."""
        assert (major, minor, micro) == parse_version(f"{major}.{minor}.{micro}").key

    @given(st.lists(st.integers(0, 99).map(str), min_size=4, max_size=8))
    def test_four_or_more_parts(self, parts: list[str]) -> None:
        """Four or more parts are always 'too many parts'."""
        with pytest.raises(VersionError, match="too many parts"):
            parse_version(".".join(parts))

    @given(st.text(max_size=12))
    def test_never_other_exception(self, text: str) -> None:
        """Any text parses or raises VersionError, never anything else."""
        with contextlib.suppress(VersionError):
            parse_version(text)

    def test_repr(self) -> None:
        """repr shows the original text."""
        assert "SpecVersion('1.0')" == repr(parse_version("1.0"))


class TestOrdering:
    """SpecVersion orders numerically and compares with strings."""

    def test_sorting_is_numeric(self) -> None:
        """Sorting uses numbers, not text."""
        versions = [parse_version(v) for v in ("1.0.0", "0.10.0", "0.2.0", "", "0.9.1")]
        assert ["", "0.2.0", "0.9.1", "0.10.0", "1.0.0"] == [str(v) for v in sorted(versions)]

    def test_equal_across_spellings(self) -> None:
        """'1', '1.0' and '1.0.0' are the same version with the same hash."""
        a, b, c = parse_version("1"), parse_version("1.0"), parse_version("1.0.0")
        assert (True, True, 1) == (a == b, b == c, len({a, b, c}))

    def test_empty_equals_0_1_0(self) -> None:
        """'' is 0.1.0."""
        assert parse_version("") == parse_version("0.1.0")

    def test_compare_with_str(self) -> None:
        """Comparisons accept version strings."""
        v = parse_version("1.0.0")
        assert (True, True, True, True, False) == (
            v == "1.0",
            v < "1.1.0",
            v > "0.4.0",
            v >= "1",
            v != "1.0.0",
        )

    def test_equal_to_unparsable_str_is_false(self) -> None:
        """Equality with an unparsable string is False, not an error."""
        assert False is (parse_version("1.0.0") == "broken")

    def test_order_with_unparsable_str_raises(self) -> None:
        """Ordering against an unparsable string raises VersionError."""
        with pytest.raises(VersionError):
            _ = parse_version("1.0.0") < "broken"

    def test_equal_to_other_type_is_false(self) -> None:
        """Comparing with a non-version, non-str is simply unequal."""
        assert False is (parse_version("1.0.0") == 1)

    def test_constructed_directly(self) -> None:
        """A SpecVersion built by hand compares by its numbers."""
        assert SpecVersion("x", 1, 1, 0) == spec.CURRENT


class TestConstants:
    """ALL_VERSIONS, LEGACY_VERSIONS and CURRENT mirror Go's version package."""

    def test_all_versions(self) -> None:
        """version.All, oldest first."""
        expected = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        assert expected == [str(v) for v in spec.ALL_VERSIONS]

    def test_all_versions_strictly_increasing(self) -> None:
        """Each version is greater than the one before it."""
        pairs = zip(spec.ALL_VERSIONS, spec.ALL_VERSIONS[1:], strict=False)
        assert all(a < b for a, b in pairs)

    def test_legacy_and_current(self) -> None:
        """Legacy is 0.1.0/0.2.0; current is 1.1.0."""
        assert (["0.1.0", "0.2.0"], "1.1.0") == (
            [str(v) for v in spec.LEGACY_VERSIONS],
            str(spec.CURRENT),
        )


class TestVerbs:
    """Which verbs each version has."""

    @pytest.mark.parametrize("cni_version", spec.ALL_VERSIONS, ids=str)
    def test_has_check(self, cni_version: SpecVersion) -> None:
        """CHECK exists from 0.4.0."""
        assert (cni_version.key >= (0, 4, 0)) == spec.has_check(cni_version)

    @pytest.mark.parametrize("cni_version", spec.ALL_VERSIONS, ids=str)
    def test_has_gc_and_status(self, cni_version: SpecVersion) -> None:
        """GC and STATUS exist from 1.1.0."""
        expected = cni_version.key >= (1, 1, 0)
        assert (expected, expected) == (spec.has_gc(cni_version), spec.has_status(cni_version))

    @pytest.mark.parametrize(
        ("text", "check", "gc"),
        [("", False, False), ("0.3.1", False, False), ("0.4", True, False), ("1.2.3", True, True)],
    )
    def test_edge_versions(self, text: str, check: bool, gc: bool) -> None:
        """Unreleased and short spellings are judged by their numbers."""
        v = parse_version(text)
        assert (check, gc, gc) == (spec.has_check(v), spec.has_gc(v), spec.has_status(v))
