"""cnilib's dhcp lease daemon and plugin over a container's lifetime, against dnsmasq.

The daemon's own behaviour (``test_dhcp.py`` compares it with Go's): run in
the runtime's process (:class:`DaemonThread`, or a task in the runtime's
asyncio loop) under a macvlan attachment; no server; a container namespace
deleted under it (not pinned, the lease forgotten); SIGTERM (also during an
ADD), SIGKILL and a second daemon on a live socket; GC and STATUS through the
plugin.

Plugins run in process (``InProcessExecutor(host_netns=<node>)``); the
daemon runs in the test process or as ``python -m cnilib.plugins dhcp
daemon`` under ``ip netns exec <node>``. Either way it opens its DHCP sockets
inside the container's namespace through the netlink workers, so its own
namespace does not matter. dnsmasq is asked for T1 = 2 s and T2 = 4 s, so a
renewal is seen within seconds (dnsmasq 2.90 ignores T1 = 1 s, T2 = 2 s and
sends its defaults of half and 7/8 of the lease).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

import cnilib
from cnilib.invoke import Invocation
from cnilib.plugins._executor import InProcessExecutor
from cnilib.plugins._registry import load_plugin
from cnilib.plugins.ipam.dhcp._daemon import DaemonThread, LeaseDaemon
from cnilib.plugins.ipam.dhcp._lease import Timing
from cnilib.plugins.ipam.dhcp._state import LeaseRecords
from tests.privileged._dhcp_world import (
    NETWORK,
    RANGE,
    Container,
    Daemon,
    DhcpWorld,
    Lease,
    dnsmasq_missing,
    holds,
    in_range,
    py_daemon_argv,
    wait_for,
)
from tests.privileged._kernel import GO_PLUGINS, JSON
from tests.privileged._link_world import require_link_kind

T = TypeVar("T")

T1, T2 = 2, 4
"""dnsmasq's renewal and rebinding times (seconds): renewals come quickly."""
UPLINK = "up0"
"""The macvlan parent in the node: a veth whose peer is a port of ``br0``."""
TIMING = Timing(attempt_timeout=2.0, resend_max=4.0)
"""The in-process daemon's timing (the process daemon's ``-timeout 2s -resendmax 4s``)."""


# ------------------------------------------------------------------------------ world


@pytest.fixture(scope="module")
def world(cnilib_privileged: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DhcpWorld]:
    """The module's namespaces, dnsmasq and the macvlan uplink (all gone afterwards)."""
    if reason := dnsmasq_missing():
        pytest.skip(reason)
    try:
        load_plugin("dhcp")
    except cnilib.CNIError:
        pytest.skip("cnilib's dhcp plugin is not available")
    with DhcpWorld.create(tmp_path_factory.mktemp("dhcp-daemon"), t1=T1, t2=T2) as w:
        w.add_uplink(UPLINK)
        yield w


