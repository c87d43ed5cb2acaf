"""A throwaway etcd server for tests: loopback only, free ports, a data dir of its own.

:class:`EtcdServer` runs the ``etcd`` binary (Debian's ``etcd-server`` package ships
``/usr/bin/etcd``) as a single-member cluster listening on 127.0.0.1 with ports
picked free at the first start, and keeps them and the data dir across
:meth:`~EtcdServer.stop` / :meth:`~EtcdServer.start`, so a test can stage an outage
and a restart that keeps the data (and the leases, which etcd renews to their full
TTL on restart). It is stopped by its PID, never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

__all__ = ["ETCD_INSTALL_HINT", "EtcdServer", "find_etcd"]

ETCD_INSTALL_HINT = "apt-get install etcd-server"

ETCD_ENV = "CNILIB_ETCD"
"""Path of the etcd binary to use, overriding the search of ``PATH`` and ``/usr/bin``."""


def find_etcd() -> str | None:
    """The etcd binary: ``$CNILIB_ETCD``, else ``etcd`` on PATH, else ``/usr/bin/etcd``."""
    configured = os.environ.get(ETCD_ENV)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    found = shutil.which("etcd")
    if found:
        return found
    return "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EtcdServer:
    """One etcd member on loopback. ``start()`` waits until ``/health`` answers."""

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        binary: str | None = None,
        host: str = "127.0.0.1",
        name: str = "cnilib-test",
    ) -> None:
        found = binary or find_etcd()
        if found is None:
            raise FileNotFoundError(f"etcd is not installed ({ETCD_INSTALL_HINT})")
        self.binary = found
        self.host = host
        self.name = name
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "etcd-data"
        self.log_path = self.workdir / "etcd.log"
        self.client_port = 0
        self.peer_port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL, ``http://127.0.0.1:<port>`` (ports are chosen at the first start)."""
        return f"http://{self.host}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _argv(self) -> list[str]:
        client = f"http://{self.host}:{self.client_port}"
        peer = f"http://{self.host}:{self.peer_port}"
        return [
            self.binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{self.name}={peer}",
            "--log-level", "warn",
            "--logger", "zap",
        ]  # fmt: skip

    def start(self, *, timeout: float = 15.0) -> None:
        """Start etcd (same ports and data dir as before, if it ran) and wait for health."""
        if self.running:
            return
        if not self.client_port:
            self.client_port = _free_port(self.host)
            self.peer_port = _free_port(self.host)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"etcd exited with {self._proc.returncode} while starting: {self.log_tail()}"
                )
            if self._healthy():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"etcd at {self.url} not healthy after {timeout} s: "
                                   f"{self.log_tail()}")  # fmt: skip
            time.sleep(0.05)

    def _healthy(self) -> bool:
        # directly, never through a proxy named in the environment (it cannot reach loopback)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.url}/health", timeout=1) as reply:
                return b'"true"' in reply.read()
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop etcd by its PID (SIGTERM, or SIGKILL with ``kill``); idempotent."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def restart(self, *, timeout: float = 15.0) -> None:
        """Stop and start again, keeping the ports and the data."""
        self.stop()
        self.start(timeout=timeout)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines etcd logged (for failure messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> EtcdServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EtcdServer({self.url}, {state})"
