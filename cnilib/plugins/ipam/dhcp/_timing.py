"""When a lease keeper waits, retries and renews (Go's ``lease.go`` timing).

:class:`Timing` holds the daemon's retry settings and yields the delays
between attempts; :func:`lease_timers` turns an ACK's options into the lease
time, T1 and T2 the keeper counts with. Time itself comes from a
:class:`Clock` (:class:`SystemClock` in production, a fake one in tests):
wall-clock seconds for what is stored, monotonic seconds for waiting.

With the defaults the delays between attempts are 2, 2, 2, 2, 4, 8, 16, 32,
62, 62, ... s, each moved by up to :attr:`Timing.jitter` either way (how this
and the lease-time rules differ from Go is listed in
:mod:`cnilib.plugins.ipam.dhcp._lease`).
"""

from __future__ import annotations

import asyncio
import datetime
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

import attrs

from cnilib.plugins.ipam.dhcp._options import (
    LEASE_TIME,
    REBINDING_TIME,
    RENEWAL_TIME,
    LeaseTimes,
    lease_times,
)

__all__ = [
    "FAST_RETRIES",
    "MIN_LEASE_TIME",
    "Clock",
    "SystemClock",
    "Timing",
    "format_wall_time",
    "lease_timers",
]

FAST_RETRIES = 4
"""Retries at :attr:`Timing.fast_delay` before the exponential backoff starts."""

MIN_LEASE_TIME = 20
"""Seconds: a shorter lease time (option 51) counts as this long (dhcpcd's floor).

A lease of 0 or a few seconds would have the keeper renew (or expire) back to
back; 20 s is shorter than any server's real lease (dnsmasq's minimum is 2
minutes), so only a broken server is affected."""


class Clock(Protocol):
    """Where a keeper gets the time and waits."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (stored in records)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (used for waiting)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (0 or less: just yield)."""


class SystemClock:
    """The real clocks and :func:`asyncio.sleep`."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


def _positive(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


@attrs.frozen
class Timing:
    """How long to wait for servers and how to retry (Go's daemon flags)."""

    attempt_timeout: float = attrs.field(default=10.0, validator=_positive)
    """Seconds one attempt waits for each reply (Go ``-timeout``)."""
    resend_max: float = attrs.field(default=62.0, validator=_positive)
    """The longest delay between attempts (Go ``-resendmax``)."""
    resend_timeout: float = attrs.field(default=208.0, validator=_positive)
    """The budget of one acquisition, attempts and delays (Go ``-resendtimeout``)."""
    fast_delay: float = attrs.field(default=2.0, validator=_positive)
    """The delay of the first :data:`FAST_RETRIES` retries."""
    first_backoff: float = attrs.field(default=4.0, validator=_positive)
    """The first delay of the exponential backoff (RFC 2131 4.1)."""
    jitter: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))
    """Each delay is moved by up to this many seconds either way."""

    def delays(self, rand: Callable[[], float] = random.random) -> Iterator[float]:
        """The delays before each retry; ``rand`` returns a float in [0, 1)."""
        for _ in range(FAST_RETRIES):
            yield self._jittered(self.fast_delay, rand)
        base = self.first_backoff
        while True:
            yield self._jittered(min(base, self.resend_max), rand)
            base *= 2

    def _jittered(self, delay: float, rand: Callable[[], float]) -> float:
        return max(0.0, delay + self.jitter * (2.0 * rand() - 1.0))


_ZERO_SECONDS = bytes(4)


def lease_timers(options: Mapping[int, bytes]) -> LeaseTimes:
    """The lease time, T1 and T2 the keeper uses for an ACK's ``options``.

    :func:`~cnilib.plugins.ipam.dhcp._options.lease_times` (RFC 2131 4.4.5
    defaults and bounds), with a lease time under :data:`MIN_LEASE_TIME`
    taken as that long and a T1 or T2 of 0 as absent (as dhcpcd does): either
    would have the keeper renew back to back. Raises
    :class:`~cnilib.plugins.ipam.dhcp._options.DhcpOptionError` for a
    malformed option.
    """
    times = lease_times(options)
    if times.lease >= MIN_LEASE_TIME and _ZERO_SECONDS not in (
        options.get(RENEWAL_TIME),
        options.get(REBINDING_TIME),
    ):
        return times
    fixed = {
        code: value
        for code, value in options.items()
        if not (code in (RENEWAL_TIME, REBINDING_TIME) and value == _ZERO_SECONDS)
    }
    if times.lease < MIN_LEASE_TIME:
        fixed[LEASE_TIME] = MIN_LEASE_TIME.to_bytes(4, "big")
    return lease_times(fixed)


def format_wall_time(seconds: float) -> str:
    """A wall-clock time as the logs show it (local ISO 8601, to the second).

    Raises :class:`ValueError`, :class:`OverflowError` or :class:`OSError`
    for a time no clock shows (NaN, infinite, past year 9999).
    """
    return datetime.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")