@dataclass
class Run:
    """One test's world, files and in-process plugin executor."""

    world: DhcpWorld
    tmp: Path
    executor: InProcessExecutor
    log_start: int = 0
    """Where the server's log stood when the test began: the log spans the module, and
    addresses come round again, so an earlier test's release must not count."""

    @property
    def socket_path(self) -> Path:
        return self.tmp / "dhcp.sock"

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    def records(self) -> set[str]:
        """The lease records in the state directory (file names)."""
        if not self.state_dir.is_dir():
            return set()
        return {p.name for p in self.state_dir.iterdir() if p.suffix == ".json"}

    def record_of(self, ctr: Container) -> str:
        """The record file name of *ctr*'s ``eth0`` lease."""
        return LeaseRecords(self.state_dir).path(f"{ctr.id}/{NETWORK}/eth0").name

    def daemon(self, *flags: str, name: str = "daemon") -> Daemon:
        """cnilib's daemon as a process in the node (not started); *flags* added."""
        argv = [*py_daemon_argv(self.socket_path, self.state_dir), *flags]
        return self.world.daemon(argv, self.socket_path, self.tmp / f"{name}.log")

    # -------------------------------------------------------------- the plugin

    def conf(self, version: str = "1.0.0", **extra: Any) -> JSON:
        """The dhcp IPAM network configuration for this run's daemon."""
        return {
            "cniVersion": version,
            "name": NETWORK,
            "ipam": {"type": "dhcp", "daemonSocketPath": str(self.socket_path)},
            **extra,
        }

    def ipam(
        self,
        command: str,
        ctr: Container | None = None,
        *,
        version: str = "1.0.0",
        extra: JSON | None = None,
        timeout: float = 30.0,
    ) -> JSON | None:
        """The dhcp plugin's *command* (in process) on *ctr*'s eth0, *extra* added to the
        configuration; its output as JSON."""
        out = self.executor.exec(
            Invocation(
                command=command,
                plugin_type="dhcp",
                stdin=json.dumps(self.conf(version, **(extra or {}))).encode(),
                container_id=ctr.id if ctr else "",
                netns=ctr.path if ctr else "",
                ifname="eth0" if ctr else "",
                path=(str(GO_PLUGINS),),
                timeout=timeout,
            )
        )
        return json.loads(out) if out.strip() else None

    def ipam_error(self, command: str, ctr: Container | None = None, **kw: Any) -> cnilib.CNIError:
        with pytest.raises(cnilib.CNIError) as info:
            self.ipam(command, ctr, **kw)
        return info.value

    def conflist(self, version: str = "1.0.0") -> cnilib.NetworkConfigList:
        """A macvlan attachment on :data:`UPLINK` whose IPAM is dhcp."""
        raw = {
            "cniVersion": version,
            "name": NETWORK,
            "plugins": [
                {
                    "type": "macvlan",
                    "master": UPLINK,
                    "mode": "bridge",
                    "ipam": {"type": "dhcp", "daemonSocketPath": str(self.socket_path)},
                }
            ],
        }
        return cnilib.conflist_from_bytes(json.dumps(raw).encode())

    def cni(self) -> cnilib.CNI:
        # CNI_PATH must not be empty; every plugin here runs in process all the same.
        return cnilib.CNI([str(GO_PLUGINS)], cache_dir=self.tmp / "cache", executor=self.executor)

    # -------------------------------------------------------------- the server

    def lease(self, ctr: Container) -> Lease | None:
        return self.world.lease(ctr.client_id())

    def wait_lease(self, ctr: Container) -> Lease:
        return wait_for(lambda: self.lease(ctr), 10.0, what=f"a lease for {ctr.id}")

    def wait_released(self, ctr: Container) -> None:
        wait_for(lambda: self.lease(ctr) is None, 10.0, what=f"{ctr.id}'s lease to go")

    def wait_renewed(self, ctr: Container, after: Lease) -> Lease:
        """The lease of *ctr* once its expiry moved past *after*'s."""

        def renewed() -> Lease | None:
            now = self.lease(ctr)
            return now if now is not None and now.expiry > after.expiry else None

        return wait_for(renewed, 10.0, what=f"a renewal of {ctr.id}'s lease")

    def released_on_server(self, ip: str) -> bool:
        """Whether dnsmasq logged a DHCPRELEASE of *ip*."""
        return f"DHCPRELEASE(eth0) {ip} " in self.world.log_text(since=self.log_start)


@pytest.fixture
def run(world: DhcpWorld, tmp_path: Path) -> Iterator[Run]:
    """dnsmasq back with its usual options; containers deleted afterwards."""
    world.dnsmasq.ensure(t1=T1, t2=T2)
    executor = InProcessExecutor(host_netns=world.node.path, timeout=30.0)
    try:
        yield Run(world, tmp_path, executor, world.log_mark())
    finally:
        executor.close()
        world.remove_containers()


@pytest.fixture
def macvlan_kernel(cnilib_privileged: None) -> None:
    require_link_kind("macvlan")


@pytest.fixture
def daemon(run: Run) -> Iterator[Daemon]:
    """cnilib's daemon process, started (``-pidfile`` in the run's directory)."""
    d = run.daemon("-pidfile", str(run.tmp / "dhcp.pid"))
    try:
        d.start()
        yield d
    finally:
        d.stop()


