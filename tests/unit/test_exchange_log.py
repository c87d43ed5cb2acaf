"""The exchange of each plugin call (``cnilib.invoke.exchange``: environment,
stdin, stdout) may carry runtimeConfig and addresses: it is logged only when
asked for by name, never because ``cnilib.invoke`` is at DEBUG."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cnilib.invoke._calllog import exchange_log, summary_log


@pytest.fixture
def _restore_levels() -> Iterator[None]:
    levels = {log: log.level for log in (logging.getLogger("cnilib"), summary_log, exchange_log)}
    yield
    for log, level in levels.items():
        log.setLevel(level)


@pytest.mark.usefixtures("_restore_levels")
def test_invoke_at_debug_leaves_the_exchange_off() -> None:
    """The summary lines at DEBUG do not bring the exchange with them."""
    logging.getLogger("cnilib").setLevel(logging.DEBUG)
    summary_log.setLevel(logging.DEBUG)

    assert summary_log.isEnabledFor(logging.DEBUG)
    assert not exchange_log.isEnabledFor(logging.DEBUG)


@pytest.mark.usefixtures("_restore_levels")
def test_the_exchange_is_enabled_by_name() -> None:
    summary_log.setLevel(logging.DEBUG)
    logging.getLogger("cnilib.invoke.exchange").setLevel(logging.DEBUG)

    assert exchange_log.isEnabledFor(logging.DEBUG)


def test_a_level_set_before_import_is_kept() -> None:
    """An application may enable the exchange before cnilib imports its logger."""
    code = (
        "import logging\n"
        "logging.getLogger('cnilib.invoke.exchange').setLevel(logging.DEBUG)\n"
        "from cnilib.invoke._calllog import exchange_log\n"
        "print(exchange_log.level)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert str(logging.DEBUG) == proc.stdout.strip()
