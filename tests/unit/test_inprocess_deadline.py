"""In-process plugins under a deadline: a call that runs too long raises
PluginTimeoutError at the deadline, and its abandoned work never overlaps a
later call for the same attachment."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import attrs
import pytest

import cnilib
from cnilib.errors import PluginTimeoutError
from cnilib.invoke import DEFAULT_TIMEOUT, Command, Invocation
from cnilib.plugins import BasePlugin, PluginRequest
from cnilib.plugins._executor import InProcessExecutor
from cnilib.results import Result, decode_result
from tests.unit._guards import NO_SUCH_HOST

CONFIG = json.dumps({"cniVersion": "1.1.0", "name": "net1", "type": "slow"}).encode()


class Slow(BasePlugin):
    """Sleeps ``delays[verb]`` seconds in each verb and logs when each call
    starts and ends, so tests can see which calls overlapped."""

    type = "slow"

    def __init__(self, **delays: float) -> None:
        self.delays = delays
        self.events: list[tuple[str, str, str, float]] = []
        self.lock = threading.Lock()
        self.finished = threading.Event()

    def _work(self, req: PluginRequest) -> None:
        verb = req.command.value
        self._log("start", verb, req.container_id)
        try:
            time.sleep(self.delays.get(verb, 0.0))
        finally:
            self._log("end", verb, req.container_id)
            self.finished.set()

    def _log(self, what: str, verb: str, container_id: str) -> None:
        with self.lock:
            self.events.append((what, verb, container_id, time.monotonic()))

    def at(self, what: str, verb: str, container_id: str = "c1") -> float:
        [when] = [t for w, v, c, t in self.events if (w, v, c) == (what, verb, container_id)]
        return when

    def verbs(self, what: str = "start") -> list[str]:
        return [v for w, v, _, _ in self.events if w == what]

    def add(self, req: PluginRequest) -> Result:
        self._work(req)
        return decode_result(
            {"cniVersion": "1.1.0", "ips": [{"address": "10.9.0.2/24"}]}, default_version="1.1.0"
        )

    def delete(self, req: PluginRequest) -> None:
        self._work(req)

    def check(self, req: PluginRequest) -> None:
        self._work(req)


def call(
    command: Command,
    *,
    container_id: str = "c1",
    ifname: str = "eth0",
    timeout: float | None = None,
) -> Invocation:
    return Invocation(
        command=command,
        plugin_type="slow",
        stdin=CONFIG,
        container_id=container_id,
        netns="/run/netns/c1",
        ifname=ifname,
        path=("/opt/cni/bin",),
        timeout=timeout,
    )


def wait_idle(plugin: Slow, calls: int) -> None:
    """Wait (bounded) until ``calls`` calls of ``plugin`` have ended."""
    deadline = time.monotonic() + 10
    while len(plugin.verbs("end")) < calls:
        assert time.monotonic() < deadline, plugin.events
        time.sleep(0.01)


class TestDeadline:
    def test_default_deadline_is_the_subprocess_one(self) -> None:
        """Left out, the deadline is cnilib.invoke.DEFAULT_TIMEOUT, as for binaries."""
        assert InProcessExecutor().timeout == DEFAULT_TIMEOUT

    def test_call_past_the_executor_deadline_times_out(self) -> None:
        """A plugin sleeping past the deadline raises PluginTimeoutError at about the
        deadline, with the subprocess executor's message shape."""
        plugin = Slow(ADD=1.0)
        executor = InProcessExecutor({"slow": plugin}, timeout=0.2, host_netns=NO_SUCH_HOST)
        started = time.monotonic()

        with pytest.raises(PluginTimeoutError) as info:
            executor.exec(call(Command.ADD))

        elapsed = time.monotonic() - started
        assert 0.2 <= elapsed < 0.8
        assert str(info.value).startswith(
            'plugin "slow" (ADD) timed out after 0.2s (deadline 0.2s); '
        )
        assert "cannot be killed" in str(info.value)
        assert info.value.elapsed == pytest.approx(elapsed, abs=0.1)
        wait_idle(plugin, 1)

    def test_invocation_timeout_overrides_the_executor(self) -> None:
        """Invocation.timeout wins over the executor's default (CNI sets it per call)."""
        plugin = Slow(ADD=1.0)
        executor = InProcessExecutor({"slow": plugin}, host_netns=NO_SUCH_HOST)  # 60 s by default

        with pytest.raises(PluginTimeoutError, match=r"\(deadline 0\.2s\)"):
            executor.exec(call(Command.ADD, timeout=0.2))
        wait_idle(plugin, 1)

    @pytest.mark.parametrize(("executor_timeout", "call_timeout"), [(None, None), (0.05, math.inf)])
    def test_no_deadline(self, executor_timeout: float | None, call_timeout: float | None) -> None:
        """timeout=None on the executor, or math.inf on the call, means no deadline."""
        plugin = Slow(ADD=0.3)
        executor = InProcessExecutor(
            {"slow": plugin}, timeout=executor_timeout, host_netns=NO_SUCH_HOST
        )

        out = executor.exec(call(Command.ADD, timeout=call_timeout))

        assert json.loads(out)["ips"][0]["address"] == "10.9.0.2/24"

    def test_results_and_errors_pass_through(self) -> None:
        """Within the deadline, the call's stdout and its PluginError come back unchanged."""
        executor = InProcessExecutor({"slow": Slow()}, timeout=5, host_netns=NO_SUCH_HOST)

        assert json.loads(executor.exec(call(Command.ADD)))["cniVersion"] == "1.1.0"
        with pytest.raises(cnilib.PluginError, match="required env variables") as info:
            executor.exec(call(Command.ADD, container_id=""))
        assert info.value.code == 4


