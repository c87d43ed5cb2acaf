"""The ``overlay`` plugin's keys, delegated configuration and the paths that touch no
kernel (STATUS, DEL of nothing, ADD before the agent has joined)."""

from __future__ import annotations

import json
import subprocess
import sys
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from cnilib.errors import CNIError, PluginError
from cnilib.invoke import Command
from cnilib.plugins._base import PluginRequest
from cnilib.plugins.main._overlay_state import NodeState, state_path, write_node_state
from cnilib.plugins.main.overlay import Overlay, OverlayConf, delegated_config
from tests.unit._guards import NO_SUCH_HOST

STATE = NodeState(
    name="ovnet",
    node="n1",
    cluster=IPv4Network("10.244.0.0/16"),
    subnet=IPv4Network("10.244.7.0/24"),
    bridge="ovbr0",
    mtu=1450,
)


def _request(tmp: Path, command: Command = Command.ADD, **keys: Any) -> PluginRequest:
    config: dict[str, Any] = {
        "cniVersion": "1.1.0",
        "name": "ovnet",
        "type": "overlay",
        "runDir": str(tmp),
        **keys,
    }
    return PluginRequest(
        command=command,
        container_id="c1",
        netns="/run/netns/none",
        ifname="eth0",
        args=(),
        path=("/nonexistent",),
        config=config,
        stdin=json.dumps(config).encode(),
        # Should a test reach bridge's host side (a broken refusal, say), it fails on a
        # namespace that does not exist (see tests/unit/_guards.py).
        host_netns=NO_SUCH_HOST,
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [("runDir", 5), ("dataDir", []), ("mtu", "1400"), ("mtu", 40), ("ipMasq", "yes")],
)
def test_bad_key_is_code_7_naming_it(tmp_path: Path, key: str, value: Any) -> None:
    with pytest.raises(PluginError) as info:
        OverlayConf.load(_request(tmp_path, **{key: value}))
    assert info.value.code == 7
    assert f'"{key}"' in info.value.msg


def test_delegated_config(tmp_path: Path) -> None:
    """bridge on the state's bridge, gateway, MTU (overridable); host-local on the subnet
    routing the cluster CIDR; dataDir passed on; no masquerading by bridge."""
    req = _request(tmp_path, dataDir="/d", mtu=1300, ipMasq=False, ipMasqBackend="iptables")
    config = delegated_config(req, OverlayConf.load(req), STATE)
    assert config == {
        "cniVersion": "1.1.0",
        "name": "ovnet",
        "type": "bridge",
        "bridge": "ovbr0",
        "isGateway": True,
        "mtu": 1300,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.244.7.0/24", "gateway": "10.244.7.1"}]],
            "routes": [{"dst": "10.244.0.0/16"}],
            "dataDir": "/d",
        },
    }
    plain = _request(tmp_path)
    assert delegated_config(plain, OverlayConf.load(plain), STATE)["mtu"] == 1450


@pytest.mark.parametrize("command", [Command.ADD, Command.CHECK, Command.STATUS])
def test_ip_masq_is_refused_with_code_7(tmp_path: Path, command: Command) -> None:
    """bridge's masquerading would rewrite traffic to other nodes' containers too: refused
    before anything is read or made, pointing at the agent's --ip-masq."""
    write_node_state(state_path(tmp_path, "ovnet"), STATE)
    plugin = Overlay()
    call = {Command.ADD: plugin.add, Command.CHECK: plugin.check, Command.STATUS: plugin.status}
    with pytest.raises(PluginError) as info:
        call[command](_request(tmp_path, command, ipMasq=True))
    assert info.value.code == 7
    assert '"ipMasq"' in info.value.msg
    assert "--ip-masq" in info.value.msg
    assert "other nodes" in info.value.msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ovnet.json"]


def test_del_and_gc_pass_ip_masq_on(tmp_path: Path) -> None:
    """An attachment made while ipMasq was accepted still has bridge's rules: DEL and GC
    give bridge the key, so that bridge removes them."""
    req = _request(tmp_path, Command.DEL, ipMasq=True, ipMasqBackend="nftables")
    config = delegated_config(req, OverlayConf.load(req), STATE)
    assert (config["ipMasq"], config["ipMasqBackend"]) == (True, "nftables")
    Overlay().delete(req)  # nothing saved, no state file: nothing to undo, no error


def test_add_before_join_is_code_11(tmp_path: Path) -> None:
    with pytest.raises(PluginError) as info:
        Overlay().add(_request(tmp_path))
    assert info.value.code == 11
    assert "has not joined yet" in info.value.msg
    assert str(state_path(tmp_path, "ovnet")) in info.value.msg
    assert list(tmp_path.iterdir()) == []


def test_status(tmp_path: Path) -> None:
    """Code 50 without a state file; with one, host-local's STATUS (ready)."""
    with pytest.raises(PluginError) as info:
        Overlay().status(_request(tmp_path, Command.STATUS))
    assert info.value.code == 50
    write_node_state(state_path(tmp_path, "ovnet"), STATE)
    Overlay().status(_request(tmp_path, Command.STATUS, dataDir=str(tmp_path / "ipam")))


def test_del_of_nothing_succeeds(tmp_path: Path) -> None:
    """Neither a saved configuration nor a state file: DEL does nothing, successfully."""
    Overlay().delete(_request(tmp_path, Command.DEL))
    assert list(tmp_path.iterdir()) == []


def test_check_without_saved_config_fails(tmp_path: Path) -> None:
    write_node_state(state_path(tmp_path, "ovnet"), STATE)
    with pytest.raises(PluginError, match="no saved configuration"):
        Overlay().check(_request(tmp_path, Command.CHECK))


def test_bad_state_file_names_it(tmp_path: Path) -> None:
    path = state_path(tmp_path, "ovnet")
    path.write_text('{"name": "ovnet"}')
    with pytest.raises(CNIError) as info:
        Overlay().add(_request(tmp_path))
    assert str(path) in str(info.value)
    assert info.value.code == 6  # decoding failure: the agent wrote it, not the user


def test_gc_drops_saved_configs_of_invalid_attachments(tmp_path: Path) -> None:
    saved = tmp_path / "ovnet"
    saved.mkdir()
    for name in ("keep:eth0.json", "gone:eth0.json"):
        (saved / name).write_text('{"type": "bridge"}')
    Overlay().gc(
        _request(
            tmp_path,
            Command.GC,
            **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]},
        )
    )
    assert sorted(p.name for p in saved.iterdir()) == ["keep:eth0.json"]


def test_plugin_does_not_import_the_etcd_client() -> None:
    """The executable imports the plugin: neither aetcd nor grpc may come with it."""
    code = (
        "import sys; from cnilib.plugins import load_plugin; load_plugin('overlay'); "
        "print([m for m in sys.modules if m.split('.')[0] in ('aetcd', 'grpc')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
