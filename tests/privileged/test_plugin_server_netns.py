"""The plugin executables through the plugin server against the same executables run
alone (no server): same stdout, exit status, stderr and kernel state, in a node namespace.

Every executable runs under ``ip netns exec <node>``: the client hands the server that
namespace (an fd), where the plugin then does its host-side work. The servers listen on
sockets in tmp directories and are stopped by the fixtures; every namespace is deleted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from cnilib.plugins._main import install
from cnilib.plugins.server import PluginServer, _client
from cnilib.testing import NetNS, create_netns
from tests.privileged._kernel import ip_json

TYPES = ["bridge", "ptp", "host-local"]
SUBNET = "192.168.237.0/24"
CONTAINER_ID = "srv-ctr-1"


@pytest.fixture(scope="module")
def socket_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("run") / "plugins.sock"


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory, socket_path: Path) -> Path:
    target = tmp_path_factory.mktemp("bin")
    install(target, TYPES, server_socket=socket_path)
    return target


@pytest.fixture
def server(socket_path: Path) -> Iterator[PluginServer]:
    with PluginServer(socket_path, read_timeout=2.0) as running:
        yield running
    assert not socket_path.exists()


@pytest.fixture
def namespaces() -> Iterator[Callable[[str], NetNS]]:
    """A factory of namespaces, all deleted afterwards."""
    with ExitStack() as stack:

        def make(role: str) -> NetNS:
            ns = create_netns(f"cnilib-srv-{role}")
            stack.callback(ns.delete)
            return ns

        yield make


class World:
    """A node and a container namespace, and host-local's store for them."""

    def __init__(self, make: Callable[[str], NetNS], tmp: Path, bin_dir: Path) -> None:
        self.node, self.ctr = make("node"), make("ctr")
        self.store = tmp
        self.bin_dir = bin_dir

    def config(self, plugin: str, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
        ipam = {"type": "host-local", "dataDir": str(self.store), "ranges": [[{"subnet": SUBNET}]]}
        conf: dict[str, Any] = {
            "cniVersion": version,
            "name": "srvnet",
            "type": plugin,
            "ipam": ipam,
        }
        if plugin == "bridge":
            conf.update(bridge="cni-srv0", isGateway=True)
        return {**conf, **extra}

    def call(
        self, command: str, conf: dict[str, Any] | bytes, *, server: str
    ) -> subprocess.CompletedProcess[bytes]:
        """Exec the plugin as a runtime does, in the node; ``server``: the socket ("": none)."""
        stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        plugin = conf["type"] if isinstance(conf, dict) else "bridge"
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": CONTAINER_ID,
            "CNI_NETNS": self.ctr.path,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(self.bin_dir),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNILIB_PLUGIN_SERVER": server,
        }
        return subprocess.run(
            [*self.node.exec_prefix, str(self.bin_dir / plugin)],
            input=stdin,
            env=env,
            capture_output=True,
            check=False,
            timeout=60,
        )

    def state(self) -> dict[str, Any]:
        """Links, addresses and routes of both namespaces, and the store, without what is
        random (MACs, veth names, the link-local addresses made from the MACs)."""

        def tidy(value: str) -> str:
            return re.sub(r"^veth[0-9a-f]+$", "<veth>", value)

        out: dict[str, Any] = {}
        for role, ns in (("node", self.node), ("ctr", self.ctr)):
            out[f"{role} links"] = sorted(
                (
                    tidy(link["ifname"]),
                    link.get("mtu"),
                    tuple(f for f in link["flags"] if "CARRIER" not in f and f != "LOWER_UP"),
                )
                for link in ip_json(ns, "link")
            )
            out[f"{role} addrs"] = sorted(
                (tidy(link["ifname"]), a["local"], a["prefixlen"])
                for link in ip_json(ns, "addr")
                for a in link.get("addr_info", [])
                if a.get("scope") != "link" or a["family"] == "inet"
            )
            out[f"{role} routes"] = sorted(
                (r.get("dst"), r.get("gateway"), tidy(r.get("dev", "")))
                for r in ip_json(ns, "-4", "route", "show", "table", "all")
            )
        out["store"] = sorted(
            (p.name, p.read_text())
            for p in self.store.rglob("*")
            if p.is_file() and p.name != "lock"
        )
        return out


