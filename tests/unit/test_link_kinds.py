"""The macvlan/ipvlan/vlan/dummy link requests, and the ipvlan, vlan and dummy
plugins' configuration handling, without a kernel.

Requests: cnilib builds ``RTM_NEWLINK`` bodies itself
(:func:`cnilib.netlink._kinds.link_request`); pyroute2 decodes them and must
find exactly what it encodes for the same request. pyroute2 0.9.7 knows
neither ``IFLA_IPVLAN_FLAGS`` nor ``IFLA_MACVLAN_BC_QUEUE_LEN``: those are
compared as raw attribute bytes against the kernel's layout.

Plugins: every configuration error ADD, DEL, CHECK or STATUS reports before
touching a namespace, with Go's code (999) and text (or the documented
better one), through the in-process executor.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

import cnilib
from cnilib.invoke import Command, Invocation
from cnilib.netlink._kinds import (
    IPVLAN_MODES,
    MACVLAN_MODES,
    ipvlan_data,
    link_request,
    macvlan_data,
    vlan_data,
)
from cnilib.netlink._link import _kind_data_from_raw
from cnilib.plugins import BasePlugin
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._executor import InProcessExecutor
from cnilib.plugins._linkplugin import ipam_lease
from cnilib.plugins._registry import load_plugin
from cnilib.plugins.main.ipvlan import IpvlanConf
from cnilib.plugins.main.vlan import VlanConf
from cnilib.results import Result
from tests.unit._guards import NO_SUCH_HOST

JSON = dict[str, Any]
NLMSGHDR = struct.Struct("=IHHII")
RTM_NEWLINK = 16

# ---------------------------------------------------------------------- raw netlink


def attrs_raw(payload: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink attribute in *payload* (nested flag masked)."""
    offset = 0
    while offset + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, offset)
        assert length >= 4, "malformed attribute"
        yield kind & 0x3FFF, payload[offset + 4 : offset + length]
        offset += (length + 3) & ~3


def info_data_raw(body: bytes) -> bytes | None:
    """The raw ``IFLA_INFO_DATA`` of an ``RTM_NEWLINK`` body (ifinfomsg + attributes)."""
    for kind, value in attrs_raw(body[16:]):
        if kind == 18:  # IFLA_LINKINFO
            for inner, data in attrs_raw(value):
                if inner == 2:  # IFLA_INFO_DATA
                    return data
    return None


def decode(body: bytes) -> ifinfmsg:
    """pyroute2's decoding of an ``RTM_NEWLINK`` body (a netlink header put in front)."""
    msg = ifinfmsg(NLMSGHDR.pack(NLMSGHDR.size + len(body), RTM_NEWLINK, 0, 0, 0) + body)
    msg.decode()
    return msg


def pyroute2_request(attrs: list[tuple[str, Any]]) -> ifinfmsg:
    """What pyroute2 encodes for *attrs*, decoded back."""
    msg = ifinfmsg()
    msg["family"] = 0
    msg["attrs"] = attrs
    msg.encode()
    return decode(bytes(msg.data[NLMSGHDR.size : msg["header"]["length"]]))


def tree(msg: Any) -> JSON:
    """A decoded message's header fields and attributes as nested dicts
    (order-insensitive); attributes pyroute2 does not know are left out."""
    out: JSON = {k: msg[k] for k in ("family", "ifi_type", "index", "flags", "change") if k in msg}
    for name, value in msg["attrs"]:
        if name == "UNKNOWN":
            continue
        assert name not in out, f"{name} twice"
        out[name] = tree(value) if hasattr(value, "get_attr") else value
    return out


def common(kind: str, data: list[tuple[str, Any]] | None, **top: Any) -> list[tuple[str, Any]]:
    """pyroute2 attributes of a link request (the ones cnilib sends, by keyword)."""
    names = {"parent": "IFLA_LINK", "mtu": "IFLA_MTU", "txqlen": "IFLA_TXQLEN",
             "mac": "IFLA_ADDRESS", "netns_fd": "IFLA_NET_NS_FD"}  # fmt: skip
    attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", "vethab12cd34")]
    attrs += [(names[k], v) for k, v in top.items()]
    info: list[tuple[str, Any]] = [("IFLA_INFO_KIND", kind)]
    if data is not None:
        info.append(("IFLA_INFO_DATA", {"attrs": data}))
    return [*attrs, ("IFLA_LINKINFO", {"attrs": info})]


