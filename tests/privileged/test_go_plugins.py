"""cnilib driving Debian's Go reference plugins (1.1.1, /usr/lib/cni) against a real kernel.

Every test builds its own world: a node namespace that plays the host (the
plugins are exec'd inside it through ``ip netns exec``) and a container
namespace beside it; IPAM and cache directories live under ``tmp_path``.
Known failures of the 1.1.1 plugins are strict xfails that raise
:class:`GoPluginBug` only after showing that the kernel state is right.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.results import ResultV040, ResultV100
from cnilib.testing import NetNS, read_recording
from tests.privileged._kernel import (
    GO_PLUGINS,
    JSON,
    TmpLayout,
    addresses,
    bridge_ports,
    go_plugin_marks,
    ip_json,
    ipam_files,
    iptables_save,
    links,
)

DATA = Path(__file__).resolve().parent.parent / "data"
GO_CACHE_FILE = DATA / "cache" / "go-written" / "pa-cnitool-f5a5ada46aa61a4e2abe-eth0"

pytestmark = go_plugin_marks()

AnyResult = ResultV040 | ResultV100


class GoPluginBug(Exception):  # noqa: N818 -- reads as "the Go plugin has a bug"
    """Raised by a strict-xfail test once it has shown that a failure is the plugin's."""


# --------------------------------------------------------------------------- helpers


def routes(ns: NetNS, family: str = "-4") -> list[JSON]:
    """The main-table routes of *ns* for one family (``-4`` or ``-6``)."""
    return ip_json(ns, family, "route")


def sysctl(ns: NetNS, key: str) -> str:
    """Read a ``/proc/sys`` value as seen from inside *ns*."""
    return ns.exec("cat", "/proc/sys/" + key.replace(".", "/")).stdout.strip()


def addrs(res: cnilib.Result) -> list[str]:
    """The CIDR strings of a result's ``ips`` (any version with ``ips``)."""
    assert isinstance(res, ResultV040 | ResultV100)
    return [str(ip.address) for ip in res.ips]


@dataclass
class World(TmpLayout):
    """One test's node + container namespaces, directories and a cnilib.CNI bound to them."""

    node: NetNS
    ctr: NetNS
    tmp: Path
    cache_dir: Path
    bin_dir: Path
    cni: cnilib.CNI = field(init=False)

    def __post_init__(self) -> None:
        self.cni = cnilib.CNI(
            [str(self.bin_dir), str(GO_PLUGINS)],
            cache_dir=str(self.cache_dir),
            executor=cnilib.SubprocessExecutor(wrapper=self.node.exec_prefix, timeout=30.0),
        )

    def conflist(
        self, plugins: Sequence[JSON], *, name: str = "gotest", version: str = "1.0.0"
    ) -> cnilib.NetworkConfigList:
        """A conflist whose IPAM ``dataDir``, tuning ``dataDir`` and recorder log point into tmp."""
        fixed: list[JSON] = []
        for plugin in plugins:
            p = dict(plugin)
            if "ipam" in p:
                p["ipam"] = {**p["ipam"], "dataDir": str(self.data_dir)}
            if p["type"] == "tuning":
                p.setdefault("dataDir", str(self.tmp / "tuning"))
            if p["type"] == "recorder":
                p.setdefault("recorder", {"log": str(self.log)})
            fixed.append(p)
        raw = {"cniVersion": version, "name": name, "plugins": fixed}
        return cnilib.conflist_from_bytes(json.dumps(raw, indent=1).encode())

    def rt(self, container_id: str = "ctr1", ifname: str = "eth0", **kw: Any) -> cnilib.RuntimeConf:
        """A RuntimeConf for the container namespace."""
        return cnilib.RuntimeConf(
            container_id=container_id, netns=self.ctr.path, ifname=ifname, **kw
        )

    def add(self, conf: cnilib.NetworkConfigList, rt: cnilib.RuntimeConf) -> AnyResult:
        """ADD through cnilib; the Go plugins answer 0.3.x/0.4.0 or 1.0.0 results."""
        res = self.cni.add_network_list(conf, rt)
        assert isinstance(res, ResultV040 | ResultV100)
        return res

    def ipam_files(self, network: str) -> set[str]:
        """The names in host-local's store for *network*."""
        return ipam_files(self.data_dir, network)

    def cache_file(self, network: str, container_id: str = "ctr1", ifname: str = "eth0") -> Path:
        """Where libcni (and so cnilib) keeps the result of one attachment."""
        return self.cache_dir / "results" / f"{network}-{container_id}-{ifname}"