def normalized(stdout: bytes, world: World) -> Any:
    result = json.loads(stdout)
    for iface in result.get("interfaces", []):
        iface["mac"] = "<mac>"
        iface["name"] = re.sub(r"^veth[0-9a-f]+$", "<veth>", iface["name"])
        if iface.get("sandbox") == world.ctr.path:
            iface["sandbox"] = "<ctr>"
    return result


def outcome(done: subprocess.CompletedProcess[bytes]) -> tuple[int, bytes, bytes]:
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("plugin", ["bridge", "ptp"])
def test_add_check_del_as_the_executable_alone(
    plugin: str,
    server: PluginServer,
    socket_path: Path,
    bin_dir: Path,
    namespaces: Callable[[str], NetNS],
    tmp_path: Path,
) -> None:
    served = World(namespaces, tmp_path / "served", bin_dir)
    alone = World(namespaces, tmp_path / "alone", bin_dir)
    seen: dict[str, list[Any]] = {}
    for world, sock in ((served, str(socket_path)), (alone, "")):
        conf = world.config(plugin)
        add = world.call("ADD", conf, server=sock)
        assert add.returncode == 0, add.stdout
        after_add = world.state()
        check = world.call("CHECK", {**conf, "prevResult": json.loads(add.stdout)}, server=sock)
        delete = world.call("DEL", conf, server=sock)
        seen[sock or "alone"] = [
            (add.returncode, normalized(add.stdout, world), add.stderr),
            after_add,
            outcome(check),
            outcome(delete),
            world.state(),
        ]
    assert seen[str(socket_path)] == seen["alone"]
    assert seen["alone"][2] == (0, b"", b"")
    assert server.served == 3  # the server answered the served side, and only it


def test_errors_are_the_executables(
    server: PluginServer,
    socket_path: Path,
    bin_dir: Path,
    namespaces: Callable[[str], NetNS],
    tmp_path: Path,
) -> None:
    world = World(namespaces, tmp_path, bin_dir)
    cases: dict[int, dict[str, Any] | bytes] = {
        7: world.config("bridge", name=""),  # missing network name
        1: world.config("bridge", version="0.0.9"),  # a version the plugin lacks
        6: b"{not json",
    }
    for code, conf in cases.items():
        for command in ("ADD", "DEL"):
            through = world.call(command, conf, server=str(socket_path))
            alone = world.call(command, conf, server="")
            assert outcome(through) == outcome(alone)
            assert through.returncode == 1
            assert json.loads(through.stdout)["code"] == code
    assert server.served == 6


def test_without_a_server_the_executable_runs_the_plugin(
    socket_path: Path, bin_dir: Path, namespaces: Callable[[str], NetNS], tmp_path: Path
) -> None:
    assert not socket_path.exists()
    world = World(namespaces, tmp_path, bin_dir)
    conf = world.config("ptp")
    add = world.call("ADD", conf, server=str(socket_path))
    assert add.returncode == 0, add.stdout
    assert json.loads(add.stdout)["ips"][0]["address"].startswith("192.168.237.")
    assert world.call("DEL", conf, server=str(socket_path)).returncode == 0


