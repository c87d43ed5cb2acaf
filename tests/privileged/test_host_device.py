"""cnilib's in-process host-device plugin against Debian's Go host-device (1.1.1), on a real kernel.

Each side has its own node namespace (the host, with the uplink of
:mod:`tests.privileged._link_world`) holding the test device ``hd0``: a veth
end whose peer sits in the side's "lan" namespace, with a fixed MAC, MTU
1400, an IPv4 and an IPv6 address, up. Go's binary is exec'd inside its
node, ours runs in process with ``host_netns=<node>``. Where Go 1.1.1 has
the feature, the result and the kernel state after ADD must be equal.

Asserted as documented differences:

- DEL gives the device back to the host with its addresses, MTU and up
  state and without the alias; Go leaves it down, without addresses, the
  alias set;
- DEL twice, and DEL with the container namespace gone, succeed (Go errors);
- a ``CNI_IFNAME`` that exists in the container fails ADD with nothing
  moved (Go 1.1.1 leaves the device in the container under its host name);
- a failed ADD puts the device back as it was.

Interop: a Go ADD then our DEL, and our ADD then a Go DEL, give the device
its host name back (the alias carries it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib import netlink
from cnilib.invoke import SubprocessExecutor
from cnilib.netlink import Sysfs, _sysfs, namespace_sysfs
from cnilib.plugins._executor import InProcessExecutor
from cnilib.plugins._linkplugin import configure_container
from cnilib.testing import NetNS
from tests.privileged._kernel import GO_PLUGINS, JSON, go_plugin_marks, ip_json
from tests.privileged._link_world import CONTAINER_ID, LinkSide, MakeNS, add_veth, link_side
from tests.privileged._netstate import assert_same

pytestmark = go_plugin_marks()

DEV = "hd0"
DEV_MAC = "02:4d:00:00:00:01"
DEV_ADDRS = ("192.0.2.10/24", "fd00:db8:4d::10/64")
STATIC = {
    "type": "static",
    "addresses": [{"address": "10.77.2.5/24", "gateway": "10.77.2.1"}],
    "routes": [{"dst": "198.51.100.0/24", "gw": "10.77.2.1"}],
}


def give_device(side: LinkSide) -> None:
    """``hd0`` in the node (peer ``hdpeer`` in the lan), MAC, MTU 1400, two addresses, up."""
    assert side.lan is not None
    add_veth(side.node, DEV, side.lan, "hdpeer", mtu=1400)
    side.node.exec("ip", "link", "set", DEV, "address", DEV_MAC)
    side.node.exec("ip", "addr", "add", DEV_ADDRS[0], "dev", DEV)
    side.node.exec("ip", "addr", "add", DEV_ADDRS[1], "dev", DEV, "nodad")
    side.keep_macs.append(DEV_MAC)


def hostdev(ipam: JSON | None = None, **extra: Any) -> JSON:
    """A host-device entry for ``hd0`` by name (unless *extra* says otherwise)."""
    conf: JSON = {"type": "host-device", **extra}
    if not any(k in extra for k in ("hwaddr", "kernelpath", "pciBusID")):
        conf.setdefault("device", DEV)
    if ipam:
        conf["ipam"] = ipam
    return conf


def with_data_dir(side: LinkSide, plugin: JSON) -> JSON:
    """*plugin* keeping its record under the side's tmp dir (Go ignores the key)."""
    return {**plugin, "dataDir": str(side.tmp / "hostdev")}


def device(ns: NetNS, name: str = DEV) -> JSON | None:
    """``ip -d addr show <name>`` in *ns* (None when there is no such link)."""
    for link in ip_json(ns, "-d", "addr"):
        if link["ifname"] == name:
            return link
    return None


def summary(ns: NetNS, name: str = DEV) -> JSON | None:
    """What DEL must give back: the device's MAC, MTU, up, alias, global addresses."""
    link = device(ns, name)
    if link is None:
        return None
    return {
        "mac": link["address"],
        "mtu": link["mtu"],
        "up": "UP" in link["flags"],
        "alias": link.get("ifalias", ""),
        "addrs": sorted(
            f"{a['local']}/{a['prefixlen']}"
            for a in link.get("addr_info", [])
            if a.get("scope") != "link"
        ),
    }


