"""Runtime logic without processes: flows driven through MockExecutor, and
flows driven by hand with send()/throw() (the sans-I/O contract)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.cache import FileCache
from cnilib.invoke import Command, Invocation
from cnilib.runtime._flows import FlowContext, add_flow, delete_flow, version_flow
from cnilib.testing import MockExecutor

RT = cnilib.RuntimeConf("ctr1", "/run/netns/ctr1", "eth0")
RESULT = {"cniVersion": "1.0.0", "ips": [{"address": "10.250.0.7/24"}]}


def conf(*plugins: dict[str, Any], version: str = "1.1.0", **top: Any) -> cnilib.NetworkConfigList:
    """A conflist of fake plugins (type "fake" unless given)."""
    entries = [{"type": "fake", **p} for p in plugins or ({},)]
    doc = {"cniVersion": version, "name": "net1", "plugins": entries, **top}
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


def answering(**by_command: bytes | cnilib.CNIError) -> Callable[[Invocation], bytes]:
    """A handler answering per verb: bytes are stdout, an error is raised."""

    def handler(invocation: Invocation) -> bytes:
        answer = by_command.get(invocation.command.value, b"")
        if isinstance(answer, cnilib.CNIError):
            raise answer
        return answer

    return handler


@pytest.fixture
def mock() -> MockExecutor:
    """An executor whose ADD answers with RESULT and everything else with nothing."""
    return MockExecutor(answering(ADD=json.dumps(RESULT).encode()))


@pytest.fixture
def cni(tmp_path: Path, mock: MockExecutor) -> cnilib.CNI:
    """A runtime on the mock executor with a tmp cache."""
    return cnilib.CNI(["/opt/cni/bin"], cache_dir=tmp_path, executor=mock)


class TestSansIO:
    def test_flow_is_driven_by_hand(self, tmp_path: Path) -> None:
        """A flow yields invocations and takes stdout through send(): no executor needed."""
        ctx = FlowContext(cache=FileCache(tmp_path), path=("/bin",))
        flow = add_flow(ctx, conf({}, {}), RT)

        first = next(flow)
        second = flow.send(json.dumps(RESULT).encode())
        with pytest.raises(StopIteration) as done:
            flow.send(json.dumps(RESULT).encode())

        assert (Command.ADD, Command.ADD) == (first.command, second.command)
        assert b"prevResult" not in first.stdin
        assert b"prevResult" in second.stdin
        assert "1.0.0" == done.value.value.cni_version

    def test_thrown_error_is_wrapped_by_the_flow(self, tmp_path: Path) -> None:
        """An error thrown into a flow comes out with the chain prefix, type and code kept."""
        ctx = FlowContext(cache=FileCache(tmp_path), path=("/bin",))
        flow = delete_flow(ctx, conf(version="1.0.0"), RT)
        next(flow)

        with pytest.raises(cnilib.TryAgainLaterError) as info:
            flow.throw(cnilib.TryAgainLaterError("busy"))

        assert 'plugin type="fake" failed (delete): busy' == str(info.value)

    def test_pre_version_plugin(self, tmp_path: Path) -> None:
        """A plugin answering VERSION with 'unknown CNI_COMMAND: VERSION' supports only 0.1.0."""
        ctx = FlowContext(cache=FileCache(tmp_path), path=("/bin",))
        flow = version_flow(ctx, "ancient")
        next(flow)

        with pytest.raises(StopIteration) as done:
            flow.throw(cnilib.PluginError("unknown CNI_COMMAND: VERSION"))

        assert ("0.1.0",) == done.value.value.supported_versions

    def test_other_version_errors_propagate(self, tmp_path: Path) -> None:
        """Any other VERSION failure is raised as is."""
        flow = version_flow(FlowContext(cache=FileCache(tmp_path), path=()), "x")
        next(flow)

        with pytest.raises(cnilib.PluginError, match="boom"):
            flow.throw(cnilib.PluginError("boom"))


class TestSinglePlugin:
    def test_add_check_delete_network(self, cni: cnilib.CNI, mock: MockExecutor) -> None:
        """The single-plugin API uses the plugin's own name and version, errors unwrapped."""
        plugin = cnilib.conf_from_bytes(b'{"cniVersion":"1.0.0","name":"solo","type":"fake","x":1}')

        result = cni.add_network(plugin, RT)
        cni.check_network(plugin, RT)
        cached = cni.cached_network_result(plugin, RT)
        cni.delete_network(plugin, RT)

        assert result is not None
        assert cached is not None
        assert result.to_json() == cached.to_json()
        assert ["ADD", "CHECK", "DEL"] == [i.command.value for i in mock.invocations]
        stdin = json.loads(mock.invocations[0].stdin)
        assert ("solo", "1.0.0", 1) == (stdin["name"], stdin["cniVersion"], stdin["x"])
        assert cni.cached_network_result(plugin, RT) is None

    def test_single_plugin_errors_are_bare(self, tmp_path: Path) -> None:
        """add_network does not prefix errors (libcni AddNetwork)."""
        executor = MockExecutor(answering(ADD=cnilib.PluginError("nope", code=7)))
        cni = cnilib.CNI([], cache_dir=tmp_path, executor=executor)
        plugin = cnilib.conf_from_bytes(b'{"cniVersion":"1.0.0","name":"solo","type":"fake"}')

        with pytest.raises(cnilib.PluginError) as info:
            cni.add_network(plugin, RT)

        assert "nope" == str(info.value)

    def test_single_plugin_bad_result_is_bare(self, tmp_path: Path) -> None:
        """An undecodable single-plugin result is a decode error without a prefix."""
        cni = cnilib.CNI([], cache_dir=tmp_path, executor=MockExecutor(answering(ADD=b"[1]")))
        plugin = cnilib.conf_from_bytes(b'{"cniVersion":"1.0.0","name":"solo","type":"fake"}')

        with pytest.raises(cnilib.ResultDecodeError) as info:
            cni.add_network(plugin, RT)

        assert not str(info.value).startswith("plugin type=")


