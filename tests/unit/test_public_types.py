"""The types a caller writes in signatures are exported and type-check under mypy --strict."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import cnilib

SNIPPET = Path(__file__).parent.parent / "typecheck" / "check_public_types.py"
ROOT = Path(__file__).parent.parent.parent


def _mypy(*files: Path) -> tuple[str, int]:
    api = pytest.importorskip("mypy.api")
    out, err, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--no-error-summary", *map(str, files)]
    )
    return out + err, status


class TestPublicTypes:
    @pytest.mark.parametrize("name", ["JSONValue", "JSONObject", "JSONLike", "CapabilityArgs"])
    def test_exported(self, name: str) -> None:
        """Each type alias is importable from cnilib and listed in __all__."""
        assert getattr(cnilib, name) is not None
        assert name in cnilib.__all__

    def test_caller_code_type_checks(self) -> None:
        """The caller's snippet (annotated caps, Path netns, dict args) passes strict mypy."""
        out, status = _mypy(SNIPPET)

        assert (0, "") == (status, out.strip())

    def test_the_check_bites(self, tmp_path: Path) -> None:
        """The same run does flag a capability-args value that is no JSON (so it checks)."""
        bad = tmp_path / "bad_caps.py"
        bad.write_text(
            textwrap.dedent(
                """
                import cnilib

                caps: dict[str, object] = {"portMappings": []}
                cnilib.RuntimeConf("c", "/run/netns/c", "eth0", capability_args=caps)
                """
            )
        )

        out, status = _mypy(bad)

        assert 1 == status
        assert '"capability_args"' in out
