"""OpenTelemetry: spans per operation and plugin call, and the trace context a
plugin binary gets in its environment (TRACEPARENT, TRACESTATE, BAGGAGE)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import cnilib
import cnilib.tracing
from cnilib.plugins import BasePlugin, PluginRequest
from cnilib.results import Result, decode_result
from cnilib.testing import read_recording

RT = cnilib.RuntimeConf("ctr1", "/run/netns/x", "eth0")


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def conflist(cnilib_recorder_log: Path) -> cnilib.NetworkConfigList:
    """net1: two recorders; the second fails DEL with code 7."""
    log = str(cnilib_recorder_log)
    doc = {
        "cniVersion": "1.1.0",
        "name": "net1",
        "plugins": [
            {"type": "recorder", "recorder": {"log": log}},
            {
                "type": "recorder",
                "recorder": {"log": log, "DEL": {"error": {"code": 7, "msg": "no bridge"}}},
            },
        ],
    }
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


def traceparent(span: ReadableSpan) -> str:
    ctx = span.get_span_context()
    assert ctx is not None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


class TestSpans:
    def test_operation_span_with_a_child_per_call(
        self,
        tmp_path: Path,
        cnilib_cni_bin_dir: Path,
        conflist: cnilib.NetworkConfigList,
        provider: TracerProvider,
        exporter: InMemorySpanExporter,
        cnilib_recorder_log: Path,
    ) -> None:
        """ADD: a cni.add span, a cni.plugin.add child per plugin, and each
        plugin saw its own call's span as TRACEPARENT."""
        cni = cnilib.CNI([cnilib_cni_bin_dir], cache_dir=tmp_path / "cache", tracing=provider)

        cni.add_network_list(conflist, RT)

        spans = exporter.get_finished_spans()
        (operation,) = by_name(spans, "cni.add")
        calls = by_name(spans, "cni.plugin.add")
        assert 2 == len(calls)
        assert all(
            c.parent is not None and c.parent.span_id == operation.context.span_id for c in calls
        )
        assert {
            "cni.verb": "add",
            "cni.network": "net1",
            "cni.container_id": "ctr1",
            "cni.ifname": "eth0",
        } == dict(operation.attributes or {})
        attributes = dict(calls[0].attributes or {})
        assert ("ADD", "recorder", "net1", "ctr1") == (
            attributes["cni.verb"],
            attributes["cni.plugin"],
            attributes["cni.network"],
            attributes["cni.container_id"],
        )
        assert str(cnilib_cni_bin_dir / "recorder") == attributes["cni.plugin.executable"]
        seen = [entry["trace"] for entry in read_recording(cnilib_recorder_log)]
        assert [{"TRACEPARENT": traceparent(c)} for c in calls] == seen

    def test_failure_sets_error_status_and_code(
        self,
        tmp_path: Path,
        cnilib_cni_bin_dir: Path,
        conflist: cnilib.NetworkConfigList,
        provider: TracerProvider,
        exporter: InMemorySpanExporter,
    ) -> None:
        """A failed DEL: the plugin's span and the operation's are errors with code 7."""
        cni = cnilib.CNI([cnilib_cni_bin_dir], cache_dir=tmp_path / "cache", tracing=provider)
        cni.add_network_list(conflist, RT)
        exporter.clear()

        with pytest.raises(cnilib.PluginError):
            cni.delete_network_list(conflist, RT)

        spans = exporter.get_finished_spans()
        (call,) = by_name(spans, "cni.plugin.del")
        (operation,) = by_name(spans, "cni.delete")
        for span in (call, operation):
            assert StatusCode.ERROR == span.status.status_code
            assert 7 == (span.attributes or {})["cni.error_code"]

    def test_spans_nest_under_the_callers(
        self,
        tmp_path: Path,
        cnilib_cni_bin_dir: Path,
        conflist: cnilib.NetworkConfigList,
        provider: TracerProvider,
        exporter: InMemorySpanExporter,
    ) -> None:
        """The operation's span is a child of the caller's current span (async too)."""
        cni = cnilib.AsyncCNI([cnilib_cni_bin_dir], cache_dir=tmp_path / "cache", tracing=provider)
        tracer = provider.get_tracer("runtime")

        async def scenario() -> None:
            with tracer.start_as_current_span("create-pod"):
                await cni.add_network_list(conflist, RT)

        asyncio.run(scenario())

        spans = exporter.get_finished_spans()
        (pod,) = by_name(spans, "create-pod")
        (operation,) = by_name(spans, "cni.add")
        assert operation.parent is not None
        assert pod.context.span_id == operation.parent.span_id

    def test_in_process_plugin_runs_in_its_span(
        self, tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """An in-process plugin sees its call's span as OpenTelemetry's current span."""
        seen: list[int] = []

        class Probe(BasePlugin):
            def add(self, req: PluginRequest) -> Result:
                seen.append(trace.get_current_span().get_span_context().span_id)
                return decode_result(b'{"cniVersion":"1.1.0"}')

        executor = cnilib.InProcessExecutor({"probe": Probe()}, builtins=False)
        cni = cnilib.CNI(["/unused"], cache_dir=tmp_path, executor=executor, tracing=provider)
        conf = cnilib.conflist_from_bytes(
            b'{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"probe"}]}'
        )

        cni.add_network_list(conf, RT)

        (call,) = by_name(exporter.get_finished_spans(), "cni.plugin.add")
        assert [call.context.span_id] == seen


class TestPropagation:
    def test_callers_context_reaches_plugins_without_spans(
        self,
        tmp_path: Path,
        cnilib_cni_bin_dir: Path,
        conflist: cnilib.NetworkConfigList,
        provider: TracerProvider,
        exporter: InMemorySpanExporter,
        cnilib_recorder_log: Path,
    ) -> None:
        """tracing=False: no spans of cnilib's, but the caller's span and baggage
        still reach the plugin, as with Go libcni."""
        cni = cnilib.CNI([cnilib_cni_bin_dir], cache_dir=tmp_path / "cache", tracing=False)
        tracer = provider.get_tracer("runtime")

        token = context.attach(baggage.set_baggage("tenant", "blue"))
        try:
            with tracer.start_as_current_span("create-pod") as pod:
                cni.add_network_list(conflist, RT)
        finally:
            context.detach(token)

        (pod_span,) = exporter.get_finished_spans()
        assert "create-pod" == pod_span.name
        expected = {"TRACEPARENT": traceparent(pod_span), "BAGGAGE": "tenant=blue"}
        assert pod.get_span_context().is_valid
        assert [expected, expected] == [e["trace"] for e in read_recording(cnilib_recorder_log)]

    def test_no_spans_before_a_global_provider_is_set(
        self,
        tmp_path: Path,
        cnilib_cni_bin_dir: Path,
        conflist: cnilib.NetworkConfigList,
        provider: TracerProvider,
        exporter: InMemorySpanExporter,
        cnilib_recorder_log: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """tracing=True while the global provider is OpenTelemetry's placeholder:
        cnilib opens no span of its own (they would be no-ops that cost), and
        the caller's span still reaches the plugins."""
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        cni = cnilib.CNI([cnilib_cni_bin_dir], cache_dir=tmp_path / "cache")

        def no_tracer(provider: object) -> None:
            raise AssertionError("cnilib asked for a tracer")

        monkeypatch.setattr(cnilib.tracing, "get_tracer", no_tracer)

        with provider.get_tracer("runtime").start_as_current_span("create-pod"):
            cni.add_network_list(conflist, RT)

        (pod_span,) = exporter.get_finished_spans()
        expected = {"TRACEPARENT": traceparent(pod_span)}
        assert [expected, expected] == [e["trace"] for e in read_recording(cnilib_recorder_log)]

    @pytest.mark.parametrize("value", [None, 0, "off", object()])
    def test_a_bad_tracing_value_is_refused_at_once(self, tmp_path: Path, value: object) -> None:
        """Refused when the runtime is made, not on the day OpenTelemetry gets imported."""
        with pytest.raises(cnilib.InvalidArgumentError, match="tracing must be True, False or"):
            cnilib.CNI(cache_dir=tmp_path, tracing=value)  # type: ignore[arg-type]

    def test_nothing_without_a_span(
        self,
        tmp_path: Path,
        cnilib_cni_bin_dir: Path,
        conflist: cnilib.NetworkConfigList,
        cnilib_recorder_log: Path,
    ) -> None:
        """No current span: the plugin's environment gets no trace variable."""
        cni = cnilib.CNI([cnilib_cni_bin_dir], cache_dir=tmp_path / "cache", tracing=False)

        cni.add_network_list(conflist, RT)

        assert [] == [e for e in read_recording(cnilib_recorder_log) if "trace" in e]
