"""cnilib's in-process loopback plugin against Debian's Go loopback (1.1.1), on a real kernel.

Go's binary runs inside a node namespace (``ip netns exec``), ours in process
through the plugin framework (:func:`cnilib.plugins._skel.handle`, what both the
in-process executor and the executables use). Each gets its own fresh container
namespace, made with a bare ``ip netns add`` (``lo`` down, no addresses), and
the answers and the kernel state of ``lo`` are compared.

Deliberate differences, asserted as such (see :mod:`cnilib.plugins.main.loopback`):
Go 1.1.1 prints a 1.x-shaped result for every version (no ``ip4``/``ip6``
for 0.1.0/0.2.0, no ``version`` in 0.3.x/0.4.0 ``ips``) with ``"dns": {}``;
ours converts to the configured version; and a missing namespace is worded
differently (same code).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cnilib import netlink
from cnilib.errors import ErrorCode, PluginError
from cnilib.plugins._skel import handle
from cnilib.plugins.main.loopback import Loopback
from cnilib.testing import NetNS

GO_LOOPBACK = Path("/usr/lib/cni/loopback")
GO_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0")

pytestmark = [
    pytest.mark.go_plugins,
    pytest.mark.skipif(
        not GO_LOOPBACK.is_file(), reason="Debian's containernetworking-plugins are not installed"
    ),
]

JSON = dict[str, Any]
MakeNS = Callable[[], NetNS]


@dataclass(frozen=True)
class Answer:
    """What a plugin call printed, as the exec protocol carries it."""

    ok: bool
    output: JSON | None  # the result or error object; None for empty output

    @property
    def error(self) -> JSON:
        assert not self.ok
        assert self.output is not None
        return self.output


def config(version: str, **extra: Any) -> bytes:
    return json.dumps(
        {"cniVersion": version, "name": "lo-net", "type": "loopback", **extra}
    ).encode()


def env(command: str, netns: str) -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "ctr-1",
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",  # ignored: loopback always works on lo
        "CNI_PATH": str(GO_LOOPBACK.parent),
    }


def run_go(node: NetNS, environ: Mapping[str, str], stdin: bytes) -> Answer:
    """Go's loopback exec'd inside the node namespace."""
    proc = subprocess.run(
        [*node.exec_prefix, str(GO_LOOPBACK)],
        input=stdin,
        capture_output=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environ},
        check=False,
    )
    out = proc.stdout.strip()
    return Answer(proc.returncode == 0, json.loads(out) if out else None)


def run_ours(environ: Mapping[str, str], stdin: bytes) -> Answer:
    """Our loopback in process, through the framework."""
    try:
        out = handle(Loopback(), environ, stdin)
    except PluginError as exc:
        return Answer(False, exc.to_object())
    return Answer(True, json.loads(out) if out else None)


def lo_state(ns: NetNS) -> JSON:
    """``ip -j addr show lo``, minus counters that differ between any two namespaces."""
    [lo] = json.loads(ns.exec("ip", "-j", "addr", "show", "lo").stdout)
    return {k: lo[k] for k in ("ifname", "flags", "mtu", "operstate", "address", "addr_info")}


def without_sandbox(result: JSON) -> JSON:
    """The result with each interface's sandbox replaced by a marker (paths differ)."""
    copy: JSON = json.loads(json.dumps(result))
    for iface in copy.get("interfaces", []):
        if "sandbox" in iface:
            iface["sandbox"] = "<netns>"
    return copy


@pytest.fixture
def fresh_netns(cnilib_privileged: None) -> Iterator[MakeNS]:
    """Factory of brand-new namespaces (``lo`` down, no address), all deleted at teardown."""
    made: list[NetNS] = []

    def make() -> NetNS:
        ns = NetNS(f"cnilib-ctr-{secrets.token_hex(4)}")
        subprocess.run(["ip", "netns", "add", ns.name], check=True)
        made.append(ns)
        return ns

    try:
        yield make
    finally:
        for ns in made:
            ns.delete()
        netlink.default_pool().close()


@pytest.fixture
def pair(fresh_netns: MakeNS) -> tuple[NetNS, NetNS]:
    """Two fresh container namespaces: Go's and ours."""
    return fresh_netns(), fresh_netns()