@pytest.fixture
def world(
    cnilib_node_netns: NetNS,
    cnilib_container_netns: Callable[[], NetNS],
    tmp_path: Path,
    cnilib_cache_dir: Path,
    cnilib_cni_bin_dir: Path,
) -> World:
    """A node namespace, one container namespace and a cnilib.CNI that execs plugins in the node."""
    return World(
        cnilib_node_netns, cnilib_container_netns(), tmp_path, cnilib_cache_dir, cnilib_cni_bin_dir
    )


def bridge(subnets: Sequence[str], **extra: Any) -> JSON:
    """A bridge+host-local plugin entry with one range set per subnet and default routes."""
    defaults = [{"dst": "::/0" if ":" in s else "0.0.0.0/0"} for s in subnets]
    return {
        "type": "bridge",
        "bridge": "cnitest0",
        "isGateway": True,
        **extra,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": s}] for s in subnets],
            "routes": defaults,
        },
    }


V4 = "10.250.1.0/24"
V6 = "fd00:250::/64"

# ------------------------------------------------------------------ bridge + host-local


class TestBridgeHostLocal:
    """bridge + host-local: the attachment appears in the kernel, CHECK sees it, DEL removes it."""

    @pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
    def test_add_configures_container_bridge_store_and_cache(
        self, world: World, version: str
    ) -> None:
        """ADD gives the container its address and default route and enslaves the veth."""
        conf = world.conflist([bridge([V4])], version=version)
        res = world.add(conf, world.rt())

        assert str(res.cni_version) == version
        assert addrs(res) == ["10.250.1.2/24"]
        assert str(res.ips[0].gateway) == "10.250.1.1"
        assert res.ips[0].interface == 2
        br, host_veth, ctr_if = res.interfaces
        assert (br.name, ctr_if.name, ctr_if.sandbox) == ("cnitest0", "eth0", world.ctr.path)

        ctr_links = links(world.ctr)
        assert ctr_links["eth0"]["address"] == ctr_if.mac
        assert addresses(world.ctr, "eth0") == {"10.250.1.2/24"}
        default = [r for r in routes(world.ctr) if r["dst"] == "default"]
        assert [(r["gateway"], r["dev"]) for r in default] == [("10.250.1.1", "eth0")]
        assert bridge_ports(world.node)[host_veth.name] == "cnitest0"
        assert addresses(world.node, "cnitest0") == {"10.250.1.1/24"}

        assert "10.250.1.2" in world.ipam_files("gotest")
        assert (world.data_dir / "gotest" / "10.250.1.2").read_bytes() == b"ctr1\r\neth0"
        assert world.cache_file("gotest").is_file()
        cached = world.cni.cached_result(conf, world.rt())
        assert cached is not None
        assert addrs(cached) == ["10.250.1.2/24"]

    def test_check_passes_then_notices_a_removed_address(self, world: World) -> None:
        """CHECK succeeds on a fresh attachment and fails once the container lost its address."""
        conf = world.conflist([bridge([V4])])
        world.add(conf, world.rt())
        world.cni.check_network_list(conf, world.rt())

        world.ctr.exec("ip", "addr", "del", "10.250.1.2/24", "dev", "eth0")
        with pytest.raises(cnilib.CNIError, match=r"10\.250\.1\.2"):
            world.cni.check_network_list(conf, world.rt())

    def test_check_refused_for_a_pre_040_config(self, world: World) -> None:
        """A 0.3.1 conflist cannot be CHECKed; no plugin is asked."""
        conf = world.conflist([bridge([V4]), {"type": "recorder"}], version="0.3.1")
        world.add(conf, world.rt())
        with pytest.raises(cnilib.CNIError, match="does not support the CHECK command"):
            world.cni.check_network_list(conf, world.rt())
        assert [e["verb"] for e in read_recording(world.log)] == ["ADD"]

    def test_del_removes_link_ip_and_cache_and_repeats(self, world: World) -> None:
        """DEL removes both veth ends, the IP file and the cache entry, and may be repeated."""
        conf = world.conflist([bridge([V4])])
        res = world.add(conf, world.rt())
        host_veth = res.interfaces[1].name

        world.cni.delete_network_list(conf, world.rt())

        assert "eth0" not in links(world.ctr)
        assert host_veth not in links(world.node)
        assert "10.250.1.2" not in world.ipam_files("gotest")
        assert not world.cache_file("gotest").exists()
        assert world.cni.cached_result(conf, world.rt()) is None
        world.cni.delete_network_list(conf, world.rt())

    def test_second_container_gets_the_next_address(self, world: World) -> None:
        """Two attachments on one network get distinct addresses on the same bridge."""
        conf = world.conflist([bridge([V4])])
        first = world.add(conf, world.rt("ctr1"))
        second = world.add(conf, world.rt("ctr2", ifname="eth1"))
        assert [*addrs(first), *addrs(second)] == ["10.250.1.2/24", "10.250.1.3/24"]
        ports = bridge_ports(world.node)
        assert ports[first.interfaces[1].name] == ports[second.interfaces[1].name] == "cnitest0"
        world.cni.delete_network_list(conf, world.rt("ctr1"))
        assert world.ipam_files("gotest") & {"10.250.1.2", "10.250.1.3"} == {"10.250.1.3"}

    def test_dual_stack_add_check_del(self, world: World) -> None:
        """A v4+v6 attachment gets both addresses and both default routes; DEL frees both."""
        conf = world.conflist([bridge([V4, V6])])
        res = world.add(conf, world.rt())

        assert sorted(addrs(res)) == ["10.250.1.2/24", "fd00:250::2/64"]
        assert addresses(world.ctr, "eth0") == {"10.250.1.2/24", "fd00:250::2/64"}
        v6_default = [r for r in routes(world.ctr, "-6") if r["dst"] == "default"]
        assert [r["gateway"] for r in v6_default] == ["fd00:250::1"]
        assert [r["gateway"] for r in routes(world.ctr) if r["dst"] == "default"] == ["10.250.1.1"]

        world.cni.check_network_list(conf, world.rt())
        world.cni.delete_network_list(conf, world.rt())
        assert world.ipam_files("gotest") & {"10.250.1.2", "fd00:250::2"} == set()
        assert "eth0" not in links(world.ctr)