def raw_call(socket_path: Path, frame: bytes, netns: str) -> Any:
    """Connect and send ``frame`` with ``netns``'s fd, then return the connection."""
    import socket

    conn = socket.socket(socket.AF_UNIX)
    conn.connect(str(socket_path))
    fd = os.open(netns, os.O_RDONLY)
    try:
        conn.sendmsg(
            [frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))]
        )
    finally:
        os.close(fd)
    return conn


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_serving_goes_on_after_crashed_clients_and_garbage(
    server: PluginServer,
    socket_path: Path,
    bin_dir: Path,
    namespaces: Callable[[str], NetNS],
    tmp_path: Path,
) -> None:
    world = World(namespaces, tmp_path, bin_dir)
    conf = world.config("bridge")
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": CONTAINER_ID,
        "CNI_NETNS": world.ctr.path,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(bin_dir),
    }
    pairs = [f"{k}={v}".encode() for k, v in env.items()]
    frame = _client.encode_request(b"bridge", pairs, json.dumps(conf).encode())
    # A client that sent its ADD and died before the answer: the ADD still happens.
    raw_call(socket_path, frame, world.node.path).close()
    wait_until(
        lambda: (
            server.served == 1
            and any(link["ifname"] == "eth0" for link in ip_json(world.ctr, "link"))
        ),
        "the ADD",
    )
    # Garbage, and a frame cut short.
    for junk in (b"\x00" * 64, frame[:40]):
        conn = raw_call(socket_path, junk, world.node.path)
        conn.close()
    # A real client killed at once, wherever it was.
    with subprocess.Popen(
        [*world.node.exec_prefix, str(bin_dir / "bridge")],
        stdin=subprocess.PIPE,
        env={**env, "CNI_COMMAND": "VERSION", "CNILIB_PLUGIN_SERVER": str(socket_path)},
    ) as proc:
        proc.send_signal(signal.SIGKILL)
    delete = world.call("DEL", conf, server=str(socket_path))
    assert outcome(delete) == (0, b"", b"")
    assert not any(link["ifname"] == "eth0" for link in ip_json(world.ctr, "link"))
    assert server.running


NOBODY = 65534

_PEER = """
import _socket, posix, sys
s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
s.connect(sys.argv[1])
fd = posix.open("/proc/self/ns/net", posix.O_RDONLY)
s.sendmsg([bytes.fromhex(sys.argv[2])], [(1, 1, fd.to_bytes(4, sys.byteorder))])
data = b""
while chunk := s.recv(4096):
    data += chunk
print(data[5], data[12:].decode())
"""


AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A tmp directory another user can reach (pytest's are root's only)."""
    path = Path(tempfile.mkdtemp(prefix="cnilib-srv-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


def test_another_users_call_is_refused(open_dir: Path, namespaces: Callable[[str], NetNS]) -> None:
    node = namespaces("node")
    frame = _client.encode_request(b"bridge", [b"CNI_COMMAND=VERSION"], b"")
    with PluginServer(open_dir / "s.sock") as server:
        (open_dir / "s.sock").chmod(0o666)  # so that the kernel lets the peer reach the server
        done = subprocess.run(
            [
                *node.exec_prefix,
                *AS_NOBODY,
                "/usr/bin/python3",
                "-IS",
                "-c",
                _PEER,
                str(open_dir / "s.sock"),
                frame.hex(),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert done.stdout.split(" ", 1)[0] == str(_client.REFUSED)
        assert f"not uid {NOBODY}" in done.stdout
        assert (server.served, server.refused) == (0, 1)


_FAKE = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen()
print("ready", flush=True)
c, _ = s.accept()
c.settimeout(5)
print(len(c.recv(4096)), flush=True)
"""


def test_a_server_of_another_user_is_not_spoken_to(
    open_dir: Path, bin_dir: Path, namespaces: Callable[[str], NetNS]
) -> None:
    node = namespaces("node")
    with subprocess.Popen(
        [*AS_NOBODY, "/usr/bin/python3", "-I", "-c", _FAKE, str(open_dir / "s.sock")],
        stdout=subprocess.PIPE,
        text=True,
    ) as fake:
        try:
            assert fake.stdout is not None
            assert fake.stdout.readline() == "ready\n"
            done = subprocess.run(
                [*node.exec_prefix, str(bin_dir / "bridge")],
                input=b'{"cniVersion": "0.4.0"}',
                env={"CNI_COMMAND": "VERSION", "CNILIB_PLUGIN_SERVER": str(open_dir / "s.sock")},
                capture_output=True,
                check=True,
                timeout=60,
            )
            assert done.stdout.startswith(b'{"cniVersion": "0.4.0"')  # answered here
            assert fake.stdout.readline() == "0\n"  # the fake server got nothing
        finally:
            fake.kill()


# -- a server started by the executables (install --start-server) --------------------------