BEFORE = {"mac": DEV_MAC, "mtu": 1400, "up": True, "alias": "", "addrs": sorted(DEV_ADDRS)}


@pytest.fixture
def go(cnilib_container_netns: MakeNS, tmp_path: Path) -> Iterator[LinkSide]:
    """Go's binaries, exec'd in their own node namespace, with ``hd0``."""
    with link_side("go", cnilib_container_netns, tmp_path) as side:
        give_device(side)
        yield side


@pytest.fixture
def py(cnilib_container_netns: MakeNS, tmp_path: Path) -> Iterator[LinkSide]:
    """Ours, in process, in its own node namespace, with ``hd0``."""
    with link_side("py", cnilib_container_netns, tmp_path) as side:
        give_device(side)
        yield side


def dump(state: JSON) -> str:
    return json.dumps(state, indent=1, sort_keys=True)


def both_add(go: LinkSide, py: LinkSide, plugin: JSON) -> JSON:
    go_res, py_res = go.add(plugin), py.add(with_data_dir(py, plugin))
    assert py_res == go_res
    assert_same(dump(py.state()), dump(go.state()), "after ADD")
    return py_res


def record(side: LinkSide, ifname: str = "eth0", container_id: str = CONTAINER_ID) -> Path:
    """The state record of the attachment (``<network>/<containerID>:<ifname>.json``)."""
    return side.tmp / "hostdev" / side.network / f"{container_id}:{ifname}.json"


# ------------------------------------------------------------------------ differential


@pytest.mark.parametrize(
    "lookup",
    [{"device": DEV}, {"hwaddr": DEV_MAC.upper()}, {"kernelpath": "/sys/devices/virtual"}],
    ids=["device", "hwaddr", "kernelpath"],
)
def test_add_check_del_as_go_but_del_restores_the_host_state(
    go: LinkSide, py: LinkSide, lookup: JSON
) -> None:
    """ADD: the same result (the device's own MAC) and kernel state as Go; CHECK passes
    on both; DEL gives the device back under its name: ours as it was before ADD
    (addresses, MTU, up, no alias), Go's down, without addresses, alias set."""
    plugin = hostdev(**lookup)
    res = both_add(go, py, plugin)
    assert res["interfaces"] == [{"name": "eth0", "mac": DEV_MAC, "sandbox": "<netns>"}]
    ctr = device(py.ctr(0), "eth0")
    assert ctr is not None
    assert ctr["ifalias"] == DEV
    assert ctr["mtu"] == 1400
    assert device(py.node) is None
    assert record(py).is_file()
    assert record(py).stat().st_mode & 0o777 == 0o600
    go.check(plugin)
    py.check(with_data_dir(py, plugin))

    go.delete(plugin)
    py.delete(with_data_dir(py, plugin))
    assert summary(py.node) == BEFORE
    assert not record(py).exists()
    assert summary(go.node) == {**BEFORE, "up": False, "addrs": [], "alias": DEV}
    assert device(py.ctr(0), "eth0") is None
    assert device(go.ctr(0), "eth0") is None


