"""VXLAN link data, neighbour and FDB requests, and their listings, without a kernel.

cnilib builds these netlink messages itself: pyroute2 decodes them and must
find the kernel's fields (the port big-endian, the MAC and addresses as
sent). The listings are fed a dump as the kernel answers it, through a fake
worker socket, to check what they keep.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from cnilib import netlink as nl
from cnilib.netlink import _neigh
from cnilib.netlink._kinds import KERNEL_OPTIONS, link_request, vxlan_data
from cnilib.netlink._link import _link_from_msg, _link_from_raw, _vxlan_from_raw
from cnilib.netlink._raw import attr

NLMSGHDR = struct.Struct("=IHHII")
NDMSG = struct.Struct("=BxxxiHBB")
RTM_NEWLINK = 16
AF_BRIDGE = 7


def decode_link(body: bytes) -> ifinfmsg:
    """pyroute2's decoding of an ``RTM_NEWLINK`` body."""
    msg = ifinfmsg(NLMSGHDR.pack(NLMSGHDR.size + len(body), RTM_NEWLINK, 0, 0, 0) + body)
    msg.decode()
    return msg


def decode_neigh(body: bytes, msg_type: int = _neigh.RTM_NEWNEIGH) -> ndmsg:
    """pyroute2's decoding of an ``RTM_*NEIGH`` body."""
    msg = ndmsg(NLMSGHDR.pack(NLMSGHDR.size + len(body), msg_type, 0, 0, 0) + body)
    msg.decode()
    return msg


def info_data(msg: ifinfmsg) -> Any:
    return msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")


# ------------------------------------------------------------------------- vxlan


class TestVxlanData:
    def test_attributes_as_pyroute2_decodes_them(self) -> None:
        body = link_request(
            "ovx1", "vxlan", mtu=1450, mac="02:aa:bb:cc:dd:ee",
            data=vxlan_data(42, local="192.168.250.1", link=3),
        )  # fmt: skip
        msg = decode_link(body)
        assert "ovx1" == msg.get_attr("IFLA_IFNAME")
        assert 1450 == msg.get_attr("IFLA_MTU")
        assert "02:aa:bb:cc:dd:ee" == msg.get_attr("IFLA_ADDRESS")
        assert "vxlan" == msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_KIND")
        data = info_data(msg)
        assert 42 == data.get_attr("IFLA_VXLAN_ID")
        assert 3 == data.get_attr("IFLA_VXLAN_LINK")
        assert "192.168.250.1" == data.get_attr("IFLA_VXLAN_LOCAL")
        assert 0 == data.get_attr("IFLA_VXLAN_LEARNING")
        assert 8472 == data.get_attr("IFLA_VXLAN_PORT")

    def test_port_is_big_endian(self) -> None:
        """The kernel reads IFLA_VXLAN_PORT as __be16: 4789 is 0x12b5, sent 12 b5."""
        raw = dict(_attrs(vxlan_data(1, local="10.0.0.1", link=2, port=4789)))
        assert b"\x12\xb5" == raw[15]

    def test_learning_and_ipv6_local(self) -> None:
        data = info_data(decode_link(link_request(
            "vx", "vxlan", data=vxlan_data(7, local="fd00::1", link=9, learning=True),
        )))  # fmt: skip
        assert "fd00::1" == data.get_attr("IFLA_VXLAN_LOCAL6")
        assert data.get_attr("IFLA_VXLAN_LOCAL") is None
        assert 1 == data.get_attr("IFLA_VXLAN_LEARNING")

    @pytest.mark.parametrize(("vni", "port"), [(-1, 8472), (1 << 24, 8472), (1, 0), (1, 65536)])
    def test_out_of_range(self, vni: int, port: int) -> None:
        with pytest.raises(ValueError, match="VXLAN"):
            vxlan_data(vni, local="10.0.0.1", link=2, port=port)

    def test_kernel_option_named(self) -> None:
        assert "CONFIG_VXLAN" == KERNEL_OPTIONS["vxlan"]


def _attrs(payload: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, offset)
        yield kind & 0x3FFF, payload[offset + 4 : offset + length]
        offset += (length + 3) & ~3