def leased_ip(result: JSON) -> str:
    return str(result["ips"][0]["address"]).split("/")[0]


def wait_log(daemon: Daemon, text: str, timeout: float = 10.0) -> str:
    """The daemon's log once it has *text*."""

    def logged() -> str | None:
        log = daemon.log_text()
        return log if text in log else None

    return wait_for(logged, timeout, what=f"the daemon to log {text!r}")


def packet_sockets(ctr: Container) -> list[str]:
    """The AF_PACKET sockets open in *ctr*'s namespace (``/proc/net/packet`` rows)."""
    return ctr.ns.exec("cat", "/proc/net/packet").stdout.splitlines()[1:]


# ----------------------------------------------------------------- 1. in process


@pytest.mark.usefixtures("macvlan_kernel")
def test_in_process_daemon_thread_macvlan_add_renew_del(run: Run) -> None:
    """A runtime running plugins in process runs the daemon on a thread of its own:
    macvlan + dhcp ADD leases an address, the daemon renews it, DEL releases it."""
    ctr = run.world.add_container(attach=False)
    conflist = run.conflist()
    rt = cnilib.RuntimeConf(ctr.id, ctr.path, "eth0")
    daemon = LeaseDaemon(state_dir=run.state_dir, timing=TIMING)
    with DaemonThread(daemon, run.socket_path), run.cni() as cni:
        result = cni.add_network_list(conflist, rt)
        assert result is not None
        address = str(json.loads(result.to_json())["ips"][0]["address"])
        ip = address.split("/")[0]
        assert in_range(ip, RANGE)
        assert {address} == ctr.addresses()
        lease = run.wait_lease(ctr)
        assert (ip, ctr.mac()) == (lease.ip, lease.mac)
        assert {run.record_of(ctr)} == run.records()
        assert ip == run.wait_renewed(ctr, lease).ip
        # macvlan DELs its IPAM before the link: the RELEASE still goes out.
        cni.delete_network_list(conflist, rt)
        run.wait_released(ctr)
        assert run.released_on_server(ip)
        assert set() == run.records()
        assert "eth0" not in ctr.ns.exec("ip", "-o", "link").stdout
    assert not run.socket_path.exists()  # leaving the thread removes the socket


async def _until(predicate: Callable[[], T | None], what: str, bound: float = 10.0) -> T:
    """:func:`wait_for` that lets the loop (and the daemon in it) run while it waits."""
    deadline = time.monotonic() + bound
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"still waiting after {bound:g} s for {what}")
        await asyncio.sleep(0.05)
    return value


@pytest.mark.asyncio
@pytest.mark.usefixtures("macvlan_kernel")
async def test_in_process_daemon_task_with_async_cni(run: Run) -> None:
    """The daemon as a task in the runtime's own asyncio loop, with AsyncCNI."""
    ctr = run.world.add_container(attach=False)
    conflist = run.conflist()
    rt = cnilib.RuntimeConf(ctr.id, ctr.path, "eth0")
    daemon = LeaseDaemon(state_dir=run.state_dir, timing=TIMING)
    ready = asyncio.Event()
    task = asyncio.create_task(daemon.serve(run.socket_path, ready=ready.set))
    cni = cnilib.AsyncCNI([str(GO_PLUGINS)], cache_dir=run.tmp / "cache", executor=run.executor)
    try:
        await asyncio.wait_for(ready.wait(), 10.0)
        result = await cni.add_network_list(conflist, rt)
        assert result is not None
        ip = leased_ip(json.loads(result.to_json()))
        lease = await _until(lambda: run.lease(ctr), "a lease")
        assert ip == lease.ip
        await _until(
            lambda: (now := run.lease(ctr)) is not None and now.expiry > lease.expiry, "a renewal"
        )
        await cni.delete_network_list(conflist, rt)
        await _until(lambda: run.lease(ctr) is None, "the release")
        assert run.released_on_server(ip)
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10.0)
        await cni.aclose()
    assert not run.socket_path.exists()


# -------------------------------------------------------------------- 2. no server


