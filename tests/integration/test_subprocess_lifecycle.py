"""SubprocessExecutor and the plugin's process: its exit is the end of the call, even when a
process it left behind still holds its stdout/stderr, and every path reaps it and closes
its pipes (pytest runs with warnings as errors, so a leaked Popen fails the test)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Literal

import pytest

import cnilib
from cnilib.invoke import Command, Invocation, SubprocessExecutor, _aio, _pipes
from cnilib.invoke._subprocess import release

Driver = Literal["sync", "async"]
DRIVERS = ["sync", "async"]

QUICK = 3.0
"""An answer taken at the plugin's exit comes well within this (the deadline is longer)."""


def script(directory: Path, name: str, body: str) -> Path:
    """Write an executable shell script plugin that first reads its stdin."""
    path = directory / name
    path.write_text(f"#!/bin/sh\ncat >/dev/null\n{body}\n")
    path.chmod(0o755)
    return path


def invocation(directory: Path, name: str, command: Command = Command.ADD) -> Invocation:
    return Invocation(command=command, plugin_type=name, stdin=b"{}", path=(str(directory),))


def run(driver: Driver, executor: SubprocessExecutor, call: Invocation) -> bytes:
    """One call through the blocking or the asyncio path."""
    return executor.exec(call) if driver == "sync" else asyncio.run(executor.aexec(call))


def read_pid(path: Path, within: float = 5.0) -> int:
    """The pid a plugin wrote to ``path``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text.endswith("\n"):
            return int(text)
        time.sleep(0.01)
    pytest.fail(f"no pid in {path}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_reaped(pid: int, within: float = 0.0) -> None:
    """The plugin ``pid`` (our child) is gone, not a zombie waiting to be reaped:
    ``/proc/<pid>`` stays until its parent collects the exit status."""
    deadline = time.monotonic() + within
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() >= deadline:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
            pytest.fail(f"plugin {pid} was not reaped (state {state})")
        time.sleep(0.02)


@pytest.fixture
def leftovers(tmp_path: Path) -> Iterator[Path]:
    """A file the plugins append their leftover processes' pids to; they are killed at the end."""
    pids = tmp_path / "leftover-pids"
    yield pids
    if pids.exists():
        for line in pids.read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line), signal.SIGKILL)


def refuse_pidfd(pid: int, flags: int = 0) -> int:
    raise OSError(errno.ENOSYS, "Function not implemented")


