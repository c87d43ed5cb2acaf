"""Kernel, process-table and on-disk inspection shared by the privileged tests.

Everything here only reads: ``ip``/``bridge``/``iptables-save`` run inside a test's
own namespace, /proc is scanned for a test's plugin processes (the only thing it
ever kills, by pid), and host-local's store and cnilib's cache are listed under the
test's ``tmp_path``. Creating and deleting namespaces stays with the fixtures.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import pytest

import cnilib
from cnilib.testing import NetNS

GO_PLUGINS = Path("/usr/lib/cni")
IPAM_LEFTOVERS = {"lock", "last_reserved_ip.0"}
"""What host-local keeps in its store after every address was released (by design)."""

JSON = dict[str, Any]


def go_plugin_marks() -> list[pytest.MarkDecorator]:
    """The ``pytestmark`` of a module that needs Debian's Go plugins in /usr/lib/cni."""
    return [
        pytest.mark.go_plugins,
        pytest.mark.skipif(
            not (GO_PLUGINS / "bridge").is_file(),
            reason="Debian's containernetworking-plugins are not installed in /usr/lib/cni",
        ),
    ]


# ------------------------------------------------------------------------------ kernel


def plugin_output(out: bytes, sandbox: str) -> JSON | None:
    """A plugin's stdout as JSON (None when empty), *sandbox* written ``<netns>`` and an
    empty ``dns`` dropped (Go prints ``"dns": {}``; cnilib omits it), so that Go's and
    cnilib's results compare equal."""
    if not out.strip():
        return None
    result: JSON = json.loads(out.decode().replace(sandbox, "<netns>"))
    if result.get("dns") == {}:
        del result["dns"]
    return result


def ip_json(ns: NetNS, *args: str) -> list[JSON]:
    """``ip -n <ns> -j <args>``, parsed (empty list for no output)."""
    out = subprocess.run(
        ["ip", "-n", ns.name, "-j", *args], capture_output=True, text=True, check=True
    ).stdout.strip()
    return list(json.loads(out)) if out else []


def links(ns: NetNS) -> dict[str, JSON]:
    """Every link in *ns* by name."""
    return {link["ifname"]: link for link in ip_json(ns, "link")}


def link_names(ns: NetNS) -> set[str]:
    """The names of every link in *ns*."""
    return set(links(ns))


def addresses(ns: NetNS, dev: str) -> set[str]:
    """The non-link-scope ``addr/prefix`` strings configured on *dev* in *ns*."""
    out: set[str] = set()
    for link in ip_json(ns, "addr", "show", "dev", dev):
        for a in link.get("addr_info", []):
            if a.get("scope") != "link":
                out.add(f"{a['local']}/{a['prefixlen']}")
    return out


def bridge_ports(ns: NetNS) -> dict[str, str]:
    """Bridge port name -> its bridge, in *ns* (``bridge -j link``)."""
    out = ns.exec("bridge", "-j", "link").stdout.strip()
    return {p["ifname"]: p.get("master", "") for p in (json.loads(out) if out else [])}


def iptables_save(ns: NetNS, table: str | None = None) -> str:
    """``iptables-save`` of one *table* (or of all) inside *ns* (never anywhere else)."""
    return ns.exec("iptables-save", *(("-t", table) if table else ())).stdout


# ----------------------------------------------------------------------- process table


@dataclass(frozen=True)
class PluginProcess:
    """A live process started for one attachment (a plugin, its wrapper or its child)."""

    pid: int
    command: str
    """Its ``CNI_COMMAND``."""
    cmdline: str


def plugin_processes(container_id: str, *, prefix: bool = False) -> list[PluginProcess]:
    """Every live process whose environment has ``CNI_CONTAINERID=<container_id>`` (or, with
    *prefix*, one starting with it): ``ip netns exec``, the plugin it becomes, its children."""
    needle = f"CNI_CONTAINERID={container_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if any(v.startswith(needle) if prefix else v == needle for v in environ):
            command = next((v[12:] for v in environ if v.startswith(b"CNI_COMMAND=")), b"")
            found.append(
                PluginProcess(int(entry), command.decode(), cmdline.replace(b"\0", b" ").decode())
            )
    return found


def plugin_pids(container_id: str, *, prefix: bool = False) -> list[int]:
    """The pids of :func:`plugin_processes`."""
    return [p.pid for p in plugin_processes(container_id, prefix=prefix)]


def ps_lines(pids: Sequence[int]) -> list[str]:
    """``ps`` lines (with state and wait channel) of *pids*; none for no pid."""
    if not pids:
        return []
    ps = subprocess.run(
        ["ps", "-o", "pid,ppid,stat,wchan:24,etimes,args", "-p", ",".join(map(str, pids))],
        capture_output=True,
        text=True,
        check=False,
    )
    return ps.stdout.splitlines()


