"""The documentation site builds with ``mkdocs build --strict`` and renders the docstrings.

Strict mode turns every broken link, missing nav page or docstring that
mkdocstrings cannot parse into a failure, so this test fails as soon as a
page links to a file that moved or a reference page names an API that is gone.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason="mkdocs and mkdocstrings are not installed (pip install -e '.[docs]')",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module into a temporary directory."""
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


def test_every_guide_is_a_page(site: Path) -> None:
    guides = sorted(p.stem for p in (ROOT / "docs").glob("*.md") if p.stem != "index")
    missing = [name for name in guides if not (site / name / "index.html").is_file()]
    assert missing == []


def test_reference_renders_the_public_api(site: Path) -> None:
    runtime = _text(site / "reference" / "runtime" / "index.html")
    assert "cnilib.runtime.CNI" in runtime
    assert "add_network_list" in runtime
    executors = _text(site / "reference" / "executors" / "index.html")
    names = ("aexec", "version_info", "SubprocessExecutor", "ChainExecutor", "InProcessExecutor")
    assert [name for name in names if name not in executors] == []


def test_no_sphinx_markup_leaks_into_the_reference(site: Path) -> None:
    leaks = []
    for page in sorted((site / "reference").glob("*/index.html")):
        text = _text(page)
        # Markdown has eaten the backticks by now: a role shows as ":class:Name".
        for pattern in (r":(class|meth|func|attr|data|mod|exc|obj):\S", r":param \w+:", r"\S::$"):
            found = re.finditer(pattern, text, re.MULTILINE)
            leaks += [f"{page.parent.name}: {m.group(0)}" for m in found]
    assert leaks == []
