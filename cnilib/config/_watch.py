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
import stat
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from contextlib import aclosing
from types import ModuleType
from typing import TYPE_CHECKING

from cnilib._log import get_logger
from cnilib.config._load import scan_conf_dir
from cnilib.config._model import ConfDir
from cnilib.errors import CNIError, ConfigError

if TYPE_CHECKING:
    import asyncio

__all__ = ["ConfDirWatcher", "awatch_conf_dir", "watch_conf_dir"]

log = get_logger("cnilib.config")

RESCAN_AFTER_MS = 1000
"""The watcher starts after the first scan; once it runs (at the latest this
long after), the directory is scanned again, so that a change made in between
is not missed."""

GONE_POLL_S = 1.0
"""While the watched directory does not exist, how often to look for it again."""


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


def _watch_error(path: str, exc: Exception) -> ConfigError:
    """A failure of watchfiles (inotify's watch limit, a failing watcher) as a ConfigError."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return ConfigError(f"cannot watch directory: {reason}", path=path)


def _probe(watchfiles: ModuleType, path: str) -> None:
    """Start a watch and stop it at once.

    What keeps a watch from starting (inotify's watch limit, a directory
    that cannot be read) is then raised to the caller of the first ``next``,
    not later from inside a loop, or a thread, that nobody is looking at.
    """
    probe = watchfiles.watch(path, yield_on_timeout=True, rust_timeout=1, step=1, debounce=1)
    try:
        next(probe, None)
    except (OSError, RuntimeError) as exc:  # watchfiles' internal errors are RuntimeErrors
        raise _watch_error(path, exc) from exc
    finally:
        probe.close()


def _identity(path: str) -> tuple[int, int] | None:
    """The directory's (device, inode), or None if there is no directory there.

    A watch follows the inode: once the directory is removed (or replaced
    by a new one of the same name) the watch hears nothing more.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _replaced(path: str, identity: tuple[int, int], changes: set[tuple[object, str]]) -> bool:
    """Whether the watched directory is no longer the one at ``path``.

    A change to the directory itself counts too: a directory removed and
    made again may get the freed inode back, and a watch on it hears nothing.
    """
    root = os.path.abspath(path)
    return _identity(path) != identity or any(os.path.abspath(p) == root for _, p in changes)


def _gone(path: str) -> ConfDir:
    """The state while the directory does not exist: no networks, and why."""
    log.warning("configuration directory %s is gone; waiting for it to reappear", path)
    problem = ConfigError("the configuration directory is gone (waiting for it)", path=path)
    return ConfDir(path, (), (problem,))


def _stopped(stop_event: threading.Event | asyncio.Event | None) -> bool:
    return stop_event is not None and stop_event.is_set()


def _ticks(
    watchfiles: ModuleType, path: str, stop_event: threading.Event | None
) -> Generator[None, None, None]:
    """Yield when the directory should be scanned again: once the watch has
    started, then after each change. Ends when the watch is stopped or the
    directory it watches is no longer the one at ``path``."""
    identity = _identity(path)
    if identity is None:
        return
    started = False
    try:
        for changes in watchfiles.watch(
            path,
            stop_event=stop_event,
            yield_on_timeout=True,
            rust_timeout=RESCAN_AFTER_MS,
        ):
            if _replaced(path, identity, changes):
                return
            if changes or not started:
                started = True
                yield
    except FileNotFoundError:  # removed before the watch could start
        return
    except (OSError, RuntimeError) as exc:
        raise _watch_error(path, exc) from exc