def kill_plugins(container_id: str) -> None:
    """SIGKILL, by pid, every live process of the attachment *container_id*."""
    for pid in plugin_pids(container_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_until(condition: Callable[[], bool], within: float = 15.0) -> None:
    """Poll *condition* until it holds; fail after *within* seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {within:g}s"
        time.sleep(0.005)


def wait_no_plugin_left(container_id: str, within: float = 3.0) -> None:
    """Assert that no process of the attachment is left (a SIGKILLed group dies at once,
    but its members vanish from /proc a moment later)."""
    deadline = time.monotonic() + within
    while (left := plugin_pids(container_id)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert left == [], f"plugin processes survived: {left}"


# ------------------------------------------------------------------------ files on disk


def names_in(directory: Path) -> set[str]:
    """The names in *directory*; none if it does not exist."""
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


def ipam_files(data_dir: Path, network: str) -> set[str]:
    """The names in host-local's store (``dataDir`` *data_dir*) for *network*."""
    return names_in(data_dir / network)


def cache_files(cache_dir: Path) -> set[str]:
    """The names in cnilib's ``results/`` directory under *cache_dir*."""
    return names_in(cache_dir / "results")


# ------------------------------------------------------------------------------ worlds


def bridge_host_local(bridge: str, subnet: str, data_dir: Path, **extra: Any) -> JSON:
    """A Go bridge plugin entry (gateway, no ipMasq unless *extra* says) with host-local IPAM."""
    return {
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        **extra,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": subnet}]],
            "dataDir": str(data_dir),
        },
    }


class TmpLayout:
    """Where one test keeps host-local's store and the recorder's log."""

    tmp: Path

    @property
    def data_dir(self) -> Path:
        """host-local's ``dataDir``."""
        return self.tmp / "ipam"

    @property
    def log(self) -> Path:
        """The recording plugin's log."""
        return self.tmp / "recorder.jsonl"


class CachedTmpLayout(TmpLayout):
    """A :class:`TmpLayout` with cnilib's result cache beside the store."""

    @property
    def cache_dir(self) -> Path:
        """cnilib's result cache."""
        return self.tmp / "cache"

    def cache_files(self) -> set[str]:
        """The names in cnilib's ``results/`` directory."""
        return cache_files(self.cache_dir)


@dataclass
class ChainWorld(CachedTmpLayout):
    """One attachment (eth0 in *ctr*) to a bridge + host-local chain whose plugins run in *node*.

    Subclasses name their network, bridge, subnet and container-ID prefix.
    """

    network: ClassVar[str]
    bridge: ClassVar[str]
    subnet: ClassVar[str]
    id_prefix: ClassVar[str]

    node: NetNS
    ctr: NetNS
    tmp: Path
    bin_dir: Path
    container_id: str

    @classmethod
    def create(cls, node: NetNS, ctr: NetNS, tmp: Path, bin_dir: Path) -> Self:
        """A world for a fresh container ID ``<id_prefix>-<random>``."""
        return cls(node, ctr, tmp, bin_dir, f"{cls.id_prefix}-{secrets.token_hex(4)}")

    @property
    def path(self) -> list[str]:
        """The plugin path: the Go plugins, then the tmp dir holding the recorder."""
        return [str(GO_PLUGINS), str(self.bin_dir)]

    def executor(self, timeout: float) -> cnilib.SubprocessExecutor:
        """An executor that runs every plugin inside the node namespace."""
        return cnilib.SubprocessExecutor(wrapper=self.node.exec_prefix, timeout=timeout)

    def cni(self, timeout: float = 20.0) -> cnilib.CNI:
        """An in-process CNI on the world's path and cache."""
        return cnilib.CNI(self.path, cache_dir=self.cache_dir, executor=self.executor(timeout))

    def rt(self, **kw: Any) -> cnilib.RuntimeConf:
        """The attachment under test: eth0 in the container namespace."""
        return cnilib.RuntimeConf(self.container_id, self.ctr.path, "eth0", **kw)

    def chain_bytes(self, *after: JSON) -> bytes:
        """bridge + host-local followed by *after*; recorders log and tuning keeps its data
        in tmp."""
        plugins = [bridge_host_local(self.bridge, self.subnet, self.data_dir)]
        for plugin in after:
            if plugin["type"] == "recorder":
                plugin = {**plugin, "recorder": {"log": str(self.log), **plugin["recorder"]}}
            if plugin["type"] == "tuning":
                plugin = {"dataDir": str(self.tmp / "tuning"), **plugin}
            plugins.append(plugin)
        raw = {"cniVersion": "1.0.0", "name": self.network, "plugins": plugins}
        return json.dumps(raw).encode()

    def ipam_files(self) -> set[str]:
        """The names in host-local's store for the network."""
        return ipam_files(self.data_dir, self.network)

    def assert_no_veth_left(self) -> None:
        """No veth on either side and no bridge port; the bridge itself stays, by design."""
        assert link_names(self.ctr) == {"lo"}
        assert bridge_ports(self.node) == {}
        assert link_names(self.node) <= {"lo", self.bridge}
