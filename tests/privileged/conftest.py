"""Everything under tests/privileged needs CAP_NET_ADMIN and network namespaces.

Each test is marked ``privileged`` and skipped (with the probe's reason) where
namespaces or veth pairs cannot be created, or when CNILIB_TESTS_UNPRIVILEGED=1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected from this directory ``privileged``."""
    for item in items:
        if item.path.resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.privileged)


@pytest.fixture(autouse=True)
def _require_privileges(privileged: None) -> None:
    """Skip by probe (the session fixture ``privileged``) before any test here runs."""