def test_no_server_add_fails_within_the_budget_and_leaves_nothing(run: Run) -> None:
    """Without a server ADD fails once the daemon's budget (``-resendtimeout``) is spent,
    naming the interface and namespace, and the daemon keeps nothing of it."""
    d = run.daemon("-timeout", "1s", "-resendtimeout", "3s")
    d.start()
    try:
        run.world.stop_dnsmasq()
        ctr = run.world.add_container()
        assert [] == packet_sockets(ctr)
        with ThreadPoolExecutor(1) as pool:
            # The call's own deadline is the bound: past it the error would be a timeout.
            pending = pool.submit(run.ipam_error, "ADD", ctr, timeout=20.0)
            # While it tries, its socket is in the container (what the end checks is gone).
            wait_for(lambda: packet_sockets(ctr), 5.0, what="the daemon's DHCP socket")
            err = pending.result()
        assert not isinstance(err, cnilib.PluginTimeoutError), err
        assert 999 == err.code
        assert err.msg == (
            "error calling DHCP.Allocate: no more tries: no DHCP lease for eth0 in "
            f"{ctr.path} within 3 s (last: no DHCPOFFER received within 1s)"
        ), err.msg
        assert set() == run.records()
        assert [] == packet_sockets(ctr)
        assert run.lease(ctr) is None
        # Nothing is stuck: with the server back, the same attachment gets its lease.
        run.world.start_dnsmasq()
        ip = leased_ip(run.ipam("ADD", ctr) or {})
        assert ip == run.wait_lease(ctr).ip
        assert run.ipam("DEL", ctr) is None
        run.wait_released(ctr)
    finally:
        d.stop()


# --------------------------------------------------- 3. + 7. container netns deleted


def test_deleted_container_netns_is_not_pinned_and_its_lease_is_dropped(
    run: Run, daemon: Daemon
) -> None:
    ctr = run.world.add_container()
    ip = leased_ip(run.ipam("ADD", ctr) or {})
    run.wait_lease(ctr)
    assert {run.record_of(ctr)} == run.records()
    run.world.containers.remove(ctr)
    ctr.ns.delete()
    # The namespace is destroyed (its veth pair with it) once nothing holds it: no
    # socket and no netlink worker of the daemon may keep it alive.
    wait_for(
        lambda: (
            run.world.node.exec("ip", "link", "show", ctr.host_veth, check=False).returncode != 0
        ),
        15.0,
        what=f"the container's veth peer {ctr.host_veth} to go with its namespace",
    )
    log = wait_log(daemon, "interface gone, forgetting the lease")
    assert "terminating lease maintenance" in log
    assert set() == run.records()
    assert run.ipam("DEL", ctr) is None
    assert not run.released_on_server(ip)  # nowhere left to send it from
    assert daemon.running


# ------------------------------------------------------------------------- 4. SIGTERM


def test_sigterm_keeps_the_leases_and_a_new_daemon_resumes_them(run: Run, daemon: Daemon) -> None:
    pidfile = run.tmp / "dhcp.pid"
    ctr = run.world.add_container()
    ip = leased_ip(run.ipam("ADD", ctr) or {})
    lease = run.wait_lease(ctr)
    assert daemon.proc is not None
    assert f"{daemon.proc.pid}\n" == pidfile.read_text()
    os.kill(daemon.proc.pid, signal.SIGTERM)
    assert 0 == daemon.proc.wait(10.0), daemon.log_text()
    assert not run.socket_path.exists()
    assert not pidfile.exists()
    assert {run.record_of(ctr)} == run.records()
    assert "stopped; leases are kept" in daemon.log_text()
    # Not released: the server keeps the lease (nothing renews it meanwhile).
    assert holds(lambda: run.lease(ctr) == lease, 0.5)
    assert not run.released_on_server(ip)
    daemon.start()
    wait_log(daemon, "resuming lease of")
    assert ip == run.wait_renewed(ctr, lease).ip
    assert run.ipam("DEL", ctr) is None
    run.wait_released(ctr)
    assert run.released_on_server(ip)
    assert set() == run.records()


# ------------------------------------------------------- 5. stale and live sockets


