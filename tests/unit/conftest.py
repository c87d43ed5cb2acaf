"""Unit tests never touch the machine's own network namespace.

They run as root in CI, and plugins run in-process here: a plugin bug that
reaches host-side code (a bridge, a veth end, an iptables rule, a sysctl)
would act on the machine itself. Requests and executors pass
``tests.unit._guards.NO_SUCH_HOST`` as their host namespace; the autouse
fixture below is the backstop for whatever still names the process's own
namespace (a forgotten ``host_netns``, a ``run_here``, ``/proc/self/ns/net``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from cnilib.netlink import _pool, netns_label, open_netns
from cnilib.plugins._hosttools import tools

_OWN_NETNS = os.stat("/proc/self/ns/net")
_OWN_KEY = (_OWN_NETNS.st_dev, _OWN_NETNS.st_ino)
"""(nsfs device, inode) of this process's namespace, read at import on the main
thread: the namespace of the machine (or of whatever ``ip netns exec`` pytest runs in)."""

_MESSAGE = "a unit test reached the machine's own network namespace: "


class _Reached:
    """What the guards refused during one test (thread-safe: plugins run on call threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.what: list[str] = []

    def refuse(self, what: str) -> AssertionError:
        with self._lock:
            self.what.append(what)
        return AssertionError(_MESSAGE + what)


def _guard_submit(reached: _Reached, original: Any) -> Callable[..., Future[Any]]:
    """``NetnsPool.submit`` (behind ``run_in_netns``, ``arun_in_netns``, ``run_here``)
    refusing a job for the process's own namespace, by any name (None, a path, an fd)."""

    def submit(
        self: _pool.NetnsPool,
        target: _pool.NetnsTarget,
        fn: Callable[..., Any],
        /,
        *a: Any,
        **k: Any,
    ) -> Future[Any]:
        try:
            with open_netns(target) as handle:
                key = handle.key
        except Exception:  # not a namespace: the real submit raises its own error
            key = None
        if key == _OWN_KEY:
            name = getattr(fn, "__qualname__", repr(fn))
            raise reached.refuse(f"run_in_netns({target!r}, {name})")
        future: Future[Any] = original(self, target, fn, *a, **k)
        return future

    return submit


def _guard_netns_label(reached: _Reached, original: Callable[[], str]) -> Callable[[], str]:
    """``run_tool``'s worker check (iptables, nft, tc) also refusing a worker that sits in
    the process's own namespace (one started before the test, out of this guard's sight)."""

    def netns_label() -> str:
        label = original()  # off a worker: NotOnWorkerError, as without the guard
        st = os.stat("/proc/thread-self/ns/net")
        if (st.st_dev, st.st_ino) == _OWN_KEY:
            raise reached.refuse(f"a host tool on the worker of {label!r}")
        return label

    return netns_label


@pytest.fixture(autouse=True)
def _no_host_network_namespace(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse (AssertionError) netlink jobs and host tools aimed at the process's own
    namespace, and fail the test afterwards even if the plugin turned the refusal into
    an error the test expected (a code-999 ``PluginError``, say)."""
    reached = _Reached()
    monkeypatch.setattr(_pool.NetnsPool, "submit", _guard_submit(reached, _pool.NetnsPool.submit))
    # run_tool looks the name up in its module: that lookup is the one replaced.
    monkeypatch.setattr(tools, "netns_label", _guard_netns_label(reached, netns_label))
    yield
    if reached.what:
        pytest.fail(_MESSAGE + "; ".join(reached.what), pytrace=False)
