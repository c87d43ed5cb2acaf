"""Run every benchmark in one go and print their tables (``make bench``).

The privileged ones (all but the memory benchmark: they run their plugins, and the
CLI, inside throwaway namespaces) are skipped with a note when not root.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = [
    "bench_overhead.py",
    "bench_cache_write.py",
    "bench_startup.py",
    "bench_memory.py",
    "bench_bridge.py",
    "bench_burst.py",
    "bench_inprocess.py",
    "bench_links.py",
    "bench_chain.py",
    "bench_dhcp.py",
    "bench_overlay.py",
]
PRIVILEGED = {
    "bench_overhead.py",
    "bench_cache_write.py",
    "bench_startup.py",
    "bench_bridge.py",
    "bench_burst.py",
    "bench_inprocess.py",
    "bench_links.py",
    "bench_chain.py",
    "bench_dhcp.py",
    "bench_overlay.py",
}


def main() -> int:
    print(
        f"# cnilib benchmarks: Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"kernel {platform.release()}"
    )
    failed = 0
    for script in SCRIPTS:
        if script in PRIVILEGED and os.geteuid() != 0:
            print(f"\n(skipping {script}: needs root)")
            continue
        proc = subprocess.run([sys.executable, str(HERE / script)], check=False)
        failed += proc.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
