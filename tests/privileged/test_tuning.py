"""cnilib's in-process tuning plugin against Debian's Go tuning (1.1.1), on a real kernel.

Each world has its own node namespace (the host, where Go's binary is exec'd
and ours runs with ``host_netns=<node>``) and container namespace holding
``eth0`` (a veth with a fixed MAC). Tuning is called directly with a
``prevResult`` naming ``eth0``, so the same request goes to both; a chain
test puts it after Go's macvlan and host-local through cnilib.CNI. Compared:
the result JSON, the kernel state of ``eth0`` (MAC, MTU, txqueuelen,
promiscuity, allmulti, the sysctls configured), the backup file's bytes,
errors' codes and texts. Every sysctl is written inside a container
namespace; the escape tests read the machine's file before and after.

cnilib follows the latest upstream tuning, so these differences from 1.1.1
are asserted as such: ``txQLen`` (1.1.1 ignores it), ``IFNAME`` replaced in CHECK
too, duplicated sysctl keys refused, ``invalid net sysctl key``
naming the key with ``/``, a ``..`` key refused before anything is written,
a bad MAC refused before the backup file is written, spec 1.1.0.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.invoke import Executor, Invocation, SubprocessExecutor
from cnilib.plugins._executor import InProcessExecutor
from cnilib.plugins._registry import load_plugin
from cnilib.plugins.meta import _tuning_conf as tuning_conf
from cnilib.testing import NetNS
from tests.privileged._kernel import GO_PLUGINS, JSON, go_plugin_marks, ip_json, plugin_output
from tests.privileged._link_world import LinkSide, MakeNS, install_plugins, require_link_kind

pytestmark = go_plugin_marks()

MAC0 = "02:aa:00:00:00:01"
"""``eth0``'s MAC before tuning."""
MAC = "02:11:22:33:44:55"
SYSCTLS = {"net.ipv4.conf.eth0.arp_filter": "1", "net.core.somaxconn": "512"}
CID = "ctr-tuning"
IMPLS = ("go", "py")


@dataclass
class World:
    """A node and a container namespace with ``eth0``; tuning by Go, ours, or installed."""

    node: NetNS
    ctr: NetNS
    data: Path
    executors: dict[str, tuple[Executor, tuple[str, ...]]] = field(default_factory=dict)

    def conf(self, version: str = "1.0.0", *, prev: bool = True, **keys: Any) -> JSON:
        """A tuning config with a ``prevResult`` naming ``eth0`` (unless not *prev*)."""
        conf: JSON = {
            "cniVersion": version,
            "name": "tun",
            "type": "tuning",
            "dataDir": str(self.data),
            **keys,
        }
        if prev:
            conf["prevResult"] = {
                "cniVersion": version,
                "interfaces": [{"name": "eth0", "mac": MAC0, "sandbox": self.ctr.path}],
                "ips": [{"address": "10.9.0.2/24", "gateway": "10.9.0.1", "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0"}],
            }
        return conf

    def call(
        self,
        impl: str,
        command: str,
        conf: JSON | bytes,
        *,
        args: tuple[tuple[str, str], ...] = (),
        ifname: str = "eth0",
    ) -> JSON | None:
        """Run *command*; its stdout as JSON (None when empty)."""
        executor, path = self.executors[impl]
        stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        out = executor.exec(
            Invocation(
                command=command,
                plugin_type="tuning",
                stdin=stdin,
                container_id=CID,
                netns=self.ctr.path,
                ifname=ifname,
                args=args,
                path=path,
            )
        )
        return plugin_output(out, self.ctr.path)

    def error(self, impl: str, command: str, conf: JSON | bytes, **kw: Any) -> cnilib.CNIError:
        """*command* that must fail: the error."""
        with pytest.raises(cnilib.CNIError) as info:
            self.call(impl, command, conf, **kw)
        return info.value

    def backup(self) -> str | None:
        """The backup file's text (None: no file)."""
        path = self.data / f"{CID}_eth0.json"
        return path.read_text() if path.exists() else None

    def state(self, sysctls: dict[str, str] | None = None) -> JSON:
        """``eth0`` as the kernel has it, and the sysctls named in *sysctls*."""
        link = ip_json(self.ctr, "-d", "link", "show", "eth0")[0]
        keys = ("address", "mtu", "txqlen", "promiscuity", "allmulti")
        state: JSON = {k: link.get(k) for k in keys}
        state["flags"] = sorted(f for f in link["flags"] if f in ("PROMISC", "ALLMULTI"))
        for key in sysctls or SYSCTLS:
            rel = key.replace(".", "/").replace("IFNAME", "eth0")
            state[key] = self.ctr.exec("cat", f"/proc/sys/{rel}").stdout.strip()
        return state