class TestAbandonedWork:
    def test_later_call_for_the_attachment_waits_for_the_abandoned_one(self) -> None:
        """The DEL sent after an ADD timed out starts only once that ADD has ended."""
        plugin = Slow(ADD=0.6)
        executor = InProcessExecutor({"slow": plugin}, timeout=0.1, host_netns=NO_SUCH_HOST)

        with pytest.raises(PluginTimeoutError):
            executor.exec(call(Command.ADD))
        executor.exec(call(Command.DEL, timeout=5))

        assert plugin.at("start", "DEL") >= plugin.at("end", "ADD")

    def test_waiting_call_that_times_out_never_runs(self) -> None:
        """A DEL whose own deadline passes while the abandoned ADD still runs is
        refused with a timeout naming the reason, and never runs later."""
        plugin = Slow(ADD=0.8)
        executor = InProcessExecutor({"slow": plugin}, timeout=0.1, host_netns=NO_SUCH_HOST)

        with pytest.raises(PluginTimeoutError):
            executor.exec(call(Command.ADD))
        with pytest.raises(PluginTimeoutError, match="never started: an earlier call") as info:
            executor.exec(call(Command.DEL, timeout=0.2))
        assert 'container "c1" interface "eth0"' in str(info.value)
        wait_idle(plugin, 1)
        time.sleep(0.1)

        assert plugin.verbs() == ["ADD"]
        # ... and the chain is clear again: the next call runs at once.
        executor.exec(call(Command.DEL, timeout=1))
        assert plugin.verbs() == ["ADD", "DEL"]

    def test_other_attachments_do_not_wait(self) -> None:
        """Only the same container ID and interface wait; others run alongside."""
        plugin = Slow(ADD=0.6)
        executor = InProcessExecutor({"slow": plugin}, timeout=0.1, host_netns=NO_SUCH_HOST)

        with pytest.raises(PluginTimeoutError):
            executor.exec(call(Command.ADD))
        executor.exec(call(Command.DEL, container_id="c2", timeout=5))
        executor.exec(call(Command.DEL, ifname="eth1", timeout=5))

        wait_idle(plugin, 3)

        assert plugin.at("start", "DEL", "c2") < plugin.at("end", "ADD")
        assert plugin.at("start", "DEL", "c1") < plugin.at("end", "ADD")  # eth1

    def test_runtime_rollback_del_does_not_overlap_the_abandoned_add(self, tmp_path: Path) -> None:
        """Through CNI: the ADD times out, the rollback DEL waits for it, then runs."""
        plugin = Slow(ADD=0.5)
        cni = cnilib.CNI(
            ["/opt/cni/bin"],
            cache_dir=tmp_path,
            executor=InProcessExecutor({"slow": plugin}, host_netns=NO_SUCH_HOST),
            timeout=0.1,
        )
        conf = slow_net()

        with pytest.raises(PluginTimeoutError) as info:
            cni.add_network_list(conf, cnilib.RuntimeConf("c1", "/run/netns/c1", "eth0"))

        assert str(info.value).startswith('plugin type="slow" failed (add): plugin "slow" (ADD)')
        # The rollback DEL had the same 0.1 s and the ADD needed 0.5 s: it never ran.
        assert plugin.verbs() == ["ADD"]
        assert info.value.rollback is not None
        wait_idle(plugin, 1)

    def test_forked_child_does_not_wait_for_the_parents_calls(self) -> None:
        """In a child forked while an abandoned ADD runs (its thread does not exist
        there, it never finishes there), a DEL of the attachment runs at once."""
        plugin = Slow(ADD=0.8)
        executor = InProcessExecutor({"slow": plugin}, timeout=0.1, host_netns=NO_SUCH_HOST)
        executor.exec(call(Command.CHECK, container_id="warm"))  # an idle call thread too
        with pytest.raises(PluginTimeoutError):
            executor.exec(call(Command.ADD))

        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            try:
                executor.exec(call(Command.DEL, timeout=2))
                os._exit(0 if plugin.verbs()[-1] == "DEL" else 2)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)

        assert os.waitstatus_to_exitcode(status) == 0
        wait_idle(plugin, 2)

    def test_interrupted_wait_abandons_the_call(self) -> None:
        """Ctrl-C while waiting (here: an exception from a signal handler) returns at
        once; the plugin is not interrupted midway, and the DEL that a runtime's
        rollback then sends waits for it."""

        class FakeInterruptError(Exception):
            pass

        def interrupt(signum: int, frame: object) -> None:
            raise FakeInterruptError

        plugin = Slow(ADD=0.5)
        executor = InProcessExecutor({"slow": plugin}, timeout=5, host_netns=NO_SUCH_HOST)
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            started = time.monotonic()
            with pytest.raises(FakeInterruptError):
                executor.exec(call(Command.ADD))
            assert time.monotonic() - started < 0.4
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        executor.exec(call(Command.DEL))

        assert plugin.verbs("end") == ["ADD", "DEL"]
        assert plugin.at("start", "DEL") >= plugin.at("end", "ADD")

    def test_delegation_inside_a_call_does_not_wait_for_itself(self) -> None:
        """A plugin delegating (same container and interface) runs its delegate inline."""

        class Main(BasePlugin):
            type = "main"

            def add(self, req: PluginRequest) -> Result:
                return req.delegate_add("slow")

        executor = InProcessExecutor(
            {"main": Main(), "slow": Slow()}, timeout=2, host_netns=NO_SUCH_HOST
        )
        inv = call(Command.ADD)
        started = time.monotonic()

        executor.exec(attrs.evolve(inv, plugin_type="main"))

        assert time.monotonic() - started < 1


