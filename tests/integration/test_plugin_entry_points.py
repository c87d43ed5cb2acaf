"""A third-party plugin package, pip-installed for real: examples/plugin_package
in a virtual environment, then listed, installed as a CNI executable and run."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "plugin_package"

PREV_RESULT = {
    "cniVersion": "1.1.0",
    "ips": [{"address": "10.9.0.2/24"}],
    "dns": {"nameservers": ["10.0.0.53"]},
}
CONFIG = {
    "cniVersion": "1.1.0",
    "name": "net",
    "type": "dns-search",
    "nameservers": ["10.96.0.10"],
    "search": ["svc.local"],
    "prevResult": PREV_RESULT,
}


def _run(
    *argv: str | Path, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        input=input,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment seeing this cnilib (system site) with the example installed."""
    root = tmp_path_factory.mktemp("plugin-venv")
    made = _run(sys.executable, "-m", "venv", "--system-site-packages", root / "venv")
    assert 0 == made.returncode, made.stderr
    python = root / "venv" / "bin" / "python"
    # The system site is the base interpreter's: when this run is itself in a virtual
    # environment (make test's .venv), cnilib's dependencies are not in it, and the
    # plugin executables (-IS) only see this environment's directories.
    deps = [r for r in importlib.metadata.requires("cnilib") or [] if "extra ==" not in r]
    installed = _run(python, "-m", "pip", "install", "--quiet", *deps)
    assert 0 == installed.returncode, installed.stderr
    # A copy, so that the build leaves nothing in the checkout.
    source = root / "src"
    _run("cp", "-r", EXAMPLE, source)
    pip = _run(python, "-m", "pip", "install", "--no-deps", "--quiet", source)
    assert 0 == pip.returncode, pip.stderr
    return python


def test_list_names_the_package(venv: Path) -> None:
    listed = _run(venv, "-m", "cnilib.plugins", "list")

    assert 0 == listed.returncode, listed.stderr
    assert "dns-search\tcni-dns-search 1.0.0" in listed.stdout.splitlines()
    assert "bridge\tcnilib" in listed.stdout.splitlines()


def test_installed_executable_runs_the_package_plugin(venv: Path, tmp_path: Path) -> None:
    """The executable answers VERSION from the plugin class and runs ADD with prevResult."""
    installed = _run(venv, "-m", "cnilib.plugins", "install", tmp_path / "bin", "dns-search")
    assert 0 == installed.returncode, installed.stderr
    plugin = tmp_path / "bin" / "dns-search"
    assert [str(plugin)] == installed.stdout.split()
    base = {"CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0", "CNI_PATH": str(tmp_path / "bin")}

    version = _run(plugin, input="{}", env={"CNI_COMMAND": "VERSION"})
    add = _run(
        plugin,
        input=json.dumps(CONFIG),
        # The plugin never enters the namespace: any path will do.
        env={**base, "CNI_COMMAND": "ADD", "CNI_NETNS": "/var/run/netns/c1"},
    )

    assert 0 == version.returncode, version.stdout + version.stderr
    assert ["1.0.0", "1.1.0"] == json.loads(version.stdout)["supportedVersions"]
    assert 0 == add.returncode, add.stdout + add.stderr
    dns = json.loads(add.stdout)["dns"]
    assert {"nameservers": ["10.0.0.53", "10.96.0.10"], "search": ["svc.local"]} == dns


def test_installed_executable_reports_a_bad_config(venv: Path, tmp_path: Path) -> None:
    _run(venv, "-m", "cnilib.plugins", "install", tmp_path / "bin", "dns-search")
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_IFNAME": "eth0",
        "CNI_NETNS": "/var/run/netns/c1",
        "CNI_PATH": str(tmp_path / "bin"),
    }

    add = _run(
        tmp_path / "bin" / "dns-search", input=json.dumps({**CONFIG, "search": "x"}), env=env
    )

    assert 1 == add.returncode
    error = json.loads(add.stdout)
    assert 7 == error["code"]
    assert '"search" must be an array' in error["msg"]


def test_unknown_type_is_refused_before_writing(venv: Path, tmp_path: Path) -> None:
    installed = _run(venv, "-m", "cnilib.plugins", "install", tmp_path / "bin", "bridge", "nope")

    assert 1 == installed.returncode
    assert "no in-process plugin 'nope'; available: " in installed.stderr
    assert "Traceback" not in installed.stderr
    assert not (tmp_path / "bin").exists()


def test_default_install_includes_installed_packages(venv: Path, tmp_path: Path) -> None:
    installed = _run(venv, "-m", "cnilib.plugins", "install", tmp_path / "bin")

    assert 0 == installed.returncode, installed.stderr
    names = sorted(os.listdir(tmp_path / "bin"))
    assert "dns-search" in names
    assert "bridge" in names
