"""The ``dhcp`` plugin, run in process, against cnilib's lease daemon and the fake DHCP server.

The daemon serves on a unix socket in ``tmp_path`` (:class:`DaemonThread`);
its DHCP sockets are the fake server's, so no namespace is entered and no
packet is sent. The namespace path given to the plugin does not exist: only
CHECK's last step (the address on the interface) would enter it, and it
fails there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cnilib.netlink
from cnilib.errors import CNIError, ErrorCode
from cnilib.invoke import Invocation
from cnilib.netlink._dhcp import MessageType
from cnilib.plugins._executor import InProcessExecutor
from cnilib.plugins.ipam.dhcp._conf import SHUTTING_DOWN
from cnilib.plugins.ipam.dhcp._daemon import METHODS, DaemonThread, LeaseDaemon
from cnilib.plugins.ipam.dhcp._lease import Timing
from cnilib.plugins.ipam.dhcp._rpc import DHCP_METHODS, CmdArgs, RPCFailure
from cnilib.plugins.ipam.dhcp._rpc_server import serve_rpc
from tests.unit._dhcp_fake import FakeServer, RealClock, ack_options
from tests.unit._guards import NO_SUCH_HOST

NETNS = "/nonexistent/cnilib-unit/ctr"
POOL = [f"192.0.2.{n}" for n in range(100, 120)]
TIMING = Timing(
    attempt_timeout=0.1,
    resend_max=0.1,
    resend_timeout=0.3,
    fast_delay=0.05,
    first_backoff=0.05,
    jitter=0.0,
)
JSON = dict[str, Any]


def client_id(container_id: str = "cid", ifname: str = "eth0") -> bytes:
    return f"\x00{container_id}/dhcpnet/{ifname}".encode()


@pytest.fixture(autouse=True)
def _no_link_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lost lease would set the link down: never in a real namespace here."""

    async def fake(*args: Any) -> None:
        return None

    monkeypatch.setattr(cnilib.netlink, "arun_in_netns", fake)


@pytest.fixture
def server() -> FakeServer:
    server = FakeServer(RealClock(), attachments=None, pool=POOL)
    server.options = {**ack_options(), 6: bytes([192, 0, 2, 53]), 15: b"example.test"}
    return server


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "run" / "dhcp.sock"


@pytest.fixture
def daemon(server: FakeServer, sock: Path, tmp_path: Path) -> Iterator[LeaseDaemon]:
    lease_daemon = LeaseDaemon(
        state_dir=tmp_path / "state", timing=TIMING, open_socket=server.open_socket
    )
    with DaemonThread(lease_daemon, sock):
        yield lease_daemon


@pytest.fixture
def executor() -> Iterator[InProcessExecutor]:
    with InProcessExecutor(host_netns=NO_SUCH_HOST) as ex:
        yield ex


def netconf(sock: Path, version: str = "1.1.0", *, valid: Any = None, **extra: Any) -> JSON:
    """The network config; ``valid``: GC's ``cni.dev/valid-attachments``."""
    ipam = {"type": "dhcp", "daemonSocketPath": str(sock), **extra.pop("ipam", {})}
    conf = {"cniVersion": version, "name": "dhcpnet", "type": "dhcp", "ipam": ipam, **extra}
    if valid is not None:
        conf["cni.dev/valid-attachments"] = valid
    return conf


def run(
    executor: InProcessExecutor,
    command: str,
    conf: JSON,
    *,
    container_id: str = "cid",
    ifname: str = "eth0",
    netns: str = NETNS,
    args: tuple[tuple[str, str], ...] = (),
) -> bytes:
    attachment = command in ("ADD", "DEL", "CHECK")
    return executor.exec(
        Invocation(
            command=command,
            plugin_type="dhcp",
            stdin=json.dumps(conf).encode(),
            container_id=container_id if attachment else "",
            netns=netns if attachment else "",
            ifname=ifname if attachment else "",
            args=args,
            path=("/nonexistent/bin",),
        )
    )


def add(executor: InProcessExecutor, conf: JSON, **kw: Any) -> JSON:
    output: JSON = json.loads(run(executor, "ADD", conf, **kw))
    return output


def error(executor: InProcessExecutor, command: str, conf: JSON, **kw: Any) -> CNIError:
    with pytest.raises(CNIError) as info:
        run(executor, command, conf, **kw)
    return info.value


