"""bridge + host-local and ptp + host-local (no ipMasq): cnilib's Python plugins
in-process, Debian's Go binaries, and cnilib's plugins as executables, side by
side in one run; plus, for each, a floor that does only the kernel work (the
netlink calls the plugin's ADD and DEL make, no CNI at all).

The script re-runs itself inside a throwaway node namespace
(``_harness.rerun_inside_node``): every side's calls start there, so the Go
binaries and cnilib's executables are exec'd directly (``SubprocessExecutor()``,
no ``ip netns exec`` per call, which would add 10-21 % to Go's figures), and
the in-process executor plays the host in the node namespace. Each side has its
own container namespace, bridge and subnet (198.18.0.0/15, reserved for
benchmarks); all namespaces are deleted at the end, also on failure.

Goals (docs/performance.md): in-process ADD within 2x the kernel floor's ADD and
DEL within 1.2x the floor's DEL, for bridge and ptp; in-process ADD at most 0.5x
Go's, for bridge and ptp. The ratios are taken against the separately measured
floor rows. The figures are also drawn as ``docs/images/inprocess-vs-go.png``
(bridge) and ``docs/images/ptp-inprocess-vs-go.png``.

Containers attached one after another (does time per container grow?) are
``bench_flat.py``'s.

Needs root and /usr/lib/cni. Run: ``python3 benchmarks/bench_inprocess.py``
(``BENCH_RUNS``, default 30).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _charts import chart_sides
from _harness import (
    GO_DIR,
    Row,
    measure_interleaved,
    print_table,
    report_verdict,
    rerun_inside_node,
)

import cnilib
from cnilib.invoke import Executor, SubprocessExecutor
from cnilib.plugins._executor import InProcessExecutor

RUNS = int(os.environ.get("BENCH_RUNS", "30"))
PY, GO, EXE, FLOOR = (
    "in-process Python",
    "Go binaries",
    "cnilib plugins as executables",
    "kernel work only (netlink floor)",
)
SIDES = {"py": PY, "go": GO, "exe": EXE, "fl": FLOOR}
PLUGINS = ("bridge", "ptp")
# Container namespace roles: "<plugin>-<side>".
CONTAINERS = tuple(f"{plugin}-{side}" for plugin in PLUGINS for side in SIDES)
# Goals: in-process over the floor (ADD, DEL), in-process ADD over Go's.
FLOOR_ADD_GOAL, FLOOR_DEL_GOAL, GO_ADD_GOAL = 2.0, 1.2, 0.5
# A /24 per plugin and side, in 198.18.0.0/15 (RFC 2544, for benchmarks).
SUBNETS = {
    (plugin, side): f"198.18.{10 * p + s + 1}.0/24"
    for p, plugin in enumerate(PLUGINS)
    for s, side in enumerate(SIDES)
}


def conflist(plugin: str, data_dir: str, side: str) -> cnilib.NetworkConfigList:
    """One ``plugin`` + host-local network of its own (bridge, subnet, store)."""
    ipam: dict[str, object] = {
        "type": "host-local",
        "dataDir": data_dir,
        "ranges": [[{"subnet": SUBNETS[plugin, side]}]],
    }
    main: dict[str, object]
    if plugin == "bridge":
        main = {"type": "bridge", "bridge": f"br{side}", "isGateway": True, "ipam": ipam}
    else:  # a default route via the host, as ptp networks have
        main = {"type": "ptp", "ipam": {**ipam, "routes": [{"dst": "0.0.0.0/0"}]}}
    doc = {"cniVersion": "1.0.0", "name": f"bench-{plugin}-{side}", "plugins": [main]}
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


# The kernel work alone, no CNI: the requests the plugins make, through cnilib.netlink.
# The container's end is "flc"; the host's "flh" (bridge) or "flp" (ptp).


def _addresses(plugin: str) -> tuple[str, str, str]:
    """The floor's (container address/24, gateway, subnet) for ``plugin``."""
    subnet = SUBNETS[plugin, "fl"]
    base = subnet.rsplit(".", 1)[0]
    return f"{base}.2/24", f"{base}.1", subnet


def _bridge_host(container: str) -> None:
    from cnilib import netlink

    netlink.add_veth("flh", "flc", peer_netns=container)
    netlink.set_link_master("flh", "brfl")
    netlink.set_link_up("flh")


