"""A world for the dhcp IPAM plugin and its lease daemon: a real DHCP server on a bridge.

::

    server ns: eth0 192.0.2.1/24, dnsmasq ──┐
    ctr ns:    eth0 (DHCP client) ──────────┼── br0 (node ns, plays the host)
    ctr ns:    eth0 ...             ────────┘

:class:`DhcpWorld` owns the node namespace (bridge ``br0``), the server
namespace running Debian's ``dnsmasq`` (``--no-ping``, short T1/T2, lease,
pid and log files under the world's directory) and the container namespaces
:meth:`DhcpWorld.add_container` makes (``eth0`` a veth into ``br0``).
:class:`Daemon` runs a lease daemon (Go's ``/usr/lib/cni/dhcp daemon`` or
cnilib's ``python -m cnilib.plugins dhcp daemon``) with ``ip netns exec
<node>`` in front, its output in a file. Only 192.0.2.0/24 (TEST-NET-1) is
used, and only inside the namespaces. Processes are stopped by pid and every
namespace is deleted, also when a test fails.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cnilib.testing import NetNS, create_netns
from tests.privileged._kernel import GO_PLUGINS, JSON, ip_json

__all__ = [
    "BRIDGE",
    "DNS_SERVER",
    "GO_DHCP",
    "NAK_RANGE",
    "NETWORK",
    "RANGE",
    "ROUTER",
    "SERVER_IP",
    "Container",
    "Daemon",
    "DhcpWorld",
    "Dnsmasq",
    "Lease",
    "bridge_entry",
    "client_id_hex",
    "dnsmasq_missing",
    "go_daemon_argv",
    "holds",
    "in_range",
    "py_daemon_argv",
    "wait_for",
]

T = TypeVar("T")

NETWORK = "dhcpnet"
"""The network name in the plugin configurations (part of the client ID)."""
BRIDGE = "br0"
SERVER_IP = "192.0.2.1"
ROUTER = "192.0.2.1"
DNS_SERVER = "192.0.2.53"
RANGE = ("192.0.2.10", "192.0.2.199")
"""dnsmasq's usual address range (the world is shared by a module: room for every test)."""
NAK_RANGE = ("192.0.2.200", "192.0.2.250")
"""The range of :meth:`DhcpWorld.nak_restart`: no address a client held before is in it."""
GO_DHCP = GO_PLUGINS / "dhcp"

MISSING_DNSMASQ = "dnsmasq (Debian's dnsmasq-base) is not installed"
"""The skip reason when there is no DHCP server (listed as required in conftest.py)."""


def dnsmasq_binary() -> str | None:
    """dnsmasq's path (Debian puts it in /usr/sbin, which a user's PATH may lack)."""
    return shutil.which("dnsmasq") or (
        "/usr/sbin/dnsmasq" if os.access("/usr/sbin/dnsmasq", os.X_OK) else None
    )


def dnsmasq_missing() -> str | None:
    """The skip reason when dnsmasq cannot run here, else None."""
    return None if dnsmasq_binary() else MISSING_DNSMASQ


# ------------------------------------------------------------------------------ waiting


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 15.0,
    *,
    interval: float = 0.05,
    what: str = "",
) -> T:
    """Poll *predicate* until it returns something truthy, and return that; fail (naming
    *what*) after *timeout* seconds. A bound, never an assertion on time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"still waiting after {timeout:g} s for {what or predicate}")
        time.sleep(interval)


def holds(predicate: Callable[[], object], duration: float, *, interval: float = 0.1) -> bool:
    """Whether *predicate* stays truthy for *duration* seconds (checked every *interval*):
    how a test says "this does not happen" within a bounded wait."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(interval)
    return bool(predicate())


# ------------------------------------------------------------------------------- leases


@dataclass(frozen=True)
class Lease:
    """One line of dnsmasq's lease file."""

    expiry: int
    """Epoch seconds; every renewal rewrites it."""
    mac: str
    ip: str
    hostname: str | None
    """The name the client provided (option 12), None for ``*``."""
    client_id: str | None
    """Option 61 as colon-separated hex, None for ``*``."""


def client_id_hex(container_id: str, network: str = NETWORK, ifname: str = "eth0") -> str:
    """The client ID Go's daemon sends (``0x00`` + ``<container>/<network>/<ifname>``), as
    dnsmasq writes it in its lease file."""
    return ":".join(f"{b:02x}" for b in b"\0" + f"{container_id}/{network}/{ifname}".encode())


def in_range(ip: str, bounds: tuple[str, str]) -> bool:
    """Whether *ip* is in the dnsmasq range *bounds* (last octets compared: one /24)."""
    last = int(ip.split(".")[-1])
    return int(bounds[0].split(".")[-1]) <= last <= int(bounds[1].split(".")[-1])


