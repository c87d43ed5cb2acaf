"""Watching a configuration directory: reloads on write, change, delete and bad files.

No assertion is about time: each test waits for the reload it expects, and a
watchdog ends the watch after a generous minute, which fails the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import cnilib
from cnilib.config import ConfDir, ConfDirWatcher, awatch_conf_dir, watch_conf_dir

pytest.importorskip("watchfiles")

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


def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without watchfiles the error names the extra to install."""
    import sys

    monkeypatch.setitem(sys.modules, "watchfiles", None)

    with pytest.raises(ImportError, match=r"cnilib\[watch\]"):
        next(watch_conf_dir(tmp_path))


def test_exported_from_config() -> None:
    """The watch helpers are in cnilib.config."""
    assert cnilib.config.watch_conf_dir is watch_conf_dir
