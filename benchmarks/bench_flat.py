"""Flat ADD: does an in-process ADD get slower as containers pile up on one node?

1,000 containers (``BENCH_CONTAINERS``) are attached one after another to one
bridge with cnilib's bridge + host-local in process (``cnilib.CNI`` with
``InProcessExecutor``: the runtime's cache and locks included), each container
in a network namespace of its own; none is deleted until the end. Beside it,
interleaved container by container so that machine noise hits both alike, the
kernel work alone of the same ADD (the netlink calls, no CNI) into a second node
namespace with a bridge of its own: the floor, to tell the kernel's own growth
(more veths on a bridge, more namespaces) from cnilib's.

The script re-runs itself inside a throwaway node namespace
(``_harness.rerun_inside_node``), which plays the host for the in-process side;
the container namespaces are made in batches inside the loop but outside the
timed region, and all deleted at the end with one ``ip -batch``, also on failure.
Addresses are in 198.18.0.0/16 (in-process) and 198.19.0.0/16 (floor), the
range reserved for benchmarks.

Goal (docs/performance.md): in-process ADD at 1,000 containers within 1.25x of
its time at 0, judged two ways, each with the floor's own ratio beside it:

* while attaching: the median ADD of the last 50 containers against that of the
  first 50 (a table gives the medians per tenth of the run, and
  ``docs/images/flat-attachments.png`` draws every ADD);
* attached: one more container attached and detached 50 times on the empty node,
  and again once the 1,000 are attached and the kernel has settled
  (``BENCH_SETTLE`` seconds, 20 by default: a new interface keeps the kernel busy
  for a few seconds, with IPv6 duplicate address detection and router
  solicitations); the median ADDs compared.

``BENCH_PROFILE=1``: after the measured run, one more container is attached in
process and detached again, 50 times, its ADDs under cProfile (every thread the
ADD runs on: the caller, the plugin's call thread, the netlink workers) and left
out of the figures; the 25 functions with the largest cumulative time are
printed. (A Linux bridge takes at most 1,023 ports, so ``BENCH_CONTAINERS``, one
more beside them, can be at most 1,022.)

Needs root. Run: ``python3 benchmarks/bench_flat.py`` (about a minute and a half
at the default 1,000 containers on 2 cores).
"""

from __future__ import annotations

import cProfile
import functools
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

sys.path.insert(0, str(Path(__file__).parent))
from _charts import chart_sequential
from _harness import GO_DIR, report_verdict, rerun_inside_node
from bench_breakdown import PARTS, install_seams, parts_of_one_add

import cnilib
from cnilib.invoke import Invocation
from cnilib.plugins._executor import InProcessExecutor

CONTAINERS = int(os.environ.get("BENCH_CONTAINERS", "1000"))
PROFILE = os.environ.get("BENCH_PROFILE", "") not in ("", "0")
WINDOW = max(1, min(50, CONTAINERS // 2))  # first and last containers compared
BATCH = 50  # container namespaces made per `ip -batch`
GOAL = 1.25  # last WINDOW's median ADD over the first WINDOW's
PY, FLOOR = "in-process", "kernel work only"
SIDES = {"py": PY, "fl": FLOOR}
FLOOR_GATEWAY = "198.19.0.1"
BRIDGE_PORTS = 1023  # the most a Linux bridge takes (BR_MAX_PORTS - 1)
SETTLE = float(os.environ.get("BENCH_SETTLE", "20"))
QUIET = 0.2  # seconds after each DEL of the extra container

P = ParamSpec("P")
T = TypeVar("T")


def conflist(data_dir: str) -> cnilib.NetworkConfigList:
    """bridge + host-local on ``brflat``, a /16 (host-local needs room for them all)."""
    doc = {
        "cniVersion": "1.0.0",
        "name": "bench-flat",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "brflat",
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": data_dir,
                    "ranges": [[{"subnet": "198.18.0.0/16"}]],
                },
            }
        ],
    }
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


# The floor: the kernel work of the index-th bridge ADD, through cnilib.netlink.


def _floor_bridge() -> None:
    from cnilib import netlink

    netlink.add_bridge("brflat")
    netlink.add_address("brflat", f"{FLOOR_GATEWAY}/16")
    netlink.set_link_up("brflat")


def _floor_host(container: str, index: int) -> None:
    from cnilib import netlink

    netlink.add_veth(f"fl{index}", "eth0", peer_netns=container)
    netlink.set_link_master(f"fl{index}", "brflat")
    netlink.set_link_up(f"fl{index}")


