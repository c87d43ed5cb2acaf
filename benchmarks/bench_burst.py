"""A burst of containers attached to one bridge network, then detached:
a serial ``CNI`` loop, ``AsyncCNI`` at several concurrency limits, and one
``python -m cnilib`` process per container (the way cnitool is used), in one run.

Everything happens inside a throwaway node namespace (this script re-runs
itself there under ``ip netns exec``) with the container namespaces beside
it; all of them are deleted at the end, also on failure. Bridge + host-local,
no ipMasq, IPAM data and caches in a temporary directory.

The container namespaces are made once and reused: every case ADDs all of
them, then DELs all of them, and must leave no cache entry, IP reservation
or veth behind (checked after each case). Cases run round-robin for
``BENCH_ROUNDS`` rounds, the order rotated each round, and the tables give
the median over rounds of each round's figure.

Latency is each call's own duration: for ``AsyncCNI`` from the moment the
call got its concurrency slot to its return, so time spent queued behind the
limit is not counted (the "p50 done" column shows when the median container
was done, counted from the start of the burst, queueing included).

Needs root and /usr/lib/cni. Run: ``python3 benchmarks/bench_burst.py``
(``BENCH_CONTAINERS=100``, ``BENCH_ROUNDS=4``, ``BENCH_LIMITS=1,2,4,8,16,32,none``,
``BENCH_CLI_PROCS=8``).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs

sys.path.insert(0, str(Path(__file__).parent))
from _charts import BurstPoint, chart_burst

if TYPE_CHECKING:
    import cnilib

PLUGIN_DIR = "/usr/lib/cni"
NETWORK = "burstnet"
SUBNET = "10.250.0.0/16"
CONTAINERS = int(os.environ.get("BENCH_CONTAINERS", "100"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
LIMITS: list[int | None] = [
    None if x.strip().lower() == "none" else int(x)
    for x in os.environ.get("BENCH_LIMITS", "1,2,4,8,16,32,none").split(",")
]
CLI_PROCS = int(os.environ.get("BENCH_CLI_PROCS", "8"))


def conflist(data_dir: str) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "burstbr0",
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": data_dir,
                    "ranges": [[{"subnet": SUBNET}]],
                },
            }
        ],
    }


# -- measurement records ----------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: p99 of 100 samples is the 99th smallest."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@attrs.frozen
class Phase:
    """One ADD (or DEL) burst: wall time, and per container its own call
    duration and when it was done, both in ms."""

    total_s: float
    own_ms: tuple[float, ...]
    done_ms: tuple[float, ...]

    @property
    def rate(self) -> float:
        return len(self.own_ms) / self.total_s


@attrs.frozen
class Run:
    """One case in one round."""

    add: Phase
    delete: Phase
    cpu_user_s: float
    cpu_sys_s: float


class Timer:
    """Collects own durations and completion times of the calls of one burst."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.own: list[float] = []
        self.done: list[float] = []

    def record(self, began: float) -> None:
        now = time.perf_counter()
        self.own.append((now - began) * 1000)
        self.done.append((now - self.started) * 1000)

    def phase(self) -> Phase:
        total = time.perf_counter() - self.started
        return Phase(total, tuple(self.own), tuple(self.done))


