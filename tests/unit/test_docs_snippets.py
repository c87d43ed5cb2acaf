"""Every Python snippet in README.md and docs/*.md compiles and imports public names only.

A reader copies these snippets; one that does not parse, or that imports
``cnilib.plugins._executor`` where ``cnilib.InProcessExecutor`` exists, teaches
the wrong thing. Top-level ``await`` is allowed: some snippets show the body
of a coroutine.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
# cnilib._version and friends, cnilib.plugins._executor, ...: any private component.
_PRIVATE = re.compile(r"^cnilib(\.\w+)*\._\w+")


def snippets() -> list[tuple[str, int, str]]:
    """(file, line of the fence, code) for every ```python block."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((path.relative_to(ROOT).as_posix(), line, match.group(1)))
    return found


def private_imports(tree: ast.AST) -> list[str]:
    """Modules under cnilib with a private component that *tree* imports from."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return [name for name in names if _PRIVATE.match(name)]


SNIPPETS = snippets()


def test_there_are_snippets() -> None:
    assert len(SNIPPETS) >= 5


@pytest.mark.parametrize(
    ("where", "line", "code"), SNIPPETS, ids=[f"{w}:{n}" for w, n, _ in SNIPPETS]
)
def test_snippet_compiles_and_imports_public_names(where: str, line: int, code: str) -> None:
    try:
        tree = compile(
            code, f"{where}:{line}", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
    except SyntaxError as exc:
        pytest.fail(f"{where}, snippet at line {line}: {exc}")
    assert private_imports(tree) == [], f"{where}, snippet at line {line} imports private modules"


@pytest.mark.parametrize(
    ("source", "private"),
    [
        ("from cnilib.plugins._executor import InProcessExecutor", ["cnilib.plugins._executor"]),
        ("import cnilib._json", ["cnilib._json"]),
        ("from cnilib.plugins import InProcessExecutor", []),
        ("import cnilib.testing.pytest_plugin", []),
        ("from ._local import x", []),
    ],
)
def test_private_imports_are_found(source: str, private: list[str]) -> None:
    assert private_imports(ast.parse(source)) == private
