"""The whole chain of reference plugins through cnilib's runtime API, on a real kernel.

One conflist: bridge (+host-local, ipMasq) -> tuning (a sysctl) -> portmap
(the ``portMappings`` capability, one TCP mapping) -> bandwidth (ingress and
egress) -> firewall -> sbr, run ADD / CHECK / DEL by ``cnilib.CNI`` on five
sides:

- ``in-process``: cnilib's plugins in this process (``InProcessExecutor``,
  ``host_netns=<node>``), no plugin exec'd (only the host tools they run);
- ``executables``: cnilib's plugins installed as CNI executables
  (``python -m cnilib.plugins install``) and exec'd under
  ``ip netns exec <node>``, with nothing else on the plugin path;
- ``go``: Debian's Go 1.1.1 binaries, exec'd the same way (the reference);
- ``go-bridge``: Go's bridge and host-local with cnilib's meta plugins in process;
- ``go-meta``: cnilib's bridge and host-local in process with Go's meta plugins.

Each side has its own node namespace (the host), a container namespace and a
client namespace joined to the node by a veth. After ADD the test asserts
the kernel, not only the exit codes: the container's address, the tuning
sysctl, a TCP connection from the client to the node's hostPort reaching a
small Python server in the container through portmap's DNAT, the ifb and the
qdiscs of bandwidth, firewall's rule and sbr's rule and table. After DEL
nothing of the attachment is left in any namespace or on disk: the node is
snapshot before the ADD and after the DEL (:func:`node_snapshot`), and what
is new must be in the list of state kept by design (the bridge, its address
and route, the top-level chains portmap and firewall make once per host). A
rule made twice shows as a second copy, which is never kept by design. Not
compared: the node's sysctls (bridge turns forwarding on) and its conntrack
entries (the hostPort connection's stays until it times out, as with Go's
portmap, whose DEL flushes none).

CHECK of the full chain passes with cnilib's bridge, which also looks for
the routes sbr moved into its table. Where Go's bridge runs, it fails: bridge
CHECK looks for the container's subnet route in the main table only (1.1.1
and every later release) and sbr moved it to table 100; where Go's portmap
1.1.1 runs after cnilib's bridge, portmap's CHECK fails (plugins#819). Those
sides are strict xfails that raise :class:`KnownPluginBug` only after the
rest of the test (DEL and the leftovers included) has passed.
``test_check_without_sbr`` runs the same chain without sbr, so that CHECK of
cnilib's meta plugins after Go's bridge runs too.

``test_containers_at_once`` attaches 50 containers to the chain at once
through one ``AsyncCNI`` (in-process side; 8 with the executables), each
with its own hostPort, then detaches them at once, and finds nothing of any
of them left in the node namespace, in the containers or on disk.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

import cnilib
from cnilib.invoke import ChainExecutor, Executor, SubprocessExecutor
from cnilib.plugins._executor import InProcessExecutor
from cnilib.plugins._registry import load_plugin
from cnilib.results import ResultV100
from cnilib.testing import NetNS
from tests.privileged._kernel import GO_PLUGINS, IPAM_LEFTOVERS, JSON, go_plugin_marks, ip_json
from tests.privileged._link_world import install_plugins
from tests.privileged._netstate import node_snapshot, snapshot_diff

pytestmark = go_plugin_marks()

MakeNS = Callable[[], NetNS]
T = TypeVar("T")

NETWORK = "fullchain"
BRIDGE = "cnichain0"
SUBNET = "10.79.0.0/24"
GATEWAY = "10.79.0.1"
CLIENT_NODE_IP, CLIENT_IP = "10.79.250.1", "10.79.250.2"
"""The node's and the client's ends of the veth between them (a /24)."""
CONTAINER_PORT = 8080
HOST_PORT = 18080
SYSCTL = ("net.ipv4.conf.eth0.arp_filter", "1")
RATE, BURST = 8_000_000, 800_000
"""bandwidth's rates (bits/s) and bursts (bits), both directions: enough for the test's bytes."""
META = ("tuning", "portmap", "bandwidth", "firewall", "sbr")

SIDES = ("in-process", "executables", "go", "go-bridge", "go-meta")
CONTAINERS = 50
EXEC_CONTAINERS = 8
"""As executables: each ADD and DEL runs seven plugin processes."""
PHASE_DEADLINE = 120.0
"""A burst of 50 that is not done by then is stuck: fail instead of hanging CI."""


class KnownPluginBug(Exception):  # noqa: N818 -- reads as "a plugin's known bug"
    """Raised by a strict-xfail test once it has shown that a failure is a known bug's."""


