"""The dhcp RPC against Debian's Go 1.1.1 ``dhcp``: its plugin calls our server, our client
calls its daemon. Both Go processes run inside a throwaway node namespace; the unix
sockets live in the test's tmp_path (unix socket files are reachable from any netns).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from cnilib.plugins.ipam.dhcp._rpc import CmdArgs, DaemonCallError, RPCFailure, call
from cnilib.plugins.ipam.dhcp._rpc_server import serve_rpc
from cnilib.results import ResultV100
from cnilib.testing import NetNS
from tests.privileged._kernel import GO_PLUGINS, JSON, go_plugin_marks, plugin_output

GO_DHCP = GO_PLUGINS / "dhcp"
pytestmark = [
    *go_plugin_marks(),
    pytest.mark.skipif(not GO_DHCP.is_file(), reason=f"{GO_DHCP} is not installed"),
]

RESULT = ResultV100.from_json(
    {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "0a:58:c0:00:02:0a", "sandbox": "/run/netns/x"}],
        "ips": [
            {"interface": 0, "address": "192.0.2.10/24", "gateway": "192.0.2.1"},
            {"address": "2001:db8::10/64", "gateway": "2001:db8::1"},
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "192.0.2.1"},
            {"dst": "192.0.2.128/25"},
            {"dst": "2001:db8:1::/48", "gw": "2001:db8::1"},
        ],
        "dns": {
            "nameservers": ["192.0.2.53"],
            "domain": "example.org",
            "search": ["example.org"],
            "options": ["ndots:2"],
        },
    }
)


class Recorder:
    """Our daemon's stand-in: records each call, answers Allocate with RESULT."""

    def __init__(self, fail: str = "") -> None:
        self.calls: list[tuple[str, CmdArgs]] = []
        self.fail = fail

    async def __call__(self, method: str, args: CmdArgs) -> ResultV100 | None:
        self.calls.append((method, args))
        if self.fail:
            raise RPCFailure(self.fail)
        if method == "DHCP.Release":
            return None
        assert isinstance(RESULT, ResultV100)
        return RESULT


@asynccontextmanager
async def our_daemon(sock: Path, recorder: Recorder) -> AsyncIterator[None]:
    server = await serve_rpc(sock, recorder)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


def conf(version: str, sock: Path) -> bytes:
    return json.dumps(
        {
            "cniVersion": version,
            "name": "dhcpnet",
            "ipam": {"type": "dhcp", "daemonSocketPath": str(sock)},
        }
    ).encode()


