"""Watching a runtime work: timing operations and plugin calls, and reporting
them to the events hook, to OpenTelemetry spans and to the log.

The drivers wrap each public operation in :meth:`Observer.operation` and each
``executor.exec``/``aexec`` in :meth:`Observer.call`. The operation in
progress is kept in a context variable, so a plugin call knows its network,
in threads (``setup_networks(concurrent=True)`` copies the context) and in
asyncio tasks alike.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import attrs

from cnilib import tracing
from cnilib._log import get_logger
from cnilib.errors import CNIError
from cnilib.events import (
    IN_PROCESS,
    EventHook,
    OperationEvent,
    Outcome,
    PluginCallEvent,
)
from cnilib.invoke import Executor, Invocation

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["Observer", "observed", "watched"]

log = get_logger("cnilib.runtime")


@attrs.frozen
class _Operation:
    verb: str
    network: str
    container_id: str
    ifname: str


_current: contextvars.ContextVar[_Operation | None] = contextvars.ContextVar(
    "cnilib_operation", default=None
)


def _failure(error: BaseException | None) -> tuple[Outcome, int | None, str | None]:
    if error is None:
        return "ok", None, None
    code = int(error.code) if isinstance(error, CNIError) else None
    return "error", code, type(error).__name__


class Observer:
    """Reports a runtime's operations and plugin calls.

    :param events: the hook that gets one record per operation and per call.
    :param tracing: ``True``: spans through OpenTelemetry's global tracer
        provider, whenever the application uses OpenTelemetry; a
        ``TracerProvider``: spans through that one; ``False``: no spans.
    """

    def __init__(self, events: EventHook | None, tracing_: bool | TracerProvider) -> None:
        from cnilib.errors import InvalidArgumentError

        given: object = events  # checked as a caller may really pass it, not as typed
        if given is not None and not callable(given):
            raise InvalidArgumentError(f"events must be a callable, got {given!r}")
        # Checked now: a wrong value would otherwise fail only once OpenTelemetry is in use.
        given = tracing_
        if not isinstance(given, bool) and not callable(getattr(given, "get_tracer", None)):
            raise InvalidArgumentError(
                f"tracing must be True, False or an OpenTelemetry TracerProvider, got {given!r}"
            )
        self.events = events
        self._tracing = tracing_
        self._tracer: Tracer | None = None

    def tracer(self) -> Tracer | None:
        """The tracer of this runtime's spans, if spans are wanted now."""
        if self._tracing is False or not tracing.in_use():
            return None
        if self._tracing is True and not tracing.global_provider_set():
            return None
        if self._tracer is None:
            provider = None if self._tracing is True else self._tracing
            self._tracer = tracing.get_tracer(provider)
        return self._tracer

    def _emit(self, event: PluginCallEvent | OperationEvent) -> None:
        assert self.events is not None
        try:
            self.events(event)
        except Exception as exc:
            # Not normal operation, but the operation itself went as it went.
            log.warning("events hook %r failed on %s: %r", self.events, type(event).__name__, exc)

    @contextlib.contextmanager
    def operation(
        self, verb: str, network: str, container_id: str = "", ifname: str = ""
    ) -> Iterator[None]:
        """Around one public operation: time it, report it, span it."""
        op = _Operation(verb, network, container_id, ifname)
        tracer = self.tracer()
        token = _current.set(op)
        started = time.monotonic()
        error: BaseException | None = None
        try:
            with contextlib.ExitStack() as stack:
                if tracer is not None:
                    stack.enter_context(_span(tracer, f"cni.{verb}", _attributes(op)))
                try:
                    yield
                except BaseException as exc:
                    error = exc
                    raise
        finally:
            _current.reset(token)
            duration = time.monotonic() - started
            outcome, code, kind = _failure(error)
            if log.isEnabledFor(logging.DEBUG):
                verdict = "ok" if error is None else f"failed ({kind}, code {code})"
                where = " ".join(filter(None, (network, container_id, ifname)))
                log.debug("%s %s: %s in %.1f ms", verb, where, verdict, duration * 1000)
            if self.events is not None:
                self._emit(
                    OperationEvent(
                        verb=verb,
                        network=network,
                        container_id=container_id,
                        ifname=ifname,
                        duration=duration,
                        outcome=outcome,
                        error_code=code,
                        error_type=kind,
                    )
                )

    @contextlib.contextmanager
    def call(self, invocation: Invocation, executor: Executor) -> Iterator[None]:
        """Around one ``executor.exec``: report it, and make its span current
        while the plugin runs (its ``TRACEPARENT`` then names that span)."""
        tracer = self.tracer()
        if self.events is None and tracer is None:
            yield
            return
        op = _current.get()
        network = op.network if op is not None else ""
        executable = ""
        started = time.monotonic()
        error: BaseException | None = None
        try:
            with contextlib.ExitStack() as stack:
                span = None
                if tracer is not None:
                    attributes = {
                        "cni.verb": invocation.command.value,
                        "cni.network": network,
                        "cni.plugin": invocation.plugin_type,
                        "cni.container_id": invocation.container_id,
                        "cni.ifname": invocation.ifname,
                    }
                    name = f"cni.plugin.{invocation.command.value.lower()}"
                    span = stack.enter_context(_span(tracer, name, attributes))
                # A lookup of its own (a few stats): only for someone who will see it.
                if self.events is not None or (span is not None and span.is_recording()):
                    executable = _executable(invocation, executor)
                    if span is not None:
                        span.set_attribute("cni.plugin.executable", executable)
                try:
                    yield
                except BaseException as exc:
                    error = exc
                    raise
        finally:
            if self.events is not None:
                outcome, code, kind = _failure(error)
                self._emit(
                    PluginCallEvent(
                        verb=invocation.command.value,
                        plugin=invocation.plugin_type,
                        network=network,
                        container_id=invocation.container_id,
                        ifname=invocation.ifname,
                        executable=executable,
                        duration=time.monotonic() - started,
                        outcome=outcome,
                        error_code=code,
                        error_type=kind,
                    )
                )


