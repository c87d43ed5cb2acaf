"""The dhcp IPAM plugin and its lease daemon against a real DHCP server (dnsmasq).

Each test runs on a *side*: which plugin executable (Go's ``/usr/lib/cni/dhcp``
or cnilib's, installed with ``python -m cnilib.plugins install``) talks to which
lease daemon (Go's ``dhcp daemon`` or cnilib's ``python -m cnilib.plugins dhcp
daemon``). The plugin is invoked directly as IPAM, as a main plugin would
(``ip netns exec <node>`` in front), on a container whose ``eth0`` is a veth
into the world's bridge; dnsmasq in its own namespace is the server (see
``_dhcp_world.py``). One world (namespaces, dnsmasq) serves the module; each
test gets a fresh daemon and fresh containers, and dnsmasq back with its usual
options.

Where Go's 1.1.1 and cnilib are meant to differ, the expectation is spelled out
per side (``side.daemon == "go"``): Go's result has no DNS, Go's CHECK acquires
another lease, Go's daemon forgets its leases on restart and silently takes a new
address after a NAK.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.invoke import Invocation, SubprocessExecutor
from cnilib.plugins._registry import load_plugin
from tests.privileged._dhcp_world import (
    DNS_SERVER,
    GO_DHCP,
    NAK_RANGE,
    NETWORK,
    RANGE,
    ROUTER,
    Container,
    Daemon,
    DhcpWorld,
    Lease,
    bridge_entry,
    dnsmasq_missing,
    go_daemon_argv,
    holds,
    in_range,
    py_daemon_argv,
    wait_for,
)
from tests.privileged._kernel import GO_PLUGINS, JSON, plugin_output
from tests.privileged._link_world import install_plugins

T1, T2 = 2, 4
"""dnsmasq's renewal (T1) and rebinding (T2) times, seconds: the world's default."""


# ------------------------------------------------------------------------------- sides


@dataclass(frozen=True)
class Side:
    """Whose plugin executable talks to whose lease daemon ("go" or "py" each)."""

    plugin: str
    daemon: str

    @property
    def id(self) -> str:
        if self.plugin == self.daemon:
            return self.plugin
        return f"{self.plugin}-plugin/{self.daemon}-daemon"

    @property
    def uses_py(self) -> bool:
        return "py" in (self.plugin, self.daemon)


SIDES = [Side("go", "go"), Side("py", "py"), Side("go", "py"), Side("py", "go")]

same_implementation = pytest.mark.parametrize(
    "side", SIDES[:2], ids=[s.id for s in SIDES[:2]], indirect=True
)
"""For the scenarios about the daemon's behaviour over time (renewal, outages, NAK,
restarts, load): Go's pair against cnilib's. The mixed pairs prove the protocol,
which the quick scenarios cover on all four sides."""


@functools.cache
def py_dhcp_missing() -> str | None:
    """Why cnilib's side cannot run yet (None once its dhcp plugin loads)."""
    try:
        load_plugin("dhcp")
    except cnilib.CNIError:
        return "cnilib's dhcp plugin is not available yet"
    return None


@pytest.fixture(params=SIDES, ids=[s.id for s in SIDES])
def side(request: pytest.FixtureRequest) -> Side:
    """The side under test; skipped where its plugin or daemon is not there."""
    s: Side = request.param
    if s.uses_py and (reason := py_dhcp_missing()):
        pytest.skip(reason)
    if "go" in (s.plugin, s.daemon) and not GO_DHCP.is_file():
        pytest.skip("Debian's containernetworking-plugins are not installed in /usr/lib/cni")
    return s


# ------------------------------------------------------------------------------ world


@pytest.fixture(scope="module")
def world(cnilib_privileged: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DhcpWorld]:
    """The module's namespaces and dnsmasq (deleted and stopped afterwards)."""
    if reason := dnsmasq_missing():
        pytest.skip(reason)
    with DhcpWorld.create(tmp_path_factory.mktemp("dhcp-world"), t1=T1, t2=T2) as w:
        yield w


@pytest.fixture(scope="module")
def py_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnilib's plugins installed as executables (only made for the sides that use them)."""
    return install_plugins(tmp_path_factory.mktemp("dhcp-bin"))