class TestCacheEdges:
    def _write(self, cache_dir: Path, body: object) -> Path:
        results = cache_dir / "results"
        results.mkdir(mode=0o700, exist_ok=True)
        path = results / "net1-ctr1-eth0"
        path.write_text(json.dumps(body))
        return path

    def test_cached_result_not_a_result(self, cni: cnilib.CNI, tmp_path: Path) -> None:
        """A cache entry whose result is malformed is a CacheError naming the file."""
        path = self._write(tmp_path, {"ips": [{"address": "nope"}], "cniVersion": "1.0.0"})

        with pytest.raises(cnilib.CacheError) as info:
            cni.cached_result(conf(), RT)

        assert str(path) in str(info.value)

    def test_cached_result_not_convertible(self, cni: cnilib.CNI, tmp_path: Path) -> None:
        """A cached result that cannot be expressed in the list's version says so."""
        self._write(tmp_path, {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}]})

        with pytest.raises(cnilib.ResultConversionError) as info:
            cni.cached_result(conf(version="0.2.0"), RT)

        assert str(info.value).startswith(
            'failed to convert cached result to config version "0.2.0": '
        )

    def test_legacy_cache_file(self, cni: cnilib.CNI, tmp_path: Path) -> None:
        """A pre-cniCacheV1 bare result is read for CHECK/DEL; it has no config to give."""
        self._write(tmp_path, RESULT)

        result = cni.cached_result(conf(), RT)

        assert result is not None
        assert "1.1.0" == result.cni_version
        with pytest.raises(cnilib.CacheError, match="config has wrong kind"):
            cni.cached_config(conf(), RT)  # libcni's GetNetworkListCachedConfig text
        assert [] == cni.cached_attachments()

    def test_entry_without_result_is_an_interrupted_add(
        self, cni: cnilib.CNI, tmp_path: Path
    ) -> None:
        """A v1 entry without a result is a pending (interrupted) ADD: an error, not None."""
        self._write(
            tmp_path,
            {
                "kind": "cniCacheV1",
                "containerId": "ctr1",
                "config": "",
                "ifName": "eth0",
                "networkName": "net1",
            },
        )

        with pytest.raises(cnilib.CacheError, match="the ADD that wrote it did not finish"):
            cni.cached_result(conf(), RT)

    def test_cache_write_failure(self, mock: MockExecutor, tmp_path: Path) -> None:
        """ADD whose cache cannot be written fails with libcni's text, naming the path."""
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        cni = cnilib.CNI([], cache_dir=blocker, executor=mock, locking=False)
        locked = cnilib.CNI([], cache_dir=blocker, executor=mock)

        with pytest.raises(cnilib.CacheError) as info:
            cni.add_network_list(conf(), RT)
        with pytest.raises(cnilib.CacheError, match="is a regular file, not a directory") as held:
            locked.add_network_list(conf(), RT)

        assert str(blocker) == held.value.path  # the offending path, not the entry's

        assert str(info.value).startswith('failed to set network "net1" cached result: ')
        assert [] == mock.invocations  # the pending entry failed first: no plugin ran

    def test_unremovable_entry_does_not_fail_delete(
        self, cni: cnilib.CNI, mock: MockExecutor, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """DEL succeeds (and logs) when the entry can be neither read nor removed."""
        (tmp_path / "results" / "net1-ctr1-eth0").mkdir(parents=True)  # a directory: EISDIR

        cni.delete_network_list(conf(), RT)

        assert ["DEL"] == [i.command.value for i in mock.invocations]
        assert "prevResult" not in json.loads(mock.invocations[0].stdin)
        assert any("could not remove cache entry" in r.getMessage() for r in caplog.records)

    def test_unreadable_cache_dir_is_a_gc_failure(self, mock: MockExecutor, tmp_path: Path) -> None:
        """GC reports a broken cache dir but still sends GC to every plugin."""
        (tmp_path / "results").write_text("a file where a directory should be")
        cni = cnilib.CNI([], cache_dir=tmp_path, executor=mock)

        with pytest.raises(cnilib.GCError) as info:
            cni.gc_network_list(conf({}, {}), [])

        assert 1 == len(info.value.exceptions)
        assert ["GC", "GC"] == [i.command.value for i in mock.invocations]

    def test_gc_reports_corrupt_attachment(self, mock: MockExecutor, tmp_path: Path) -> None:
        """A cached attachment whose IDs are invalid is reported, not deleted blindly."""
        cni = cnilib.CNI([], cache_dir=tmp_path, executor=mock)
        results = tmp_path / "results"
        results.mkdir()
        (results / "net1-x-eth0").write_text(
            json.dumps(
                {
                    "kind": "cniCacheV1",
                    "containerId": "../../evil",
                    "config": "",
                    "ifName": "eth0",
                    "networkName": "net1",
                }
            )
        )

        with pytest.raises(cnilib.GCError) as info:
            cni.gc_network_list(conf(), [])

        assert "failed to delete stale attachment ../../evil eth0: " in str(info.value)
        assert ["GC"] == [i.command.value for i in mock.invocations]


class TestVersions:
    def test_status_with_unparseable_version_is_a_no_op(
        self, cni: cnilib.CNI, mock: MockExecutor
    ) -> None:
        """STATUS with a version libcni cannot parse runs nothing and succeeds."""
        cni.status_network_list(conf(version="one.two"))

        assert [] == mock.invocations

    def test_delete_with_unparseable_version(self, cni: cnilib.CNI) -> None:
        """DEL with an unparseable version raises the parse error before any plugin."""
        with pytest.raises(cnilib.VersionError, match="too many parts"):
            cni.delete_network_list(conf(version="1.0.0.0"), RT)

    def test_validate_single_problem_is_raised_alone(self, tmp_path: Path) -> None:
        """One problem is raised as itself, not wrapped in a group."""
        executor = MockExecutor(
            answering(VERSION=b'{"cniVersion":"0.4.0","supportedVersions":["0.4.0"]}')
        )
        cni = cnilib.CNI([], cache_dir=tmp_path, executor=executor)

        with pytest.raises(cnilib.IncompatibleVersionError) as info:
            cni.validate_network_list(conf(version="1.0.0"))

        assert ("0.4.0",) == info.value.supported

    def test_validate_empty_version_means_010(self, tmp_path: Path) -> None:
        """A list without cniVersion is checked against 0.1.0."""
        executor = MockExecutor(answering(VERSION=b'{"cniVersion":"0.2.0"}'))
        cni = cnilib.CNI([], cache_dir=tmp_path, executor=executor)

        assert () == cni.validate_network_list(conf(version=""))

    def test_mock_version_info(self) -> None:
        """MockExecutor answers version_info through its handler."""
        executor = MockExecutor(
            answering(VERSION=b'{"cniVersion":"1.1.0","supportedVersions":["1.1.0"]}')
        )

        assert ("1.1.0",) == executor.version_info("x", ["/bin"]).supported_versions
        assert "x" == executor.find("x", [])


class TestRuntimeConf:
    @pytest.mark.parametrize(
        "args",
        [(("", "v"),), (("K=", "v"),), (("K", "a;b"),), (("K;", "v"),)],
    )
    def test_cni_args_that_would_corrupt_the_variable(
        self, cni: cnilib.CNI, args: tuple[tuple[str, str], ...]
    ) -> None:
        """CNI_ARGS pairs that would change meaning once joined are refused."""
        rt = cnilib.RuntimeConf("ctr1", "/x", "eth0", args=args)

        with pytest.raises(cnilib.InvalidArgumentError):
            cni.add_network_list(conf(), rt)

    def test_args_must_be_pairs(self) -> None:
        """args must be (key, value) string pairs."""
        with pytest.raises(cnilib.InvalidArgumentError):
            cnilib.RuntimeConf("c", "/x", "eth0", args=(("a", "b", "c"),))  # type: ignore[arg-type]

    def test_netns_nul_and_non_json_caps(self, cni: cnilib.CNI) -> None:
        """A NUL in the netns path or capability args that are not JSON are refused."""
        for rt in (
            cnilib.RuntimeConf("c", "/x\0y", "eth0"),
            cnilib.RuntimeConf("c", "/x", "eth0", capability_args={"x": object()}),  # type: ignore[dict-item]
        ):
            with pytest.raises(cnilib.InvalidArgumentError):
                cni.add_network_list(conf(), rt)

    def test_capability_args_are_read_only(self) -> None:
        """RuntimeConf is frozen all the way down: its capability args cannot change."""
        rt = cnilib.RuntimeConf("c", "/x", "eth0", capability_args={"a": 1})

        with pytest.raises(TypeError):
            rt.capability_args["a"] = 2  # type: ignore[index]

    def test_parse_cni_args(self) -> None:
        """cnitool's CNI_ARGS parsing: pairs split on ';' then exactly one '='."""
        from cnilib.runtime import parse_cni_args

        assert (("A", "1"), ("B", "2")) == parse_cni_args("A=1;B=2")
        assert () == parse_cni_args("")
        with pytest.raises(cnilib.InvalidArgumentError):
            parse_cni_args("A=1=2")

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("K=", '"K=": empty value'),
            ("=V", '"=V": empty key'),
            ("A=1;B=", '"B=": empty value'),
            ("A=1;", '"": expected KEY=VALUE'),
        ],
    )
    def test_parse_cni_args_refuses_empty_parts(self, text: str, reason: str) -> None:
        """An empty key or value is refused, as cnitool refuses it."""
        from cnilib.runtime import parse_cni_args

        with pytest.raises(cnilib.InvalidArgumentError) as caught:
            parse_cni_args(text)

        assert f"invalid CNI_ARGS pair {reason}" == str(caught.value)
