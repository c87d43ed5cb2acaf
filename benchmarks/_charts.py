"""Charts next to the benchmark tables: PNG files drawn with matplotlib's Agg canvas.

matplotlib is the ``bench`` extra and is imported only here, on first use: a
benchmark without it prints its tables, and one line saying the charts were
skipped. Charts go to ``docs/images/`` (``BENCH_CHARTS_DIR`` to write them
elsewhere; ``BENCH_CHARTS_DIR=`` (empty) for none), where docs/performance.md
shows them. Each title says how the figures were taken (runs, rounds), so a
chart from a short run reads as one.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

__all__ = [
    "BurstPoint",
    "chart_burst",
    "chart_sequential",
    "chart_sides",
]

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "docs" / "images"
ADD_COLOR, DEL_COLOR, BOTH_COLOR = "tab:blue", "tab:orange", "tab:green"
_noted: list[bool] = []  # the "no matplotlib" note is printed once per run


def _charts_dir() -> Path | None:
    given = os.environ.get("BENCH_CHARTS_DIR")
    if given is None:
        return DEFAULT_DIR
    return Path(given) if given else None


def _new_figure(width: float, height: float) -> Figure | None:
    """A figure on an Agg canvas, or ``None`` (and a note) without matplotlib."""
    if _charts_dir() is None:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        if not _noted:
            print("(charts skipped: matplotlib is not installed; pip install -e '.[bench]')")
            _noted.append(True)
        return None
    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself: no pyplot, no global backend
    return figure


def _save(figure: Figure, name: str) -> None:
    directory = _charts_dir()
    assert directory is not None  # _new_figure returned a figure
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    figure.savefig(path, facecolor="white")
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    print(f"(chart: {shown})")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _log_scale(axis: Axis) -> None:
    """A log axis whose ticks read 1, 2, 5, 10, 20, ... in plain numbers."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def _grid(ax: Axes) -> None:
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)


# -- bench_burst: throughput and latency against AsyncCNI's max_concurrency -----------


@attrs.frozen(kw_only=True)
class BurstPoint:
    """The medians over rounds for one case of the burst: rates in containers/s,
    latencies in ms."""

    add_rate: float
    del_rate: float
    cycle_rate: float
    add_p50: float
    add_p99: float
    del_p50: float
    del_p99: float


def chart_burst(
    points: Mapping[int | None, BurstPoint],
    serial: BurstPoint,
    *,
    containers: int,
    rounds: int,
    cpus: int,
) -> None:
    """Two panels sharing the limit axis: containers/s, and per-call latency (log)."""
    figure = _new_figure(10, 4.6)
    if figure is None:
        return
    limits = list(points)
    xs = range(len(limits))
    labels = ["no limit" if limit is None else str(limit) for limit in limits]
    rate_ax, lat_ax = figure.subplots(1, 2)
    for attr, color, label in (
        ("add_rate", ADD_COLOR, "ADD burst"),
        ("del_rate", DEL_COLOR, "DEL burst"),
        ("cycle_rate", BOTH_COLOR, "ADD then DEL"),
    ):
        rate_ax.plot(xs, [getattr(points[k], attr) for k in limits], "o-", color=color, label=label)
        rate_ax.axhline(getattr(serial, attr), color=color, linestyle=":", linewidth=1)
    rate_ax.plot([], [], "k:", linewidth=1, label="serial CNI loop (dotted)")
    rate_ax.set_title("Throughput")
    rate_ax.set_ylabel("containers per second (higher is better)")
    rate_ax.set_ylim(bottom=0)
    rate_ax.legend(fontsize="small")
    for attr, color, style, label in (
        ("add_p50", ADD_COLOR, "o-", "ADD p50"),
        ("add_p99", ADD_COLOR, "s--", "ADD p99"),
        ("del_p50", DEL_COLOR, "o-", "DEL p50"),
        ("del_p99", DEL_COLOR, "s--", "DEL p99"),
    ):
        lat_ax.plot(xs, [getattr(points[k], attr) for k in limits], style, color=color, label=label)
    lat_ax.set_yscale("log")
    _log_scale(lat_ax.yaxis)
    lat_ax.set_title("Latency of each call, once it has its slot")
    lat_ax.set_ylabel("ms per call (log scale; lower is better)")
    lat_ax.legend(fontsize="small")
    for ax in (rate_ax, lat_ax):
        ax.set_xticks(list(xs), labels)
        ax.set_xlabel("AsyncCNI max_concurrency")
        _grid(ax)
    figure.suptitle(
        f"A burst of {containers} containers, bridge + host-local (Go plugins), "
        f"{cpus} CPUs, median of {_plural(rounds, 'round')}"
    )
    _save(figure, "burst-concurrency.png")