FULL = {"parent": 3, "netns_fd": 7, "mtu": 1400, "txqlen": 0, "mac": "02:11:22:33:44:55"}


# ------------------------------------------------------------------ request encoding


class TestRequestEncoding:
    @pytest.mark.parametrize("top", [{}, FULL, {"parent": 12, "netns_fd": 9}])
    @pytest.mark.parametrize("mode", list(MACVLAN_MODES))
    def test_macvlan(self, mode: str, top: dict[str, Any]) -> None:
        ours = decode(link_request("vethab12cd34", "macvlan", data=macvlan_data(mode), **top))
        theirs = pyroute2_request(common("macvlan", [("IFLA_MACVLAN_MODE", mode)], **top))
        assert tree(ours) == tree(theirs)
        assert [name for name, _ in ours["attrs"]].count("UNKNOWN") == 0

    def test_macvlan_bc_queue_len_is_a_u32_attribute_7(self) -> None:
        """pyroute2 0.9.7 has no IFLA_MACVLAN_BC_QUEUE_LEN: the raw attribute."""
        body = link_request("vethab12cd34", "macvlan", parent=3,
                            data=macvlan_data("bridge", bc_queue_len=2000))  # fmt: skip
        theirs = pyroute2_request(common("macvlan", [("IFLA_MACVLAN_MODE", "bridge")], parent=3))
        assert tree(decode(body)) == tree(theirs)
        data = dict(attrs_raw(info_data_raw(body) or b""))
        assert data == {1: struct.pack("=I", 4), 7: struct.pack("=I", 2000)}

    def test_macvlan_without_bc_queue_len_sends_no_attribute_7(self) -> None:
        assert 7 not in dict(attrs_raw(macvlan_data("bridge")))

    @pytest.mark.parametrize("top", [{}, FULL])
    @pytest.mark.parametrize("mode", list(IPVLAN_MODES))
    def test_ipvlan(self, mode: str, top: dict[str, Any]) -> None:
        """Mode as pyroute2 encodes it (numeric: 0.9.7 has no l3s name); the flags
        attribute (2, unknown to pyroute2) is u16 0, the bridge flag Go sends."""
        body = link_request("vethab12cd34", "ipvlan", data=ipvlan_data(mode), **top)
        theirs = pyroute2_request(common("ipvlan", [("IFLA_IPVLAN_MODE", IPVLAN_MODES[mode])],
                                         **top))  # fmt: skip
        assert tree(decode(body)) == tree(theirs)
        data = list(attrs_raw(info_data_raw(body) or b""))
        assert data == [(1, struct.pack("=H", IPVLAN_MODES[mode])), (2, struct.pack("=H", 0))]

    @pytest.mark.parametrize("top", [{"parent": 3}, FULL])
    @pytest.mark.parametrize("vlan_id", [0, 1, 100, 4094])
    def test_vlan(self, vlan_id: int, top: dict[str, Any]) -> None:
        body = link_request("vethab12cd34", "vlan", data=vlan_data(vlan_id), **top)
        theirs = pyroute2_request(common("vlan", [("IFLA_VLAN_ID", vlan_id)], **top))
        assert tree(decode(body)) == tree(theirs)
        assert dict(attrs_raw(info_data_raw(body) or b"")) == {1: struct.pack("=H", vlan_id)}

    @pytest.mark.parametrize("top", [{}, {"netns_fd": 7}, {"netns_fd": 7, "mtu": 1400}])
    def test_dummy_has_no_info_data(self, top: dict[str, Any]) -> None:
        body = link_request("vethab12cd34", "dummy", **top)
        assert tree(decode(body)) == tree(pyroute2_request(common("dummy", None, **top)))
        assert info_data_raw(body) is None

    def test_absent_options_send_no_attribute(self) -> None:
        body = link_request("vethab12cd34", "dummy")
        assert set(tree(decode(body))) == {"family", "ifi_type", "index", "flags", "change",
                                           "IFLA_IFNAME", "IFLA_LINKINFO"}  # fmt: skip


