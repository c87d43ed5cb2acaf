"""A netns path that is no network namespace (a FIFO above all) is refused at
once: opening it must never block, in-process plugins have no process to kill."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import cnilib
from cnilib.errors import CNIError
from cnilib.netlink import NetNSError, NetNSHandle, NetNSNotFoundError
from cnilib.plugins._executor import InProcessExecutor
from tests.unit._guards import NO_SUCH_HOST


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A FIFO; on teardown a writer opens it, so no reader stays blocked on it."""
    path = tmp_path / "netns-fifo"
    os.mkfifo(path)
    yield path
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: nobody is reading
        return
    os.close(fd)


def in_thread(fn: Callable[[], object], limit: float = 5.0) -> BaseException | None:
    """Run ``fn`` in a thread; fail (instead of hanging) if it takes over ``limit``."""
    outcome: list[BaseException | None] = []

    def main() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still blocked after {limit} s"
    return outcome[0]


class TestNotANamespace:
    def test_fifo_netns_fails_fast_end_to_end(self, tmp_path: Path, fifo: Path) -> None:
        """ADD with CNI_NETNS naming a FIFO fails at once with a CNIError (it used to block
        forever in open(2), with no deadline to end it)."""
        conf = cnilib.conflist_from_bytes(
            json.dumps(
                {"cniVersion": "1.1.0", "name": "lo", "plugins": [{"type": "loopback"}]}
            ).encode()
        )
        cni = cnilib.CNI(
            ["/opt/cni/bin"],
            cache_dir=tmp_path / "cache",
            executor=InProcessExecutor(host_netns=NO_SUCH_HOST),
        )
        started = time.monotonic()

        error = in_thread(
            lambda: cni.add_network_list(conf, cnilib.RuntimeConf("c1", str(fifo), "eth0"))
        )

        assert isinstance(error, CNIError)
        assert f"netns: open {fifo}: is a FIFO, not a network namespace" in str(error)
        assert time.monotonic() - started < 1

    def test_open_refuses_what_is_no_namespace(self, tmp_path: Path, fifo: Path) -> None:
        """FIFO, socket, directory, regular file: each refused with Go's "not a network
        namespace" kind of error, without blocking; a missing path is NotFound."""
        regular = tmp_path / "file"
        regular.write_text("")
        sock_path = tmp_path / "sock"
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(sock_path))
        try:
            cases = {
                fifo: "is a FIFO, not a network namespace",
                sock_path: "is a socket, not a network namespace",
                tmp_path: "is a directory, not a network namespace",
                regular: "not a network namespace",
                Path("/dev/null"): "is a character device, not a network namespace",
            }
            for path, reason in cases.items():
                error = in_thread(lambda p=path: NetNSHandle.open(p))  # type: ignore[misc]
                assert isinstance(error, NetNSError), path
                assert str(error) == f"netns: open {path}: {reason}"
            missing = in_thread(lambda: NetNSHandle.open(tmp_path / "gone"))
            assert isinstance(missing, NetNSNotFoundError)
        finally:
            sock.close()

    def test_a_real_namespace_still_opens(self) -> None:
        """This thread's own namespace (nsfs) opens and is identified."""
        with NetNSHandle.open("/proc/thread-self/ns/net") as handle:
            assert handle.fd >= 0
            st = os.stat("/proc/thread-self/ns/net")
            assert handle.key == (st.st_dev, st.st_ino)