def cpu_seconds() -> tuple[float, float]:
    """User and system CPU of this process and its waited-for descendants."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + kids.ru_utime, me.ru_stime + kids.ru_stime


# -- the AsyncCNI slot hook ---------------------------------------------------------

_slot_acquired: contextvars.ContextVar[float] = contextvars.ContextVar("slot_acquired")


class TimedSemaphore(asyncio.Semaphore):
    """AsyncCNI's concurrency limit, noting in the calling task when the slot
    was granted (each gathered call is its own task, with its own context)."""

    async def acquire(self) -> Literal[True]:
        await super().acquire()
        _slot_acquired.set(time.perf_counter())
        return True


def async_cni(cache_dir: str, limit: int | None) -> cnilib.AsyncCNI:
    import cnilib

    class TimedAsyncCNI(cnilib.AsyncCNI):
        def make_slots(self, limit: int) -> asyncio.Semaphore:
            return TimedSemaphore(limit)

    return TimedAsyncCNI([PLUGIN_DIR], cache_dir=cache_dir, max_concurrency=limit)


# -- the cases ----------------------------------------------------------------------


@attrs.frozen
class World:
    conf_file: str
    conf: cnilib.NetworkConfigList
    netns: tuple[str, ...]
    work: str

    def ids(self, case: str) -> list[str]:
        return [f"burst-{case}-{i:03d}" for i in range(len(self.netns))]


def ips_of(result_json: str) -> list[str]:
    return [str(ip["address"]) for ip in json.loads(result_json).get("ips", [])]


def case_serial(world: World, cache_dir: str) -> tuple[Phase, Phase, list[str]]:
    import cnilib

    cni = cnilib.CNI([PLUGIN_DIR], cache_dir=cache_dir)
    rts = [
        cnilib.RuntimeConf(cid, ns, "eth0")
        for cid, ns in zip(world.ids("serial"), world.netns, strict=True)
    ]
    results = []
    timer = Timer()
    for rt in rts:
        began = time.perf_counter()
        results.append(cni.add_network_list(world.conf, rt))
        timer.record(began)
    add = timer.phase()
    timer = Timer()
    for rt in rts:
        began = time.perf_counter()
        cni.delete_network_list(world.conf, rt)
        timer.record(began)
    ips = [ip for r in results if r is not None for ip in ips_of(r.to_json())]
    return add, timer.phase(), ips


def case_async(world: World, cache_dir: str, limit: int | None) -> tuple[Phase, Phase, list[str]]:
    import cnilib

    async def burst() -> tuple[Phase, Phase, list[str]]:
        cni = async_cni(cache_dir, limit)
        rts = [
            cnilib.RuntimeConf(cid, ns, "eth0")
            for cid, ns in zip(world.ids(f"async{limit}"), world.netns, strict=True)
        ]

        async def add(rt: cnilib.RuntimeConf, timer: Timer) -> cnilib.Result | None:
            called = time.perf_counter()
            result = await cni.add_network_list(world.conf, rt)
            timer.record(_slot_acquired.get(called))
            return result

        async def delete(rt: cnilib.RuntimeConf, timer: Timer) -> None:
            called = time.perf_counter()
            await cni.delete_network_list(world.conf, rt)
            timer.record(_slot_acquired.get(called))

        timer = Timer()
        results = await asyncio.gather(*(add(rt, timer) for rt in rts))
        add_phase = timer.phase()
        timer = Timer()
        await asyncio.gather(*(delete(rt, timer) for rt in rts))
        ips = [ip for r in results if r is not None for ip in ips_of(r.to_json())]
        return add_phase, timer.phase(), ips

    return asyncio.run(burst())


def case_cli(world: World, cache_dir: str) -> tuple[Phase, Phase, list[str]]:
    """One ``python -m cnilib`` per container, ``CLI_PROCS`` at a time
    (container IDs derived from the netns path, as cnitool does)."""
    base = [sys.executable, "-m", "cnilib", "--cni-path", PLUGIN_DIR, "--cache-dir", cache_dir]

    def run(verb: str, netns: str, timer: Timer) -> str:
        began = time.perf_counter()
        proc = subprocess.run(
            [*base, verb, world.conf_file, netns], capture_output=True, text=True, check=False
        )
        timer.record(began)
        if proc.returncode != 0:
            raise RuntimeError(f"cnilib {verb} {netns} failed: {proc.stderr.strip()}")
        return proc.stdout

    with ThreadPoolExecutor(max_workers=CLI_PROCS) as pool:
        timer = Timer()
        outputs = list(pool.map(lambda ns: run("add", ns, timer), world.netns))
        add = timer.phase()
        timer = Timer()
        list(pool.map(lambda ns: run("del", ns, timer), world.netns))
    ips = [ip for out in outputs for ip in ips_of(out)]
    return add, timer.phase(), ips


def check_clean(world: World, cache_dir: str, ips: list[str], label: str) -> None:
    """Every container got its own address, and DEL left nothing behind."""
    import cnilib

    if len(ips) != len(world.netns) or len(set(ips)) != len(ips):
        raise RuntimeError(f"{label}: {len(ips)} addresses, {len(set(ips))} distinct")
    leftovers = cnilib.CNI([PLUGIN_DIR], cache_dir=cache_dir).cached_attachments()
    if leftovers:
        raise RuntimeError(f"{label}: {len(leftovers)} cache entries left")
    store = Path(world.work, "ipam", NETWORK)
    reserved = [p.name for p in store.iterdir() if p.name != "lock"]
    reserved = [n for n in reserved if not n.startswith("last_reserved_ip")]
    if reserved:
        raise RuntimeError(f"{label}: host-local still holds {reserved[:5]}")
    veths = subprocess.run(
        ["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if veths:
        raise RuntimeError(f"{label}: veths left in the node namespace: {veths[:200]}")


# -- reporting ----------------------------------------------------------------------


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def phase_table(title: str, runs: dict[str, list[Run]], pick: Callable[[Run], Phase]) -> None:
    print(f"\n### {title}\n")
    print("| case | rounds | burst s | min-max s | containers/s | p50 ms | p99 ms | p50 done ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, case_runs in runs.items():
        phases = [pick(r) for r in case_runs]
        totals = [p.total_s for p in phases]
        print(
            f"| {label} | {len(phases)} | {med(totals):.2f} | "
            f"{min(totals):.2f}-{max(totals):.2f} | {med([p.rate for p in phases]):.1f} | "
            f"{med([percentile(p.own_ms, 50) for p in phases]):.1f} | "
            f"{med([percentile(p.own_ms, 99) for p in phases]):.1f} | "
            f"{med([percentile(p.done_ms, 50) for p in phases]):.0f} |"
        )


def cycle_table(runs: dict[str, list[Run]], baseline: str) -> dict[str, float]:
    """ADD+DEL of the whole burst; returns the median cycle seconds per case."""
    cycles = {
        label: med([r.add.total_s + r.delete.total_s for r in case_runs])
        for label, case_runs in runs.items()
    }
    print(f"\n### Whole burst, ADD then DEL of {CONTAINERS} containers\n")
    print(
        f"| case | ADD+DEL s | containers/s | vs {baseline} | CPU user s | CPU sys s | CPU busy |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, case_runs in runs.items():
        user = med([r.cpu_user_s for r in case_runs])
        system = med([r.cpu_sys_s for r in case_runs])
        busy = (user + system) / ((os.cpu_count() or 1) * cycles[label])
        print(
            f"| {label} | {cycles[label]:.2f} | {CONTAINERS / cycles[label]:.1f} | "
            f"{cycles[baseline] / cycles[label]:.2f}x | {user:.2f} | {system:.2f} | {busy:.0%} |"
        )
    return cycles


# -- driver -------------------------------------------------------------------------


def inner(work: str, netns_names: list[str]) -> None:
    """The measurement, already running inside the node namespace; ``work`` is
    a scratch directory the outer process made (and removes)."""
    import cnilib

    doc = conflist(os.path.join(work, "ipam"))
    conf_file = os.path.join(work, f"{NETWORK}.conflist")
    Path(conf_file).write_text(json.dumps(doc))
    world = World(
        conf_file=conf_file,
        conf=cnilib.conflist_from_file(conf_file),
        netns=tuple(f"/run/netns/{name}" for name in netns_names),
        work=work,
    )

    cases: list[tuple[str, Callable[[str], tuple[Phase, Phase, list[str]]]]] = [
        ("serial CNI loop", lambda cache: case_serial(world, cache))
    ]

    def async_case(limit: int | None) -> Callable[[str], tuple[Phase, Phase, list[str]]]:
        return lambda cache: case_async(world, cache, limit)

    cases += [(f"AsyncCNI max_concurrency={limit}", async_case(limit)) for limit in LIMITS]
    cases.append(
        (f"python -m cnilib per container, {CLI_PROCS} at a time", lambda c: case_cli(world, c))
    )

    # Warm-up, unmeasured: creates the bridge and warms the page cache.
    warm = World(conf_file, world.conf, world.netns[:2], work)
    case_serial(warm, os.path.join(work, "cache-warm-sync"))
    case_cli(warm, os.path.join(work, "cache-warm-cli"))

    runs: dict[str, list[Run]] = {label: [] for label, _ in cases}
    for round_no in range(ROUNDS):
        shift = round_no % len(cases)
        for index, (label, action) in enumerate(cases[shift:] + cases[:shift]):
            cache_dir = os.path.join(work, f"cache-{round_no}-{index}")
            user0, sys0 = cpu_seconds()
            add, delete, ips = action(cache_dir)
            user1, sys1 = cpu_seconds()
            check_clean(world, cache_dir, ips, label)
            runs[label].append(Run(add, delete, user1 - user0, sys1 - sys0))
            print(
                f"round {round_no + 1}/{ROUNDS}: {label}: ADD {add.total_s:.2f} s, "
                f"DEL {delete.total_s:.2f} s",
                file=sys.stderr,
            )

    print(
        f"\nBurst of {CONTAINERS} containers on one bridge + host-local network "
        f"(no ipMasq, inside a node namespace), {os.cpu_count()} CPUs, "
        f"median of {ROUNDS} rounds"
    )
    phase_table(f"ADD burst ({CONTAINERS} containers)", runs, lambda r: r.add)
    phase_table(f"DEL burst ({CONTAINERS} containers)", runs, lambda r: r.delete)
    cycles = cycle_table(runs, baseline=cases[0][0])
    report_best(runs, cycles)
    chart_burst(
        {limit: burst_point(runs[f"AsyncCNI max_concurrency={limit}"]) for limit in LIMITS},
        burst_point(runs[cases[0][0]]),
        containers=CONTAINERS,
        rounds=ROUNDS,
        cpus=os.cpu_count() or 1,
    )


def burst_point(case_runs: list[Run]) -> BurstPoint:
    """A case's figures for the chart: the same medians over rounds as the tables."""
    return BurstPoint(
        add_rate=med([r.add.rate for r in case_runs]),
        del_rate=med([r.delete.rate for r in case_runs]),
        cycle_rate=CONTAINERS / med([r.add.total_s + r.delete.total_s for r in case_runs]),
        add_p50=med([percentile(r.add.own_ms, 50) for r in case_runs]),
        add_p99=med([percentile(r.add.own_ms, 99) for r in case_runs]),
        del_p50=med([percentile(r.delete.own_ms, 50) for r in case_runs]),
        del_p99=med([percentile(r.delete.own_ms, 99) for r in case_runs]),
    )


