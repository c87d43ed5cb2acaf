"""An in-process plugin's error reaches the caller as the same class a binary's
error object does: chosen by its code, whatever class the plugin raised."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

import cnilib
from cnilib.plugins import BasePlugin, PluginRequest
from cnilib.results import Result

CASES = [
    (11, cnilib.TryAgainLaterError),
    (50, cnilib.PluginNotAvailableError),
    (51, cnilib.LimitedConnectivityError),
    (7, cnilib.PluginError),
]


class Refuses(BasePlugin):
    """ADD and STATUS fail with the code in the config, raised as a plain PluginError."""

    type = "refuses"

    def add(self, req: PluginRequest) -> Result:
        raise cnilib.PluginError("busy", code=req.get_int("code"), details="try later")

    def status(self, req: PluginRequest) -> None:
        raise cnilib.PluginError("down", code=req.get_int("code"))


def _conflist(plugin: Mapping[str, object]) -> cnilib.NetworkConfigList:
    doc = {"cniVersion": "1.1.0", "name": "net", "plugins": [plugin]}
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


RT = cnilib.RuntimeConf("c1", "/var/run/netns/c1", "eth0")


@pytest.mark.parametrize(("code", "expected"), CASES)
def test_same_class_as_a_binary(
    tmp_path: Path,
    cnilib_cni_bin_dir: Path,
    cnilib_recorder_log: Path,
    code: int,
    expected: type[cnilib.PluginError],
) -> None:
    recorder = {
        "type": "recorder",
        "recorder": {"log": str(cnilib_recorder_log), "ADD": {"error": {"code": code, "msg": "x"}}},
    }
    binary = cnilib.CNI([cnilib_cni_bin_dir], cache_dir=tmp_path / "b", rollback=False)
    executor = cnilib.InProcessExecutor({"refuses": Refuses()}, builtins=False, installed=False)
    in_process = cnilib.CNI(
        [cnilib_cni_bin_dir], cache_dir=tmp_path / "i", executor=executor, rollback=False
    )

    with pytest.raises(cnilib.PluginError) as from_binary:
        binary.add_network_list(_conflist(recorder), RT)
    with pytest.raises(cnilib.PluginError) as from_python:
        in_process.add_network_list(_conflist({"type": "refuses", "code": code}), RT)

    assert expected is type(from_binary.value)
    assert expected is type(from_python.value)
    assert (code, "try later") == (from_python.value.code, from_python.value.details)


def test_status_not_available_is_catchable(tmp_path: Path) -> None:
    """The case the docs promise: ``except cnilib.PluginNotAvailableError`` on STATUS."""
    executor = cnilib.InProcessExecutor({"refuses": Refuses()}, builtins=False, installed=False)
    cni = cnilib.CNI(["/unused"], cache_dir=tmp_path, executor=executor)

    with pytest.raises(cnilib.PluginNotAvailableError, match="down"):
        cni.status_network_list(_conflist({"type": "refuses", "code": 50}))