@dataclass
class Dhcp:
    """One test's run: a side's plugin and daemon in the world."""

    world: DhcpWorld
    side: Side
    daemon: Daemon
    plugin_path: tuple[str, ...]
    executor: SubprocessExecutor
    log_start: int = 0
    """Where the server's log stood when the test began."""

    @property
    def socket_path(self) -> Path:
        return self.daemon.socket_path

    def server_log(self) -> str:
        """What the server logged during this test."""
        return self.world.log_text(since=self.log_start)

    def conf(self, version: str = "1.0.0", **ipam: Any) -> JSON:
        """A network configuration whose IPAM is dhcp through this run's daemon."""
        return {
            "cniVersion": version,
            "name": NETWORK,
            "ipam": {"type": "dhcp", "daemonSocketPath": str(self.socket_path), **ipam},
        }

    def call(
        self,
        command: str,
        ctr: Container,
        version: str = "1.0.0",
        *,
        args: tuple[tuple[str, str], ...] = (),
        conf: JSON | None = None,
        **ipam: Any,
    ) -> JSON | None:
        """The plugin's *command* on *ctr*'s eth0; its stdout as JSON (None when empty)."""
        out = self.executor.exec(
            Invocation(
                command=command,
                plugin_type="dhcp",
                stdin=json.dumps(conf or self.conf(version, **ipam)).encode(),
                container_id=ctr.id,
                netns=ctr.path,
                ifname="eth0",
                args=args,
                path=self.plugin_path,
            )
        )
        return plugin_output(out, ctr.path)

    def add(self, ctr: Container, version: str = "1.0.0", **kw: Any) -> JSON:
        """ADD: the result."""
        result = self.call("ADD", ctr, version, **kw)
        assert result is not None
        return result

    def error(self, command: str, ctr: Container, **kw: Any) -> cnilib.CNIError:
        """A *command* that must fail: its error."""
        with pytest.raises(cnilib.CNIError) as info:
            self.call(command, ctr, **kw)
        return info.value

    def lease(self, ctr: Container) -> Lease | None:
        """The server's lease for *ctr*'s eth0 on :data:`NETWORK`."""
        return self.world.lease(ctr.client_id())

    def wait_lease(self, ctr: Container, what: str = "a lease") -> Lease:
        """The server's lease for *ctr* once there is one."""
        return wait_for(lambda: self.lease(ctr), 10.0, what=f"{what} for {ctr.id}")

    def wait_released(self, ctr: Container) -> None:
        """Until the server has no lease for *ctr* any more."""
        wait_for(lambda: self.lease(ctr) is None, 10.0, what=f"{ctr.id}'s lease to go")

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        """The daemon's log once it has *text*."""

        def logged() -> str | None:
            log = self.daemon.log_text()
            return log if text in log else None

        return wait_for(logged, timeout, what=f"the daemon to log {text!r}")

    def wait_renewed(self, ctr: Container, after: Lease, timeout: float = 15.0) -> Lease:
        """The lease for *ctr* once its expiry moved past *after*'s."""

        def renewed() -> Lease | None:
            now = self.lease(ctr)
            return now if now is not None and now.expiry > after.expiry else None

        return wait_for(renewed, timeout, interval=0.1, what=f"a renewal of {ctr.id}'s lease")


@pytest.fixture
def dhcp(
    world: DhcpWorld, side: Side, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Dhcp]:
    """dnsmasq back to its usual options, this side's daemon started, fresh containers
    (the daemon stopped and the containers deleted afterwards)."""
    world.dnsmasq.ensure(t1=T1, t2=T2)
    sock = tmp_path / "dhcp.sock"
    argv = go_daemon_argv(sock) if side.daemon == "go" else py_daemon_argv(sock, tmp_path / "state")
    daemon = world.daemon(argv, sock, tmp_path / "daemon.log")
    path: tuple[str, ...] = (str(GO_PLUGINS),)
    if side.plugin == "py":
        path = (str(request.getfixturevalue("py_bin")), str(GO_PLUGINS))
    executor = SubprocessExecutor(wrapper=world.node.exec_prefix, timeout=60.0)
    try:
        daemon.start()
        yield Dhcp(world, side, daemon, path, executor, world.log_mark())
    finally:
        daemon.stop()
        world.remove_containers()


def expected_result(version: str, ip: str) -> JSON:
    """Go 1.1.1's result (empty DNS dropped) for a plain lease of *ip*/24."""
    route = {"dst": "0.0.0.0/0", "gw": ROUTER}
    if version == "0.2.0":
        return {"cniVersion": version,
                "ip4": {"ip": f"{ip}/24", "gateway": ROUTER, "routes": [route]}}  # fmt: skip
    entry: JSON = {"address": f"{ip}/24", "gateway": ROUTER}
    if version in ("0.3.0", "0.3.1", "0.4.0"):
        entry = {"version": "4", **entry}
    return {"cniVersion": version, "ips": [entry], "routes": [route]}