class TestAdd:
    """ADD: lo comes up, and the answer describes it (or passes prevResult on)."""

    @pytest.mark.parametrize("version", GO_VERSIONS)
    def test_same_kernel_state_and_result(
        self, cnilib_node_netns: NetNS, pair: tuple[NetNS, NetNS], version: str
    ) -> None:
        """Both bring lo up with the same addresses; results agree but for Go 1.1.1's
        unconverted shape (see the module docstring)."""
        go_ns, our_ns = pair
        assert "UP" not in lo_state(our_ns)["flags"]

        go = run_go(cnilib_node_netns, env("ADD", go_ns.path), config(version))
        ours = run_ours(env("ADD", our_ns.path), config(version))

        assert go.ok, go.output
        assert ours.ok, ours.output
        assert lo_state(go_ns) == lo_state(our_ns)
        assert "UP" in lo_state(our_ns)["flags"]
        assert go.output is not None
        assert ours.output is not None
        assert version == go.output["cniVersion"] == ours.output["cniVersion"]
        go_ips = [ip["address"] for ip in go.output["ips"]]
        assert ["127.0.0.1/8", "::1/128"] == go_ips
        if version in ("0.1.0", "0.2.0"):
            expected = {"ip4": {"ip": "127.0.0.1/8"}, "ip6": {"ip": "::1/128"}, "dns": {}}
            assert {"cniVersion": version, **expected} == ours.output
            return
        go_result = without_sandbox(go.output)
        our_result = without_sandbox(ours.output)
        assert {"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": go_ns.path} == (
            go.output["interfaces"][0]
        )
        assert {"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": our_ns.path} == (
            ours.output["interfaces"][0]
        )
        if version == "1.0.0":
            assert {} == go_result.pop("dns")  # Go 1.1.1 keeps an empty dns; libcni >= 1.1 drops it
        else:
            for ip in our_result["ips"]:
                assert {"4": "127.0.0.1/8", "6": "::1/128"}[ip.pop("version")] == ip["address"]
        assert go_result == our_result

    def test_version_1_1_0(self, fresh_netns: MakeNS) -> None:
        """1.1.0 (which Go 1.1.1 does not speak) gives the same 1.x result."""
        ns = fresh_netns()
        ours = run_ours(env("ADD", ns.path), config("1.1.0"))
        assert ours.ok
        assert {
            "cniVersion": "1.1.0",
            "interfaces": [{"mac": "00:00:00:00:00:00", "name": "lo", "sandbox": ns.path}],
            "ips": [
                {"address": "127.0.0.1/8", "interface": 0},
                {"address": "::1/128", "interface": 0},
            ],
        } == ours.output

    @pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
    def test_prev_result_passes_through(
        self, cnilib_node_netns: NetNS, pair: tuple[NetNS, NetNS], version: str
    ) -> None:
        """With a prevResult, both answer it unchanged (and still bring lo up)."""
        go_ns, our_ns = pair
        ip: JSON = {"address": "10.5.0.2/24", "gateway": "10.5.0.1", "interface": 0}
        if version == "0.4.0":
            ip["version"] = "4"
        prev = {
            "cniVersion": version,
            "interfaces": [{"name": "eth0", "mac": "0a:58:0a:05:00:02", "sandbox": "/x"}],
            "ips": [ip],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["10.5.0.1"]},
        }
        go = run_go(cnilib_node_netns, env("ADD", go_ns.path), config(version, prevResult=prev))
        ours = run_ours(env("ADD", our_ns.path), config(version, prevResult=prev))

        assert go.ok, go.output
        assert ours.ok, ours.output
        assert prev == go.output == ours.output
        assert lo_state(go_ns) == lo_state(our_ns)
        assert "UP" in lo_state(our_ns)["flags"]

    def test_non_loopback_address_on_lo_fails_like_go(
        self, cnilib_node_netns: NetNS, pair: tuple[NetNS, NetNS]
    ) -> None:
        """An address on lo outside 127/8 and ::1 fails ADD with Go's text and code."""
        for ns in pair:
            ns.exec("ip", "addr", "add", "10.1.1.1/32", "dev", "lo")
        go = run_go(cnilib_node_netns, env("ADD", pair[0].path), config("1.0.0"))
        ours = run_ours(env("ADD", pair[1].path), config("1.0.0"))

        assert (
            {
                "code": 999,
                "msg": 'loopback interface found with non-loopback address "10.1.1.1"',
            }
            == go.error
            == ours.error
        )

    def test_missing_netns(self, cnilib_node_netns: NetNS) -> None:
        """A missing namespace fails ADD with code 999 in both (texts differ) and
        nothing is created at the path."""
        missing = f"/run/netns/cnilib-missing-{secrets.token_hex(4)}"
        go = run_go(cnilib_node_netns, env("ADD", missing), config("1.0.0"))
        ours = run_ours(env("ADD", missing), config("1.0.0"))

        assert {"code": 999, "msg": f'failed to Statfs "{missing}": no such file or directory'} == (
            go.error
        )
        assert {"code": 999, "msg": f"netns: open {missing}: No such file or directory"} == (
            ours.error
        )
        assert not os.path.exists(missing)

    def test_bad_prev_result_is_reported(self, fresh_netns: MakeNS) -> None:
        """An undecodable prevResult fails ADD (code 999, Go's prefix) before lo is touched."""
        ns = fresh_netns()
        prev = {"cniVersion": "1.0.0", "ips": [{"address": "not-an-ip"}]}
        ours = run_ours(env("ADD", ns.path), config("1.0.0", prevResult=prev))
        assert ErrorCode.INTERNAL == ours.error["code"]
        assert ours.error["msg"].startswith("failed to parse prevResult: ")
        assert "UP" not in lo_state(ns)["flags"]

    def test_callers_thread_stays_in_its_namespace(self, fresh_netns: MakeNS) -> None:
        """Running the plugin leaves the calling thread's namespace alone."""
        before = os.readlink("/proc/thread-self/ns/net")
        assert run_ours(env("ADD", fresh_netns().path), config("1.0.0")).ok
        assert before == os.readlink("/proc/thread-self/ns/net")


