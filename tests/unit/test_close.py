"""close() and context managers: CNI, AsyncCNI and the in-process executor."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import cnilib
from cnilib.invoke import Invocation
from cnilib.testing import MockExecutor

LIST = cnilib.conflist_from_dict(
    {"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "loopback"}]}
)
RT = cnilib.RuntimeConf("ctr1", "/run/netns/ctr1", "eth0")


class _Closable(MockExecutor):
    def __init__(self) -> None:
        super().__init__(lambda invocation: b'{"cniVersion":"1.0.0"}')
        self.closes = 0

    def close(self) -> None:
        self.closes += 1


def _call_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cnilib-inprocess-call"]


class TestCNIClose:
    def test_context_manager_closes_the_executor_once(self, tmp_path: Path) -> None:
        """with CNI(...) closes the executor on exit; a second close() does nothing."""
        executor = _Closable()
        with cnilib.CNI(cache_dir=tmp_path, executor=executor) as cni:
            assert cni.add_network_list(LIST, RT) is not None
            open_inside = not cni.closed

        cni.close()

        assert open_inside
        assert cni.closed
        assert 1 == executor.closes

    def test_verbs_after_close_raise(self, tmp_path: Path) -> None:
        """After close, a verb raises ClosedError before any plugin runs."""
        executor = _Closable()
        cni = cnilib.CNI(cache_dir=tmp_path, executor=executor)
        cni.close()

        with pytest.raises(cnilib.ClosedError, match="CNI is closed"):
            cni.add_network_list(LIST, RT)
        with pytest.raises(cnilib.ClosedError):
            cni.status_network_list(LIST)
        assert [] == executor.invocations

    def test_status_report_after_close_raises(self, tmp_path: Path) -> None:
        """status_report and ready refuse a closed runtime rather than report on it."""
        executor = _Closable()
        cni = cnilib.CNI(cache_dir=tmp_path, executor=executor)
        cni.close()

        with pytest.raises(cnilib.ClosedError, match="CNI is closed"):
            cni.status_report([LIST])
        with pytest.raises(cnilib.ClosedError):
            cni.status_report([LIST], status=False)
        with pytest.raises(cnilib.ClosedError):
            cni.ready([LIST])
        assert [] == executor.invocations

    def test_executor_without_close(self, tmp_path: Path) -> None:
        """An executor with nothing to close (SubprocessExecutor) is fine."""
        with cnilib.CNI(cache_dir=tmp_path) as cni:
            pass

        assert cni.closed


class TestAsyncCNIClose:
    def test_async_context_manager(self, tmp_path: Path) -> None:
        """async with AsyncCNI(...) closes; later verbs raise ClosedError."""
        executor = _Closable()

        async def main() -> cnilib.AsyncCNI:
            async with cnilib.AsyncCNI(cache_dir=tmp_path, executor=executor) as cni:
                await cni.add_network_list(LIST, RT)
            with pytest.raises(cnilib.ClosedError):
                await cni.delete_network_list(LIST, RT)
            await cni.aclose()
            return cni

        cni = asyncio.run(main())

        assert cni.closed
        assert 1 == executor.closes

    def test_status_report_after_aclose_raises(self, tmp_path: Path) -> None:
        """AsyncCNI.status_report and ready refuse a closed runtime too."""
        executor = _Closable()

        async def main() -> None:
            cni = cnilib.AsyncCNI(cache_dir=tmp_path, executor=executor)
            await cni.aclose()
            with pytest.raises(cnilib.ClosedError, match="AsyncCNI is closed"):
                await cni.status_report([LIST])
            with pytest.raises(cnilib.ClosedError):
                await cni.status_report([LIST], status=False)
            with pytest.raises(cnilib.ClosedError):
                await cni.ready([LIST])

        asyncio.run(main())

        assert [] == executor.invocations


class TestInProcessExecutorClose:
    def test_close_ends_idle_threads_and_refuses_calls(self) -> None:
        """After a call, close() ends the idle call thread; a later call raises ClosedError."""
        before = set(_call_threads())
        executor = cnilib.InProcessExecutor()
        executor.exec(Invocation.version("loopback", ()))
        [mine] = set(_call_threads()) - before  # idle now, for 30 s unless closed

        with executor:
            pass

        mine.join(timeout=60)  # ends at once; the timeout only bounds a failure
        assert not mine.is_alive()
        with pytest.raises(cnilib.ClosedError, match="closed"):
            executor.exec(Invocation.version("loopback", ()))
        executor.close()  # idempotent

    def test_async_call_after_close(self) -> None:
        """aexec after close raises ClosedError too."""
        executor = cnilib.InProcessExecutor()
        executor.close()

        with pytest.raises(cnilib.ClosedError):
            asyncio.run(executor.aexec(Invocation.version("loopback", ())))

    def test_cni_closes_its_in_process_executor(self, tmp_path: Path) -> None:
        """CNI.close() closes the in-process executor it was given."""
        executor = cnilib.InProcessExecutor()
        with cnilib.CNI(cache_dir=tmp_path, executor=executor):
            pass

        assert executor.closed

    def test_cni_closes_a_chain_and_its_members_once(self, tmp_path: Path) -> None:
        """A chain closes each of its executors once, the ones without close() left alone."""
        inprocess = cnilib.InProcessExecutor()
        closable = _Closable()
        chain = cnilib.ChainExecutor(inprocess, closable, closable, cnilib.SubprocessExecutor())

        with cnilib.CNI(cache_dir=tmp_path, executor=chain):
            pass

        assert inprocess.closed
        assert 1 == closable.closes