class TestKindDataRoundTrip:
    """What cnilib reads back from a link (:func:`_kind_data_from_raw`) is what it
    sent, and what pyroute2 encodes reads the same."""

    @staticmethod
    def _pyroute2_info_data(kind: str, data: list[tuple[str, Any]]) -> memoryview:
        msg = ifinfmsg()
        msg["attrs"] = common(kind, data)
        msg.encode()
        body = bytes(msg.data[NLMSGHDR.size : msg["header"]["length"]])
        return memoryview(info_data_raw(body) or b"")

    @pytest.mark.parametrize("mode", list(MACVLAN_MODES))
    def test_macvlan_mode(self, mode: str) -> None:
        assert _kind_data_from_raw("macvlan", memoryview(macvlan_data(mode, bc_queue_len=5))) == (
            mode, None)  # fmt: skip
        theirs = self._pyroute2_info_data("macvlan", [("IFLA_MACVLAN_MODE", mode)])
        assert _kind_data_from_raw("macvlan", theirs) == (mode, None)

    @pytest.mark.parametrize("mode", list(IPVLAN_MODES))
    def test_ipvlan_mode(self, mode: str) -> None:
        assert _kind_data_from_raw("ipvlan", memoryview(ipvlan_data(mode))) == (mode, None)
        theirs = self._pyroute2_info_data("ipvlan", [("IFLA_IPVLAN_MODE", IPVLAN_MODES[mode])])
        assert _kind_data_from_raw("ipvlan", theirs) == (mode, None)

    @pytest.mark.parametrize("vlan_id", [0, 7, 4094])
    def test_vlan_id(self, vlan_id: int) -> None:
        assert _kind_data_from_raw("vlan", memoryview(vlan_data(vlan_id))) == ("", vlan_id)
        theirs = self._pyroute2_info_data("vlan", [("IFLA_VLAN_ID", vlan_id)])
        assert _kind_data_from_raw("vlan", theirs) == ("", vlan_id)

    def test_unknown_kind_or_no_data(self) -> None:
        assert _kind_data_from_raw("dummy", memoryview(vlan_data(7))) == ("", None)
        assert _kind_data_from_raw("vlan", memoryview(b"")) == ("", None)


# ------------------------------------------------------------------------- plugins


def run(
    plugin_type: str, conf: JSON, command: str = "ADD", netns: str = "/nonexistent/ns"
) -> bytes:
    """One in-process call of a built-in plugin (no namespace is ever reached here)."""
    stdin = json.dumps({"cniVersion": "1.1.0", "name": "n", "type": plugin_type, **conf})
    with InProcessExecutor(host_netns=NO_SUCH_HOST) as executor:
        return executor.exec(Invocation(
            command=command, plugin_type=plugin_type, stdin=stdin.encode(),
            container_id="c1", netns=netns, ifname="eth0", path=("/nonexistent",),
        ))  # fmt: skip


def error(plugin_type: str, conf: JSON, command: str = "ADD", **kw: Any) -> tuple[int, str]:
    """(code, text) of a call that must fail."""
    with pytest.raises(cnilib.CNIError) as info:
        run(plugin_type, conf, command, **kw)
    return info.value.code, str(info.value)


HOST_LOCAL = {"type": "host-local", "subnet": "10.1.0.0/24"}
PREV = {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "sandbox": "/nonexistent/ns"}],
        "ips": [{"address": "10.1.0.5/24", "interface": 0}]}  # fmt: skip
NETNS_ERROR = 'failed to open netns "/nonexistent/ns": '


class TestRegistry:
    @pytest.mark.parametrize("plugin_type", ["ipvlan", "vlan", "dummy"])
    def test_built_in_with_every_spec_version(self, plugin_type: str) -> None:
        plugin = load_plugin(plugin_type)
        assert plugin.type == plugin_type
        assert "1.1.0" in plugin.supported_versions
        assert "0.1.0" in plugin.supported_versions