def leased_ip(result: JSON) -> str:
    """The address (without prefix) of a 0.3.0-or-later result."""
    return str(result["ips"][0]["address"]).split("/")[0]


def split_dns(side: Side, result: JSON) -> JSON:
    """*result* without its DNS, after checking the DNS is what the side's daemon gives:
    none from Go's (it never fills it), the server's option 6 from cnilib's."""
    dns = result.pop("dns", None)
    if side.daemon == "go":
        assert dns is None
    else:
        assert dns is not None
        assert [DNS_SERVER] == dns.get("nameservers")
    return result


# --------------------------------------------------------------------------- scenarios


def test_add_acquires_a_lease_the_server_records(dhcp: Dhcp) -> None:
    ctr = dhcp.world.add_container()
    result = split_dns(dhcp.side, dhcp.add(ctr))
    ip = leased_ip(result)
    assert in_range(ip, RANGE)
    assert expected_result("1.0.0", ip) == result
    lease = dhcp.wait_lease(ctr)
    assert (ip, ctr.mac()) == (lease.ip, lease.mac)
    # The client ID is 0x00 + "<container>/<network>/<ifname>", in hex.
    assert lease.client_id is not None
    assert "00:" + ":".join(f"{b:02x}" for b in f"{ctr.id}/{NETWORK}/eth0".encode()) == (
        lease.client_id
    )
    assert lease.hostname is None  # nothing provided, nothing sent


def test_result_in_every_version(dhcp: Dhcp) -> None:
    versions = ["0.2.0", "0.3.1", "0.4.0", "1.0.0"]
    if dhcp.side.plugin == "py":
        versions.append("1.1.0")
    for version in versions:
        ctr = dhcp.world.add_container()
        result = split_dns(dhcp.side, dhcp.add(ctr, version))
        ip = result["ip4"]["ip"].split("/")[0] if version == "0.2.0" else leased_ip(result)
        assert expected_result(version, ip) == result, version
        lease = dhcp.wait_lease(ctr)
        assert ip == lease.ip


# Classless static routes (121) and static routes (33), only in TEST-NET ranges. 198.51.100.0
# is a class C network: option 33 destinations take the classful mask (/24).
OPTION_121 = "121,203.0.113.0/24,192.0.2.254,0.0.0.0/0,192.0.2.1,192.0.2.128/25,0.0.0.0"
OPTION_33 = "33,198.51.100.0,192.0.2.253"


@same_implementation
def test_routes_from_options_121_and_33(dhcp: Dhcp) -> None:
    dhcp.world.restart_dnsmasq(options=(OPTION_121, OPTION_33))
    ctr = dhcp.world.add_container()
    # Requested together, option 121 wins: its routes only (router and 33 ignored).
    both = dhcp.add(ctr, request=[{"option": "121"}, {"option": "33"}])
    routes = [(r["dst"], r.get("gw", "0.0.0.0")) for r in both["routes"]]
    assert [("203.0.113.0/24", "192.0.2.254"), ("0.0.0.0/0", ROUTER),
            ("192.0.2.128/25", "0.0.0.0")] == routes  # fmt: skip
    assert ROUTER == both["ips"][0]["gateway"]  # the first router, also with 121
    # Option 33 alone: its routes, then the default route via the router.
    ctr33 = dhcp.world.add_container()
    only33 = dhcp.add(ctr33, request=[{"option": "33"}])
    assert [{"dst": "198.51.100.0/24", "gw": "192.0.2.253"},
            {"dst": "0.0.0.0/0", "gw": ROUTER}] == only33["routes"]  # fmt: skip
    # Not requested: the server does not send them, only the default route is there.
    plain = dhcp.add(dhcp.world.add_container())
    assert [{"dst": "0.0.0.0/0", "gw": ROUTER}] == plain["routes"]


@same_implementation
def test_provided_options_reach_the_server(dhcp: Dhcp) -> None:
    ctr = dhcp.world.add_container()
    provide = [
        {"option": "host-name", "fromArg": "K8S_POD_NAME"},
        {"option": "user-class", "value": "cnitest"},
    ]
    dhcp.add(ctr, args=(("IgnoreUnknown", "1"), ("K8S_POD_NAME", "podfive")), provide=provide)
    lease = dhcp.wait_lease(ctr)
    assert "podfive" == lease.hostname
    log = dhcp.server_log()
    assert "user class: cnitest" in log
    assert "client provides name: podfive" in log


