"""The DEBUG log of plugin calls, written by the executors.

Two loggers, so that a summary can be had without the whole exchange:

* ``cnilib.invoke``: one line per call, at its end:
  ``plugin "bridge" ADD /usr/lib/cni/bridge: ok in 12.3 ms`` or
  ``...: failed (code 7) in 3.1 ms: <the error>``;
* ``cnilib.invoke.exchange``: what was exchanged: the ``CNI_*`` (and trace)
  environment and stdin when the call starts, the exit status and stdout
  when it ends. Its own level is INFO, so it is logged only once enabled by
  name. The plugin's stderr lines are logged on ``cnilib.plugin``.

Nothing is formatted unless the logger is enabled for DEBUG.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from cnilib._log import get_logger
from cnilib.invoke._invocation import Invocation

__all__ = ["CallLog", "exchange_log", "summary_log"]

summary_log = get_logger("cnilib.invoke")
exchange_log = get_logger("cnilib.invoke.exchange")
# Opt-in: the exchange carries runtimeConfig and addresses, so it must not
# follow "cnilib.invoke" (or "cnilib") to DEBUG; only setLevel(DEBUG) on this
# logger itself turns it on. A level set before this (lazy) import is kept.
if exchange_log.level == logging.NOTSET:
    exchange_log.setLevel(logging.INFO)

SHOWN_BYTES = 64 << 10
"""How much of stdin or stdout one log line shows."""

# The variables of a plugin's environment worth logging: never the inherited rest.
_SHOWN_VARIABLES = ("TRACEPARENT", "TRACESTATE", "BAGGAGE")


def _text(data: bytes) -> str:
    shown = data[:SHOWN_BYTES].decode("utf-8", errors="replace")
    if len(data) > SHOWN_BYTES:
        shown += f"... ({len(data)} bytes)"
    return shown


class CallLog:
    """The log of one call, used as a context manager around it: call
    :meth:`sent` once the environment is known and :meth:`answered` with the
    plugin's output; leaving the block logs the summary (:meth:`ended`), with
    the exception if one ends the call."""

    __slots__ = ("executable", "invocation", "started")

    def __init__(self, invocation: Invocation, executable: str = "") -> None:
        self.invocation = invocation
        self.executable = executable
        self.started = time.monotonic()

    def __enter__(self) -> CallLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        self.ended(exc)

    def _name(self) -> str:
        where = f" {self.executable}" if self.executable else ""
        return f'plugin "{self.invocation.plugin_type}" {self.invocation.command.value}{where}'

    def sent(self, executable: str, env: Mapping[str, str] | None) -> None:
        """The call starts: log the environment (``None``: build it from the
        invocation, as a plugin without a process sees it) and stdin."""
        self.executable = executable
        if not exchange_log.isEnabledFor(logging.DEBUG):
            return
        if env is None:
            env = self.invocation.environ(base={})
        shown = " ".join(
            f"{key}={value}"
            for key, value in env.items()
            if key.startswith("CNI_") or key in _SHOWN_VARIABLES
        )
        name = self._name()
        exchange_log.debug("%s env: %s", name, shown)
        exchange_log.debug("%s stdin: %s", name, _text(self.invocation.stdin))

    def answered(self, stdout: bytes, returncode: int | None = None) -> None:
        """The plugin answered: log its exit status (if it had a process) and stdout."""
        if not exchange_log.isEnabledFor(logging.DEBUG):
            return
        name = self._name()
        if returncode is not None:
            exchange_log.debug("%s exit status: %d", name, returncode)
        exchange_log.debug("%s stdout: %s", name, _text(stdout))

    def ended(self, error: BaseException | None = None) -> None:
        """The call is over: one summary line, with ``error`` if it failed."""
        if not summary_log.isEnabledFor(logging.DEBUG):
            return
        elapsed = (time.monotonic() - self.started) * 1000
        if error is None:
            summary_log.debug("%s: ok in %.1f ms", self._name(), elapsed)
            return
        code = getattr(error, "code", None)
        why = f"code {int(code)}" if isinstance(code, int) else type(error).__name__
        summary_log.debug("%s: failed (%s) in %.1f ms: %s", self._name(), why, elapsed, error)