class TestIpvlanConf:
    def test_defaults(self) -> None:
        req = PluginRequest(command=Command.ADD, container_id="c", netns="/x", ifname="eth0",
                            args=(), path=(), config={"type": "ipvlan"}, stdin=b"{}",
                            host_netns=NO_SUCH_HOST)  # fmt: skip
        conf = IpvlanConf.load(req)
        assert (conf.master, conf.mode, conf.mtu, conf.link_in_container, conf.ipam) == (
            "", "l2", 0, False, "")  # fmt: skip

    @pytest.mark.parametrize("command", ["ADD", "CHECK"])
    def test_unknown_mode(self, command: str) -> None:
        """ADD opens the namespace first (as Go): the mode error, on CHECK."""
        conf = {"master": "up0", "mode": "l4", "ipam": HOST_LOCAL, "prevResult": PREV}
        code, text = error("ipvlan", conf, command)
        assert code == 999
        missing = NETNS_ERROR + "netns: open /nonexistent/ns: No such file or directory"
        assert text == ('unknown ipvlan mode: "l4"' if command == "CHECK" else missing)

    @pytest.mark.parametrize("mode", ["l2", "l3", "l3s"])
    def test_known_modes(self, mode: str) -> None:
        IpvlanConf("m", mode, 0, False, "host-local", None).check_mode()

    @pytest.mark.parametrize(
        "interfaces",
        [[], [{"name": "a"}, {"name": "b"}], [{"name": ""}]],
        ids=["none", "two", "unnamed"],
    )
    def test_chained_master_failure(self, interfaces: list[JSON]) -> None:
        prev = {**PREV, "interfaces": interfaces}
        if not interfaces:
            prev["ips"] = [{"address": "10.1.0.5/24"}]
        assert error("ipvlan", {"prevResult": prev}) == (
            999,
            "chained master failure. PrevResult lacks a single named interface",
        )

    def test_chained_master_is_prev_result_interface(self) -> None:
        """Past the master choice: the namespace is the next thing ADD touches."""
        code, text = error("ipvlan", {"prevResult": PREV})
        assert (code, text.startswith(NETNS_ERROR)) == (999, True)

    def test_no_ipam_and_no_prev_ips(self) -> None:
        want = (999, 'ipvlan needs an "ipam" configuration, or chained, a prevResult with IPs')
        assert error("ipvlan", {"master": "up0"}) == want
        assert error("ipvlan", {"prevResult": {**PREV, "ips": []}}) == want

    def test_bad_prev_result(self) -> None:
        code, text = error("ipvlan", {"master": "up0", "prevResult": {"cniVersion": "9.9.9"}})
        assert code != 0
        assert text.startswith("could not convert result to current version: ")

    @pytest.mark.parametrize(("key", "value", "go_type"), [
        ("master", 1, "string"), ("mode", True, "string"), ("mtu", "1500", "int"),
        ("linkInContainer", "yes", "bool"),
    ])  # fmt: skip
    def test_wrong_types(self, key: str, value: object, go_type: str) -> None:
        code, text = error("ipvlan", {key: value})
        assert code == 999
        assert text.startswith("failed to load netconf: json: cannot unmarshal ")
        assert text.endswith(f"Go struct field NetConf.{key} of type {go_type}")

    def test_del_needs_neither_master_nor_route(self) -> None:
        """Go's DEL looks up the default route (``no default route interface found``)."""
        assert run("ipvlan", {"mode": "l3"}, "DEL") == b""
        assert run("ipvlan", {"prevResult": {**PREV, "interfaces": []}}, "DEL") == b""

    def test_status_without_ipam(self) -> None:
        assert run("ipvlan", {"master": "up0"}, "STATUS") == b""

    def test_gc_is_the_default(self) -> None:
        conf = {"master": "up0", "cni.dev/valid-attachments": []}
        assert run("ipvlan", conf, "GC") == b""