@same_implementation
def test_lease_is_renewed(dhcp: Dhcp) -> None:
    ctr = dhcp.world.add_container()
    ip = leased_ip(dhcp.add(ctr))
    first = dhcp.wait_lease(ctr)
    renewed = dhcp.wait_renewed(ctr, first)
    assert ip == renewed.ip
    dhcp.wait_renewed(ctr, renewed)  # and again: it keeps renewing


def test_del_releases_and_del_again_or_unknown_succeeds(dhcp: Dhcp) -> None:
    ctr = dhcp.world.add_container()
    dhcp.add(ctr)
    dhcp.wait_lease(ctr)
    assert dhcp.call("DEL", ctr) is None
    dhcp.wait_released(ctr)
    assert dhcp.call("DEL", ctr) is None  # twice
    assert dhcp.call("DEL", dhcp.world.add_container()) is None  # never added


def test_del_of_a_vanished_container_succeeds(dhcp: Dhcp) -> None:
    """A runtime may DEL after the container's namespace is gone."""
    ctr = dhcp.world.add_container()
    dhcp.add(ctr)
    gone = Container(ctr.id, ctr.ns, ctr.host_veth)
    dhcp.world.containers.remove(ctr)
    ctr.ns.delete()
    dhcp.world.node.exec("ip", "link", "del", gone.host_veth, check=False)
    assert dhcp.call("DEL", gone) is None


@same_implementation
def test_server_stopped_then_restarted(dhcp: Dhcp) -> None:
    ctr = dhcp.world.add_container()
    ip = leased_ip(dhcp.add(ctr))
    dhcp.world.stop_dnsmasq()
    before = dhcp.wait_lease(ctr)
    # A renewal fails while there is no server (the lease has 2 minutes left).
    if dhcp.side.daemon == "go":
        dhcp.wait_log("no DHCP packet received", 30.0)
    else:
        time.sleep(T1 + 2)  # past T1, and one attempt's 2 s timeout
    dhcp.world.start_dnsmasq()
    after = dhcp.wait_renewed(ctr, before, timeout=40.0)
    assert ip == after.ip  # dnsmasq keys leases by client ID: the same address
    dhcp.wait_renewed(ctr, after)  # and it renews as before


@same_implementation
def test_nak(dhcp: Dhcp) -> None:
    ctr = dhcp.world.add_container()
    ip = leased_ip(dhcp.add(ctr))
    dhcp.world.nak_restart()
    wait_for(lambda: "DHCPNAK" in dhcp.server_log(), 20.0, what="dnsmasq to NAK the renewal")
    if dhcp.side.daemon == "go":
        # Go 1.1.1: a NAKed renewal is a failed one; past T2 it rebinds with a full DISCOVER
        # and silently takes whatever address the server offers now.

        def moved() -> Lease | None:
            now = dhcp.lease(ctr)
            return now if now is not None and in_range(now.ip, NAK_RANGE) else None

        lease = wait_for(moved, 40.0, what="Go's daemon to take a new address")
        assert ip != lease.ip
        # The daemon logs after the server wrote the new lease.
        log = dhcp.wait_log("lease rebound")
        assert "DHCP server did not renew lease" in log  # the NAK, retried until T2
    else:
        # cnilib: the lease is lost, said in the daemon's log, and no new address appears.
        dhcp.wait_log("NAK")
        assert holds(lambda: dhcp.lease(ctr) is None, T2 + 2)


@same_implementation
def test_twenty_containers_concurrently(dhcp: Dhcp) -> None:
    ctrs = [dhcp.world.add_container() for _ in range(20)]
    with ThreadPoolExecutor(len(ctrs)) as pool:
        results = list(pool.map(dhcp.add, ctrs))
    ips = [leased_ip(r) for r in results]
    assert len(ctrs) == len(set(ips))
    assert all(in_range(ip, RANGE) for ip in ips)
    leases = {le.client_id: le.ip for le in dhcp.world.leases()}
    assert ips == [leases.get(c.client_id()) for c in ctrs]
    with ThreadPoolExecutor(len(ctrs)) as pool:
        assert [None] * len(ctrs) == list(pool.map(lambda c: dhcp.call("DEL", c), ctrs))
    for ctr in ctrs:
        dhcp.wait_released(ctr)


