"""host-local and static against Debian's Go plugins (1.1.1) in /usr/lib/cni.

Differential: the same stdin, CNI_* variables and store state go to the Go
binary and to cnilib's plugin (through the same skel code a runtime uses);
results (decoded), error texts, and the store files (names, contents,
modes) must agree. Concurrent: Go processes and cnilib threads allocate
from one store at the same time and never hand out one address twice.

host-local never opens ``CNI_NETNS`` and this skel version does not compare
it with its own namespace, so a path that does not exist serves (no
``ip netns add`` needed).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cnilib.errors import PluginError
from cnilib.plugins._skel import handle
from cnilib.plugins.ipam.host_local import HostLocal
from cnilib.plugins.ipam.static import Static
from cnilib.results import decode_result

GO = Path("/usr/lib/cni")
pytestmark = [
    pytest.mark.go_plugins,
    pytest.mark.skipif(
        not (GO / "host-local").is_file() or not (GO / "static").is_file(),
        reason="Debian's containernetworking-plugins are not installed in /usr/lib/cni",
    ),
]

NETNS = "/var/run/netns/cnilib-ipam-never-opened"
GO_VERSIONS = ["0.3.1", "0.4.0", "1.0.0"]  # Go 1.1.1 supports up to 1.0.0
JSON = dict[str, Any]
Outcome = tuple[str, Any]


def _env(command: str, cid: str, ifname: str, args: str) -> dict[str, str]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": NETNS,
        "CNI_IFNAME": ifname,
        "CNI_PATH": str(GO),
    }
    if args:
        env["CNI_ARGS"] = args
    return env


def _normalize(stdout: bytes, version: str) -> Outcome:
    if not stdout.strip():
        return ("ok", None)
    return ("result", decode_result(stdout, default_version=version).to_object())


def run_go(
    binary: str, command: str, conf: JSON, cid: str = "c1", ifname: str = "eth0", args: str = ""
) -> Outcome:
    """Run a Go plugin; ("result", obj) / ("ok", None) / ("error", msg)."""
    proc = subprocess.run(
        [str(GO / binary)],
        input=json.dumps(conf).encode(),
        env=_env(command, cid, ifname, args),
        capture_output=True,
        check=False,
    )
    if proc.returncode:
        error = json.loads(proc.stdout)
        assert 999 == error["code"], error
        return ("error", error["msg"])
    return _normalize(proc.stdout, conf.get("cniVersion", ""))


def run_py(
    plugin: HostLocal | Static,
    command: str,
    conf: JSON,
    cid: str = "c1",
    ifname: str = "eth0",
    args: str = "",
) -> Outcome:
    """Run cnilib's plugin through the skel; same outcome shape as :func:`run_go`."""
    try:
        out = handle(plugin, _env(command, cid, ifname, args), json.dumps(conf).encode())
    except PluginError as exc:
        return ("error", exc.msg)
    return _normalize(out, conf.get("cniVersion", ""))


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file and directory below ``root``: (content, mode)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            content = b"<dir>" if stat.S_ISDIR(info.st_mode) else path.read_bytes()
            found[str(path.relative_to(root))] = (content, stat.S_IMODE(info.st_mode))
    return found


class Twin:
    """Two stores, one per implementation; each step runs on both and must agree."""

    def __init__(self, tmp_path: Path, binary: str = "host-local") -> None:
        self.go_dir = tmp_path / "go"
        self.py_dir = tmp_path / "py"
        self.binary = binary
        self.plugin: HostLocal | Static = HostLocal() if binary == "host-local" else Static()

    def _conf(self, conf: JSON, data_dir: Path) -> JSON:
        conf = json.loads(json.dumps(conf))
        if isinstance(conf.get("ipam"), dict) and self.binary == "host-local":
            conf["ipam"].setdefault("dataDir", str(data_dir))
        return conf

    def step(self, command: str, conf: JSON, **kw: str) -> Outcome:
        """Run one call on both; assert equal outcomes and equal stores; return it."""
        go = run_go(self.binary, command, self._conf(conf, self.go_dir), **kw)
        py = run_py(self.plugin, command, self._conf(conf, self.py_dir), **kw)
        assert go == py
        if self.binary == "host-local":
            assert snapshot(self.go_dir) == snapshot(self.py_dir)
        return py

    def seed(self, network: str, name: str, content: bytes) -> None:
        """Write the same file into both stores (e.g. a legacy allocation)."""
        for root in (self.go_dir, self.py_dir):
            (root / network).mkdir(parents=True, exist_ok=True, mode=0o755)
            path = root / network / name
            path.write_bytes(content)
            path.chmod(0o644)


