"""cnilib.contrib.prometheus: an events hook that feeds prometheus_client metrics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import cnilib
from cnilib.contrib.prometheus import PrometheusEvents
from cnilib.errors import PluginError
from cnilib.events import OperationEvent
from cnilib.invoke import Command, Invocation
from cnilib.testing import MockExecutor

CONF = cnilib.conflist_from_bytes(
    b'{"cniVersion":"1.1.0","name":"net1","plugins":[{"type":"a"},{"type":"b"}]}'
)
RT = cnilib.RuntimeConf("ctr1", "/run/netns/x", "eth0")


def answer(invocation: Invocation) -> bytes:
    if invocation.plugin_type == "b" and invocation.command == Command.DEL:
        raise PluginError("no bridge", code=7)
    return b'{"cniVersion":"1.1.0"}' if invocation.command == Command.ADD else b""


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def cni(tmp_path: Path, registry: CollectorRegistry) -> cnilib.CNI:
    hook = PrometheusEvents(registry=registry)
    return cnilib.CNI(["/unused"], cache_dir=tmp_path, executor=MockExecutor(answer), events=hook)


class TestPrometheusEvents:
    def test_plugin_call_histogram(self, cni: cnilib.CNI, registry: CollectorRegistry) -> None:
        """Each plugin call is observed under its verb, plugin and outcome."""
        cni.add_network_list(CONF, RT)
        with pytest.raises(PluginError):
            cni.delete_network_list(CONF, RT)

        def count(verb: str, plugin: str, outcome: str) -> float | None:
            labels = {"verb": verb, "plugin": plugin, "outcome": outcome}
            return registry.get_sample_value("cnilib_plugin_call_duration_seconds_count", labels)

        assert (1.0, 1.0, 1.0) == (
            count("ADD", "a", "ok"),
            count("ADD", "b", "ok"),
            count("DEL", "b", "error"),
        )
        assert count("DEL", "a", "ok") is None  # DEL stopped at b

    def test_operation_histogram_and_errors(
        self, cni: cnilib.CNI, registry: CollectorRegistry
    ) -> None:
        """Operations are observed per verb, network and outcome; failures counted by code."""
        cni.add_network_list(CONF, RT)
        with pytest.raises(PluginError):
            cni.delete_network_list(CONF, RT)

        def count(verb: str, outcome: str) -> float | None:
            labels = {"verb": verb, "network": "net1", "outcome": outcome}
            return registry.get_sample_value("cnilib_operation_duration_seconds_count", labels)

        assert (1.0, 1.0) == (count("add", "ok"), count("delete", "error"))
        errors = {"verb": "delete", "code": "7"}
        assert 1.0 == registry.get_sample_value("cnilib_errors_total", errors)
        assert (
            registry.get_sample_value("cnilib_errors_total", {"verb": "add", "code": "7"}) is None
        )

    def test_multi_network_failure_counted_under_each_verb(
        self, cni: cnilib.CNI, registry: CollectorRegistry
    ) -> None:
        """A failed teardown_networks counts once as itself, and its network's DEL once."""
        cni.add_network_list(CONF, RT)
        with pytest.raises(cnilib.TeardownError) as caught:
            cni.teardown_networks("ctr1", "/run/netns/x", [CONF])

        def errors(verb: str, code: int) -> float | None:
            labels = {"verb": verb, "code": str(code)}
            return registry.get_sample_value("cnilib_errors_total", labels)

        own = errors("teardown_networks", int(caught.value.code))
        assert (1.0, 1.0) == (errors("delete", 7), own)
        labels = {"verb": "teardown_networks", "network": "net1", "outcome": "error"}
        assert 1.0 == registry.get_sample_value("cnilib_operation_duration_seconds_count", labels)

    def test_multi_network_refused_up_front_is_counted(
        self, cni: cnilib.CNI, registry: CollectorRegistry
    ) -> None:
        """setup_networks that tries no network (wrong number of names) still counts."""
        with pytest.raises(cnilib.InvalidArgumentError):
            cni.setup_networks("ctr1", "/run/netns/x", [CONF, CONF], ifnames=["eth0"])

        labels = {"verb": "setup_networks", "code": "4"}
        assert 1.0 == registry.get_sample_value("cnilib_errors_total", labels)

    def test_prefix_and_buckets(self, registry: CollectorRegistry) -> None:
        """prefix names the metrics; buckets are the histogram's bounds."""
        hook = PrometheusEvents(registry=registry, prefix="rt", buckets=(0.5, 1.0))
        hook(
            OperationEvent(
                verb="gc", network="n", container_id="", ifname="", duration=0.7, outcome="ok"
            )
        )

        labels = {"verb": "gc", "network": "n", "outcome": "ok", "le": "1.0"}
        assert 1.0 == registry.get_sample_value("rt_operation_duration_seconds_bucket", labels)
        labels["le"] = "0.5"
        assert 0.0 == registry.get_sample_value("rt_operation_duration_seconds_bucket", labels)

    def test_missing_extra_names_it(self) -> None:
        """Without prometheus-client the import error names the extra to install."""
        code = (
            "import sys; sys.modules['prometheus_client'] = None\n"
            "try:\n    import cnilib.contrib.prometheus\n"
            "except ImportError as exc:\n    print(exc)\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )

        assert "pip install 'cnilib[prometheus]'" in proc.stdout