# -- bench_flat: containers attached one after another -----------------------------------


def chart_sequential(
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    filename: str = "sequential-attachments.png",
    window: int = 10,
) -> None:
    """Each ADD's time against how many containers were attached before it:
    every sample faint, a running median of ``window`` drawn over it."""
    figure = _new_figure(9, 4.6)
    if figure is None:
        return
    ax = figure.subplots()
    colors = ["tab:purple", ADD_COLOR, "tab:red", "tab:gray"]
    top = 0.0
    for (label, samples), color in zip(series.items(), colors, strict=False):
        xs = range(len(samples))
        ax.plot(xs, samples, ".", color=color, alpha=0.25, markersize=4)
        smooth = [statistics.median(samples[max(0, i - window + 1) : i + 1]) for i in xs]
        ax.plot(xs, smooth, "-", color=color, linewidth=2, label=label)
        top = max(top, sorted(samples)[int(0.98 * (len(samples) - 1))])
    ax.set_ylim(0, top * 1.1)  # the slowest 2 % would flatten the rest
    ax.set_xlabel("containers already attached to the bridge")
    ax.set_ylabel(f"ADD time, ms (dots: each ADD; line: median of the last {window})")
    ax.set_title(title)
    ax.legend(fontsize="small")
    _grid(ax)
    _save(figure, filename)


# -- bench_inprocess: in-process against Go's binaries and the kernel floor --------------


def chart_sides(
    sides: Mapping[str, tuple[tuple[float, float], tuple[float, float]]],
    *,
    runs: int,
    title: str = "bridge + host-local, one container, no ipMasq",
    filename: str = "inprocess-vs-go.png",
    log: bool = True,
) -> None:
    """Horizontal bars per side: ADD and DEL medians, p90 as a whisker.

    ``sides`` maps a label to ((ADD median, p90), (DEL median, p90)) in ms.
    The axis is logarithmic (the executables take about 100 ms, the floor 1)
    unless ``log`` is false: figures of one order of magnitude read better
    on a linear axis from zero.
    """
    figure = _new_figure(9, 1.1 + 0.75 * len(sides))
    if figure is None:
        return
    ax = figure.subplots()
    labels = list(sides)
    height = 0.38
    for offset, verb, color in ((-height / 2, 0, ADD_COLOR), (height / 2, 1, DEL_COLOR)):
        ys = [i + offset for i in range(len(labels))]
        medians = [sides[label][verb][0] for label in labels]
        p90s = [sides[label][verb][1] for label in labels]
        whiskers = [[0.0] * len(labels), [p - m for m, p in zip(medians, p90s, strict=True)]]
        ax.barh(ys, medians, height, color=color, label=("ADD", "DEL")[verb])
        ax.errorbar(medians, ys, xerr=whiskers, fmt="none", ecolor="black", capsize=3, lw=1)
        for y, m, p in zip(ys, medians, p90s, strict=True):
            ax.annotate(
                f"{m:.1f}",
                (p, y),
                xytext=(5, 0),
                textcoords="offset points",
                va="center",
                fontsize="small",
            )
    slowest = max(p90 for add, delete in sides.values() for _, p90 in (add, delete))
    if log:
        ax.set_xscale("log")
        _log_scale(ax.xaxis)
        ax.set_xlim(right=slowest * 2.5)  # room for the last figure
    else:
        ax.set_xlim(0, slowest * 1.2)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    scale = "log scale; " if log else ""
    ax.set_xlabel(f"ms per call, median; whisker to p90 ({scale}shorter is better)")
    ax.set_title(f"{title}: median of {_plural(runs, 'run')}")
    # Linear: the slowest bar is the last one's, so the legend goes above it.
    ax.legend(loc="lower right" if log else "upper right", fontsize="small")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.set_axisbelow(True)
    _save(figure, filename)
