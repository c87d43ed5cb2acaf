"""Conformance results in tests: :func:`assert_conforms`, and the runner behind the
``cnilib_conformance`` fixture (:mod:`cnilib.conformance.pytest_plugin`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnilib.conformance._model import Report

__all__ = ["ConformanceRunner", "assert_conforms"]


def assert_conforms(report: Report | Sequence[Report]) -> None:
    """Raise :class:`AssertionError` unless no check of ``report`` failed or errored
    (warnings and n/a pass); its message is the report's table, failures' evidence
    included, so pytest shows why."""
    from cnilib.conformance._model import Report
    from cnilib.conformance._output import table

    reports = [report] if isinstance(report, Report) else list(report)
    if not all(r.ok for r in reports):
        failed = sorted({r.check.id for rep in reports for r in rep.failed})
        raise AssertionError(f"not conformant: {', '.join(failed)}\n{table(reports)}".rstrip("\n"))


class ConformanceRunner:
    """What the ``cnilib_conformance`` fixture gives a test: call it as
    ``run(plugin_type, **kwargs)`` for :func:`cnilib.conformance.run_conformance`'s
    :class:`~cnilib.conformance.Report` (same keyword arguments)."""

    def __call__(self, plugin_type: str, **kwargs: Any) -> Report:
        from cnilib.conformance._run import run_conformance

        return run_conformance(plugin_type, **kwargs)