def _floor_container(index: int) -> None:
    from cnilib import netlink

    host = index + 2  # .0.0 is the network, .0.1 the gateway
    netlink.set_link_up("eth0")
    netlink.add_address("eth0", f"198.19.{host // 256}.{host % 256}/16")
    netlink.add_route("0.0.0.0/0", gateway=FLOOR_GATEWAY, link="eth0")


def _floor_container_del() -> None:
    from cnilib import netlink

    netlink.delete_link("eth0")


def floor_add(node: str, container: str, index: int) -> None:
    """The kernel work of a bridge ADD into ``container``, no CNI."""
    from cnilib import netlink

    netlink.run_in_netns(node, _floor_host, container, index)
    netlink.run_in_netns(container, _floor_container, index)


# Namespaces: made in batches, deleted all at once.


def _ip_batch(commands: list[str], *, check: bool) -> None:
    """Run ``ip`` commands (one a line) in one ``ip -batch`` process."""
    if commands:
        subprocess.run(
            ["ip", "-force", "-batch", "-"],
            input="\n".join(commands) + "\n",
            text=True,
            check=check,
            capture_output=not check,
        )


class Namespaces:
    """The container namespaces ``<prefix>-<side><index>``, made BATCH containers
    at a time, and deleted together by :meth:`delete_all`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.made: list[str] = []

    def path(self, side: str, index: int) -> str:
        return f"/run/netns/{self.prefix}-{side}{index}"

    def ensure(self, index: int) -> None:
        """Make the namespaces of containers ``index`` .. ``index + BATCH - 1`` on the
        first of them (the caller times none of this)."""
        if index % BATCH:
            return
        names = [f"{self.prefix}-{side}{i}" for i in range(index, index + BATCH) for side in SIDES]
        try:
            _ip_batch([f"netns add {name}" for name in names], check=True)
        finally:
            self.made += [name for name in names if os.path.exists(f"/run/netns/{name}")]

    def delete_all(self) -> float:
        """Delete every namespace made (one ``ip -batch``); returns the seconds it took."""
        started = time.monotonic()
        _ip_batch([f"netns del {name}" for name in self.made], check=False)
        self.made.clear()
        return time.monotonic() - started


# Profiling every thread an in-process ADD runs on (BENCH_PROFILE=1).


class _PerThread(threading.local):
    depth: int = 0
    profile: cProfile.Profile | None = None


class ThreadProfiles:
    """One ``cProfile.Profile`` per thread, enabled around the outermost of the calls
    :meth:`call` wraps on that thread while :attr:`on`; merged by :meth:`stats`."""

    def __init__(self) -> None:
        self.on = False
        self._local = _PerThread()
        self._all: list[cProfile.Profile] = []

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        local = self._local
        if not self.on or local.depth:
            return fn(*args, **kwargs)
        profile = local.profile
        if profile is None:
            profile = local.profile = cProfile.Profile()
            self._all.append(profile)
        local.depth = 1
        try:
            return profile.runcall(fn, *args, **kwargs)
        finally:
            local.depth = 0

    def stats(self) -> pstats.Stats | None:
        if not self._all:
            return None
        stats = pstats.Stats(self._all[0])
        for profile in self._all[1:]:
            stats.add(profile)
        return stats


def profiled_executor(profiles: ThreadProfiles, node: str) -> InProcessExecutor:
    """An ``InProcessExecutor`` whose plugin calls, and every netlink job any thread
    submits, run under ``profiles`` (the benchmark only: private hooks of the pool)."""
    from cnilib.netlink import _pool

    class ProfiledJob(_pool._Job):
        __slots__ = ()

        def __init__(self, fn: Callable[..., Any], *rest: Any) -> None:
            super().__init__(functools.partial(profiles.call, fn), *rest)

    _pool._Job = ProfiledJob  # type: ignore[misc, assignment]

    class ProfiledExecutor(InProcessExecutor):
        def run_inline(self, invocation: Invocation) -> bytes:
            return profiles.call(super().run_inline, invocation)

    return ProfiledExecutor(host_netns=node)


def one_more(
    cni: cnilib.CNI, conf: cnilib.NetworkConfigList, floor_node: str, label: str, prefix: str
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """WINDOW ADDs of one more container on each side, each detached again (untimed),
    and QUIET seconds let pass after each DEL: the kernel finishes a deleted veth's
    work after the call returned (under the lock every netlink request takes), and
    the next ADD, which would wait for it, is to measure the ADD alone. Returns the
    times by side, and the in-process ADDs' parts (``bench_breakdown``'s seams)."""
    from cnilib import netlink

    py, fl = f"/run/netns/{prefix}-pyx", f"/run/netns/{prefix}-flx"
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    parts: dict[str, list[float]] = {}
    for index in range(WINDOW):
        rt = cnilib.RuntimeConf(f"flat-{label}{index}", py, "eth0")
        for key, value in parts_of_one_add(cni, conf, rt).items():  # DEL included, untimed
            parts.setdefault(key, []).append(value)
        times["py"].append(parts["total"][-1])
        begun = time.perf_counter()
        floor_add(floor_node, fl, CONTAINERS)
        times["fl"].append((time.perf_counter() - begun) * 1000)
        netlink.run_in_netns(fl, _floor_container_del)
        time.sleep(QUIET)
    return times, parts


def inner(prefix: str) -> None:
    """Inside the node namespace: attach, time, print, judge, draw; clean up."""
    from cnilib import netlink

    node, floor_node = f"/run/netns/{prefix}-node", f"/run/netns/{prefix}-flnode"
    namespaces = Namespaces(prefix)
    profiles = ThreadProfiles()
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    settled: dict[str, tuple[dict[str, list[float]], dict[str, list[float]]]] = {}
    started = time.monotonic()
    try:
        _ip_batch([f"netns add {prefix}-pyx", f"netns add {prefix}-flx"], check=True)
        namespaces.made += [f"{prefix}-pyx", f"{prefix}-flx"]
        install_seams()
        netlink.run_in_netns(floor_node, _floor_bridge)
        with tempfile.TemporaryDirectory() as tmp:
            executor = profiled_executor(profiles, node) if PROFILE else InProcessExecutor(
                host_netns=node)  # fmt: skip
            cni = cnilib.CNI([GO_DIR], cache_dir=f"{tmp}/cache", executor=executor)
            conf = conflist(f"{tmp}/store")
            settled["at 0"] = one_more(cni, conf, floor_node, "zero", prefix)
            started = time.monotonic()
            for index in range(CONTAINERS):
                namespaces.ensure(index)
                rt = cnilib.RuntimeConf(f"flat{index}", namespaces.path("py", index), "eth0")
                jobs: dict[str, Callable[[], object]] = {
                    "py": functools.partial(cni.add_network_list, conf, rt),
                    "fl": functools.partial(floor_add, floor_node,
                                            namespaces.path("fl", index), index),
                }  # fmt: skip
                for side, job in jobs.items():
                    begun = time.perf_counter()
                    job()
                    times[side].append((time.perf_counter() - begun) * 1000)
            attached = time.monotonic() - started
            time.sleep(SETTLE)
            settled[f"at {CONTAINERS:,}"] = one_more(cni, conf, floor_node, "full", prefix)
            if PROFILE:
                # ADD and DEL one more container WINDOW times, only the ADDs profiled:
                # the ADD at CONTAINERS containers, and the bridge stays within the
                # kernel's 1,023 ports.
                extra = f"/run/netns/{prefix}-pyx"
                for index in range(WINDOW):
                    rt = cnilib.RuntimeConf(f"flat-profiled{index}", extra, "eth0")
                    profiles.on = True
                    profiles.call(cni.add_network_list, conf, rt)
                    profiles.on = False
                    cni.delete_network_list(conf, rt)
    finally:
        netlink.default_pool().close()
        took = namespaces.delete_all()
    print(f"\n(attached {CONTAINERS} containers per side in {attached:.1f} s; "
          f"deleting their namespaces took {took:.1f} s)")  # fmt: skip
    report(times)
    report_settled(settled)
    if PROFILE:
        print_profile(profiles)


def report(times: dict[str, list[float]]) -> None:
    """The table per tenth, the first/last comparison, the verdict, the chart."""
    bucket = max(1, CONTAINERS // 10)
    print(f"\n### {CONTAINERS:,} containers attached one after another to one bridge "
          "(ADD ms, median per bucket)\n")  # fmt: skip
    print("| containers already attached | " + " | ".join(SIDES.values()) + " |")
    print("|---:|" + "---:|" * len(SIDES))
    for start in range(0, CONTAINERS, bucket):
        cells = [statistics.median(times[side][start : start + bucket]) for side in SIDES]
        end = min(start + bucket, CONTAINERS) - 1
        print(f"| {start}-{end} | " + " | ".join(f"{v:.2f}" for v in cells) + " |")
    first = {side: statistics.median(v[:WINDOW]) for side, v in times.items()}
    last = {side: statistics.median(v[-WINDOW:]) for side, v in times.items()}
    ratio = {side: last[side] / first[side] for side in SIDES}
    print(f"\n| side | first {WINDOW} ms | last {WINDOW} ms | last / first |")
    print("|---|---:|---:|---:|")
    for side, label in SIDES.items():
        print(f"| {label} | {first[side]:.2f} | {last[side]:.2f} | {ratio[side]:.2f}x |")
    print()
    report_verdict(
        f"in-process ADD while attaching {CONTAINERS:,} containers one after another within "
        f"{GOAL:g}x of its time at 0",
        f"{ratio['py']:.2f}x: median of the last {WINDOW} {last['py']:.2f} ms against the "
        f"first {WINDOW}'s {first['py']:.2f} ms; the kernel work alone {ratio['fl']:.2f}x "
        f"({last['fl']:.2f} against {first['fl']:.2f} ms)",
        met=ratio["py"] <= GOAL,
        source="bench_flat.py",
    )
    chart_sequential(
        {f"{PY} (bridge + host-local)": times["py"], f"{FLOOR}, interleaved": times["fl"]},
        title=f"{CONTAINERS:,} containers attached one after another to one bridge",
        filename="flat-attachments.png",
        window=max(10, CONTAINERS // 50),
    )


def report_settled(
    settled: dict[str, tuple[dict[str, list[float]], dict[str, list[float]]]],
) -> None:
    """One more container's ADD on the empty node and on the full, settled one."""
    (zero, (at_zero, parts_zero)), (full, (at_full, parts_full)) = settled.items()
    print(f"\n### One more container's ADD, {WINDOW} times: on the empty node, and with "
          f"{CONTAINERS:,} attached after {SETTLE:g} s of quiet (median ms)\n")  # fmt: skip
    print(f"| side | {zero} | {full} | ratio |")
    print("|---|---:|---:|---:|")
    ratio = {}
    for side, label in SIDES.items():
        before, after = statistics.median(at_zero[side]), statistics.median(at_full[side])
        ratio[side] = after / before
        print(f"| {label} | {before:.2f} | {after:.2f} | {ratio[side]:.2f}x |")
    print()
    py0, py1 = statistics.median(at_zero["py"]), statistics.median(at_full["py"])
    fl0, fl1 = statistics.median(at_zero["fl"]), statistics.median(at_full["fl"])
    report_verdict(
        f"in-process ADD with {CONTAINERS:,} containers attached (settled) within {GOAL:g}x "
        "of its time at 0",
        f"{ratio['py']:.2f}x: {py1:.2f} ms against {py0:.2f} ms (one more container, median "
        f"of {WINDOW}); the kernel work alone {ratio['fl']:.2f}x ({fl1:.2f} against "
        f"{fl0:.2f} ms)",
        met=ratio["py"] <= GOAL,
        source="bench_flat.py",
    )
    print("\nWhere the in-process ADD's time went (bench_breakdown.py's parts, median ms):\n")
    print(f"| part | {zero} | {full} | difference |")
    print("|---|---:|---:|---:|")
    for label, key in (*PARTS, ("the whole ADD", "total")):
        before, after = statistics.median(parts_zero[key]), statistics.median(parts_full[key])
        print(f"| {label} | {before:.2f} | {after:.2f} | {after - before:+.2f} |")


def print_profile(profiles: ThreadProfiles) -> None:
    stats = profiles.stats()
    print(f"\n### Profile of {WINDOW} in-process ADDs after {CONTAINERS:,} containers "
          "(every thread, top 25 by cumulative time)\n")  # fmt: skip
    print(
        "Cumulative times add up across threads: the caller's wait for the plugin's call\n"
        "thread includes that thread's work, as a plugin's wait for a netlink worker does.\n"
    )
    if stats is None:
        print("(nothing was profiled)")
        return
    stats.sort_stats("cumulative").print_stats(25)


def main() -> None:
    if not 2 <= CONTAINERS <= BRIDGE_PORTS - 1:  # and one more
        sys.exit(f"BENCH_CONTAINERS: 2 to {BRIDGE_PORTS - 1} (a bridge's ports)")
    # The floor's node namespace; the container namespaces are made inside, as needed.
    rerun_inside_node(__file__, ("flnode",), ())


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--inner":
        inner(sys.argv[2])
    else:
        main()
