"""Peak RSS of a runtime process that holds 1,000 cached attachments.

A temporary cache directory is filled through ``CNI.add_network_list`` with a
``MockExecutor`` that answers like Debian's Go bridge (three interfaces, one
address, sandbox path), so the entries are the ones a real bridge network
leaves. Then fresh processes, each run ``BENCH_RUNS`` times round-robin,
report ``ru_maxrss`` of themselves:

* ``python -c pass`` and ``python -c 'import cnilib'`` (the baselines);
* ``import cnilib`` + ``CNI(...)`` on that cache dir;
* the same, then ``cached_attachments()`` and
  ``gc_network_list(conf, <every entry>, dry_run=True)``, reporting the peak
  before, after the listing and after the GC dry run.

Also times ``cached_attachments()`` and the GC dry run over the full cache
(in this process, after warm-up, and the first call in each fresh process).

Unprivileged; no plugin runs. Run: ``python3 benchmarks/bench_memory.py``
(``BENCH_ENTRIES=1000`` (comma-separated for several sizes), ``BENCH_RUNS=5``,
``BENCH_TIME_RUNS=20``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import measure_interleaved, print_table

import cnilib
from cnilib.invoke import Command, Invocation
from cnilib.testing import MockExecutor

ENTRIES = [int(n) for n in os.environ.get("BENCH_ENTRIES", "1000").split(",")]
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
TIME_RUNS = int(os.environ.get("BENCH_TIME_RUNS", "20"))

CONFLIST = {
    "cniVersion": "1.0.0",
    "name": "memnet",
    "plugins": [
        {
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": True,
            "ipam": {
                "type": "host-local",
                "dataDir": "/var/lib/cni/networks",
                "ranges": [[{"subnet": "10.250.0.0/16"}]],
            },
        }
    ],
}

# One process per row; each prints its ru_maxrss (KiB) at its checkpoints.
CHILD = r"""
import resource, sys, time
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
mode, cache_dir, conf_file = sys.argv[1:4]
if mode == "pass":
    print(rss()); raise SystemExit
import cnilib
if mode == "import":
    print(rss()); raise SystemExit
cni = cnilib.CNI(["/usr/lib/cni"], cache_dir=cache_dir)
before = rss()
if mode == "create":
    print(before); raise SystemExit
started = time.perf_counter()
entries = cni.cached_attachments()
listed_ms = (time.perf_counter() - started) * 1000
after_list = rss()
conf = cnilib.conflist_from_file(conf_file)
started = time.perf_counter()
report = cni.gc_network_list(conf, [(e.container_id, e.ifname) for e in entries], dry_run=True)
gc_ms = (time.perf_counter() - started) * 1000
after_gc = rss()
print(before, after_list, after_gc, f"{listed_ms:.3f}", f"{gc_ms:.3f}", len(entries),
      len(report.stale))
"""

MODES = [
    ("pass", "python -c pass"),
    ("import", "python -c 'import cnilib'"),
    ("create", "import cnilib + CNI()"),
    ("workload", "workload"),
]


def bridge_answer(invocation: Invocation) -> bytes:
    """What Go bridge 1.x answers to ADD (a real result's shape), per container."""
    if invocation.command is not Command.ADD:
        return b""
    n = int(invocation.container_id[-10:])
    hi, lo = divmod(n + 2, 250)
    mac = f"{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}"
    result = {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"mac": "f6:fa:3b:98:54:7d", "name": "cni0"},
            {"mac": f"86:59:97:34:{mac}", "name": f"veth{n:08x}"},
            {"mac": f"ea:4c:a7:18:{mac}", "name": "eth0", "sandbox": invocation.netns},
        ],
        "ips": [{"address": f"10.250.{hi}.{lo}/16", "gateway": "10.250.0.1", "interface": 2}],
    }
    return json.dumps(result).encode()


def populate(cache_dir: str, count: int) -> None:
    conf = cnilib.conflist_from_bytes(json.dumps(CONFLIST).encode())
    cni = cnilib.CNI(["/unused"], cache_dir=cache_dir, executor=MockExecutor(bridge_answer))
    for i in range(count):
        # A 64-hex-digit container ID, as containerd and CRI-O use (its index at the end).
        cid = f"{os.urandom(27).hex()}{i:010d}"
        netns = f"/var/run/netns/cni-{cid[:8]}-{cid[8:12]}-{cid[12:16]}-{cid[16:20]}-{cid[20:32]}"
        cni.add_network_list(conf, cnilib.RuntimeConf(cid, netns, "eth0"))


