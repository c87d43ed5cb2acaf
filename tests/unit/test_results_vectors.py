"""Data-driven result tests: tests/data/results/<version>/*.json and tests/data/conversions.json.

Every expected value in those files was derived by hand from the Go sources
(pkg/types/{020,040,100}/types.go, pkg/types/internal/convert.go), in the key
order Go writes: struct order for 0.x, sorted keys for 1.x.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cnilib import errors
from cnilib.results import convert_result, decode_result

DATA = Path(__file__).resolve().parent.parent / "data"
RESULT_FILES = sorted((DATA / "results").glob("*/*.json"))
CONVERSIONS: list[dict[str, Any]] = json.loads((DATA / "conversions.json").read_text())
ALL = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def _ordered(value: object) -> str:
    """JSON text keeping key order, so that dict comparison also checks Go's order."""
    return json.dumps(value, sort_keys=False)


def _input(doc: dict[str, Any]) -> str:
    raw = doc["input"]
    return raw if isinstance(raw, str) else json.dumps(raw)


class TestResultVectors:
    def test_every_version_has_vectors(self) -> None:
        """Each released spec version has at least two result vectors."""
        for version in ALL:
            assert len(list((DATA / "results" / version).glob("*.json"))) >= 2, version

    @pytest.mark.parametrize("path", RESULT_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
    def test_vector(self, path: Path) -> None:
        """Decoding the vector's input gives Go's output, or Go's error with its code."""
        doc = json.loads(path.read_text())
        default = doc.get("default_version", "")
        if "error" in doc:
            expected = doc["error"]
            with pytest.raises(getattr(errors, expected["type"])) as info:
                decode_result(_input(doc), default_version=default)
            assert str(info.value) == expected["message"]
            assert info.value.code == expected["code"]
            return
        result = decode_result(_input(doc), default_version=default)
        assert _ordered(result.to_object()) == _ordered(doc["expected"])
        assert result.cni_version == path.parent.name

    @pytest.mark.parametrize(
        "path",
        [p for p in RESULT_FILES if "expected" in json.loads(p.read_text())],
        ids=lambda p: f"{p.parent.name}/{p.stem}",
    )
    def test_vector_output_is_a_fixed_point(self, path: Path) -> None:
        """Go's output decodes to the same result and re-encodes byte for byte."""
        doc = json.loads(path.read_text())
        text = json.dumps(doc["expected"], separators=(",", ":"))
        result = decode_result(text)
        assert result.to_json() == text
        assert decode_result(result.to_json()) == result


class TestConversionVectors:
    def test_matrix_is_complete(self) -> None:
        """conversions.json covers all 49 (from, to) pairs of released versions."""
        pairs = {(c["from"], c["to"]) for c in CONVERSIONS}
        assert {(a, b) for a in ALL for b in ALL} <= pairs

    @pytest.mark.parametrize(
        "case", CONVERSIONS, ids=lambda c: f"{c['from']}->{c['to'] or 'empty'}:{c['description']}"
    )
    def test_conversion(self, case: dict[str, Any]) -> None:
        """Converting the decoded input gives Go's output for the target version, or Go's error."""
        result = decode_result(json.dumps(case["input"]))
        assert result.cni_version == case["from"]
        if "error" in case:
            with pytest.raises(errors.ResultConversionError) as info:
                convert_result(result, case["to"])
            assert str(info.value) == case["error"]
            assert info.value.code == errors.ErrorCode.INCOMPATIBLE_CNI_VERSION
            return
        converted = result.convert_to(case["to"])
        assert _ordered(converted.to_object()) == _ordered(case["expected"])
        assert converted.cni_version == (case["to"] or "0.1.0")
