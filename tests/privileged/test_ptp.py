"""cnilib's in-process ptp plugin against Debian's Go ptp (1.1.1), on a real kernel.

Each side gets its own node namespace (playing the host) and container
namespaces: Go's binary is exec'd inside its node (``ip netns exec``) by
cnilib's subprocess executor, ours runs in process with
``InProcessExecutor(host_netns=<node>)``; both with host-local IPAM and the
same network name and container ID. After ADD and after DEL the result
JSON (modulo random MACs, veth and namespace names) and the kernel state
(container and node links, addresses, routes, sysctls, the node's
``iptables-save``/``ip6tables-save``, host-local's store) must be equal.

Deliberate differences asserted as such (see :mod:`cnilib.plugins.main.ptp`):
a veth's ``txqueuelen`` is not compared (Go 1.1.1 makes them with 0), and
DEL after the container namespace is gone leaks Go's ipMasq chain, not ours.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib import netlink
from cnilib.plugins._executor import InProcessExecutor
from cnilib.plugins._main import install
from cnilib.results import ResultV040, ResultV100
from cnilib.testing import NetNS
from cnilib.testing._netns import create_netns
from tests.privileged._kernel import GO_PLUGINS, JSON, go_plugin_marks, ip_json, wait_until
from tests.privileged._netstate import (
    addrs,
    assert_same,
    links,
    nat_rules,
    normalized_result,
    routes,
    settled,
    sysctls,
)
from tests.privileged._ping import pings

pytestmark = go_plugin_marks()

NET = "ptpnet"
CID = "ptp-ctr1"
V4, V6 = "10.252.0.0/24", "fd00:252::/64"
EXTRA_ROUTE = {"dst": "198.51.100.0/24", "gw": "10.252.0.1"}

CASES: dict[str, tuple[list[str], JSON]] = {
    "v4": ([V4], {}),
    "v4-masq-mtu": ([V4], {"ipMasq": True, "mtu": 1400}),
    "v6": ([V6], {}),
    "v6-masq-mtu": ([V6], {"ipMasq": True, "mtu": 1280}),
    "dual": ([V4, V6], {}),
    "dual-masq-mtu": ([V4, V6], {"ipMasq": True, "mtu": 9000}),
}


def ptp(subnets: list[str], data_dir: Path, **extra: Any) -> JSON:
    """A ptp plugin entry: one host-local range set per subnet, default routes (+1 with gw)."""
    routes: list[JSON] = [{"dst": "::/0" if ":" in s else "0.0.0.0/0"} for s in subnets]
    if V4 in subnets:
        routes.append(EXTRA_ROUTE)
    ranges = [[{"subnet": s}] for s in subnets]
    ipam = {"type": "host-local", "ranges": ranges, "routes": routes, "dataDir": str(data_dir)}
    return {"type": "ptp", **extra, "ipam": ipam}


@dataclass
class Side:
    """One implementation's world: its node namespace, containers, store and cache."""

    label: str
    node: NetNS
    tmp: Path
    make_ns: Callable[[str], NetNS]
    cni: cnilib.CNI

    @property
    def data_dir(self) -> Path:
        return self.tmp / "ipam"

    def conflist(self, plugin: JSON, version: str = "1.0.0") -> cnilib.NetworkConfigList:
        raw = {"cniVersion": version, "name": NET, "plugins": [plugin]}
        return cnilib.conflist_from_bytes(json.dumps(raw).encode())

    def ctr(self) -> NetNS:
        return self.make_ns("cnilib-ctr")

    def store(self) -> dict[str, bytes]:
        d = self.data_dir / NET
        return {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.is_dir() else {}

    def add(
        self, conf: cnilib.NetworkConfigList, ctr: NetNS, cid: str = CID
    ) -> ResultV040 | ResultV100:
        res = self.cni.add_network_list(conf, cnilib.RuntimeConf(cid, ctr.path, "eth0"))
        assert isinstance(res, ResultV040 | ResultV100)
        return res


@pytest.fixture
def make_ns(cnilib_privileged: None) -> Iterator[Callable[[str], NetNS]]:
    """A factory of namespaces ``<prefix>-<random>``; all deleted (workers retired first)."""
    made: list[NetNS] = []

    def make(prefix: str) -> NetNS:
        ns = create_netns(prefix)
        made.append(ns)
        return ns

    yield make
    errors = []
    for ns in reversed(made):
        netlink.close_netns(ns.path)
        try:
            ns.delete()
        except RuntimeError as exc:  # keep deleting the others
            errors.append(exc)
    assert not errors


def _side(label: str, make_ns: Callable[[str], NetNS], tmp: Path) -> Side:
    """``go``: Go's binaries exec'd in the node; ``ours``: in process with the node as host;
    ``binary``: our plugins installed as executables, exec'd in the node like Go's."""
    node = make_ns("cnilib-node")
    path = [str(GO_PLUGINS)]
    executor: cnilib.Executor = cnilib.SubprocessExecutor(wrapper=node.exec_prefix, timeout=30)
    if label == "ours":
        executor = InProcessExecutor(host_netns=node.path)
    elif label == "binary":
        path = [str(install(tmp / "bin", ["ptp", "host-local"])[0].parent)]
    cni = cnilib.CNI(path, cache_dir=str(tmp / label / "cache"), executor=executor)
    return Side(label, node, tmp / label, make_ns, cni)


@pytest.fixture
def go(make_ns: Callable[[str], NetNS], tmp_path: Path) -> Side:
    return _side("go", make_ns, tmp_path)


@pytest.fixture
def ours(make_ns: Callable[[str], NetNS], tmp_path: Path) -> Side:
    return _side("ours", make_ns, tmp_path)


def _machine_state() -> list[str]:
    """The machine's own iptables/ip6tables rules, addresses and routes (read only)."""
    out = []
    for argv in (["iptables-save"], ["ip6tables-save"], ["ip", "addr"], ["ip", "route"]):
        text = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        out.append("\n".join(line for line in text.splitlines() if not line.startswith("#")))
    return out


@pytest.fixture(scope="module", autouse=True)
def _machine_untouched() -> Iterator[None]:
    """Nothing in this module may change the machine's own network namespace."""
    before = _machine_state()
    yield
    assert _machine_state() == before


# ----------------------------------------------------------------------- snapshots


def kernel_state(side: Side, ctr: NetNS, host_veth: str | None) -> str:
    """Everything compared, as text with the side-specific names replaced.

    IPv6 duplicate address detection is let finish first: a tentative address
    has no local route yet, and when each side's DAD ends is timing, not state.
    """
    for ns in (ctr, side.node):
        wait_until(functools.partial(settled, ns), 5)
    node_sysctls = ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"]
    if host_veth:
        node_sysctls.append(f"net/ipv6/conf/{host_veth}/accept_ra")
    state = {
        "ctr": [links(ctr), addrs(ctr), routes(ctr)],
        "node": [links(side.node), addrs(side.node), routes(side.node)],
        "sysctl": sysctls(side.node, node_sysctls),
        "nat": nat_rules(side.node),
        "store": {k: v.decode() for k, v in side.store().items()},
    }
    text = json.dumps(state, indent=1, sort_keys=True)
    text = text.replace(side.node.name, "<node>").replace(ctr.name, "<ctr>")
    return text.replace(host_veth, "<veth>") if host_veth else text


# ---------------------------------------------------------------------- differential


def _lifecycle(side: Side, subnets: list[str], extra: JSON, version: str) -> list[Any]:
    ctr = side.ctr()
    conf = side.conflist(ptp(subnets, side.data_dir, **extra), version)
    rt = cnilib.RuntimeConf(CID, ctr.path, "eth0")
    res = side.add(conf, ctr)
    host_veth = res.interfaces[0].name
    seen: list[Any] = [normalized_result(res, ctr), kernel_state(side, ctr, host_veth)]
    side.cni.check_network_list(conf, rt)
    side.cni.delete_network_list(conf, rt)
    seen.append(kernel_state(side, ctr, None))
    side.cni.delete_network_list(conf, rt)  # idempotent
    seen.append(kernel_state(side, ctr, None))
    return seen


@pytest.mark.parametrize(
    ("case", "version"),
    [(case, "1.0.0") for case in CASES] + [("v4-masq-mtu", "0.4.0"), ("dual", "0.4.0")],
)
def test_add_check_del_match_go(go: Side, ours: Side, case: str, version: str) -> None:
    """Same result JSON and kernel state as Go's ptp after ADD, CHECK and (twice) DEL."""
    subnets, extra = CASES[case]
    with ThreadPoolExecutor(1) as pool:  # IPv6 DAD takes ~1 s: run the two sides together
        theirs = pool.submit(_lifecycle, go, subnets, extra, version)
        mine = _lifecycle(ours, subnets, extra, version)
        expected = theirs.result()
    assert mine[0] == expected[0]  # result JSON
    assert_same(mine[1], expected[1], "after ADD")
    assert_same(mine[2], expected[2], "after DEL")
    assert_same(mine[3], expected[2], "after a second DEL")
    assert json.loads(mine[2])["node"][0] == [
        {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP"],
         "mtu": 65536, "link_type": "loopback", "kind": None}
    ]  # fmt: skip
    assert "CNI-" not in json.loads(mine[2])["nat"]


def test_executable_matches_go(go: Side, make_ns: Callable[[str], NetNS], tmp_path: Path) -> None:
    """Our ptp as a CNI binary (host side: its own namespace, the node) behaves as Go's."""
    binary = _side("binary", make_ns, tmp_path)
    subnets, extra = CASES["dual-masq-mtu"]
    with ThreadPoolExecutor(1) as pool:
        theirs = pool.submit(_lifecycle, go, subnets, extra, "1.0.0")
        mine = _lifecycle(binary, subnets, extra, "1.0.0")
        expected = theirs.result()
    assert mine[0] == expected[0]
    for when, i in (("after ADD", 1), ("after DEL", 2), ("after a second DEL", 3)):
        assert_same(mine[i], expected[min(i, 2)], when)


# ----------------------------------------------------------------------------- CHECK

HOST = "<host>"
DRIFTS = {  # where, command (with <veth> for the host veth), what ours names, Go notices too
    "address": ("ctr", "ip addr del 10.252.0.2/24 dev eth0", r"addr 10\.252\.0\.2/24", True),
    "subnet-route": ("ctr", "ip route del 10.252.0.0/24", r"10\.252\.0\.0/24", True),
    "gateway-route": ("ctr", "ip route del 10.252.0.1 dev eth0", r"10\.252\.0\.1/32", False),
    "ipam-route": ("ctr", "ip route del 198.51.100.0/24", r"198\.51\.100\.0/24", True),
    "mac": ("ctr", "ip link set eth0 address 02:00:00:00:00:01", r"Mac .* 02:00:00:00:00:01", True),
    "link": ("ctr", "ip link del eth0", r"eth0 not found", True),
    "host-address": (HOST, "ip addr del 10.252.0.1/32 dev <veth>", r"address 10\.252", False),
    "host-route": (HOST, "ip route del 10.252.0.2 dev <veth>", r"route 10\.252\.0\.2/32", False),
}  # fmt: skip


def _drift_check(side: Side, drift: str) -> str | None:
    """ADD, apply the drift, CHECK: the error text (None if CHECK passed); then DEL."""
    where, command, _, _ = DRIFTS[drift]
    ctr = side.ctr()
    conf = side.conflist(ptp([V4], side.data_dir, ipMasq=True))
    rt = cnilib.RuntimeConf(CID, ctr.path, "eth0")
    res = side.add(conf, ctr)
    side.cni.check_network_list(conf, rt)
    ns = side.node if where == HOST else ctr
    ns.exec(*command.replace("<veth>", res.interfaces[0].name).split())
    try:
        side.cni.check_network_list(conf, rt)
        error = None
    except cnilib.CNIError as exc:
        error = str(exc)
    side.cni.delete_network_list(conf, rt)
    assert side.store().keys() <= {"lock", "last_reserved_ip.0"}
    return error


@pytest.mark.parametrize("drift", DRIFTS)
def test_check_detects_drift(go: Side, ours: Side, drift: str) -> None:
    """Ours names what drifted; Go's CHECK fails too where it looks, passes where it does not."""
    _, _, pattern, go_notices = DRIFTS[drift]
    error = _drift_check(ours, drift)
    assert error is not None
    assert re.search(pattern, error), error
    # Go's CHECK looks at the container's addresses and routes only (ours is stricter).
    assert (_drift_check(go, drift) is not None) == go_notices


# ------------------------------------------------------------------------------- DEL


@pytest.mark.parametrize("side_name", ["go", "ours"])
def test_del_tolerates_a_missing_netns(side_name: str, go: Side, ours: Side) -> None:
    """DEL after the container namespace is gone succeeds and releases the IP; ours also
    removes the ipMasq chain, which Go 1.1.1 leaks (a deliberate difference)."""
    side = go if side_name == "go" else ours
    ctr = side.ctr()
    conf = side.conflist(ptp([V4], side.data_dir, ipMasq=True))
    side.add(conf, ctr)
    assert "CNI-" in nat_rules(side.node)
    netlink.close_netns(ctr.path)  # the runtime lets go of the namespace, then it is gone
    ctr.delete()
    rt = cnilib.RuntimeConf(CID, ctr.path, "eth0")
    side.cni.delete_network_list(conf, rt)
    side.cni.delete_network_list(conf, rt)
    assert "10.252.0.2" not in side.store()
    wait_until(lambda: [link["ifname"] for link in ip_json(side.node, "link")] == ["lo"], 10)
    assert ("CNI-" in nat_rules(side.node)) == (side_name == "go")


@pytest.mark.parametrize("side_name", ["go", "ours"])
def test_failed_add_leaves_nothing(side_name: str, go: Side, ours: Side) -> None:
    """ADD into a container that already has the interface fails and releases the IP; ours
    leaves no veth behind either."""
    side = go if side_name == "go" else ours
    ctr = side.ctr()
    ctr.exec("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
    conf = side.conflist(ptp([V4], side.data_dir, ipMasq=True))
    with pytest.raises(cnilib.CNIError, match="already exists"):
        side.add(conf, ctr)
    assert "10.252.0.2" not in side.store()
    assert [link["ifname"] for link in ip_json(side.node, "link")] == ["lo"]
    assert "CNI-" not in nat_rules(side.node)


# ------------------------------------------------------------------- connectivity


def test_connectivity_through_the_node(ours: Side, tmp_path: Path) -> None:
    """Containers reach their gateway and each other through the node: two of ours and one
    of Go's, sharing one node and one host-local store."""
    go_exec = cnilib.SubprocessExecutor(wrapper=ours.node.exec_prefix, timeout=30)
    go_cni = cnilib.CNI([str(GO_PLUGINS)], cache_dir=str(tmp_path / "go"), executor=go_exec)
    mixed = Side("go", ours.node, ours.tmp, ours.make_ns, go_cni)
    plugin = ptp([V4], ours.data_dir)
    a, b, c = ours.ctr(), ours.ctr(), ours.ctr()
    ip_a = _ip(ours.add(ours.conflist(plugin), a, "ctr-a"))
    ip_b = _ip(ours.add(ours.conflist(plugin), b, "ctr-b"))
    ip_c = _ip(mixed.add(mixed.conflist(plugin), c, "ctr-c"))
    assert len({ip_a, ip_b, ip_c}) == 3
    assert pings(a, "10.252.0.1")
    assert pings(a, ip_a)
    assert pings(a, ip_b)
    assert pings(b, ip_a)
    assert pings(a, ip_c)
    assert pings(c, ip_b)
    ours.cni.delete_network_list(ours.conflist(plugin), cnilib.RuntimeConf("ctr-b", b.path, "eth0"))
    assert not pings(a, ip_b, tries=3)


def _ip(res: ResultV040 | ResultV100) -> str:
    address = res.ips[0].address
    assert address is not None
    return str(address.ip)


# ----------------------------------------------------------------------- STATUS, GC


def test_status_and_gc_delegate_to_ipam(ours: Side) -> None:
    """1.1.0: STATUS asks host-local; GC has host-local release addresses of attachments that
    are not valid (Go's ptp 1.1.1 knows neither verb)."""
    conf = ours.conflist(ptp([V4], ours.data_dir), "1.1.0")
    ours.cni.status_network_list(conf)
    ours.add(conf, ours.ctr())
    (ours.data_dir / NET / "10.252.0.50").write_bytes(b"gone-ctr\r\neth0")
    ours.cni.gc_network_list(conf, [(CID, "eth0")])
    assert set(ours.store()) == {"10.252.0.2", "lock", "last_reserved_ip.0"}


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        ({"ipam": {}}, 999, "no plugin name provided"),
        ({"mtu": "9000"}, 999, "cannot unmarshal string into Go struct field NetConf.mtu"),
        ({"ipMasq": True, "ipMasqBackend": "pf"}, 7, 'unknown ipmasq backend "pf"'),
    ],
)
def test_config_errors(ours: Side, extra: JSON, code: int, message: str) -> None:
    """Bad configurations fail before IPAM or the kernel is touched."""
    conf = ours.conflist({**ptp([V4], ours.data_dir), **extra})
    with pytest.raises(cnilib.CNIError, match=re.escape(message)) as info:
        ours.add(conf, ours.ctr())
    assert info.value.code == code
    assert ours.store() == {}
