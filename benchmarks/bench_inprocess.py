"""bridge + host-local (no ipMasq): cnilib's Python plugins in-process, Debian's
Go binaries exec'd by cnilib, and cnilib's plugins exec'd as binaries, side by
side in one run; plus a floor that does only the kernel work (the netlink
calls a bridge ADD/DEL needs, no CNI at all), and 100 containers attached one
after another to one bridge (does time per container grow?).

Everything runs in a throwaway node namespace (host side) with container
namespaces beside it; all are deleted at the end, also on failure.
Needs root and /usr/lib/cni. Run: ``python3 benchmarks/bench_inprocess.py``.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _charts import chart_sequential, chart_sides
from _harness import measure_interleaved, print_table

import cnilib
from cnilib.invoke import SubprocessExecutor
from cnilib.plugins._executor import InProcessExecutor

GO_DIR = "/usr/lib/cni"
RUNS = int(os.environ.get("BENCH_RUNS", "30"))
SEQUENTIAL = int(os.environ.get("BENCH_SEQUENTIAL", "100"))
FLOOR_ADD = "kernel work only (netlink floor): ADD"
FLOOR_DEL = "kernel work only (netlink floor): DEL"
FLOOR_BOTH = "kernel work only (netlink floor): ADD+DEL"


def conflist(data_dir: str, bridge: str, subnet: str) -> cnilib.NetworkConfigList:
    doc = {
        "cniVersion": "1.0.0",
        "name": f"bench-{bridge}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": data_dir,
                    "ranges": [[{"subnet": subnet}]],
                },
            }
        ],
    }
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


def netns(name: str) -> str:
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    return f"/run/netns/{name}"


def _floor_host_add(container: str) -> None:
    from cnilib import netlink

    netlink.add_veth("bfloor0", "bfloorc", peer_netns=container)
    netlink.set_link_master("bfloor0", "brfloor")
    netlink.set_link_up("bfloor0")


def _floor_container_add() -> None:
    from cnilib import netlink

    netlink.set_link_up("bfloorc")
    netlink.add_address("bfloorc", "10.252.9.2/24")
    netlink.add_route("0.0.0.0/0", gateway="10.252.9.1", link="bfloorc")


def _floor_container_del() -> None:
    from cnilib import netlink

    netlink.delete_link("bfloorc")


def floor_add(node: str, container: str) -> None:
    """Only the kernel work of a bridge ADD, through cnilib.netlink: the veth pair
    into the container, enslave and up on the host, up, address and route inside."""
    from cnilib import netlink

    netlink.run_in_netns(node, _floor_host_add, container)
    netlink.run_in_netns(container, _floor_container_add)


def floor_del(container: str) -> None:
    """Only the kernel work of a bridge DEL: delete the container veth (takes its peer)."""
    from cnilib import netlink

    netlink.run_in_netns(container, _floor_container_del)


def floor_add_del(node: str, container: str) -> None:
    """Only the kernel work of a bridge ADD then DEL, through cnilib.netlink."""
    floor_add(node, container)
    floor_del(container)


def _exe_works() -> bool:
    """Whether the installed executables can import cnilib (``python -I`` ignores
    PYTHONPATH, so this needs cnilib installed for the interpreter)."""
    probe = subprocess.run([sys.executable, "-I", "-c", "import cnilib"], capture_output=True)
    return probe.returncode == 0


def main() -> None:
    if os.geteuid() != 0 or not os.access(f"{GO_DIR}/bridge", os.X_OK):
        sys.exit("needs root and Debian's containernetworking-plugins in /usr/lib/cni")
    from cnilib import netlink

    suffix = os.urandom(3).hex()
    names = [f"cnilib-bench-{suffix}-{n}" for n in ("node", "c1", "c2", "c3", "cf")]
    made: list[str] = []
    try:
        for name in names:
            netns(name)
            made.append(name)
        node, c_py, c_go, c_exe, c_floor = (f"/run/netns/{n}" for n in names)
        netlink.run_in_netns(node, lambda: netlink.add_bridge("brfloor"))
        netlink.run_in_netns(node, lambda: netlink.set_link_up("brfloor"))
        with tempfile.TemporaryDirectory() as tmp:
            exe_dir = os.path.join(tmp, "exe")
            subprocess.run(
                [sys.executable, "-m", "cnilib.plugins", "install", exe_dir],
                check=True,
                capture_output=True,
            )
            wrap = ("ip", "netns", "exec", names[0])
            runtimes = {
                "in-process Python": (
                    cnilib.CNI(
                        [exe_dir],
                        cache_dir=f"{tmp}/c1",
                        executor=InProcessExecutor(host_netns=node),
                    ),
                    conflist(f"{tmp}/s1", "brpy", "10.252.1.0/24"),
                    c_py,
                ),
                "Go binaries via cnilib": (
                    cnilib.CNI(
                        [GO_DIR], cache_dir=f"{tmp}/c2", executor=SubprocessExecutor(wrapper=wrap)
                    ),
                    conflist(f"{tmp}/s2", "brgo", "10.252.2.0/24"),
                    c_go,
                ),
                "cnilib plugins as binaries": (
                    cnilib.CNI(
                        [exe_dir], cache_dir=f"{tmp}/c3", executor=SubprocessExecutor(wrapper=wrap)
                    ),
                    conflist(f"{tmp}/s3", "brexe", "10.252.3.0/24"),
                    c_exe,
                ),
            }
            if not _exe_works():
                print("(cnilib is not importable by `python -I`: not measuring the executables)")
                del runtimes["cnilib plugins as binaries"]
            cases: list[tuple[str, Callable[[], object]]] = []
            for label, (cni, conf, ctr) in runtimes.items():
                rt = cnilib.RuntimeConf("bench", ctr, "eth0")
                cases.append((f"{label}: ADD", functools.partial(cni.add_network_list, conf, rt)))
                cases.append(
                    (f"{label}: DEL", functools.partial(cni.delete_network_list, conf, rt))
                )
            cases.append((FLOOR_ADD, functools.partial(floor_add, node, c_floor)))
            cases.append((FLOOR_DEL, functools.partial(floor_del, c_floor)))
            cases.append((FLOOR_BOTH, functools.partial(floor_add_del, node, c_floor)))
            rows = measure_interleaved(cases, runs=RUNS)
            go_add_label = "Go binaries via cnilib: ADD"
            print_table("bridge + host-local, no ipMasq", rows, baseline=go_add_label)
            row = {r.label: (r.median, r.p90) for r in rows}
            sides = {label: (row[f"{label}: ADD"], row[f"{label}: DEL"]) for label in runtimes}
            sides["kernel work only (netlink floor)"] = (row[FLOOR_ADD], row[FLOOR_DEL])
            chart_sides(sides, runs=RUNS)
            by = {r.label: r.median for r in rows}
            print()
            for label in runtimes:
                add, dele = by[f"{label}: ADD"], by[f"{label}: DEL"]
                print(f"{label}: ADD+DEL {add + dele:.2f} ms")
            print(f"kernel work only: ADD+DEL {by[FLOOR_BOTH]:.2f} ms")
            go_add = by[go_add_label]
            print(
                f"target 0.5x Go ADD: {go_add / 2:.2f} ms; kernel work only, ADD: "
                f"{by[FLOOR_ADD]:.2f} ms ({by[FLOOR_ADD] / go_add:.2f}x Go ADD); "
                f"in-process ADD {by['in-process Python: ADD']:.2f} ms "
                f"({by['in-process Python: ADD'] / go_add:.2f}x)"
            )
            if SEQUENTIAL > 0:
                alone = sequential(tmp, names[0], ("py",), "in-process alone")
                mixed = sequential(tmp, names[0], ("py", "go", "floor"), "three sides interleaved")
                chart_sequential(
                    {
                        "in-process Python, run alone": alone["py"],
                        "in-process Python, interleaved": mixed["py"],
                        "Go binaries via cnilib, interleaved": mixed["go"],
                        "kernel work only, interleaved": mixed["floor"],
                    },
                    title=f"{SEQUENTIAL} containers attached one after another to one bridge",
                )
    finally:
        for name in reversed(made):
            subprocess.run(["ip", "netns", "del", name], check=False)


def _floor_seq_host(container: str, index: int) -> None:
    from cnilib import netlink

    netlink.add_veth(f"bseq{index}", "eth0", peer_netns=container)
    netlink.set_link_master(f"bseq{index}", "brseqf")
    netlink.set_link_up(f"bseq{index}")


def _floor_seq_container(index: int) -> None:
    from cnilib import netlink

    netlink.set_link_up("eth0")
    netlink.add_address("eth0", f"10.254.{index // 250}.{index % 250 + 2}/16")
    netlink.add_route("0.0.0.0/0", gateway="10.254.0.1", link="eth0")


def _floor_seq_add(node: str, container: str, index: int) -> None:
    """The kernel work of the index-th bridge ADD into a fresh container, no CNI."""
    from cnilib import netlink

    netlink.run_in_netns(node, _floor_seq_host, container, index)
    netlink.run_in_netns(container, _floor_seq_container, index)


_SEQ_LABELS = {"py": "in-process ms", "go": "Go binaries ms", "floor": "kernel work only ms"}


def sequential(
    tmp: str, node_name: str, sides: tuple[str, ...], title: str
) -> dict[str, list[float]]:
    """SEQUENTIAL containers attached one after another to one bridge per side (in-process,
    Go's binaries, the kernel work alone), each side with its own node namespace; with
    several sides, interleaved container by container (machine noise hits all alike).
    Prints the table and returns each side's ADD times in ms, in order."""
    from cnilib import netlink

    made: list[str] = []
    times: dict[str, list[float]] = {side: [] for side in sides}
    try:
        nodes = {}
        for side in sides:
            name = f"{node_name}-{title[:2]}{side}"
            nodes[side] = netns(name)
            made.append(name)
        if "floor" in nodes:
            netlink.run_in_netns(nodes["floor"], lambda: netlink.add_bridge("brseqf"))
            netlink.run_in_netns(nodes["floor"], lambda: netlink.set_link_up("brseqf"))
        runtimes = {
            "py": InProcessExecutor(host_netns=nodes["py"]) if "py" in nodes else None,
            "go": (
                SubprocessExecutor(wrapper=("ip", "netns", "exec", os.path.basename(nodes["go"])))
                if "go" in nodes
                else None
            ),
        }
        cnis = {
            side: cnilib.CNI([GO_DIR], cache_dir=f"{tmp}/{title[:2]}{side}", executor=executor)
            for side, executor in runtimes.items()
            if executor is not None
        }
        confs = {
            side: conflist(f"{tmp}/{title[:2]}{side}store", "brseq", "10.253.0.0/16")
            for side in cnis
        }
        for index in range(SEQUENTIAL):
            for side in sides:
                name = f"{node_name}-{title[:2]}{side}{index}"
                ctr = netns(name)
                made.append(name)
                job: Callable[[], object]
                if side == "floor":
                    job = functools.partial(_floor_seq_add, nodes["floor"], ctr, index)
                else:
                    rt = cnilib.RuntimeConf(f"s{index}", ctr, "eth0")
                    job = functools.partial(cnis[side].add_network_list, confs[side], rt)
                started = time.perf_counter()
                job()
                times[side].append((time.perf_counter() - started) * 1000)
    finally:
        netlink.default_pool().close()
        for name in reversed(made):
            subprocess.run(["ip", "netns", "del", name], check=False)
    tenth = max(1, SEQUENTIAL // 10)
    print(f"\n### {SEQUENTIAL} containers attached one after another, {title} (ADD)\n")
    print("| containers already attached | " + " | ".join(_SEQ_LABELS[s] for s in sides) + " |")
    print("|---:|" + "---:|" * len(sides))
    for start in range(0, SEQUENTIAL, tenth):
        row = [statistics.median(times[side][start : start + tenth]) for side in sides]
        print(f"| {start}-{start + tenth - 1} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    first = {side: statistics.median(v[:tenth]) for side, v in times.items()}
    last = {side: statistics.median(v[-tenth:]) for side, v in times.items()}
    print(
        "\ngrowth, last tenth minus first (ms): "
        + ", ".join(f"{side} {last[side] - first[side]:+.2f}" for side in sides)
    )
    return times


if __name__ == "__main__":
    main()
