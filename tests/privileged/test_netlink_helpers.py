"""cnilib.netlink's helpers (links, addresses, routes, sysctls) against the real kernel.

Each runs on a worker inside a throwaway namespace and is checked with ``ip -j``
(or ``sysctl``) from outside; the machine's own namespace is only ever read.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cnilib import netlink as nl
from cnilib.errors import ErrorCode, PluginError
from cnilib.netlink._errors import netlink_errors
from cnilib.testing import NetNS
from tests.privileged._kernel import ip_json, link_names

JSON = dict[str, Any]
MakeNS = Callable[[], NetNS]


class TestLinks:
    """Link helpers, checked with ``ip -j link``."""

    def test_veth_lifecycle(self, cnilib_container_netns: MakeNS) -> None:
        """Create a veth pair across namespaces, configure it, enslave it, delete it."""
        node, ctr = cnilib_container_netns(), cnilib_container_netns()

        def build() -> tuple[nl.Link, nl.Link]:
            veth = nl.add_veth("cni-h0", "eth0", peer_netns=ctr.path, mtu=1400)
            bridge = nl.add_bridge("cni-br0")
            nl.set_link_mtu(veth, 1300)
            nl.set_link_mac(veth, "02:00:00:00:00:aa")
            nl.set_link_master(veth, bridge)
            nl.set_link_up("cni-h0")
            nl.set_link_up(bridge)
            return nl.get_link("cni-h0"), bridge

        veth, bridge = nl.run_in_netns(node.path, build)

        assert "veth" == veth.kind
        assert "bridge" == bridge.kind
        assert veth.up
        assert bridge.index == veth.master
        [info] = ip_json(node, "-d", "link", "show", "cni-h0")
        assert 1300 == info["mtu"]
        assert "02:00:00:00:00:aa" == info["address"]
        assert "cni-br0" == info["master"]
        assert "UP" in info["flags"]
        [peer] = ip_json(ctr, "link", "show", "eth0")
        assert 1400 == peer["mtu"]
        assert "UP" not in peer["flags"]

        def listing() -> list[str]:
            return [link.name for link in nl.list_links()]

        assert ["lo", "cni-h0", "cni-br0"] == nl.run_in_netns(node.path, listing)

        def teardown() -> nl.Link | None:
            nl.set_link_master("cni-h0", None)
            nl.set_link_down("cni-h0")
            nl.delete_link("cni-h0")
            return nl.find_link("cni-h0")

        assert nl.run_in_netns(node.path, teardown) is None
        assert {"lo", "cni-br0"} == link_names(node)
        assert {"lo"} == link_names(ctr)  # the peer went with it

    def test_creation_attributes(self, cnilib_container_netns: MakeNS) -> None:
        """MACs and MTUs given at creation land on both veth ends and on a bridge;
        links are found by index too."""
        a, b = cnilib_container_netns(), cnilib_container_netns()

        def build() -> tuple[nl.Link, nl.Link]:
            veth = nl.add_veth(
                "cni-x0", "cni-x1", peer_netns=b.path, mac="02:00:00:00:01:01",
                peer_mac="02:00:00:00:01:02", mtu=1450,
            )  # fmt: skip
            nl.add_bridge("cni-bx", mtu=1450, mac="02:00:00:00:01:03")
            return veth, nl.get_link_by_index(nl.get_link("cni-bx").index)

        veth, bridge = nl.run_in_netns(a.path, build)

        assert ("02:00:00:00:01:01", 1450) == (veth.mac, veth.mtu)
        assert ("cni-bx", "02:00:00:00:01:03", 1450) == (bridge.name, bridge.mac, bridge.mtu)
        [peer] = ip_json(b, "link", "show", "cni-x1")
        assert ("02:00:00:00:01:02", 1450) == (peer["address"], peer["mtu"])
        assert veth.peer_index == peer["ifindex"]

    def test_move_link(self, cnilib_container_netns: MakeNS) -> None:
        """move_link puts a link into another namespace, renamed."""
        a, b = cnilib_container_netns(), cnilib_container_netns()

        def make_and_move() -> None:
            nl.add_veth("cni-m0", "cni-m1")
            nl.move_link("cni-m1", b.path, new_name="eth1")

        nl.run_in_netns(a.path, make_and_move)
        assert {"lo", "cni-m0"} == link_names(a)
        assert {"lo", "eth1"} == link_names(b)

    def test_get_missing_link_is_enodev(self, ns: NetNS) -> None:
        """A missing link is a NetlinkError naming the operation, link and namespace."""
        with pytest.raises(nl.NetlinkError) as info:
            nl.run_in_netns(ns.path, nl.get_link, "eth9")

        assert f"netlink: get link eth9 in {ns.path}: No such device" == str(info.value)
        assert errno.ENODEV == info.value.errno
        assert ErrorCode.INTERNAL == info.value.code
        assert isinstance(info.value, PluginError)
        assert nl.run_in_netns(ns.path, nl.find_link, "eth9") is None

    def test_veth_peer_name_clash_leaves_nothing(self, cnilib_container_netns: MakeNS) -> None:
        """A veth whose peer name is taken in the peer namespace fails as a whole."""
        a, b = cnilib_container_netns(), cnilib_container_netns()
        b.exec("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0")

        with pytest.raises(
            nl.NetlinkError, match=r"add veth cni-c0 \(peer eth0 in .*\) in .*: File exists"
        ):
            nl.run_in_netns(a.path, nl.add_veth, "cni-c0", "eth0", peer_netns=b.path)
        assert {"lo"} == link_names(a)

    def test_unsupported_link_kind_is_reported(self, ns: NetNS) -> None:
        """The kernel's refusal of a link kind (no dummy here) comes back translated."""
        probe = ns.exec("ip", "link", "add", "p0", "type", "dummy", check=False)
        if probe.returncode == 0:
            pytest.skip("this kernel has dummy links")

        def dummy() -> None:
            with netlink_errors("add dummy d0", nl.netns_label()):
                nl.ipr().link("add", ifname="d0", kind="dummy")

        with pytest.raises(nl.NetlinkError, match=f"^netlink: add dummy d0 in {ns.path}: "):
            nl.run_in_netns(ns.path, dummy)