class TestOtherVerbs:
    """VERSION, validation, GC and version mismatches against the Go plugins."""

    def test_version_info_of_go_bridge(self, world: World) -> None:
        """Go bridge 1.1.1 supports 0.1.0 to 1.0.0 (exec'd inside the node namespace)."""
        info = world.cni.get_version_info("bridge")
        assert [str(v) for v in info.supported_versions] == [
            "0.1.0",
            "0.2.0",
            "0.3.0",
            "0.3.1",
            "0.4.0",
            "1.0.0",
        ]

    def test_validate_rejects_a_1_1_0_list_for_go_plugins(self, world: World) -> None:
        """A 1.1.0 conflist does not validate against plugins that stop at 1.0.0."""
        conf = world.conflist([bridge([V4])], version="1.1.0")
        with pytest.raises(
            cnilib.CNIError, match=r'bridge does not support config version "1\.1\.0"'
        ):
            world.cni.validate_network_list(conf)

    def test_add_of_unsupported_version_fails_with_code_1_and_no_cache(self, world: World) -> None:
        """ADD of a 1.1.0 list: Go bridge answers code 1, wrapped as libcni does; nothing cached."""
        conf = world.conflist([bridge([V4])], version="1.1.0")
        with pytest.raises(cnilib.PluginError) as info:
            world.cni.add_network_list(conf, world.rt())
        assert info.value.code == 1
        assert str(info.value).startswith('plugin type="bridge" failed (add): ')
        assert not world.cache_file("gotest").exists()
        assert "eth0" not in links(world.ctr)

    def test_gc_deletes_only_stale_attachments(self, world: World) -> None:
        """GC DELs the cached attachment that is not valid and keeps the valid one."""
        conf = world.conflist([bridge([V4])])
        keep = world.add(conf, world.rt("keep", ifname="eth0"))
        stale = world.add(conf, world.rt("stale", ifname="eth1"))

        world.cni.gc_network_list(conf, valid_attachments=[("keep", "eth0")])

        ctr_links = links(world.ctr)
        assert "eth0" in ctr_links
        assert "eth1" not in ctr_links
        assert stale.interfaces[1].name not in links(world.node)
        assert world.ipam_files("gotest") & {"10.250.1.2", "10.250.1.3"} == {"10.250.1.2"}
        assert addrs(keep) == ["10.250.1.2/24"]
        assert world.cache_file("gotest", "keep").exists()
        assert not world.cache_file("gotest", "stale", "eth1").exists()


# --------------------------------------------------------------------------- ptp, loopback


