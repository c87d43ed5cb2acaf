"""SubprocessExecutor against small real executables: lookup, exec failures,
ETXTBSY retries, interruption, and VERSION decoding."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

import cnilib
from cnilib.invoke import Command, Invocation, SubprocessExecutor, decode_version_info


def script(directory: Path, name: str, body: str, *, mode: int = 0o755) -> Path:
    """Write an executable shell script plugin."""
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(mode)
    return path


def invocation(directory: Path, name: str, command: Command = Command.ADD) -> Invocation:
    return Invocation(command=command, plugin_type=name, stdin=b"{}", path=(str(directory),))


class TestLookup:
    @pytest.mark.parametrize(
        ("name", "path", "message"),
        [("", ("/bin",), "no plugin name provided"), ("x", (), "no paths provided")],
    )
    def test_refusals(self, name: str, path: tuple[str, ...], message: str) -> None:
        """An empty plugin name or an empty search path is refused with libcni's text."""
        with pytest.raises(cnilib.PluginNotFoundError, match=message):
            SubprocessExecutor().find(name, path)

    def test_first_regular_file_wins(self, tmp_path: Path) -> None:
        """Directories named like the plugin are skipped; search order is kept."""
        first, second, third = (tmp_path / n for n in ("a", "b", "c"))
        for d in (first, second, third):
            d.mkdir()
        (first / "p").mkdir()
        script(second, "p", "exit 0")
        script(third, "p", "exit 0")

        found = SubprocessExecutor().find("p", [str(first), str(second), str(third)])

        assert str(second / "p") == found

    def test_not_executable(self, tmp_path: Path) -> None:
        """A plugin file without execute permission is found, then fails to start."""
        script(tmp_path, "p", "exit 0", mode=0o644)

        with pytest.raises(cnilib.ExecError, match=r"fork/exec .*/p: permission denied"):
            SubprocessExecutor().exec(invocation(tmp_path, "p"))

    def test_missing_wrapper_is_named(self, tmp_path: Path) -> None:
        """When the wrapper command cannot start, the error names the wrapper."""
        script(tmp_path, "p", "exit 0")
        executor = SubprocessExecutor(wrapper=[str(tmp_path / "no-such-wrapper")])

        with pytest.raises(cnilib.ExecError, match="no-such-wrapper: no such file"):
            executor.exec(invocation(tmp_path, "p"))


class TestTextBusy:
    def _busy(self, path: Path) -> int:
        """Hold ``path`` open for writing, which makes exec fail with ETXTBSY."""
        return os.open(path, os.O_WRONLY)

    def test_retry_succeeds_once_the_writer_is_done(self, tmp_path: Path) -> None:
        """A binary being replaced (ETXTBSY) is retried until it can run."""
        path = script(tmp_path, "p", "printf ok")
        fd = self._busy(path)
        threading.Timer(0.2, os.close, (fd,)).start()

        assert b"ok" == SubprocessExecutor().exec(invocation(tmp_path, "p"))

    def test_gives_up_with_an_error(self, tmp_path: Path) -> None:
        """When ETXTBSY persists, the call fails (libcni would return empty success)."""
        path = script(tmp_path, "p", "printf ok")
        fd = self._busy(path)
        try:
            with pytest.raises(cnilib.ExecError, match="text file busy"):
                SubprocessExecutor().exec(invocation(tmp_path, "p"))
        finally:
            os.close(fd)