def _wait_for_directory(path: str, stop_event: threading.Event | None) -> bool:
    """Poll until the directory is back (True) or the watch is stopped (False)."""
    while _identity(path) is None:
        if stop_event is None:
            time.sleep(GONE_POLL_S)
        elif stop_event.wait(GONE_POLL_S):
            return False
    log.info("configuration directory %s is back", path)
    return True


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
    watched too. A missing directory is created. If the directory is removed
    later, a :class:`ConfDir` without networks whose ``problems`` say so is
    yielded (and logged at WARNING); once a directory is there again it is
    watched and scanned. Setting ``stop_event`` (or closing the generator)
    ends the watch. ``max_networks`` as for :func:`scan_conf_dir` (``1``:
    only the default network).

    A directory that cannot be watched (inotify's watch limit reached) is a
    :class:`ConfigError`, raised by the first ``next`` or, if the watch
    fails later, by the ``next`` that meets it.
    """
    watchfiles = _watchfiles()
    path = _prepare(directory)
    _probe(watchfiles, path)
    current = scan_conf_dir(path, max_networks=max_networks)
    last = _fingerprint(current)
    yield current
    while True:
        for _ in _ticks(watchfiles, path, stop_event):
            current = scan_conf_dir(path, max_networks=max_networks)
            fingerprint = _fingerprint(current)
            if fingerprint != last:
                last = fingerprint
                yield current
        if _stopped(stop_event):
            return
        if _identity(path) is None:
            current = _gone(path)
            if _fingerprint(current) != last:
                last = _fingerprint(current)
                yield current
            if not _wait_for_directory(path, stop_event):
                return
        # else the directory was replaced: watch the new one; its first tick rescans


async def _aticks(
    watchfiles: ModuleType, path: str, stop_event: asyncio.Event | None
) -> AsyncGenerator[None, None]:
    """:func:`_ticks` for asyncio."""
    identity = _identity(path)
    if identity is None:
        return
    started = False
    try:
        async with aclosing(
            watchfiles.awatch(
                path,
                stop_event=stop_event,
                yield_on_timeout=True,
                rust_timeout=RESCAN_AFTER_MS,
            )
        ) as watch:
            async for changes in watch:
                if _replaced(path, identity, changes):
                    return
                if changes or not started:
                    started = True
                    yield
    except FileNotFoundError:
        return
    except (OSError, RuntimeError) as exc:
        raise _watch_error(path, exc) from exc


async def awatch_conf_dir(
    directory: str | os.PathLike[str],
    *,
    max_networks: int | None = None,
    stop_event: asyncio.Event | None = None,
) -> AsyncGenerator[ConfDir, None]:
    """:func:`watch_conf_dir` for asyncio: scans run in a worker thread.

    ``stop_event`` (an :class:`asyncio.Event`) ends the watch, as does
    breaking out of the loop or cancelling the task. A removed directory and
    a directory that cannot be watched are handled as by
    :func:`watch_conf_dir`.
    """
    import asyncio  # only for those who watch with it: it is a costly import

    watchfiles = _watchfiles()
    path = await asyncio.to_thread(_prepare, directory)
    await asyncio.to_thread(_probe, watchfiles, path)
    current = await asyncio.to_thread(scan_conf_dir, path, max_networks=max_networks)
    last = _fingerprint(current)
    yield current
    while True:
        async with aclosing(_aticks(watchfiles, path, stop_event)) as ticks:
            async for _ in ticks:
                current = await asyncio.to_thread(scan_conf_dir, path, max_networks=max_networks)
                fingerprint = _fingerprint(current)
                if fingerprint != last:
                    last = fingerprint
                    yield current
        if _stopped(stop_event):
            return
        if _identity(path) is None:
            current = _gone(path)
            if _fingerprint(current) != last:
                last = _fingerprint(current)
                yield current
            while _identity(path) is None:
                if stop_event is None:
                    await asyncio.sleep(GONE_POLL_S)
                    continue
                try:
                    await asyncio.wait_for(stop_event.wait(), GONE_POLL_S)
                except TimeoutError:
                    continue
                return
            log.info("configuration directory %s is back", path)


class ConfDirWatcher:
    """The configuration of a directory, kept current by a background thread.

    containerd's configuration syncer: :attr:`current` is always the latest
    :class:`ConfDir` (loaded before the constructor returns), and
    ``on_change`` is called with each new one, on the watcher's thread. An
    exception from ``on_change`` is logged and the watch goes on. Use as a
    context manager, or call :meth:`close`::

        with ConfDirWatcher("/etc/cni/net.d", max_networks=1) as watcher:
            default = watcher.current.default

    A directory that cannot be watched raises :class:`ConfigError` from the
    constructor. Should the watch fail later, the failure is logged at ERROR
    on the ``cnilib.config`` logger, :attr:`alive` turns False, :attr:`error`
    holds it, and :meth:`wait_for_change` raises it: :attr:`current` is then
    no longer kept current.
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
        self._error: CNIError | None = None
        self._updates = watch_conf_dir(directory, max_networks=max_networks, stop_event=self._stop)
        # Scans, and starts a watch once: what keeps a watch from starting raises here.
        self._current = next(self._updates)
        self._running = True
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

    @property
    def alive(self) -> bool:
        """Whether the watch still runs: False once closed, or once it failed (:attr:`error`)."""
        with self._changed:
            return self._running

    @property
    def error(self) -> CNIError | None:
        """What ended the watch, or ``None`` while it runs (and after a plain :meth:`close`)."""
        with self._changed:
            return self._error

    def wait_for_change(self, generation: int, timeout: float | None = None) -> bool:
        """Wait until :attr:`generation` is past ``generation``.

        False at ``timeout``, or at once if the watch was closed; if the watch
        ended on a failure, that failure (:attr:`error`) is raised.
        """
        with self._changed:
            self._changed.wait_for(
                lambda: self._generation > generation or not self._running, timeout
            )
            if self._generation > generation:
                return True
            if self._error is not None:
                raise self._error
            return False

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
        except Exception as exc:  # whatever it is, say so: a silent death leaves current stale
            directory = self._current.directory
            if isinstance(exc, CNIError):
                error: CNIError = exc
                log.error("watching %s stopped: %s", directory, exc)
            else:
                error = ConfigError(f"watching the directory failed: {exc!r}", path=directory)
                error.__cause__ = exc
                log.error("watching %s stopped", directory, exc_info=exc)
            with self._changed:
                self._error = error
        finally:
            with self._changed:
                self._running = False
                self._changed.notify_all()

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
