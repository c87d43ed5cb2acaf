"""Timing helpers shared by the benchmarks: repeated runs, medians, one table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import attrs

__all__ = ["Row", "measure", "measure_interleaved", "print_table"]


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