# ------------------------------------------------------------------------------ dnsmasq


def _default_opts() -> dict[str, Any]:
    return {
        "t1": 2,
        "t2": 4,
        "options": (),
        "dhcp_range": RANGE,
        "authoritative": False,
        "lease_time": "2m",
    }


@dataclass
class Dnsmasq:
    """dnsmasq serving DHCP on ``eth0`` of the server namespace *ns*, its files in *dir*."""

    ns: NetNS
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    opts: dict[str, Any] = field(default_factory=_default_opts)
    """The options it runs (or last ran) with: :meth:`start`'s keywords."""

    @property
    def lease_file(self) -> Path:
        return self.dir / "dnsmasq.leases"

    @property
    def log_file(self) -> Path:
        return self.dir / "dnsmasq.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def argv(self, opts: dict[str, Any]) -> list[str]:
        """The command line for *opts* (see :meth:`start`)."""
        binary = dnsmasq_binary()
        assert binary is not None
        low, high = opts["dhcp_range"]
        argv = [
            binary, "--conf-file=/dev/null", "--keep-in-foreground", "--port=0",
            "--bind-interfaces", "--interface=eth0", "--except-interface=lo", "--no-ping",
            f"--dhcp-range={low},{high},255.255.255.0,{opts['lease_time']}",
            f"--dhcp-leasefile={self.lease_file}", f"--pid-file={self.dir / 'dnsmasq.pid'}",
            f"--dhcp-option=option:router,{ROUTER}",
            f"--dhcp-option=option:dns-server,{DNS_SERVER}",
            "--log-dhcp", f"--log-facility={self.log_file}",
        ]  # fmt: skip
        if opts["t1"] is not None:
            argv.append(f"--dhcp-option=option:T1,{opts['t1']}")
        if opts["t2"] is not None:
            argv.append(f"--dhcp-option=option:T2,{opts['t2']}")
        argv += [f"--dhcp-option={o}" for o in opts["options"]]
        if opts["authoritative"]:
            argv.append("--dhcp-authoritative")
        return argv

    def start(self, **changes: Any) -> None:
        """Start dnsmasq with the last options updated by *changes*: ``t1``/``t2`` (seconds,
        None to send none), ``options`` (extra ``--dhcp-option`` values, e.g.
        ``"121,198.51.100.0/24,192.0.2.254"``), ``dhcp_range`` (low, high),
        ``authoritative``, ``lease_time``. Returns once it listens on port 67."""
        assert not self.running, "dnsmasq is running"
        unknown = set(changes) - set(_default_opts())
        assert not unknown, f"unknown dnsmasq options {unknown}"
        self.opts = {**self.opts, **changes}
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "dnsmasq.stderr").open("ab") as err:
            self.proc = subprocess.Popen(
                [*self.ns.exec_prefix, *self.argv(self.opts)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        proc = self.proc

        def listening() -> bool:
            if proc.poll() is not None:
                text = (self.dir / "dnsmasq.stderr").read_text(errors="replace")
                raise AssertionError(f"dnsmasq exited with {proc.returncode}: {text}")
            # `ip netns exec` execs dnsmasq: its /proc/<pid>/net is the server namespace's.
            with contextlib.suppress(OSError):
                return any(
                    line.split()[1].endswith(":0043")  # port 67
                    for line in Path(f"/proc/{proc.pid}/net/udp").read_text().splitlines()[1:]
                )
            return False

        wait_for(listening, 10.0, interval=0.01, what="dnsmasq to listen on port 67")

    def stop(self) -> None:
        """Stop dnsmasq (SIGTERM by pid, SIGKILL after a bound); a no-op when not running."""
        if self.proc is not None:
            _terminate(self.proc)
            self.proc = None

    def restart(self, **changes: Any) -> None:
        """:meth:`stop`, then :meth:`start` with *changes*; the lease file is kept."""
        self.stop()
        self.start(**changes)

    def ensure(self, **opts: Any) -> None:
        """Running with exactly the defaults updated by *opts* (restarted only if not)."""
        wanted = {**_default_opts(), **opts}
        if not self.running or wanted != self.opts:
            self.stop()
            self.opts = wanted
            self.start()

    def leases(self) -> list[Lease]:
        """The lease file's lines, parsed (none before dnsmasq wrote it)."""
        try:
            text = self.lease_file.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 5 or parts[0] == "duid":
                continue
            expiry, mac, ip, name, cid = parts[:5]
            hostname = None if name == "*" else name
            out.append(Lease(int(expiry), mac, ip, hostname, None if cid == "*" else cid))
        return out

    def log_text(self) -> str:
        """dnsmasq's log (``--log-dhcp``) so far; empty before it wrote any."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _terminate(proc: subprocess.Popen[bytes], bound: float = 5.0) -> None:
    """SIGTERM *proc* (by pid), SIGKILL it if it is still there after *bound* seconds; reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(bound)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(bound)


# ------------------------------------------------------------------------------- daemon


def go_daemon_argv(socket_path: Path, *, timeout: str = "2s", resendmax: str = "4s") -> list[str]:
    """Go's lease daemon (Debian 1.1.1): short per-attempt timeout and backoff."""
    return [str(GO_DHCP), "daemon", "-socketpath", str(socket_path),
            "-timeout", timeout, "-resendmax", resendmax]  # fmt: skip


def py_daemon_argv(
    socket_path: Path, state_dir: Path, *, timeout: str = "2s", resendmax: str = "4s"
) -> list[str]:
    """cnilib's lease daemon: Go's flags plus ``-statedir``."""
    return [sys.executable, "-m", "cnilib.plugins", "dhcp", "daemon",
            "-socketpath", str(socket_path), "-statedir", str(state_dir),
            "-timeout", timeout, "-resendmax", resendmax]  # fmt: skip


@dataclass
class Daemon:
    """A lease daemon run as ``ip netns exec <node> <argv>``; stdout and stderr go to
    :attr:`log_file` (kept over restarts)."""

    node: NetNS
    argv: list[str]
    socket_path: Path
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start it and return once its socket accepts a connection."""
        assert not self.running, "the daemon is running"
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.node.exec_prefix, *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        proc = self.proc

        def accepts() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the daemon exited with {proc.returncode}: {self.log_text()}")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                try:
                    s.connect(str(self.socket_path))
                except OSError:
                    return False
            return True

        wait_for(accepts, timeout, interval=0.01, what=f"the daemon's socket {self.socket_path}")

    def stop(self) -> None:
        """SIGTERM (SIGKILL after a bound) by pid, then remove the socket file (Go 1.1.1
        leaves it, and refuses to start while it exists)."""
        if self.proc is not None:
            _terminate(self.proc)
            self.proc = None
        self.socket_path.unlink(missing_ok=True)

    def restart(self) -> None:
        """:meth:`stop`, then :meth:`start`."""
        self.stop()
        self.start()

    def log_text(self) -> str:
        """What it wrote so far (over every start)."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""


# -------------------------------------------------------------------------------- world


@dataclass(frozen=True)
class Container:
    """A container namespace whose ``eth0`` (when attached) is a veth into ``br0``."""

    id: str
    """The CNI container ID tests use for it (part of the client ID)."""
    ns: NetNS
    host_veth: str
    """Its veth's name in the node ("" when not attached)."""

    @property
    def path(self) -> str:
        return self.ns.path

    def mac(self, ifname: str = "eth0") -> str:
        """*ifname*'s MAC."""
        return str(ip_json(self.ns, "link", "show", ifname)[0]["address"])

    def addresses(self, ifname: str = "eth0") -> set[str]:
        """*ifname*'s global IPv4 ``addr/prefix`` strings."""
        return {
            f"{a['local']}/{a['prefixlen']}"
            for link in ip_json(self.ns, "-4", "addr", "show", "dev", ifname)
            for a in link.get("addr_info", [])
            if a.get("scope") == "global"
        }

    def client_id(self, network: str = NETWORK, ifname: str = "eth0") -> str:
        """The client ID (lease file hex) of this container's attachment."""
        return client_id_hex(self.id, network, ifname)


@dataclass
class DhcpWorld:
    """Node (``br0``), server (dnsmasq) and container namespaces under *dir*."""

    node: NetNS
    server: NetNS
    dir: Path
    dnsmasq: Dnsmasq
    containers: list[Container] = field(default_factory=list)
    _count: Iterator[int] = field(default_factory=itertools.count)

    @classmethod
    @contextlib.contextmanager
    def create(cls, directory: Path, **dnsmasq_opts: Any) -> Iterator[DhcpWorld]:
        """Build the namespaces and start dnsmasq (*dnsmasq_opts* as :meth:`Dnsmasq.start`);
        afterwards stop it and delete every namespace, also on failure."""
        made: list[NetNS] = []
        world: DhcpWorld | None = None
        try:
            node = create_netns("cnilib-dhcp-node")
            made.append(node)
            server = create_netns("cnilib-dhcp-srv")
            made.append(server)
            node.exec("ip", "link", "add", BRIDGE, "type", "bridge")
            node.exec("ip", "link", "set", BRIDGE, "up")
            node.exec("ip", "link", "add", "srv0", "type", "veth",
                      "peer", "name", "eth0", "netns", server.name)  # fmt: skip
            node.exec("ip", "link", "set", "srv0", "master", BRIDGE, "up")
            server.exec("ip", "addr", "add", f"{SERVER_IP}/24", "dev", "eth0")
            server.exec("ip", "link", "set", "eth0", "up")
            world = cls(node, server, directory, Dnsmasq(server, directory / "dnsmasq"))
            world.dnsmasq.start(**dnsmasq_opts)
            yield world
        finally:
            errors: list[BaseException] = []
            if world is not None:
                world.dnsmasq.stop()
                try:
                    world.remove_containers()
                except Exception as exc:  # still delete the node and server
                    errors.append(exc)
            for ns in reversed(made):
                try:
                    ns.delete()
                except Exception as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]

    # ------------------------------------------------------------------ containers

    def add_container(self, name: str = "", *, attach: bool = True) -> Container:
        """A new container namespace, its container ID *name* (default a random one); with
        *attach*, ``eth0`` in it is a veth into ``br0`` (the simplest attachment: the
        address is not configured on it), else it is empty (for the bridge plugin)."""
        ns = create_netns("cnilib-dhcp-ctr")
        host = ""
        try:
            if attach:
                host = f"vc{next(self._count)}"
                self.node.exec("ip", "link", "add", host, "type", "veth",
                               "peer", "name", "eth0", "netns", ns.name)  # fmt: skip
                self.node.exec("ip", "link", "set", host, "master", BRIDGE, "up")
                ns.exec("ip", "link", "set", "eth0", "up")
        except BaseException:
            ns.delete()
            raise
        ctr = Container(name or f"ctr-{secrets.token_hex(4)}", ns, host)
        self.containers.append(ctr)
        return ctr

    def add_uplink(self, name: str = "up0") -> str:
        """A veth *name* in the node whose peer (``<name>p``) is a port of ``br0``: a
        parent for macvlan links (a bridge port itself cannot be one). Returns *name*."""
        self.node.exec("ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
        self.node.exec("ip", "link", "set", f"{name}p", "master", BRIDGE, "up")
        self.node.exec("ip", "link", "set", name, "up")
        return name

    def remove_containers(self) -> None:
        """Delete every container namespace (and its veth with it)."""
        errors: list[Exception] = []
        while self.containers:
            ctr = self.containers.pop()
            try:
                ctr.ns.delete()
                if ctr.host_veth:  # gone with its peer, unless a process still holds the netns
                    self.node.exec("ip", "link", "del", ctr.host_veth, check=False)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    # ------------------------------------------------------------------ the server

    def start_dnsmasq(self, **opts: Any) -> None:
        """Start the (stopped) server; *opts* as :meth:`Dnsmasq.start`."""
        self.dnsmasq.start(**opts)

    def stop_dnsmasq(self) -> None:
        """Stop the server (its lease file stays)."""
        self.dnsmasq.stop()

    def restart_dnsmasq(self, **opts: Any) -> None:
        """Restart the server, the lease file kept; *opts* as :meth:`Dnsmasq.start`."""
        self.dnsmasq.restart(**opts)

    def nak_restart(self) -> None:
        """Restart the server authoritative, serving :data:`NAK_RANGE` with an emptied lease
        file: it NAKs the next renewal of any lease given out before."""
        self.dnsmasq.stop()
        self.dnsmasq.lease_file.write_text("")
        self.dnsmasq.start(authoritative=True, dhcp_range=NAK_RANGE)

    def leases(self) -> list[Lease]:
        """The server's lease file, parsed."""
        return self.dnsmasq.leases()

    def lease(self, client_id: str) -> Lease | None:
        """The server's lease for *client_id* (hex), if any."""
        return next((le for le in self.leases() if le.client_id == client_id), None)

    def log_text(self, since: int = 0) -> str:
        """The server's log so far, from offset *since* (a :meth:`log_mark`) on."""
        return self.dnsmasq.log_text()[since:]

    def log_mark(self) -> int:
        """Where the server's log ends now: what a test logs comes after it (the log
        spans the whole module, so an earlier test's lines must not count)."""
        return len(self.dnsmasq.log_text())

    # ------------------------------------------------------------------ daemons

    def daemon(self, argv: Sequence[str], socket_path: Path, log_file: Path) -> Daemon:
        """A lease daemon (not started) running *argv* in the node namespace."""
        return Daemon(self.node, list(argv), socket_path, log_file)


def bridge_entry(socket_path: Path, **ipam: Any) -> JSON:
    """A bridge plugin entry on the world's ``br0`` (no gateway, no masquerade) whose IPAM
    is dhcp through the daemon at *socket_path*: the attachment a runtime would make."""
    return {
        "type": "bridge",
        "bridge": BRIDGE,
        "ipam": {"type": "dhcp", "daemonSocketPath": str(socket_path), **ipam},
    }
