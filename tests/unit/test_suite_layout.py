"""The test tree itself: rules pytest's default import mode imposes on it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_test_modules_have_unique_basenames() -> None:
    """Without ``__init__.py`` files, pytest imports each test module by its basename:
    two ``test_x.py`` in different directories stop the whole run at collection."""
    seen: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        if "__pycache__" not in path.parts:
            seen[path.name].append(str(path.relative_to(TESTS)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes
