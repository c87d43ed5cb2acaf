"""Shared test setup: cnilib's fixture plugin, and no CNI_* variables leaking in from the caller."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["cnilib.testing.pytest_plugin"]


@pytest.fixture(autouse=True)
def _scrub_cni_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every inherited ``CNI_*`` variable so plugins see only what cnilib sets."""
    for key in list(os.environ):
        if key.startswith("CNI_") or key in ("NETCONFPATH", "CAP_ARGS"):
            monkeypatch.delenv(key, raising=False)
