"""What the CLI's quick commands import: each only what it needs.

Behaviour, not time: a fresh interpreter runs the command and reports the
modules it loaded. It runs with ``-S`` (site's ``.pth`` files and hooks could
import anything) and finds cnilib and its dependencies through ``PYTHONPATH``.
No plugin runs: the plugin path is an empty directory.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cnilib

# The probe itself imports nothing beyond sys: it writes a Python literal.
_PROBE = """
import sys
from cnilib.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
with open(sys.argv[1], "w") as out:
    out.write(repr((code, sorted(sys.modules))))
"""


def _origin_dir(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None
    assert spec.origin is not None
    return str(Path(spec.origin).parent.parent)


def _loaded(tmp_path: Path, *argv: str) -> tuple[int, set[str]]:
    """Run ``cnilib argv`` in a fresh ``python -S``; its exit code and loaded modules.

    Plugins are looked for in ``tmp_path / "no-plugins"``, empty unless a test
    puts one there (see :func:`_fake_plugin`)."""
    roots = {str(Path(cnilib.__file__).parent.parent)}
    deps = ("attrs", "cattrs", "jsonschema", "referencing", "rpds", "typing_extensions")
    roots |= {_origin_dir(m) for m in deps}
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(sorted(roots)),
        "CNI_PATH": str(tmp_path / "no-plugins"),
    }
    (tmp_path / "no-plugins").mkdir(exist_ok=True)
    report = tmp_path / "modules.json"
    subprocess.run(
        [sys.executable, "-S", "-c", _PROBE, str(report), *argv],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        check=False,
        timeout=60,
    )
    code, modules = ast.literal_eval(report.read_text())
    return code, set(modules)


def test_help_imports_neither_typing_nor_json(tmp_path: Path) -> None:
    code, modules = _loaded(tmp_path, "--help")
    assert code == 0
    assert not modules & {"typing", "json", "hashlib", "logging", "attrs", "cattrs"}


@pytest.fixture
def conflist(tmp_path: Path) -> Path:
    path = tmp_path / "net.conflist"
    path.write_text(
        '{"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "ptp"}, {"type": "tuning"}]}'
    )
    return path


def test_validate_builds_no_runtime(tmp_path: Path, conflist: Path) -> None:
    """validate asks each plugin VERSION without the runtime, its cache or its results."""
    code, modules = _loaded(tmp_path, "validate", str(conflist))
    assert code == 1  # both plugins are missing from the empty plugin path
    heavy = {"cattrs", "cnilib.runtime", "cnilib.cache", "cnilib.results", "pyroute2"}
    assert not modules & heavy
    assert "cnilib.invoke._versions" in modules  # the light path ran


def test_list_and_version_import_neither_hashlib_nor_the_runtime(
    tmp_path: Path, conflist: Path
) -> None:
    for argv in (("--conf-dir", str(tmp_path), "list"), ("version", "ptp")):
        _, modules = _loaded(tmp_path, *argv)
        assert not modules & {"hashlib", "cattrs", "cnilib.runtime", "jsonschema", "pyroute2"}


# What the quick commands must not import: each costs more start-up time than
# the command's own work (attrs alone is most of the +60 ms budget).
_HEAVY = {
    "attrs",
    "attr",
    "cattrs",
    "logging",
    "shutil",
    "jsonschema",
    "referencing",
    "pyroute2",
    "cnilib.runtime",
    "cnilib.invoke",
    "cnilib.config._model",
}


def _fake_plugin(tmp_path: Path, name: str, answer: str) -> None:
    """A plugin that prints ``answer`` and exits 0, in ``_loaded``'s plugin path."""
    plugin = tmp_path / "no-plugins" / name
    plugin.parent.mkdir(exist_ok=True)
    plugin.write_text(f"#!/bin/sh\ncat >/dev/null\necho '{answer}'\n")
    plugin.chmod(0o755)


def test_version_of_a_binary_imports_neither_attrs_logging_nor_the_executor(
    tmp_path: Path,
) -> None:
    _fake_plugin(tmp_path, "fake", '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}')
    code, modules = _loaded(tmp_path, "version", "fake")
    assert code == 0
    assert not modules & _HEAVY
    assert "cnilib.cli._quickversion" in modules


def test_list_imports_neither_attrs_nor_logging(tmp_path: Path) -> None:
    (tmp_path / "a.conflist").write_text(
        '{"cniVersion": "1.0.0", "name": "a", "plugins": [{"type": "ptp"}]}'
    )
    (tmp_path / "b.conf").write_text('{"cniVersion": "0.4.0", "name": "b", "type": "loopback"}')
    (tmp_path / "c.conf").write_text("not json")  # a problem is reported without them too
    code, modules = _loaded(tmp_path, "--conf-dir", str(tmp_path), "list")
    assert code == 1
    assert not modules & _HEAVY
    assert "cnilib.config._load" in modules