def test_stale_socket_is_replaced_and_a_live_one_refused(run: Run, daemon: Daemon) -> None:
    ctr = run.world.add_container()
    ip = leased_ip(run.ipam("ADD", ctr) or {})
    run.wait_lease(ctr)
    assert daemon.proc is not None
    os.kill(daemon.proc.pid, signal.SIGKILL)
    daemon.proc.wait(10.0)
    daemon.proc = None
    assert run.socket_path.is_socket()  # left behind
    down = run.ipam_error("STATUS", version="1.1.0")  # nobody answers on it
    assert 50 == down.code
    assert f"dial unix {run.socket_path}: connect: connection refused" in down.msg, down.msg
    daemon.start()  # replaces it
    wait_log(daemon, f"resuming lease of {ip}")
    # A second daemon on the live socket (and the same state directory) gives up.
    second = run.daemon(name="second")
    assert second.proc is None
    with (run.tmp / "second.log").open("ab") as log:
        proc = subprocess.Popen(
            [*run.world.node.exec_prefix, *second.argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        code = proc.wait(15.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code != 0
    assert f"another dhcp daemon is listening on {run.socket_path}" in second.log_text()
    assert "Traceback" not in second.log_text()
    # The first one is unharmed: its socket, its record, its renewals.
    assert daemon.running
    assert run.socket_path.is_socket()
    assert {run.record_of(ctr)} == run.records()
    assert run.ipam("STATUS", version="1.1.0") is None
    now = run.lease(ctr)
    assert now is not None
    assert ip == run.wait_renewed(ctr, now).ip
    assert run.ipam("DEL", ctr) is None
    run.wait_released(ctr)


# ------------------------------------------------------------------ 6. GC and STATUS


def test_gc_releases_invalid_attachments_and_status_needs_the_daemon(
    run: Run, daemon: Daemon
) -> None:
    """The plugin's GC (a runtime's GC first DELs the attachments it has cached, so
    this calls the plugin directly, as for leases the runtime no longer knows of)."""
    keep, drop = run.world.add_container(), run.world.add_container()
    for ctr in (keep, drop):
        run.ipam("ADD", ctr, version="1.1.0")
    kept = run.wait_lease(keep)
    dropped = run.wait_lease(drop)
    valid = [{"containerID": keep.id, "ifname": "eth0"}]
    assert run.ipam("GC", version="1.1.0", extra={"cni.dev/valid-attachments": valid}) is None
    run.wait_released(drop)
    assert run.released_on_server(dropped.ip)
    assert {run.record_of(keep)} == run.records()
    assert f"{drop.id}/{NETWORK}/eth0: released by GC" in daemon.log_text()
    assert kept.ip == run.wait_renewed(keep, kept).ip  # the valid one is still kept
    assert run.ipam("STATUS", version="1.1.0") is None
    daemon.stop()
    err = run.ipam_error("STATUS", version="1.1.0")
    assert 50 == err.code
    assert (
        f"error dialing DHCP daemon: dial unix {run.socket_path}: "
        "connect: no such file or directory"
    ) == err.msg


def test_sigterm_during_an_add_ends_it_and_leaves_nothing(run: Run) -> None:
    """A daemon stopped while it is still trying to acquire a lease exits at once (not
    when the budget is spent): the ADD fails, no record and no socket is left."""
    d = run.daemon("-timeout", "1s", "-resendtimeout", "60s")
    d.start()
    try:
        run.world.stop_dnsmasq()
        ctr = run.world.add_container()
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(run.ipam_error, "ADD", ctr, timeout=20.0)
            wait_for(lambda: packet_sockets(ctr), 5.0, what="the daemon's DHCP socket")
            assert d.proc is not None
            os.kill(d.proc.pid, signal.SIGTERM)
            assert 0 == d.proc.wait(10.0), d.log_text()
            err = pending.result()
        assert not isinstance(err, cnilib.PluginTimeoutError), err
        assert (11, "error calling DHCP.Allocate: the dhcp daemon is shutting down") == (
            err.code,
            err.msg,
        )
        assert set() == run.records()
        assert [] == packet_sockets(ctr)
        assert not run.socket_path.exists()
        assert "Traceback" not in d.log_text(), d.log_text()
    finally:
        d.stop()
