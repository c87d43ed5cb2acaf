"""The examples in examples/ run as users run them: ``python examples/<name>.py``, as root.

Each run is a subprocess; the tests check its exit status, what it printed,
and that every namespace it made is gone afterwards. The examples print the
names of their namespaces, so the check does not depend on other namespaces
that tests running beside this one make or remove meanwhile.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GO_BRIDGE = Path("/usr/lib/cni/bridge")

pytestmark = pytest.mark.privileged


def run_example(*argv: str) -> subprocess.CompletedProcess[str]:
    """``python <argv>`` from examples/, output captured as text."""
    return subprocess.run(
        [sys.executable, *argv],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def namespaces() -> set[str]:
    """The named network namespaces that exist now (``ip netns list``)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def host_has_link(name: str) -> bool:
    """Whether the machine's own namespace has a link called *name* (it must not)."""
    proc = subprocess.run(["ip", "link", "show", name], capture_output=True, check=False)
    return proc.returncode == 0


def subnet(conflist: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The host-local subnet of an example conflist's first plugin."""
    raw = json.loads((EXAMPLES / conflist).read_text())
    return ipaddress.ip_network(raw["plugins"][0]["ipam"]["ranges"][0][0]["subnet"])


def web_addresses(out: str) -> dict[str, ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The container web's address on each interface, from the example's ADD lines."""
    found = re.findall(r"^ADD web (eth\d) \S+: (\S+) gw ", out, re.M)
    return {ifname: ipaddress.ip_interface(address) for ifname, address in found}


# At module level: pytest deprecates class-scoped fixtures defined as instance methods.
@pytest.fixture(scope="class", name="run")
def runtime_example_run(cnilib_privileged: None) -> subprocess.CompletedProcess[str]:
    """One run of examples/runtime.py, shared by the class's tests."""
    return run_example("runtime.py")


class TestRuntimeExample:
    def test_exits_zero_and_leaves_no_namespace(
        self, run: subprocess.CompletedProcess[str]
    ) -> None:
        assert run.returncode == 0, run.stderr
        assert run.stderr == ""
        names = re.findall(r"cnilib-rt-\w+-[0-9a-f]{8}", run.stdout)
        assert {n.split("-")[2] for n in names} == {"node", "web", "batch"}
        assert not set(names) & namespaces()
        assert not host_has_link("rt-br0"), "the bridge was made in the machine's namespace"

    def test_each_interface_gets_an_address_of_its_network(
        self, run: subprocess.CompletedProcess[str]
    ) -> None:
        added = web_addresses(run.stdout)
        assert set(added) == {"eth0", "eth1"}
        eth0, eth1 = added["eth0"], added["eth1"]
        assert eth0.ip in subnet("runtime-bridge.conflist")
        assert eth1.ip in subnet("runtime-ptp.conflist")
        # The kernel agrees, and the cache gives back what ADD returned.
        assert f"eth0 {eth0}, eth1 {eth1}" in run.stdout
        assert re.search(rf"^  web  eth0  runtime-bridge  {eth0} gw ", run.stdout, re.M)
        assert re.search(rf"^  web  eth1  runtime-ptp  {eth1} gw ", run.stdout, re.M)

    def test_gc_collects_only_the_forgotten_container(
        self, run: subprocess.CompletedProcess[str]
    ) -> None:
        out = run.stdout
        assert "GC runtime-bridge: stale batch/eth0; deleted batch/eth0" in out
        assert "GC runtime-ptp: stale batch/eth1; deleted batch/eth1" in out
        before = re.search(r"addresses still reserved:\n  (.*)$", out, re.M)
        after = re.search(r"after GC, addresses reserved: (.*)$", out, re.M)
        assert before is not None
        assert after is not None
        added = web_addresses(out)
        web = {f"runtime-bridge:{added['eth0'].ip}", f"runtime-ptp:{added['eth1'].ip}"}
        assert len(set(before[1].split()) - web) == 2  # batch's, one on each network
        assert set(after[1].split()) == web  # batch's released, web's kept

    def test_del_removes_everything(self, run: subprocess.CompletedProcess[str]) -> None:
        tail = run.stdout[run.stdout.index("DEL web") :]
        assert "cached attachments: 0" in tail
        assert "addresses reserved: none" in tail


class TestRuntimeExampleFailing:
    def test_a_failure_is_one_line_and_still_deletes_the_namespaces(
        self, cnilib_privileged: None
    ) -> None:
        """Fail after the namespaces exist: exit status 1, one line, nothing left."""
        script = textwrap.dedent(
            """
            import runtime, sys

            def failing(node, web, batch, tmp):
                print(node.name, web.name, batch.name)
                raise OSError("no space left\\non device")

            runtime.run = failing
            sys.exit(runtime.main())
            """
        )
        proc = run_example("-c", script)
        assert proc.returncode == 1
        assert proc.stderr == "runtime example failed: OSError: no space left on device\n"
        made = set(proc.stdout.split())
        assert len(made) == 3
        assert not made & namespaces()


class TestDemo:
    def test_in_process(self, cnilib_privileged: None) -> None:
        run = run_example("demo.py")
        assert run.returncode == 0, run.stderr
        assert "plugins: cnilib's own, in-process" in run.stdout
        self.check(run.stdout, "inprocess.conflist")
        # the chained plugins did their part: the port mapping reached the container's
        # server, bandwidth limited the veth and the IFB
        assert re.search(
            r"^--- portmap: (\S+):8080 on the node answered: hello from the container to \1$",
            run.stdout,
            re.M,
        )
        assert len(re.findall(r"^qdisc tbf .* rate 10Mbit ", run.stdout, re.M)) == 2

    @pytest.mark.go_plugins
    @pytest.mark.skipif(not GO_BRIDGE.is_file(), reason=f"{GO_BRIDGE} is not installed")
    def test_go_plugins(self, cnilib_privileged: None) -> None:
        run = run_example("demo.py", "--go")
        assert run.returncode == 0, run.stderr
        assert "plugins: Debian's Go binaries" in run.stdout
        self.check(run.stdout, "bridge.conflist")

    @staticmethod
    def check(out: str, conflist: str) -> None:
        """The ADD result's address is in the network's subnet; DEL left nothing; no netns left."""
        address = re.search(r'"address": "([^"]+)"', out)
        assert address is not None
        assert ipaddress.ip_interface(address[1]).ip in subnet(conflist)
        assert "--- cached attachments left: 0" in out
        made = re.search(r"node namespace (\S+), container namespace (\S+)", out)
        assert made is not None
        assert not {made[1], made[2]} & namespaces()
        assert not host_has_link("cnilib0")
