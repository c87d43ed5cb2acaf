"""Shared test setup: no CNI_* variables leaking in from the caller.

cnilib's fixtures come from its pytest plugin, registered through the
``pytest11`` entry point when cnilib is installed."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _scrub_cni_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every inherited ``CNI_*`` variable so plugins see only what cnilib sets."""
    for key in list(os.environ):
        if key.startswith("CNI_") or key in ("NETCONFPATH", "CAP_ARGS"):
            monkeypatch.delenv(key, raising=False)
