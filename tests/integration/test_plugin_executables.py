"""cnilib's plugins as CNI executables, through a runtime's eyes: installed with
``python -m cnilib.plugins install``, driven by the subprocess executor, they
answer exactly as the same plugins do in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.invoke import SubprocessExecutor
from cnilib.plugins import BUILTIN_PLUGINS
from cnilib.plugins._executor import InProcessExecutor


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with every built-in plugin installed as an executable."""
    directory = tmp_path_factory.mktemp("cnilib-bin")
    subprocess.run(
        [sys.executable, "-m", "cnilib.plugins", "install", str(directory)],
        check=True,
        capture_output=True,
    )
    return directory


def host_local_conf(data_dir: Path, **ipam: Any) -> cnilib.NetworkConfigList:
    doc = {
        "cniVersion": "1.0.0",
        "name": "exe-net",
        "plugins": [
            {
                "type": "host-local",
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(data_dir),
                    "ranges": [[{"subnet": "10.251.7.0/29"}]],
                    **ipam,
                },
            }
        ],
    }
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


def static_conf() -> cnilib.NetworkConfigList:
    doc = {
        "cniVersion": "1.0.0",
        "name": "exe-net",
        "plugins": [
            {
                "type": "static",
                "ipam": {
                    "type": "static",
                    "addresses": [{"address": "10.251.8.5/24", "gateway": "10.251.8.1"}],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dns": {"nameservers": ["10.251.8.1"]},
                },
            }
        ],
    }
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


class TestInstall:
    def test_scripts_skip_site_and_carry_its_path(self, plugin_dir: Path) -> None:
        """The scripts start with -IS (isolated, no site module) and set the import path
        site would have built, which finds cnilib and every dependency a plugin imports
        where this interpreter finds them."""
        from cnilib.plugins._main import import_path

        script = (plugin_dir / "bridge").read_text()
        assert script.splitlines()[0] == f"#!{sys.executable} -IS"
        assert repr(import_path()) in script
        # What the script's client does before it runs the plugin in its process.
        probe = (
            "import sys, json\n"
            "stdlib = list(sys.path)\n"
            f"sys.path.extend({import_path()!r})\n"
            "import attrs, cattrs, pyroute2, cnilib, json as j\n"
            "print(json.dumps([cnilib.__file__, attrs.__file__, pyroute2.__file__,\n"
            "                  'site' in sys.modules, sys.path[: len(stdlib)] == stdlib,\n"
            "                  j.__file__]))"
        )
        out = json.loads(
            subprocess.run(
                [sys.executable, "-IS", "-c", probe], capture_output=True, text=True, check=True
            ).stdout
        )
        import attrs
        import pyroute2

        # cnilib and its dependencies where this interpreter finds them; no site module;
        # the standard library first (json is the stdlib's, not anything on the added path).
        assert out == [
            cnilib.__file__,
            attrs.__file__,
            pyroute2.__file__,
            False,
            True,
            json.__file__,
        ]

    def test_version_imports_nothing_heavy(self, plugin_dir: Path) -> None:
        """VERSION, a runtime's probe, loads neither the plugin framework (attrs, cattrs)
        nor logging nor pyroute2: only cnilib's package and errors modules."""
        proc = subprocess.run(
            [sys.executable, "-IS", "-X", "importtime", str(plugin_dir / "bridge")],
            env={"CNI_COMMAND": "VERSION"},
            input='{"cniVersion":"0.4.0"}',
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(proc.stdout)["cniVersion"] == "0.4.0"  # the version asked
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()}
        assert "cnilib.plugins._versions" in imported
        heavy = {"attr", "attrs", "cattrs", "logging", "pyroute2", "cnilib.plugins._base"}
        assert not heavy & imported

    def test_every_type_is_an_executable(self, plugin_dir: Path) -> None:
        """install writes one executable per built-in type, named by the type (and the
        directory of the client they share)."""
        from cnilib.plugins._main import CLIENT_DIR

        scripts = [p for p in plugin_dir.iterdir() if p.name != CLIENT_DIR]
        assert sorted(BUILTIN_PLUGINS) == sorted(p.name for p in scripts)
        assert all(os.access(p, os.X_OK) and p.is_file() for p in scripts)
        assert (plugin_dir / CLIENT_DIR).is_dir()

    @pytest.mark.parametrize("plugin_type", sorted(BUILTIN_PLUGINS))
    def test_version_matches_in_process(self, plugin_dir: Path, plugin_type: str) -> None:
        """VERSION of the executable (answered before importing the plugin) equals the class's."""
        binary = SubprocessExecutor().version_info(plugin_type, [str(plugin_dir)])
        try:
            in_process = InProcessExecutor().version_info(plugin_type, [])
        except cnilib.PluginNotFoundError:
            pytest.skip(f"{plugin_type} has no in-process implementation yet")

        assert in_process == binary