# ---------------------------------------------------------------------------- ADD


@pytest.mark.usefixtures("daemon")
@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (
            "0.2.0",
            {
                "cniVersion": "0.2.0",
                "ip4": {
                    "ip": "192.0.2.100/24",
                    "gateway": "192.0.2.1",
                    "routes": [{"dst": "0.0.0.0/0", "gw": "192.0.2.1"}],
                },
                "dns": {"nameservers": ["192.0.2.53"], "domain": "example.test"},
            },
        ),
        (
            "0.4.0",
            {
                "cniVersion": "0.4.0",
                "ips": [{"version": "4", "address": "192.0.2.100/24", "gateway": "192.0.2.1"}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "192.0.2.1"}],
                "dns": {"nameservers": ["192.0.2.53"], "domain": "example.test"},
            },
        ),
        (
            "1.1.0",
            {
                "cniVersion": "1.1.0",
                "ips": [{"address": "192.0.2.100/24", "gateway": "192.0.2.1"}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "192.0.2.1"}],
                "dns": {"nameservers": ["192.0.2.53"], "domain": "example.test"},
            },
        ),
    ],
)
def test_add_in_every_result_version(
    executor: InProcessExecutor, sock: Path, server: FakeServer, version: str, expected: JSON
) -> None:
    assert add(executor, netconf(sock, version)) == expected
    assert server.kinds() == [MessageType.DISCOVER, MessageType.REQUEST]
    assert server.requests[0].client_id == client_id()


@pytest.mark.usefixtures("daemon")
def test_add_twice_is_the_same_lease(
    executor: InProcessExecutor, sock: Path, server: FakeServer
) -> None:
    first = add(executor, netconf(sock))
    assert add(executor, netconf(sock)) == first
    other = add(executor, netconf(sock), container_id="other")
    assert other["ips"][0]["address"] == "192.0.2.101/24"
    assert server.kinds_of(client_id()) == [MessageType.DISCOVER, MessageType.REQUEST]


@pytest.mark.usefixtures("daemon")
def test_add_passes_priority_cni_args_and_an_absolute_netns(
    executor: InProcessExecutor,
    sock: Path,
    server: FakeServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    conf = netconf(
        sock, ipam={"priority": 9, "provide": [{"option": "host-name", "fromArg": "K8S_POD_NAME"}]}
    )
    result = add(executor, conf, netns="relative/ns", args=(("K8S_POD_NAME", "pod-a"),))
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "192.0.2.1", "priority": 9}]
    discover = server.requests[0]
    assert (12, b"pod-a") in discover.extra_options
    [record] = (tmp_path / "state").iterdir()
    assert json.loads(record.read_text())["netns"] == str(tmp_path / "relative" / "ns")


@pytest.mark.usefixtures("daemon")
def test_add_without_a_dhcp_server_fails_with_the_daemons_text(
    executor: InProcessExecutor, sock: Path, server: FakeServer
) -> None:
    server.answer_discover = False
    exc = error(executor, "ADD", netconf(sock))
    assert str(exc).startswith("error calling DHCP.Allocate: no more tries")
    assert exc.code == ErrorCode.INTERNAL


def test_add_without_the_daemon_is_code_11_with_gos_text(
    executor: InProcessExecutor, sock: Path
) -> None:
    exc = error(executor, "ADD", netconf(sock))
    assert exc.code == ErrorCode.TRY_AGAIN_LATER
    assert str(exc) == (
        f"error dialing DHCP daemon: dial unix {sock}: connect: no such file or directory"
    )


def test_add_with_a_bad_config_is_code_7_before_any_call(
    executor: InProcessExecutor, sock: Path
) -> None:
    conf = netconf(sock, ipam={"provide": [{"option": "no-such-option", "value": "x"}]})
    exc = error(executor, "ADD", conf)
    assert exc.code == ErrorCode.INVALID_NETWORK_CONFIG  # not 11: the daemon is not asked


# ---------------------------------------------------------------------------- DEL


@pytest.mark.usefixtures("daemon")
def test_del_releases(executor: InProcessExecutor, sock: Path, server: FakeServer) -> None:
    add(executor, netconf(sock))
    assert run(executor, "DEL", netconf(sock)) == b""
    assert run(executor, "DEL", netconf(sock)) == b""  # again: fine
    assert server.kinds() == [MessageType.DISCOVER, MessageType.REQUEST, MessageType.RELEASE]
    assert server.requests[-1].ciaddr == "192.0.2.100"
    assert "no DHCP lease is held" in str(error(executor, "CHECK", netconf(sock)))