class TestInterruption:
    def test_interrupt_kills_the_plugin_group(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An interrupt while waiting kills the plugin's process group before propagating."""
        pid_file = tmp_path / "pid"
        script(tmp_path, "p", f"echo $$ > {pid_file}; sleep 30")

        def interrupted(*args: object, **kwargs: object) -> None:
            deadline = time.monotonic() + 5
            while not pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            raise KeyboardInterrupt

        with monkeypatch.context() as patch:
            patch.setattr("cnilib.invoke._pipes.communicate", interrupted)
            with pytest.raises(KeyboardInterrupt):
                SubprocessExecutor().exec(invocation(tmp_path, "p"))

        pid = int(pid_file.read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    def test_timeout_kills_grandchildren(self, tmp_path: Path) -> None:
        """The deadline kills what the plugin started too, not only the plugin."""
        pid_file = tmp_path / "child"
        script(tmp_path, "p", f"sleep 30 & echo $! > {pid_file}; wait")
        executor = SubprocessExecutor(timeout=0.5)

        with pytest.raises(cnilib.PluginTimeoutError):
            executor.exec(invocation(tmp_path, "p"))

        child = int(pid_file.read_text())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"grandchild {child} survived the deadline")

    def test_infinite_timeout_means_none(self, tmp_path: Path) -> None:
        """math.inf on an invocation disables the deadline (and is not passed to the OS)."""
        script(tmp_path, "p", "printf done")
        call = Invocation(
            command=Command.ADD,
            plugin_type="p",
            stdin=b"",
            path=(str(tmp_path),),
            timeout=float("inf"),
        )

        assert b"done" == SubprocessExecutor(timeout=0.001).exec(call)


class TestVersion:
    def test_pre_version_plugin(self, tmp_path: Path) -> None:
        """A plugin that does not know VERSION is taken to support 0.1.0 only."""
        script(
            tmp_path, "old", 'printf \'{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}\'; exit 1'
        )

        info = SubprocessExecutor().version_info("old", [str(tmp_path)])

        assert ("0.1.0",) == info.supported_versions

    def test_other_failures_propagate(self, tmp_path: Path) -> None:
        """Other VERSION failures are raised."""
        script(tmp_path, "bad", 'printf \'{"code":7,"msg":"nope"}\'; exit 1')

        with pytest.raises(cnilib.PluginError, match="nope"):
            SubprocessExecutor().version_info("bad", [str(tmp_path)])

    def test_version_environment(self, tmp_path: Path) -> None:
        """VERSION gets libcni's dummy netns/ifname/path values."""
        script(
            tmp_path,
            "env",
            'printf \'{"cniVersion":"%s %s %s","supportedVersions":["x"]}\' '
            '"$CNI_NETNS" "$CNI_IFNAME" "$CNI_PATH"',
        )

        info = SubprocessExecutor().version_info("env", [str(tmp_path)])

        assert "dummy dummy dummy" == info.cni_version

    @pytest.mark.parametrize(
        ("stdout", "message"),
        [
            (b"nope", "decoding version info: "),
            (b"[]", "decoding version info: not a JSON object"),
            (b'{"supportedVersions":["1.0.0"]}', "decoding version info: missing field cniVersion"),
            (b'{"cniVersion":"1.0.0"}', "decoding version info: missing field supportedVersions"),
            (b'{"cniVersion":"1.0.0","supportedVersions":[1]}', "must be a list of strings"),
        ],
    )
    def test_decode_errors(self, stdout: bytes, message: str) -> None:
        """Malformed VERSION answers are PluginOutputErrors with libcni's texts."""
        with pytest.raises(cnilib.PluginOutputError, match=message):
            decode_version_info(stdout)

    def test_020_without_supported_versions(self) -> None:
        """A 0.2.0 answer without supportedVersions means 0.1.0 and 0.2.0."""
        info = decode_version_info(b'{"cniVersion":"0.2.0"}')

        assert ("0.1.0", "0.2.0") == info.supported_versions


def run(driver: str, executor: SubprocessExecutor, call: Invocation) -> bytes:
    """One call through the blocking or the asyncio path."""
    return executor.exec(call) if driver == "sync" else asyncio.run(executor.aexec(call))


class TestOutputBounds:
    @pytest.mark.parametrize("driver", ["sync", "async"])
    def test_runaway_stdout_is_cut_off(self, tmp_path: Path, driver: str) -> None:
        """A plugin printing without end is killed at the stdout cap, long before its deadline."""
        script(tmp_path, "p", "exec yes")
        executor = SubprocessExecutor(timeout=60)
        started = time.monotonic()

        with pytest.raises(cnilib.PluginOutputError, match="printed more than"):
            run(driver, executor, invocation(tmp_path, "p"))

        assert time.monotonic() - started < 30

    @pytest.mark.parametrize("driver", ["sync", "async"])
    def test_stderr_keeps_the_tail(self, tmp_path: Path, driver: str) -> None:
        """Megabytes of stderr are trimmed to the end, which explains the failure."""
        script(
            tmp_path, "p", "head -c 5000000 /dev/zero | tr '\\\\0' x >&2; echo THE-END >&2; exit 1"
        )
        executor = SubprocessExecutor(timeout=60)

        with pytest.raises(cnilib.PluginOutputError) as info:
            run(driver, executor, invocation(tmp_path, "p"))

        assert b"THE-END" in info.value.stderr

    def test_closed_pipes_do_not_end_the_deadline(self, tmp_path: Path) -> None:
        """A plugin that closes its output but keeps running still meets its deadline."""
        script(tmp_path, "p", "exec >&- 2>&-; sleep 30")

        started = time.monotonic()
        with pytest.raises(cnilib.PluginTimeoutError):
            SubprocessExecutor(timeout=0.5).exec(invocation(tmp_path, "p"))

        assert time.monotonic() - started < 5
