"""Prometheus metrics from a runtime's events (``pip install 'cnilib[prometheus]'``).

::

    from cnilib.contrib.prometheus import PrometheusEvents

    cni = cnilib.CNI(["/opt/cni/bin"], events=PrometheusEvents())

Metrics (``cnilib`` is the ``prefix``):

``cnilib_plugin_call_duration_seconds`` (histogram; ``verb``, ``plugin``, ``outcome``)
    each plugin call: ``verb`` is ``ADD``, ``DEL``, ...; ``plugin`` the type.
``cnilib_operation_duration_seconds`` (histogram; ``verb``, ``network``, ``outcome``)
    each operation: ``add``, ``delete``, ``gc``, ``setup_networks``, ...
``cnilib_errors_total`` (counter; ``verb``, ``code``)
    failed operations by CNI error code (``code="none"`` for a failure that
    is not a :class:`cnilib.CNIError`, such as a cancellation). A failed
    ``setup_networks``, ``teardown_networks`` or ``check_networks`` is
    counted through its networks' own operations, not once more.

Container IDs are never labels: they would make a series per container.
"""

from __future__ import annotations

from collections.abc import Sequence

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "cnilib.contrib.prometheus needs prometheus-client: pip install 'cnilib[prometheus]'"
    ) from exc

from cnilib.events import Event, OperationEvent, PluginCallEvent

__all__ = ["DEFAULT_BUCKETS", "PrometheusEvents"]

DEFAULT_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Seconds: from an in-process call (a millisecond) to the default 60 s deadline."""


class PrometheusEvents:
    """An events hook (``CNI(..., events=PrometheusEvents())``) that records
    durations and errors as Prometheus metrics.

    :param registry: where the metrics are registered (default: the global
        ``prometheus_client.REGISTRY``). One registry holds one instance per
        ``prefix``; share the instance between runtimes.
    :param prefix: the metric names' first part.
    :param buckets: the histograms' bucket bounds in seconds.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        prefix: str = "cnilib",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        registry = REGISTRY if registry is None else registry
        self.plugin_call_duration = Histogram(
            f"{prefix}_plugin_call_duration_seconds",
            "Duration of CNI plugin calls.",
            ("verb", "plugin", "outcome"),
            registry=registry,
            buckets=buckets,
        )
        self.operation_duration = Histogram(
            f"{prefix}_operation_duration_seconds",
            "Duration of CNI network operations, lock waits included.",
            ("verb", "network", "outcome"),
            registry=registry,
            buckets=buckets,
        )
        self.errors = Counter(
            f"{prefix}_errors",
            "Failed CNI network operations by error code.",
            ("verb", "code"),
            registry=registry,
        )

    def __call__(self, event: Event, /) -> None:
        """Record one event."""
        if isinstance(event, PluginCallEvent):
            self.plugin_call_duration.labels(event.verb, event.plugin, event.outcome).observe(
                event.duration
            )
            return
        assert isinstance(event, OperationEvent)
        self.operation_duration.labels(event.verb, event.network, event.outcome).observe(
            event.duration
        )
        if event.outcome == "error":
            code = "none" if event.error_code is None else str(event.error_code)
            self.errors.labels(event.verb, code).inc()
