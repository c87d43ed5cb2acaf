"""The interface plugins macvlan and host-device: cnilib's plugins in-process
against Debian's Go 1.1.1 binaries, both through the same runtime
(``cnilib.CNI``), side by side in one run.

- in-process: ``cnilib.CNI`` with ``InProcessExecutor`` (cnilib's macvlan,
  host-device and host-local, no process at all);
- Go binaries: ``cnilib.CNI`` with ``SubprocessExecutor`` running
  ``/usr/lib/cni/macvlan`` (``host-device``), which execs Go's ``host-local``.

Cases: macvlan without IPAM (layer 2) and with host-local, host-device with
host-local; ADD and DEL of each. The script re-runs itself inside a
throwaway node namespace (``ip netns exec``), so both sides' calls start
there and the Go binaries are exec'd directly, not each under an
``ip netns exec`` of its own. The node namespace has an "uplink" veth (the
macvlan master; its peer in a throwaway namespace); host-device gets a fresh
veth in the node namespace before every ADD (its peer in another throwaway
namespace), made and removed in a step of its own that is timed apart and
left out of the table. Container namespaces are made before any timing.
Beside the two sides, the kernel work alone (no CNI, through cnilib.netlink)
of a macvlan ADD/DEL without IPAM and of a host-device ADD/DEL. All
namespaces are deleted at the end, also on failure. The figures are also
drawn as ``docs/images/links-inprocess-vs-go.png``.

Goal: in-process ADD at most 0.5x Go's, in-process DEL no slower than Go's.
Needs root and /usr/lib/cni. Run: ``python3 benchmarks/bench_links.py``.
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

RUNS = int(os.environ.get("BENCH_RUNS", "30"))
UPLINK = "uplink0"  # the macvlan master, in the node namespace
PY, GO = "in-process", "Go binaries"
ADD_GOAL, DEL_GOAL = 0.5, 1.0  # in-process over Go: ADD at most half, DEL not slower
# Namespace roles; the container ones are "<case>-<side>".
CONTAINERS = ("mvl2-py", "mvl2-go", "mvl2-fl", "mvip-py", "mvip-go", "hd-py", "hd-go", "hd-fl")
FLOOR = "kernel work only"
# The goals' wording names the case as docs/performance.md does.
GOAL_CASES = {"macvlan, no IPAM (L2)": "macvlan, no IPAM"}


def _host_local(data_dir: str, subnet: str) -> dict[str, object]:
    return {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": subnet}]]}


def _conflist(name: str, plugin: dict[str, object]) -> cnilib.NetworkConfigList:
    doc = {"cniVersion": "1.0.0", "name": name, "plugins": [plugin]}
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


def _fresh_device(name: str, peer_netns: str) -> None:
    """A new veth ``name`` in this (the node) namespace, its peer in ``peer_netns``;
    the one the previous round's DEL gave back is deleted first. Runs on a
    ``cnilib.netlink`` worker (``run_here``)."""
    from cnilib import netlink

    if netlink.find_link(name) is not None:
        netlink.delete_link(name)
    netlink.add_veth(name, f"{name}p", peer_netns=peer_netns)


# The kernel work alone, no CNI: the requests the plugins make, through cnilib.netlink.


def _floor_macvlan_add(ctr: str, master: int) -> None:
    """A bridge-mode macvlan of the uplink (index ``master``) created straight into
    the container as eth0, then set up there (macvlan without IPAM does that, and
    renames; the plugin also looks the master up)."""
    from cnilib import netlink

    data = netlink.macvlan_data("bridge")
    netlink.run_here(netlink.add_link, "eth0", "macvlan", parent=master, netns=ctr, data=data)
    netlink.run_in_netns(ctr, netlink.set_link_up, "eth0")


def _floor_delete(ctr: str) -> None:
    """Delete the container's eth0 (a macvlan's DEL)."""
    from cnilib import netlink

    netlink.run_in_netns(ctr, netlink.delete_link, "eth0")


def _floor_device_add(device: str, ctr: str) -> None:
    """The device moved into the container renamed eth0 (one request), set up and
    given an address there."""
    from cnilib import netlink

    netlink.run_here(netlink.move_link, device, ctr, new_name="eth0")
    netlink.run_in_netns(ctr, _floor_device_up)


def _floor_device_up() -> None:
    from cnilib import netlink

    netlink.set_link_up("eth0")
    netlink.add_address("eth0", "10.250.99.2/24")


def _floor_device_del(device: str, ctr: str, node: str) -> None:
    """The device set down in the container and moved back to ``node`` renamed ``device``."""
    from cnilib import netlink

    netlink.run_in_netns(ctr, _floor_device_out, device, node)


def _floor_device_out(device: str, node: str) -> None:
    from cnilib import netlink

    netlink.set_link_down("eth0")
    netlink.move_link("eth0", node, new_name=device)


def inner(prefix: str) -> None:
    """The measurement, already running inside the node namespace."""
    from cnilib import netlink
    from cnilib.invoke import SubprocessExecutor
    from cnilib.plugins._executor import InProcessExecutor

    def ns(role: str) -> str:
        return f"/run/netns/{prefix}-{role}"

    with tempfile.TemporaryDirectory() as tmp:
        # The in-process side gets an empty plugin directory: nothing it runs can be exec'd.
        empty = os.path.join(tmp, "empty")
        os.mkdir(empty)
        cnis = {
            "py": cnilib.CNI([empty], cache_dir=f"{tmp}/cache-py", executor=InProcessExecutor()),
            "go": cnilib.CNI([GO_DIR], cache_dir=f"{tmp}/cache-go", executor=SubprocessExecutor()),
        }
        macvlan: dict[str, object] = {"type": "macvlan", "master": UPLINK, "mode": "bridge"}
        plugins: dict[str, tuple[str, Callable[[str, int], dict[str, object]]]] = {
            "mvl2": ("macvlan, no IPAM (L2)", lambda side, n: macvlan),
            "mvip": (
                "macvlan + host-local",
                lambda side, n: {
                    **macvlan,
                    "ipam": _host_local(f"{tmp}/ipam-mvip-{side}", f"10.250.{80 + n}.0/24"),
                },
            ),
            "hd": (
                "host-device + host-local",
                lambda side, n: {
                    "type": "host-device",
                    "device": f"hd{side}0",
                    # cnilib's record of the device's host state (Go ignores the key).
                    "dataDir": f"{tmp}/hd-state-{side}",
                    "ipam": _host_local(f"{tmp}/ipam-hd-{side}", f"10.250.{90 + n}.0/24"),
                },
            ),
        }
        cases: list[tuple[str, Callable[[], object]]] = []
        for key, (title, plugin) in plugins.items():
            for n, (side, side_label) in enumerate((("py", PY), ("go", GO))):
                conf = _conflist(f"bench-{key}-{side}", plugin(side, n))
                rt = cnilib.RuntimeConf(f"bench-{key}-{side}", ns(f"{key}-{side}"), "eth0")
                if key == "hd":
                    setup = functools.partial(
                        netlink.run_here, _fresh_device, f"hd{side}0", ns("hdpeer")
                    )
                    cases.append((f"{title}: setup {side}", setup))
                add = functools.partial(cnis[side].add_network_list, conf, rt)
                delete = functools.partial(cnis[side].delete_network_list, conf, rt)
                cases.append((f"{title}, {side_label}: ADD", add))
                cases.append((f"{title}, {side_label}: DEL", delete))
        master = netlink.run_here(netlink.get_link, UPLINK).index
        floors = {
            "mvl2": (functools.partial(_floor_macvlan_add, ns("mvl2-fl"), master),
                     functools.partial(_floor_delete, ns("mvl2-fl"))),
            "hd": (functools.partial(_floor_device_add, "hdfl0", ns("hd-fl")),
                   functools.partial(_floor_device_del, "hdfl0", ns("hd-fl"), ns("node"))),
        }  # fmt: skip
        cases.append(
            (f"{plugins['hd'][0]}: setup floor",
             functools.partial(netlink.run_here, _fresh_device, "hdfl0", ns("hdpeer")))
        )  # fmt: skip
        for key, (add_floor, del_floor) in floors.items():
            cases.append((f"{plugins[key][0]}, {FLOOR}: ADD", add_floor))
            cases.append((f"{plugins[key][0]}, {FLOOR}: DEL", del_floor))
        rows = measure_interleaved(cases, runs=RUNS)
        by = {row.label: row for row in rows}
        verdicts: list[tuple[str, str, bool]] = []
        sides: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {}
        for title, _ in plugins.values():
            # The table names the plugin once, in its title; the rows only the side and verb.
            table = [
                Row(f"{side}: {verb}", by[f"{title}, {side}: {verb}"].samples_ms)
                for side in (PY, GO, FLOOR)
                for verb in ("ADD", "DEL")
                if f"{title}, {side}: {verb}" in by
            ]
            print_table(f"{title} (inside a node namespace)", table, baseline=table[2].label)
            verdicts += _verdicts(title, *table[:4])
            for side in (PY, GO):
                add_row, del_row = by[f"{title}, {side}: ADD"], by[f"{title}, {side}: DEL"]
                sides[f"{title}, {side}"] = (
                    (add_row.median, add_row.p90),
                    (del_row.median, del_row.p90),
                )
        print()
        for goal, measured, met in verdicts:
            report_verdict(goal, measured, met=met, source="bench_links.py")
        chart_sides(
            sides,
            runs=RUNS,
            title="interface plugins inside a node namespace",
            filename="links-inprocess-vs-go.png",
        )


def _verdicts(
    title: str, py_add: Row, py_del: Row, go_add: Row, go_del: Row
) -> list[tuple[str, str, bool]]:
    """Each goal's (goal, measured, met), for ``report_verdict``."""
    add_ratio = py_add.median / go_add.median
    del_ratio = py_del.median / go_del.median
    case = GOAL_CASES.get(title, title)
    return [
        (
            f"in-process ADD at most {ADD_GOAL}x Go's ADD ({case})",
            f"{add_ratio:.2f}x: {py_add.median:.2f} ms against Go binaries' "
            f"{go_add.median:.2f} ms ({ADD_GOAL}x is {go_add.median * ADD_GOAL:.2f} ms)",
            add_ratio <= ADD_GOAL,
        ),
        (
            f"in-process DEL no slower than Go's DEL ({case})",
            f"{del_ratio:.2f}x: {py_del.median:.2f} ms against {go_del.median:.2f} ms",
            del_ratio <= DEL_GOAL,
        ),
    ]


def _wire_uplink(prefix: str) -> None:
    """The node's uplink ``up0``, its peer in the uplink-peer namespace."""
    node, uplink_peer = f"{prefix}-node", f"{prefix}-uplinkpeer"
    link = ["ip", "-n", node, "link"]
    subprocess.run(
        [*link, "add", UPLINK, "type", "veth", "peer", "name", "uplinkp", "netns", uplink_peer],
        check=True,
    )
    subprocess.run([*link, "set", UPLINK, "up"], check=True)
    subprocess.run(["ip", "-n", uplink_peer, "link", "set", "uplinkp", "up"], check=True)


def main() -> None:
    roles = ("uplinkpeer", "hdpeer", *CONTAINERS)
    rerun_inside_node(__file__, roles, ("macvlan", "host-device", "host-local"), _wire_uplink)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--inner":
        inner(sys.argv[2])
    else:
        main()