def test_static_ipam_chain_as_go(go: LinkSide, py: LinkSide) -> None:
    """host-device + static: the same result and state; CHECK passes; DEL restores ours."""
    plugin = hostdev(STATIC)
    res = both_add(go, py, plugin)
    assert res["ips"] == [{"address": "10.77.2.5/24", "gateway": "10.77.2.1", "interface": 0}]
    go.check(plugin)
    py.check(with_data_dir(py, plugin))
    go.delete(plugin)
    py.delete(with_data_dir(py, plugin))
    assert summary(py.node) == BEFORE


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        ({"type": "host-device"}, 'specify either "device", "hwaddr", "kernelpath" or "pciBusID"'),
        (hostdev(device="nope0"), "failed to find host device: Link not found"),
        (hostdev(hwaddr="02:00:00:00:99:99"),
         "failed to find host device: failed to find physical interface"),
        (hostdev(hwaddr="zz"),
         'failed to find host device: failed to parse MAC address "zz": address zz: '
         "invalid MAC address"),
        (hostdev(kernelpath="devices/x"), 'failed to find host device: kernel device path '
         '"devices/x" must be absolute and begin with /sys/devices/'),
        (hostdev(kernelpath="/proc/x"), 'failed to find host device: kernel device path '
         '"/proc/x" must be absolute and begin with /sys/devices/'),
        (hostdev(pciBusID="0000:99:00.0"), "error with host device: lstat "
         "/sys/bus/pci/devices/0000:99:00.0: no such file or directory"),
    ],
    ids=["none", "no-device", "no-hwaddr", "bad-hwaddr", "relative-kp", "kp-outside", "no-pci"],
)  # fmt: skip
def test_lookup_errors_as_go(go: LinkSide, py: LinkSide, plugin: JSON, message: str) -> None:
    """Go's texts; nothing moves."""
    go_err, py_err = go.add_error(plugin), py.add_error(with_data_dir(py, plugin))
    assert py_err.code == go_err.code
    assert str(py_err.msg) == str(go_err.msg) == message
    assert summary(py.node) == summary(go.node) == BEFORE


def _pci_devices() -> list[Path]:
    return sorted(Path("/sys/bus/pci/devices").glob("*"))


def test_pci_lookups_never_reach_the_machines_devices(go: LinkSide, py: LinkSide) -> None:
    """The machine's PCI NICs live in its own namespace: looked up from a node
    namespace their ``net/`` directory is empty for both (nothing moves), and a
    device without a driver fails the DPDK probe with Go's text. Ours reads sysfs
    as the node sees it, also in process."""
    with_net = [d for d in _pci_devices() if list(d.glob("virtio*/net")) or (d / "net").is_dir()]
    no_driver = [d for d in _pci_devices() if not (d / "driver").exists()]
    if not with_net and not no_driver:
        pytest.skip("this machine has no PCI network device and no driverless PCI device")
    for dev in with_net:
        plugin = hostdev(pciBusID=dev.name)
        go_err, py_err = go.add_error(plugin), py.add_error(with_data_dir(py, plugin))
        net_dir = (dev / "net") if (dev / "net").is_dir() else sorted(dev.glob("virtio*/net"))[0]
        # 1.1.1 wording vs the latest release's
        assert (
            go_err.msg
            == f"failed to find host device: failed to find device name for pci address {dev.name}"
        )
        assert (
            py_err.msg
            == f"failed to find host device: failed to find network device in path {net_dir}"
        )
    for dev in no_driver:
        plugin = hostdev(pciBusID=dev.name)
        go_err, py_err = go.add_error(plugin), py.add_error(with_data_dir(py, plugin))
        text = f"error with host device: lstat {dev.resolve()}/driver: no such file or directory"
        assert py_err.msg == go_err.msg == text
    assert summary(py.node) == BEFORE


def test_device_id_must_exist(py: LinkSide) -> None:
    """``runtimeConfig.deviceID`` that is neither PCI nor auxiliary: the latest text."""
    err = py.add_error(
        with_data_dir(py, {**hostdev(), "runtimeConfig": {"deviceID": "0000:99:00.0"}})
    )
    assert err.msg == "runtime config DeviceID 0000:99:00.0 not found or unsupported"


# -------------------------------------------------------------------------- divergences


def test_del_is_idempotent_where_go_errors(go: LinkSide, py: LinkSide) -> None:
    """A second DEL succeeds (the link is gone from the container); Go's fails."""
    plugin = hostdev()
    both_add(go, py, plugin)
    go.delete(plugin)
    py.delete(with_data_dir(py, plugin))
    py.delete(with_data_dir(py, plugin))
    assert summary(py.node) == BEFORE
    with pytest.raises(cnilib.CNIError, match='failed to find "eth0": Link not found'):
        go.delete(plugin)


