"""The conformance kit's pytest fixture, ``cnilib_conformance`` (registered through
the ``pytest11`` entry point ``cnilib-conformance``, beside cnilib's other fixtures,
whose privilege probe it uses)."""

from __future__ import annotations

import pytest

from cnilib.conformance._assert import ConformanceRunner

__all__ = ["cnilib_conformance"]


@pytest.fixture
def cnilib_conformance(cnilib_privileged: None) -> ConformanceRunner:
    """A runner of the conformance kit: ``cnilib_conformance(plugin_type, **kwargs)``
    returns :func:`cnilib.conformance.run_conformance`'s report (same keywords:
    ``path``, ``in_process``, ``config``, ``kind``, ``only``, ``plugin``, ...); check
    it with :func:`cnilib.conformance.assert_conforms`.

    Every run makes its own node and container namespaces and deletes them before
    it returns. Skipped where namespaces cannot be made, like cnilib's privileged
    fixtures (a failure with ``CNILIB_REQUIRE_PRIVILEGED=1``)."""
    return ConformanceRunner()