class TestVxlanInfoDecoding:
    """Link.vxlan read back on both paths: cnilib's raw decode and pyroute2's message."""

    @staticmethod
    def _reply(data: bytes, kind: str = "vxlan") -> bytes:
        """An ``RTM_NEWLINK`` payload as a dump answers it (index 5, up)."""
        body = link_request("ovx1", kind, mtu=1450, mac="02:aa:bb:cc:dd:ee", data=data)
        return struct.pack("=BxHiII", 0, 1, 5, 1, 0) + body[16:]

    @pytest.mark.parametrize(
        ("data", "expected"),
        [
            (vxlan_data(42, local="192.168.250.1", link=3),
             nl.VxlanInfo(vni=42, local="192.168.250.1", link=3, port=8472, learning=False)),
            (vxlan_data(1, local="fd00::2", link=1, port=4789, learning=True),
             nl.VxlanInfo(vni=1, local="fd00::2", link=1, port=4789, learning=True)),
            # a device bound to no link and no local address (``ip link add ... id 9``)
            (attr(1, struct.pack("=I", 9)) + attr(15, struct.pack("!H", 8472)),
             nl.VxlanInfo(vni=9, local=None, link=None, port=8472, learning=False)),
        ],
        ids=["ipv4-defaults", "ipv6-port-learning", "no-local-no-link"],
    )  # fmt: skip
    def test_both_paths_agree(self, data: bytes, expected: nl.VxlanInfo) -> None:
        payload = self._reply(data)
        raw_link = _link_from_raw(memoryview(payload))
        msg_link = _link_from_msg(decode_link(payload))
        assert expected == raw_link.vxlan
        assert expected == msg_link.vxlan
        assert raw_link == msg_link
        assert expected == _vxlan_from_raw(memoryview(data))

    def test_other_kinds_have_none(self) -> None:
        payload = self._reply(struct.pack("=HHI", 8, 1, 4), kind="macvlan")
        assert _link_from_raw(memoryview(payload)).vxlan is None
        assert _link_from_msg(decode_link(payload)).vxlan is None


# -------------------------------------------------------------------- neighbours


class TestRequests:
    def test_neighbour_replace(self) -> None:
        msg = decode_neigh(_neigh.neighbour_request(4, "10.244.2.0", "02:00:00:00:02:02"))
        assert (socket.AF_INET, 4) == (msg["family"], msg["ifindex"])
        assert nl.NUD_PERMANENT == msg["state"]
        assert 0 == msg["flags"]
        assert "10.244.2.0" == msg.get_attr("NDA_DST")
        assert "02:00:00:00:02:02" == msg.get_attr("NDA_LLADDR")

    def test_neighbour_ipv6_and_delete_without_lladdr(self) -> None:
        body = _neigh.neighbour_request(4, "fd00::1", state=0)
        msg = decode_neigh(body, _neigh.RTM_DELNEIGH)
        assert socket.AF_INET6 == msg["family"]
        assert "fd00::1" == msg.get_attr("NDA_DST")
        assert msg.get_attr("NDA_LLADDR") is None

    def test_fdb_entry_is_the_devices_own_and_permanent(self) -> None:
        """As ``bridge fdb append MAC dev X dst IP self permanent`` sends it."""
        body = _neigh.fdb_request(6, "02:00:00:00:02:02", "192.168.250.2")
        family, ifindex, state, flags, _ = NDMSG.unpack_from(body)
        assert (AF_BRIDGE, 6) == (family, ifindex)
        assert nl.NUD_PERMANENT | nl.NUD_NOARP == state
        assert nl.NTF_SELF == flags
        found = dict(_attrs(body[NDMSG.size :]))
        assert {1: bytes([192, 168, 250, 2]), 2: bytes.fromhex("020000000202")} == found

    def test_fdb_delete_of_every_destination_sends_no_dst(self) -> None:
        body = _neigh.fdb_request(6, "02:00:00:00:02:02", None)
        assert [2] == [kind for kind, _ in _attrs(body[NDMSG.size :])]

    @pytest.mark.parametrize("mac", ["02:00:00:00:02", "nope", "02:00:00:00:02:zz"])
    def test_bad_mac(self, mac: str) -> None:
        with pytest.raises(ValueError, match=r"not a MAC|invalid literal"):
            _neigh.fdb_request(6, mac, "192.168.250.2")