def servers_on(sock: Path) -> list[int]:
    """The live processes serving (or starting to serve) ``sock``: ``serve`` command lines
    naming this test's own socket path, so nothing else is ever touched."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"serve" in argv and str(sock).encode() in argv and state != "Z":
            found.append(int(entry.name))
    return found


def peer_pid(sock: Path) -> int:
    """The pid of the server listening on ``sock`` (its peer credentials)."""
    import socket
    import struct

    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(sock))
        cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", cred)[0])


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Path]:
    """A socket path for servers the executables start; every one of them is stopped."""
    sock = tmp_path / "run" / "plugins.sock"
    try:
        yield sock
    finally:
        for pid in servers_on(sock):
            os.kill(pid, signal.SIGKILL)


def test_an_executable_starts_a_server_and_later_calls_use_it(
    started: Path, namespaces: Callable[[str], NetNS], tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    install(bin_dir, TYPES, server_socket=started, start_server=True, idle_exit=30)
    world = World(namespaces, tmp_path / "store", bin_dir)
    conf = world.config("bridge")
    assert servers_on(started) == []
    add = world.call("ADD", conf, server=str(started))  # finds none: starts one, runs here
    assert add.returncode == 0, add.stdout
    wait_until(started.exists, "the started server's socket")
    from cnilib.plugins.server import wait_for_server

    wait_for_server(started, timeout=30)
    pid = peer_pid(started)
    assert servers_on(started) == [pid]
    assert not Path(f"{started}.starting").exists()
    check = subprocess.run(
        [
            *world.node.exec_prefix,
            sys.executable,
            "-IS",
            "-X",
            "importtime",
            str(bin_dir / "bridge"),
        ],
        input=json.dumps({**conf, "prevResult": json.loads(add.stdout)}).encode(),
        env={
            "CNI_COMMAND": "CHECK",
            "CNI_CONTAINERID": CONTAINER_ID,
            "CNI_NETNS": world.ctr.path,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(bin_dir),
        },
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert (check.returncode, check.stdout) == (0, b"")
    imported = {line.rsplit("|", 1)[-1].strip() for line in check.stderr.decode().splitlines()}
    assert "cnilib" not in imported  # answered by the server, not run here
    assert world.call("DEL", conf, server=str(started)).returncode == 0
    assert servers_on(started) == [pid]  # no second one
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: servers_on(started) == [], "the started server to stop")
    assert not started.exists()


def test_executables_starting_at_once_leave_one_server(
    started: Path, namespaces: Callable[[str], NetNS], tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    install(bin_dir, ["bridge"], server_socket=started, start_server=True, idle_exit=30)
    node = namespaces("node")
    calls = [
        subprocess.Popen(
            [*node.exec_prefix, str(bin_dir / "bridge")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"CNI_COMMAND": "VERSION"},
        )
        for _ in range(4)
    ]
    for call in calls:
        out, err = call.communicate(b'{"cniVersion": "1.0.0"}', timeout=60)
        assert (call.returncode, err) == (0, b"")
        assert json.loads(out)["cniVersion"] == "1.0.0"
    wait_until(started.exists, "the started server's socket")
    pid = peer_pid(started)
    wait_until(lambda: servers_on(started) == [pid], "a single server")
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: servers_on(started) == [], "the started server to stop")


def test_servers_started_at_once_one_serves_the_others_exit_quietly(
    started: Path, namespaces: Callable[[str], NetNS]
) -> None:
    node = namespaces("node")
    started.parent.mkdir(mode=0o700)
    Path(f"{started}.starting").touch()
    serve = [
        *node.exec_prefix, sys.executable, "-m", "cnilib.plugins",
        "serve", "--socket", str(started), "--on-demand",
    ]  # fmt: skip
    procs = [
        subprocess.Popen(serve, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)
    ]
    try:
        wait_until(lambda: sum(p.poll() is None for p in procs) == 1, "the losers to exit")
        for proc in procs:
            if proc.poll() is not None:
                assert (proc.returncode, *proc.communicate()) == (0, b"", b"")
        assert len(servers_on(started)) == 1
        assert not Path(f"{started}.starting").exists()
    finally:
        for proc in procs:
            proc.terminate()
            proc.communicate(timeout=30)
    assert not started.exists()
