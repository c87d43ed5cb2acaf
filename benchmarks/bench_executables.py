"""cnilib's plugins as CNI executables, with and without the plugin server, against Go's.

Three sides, each exec'd the way a runtime execs a plugin (``subprocess.run`` with the
``CNI_*`` environment and the config on stdin, as :class:`cnilib.invoke.SubprocessExecutor`
does, no wrapper):

* go: Debian's Go binaries in /usr/lib/cni;
* cnilib+server: the executables ``python -m cnilib.plugins install`` writes, answered by
  a plugin server (``python -m cnilib.plugins serve``) started before the measurement;
* cnilib alone: the same executables with ``CNILIB_PLUGIN_SERVER=""`` (no server: each
  call pays the interpreter start and the imports).

Cases: VERSION of bridge, and ADD then DEL of bridge + host-local and ptp + host-local,
measured round-robin across the sides (each side has its own bridge, subnet and store).
The whole script runs inside a throwaway node namespace (``_harness.rerun_inside_node``),
where the server runs too, so no side pays ``ip netns exec`` per call.

Goal: the executables with the server within 2x Go's, per verb and case.
Run as root: ``python3 benchmarks/bench_executables.py`` (``BENCH_RUNS``, default 20).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import (
    GO_DIR,
    Row,
    measure_interleaved,
    print_table,
    report_verdict,
    rerun_inside_node,
)

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
GOAL = 2.0
SIDES = ("go", "cnilib+server", "cnilib alone")


def _exec(plugin: str, env: dict[str, str], stdin: bytes) -> bytes:
    done = subprocess.run([plugin], input=stdin, env=env, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{plugin} {env['CNI_COMMAND']} failed: {done.stdout!r} {done.stderr!r}")
    return done.stdout


def inner(prefix: str) -> None:
    ctr = f"/run/netns/{prefix}-ctr"
    with tempfile.TemporaryDirectory(prefix="cnilib-bench-exe-") as tmp:
        work = Path(tmp)
        sock = work / "run" / "plugins.sock"
        bin_dir = work / "bin"
        subprocess.run(
            [sys.executable, "-m", "cnilib.plugins", "install", str(bin_dir),
             "bridge", "ptp", "host-local", "--server-socket", str(sock)],
            check=True, capture_output=True,
        )  # fmt: skip
        server = subprocess.Popen(
            [sys.executable, "-m", "cnilib.plugins", "serve", "--socket", str(sock)]
        )
        try:
            from cnilib.plugins.server import wait_for_server

            wait_for_server(sock, timeout=30)
            _measure(work, bin_dir, str(sock), ctr)
        finally:
            server.terminate()
            server.wait(30)


def _cycle(
    exe: str, env: dict[str, str], stdin: bytes, adds: list[float], dels: list[float]
) -> Callable[[bool], None]:
    """ADD then DEL, each timed (and recorded when asked)."""

    def run(record: bool) -> None:
        started = time.perf_counter()
        _exec(exe, {**env, "CNI_COMMAND": "ADD"}, stdin)
        added = time.perf_counter()
        _exec(exe, {**env, "CNI_COMMAND": "DEL"}, stdin)
        deleted = time.perf_counter()
        if record:
            adds.append((added - started) * 1000)
            dels.append((deleted - added) * 1000)

    return run


def _sides(bin_dir: Path, sock: str) -> dict[str, tuple[Path, dict[str, str]]]:
    base = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    return {
        "go": (Path(GO_DIR), {**base, "CNI_PATH": GO_DIR}),
        "cnilib+server": (
            bin_dir,
            {**base, "CNI_PATH": str(bin_dir), "CNILIB_PLUGIN_SERVER": sock},
        ),
        "cnilib alone": (bin_dir, {**base, "CNI_PATH": str(bin_dir), "CNILIB_PLUGIN_SERVER": ""}),
    }


def _measure(work: Path, bin_dir: Path, sock: str, ctr: str) -> None:
    sides = _sides(bin_dir, sock)
    rows: dict[str, list[Row]] = {}

    version_stdin = b'{"cniVersion": "1.0.0"}'
    cases = [
        (side, partial(_exec, str(d / "bridge"), {**e, "CNI_COMMAND": "VERSION"}, version_stdin))
        for side, (d, e) in sides.items()
    ]
    rows["VERSION"] = measure_interleaved(cases, runs=RUNS * 2)

    for plugin in ("bridge", "ptp"):
        add_samples: dict[str, list[float]] = {side: [] for side in sides}
        del_samples: dict[str, list[float]] = {side: [] for side in sides}
        cycles: list[tuple[str, Callable[[bool], None]]] = []
        for index, (side, (directory, env)) in enumerate(sides.items()):
            conf: dict[str, object] = {
                "cniVersion": "1.0.0",
                "name": f"bench{index}",
                "type": plugin,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(work / f"ipam-{plugin}-{index}"),
                    "ranges": [[{"subnet": f"192.168.{240 + index}.0/24"}]],
                },
            }
            if plugin == "bridge":
                conf.update(bridge=f"cni-bx{index}", isGateway=True)
            call_env = {**env, "CNI_CONTAINERID": f"bench-{index}", "CNI_NETNS": ctr}
            call_env["CNI_IFNAME"] = f"eth{index}"
            stdin = json.dumps(conf).encode()
            exe = str(directory / plugin)

            cycles.append(
                (side, _cycle(exe, call_env, stdin, add_samples[side], del_samples[side]))
            )
        for _ in range(2):  # warm-up: the bridge is made, pages are in
            for _, run in cycles:
                run(False)
        for _ in range(RUNS):
            for _, run in cycles:
                run(True)
        rows[f"{plugin} ADD"] = [Row(side, tuple(add_samples[side])) for side in sides]
        rows[f"{plugin} DEL"] = [Row(side, tuple(del_samples[side])) for side in sides]

    for case, case_rows in rows.items():
        print_table(f"{case}: plugin executables, in a node namespace", case_rows, baseline="go")
    for case, case_rows in rows.items():
        by_side = {row.label: row.median for row in case_rows}
        ratio = by_side["cnilib+server"] / by_side["go"]
        report_verdict(
            f"cnilib executables with the plugin server within 2x Go's: {case}",
            f"{ratio:.2f}x: {by_side['cnilib+server']:.2f} ms against Go's {by_side['go']:.2f} ms "
            f"(without the server {by_side['cnilib alone']:.1f} ms)",
            met=ratio <= GOAL,
            source="bench_executables.py",
        )


def main() -> None:
    rerun_inside_node(__file__, ["ctr"], ("bridge", "ptp", "host-local"))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--inner":
        inner(sys.argv[2])
    else:
        main()