def link_only(state: JSON) -> JSON:
    """*state* without the sysctls (DEL restores the link only, as Go)."""
    return {k: v for k, v in state.items() if not k.startswith("net.")}


def _world(make_ns: MakeNS, tmp: Path, bin_dir: Path | None = None) -> World:
    node, ctr = make_ns(), make_ns()
    ctr.exec("ip", "link", "add", "eth0", "address", MAC0, "type", "veth", "peer", "name", "p0")
    ctr.exec("ip", "link", "set", "eth0", "up")
    world = World(node, ctr, tmp / "tuning")
    go = SubprocessExecutor(wrapper=node.exec_prefix, timeout=30.0)
    world.executors["go"] = (go, (str(GO_PLUGINS),))
    ours = InProcessExecutor(
        {"tuning": load_plugin("tuning")}, builtins=False, installed=False, host_netns=node.path
    )
    world.executors["py"] = (ours, (str(GO_PLUGINS),))
    if bin_dir is not None:
        world.executors["exe"] = (go, (str(bin_dir),))
    return world


@pytest.fixture
def worlds(cnilib_container_netns: MakeNS, tmp_path: Path) -> dict[str, World]:
    """One world per implementation (Go's, ours)."""
    return {impl: _world(cnilib_container_netns, tmp_path / impl) for impl in IMPLS}


@pytest.fixture
def world(cnilib_container_netns: MakeNS, tmp_path: Path) -> World:
    """One world both implementations act on (cross ADD/DEL)."""
    return _world(cnilib_container_netns, tmp_path)


# ------------------------------------------------------------------ ADD / CHECK / DEL

CASES: dict[str, tuple[JSON, tuple[tuple[str, str], ...]]] = {
    "all-keys": (
        {"mac": MAC, "mtu": 1400, "promisc": True, "allmulti": True, "sysctl": SYSCTLS},
        (),
    ),
    "sysctl-only": ({"sysctl": SYSCTLS}, ()),
    "mtu-only": ({"mtu": 1280}, ()),
    "allmulti-false": ({"allmulti": False, "promisc": False}, ()),
    "args-cni": (
        {
            "mtu": 1400,
            "args": {
                "cni": {
                    "mac": MAC,
                    "mtu": 1300,
                    "promisc": True,
                    "allmulti": True,
                    "sysctl": {"net.core.somaxconn": "256"},
                }
            },
            "sysctl": {"net.core.somaxconn": "512"},
        },
        (),
    ),
    "cni-args-mac": ({"mac": "02:00:00:00:00:09"}, (("MAC", MAC),)),
    "runtime-mac": (
        {"runtimeConfig": {"mac": MAC}},
        (("IgnoreUnknown", "1"), ("MAC", "02:00:00:00:00:09")),
    ),
}