def test_del_without_the_daemon_is_code_11(executor: InProcessExecutor, sock: Path) -> None:
    exc = error(executor, "DEL", netconf(sock))
    assert exc.code == ErrorCode.TRY_AGAIN_LATER
    assert str(exc).startswith(f"error dialing DHCP daemon: dial unix {sock}: ")


# -------------------------------------------------------------------------- CHECK


def prev(address: str) -> JSON:
    return {
        "cniVersion": "1.1.0",
        "ips": [{"address": address, "gateway": "192.0.2.1"}],
    }


@pytest.mark.usefixtures("daemon")
def test_check_without_a_lease_fails(executor: InProcessExecutor, sock: Path) -> None:
    exc = error(executor, "CHECK", netconf(sock, prevResult=prev("192.0.2.100/24")))
    assert str(exc) == (
        "error calling DHCP.Check: cid/dhcpnet/eth0: no DHCP lease is held for this attachment"
    )
    assert exc.code == ErrorCode.INTERNAL


@pytest.mark.usefixtures("daemon")
def test_check_with_a_prev_result_without_the_lease(
    executor: InProcessExecutor, sock: Path, server: FakeServer
) -> None:
    add(executor, netconf(sock))
    exc = error(executor, "CHECK", netconf(sock, prevResult=prev("192.0.2.77/24")))
    assert exc.code == ErrorCode.INVALID_NETWORK_CONFIG
    assert str(exc) == "dhcp: the leased address 192.0.2.100/24 is not in prevResult"
    assert MessageType.DISCOVER not in server.kinds()[2:]  # CHECK acquires nothing


@pytest.mark.usefixtures("daemon")
def test_check_with_the_lease_in_prev_result_goes_on_to_the_interface(
    executor: InProcessExecutor, sock: Path
) -> None:
    """The address-on-interface step needs the namespace; here it does not exist."""
    add(executor, netconf(sock))
    exc = error(executor, "CHECK", netconf(sock, prevResult=prev("192.0.2.100/24")))
    assert "prevResult" not in str(exc)
    assert NETNS in str(exc)


@pytest.mark.usefixtures("daemon")
def test_check_of_a_lease_released_by_gc(executor: InProcessExecutor, sock: Path) -> None:
    add(executor, netconf(sock))
    run(executor, "GC", netconf(sock, valid=[]))
    exc = error(executor, "CHECK", netconf(sock, prevResult=prev("192.0.2.100/24")))
    assert "no DHCP lease is held" in str(exc)


# ------------------------------------------------------------------------- STATUS


@pytest.mark.usefixtures("daemon")
def test_status_ok(executor: InProcessExecutor, sock: Path) -> None:
    assert run(executor, "STATUS", netconf(sock)) == b""


def test_status_without_the_daemon_is_code_50(executor: InProcessExecutor, sock: Path) -> None:
    exc = error(executor, "STATUS", netconf(sock))
    assert exc.code == ErrorCode.PLUGIN_NOT_AVAILABLE
    assert str(exc) == (
        f"error dialing DHCP daemon: dial unix {sock}: connect: no such file or directory"
    )


def test_status_after_the_daemon_stopped_is_code_50(
    executor: InProcessExecutor, sock: Path, server: FakeServer, tmp_path: Path
) -> None:
    with DaemonThread(LeaseDaemon(state_dir=None, open_socket=server.open_socket), sock):
        assert run(executor, "STATUS", netconf(sock)) == b""
    assert error(executor, "STATUS", netconf(sock)).code == ErrorCode.PLUGIN_NOT_AVAILABLE


def test_status_while_the_daemon_shuts_down_is_code_50(
    executor: InProcessExecutor, sock: Path
) -> None:
    """A daemon answering that it is stopping cannot serve ADD: STATUS's code 50, not 11."""

    async def stopping(method: str, args: CmdArgs) -> None:
        raise RPCFailure(SHUTTING_DOWN)

    with _rpc_server(sock, stopping):
        exc = error(executor, "STATUS", netconf(sock))
    assert exc.code == ErrorCode.PLUGIN_NOT_AVAILABLE
    assert str(exc) == f"error calling DHCP.Status: {SHUTTING_DOWN}"


