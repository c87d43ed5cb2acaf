"""Run every benchmark in one go, then print one verdict table (``make bench``).

Each script states its goals' verdicts with ``_harness.report_verdict``, which
appends them to the file ``$BENCH_VERDICTS`` names; this script points that at
a temporary file and prints, after every script's own tables, ONE Markdown
table ``| goal | measured | verdict | from |`` of every verdict of the run, a
row per script that failed or was skipped (none is dropped silently), and the
run's conditions (date, CPUs, Python, kernel, Go plugins, load average).

The privileged ones (all but the memory benchmark: they run their plugins, and
the CLI, inside throwaway namespaces) are skipped with a row saying so when not
root.

Environment: ``BENCH_ONLY=bench_a.py,bench_b.py`` runs only those (in this
order); ``BENCH_SUMMARY=<file>`` also writes the verdict table there. The
scripts' own settings (``BENCH_RUNS``, ...) pass through to them.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import VERDICTS_ENV

HERE = Path(__file__).parent
SCRIPTS = [
    "bench_overhead.py",
    "bench_cache_write.py",
    "bench_startup.py",
    "bench_memory.py",
    "bench_bridge.py",
    "bench_burst.py",
    "bench_inprocess.py",
    "bench_breakdown.py",
    "bench_flat.py",
    "bench_executables.py",
    "bench_links.py",
    "bench_chain.py",
    "bench_dhcp.py",
    "bench_overlay.py",
]
UNPRIVILEGED = {"bench_memory.py"}
"""Every other script needs root: it runs plugins (or the CLI) in throwaway namespaces."""


def scripts() -> list[str]:
    """``BENCH_ONLY``'s scripts, or all: the known ones in order, then any new one."""
    only = os.environ.get("BENCH_ONLY", "").strip()
    if only:
        return [name.strip() for name in only.split(",") if name.strip()]
    present = sorted(p.name for p in HERE.glob("bench_*.py"))
    return [s for s in SCRIPTS if s in present] + [s for s in present if s not in SCRIPTS]


def go_plugins_version() -> str:
    """Debian's package version of the Go reference plugins, or why it is unknown."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "containernetworking-plugins"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not installed"
    return out or "not installed"


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def verdict_table(records: list[dict[str, object]]) -> list[str]:
    """The run's verdicts and error rows as Markdown lines."""
    lines = ["| goal | measured | verdict | from |", "|---|---|---|---|"]
    for record in records:
        if "error" in record:
            verdict = str(record["error"])
        else:
            verdict = "met" if record["met"] else "**MISSED**"
        lines.append(
            f"| {_cell(str(record['goal']))} | {_cell(str(record['measured']))} | {verdict} "
            f"| {record['source']} |"
        )
    return lines


def main() -> int:
    started_at = datetime.datetime.now().astimezone()
    load_start = _load()
    conditions = (
        f"{started_at:%Y-%m-%d %H:%M %Z}: {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"kernel {platform.release()}, Debian's Go plugins {go_plugins_version()}"
    )
    print(f"# cnilib benchmarks, {conditions}; load average at start {load_start}")
    records: list[dict[str, object]] = []
    durations: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="cnilib-bench-verdicts-") as tmp:
        verdicts = Path(tmp) / "verdicts.jsonl"
        env = {**os.environ, VERDICTS_ENV: str(verdicts)}
        for script in scripts():
            path = HERE / script
            if not path.is_file():
                records.append({"goal": "(no such benchmark)", "measured": "",
                                "error": "**ERROR**", "source": script})  # fmt: skip
                durations.append((script, "missing", 0.0))
                continue
            if script not in UNPRIVILEGED and os.geteuid() != 0:
                print(f"\n(skipping {script}: needs root)")
                records.append({"goal": "(not run: needs root)", "measured": "",
                                "error": "skipped", "source": script})  # fmt: skip
                durations.append((script, "skipped", 0.0))
                continue
            print(f"\n## {script}\n", flush=True)
            begun = time.monotonic()
            proc = subprocess.run([sys.executable, str(path)], env=env, check=False)
            took = time.monotonic() - begun
            durations.append((script, f"exit {proc.returncode}", took))
            reported = _read(verdicts)
            verdicts.unlink(missing_ok=True)
            records += reported
            if proc.returncode != 0:
                records.append({"goal": "(the script failed: its goals have no verdict)",
                                "measured": f"exit status {proc.returncode}; see its output above",
                                "error": "**ERROR**", "source": script})  # fmt: skip
    load_end = _load()
    table = verdict_table(records)
    footer = f"Run of {conditions}; load average at start {load_start}, at end {load_end}."
    print("\n## Verdicts of this run\n")
    print("\n".join(table))
    print(f"\n{footer}\n")
    print("| script | outcome | seconds |")
    print("|---|---|---:|")
    for script, outcome, took in durations:
        print(f"| {script} | {outcome} | {took:.0f} |")
    print(f"| all | | {sum(took for _, _, took in durations):.0f} |")
    summary = os.environ.get("BENCH_SUMMARY")
    if summary:
        Path(summary).write_text("\n".join(table) + f"\n\n{footer}\n", encoding="utf-8")
    return 1 if any("error" in r and r["error"] != "skipped" for r in records) else 0


def _read(path: Path) -> list[dict[str, object]]:
    """The verdicts a script appended (one JSON object a line); none if it wrote none."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


if __name__ == "__main__":
    raise SystemExit(main())