class TestSameAnswers:
    def _both(
        self, plugin_dir: Path, tmp_path: Path, make: Any
    ) -> tuple[cnilib.CNI, cnilib.CNI, Any, Any]:
        binary = cnilib.CNI([str(plugin_dir)], cache_dir=tmp_path / "c1")
        in_process = cnilib.CNI(
            [str(plugin_dir)], cache_dir=tmp_path / "c2", executor=InProcessExecutor()
        )
        return binary, in_process, make(tmp_path / "store1"), make(tmp_path / "store2")

    def test_host_local_add_check_del(self, plugin_dir: Path, tmp_path: Path) -> None:
        """host-local as a binary and in-process: same results and the same store files."""
        binary, in_process, conf1, conf2 = self._both(plugin_dir, tmp_path, host_local_conf)
        rt = cnilib.RuntimeConf("exe-1", "/run/netns/none", "eth0")

        results = [
            cni.add_network_list(conf, rt) for cni, conf in ((binary, conf1), (in_process, conf2))
        ]
        for cni, conf in ((binary, conf1), (in_process, conf2)):
            cni.check_network_list(conf, rt)
        stores = [
            sorted(p.name for p in (tmp_path / s / "exe-net").iterdir())
            for s in ("store1", "store2")
        ]
        for cni, conf in ((binary, conf1), (in_process, conf2)):
            cni.delete_network_list(conf, rt)

        assert results[0] is not None
        assert results[1] is not None
        assert results[0].to_json() == results[1].to_json()
        assert stores[0] == stores[1]
        assert "10.251.7.2" in stores[0]

    def test_static(self, plugin_dir: Path, tmp_path: Path) -> None:
        """static as a binary and in-process: the same result."""
        binary, in_process, conf1, conf2 = self._both(plugin_dir, tmp_path, lambda _: static_conf())
        rt = cnilib.RuntimeConf("exe-2", "/run/netns/none", "eth0")

        first = binary.add_network_list(conf1, rt)
        second = in_process.add_network_list(conf2, rt)

        assert first is not None
        assert second is not None
        assert first.to_json() == second.to_json()

    def test_errors_are_the_same_object(self, plugin_dir: Path, tmp_path: Path) -> None:
        """A config error comes back with the same code and text either way."""
        binary, in_process, conf1, conf2 = self._both(
            plugin_dir,
            tmp_path,
            lambda d: host_local_conf(d, ranges=[[{"subnet": "10.251.7.0/33"}]]),
        )
        rt = cnilib.RuntimeConf("exe-3", "/run/netns/none", "eth0")

        errors = []
        for cni, conf in ((binary, conf1), (in_process, conf2)):
            with pytest.raises(cnilib.PluginError) as info:
                cni.add_network_list(conf, rt)
            errors.append(info.value)

        assert (errors[0].code, errors[0].msg) == (errors[1].code, errors[1].msg)
        assert 7 == errors[0].code

    def test_missing_environment_as_skel(self, plugin_dir: Path) -> None:
        """Run bare, an executable answers like a Go plugin: code 4, exit status 1."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        proc = subprocess.run(
            [str(plugin_dir / "static")],
            input=b"{}",
            env={**env, "CNI_COMMAND": "ADD"},
            capture_output=True,
            check=False,
        )

        assert 1 == proc.returncode
        error = json.loads(proc.stdout)
        assert 4 == error["code"]
        assert error["msg"].startswith(
            "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH]"
        )