def test_del_with_the_namespace_gone(go: LinkSide, py: LinkSide) -> None:
    """The container namespace deleted: a veth goes with it (its peer too). Our DEL
    succeeds, releases IPAM and drops the record; Go's fails to open the namespace."""
    plugin = hostdev({"type": "host-local", "ranges": [[{"subnet": "10.77.3.0/29"}]]})
    both_add(go, py, plugin)
    assert py.allocated()
    for side in (go, py):
        side.ctr(0).delete()
    py.delete(with_data_dir(py, plugin))
    assert not py.allocated()
    assert not record(py).exists()
    assert device(py.node) is None  # a veth dies with its namespace
    with pytest.raises(cnilib.CNIError, match="failed to open netns"):
        go.delete(plugin)


def test_del_reclaims_a_device_the_kernel_gave_back(py: LinkSide) -> None:
    """A physical device returns to the host under its container name when its
    namespace goes away (simulated: moved there by hand, then the namespace
    deleted): DEL finds it by MAC and alias and restores it."""
    plugin = with_data_dir(py, hostdev())
    py.add(plugin)
    ctr = py.ctr(0)
    ctr.exec("ip", "link", "set", "eth0", "netns", py.node.name)
    ctr.delete()
    py.delete(plugin)
    assert summary(py.node) == BEFORE
    assert device(py.node, "eth0") is None


def test_del_with_an_empty_netns_still_releases_ipam(py: LinkSide) -> None:
    """``CNI_NETNS=""``: IPAM DEL runs anyway (Go skips it and leaks the address)."""
    plugin = with_data_dir(
        py, hostdev({"type": "host-local", "ranges": [[{"subnet": "10.77.4.0/29"}]]})
    )
    py.add(plugin)
    assert py.allocated()
    rt = cnilib.RuntimeConf("ctr-link-diff", "", "eth0")
    py.cni.delete_network_list(py.conflist(plugin), rt)
    assert not py.allocated()
    # The sandbox may still hold the device: its record stays, and a DEL that names
    # the namespace later gives the device back as it was.
    assert record(py).is_file()
    py.delete(plugin)
    assert summary(py.node) == BEFORE
    assert not record(py).exists()


def test_ifname_clash_in_the_container_moves_nothing(go: LinkSide, py: LinkSide) -> None:
    """``eth0`` exists in the container: ADD fails, ``hd0`` stays as it was. Go 1.1.1
    moves it first and fails to rename it, leaving it in the container as ``hd0``."""
    for side in (go, py):
        assert side.lan is not None
        add_veth(side.ctr(0), "eth0", side.lan, f"clash{side.kind}")
    err = py.add_error(with_data_dir(py, hostdev()))
    assert err.msg == (
        'failed to move link failed to move "eth0" (host: "hd0") to container NS: file exists'
    )
    assert summary(py.node) == BEFORE
    assert not record(py).exists()
    go.add_error(hostdev())
    assert device(go.ctr(0), DEV) is not None
    assert device(go.node) is None


def test_failed_add_puts_the_device_back(py: LinkSide) -> None:
    """A route IPAM asks for cannot be added (no on-link gateway): ADD fails after the
    move; the device is back under its name, with its addresses, up, no alias."""
    ipam = {**STATIC, "routes": [{"dst": "198.51.100.0/24", "gw": "203.0.113.1"}]}
    err = py.add_error(with_data_dir(py, hostdev(ipam)))
    assert "failed to add route" in err.msg
    assert summary(py.node) == BEFORE
    assert device(py.ctr(0), "eth0") is None
    assert not record(py).exists()