def long_grace(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make the grace after the plugin's exit ``seconds`` long, in both drivers."""
    monkeypatch.setattr(_pipes, "EXIT_GRACE", seconds)
    monkeypatch.setattr(_aio, "EXIT_GRACE", seconds)


def leaving_a_child(pids: Path, stdout: str, status: int) -> str:
    """A plugin body that starts ``sleep 30`` inheriting its stdout and stderr (a daemon
    that forgot to close its stdio), prints ``stdout`` and exits with ``status``."""
    return f"sleep 30 &\necho $! >> {pids}\nprintf '%s' '{stdout}'\nexit {status}"


class TestLeftoverHoldsOutput:
    """A plugin that exits while a process it started keeps its stdout/stderr open is
    answered at its exit (after a short grace), not at its deadline."""

    @pytest.mark.parametrize("driver", DRIVERS)
    def test_result_is_taken_at_exit(
        self, tmp_path: Path, leftovers: Path, driver: Driver, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Exit 0: the result printed before the exit is the answer; the leftover lives on,
        and an INFO line (no warning) names the plugin."""
        answer = '{"cniVersion":"1.0.0","ips":[]}'
        script(tmp_path, "p", leaving_a_child(leftovers, answer, 0))
        caplog.set_level(logging.DEBUG, logger="cnilib")
        started = time.monotonic()

        stdout = run(driver, SubprocessExecutor(timeout=20), invocation(tmp_path, "p"))

        assert time.monotonic() - started < QUICK
        assert answer.encode() == stdout
        [leftover] = leftovers.read_text().split()
        assert alive(int(leftover)), "the leftover process is not the runtime's to kill"
        notes = [r for r in caplog.records if "still holds" in r.getMessage()]
        assert [logging.INFO] == [r.levelno for r in notes]
        assert 'plugin "p" (ADD)' in notes[0].getMessage()
        assert [] == [r for r in caplog.records if r.levelno >= logging.WARNING]

    @pytest.mark.parametrize("driver", DRIVERS)
    def test_error_object_is_decoded(self, tmp_path: Path, leftovers: Path, driver: Driver) -> None:
        """Exit 1 with an error object: the plugin's own error, with its code."""
        answer = '{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"later"}'
        script(tmp_path, "p", leaving_a_child(leftovers, answer, 1))
        started = time.monotonic()

        with pytest.raises(cnilib.TryAgainLaterError) as info:
            run(driver, SubprocessExecutor(timeout=20), invocation(tmp_path, "p"))

        assert time.monotonic() - started < QUICK
        assert 11 == info.value.code
        assert "busy; later" == str(info.value)

    @pytest.mark.parametrize("driver", DRIVERS)
    @pytest.mark.parametrize(
        ("stdout", "status", "begins"),
        [
            ("not { json", 1, "netplugin failed but error parsing its diagnostic message"),
            ("", 1, "netplugin failed with no error message: exit status 1"),
            ("not { json", 0, 'plugin "p" (ADD) exited with status 0 but its stdout holds no'),
            ("", 0, 'plugin "p" (ADD) exited with status 0 but its stdout holds no'),
        ],
        ids=["garbage-exit-1", "nothing-exit-1", "garbage-exit-0", "nothing-exit-0"],
    )
    def test_undecodable_answer_says_what_happened(
        self,
        tmp_path: Path,
        leftovers: Path,
        driver: Driver,
        stdout: str,
        status: int,
        begins: str,
    ) -> None:
        """An answer that cannot be decoded is reported as what it is: the plugin exited
        with its status and left a process holding its output; it did not time out."""
        script(tmp_path, "p", leaving_a_child(leftovers, stdout, status))

        with pytest.raises(cnilib.PluginOutputError) as info:
            run(driver, SubprocessExecutor(timeout=20), invocation(tmp_path, "p"))

        text = str(info.value)
        assert text.startswith(begins)
        assert f'plugin "p" (ADD) exited with status {status}' in text
        assert "a process it left behind still holds its stdout/stderr" in text
        assert "timed out" not in text
        assert status == info.value.returncode
        assert stdout.encode() == info.value.stdout

    @pytest.mark.parametrize("driver", DRIVERS)
    def test_killed_by_a_signal(self, tmp_path: Path, leftovers: Path, driver: Driver) -> None:
        """A plugin that dies of a signal while its leftover holds the output: libcni's
        text, then how it ended and what holds its output."""
        script(tmp_path, "p", f"sleep 30 &\necho $! >> {leftovers}\nkill -KILL $$")

        with pytest.raises(cnilib.PluginOutputError) as info:
            run(driver, SubprocessExecutor(timeout=20), invocation(tmp_path, "p"))

        assert str(info.value) == (
            "netplugin failed with no error message: signal: killed; "
            'plugin "p" (ADD) ended with signal: killed '
            "and a process it left behind still holds its stdout/stderr"
        )

    @pytest.mark.parametrize("driver", DRIVERS)
    def test_empty_answer_of_del_is_fine(
        self, tmp_path: Path, leftovers: Path, driver: Driver
    ) -> None:
        """DEL answers nothing on success, leftover or not."""
        script(tmp_path, "p", leaving_a_child(leftovers, "", 0))

        assert b"" == run(
            driver, SubprocessExecutor(timeout=20), invocation(tmp_path, "p", Command.DEL)
        )

    @pytest.mark.parametrize("driver", DRIVERS)
    def test_deadline_holds_while_the_plugin_runs(
        self, tmp_path: Path, leftovers: Path, driver: Driver
    ) -> None:
        """The deadline still applies while the plugin itself has not exited; the kill takes
        its whole group, the child holding the pipes included."""
        script(tmp_path, "p", f"sleep 30 &\necho $! >> {leftovers}\nsleep 30")
        started = time.monotonic()

        with pytest.raises(cnilib.PluginTimeoutError):
            run(driver, SubprocessExecutor(timeout=0.5), invocation(tmp_path, "p"))

        assert time.monotonic() - started < QUICK
        [leftover] = leftovers.read_text().split()
        deadline = time.monotonic() + 5
        while alive(int(leftover)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(int(leftover))

    @pytest.mark.parametrize("driver", DRIVERS)
    @pytest.mark.parametrize("pidfd", ["missing", "refused"])
    def test_without_pidfd(
        self,
        tmp_path: Path,
        leftovers: Path,
        driver: Driver,
        pidfd: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Where pidfd_open is missing or refused (old kernel, seccomp), the exit is
        noticed by polling."""
        if pidfd == "missing":
            monkeypatch.delattr(os, "pidfd_open")
        else:
            monkeypatch.setattr(os, "pidfd_open", refuse_pidfd)
        answer = '{"cniVersion":"1.0.0"}'
        script(tmp_path, "p", leaving_a_child(leftovers, answer, 0))
        started = time.monotonic()

        assert answer.encode() == run(
            driver, SubprocessExecutor(timeout=20), invocation(tmp_path, "p")
        )
        assert time.monotonic() - started < QUICK

    @pytest.mark.parametrize("driver", DRIVERS)
    def test_output_after_closing_but_before_exit_is_kept(
        self, tmp_path: Path, driver: Driver
    ) -> None:
        """Without a leftover, a plugin that closes its output and exits a moment later is
        answered normally (no grace, no note)."""
        script(tmp_path, "p", "printf '{}'\nexec >&- 2>&-\nsleep 0.2\nexit 0")

        assert b"{}" == run(driver, SubprocessExecutor(timeout=20), invocation(tmp_path, "p"))

    @pytest.mark.parametrize("driver", DRIVERS)
    def test_helper_ending_during_the_grace_is_no_leftover(
        self,
        tmp_path: Path,
        driver: Driver,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A helper that still holds the pipes at the exit but lets go within the grace
        (the plugin's last subshell) is waited for, and is nothing to note."""
        long_grace(monkeypatch, 5.0)
        script(tmp_path, "p", "printf '{}'\n(sleep 0.2) &\nexit 0")
        caplog.set_level(logging.DEBUG, logger="cnilib")
        started = time.monotonic()

        assert b"{}" == run(driver, SubprocessExecutor(timeout=20), invocation(tmp_path, "p"))

        assert 0.15 < time.monotonic() - started < QUICK
        assert [] == [r for r in caplog.records if "still holds" in r.getMessage()]

    @pytest.mark.parametrize("driver", DRIVERS)
    def test_deadline_during_the_grace_is_no_timeout(
        self, tmp_path: Path, leftovers: Path, driver: Driver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The deadline stops applying at the plugin's exit: one falling within the grace
        does not turn the answer into a timeout."""
        long_grace(monkeypatch, 2.0)
        answer = '{"cniVersion":"1.0.0"}'
        script(tmp_path, "p", leaving_a_child(leftovers, answer, 0))
        started = time.monotonic()

        stdout = run(driver, SubprocessExecutor(timeout=1.0), invocation(tmp_path, "p"))

        assert answer.encode() == stdout
        assert 1.5 < time.monotonic() - started < 2 + QUICK

    @pytest.mark.parametrize("driver", DRIVERS)
    def test_too_much_output_after_the_exit(
        self, tmp_path: Path, leftovers: Path, driver: Driver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A leftover that floods stdout during the grace fails the call with the cap, and
        is not killed (the plugin has exited; the group is no longer its own)."""
        long_grace(monkeypatch, 5.0)
        monkeypatch.setattr(_pipes, "STDOUT_LIMIT", 1000)
        script(
            tmp_path,
            "p",
            f"printf '{{}}'\n(sleep 0.1; head -c 5000 /dev/zero; sleep 30) &\n"
            f"echo $! >> {leftovers}\nexit 0",
        )

        with pytest.raises(cnilib.PluginOutputError) as info:
            run(driver, SubprocessExecutor(timeout=20), invocation(tmp_path, "p"))

        assert str(info.value) == (
            'plugin "p" (ADD) printed more than 1000 bytes on stdout; '
            "it had exited; a process it left behind still writes there"
        )
        [leftover] = leftovers.read_text().split()
        assert alive(int(leftover))

    @pytest.mark.parametrize("driver", DRIVERS)
    def test_too_much_output_at_the_last_read(
        self, tmp_path: Path, leftovers: Path, driver: Driver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The last read of held pipes, at the end of the grace, is capped too."""

        def flood(fd: int, name: str, output: _pipes.Output) -> bool:
            raise _pipes.OutputTooLarge

        monkeypatch.setattr(_pipes, "drain", flood)
        monkeypatch.setattr(_aio, "drain", flood)
        script(tmp_path, "p", leaving_a_child(leftovers, "{}", 0))

        with pytest.raises(cnilib.PluginOutputError, match="it had exited"):
            run(driver, SubprocessExecutor(timeout=20), invocation(tmp_path, "p"))


class TestDrain:
    """The last read of a held pipe: what it holds now, bounded."""

    def test_reads_what_is_buffered(self) -> None:
        """It stops at an empty pipe that is still held (False) or at EOF (True)."""
        r, w = os.pipe()
        try:
            os.set_blocking(r, False)
            os.write(w, b"abc")
            output = _pipes.Output()
            assert not _pipes.drain(r, "stdout", output)
            os.write(w, b"def")
            os.close(w)
            w = -1
            assert _pipes.drain(r, "stdout", output)
            assert b"abcdef" == bytes(output.stdout)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)

    def test_is_bounded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A writer that keeps going does not keep the runtime reading."""
        monkeypatch.setattr(_pipes, "_DRAIN_LIMIT", 4)
        monkeypatch.setattr(_pipes, "_CHUNK", 2)
        r, w = os.pipe()
        try:
            os.set_blocking(r, False)
            os.write(w, b"0123456789")
            output = _pipes.Output()
            assert not _pipes.drain(r, "stderr", output)
            assert b"0123" == bytes(output.stderr)
        finally:
            os.close(r)
            os.close(w)


class TestReaping:
    """Every path reaps the plugin and closes its pipes before the call returns or raises."""

    @pytest.mark.parametrize("driver", DRIVERS)
    def test_deadline_between_eof_and_exit(self, tmp_path: Path, driver: Driver) -> None:
        """A plugin that closes its pipes, then lingers past the deadline, times out and is
        reaped; nothing is left for the garbage collector to warn about."""
        pid_file = tmp_path / "pid"
        script(tmp_path, "p", f"echo $$ > {pid_file}\nexec >&- 2>&-\nsleep 2\nexit 0")

        with pytest.raises(cnilib.PluginTimeoutError):
            run(driver, SubprocessExecutor(timeout=0.5), invocation(tmp_path, "p"))

        assert_reaped(read_pid(pid_file))
        gc.collect()

    @pytest.mark.parametrize("driver", DRIVERS)
    def test_failing_spawn_hook_reaps_the_plugin(self, tmp_path: Path, driver: Driver) -> None:
        """An error in the hook run right after the spawn (the runtime records the pid)
        kills and reaps the plugin, and closes its pipes, before it propagates."""
        pids: list[int] = []

        def hook(pid: int, timeout: float | None) -> None:
            pids.append(pid)
            raise RuntimeError("cannot record the plugin")

        script(tmp_path, "p", "sleep 30")
        call = Invocation(
            command=Command.ADD, plugin_type="p", stdin=b"{}", path=(str(tmp_path),), on_spawn=hook
        )

        with pytest.raises(RuntimeError, match="cannot record the plugin"):
            run(driver, SubprocessExecutor(timeout=20), call)

        assert_reaped(pids[0], within=5.0)
        gc.collect()

    def test_interrupt_after_eof_reaps_the_plugin(self, tmp_path: Path) -> None:
        """Ctrl-C while the plugin has closed its pipes but not exited: the plugin is
        killed and reaped before the KeyboardInterrupt propagates."""
        pid_file = tmp_path / "pid"
        script(tmp_path, "p", f"echo $$ > {pid_file}\nexec >&- 2>&-\nsleep 30")

        def interrupt(signum: int, frame: FrameType | None) -> None:
            if not pid_file.exists():
                signal.setitimer(signal.ITIMER_REAL, 0.05)  # not there yet: try again
                return
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(KeyboardInterrupt):
                SubprocessExecutor(timeout=20).exec(invocation(tmp_path, "p"))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

        assert_reaped(read_pid(pid_file))
        gc.collect()

    def test_second_cancel_during_cleanup_reaps_the_plugin(
        self, tmp_path: Path, leftovers: Path
    ) -> None:
        """A task cancelled again while it cleans up after the first cancellation (a
        setsid'd child holds the pipes, so the cleanup waits) still reaps the plugin."""
        pid_file = tmp_path / "pid"
        script(
            tmp_path,
            "p",
            f"echo $$ > {pid_file}\nsetsid sleep 30 &\necho $! >> {leftovers}\nsleep 30",
        )

        async def cancel_twice() -> None:
            task = asyncio.create_task(
                SubprocessExecutor(timeout=20).aexec(invocation(tmp_path, "p"))
            )
            await asyncio.to_thread(read_pid, pid_file)
            await asyncio.to_thread(read_pid, leftovers)
            task.cancel()
            await asyncio.sleep(0.3)  # the plugin is killed; its pipes are still held
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancel_twice())

        assert_reaped(read_pid(pid_file), within=5.0)
        gc.collect()


class TestRelease:
    """``release``: the last step of every call closes the pipes and reaps the plugin."""

    def popen(self, *argv: str) -> subprocess.Popen[bytes]:
        return SubprocessExecutor.popen(list(argv), dict(os.environ))

    def test_closes_the_pipes_of_an_exited_plugin(self) -> None:
        """An exited plugin is reaped at once and its three pipes are closed."""
        proc = self.popen("true")
        proc.wait()

        release(proc, 1.0)

        streams = (proc.stdin, proc.stdout, proc.stderr)
        assert [True, True, True] == [getattr(s, "closed", False) for s in streams]
        assert 0 == proc.returncode

    @pytest.mark.parametrize("wait", [0.0, 0.05])
    def test_a_plugin_still_dying_is_reaped_by_a_thread(self, wait: float) -> None:
        """One that has not exited after ``wait`` is left to a thread that reaps it: no
        zombie, and no Popen that warns when it is collected."""
        proc = self.popen("sleep", "0.3")

        release(proc, wait)

        assert proc.returncode is None
        assert_reaped(proc.pid, within=5.0)
        assert 0 == proc.wait(5)  # the status the thread collected
        del proc
        gc.collect()


@pytest.mark.parametrize("driver", DRIVERS)
def test_no_deadline(tmp_path: Path, driver: Driver) -> None:
    """Without a deadline the call simply ends at the plugin's exit."""
    script(tmp_path, "p", "printf '{}'")

    assert b"{}" == run(driver, SubprocessExecutor(timeout=None), invocation(tmp_path, "p"))