async def go_plugin(node: NetNS, command: str, ctr: NetNS, stdin: bytes) -> tuple[int, bytes]:
    """Run Go's dhcp plugin in ``node``; its exit status and stdout."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "cid-rpc",
        "CNI_NETNS": ctr.path,
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=pod1",
        "CNI_PATH": str(GO_PLUGINS),
    }
    proc = await asyncio.create_subprocess_exec(
        *node.exec_prefix,
        str(GO_DHCP),
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(stdin), 30)
    except TimeoutError:
        proc.kill()  # not left running after the test (it waits on our server forever)
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out


def expected_args(ctr: NetNS, stdin: bytes) -> CmdArgs:
    return CmdArgs(
        container_id="cid-rpc",
        netns=ctr.path,
        ifname="eth0",
        args="IgnoreUnknown=1;K8S_POD_NAME=pod1",
        path=str(GO_PLUGINS),
        stdin_data=stdin,
    )


# ------------------------------------------------------------- Go's plugin -> our server


@pytest.mark.asyncio
async def test_go_plugin_add_prints_our_result(
    cnilib_node_netns: NetNS, ns: NetNS, tmp_path: Path
) -> None:
    sock = tmp_path / "our.sock"
    stdin = conf("1.0.0", sock)
    recorder = Recorder()
    async with our_daemon(sock, recorder):
        rc, out = await go_plugin(cnilib_node_netns, "ADD", ns, stdin)
    assert rc == 0, out
    assert plugin_output(out, ns.path) == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "0a:58:c0:00:02:0a", "sandbox": "/run/netns/x"}],
        # interface 0 arrives: our encoder sends a set pointer even when it is 0.
        "ips": [
            {"interface": 0, "address": "192.0.2.10/24", "gateway": "192.0.2.1"},
            {"address": "2001:db8::10/64", "gateway": "2001:db8::1"},
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "192.0.2.1"},
            {"dst": "192.0.2.128/25"},
            {"dst": "2001:db8:1::/48", "gw": "2001:db8::1"},
        ],
        "dns": {
            "nameservers": ["192.0.2.53"],
            "domain": "example.org",
            "search": ["example.org"],
            "options": ["ndots:2"],
        },
    }
    assert recorder.calls == [("DHCP.Allocate", expected_args(ns, stdin))]


@pytest.mark.asyncio
async def test_go_plugin_converts_our_result_to_the_confs_version(
    cnilib_node_netns: NetNS, ns: NetNS, tmp_path: Path
) -> None:
    sock = tmp_path / "our.sock"
    async with our_daemon(sock, Recorder()):
        rc, out = await go_plugin(cnilib_node_netns, "ADD", ns, conf("0.4.0", sock))
    assert rc == 0, out
    result = plugin_output(out, ns.path)
    assert result is not None
    assert result["cniVersion"] == "0.4.0"
    assert result["ips"] == [
        {"version": "4", "interface": 0, "address": "192.0.2.10/24", "gateway": "192.0.2.1"},
        {"version": "6", "address": "2001:db8::10/64", "gateway": "2001:db8::1"},
    ]
    assert RESULT.convert_to("0.4.0").to_object() == result


@pytest.mark.asyncio
async def test_go_plugin_del_calls_release(
    cnilib_node_netns: NetNS, ns: NetNS, tmp_path: Path
) -> None:
    sock = tmp_path / "our.sock"
    stdin = conf("1.0.0", sock)
    recorder = Recorder()
    async with our_daemon(sock, recorder):
        rc, out = await go_plugin(cnilib_node_netns, "DEL", ns, stdin)
    assert (rc, out) == (0, b"")
    assert recorder.calls == [("DHCP.Release", expected_args(ns, stdin))]


@pytest.mark.asyncio
async def test_go_plugin_reports_our_error_text(
    cnilib_node_netns: NetNS, ns: NetNS, tmp_path: Path
) -> None:
    sock = tmp_path / "our.sock"
    async with our_daemon(sock, Recorder(fail="no more tries")):
        rc, out = await go_plugin(cnilib_node_netns, "ADD", ns, conf("1.0.0", sock))
    assert rc == 1
    error: JSON = json.loads(out)
    assert error == {"code": 999, "msg": "error calling DHCP.Allocate: no more tries"}


# ------------------------------------------------------------- our client -> Go's daemon


@pytest.fixture
def go_daemon(cnilib_node_netns: NetNS, tmp_path: Path) -> Iterator[Path]:
    """Go's dhcp daemon in the node namespace, its socket in tmp_path; stopped by pid."""
    sock = tmp_path / "d.sock"
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [*cnilib_node_netns.exec_prefix, str(GO_DHCP), "daemon", "-socketpath", str(sock)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"Go's dhcp daemon did not start: {(tmp_path / 'daemon.log').read_text()}"
                )
            time.sleep(0.02)
        yield sock
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
        sock.unlink(missing_ok=True)  # 1.1.1 leaves it behind


def test_release_of_an_unknown_container_succeeds_on_go_daemon(go_daemon: Path) -> None:
    args = CmdArgs(
        container_id="unknown",
        netns="/run/netns/cnilib-none",
        ifname="eth0",
        stdin_data=conf("1.0.0", go_daemon),
    )
    assert call(go_daemon, "DHCP.Release", args, timeout=30) is None


def test_go_daemons_allocate_error_comes_back_as_daemon_call_error(go_daemon: Path) -> None:
    missing = "/run/netns/cnilib-missing-netns"
    args = CmdArgs(
        container_id="cid-rpc",
        netns=missing,
        ifname="eth0",
        path=str(GO_PLUGINS),
        stdin_data=conf("1.0.0", go_daemon),
    )
    with pytest.raises(DaemonCallError) as info:
        call(go_daemon, "DHCP.Allocate", args, timeout=30)
    reason = f'failed to Statfs "{missing}": no such file or directory'
    assert str(info.value) == f"error calling DHCP.Allocate: {reason}"
    assert info.value.reason == reason
    assert info.value.code == 999


def test_go_daemon_answers_an_unknown_method_as_our_server_does(go_daemon: Path) -> None:
    with pytest.raises(DaemonCallError) as info:
        call(go_daemon, "DHCP.Nope", CmdArgs(container_id="x"), timeout=30)
    assert str(info.value) == "error calling DHCP.Nope: rpc: can't find method DHCP.Nope"
