"""VXLAN devices, neighbours and FDB entries through cnilib.netlink against the kernel.

Everything happens inside one throwaway namespace (a veth pair there is the
underlay) and is checked with ``ip -n``/``bridge -n`` from outside as well as
with the listing functions.
"""

from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from cnilib import netlink as nl
from cnilib.testing import NetNS
from tests.privileged._kernel import ip_json

MakeNS = Callable[[], NetNS]
JSON = dict[str, Any]

UNDERLAY = "192.168.251.1"
PEER_MAC = "02:00:00:00:02:02"
ZERO_MAC = "00:00:00:00:00:00"


def bridge_fdb(ns: NetNS, dev: str) -> list[tuple[str, str | None]]:
    """(mac, dst) of each FDB entry of *dev*, as ``bridge -n <ns> -j fdb show dev`` lists them."""
    out = subprocess.run(
        ["bridge", "-n", ns.name, "-j", "fdb", "show", "dev", dev],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    return sorted((e["mac"], e.get("dst")) for e in (json.loads(out) if out else []))


def fdb_pairs(entries: list[nl.FdbEntry]) -> list[tuple[str, str | None]]:
    return sorted((e.mac, e.dst) for e in entries)


@pytest.fixture
def vxns(cnilib_container_netns: MakeNS) -> NetNS:
    """A namespace with an underlay veth ``ul0`` (192.168.251.1/24) and VXLAN ``vx0``
    (VNI 42 on ``ul0``, MAC 02:00:00:00:01:01, MTU 1450, up)."""
    ns = cnilib_container_netns()

    def build() -> None:
        nl.add_veth("ul0", "ul1")
        nl.add_address("ul0", f"{UNDERLAY}/24")
        nl.set_link_up("ul0")
        nl.set_link_up("ul1")
        data = nl.vxlan_data(42, local=UNDERLAY, link=nl.get_link("ul0").index)
        nl.add_link("vx0", "vxlan", mtu=1450, mac="02:00:00:00:01:01", data=data)
        nl.set_link_up("vx0")

    try:
        nl.run_in_netns(ns.path, build)
    except nl.LinkKindUnsupportedError as exc:
        pytest.skip(str(exc))
    return ns


def test_vxlan_device_as_created_and_read_back(vxns: NetNS) -> None:
    """vxlan_data's fields land on the device (``ip -d``) and Link.vxlan reads them
    back on both decode paths (a lookup and a dump), for defaults and non-defaults."""

    def probe() -> tuple[nl.Link, nl.Link, nl.Link, nl.Link]:
        ul = nl.get_link("ul0")
        data = nl.vxlan_data(7, local="fd00::1", link=ul.index, port=4789, learning=True)
        nl.add_link("vx1", "vxlan", data=data)
        dumped = {link.name: link for link in nl.list_links()}
        return nl.get_link("vx0"), dumped["vx0"], nl.get_link("vx1"), dumped["vx1"]

    vx0, vx0_dumped, vx1, vx1_dumped = nl.run_in_netns(vxns.path, probe)
    ul_index = ip_json(vxns, "link", "show", "ul0")[0]["ifindex"]
    assert nl.VxlanInfo(vni=42, local=UNDERLAY, link=ul_index, port=8472, learning=False) == (
        vx0.vxlan
    )
    assert nl.VxlanInfo(vni=7, local="fd00::1", link=ul_index, port=4789, learning=True) == (
        vx1.vxlan
    )
    assert vx0 == vx0_dumped
    assert vx1 == vx1_dumped
    [info] = ip_json(vxns, "-d", "link", "show", "vx0")
    assert ("02:00:00:00:01:01", 1450) == (info["address"], info["mtu"])
    data = info["linkinfo"]["info_data"]
    assert {"id": 42, "local": UNDERLAY, "link": "ul0", "port": 8472, "learning": False} == {
        key: data.get(key) for key in ("id", "local", "link", "port", "learning")
    }
    assert nl.run_in_netns(vxns.path, lambda: nl.get_link("ul0").vxlan) is None


def test_neighbours(vxns: NetNS) -> None:
    """replace makes one permanent entry and moves it; delete removes it, then ENOENT."""

    def replace_twice() -> list[nl.Neighbour]:
        nl.replace_neighbour("vx0", "10.244.2.0", "02:00:00:00:09:09")
        nl.replace_neighbour("vx0", "10.244.2.0", PEER_MAC)
        nl.replace_neighbour("vx0", "10.244.3.0", "02:00:00:00:03:03")
        return nl.list_neighbours("vx0")

    found = nl.run_in_netns(vxns.path, replace_twice)
    index = found[0].ifindex
    assert {
        nl.Neighbour(ifindex=index, ip="10.244.2.0", mac=PEER_MAC, state=nl.NUD_PERMANENT,
                     flags=0),
        nl.Neighbour(ifindex=index, ip="10.244.3.0", mac="02:00:00:00:03:03",
                     state=nl.NUD_PERMANENT, flags=0),
    } == set(found)  # fmt: skip
    assert 2 == len(found)
    listed = ip_json(vxns, "neigh", "show", "dev", "vx0")
    shown = {(n["dst"], n["lladdr"], tuple(n["state"])) for n in listed}
    assert {("10.244.2.0", PEER_MAC, ("PERMANENT",)),
            ("10.244.3.0", "02:00:00:00:03:03", ("PERMANENT",))} == shown  # fmt: skip

    def delete() -> tuple[list[str], list[str], nl.NetlinkError]:
        nl.delete_neighbour("vx0", "10.244.2.0")
        on_ul = [n.ip for n in nl.list_neighbours("ul0")]
        left = [n.ip for n in nl.list_neighbours("vx0")]
        with pytest.raises(nl.NetlinkError) as info:
            nl.delete_neighbour("vx0", "10.244.2.0")
        return left, on_ul, info.value

    left, on_ul, error = nl.run_in_netns(vxns.path, delete)
    assert ["10.244.3.0"] == left
    assert [] == on_ul
    assert errno.ENOENT == error.errno
    assert "delete neighbour 10.244.2.0 dev vx0" in str(error)
    assert vxns.path in str(error)
    assert ["10.244.3.0"] == [n["dst"] for n in ip_json(vxns, "neigh", "show", "dev", "vx0")]


def test_fdb(vxns: NetNS) -> None:
    """replace moves a MAC's destination without duplicating it; append keeps several
    destinations for the flood (all-zeros) entry and adds each once; delete removes one
    destination or the whole entry; list_fdb shows only the device's own entries."""

    def program() -> list[nl.FdbEntry]:
        nl.replace_fdb("vx0", PEER_MAC, "192.168.251.2")
        nl.replace_fdb("vx0", PEER_MAC, "192.168.251.2")
        nl.replace_fdb("vx0", "02:00:00:00:03:03", "192.168.251.9")
        nl.replace_fdb("vx0", "02:00:00:00:03:03", "192.168.251.3")
        nl.append_fdb("vx0", ZERO_MAC, "192.168.251.2")
        nl.append_fdb("vx0", ZERO_MAC, "192.168.251.3")
        nl.append_fdb("vx0", ZERO_MAC, "192.168.251.3")
        return nl.list_fdb("vx0")

    found = nl.run_in_netns(vxns.path, program)
    expected = [
        ("00:00:00:00:00:00", "192.168.251.2"),
        ("00:00:00:00:00:00", "192.168.251.3"),
        ("02:00:00:00:02:02", "192.168.251.2"),
        ("02:00:00:00:03:03", "192.168.251.3"),
    ]
    assert expected == fdb_pairs(found)
    assert expected == bridge_fdb(vxns, "vx0")
    assert all(e.flags & nl.NTF_SELF and e.state & nl.NUD_PERMANENT for e in found)

    def unicast_append() -> list[nl.FdbEntry]:
        # The kernel keeps one destination per unicast MAC: appending a second is
        # accepted and ignored (replace_fdb moves it).
        nl.append_fdb("vx0", "02:00:00:00:04:04", "192.168.251.4")
        nl.append_fdb("vx0", "02:00:00:00:04:04", "192.168.251.5")
        return [e for e in nl.list_fdb("vx0") if e.mac == "02:00:00:00:04:04"]

    assert [("02:00:00:00:04:04", "192.168.251.4")] == fdb_pairs(
        nl.run_in_netns(vxns.path, unicast_append)
    )

    def delete() -> tuple[list[nl.FdbEntry], list[nl.FdbEntry], nl.NetlinkError]:
        nl.delete_fdb("vx0", ZERO_MAC, "192.168.251.2")
        nl.delete_fdb("vx0", PEER_MAC)
        nl.delete_fdb("vx0", "02:00:00:00:04:04", "192.168.251.4")
        nl.delete_fdb("vx0", "02:00:00:00:03:03", "192.168.251.9")  # not its dst: kept
        with pytest.raises(nl.NetlinkError) as info:
            nl.delete_fdb("vx0", PEER_MAC)
        return nl.list_fdb("vx0"), nl.list_fdb("ul0"), info.value

    left, on_ul, error = nl.run_in_netns(vxns.path, delete)
    expected = [("00:00:00:00:00:00", "192.168.251.3"), ("02:00:00:00:03:03", "192.168.251.3")]
    assert expected == fdb_pairs(left)
    assert expected == bridge_fdb(vxns, "vx0")
    assert all(e.dst is None for e in on_ul)  # ul0's own multicast entries, none of vx0's
    assert {e.ifindex for e in on_ul} <= {ip_json(vxns, "link", "show", "ul0")[0]["ifindex"]}
    assert errno.ENOENT == error.errno
    assert f"delete fdb {PEER_MAC} dev vx0" in str(error)
