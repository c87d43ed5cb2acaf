"""``python -m cnilib --plugins``: cnilib's in-process plugins, binaries on
CNI_PATH, or both in either order. The CLI runs as
``ip netns exec <node> python -m cnilib ...``, so that in-process plugins do
their host-side work in the node namespace, never in the machine's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnilib.testing import NetNS, create_netns, install_recording_plugin, read_recording

SUBNET = "172.31.91.0/24"


@pytest.fixture
def node() -> Iterator[NetNS]:
    ns = create_netns("cnilib-clinode")
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture
def ctr() -> Iterator[NetNS]:
    ns = create_netns("cnilib-clictr")
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    """A conf dir with "brnet" (bridge + host-local) and "lonet" (loopback, 1.1.0)."""
    directory = tmp_path / "net.d"
    directory.mkdir()
    bridge = {
        "cniVersion": "1.0.0",
        "name": "brnet",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "clibr0",
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(tmp_path / "ipam"),
                    "ranges": [[{"subnet": SUBNET}]],
                },
            }
        ],
    }
    (directory / "10-brnet.conflist").write_text(json.dumps(bridge))
    loopback = {
        "cniVersion": "1.1.0",
        "name": "lonet",
        "plugins": [{"type": "loopback", "recorder": {"log": str(tmp_path / "rec.jsonl")}}],
    }
    (directory / "20-lonet.conflist").write_text(json.dumps(loopback))
    return directory


@pytest.fixture
def empty_bin(tmp_path: Path) -> Path:
    path = tmp_path / "empty-bin"
    path.mkdir()
    return path


@pytest.fixture
def impostor_bin(tmp_path: Path) -> Path:
    """A CNI_PATH whose "loopback" is the recording plugin: who ran is in its log."""
    path = tmp_path / "impostor-bin"
    install_recording_plugin(path, "loopback")
    return path


def run_cli(
    node: NetNS, cni_path: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``ip netns exec <node> python -m cnilib ...`` in a CNI_*- and CNILIB_*-free environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "CNILIB_"))}
    return subprocess.run(
        [*node.exec_prefix, sys.executable, "-m", "cnilib", *argv],
        capture_output=True,
        text=True,
        env={**base, "CNI_PATH": str(cni_path), **(env or {})},
        check=False,
        timeout=120,
    )


def addresses(ns: NetNS, ifname: str) -> list[str]:
    shown = json.loads(ns.exec("ip", "-j", "addr", "show", "dev", ifname).stdout)
    return [
        f"{a['local']}/{a['prefixlen']}" for a in shown[0]["addr_info"] if a["family"] == "inet"
    ]


def link_is_up(ns: NetNS, ifname: str) -> bool:
    shown = json.loads(ns.exec("ip", "-j", "link", "show", "dev", ifname).stdout)
    return "UP" in shown[0]["flags"]


class TestInProcessThroughTheCLI:
    @pytest.mark.parametrize("how", ["option", "env"])
    def test_bridge_host_local_add_check_del(
        self,
        node: NetNS,
        ctr: NetNS,
        conf_dir: Path,
        empty_bin: Path,
        tmp_path: Path,
        how: str,
    ) -> None:
        """With no binary on CNI_PATH, --plugins in-process (or CNILIB_PLUGINS)
        runs bridge + host-local: ADD, CHECK and DEL through the CLI."""
        cache = ["--cache-dir", str(tmp_path / "cache")]
        options = ["--plugins", "in-process"] if how == "option" else []
        env = {"NETCONFPATH": str(conf_dir)}
        if how == "env":
            env["CNILIB_PLUGINS"] = "in-process"

        def cli(verb: str) -> subprocess.CompletedProcess[str]:
            return run_cli(node, empty_bin, *options, *cache, verb, "brnet", ctr.path, env=env)

        added = cli("add")
        assert 0 == added.returncode, added.stderr
        result = json.loads(added.stdout)
        assert ["172.31.91.2/24"] == [ip["address"] for ip in result["ips"]]
        assert ["172.31.91.2/24"] == addresses(ctr, "eth0")
        assert ["172.31.91.1/24"] == addresses(node, "clibr0")  # in the node, not here

        checked = cli("check")
        assert (0, "") == (checked.returncode, checked.stderr)

        deleted = cli("del")
        assert (0, "") == (deleted.returncode, deleted.stderr)
        assert 0 != ctr.exec("ip", "link", "show", "dev", "eth0", check=False).returncode
        assert [] == os.listdir(tmp_path / "cache" / "results")

    def test_binaries_only_fails_with_gos_text(
        self, node: NetNS, ctr: NetNS, conf_dir: Path, empty_bin: Path, tmp_path: Path
    ) -> None:
        """--plugins binaries with no binary: libcni's error, word for word."""
        proc = run_cli(
            node,
            empty_bin,
            "--plugins",
            "binaries",
            "--cache-dir",
            str(tmp_path / "cache"),
            "add",
            "brnet",
            ctr.path,
            env={"NETCONFPATH": str(conf_dir)},
        )

        assert 1 == proc.returncode
        assert [
            'cnilib add: error: plugin type="bridge" failed (add): '
            f'failed to find plugin "bridge" in path [{empty_bin}]'
        ] == proc.stderr.splitlines()

    def test_default_is_binaries_only(
        self, node: NetNS, ctr: NetNS, conf_dir: Path, empty_bin: Path, tmp_path: Path
    ) -> None:
        """The default (binaries) fails as cnitool does when bridge has no binary:
        it never falls back to the in-process bridge, so nothing changes."""
        proc = run_cli(
            node,
            empty_bin,
            "--cache-dir",
            str(tmp_path / "cache"),
            "add",
            "brnet",
            ctr.path,
            env={"NETCONFPATH": str(conf_dir)},
        )

        assert 1 == proc.returncode
        assert [
            'cnilib add: error: plugin type="bridge" failed (add): '
            f'failed to find plugin "bridge" in path [{empty_bin}]'
        ] == proc.stderr.splitlines()
        assert "eth0" not in ctr.exec("ip", "-o", "link").stdout

    def test_binaries_first_runs_a_plugin_without_binary_in_process(
        self, node: NetNS, ctr: NetNS, conf_dir: Path, empty_bin: Path, tmp_path: Path
    ) -> None:
        """binaries-first, when asked for, runs bridge in-process when it has no binary."""
        proc = run_cli(
            node,
            empty_bin,
            "--plugins",
            "binaries-first",
            "--cache-dir",
            str(tmp_path / "cache"),
            "add",
            "brnet",
            ctr.path,
            env={"NETCONFPATH": str(conf_dir)},
        )

        assert 0 == proc.returncode, proc.stderr
        assert ["172.31.91.2/24"] == addresses(ctr, "eth0")