class TestPtp:
    """ptp + host-local: a point-to-point veth with host routes on both sides."""

    def test_add_check_del(self, world: World) -> None:
        """ADD routes the container via the gateway /32 and the node via the host veth."""
        ipam = {
            "type": "host-local",
            "ranges": [[{"subnet": "10.250.2.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
        }
        conf = world.conflist([{"type": "ptp", "ipam": ipam}], name="ptptest")
        res = world.add(conf, world.rt())

        host_veth, ctr_if = res.interfaces
        assert ctr_if.sandbox == world.ctr.path
        assert str(res.ips[0].address) == "10.250.2.2/24"
        assert res.ips[0].interface == 1
        ctr_routes = {r["dst"]: r for r in routes(world.ctr)}
        assert ctr_routes["default"]["gateway"] == "10.250.2.1"
        assert ctr_routes["10.250.2.1"]["scope"] == "link"
        node_routes = {r["dst"]: r["dev"] for r in routes(world.node)}
        assert node_routes["10.250.2.2"] == host_veth.name
        assert addresses(world.node, host_veth.name) == {"10.250.2.1/32"}

        world.cni.check_network_list(conf, world.rt())
        world.cni.delete_network_list(conf, world.rt())
        assert host_veth.name not in links(world.node)
        assert "10.250.2.2" not in world.ipam_files("ptptest")
        assert not world.cache_file("ptptest").exists()


class TestLoopback:
    """loopback: brings ``lo`` up on ADD, checks it, takes it down on DEL."""

    def test_add_check_del(self, world: World) -> None:
        """ADD sets lo up (CHECK passes), DEL sets it down (CHECK then fails)."""
        world.ctr.exec("ip", "link", "set", "lo", "down")
        conf = world.conflist([{"type": "loopback"}], name="lo")
        res = world.add(conf, world.rt(ifname="lo"))

        assert [(i.name, i.sandbox) for i in res.interfaces] == [("lo", world.ctr.path)]
        assert "UP" in links(world.ctr)["lo"]["flags"]
        world.cni.check_network_list(conf, world.rt(ifname="lo"))

        world.cni.delete_network_list(conf, world.rt(ifname="lo"))
        assert "UP" not in links(world.ctr)["lo"]["flags"]
        with pytest.raises(cnilib.PluginError, match="loopback interface is down"):
            world.cni.check_network_list(conf, world.rt(ifname="lo"))


# ---------------------------------------------------------------------------- the chain

PORT_MAPPINGS = [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]
RATE = 1_000_000
BURST = 100_000


def chain_plugins(*, ifname_placeholder: bool = False) -> list[JSON]:
    """bridge+host-local (ipMasq) -> tuning -> portmap -> firewall -> bandwidth."""
    iface = "IFNAME" if ifname_placeholder else "eth0"
    return [
        bridge([V4], ipMasq=True),
        {"type": "tuning", "sysctl": {f"net.ipv4.conf.{iface}.accept_redirects": "0"}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "firewall", "backend": "iptables"},
        {
            "type": "bandwidth",
            "ingressRate": RATE,
            "ingressBurst": BURST,
            "egressRate": RATE,
            "egressBurst": BURST,
        },
    ]


def mapped_rt(world: World) -> cnilib.RuntimeConf:
    """A RuntimeConf that asks portmap for one TCP port mapping."""
    return world.rt(capability_args={"portMappings": PORT_MAPPINGS})


class TestChain:
    """bridge+host-local -> tuning -> portmap -> firewall -> bandwidth, through cnilib."""

    def test_add_applies_every_plugin(self, world: World) -> None:
        """Each plugin of the chain leaves its mark: sysctl, DNAT, FORWARD accept, tbf, ifb."""
        conf = world.conflist(chain_plugins(), name="chain")
        res = world.add(conf, mapped_rt(world))

        names = [i.name for i in res.interfaces]
        assert names[:3] == ["cnitest0", names[1], "eth0"]
        assert len(names) == 4
        assert names[3].startswith("bwp")  # bandwidth's ifb
        assert addresses(world.ctr, "eth0") == {"10.250.1.2/24"}
        assert sysctl(world.ctr, "net.ipv4.conf.eth0.accept_redirects") == "0"

        nat = iptables_save(world.node, "nat")
        assert "--dport 18080 -j DNAT --to-destination 10.250.1.2:80" in nat
        assert "-A POSTROUTING -s 10.250.1.2/32" in nat  # bridge's ipMasq
        flt = iptables_save(world.node, "filter")
        assert "-A CNI-FORWARD -s 10.250.1.2/32 -j ACCEPT" in flt

        host_veth = names[1]
        qdiscs = world.node.exec("tc", "qdisc", "show", "dev", host_veth).stdout
        assert "qdisc tbf" in qdiscs
        assert names[3] in links(world.node)

    def test_check_passes_without_port_mappings(self, world: World) -> None:
        """With no mappings portmap passes through, and CHECK of the whole chain succeeds."""
        conf = world.conflist(chain_plugins(), name="chain")
        world.add(conf, world.rt())
        world.cni.check_network_list(conf, world.rt())

    def test_del_undoes_every_plugin(self, world: World) -> None:
        """DEL (in reverse) removes DNAT, firewall and masq rules, the ifb, the veth and the IP."""
        conf = world.conflist(chain_plugins(), name="chain")
        res = world.add(conf, mapped_rt(world))
        ifb, host_veth = res.interfaces[3].name, res.interfaces[1].name

        world.cni.delete_network_list(conf, mapped_rt(world))

        nat = iptables_save(world.node, "nat")
        assert "10.250.1.2" not in nat
        assert "10.250.1.2" not in iptables_save(world.node, "filter")
        node_links = links(world.node)
        assert ifb not in node_links
        assert host_veth not in node_links
        assert "eth0" not in links(world.ctr)
        assert "10.250.1.2" not in world.ipam_files("chain")
        assert not world.cache_file("chain").exists()

    def test_teardown_without_capability_args_uses_the_recorded_ones(self, world: World) -> None:
        """setup_networks with port mappings, teardown without: portmap still gets
        them (from the cache entry) and removes its DNAT rule before host-local
        frees the address it points at."""
        conf = world.conflist([bridge([V4]), chain_plugins()[2]], name="pm")
        world.cni.setup_networks(
            "ctr1", world.ctr.path, [conf], capability_args=mapped_rt(world).capability_args
        )
        assert "--dport 18080" in iptables_save(world.node, "nat")

        world.cni.teardown_networks("ctr1", world.ctr.path, [conf])

        assert "18080" not in iptables_save(world.node, "nat")
        assert "10.250.1.2" not in world.ipam_files("pm")

    @pytest.mark.xfail(
        raises=GoPluginBug,
        strict=True,
        reason="portmap 1.1.1 CHECK looks for an ipv6 DNAT chain it never made "
        "(`could not check ipv6 dnat`) on hosts with ip6tables; fixed upstream in 1.3.0",
    )
    def test_check_with_port_mappings(self, world: World) -> None:
        """CHECK of the chain with a port mapping succeeds (fails in Go portmap 1.1.1)."""
        conf = world.conflist(chain_plugins(), name="chain")
        world.add(conf, mapped_rt(world))
        assert "--to-destination 10.250.1.2:80" in iptables_save(world.node, "nat")
        try:
            world.cni.check_network_list(conf, mapped_rt(world))
        except cnilib.PluginError as exc:
            if "could not check ipv6 dnat" in str(exc):
                raise GoPluginBug(str(exc)) from exc
            raise

    @pytest.mark.xfail(
        raises=GoPluginBug,
        strict=True,
        reason="tuning 1.1.1 replaces the IFNAME sysctl placeholder on ADD but not on CHECK",
    )
    def test_check_with_ifname_placeholder(self, world: World) -> None:
        """CHECK of a tuning sysctl written with IFNAME succeeds (fails in Go tuning 1.1.1)."""
        conf = world.conflist(chain_plugins(ifname_placeholder=True), name="chain")
        world.add(conf, world.rt())
        assert sysctl(world.ctr, "net.ipv4.conf.eth0.accept_redirects") == "0"
        try:
            world.cni.check_network_list(conf, world.rt())
        except cnilib.PluginError as exc:
            if "/IFNAME/" in str(exc):
                raise GoPluginBug(str(exc)) from exc
            raise


class TestSbr:
    """bridge+host-local -> sbr: ADD and DEL work; CHECK is a known failure of the peers."""

    def test_add_moves_routes_to_table_100_and_del_removes_rule(self, world: World) -> None:
        """sbr adds a source rule to table 100 on ADD and removes it on DEL."""
        conf = world.conflist([bridge([V4]), {"type": "sbr"}], name="sbrtest")
        world.add(conf, world.rt())
        rules = ip_json(world.ctr, "rule")
        assert any(r.get("src") == "10.250.1.2" and r.get("table") == "100" for r in rules)
        world.cni.delete_network_list(conf, world.rt())
        assert not any(r.get("src") == "10.250.1.2" for r in ip_json(world.ctr, "rule"))

    @pytest.mark.xfail(
        raises=GoPluginBug,
        strict=True,
        reason="after sbr moved the routes to table 100, bridge 1.1.1 CHECK looks only in "
        "the main table (`Failed to find Gateway`)",
    )
    def test_check(self, world: World) -> None:
        """CHECK of bridge -> sbr succeeds (bridge 1.1.1 fails it: routes moved by sbr)."""
        conf = world.conflist([bridge([V4]), {"type": "sbr"}], name="sbrtest")
        world.add(conf, world.rt())
        table_100 = ip_json(world.ctr, "route", "show", "table", "100")
        assert any(r.get("gateway") == "10.250.1.1" for r in table_100)
        try:
            world.cni.check_network_list(conf, world.rt())
        except cnilib.PluginError as exc:
            if "Failed to find Gateway" in str(exc):  # bridge's words; sbr CHECK is a no-op
                raise GoPluginBug(str(exc)) from exc
            raise


# ------------------------------------------------------------- a cache written by Go libcni

GO_CONTAINER_ID = "cnitool-f5a5ada46aa61a4e2abe"


def exec_go_plugin(node: NetNS, verb: str, conf: Mapping[str, Any], env: Mapping[str, str]) -> JSON:
    """Run one Go plugin as Go libcni would (without cnilib); return its stdout as JSON."""
    proc = subprocess.run(
        [*node.exec_prefix, str(GO_PLUGINS / str(conf["type"]))],
        input=json.dumps(conf).encode(),
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": verb, **env},
        capture_output=True,
        check=True,
    )
    return dict(json.loads(proc.stdout)) if proc.stdout.strip() else {}


class TestGoWrittenCache:
    """A result cache file written by Go libcni drives cnilib's DEL."""

    def test_del_uses_go_cache_as_prev_result(self, world: World) -> None:
        """cnilib reads Go's cache entry, sends its result as prevResult on DEL, then removes it."""
        go_entry = json.loads(GO_CACHE_FILE.read_bytes())
        raw_list = json.loads(base64.b64decode(go_entry["config"]))
        assert raw_list["name"] == "pa"
        [go_bridge] = raw_list["plugins"]
        go_bridge["ipam"]["dataDir"] = str(world.data_dir)

        # Recreate the state Go libcni + bridge left behind: bridge cnipa0, 10.88.10.2.
        plugin_conf = {**go_bridge, "cniVersion": raw_list["cniVersion"], "name": "pa"}
        env = {
            "CNI_CONTAINERID": GO_CONTAINER_ID,
            "CNI_NETNS": world.ctr.path,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(GO_PLUGINS),
        }
        added = exec_go_plugin(world.node, "ADD", plugin_conf, env)
        assert added["ips"][0]["address"] == "10.88.10.2/24"
        assert "10.88.10.2" in world.ipam_files("pa")

        results = world.cache_dir / "results"
        results.mkdir(mode=0o700)
        shutil.copyfile(GO_CACHE_FILE, results / GO_CACHE_FILE.name)

        # The current list: Go's config (dataDir rewritten) plus the recorder, which DEL runs first.
        raw_list["plugins"].append({"type": "recorder", "recorder": {"log": str(world.log)}})
        conf = cnilib.conflist_from_bytes(json.dumps(raw_list).encode())
        rt = world.rt(container_id=GO_CONTAINER_ID)

        cached = world.cni.cached_result(conf, rt)
        assert cached is not None
        assert addrs(cached) == ["10.88.10.2/24"]

        world.cni.delete_network_list(conf, rt)

        [entry] = read_recording(world.log)
        assert entry["verb"] == "DEL"
        stdin = entry["stdin"]
        assert isinstance(stdin, dict)
        prev = dict(stdin["prevResult"])
        want = dict(go_entry["result"])
        prev.pop("dns", None)  # Go writes "dns":{}; an empty DNS may be omitted
        want.pop("dns", None)
        assert prev == want
        assert "eth0" not in links(world.ctr)
        assert "10.88.10.2" not in world.ipam_files("pa")
        assert "10.88.10.2" not in iptables_save(world.node, "nat")
        assert not (results / GO_CACHE_FILE.name).exists()
