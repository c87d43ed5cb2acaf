"""Running plugins without a process: the in-process executor.

A call runs on a *call thread* while the caller waits for it until the
deadline (a Python function cannot be killed, so the deadline is where the
caller stops waiting). Call threads are reused: an idle one waits for the
next call for a while, then ends, so a call costs a hand-off between two
threads (tens of microseconds), not a thread start.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from cnilib._fork import reset_after_fork
from cnilib._log import get_logger
from cnilib.errors import ClosedError, ErrorCode, PluginError, error_from_object
from cnilib.events import IN_PROCESS
from cnilib.invoke import (
    DEFAULT_TIMEOUT,
    ChainExecutor,
    Command,
    Invocation,
    PluginInfo,
    SubprocessExecutor,
    decode_version_info,
)
from cnilib.invoke._calllog import CallLog
from cnilib.invoke._invocation import check_timeout
from cnilib.invoke._subprocess import call_deadline, timeout_error
from cnilib.plugins._base import BasePlugin
from cnilib.plugins._registry import load_plugin, plugin_types
from cnilib.plugins._skel import handle

__all__ = ["InProcessExecutor"]

log = get_logger("cnilib.plugins")

IDLE_TIMEOUT = 30.0
"""Seconds an idle call thread waits for another call before it ends."""

# The verbs that act on one attachment (container ID + interface name).
_ATTACHMENT_VERBS = frozenset({Command.ADD, Command.CHECK, Command.DEL})

# States of a call.
_PENDING = 0  # waiting for its thread, or for an earlier call of its attachment
_RUNNING = 1
_CANCELLED = 2  # given up before it started: it never runs
_FINISHED = 3

_Key = tuple[str, str]


class _Call:
    """One plugin call and its outcome; its attributes are guarded by the executor's lock."""

    __slots__ = ("abandoned", "after", "done", "invocation", "key", "outcome", "state", "then")

    def __init__(self, invocation: Invocation, key: _Key | None) -> None:
        self.invocation = invocation
        self.key = key
        self.state = _PENDING
        self.outcome: bytes | BaseException = b""
        self.abandoned: float | None = None  # when the caller stopped waiting while it ran
        self.after: _Call | None = None  # the earlier call of the attachment it waits for
        self.then: list[Callable[[], None]] = []  # run once it is finished
        self.done = threading.Lock()  # released when finished
        self.done.acquire()

    def result(self) -> bytes:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


class _CallThreads:
    """Daemon threads that run calls, one call at a time each, reused while busy
    enough; a call never waits for a free thread (a new one starts)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_CallThread] = []  # most recently idle last
        self._closed = False

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                worker = self._idle.pop()
                worker.job = job
                worker.wake.release()
                return
        _CallThread(self, job)

    def idle(self, worker: _CallThread) -> bool:
        """Park ``worker`` for the next call; False once closed: it should end."""
        with self._lock:
            if self._closed:
                return False
            self._idle.append(worker)
            return True

    def close(self) -> None:
        """End every idle thread now; busy ones end when their call finishes."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.job = None
            worker.wake.release()

    def retire(self, worker: _CallThread) -> bool:
        """Remove an idle ``worker``; False if a job was handed to it meanwhile."""
        with self._lock:
            if worker in self._idle:
                self._idle.remove(worker)
                return True
            return False


class _CallThread:
    __slots__ = ("job", "threads", "wake")

    def __init__(self, threads: _CallThreads, job: Callable[[], None]) -> None:
        self.threads = threads
        self.job: Callable[[], None] | None = job
        self.wake = threading.Lock()
        self.wake.acquire()
        threading.Thread(target=self._main, name="cnilib-inprocess-call", daemon=True).start()

    def _main(self) -> None:
        while True:
            job, self.job = self.job, None
            if job is None:
                return  # woken by close()
            job()  # never raises: the call keeps its outcome
            del job
            if not self.threads.idle(self):
                return
            if not self.wake.acquire(timeout=IDLE_TIMEOUT):
                if self.threads.retire(self):
                    return
                self.wake.acquire()  # a job was handed over as the wait ended


