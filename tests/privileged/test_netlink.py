"""cnilib.netlink against the real kernel: namespace handles, worker threads, helpers, errors.

Every test works in throwaway namespaces (the ``container_netns`` factory,
deleted at teardown); the machine's own namespace is only ever *read*.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cnilib import netlink as nl
from cnilib.errors import ErrorCode
from cnilib.netlink._errors import netlink_errors
from cnilib.testing import NetNS
from tests.privileged._kernel import link_names

RTN_MULTICAST = 5

JSON = dict[str, Any]
MakeNS = Callable[[], NetNS]


# --------------------------------------------------------------------------- helpers


def ns_id(path: str) -> str:
    """How ``readlink /proc/.../ns/net`` names the namespace at *path*."""
    return f"net:[{os.stat(path).st_ino}]"


def thread_netns() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def machine_link_names() -> set[str]:
    """Links of the machine's namespace, read (never changed) from the test's own thread."""
    return {name for _, name in socket.if_nameindex()}


class ForkCounter:
    """Counts ``os.fork`` calls in this process (multiprocessing, pyroute2's netns child)."""

    def __init__(self) -> None:
        self.count = 0
        os.register_at_fork(before=self._bump)

    def _bump(self) -> None:
        self.count += 1


_FORKS: ForkCounter | None = None


def fork_counter() -> ForkCounter:
    global _FORKS
    if _FORKS is None:
        _FORKS = ForkCounter()
    return _FORKS


@pytest.fixture
def pool() -> Iterator[nl.NetnsPool]:
    """A private pool, all of its workers retired at teardown."""
    p = nl.NetnsPool()
    try:
        yield p
    finally:
        p.close()


# --------------------------------------------------------------------------- handles


class TestNetNSHandle:
    """Opening namespaces by path or fd."""

    def test_missing_namespace_is_a_clear_error_and_nothing_is_created(self) -> None:
        """A missing path raises NetNSNotFoundError (a FileNotFoundError, code 999) and
        the job never runs; nothing appears under /run/netns."""
        missing = f"/run/netns/cnilib-missing-{secrets.token_hex(4)}"
        before = set(os.listdir("/run/netns"))
        ran: list[bool] = []

        with pytest.raises(nl.NetNSNotFoundError) as info:
            nl.run_in_netns(missing, lambda: ran.append(True))

        assert f"netns: open {missing}: No such file or directory" == str(info.value)
        assert isinstance(info.value, FileNotFoundError)
        assert ErrorCode.INTERNAL == info.value.code
        assert errno.ENOENT == info.value.errno
        assert [] == ran
        assert not os.path.exists(missing)
        assert before == set(os.listdir("/run/netns"))

    @pytest.mark.parametrize(
        ("path", "reason"),
        [
            ("/proc/self/ns/mnt", "a mnt namespace, not a network namespace"),
            ("/proc/self/ns/uts", "a uts namespace, not a network namespace"),
            ("/run/netns", "is a directory, not a network namespace"),
            ("/proc/self/status", "not a network namespace"),
        ],
    )
    def test_not_a_network_namespace(self, path: str, reason: str) -> None:
        """Something that exists but is no network namespace is refused, and not as 'missing'."""
        with pytest.raises(nl.NetNSError) as info:
            nl.open_netns(path)

        assert f"netns: open {path}: {reason}" == str(info.value)
        assert not isinstance(info.value, nl.NetNSNotFoundError)

    def test_key_is_the_namespace_identity(self, cnilib_container_netns: MakeNS) -> None:
        """/run/netns/x and /proc/<pid>/ns/net of a process inside x have one key."""
        a, b = cnilib_container_netns(), cnilib_container_netns()
        holder = subprocess.Popen([*a.exec_prefix, "sleep", "30"])
        try:
            deadline = time.monotonic() + 5
            while ns_id(f"/proc/{holder.pid}/ns/net") != ns_id(a.path):
                assert time.monotonic() < deadline, "sleep never entered the namespace"
                time.sleep(0.01)
            with (
                nl.open_netns(a.path) as by_path,
                nl.open_netns(f"/proc/{holder.pid}/ns/net") as by_pid,
                nl.open_netns(b.path) as other,
            ):
                assert by_path.key == by_pid.key
                assert by_path.key != other.key
        finally:
            holder.kill()
            holder.wait()

    def test_fd_and_handle_targets(self, ns: NetNS, pool: nl.NetnsPool) -> None:
        """An open fd or handle works as a target and stays open (the caller owns it)."""
        with nl.NetNSHandle.open(ns.path) as handle:
            assert ns_id(ns.path) == pool.run(handle.fd, thread_netns)
            assert ns_id(ns.path) == pool.run(handle, thread_netns)
            os.fstat(handle.fd)  # still open
        assert -1 == handle.fd
        with pytest.raises(nl.NetNSError, match="handle is closed"):
            nl.open_netns(handle)

    def test_current_is_the_callers_namespace(self) -> None:
        """NetNSHandle.current() and the None target name the caller's thread namespace."""
        with nl.NetNSHandle.current() as here, nl.open_netns(None) as none:
            assert here.key == none.key
            assert thread_netns() == f"net:[{here.key[1]}]"


# --------------------------------------------------------------------------- workers


class TestRunInNetns:
    """Work runs on a namespace's own worker thread; the caller's thread never moves."""

    def test_caller_thread_namespace_unchanged(self, ns: NetNS) -> None:
        """The job sees the target namespace; the calling thread stays where it was."""
        before = thread_netns()

        seen = nl.run_in_netns(ns.path, thread_netns)

        assert ns_id(ns.path) == seen
        assert before == thread_netns()
        assert before != seen

    def test_operations_land_in_the_target_namespace(self, cnilib_container_netns: MakeNS) -> None:
        """A veth made from a worker appears in the target and peer namespaces per ``ip``,
        and nowhere in the machine's namespace."""
        a, b = cnilib_container_netns(), cnilib_container_netns()
        machine_before = machine_link_names()

        nl.run_in_netns(a.path, nl.add_veth, "cni-va", "cni-vb", peer_netns=b.path)

        assert {"lo", "cni-va"} == link_names(a)
        assert {"lo", "cni-vb"} == link_names(b)
        assert machine_before == machine_link_names()

    def test_no_fork_and_no_thread(self, cnilib_container_netns: MakeNS) -> None:
        """200 operations in two namespaces fork no process and start no thread: the
        caller's thread does the work; the same probe sees pyroute2's
        ``IPRoute(netns=...)`` fork (so it would see ours)."""
        a, b = cnilib_container_netns(), cnilib_container_netns()
        forks = fork_counter()
        threads_before = threading.active_count()
        start = forks.count

        for _ in range(100):
            assert ns_id(a.path) == nl.run_in_netns(a.path, thread_netns)
            assert nl.run_in_netns(b.path, nl.get_link, "lo").up

        assert 0 == forks.count - start
        assert threads_before == threading.active_count()

        from pyroute2 import IPRoute

        with IPRoute(netns=a.name, flags=0) as ipr:
            ipr.link("get", ifname="lo")
        assert forks.count > start

    def test_submitted_jobs_get_one_worker_thread_per_namespace(
        self, cnilib_container_netns: MakeNS, pool: nl.NetnsPool
    ) -> None:
        """Jobs handed over (``submit``, what ``arun_in_netns`` uses) run on one worker
        thread per namespace, never on the caller's."""
        a, b = cnilib_container_netns(), cnilib_container_netns()
        threads_before = threading.active_count()
        seen: set[tuple[str, threading.Thread]] = set()

        def where() -> tuple[str, threading.Thread]:
            return thread_netns(), threading.current_thread()

        for _ in range(20):
            seen.add(pool.submit(a.path, where).result())
            seen.add(pool.submit(b.path, where).result())

        assert threads_before + 2 == threading.active_count()
        assert {ns_id(a.path), ns_id(b.path)} == {netns for netns, _ in seen}
        assert 2 == len(seen)
        assert threading.current_thread() not in {thread for _, thread in seen}

    def test_the_thread_comes_back_also_when_the_job_raises(self, ns: NetNS) -> None:
        """A job that raises leaves its caller's thread where it was, with the error."""
        before = thread_netns()

        def boom() -> None:
            assert ns_id(ns.path) == thread_netns()
            raise KeyboardInterrupt  # even what is not an Exception

        with pytest.raises(KeyboardInterrupt):
            nl.run_in_netns(ns.path, boom)
        assert before == thread_netns()

    def test_nested_jobs_in_other_namespaces_come_back_in_order(
        self, cnilib_container_netns: MakeNS
    ) -> None:
        """A job in A that runs one in B, which runs one in A again: each sees its own
        namespace, and every level is back where it started."""
        a, b = cnilib_container_netns(), cnilib_container_netns()

        def in_b() -> tuple[str, str]:
            inner = nl.run_in_netns(a.path, thread_netns)
            return thread_netns(), inner

        def in_a() -> tuple[str, tuple[str, str], str]:
            return thread_netns(), nl.run_in_netns(b.path, in_b), thread_netns()

        before = thread_netns()
        first, (second, third), again = nl.run_in_netns(a.path, in_a)
        assert (ns_id(a.path), ns_id(b.path), ns_id(a.path), ns_id(a.path)) == (
            first, second, third, again
        )  # fmt: skip
        assert before == thread_netns()

    def test_jobs_for_one_namespace_run_one_at_a_time(self, ns: NetNS) -> None:
        """Callers on several threads into one namespace never overlap: the namespace's
        lock, which replaces the one worker's queue, serializes them."""
        inside = 0
        most = 0
        count = threading.Lock()

        def job() -> None:
            nonlocal inside, most
            with count:
                inside += 1
                most = max(most, inside)
            time.sleep(0.002)
            with count:
                inside -= 1

        def caller() -> None:
            for _ in range(10):
                nl.run_in_netns(ns.path, job)

        threads = [threading.Thread(target=caller) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert 1 == most

    def test_a_job_leaves_no_socket_behind(self, ns: NetNS) -> None:
        """The netlink sockets a job made in the namespace are closed when it ends
        (an open one would keep a deleted namespace alive)."""

        def sockets() -> set[str]:
            fds = os.listdir("/proc/self/fd")
            links = set()
            for fd in fds:
                with contextlib.suppress(OSError):
                    links.add(os.readlink(f"/proc/self/fd/{fd}"))
            return {link for link in links if link.startswith("socket:")}

        before = sockets()
        made = nl.run_in_netns(ns.path, lambda: (nl.get_link("lo"), nl.list_links(), sockets()))
        assert len(made[2] - before) >= 2  # the raw socket and pyroute2's, during the job
        assert before == sockets()

    def test_the_thread_comes_back_also_when_closing_a_socket_fails(
        self, ns: NetNS, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Closing the job's sockets may raise (pyroute2's close runs a good deal of
        code): the thread is back in its own namespace all the same, and the other
        socket is closed too."""
        from cnilib.netlink._raw import RawNetlink

        closed: list[str] = []
        real_close = RawNetlink.close

        def recorded_close(self: RawNetlink) -> None:
            closed.append("raw")
            real_close(self)

        monkeypatch.setattr(RawNetlink, "close", recorded_close)
        before = thread_netns()

        def job() -> None:
            nl.raw()
            ipr = nl.ipr()
            real = ipr.close

            def failing_close(*args: Any, **kwargs: Any) -> None:
                real(*args, **kwargs)
                raise OSError(errno.EIO, "close failed")

            ipr.close = failing_close

        with pytest.raises(OSError, match="close failed"):
            nl.run_in_netns(ns.path, job)
        assert before == thread_netns()
        assert ["raw"] == closed

    def test_a_caller_running_an_event_loop(self, ns: NetNS) -> None:
        """run_in_netns called (blocking) from a coroutine works: pyroute2's synchronous
        calls cannot run on a thread whose asyncio loop is running, so the job goes to
        the namespace's worker there."""

        async def main() -> tuple[list[str], str]:
            names = nl.run_in_netns(ns.path, lambda: [link.name for link in nl.list_links()])
            return names, thread_netns()

        before = thread_netns()
        assert (["lo"], before) == asyncio.run(main())

    def test_a_fork_while_another_thread_holds_a_namespace_forgets_its_lock(
        self, ns: NetNS
    ) -> None:
        """A child forked while another thread is inside a job for a namespace can run
        its own jobs there: the lock that thread held is not the child's."""
        pool = nl.NetnsPool()
        inside, leave = threading.Event(), threading.Event()

        def hold() -> None:
            inside.set()
            leave.wait(timeout=30)

        holder = threading.Thread(target=pool.run, args=(ns.path, hold))
        holder.start()
        try:
            assert inside.wait(timeout=30)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                try:
                    import signal

                    signal.alarm(10)  # a child stuck on the lock dies rather than hangs
                    os._exit(0 if pool.run(ns.path, thread_netns) == ns_id(ns.path) else 2)
                except BaseException:
                    os._exit(3)
            _, status = os.waitpid(pid, 0)
        finally:
            leave.set()
            holder.join()
            pool.close()
        assert os.waitstatus_to_exitcode(status) == 0

    def test_a_child_forked_inside_a_job_comes_back_from_it(self, ns: NetNS) -> None:
        """A child forked by a job leaves the job as its parent does: back in its own
        namespace, its namespace lock released, able to run another job."""
        parent = os.getpid()
        before = thread_netns()
        try:
            pid = nl.run_in_netns(ns.path, os.fork)
        except BaseException:
            if os.getpid() != parent:  # pragma: no cover - the child
                os._exit(3)
            raise
        if pid == 0:  # pragma: no cover - the child
            try:
                ok = before == thread_netns() and ns_id(ns.path) == nl.run_in_netns(
                    ns.path, thread_netns
                )
                os._exit(0 if ok else 2)
            except BaseException:
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0

    def test_a_worker_serves_one_namespace_only(self, cnilib_container_netns: MakeNS) -> None:
        """Each worker thread only ever runs jobs for the namespace it entered."""
        spaces = [cnilib_container_netns() for _ in range(3)]
        small = nl.NetnsPool(max_workers=2)
        seen: dict[threading.Thread, set[str]] = {}

        def record() -> None:
            seen.setdefault(threading.current_thread(), set()).add(thread_netns())

        try:
            for _ in range(5):
                for space in spaces:
                    small.submit(space.path, record).result()
        finally:
            small.close()
        assert all(len(namespaces) == 1 for namespaces in seen.values())
        assert len(seen) > 3  # LRU eviction retired workers; new threads replaced them
        # close() joins the workers it still had; the ones evicted earlier were told to
        # stop and end on their own, soon (not necessarily yet, on a busy machine).
        for thread in seen:
            thread.join(timeout=10)
        assert not any(t.is_alive() for t in seen)

    def test_same_namespace_nested_call_runs_inline(self, ns: NetNS) -> None:
        """A job that asks for its own namespace again runs inline (no deadlock)."""

        def outer() -> tuple[str, str]:
            return threading.current_thread().name, nl.run_in_netns(
                ns.path, lambda: threading.current_thread().name
            )

        outer_thread, inner_thread = nl.run_in_netns(ns.path, outer)
        assert outer_thread == inner_thread

    def test_job_errors_reach_the_caller(self, ns: NetNS) -> None:
        """An exception raised by the job is raised to the caller unchanged."""

        def boom() -> None:
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            nl.run_in_netns(ns.path, boom)
        assert ns_id(ns.path) == nl.run_in_netns(ns.path, thread_netns)  # worker still fine

    def test_concurrent_callers(self, cnilib_container_netns: MakeNS) -> None:
        """Many threads calling into two namespaces each get their own namespace's answer."""
        a, b = cnilib_container_netns(), cnilib_container_netns()
        errors: list[BaseException] = []

        def hammer(space: NetNS) -> None:
            try:
                for _ in range(50):
                    assert ns_id(space.path) == nl.run_in_netns(space.path, thread_netns)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=hammer, args=(s,)) for s in (a, b, a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [] == errors

    def test_idle_workers_retire(self, ns: NetNS) -> None:
        """A worker with no work for ``idle_timeout`` ends (and lets its namespace go)."""
        quick = nl.NetnsPool(idle_timeout=0.05)
        thread = quick.submit(ns.path, threading.current_thread).result()
        thread.join(timeout=5)
        assert not thread.is_alive()
        assert {"workers": 0} == quick.stats()
        assert ns_id(ns.path) == quick.submit(ns.path, thread_netns).result()  # a new one
        quick.close()

    def test_close_netns(self, ns: NetNS, pool: nl.NetnsPool) -> None:
        """close_netns retires the namespace's worker; False when there is none."""
        thread = pool.submit(ns.path, threading.current_thread).result()
        assert pool.close_netns(ns.path)
        thread.join(timeout=5)
        assert not thread.is_alive()
        assert not pool.close_netns(ns.path)
        assert not pool.close_netns("/run/netns/cnilib-missing")

    def test_close_netns_of_a_deleted_namespace_retires_its_worker(
        self, ns: NetNS, pool: nl.NetnsPool
    ) -> None:
        """A namespace deleted at its path while a worker is still in it: close_netns by
        that path retires the worker, which alone kept the namespace (and the
        container's end of a veth pair) alive."""
        thread = pool.submit(ns.path, threading.current_thread).result()
        subprocess.run(["ip", "netns", "delete", ns.name], check=True)
        assert pool.close_netns(ns.path)
        thread.join(timeout=5)
        assert not thread.is_alive()
        assert not pool.close_netns(ns.path)

    def test_deleted_namespace_is_missing_even_with_a_live_worker(
        self, ns: NetNS, pool: nl.NetnsPool
    ) -> None:
        """Deleting the namespace makes the next call fail as missing; a namespace
        re-created at the same path gets a fresh worker inside the new namespace."""
        old = pool.run(ns.path, thread_netns)
        ns.exec("ip", "link", "set", "lo", "up")
        subprocess.run(["ip", "netns", "delete", ns.name], check=True)

        with pytest.raises(nl.NetNSNotFoundError):
            pool.run(ns.path, thread_netns)

        subprocess.run(["ip", "netns", "add", ns.name], check=True)  # the fixture deletes it
        new = pool.run(ns.path, thread_netns)
        assert new != old
        assert ns_id(ns.path) == new

    def test_run_here_uses_the_callers_namespace(self) -> None:
        """run_here runs in the caller's own namespace, on its thread (read-only check)."""
        assert thread_netns() == nl.run_here(thread_netns)
        assert threading.current_thread() is nl.run_here(threading.current_thread)
        assert nl.run_here(nl.get_link, "lo").index == 1

    def test_arun(self, ns: NetNS) -> None:
        """arun_in_netns awaits the worker without blocking the event loop."""

        async def main() -> str:
            return await nl.arun_in_netns(ns.path, thread_netns)

        assert ns_id(ns.path) == asyncio.run(main())

    def test_helpers_refuse_to_run_on_the_callers_thread(self) -> None:
        """Helpers called outside a worker raise instead of acting on the caller's namespace."""
        with pytest.raises(nl.NotOnWorkerError):
            nl.get_link("lo")
        with pytest.raises(nl.NotOnWorkerError):
            nl.write_sysctl("net.ipv4.ip_forward", 0)

    def test_pool_rejects_zero_workers(self) -> None:
        """A pool needs room for one worker."""
        with pytest.raises(ValueError, match="at least 1"):
            nl.NetnsPool(max_workers=0)

    def test_round_trip_is_far_cheaper_than_a_pyroute2_netns_handle(self, ns: NetNS) -> None:
        """A run_in_netns round trip costs a small fraction of one ``IPRoute(netns=...)``."""
        from pyroute2 import IPRoute

        nl.run_in_netns(ns.path, thread_netns)  # start the worker
        ours = []
        for _ in range(50):
            t = time.perf_counter()
            nl.run_in_netns(ns.path, thread_netns)
            ours.append(time.perf_counter() - t)
        theirs = []
        for _ in range(5):
            t = time.perf_counter()
            IPRoute(netns=ns.name, flags=0).close()
            theirs.append(time.perf_counter() - t)
        assert sorted(ours)[25] * 10 < sorted(theirs)[2]


class TestErrorTranslation:
    """pyroute2 and OS errors become cnilib PluginErrors with spec codes."""

    @pytest.mark.parametrize(
        ("err", "code"),
        [
            (errno.EEXIST, ErrorCode.INTERNAL),
            (errno.ENODEV, ErrorCode.INTERNAL),
            (errno.EPERM, ErrorCode.INTERNAL),
            (errno.EBUSY, ErrorCode.TRY_AGAIN_LATER),
            (errno.EAGAIN, ErrorCode.TRY_AGAIN_LATER),
        ],
    )
    def test_pyroute2_error_codes(self, err: int, code: int) -> None:
        """Each netlink errno maps to 999, or to 11 when it is transient."""
        from pyroute2.netlink.exceptions import NetlinkError as PyrouteError

        with pytest.raises(nl.NetlinkError) as info, netlink_errors("do x", "/run/netns/y"):
            raise PyrouteError(err)

        assert code == info.value.code
        assert f"netlink: do x in /run/netns/y: {os.strerror(err)}" == str(info.value)
        assert isinstance(info.value.__cause__, PyrouteError)

    def test_os_errors_and_others(self) -> None:
        """OSError is translated too; unrelated exceptions pass through untouched."""
        with pytest.raises(nl.NetlinkError, match="Bad file descriptor"), netlink_errors("a", "b"):
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        with pytest.raises(KeyError), netlink_errors("a", "b"):
            raise KeyError("x")


# --------------------------------------------------------------------------- raw path


class TestRawNetlink:
    """The lean struct-built requests (``cnilib.netlink._raw``) against pyroute2's."""

    def test_links_decode_as_pyroute2_decodes_them(self, cnilib_container_netns: MakeNS) -> None:
        """Every kind of link, up or down, enslaved or not, with a peer in another
        namespace: the raw ``RTM_GETLINK`` gives the same Link as pyroute2's decode."""
        from cnilib.netlink._link import _link_from_msg

        a, b = cnilib_container_netns(), cnilib_container_netns()

        def build_and_compare() -> list[tuple[nl.Link, nl.Link]]:
            nl.add_bridge("cni-br")
            nl.add_veth("cni-va", "cni-vb", peer_netns=b.path, mtu=1400, mac="02:00:00:00:00:0a")
            nl.add_veth("cni-l0", "cni-l1")
            nl.set_link_master("cni-va", "cni-br")
            nl.set_link_up("cni-br")
            nl.set_link_up("cni-va")
            nl.set_link_up("cni-l0")
            for _ in range(100):  # operstate and carrier settle asynchronously
                pairs = []
                for msg in nl.ipr().link("dump"):
                    expected = _link_from_msg(msg)
                    pairs.append((expected, nl.get_link(expected.name)))
                    pairs.append((expected, nl.get_link_by_index(expected.index)))
                if all(expected == got for expected, got in pairs):
                    break
                time.sleep(0.02)
            return pairs

        pairs = nl.run_in_netns(a.path, build_and_compare)

        assert len(pairs) == 10  # lo, the bridge, three veth ends
        for expected, got in pairs:
            assert expected == got
        by_name = {got.name: got for _, got in pairs}
        assert by_name["cni-va"].master == by_name["cni-br"].index
        assert by_name["cni-va"].peer_netnsid is not None
        assert by_name["cni-va"].mac == "02:00:00:00:00:0a"
        assert by_name["cni-va"].mtu == 1400
        assert by_name["cni-l0"].peer_index == by_name["cni-l1"].index

    def test_addresses_list_as_pyroute2_lists_them(self, ns: NetNS) -> None:
        """Addresses of every link or of one, of either family or both: the raw dump gives
        what pyroute2's did (IPv4 broadcast and label, IPv6 flags, link-local ones)."""
        from cnilib.netlink._addr import _address_from_msg

        def compare() -> list[tuple[list[nl.Address], list[nl.Address]]]:
            nl.add_veth("cni-va", "cni-vb")
            for name in ("lo", "cni-va", "cni-vb"):
                nl.set_link_up(name)
            nl.add_address("cni-va", "10.9.0.2/24")
            nl.add_address("cni-va", "10.9.1.2/31")
            nl.add_address("cni-va", "fd00::2/64", nodad=True)
            nl.add_address("cni-vb", "10.9.0.3/24")
            queries: list[dict[str, Any]] = [
                {}, {"family": socket.AF_INET}, {"family": socket.AF_INET6},
                {"link": "cni-va"}, {"link": "cni-va", "family": socket.AF_INET6},
                {"link": "lo"},
            ]  # fmt: skip
            out = []
            for query in queries:
                pyroute: dict[str, Any] = {}
                if "link" in query:
                    pyroute["index"] = nl.get_link(query["link"]).index
                if "family" in query:
                    pyroute["family"] = query["family"]
                expected = [_address_from_msg(m) for m in nl.ipr().addr("dump", **pyroute)]
                out.append(
                    (expected, nl.list_addresses(query.get("link"), family=query.get("family")))
                )
            return out

        results = nl.run_in_netns(ns.path, compare)

        for expected, got in results:
            assert expected == got
        everything = {str(a.interface) for a in results[0][1]}
        assert {
            "10.9.0.2/24",
            "10.9.1.2/31",
            "fd00::2/64",
            "10.9.0.3/24",
            "127.0.0.1/8",
        } <= everything
        assert any(a.broadcast is not None for a in results[0][1])

    def test_routes_list_as_pyroute2_lists_them(self, ns: NetNS) -> None:
        """Routes of every table or one, of either family, of one link: the raw dump gives
        what pyroute2's decode gives (gateway, source, priority, metrics, scope, protocol,
        type, tables above 255); deleting through the raw socket takes exactly the route."""

        def pyroute2_routes(**query: Any) -> list[nl.RouteEntry]:
            out = []
            for msg in nl.ipr().route("dump", **query):
                family = msg["family"]
                dst = msg.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
                gateway, prefsrc = msg.get_attr("RTA_GATEWAY"), msg.get_attr("RTA_PREFSRC")
                metrics = msg.get_attr("RTA_METRICS")
                table = msg.get_attr("RTA_TABLE")
                out.append(
                    nl.RouteEntry(
                        dst=ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False),
                        gateway=ipaddress.ip_address(gateway) if gateway else None,
                        oif=msg.get_attr("RTA_OIF"),
                        table=table if table is not None else msg["table"],
                        scope=msg["scope"],
                        proto=msg["proto"],
                        type=msg["type"],
                        priority=msg.get_attr("RTA_PRIORITY"),
                        prefsrc=ipaddress.ip_address(prefsrc) if prefsrc else None,
                        mtu=metrics.get_attr("RTAX_MTU") if metrics else None,
                        adv_mss=metrics.get_attr("RTAX_ADVMSS") if metrics else None,
                    )
                )
            return out

        def compare() -> tuple[list[tuple[list[nl.RouteEntry], list[nl.RouteEntry]]], list[str]]:
            nl.add_veth("cni-va", "cni-vb")
            for name in ("lo", "cni-va", "cni-vb"):
                nl.set_link_up(name)
            nl.add_address("cni-va", "10.9.0.2/24")
            nl.add_address("cni-va", "fd00::2/64", nodad=True)
            nl.add_address("cni-vb", "10.8.0.2/24")
            nl.add_route("0.0.0.0/0", gateway="10.9.0.1", link="cni-va", src="10.9.0.2", mtu=1400)
            nl.add_route("10.7.0.0/16", gateway="10.8.0.1", link="cni-vb", priority=7, adv_mss=1200)
            nl.add_route("10.6.0.0/16", link="cni-va", scope=nl.RT_SCOPE_LINK, table=100)
            nl.add_route("::/0", gateway="fd00::1", link="cni-va", table=1000)
            nl.replace_route("10.9.0.0/24", link="cni-va", table=100, proto=2)
            nl.replace_route("224.0.0.0/4", link="cni-va", table=100, kind=RTN_MULTICAST)
            va = nl.get_link("cni-va").index
            queries: list[tuple[dict[str, Any], dict[str, Any]]] = [
                ({"table": None}, {}),
                ({}, {"table": 254}),
                ({"table": 100}, {"table": 100}),
                ({"table": 1000, "family": socket.AF_INET6}, {"table": 1000, "family": 10}),
                ({"table": None, "family": socket.AF_INET}, {"family": socket.AF_INET}),
                ({"table": None, "link": "cni-va"}, {"oif": va}),
            ]

            def dumped_alike(
                ours: dict[str, Any], theirs: dict[str, Any]
            ) -> tuple[list[nl.RouteEntry], list[nl.RouteEntry]]:
                # The kernel adds the links' IPv6 link-local routes when it gets to them:
                # compare dumps taken while nothing changed (pyroute2's on both sides).
                for _ in range(50):
                    before = pyroute2_routes(**theirs)
                    got = nl.list_routes(**ours)
                    if sorted(pyroute2_routes(**theirs), key=repr) == sorted(before, key=repr):
                        break
                    time.sleep(0.1)
                return before, got

            pairs = [dumped_alike(ours, theirs) for ours, theirs in queries]
            nl.delete_route("10.6.0.0/16", table=100)
            nl.delete_route("224.0.0.0/4", table=100)  # of any type
            nl.delete_route("10.7.0.0/16", gateway="10.8.0.1", priority=7)
            left = sorted(str(r.dst) for r in nl.list_routes(table=None, family=socket.AF_INET)
                          if r.table in (100, 254))  # fmt: skip
            return pairs, left

        pairs, left = nl.run_in_netns(ns.path, compare)

        for expected, got in pairs:
            assert sorted(expected, key=repr) == sorted(got, key=repr)
        everything = {(str(r.dst), r.table) for r in pairs[0][1]}
        assert {("0.0.0.0/0", 254), ("10.6.0.0/16", 100), ("::/0", 1000)} <= everything
        by_dst = {str(r.dst): r for r in pairs[1][1]}
        assert by_dst["0.0.0.0/0"].mtu == 1400
        assert by_dst["10.7.0.0/16"].adv_mss == 1200
        assert by_dst["10.7.0.0/16"].priority == 7
        assert {r.table for r in pairs[2][1]} == {100}
        assert {str(r.dst): r.type for r in pairs[2][1]}["224.0.0.0/4"] == RTN_MULTICAST
        assert left == ["0.0.0.0/0", "10.8.0.0/24", "10.9.0.0/24", "10.9.0.0/24"]

    def test_changes_land_as_ip_shows_them(self, cnilib_container_netns: MakeNS) -> None:
        """Set up/down, MTU, MAC, master, addresses (broadcast, /31, IPv6 nodad) and routes
        (gateway, scope link, onlink default, table, metric, source, metrics), as ``ip``
        reports them."""
        a = cnilib_container_netns()

        def configure() -> None:
            nl.add_bridge("cni-br")
            nl.add_bridge("cni-br2", mtu=1400, mac="02:11:22:33:44:66")
            nl.set_link_promisc("cni-br2")
            nl.add_veth("cni-va", "cni-vb")
            nl.set_link_master("cni-va", "cni-br")
            nl.set_link_mtu("cni-va", 1450)
            nl.set_link_mac("cni-br", "02:11:22:33:44:55")
            for name in ("cni-br", "cni-va", "cni-vb"):
                nl.set_link_up(name)
            nl.set_link_down("cni-vb")
            nl.add_address("cni-br", "10.9.0.1/24")
            nl.add_address("cni-va", "10.8.0.1/31")
            nl.add_address("cni-br", "fd00::1/64", nodad=True)
            nl.add_route("10.50.0.0/16", gateway="10.9.0.2", link="cni-br")
            nl.add_route("10.51.0.0/16", link="cni-br", scope=nl.RT_SCOPE_LINK)
            nl.add_route("0.0.0.0/0", gateway="10.77.0.1", link="cni-br", onlink=True)
            nl.add_route(
                "10.52.0.0/16", gateway="10.9.0.3", link="cni-br", table=100, priority=5,
                src="10.9.0.1", mtu=1300, adv_mss=1200,
            )  # fmt: skip
            nl.replace_route("10.50.0.0/16", gateway="10.9.0.4", link="cni-br")

        nl.run_in_netns(a.path, configure)

        from tests.privileged._kernel import ip_json

        link = {x["ifname"]: x for x in ip_json(a, "-d", "link")}
        assert link["cni-va"]["master"] == "cni-br"
        assert link["cni-va"]["mtu"] == 1450
        assert link["cni-br"]["address"] == "02:11:22:33:44:55"
        assert link["cni-br2"]["linkinfo"]["info_kind"] == "bridge"
        assert (link["cni-br2"]["mtu"], link["cni-br2"]["address"]) == (1400, "02:11:22:33:44:66")
        assert link["cni-br2"]["promiscuity"] == 1
        assert "PROMISC" in link["cni-br2"]["flags"]
        assert link["cni-br"]["promiscuity"] == 0
        assert "UP" in link["cni-br"]["flags"]
        assert "UP" not in link["cni-vb"]["flags"]
        addrs = {
            (x["ifname"], i["local"], i["prefixlen"]): i
            for x in ip_json(a, "addr")
            for i in x["addr_info"]
        }
        assert addrs[("cni-br", "10.9.0.1", 24)]["broadcast"] == "10.9.0.255"
        assert "broadcast" not in addrs[("cni-va", "10.8.0.1", 31)]
        assert addrs[("cni-br", "fd00::1", 64)].get("nodad") is True
        routes = {r["dst"]: r for r in ip_json(a, "route")}
        assert routes["10.50.0.0/16"]["gateway"] == "10.9.0.4"
        assert "protocol" not in routes["10.50.0.0/16"]  # boot, which ip does not print
        assert routes["10.51.0.0/16"]["scope"] == "link"
        assert "onlink" in routes["default"]["flags"]
        [other] = ip_json(a, "route", "show", "table", "100")
        assert other["dst"] == "10.52.0.0/16"
        assert (other["metric"], other["prefsrc"]) == (5, "10.9.0.1")
        assert other["metrics"] == [{"mtu": 1300, "advmss": 1200}]

    def test_bridge_vlan_filtering_reaches_the_kernel(self, ns: NetNS) -> None:
        """The attribute is one the bridge driver acts on: the bridge filters VLANs, or a
        kernel built without VLAN filtering refuses it (this machine's kind does). A
        malformed attribute would give EINVAL or a bridge that does not filter."""

        def make() -> int | None:
            try:
                nl.add_bridge("cni-brv", vlan_filtering=True)
            except nl.NetlinkError as exc:
                return exc.errno
            return None

        refused = nl.run_in_netns(ns.path, make)
        if refused is None:
            from tests.privileged._kernel import ip_json

            [bridge] = ip_json(ns, "-d", "link", "show", "cni-brv")
            assert bridge["linkinfo"]["info_data"]["vlan_filtering"] == 1
        else:
            assert refused == errno.EOPNOTSUPP

    def test_kernel_errors_as_pyroute2_gave_them(self, ns: NetNS) -> None:
        """EEXIST, ENODEV, ENETUNREACH: the same NetlinkError, errno and text as before."""

        def errors() -> list[nl.NetlinkError]:
            found = []
            nl.add_veth("cni-va", "cni-vb")
            for action in (
                lambda: nl.add_veth("cni-va", "cni-vc"),
                lambda: nl.get_link("cni-nope"),
                lambda: nl.get_link_by_index(99999),
                lambda: nl.set_link_up("cni-nope"),
                lambda: nl.add_route("10.60.0.0/16", gateway="10.61.0.1", link="cni-va"),
                lambda: nl.delete_link(99999),
            ):
                with pytest.raises(nl.NetlinkError) as info:
                    action()
                found.append(info.value)
            nl.add_address("cni-va", "10.9.0.2/24")
            with pytest.raises(nl.NetlinkError) as info:
                nl.add_address("cni-va", "10.9.0.2/24")
            found.append(info.value)
            return found

        got = nl.run_in_netns(ns.path, errors)

        assert [e.errno for e in got] == [
            errno.EEXIST, errno.ENODEV, errno.ENODEV, errno.ENODEV,
            errno.ENETUNREACH, errno.ENODEV, errno.EEXIST,
        ]  # fmt: skip
        assert str(got[1]) == f"netlink: get link cni-nope in {ns.path}: No such device"
        assert str(got[6]) == (
            f"netlink: add address 10.9.0.2/24 to cni-va in {ns.path}: File exists"
        )
        assert all(e.code == ErrorCode.INTERNAL for e in got)

    def test_a_late_answer_is_skipped(self, ns: NetNS) -> None:
        """An answer to an abandoned request (another sequence number) is not taken for
        the next request's."""
        from cnilib.netlink._link import RTM_GETLINK
        from cnilib.netlink._raw import ifinfomsg

        def abandon_then_ask() -> tuple[str, str]:
            other = nl.add_bridge("cni-late")  # the abandoned answer names another link
            sock = nl.raw()
            # Send a request by hand and never read its answer.
            import struct

            body = ifinfomsg(other.index)
            sock._seq += 1
            sock.sock.send(
                struct.pack("=IHHII", 16 + len(body), RTM_GETLINK, 1, sock._seq, 0) + body
            )
            return nl.get_link("lo").name, nl.get_link_by_index(other.index).name

        assert nl.run_in_netns(ns.path, abandon_then_ask) == ("lo", "cni-late")

    def test_raw_socket_needs_a_worker(self) -> None:
        """Like ``ipr()``, the raw socket is only handed out on a namespace worker."""
        with pytest.raises(nl.NotOnWorkerError):
            nl.raw()
