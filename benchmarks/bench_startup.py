"""Cold start of the CLI against a bare interpreter, side by side.

Each case is a fresh process: ``python -c pass`` (the floor), ``python -m
cnilib --help``, and ``python -m cnilib version static`` (which also execs the
Go ``static`` plugin, so ``static`` exec'd directly is shown too). Target:
``--help`` and ``version`` within 60 ms of the floor.

Run: ``python3 benchmarks/bench_startup.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import measure_interleaved, print_table

RUNS = int(os.environ.get("BENCH_RUNS", "30"))


def run(*argv: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(argv, check=True, capture_output=True, env=env)


def main() -> None:
    python = sys.executable
    env = {**os.environ, "CNI_PATH": "/usr/lib/cni"}
    cases = [
        ("python -c pass", lambda: run(python, "-c", "pass")),
        ("python -m cnilib --help", lambda: run(python, "-m", "cnilib", "--help")),
        (
            "python -m cnilib version static",
            lambda: run(python, "-m", "cnilib", "version", "static", env=env),
        ),
    ]
    if os.access("/usr/lib/cni/static", os.X_OK):
        version_env = {**env, "CNI_COMMAND": "VERSION"}
        cases.append(
            (
                "/usr/lib/cni/static VERSION (direct)",
                lambda: run("/usr/lib/cni/static", env=version_env),
            )
        )
    else:
        cases.pop()
    rows = measure_interleaved(cases, runs=RUNS)
    print_table("CLI cold start (fresh process each run)", rows, baseline=rows[0].label)


if __name__ == "__main__":
    main()
