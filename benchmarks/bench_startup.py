"""Cold start of the CLI against a clean interpreter, side by side.

The floor is ``python -c pass`` of a fresh venv (no site ``.pth`` files or
hooks but the venv's own) into which cnilib is installed from this tree,
non-editable (``pip install --no-deps --force-reinstall``, so the figures are
an installed cnilib's, not the editable finder's); ``BENCH_VENV`` names it
(default ``/tmp/cnilib-bench-venv``, created and given cnilib's dependencies
when missing). Each case is a fresh process of that venv's interpreter:
``--help``, ``version static`` (which also execs Go's ``static``), ``validate``
of a conflist (ptp + host-local, Go's binaries answer VERSION), ``list`` of a
conf dir of three networks, and ``add`` then ``del`` of one container (ptp +
host-local), with in-process plugins and with Go's binaries, each its own row
(the ``add`` row runs right before its ``del`` in every round). Goal:
``--help``, ``version``, ``validate`` and ``list`` within 60 ms of the floor,
each stated with ``_harness.report_verdict``; ``add`` and ``del`` are
reported. ``import jsonschema`` alone is a row too: ``validate`` needs it,
and it is most of that command's time.

The whole benchmark runs inside a throwaway node namespace (the container's
beside it), deleted afterwards, also on failure. Needs root.

Run: ``python3 benchmarks/bench_startup.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Row, measure_interleaved, print_table, report_verdict, rerun_inside_node

RUNS = int(os.environ.get("BENCH_RUNS", "30"))
VENV = Path(os.environ.get("BENCH_VENV", "/tmp/cnilib-bench-venv"))
REPO = Path(__file__).resolve().parent.parent
GOAL_MS = 60.0
GOALS = ("--help", "version static", "validate", "list")
_JSONSCHEMA = "import jsonschema"

_CONFLISTS = {
    "10-ptp.conflist": '{"cniVersion": "1.0.0", "name": "ptp", "plugins": [{"type": "ptp", '
    '"ipMasq": false, "ipam": {"type": "host-local", "subnet": "192.168.250.0/24", '
    '"dataDir": "%s"}}]}',
    "20-lo.conf": '{"cniVersion": "0.4.0", "name": "lo", "type": "loopback"}',
    "30-bridge.conflist": '{"cniVersion": "1.0.0", "name": "br", "plugins": [{"type": "bridge", '
    '"ipam": {"type": "host-local", "subnet": "192.168.251.0/24"}}]}',
}


def prepare_venv() -> Path:
    """The clean venv's interpreter, with this tree's cnilib installed, non-editable."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", str(REPO)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(REPO)],
        check=True,
        capture_output=True,
    )
    return python


def run(*argv: str, env: dict[str, str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, env=env)


def inner(prefix: str) -> None:
    python = str(VENV / "bin" / "python")
    ctr = f"/run/netns/{prefix}-ctr"
    with tempfile.TemporaryDirectory(prefix="cnilib-bench-startup-") as tmp:
        # Not from the source tree: ``python -m`` puts the working directory first
        # on sys.path, so there ``-m cnilib`` would run the tree, not the installed cnilib.
        os.chdir(tmp)
        confs = Path(tmp, "net.d")
        confs.mkdir()
        for name, text in _CONFLISTS.items():
            (confs / name).write_text(text % f"{tmp}/ipam" if "%s" in text else text)
        conflist = str(confs / "10-ptp.conflist")
        env = {**os.environ, "CNI_PATH": "/usr/lib/cni", "NETCONFPATH": str(confs)}
        cli = (python, "-m", "cnilib", "--cache-dir", f"{tmp}/cache")

        def verb(source: str, name: str) -> tuple[str, Callable[[], None]]:
            label = f"{name}, {source} ptp + host-local"
            return label, lambda: run(*cli, "--plugins", source, name, conflist, ctr, env=env)

        cases = [
            ("python -c pass", lambda: run(python, "-c", "pass", env=env)),
            ("--help", lambda: run(*cli, "--help", env=env)),
            ("version static", lambda: run(*cli, "version", "static", env=env)),
            ("validate", lambda: run(*cli, "validate", conflist, env=env)),
            ("list", lambda: run(*cli, "list", env=env)),
            ("python -c 'import jsonschema'", lambda: run(python, "-c", _JSONSCHEMA, env=env)),
            # Each add right before its del: every round attaches and detaches once.
            verb("in-process", "add"),
            verb("in-process", "del"),
            verb("binaries", "add"),
            verb("binaries", "del"),
        ]
        rows = measure_interleaved(cases, runs=RUNS)
    print_table(
        "CLI cold start (fresh process each run, clean venv, inside a node namespace)",
        rows,
        baseline=rows[0].label,
    )
    print_verdicts(rows)


def print_verdicts(rows: list[Row]) -> None:
    base = rows[0]
    print(f"\n### Verdicts (goal: within +{GOAL_MS:g} ms of {base.label})\n")
    print("| command | median over the floor | p90 over the floor's p90 | verdict |")
    print("|---|---:|---:|---|")
    for row in rows[1:]:
        diff, diff90 = row.median - base.median, row.p90 - base.p90
        if row.label in GOALS:
            verdict = "met" if diff <= GOAL_MS else f"**MISSED**, by {diff - GOAL_MS:.1f} ms"
        else:
            verdict = "reported (no goal)"
        print(f"| {row.label} | {diff:+.1f} ms | {diff90:+.1f} ms | {verdict} |")
    print()
    for row in rows[1:]:
        if row.label not in GOALS:
            continue
        diff = row.median - base.median
        measured = f"{diff:+.1f} ms: {row.median:.1f} ms against {base.median:.1f} ms"
        if row.label == "validate":
            jsonschema = next(r for r in rows if _JSONSCHEMA in r.label)
            measured += f" (import jsonschema alone: {jsonschema.median - base.median:+.1f} ms)"
        report_verdict(
            f"CLI cold start: {row.label} within +{GOAL_MS:g} ms of {base.label}",
            measured,
            met=diff <= GOAL_MS,
            source="bench_startup.py",
        )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--inner":
        inner(sys.argv[2])
        return
    if os.geteuid() != 0:
        sys.exit("needs root: the benchmark runs inside a throwaway node namespace")
    print(f"clean venv: {prepare_venv()} (cnilib installed from {REPO}, non-editable)")
    rerun_inside_node(__file__, roles=("ctr",), go_plugins=("static", "ptp", "host-local"))


if __name__ == "__main__":
    main()
