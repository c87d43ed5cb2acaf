"""Library overhead per verb, against the exec floor.

The plugin is Debian's Go ``static`` IPAM binary called as a plugin: a real
CNI executable that answers ADD with a result and does no kernel work, so
what it costs is almost only fork/exec. Three columns per verb:

* floor: the same binary exec'd with the same stdin in a bare
  ``subprocess.run`` loop (what any runtime pays at least);
* cnilib: ``CNI.<verb>_network_list`` with the subprocess executor (config
  injection, result decoding, cache read/write, error handling);
* in-memory: the same call through ``MockExecutor`` answering instantly,
  i.e. cnilib's own work with no process at all.

Unprivileged; needs /usr/lib/cni/static. Run: ``python3 benchmarks/bench_overhead.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cnilib
from cnilib.invoke import Command, Invocation
from cnilib.testing._mock import MockExecutor

sys.path.insert(0, str(Path(__file__).parent))
from _harness import (
    Row,
    measure,
    measure_interleaved,
    print_table,
    report_verdict,
    rerun_inside_node,
)

PLUGIN_DIR = "/usr/lib/cni"
RUNS = int(os.environ.get("BENCH_RUNS", "200"))
CHAIN = 4
GOAL_MS = 1.0  # per plugin call in the CHAIN-plugin ADD, over the exec floor
PLUGIN: dict[str, object] = {
    "type": "static",
    "ipam": {"type": "static", "addresses": [{"address": "10.250.9.2/24"}]},
}
CONF: dict[str, object] = {"cniVersion": "1.0.0", "name": "bench", "plugins": [PLUGIN]}
RT = cnilib.RuntimeConf("bench-ctr", "/proc/self/ns/net", "eth0")
STATIC_RESULT = b'{"cniVersion":"1.0.0","ips":[{"address":"10.250.9.2/24"}],"dns":{}}'


def _answer(invocation: Invocation) -> bytes:
    return STATIC_RESULT if invocation.command is Command.ADD else b""


def inner() -> None:
    conflist = cnilib.conflist_from_bytes(json.dumps(CONF).encode())
    stdin = cnilib.config.request_config(conflist.plugins[0], name="bench", cni_version="1.0.0")
    env = {
        **os.environ,
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": RT.container_id,
        "CNI_NETNS": RT.netns,
        "CNI_IFNAME": RT.ifname,
        "CNI_ARGS": "",
        "CNI_PATH": PLUGIN_DIR,
    }

    def floor() -> None:
        subprocess.run(
            [f"{PLUGIN_DIR}/static"], input=stdin, env=env, capture_output=True, check=True
        )

    with tempfile.TemporaryDirectory() as cache:
        real = cnilib.CNI([PLUGIN_DIR], cache_dir=cache)
        mock = cnilib.CNI([PLUGIN_DIR], cache_dir=cache, executor=MockExecutor(_answer))

        def add_del() -> None:
            real.add_network_list(conflist, RT)
            real.delete_network_list(conflist, RT)

        chain = cnilib.conflist_from_bytes(
            json.dumps({**CONF, "plugins": [PLUGIN] * CHAIN}).encode()
        )

        def floor_chain() -> None:
            for _ in range(CHAIN):
                floor()

        rows = measure_interleaved(
            [
                ("exec floor (subprocess.run)", floor),
                ("cnilib ADD", lambda: real.add_network_list(conflist, RT)),
                ("cnilib CHECK", lambda: real.check_network_list(conflist, RT)),
                ("cnilib ADD+DEL (2 execs)", add_del),
                (f"exec floor x{CHAIN}", floor_chain),
                (f"cnilib ADD, {CHAIN}-plugin chain", lambda: real.add_network_list(chain, RT)),
            ],
            runs=RUNS,
        )
        print_table("Per-call cost with a real Go plugin (static)", rows, baseline=rows[0].label)
        per_call = (rows[-1].median - rows[-2].median) / CHAIN
        print(
            f"\nper plugin call in a {CHAIN}-plugin ADD: {per_call:.3f} ms over the exec floor "
            "(the one durable cache write included, spread over the chain)"
        )
        report_verdict(
            f"each plugin call in a {CHAIN}-plugin ADD under {GOAL_MS:g} ms over the exec floor",
            f"{per_call:.2f} ms a call: {CHAIN}-plugin chain {rows[-1].median:.2f} ms against "
            f"{CHAIN} bare execs {rows[-2].median:.2f} ms (Go `static`)",
            met=per_call < GOAL_MS,
            source="bench_overhead.py",
        )

        mem: list[Row] = [
            measure("in-memory ADD", lambda: mock.add_network_list(conflist, RT), runs=RUNS * 5),
            measure(
                "in-memory CHECK", lambda: mock.check_network_list(conflist, RT), runs=RUNS * 5
            ),
        ]

        def mem_add_del() -> None:
            mock.add_network_list(conflist, RT)
            mock.delete_network_list(conflist, RT)

        mem.append(measure("in-memory ADD+DEL", mem_add_del, runs=RUNS * 5))
        print_table("cnilib's own work per verb (no process; cache on tmpfs/disk)", mem)


def main() -> None:
    if sys.argv[1:2] == ["--inner"]:
        inner()
        return
    # Go's static plugin does nothing to the network, but no plugin binary runs in
    # the machine's own namespace: the measuring process moves into a node's.
    rerun_inside_node(__file__, (), ("static",))


if __name__ == "__main__":
    main()