class TestCheck:
    """CHECK: lo must be up."""

    def test_up_passes_and_down_fails_with_gos_text(
        self, cnilib_node_netns: NetNS, pair: tuple[NetNS, NetNS]
    ) -> None:
        """After ADD both pass; with lo set down both fail with Go's error object."""
        go_ns, our_ns = pair
        assert run_go(cnilib_node_netns, env("ADD", go_ns.path), config("1.0.0")).ok
        assert run_ours(env("ADD", our_ns.path), config("1.0.0")).ok

        assert Answer(True, None) == run_go(
            cnilib_node_netns, env("CHECK", go_ns.path), config("1.0.0")
        )
        assert Answer(True, None) == run_ours(env("CHECK", our_ns.path), config("1.0.0"))

        for ns in pair:
            ns.exec("ip", "link", "set", "lo", "down")
        go = run_go(cnilib_node_netns, env("CHECK", go_ns.path), config("1.0.0"))
        ours = run_ours(env("CHECK", our_ns.path), config("1.0.0"))
        assert {"code": 999, "msg": "loopback interface is down"} == go.error == ours.error

    def test_missing_netns_fails(self, cnilib_node_netns: NetNS) -> None:
        """CHECK of a missing namespace is an error (code 999) in both."""
        missing = f"/run/netns/cnilib-missing-{secrets.token_hex(4)}"
        go = run_go(cnilib_node_netns, env("CHECK", missing), config("1.0.0"))
        ours = run_ours(env("CHECK", missing), config("1.0.0"))
        assert ErrorCode.INTERNAL == go.error["code"] == ours.error["code"]


class TestDelete:
    """DEL: lo goes down; a namespace that is gone is fine."""

    def test_sets_lo_down_like_go(
        self, cnilib_node_netns: NetNS, pair: tuple[NetNS, NetNS]
    ) -> None:
        """ADD then DEL leaves lo in the same state (down, 127.0.0.1 kept) in both."""
        go_ns, our_ns = pair
        assert run_go(cnilib_node_netns, env("ADD", go_ns.path), config("1.0.0")).ok
        assert run_ours(env("ADD", our_ns.path), config("1.0.0")).ok

        assert Answer(True, None) == run_go(
            cnilib_node_netns, env("DEL", go_ns.path), config("1.0.0")
        )
        assert Answer(True, None) == run_ours(env("DEL", our_ns.path), config("1.0.0"))

        assert lo_state(go_ns) == lo_state(our_ns)
        assert "UP" not in lo_state(our_ns)["flags"]
        assert ["127.0.0.1"] == [a["local"] for a in lo_state(our_ns)["addr_info"]]

    def test_del_is_idempotent(self, fresh_netns: MakeNS) -> None:
        """A second DEL succeeds too."""
        ns = fresh_netns()
        for _ in range(2):
            assert Answer(True, None) == run_ours(env("DEL", ns.path), config("1.0.0"))

    @pytest.mark.parametrize("netns", ["", "/run/netns/cnilib-missing-del"])
    def test_missing_or_empty_netns_is_success(self, cnilib_node_netns: NetNS, netns: str) -> None:
        """DEL with no namespace, or one that is gone, succeeds in both."""
        assert Answer(True, None) == run_go(cnilib_node_netns, env("DEL", netns), config("1.0.0"))
        assert Answer(True, None) == run_ours(env("DEL", netns), config("1.0.0"))
        assert not os.path.exists("/run/netns/cnilib-missing-del")

    def test_not_a_namespace_is_still_an_error(
        self, cnilib_node_netns: NetNS, tmp_path: Path
    ) -> None:
        """Only a *missing* namespace is tolerated: a plain file fails DEL in both."""
        bogus = tmp_path / "not-a-netns"
        bogus.write_text("")
        go = run_go(cnilib_node_netns, env("DEL", str(bogus)), config("1.0.0"))
        ours = run_ours(env("DEL", str(bogus)), config("1.0.0"))
        assert ErrorCode.INTERNAL == go.error["code"] == ours.error["code"]
        assert f"netns: open {bogus}: not a network namespace" == ours.error["msg"]

    def test_del_releases_the_worker(self, fresh_netns: MakeNS) -> None:
        """After DEL no worker keeps the container's namespace alive."""
        ns = fresh_netns()
        assert run_ours(env("ADD", ns.path), config("1.0.0")).ok
        assert run_ours(env("DEL", ns.path), config("1.0.0")).ok
        assert not netlink.default_pool().close_netns(ns.path)


def test_plugin_type() -> None:
    """The plugin registers as ``loopback`` and speaks every spec version."""
    assert "loopback" == Loopback.type
    assert {"0.1.0", "1.0.0", "1.1.0"} <= set(Loopback.supported_versions)
