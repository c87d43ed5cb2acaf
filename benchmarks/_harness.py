"""Timing helpers shared by the benchmarks: repeated runs, medians, one table."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

__all__ = [
    "Row",
    "measure",
    "measure_interleaved",
    "print_table",
    "report_verdict",
    "rerun_inside_node",
]

GO_DIR = "/usr/lib/cni"
"""Debian's Go reference plugins, the other side of the in-process benchmarks."""


def rerun_inside_node(
    script: str,
    roles: Sequence[str],
    go_plugins: Sequence[str],
    wire: Callable[[str], None] = lambda prefix: None,
) -> None:
    """Run ``script --inner <prefix>`` inside a throwaway node namespace, so that the
    plugins (in process and Go's binaries alike) act there and never on the host.

    Makes ``<prefix>-<role>`` for ``node`` and each of ``roles`` (loopback up), lets
    ``wire(prefix)`` join them, and deletes them all afterwards, also on failure.
    Exits with a message unless run as root with ``go_plugins`` in :data:`GO_DIR`.
    """
    if os.geteuid() != 0 or not all(os.access(f"{GO_DIR}/{p}", os.X_OK) for p in go_plugins):
        sys.exit(f"needs root and Debian's containernetworking-plugins in {GO_DIR}")
    prefix = f"cnilib-bench-{os.urandom(3).hex()}"
    made: list[str] = []
    try:
        for role in ("node", *roles):
            name = f"{prefix}-{role}"
            subprocess.run(["ip", "netns", "add", name], check=True)
            made.append(name)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        wire(prefix)
        subprocess.run(
            ["ip", "netns", "exec", f"{prefix}-node", sys.executable, script, "--inner", prefix],
            check=True,
        )
    finally:
        for name in reversed(made):
            subprocess.run(["ip", "netns", "del", name], check=False)
        # Namespaces the script made itself under the prefix (``ip netns add`` inside
        # ``ip netns exec``'s mount namespace) and left behind when it died: their
        # mounts went with it, their names in /run/netns did not.
        for path in sorted(Path("/run/netns").glob(f"{prefix}-*")):
            subprocess.run(["ip", "netns", "del", path.name], check=False)


@attrs.frozen
class Row:
    """One measured case: its label and every sample, in milliseconds."""

    label: str
    samples_ms: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p90(self) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def measure(label: str, action: Callable[[], object], *, runs: int, warmup: int = 2) -> Row:
    """Run ``action`` ``warmup`` times unmeasured, then ``runs`` times measured."""
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return Row(label, tuple(samples))


def measure_interleaved(
    cases: Sequence[tuple[str, Callable[[], object]]], *, runs: int, warmup: int = 2
) -> list[Row]:
    """Measure several cases round-robin, so machine noise and drift hit all alike."""
    for _ in range(warmup):
        for _, action in cases:
            action()
    samples: list[list[float]] = [[] for _ in cases]
    for _ in range(runs):
        for index, (_, action) in enumerate(cases):
            started = time.perf_counter()
            action()
            samples[index].append((time.perf_counter() - started) * 1000)
    return [Row(label, tuple(s)) for (label, _), s in zip(cases, samples, strict=True)]


def print_table(title: str, rows: Sequence[Row], *, baseline: str | None = None) -> None:
    """A Markdown table: median, p90 and, against ``baseline``, ratio and difference."""
    base = next((r for r in rows if r.label == baseline), None)
    print(f"\n### {title}\n")
    header = "| case | runs | median ms | p90 ms |"
    rule = "|---|---:|---:|---:|"
    if base is not None:
        header += f" vs {base.label} | diff ms |"
        rule += "---:|---:|"
    print(header)
    print(rule)
    for row in rows:
        line = f"| {row.label} | {len(row.samples_ms)} | {row.median:.3f} | {row.p90:.3f} |"
        if base is not None:
            line += f" {row.median / base.median:.2f}x | {row.median - base.median:+.3f} |"
        print(line)


VERDICTS_ENV = "BENCH_VERDICTS"
"""The file ``run_all.py`` collects every benchmark's verdicts in (one JSON object a line)."""


def report_verdict(goal: str, measured: str, *, met: bool, source: str) -> None:
    """State one goal's verdict: print it, and append it to ``$BENCH_VERDICTS`` when set.

    ``goal`` says the goal in words (``"in-process bridge ADD <= 2x the kernel floor"``),
    ``measured`` the figures it was judged on, with the case and the medians compared
    (``"1.84x: 3.01 ms against 1.64 ms"``), ``source`` the benchmark script's name.
    ``run_all.py`` prints every verdict of one run as a single table at the end.
    """
    print(f"verdict: {'met' if met else 'MISSED'}: {goal}: {measured}")
    path = os.environ.get(VERDICTS_ENV)
    if path:
        record = {"goal": goal, "measured": measured, "met": met, "source": source}
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