def report_best(runs: dict[str, list[Run]], cycles: dict[str, float]) -> None:
    """The AsyncCNI limit with the highest ADD+DEL throughput, and the smallest
    limit within 5 % of it (less queueing inside each call for nearly the
    same throughput)."""
    rates = {
        label.split("=", 1)[1]: CONTAINERS / seconds
        for label, seconds in cycles.items()
        if label.startswith("AsyncCNI")
    }
    best = max(rates, key=rates.__getitem__)
    knee = next(limit for limit, rate in rates.items() if rate >= 0.95 * rates[best])

    def add_p50(limit: str) -> float:
        return med(
            [percentile(r.add.own_ms, 50) for r in runs[f"AsyncCNI max_concurrency={limit}"]]
        )

    print(
        f"\nHighest ADD+DEL throughput: max_concurrency={best} ({rates[best]:.1f} containers/s, "
        f"ADD p50 {add_p50(best):.1f} ms). Smallest limit within 5 % of it: "
        f"max_concurrency={knee} ({rates[knee]:.1f} containers/s, ADD p50 {add_p50(knee):.1f} ms)."
    )


def main() -> None:
    if os.geteuid() != 0 or not os.access(f"{PLUGIN_DIR}/bridge", os.X_OK):
        sys.exit("needs root and Debian's containernetworking-plugins in /usr/lib/cni")
    suffix = os.urandom(3).hex()
    node = f"cnilib-burst-node-{suffix}"
    containers = [f"cnilib-burst-{suffix}-{i:03d}" for i in range(CONTAINERS)]
    # A plain kill (SIGTERM) must clean up too: turn it into an exception.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    made: list[str] = []
    work = tempfile.mkdtemp(prefix="cnilib-burst-")
    try:
        for name in (node, *containers):
            subprocess.run(["ip", "netns", "add", name], check=True)
            made.append(name)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            ["ip", "netns", "exec", node, sys.executable, __file__, "--inner", work, *containers],
            check=True,
        )
    finally:
        for name in reversed(made):
            subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--inner":
        inner(sys.argv[2], sys.argv[3:])
    else:
        main()
