"""The plugin side: skel's checks and answers, the in-process executor, and
chains that mix in-process plugins with real plugin processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.invoke import ChainExecutor, SubprocessExecutor
from cnilib.plugins import BasePlugin, PluginRequest
from cnilib.plugins._executor import InProcessExecutor
from cnilib.plugins._skel import error_output, handle
from cnilib.results import Result, decode_result
from cnilib.testing import read_recording
from tests.unit._guards import NO_SUCH_HOST

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/run/netns/c1",
    "CNI_IFNAME": "eth0",
    "CNI_ARGS": "K=V;IP=10.9.0.9",
    "CNI_PATH": "/opt/cni/bin",
}


class Echo(BasePlugin):
    """A toy plugin: ADD answers with one address (or passes prevResult on),
    and it remembers every request it got."""

    type = "echo"

    def __init__(self) -> None:
        self.requests: list[PluginRequest] = []

    def add(self, req: PluginRequest) -> Result:
        self.requests.append(req)
        prev = req.prev_result
        if prev is not None:
            return prev
        return decode_result(
            {"cniVersion": "1.1.0", "ips": [{"address": "10.9.0.2/24"}]}, default_version="1.1.0"
        )

    def delete(self, req: PluginRequest) -> None:
        self.requests.append(req)

    def check(self, req: PluginRequest) -> None:
        self.requests.append(req)
        if req.config.get("fail") == "check":
            raise cnilib.PluginError("drifted", code=101, details="eth0 is gone")

    def gc(self, req: PluginRequest) -> None:
        if req.config.get("fail") == "gc":
            raise RuntimeError("disk on fire")


def config(version: str = "1.1.0", **extra: Any) -> bytes:
    return json.dumps({"cniVersion": version, "name": "net1", "type": "echo", **extra}).encode()


def env(**changes: str) -> dict[str, str]:
    return {k: v for k, v in {**ENV, **changes}.items() if v != "-"}


class TestSkel:
    def test_add_result_in_config_version(self) -> None:
        """ADD's result is converted to the config's version and printed like Go's Print()."""
        out = handle(Echo(), env(), config("0.4.0"), host_netns=NO_SUCH_HOST)

        assert out.startswith(b'{\n    "cniVersion": "0.4.0"')
        assert "4" == json.loads(out)["ips"][0]["version"]

    @pytest.mark.parametrize(
        ("command", "missing", "expected"),
        [
            (
                "ADD",
                ["CNI_NETNS", "CNI_PATH"],
                "required env variables [CNI_NETNS,CNI_PATH] missing",
            ),
            ("DEL", ["CNI_NETNS"], None),
            ("DEL", ["CNI_CONTAINERID"], "required env variables [CNI_CONTAINERID] missing"),
            ("GC", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"], None),
            ("", [], "required env variables [CNI_COMMAND] missing"),
        ],
    )
    def test_required_variables(
        self, command: str, missing: list[str], expected: str | None
    ) -> None:
        """Each verb needs skel's variables; all missing ones are named, code 4."""
        variables = env(CNI_COMMAND=command or "-", **dict.fromkeys(missing, "-"))
        if expected is None:
            handle(Echo(), variables, config(), host_netns=NO_SUCH_HOST)
            return
        with pytest.raises(cnilib.PluginError) as info:
            handle(Echo(), variables, config(), host_netns=NO_SUCH_HOST)
        assert (4, expected) == (info.value.code, info.value.msg)

    def test_unknown_command(self) -> None:
        """An unknown verb is code 4 with skel's text."""
        with pytest.raises(cnilib.PluginError, match="unknown CNI_COMMAND: FROB"):
            handle(Echo(), env(CNI_COMMAND="FROB"), config(), host_netns=NO_SUCH_HOST)

    def test_version_answer(self) -> None:
        """VERSION lists the supported versions; stdin that is not a request is no error."""
        out = json.loads(
            handle(Echo(), {"CNI_COMMAND": "VERSION"}, b"garbage", host_netns=NO_SUCH_HOST)
        )

        assert "1.1.0" in out["supportedVersions"]
        assert "1.1.0" == out["cniVersion"]  # the newest, since nothing was asked

    @pytest.mark.parametrize(
        ("stdin", "answered"),
        [
            (b'{"cniVersion":"0.4.0"}', "0.4.0"),
            (b'{"cniVersion":"1.0.0"}', "1.0.0"),
            (b'{"cniVersion":"9.9.9"}', "1.1.0"),  # not supported: the newest
            (b'{"cniVersion":4}', "1.1.0"),
            (b"[1]", "1.1.0"),
            (b"", "1.1.0"),
        ],
    )
    def test_version_answer_is_in_the_version_asked(self, stdin: bytes, answered: str) -> None:
        """The spec's VERSION result carries the cniVersion the request gave (Go's skel
        answers its newest: docs/divergences.md)."""
        out = json.loads(handle(Echo(), {"CNI_COMMAND": "VERSION"}, stdin, host_netns=NO_SUCH_HOST))

        assert answered == out["cniVersion"]

    @pytest.mark.parametrize(
        ("stdin", "code", "text"),
        [
            (b"{", 6, "error unmarshall network config: "),
            (b'{"cniVersion":"1.0.0"}', 7, "missing network name"),
            (
                b'{"cniVersion":"1.0.0","name":"bad name"}',
                7,
                "invalid characters found in network name",
            ),
        ],
    )
    def test_config_checks(self, stdin: bytes, code: int, text: str) -> None:
        """Undecodable config (6), missing or bad network name (7)."""
        with pytest.raises(cnilib.PluginError) as info:
            handle(Echo(), env(), stdin, host_netns=NO_SUCH_HOST)

        assert code == info.value.code
        assert info.value.msg.startswith(text)

    def test_bad_container_id_and_ifname(self) -> None:
        """The container ID and interface name are validated as in skel."""
        with pytest.raises(cnilib.PluginError, match="invalid characters in containerID"):
            handle(Echo(), env(CNI_CONTAINERID="a/b"), config(), host_netns=NO_SUCH_HOST)
        with pytest.raises(cnilib.PluginError, match="interface name is too long"):
            handle(Echo(), env(CNI_IFNAME="x" * 16), config(), host_netns=NO_SUCH_HOST)

    def test_incompatible_version(self) -> None:
        """A config version the plugin does not support: code 1, Go's details."""

        class Old(Echo):
            supported_versions = ("0.3.1", "0.4.0")

        with pytest.raises(cnilib.PluginError) as info:
            handle(Old(), env(), config("1.0.0"), host_netns=NO_SUCH_HOST)

        assert 1 == info.value.code
        assert 'config is "1.0.0", plugin supports ["0.3.1" "0.4.0"]' == info.value.details

    @pytest.mark.parametrize(
        ("command", "version"), [("CHECK", "0.3.1"), ("GC", "1.0.0"), ("STATUS", "1.0.0")]
    )
    def test_verbs_gated_by_version(self, command: str, version: str) -> None:
        """CHECK below 0.4.0 and GC/STATUS below 1.1.0 are refused with code 1."""
        with pytest.raises(cnilib.PluginError) as info:
            handle(Echo(), env(CNI_COMMAND=command), config(version), host_netns=NO_SUCH_HOST)

        assert (1, f"config version does not allow {command}") == (info.value.code, info.value.msg)

    def test_plugin_errors_and_crashes(self) -> None:
        """A plugin's CNI error passes through; any other exception is code 999 with its text."""
        with pytest.raises(cnilib.PluginError) as checked:
            handle(Echo(), env(CNI_COMMAND="CHECK"), config(fail="check"), host_netns=NO_SUCH_HOST)
        with pytest.raises(cnilib.PluginError) as crashed:
            handle(Echo(), env(CNI_COMMAND="GC"), config(fail="gc"), host_netns=NO_SUCH_HOST)

        assert (101, "drifted; eth0 is gone") == (checked.value.code, str(checked.value))
        assert (999, "disk on fire") == (crashed.value.code, crashed.value.msg)
        assert {"code": 999, "msg": "disk on fire"} == json.loads(error_output(crashed.value))

    def test_request_view(self) -> None:
        """The plugin sees parsed CNI_ARGS, path, runtimeConfig and name."""
        plugin = Echo()

        handle(plugin, env(), config(runtimeConfig={"mac": "aa"}), host_netns=NO_SUCH_HOST)

        (req,) = plugin.requests
        assert ("10.9.0.9", None) == (req.cni_arg("IP"), req.cni_arg("nope"))
        assert (("/opt/cni/bin",), "net1", {"mac": "aa"}) == (
            req.path,
            req.name,
            dict(req.runtime_config),
        )


class TestInProcessInChains:
    def _conf(self, *types: str, log: Path | None = None) -> cnilib.NetworkConfigList:
        plugins = [
            {"type": t, "tag": i, **({"recorder": {"log": str(log)}} if t == "recorder" else {})}
            for i, t in enumerate(types)
        ]
        doc = {"cniVersion": "1.1.0", "name": "net1", "plugins": plugins}
        return cnilib.conflist_from_bytes(json.dumps(doc).encode())

    def test_runtime_with_only_in_process_plugins(self, tmp_path: Path) -> None:
        """CNI drives an in-process plugin through ADD/CHECK/DEL without any process."""
        echo = Echo()
        cni = cnilib.CNI(
            ["/opt/cni/bin"],
            cache_dir=tmp_path,
            executor=InProcessExecutor({"echo": echo}, host_netns=NO_SUCH_HOST),
        )
        rt = cnilib.RuntimeConf("c1", "/run/netns/c1", "eth0")
        conf = self._conf("echo")

        result = cni.add_network_list(conf, rt)
        cni.check_network_list(conf, rt)
        cni.delete_network_list(conf, rt)

        assert result is not None
        assert [
            cnilib.invoke.Command.ADD,
            cnilib.invoke.Command.CHECK,
            cnilib.invoke.Command.DEL,
        ] == [r.command for r in echo.requests]
        assert echo.requests[1].prev_result is not None

    def test_mixed_chain_passes_prev_result_both_ways(
        self, tmp_path: Path, cnilib_cni_bin_dir: Path, cnilib_recorder_log: Path
    ) -> None:
        """in-process → binary → in-process: each gets the previous one's result."""
        echo = Echo()
        in_process = InProcessExecutor({"echo": echo}, host_netns=NO_SUCH_HOST)
        chain = ChainExecutor(in_process, SubprocessExecutor())
        cni = cnilib.CNI([str(cnilib_cni_bin_dir)], cache_dir=tmp_path, executor=chain)

        result = cni.add_network_list(
            self._conf("echo", "recorder", "echo", log=cnilib_recorder_log),
            cnilib.RuntimeConf("c1", "/x", "eth0"),
        )

        (recorded,) = read_recording(cnilib_recorder_log)
        stdin: Any = recorded["stdin"]
        assert "10.9.0.2/24" == stdin["prevResult"]["ips"][0]["address"]
        assert echo.requests[1].prev_result is not None
        assert result is not None
        assert "10.9.0.2/24" == json.loads(result.to_json())["ips"][0]["address"]

    def test_chain_order_and_missing_plugins(
        self, tmp_path: Path, cnilib_cni_bin_dir: Path
    ) -> None:
        """The first executor that has a plugin runs it; one nobody has names every miss."""
        chain = ChainExecutor(
            InProcessExecutor({"echo": Echo()}, builtins=False), SubprocessExecutor()
        )

        assert "<in-process echo>" == chain.find("echo", [str(cnilib_cni_bin_dir)])
        assert str(cnilib_cni_bin_dir / "recorder") == chain.find(
            "recorder", [str(cnilib_cni_bin_dir)]
        )
        with pytest.raises(cnilib.PluginNotFoundError) as info:
            chain.find("ghost", [str(cnilib_cni_bin_dir)])
        assert 'no in-process plugin "ghost"' in str(info.value)
        assert 'failed to find plugin "ghost" in path' in str(info.value)

    @pytest.mark.asyncio
    async def test_async_runtime_in_process(self, tmp_path: Path) -> None:
        """AsyncCNI runs in-process plugins in worker threads with the same results."""
        cni = cnilib.AsyncCNI(
            ["/opt/cni/bin"],
            cache_dir=tmp_path,
            executor=InProcessExecutor({"echo": Echo()}, host_netns=NO_SUCH_HOST),
        )

        result = await cni.add_network_list(
            self._conf("echo"), cnilib.RuntimeConf("c1", "/x", "eth0")
        )

        assert result is not None
        assert "1.1.0" == result.cni_version

    def test_version_info(self) -> None:
        """VERSION through the in-process executor."""
        info = InProcessExecutor({"echo": Echo()}).version_info("echo", [])

        assert info.supports("0.2.0")


class Main(BasePlugin):
    """A toy main plugin that delegates IPAM to the type in ``ipam.type``."""

    type = "main"

    def add(self, req: PluginRequest) -> Result:
        ipam: Any = req.config["ipam"]
        return req.delegate_add(ipam["type"])

    def delete(self, req: PluginRequest) -> None:
        ipam: Any = req.config["ipam"]
        req.delegate(ipam["type"])


class TestDelegation:
    def _conf(self, ipam: dict[str, Any], **top: Any) -> cnilib.NetworkConfigList:
        plugin = {"type": "main", "ipam": ipam, **top}
        doc = {"cniVersion": "1.0.0", "name": "net1", "plugins": [plugin]}
        return cnilib.conflist_from_bytes(json.dumps(doc).encode())

    def test_delegates_to_in_process_ipam(self, tmp_path: Path) -> None:
        """An in-process plugin's IPAM runs in-process when the executor has it."""
        echo = Echo()
        cni = cnilib.CNI(
            ["/opt/cni/bin"],
            cache_dir=tmp_path,
            executor=InProcessExecutor({"main": Main(), "echo": echo}, host_netns=NO_SUCH_HOST),
        )

        result = cni.add_network_list(
            self._conf({"type": "echo"}), cnilib.RuntimeConf("c1", "/x", "eth0")
        )

        assert result is not None
        assert ["ADD"] == [r.command.value for r in echo.requests]
        assert "eth0" == echo.requests[0].ifname

    def test_delegates_to_binary_ipam(
        self, tmp_path: Path, cnilib_cni_bin_dir: Path, cnilib_recorder_log: Path
    ) -> None:
        """An IPAM the executor does not have runs as a binary from CNI_PATH, same stdin."""
        cni = cnilib.CNI(
            [str(cnilib_cni_bin_dir)],
            cache_dir=tmp_path,
            executor=InProcessExecutor({"main": Main()}, builtins=False, host_netns=NO_SUCH_HOST),
        )
        conf = self._conf({"type": "recorder"}, recorder={"log": str(cnilib_recorder_log)})
        rt = cnilib.RuntimeConf("c1", "/x", "eth0")

        cni.add_network_list(conf, rt)
        cni.delete_network_list(conf, rt)

        calls = read_recording(cnilib_recorder_log)
        assert ["ADD", "DEL"] == [c["verb"] for c in calls]
        stdin: Any = calls[0]["stdin"]
        assert "main" == stdin["type"]  # the main plugin's own config, as Go delegates it


class TestPrevResultVersion:
    def _request(self, version: str, prev: dict[str, Any]) -> PluginRequest:
        config: dict[str, Any] = {
            "cniVersion": version,
            "name": "n",
            "type": "x",
            "prevResult": prev,
        }
        return PluginRequest(
            command=cnilib.invoke.Command.CHECK,
            container_id="c1",
            netns="/x",
            ifname="eth0",
            args=(),
            path=("/bin",),
            config=config,
            stdin=json.dumps(config).encode(),
            host_netns=NO_SUCH_HOST,
        )

    def test_converted_to_the_config_version(self) -> None:
        """prevResult is converted to the config's version, as Go's ParsePrevResult does."""
        req = self._request("1.0.0", {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.2/24"}})

        prev = req.prev_result

        assert prev is not None
        assert "1.0.0" == prev.cni_version
        assert "10.1.0.2/24" == json.loads(prev.to_json())["ips"][0]["address"]

    def test_unconvertible_is_a_decoding_error(self) -> None:
        """A prevResult that cannot take the config's version is code 6, with Go's words."""
        req = self._request("0.2.0", {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}]})

        with pytest.raises(cnilib.PluginError) as info:
            _ = req.prev_result

        assert 6 == info.value.code
        assert info.value.msg.startswith("could not convert result to current version: ")
