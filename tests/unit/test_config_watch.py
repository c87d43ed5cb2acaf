"""Watching a configuration directory: reloads on write, change, delete and bad files.

No assertion is about time: each test waits for the reload it expects, and a
watchdog ends the watch after a generous minute, which fails the test.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

import cnilib
from cnilib.config import ConfDir, ConfDirWatcher, awatch_conf_dir, watch_conf_dir
from cnilib.errors import ConfigError

watchfiles = pytest.importorskip("watchfiles")

GENEROUS = 60.0


def _write(directory: Path, name: str, network: str) -> None:
    """Write atomically (temp file + rename), as installers do: no half-written file."""
    conf = {"cniVersion": "1.0.0", "name": network, "plugins": [{"type": "bridge"}]}
    tmp = directory / f".{name}.tmp"
    tmp.write_text(json.dumps(conf))
    os.replace(tmp, directory / name)


def _names(conf_dir: ConfDir) -> list[str]:
    return [n.name for n in conf_dir.networks]


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    watchdog = threading.Timer(GENEROUS, event.set)
    watchdog.start()
    yield event
    event.set()
    watchdog.cancel()


def _until(updates: Iterator[ConfDir], wanted: Callable[[ConfDir], bool]) -> ConfDir:
    for conf_dir in updates:
        if wanted(conf_dir):
            return conf_dir
    pytest.fail("the watch ended before the expected reload")


def _watcher_until(watcher: ConfDirWatcher, wanted: Callable[[ConfDir], bool]) -> ConfDir:
    """Wait (each change at most GENEROUS) until the watcher's current state is wanted."""
    while True:
        generation = watcher.generation
        current = watcher.current
        if wanted(current):
            return current
        if not watcher.wait_for_change(generation, timeout=GENEROUS):
            pytest.fail("no reload came")


def _is_gone(conf_dir: ConfDir) -> bool:
    return not conf_dir.networks and any("gone" in str(p) for p in conf_dir.problems)


def _limit_reached(*args: object, **kwargs: object) -> Iterator[set[tuple[int, str]]]:
    """watchfiles.watch when the inotify watch limit is reached."""
    raise OSError(errno.ENOSPC, "inotify watch limit reached")
    yield set()  # type: ignore[unreachable]  # a generator, as watchfiles.watch is


def _fails_after_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first watch (made at once to check one can start) works; later ones fail."""
    real = watchfiles.watch
    calls: list[object] = []

    def watch(*args: object, **kwargs: object) -> Iterator[set[tuple[int, str]]]:
        calls.append(args)
        if len(calls) == 1:
            return real(*args, **kwargs)  # type: ignore[no-any-return]
        return _limit_reached()

    monkeypatch.setattr(watchfiles, "watch", watch)


class TestWatchConfDir:
    def test_write_modify_delete(self, tmp_path: Path, stop: threading.Event) -> None:
        """A new file, a changed network name and a removal each yield the new state."""
        updates = watch_conf_dir(tmp_path, stop_event=stop)
        assert [] == _names(next(updates))

        _write(tmp_path, "10-a.conflist", "a")
        assert ["a"] == _names(_until(updates, lambda c: bool(c.networks)))

        _write(tmp_path, "10-a.conflist", "renamed")
        assert ["renamed"] == _names(_until(updates, lambda c: _names(c) != ["a"]))

        (tmp_path / "10-a.conflist").unlink()
        assert [] == _names(_until(updates, lambda c: not c.networks))
        updates.close()

    def test_default_network_follows_the_files(self, tmp_path: Path, stop: threading.Event) -> None:
        """A file sorting first becomes the default; removing it gives the default back."""
        _write(tmp_path, "20-b.conflist", "b")
        updates = watch_conf_dir(tmp_path, max_networks=1, stop_event=stop)
        first = next(updates)
        assert first.default is not None
        assert "b" == first.default.name

        _write(tmp_path, "10-a.conflist", "a")
        now = _until(updates, lambda c: c.default is not None and c.default.name == "a")
        assert ["a"] == _names(now)  # max_networks=1: only the default

        (tmp_path / "10-a.conflist").unlink()
        back = _until(updates, lambda c: c.default is not None and c.default.name == "b")
        assert ["b"] == _names(back)
        updates.close()

    def test_bad_file_is_reported_and_hides_nothing(
        self, tmp_path: Path, stop: threading.Event
    ) -> None:
        """A network whose file turns bad is dropped and reported; the others stay."""
        _write(tmp_path, "10-a.conflist", "a")
        _write(tmp_path, "20-b.conflist", "b")
        updates = watch_conf_dir(tmp_path, stop_event=stop)
        assert ["a", "b"] == _names(next(updates))

        tmp = tmp_path / ".bad.tmp"
        tmp.write_text("{not json")
        os.replace(tmp, tmp_path / "10-a.conflist")
        broken = _until(updates, lambda c: bool(c.problems))
        assert ["b"] == _names(broken)
        assert "10-a.conflist" in str(broken.problems[0])
        assert broken.default is not None
        assert "b" == broken.default.name

        _write(tmp_path, "10-a.conflist", "a")
        fixed = _until(updates, lambda c: not c.problems)
        assert ["a", "b"] == _names(fixed)
        updates.close()

    def test_plugin_subdirectory_is_watched(self, tmp_path: Path, stop: threading.Event) -> None:
        """A plugin added in <dir>/<network>/ reloads that network with it."""
        _write(tmp_path, "10-a.conflist", "a")
        updates = watch_conf_dir(tmp_path, stop_event=stop)
        assert 1 == len(next(updates).networks[0].plugins)

        (tmp_path / "a").mkdir()
        (tmp_path / "a" / "portmap.conf").write_text('{"type": "portmap"}')
        grown = _until(updates, lambda c: len(c.networks[0].plugins) == 2)
        assert ["bridge", "portmap"] == [p.type for p in grown.networks[0].plugins]
        updates.close()

    def test_missing_directory_is_created(self, tmp_path: Path, stop: threading.Event) -> None:
        """Watching a directory that does not exist yet creates it, as containerd does."""
        directory = tmp_path / "net.d"
        updates = watch_conf_dir(directory, stop_event=stop)

        assert [] == _names(next(updates))
        assert directory.is_dir()
        updates.close()

    def test_stop_event_ends_the_watch(self, tmp_path: Path) -> None:
        """Setting the stop event ends the iteration."""
        stop = threading.Event()
        updates = watch_conf_dir(tmp_path, stop_event=stop)
        next(updates)
        stop.set()

        assert [] == list(updates)

    def test_unwatchable_directory_raises_at_once(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A watch that cannot start (inotify's limit) is a ConfigError naming the directory."""
        monkeypatch.setattr(watchfiles, "watch", _limit_reached)

        with pytest.raises(ConfigError, match="watch limit") as info:
            next(watch_conf_dir(tmp_path))
        assert str(tmp_path) in str(info.value)
        assert isinstance(info.value.__cause__, OSError)

    def test_watch_failing_later_raises_config_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: threading.Event
    ) -> None:
        """A watch that fails after the first state ends the generator with a ConfigError."""
        _fails_after_probe(monkeypatch)
        updates = watch_conf_dir(tmp_path, stop_event=stop)
        next(updates)

        with pytest.raises(ConfigError, match="watch limit"):
            next(updates)

    def test_removed_directory_is_reported_then_watched_again(
        self, tmp_path: Path, stop: threading.Event, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A removed directory empties the state with a problem; once back it is watched."""
        caplog.set_level(logging.WARNING, logger="cnilib.config")
        directory = tmp_path / "net.d"
        directory.mkdir()
        _write(directory, "10-a.conflist", "a")
        updates = watch_conf_dir(directory, stop_event=stop)
        assert ["a"] == _names(next(updates))

        shutil.rmtree(directory)
        gone = _until(updates, _is_gone)
        assert str(directory) in str(gone.problems[0])
        assert any(
            r.levelno == logging.WARNING and str(directory) in r.getMessage()
            for r in caplog.records
        )

        directory.mkdir()
        _write(directory, "20-b.conflist", "b")
        back = _until(updates, lambda c: _names(c) == ["b"])
        assert () == back.problems

        _write(directory, "30-c.conflist", "c")  # and the new directory is watched
        assert ["b", "c"] == _names(_until(updates, lambda c: len(c.networks) == 2))
        updates.close()

    def test_directory_replaced_at_once_is_watched(
        self, tmp_path: Path, stop: threading.Event
    ) -> None:
        """A directory removed and made again before the watch noticed is still followed."""
        directory = tmp_path / "net.d"
        directory.mkdir()
        _write(directory, "10-a.conflist", "a")
        updates = watch_conf_dir(directory, stop_event=stop)
        assert ["a"] == _names(next(updates))

        shutil.rmtree(directory)
        directory.mkdir()
        _write(directory, "20-b.conflist", "b")

        assert ["b"] == _names(_until(updates, lambda c: _names(c) == ["b"]))
        _write(directory, "30-c.conflist", "c")
        assert ["b", "c"] == _names(_until(updates, lambda c: len(c.networks) == 2))
        updates.close()


class TestConfDirWatcher:
    def test_current_and_callback_follow_changes(self, tmp_path: Path) -> None:
        """current is loaded at once; a new file updates it and calls on_change."""
        seen: list[list[str]] = []
        with ConfDirWatcher(tmp_path, on_change=lambda c: seen.append(_names(c))) as watcher:
            assert [] == _names(watcher.current)
            generation = watcher.generation

            _write(tmp_path, "10-a.conflist", "a")

            assert watcher.wait_for_change(generation, timeout=GENEROUS)
            assert ["a"] == _names(watcher.current)
        assert [["a"]] == seen[-1:]

    def test_failing_callback_does_not_end_the_watch(self, tmp_path: Path) -> None:
        """An exception in on_change is logged; later changes still arrive."""

        def explode(conf_dir: ConfDir) -> None:
            raise RuntimeError("bug in the caller")

        with ConfDirWatcher(tmp_path, on_change=explode) as watcher:
            _write(tmp_path, "10-a.conflist", "a")
            assert watcher.wait_for_change(0, timeout=GENEROUS)
            _write(tmp_path, "20-b.conflist", "b")
            assert watcher.wait_for_change(1, timeout=GENEROUS)

            assert ["a", "b"] == _names(watcher.current)

    def test_close_is_idempotent(self, tmp_path: Path) -> None:
        """close() twice is fine."""
        watcher = ConfDirWatcher(tmp_path)
        watcher.close()
        watcher.close()

    def test_unwatchable_directory_raises_from_constructor(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """What keeps the watch from starting raises before the constructor returns."""
        monkeypatch.setattr(watchfiles, "watch", _limit_reached)

        with pytest.raises(ConfigError, match="watch limit") as info:
            ConfDirWatcher(tmp_path)
        assert str(tmp_path) in str(info.value)

    def test_failing_watch_is_logged_and_seen(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A watch that fails later is logged at ERROR, ends alive, is error, and is raised."""
        caplog.set_level(logging.ERROR, logger="cnilib.config")
        _fails_after_probe(monkeypatch)
        watcher = ConfDirWatcher(tmp_path)
        try:
            with pytest.raises(ConfigError, match="watch limit"):
                watcher.wait_for_change(0, timeout=GENEROUS)
            assert not watcher.alive
            assert isinstance(watcher.error, ConfigError)
            assert str(tmp_path) in str(watcher.error)
            assert any(
                r.levelno == logging.ERROR
                and r.name == "cnilib.config"
                and str(tmp_path) in r.getMessage()
                for r in caplog.records
            )
        finally:
            watcher.close()

    def test_wait_for_change_returns_once_closed(self, tmp_path: Path) -> None:
        """wait_for_change without a timeout does not hang on a closed watcher."""
        watcher = ConfDirWatcher(tmp_path)
        was_alive = watcher.alive
        watcher.close()
        results: list[bool] = []
        waiter = threading.Thread(
            target=lambda: results.append(watcher.wait_for_change(watcher.generation)), daemon=True
        )
        waiter.start()
        waiter.join(GENEROUS)

        assert [False] == results
        assert was_alive
        assert not watcher.alive
        assert watcher.error is None

    def test_removed_directory_comes_back(self, tmp_path: Path) -> None:
        """rmtree then a new directory with a new file: the watcher sees the new network."""
        directory = tmp_path / "net.d"
        with ConfDirWatcher(directory) as watcher:
            _write(directory, "10-a.conflist", "a")
            _watcher_until(watcher, lambda c: _names(c) == ["a"])

            shutil.rmtree(directory)
            _watcher_until(watcher, _is_gone)

            directory.mkdir()
            _write(directory, "20-b.conflist", "b")
            back = _watcher_until(watcher, lambda c: _names(c) == ["b"])
            assert () == back.problems
            assert watcher.alive


class TestAwatchConfDir:
    def test_async_reloads(self, tmp_path: Path) -> None:
        """The asyncio variant yields the initial state, then each change."""

        async def main() -> list[list[str]]:
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(GENEROUS, stop.set)
            states: list[list[str]] = []
            async for conf_dir in awatch_conf_dir(tmp_path, stop_event=stop):
                states.append(_names(conf_dir))
                if not conf_dir.networks:
                    await asyncio.to_thread(_write, tmp_path, "10-a.conflist", "a")
                else:
                    break
            return states

        assert [[], ["a"]] == asyncio.run(main())

    def test_async_failing_watch_raises_config_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A watch that fails after the first state ends the async generator with a ConfigError."""

        async def limit_reached(*args: object, **kwargs: object) -> AsyncIterator[set[object]]:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
            yield set()  # type: ignore[unreachable]  # an async generator, as awatch is

        monkeypatch.setattr(watchfiles, "awatch", limit_reached)

        async def main() -> None:
            updates = awatch_conf_dir(tmp_path)
            await anext(updates)
            with pytest.raises(ConfigError, match="watch limit"):
                await anext(updates)

        asyncio.run(main())

    def test_async_unwatchable_directory_raises_at_once(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The first state is not given for a directory that cannot be watched."""
        monkeypatch.setattr(watchfiles, "watch", _limit_reached)

        async def main() -> None:
            with pytest.raises(ConfigError, match="watch limit"):
                await anext(awatch_conf_dir(tmp_path))

        asyncio.run(main())

    def test_async_removed_directory_comes_back(self, tmp_path: Path) -> None:
        """The asyncio variant reports a removed directory and follows the new one."""
        directory = tmp_path / "net.d"

        async def main() -> list[str]:
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(GENEROUS, stop.set)
            seen: list[str] = []
            async for conf_dir in awatch_conf_dir(directory, stop_event=stop):
                if not seen:
                    seen.append("start")
                    await asyncio.to_thread(shutil.rmtree, directory)
                elif _is_gone(conf_dir) and seen[-1] != "gone":
                    seen.append("gone")
                    await asyncio.to_thread(directory.mkdir)
                    await asyncio.to_thread(_write, directory, "20-b.conflist", "b")
                elif _names(conf_dir) == ["b"]:
                    seen.append("b")
                    break
            return seen

        assert ["start", "gone", "b"] == asyncio.run(main())


def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without watchfiles the error names the extra to install."""
    import sys

    monkeypatch.setitem(sys.modules, "watchfiles", None)

    with pytest.raises(ImportError, match=r"cnilib\[watch\]"):
        next(watch_conf_dir(tmp_path))


def test_exported_from_config() -> None:
    """The watch helpers are in cnilib.config."""
    assert cnilib.config.watch_conf_dir is watch_conf_dir
