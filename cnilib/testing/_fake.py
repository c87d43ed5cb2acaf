"""A scriptable in-process plugin for tests: it records every call and answers as told."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TypeAlias

from cnilib.invoke import Command
from cnilib.plugins import BasePlugin, InProcessExecutor, PluginRequest
from cnilib.results import Result, decode_result
from cnilib.spec import CURRENT

__all__ = ["FakePlugin", "FakePluginFactory", "FakeResult"]

FakeResult: TypeAlias = (
    Result
    | Mapping[str, object]
    | Callable[[PluginRequest], Result | Mapping[str, object] | None]
    | None
)
"""What :class:`FakePlugin` answers ADD with (see there)."""

_VERBS = frozenset(str(c) for c in Command if c is not Command.VERSION)


class FakePlugin(BasePlugin):
    """An in-process CNI plugin that records every call and answers as it is told.

    Register it with an :class:`cnilib.InProcessExecutor` under any type (the
    ``cnilib_fake_plugin`` fixture does that for the ready-wired runtime) and
    put that type in a conflist. It runs through the same framework as
    cnilib's own plugins, so it sees exactly what a plugin binary would.

    :param result: ADD's answer. ``None`` (the default) passes the
        ``prevResult`` on, as a chained plugin that adds nothing does, or,
        first in a chain, answers one interface (``CNI_IFNAME`` in
        ``CNI_NETNS``) and no addresses. A :class:`cnilib.Result` or its JSON
        object (a mapping, read as the ``cniVersion`` it names, else as
        1.1.0) is answered as given; a callable gets the
        :class:`PluginRequest` and returns any of these. The answer is
        converted to the config's ``cniVersion``, as a plugin's would be.
    :param errors: an exception to raise per verb (``"ADD"``, ``"DEL"``,
        ``"CHECK"``, ``"STATUS"``, ``"GC"``): a :class:`cnilib.PluginError`
        becomes the plugin's error object with its code, any other exception
        an error with code 999, as in Go's skel. Change them later with
        :meth:`fail_on`.

    Every request is appended to :attr:`calls`, the failing ones too, before
    the plugin answers (VERSION is answered by the framework and not recorded)::

        fake = FakePlugin(errors={"CHECK": PluginError("not ready", code=11)})
        ...
        assert ["ADD", "CHECK"] == fake.commands
        assert "10.22.0.2/24" == str(fake.requests("ADD")[0].prev_result.ips[0].address)
    """

    type = "fake"

    def __init__(
        self,
        result: FakeResult = None,
        *,
        errors: Mapping[str | Command, Exception] | None = None,
    ) -> None:
        self.result = result
        self.errors: dict[str, Exception] = {}
        for verb, error in (errors or {}).items():
            self.fail_on(verb, error)
        self.calls: list[PluginRequest] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<FakePlugin calls={self.commands!r} errors={sorted(self.errors)!r}>"

    @property
    def commands(self) -> list[str]:
        """The verb of every recorded call, oldest first (``["ADD", "DEL"]``)."""
        with self._lock:
            return [str(req.command) for req in self.calls]

    def requests(self, verb: str | Command) -> list[PluginRequest]:
        """The recorded requests of one verb, oldest first."""
        verb = _verb(verb)
        with self._lock:
            return [req for req in self.calls if req.command == verb]

    def fail_on(self, verb: str | Command, error: Exception | None) -> None:
        """From now on, answer ``verb`` by raising ``error`` (``None``: succeed again)."""
        verb = _verb(verb)
        if error is None:
            self.errors.pop(verb, None)
        elif not isinstance(error, Exception):
            raise TypeError(f"error must be an exception, not {type(error).__name__}")
        else:
            self.errors[verb] = error

    def reset(self) -> None:
        """Forget the recorded calls."""
        with self._lock:
            self.calls.clear()

    def _record(self, req: PluginRequest) -> None:
        with self._lock:
            self.calls.append(req)
        error = self.errors.get(str(req.command))
        if error is not None:
            raise error

    def add(self, req: PluginRequest) -> Result:
        """Record the call; raise the ADD error if set, else answer :attr:`result`."""
        self._record(req)
        answer = self.result
        if callable(answer):
            # A function's answer means what the same value given directly would.
            answer = answer(req)
        if isinstance(answer, Result):
            return answer
        if answer is not None:
            # Read as the version it names (else the newest, whose shape the
            # mapping most likely has); the framework converts it to the
            # config's, as it does any plugin's answer.
            return decode_result(answer, default_version=CURRENT.text)
        prev = req.prev_result
        if prev is not None:
            return prev
        sandbox = {"name": req.ifname, "sandbox": req.netns}
        return decode_result(
            {"cniVersion": req.cni_version, "interfaces": [sandbox]},
            default_version=req.cni_version,
        )

    def check(self, req: PluginRequest) -> None:
        """Record the call; raise the CHECK error if set."""
        self._record(req)

    def delete(self, req: PluginRequest) -> None:
        """Record the call; raise the DEL error if set."""
        self._record(req)

    def status(self, req: PluginRequest) -> None:
        """Record the call; raise the STATUS error if set."""
        self._record(req)

    def gc(self, req: PluginRequest) -> None:
        """Record the call; raise the GC error if set."""
        self._record(req)


def _verb(verb: str | Command) -> str:
    text = str(verb).upper()
    if text not in _VERBS:
        raise ValueError(f"unknown CNI verb {verb!r}: expected one of {sorted(_VERBS)}")
    return text


class FakePluginFactory:
    """Makes :class:`FakePlugin` instances and registers each with an executor
    (what the ``cnilib_fake_plugin`` fixture gives a test)::

        fake = cnilib_fake_plugin("fake", errors={"CHECK": PluginError("nope", code=11)})
    """

    def __init__(self, executor: InProcessExecutor) -> None:
        self.executor = executor

    def __call__(
        self,
        plugin_type: str = "fake",
        result: FakeResult = None,
        *,
        errors: Mapping[str | Command, Exception] | None = None,
    ) -> FakePlugin:
        """A new :class:`FakePlugin` that the executor runs for ``plugin_type`` from now on."""
        plugin = FakePlugin(result, errors=errors)
        self.executor.register(plugin_type, plugin)
        return plugin