class _Delegates:
    """This executor as seen by a plugin delegating its IPAM: the delegate runs
    inline, on the calling plugin's thread and within its deadline, and does
    not wait for the very call that delegates (same attachment)."""

    def __init__(self, owner: InProcessExecutor) -> None:
        self._owner = owner

    def __repr__(self) -> str:
        return f"<delegates of {self._owner!r}>"

    def find(self, plugin_type: str, path: Sequence[str]) -> str:
        return self._owner.find(plugin_type, path)

    def exec(self, invocation: Invocation) -> bytes:
        return self._owner.run_inline(invocation)

    async def aexec(self, invocation: Invocation) -> bytes:
        return await asyncio.to_thread(self.exec, invocation)

    def version_info(self, plugin_type: str, path: Sequence[str]) -> PluginInfo:
        return decode_version_info(self.exec(Invocation.version(plugin_type, path)))


class InProcessExecutor:
    """Calls Python plugins directly: no fork, no exec, no JSON over pipes
    beyond the request and result bytes the protocol defines.

    :param plugins: extra or replacement plugins by CNI type (instances of
        :class:`~cnilib.plugins.BasePlugin` subclasses); they win over every
        other plugin of the same type.
    :param builtins: run cnilib's own plugins (``bridge``, ``host-local``, …)
        for the types ``plugins`` does not name.
    :param installed: run the plugins installed packages declare in the
        ``cnilib.plugins`` entry-point group, for the types neither
        ``plugins`` nor the built-ins have.
    :param host_netns: the namespace that plays the host for the plugins
        (where bridges, host veth ends and iptables rules go); ``None``: this
        process's own, as for a plugin binary. Tests and the demo pass a
        throwaway node namespace here.
    :param timeout: default deadline per call in seconds (``None``: no
        deadline), as :class:`cnilib.invoke.SubprocessExecutor`'s;
        ``Invocation.timeout`` overrides it (``math.inf``: none).

    Plugins see exactly the environment a binary would (``CNI_*`` only, no
    inherited variables) and are answered through the same skel code as the
    executables, so results and errors are identical.

    Deadlines. Each call runs on a call thread (in a copy of the caller's
    context variables) while the caller waits; past the deadline the caller
    gets :class:`cnilib.PluginTimeoutError` and stops waiting, as it does on
    Ctrl-C or when ``aexec`` is cancelled. A Python function cannot be
    killed, so what is guaranteed about such an *abandoned* call is:

    - it runs on in its thread until it finishes (its outcome is then logged
      as a warning under ``cnilib.plugins``); it is never interrupted midway;
    - a later ADD, CHECK or DEL of this executor for the same attachment
      (container ID and interface name) starts only after it has finished, so
      the rollback DEL a runtime sends after a timed-out ADD never runs
      alongside that ADD. The later call waits within its own deadline; if
      that passes first, it fails with :class:`cnilib.PluginTimeoutError`
      ("it never started") and never runs at all;
    - nothing else: VERSION, STATUS and GC do not wait, and neither do calls
      of another executor instance or another process (the runtime's file
      locks are released when the call that timed out returns). Daemon
      threads do not keep the interpreter alive: an abandoned call still
      running at exit is cut off with the process.

    A plugin that delegates (its IPAM) runs the delegate inline, within its
    own call and deadline.
    """

    def __init__(
        self,
        plugins: Mapping[str, BasePlugin] | None = None,
        *,
        builtins: bool = True,
        installed: bool = True,
        host_netns: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.host_netns = host_netns
        check_timeout(timeout)
        self.timeout = timeout
        self._extra = dict(plugins or {})
        self._builtins = builtins
        self._installed = installed
        self._loaded: dict[str, BasePlugin] = {}
        self._lock = threading.Lock()
        self._reset_after_fork()
        # A forked child has none of the call threads, and the calls they ran
        # never finish there: forget them, or the child's calls would wait.
        reset_after_fork(self)
        # A plugin's IPAM runs here when this executor has it, else as a binary.
        self._delegates = ChainExecutor(_Delegates(self), SubprocessExecutor())

    def __repr__(self) -> str:
        # Not types(): a repr must not read every installed package's metadata.
        return (
            f"InProcessExecutor(plugins={sorted(self._extra)!r}, builtins={self._builtins!r}, "
            f"installed={self._installed!r}, timeout={self.timeout!r})"
        )

    closed = False
    """``close()`` was called: calls raise :class:`cnilib.ClosedError`."""

    def close(self) -> None:
        """End the idle call threads; later calls raise :class:`cnilib.ClosedError`.

        A call still running finishes on its thread (a Python function cannot
        be stopped), which then ends. Idempotent. ``CNI.close()`` calls this.
        """
        self.closed = True
        self._threads.close()

    def __enter__(self) -> InProcessExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self, invocation: Invocation) -> None:
        if self.closed:
            raise ClosedError(
                f"InProcessExecutor is closed: cannot run {invocation.describe()}",
                code=ErrorCode.INTERNAL,
            )

    def types(self) -> set[str]:
        """Every plugin type this executor can run."""
        found = plugin_types(builtins=self._builtins, installed=self._installed)
        return set(self._extra) | set(found)

    def register(self, plugin_type: str, plugin: BasePlugin) -> None:
        """Run ``plugin`` for ``plugin_type`` from now on, as if it had been
        given in ``plugins`` (it wins over every other plugin of that type).

        Calls already started keep the plugin they found.
        """
        if not isinstance(plugin, BasePlugin):
            raise TypeError(f"plugin must be a BasePlugin instance, not {type(plugin).__name__}")
        with self._lock:
            self._extra = {**self._extra, plugin_type: plugin}

    def plugin(self, plugin_type: str) -> BasePlugin:
        """The plugin instance for ``plugin_type`` (loaded once)."""
        if plugin_type in self._extra:
            return self._extra[plugin_type]
        with self._lock:
            found = self._loaded.get(plugin_type)
            if found is None:
                found = load_plugin(plugin_type, builtins=self._builtins, installed=self._installed)
                self._loaded[plugin_type] = found
            return found

    def _reset_after_fork(self) -> None:
        self._calls_lock = threading.Lock()
        # Calls not finished yet: the latest one of each attachment (earlier ones
        # are chained through ``_Call.after``), guarded by ``_calls_lock``.
        self._latest: dict[_Key, _Call] = {}
        self._threads = _CallThreads()

    def find(self, plugin_type: str, path: Sequence[str]) -> str:
        """A pseudo-path naming the in-process plugin; raise if there is none."""
        self.plugin(plugin_type)
        return f"<in-process {plugin_type}>"

    def run_inline(self, invocation: Invocation) -> bytes:
        """Call the plugin on this thread, with no deadline and no waiting (delegation)."""
        # No TRACEPARENT here: the plugin runs in the caller's context (copied
        # into its call thread), so OpenTelemetry's current span is the call's own.
        try:
            return handle(
                self.plugin(invocation.plugin_type),
                invocation.environ(base={}),
                invocation.stdin,
                delegate_executor=self._delegates,
                host_netns=self.host_netns,
            )
        except PluginError as exc:
            # The error object a binary would print, read back as a binary's is:
            # the same class by code (TryAgainLaterError for 11, ...), whatever
            # class the plugin raised.
            raise error_from_object(exc.to_object()) from exc

    def handle(self, plugin_type: str, env: Mapping[str, str], stdin: bytes) -> bytes:
        """Answer one call given as a raw environment and stdin, on this thread, as the
        plugin's executable would: its stdout, or its error object raised as a
        :class:`cnilib.PluginError` (an exception that escaped the plugin is code 999,
        chained as ``__cause__``). Unlike :meth:`exec`, ``env`` may lack or mangle
        any ``CNI_*`` variable: this is how the conformance kit sends what a runtime
        would not. No deadline."""
        if self.closed:
            raise ClosedError(
                f"InProcessExecutor is closed: cannot run {plugin_type}", code=ErrorCode.INTERNAL
            )
        return handle(
            self.plugin(plugin_type),
            env,
            stdin,
            delegate_executor=self._delegates,
            host_netns=self.host_netns,
        )

    def exec(self, invocation: Invocation) -> bytes:
        """Call the plugin; return its stdout or raise its error object as a PluginError.

        Past the deadline, raise :class:`cnilib.PluginTimeoutError` (see the
        class). Each call is logged at DEBUG on ``cnilib.invoke``.
        """
        with CallLog(invocation, IN_PROCESS) as call:
            call.sent(IN_PROCESS, None)
            stdout = self._exec(invocation)
            call.answered(stdout)
            return stdout

    async def aexec(self, invocation: Invocation) -> bytes:
        """:meth:`exec` for asyncio: the loop is never blocked; a deadline or a
        cancellation stops the waiting, as in :meth:`exec`."""
        with CallLog(invocation, IN_PROCESS) as call:
            call.sent(IN_PROCESS, None)
            stdout = await self._aexec(invocation)
            call.answered(stdout)
            return stdout

    def _exec(self, invocation: Invocation) -> bytes:
        """Call the plugin; return its stdout or raise its error object as a PluginError.

        Past the deadline, raise :class:`cnilib.PluginTimeoutError` (see the class).
        """
        self._check_open(invocation)
        self.plugin(invocation.plugin_type)
        timeout = call_deadline(invocation, self.timeout)
        started = time.monotonic()
        call = self._start(invocation)
        try:
            finished = call.done.acquire(timeout=-1 if timeout is None else timeout)
        except BaseException:  # interrupted (Ctrl-C): stop waiting, as at the deadline
            self._give_up(call)
            raise
        if not finished:
            outcome = self._give_up(call)
            if outcome is not None:
                raise timeout_error(invocation, started, timeout, b"", outcome=outcome)
        return call.result()

    async def _aexec(self, invocation: Invocation) -> bytes:
        self._check_open(invocation)
        self.plugin(invocation.plugin_type)
        timeout = call_deadline(invocation, self.timeout)
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def wake() -> None:  # on the call's thread
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_set_done, finished)

        started = time.monotonic()
        call = self._start(invocation, wake)
        try:
            async with asyncio.timeout(timeout):
                await finished
        except TimeoutError:
            outcome = self._give_up(call)
            if outcome is not None:
                raise timeout_error(invocation, started, timeout, b"", outcome=outcome) from None
        except BaseException:  # cancelled
            self._give_up(call)
            raise
        return call.result()

    def version_info(self, plugin_type: str, path: Sequence[str]) -> PluginInfo:
        """The plugin's VERSION answer."""
        return decode_version_info(self.exec(Invocation.version(plugin_type, path)))

    # -- calls on their threads ------------------------------------------------------

    def _start(self, invocation: Invocation, wake: Callable[[], None] | None = None) -> _Call:
        """Start ``invocation`` on a call thread, after the unfinished earlier call
        of its attachment if there is one."""
        key = None
        if invocation.command in _ATTACHMENT_VERBS and invocation.container_id:
            key = (invocation.container_id, invocation.ifname)
        call = _Call(invocation, key)
        context = contextvars.copy_context()

        def job() -> None:
            context.run(self._run, call)

        with self._calls_lock:
            if wake is not None:
                call.then.append(wake)
            if key is not None:
                call.after = self._latest.get(key)
                self._latest[key] = call
                if call.after is not None:
                    # Run on the earlier call's thread, as soon as it has finished.
                    call.after.then.append(job)
                    return call
        self._threads.submit(job)
        return call

    def _run(self, call: _Call) -> None:
        """The call thread's part: run the call unless it was given up already."""
        with self._calls_lock:
            run = call.state == _PENDING
            if run:
                call.state = _RUNNING
        if run:
            try:
                call.outcome = self.run_inline(call.invocation)
            except BaseException as exc:  # handed to the caller
                call.outcome = exc
        with self._calls_lock:
            call.state = _FINISHED
            call.after = None
            if call.key is not None and self._latest.get(call.key) is call:
                del self._latest[call.key]
            then, call.then = call.then, []
            abandoned = call.abandoned
        call.done.release()
        if abandoned is not None:
            _log_late(call, time.monotonic() - abandoned)
        for step in then:  # wake an async caller; start the next call of the attachment
            step()

    def _give_up(self, call: _Call) -> str | None:
        """The caller stops waiting for ``call``: what became of it, for the
        timeout's message, or ``None`` if it has finished after all."""
        with self._calls_lock:
            if call.state == _FINISHED:
                return None
            if call.state == _RUNNING:
                call.abandoned = time.monotonic()
                return "a Python function cannot be killed: it runs on in its thread"
            call.state = _CANCELLED  # its turn will finish it without running it
            earlier = call.after
        if earlier is None:
            return "it never started"
        container_id, ifname = earlier.key or ("", "")
        return (
            f'it never started: an earlier call for container "{container_id}" '
            f'interface "{ifname}" ({earlier.invocation.describe()}) was still running'
        )


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _log_late(call: _Call, late: float) -> None:
    outcome = call.outcome
    verdict = f"failed: {outcome}" if isinstance(outcome, BaseException) else "succeeded"
    log.warning(
        "%s finished %.1fs after its caller stopped waiting: %s",
        call.invocation.describe(),
        late,
        verdict,
    )
