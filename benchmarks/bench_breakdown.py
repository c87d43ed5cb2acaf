"""Where an in-process ADD's time goes: bridge + host-local and ptp + host-local,
each ADD (through ``cnilib.CNI`` with ``InProcessExecutor``) cut into its parts by
timing the library's own seams, with no profiler (whose overhead would distort the
Python parts most):

* netlink requests: every request on the raw netlink socket, the kernel's work
  included (the system call returns when the kernel has done it);
* namespace switches: a job's time in ``run_in_netns`` less the job itself;
* the rest of the namespace jobs: the jobs less their requests (building and
  parsing messages, sysctls, Go's checks);
* host-local: the delegated IPAM call, its store's files included;
* the plugin's own Python: the plugin call less all of the above (config, result);
* the cache: the runtime's pending and final entries (write, rename, fsync);
* the runtime's own Python: the ADD less the plugin call and the cache
  (config injection, result decoding, locks, the hand-over to the plugin's thread).

The medians of the parts need not add up to the median ADD. The seams are private
hooks, wrapped for this script only. Runs inside a throwaway node namespace
(``_harness.rerun_inside_node``), each ADD into the same container namespace,
detached again after it (untimed). Needs root.
Run: ``python3 benchmarks/bench_breakdown.py`` (``BENCH_RUNS``, 100 by default).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _harness import GO_DIR, rerun_inside_node

import cnilib
from cnilib.cache import _file
from cnilib.netlink import _pool, _raw
from cnilib.plugins import _executor

RUNS = int(os.environ.get("BENCH_RUNS", "100"))
PLUGINS = ("bridge", "ptp")
PARTS = (
    ("netlink requests", "request"),
    ("namespace switches", "switch"),
    ("namespace jobs, the rest", "jobs"),
    ("host-local (delegated IPAM)", "ipam"),
    ("plugin's own Python", "plugin"),
    ("cache entries (pending + final)", "cache"),
    ("runtime's own Python", "runtime"),
)


# Seconds per seam of the ADD being measured, on whichever thread it ran.
_seams: dict[str, float] = defaultdict(float)
_lock = threading.Lock()


def _add(seam: str, seconds: float) -> None:
    with _lock:
        _seams[seam] += seconds


@contextmanager
def _timed(seam: str) -> Iterator[None]:
    begun = time.perf_counter()
    try:
        yield
    finally:
        _add(seam, time.perf_counter() - begun)


def _wrap(owner: Any, name: str, seam: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        with _timed(seam):
            return original(*args, **kwargs)

    setattr(owner, name, timed)


def _wrap_switched() -> None:
    """A switched job: its whole time under "switched", the job itself under "job"."""
    original = _pool._switched_call

    def switched(pool: Any, handle: Any, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        def job(*a: Any, **k: Any) -> Any:
            with _timed("job"):
                return fn(*a, **k)

        with _timed("switched"):
            return original(pool, handle, job, args, kwargs)

    _pool._switched_call = switched


def install_seams() -> None:
    _wrap(_raw.RawNetlink, "request", "request")
    _wrap_switched()
    _wrap(_executor._Delegates, "exec", "ipam")
    _wrap(_executor.InProcessExecutor, "exec", "plugin_call")
    _wrap(_file.FileCache, "save", "cache")


def conflist(plugin: str, data_dir: str) -> cnilib.NetworkConfigList:
    extra: dict[str, object] = {"bridge": "brbd", "isGateway": True} if plugin == "bridge" else {}
    doc = {
        "cniVersion": "1.0.0",
        "name": f"breakdown-{plugin}",
        "plugins": [
            {
                "type": plugin,
                **extra,
                "ipam": {
                    "type": "host-local",
                    "dataDir": data_dir,
                    "ranges": [[{"subnet": "198.18.200.0/24" if plugin == "bridge"
                                 else "198.18.201.0/24"}]],
                },
            }
        ],
    }  # fmt: skip
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


def parts_of_one_add(cni: cnilib.CNI, conf: cnilib.NetworkConfigList, rt: cnilib.RuntimeConf
                     ) -> dict[str, float]:  # fmt: skip
    """One ADD (then its DEL, untimed): its total and parts, in ms."""
    with _lock:
        _seams.clear()
    begun = time.perf_counter()
    cni.add_network_list(conf, rt)
    total = time.perf_counter() - begun
    with _lock:
        s = dict(_seams)
    cni.delete_network_list(conf, rt)
    get = s.get
    request, switched, job = get("request", 0.0), get("switched", 0.0), get("job", 0.0)
    ipam, call, cache = get("ipam", 0.0), get("plugin_call", 0.0), get("cache", 0.0)
    # host-local makes no netlink request: the plugin's requests are all in its jobs.
    parts = {
        "request": request,
        "switch": switched - job,
        "jobs": job - request,
        "ipam": ipam,
        "plugin": call - switched - ipam,
        "cache": cache,
        "runtime": total - call - cache,
        "total": total,
    }
    return {key: value * 1000 for key, value in parts.items()}


def inner(prefix: str) -> None:
    from cnilib import netlink
    from cnilib.plugins._executor import InProcessExecutor

    node = f"/run/netns/{prefix}-node"
    install_seams()
    rows: dict[str, dict[str, list[float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for plugin in PLUGINS:
                cni = cnilib.CNI(
                    [GO_DIR], cache_dir=f"{tmp}/{plugin}-cache",
                    executor=InProcessExecutor(host_netns=node),
                )  # fmt: skip
                conf = conflist(plugin, f"{tmp}/{plugin}-store")
                rt = cnilib.RuntimeConf("breakdown", f"/run/netns/{prefix}-{plugin}", "eth0")
                for _ in range(5):  # warm-up
                    parts_of_one_add(cni, conf, rt)
                samples: dict[str, list[float]] = defaultdict(list)
                for _ in range(RUNS):
                    for key, value in parts_of_one_add(cni, conf, rt).items():
                        samples[key].append(value)
                rows[plugin] = samples
    finally:
        netlink.default_pool().close()
    print(f"\n### Where an in-process ADD's time goes (median ms of {RUNS} ADDs; "
          "the cache with its default durability)\n")  # fmt: skip
    print("| part | " + " | ".join(f"{p} + host-local" for p in PLUGINS) + " |")
    print("|---|" + "---:|" * len(PLUGINS))
    for label, key in PARTS:
        cells = [f"{statistics.median(rows[p][key]):.2f}" for p in PLUGINS]
        print(f"| {label} | " + " | ".join(cells) + " |")
    totals = [f"**{statistics.median(rows[p]['total']):.2f}**" for p in PLUGINS]
    print("| **the whole ADD** | " + " | ".join(totals) + " |")


def main() -> None:
    rerun_inside_node(__file__, PLUGINS, ())


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--inner":
        inner(sys.argv[2])
    else:
        main()
