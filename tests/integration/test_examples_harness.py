"""examples/test_harness.py runs as its users run it: ``python -m pytest <file>``.

pytest finds cnilib's fixtures through the ``pytest11`` entry point alone
(examples/ has no conftest, and is not in testpaths, so the suite never
collects the example itself). Without privileges the example's tests skip,
and with CNILIB_REQUIRE_PRIVILEGED=1 they fail instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "examples" / "test_harness.py"

# Runs pytest in-process with cnilib.testing's create_netns wrapped to print the
# name of every namespace the fixtures make, so the test can check they are gone.
SPY = """
import sys
import pytest


class Spy:
    made = []

    def pytest_configure(self, config):
        # Loaded by now through the entry point (importing it earlier would
        # keep pytest from rewriting its asserts).
        import cnilib.testing.pytest_plugin as plugin

        real = plugin.create_netns

        def create_netns(prefix):
            ns = real(prefix)
            self.made.append(ns.name)
            return ns

        plugin.create_netns = create_netns


spy = Spy()
code = pytest.main(sys.argv[1:], plugins=[spy])
print("NAMESPACES:", *spy.made)
sys.exit(code)
"""


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python <argv>`` at the repository root, quietly, without the cache plugin.

    The inner pytest is a session of its own: nothing tells it that it runs inside a
    pytest-xdist worker (plugins that read ``PYTEST_XDIST_*`` would act on it)."""
    env = {
        k: v
        for k, v in (os.environ if env is None else env).items()
        if not k.startswith(("PYTEST_XDIST_", "PYTEST_CURRENT_TEST"))
    }
    return subprocess.run(
        [sys.executable, *argv, str(HARNESS), "-q", "-p", "no:cacheprovider", "-rs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def summary(proc: subprocess.CompletedProcess[str]) -> str:
    """pytest's summary line (``3 passed in 1.2s``) without the timing."""
    found = re.findall(r"^(\d+ \w+(?:, \d+ \w+)*) in [\d.]+s", proc.stdout, re.M)
    return found[-1] if found else ""


def unprivileged_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CNILIB_REQUIRE_PRIVILEGED"}
    return {**env, "CNILIB_TESTS_UNPRIVILEGED": "1", **extra}


def test_harness_passes_and_leaves_no_namespace(cnilib_privileged: None) -> None:
    """Where namespaces can be made, every test of the example passes and every
    namespace its fixtures made is gone afterwards."""
    proc = run("-c", SPY)
    assert 0 == proc.returncode, proc.stdout + proc.stderr
    assert "3 passed" == summary(proc), proc.stdout
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("NAMESPACES:")]
    made = line.split()[1:]
    # 3 tests: a node each; 1 + 1 + 2 containers.
    assert 3 == sum(name.startswith("cnilib-node-") for name in made), made
    assert 4 == sum(name.startswith("cnilib-ctr-") for name in made), made
    assert [] == [name for name in made if Path("/run/netns", name).exists()]


def test_without_privileges_the_harness_skips_with_the_reason() -> None:
    proc = run("-m", "pytest", env=unprivileged_env())
    assert 0 == proc.returncode, proc.stdout + proc.stderr
    assert "3 skipped" == summary(proc), proc.stdout
    assert "needs network namespaces and veth pairs: CNILIB_TESTS_UNPRIVILEGED is set" in (
        proc.stdout
    )


def test_required_privileges_turn_the_skip_into_a_failure() -> None:
    """CNILIB_REQUIRE_PRIVILEGED=1 (CI): a missing privilege fails every test that needs it."""
    proc = run("-m", "pytest", env=unprivileged_env(CNILIB_REQUIRE_PRIVILEGED="1"))
    assert 1 == proc.returncode, proc.stdout + proc.stderr
    assert "3 errors" == summary(proc), proc.stdout
    assert "CNILIB_REQUIRE_PRIVILEGED=1 requires them" in proc.stdout