class TestOrder:
    """A recording plugin installed as "loopback" on CNI_PATH shows who ran."""

    @pytest.mark.parametrize(
        ("source", "binary_runs"),
        [
            ("binaries-first", True),
            ("binaries", True),
            ("in-process-first", False),
            ("in-process", False),
        ],
    )
    def test_add(
        self,
        node: NetNS,
        ctr: NetNS,
        conf_dir: Path,
        impostor_bin: Path,
        tmp_path: Path,
        source: str,
        binary_runs: bool,
    ) -> None:
        """ADD runs the binary or the in-process loopback, as the order says."""
        ctr.exec("ip", "link", "set", "lo", "down")  # create_netns brought it up
        proc = run_cli(
            node,
            impostor_bin,
            "--cache-dir",
            str(tmp_path / "cache"),
            "add",
            "lonet",
            ctr.path,
            "--plugins",
            source,
            env={"NETCONFPATH": str(conf_dir)},
        )

        assert 0 == proc.returncode, proc.stderr
        verbs = [c["verb"] for c in read_recording(tmp_path / "rec.jsonl")]
        assert (["ADD"] if binary_runs else []) == verbs
        # The recorder touches nothing; cnilib's loopback brings lo up.
        assert (not binary_runs) == link_is_up(ctr, "lo")

    @pytest.mark.parametrize(
        ("source", "versions"),
        [
            ("binaries-first", ["0.3.1"]),
            ("in-process-first", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]),
        ],
    )
    def test_version(
        self, node: NetNS, impostor_bin: Path, source: str, versions: list[str]
    ) -> None:
        """version TYPE asks the plugin the order picks."""
        proc = run_cli(
            node,
            impostor_bin,
            "version",
            "loopback",
            env={"CNILIB_PLUGINS": source, "RECORDER_VERSIONS": "0.3.1"},
        )

        assert 0 == proc.returncode, proc.stderr
        assert versions == json.loads(proc.stdout)["supportedVersions"]

    @pytest.mark.parametrize(
        ("source", "valid"), [("binaries-first", False), ("in-process-first", True)]
    )
    def test_validate(
        self, node: NetNS, conf_dir: Path, impostor_bin: Path, source: str, valid: bool
    ) -> None:
        """validate's VERSION calls go through the chosen executor: the impostor
        supports only 0.3.1, cnilib's loopback supports the list's 1.1.0."""
        proc = run_cli(
            node,
            impostor_bin,
            "--plugins",
            source,
            "validate",
            "lonet",
            "--json",
            env={"NETCONFPATH": str(conf_dir), "RECORDER_VERSIONS": "0.3.1"},
        )

        shown = json.loads(proc.stdout)
        assert (0 if valid else 1) == proc.returncode, proc.stderr
        assert valid == shown["valid"]
        if not valid:
            assert any("loopback" in p and "1.1.0" in p for p in shown["problems"]), shown

    def test_version_of_in_process_plugin_without_binary(
        self, node: NetNS, empty_bin: Path
    ) -> None:
        """version bridge with --plugins in-process answers with no binary anywhere."""
        proc = run_cli(node, empty_bin, "--plugins", "in-process", "version", "bridge")

        assert 0 == proc.returncode, proc.stderr
        assert "1.1.0" in json.loads(proc.stdout)["supportedVersions"]
