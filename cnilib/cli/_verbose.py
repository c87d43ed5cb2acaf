"""``-v`` and ``-vv``: cnilib's log lines on stderr, escaped like everything the
CLI prints. Its own module so that a command run without ``-v`` does not import
:mod:`logging` (a good part of a quick command's start-up time)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from cnilib.cli._commands import printable

__all__ = ["log_to_stderr"]


class _PrintableFormatter(logging.Formatter):
    """Log lines (plugins' stderr, skipped files) escaped like everything else."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


# What -v shows below INFO: one line per plugin call and per operation, and
# what plugins write on stderr; not the exchange (env, stdin, stdout), -vv's.
_SUMMARY_LOGGERS = ("cnilib.invoke", "cnilib.runtime", "cnilib.plugin")
_EXCHANGE_LOGGER = "cnilib.invoke.exchange"


def _below(name: str, parent: str) -> bool:
    return name == parent or name.startswith(parent + ".")


class _SummaryFilter(logging.Filter):
    """``-v``: INFO and above, and the DEBUG lines of :data:`_SUMMARY_LOGGERS`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.INFO:
            return True
        if _below(record.name, _EXCHANGE_LOGGER):
            return False
        return any(_below(record.name, name) for name in _SUMMARY_LOGGERS)


def log_to_stderr(verbosity: int) -> Callable[[], None]:
    """``-v`` (1): a summary of each plugin call and operation; ``-vv`` (2 or
    more): everything cnilib logs, each call's whole exchange included (its
    logger is opt-in, see :mod:`cnilib.invoke._calllog`).

    Returns what undoes it, so that ``main()`` called in-process (tests, an
    application) leaves logging as it found it.
    """
    if verbosity <= 0:
        return lambda: None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("%(name)s: %(message)s"))
    if verbosity == 1:
        handler.addFilter(_SummaryFilter())
    library_log = logging.getLogger("cnilib")
    exchange_log = logging.getLogger(_EXCHANGE_LOGGER)
    levels = {library_log: library_log.level, exchange_log: exchange_log.level}
    library_log.addHandler(handler)
    library_log.setLevel(logging.DEBUG)
    if verbosity >= 2:
        exchange_log.setLevel(logging.DEBUG)

    def restore() -> None:
        library_log.removeHandler(handler)
        for log, level in levels.items():
            log.setLevel(level)

    return restore