def child(mode: str, cache_dir: str, conf_file: str) -> list[str]:
    """Run one fresh process and return what it printed.

    Through ``sh``, which forks it: Linux folds the RSS high-water mark of the
    address space an ``exec`` replaces into ``ru_maxrss``, so a process this
    benchmark forked and exec'd directly would report this (bigger) process's
    peak instead of its own. Forked from a small shell, it starts from the
    shell's ~2 MiB.
    """
    via_shell = ["/bin/sh", "-c", '"$@"; exit $?', "sh"]
    proc = subprocess.run(
        [*via_shell, sys.executable, "-c", CHILD, mode, cache_dir, conf_file],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.split()


def kib(values: list[int]) -> str:
    return f"{statistics.median(values):,.0f} | {min(values):,}-{max(values):,}"


def bench(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="cnilib-mem-") as tmp:
        cache_dir = os.path.join(tmp, "cache")
        conf_file = os.path.join(tmp, "memnet.conflist")
        Path(conf_file).write_text(json.dumps(CONFLIST))
        populate(cache_dir, count)
        files = list(Path(cache_dir, "results").iterdir())
        size = sum(f.stat().st_size for f in files)

        peaks: dict[str, list[int]] = {mode: [] for mode, _ in MODES}
        before: list[int] = []
        after_list: list[int] = []
        first_list_ms: list[float] = []
        first_gc_ms: list[float] = []
        for _ in range(RUNS):
            for mode, _ in MODES:
                out = child(mode, cache_dir, conf_file)
                if mode != "workload":
                    peaks[mode].append(int(out[0]))
                    continue
                if int(out[5]) != count or int(out[6]) != 0:
                    raise RuntimeError(f"workload saw {out[5]} entries, {out[6]} stale")
                before.append(int(out[0]))
                after_list.append(int(out[1]))
                peaks[mode].append(int(out[2]))
                first_list_ms.append(float(out[3]))
                first_gc_ms.append(float(out[4]))

        base = statistics.median(peaks["import"])
        print(
            f"\n### Peak RSS (ru_maxrss), {count:,} cached attachments "
            f"({len(files):,} files, {size / 1024:,.0f} KiB on disk), fresh process each\n"
        )
        print("| process | runs | peak RSS KiB | min-max KiB | vs import cnilib KiB |")
        print("|---|---:|---:|---:|---:|")
        rows = [
            ("python -c pass", peaks["pass"]),
            ("python -c 'import cnilib'", peaks["import"]),
            ("import cnilib + CNI()", peaks["create"]),
            ("workload: before, after import + CNI()", before),
            (f"workload: after cached_attachments() ({count:,})", after_list),
            ("workload: after gc_network_list(dry_run=True)", peaks["workload"]),
        ]
        for label, values in rows:
            print(
                f"| {label} | {len(values)} | {kib(values)} | "
                f"{statistics.median(values) - base:+,.0f} |"
            )
        growth = statistics.median(peaks["workload"]) - statistics.median(before)
        print(
            f"\nGrowth from the {count:,} entries (listing + GC dry run): {growth:,.0f} KiB, "
            f"{growth * 1024 / count:,.0f} bytes per entry"
        )
        print(
            f"First call in a fresh process: cached_attachments() "
            f"{statistics.median(first_list_ms):.1f} ms, GC dry run "
            f"{statistics.median(first_gc_ms):.1f} ms (medians of {RUNS})"
        )

        conf = cnilib.conflist_from_file(conf_file)
        cni = cnilib.CNI(["/usr/lib/cni"], cache_dir=cache_dir)
        valid = [(e.container_id, e.ifname) for e in cni.cached_attachments()]
        timings = measure_interleaved(
            [
                (f"cached_attachments(), {count:,} entries", cni.cached_attachments),
                (
                    f"gc_network_list(dry_run=True), {count:,} valid",
                    lambda: cni.gc_network_list(conf, valid, dry_run=True),
                ),
            ],
            runs=TIME_RUNS,
        )
        print_table(f"Reading {count:,} cached attachments (warm page cache)", timings)


def main() -> None:
    print(f"Peak RSS of the runtime process with cached attachments ({RUNS} runs per row)")
    for count in ENTRIES:
        bench(count)


if __name__ == "__main__":
    main()
