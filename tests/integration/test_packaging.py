"""The distributions as a user gets them: the sdist is the whole project and the wheel
is built from it (what ``python -m build`` checks), the wheel holds the package alone,
and the wheel installed into a fresh virtual environment runs the command line and the
plugin executables.

Building takes setuptools from the configured package indexes, and the fresh
environment gets cnilib's dependencies from them too."""

from __future__ import annotations

import email.parser
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from email.message import Message
from pathlib import Path

import pytest

import cnilib

ROOT = Path(__file__).resolve().parents[2]
VERSION = cnilib.__version__
WHEEL_NAME = f"cnilib-{VERSION}-py3-none-any.whl"
SDIST_NAME = f"cnilib-{VERSION}.tar.gz"
DIST_INFO = f"cnilib-{VERSION}.dist-info"

# What a working tree holds besides the project: never part of a distribution.
NOT_PROJECT = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "site",
    "*.egg-info",
    "__pycache__",
    "*.py[cod]",
    ".*_cache",
    ".hypothesis",
    ".benchmarks",
    ".coverage*",
    "PKG-INFO",
    "setup.cfg",  # written into an sdist; a tree extracted from one has it
)
# The directories and files of the project that the sdist must carry in full.
SDIST_DIRS = ("cnilib", "tests", "docs", "schemas", "examples", "benchmarks")
SDIST_FILES = ("LICENSE", "README.md", "Makefile", "pyproject.toml", "MANIFEST.in", ".ci/run")


def run(
    argv: Sequence[str | Path],
    *,
    cwd: Path,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run a command outside the checkout (so that its ``cnilib`` is not importable from
    the working directory) and without the test run's import path; return its stdout."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project (building writes into the tree it builds)."""
    tree = tmp_path_factory.mktemp("source") / "cnilib"
    shutil.copytree(ROOT, tree, ignore=NOT_PROJECT, symlinks=True)
    return tree


@pytest.fixture(scope="module")
def dists(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist, and the wheel built from that sdist."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", out, source], cwd=out)
    assert sorted(p.name for p in out.iterdir()) == sorted([SDIST_NAME, WHEEL_NAME])
    return out


@pytest.fixture(scope="module")
def venv(dists: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment (no system site-packages) with the wheel installed,
    its dependencies from the package indexes."""
    where = tmp_path_factory.mktemp("venv")
    env_dir = where / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", env_dir], cwd=where)
    pip = [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python")]
    run([*pip, "install", "--quiet", "--disable-pip-version-check", dists / WHEEL_NAME], cwd=where)
    return env_dir


def metadata(text: str) -> Message:
    return email.parser.Parser().parsestr(text)


def project_files(tree: Path, top: str) -> set[str]:
    """The files under ``tree/top``, relative to ``tree``, through symbolic links
    (``cnilib/schemas`` links to the top-level ``schemas``)."""
    found = set()
    for directory, subdirs, files in os.walk(tree / top, followlinks=True):
        subdirs[:] = [d for d in subdirs if d != "__pycache__"]
        found |= {
            (Path(directory) / f).relative_to(tree).as_posix()
            for f in files
            if not f.endswith(".pyc")
        }
    return found


class TestSdist:
    def test_holds_the_whole_project(self, source: Path, dists: Path) -> None:
        with tarfile.open(dists / SDIST_NAME) as sdist:
            prefix = f"cnilib-{VERSION}/"
            names = {m.name.removeprefix(prefix) for m in sdist.getmembers() if m.isfile()}
        expected = set(SDIST_FILES)
        if (source / "mkdocs.yml").exists():
            expected.add("mkdocs.yml")
        for top in SDIST_DIRS:
            expected |= project_files(source, top)
        assert expected - names == set()
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]

    def test_metadata_has_the_spdx_license(self, dists: Path) -> None:
        with tarfile.open(dists / SDIST_NAME) as sdist:
            member = sdist.extractfile(f"cnilib-{VERSION}/PKG-INFO")
            assert member is not None
            meta = metadata(member.read().decode())
        assert "Apache-2.0" == meta["License-Expression"]
        assert ["LICENSE"] == meta.get_all("License-File")


class TestWheel:
    def test_holds_the_package_alone(self, source: Path, dists: Path) -> None:
        with zipfile.ZipFile(dists / WHEEL_NAME) as wheel:
            names = set(wheel.namelist())
        assert {n.split("/")[0] for n in names} == {"cnilib", DIST_INFO}
        package = {n for n in project_files(source, "cnilib") if n.endswith((".py", ".json"))}
        assert package | {"cnilib/py.typed"} <= names
        assert {n for n in names if n.startswith("cnilib/schemas/")} == {
            n for n in package if n.startswith("cnilib/schemas/")
        }

    def test_carries_the_license_and_the_metadata(self, source: Path, dists: Path) -> None:
        with zipfile.ZipFile(dists / WHEEL_NAME) as wheel:
            license_text = wheel.read(f"{DIST_INFO}/licenses/LICENSE")
            meta = metadata(wheel.read(f"{DIST_INFO}/METADATA").decode())
        assert (source / "LICENSE").read_bytes() == license_text
        assert b"Apache License" in license_text
        assert "Apache-2.0" == meta["License-Expression"]
        classifiers = meta.get_all("Classifier") or []
        assert "Typing :: Typed" in classifiers
        assert "Operating System :: POSIX :: Linux" in classifiers
        assert not [c for c in classifiers if c.startswith("License ::")]
        assert ">=3.11" == meta["Requires-Python"]
        urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
        assert {"Homepage", "Documentation", "Source", "Issues"} <= urls.keys()


class TestInstalledWheel:
    def test_imports_from_the_environment(self, venv: Path) -> None:
        where = run(
            [venv / "bin" / "python", "-c", "import cnilib; print(cnilib.__file__)"], cwd=venv
        )
        assert Path(where.strip()).is_relative_to(venv)

    def test_command_line(self, venv: Path) -> None:
        assert f"cnilib {VERSION}" == run([venv / "bin" / "cnilib", "--version"], cwd=venv).strip()
        usage = run([venv / "bin" / "python", "-m", "cnilib", "--help"], cwd=venv)
        assert "add" in usage
        assert "del" in usage

    def test_installed_plugin_answers_version(self, venv: Path, tmp_path: Path) -> None:
        """``python -m cnilib.plugins install`` writes executables that run on the
        environment's interpreter; VERSION touches no network state."""
        bin_dir = tmp_path / "bin"
        run([venv / "bin" / "python", "-m", "cnilib.plugins", "install", bin_dir], cwd=tmp_path)
        bridge = bin_dir / "bridge"
        assert f"#!{venv / 'bin' / 'python'} -IS" == bridge.read_text().splitlines()[0]
        answer = json.loads(
            run(
                [bridge],
                cwd=tmp_path,
                stdin='{"cniVersion": "1.0.0"}',
                env={"CNI_COMMAND": "VERSION", "PATH": os.environ.get("PATH", "")},
            )
        )
        assert "1.0.0" in answer["supportedVersions"]
