"""Where a lease stands: the states of a lease keeper, as records store them."""

from __future__ import annotations

import enum

__all__ = ["HELD", "LeaseState"]


class LeaseState(enum.Enum):
    """Where a lease stands."""

    INIT = "init"
    """No lease acquired yet."""
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"
    REBOOTING = "rebooting"
    """Resumed after expiry: asking for the same address again."""
    EXPIRED = "expired"
    LOST = "lost"
    """The server refused the address (NAK) while renewing or rebinding."""
    GONE = "gone"
    """The interface or its namespace vanished; maintenance ended."""
    RELEASED = "released"


HELD = frozenset({LeaseState.BOUND, LeaseState.RENEWING, LeaseState.REBINDING})
"""The states in which the client holds its address."""