@pytest.mark.parametrize("version", ["1.0.0", "0.4.0", "0.3.1"])
@pytest.mark.parametrize("case", list(CASES))
def test_add_check_del_same_as_go(worlds: dict[str, World], case: str, version: str) -> None:
    """ADD, CHECK, DEL: the same result, kernel state and backup file bytes as Go's;
    DEL puts ``eth0`` back as it was and removes the file."""
    keys, args = CASES[case]
    seen: dict[str, list[Any]] = {}
    for impl, w in worlds.items():
        before = w.state()
        conf = w.conf(version, **keys)
        result = w.call(impl, "ADD", conf, args=args)
        after = w.state()
        backup = w.backup()
        if version != "0.3.1":
            w.call(impl, "CHECK", {**conf, "prevResult": result}, args=args)
        w.call(impl, "DEL", conf, args=args)
        assert link_only(w.state()) == link_only(before)  # sysctls stay, as in Go
        assert w.backup() is None
        seen[impl] = [result, after, backup]
    assert seen["py"] == seen["go"]
    if "mac" in json.dumps(keys):
        assert seen["py"][0]["interfaces"][0]["mac"] == MAC
        assert seen["py"][1]["address"] == MAC


def test_backup_file_is_gos_format(worlds: dict[str, World]) -> None:
    """The file holds the originals, in Go's ``json.MarshalIndent(v, "", " ")`` bytes."""
    w = worlds["py"]
    w.call("py", "ADD", w.conf(mac=MAC, mtu=1400, promisc=True, allmulti=True))
    assert w.backup() == (
        '{\n "mac": "02:aa:00:00:00:01",\n "promisc": false,\n "mtu": 1500,\n "allmulti": false\n}'
    )
    assert (w.data / f"{CID}_eth0.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("adder", "deleter"), [("go", "py"), ("py", "go")])
def test_del_restores_the_other_ones_add(world: World, adder: str, deleter: str) -> None:
    """Go's DEL restores after our ADD and ours after Go's: the backup file is shared."""
    before = world.state()
    conf = world.conf(mac=MAC, mtu=1400, promisc=True, allmulti=True, sysctl=SYSCTLS)
    world.call(adder, "ADD", conf)
    assert world.state()["address"] == MAC
    assert world.backup() is not None
    world.call(deleter, "DEL", conf)
    restored = world.state()
    assert {k: restored[k] for k in ("address", "mtu", "promiscuity", "allmulti", "flags")} == {
        k: before[k] for k in ("address", "mtu", "promiscuity", "allmulti", "flags")
    }
    assert world.backup() is None


def test_del_without_link_netns_or_file_succeeds(world: World) -> None:
    """DEL is success with nothing saved, with the link gone (the file goes too; Go keeps
    it), and with an empty or missing ``CNI_NETNS``."""
    conf = world.conf(mtu=1400)
    world.call("py", "DEL", conf)
    world.call("py", "ADD", conf)
    world.ctr.exec("ip", "link", "del", "eth0")
    world.call("py", "DEL", conf)
    assert world.backup() is None
    executor, _ = world.executors["py"]
    for netns in ("", "/run/netns/cnilib-no-such-netns"):
        executor.exec(
            Invocation(
                command="DEL",
                plugin_type="tuning",
                container_id=CID,
                stdin=json.dumps(conf).encode(),
                netns=netns,
                ifname="eth0",
                path=("/x",),
            )
        )


def test_txqlen_ours_go_111_ignores_it(worlds: dict[str, World]) -> None:
    """``txQLen`` (latest Go): set, saved as ``txQLen``, checked and restored by ours;
    Debian's 1.1.1 ignores the key."""
    w = worlds["py"]
    conf = w.conf(txQLen=20000, args={"cni": {"txQLen": 3000}})
    w.call("py", "ADD", conf)
    assert w.state()["txqlen"] == 3000
    assert json.loads(w.backup() or "") == {"txQLen": 1000}
    w.call("py", "CHECK", conf)
    w.ctr.exec("ip", "link", "set", "eth0", "txqueuelen", "5")
    err = w.error("py", "CHECK", conf)
    assert (err.code, err.msg) == (
        999,
        "Error: Tuning configured Transmit Queue Length of eth0 is 3000, current value is 5",
    )
    w.call("py", "DEL", conf)
    assert w.state()["txqlen"] == 1000
    g = worlds["go"]
    g.call("go", "ADD", g.conf(txQLen=20000))
    assert g.state()["txqlen"] == 1000
    assert g.backup() is None


def test_ifname_placeholder_same_as_go(worlds: dict[str, World]) -> None:
    """``IFNAME`` in a sysctl key is ``CNI_IFNAME``, as in Go; also in CHECK (latest Go),
    where 1.1.1 looks for a directory called ``IFNAME``."""
    sysctl = {"net.ipv4.conf.IFNAME.arp_filter": "1"}
    for impl, w in worlds.items():
        w.call(impl, "ADD", w.conf(sysctl=sysctl))
        assert w.state(sysctl)["net.ipv4.conf.IFNAME.arp_filter"] == "1"
    worlds["py"].call("py", "CHECK", worlds["py"].conf(sysctl=sysctl))
    err = worlds["go"].error("go", "CHECK", worlds["go"].conf(sysctl=sysctl))
    assert err.msg == "open /proc/sys/net/ipv4/conf/IFNAME/arp_filter: no such file or directory"


# ---------------------------------------------------------------------------- CHECK

DRIFT = {
    "sysctl": (
        ("sh", "-c", "echo 0 > /proc/sys/net/ipv4/conf/eth0/arp_filter"),
        "Error: Tuning configured value of /proc/sys/net/ipv4/conf/eth0/arp_filter "
        "is 1, current value is 0",
    ),
    "mac": (
        ("ip", "link", "set", "eth0", "address", MAC0),
        f"Error: Tuning configured Ethernet of eth0 is {MAC}, current value is {MAC0}",
    ),
    "promisc": (
        ("ip", "link", "set", "eth0", "promisc", "off"),
        "Error: Tuning link eth0 configured promisc is true, current value is 0",
    ),
    "mtu": (
        ("ip", "link", "set", "eth0", "mtu", "1500"),
        "Error: Tuning configured MTU of eth0 is 1400, current value is 1500",
    ),
    "allmulti": (("ip", "link", "set", "eth0", "allmulticast", "off"), ""),
}


@pytest.mark.parametrize("what", list(DRIFT))
def test_check_fails_after_drift_as_go(worlds: dict[str, World], what: str) -> None:
    """CHECK passes after ADD, then fails once the kernel drifts: Go's code and text
    (the allmulti text prints the value; Go prints a pointer)."""
    command, text = DRIFT[what]
    errors = {}
    for impl, w in worlds.items():
        conf = w.conf(
            mac=MAC,
            mtu=1400,
            promisc=True,
            allmulti=True,
            sysctl={"net.ipv4.conf.eth0.arp_filter": "1"},
        )
        w.call(impl, "ADD", conf)
        w.call(impl, "CHECK", conf)
        w.ctr.exec(*command)
        errors[impl] = w.error(impl, "CHECK", conf)
    assert errors["py"].code == errors["go"].code == 999
    if text:
        assert errors["py"].msg == errors["go"].msg == text
    else:
        assert errors["py"].msg == (
            "Error: Tuning configured all-multicast mode of eth0 is true, current value is false"
        )
        assert errors["go"].msg.startswith("Error: Tuning configured all-multicast mode of eth0")


def test_check_promisc_must_be_off_when_not_configured(worlds: dict[str, World]) -> None:
    """As Go: without ``promisc``, CHECK wants the link non-promiscuous."""
    for impl, w in worlds.items():
        conf = w.conf(mtu=1400)
        w.call(impl, "ADD", conf)
        w.ctr.exec("ip", "link", "set", "eth0", "promisc", "on")
        err = w.error(impl, "CHECK", conf)
        assert err.msg == "Error: Tuning link eth0 configured promisc is false, current value is 1"


# ------------------------------------------------------------------------- refusals

ESCAPES = ["net/../../kernel/domainname", "net.ipv4/../../../kernel/domainname"]


@pytest.mark.parametrize("key", ESCAPES)
def test_path_escape_refused_and_writes_nothing(worlds: dict[str, World], key: str) -> None:
    """A ``..`` key is refused, naming it, before anything is written; the machine's
    ``kernel.domainname`` (not per network namespace) is untouched. Go 1.1.1 reads the
    dots as separators and fails to open ``/proc/sys/net/...kernel/domainname``."""
    target = Path("/proc/sys/kernel/domainname")
    original = target.read_text()
    sysctl = {"net.ipv4.conf.eth0.arp_filter": "1", key: "pwned-by-cnilib-test"}
    for impl, w in worlds.items():
        err = w.error(impl, "ADD", w.conf(sysctl=sysctl, mtu=1400))
        assert err.code == 999
        if impl == "py":
            assert err.msg == (
                f'invalid net sysctl key: "{key}": a ".." component would leave /proc/sys/net/'
            )
            assert w.state()["net.ipv4.conf.eth0.arp_filter"] == "0"  # nothing written
            assert w.backup() is None
        else:
            assert "kernel/domainname: no such file or directory" in err.msg
        assert target.read_text() == original


def test_non_net_key_refused(worlds: dict[str, World]) -> None:
    """A key outside ``net`` is refused (code 999); latest Go names it with ``/``."""
    msgs = {
        impl: w.error(impl, "ADD", w.conf(sysctl={"kernel.domainname": "x"}))
        for impl, w in worlds.items()
    }
    assert msgs["go"].code == msgs["py"].code == 999
    assert msgs["go"].msg == 'invalid net sysctl key: "kernel.domainname"'
    assert msgs["py"].msg == 'invalid net sysctl key: "kernel/domainname"'


def test_duplicated_key_refused_go_111_accepts(worlds: dict[str, World]) -> None:
    """The same sysctl key twice: refused (latest Go); 1.1.1 silently keeps the last."""
    for impl, w in worlds.items():
        text = json.dumps(w.conf(sysctl={"net.core.somaxconn": "512"}))
        raw = text.replace('"sysctl": {', '"sysctl": {"net.core.somaxconn": "300", ').encode()
        if impl == "py":
            err = w.error(impl, "ADD", raw)
            assert (err.code, err.msg) == (999, "duplicated sysctl keys are not allowed")
            assert w.state({"net.core.somaxconn": ""})["net.core.somaxconn"] != "512"
        else:
            w.call(impl, "ADD", raw)
            assert w.state({"net.core.somaxconn": ""})["net.core.somaxconn"] == "512"


@pytest.mark.parametrize(
    ("keys", "prev", "text"),
    [
        ({"mac": "zz"}, True, "invalid args zz for MAC addr: address zz: invalid MAC address"),
        ({"mtu": 1400}, False, "Required prevResult missing"),
        (
            {"mtu": "1400"},
            True,
            "failed to load netconf: json: cannot unmarshal string into "
            "Go struct field TuningConf.mtu of type int",
        ),
    ],
    ids=["bad-mac", "no-prev-result", "mtu-string"],
)
def test_bad_config_same_error_as_go(
    worlds: dict[str, World], keys: JSON, prev: bool, text: str
) -> None:
    """Go's code and text; ours changes nothing (Go has written its backup file before it
    parses the MAC)."""
    for impl, w in worlds.items():
        before = w.state()
        err = w.error(impl, "ADD", w.conf(prev=prev, **keys))
        assert (err.code, err.msg) == (999, text)
        assert w.state() == before
        if impl == "py":
            assert w.backup() is None


def test_ifname_with_slash_refused(world: World) -> None:
    """``CNI_IFNAME`` with ``/`` is refused (latest Go; cnilib's skel already does)."""
    err = world.error("py", "ADD", world.conf(mtu=1400), ifname="a/b")
    assert "/" in err.msg
    assert world.backup() is None


def test_allowlist(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the allowlist file present, a key must match one of its regexps (Go's text)."""
    allow = tmp_path / "allowlist.conf"
    allow.write_text("^net\\.core\\.somaxconn$\n\n  ^net\\.ipv4\\.conf\\.IFNAME\\.\n")
    monkeypatch.setattr(tuning_conf, "ALLOWLIST_PATH", allow)
    world.call(
        "py",
        "ADD",
        world.conf(sysctl={"net.core.somaxconn": "600", "net.ipv4.conf.IFNAME.arp_filter": "1"}),
    )
    err = world.error("py", "ADD", world.conf(sysctl={"net.ipv4.conf.eth0.arp_filter": "1"}))
    assert err.msg == (
        "Sysctl net.ipv4.conf.eth0.arp_filter is not allowed. Only the following sysctls are "
        "allowed: [^net\\.core\\.somaxconn$ ^net\\.ipv4\\.conf\\.IFNAME\\.]"
    )


def test_versions_status_gc(world: World) -> None:
    """Every spec version (1.1.0 too, which 1.1.1 lacks); STATUS and GC succeed."""
    executor, _ = world.executors["py"]
    info = executor.version_info("tuning", ())
    assert "1.1.0" in info.supported_versions
    for command in ("STATUS", "GC"):
        conf = {
            "cniVersion": "1.1.0",
            "name": "tun",
            "type": "tuning",
            "cni.dev/valid-attachments": [],
        }
        executor.exec(
            Invocation(
                command=command, plugin_type="tuning", path=("/x",), stdin=json.dumps(conf).encode()
            )
        )


# --------------------------------------------------------------------- executable, chain


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """cnilib's plugins installed as executables."""
    d = tmp_path / "bin"
    d.mkdir()
    return install_plugins(d)


def test_installed_executable_same_as_go(
    cnilib_container_netns: MakeNS, tmp_path: Path, bin_dir: Path
) -> None:
    """The installed ``tuning`` executable (exec'd as Go's is) gives Go's result, state and
    backup file; its DEL restores."""
    seen = {}
    for impl in ("go", "exe"):
        w = _world(cnilib_container_netns, tmp_path / impl, bin_dir)
        before = w.state()
        conf = w.conf(mac=MAC, mtu=1400, promisc=True, sysctl=SYSCTLS)
        result = w.call(impl, "ADD", conf)
        seen[impl] = (result, w.state(), w.backup())
        w.call(impl, "CHECK", {**conf, "prevResult": result})
        w.call(impl, "DEL", conf)
        assert link_only(w.state()) == link_only(before)
    assert seen["exe"] == seen["go"]


@pytest.fixture
def _macvlan_kernel(cnilib_privileged: None) -> None:
    require_link_kind("macvlan")


@pytest.fixture
def sides(cnilib_container_netns: MakeNS, tmp_path: Path) -> Iterator[dict[str, LinkSide]]:
    """Go's macvlan + host-local + tuning, and the same with our tuning."""
    go = LinkSide.build("go", cnilib_container_netns, tmp_path / "go")
    base = LinkSide.build("py", cnilib_container_netns, tmp_path / "py")
    ours = InProcessExecutor(
        {"tuning": load_plugin("tuning")},
        builtins=False,
        installed=False,
        host_netns=base.node.path,
    )
    mixed = LinkSide.mixed_link(base, tmp_path / "mixed", ours)
    try:
        yield {"go": go, "py": mixed}
    finally:
        mixed.cni.close()


@pytest.mark.usefixtures("_macvlan_kernel")
def test_chain_after_macvlan_same_as_go(sides: dict[str, LinkSide]) -> None:
    """In a conflist after Go's macvlan through cnilib.CNI: the same result (the tuned MAC
    on the interface) and namespaces as Go's tuning; CHECK and DEL pass."""
    macvlan = {
        "type": "macvlan",
        "master": "up0",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.66.7.0/24"}]]},
    }
    tuned = {
        "type": "tuning",
        "mac": MAC,
        "mtu": 1400,
        "promisc": True,
        "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"},
    }
    results, states = {}, {}
    for impl, side in sides.items():
        side.keep_macs = [MAC]
        conf = side.conflist(macvlan, tuned)
        res = side.cni.add_network_list(conf, side.rt())
        assert res is not None
        results[impl] = json.loads(json.dumps(res.to_object()).replace(side.ctr().path, "<n>"))
        states[impl] = side.state()
        side.cni.check_network_list(conf, side.rt())
        side.cni.delete_network_list(conf, side.rt())
        assert side.allocated() == set()
    assert results["py"] == results["go"]
    assert results["py"]["interfaces"][0]["mac"] == MAC
    assert states["py"] == states["go"]
