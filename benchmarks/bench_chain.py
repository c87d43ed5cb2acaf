"""The full chain of reference plugins: bridge (+host-local, ipMasq) -> tuning
-> portmap (one TCP mapping) -> bandwidth (ingress and egress) -> firewall ->
sbr. cnilib's plugins in-process against Debian's Go 1.1.1 binaries, both
through the same runtime (``cnilib.CNI``), side by side in one run:

- in-process: ``cnilib.CNI`` with ``InProcessExecutor`` (cnilib's six plugins
  and host-local, no plugin process; portmap and firewall still exec
  ``iptables``, as Go's do);
- Go binaries: ``cnilib.CNI`` with ``SubprocessExecutor`` running the six
  binaries of ``/usr/lib/cni`` (bridge execs Go's ``host-local``).

ADD and DEL of the whole chain, one after the other in each round (each side
on its own bridge, subnet and container namespace). CHECK is measured on
standing attachments, made before any timing: Go's CHECK cannot pass on the
full chain (Go's bridge looks for the container's subnet route in the main
table, and sbr moved it; Go's portmap 1.1.1 fails CHECK with a mapping on a
host with ip6tables, plugins#819), so the CHECK that both sides run is that
of the chain without sbr and without a port mapping; the in-process CHECK of
the full chain, with its mapping, is measured beside it.

The script re-runs itself inside a throwaway node namespace (``ip netns
exec``), so both sides' calls start there and the Go binaries are exec'd
directly, not each under an ``ip netns exec`` of its own. All namespaces are
deleted at the end, also on failure. The ADD and DEL figures are also drawn
as ``docs/images/chain-inprocess-vs-go.png``.

Goals (those of docs/performance.md): in-process ADD at most 0.5x Go's,
in-process DEL no slower than Go's. CHECK has no goal; its ratio is printed.
Needs root and /usr/lib/cni. Run: ``python3 benchmarks/bench_chain.py``.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from cnilib.events import PluginCallEvent

RUNS = int(os.environ.get("BENCH_RUNS", "30"))
PY, GO = "in-process", "Go binaries"
ADD_GOAL, DEL_GOAL = 0.5, 1.0  # in-process over Go: ADD at most half, DEL not slower
PLUGINS = ("bridge", "host-local", "tuning", "portmap", "bandwidth", "firewall", "sbr")
# Container namespace roles: the timed ADD/DEL ones, the standing CHECK ones.
CONTAINERS = ("py", "go", "check-py", "check-go", "full-py")
RATE, BURST = 8_000_000, 800_000


def chain(tmp: str, key: str, n: int, *, sbr: bool = True) -> cnilib.NetworkConfigList:
    """The chain for one attachment: bridge ``cb<key>0`` on ``10.79.<100+n>.0/24``;
    host-local and tuning keep their files under ``tmp``."""
    plugins: list[dict[str, object]] = [
        {
            "type": "bridge",
            "bridge": f"cb{key}0",
            "isDefaultGateway": True,
            "ipMasq": True,
            "ipam": {
                "type": "host-local",
                "dataDir": f"{tmp}/ipam",
                "ranges": [[{"subnet": f"10.79.{100 + n}.0/24"}]],
            },
        },
        {
            "type": "tuning",
            "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"},
            "dataDir": f"{tmp}/tuning",
        },
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {
            "type": "bandwidth",
            "ingressRate": RATE,
            "ingressBurst": BURST,
            "egressRate": RATE,
            "egressBurst": BURST,
        },
        {"type": "firewall", "backend": "iptables"},
    ]
    if sbr:
        plugins.append({"type": "sbr"})
    doc = {"cniVersion": "1.0.0", "name": f"bench-chain-{key}", "plugins": plugins}
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


def inner(prefix: str) -> None:
    """The measurement, already running inside the node namespace."""
    from cnilib.invoke import SubprocessExecutor
    from cnilib.plugins._executor import InProcessExecutor

    def rt(role: str, host_port: int | None) -> cnilib.RuntimeConf:
        mappings = [{"hostPort": host_port, "containerPort": 8080, "protocol": "tcp"}]
        caps: dict[str, Any] = {"portMappings": mappings} if host_port else {}
        netns = f"/run/netns/{prefix}-{role}"
        return cnilib.RuntimeConf(f"bench-chain-{role}", netns, "eth0", capability_args=caps)

    with tempfile.TemporaryDirectory() as tmp:
        # The in-process side gets an empty plugin directory: nothing it runs can be exec'd.
        empty = os.path.join(tmp, "empty")
        os.mkdir(empty)
        calls: list[PluginCallEvent] = []  # every plugin call, for the per-plugin table

        def record(event: object) -> None:
            if isinstance(event, PluginCallEvent) and event.outcome == "ok":
                calls.append(event)

        cnis = {
            "py": cnilib.CNI(
                [empty], cache_dir=f"{tmp}/cache-py", executor=InProcessExecutor(), events=record
            ),
            "go": cnilib.CNI(
                [GO_DIR], cache_dir=f"{tmp}/cache-go", executor=SubprocessExecutor(), events=record
            ),
        }
        # Standing attachments for CHECK, made before any timing.
        check_cases: list[tuple[str, Callable[[], object]]] = []
        for n, (side, label) in enumerate((("py", PY), ("go", GO))):
            conf = chain(tmp, f"c{side}", 10 + n, sbr=False)
            check_rt = rt(f"check-{side}", None)
            cnis[side].add_network_list(conf, check_rt)
            check = functools.partial(cnis[side].check_network_list, conf, check_rt)
            check_cases.append((f"{label}: CHECK, no sbr, no mapping", check))
        full = chain(tmp, "fpy", 20)
        full_rt = rt("full-py", 18099)
        cnis["py"].add_network_list(full, full_rt)
        check_cases.append(
            (
                f"{PY}: CHECK, full chain",
                functools.partial(cnis["py"].check_network_list, full, full_rt),
            )
        )

        cases: list[tuple[str, Callable[[], object]]] = []
        for n, (side, label) in enumerate((("py", PY), ("go", GO))):
            conf = chain(tmp, side, n)
            attach = rt(side, 18080 + n)
            cases.append(
                (f"{label}: ADD", functools.partial(cnis[side].add_network_list, conf, attach))
            )
            cases.append(
                (f"{label}: DEL", functools.partial(cnis[side].delete_network_list, conf, attach))
            )
        rows = measure_interleaved([*cases, *check_cases], runs=RUNS)
        by = {row.label: row for row in rows}

        py_add, py_del, go_add, go_del = table = [
            by[f"{side}: {verb}"] for side in (PY, GO) for verb in ("ADD", "DEL")
        ]
        print_table(
            "The full chain, ADD and DEL (inside a node namespace)", table, baseline=f"{GO}: ADD"
        )
        checks = [row for row in rows if "CHECK" in row.label]
        print_table("CHECK on standing attachments", checks, baseline=checks[1].label)
        print_per_plugin(calls)
        print()
        for line in verdicts(py_add, py_del, go_add, go_del, checks[0], checks[1]):
            print(line)
        chart_sides(
            {
                side: ((by[f"{side}: ADD"].median, by[f"{side}: ADD"].p90),
                       (by[f"{side}: DEL"].median, by[f"{side}: DEL"].p90))
                for side in (PY, GO)
            },
            runs=RUNS,
            title="bridge, tuning, portmap, bandwidth, firewall, sbr in a node namespace",
            filename="chain-inprocess-vs-go.png",
            log=False,
        )  # fmt: skip


def print_per_plugin(calls: list[PluginCallEvent]) -> None:
    """Median time of each plugin's call, by verb and side (the runtime's own work, its
    cache and locks, is in the tables above but in none of these rows)."""
    samples: dict[tuple[str, str, str], list[float]] = {}
    for call in calls:
        # ADD and DEL of the timed attachments; CHECK of the standing ones without sbr.
        side = call.container_id.rsplit("-", 1)[-1]
        timed = call.container_id in ("bench-chain-py", "bench-chain-go")
        if timed or call.container_id.startswith("bench-chain-check-"):
            samples.setdefault((call.plugin, call.verb, side), []).append(call.duration * 1000)
    columns = [(verb, side) for verb in ("ADD", "DEL", "CHECK") for side in ("py", "go")]
    names = {"py": PY, "go": "Go"}
    print("\n### Each plugin's call, median ms (CHECK: the chain without sbr, no mapping)\n")
    print("| plugin | " + " | ".join(f"{verb} {names[side]}" for verb, side in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for plugin in ("bridge", "tuning", "portmap", "bandwidth", "firewall", "sbr"):
        cells = []
        for verb, side in columns:
            values = samples.get((plugin, verb, side))
            cells.append(f"{statistics.median(values):.2f}" if values else "")
        print(f"| {plugin} | " + " | ".join(cells) + " |")


def verdicts(py_add: Row, py_del: Row, go_add: Row, go_del: Row,
             py_check: Row, go_check: Row) -> list[str]:  # fmt: skip
    """Report each goal's verdict (``report_verdict``); return CHECK's ratio, which has no goal."""
    add_ratio = py_add.median / go_add.median
    del_ratio = py_del.median / go_del.median
    check_ratio = py_check.median / go_check.median
    report_verdict(
        f"in-process ADD at most {ADD_GOAL}x Go's ADD (full chain: bridge with ipMasq, "
        "tuning, portmap, bandwidth, firewall, sbr)",
        f"{add_ratio:.2f}x: {py_add.median:.2f} ms against Go binaries' {go_add.median:.2f} ms "
        f"({ADD_GOAL}x is {go_add.median * ADD_GOAL:.2f} ms)",
        met=add_ratio <= ADD_GOAL,
        source="bench_chain.py",
    )
    report_verdict(
        "in-process DEL no slower than Go's DEL (full chain)",
        f"{del_ratio:.2f}x: {py_del.median:.2f} ms against {go_del.median:.2f} ms",
        met=del_ratio <= DEL_GOAL,
        source="bench_chain.py",
    )
    return [
        f"chain without sbr: in-process CHECK {check_ratio:.2f}x Go's (no goal; "
        f"{py_check.median:.2f} ms against {go_check.median:.2f} ms)",
    ]


def main() -> None:
    rerun_inside_node(__file__, CONTAINERS, PLUGINS)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--inner":
        inner(sys.argv[2])
    else:
        main()