class TestAsync:
    @pytest.mark.asyncio
    async def test_aexec_times_out_without_blocking_the_loop(self) -> None:
        """aexec raises PluginTimeoutError at the deadline; the loop keeps running meanwhile."""
        # The plugin outlasts the deadline by far, so that a loaded machine cannot blur
        # "returned at the deadline" into "waited for the plugin".
        plugin = Slow(ADD=2.0)
        executor = InProcessExecutor({"slow": plugin}, timeout=0.3, host_netns=NO_SUCH_HOST)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        with pytest.raises(PluginTimeoutError, match=r'"slow" \(ADD\) timed out'):
            await executor.aexec(call(Command.ADD))
        task.cancel()

        assert 0.3 <= time.monotonic() - started < 1.8
        assert ticks >= 3  # a blocked loop would not have ticked at all (6 seen under load)
        await asyncio.to_thread(wait_idle, plugin, 1)

    @pytest.mark.asyncio
    async def test_cancelled_aexec_abandons_and_the_next_call_waits(self) -> None:
        """Cancelling aexec returns at once; the next call for the attachment waits for it."""
        plugin = Slow(ADD=0.5)
        executor = InProcessExecutor({"slow": plugin}, timeout=5, host_netns=NO_SUCH_HOST)

        add = asyncio.create_task(executor.aexec(call(Command.ADD)))
        await asyncio.sleep(0.1)
        add.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await add
        assert time.monotonic() - started < 0.2
        await executor.aexec(call(Command.DEL))

        assert plugin.at("start", "DEL") >= plugin.at("end", "ADD")

    @pytest.mark.asyncio
    async def test_async_runtime_times_out(self, tmp_path: Path) -> None:
        """AsyncCNI with a per-call deadline: PluginTimeoutError, as with binaries."""
        plugin = Slow(ADD=0.6)
        cni = cnilib.AsyncCNI(
            ["/opt/cni/bin"],
            cache_dir=tmp_path,
            executor=InProcessExecutor({"slow": plugin}, host_netns=NO_SUCH_HOST),
            timeout=0.1,
        )
        conf = slow_net()

        with pytest.raises(PluginTimeoutError):
            await cni.add_network_list(conf, cnilib.RuntimeConf("c1", "/run/netns/c1", "eth0"))
        await asyncio.to_thread(wait_idle, plugin, 1)