@same_implementation
def test_daemon_restart_mid_lease(dhcp: Dhcp) -> None:
    ctr = dhcp.world.add_container()
    ip = leased_ip(dhcp.add(ctr))
    lease = dhcp.wait_lease(ctr)
    dhcp.daemon.restart()
    if dhcp.side.daemon == "go":
        # Go keeps its leases in memory only: after a restart nothing renews them, DEL is
        # a no-op and the lease stays on the server until it expires.
        assert dhcp.call("DEL", ctr) is None
        assert holds(lambda: dhcp.lease(ctr) == lease, T1 + 1)
    else:
        # cnilib's daemon resumes its leases from its state directory.
        renewed = dhcp.wait_renewed(ctr, lease)
        assert ip == renewed.ip
        assert dhcp.call("DEL", ctr) is None
        dhcp.wait_released(ctr)


def test_daemon_not_running(dhcp: Dhcp) -> None:
    ctr = dhcp.world.add_container()
    dhcp.daemon.stop()
    err = dhcp.error("ADD", ctr)
    text = (
        f"error dialing DHCP daemon: dial unix {dhcp.socket_path}: "
        "connect: no such file or directory"
    )
    if dhcp.side.plugin == "go":
        assert (999, text) == (err.code, err.msg)
        assert (999, text) == (dhcp.error("DEL", ctr).code, dhcp.error("DEL", ctr).msg)
    else:
        assert err.code in (11, 999)
        assert "error dialing DHCP daemon" in err.msg
    assert dhcp.lease(ctr) is None


def test_check(dhcp: Dhcp) -> None:
    ctr = dhcp.world.add_container()
    result = dhcp.add(ctr)
    lease = dhcp.wait_lease(ctr)
    with_prev = {**dhcp.conf(), "prevResult": result}
    if dhcp.side == Side("py", "py"):
        # cnilib's CHECK also wants the leased address on the interface, where the main
        # plugin puts it; Go's looks at nothing but the daemon's answer.
        failure = dhcp.error("CHECK", ctr, conf=with_prev)
        assert f"{leased_ip(result)}/24 is not on eth0" in str(failure)
    ctr.ns.exec("ip", "addr", "add", f"{leased_ip(result)}/24", "dev", "eth0")
    assert dhcp.call("CHECK", ctr, conf=with_prev) is None
    assert leased_ip(result) == dhcp.wait_lease(ctr).ip
    assert lease.ip == dhcp.wait_lease(ctr).ip
    unknown = dhcp.world.add_container()
    if dhcp.side == Side("py", "py"):
        # cnilib: CHECK asks the daemon about the lease it keeps; no lease, no success.
        dhcp.error("CHECK", unknown)
        assert dhcp.call("DEL", ctr) is None
        dhcp.error("CHECK", ctr, conf={**dhcp.conf(), "prevResult": result})
        return
    # Go's plugin CHECKs with an Allocate (and cnilib's does, talking to Go's daemon, which
    # has nothing else): it succeeds, and acquires a lease also for a container that never
    # had one.
    if dhcp.side.daemon == "go":  # 1.1.1 acquires another lease for a known one too
        assert 2 == dhcp.daemon.log_text().count(f"{ctr.id}/{NETWORK}/eth0: acquiring lease")
    assert dhcp.call("CHECK", unknown) is None
    dhcp.wait_lease(unknown, "the lease CHECK acquired")


@same_implementation
def test_bridge_plugin_configures_the_leased_address(dhcp: Dhcp) -> None:
    """The attachment a runtime makes: the bridge plugin with dhcp as its IPAM."""
    ctr = dhcp.world.add_container(attach=False)
    cni = cnilib.CNI(list(dhcp.plugin_path), cache_dir=dhcp.daemon.log_file.parent / "cache",
                     executor=dhcp.executor)  # fmt: skip
    raw = {"cniVersion": "1.0.0", "name": NETWORK, "plugins": [bridge_entry(dhcp.socket_path)]}
    conflist = cnilib.conflist_from_bytes(json.dumps(raw).encode())
    rt = cnilib.RuntimeConf(ctr.id, ctr.path, "eth0")
    try:
        result = cni.add_network_list(conflist, rt)
        assert result is not None
        address = str(json.loads(result.to_json())["ips"][0]["address"])
        assert {address} == ctr.addresses()
        lease = dhcp.wait_lease(ctr)
        assert address.split("/")[0] == lease.ip
        lease = dhcp.wait_renewed(ctr, lease)
        cni.delete_network_list(conflist, rt)
        # The bridge plugin (Go's, and cnilib's in the same order) deletes the veth before
        # its IPAM DEL: the daemon drops the lease but cannot send a RELEASE any more, so
        # the server keeps it until it expires; nothing renews it.
        assert holds(lambda: dhcp.lease(ctr) == lease, T1 + 1)
        if dhcp.side.daemon == "go":
            assert "failed to release DHCP lease: no such device" in dhcp.daemon.log_text()
    finally:
        cni.close()