class _FakeSocket:
    """A worker socket answering a dump with canned ``RTM_NEWNEIGH`` payloads."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.sent: list[tuple[int, int, bytes]] = []

    def request(self, msg_type: int, flags: int, body: bytes) -> list[tuple[int, memoryview]]:
        self.sent.append((msg_type, flags, body))
        return [(_neigh.RTM_NEWNEIGH, memoryview(r)) for r in self.replies]


def _entry(family: int, ifindex: int, state: int, flags: int, *attrs_: bytes) -> bytes:
    return NDMSG.pack(family, ifindex, state, flags, 0) + b"".join(attrs_)


MAC_A = attr(2, bytes.fromhex("02000000aaaa"))
MAC_B = attr(2, bytes.fromhex("02000000bbbb"))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Canned dump replies for the listing functions (no worker, no kernel)."""
    replies: list[bytes] = []
    sock = _FakeSocket(replies)
    monkeypatch.setattr(_neigh, "raw", lambda: sock)
    monkeypatch.setattr(_neigh, "netns_label", lambda: "/run/netns/fake")
    return replies


class TestListings:
    def test_fdb_of_one_device_only(self, fake: list[bytes]) -> None:
        v4 = attr(1, bytes([192, 168, 250, 2]))
        fake += [
            _entry(AF_BRIDGE, 4, 192, 2, MAC_A, v4),
            _entry(AF_BRIDGE, 4, 192, 2, MAC_A, attr(1, bytes([192, 168, 250, 3]))),
            _entry(AF_BRIDGE, 3, 128, 2, attr(2, bytes.fromhex("333300000001"))),
            _entry(AF_BRIDGE, 4, 128, 2, MAC_B),  # no destination
            _entry(AF_BRIDGE, 4, 128, 2, v4),  # no MAC: not an FDB entry
            _entry(socket.AF_INET, 4, 128, 0, MAC_A, v4),  # another family
        ]
        assert [
            nl.FdbEntry(ifindex=4, mac="02:00:00:00:aa:aa", dst="192.168.250.2", state=192,
                        flags=2),
            nl.FdbEntry(ifindex=4, mac="02:00:00:00:aa:aa", dst="192.168.250.3", state=192,
                        flags=2),
            nl.FdbEntry(ifindex=4, mac="02:00:00:00:bb:bb", dst=None, state=128, flags=2),
        ] == nl.list_fdb(4)  # fmt: skip

    def test_neighbours_of_a_link_or_all(self, fake: list[bytes]) -> None:
        fake += [
            _entry(socket.AF_INET, 4, 128, 0, attr(1, bytes([10, 244, 2, 0])), MAC_A),
            _entry(socket.AF_INET, 2, 2, 0, attr(1, bytes([192, 168, 250, 9]))),  # incomplete
            _entry(socket.AF_INET6, 4, 128, 0, attr(1, bytes(16)), MAC_B),
        ]
        on_4 = nl.Neighbour(ifindex=4, ip="10.244.2.0", mac="02:00:00:00:aa:aa", state=128,
                            flags=0)  # fmt: skip
        assert [on_4] == nl.list_neighbours(4)
        on_2 = nl.Neighbour(ifindex=2, ip="192.168.250.9", mac="", state=2, flags=0)
        assert [on_4, on_2] == nl.list_neighbours()
        six = nl.list_neighbours(4, family=socket.AF_INET6)
        assert ["::"] == [n.ip for n in six]

    def test_dump_asks_the_family(self, fake: list[bytes]) -> None:
        nl.list_fdb(4)
        sent = _neigh.raw().sent  # type: ignore[attr-defined]
        msg_type, flags, body = sent[-1]
        assert _neigh.RTM_GETNEIGH == msg_type
        assert flags & 0x300 == 0x300  # NLM_F_DUMP
        assert AF_BRIDGE == body[0]
