"""ADD and DEL of bridge + host-local through cnilib, against the same Go
binaries exec'd directly (the floor), side by side in one run.

Everything happens inside a throwaway node namespace (this script re-runs
itself there under ``ip netns exec``) with a container namespace beside it;
both are deleted at the end, also on failure. No ipMasq, as in the issue.

Needs root and /usr/lib/cni. Run: ``python3 benchmarks/bench_bridge.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import measure_interleaved, print_table

PLUGIN_DIR = "/usr/lib/cni"
RUNS = int(os.environ.get("BENCH_RUNS", "20"))


def conflist(data_dir: str) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "benchnet",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "benchbr0",
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": data_dir,
                    "ranges": [[{"subnet": "10.250.77.0/24"}]],
                },
            }
        ],
    }


def inner(container_netns: str) -> None:
    """The measurement, already running inside the node namespace."""
    import cnilib
    from cnilib.config import request_config

    with tempfile.TemporaryDirectory() as tmp:
        doc = conflist(os.path.join(tmp, "ipam"))
        conf = cnilib.conflist_from_bytes(json.dumps(doc).encode())
        cni = cnilib.CNI([PLUGIN_DIR], cache_dir=os.path.join(tmp, "cache"))
        rt_lib = cnilib.RuntimeConf("bench-lib", container_netns, "eth0")
        stdin_add = request_config(conf.plugins[0], name="benchnet", cni_version="1.0.0")
        env = {
            **os.environ,
            "CNI_CONTAINERID": "bench-direct",
            "CNI_NETNS": container_netns,
            "CNI_IFNAME": "eth1",
            "CNI_ARGS": "",
            "CNI_PATH": PLUGIN_DIR,
        }
        direct_result: list[bytes] = []

        def direct(command: str, stdin: bytes) -> bytes:
            proc = subprocess.run(
                [f"{PLUGIN_DIR}/bridge"],
                input=stdin,
                env={**env, "CNI_COMMAND": command},
                capture_output=True,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"bridge {command} failed: {proc.stdout!r} {proc.stderr!r}")
            return proc.stdout

        def direct_add() -> None:
            direct_result.append(direct("ADD", stdin_add))

        def direct_del() -> None:
            prev = json.loads(direct_result.pop())
            stdin_del = request_config(
                conf.plugins[0], name="benchnet", cni_version="1.0.0", prev_result=prev
            )
            direct("DEL", stdin_del)

        rows = measure_interleaved(
            [
                ("Go bridge exec'd directly: ADD", direct_add),
                ("Go bridge exec'd directly: DEL", direct_del),
                ("cnilib + Go bridge: ADD", lambda: cni.add_network_list(conf, rt_lib)),
                ("cnilib + Go bridge: DEL", lambda: cni.delete_network_list(conf, rt_lib)),
            ],
            runs=RUNS,
        )
        print_table(
            "bridge + host-local, no ipMasq (inside a node namespace)", rows, baseline=rows[0].label
        )
        floor = rows[0].median + rows[1].median
        lib = rows[2].median + rows[3].median
        print(
            f"\nADD+DEL: direct {floor:.1f} ms, cnilib {lib:.1f} ms "
            f"({lib / floor:.2f}x, {lib - floor:+.2f} ms)"
        )


def main() -> None:
    if os.geteuid() != 0 or not os.access(f"{PLUGIN_DIR}/bridge", os.X_OK):
        sys.exit("needs root and Debian's containernetworking-plugins in /usr/lib/cni")
    suffix = os.urandom(3).hex()
    node, container = f"cnilib-bench-node-{suffix}", f"cnilib-bench-ctr-{suffix}"
    made: list[str] = []
    try:
        for name in (node, container):
            subprocess.run(["ip", "netns", "add", name], check=True)
            made.append(name)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                node,
                sys.executable,
                __file__,
                "--inner",
                f"/run/netns/{container}",
            ],
            check=True,
        )
    finally:
        for name in reversed(made):
            subprocess.run(["ip", "netns", "del", name], check=False)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--inner":
        inner(sys.argv[2])
    else:
        main()
