"""The events hook of CNI and AsyncCNI: one record per plugin call and per operation."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import attrs
import pytest

import cnilib
from cnilib.errors import PluginError
from cnilib.events import Event, OperationEvent, PluginCallEvent
from cnilib.invoke import Command, Invocation
from cnilib.testing import MockExecutor

CONF = cnilib.conflist_from_bytes(
    b'{"cniVersion":"1.1.0","name":"net1","plugins":[{"type":"a"},{"type":"b"}]}'
)
OTHER = cnilib.conflist_from_bytes(b'{"cniVersion":"1.1.0","name":"net2","plugins":[{"type":"a"}]}')
RT = cnilib.RuntimeConf("ctr1", "/run/netns/x", "eth0")


def answer(invocation: Invocation) -> bytes:
    """Plugin "b" fails DEL with code 7; everything else succeeds."""
    if invocation.plugin_type == "b" and invocation.command == Command.DEL:
        raise PluginError("no bridge", code=7)
    return b'{"cniVersion":"1.1.0"}' if invocation.command == Command.ADD else b""


def calls(events: list[Event]) -> list[tuple[str, str, str, str, int | None]]:
    return [
        (e.verb, e.plugin, e.network, e.outcome, e.error_code)
        for e in events
        if isinstance(e, PluginCallEvent)
    ]


def operations(events: list[Event]) -> list[tuple[str, str, str, int | None]]:
    return [
        (e.verb, e.network, e.outcome, e.error_code)
        for e in events
        if isinstance(e, OperationEvent)
    ]


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def cni(tmp_path: Path, events: list[Event]) -> cnilib.CNI:
    return cnilib.CNI(
        ["/unused"], cache_dir=tmp_path, executor=MockExecutor(answer), events=events.append
    )


class TestSyncEvents:
    def test_add_reports_each_call_then_the_operation(
        self, cni: cnilib.CNI, events: list[Event]
    ) -> None:
        """ADD: one record per plugin, then the operation's, all ok, fields filled in."""
        cni.add_network_list(CONF, RT)

        first, second, operation = events
        assert [("ADD", "a", "net1", "ok", None), ("ADD", "b", "net1", "ok", None)] == calls(events)
        assert isinstance(first, PluginCallEvent)
        # What the executor's find() answers: MockExecutor names the type.
        assert ("ctr1", "eth0", "a") == (first.container_id, first.ifname, first.executable)
        assert first.duration >= 0
        assert isinstance(operation, OperationEvent)
        assert ("add", "net1", "ctr1", "eth0", "ok") == (
            operation.verb,
            operation.network,
            operation.container_id,
            operation.ifname,
            operation.outcome,
        )
        assert operation.duration >= second.duration

    def test_failure_carries_the_code(self, cni: cnilib.CNI, events: list[Event]) -> None:
        """A failed DEL: the call and the operation say error, code 7, PluginError."""
        cni.add_network_list(CONF, RT)
        events.clear()

        with pytest.raises(PluginError):
            cni.delete_network_list(CONF, RT)

        assert [("DEL", "b", "net1", "error", 7)] == calls(events)
        assert [("delete", "net1", "error", 7)] == operations(events)
        assert "PluginError" == events[-1].error_type

    def test_records_are_frozen(self, cni: cnilib.CNI, events: list[Event]) -> None:
        """A hook cannot change what another hook sees."""
        cni.status_network_list(CONF)

        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            events[0].outcome = "error"  # type: ignore[misc]

    def test_operation_without_plugin_call(self, cni: cnilib.CNI, events: list[Event]) -> None:
        """An operation refused before any plugin runs is reported, with its code."""
        bad = cnilib.RuntimeConf("", "/run/netns/x", "eth0")

        with pytest.raises(cnilib.CNIError) as caught:
            cni.add_network_list(CONF, bad)

        assert [("add", "net1", "error", int(caught.value.code))] == operations(events)
        assert [] == calls(events)

    def test_gc_and_status(self, cni: cnilib.CNI, events: list[Event]) -> None:
        """GC's stale DELs and its GC calls belong to the GC's network; STATUS too."""
        cni.add_network_list(OTHER, RT)
        events.clear()

        cni.gc_network_list(OTHER, [])
        cni.status_network_list(OTHER)

        assert [
            ("DEL", "a", "net2", "ok", None),
            ("GC", "a", "net2", "ok", None),
            ("STATUS", "a", "net2", "ok", None),
        ] == calls(events)
        assert [("gc", "net2", "ok", None), ("status", "net2", "ok", None)] == operations(events)

    @pytest.mark.parametrize("concurrent", [False, True])
    def test_several_networks(self, cni: cnilib.CNI, events: list[Event], concurrent: bool) -> None:
        """setup_networks: each network's ADD with its own calls, then one record for all."""
        cni.setup_networks("ctr1", "/run/netns/x", [CONF, OTHER], concurrent=concurrent)

        assert {("add", "net1", "ok", None), ("add", "net2", "ok", None)} == set(
            operations(events)[:2]
        )
        assert ("setup_networks", "net1,net2", "ok", None) == operations(events)[-1]
        assert [("net1", "a"), ("net1", "b"), ("net2", "a")] == sorted(
            (c[2], c[1]) for c in calls(events)
        )

    def test_raising_hook_does_not_break_the_operation(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A hook that raises is logged at WARNING and the ADD still succeeds."""

        def hook(event: Event) -> None:
            raise RuntimeError("hook bug")

        cni = cnilib.CNI(
            ["/unused"], cache_dir=tmp_path, executor=MockExecutor(answer), events=hook
        )

        with caplog.at_level(logging.WARNING, logger="cnilib"):
            result = cni.add_network_list(CONF, RT)

        assert result is not None
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 3  # two calls, one operation
        assert all("hook bug" in r.getMessage() for r in warnings)
        assert cni.cached_result(CONF, RT) is not None

    def test_no_warning_in_normal_operation(
        self, cni: cnilib.CNI, caplog: pytest.LogCaptureFixture
    ) -> None:
        """ADD, CHECK and DEL that succeed log nothing at WARNING or above."""
        with caplog.at_level(logging.DEBUG, logger="cnilib"):
            cni.add_network_list(OTHER, RT)
            cni.check_network_list(OTHER, RT)
            cni.delete_network_list(OTHER, RT)

        assert [] == [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    def test_not_a_callable(self, tmp_path: Path) -> None:
        """events= must be callable: a clear InvalidArgumentError, not a failure later."""
        with pytest.raises(cnilib.InvalidArgumentError, match="events must be a callable"):
            cnilib.CNI(["/unused"], cache_dir=tmp_path, events="log")  # type: ignore[arg-type]


class TestAsyncEvents:
    def test_same_records_as_sync(self, tmp_path: Path) -> None:
        """AsyncCNI reports the same calls and operations, failure code included."""
        events: list[Event] = []
        cni = cnilib.AsyncCNI(
            ["/unused"], cache_dir=tmp_path, executor=MockExecutor(answer), events=events.append
        )

        async def scenario() -> None:
            await cni.add_network_list(CONF, RT)
            with pytest.raises(PluginError):
                await cni.delete_network_list(CONF, RT)

        asyncio.run(scenario())

        assert [
            ("ADD", "a", "net1", "ok", None),
            ("ADD", "b", "net1", "ok", None),
            ("DEL", "b", "net1", "error", 7),
        ] == calls(events)
        assert [("add", "net1", "ok", None), ("delete", "net1", "error", 7)] == operations(events)

    def test_concurrent_setup_keeps_networks_apart(self, tmp_path: Path) -> None:
        """Concurrent tasks: each call is reported under its own network."""
        events: list[Event] = []
        cni = cnilib.AsyncCNI(
            ["/unused"], cache_dir=tmp_path, executor=MockExecutor(answer), events=events.append
        )

        asyncio.run(cni.setup_networks("ctr1", "/run/netns/x", [CONF, OTHER], concurrent=True))

        assert [("net1", "a"), ("net1", "b"), ("net2", "a")] == sorted(
            (c[2], c[1]) for c in calls(events)
        )
        assert ("setup_networks", "net1,net2", "ok", None) == operations(events)[-1]

    def test_cancelled_operation_is_an_error(self, tmp_path: Path) -> None:
        """A cancelled ADD is reported as an error without a CNI code."""
        events: list[Event] = []
        started = asyncio.Event()

        async def hang(invocation: Invocation) -> bytes:
            if invocation.command == Command.ADD:
                started.set()
                await asyncio.sleep(3600)
            return b""

        cni = cnilib.AsyncCNI(
            ["/unused"], cache_dir=tmp_path, executor=MockExecutor(hang), events=events.append
        )

        async def scenario() -> None:
            task = asyncio.ensure_future(cni.add_network_list(OTHER, RT))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(scenario())

        added = [e for e in events if isinstance(e, OperationEvent)]
        assert [("add", "error", None, "CancelledError")] == [
            (e.verb, e.outcome, e.error_code, e.error_type) for e in added
        ]


class TestExecutable:
    """Where a call ran from, as its executor says: a path, or "in-process"."""

    def test_in_process(self, tmp_path: Path) -> None:
        from cnilib.testing import FakePlugin

        seen: list[Event] = []
        executor = cnilib.InProcessExecutor({"fake": FakePlugin()}, builtins=False)
        cni = cnilib.CNI(["/unused"], cache_dir=tmp_path, executor=executor, events=seen.append)

        cni.get_version_info("fake")

        assert ["in-process"] == [e.executable for e in seen if isinstance(e, PluginCallEvent)]

    def test_binary_through_a_relative_path(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A binary found through a relative CNI_PATH entry is a binary, not in-process."""
        from cnilib.testing import install_recording_plugin

        install_recording_plugin(tmp_path / "bin")
        monkeypatch.chdir(tmp_path)
        seen: list[Event] = []
        cni = cnilib.CNI(["bin"], cache_dir=tmp_path / "cache", events=seen.append)

        cni.get_version_info("recorder")

        executables = [e.executable for e in seen if isinstance(e, PluginCallEvent)]
        assert [os.path.join("bin", "recorder")] == executables