def _bridge_container() -> None:
    from cnilib import netlink

    address, gateway, _ = _addresses("bridge")
    netlink.set_link_up("flc")
    netlink.add_address("flc", address)
    netlink.add_route("0.0.0.0/0", gateway=gateway, link="flc")


def _ptp_host(container: str) -> None:
    """ptp's host side: the pair, the gateway's /32 on the host end, up, and the host
    route to the container's /32."""
    from cnilib import netlink

    address, gateway, _ = _addresses("ptp")
    netlink.add_veth("flp", "flc", peer_netns=container)
    netlink.set_link_up("flp")
    netlink.add_address("flp", f"{gateway}/32")
    netlink.add_route(f"{address.split('/')[0]}/32", link="flp", scope=netlink.RT_SCOPE_HOST)


def _ptp_container() -> None:
    """ptp's container side: up, the address, the default route; then the subnet route
    the kernel made replaced by a /32 to the gateway and the subnet via it."""
    from cnilib import netlink

    address, gateway, subnet = _addresses("ptp")
    ip = address.split("/")[0]
    netlink.set_link_up("flc")
    netlink.add_address("flc", address)
    netlink.add_route("0.0.0.0/0", gateway=gateway, link="flc")
    netlink.delete_route(subnet, link="flc")
    netlink.add_route(f"{gateway}/32", link="flc", scope=netlink.RT_SCOPE_LINK, src=ip)
    netlink.add_route(subnet, gateway=gateway, link="flc", src=ip)


def _container_del() -> None:
    from cnilib import netlink

    netlink.delete_link("flc")  # takes its peer, the host's addresses and routes


def floor_add(plugin: str, node: str, container: str) -> None:
    """The kernel work of ``plugin``'s ADD: the host side, then the container's."""
    from cnilib import netlink

    host, inside = (_bridge_host, _bridge_container) if plugin == "bridge" else (
        _ptp_host, _ptp_container)  # fmt: skip
    netlink.run_in_netns(node, host, container)
    netlink.run_in_netns(container, inside)


def floor_del(container: str) -> None:
    """The kernel work of a bridge or ptp DEL: delete the container's veth."""
    from cnilib import netlink

    netlink.run_in_netns(container, _container_del)


def _exe_works() -> bool:
    """Whether the installed executables can import cnilib (``python -I`` ignores
    PYTHONPATH, so this needs cnilib installed for the interpreter)."""
    probe = subprocess.run([sys.executable, "-I", "-c", "import cnilib"], capture_output=True)
    return probe.returncode == 0


def inner(prefix: str) -> None:
    """Inside the node namespace: build every side, measure, print, judge, draw."""
    from cnilib import netlink

    node = f"/run/netns/{prefix}-node"

    def ns(role: str) -> str:
        return f"/run/netns/{prefix}-{role}"

    try:
        netlink.run_in_netns(node, netlink.add_bridge, "brfl")
        netlink.run_in_netns(node, netlink.set_link_up, "brfl")
        with tempfile.TemporaryDirectory() as tmp:
            exe_dir = os.path.join(tmp, "exe")
            subprocess.run(
                [sys.executable, "-m", "cnilib.plugins", "install", exe_dir],
                check=True,
                capture_output=True,
            )
            executors: dict[str, tuple[list[str], Executor]] = {
                "py": ([exe_dir], InProcessExecutor(host_netns=node)),
                # This process is in the node namespace: plugins are exec'd as they are.
                "go": ([GO_DIR], SubprocessExecutor()),
                "exe": ([exe_dir], SubprocessExecutor()),
            }
            if not _exe_works():
                print("(cnilib is not importable by `python -I`: not measuring the executables)")
                del executors["exe"]
            cases: list[tuple[str, Callable[[], object]]] = []
            for plugin in PLUGINS:
                for side, (path, executor) in executors.items():
                    cni = cnilib.CNI(path, cache_dir=f"{tmp}/cache-{plugin}-{side}",
                                     executor=executor)  # fmt: skip
                    conf = conflist(plugin, f"{tmp}/store-{plugin}-{side}", side)
                    rt = cnilib.RuntimeConf(f"bench-{plugin}-{side}", ns(f"{plugin}-{side}"),
                                            "eth0")  # fmt: skip
                    label = f"{plugin}, {SIDES[side]}"
                    cases.append((f"{label}: ADD", functools.partial(cni.add_network_list,
                                                                     conf, rt)))  # fmt: skip
                    cases.append((f"{label}: DEL", functools.partial(cni.delete_network_list,
                                                                     conf, rt)))  # fmt: skip
                container = ns(f"{plugin}-fl")
                cases.append((f"{plugin}, {FLOOR}: ADD",
                              functools.partial(floor_add, plugin, node, container)))  # fmt: skip
                cases.append((f"{plugin}, {FLOOR}: DEL", functools.partial(floor_del, container)))
            rows = measure_interleaved(cases, runs=RUNS)
            report(rows, [SIDES[side] for side in executors])
    finally:
        netlink.default_pool().close()