def _executable(invocation: Invocation, executor: Executor) -> str:
    """Where the plugin runs from: a path, ``in-process``, or ``""`` if not found."""
    try:
        found = executor.find(invocation.plugin_type, invocation.path)
    except CNIError:
        return ""
    # InProcessExecutor.find names its plugins "<in-process TYPE>"; anything else
    # is where the executor runs it from, as it says (a relative CNI_PATH stays so).
    return IN_PROCESS if found.startswith("<in-process ") else found


def _attributes(op: _Operation) -> dict[str, str]:
    attributes = {"cni.verb": op.verb, "cni.network": op.network}
    if op.container_id:
        attributes["cni.container_id"] = op.container_id
    if op.ifname:
        attributes["cni.ifname"] = op.ifname
    return attributes


@contextlib.contextmanager
def _span(tracer: Tracer, name: str, attributes: dict[str, str]) -> Iterator[Span]:
    """A current span for the block; an exception ending it is recorded by
    :func:`_span_failed` (with the CNI error code), not by OpenTelemetry."""
    with tracer.start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except BaseException as exc:
            _span_failed(span, exc)
            raise


def _span_failed(span: Span, error: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    if isinstance(error, CNIError):
        span.set_attribute("cni.error_code", int(error.code))
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _target(kind: str, args: tuple[object, ...], kwargs: dict[str, object]) -> tuple[str, str, str]:
    """Network, container ID and interface of a call of an operation method
    (never raises: a wrong argument is the method's to refuse)."""

    def arg(index: int, name: str) -> object:
        return args[index] if len(args) > index else kwargs.get(name)

    if kind == "version":
        return "", "", ""
    if kind == "multi":
        networks = arg(2, "networks")
        names = (
            [str(getattr(n, "name", "")) for n in networks]
            if isinstance(networks, list | tuple)
            else []
        )
        return ",".join(names), str(arg(0, "container_id") or ""), ""
    network = str(getattr(arg(0, "plugin" if kind == "plugin" else "conflist"), "name", "") or "")
    rt = arg(1, "rt")
    return network, str(getattr(rt, "container_id", "")), str(getattr(rt, "ifname", ""))


def observed(verb: str, kind: str = "list") -> Callable[[Callable[_P, _T]], Callable[_P, _T]]:
    """Make a ``CNI``/``AsyncCNI`` method one operation for :class:`Observer`.

    ``kind`` says where its network is: ``list`` (a conflist first, then
    maybe a RuntimeConf), ``plugin`` (a PluginConf), ``multi`` (container ID,
    netns, networks) or ``version`` (none).
    """

    def decorate(method: Callable[_P, _T]) -> Callable[_P, _T]:
        if inspect.iscoroutinefunction(method):

            @functools.wraps(method)
            async def arun(*args: _P.args, **kwargs: _P.kwargs) -> object:
                observer: Observer = args[0]._observer  # type: ignore[attr-defined]
                with observer.operation(verb, *_target(kind, args[1:], kwargs)):
                    return await method(*args, **kwargs)

            return arun  # type: ignore[return-value]

        @functools.wraps(method)
        def run(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            observer: Observer = args[0]._observer  # type: ignore[attr-defined]
            with observer.operation(verb, *_target(kind, args[1:], kwargs)):
                return method(*args, **kwargs)

        return run

    return decorate


def watched(
    observer: Observer | None, invocation: Invocation, executor: Executor
) -> contextlib.AbstractContextManager[None]:
    """:meth:`Observer.call` for a driver that may have no observer."""
    if observer is None:
        return contextlib.nullcontext()
    return observer.call(invocation, executor)
