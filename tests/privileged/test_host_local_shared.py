"""One host-local store shared by Go's host-local binary and cnilib's in-process
host-local, turn by turn within one process: what either writes, the other sees.

The in-process side keeps an index of the store between calls (it reads only the
files that changed); these tests are what says the index never misses a change
Go's binary made. Go's binary runs inside a throwaway node namespace (it does no
network work, but no plugin binary runs in the machine's own namespace).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cnilib.errors import PluginError
from cnilib.invoke import Command
from cnilib.plugins._base import PluginRequest
from cnilib.plugins.ipam import _index
from cnilib.plugins.ipam.host_local import HostLocal
from cnilib.testing import NetNS

GO_HOST_LOCAL = Path("/usr/lib/cni/host-local")
JSON = dict[str, Any]

pytestmark = pytest.mark.skipif(
    not GO_HOST_LOCAL.exists(), reason="Debian's containernetworking-plugins is not installed"
)


class Shared:
    """Both host-locals on one store (a /29: .2 to .6, .1 is the gateway)."""

    def __init__(self, data_dir: Path, node: NetNS) -> None:
        self.node = node
        self.conf: JSON = {
            "cniVersion": "1.0.0",
            "name": "shared",
            "type": "bridge",
            "ipam": {
                "type": "host-local",
                "dataDir": str(data_dir),
                "ranges": [[{"subnet": "198.18.9.0/29"}]],
            },
        }
        self.store = data_dir / "shared"

    def py(self, command: Command, cid: str) -> list[str]:
        req = PluginRequest(
            command=command,
            container_id=cid,
            netns="/x",
            ifname="eth0",
            args=(),
            path=(),
            config=self.conf,
            stdin=json.dumps(self.conf).encode(),
            host_netns=self.node.path,
        )
        if command is Command.ADD:
            return [str(ip.address) for ip in HostLocal().add(req).ips]
        HostLocal().delete(req)
        return []

    def go(self, command: Command, cid: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*self.node.exec_prefix, str(GO_HOST_LOCAL)],
            input=json.dumps(self.conf).encode(),
            env={
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "CNI_COMMAND": command.value,
                "CNI_CONTAINERID": cid,
                "CNI_NETNS": "/x",
                "CNI_IFNAME": "eth0",
                "CNI_PATH": "/usr/lib/cni",
            },
            capture_output=True,
            check=False,
        )

    def go_add(self, cid: str) -> list[str]:
        proc = self.go(Command.ADD, cid)
        assert 0 == proc.returncode, proc.stdout
        return [ip["address"] for ip in json.loads(proc.stdout)["ips"]]

    def holders(self) -> dict[str, str]:
        return {
            path.name: path.read_bytes().decode().split("\r\n")[0]
            for path in self.store.iterdir()
            if path.name[0].isdigit()
        }


@pytest.fixture
def shared(tmp_path: Path, cnilib_node_netns: NetNS) -> Shared:
    _index.forget_all()
    return Shared(tmp_path, cnilib_node_netns)


def test_turns_never_hand_out_one_address_twice(shared: Shared) -> None:
    """Allocations alternate between the two; every address has one holder, and each
    side refuses a duplicate of what the other allocated."""
    got = {
        "c1": shared.py(Command.ADD, "c1"),
        "c2": shared.go_add("c2"),
        "c3": shared.py(Command.ADD, "c3"),
        "c4": shared.go_add("c4"),
    }
    assert 4 == len({ip for ips in got.values() for ip in ips})
    assert {ip.split("/")[0]: cid for cid, ips in got.items() for ip in ips} == shared.holders()
    with pytest.raises(PluginError, match="has been allocated to c2, duplicate allocation"):
        shared.py(Command.ADD, "c2")
    duplicate = shared.go(Command.ADD, "c3")
    assert 0 != duplicate.returncode
    assert b"has been allocated to c3" in duplicate.stdout


def test_go_release_and_reuse_are_seen(shared: Shared) -> None:
    """Go releases c2 and hands its address to c9 (the same file name, a new holder):
    cnilib's side sees c2 free and c9 holding the address."""
    shared.py(Command.ADD, "c1")
    (address,) = shared.go_add("c2")
    for cid in ("c3", "c4", "c5"):  # fill the /29 (.2-.6), so the next ADD reuses c2's
        shared.go_add(cid)
    assert 0 == shared.go(Command.DEL, "c2").returncode
    assert [address] == shared.go_add("c9")

    with pytest.raises(PluginError, match="has been allocated to c9"):
        shared.py(Command.ADD, "c9")
    with pytest.raises(PluginError, match="no IP addresses available"):
        shared.py(Command.ADD, "c2")  # c2 holds nothing, and the range is full
    shared.py(Command.DEL, "c9")
    assert [address] == shared.py(Command.ADD, "c2")


def test_go_sees_what_cnilib_released(shared: Shared) -> None:
    shared.py(Command.ADD, "c1")
    shared.py(Command.DEL, "c1")
    assert ["198.18.9.3/29"] == shared.go_add("c1")
    assert {"198.18.9.3": "c1"} == shared.holders()