class TestCallThreads:
    def test_idle_threads_end_and_calls_go_on(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A call thread left idle past IDLE_TIMEOUT ends; the next call starts a new one;
        a busy executor reuses its idle thread instead of starting one per call."""
        from cnilib.plugins import _executor

        monkeypatch.setattr(_executor, "IDLE_TIMEOUT", 0.2)
        executor = InProcessExecutor({"slow": Slow()}, host_netns=NO_SUCH_HOST)
        before = set(threading.enumerate())
        for _ in range(20):
            executor.exec(call(Command.CHECK))
        started = [t for t in threading.enumerate() if t not in before]
        # Reused, not one per call (a second one may start while the first, its
        # call answered, is not back in the idle list yet).
        assert 1 <= len(started) <= 4
        assert {t.name for t in started} == {"cnilib-inprocess-call"}

        for thread in started:
            thread.join(5)
            assert not thread.is_alive(), "an idle call thread never ended"
        assert json.loads(executor.exec(call(Command.ADD)))["cniVersion"] == "1.1.0"

    @pytest.mark.asyncio
    async def test_delegates_view_runs_inline(self) -> None:
        """The executor a delegating plugin gets answers like the executor itself."""
        executor = InProcessExecutor({"slow": Slow()}, builtins=False, host_netns=NO_SUCH_HOST)
        delegates = executor._delegates.executors[0]

        assert delegates.version_info("slow", []) == executor.version_info("slow", [])
        assert await delegates.aexec(call(Command.ADD)) == executor.exec(call(Command.ADD))
        assert "delegates of InProcessExecutor(plugins=['slow'], builtins=False" in repr(delegates)


def slow_net() -> cnilib.NetworkConfigList:
    """net1 with the one plugin "slow"."""
    doc = {"cniVersion": "1.1.0", "name": "net1", "plugins": [{"type": "slow"}]}
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())