# ----------------------------------------------------------------------------- GC


@pytest.mark.usefixtures("daemon")
def test_gc_releases_the_leases_of_attachments_gone(
    executor: InProcessExecutor, sock: Path, server: FakeServer
) -> None:
    add(executor, netconf(sock), container_id="c1")
    add(executor, netconf(sock), container_id="c2")
    add(executor, netconf(sock), container_id="c2", ifname="eth1")
    valid = [{"containerID": "c1", "ifname": "eth0"}, {"containerID": "c2", "ifname": "eth1"}]
    assert run(executor, "GC", netconf(sock, valid=valid)) == b""
    released = [r.client_id for r in server.requests if r.message_type is MessageType.RELEASE]
    assert released == [client_id("c2")]
    # the kept ones are still held: CHECK gets past the daemon to the prevResult step
    for container_id, ifname in (("c1", "eth0"), ("c2", "eth1")):
        exc = error(
            executor,
            "CHECK",
            netconf(sock, prevResult=prev("192.0.2.1/32")),
            container_id=container_id,
            ifname=ifname,
        )
        assert "is not in prevResult" in str(exc)


@pytest.mark.usefixtures("daemon")
def test_gc_without_valid_attachments_is_code_7(
    executor: InProcessExecutor, sock: Path, server: FakeServer
) -> None:
    add(executor, netconf(sock))
    exc = error(executor, "GC", netconf(sock))
    assert exc.code == ErrorCode.INVALID_NETWORK_CONFIG
    assert "cni.dev/valid-attachments" in str(exc)
    malformed = netconf(sock, valid=[["c1", "eth0"]])
    assert error(executor, "GC", malformed).code == ErrorCode.INVALID_NETWORK_CONFIG
    assert MessageType.RELEASE not in server.kinds()


# ------------------------------------------------------------ a daemon with Go's methods


@contextlib.contextmanager
def _rpc_server(sock: Path, handler: Any, methods: Any = METHODS) -> Iterator[None]:
    """``serve_rpc(sock, handler)`` on a loop of its own thread, while the block runs."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: list[asyncio.Event] = []

    async def serve() -> None:
        stop.append(asyncio.Event())
        rpc = await serve_rpc(sock, handler, methods=methods)
        ready.set()
        await stop[0].wait()
        rpc.close()
        await rpc.wait_closed()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(5), "the server did not start"
        yield
    finally:
        loop.call_soon_threadsafe(lambda: stop[0].set())
        thread.join(5)
        loop.close()


@pytest.fixture
def go_like_daemon(server: FakeServer, sock: Path) -> Iterator[None]:
    """cnilib's daemon answering only Go's two methods (as Go's daemon does)."""
    lease_daemon = LeaseDaemon(state_dir=None, timing=TIMING, open_socket=server.open_socket)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: list[asyncio.Event] = []

    async def serve() -> None:
        stop.append(asyncio.Event())
        rpc = await serve_rpc(sock, lease_daemon.handle, methods=DHCP_METHODS)
        ready.set()
        await stop[0].wait()
        rpc.close()
        await rpc.wait_closed()
        await lease_daemon.close(release=False)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(5), "the daemon did not start"
        yield
    finally:
        loop.call_soon_threadsafe(lambda: stop[0].set())
        thread.join(5)
        loop.close()


@pytest.mark.usefixtures("go_like_daemon")
def test_against_gos_methods_check_allocates_status_and_gc_pass(
    executor: InProcessExecutor, sock: Path, server: FakeServer
) -> None:
    # Go's CHECK: an Allocate (acquiring the lease if there is none), nothing else checked.
    assert run(executor, "CHECK", netconf(sock, prevResult=prev("192.0.2.77/24"))) == b""
    assert server.kinds() == [MessageType.DISCOVER, MessageType.REQUEST]
    assert run(executor, "STATUS", netconf(sock)) == b""
    gc = netconf(sock, valid=[])
    assert run(executor, "GC", gc) == b""  # Go's daemon cannot collect: nothing done
    assert MessageType.RELEASE not in server.kinds()
    assert run(executor, "DEL", netconf(sock)) == b""
    assert server.kinds()[-1] is MessageType.RELEASE