class TestLinkKinds:
    """``add_link`` (macvlan, ipvlan, vlan, dummy) and what its errors say."""

    def test_macvlan_attributes_read_back(self, cnilib_container_netns: MakeNS) -> None:
        """A macvlan made straight into another namespace: mode, MTU, MAC, parent,
        alias set and cleared, as the kernel reports them."""
        node, ctr = cnilib_container_netns(), cnilib_container_netns()

        def make() -> None:
            nl.add_veth("up0", "up1")
            parent = nl.get_link("up0").index
            data = nl.macvlan_data("vepa", bc_queue_len=64)
            nl.add_link("mv0", "macvlan", parent=parent, netns=ctr.path, mtu=1400,
                        mac="02:11:22:33:44:55", data=data)  # fmt: skip

        nl.run_in_netns(node.path, make)

        def read() -> nl.Link:
            nl.set_link_alias("mv0", "orig0")
            link = nl.get_link("mv0")
            assert nl.get_link("mv0") == next(x for x in nl.list_links() if x.name == "mv0")
            nl.set_link_alias("mv0", "")
            assert nl.get_link("mv0").alias == ""
            return link

        link = nl.run_in_netns(ctr.path, read)
        assert (link.kind, link.mode, link.mtu, link.mac, link.alias) == (
            "macvlan", "vepa", 1400, "02:11:22:33:44:55", "orig0")  # fmt: skip
        assert link.peer_index is not None
        assert link.peer_netnsid is not None
        details = ip_json(ctr, "-d", "link", "show", "mv0")[0]["linkinfo"]["info_data"]
        assert (details["mode"], details["bcqueuelen"]) == ("vepa", 64)

    def test_eopnotsupp_blames_the_kernel_only_when_it_lacks_the_kind(
        self, cnilib_container_netns: MakeNS, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``EOPNOTSUPP`` for a link on a master is the kernel's lack of the kind
        only if a parentless request of the kind fails the same way; a kernel that
        has the kind answers that with ``EINVAL``, and the error stays the kernel's
        (a vlan on a master that cannot carry VLANs)."""
        from cnilib.netlink import _kinds

        ns = cnilib_container_netns()
        answers: list[int] = []

        def change_link(body: bytes, flags: int = 0) -> None:
            raise OSError(answers.pop(0), "refused")

        monkeypatch.setattr(_kinds, "change_link", change_link)
        for probe, expected in ((errno.EINVAL, nl.NetlinkError),
                                (errno.EOPNOTSUPP, nl.LinkKindUnsupportedError)):  # fmt: skip
            answers[:] = [errno.EOPNOTSUPP, probe]
            with pytest.raises(nl.NetlinkError) as info:
                nl.run_in_netns(ns.path, nl.add_link, "v0", "vlan", parent=1, data=nl.vlan_data(5))
            assert type(info.value) is expected
            assert answers == []
        answers[:] = [errno.EOPNOTSUPP]  # a dummy has no parent: nothing to ask again
        with pytest.raises(nl.LinkKindUnsupportedError) as unsupported:
            nl.run_in_netns(ns.path, nl.add_link, "d0", "dummy")
        assert unsupported.value.option == "CONFIG_DUMMY"
        assert "CONFIG_DUMMY" in str(unsupported.value)


class TestAddresses:
    """Address helpers, checked with ``ip -j addr``."""

    def test_add_list_delete(self, ns: NetNS) -> None:
        """IPv4 (with broadcast, like Go's AddrAdd) and IPv6 addresses round-trip."""
        ns.exec("ip", "link", "add", "cni-a0", "type", "veth", "peer", "name", "cni-a1")

        def add() -> list[nl.Address]:
            nl.add_address("cni-a0", "10.1.0.2/24")
            nl.add_address("cni-a0", ipaddress.ip_interface("fd00:1::2/64"), nodad=True)
            nl.add_address("cni-a1", "10.1.0.3/31")
            return nl.list_addresses("cni-a0")

        listed = nl.run_in_netns(ns.path, add)

        assert [ipaddress.ip_interface("10.1.0.2/24"), ipaddress.ip_interface("fd00:1::2/64")] == [
            a.interface for a in listed
        ]
        assert ipaddress.IPv4Address("10.1.0.255") == listed[0].broadcast
        assert socket.AF_INET6 == listed[1].family
        [a0] = ip_json(ns, "addr", "show", "cni-a0")
        assert [("10.1.0.2", 24, "10.1.0.255"), ("fd00:1::2", 64, None)] == [
            (i["local"], i["prefixlen"], i.get("broadcast")) for i in a0["addr_info"]
        ]
        [a1] = ip_json(ns, "addr", "show", "cni-a1")
        assert "broadcast" not in a1["addr_info"][0]  # /31: none

        def only_v6() -> list[nl.Address]:
            return nl.list_addresses(family=socket.AF_INET6)

        assert {"::1/128", "fd00:1::2/64"} == {
            str(a.interface) for a in nl.run_in_netns(ns.path, only_v6)
        }

        nl.run_in_netns(ns.path, nl.delete_address, "cni-a0", "10.1.0.2/24")
        [a0] = ip_json(ns, "addr", "show", "cni-a0")
        assert ["fd00:1::2"] == [i["local"] for i in a0["addr_info"]]

    def test_duplicate_address_is_eexist(self, ns: NetNS) -> None:
        """Adding an existing address fails with the message the house style asks for."""
        ns.exec("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        nl.run_in_netns(ns.path, nl.add_address, "eth0", "10.1.0.2/24")

        with pytest.raises(nl.NetlinkError) as info:
            nl.run_in_netns(ns.path, nl.add_address, "eth0", "10.1.0.2/24")

        assert f"netlink: add address 10.1.0.2/24 to eth0 in {ns.path}: File exists" == str(
            info.value
        )
        assert errno.EEXIST == info.value.errno
        assert "add address 10.1.0.2/24 to eth0" == info.value.operation
        assert ns.path == info.value.netns


class TestRoutes:
    """Route helpers, checked with ``ip -j route``."""

    def test_add_replace_list_delete(self, ns: NetNS) -> None:
        """Routes are added with proto boot, replaced in place, listed and deleted."""
        ns.exec("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        ns.exec("ip", "link", "set", "eth0", "up")
        ns.exec("ip", "link", "set", "eth1", "up")

        def build() -> list[nl.RouteEntry]:
            nl.add_address("eth0", "10.2.0.2/24")
            nl.add_route("10.9.0.0/16", gateway="10.2.0.1", link="eth0")
            nl.add_route("0.0.0.0/0", gateway="10.2.0.1")
            nl.replace_route("10.9.0.0/16", gateway="10.2.0.3", link="eth0", mtu=1300)
            nl.add_route("10.8.0.0/16", link="eth0", scope=nl.RT_SCOPE_LINK, table=100)
            return nl.list_routes(family=socket.AF_INET)

        routes = {str(r.dst): r for r in nl.run_in_netns(ns.path, build)}

        assert {"0.0.0.0/0", "10.2.0.0/24", "10.9.0.0/16"} == set(routes)
        assert ipaddress.ip_address("10.2.0.3") == routes["10.9.0.0/16"].gateway
        assert 1300 == routes["10.9.0.0/16"].mtu
        shown = {r["dst"]: r for r in ip_json(ns, "-d", "route")}
        assert "10.2.0.3" == shown["10.9.0.0/16"]["gateway"]
        assert "boot" == shown["default"]["protocol"]
        assert [{"dst": "10.8.0.0/16", "dev": "eth0", "scope": "link", "flags": []}] == [
            {k: r[k] for k in ("dst", "dev", "scope", "flags")}
            for r in ip_json(ns, "route", "show", "table", "100")
        ]

        def tidy() -> list[str]:
            nl.delete_route("10.9.0.0/16", link="eth0")
            nl.delete_route("10.8.0.0/16", table=100)
            return [str(r.dst) for r in nl.list_routes(table=None, link="eth0", family=2)]

        remaining = nl.run_in_netns(ns.path, tidy)
        assert "10.9.0.0/16" not in remaining
        assert "10.8.0.0/16" not in remaining
        assert "0.0.0.0/0" in remaining

    def test_route_options(self, ns: NetNS) -> None:
        """priority, prefsrc, advmss and onlink reach the kernel and read back."""
        ns.exec("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        ns.exec("ip", "link", "set", "eth0", "up")

        def build() -> list[nl.RouteEntry]:
            nl.add_address("eth0", "10.3.0.2/24")
            nl.add_route(
                "10.4.0.0/16", gateway="192.0.2.99", link="eth0", onlink=True, priority=50,
                src="10.3.0.2", adv_mss=1400,
            )  # fmt: skip
            return nl.list_routes(link="eth0", family=socket.AF_INET)

        [route] = [r for r in nl.run_in_netns(ns.path, build) if str(r.dst) == "10.4.0.0/16"]

        assert (50, ipaddress.ip_address("10.3.0.2"), 1400, None) == (
            route.priority, route.prefsrc, route.adv_mss, route.mtu,
        )  # fmt: skip
        assert socket.AF_INET == route.family
        [shown] = ip_json(ns, "route", "show", "10.4.0.0/16")
        assert "onlink" in shown["flags"]
        assert "192.0.2.99" == shown["gateway"]

    def test_delete_missing_route_is_esrch(self, ns: NetNS) -> None:
        """Deleting a route that is not there names it in the error."""
        with pytest.raises(nl.NetlinkError, match=r"delete route 10\.7\.0\.0/16 dev lo in ") as i:
            nl.run_in_netns(ns.path, lambda: nl.delete_route("10.7.0.0/16", link="lo"))
        assert errno.ESRCH == i.value.errno


class TestSysctl:
    """Sysctls change in the target namespace only."""

    def test_write_changes_the_target_namespace_only(self, ns: NetNS) -> None:
        """ip_forward written on the worker is 1 inside the namespace per ``sysctl``, while
        the machine's value (only read, from the test's thread) is what it was."""
        machine_before = Path("/proc/sys/net/ipv4/ip_forward").read_text()
        target_before = ns.exec("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip()
        new = "0" if target_before == "1" else "1"

        def flip() -> str:
            nl.write_sysctl("net.ipv4.ip_forward", new)
            return nl.read_sysctl("net/ipv4/ip_forward")

        assert new == nl.run_in_netns(ns.path, flip)
        assert new == ns.exec("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip()
        assert machine_before == Path("/proc/sys/net/ipv4/ip_forward").read_text()

    def test_per_interface_sysctl_with_a_dotted_name(self, ns: NetNS) -> None:
        """An interface name with a dot needs the path form; the value lands on it."""
        ns.exec("ip", "link", "add", "v.1", "type", "veth", "peer", "name", "v.2")
        nl.run_in_netns(ns.path, nl.write_sysctl, "net/ipv6/conf/v.1/accept_ra", 0)
        shown = ns.exec("cat", "/proc/sys/net/ipv6/conf/v.1/accept_ra").stdout.strip()
        assert "0" == shown
        assert "/proc/sys/net/ipv4/conf/all/forwarding" == nl.sysctl_path(
            "net.ipv4.conf.all.forwarding"
        )

    @pytest.mark.parametrize(
        "name", ["kernel.hostname", "net", "net/../kernel/hostname", "/proc/sys/vm/swappiness"]
    )
    def test_only_network_sysctls(self, name: str) -> None:
        """Names outside /proc/sys/net are refused before anything is touched."""
        with pytest.raises(ValueError, match="not a network sysctl"):
            nl.sysctl_path(name)

    def test_missing_sysctl_is_reported_and_not_created(self, ns: NetNS) -> None:
        """Writing a sysctl that does not exist fails (ENOENT) and creates nothing."""
        with pytest.raises(nl.SysctlError) as info:
            nl.run_in_netns(ns.path, nl.write_sysctl, "net.ipv4.conf.eth9.forwarding", 1)
        assert (
            f"sysctl: write /proc/sys/net/ipv4/conf/eth9/forwarding=1 in {ns.path}: "
            "No such file or directory" == str(info.value)
        )
        with pytest.raises(nl.SysctlError, match="read /proc/sys/net/ipv4/nope in"):
            nl.run_in_netns(ns.path, nl.read_sysctl, "net.ipv4.nope")