def chain_plugins(tmp: Path) -> list[JSON]:
    """The six plugins of the chain; host-local and tuning keep their files under *tmp*."""
    return [
        {
            "type": "bridge",
            "bridge": BRIDGE,
            "isDefaultGateway": True,
            "ipMasq": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": SUBNET}]],
                "dataDir": str(tmp / "ipam"),
            },
        },
        {"type": "tuning", "sysctl": dict([SYSCTL]), "dataDir": str(tmp / "tuning")},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {
            "type": "bandwidth",
            "ingressRate": RATE,
            "ingressBurst": BURST,
            "egressRate": RATE,
            "egressBurst": BURST,
        },
        {"type": "firewall", "backend": "iptables"},
        {"type": "sbr"},
    ]


def ours(types: Iterable[str], node: NetNS) -> InProcessExecutor:
    """cnilib's plugins of *types* only, in process, with *node* as their host."""
    plugins = {t: load_plugin(t) for t in types}
    return InProcessExecutor(plugins, builtins=False, installed=False, host_netns=node.path)


# ------------------------------------------------------------------------------ world


@dataclass
class World:
    """One side's node, client and container namespaces, its files and its CNI."""

    side: str
    node: NetNS
    client: NetNS
    make_ns: MakeNS
    tmp: Path
    cni: cnilib.CNI = field(init=False)
    path: list[str] = field(init=False)
    executor: Executor = field(init=False)
    ctrs: list[NetNS] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        go = SubprocessExecutor(wrapper=self.node.exec_prefix, timeout=30.0)
        self.path = [str(GO_PLUGINS)]
        if self.side == "in-process":
            self.executor = InProcessExecutor(host_netns=self.node.path)
        elif self.side == "executables":
            self.path = [str(install_plugins(self.tmp / "bin"))]
            self.executor = go
        elif self.side == "go":
            self.executor = go
        elif self.side == "go-bridge":
            self.executor = ChainExecutor(ours(META, self.node), go)
        else:
            self.executor = ChainExecutor(ours(("bridge", "host-local"), self.node), go)
        self.cni = cnilib.CNI(self.path, cache_dir=self.tmp / "cache", executor=self.executor)

    @classmethod
    def build(cls, side: str, make_ns: MakeNS, tmp: Path) -> World:
        """Fresh namespaces; the client's eth0 (``CLIENT_IP``) routes via the node's cli0."""
        node, client = make_ns(), make_ns()
        where = ("netns", client.name)
        node.exec("ip", "link", "add", "cli0", "type", "veth", "peer", "name", "eth0", *where)
        node.exec("ip", "addr", "add", f"{CLIENT_NODE_IP}/24", "dev", "cli0")
        node.exec("ip", "link", "set", "cli0", "up")
        client.exec("ip", "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        client.exec("ip", "link", "set", "eth0", "up")
        client.exec("ip", "route", "add", "default", "via", CLIENT_NODE_IP)
        return cls(side, node, client, make_ns, tmp)

    def ctr(self, i: int = 0) -> NetNS:
        """The i-th container namespace (made on first use)."""
        while len(self.ctrs) <= i:
            self.ctrs.append(self.make_ns())
        return self.ctrs[i]

    def conflist(self) -> cnilib.NetworkConfigList:
        """The chain, as one conflist."""
        raw = {"cniVersion": "1.0.0", "name": NETWORK, "plugins": chain_plugins(self.tmp)}
        return cnilib.conflist_from_bytes(json.dumps(raw).encode())

    def rt(self, i: int = 0) -> cnilib.RuntimeConf:
        """Container *i*'s eth0, asking portmap for ``HOST_PORT + i`` -> ``CONTAINER_PORT``."""
        mapping: JSON = {"hostPort": HOST_PORT + i, "containerPort": CONTAINER_PORT,
                         "protocol": "tcp"}  # fmt: skip
        return cnilib.RuntimeConf(
            container_id(i),
            self.ctr(i).path,
            "eth0",
            capability_args={"portMappings": [mapping]},
        )

    def dirs(self) -> list[Path]:
        """Where the plugins and the runtime keep files: IPAM store, tuning, cache."""
        return [self.tmp / "ipam", self.tmp / "tuning", self.tmp / "cache"]

    def snapshot(self) -> dict[str, set[str]]:
        """The node namespace and the side's files, one line per item (:func:`node_snapshot`)."""
        return node_snapshot(self.node, self.dirs())


def container_id(i: int) -> str:
    """The container ID of container number *i*."""
    return f"chain-{i:03d}"


@pytest.fixture
def make_world(cnilib_container_netns: MakeNS, tmp_path: Path) -> Callable[[str], World]:
    """A world for one side (every namespace is deleted after the test)."""
    return lambda side: World.build(side, cnilib_container_netns, tmp_path / side)


# ---------------------------------------------------------------------------- kernel

_SERVER = (
    "import socket,sys; s=socket.create_server(('0.0.0.0', int(sys.argv[1])));"
    " print('ready', flush=True); c,_=s.accept(); c.sendall(b'pong '+c.recv(16)); c.close()"
)
_CLIENT = (
    "import socket,sys; c=socket.create_connection((sys.argv[1], int(sys.argv[2])), 5);"
    " c.sendall(sys.argv[3].encode()); print(c.recv(32).decode())"
)


def reach_through_hostport(world: World, i: int) -> None:
    """The client connects to the node's hostPort of container *i*; a server listening in
    the container (on ``CONTAINER_PORT``) answers: portmap's DNAT and every hop work."""
    with subprocess.Popen(
        [*world.ctr(i).exec_prefix, sys.executable, "-c", _SERVER, str(CONTAINER_PORT)],
        stdout=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            assert server.stdout.readline().strip() == "ready"
            args = (CLIENT_NODE_IP, str(HOST_PORT + i), f"hello-{i}")
            out = world.client.exec(sys.executable, "-c", _CLIENT, *args).stdout
            assert out.strip() == f"pong hello-{i}"
        finally:
            server.kill()


def eth0_address(ns: NetNS) -> str:
    """The global IPv4 ``addr/prefix`` of eth0 in *ns*."""
    [link] = ip_json(ns, "-4", "addr", "show", "dev", "eth0")
    [addr] = [a for a in link["addr_info"] if a.get("scope") == "global"]
    return f"{addr['local']}/{addr['prefixlen']}"


def kinds(ns: NetNS) -> dict[str, str]:
    """Link name -> kind in *ns*."""
    return {
        link["ifname"]: link.get("linkinfo", {}).get("info_kind", "")
        for link in ip_json(ns, "-d", "link")
    }


def qdiscs(ns: NetNS, dev: str) -> set[str]:
    """The kinds of *dev*'s qdiscs."""
    return {q["kind"] for q in json.loads(ns.exec("tc", "-j", "qdisc", "show", "dev", dev).stdout)}


def sbr_rules(ns: NetNS) -> list[JSON]:
    """The policy rules with a source (sbr's) in *ns*."""
    return [r for r in ip_json(ns, "-4", "rule") if r.get("src", "all") != "all"]


def ruleset(ns: NetNS) -> str:
    """``iptables-save`` and ``nft list ruleset`` of *ns* (portmap and firewall may use either)."""
    return ns.exec("iptables-save").stdout + ns.exec("nft", "list", "ruleset").stdout


def assert_attached(world: World, i: int, res: cnilib.Result | None) -> tuple[str, str]:
    """Every plugin of the chain left its mark for container *i*; its address and host veth."""
    assert isinstance(res, ResultV100)
    ctr = world.ctr(i)
    address = eth0_address(ctr)
    ip = address.split("/")[0]
    assert [str(a.address) for a in res.ips] == [address]
    assert address.endswith("/24")
    # bridge: the host veth on the bridge; tuning: the sysctl in the container.
    host_veth = res.interfaces[1].name
    assert ip_json(world.node, "link", "show", host_veth)[0]["master"] == BRIDGE
    key, value = SYSCTL
    assert ctr.exec("cat", "/proc/sys/" + key.replace(".", "/")).stdout.strip() == value
    # bandwidth: tbf on the host veth (ingress), the ifb with its tbf (egress).
    ifbs = [n.name for n in res.interfaces if kinds(world.node).get(n.name) == "ifb"]
    assert len(ifbs) == 1, res.interfaces
    assert "tbf" in qdiscs(world.node, host_veth)
    assert "ingress" in qdiscs(world.node, host_veth)
    assert "tbf" in qdiscs(world.node, ifbs[0])
    # portmap: a DNAT to the container (iptables or nftables); firewall (its iptables
    # backend): the container's address accepted in CNI-FORWARD.
    assert f"{ip}:{CONTAINER_PORT}" in ruleset(world.node)
    forward = rf"^-A CNI-FORWARD -[sd] {re.escape(ip)}/32 .*-j ACCEPT$"
    assert re.search(forward, world.node.exec("iptables-save").stdout, re.MULTILINE)
    # sbr: a rule from the container's address to a table holding the default route.
    [rule] = sbr_rules(ctr)
    assert rule["src"] == ip
    table = ip_json(ctr, "route", "show", "table", str(rule["table"]))
    assert any(r["dst"] == "default" and r.get("gateway") == GATEWAY for r in table)
    return ip, host_veth


def assert_detached(world: World, i: int) -> None:
    """Nothing of container *i*'s attachment is left in its namespace."""
    ctr = world.ctr(i)
    assert set(kinds(ctr)) == {"lo"}
    assert sbr_rules(ctr) == []
    assert [r["table"] for r in ip_json(ctr, "route", "show", "table", "all")
            if r.get("table") not in ("local",)] == []  # fmt: skip


# What a node keeps after its last attachment is gone, by design: the bridge with
# its gateway address and routes, host-local's bookkeeping, cnilib's network lock
# file, and the top-level chains portmap and firewall make once per host
# (iptables-nft shows them in iptables-save and in the nftables ruleset). The
# sysctls (ip_forward) are not snapshot.
BY_DESIGN: dict[str, set[str]] = {
    "links": {f"{BRIDGE} bridge"},
    "addrs": {f"{BRIDGE} {GATEWAY}/24"},
    "routes": {
        f"type=unicast dst={SUBNET} dev={BRIDGE} protocol=kernel scope=link "
        f"prefsrc={GATEWAY} table=main",
        f"type=local dst={GATEWAY} dev={BRIDGE} protocol=kernel scope=host "
        f"prefsrc={GATEWAY} table=local",
        f"type=broadcast dst=10.79.0.255 dev={BRIDGE} protocol=kernel scope=link "
        f"prefsrc={GATEWAY} table=local",
        f"type=multicast dst=ff00::/8 dev={BRIDGE} protocol=kernel scope=global "
        "metric=256 table=local",
    },
    "files": {
        *(f"ipam/{NETWORK}/{name}" for name in IPAM_LEFTOVERS),
        f"cache/locks/{NETWORK}/.network",
    },
    "iptables": {
        "*filter",
        "*nat",
        ":FORWARD ACCEPT",
        ":INPUT ACCEPT",
        ":OUTPUT ACCEPT",
        ":POSTROUTING ACCEPT",
        ":PREROUTING ACCEPT",
        # portmap
        ":CNI-HOSTPORT-DNAT -",
        ":CNI-HOSTPORT-MASQ -",
        ":CNI-HOSTPORT-SETMARK -",
        "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        '-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" '
        "-j CNI-HOSTPORT-MASQ",
        "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
        '-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" '
        "-j MARK --set-xmark 0x2000/0x2000",
        # firewall
        ":CNI-ADMIN -",
        ":CNI-FORWARD -",
        '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD',
        '-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN',
    },
    # The same chains as iptables-nft writes them into nftables.
    "nft": {
        "ip filter| table ip filter {",
        "ip filter| chain FORWARD {",
        "ip filter| type filter hook forward priority filter; policy accept;",
        "ip filter| counter jump CNI-FORWARD",
        "ip filter| chain CNI-FORWARD {",
        "ip filter| counter jump CNI-ADMIN",
        "ip filter| chain CNI-ADMIN {",
        "ip nat| table ip nat {",
        "ip nat| chain PREROUTING {",
        "ip nat| type nat hook prerouting priority dstnat; policy accept;",
        "ip nat| fib daddr type local counter jump CNI-HOSTPORT-DNAT",
        "ip nat| chain OUTPUT {",
        "ip nat| type nat hook output priority -100; policy accept;",
        "ip nat| chain POSTROUTING {",
        "ip nat| type nat hook postrouting priority srcnat; policy accept;",
        "ip nat| counter jump CNI-HOSTPORT-MASQ",
        "ip nat| chain CNI-HOSTPORT-DNAT {",
        "ip nat| chain CNI-HOSTPORT-MASQ {",
        "ip nat| meta mark & 0x00002000 == 0x00002000 counter masquerade",
        "ip nat| chain CNI-HOSTPORT-SETMARK {",
        "ip nat| counter meta mark set mark or 0x2000",
        "ip6 nat| table ip6 nat {",
    },
}


def leftovers(before: dict[str, set[str]], after: dict[str, set[str]]) -> JSON:
    """What *after* has that *before* had not, less the state kept by design; and what
    it lost (nothing may be lost)."""
    out: JSON = {}
    for kind, (added, removed) in snapshot_diff(before, after).items():
        left = added - BY_DESIGN.get(kind, set())
        if left or removed:
            out[kind] = {"left": sorted(left), "lost": sorted(removed)}
    return out


def tidy_locks(world: World, conf: cnilib.NetworkConfigList) -> None:
    """GC of the network once no attachment is cached: it removes the attachments' lock
    files, which DEL keeps by design (docs/reliability.md, "Locks across processes")."""
    assert world.cni.cached_attachments() == []
    world.cni.gc_network_list(conf, [])


# ------------------------------------------------------------------------------ tests

_BRIDGE_CHECK_AFTER_SBR = pytest.mark.xfail(
    raises=KnownPluginBug,
    strict=True,
    reason="Go's bridge CHECK looks for the container's subnet route in the main table only "
    "(ip.ValidateExpectedInterfaceIPs, 1.1.1 and every later release), and sbr moved it "
    "to table 100",
)
_PORTMAP_819 = pytest.mark.xfail(
    raises=KnownPluginBug,
    strict=True,
    reason="portmap 1.1.1 CHECK looks for an ipv6 DNAT chain it never made "
    "(`could not check ipv6 dnat`) on hosts with ip6tables (plugins#819, fixed in 1.3.0)",
)


_BRIDGE_WORDS, _PORTMAP_WORDS = "Failed to find Gateway", "could not check ipv6 dnat"
CHECK_BUGS = {
    "go": (_BRIDGE_CHECK_AFTER_SBR, _BRIDGE_WORDS),
    "go-bridge": (_BRIDGE_CHECK_AFTER_SBR, _BRIDGE_WORDS),
    "go-meta": (_PORTMAP_819, _PORTMAP_WORDS),  # cnilib's bridge finds the moved route
}
"""The full chain's CHECK: the sides where a Go plugin's known bug makes it fail, and
the words of its error."""


def raise_check_error(
    side: str, error: cnilib.CNIError | None, bugs: Mapping[str, tuple[pytest.MarkDecorator, str]]
) -> None:
    """Raise CHECK's *error*, as :class:`KnownPluginBug` if it is the known bug of *side*."""
    if error is None:
        return
    if side in bugs and bugs[side][1] in str(error):
        raise KnownPluginBug(str(error)) from error
    raise error


@pytest.mark.parametrize(
    "side", [pytest.param(s, marks=CHECK_BUGS[s][0] if s in CHECK_BUGS else ()) for s in SIDES]
)
def test_add_check_del(make_world: Callable[[str], World], side: str) -> None:
    """ADD: every plugin's mark in the kernel, and the hostPort reaches a server in the
    container; CHECK; DEL: nothing of the attachment is left, in the container, the
    node or on disk. A CHECK failure is raised last, once all the rest has passed."""
    world = make_world(side)
    check_error = add_check_del(world, world.conflist(), check_attached=True)
    raise_check_error(side, check_error, CHECK_BUGS)


def add_check_del(
    world: World, conf: cnilib.NetworkConfigList, *, check_attached: bool
) -> cnilib.CNIError | None:
    """ADD (the container reached through the hostPort; with ``check_attached``, its
    whole state asserted), CHECK, DEL, then nothing left anywhere; CHECK's error, if
    any, is returned for the caller to judge once all the rest has passed."""
    before = world.snapshot()
    res = world.cni.add_network_list(conf, world.rt())
    if check_attached:
        assert_attached(world, 0, res)
    reach_through_hostport(world, 0)
    check_error: cnilib.CNIError | None = None
    try:
        world.cni.check_network_list(conf, world.rt())
    except cnilib.CNIError as exc:
        check_error = exc
    world.cni.delete_network_list(conf, world.rt())
    assert_detached(world, 0)
    tidy_locks(world, conf)
    assert leftovers(before, world.snapshot()) == {}
    return check_error


NO_SBR_CHECK_BUGS = dict.fromkeys(("go", "go-meta"), (_PORTMAP_819, _PORTMAP_WORDS))
"""The chain without sbr: Go's portmap is the only known failure of its CHECK."""


@pytest.mark.parametrize(
    "side",
    [
        pytest.param(s, marks=NO_SBR_CHECK_BUGS[s][0] if s in NO_SBR_CHECK_BUGS else ())
        for s in SIDES
    ],
)
def test_check_without_sbr(make_world: Callable[[str], World], side: str) -> None:
    """The same chain but sbr: CHECK of bridge, tuning, portmap (with its mapping),
    bandwidth and firewall passes after ADD, and DEL leaves nothing."""
    world = make_world(side)
    raw = {"cniVersion": "1.0.0", "name": NETWORK, "plugins": chain_plugins(world.tmp)[:-1]}
    conf = cnilib.conflist_from_bytes(json.dumps(raw).encode())
    check_error = add_check_del(world, conf, check_attached=False)
    raise_check_error(side, check_error, NO_SBR_CHECK_BUGS)


# ------------------------------------------------------------------- 50 at once


async def _within(deadline: float, work: Awaitable[T]) -> T:
    try:
        async with asyncio.timeout(deadline):
            return await work
    except TimeoutError:
        raise AssertionError(f"burst not done after {deadline:g}s") from None


@pytest.mark.parametrize(
    ("side", "count"),
    [("in-process", CONTAINERS), ("executables", EXEC_CONTAINERS)],
    ids=[f"in-process-{CONTAINERS}", f"executables-{EXEC_CONTAINERS}"],
)
def test_containers_at_once(make_world: Callable[[str], World], side: str, count: int) -> None:
    """*count* concurrent ADDs of the chain (one AsyncCNI), each container with its own
    address, hostPort, ifb and sbr rule; then *count* concurrent DELs, after which the node
    has nothing of any of them: no veth, ifb, qdisc, rule, chain, nft rule or file.
    In process, 50 at once share the node's worker threads; as executables, every plugin
    call is a process of its own, so the host tools' locks are what keeps them apart."""
    world = make_world(side)
    conf = world.conflist()
    for i in range(count):
        world.ctr(i)
    before = world.snapshot()
    cni = cnilib.AsyncCNI(world.path, cache_dir=world.tmp / "cache", executor=world.executor)

    async def attach() -> list[cnilib.Result | None]:
        adds = (cni.add_network_list(conf, world.rt(i)) for i in range(count))
        return list(await _within(PHASE_DEADLINE, asyncio.gather(*adds)))

    results = asyncio.run(attach())
    marks = [assert_attached(world, i, res) for i, res in enumerate(results)]
    assert len({ip for ip, _ in marks}) == count
    node_kinds = kinds(world.node)
    assert sum(kind == "ifb" for kind in node_kinds.values()) == count
    assert sum(kind == "veth" for kind in node_kinds.values()) == count + 1  # + cli0
    for i in sorted({0, count // 2, count - 1}):
        reach_through_hostport(world, i)

    async def detach() -> None:
        dels = (cni.delete_network_list(conf, world.rt(i)) for i in range(count))
        await _within(PHASE_DEADLINE, asyncio.gather(*dels))

    asyncio.run(detach())
    for i in range(count):
        assert_detached(world, i)
    tidy_locks(world, conf)
    assert leftovers(before, world.snapshot()) == {}