def test_failed_add_that_cannot_give_the_device_back_keeps_its_record(
    py: LinkSide, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ADD fails after the move and the move back fails too: the record stays, so
    the runtime's DEL can still give the device back as it was."""
    from cnilib.plugins.main import _hostdevice_state

    def cannot_move_back(*args: object) -> bool:
        raise OSError("move back refused")

    ipam = {**STATIC, "routes": [{"dst": "198.51.100.0/24", "gw": "203.0.113.1"}]}
    plugin = with_data_dir(py, hostdev(ipam))
    with monkeypatch.context() as patch:
        patch.setattr(_hostdevice_state, "_move_back", cannot_move_back)
        py.add_error(plugin)
    assert device(py.ctr(0), "eth0") is not None
    assert record(py).is_file()
    py.delete(plugin)
    assert summary(py.node) == BEFORE
    assert not record(py).exists()


def test_del_when_the_name_is_taken_on_the_host_keeps_everything_for_later(
    py: LinkSide,
) -> None:
    """DEL while another link has the device's name in the host: DEL fails, the
    device stays in the container and the record is kept; once the name is free, a
    second DEL gives the device back as it was."""
    plugin = with_data_dir(py, hostdev())
    py.add(plugin)
    assert py.lan is not None
    add_veth(py.node, DEV, py.lan, "squatter")
    with pytest.raises(cnilib.CNIError):
        py.delete(plugin)
    assert device(py.ctr(0), "eth0") is not None
    assert record(py).is_file()
    py.node.exec("ip", "link", "del", DEV)
    py.delete(plugin)
    assert summary(py.node) == BEFORE
    assert not record(py).exists()


# ------------------------------------------------------------------------------ interop


def _go_on(side: LinkSide, tmp: Path) -> cnilib.CNI:
    return cnilib.CNI(
        [str(GO_PLUGINS)],
        cache_dir=tmp / "go-cache",
        executor=SubprocessExecutor(wrapper=side.node.exec_prefix, timeout=30.0),
    )


def test_go_add_then_our_del_restores_the_name(py: LinkSide, tmp_path: Path) -> None:
    """No record (Go's ADD): the alias gives the name back, and is cleared."""
    plugin = with_data_dir(py, hostdev())
    go_cni = _go_on(py, tmp_path)
    go_cni.add_network_list(py.conflist(plugin), py.rt())
    assert device(py.ctr(0), "eth0") is not None
    py.delete(plugin)
    after = summary(py.node)
    assert after is not None
    assert after["alias"] == ""
    assert after["mac"] == DEV_MAC


def test_our_add_then_go_del_restores_the_name(py: LinkSide, tmp_path: Path) -> None:
    """Our alias is Go's: Go's DEL renames the device back."""
    plugin = with_data_dir(py, hostdev())
    py.add(plugin)
    _go_on(py, tmp_path).delete_network_list(py.conflist(plugin), py.rt())
    after = summary(py.node)
    assert after is not None
    assert after["mac"] == DEV_MAC
    assert after["alias"] == DEV


# -------------------------------------------------------------------------- executable


def test_installed_executable_under_ip_netns_exec(py: LinkSide, tmp_path: Path) -> None:
    """``python -m cnilib.plugins install`` + ``ip netns exec <node>``: ADD/CHECK/DEL,
    the record kept and used, the device restored."""
    bin_dir = tmp_path / "bin"
    subprocess.run(
        [sys.executable, "-m", "cnilib.plugins", "install", str(bin_dir)],
        check=True,
        capture_output=True,
    )
    cni = cnilib.CNI(
        [str(bin_dir), str(GO_PLUGINS)],
        cache_dir=tmp_path / "exe-cache",
        executor=SubprocessExecutor(wrapper=py.node.exec_prefix, timeout=30.0),
    )
    plugin = with_data_dir(py, hostdev(STATIC))
    try:
        res = cni.add_network_list(py.conflist(plugin), py.rt())
        assert res is not None
        assert json.loads(res.to_json())["interfaces"][0]["mac"] == DEV_MAC
        assert record(py).is_file()
        cni.check_network_list(py.conflist(plugin), py.rt())
        cni.delete_network_list(py.conflist(plugin), py.rt())
    finally:
        cni.close()
    assert summary(py.node) == BEFORE
    assert not record(py).exists()


def test_in_process_executor_is_what_py_uses(py: LinkSide) -> None:
    """The in-process side is cnilib.CNI + InProcessExecutor(host_netns=node)."""
    assert isinstance(py.executor, InProcessExecutor)


# ------------------------------------------------------------------ sysfs and records

_LOOKUP = "cnilib.plugins.main._hostdevice_lookup"
_PLUGIN = "cnilib.plugins.main.host_device"


def test_refused_sysfs_mount_fails_instead_of_reading_the_callers_sys(
    py: LinkSide, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host namespace's sysfs cannot be mounted (here: a syscall this kernel does
    not have, as on Linux < 5.2): ADD fails with the errno, and nothing moves. The
    caller's ``/sys`` lists the machine's devices: a node link of the same name as
    its first virtual one would otherwise be taken."""
    decoy = sorted(os.listdir("/sys/devices/virtual/net"))[0]
    if decoy != "lo":
        assert py.lan is not None
        add_veth(py.node, decoy, py.lan, "decoypeer")
    monkeypatch.setattr(_sysfs, "_FSOPEN", 100_000)  # ENOSYS
    err = py.add_error(with_data_dir(py, hostdev(kernelpath="/sys/devices/virtual")))
    assert err.msg == (
        f"failed to find host device: cannot read the sysfs of {py.node.path}: "
        "fsopen: function not implemented (needs Linux 5.2)"
    )
    assert ip_json(py.ctr(0), "link") == [
        link for link in ip_json(py.ctr(0), "link") if link["ifname"] == "lo"
    ]
    assert device(py.node, decoy) is not None
    assert summary(py.node) == BEFORE


def test_sysfs_mount_is_close_on_exec(py: LinkSide) -> None:
    """The detached sysfs fd is close-on-exec while held: a child exec'd meanwhile
    does not inherit another namespace's sysfs."""
    with namespace_sysfs(py.node.path) as sysfs:
        fd = int(sysfs.root.rsplit("/", 1)[1])
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert DEV in sysfs.read_dir("/sys/class/net")


def test_sysfs_is_not_held_across_ipam_and_the_moves(
    py: LinkSide, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ADD holds the host's sysfs for the lookup only: it is closed again before
    IPAM runs and the container is configured."""
    held: list[int] = []

    @contextlib.contextmanager
    def counted(netns: Any) -> Iterator[Sysfs]:
        with namespace_sysfs(netns) as sysfs:
            held.append(1)
            try:
                yield sysfs
            finally:
                held.pop()

    seen: list[int] = []

    def configure_spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(len(held))
        return configure_container(*args, **kwargs)

    monkeypatch.setattr(f"{_LOOKUP}.namespace_sysfs", counted)
    monkeypatch.setattr(f"{_PLUGIN}.configure_container", configure_spy)
    py.add(with_data_dir(py, hostdev(STATIC, kernelpath="/sys/devices/virtual")))
    assert seen == [0]
    assert device(py.ctr(0), "eth0") is not None


def test_records_of_attachments_with_underscores_do_not_collide(
    py: LinkSide,
) -> None:
    """("a_b", "c") and ("a", "b_c") each keep their own record: DEL gives both
    devices back with their addresses and up state."""
    assert py.lan is not None
    befores = {}
    for name, addr in (("hd1", "192.0.2.1/24"), ("hd2", "198.51.100.1/24")):
        add_veth(py.node, name, py.lan, f"{name}peer")
        py.node.exec("ip", "addr", "add", addr, "dev", name)
        befores[name] = summary(py.node, name)
    one: dict[str, Any] = {"i": 0, "container_id": "a_b", "ifname": "c"}
    two: dict[str, Any] = {"i": 1, "container_id": "a", "ifname": "b_c"}
    py.add(with_data_dir(py, hostdev(device="hd1")), **one)
    py.add(with_data_dir(py, hostdev(device="hd2")), **two)
    assert record(py, "c", "a_b").is_file()
    assert record(py, "b_c", "a").is_file()
    py.delete(with_data_dir(py, hostdev(device="hd1")), **one)
    assert record(py, "b_c", "a").is_file()
    py.delete(with_data_dir(py, hostdev(device="hd2")), **two)
    for name, before in befores.items():
        after = summary(py.node, name)
        assert after is not None
        assert after == before
        assert after["up"]
        assert after["addrs"]
    assert not list((py.tmp / "hostdev").glob("*.json"))


def test_a_record_of_another_attachment_is_neither_used_nor_dropped(py: LinkSide) -> None:
    """A record whose content names another attachment is ignored by DEL (the alias
    gives the name back) and left in place."""
    plugin = with_data_dir(py, hostdev())
    py.add(plugin)
    path = record(py)
    doc = json.loads(path.read_text())
    assert (doc["containerID"], doc["ifname"]) == (CONTAINER_ID, "eth0")
    doc["containerID"] = "someone-else"
    path.write_text(json.dumps(doc))
    py.delete(plugin)
    after = summary(py.node)
    assert after is not None
    # not restored from the record: the name from the alias, no addresses, down
    assert (after["mac"], after["addrs"], after["up"]) == (DEV_MAC, [], False)
    assert json.loads(path.read_text()) == doc


# ---------------------------------------------------------------------------- DEL, GC


def test_del_with_an_unplugged_device_id_releases_ipam_and_moves_the_device_out(
    py: LinkSide,
) -> None:
    """``runtimeConfig.deviceID`` no longer resolves at DEL (the device was hot-
    unplugged): DEL still runs IPAM DEL, then moves ``CNI_IFNAME`` out by name."""
    ipam = {"type": "host-local", "ranges": [[{"subnet": "10.77.5.0/29"}]]}
    plugin = with_data_dir(py, hostdev(ipam))
    py.add(plugin)
    assert py.allocated()
    py.delete({**plugin, "runtimeConfig": {"deviceID": "0000:99:00.0"}})
    assert not py.allocated()
    assert summary(py.node) == BEFORE
    assert not record(py).exists()


def test_del_releases_the_containers_worker(py: LinkSide) -> None:
    """After DEL no worker keeps the container's namespace open."""
    plugin = with_data_dir(py, hostdev())
    py.add(plugin)
    py.delete(plugin)
    assert not netlink.default_pool().close_netns(py.ctr(0).path)


def test_gc_drops_the_records_of_attachments_no_longer_valid(py: LinkSide, tmp_path: Path) -> None:
    """GC (with nothing in the runtime's cache to DEL): the record of an attachment
    not in ``cni.dev/valid-attachments`` is dropped, its device (given back to the
    host by the kernel as ``eth0``) restored first; a valid attachment's record stays."""
    assert py.lan is not None
    add_veth(py.node, "hd1", py.lan, "hd1peer")
    py.add(with_data_dir(py, hostdev()))
    py.add(with_data_dir(py, hostdev(device="hd1")), i=1, container_id="kept")
    ctr = py.ctr(0)
    ctr.exec("ip", "link", "set", "eth0", "netns", py.node.name)
    ctr.delete()
    fresh = cnilib.CNI([str(GO_PLUGINS)], cache_dir=tmp_path / "gc-cache", executor=py.executor)
    try:
        conflist = py.conflist(with_data_dir(py, hostdev()), version="1.1.0")
        fresh.gc_network_list(conflist, [("kept", "eth0")])
    finally:
        fresh.close()
    assert summary(py.node) == BEFORE
    assert not record(py).exists()
    assert record(py, container_id="kept").is_file()
    assert device(py.ctr(1), "eth0") is not None


def test_gc_of_one_network_keeps_the_records_of_another(py: LinkSide, tmp_path: Path) -> None:
    """Two networks share a ``dataDir`` (the default is one for all): GC of one, with
    no valid attachment, leaves the other's record, whose DEL then restores the
    device with its addresses."""
    plugin = with_data_dir(py, hostdev())
    py.add(plugin)
    executor = InProcessExecutor(host_netns=py.node.path)
    other = cnilib.CNI([str(GO_PLUGINS)], cache_dir=tmp_path / "other-cache", executor=executor)
    try:
        raw = {"cniVersion": "1.1.0", "name": "other-net", "plugins": [plugin]}
        other.gc_network_list(cnilib.conflist_from_bytes(json.dumps(raw).encode()), [])
    finally:
        other.close()
    assert record(py).is_file()
    py.delete(plugin)
    assert summary(py.node) == BEFORE
    assert not record(py).exists()


def test_l2_add_below_030_is_refused_before_the_device_moves(py: LinkSide) -> None:
    """A 0.2.0 result carries IP addresses only: without IPAM, ADD is refused before
    anything moves (Go moves the device, then fails to print the result)."""
    err = py.add_error(with_data_dir(py, hostdev()), version="0.2.0")
    assert err.code == cnilib.ErrorCode.INCOMPATIBLE_CNI_VERSION
    assert summary(py.node) == BEFORE
    assert device(py.ctr(0), "eth0") is None
    assert not record(py).exists()