def hl(version: str = "1.0.0", **ipam: Any) -> JSON:
    """A host-local network config."""
    return {
        "cniVersion": version,
        "name": "net1",
        "type": "host-local",
        "ipam": {"type": "host-local", **ipam},
    }


@pytest.fixture
def twin(tmp_path: Path) -> Twin:
    """host-local twin stores under tmp_path."""
    return Twin(tmp_path)


class TestHostLocalDifferential:
    @pytest.mark.parametrize("version", GO_VERSIONS)
    def test_defaults_round_robin_exhaustion_and_reuse(self, twin: Twin, version: str) -> None:
        """A /29 hands out .2-.6, then is exhausted, then reuses a freed address round-robin."""
        conf = hl(version, subnet="10.9.0.0/29", routes=[{"dst": "0.0.0.0/0"}])
        for n in range(1, 6):
            assert "result" == twin.step("ADD", conf, cid=f"c{n}")[0]
        kind, msg = twin.step("ADD", conf, cid="c6")
        assert (
            "error",
            "failed to allocate for range 0: no IP addresses available in "
            "range set: 10.9.0.1-10.9.0.6",
        ) == (kind, msg)
        twin.step("DEL", conf, cid="c3")
        _, result = twin.step("ADD", conf, cid="c7")
        assert "10.9.0.4/29" == result["ips"][0]["address"]  # c3 had .4

    def test_duplicate_and_second_interface(self, twin: Twin) -> None:
        """A second ADD of (cid, ifname) fails as Go; another ifname gets its own address."""
        conf = hl(subnet="10.9.0.0/24")
        twin.step("ADD", conf)
        kind, msg = twin.step("ADD", conf)
        assert "error" == kind
        assert "duplicate allocation is not allowed" in msg
        twin.step("ADD", conf, ifname="eth1")
        twin.step("CHECK", conf, ifname="eth1")
        twin.step("DEL", conf)
        twin.step("DEL", conf)
        assert ("error", "host-local: Failed to find address added by container c1") == (
            twin.step("CHECK", conf)
        )

    def test_ranges_gateway_and_dual_stack(self, twin: Twin) -> None:
        """Two ranges per set, explicit gateway/rangeStart/rangeEnd, an IPv6 set."""
        conf = hl(
            ranges=[
                [
                    {"subnet": "10.1.0.0/30", "gateway": "10.1.0.2"},
                    {"subnet": "10.2.0.0/24", "rangeStart": "10.2.0.10", "rangeEnd": "10.2.0.11"},
                ],
                [
                    {
                        "subnet": "fd00:1::/64",
                        "rangeStart": "fd00:1::1",
                        "rangeEnd": "fd00:1::3",
                        "gateway": "fd00:1::2",
                    }
                ],
            ],
            routes=[{"dst": "0.0.0.0/0", "gw": "10.1.0.2"}, {"dst": "::/0"}],
        )
        for n in range(5):
            twin.step("ADD", conf, cid=f"c{n}")

    @pytest.mark.parametrize(
        ("args", "extra"),
        [
            ("IP=10.9.0.7", {}),
            ("IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.9.0.7/24", {}),
            ("", {"args": {"cni": {"ips": ["10.9.0.7", "fd00::9"]}}}),
            ("", {"runtimeConfig": {"ips": ["10.9.0.7/24"]}}),
            ("IP=10.9.0.1", {}),
            ("IP=10.9.9.9", {}),
            ("K8S_POD_NAME=x", {}),
            ("IP=nope", {}),
        ],
    )
    def test_requested_ips(self, twin: Twin, args: str, extra: JSON) -> None:
        """Requested addresses from CNI_ARGS, args.cni.ips and runtimeConfig.ips."""
        conf = hl(ranges=[[{"subnet": "10.9.0.0/24"}], [{"subnet": "fd00::/120"}]]) | extra
        twin.step("ADD", conf, cid="c0", args=args)
        twin.step("ADD", conf, cid="c1", args=args)

    def test_ip_ranges_capability_and_legacy_subnet(self, twin: Twin) -> None:
        """runtimeConfig.ipRanges, then the legacy top-level subnet, then ipam.ranges."""
        conf = hl(subnet="10.5.0.0/24", gateway="10.5.0.254", ranges=[[{"subnet": "fd00:5::/64"}]])
        conf["runtimeConfig"] = {"ipRanges": [[{"subnet": "10.6.0.0/24"}]]}
        twin.step("ADD", conf)
        twin.step("DEL", conf)

    def test_resolv_conf(self, twin: Twin, tmp_path: Path) -> None:
        """resolvConf becomes the result's dns."""
        resolv = tmp_path / "resolv.conf"
        resolv.write_text(
            "# c\nnameserver 1.1.1.1\nnameserver ::1\n; x\ndomain ex.org\n"
            "search a b\nsearch c\noptions ndots:2 rotate\nbogus\n"
        )
        twin.step("ADD", hl(subnet="10.9.0.0/24", resolvConf=str(resolv)))
        assert (
            "error"
            == twin.step(
                "ADD", hl(subnet="10.9.0.0/24", resolvConf=str(tmp_path / "no")), cid="c2"
            )[0]
        )

    @pytest.mark.parametrize("ranges", [1, 2])
    def test_legacy_files_released(self, twin: Twin, ranges: int) -> None:
        """DEL releases legacy ``<cid>`` files only when no new-format file matched (per set)."""
        sets = [[{"subnet": "10.9.0.0/24"}], [{"subnet": "10.8.0.0/24"}]][:ranges]
        conf = hl(ranges=sets)
        twin.seed("net1", "10.9.0.50", b"c1")
        twin.seed("net1", "10.9.0.51", b"  c1\n")
        twin.step("ADD", conf)
        twin.step("CHECK", conf)
        twin.step("DEL", conf)
        twin.step("CHECK", conf)

    @pytest.mark.parametrize(
        "conf",
        [
            hl(subnet="10.0.0.0/31"),
            hl(subnet="10.0.0.5/24"),
            hl(subnet="10.0.0.0/24", rangeStart="10.0.1.1"),
            hl(subnet="10.0.0.0/24", rangeStart="10.0.0.9", rangeEnd="10.0.0.8"),
            hl(subnet="10.0.0.0/24", rangeEnd="fd00::1"),
            hl(ranges=[[]]),
            hl(ranges=[[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]),
            hl(ranges=[[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.0/25"}]]),
            hl(ranges=[[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.128/25"}]]),
            hl(ranges=[[{"rangeStart": "10.0.0.1"}]]),
            hl(),
            hl("0.2.0", ranges=[[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/24"}]]),
            {"cniVersion": "1.0.0", "name": "net1", "type": "host-local"},
        ],
    )
    def test_config_errors(self, twin: Twin, conf: JSON) -> None:
        """Semantic configuration errors carry Go's text."""
        assert "error" == twin.step("ADD", conf)[0]

    def test_version_0_2_0_single_family(self, twin: Twin) -> None:
        """A 0.2.0 config gets a 0.2.0 result."""
        twin.step(
            "ADD", hl("0.2.0", ranges=[[{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/64"}]])
        )


def _static(version: str = "1.0.0", **ipam: Any) -> JSON:
    return {
        "cniVersion": version,
        "name": "net1",
        "type": "static",
        "ipam": {"type": "static", **ipam},
    }


class TestStaticDifferential:
    @pytest.mark.parametrize(
        ("conf", "args"),
        [
            (
                _static(
                    addresses=[
                        {"address": "10.10.0.1/24", "gateway": "10.10.0.254"},
                        {"address": "3ffe:ffff:0:01ff::1/64"},
                    ],
                    routes=[{"dst": "0.0.0.0/0"}],
                    dns={"nameservers": ["8.8.8.8"], "domain": "ex.com", "search": ["ex.com"]},
                ),
                "",
            ),
            (
                _static(addresses=[{"address": "10.10.0.1/24"}]),
                "IP=10.10.0.2/24,fd00::2/64;GATEWAY=10.10.0.1,fd00::1",
            ),
            (_static(addresses=[{"address": "10.10.0.1/24"}]), "IP=10.10.0.2/24,nope"),
            (_static(addresses=[{"address": "10.10.0.1/24"}]), "GATEWAY=nope"),
            (_static(addresses=[{"address": "10.10.0.1"}]), ""),
            (
                _static(addresses=[{"address": "10.10.0.1"}])
                | {"args": {"cni": {"ips": ["10.0.0.3/8"]}}},
                "",
            ),
            (
                _static(addresses=[{"address": "10.10.0.1/24"}])
                | {"runtimeConfig": {"ips": ["10.0.0.4/8", "fd00::4/64"]}},
                "",
            ),
            (
                _static(addresses=[{"address": "10.10.0.1/24"}])
                | {"runtimeConfig": {"ips": ["10.0.0.4"]}},
                "",
            ),
            (
                _static(
                    "0.2.0", addresses=[{"address": "10.10.0.1/24"}, {"address": "10.10.0.2/24"}]
                ),
                "",
            ),
            (_static("0.2.0", addresses=[{"address": "10.10.0.1/24"}]), ""),
            (_static(addresses=[{"address": "10.10.0.1/24"}]), "FOO=1"),
        ],
    )
    def test_add(self, tmp_path: Path, conf: JSON, args: str) -> None:
        """ADD gives Go's result or Go's error text."""
        Twin(tmp_path, "static").step("ADD", conf, args=args)

    @pytest.mark.parametrize(
        "prev_ips",
        [
            [{"address": "10.10.0.1/24", "gateway": "10.10.0.254"}],
            [{"address": "10.10.0.1/24", "gateway": "10.10.0.9"}],
            [{"address": "10.10.0.1/24"}],
            [{"address": "10.10.0.7/24"}],
            None,
        ],
    )
    def test_check(self, tmp_path: Path, prev_ips: list[JSON] | None) -> None:
        """CHECK compares prevResult with the configured addresses, as Go."""
        conf = _static(addresses=[{"address": "10.10.0.1/24", "gateway": "10.10.0.254"}])
        if prev_ips is not None:
            conf["prevResult"] = {"cniVersion": "1.0.0", "ips": prev_ips}
        Twin(tmp_path, "static").step("CHECK", conf)


class TestConcurrentInterop:
    def _go_add(self, conf: JSON, cid: str) -> str | None:
        kind, value = run_go("host-local", "ADD", conf, cid=cid)
        return value["ips"][0]["address"] if kind == "result" else None

    def _py_add(self, conf: JSON, cid: str) -> str | None:
        kind, value = run_py(HostLocal(), "ADD", conf, cid=cid)
        return value["ips"][0]["address"] if kind == "result" else None

    def _race(self, conf: JSON, each: int) -> dict[str, str | None]:
        jobs = [(self._go_add, f"go-{n}") for n in range(each)]
        jobs += [(self._py_add, f"py-{n}") for n in range(each)]
        jobs = [job for pair in zip(jobs[:each], jobs[each:], strict=True) for job in pair]
        start = threading.Barrier(16)

        def run(job: tuple[Any, str]) -> tuple[str, str | None]:
            fn, cid = job
            with contextlib.suppress(threading.BrokenBarrierError):
                start.wait(timeout=5)
            return cid, fn(conf, cid)

        with ThreadPoolExecutor(16) as pool:
            return dict(pool.map(run, jobs))

    def _files(self, store: Path) -> dict[str, str]:
        return {
            p.name: p.read_bytes().decode().split("\r\n")[0]
            for p in store.iterdir()
            if p.name != "lock" and not p.name.startswith("last_reserved_ip.")
        }

    def test_shared_store_no_address_twice(self, tmp_path: Path) -> None:
        """40 Go processes and 40 cnilib threads on one /24: 80 distinct addresses, all on disk."""
        conf = hl(subnet="10.20.0.0/24", dataDir=str(tmp_path))
        got = self._race(conf, 40)

        addresses = [a for a in got.values() if a is not None]
        assert 80 == len(addresses) == len(set(addresses))
        files = self._files(tmp_path / "net1")
        assert {a.split("/")[0]: cid for cid, a in got.items() if a} == files

    def test_shared_store_exhaustion_race(self, tmp_path: Path) -> None:
        """On a /27 (29 addresses) 80 racing ADDs: exactly 29 succeed, none twice."""
        conf = hl(subnet="10.21.0.0/27", dataDir=str(tmp_path))
        got = self._race(conf, 40)

        addresses = [a for a in got.values() if a is not None]
        assert 29 == len(addresses) == len(set(addresses))
        assert {a.split("/")[0]: cid for cid, a in got.items() if a} == (
            self._files(tmp_path / "net1")
        )

    def test_interleaved_release(self, tmp_path: Path) -> None:
        """Go DELs cnilib's allocations and cnilib DELs Go's, concurrently; store ends empty."""
        conf = hl(subnet="10.22.0.0/24", dataDir=str(tmp_path))
        got = self._race(conf, 20)

        def release(cid: str) -> None:
            if cid.startswith("go-"):
                assert ("ok", None) == run_py(HostLocal(), "DEL", conf, cid=cid)
            else:
                assert ("ok", None) == run_go("host-local", "DEL", conf, cid=cid)

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(release, got))
        assert {} == self._files(tmp_path / "net1")


def test_env_mapping_is_plain() -> None:
    """The helper env carries only CNI_* variables (no inherited PATH etc.)."""
    env: Mapping[str, str] = _env("ADD", "c", "eth0", "")
    assert all(k.startswith("CNI_") for k in env)