def report(rows: list[Row], sides: list[str]) -> None:
    """The tables, the verdicts and the charts."""
    by = {row.label: row for row in rows}
    for plugin in PLUGINS:
        # The table names the plugin once, in its title; the rows only the side and verb.
        table = [
            Row(f"{side}: {verb}", by[f"{plugin}, {side}: {verb}"].samples_ms)
            for side in (*sides, FLOOR)
            for verb in ("ADD", "DEL")
        ]
        print_table(f"{plugin} + host-local, no ipMasq (inside a node namespace)", table,
                    baseline=f"{GO}: ADD")  # fmt: skip
    print("\n### Against the kernel floor (ratios of medians: ADD to the floor's ADD, "
          "DEL to the floor's DEL)\n")  # fmt: skip
    print("| plugin | side | ADD | DEL | ADD+DEL ms |")
    print("|---|---|---:|---:|---:|")
    for plugin in PLUGINS:
        floor_add, floor_del = by[f"{plugin}, {FLOOR}: ADD"], by[f"{plugin}, {FLOOR}: DEL"]
        for side in (*sides, FLOOR):
            add, dele = by[f"{plugin}, {side}: ADD"], by[f"{plugin}, {side}: DEL"]
            print(f"| {plugin} | {side} | {add.median / floor_add.median:.2f}x "
                  f"| {dele.median / floor_del.median:.2f}x "
                  f"| {add.median + dele.median:.2f} |")  # fmt: skip
    print()
    for plugin in PLUGINS:
        py_add, py_del = by[f"{plugin}, {PY}: ADD"], by[f"{plugin}, {PY}: DEL"]
        floor_add, floor_del = by[f"{plugin}, {FLOOR}: ADD"], by[f"{plugin}, {FLOOR}: DEL"]
        for verb, row, floor, goal in (("ADD", py_add, floor_add, FLOOR_ADD_GOAL),
                                       ("DEL", py_del, floor_del, FLOOR_DEL_GOAL)):  # fmt: skip
            ratio = row.median / floor.median
            report_verdict(
                f"in-process {plugin} {verb} within {goal:g}x the kernel floor",
                f"{ratio:.2f}x: {row.median:.2f} ms against the floor's {verb} "
                f"{floor.median:.2f} ms ({goal:g}x is {floor.median * goal:.2f} ms)",
                met=ratio <= goal,
                source="bench_inprocess.py",
            )
    for plugin in PLUGINS:
        py_add, go_add = by[f"{plugin}, {PY}: ADD"], by[f"{plugin}, {GO}: ADD"]
        ratio = py_add.median / go_add.median
        report_verdict(
            f"in-process {plugin} ADD at most {GO_ADD_GOAL:g}x Go's",
            f"{ratio:.2f}x: {py_add.median:.2f} ms against Go binaries' {go_add.median:.2f} ms "
            f"({GO_ADD_GOAL:g}x is {go_add.median * GO_ADD_GOAL:.2f} ms)",
            met=ratio <= GO_ADD_GOAL,
            source="bench_inprocess.py",
        )
    for plugin, title, filename in (
        ("bridge", "bridge + host-local, one container, no ipMasq", "inprocess-vs-go.png"),
        ("ptp", "ptp + host-local, one container, no ipMasq", "ptp-inprocess-vs-go.png"),
    ):
        chart_sides(
            {
                side: (
                    (by[f"{plugin}, {side}: ADD"].median, by[f"{plugin}, {side}: ADD"].p90),
                    (by[f"{plugin}, {side}: DEL"].median, by[f"{plugin}, {side}: DEL"].p90),
                )
                for side in (*sides, FLOOR)
            },
            runs=RUNS,
            title=title,
            filename=filename,
        )


def main() -> None:
    rerun_inside_node(__file__, CONTAINERS, ("bridge", "ptp", "host-local"))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--inner":
        inner(sys.argv[2])
    else:
        main()
