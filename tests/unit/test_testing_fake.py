"""cnilib.testing's FakePlugin, InProcessExecutor.register, and the conflist helpers.

Nothing here needs a namespace: the runtimes run only the fake (no built-in
plugins), and the fake touches no kernel state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.plugins import BasePlugin, PluginRequest
from cnilib.results import Result, decode_result
from cnilib.testing import FakePlugin, FakePluginFactory, conflist, with_data_dir
from tests.unit._guards import NO_SUCH_HOST


def fake_only(**plugins: BasePlugin) -> cnilib.InProcessExecutor:
    """An executor that runs only the given plugins (none of cnilib's own)."""
    return cnilib.InProcessExecutor(
        plugins, builtins=False, installed=False, host_netns=NO_SUCH_HOST
    )


def runtime(executor: cnilib.InProcessExecutor, tmp_path: Path) -> cnilib.CNI:
    return cnilib.CNI([str(tmp_path)], cache_dir=tmp_path / "cache", executor=executor)


def chain(*types: str, version: str = "1.0.0", **extra: Any) -> cnilib.NetworkConfigList:
    plugins = [{"type": t, **extra} for t in types]
    return conflist({"cniVersion": version, "name": "net1", "plugins": plugins})


RT = cnilib.RuntimeConf("ctr1", "/run/netns/ctr1", "eth0")


def ips(result: Result | None) -> list[str]:
    assert result is not None
    return [ip["address"] for ip in json.loads(result.to_json()).get("ips", [])]


class TestFakePlugin:
    def test_records_every_verb_with_its_request(self, tmp_path: Path) -> None:
        """ADD, CHECK, DEL, STATUS and GC are recorded in order, with their parameters."""
        fake = FakePlugin()
        cni = runtime(fake_only(fake=fake), tmp_path)
        conf = chain("fake", version="1.1.0", knob=3)
        cni.add_network_list(conf, RT)
        cni.check_network_list(conf, RT)
        cni.status_network_list(conf)
        cni.delete_network_list(conf, RT)
        cni.gc_network_list(conf, [])
        assert ["ADD", "CHECK", "STATUS", "DEL", "GC"] == fake.commands
        (add,) = fake.requests("ADD")
        assert ("ctr1", "/run/netns/ctr1", "eth0") == (add.container_id, add.netns, add.ifname)
        assert 3 == add.config["knob"]
        assert [add] == fake.requests("add")

    def test_default_answer_first_in_chain_is_one_interface(self, tmp_path: Path) -> None:
        """First in a chain, ADD answers the container interface and no addresses."""
        fake = FakePlugin()
        result = runtime(fake_only(fake=fake), tmp_path).add_network_list(chain("fake"), RT)
        assert result is not None
        doc = json.loads(result.to_json())
        assert [{"name": "eth0", "sandbox": "/run/netns/ctr1"}] == doc["interfaces"]
        assert [] == ips(result)

    def test_default_answer_passes_prev_result_on(self, tmp_path: Path) -> None:
        """Chained, the fake sees the previous plugin's result and passes it on."""
        first = FakePlugin({"ips": [{"address": "10.22.0.2/24"}]})
        second = FakePlugin()
        cni = runtime(fake_only(first=first, second=second), tmp_path)
        result = cni.add_network_list(chain("first", "second"), RT)
        assert ["10.22.0.2/24"] == ips(result)
        prev = second.requests("ADD")[0].prev_result
        assert ["10.22.0.2/24"] == ips(prev)

    def test_result_as_object_or_callable(self, tmp_path: Path) -> None:
        """A Result is answered as given; a callable computes it from the request."""
        given = decode_result({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.9/16"}]})

        def per_container(req: PluginRequest) -> Result:
            address = f"10.3.0.{len(req.container_id)}/24"
            return decode_result({"ips": [{"address": address}]}, default_version=req.cni_version)

        fixed, computed = FakePlugin(given), FakePlugin(per_container)
        cni = runtime(fake_only(fixed=fixed, computed=computed), tmp_path)
        assert ["10.1.0.9/16"] == ips(cni.add_network_list(chain("fixed"), RT))
        assert ["10.3.0.4/24"] == ips(cni.add_network_list(chain("computed"), RT))

    def test_errors_are_the_plugins_error_objects(self, tmp_path: Path) -> None:
        """A PluginError keeps its code; any other exception is code 999, as in skel."""
        fake = FakePlugin(errors={"CHECK": cnilib.PluginError("not ready", code=11)})
        fake.fail_on(cnilib.invoke.Command.DEL, RuntimeError("disk on fire"))
        cni = runtime(fake_only(fake=fake), tmp_path)
        conf = chain("fake")
        cni.add_network_list(conf, RT)
        with pytest.raises(cnilib.PluginError) as check:
            cni.check_network_list(conf, RT)
        assert (11, "not ready") == (check.value.code, check.value.msg)
        with pytest.raises(cnilib.PluginError) as delete:
            cni.delete_network_list(conf, RT)
        assert (999, "disk on fire") == (delete.value.code, delete.value.msg)
        fake.fail_on("DEL", None)
        cni.delete_network_list(conf, RT)
        assert ["ADD", "CHECK", "DEL", "DEL"] == fake.commands

    def test_failing_add_is_rolled_back_through_the_fake(self, tmp_path: Path) -> None:
        """A fake failing ADD after another plugin: the runtime DELs the one that succeeded."""
        first = FakePlugin()
        second = FakePlugin(errors={"ADD": cnilib.PluginError("no", code=7)})
        cni = runtime(fake_only(first=first, second=second), tmp_path)
        with pytest.raises(cnilib.PluginError):
            cni.add_network_list(chain("first", "second"), RT)
        assert (["ADD", "DEL"], ["ADD"]) == (first.commands, second.commands)

    def test_old_config_versions_get_a_valid_answer(self, tmp_path: Path) -> None:
        """The default answer converts to every version, 0.1.0 included."""
        for version in ("0.1.0", "0.2.0", "0.3.1", "0.4.0", "1.0.0"):
            fake = FakePlugin()
            cni = runtime(fake_only(fake=fake), tmp_path / version)
            result = cni.add_network_list(chain("fake", version=version), RT)
            assert result is not None
            assert version == result.cni_version

    @pytest.mark.parametrize("version", ["0.1.0", "0.3.1", "0.4.0", "1.0.0"])
    def test_mapping_answer_is_converted_to_the_config_version(
        self, tmp_path: Path, version: str
    ) -> None:
        """A mapping without cniVersion is read as the newest result, then converted."""
        fake = FakePlugin({"ips": [{"address": "10.1.0.5/24"}]})
        cni = runtime(fake_only(fake=fake), tmp_path)

        result = cni.add_network_list(chain("fake", version=version), RT)

        assert result is not None
        doc = json.loads(result.to_json())
        assert version == result.cni_version == doc["cniVersion"]
        if version == "0.1.0":  # 0.1.0/0.2.0 results have ip4, not ips
            assert "10.1.0.5/24" == doc["ip4"]["ip"]
        elif version == "1.0.0":
            assert [{"address": "10.1.0.5/24"}] == doc["ips"]
        else:  # 0.3.x and 0.4.0 name each address's IP version
            assert [{"version": "4", "address": "10.1.0.5/24"}] == doc["ips"]

    def test_callable_may_answer_a_mapping(self, tmp_path: Path) -> None:
        """A function's mapping is read like a mapping given directly (it was code 999)."""
        fake = FakePlugin(lambda req: {"ips": [{"address": f"10.1.0.{len(req.ifname)}/24"}]})
        cni = runtime(fake_only(fake=fake), tmp_path)

        result = cni.add_network_list(chain("fake", version="1.0.0"), RT)

        assert result is not None
        assert [{"address": "10.1.0.4/24"}] == json.loads(result.to_json())["ips"]

    def test_mapping_answer_naming_its_version_is_converted(self, tmp_path: Path) -> None:
        """A mapping that names its cniVersion is read as that version, then converted."""
        fake = FakePlugin(
            {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.1.0.5/24"}]}
        )
        cni = runtime(fake_only(fake=fake), tmp_path)

        result = cni.add_network_list(chain("fake", version="1.0.0"), RT)

        assert result is not None
        assert "1.0.0" == result.cni_version
        assert ["10.1.0.5/24"] == ips(result)

    def test_unknown_verbs_and_errors_are_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown CNI verb 'ADDD'"):
            FakePlugin(errors={"ADDD": RuntimeError()})
        with pytest.raises(TypeError, match="must be an exception"):
            FakePlugin().fail_on("ADD", "boom")  # type: ignore[arg-type]

    def test_reset_forgets_the_calls(self, tmp_path: Path) -> None:
        fake = FakePlugin()
        runtime(fake_only(fake=fake), tmp_path).add_network_list(chain("fake"), RT)
        fake.reset()
        assert [] == fake.commands


class TestRegister:
    def test_registered_plugin_runs_and_wins_over_a_builtin(self, tmp_path: Path) -> None:
        """A plugin registered after construction runs, also in place of a built-in type."""
        executor = cnilib.InProcessExecutor(installed=False, host_netns=NO_SUCH_HOST)
        fake = FakePluginFactory(executor)("loopback")
        assert fake is executor.plugin("loopback")
        assert "loopback" in executor.types()
        runtime(executor, tmp_path).add_network_list(chain("loopback"), RT)
        assert ["ADD"] == fake.commands

    def test_a_type_nobody_had_becomes_available(self, tmp_path: Path) -> None:
        executor = fake_only()
        with pytest.raises(cnilib.PluginNotFoundError):
            executor.find("fake", [])
        executor.register("fake", FakePlugin())
        assert "<in-process fake>" == executor.find("fake", [])

    def test_only_plugins_are_registered(self) -> None:
        with pytest.raises(TypeError, match="BasePlugin instance, not type"):
            fake_only().register("fake", FakePlugin)  # type: ignore[arg-type]


class TestConflist:
    def test_host_local_store_goes_to_the_data_dir(self, tmp_path: Path) -> None:
        """Every host-local section without a dataDir gets one; others are left alone."""
        doc = {
            "cniVersion": "1.0.0",
            "name": "net1",
            "plugins": [
                {"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.9.0.0/24"}},
                {"type": "ptp", "ipam": {"type": "host-local", "dataDir": "/mine"}},
                {"type": "macvlan", "ipam": {"type": "static"}},
                {"type": "fake"},
            ],
        }
        got = conflist(doc, data_dir=tmp_path)
        ipams = [p.raw.get("ipam") for p in got.plugins]
        assert [
            {"type": "host-local", "subnet": "10.9.0.0/24", "dataDir": str(tmp_path)},
            {"type": "host-local", "dataDir": "/mine"},
            {"type": "static"},
            None,
        ] == ipams
        assert "dataDir" not in json.dumps(doc["plugins"][0]), "the input is not changed"

    def test_single_plugin_document(self, tmp_path: Path) -> None:
        single = {"type": "bridge", "ipam": {"type": "host-local"}}
        assert str(tmp_path) == with_data_dir(single, tmp_path)["ipam"]["dataDir"]

    def test_json_text_and_errors(self, tmp_path: Path) -> None:
        """JSON text parses as a file would; a malformed document is a ConfigError."""
        text = '{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "fake"}]}'
        assert "n" == conflist(text).name
        assert "n" == conflist(text.encode(), data_dir=tmp_path).name
        with pytest.raises(cnilib.ConfigError):
            conflist("{")


def test_recording_plugin_helpers_take_text_paths(tmp_path: Path) -> None:
    """install_recording_plugin and read_recording take str as well as Path."""
    from cnilib.testing import install_recording_plugin, read_recording

    installed = install_recording_plugin(str(tmp_path / "bin"), "rec")

    assert tmp_path / "bin" / "rec" == installed
    assert os.access(installed, os.X_OK)
    assert [] == read_recording(str(tmp_path / "none.log"))
