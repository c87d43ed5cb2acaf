"""Keeping a configuration directory loaded: reload whenever it changes.

containerd watches its CNI configuration directory and reloads the networks
on every change, so that a network plugin's installer can drop its
configuration in after the runtime has started. These helpers do the same
with watchfiles (inotify), the ``watch`` extra (``pip install 'cnilib[watch]'``),
imported only when a watch starts.

Each reload is a full :func:`scan_conf_dir`: a file that cannot be loaded is
logged at WARNING and listed in ``problems`` and never hides the others; a
network whose file turns bad is *dropped* from ``networks`` (and reported),
not kept at its last good version, because the runtime could then no longer
DEL with the configuration the file now holds and would keep attaching
containers to a network its administrator has changed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from types import ModuleType
from typing import TYPE_CHECKING

from cnilib._log import get_logger
from cnilib.config._load import ConfDir, scan_conf_dir
from cnilib.errors import CNIError, ConfigError

if TYPE_CHECKING:
    import asyncio

__all__ = ["ConfDirWatcher", "awatch_conf_dir", "watch_conf_dir"]

log = get_logger("cnilib.config")

RESCAN_AFTER_MS = 1000
"""The watcher starts after the first scan; once it runs (at the latest this
long after), the directory is scanned again, so that a change made in between
is not missed."""


def _watchfiles() -> ModuleType:
    try:
        import watchfiles
    except ImportError as exc:
        raise ImportError(
            "watching a CNI configuration directory needs watchfiles: pip install 'cnilib[watch]'"
        ) from exc
    return watchfiles


def _prepare(directory: str | os.PathLike[str]) -> str:
    """The directory as a str, created (0755) if missing, as containerd creates its own."""
    path = os.fspath(directory)
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create or watch directory: {exc.strerror}", path=path) from exc
    return path


def _fingerprint(conf_dir: ConfDir) -> tuple[object, ...]:
    """What a reload may change: each network's file and bytes, each problem's text."""
    return (
        tuple((n.source, n.bytes, tuple(p.bytes for p in n.plugins)) for n in conf_dir.networks),
        tuple(str(p) for p in conf_dir.problems),
    )


def watch_conf_dir(
    directory: str | os.PathLike[str],
    *,
    max_networks: int | None = None,
    stop_event: threading.Event | None = None,
) -> Generator[ConfDir, None, None]:
    """Yield the directory's configuration now, then again after each change to it.

    The first :class:`ConfDir` comes at once; each later one only when what
    loads (or fails to) differs from the one before, so touching a file
    yields nothing. Plugin subdirectories (``<dir>/<network>/*.conf``) are
    watched too. A missing directory is created. Setting ``stop_event`` (or
    closing the generator) ends the watch. ``max_networks`` as for
    :func:`scan_conf_dir` (``1``: only the default network).
    """
    watchfiles = _watchfiles()
    path = _prepare(directory)
    current = scan_conf_dir(path, max_networks=max_networks)
    last = _fingerprint(current)
    yield current
    started = False
    for changes in watchfiles.watch(
        path,
        stop_event=stop_event,
        yield_on_timeout=True,
        rust_timeout=RESCAN_AFTER_MS,
    ):
        if not changes and started:
            continue
        started = True
        current = scan_conf_dir(path, max_networks=max_networks)
        fingerprint = _fingerprint(current)
        if fingerprint != last:
            last = fingerprint
            yield current


async def awatch_conf_dir(
    directory: str | os.PathLike[str],
    *,
    max_networks: int | None = None,
    stop_event: asyncio.Event | None = None,
) -> AsyncGenerator[ConfDir, None]:
    """:func:`watch_conf_dir` for asyncio: scans run in a worker thread.

    ``stop_event`` (an :class:`asyncio.Event`) ends the watch, as does
    breaking out of the loop or cancelling the task.
    """
    import asyncio  # only for those who watch with it: it is a costly import

    watchfiles = _watchfiles()
    path = await asyncio.to_thread(_prepare, directory)
    current = await asyncio.to_thread(scan_conf_dir, path, max_networks=max_networks)
    last = _fingerprint(current)
    yield current
    started = False
    async for changes in watchfiles.awatch(
        path,
        stop_event=stop_event,
        yield_on_timeout=True,
        rust_timeout=RESCAN_AFTER_MS,
    ):
        if not changes and started:
            continue
        started = True
        current = await asyncio.to_thread(scan_conf_dir, path, max_networks=max_networks)
        fingerprint = _fingerprint(current)
        if fingerprint != last:
            last = fingerprint
            yield current


class ConfDirWatcher:
    """The configuration of a directory, kept current by a background thread.

    containerd's configuration syncer: :attr:`current` is always the latest
    :class:`ConfDir` (loaded before the constructor returns), and
    ``on_change`` is called with each new one, on the watcher's thread. An
    exception from ``on_change`` is logged and the watch goes on. Use as a
    context manager, or call :meth:`close`::

        with ConfDirWatcher("/etc/cni/net.d", max_networks=1) as watcher:
            default = watcher.current.default
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_networks: int | None = None,
        on_change: Callable[[ConfDir], None] | None = None,
    ) -> None:
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._on_change = on_change
        self._generation = 0
        self._updates = watch_conf_dir(directory, max_networks=max_networks, stop_event=self._stop)
        self._current = next(self._updates)
        self._thread = threading.Thread(target=self._run, name="cnilib-conf-watch", daemon=True)
        self._thread.start()

    @property
    def current(self) -> ConfDir:
        """The latest configuration of the directory."""
        with self._changed:
            return self._current

    @property
    def generation(self) -> int:
        """How many times the configuration changed since the watch started."""
        with self._changed:
            return self._generation

    def wait_for_change(self, generation: int, timeout: float | None = None) -> bool:
        """Wait until :attr:`generation` is past ``generation``; False at ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: self._generation > generation, timeout)

    def _run(self) -> None:
        try:
            for conf_dir in self._updates:
                with self._changed:
                    self._current = conf_dir
                    self._generation += 1
                    self._changed.notify_all()
                if self._on_change is not None:
                    try:
                        self._on_change(conf_dir)
                    except Exception:  # the caller's bug must not end the watch
                        log.exception("on_change callback of %r failed", self)
        except CNIError as exc:  # e.g. the directory became unreadable
            log.error("watching %s stopped: %s", self._current.directory, exc)

    def close(self) -> None:
        """Stop watching and wait for the thread to end (idempotent)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> ConfDirWatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ConfDirWatcher({self._current.directory!r})"
