"""``cnilib doctor``: where each plugin runs from, its versions against the list's,
STATUS, and the files that could not be loaded. Plugins here are recorders,
which touch nothing, and cnilib's own answering VERSION only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from cnilib.testing import install_recording_plugin, read_recording
from tests.integration.test_cli import run_cli


def _write(directory: Path, name: str, doc: Mapping[str, object]) -> None:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(json.dumps(doc))


def _recorder(log: Path, kind: str = "recorder", **todo: object) -> dict[str, object]:
    return {"type": kind, "recorder": {"log": str(log), **todo}}


@pytest.fixture
def env(tmp_path: Path, cnilib_cni_bin_dir: Path) -> dict[str, str]:
    install_recording_plugin(cnilib_cni_bin_dir, "old-v040")
    return {"NETCONFPATH": str(tmp_path / "net.d"), "CNI_PATH": str(cnilib_cni_bin_dir)}


def test_ready_network(tmp_path: Path, env: dict[str, str], cnilib_recorder_log: Path) -> None:
    """A 1.1 list whose plugins are all there and speak 1.1.0: STATUS runs, exit 0."""
    _write(
        tmp_path / "net.d",
        "10-a.conflist",
        {"cniVersion": "1.1.0", "name": "a", "plugins": [_recorder(cnilib_recorder_log)]},
    )

    done = run_cli("doctor", env=env)

    assert 0 == done.returncode, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith("cniVersion 1.1.0: ready")
    assert lines[1].startswith(f"  plugin recorder: {env['CNI_PATH']}/recorder, supports 1.1.0")
    assert "  STATUS: ok" == lines[2]
    assert ["STATUS"] == [call["verb"] for call in read_recording(cnilib_recorder_log)]


def test_every_kind_of_problem(
    tmp_path: Path, env: dict[str, str], cnilib_recorder_log: Path
) -> None:
    """A failing STATUS, a plugin speaking older versions only, a missing plugin and a
    file that does not load are each named; STATUS is not sent where it cannot work."""
    log = cnilib_recorder_log
    failing = _recorder(log, STATUS={"error": {"code": 50, "msg": "daemon down"}})
    _write(
        tmp_path / "net.d",
        "10-a.conflist",
        {"cniVersion": "1.1.0", "name": "a", "plugins": [failing]},
    )
    old = {"cniVersion": "1.1.0", "name": "b", "plugins": [_recorder(log, "old-v040")]}
    _write(tmp_path / "net.d", "20-b.conflist", old)
    missing = {"cniVersion": "1.0.0", "name": "c", "plugins": [{"type": "nosuch"}]}
    _write(tmp_path / "net.d", "30-c.conflist", missing)
    (tmp_path / "net.d" / "40-d.conf").write_text("{")

    done = run_cli("doctor", env=env)

    assert 1 == done.returncode
    text = done.stdout
    assert 'network "a"' in text
    assert "STATUS: failed: " in text
    assert "daemon down" in text
    assert "plugin old-v040: " in text
    assert "does not support 1.1.0 (speaks 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0)" in text
    assert 'plugin nosuch: not found: failed to find plugin "nosuch" in path' in text
    assert "problem: " in text
    assert "40-d.conf" in text
    assert 4 == text.count("NOT READY") + text.count("problem: ")
    # STATUS reached network a only: b's plugin is too old, c's is missing.
    assert ["STATUS"] == [call["verb"] for call in read_recording(log)]


def test_one_network_as_json(
    tmp_path: Path, env: dict[str, str], cnilib_recorder_log: Path
) -> None:
    plugins = [_recorder(cnilib_recorder_log), {"type": "nosuch"}]
    _write(
        tmp_path / "net.d",
        "10-a.conflist",
        {"cniVersion": "1.0.0", "name": "a", "plugins": plugins},
    )

    done = run_cli("doctor", "a", "--json", env=env)

    assert 1 == done.returncode
    report = json.loads(done.stdout)
    (network,) = report["networks"]
    recorder, nosuch = network["plugins"]
    assert (False, [], "a", "1.0.0", False) == (
        report["ready"],
        report["problems"],
        network["name"],
        network["cniVersion"],
        network["ready"],
    )
    assert (True, None, f"{env['CNI_PATH']}/recorder") == (
        recorder["supportsListVersion"],
        recorder["error"],
        recorder["location"],
    )
    assert (None, None, False) == (
        nosuch["location"],
        nosuch["supportedVersions"],
        nosuch["supportsListVersion"],
    )
    assert 'failed to find plugin "nosuch"' in nosuch["error"]
    assert network["status"].startswith("not run: ")


def test_in_process_plugins(tmp_path: Path, env: dict[str, str]) -> None:
    """--plugins in-process: cnilib's own bridge and host-local, with every version."""
    bridge = {"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.250.9.0/24"}}
    _write(
        tmp_path / "net.d",
        "10-a.conflist",
        {"cniVersion": "1.0.0", "name": "a", "plugins": [bridge]},
    )

    done = run_cli("doctor", "--plugins", "in-process", env=env)

    assert 0 == done.returncode, done.stdout + done.stderr
    assert "  plugin bridge: in-process, supports 1.0.0 (speaks 0.1.0, " in done.stdout
    assert "  ipam host-local: in-process, supports 1.0.0" in done.stdout
    assert "STATUS: not run: cniVersion 1.0.0 has no STATUS" in done.stdout


def test_empty_conf_dir(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "net.d").mkdir()

    done = run_cli("doctor", env=env)

    assert 1 == done.returncode
    assert f"no network configurations in {tmp_path / 'net.d'}" in done.stdout
