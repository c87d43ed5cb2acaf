"""Readiness (go-cni Status): networks loaded, plugins found, STATUS answered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

import cnilib
from cnilib.config import scan_conf_dir
from cnilib.errors import ErrorCode, PluginNotAvailableError, PluginNotFoundError
from cnilib.invoke import Command, Invocation
from cnilib.testing import MockExecutor


class _Executor(MockExecutor):
    """Finds every plugin but the missing ones; STATUS of 'sick' answers code 50."""

    def __init__(self, missing: Sequence[str] = ()) -> None:
        super().__init__(self._answer)
        self.missing = set(missing)

    def find(self, plugin_type: str, path: Sequence[str]) -> str:
        if plugin_type in self.missing:
            raise PluginNotFoundError(
                f'failed to find plugin "{plugin_type}" in path {list(path)}',
                plugin_type=plugin_type,
                search_path=path,
            )
        return f"/opt/cni/bin/{plugin_type}"

    @staticmethod
    def _answer(invocation: Invocation) -> bytes:
        if invocation.command is Command.STATUS and invocation.plugin_type == "sick":
            raise PluginNotAvailableError("no IP addresses left")
        return b""


def _net(
    name: str, version: str = "1.1.0", *types: str, ipam: str | None = None
) -> cnilib.NetworkConfigList:
    plugins: list[cnilib.JSONValue] = []
    for plugin_type in types or ("bridge",):
        entry: dict[str, cnilib.JSONValue] = {"type": plugin_type}
        if ipam is not None:
            entry["ipam"] = {"type": ipam}
        plugins.append(entry)
    return cnilib.conflist_from_dict({"cniVersion": version, "name": name, "plugins": plugins})


def _cni(tmp_path: Path, executor: _Executor) -> cnilib.CNI:
    return cnilib.CNI(["/opt/cni/bin"], cache_dir=tmp_path, executor=executor)


class TestStatusReport:
    def test_all_found_and_status_ok(self, tmp_path: Path) -> None:
        """Plugins and IPAM plugins found, STATUS sent to a 1.1 list: ready."""
        executor = _Executor()
        report = _cni(tmp_path, executor).status_report([_net("a", "1.1.0", ipam="host-local")])

        assert report.ready
        [network] = report.networks
        assert [("bridge", "plugin", True), ("host-local", "ipam", True)] == [
            (p.plugin_type, p.role, p.found) for p in network.plugins
        ]
        assert network.status_checked
        assert [Command.STATUS] == [i.command for i in executor.invocations]
        report.raise_for_status()

    def test_status_is_not_sent_below_1_1(self, tmp_path: Path) -> None:
        """A 1.0.0 list is checked for plugins only: STATUS does not exist there."""
        executor = _Executor()
        report = _cni(tmp_path, executor).status_report([_net("a", "1.0.0")])

        assert report.ready
        assert not report.networks[0].status_checked
        assert [] == executor.invocations

    def test_missing_plugin(self, tmp_path: Path) -> None:
        """A plugin the executor cannot find makes the network not ready; STATUS is skipped."""
        executor = _Executor(missing=["host-local"])
        cni = _cni(tmp_path, executor)

        report = cni.status_report([_net("a", ipam="host-local")])

        assert not report.ready
        assert not report.networks[0].status_checked
        with pytest.raises(PluginNotFoundError, match='network "a": failed to find plugin'):
            cni.ready([_net("a", ipam="host-local")])

    def test_status_failure_keeps_its_code(self, tmp_path: Path) -> None:
        """STATUS's error (code 50) is reported and raised with its type and code."""
        cni = _cni(tmp_path, _Executor())

        report = cni.status_report([_net("a", "1.1.0", "sick")])

        assert not report.ready
        error = report.networks[0].status_error
        assert error is not None
        assert ErrorCode.PLUGIN_NOT_AVAILABLE == error.code
        with pytest.raises(PluginNotAvailableError):
            report.raise_for_status()

    def test_status_can_be_skipped(self, tmp_path: Path) -> None:
        """status=False only looks plugins up."""
        executor = _Executor()

        report = _cni(tmp_path, executor).status_report([_net("a", "1.1.0", "sick")], status=False)

        assert report.ready
        assert [] == executor.invocations

    def test_too_few_networks(self, tmp_path: Path) -> None:
        """No network loaded: go-cni's 'cni plugin not initialized', a ConfigError."""
        cni = _cni(tmp_path, _Executor())

        with pytest.raises(cnilib.ConfigError, match="cni plugin not initialized: 0 network"):
            cni.ready([])

    def test_several_problems_raise_a_group(self, tmp_path: Path) -> None:
        """Two networks not ready raise one CNIErrorGroup holding both."""
        cni = _cni(tmp_path, _Executor(missing=["bridge"]))

        with pytest.raises(cnilib.CNIErrorGroup) as info:
            cni.ready([_net("a"), _net("b")])

        assert 2 == len(info.value.exceptions)

    def test_conf_dir_problems_are_reported(self, tmp_path: Path) -> None:
        """A ConfDir's unloadable files are in the report; one good network is still ready."""
        (tmp_path / "00-bad.conflist").write_text("{")
        conf = {"cniVersion": "1.0.0", "name": "good", "plugins": [{"type": "bridge"}]}
        (tmp_path / "10-good.conflist").write_text(json.dumps(conf))

        report = _cni(tmp_path / "cache", _Executor()).status_report(scan_conf_dir(tmp_path))

        assert report.ready
        assert 1 == len(report.problems)
        assert ["good"] == [n.name for n in report.networks]

    def test_min_networks(self, tmp_path: Path) -> None:
        """min_networks=2 with one network is not ready (go-cni WithMinNetworkCount)."""
        report = _cni(tmp_path, _Executor()).status_report([_net("a")], min_networks=2)

        assert not report.ready


class TestAsyncStatusReport:
    def test_same_report(self, tmp_path: Path) -> None:
        """AsyncCNI gives the same report and raises the same error."""
        cni = cnilib.AsyncCNI(["/opt/cni/bin"], cache_dir=tmp_path, executor=_Executor())

        async def main() -> cnilib.StatusReport:
            with pytest.raises(PluginNotAvailableError):
                await cni.ready([_net("a", "1.1.0", "sick")])
            return await cni.status_report([_net("b")])

        report = asyncio.run(main())

        assert report.ready
        assert report.networks[0].status_checked