class TestVlanConf:
    def test_master_required(self) -> None:
        want = (999, '"master" field is required. It specifies the host interface name'
                " to create the VLAN for")  # fmt: skip
        for command in ("ADD", "DEL", "CHECK", "STATUS"):
            assert error("vlan", {"vlanId": 5, "ipam": HOST_LOCAL}, command) == want

    @pytest.mark.parametrize("vlan_id", [-1, 4095, 70000])
    def test_vlan_id_out_of_range(self, vlan_id: int) -> None:
        want = (999, f"invalid VLAN ID {vlan_id} (must be between 0 and 4094 inclusive)")
        for command in ("ADD", "DEL", "CHECK"):
            assert error("vlan", {"master": "up0", "vlanId": vlan_id}, command) == want

    @pytest.mark.parametrize("vlan_id", [0, 1, 4094, None])
    def test_vlan_id_in_range(self, vlan_id: int | None) -> None:
        conf = {"master": "up0", "vlanId": vlan_id, "ipam": HOST_LOCAL}
        code, text = error("vlan", conf)
        assert code == 999
        assert text.startswith(NETNS_ERROR)

    def test_defaults(self) -> None:
        req = PluginRequest(command=Command.ADD, container_id="c", netns="/x", ifname="eth0",
                            args=(), path=(), config={"master": "m"}, stdin=b"{}",
                            host_netns=NO_SUCH_HOST)  # fmt: skip
        conf = VlanConf.load(req)
        assert (conf.vlan_id, conf.mtu, conf.link_in_container, conf.ipam, conf.dns) == (
            0, 0, False, "", None)  # fmt: skip

    def test_ipam_required(self) -> None:
        want = (999, "vlan interface requires an IPAM configuration")
        for command in ("ADD", "CHECK", "STATUS"):
            assert error("vlan", {"master": "up0", "vlanId": 5}, command) == want

    def test_del_without_ipam_or_master_link(self) -> None:
        """Go's DEL fails on both (``Link not found``, ``no plugin name provided``)."""
        assert run("vlan", {"master": "gone0", "vlanId": 5}, "DEL") == b""

    def test_vlan_id_type(self) -> None:
        assert error("vlan", {"master": "up0", "vlanId": "5"}) == (999, (
            "failed to load netconf: json: cannot unmarshal string into Go struct field "
            "NetConf.vlanId of type int"))  # fmt: skip


class TestDummyConf:
    def test_ipam_required(self) -> None:
        want = (999, "dummy interface requires an IPAM configuration")
        for command in ("ADD", "CHECK", "STATUS"):
            assert error("dummy", {}, command) == want
            assert error("dummy", {"ipam": {}}, command) == want

    def test_del_without_ipam(self) -> None:
        assert run("dummy", {}, "DEL") == b""

    def test_add_reaches_the_namespace(self) -> None:
        code, text = error("dummy", {"ipam": HOST_LOCAL})
        assert code == 999
        assert text.startswith(NETNS_ERROR)


# --------------------------------------------------------------------------- IPAM


class _FailingIpam(BasePlugin):
    type = "failipam"

    def add(self, req: PluginRequest) -> Result:
        raise cnilib.PluginError("no addresses left", code=cnilib.ErrorCode.TRY_AGAIN_LATER)


def test_ipam_lease_prefixes_ipam_add_errors_and_keeps_their_code() -> None:
    """vlan's ``failed to execute IPAM delegate: `` (Go's text; the code is IPAM's)."""
    conf: JSON = {"cniVersion": "1.1.0", "name": "n", "type": "vlan", "ipam": {"type": "failipam"}}
    plugins = {"failipam": _FailingIpam()}
    with InProcessExecutor(plugins, builtins=False, host_netns=NO_SUCH_HOST) as executor:
        req = PluginRequest(command=Command.ADD, container_id="c", netns="/x", ifname="eth0",
                            args=(), path=("/x",), config=conf, stdin=json.dumps(conf).encode(),
                            delegate_executor=executor, host_netns=NO_SUCH_HOST)  # fmt: skip
        with (
            pytest.raises(cnilib.CNIError) as info,
            ipam_lease(req, "failipam", error_prefix="failed to execute IPAM delegate: "),
        ):
            pytest.fail("IPAM ADD failed: the block must not run")
        assert (info.value.code, str(info.value)) == (
            11,
            "failed to execute IPAM delegate: no addresses left",
        )
        with pytest.raises(cnilib.CNIError) as info, ipam_lease(req, "failipam"):
            pytest.fail("IPAM ADD failed: the block must not run")
        assert str(info.value) == "no addresses left"
