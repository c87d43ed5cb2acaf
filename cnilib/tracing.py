"""OpenTelemetry trace propagation to plugins, as Go libcni 1.3 does it, and
the spans of the runtime.

Propagation. When the current OpenTelemetry context holds a valid span, every
plugin gets it in its environment as ``TRACEPARENT`` and ``TRACESTATE`` (W3C
Trace Context) and ``BAGGAGE`` (W3C Baggage), the environment carriers of
OpenTelemetry's OTEP 258; an inherited variable of the same name is replaced.
Without a valid span the environment is left as it is, as in Go.
:class:`cnilib.SubprocessExecutor` does this for every binary, whatever
runtime drives it, and with ``tracing=False`` too: like Go libcni, it passes
on the caller's context. In-process plugins need no variable: they run in
the caller's context (copied into their call thread), where
``opentelemetry.trace.get_current_span()`` is their call's span.

Spans. ``CNI``/``AsyncCNI`` open one span per network operation (``cni.add``,
``cni.gc``, ``cni.setup_networks``, ...) and a child span per plugin call
(``cni.plugin.add``, ``cni.plugin.del``, ...), current while the plugin runs,
so the ``TRACEPARENT`` a plugin sees names its own call's span.

Cost. Nothing here imports OpenTelemetry. An application that uses
OpenTelemetry has imported ``opentelemetry.trace`` (nothing else can hold a
span or a tracer provider); until then every function here returns at once.
So ``python -m cnilib`` and plugin executables never pay its import time.
With the global provider, spans are opened only once the application has
set one (an SDK's): OpenTelemetry's own placeholder records nothing, and
its no-op spans would still cost tens of microseconds each.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = [
    "ENVIRONMENT_CARRIERS",
    "get_tracer",
    "global_provider_set",
    "in_use",
    "trace_environ",
]

ENVIRONMENT_CARRIERS = {"traceparent": "TRACEPARENT", "tracestate": "TRACESTATE"}
"""The W3C Trace Context fields and the variables that carry them (``BAGGAGE`` too)."""

_TRACE_MODULE = "opentelemetry.trace"


def in_use() -> bool:
    """Whether this process uses OpenTelemetry: ``opentelemetry.trace`` is imported."""
    return _TRACE_MODULE in sys.modules


def trace_environ() -> dict[str, str]:
    """``TRACEPARENT``, ``TRACESTATE`` and ``BAGGAGE`` for a plugin, from the
    current OpenTelemetry context; empty if it holds no valid span (Go libcni's
    ``injectTraceContext``), or if OpenTelemetry is not in use."""
    if not in_use():
        return {}
    from opentelemetry import baggage, trace
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    env = {name: carrier[key] for key, name in ENVIRONMENT_CARRIERS.items() if carrier.get(key)}
    if baggage.get_all():
        W3CBaggagePropagator().inject(carrier)
        if carrier.get("baggage"):
            env["BAGGAGE"] = carrier["baggage"]
    return env


def global_provider_set() -> bool:
    """Whether the application has set a global tracer provider (an SDK's):
    until then every span would be a no-op, and cnilib opens none."""
    if not in_use():
        return False
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def get_tracer(provider: TracerProvider | None) -> Tracer:
    """cnilib's tracer from ``provider``, or from the global provider (which
    follows the one the application sets, even later)."""
    from opentelemetry import trace

    from cnilib._version import __version__

    if provider is None:
        return trace.get_tracer("cnilib", __version__)
    return provider.get_tracer("cnilib", __version__)
