"""What the overlay raises: every failure is a :class:`cnilib.CNIError` naming its cause.

The agent's errors carry the spec's codes where a plugin would report the same
condition (an unreachable etcd is "try again later", code 11), so a runtime that
surfaces them through the ``overlay`` plugin's STATUS sees the usual codes.
"""

from __future__ import annotations

from cnilib.errors import CNIError, ErrorCode

__all__ = [
    "NodeNameTakenError",
    "OverlayConfigError",
    "OverlayError",
    "PoolExhaustedError",
    "RecordError",
    "RevisionCompactedError",
    "StoreError",
    "StoreUnavailableError",
]


class OverlayError(CNIError):
    """Base of the overlay's errors."""

    default_code = ErrorCode.INTERNAL


class OverlayConfigError(OverlayError, ValueError):
    """The cluster or agent configuration is invalid, or differs from the one in etcd."""

    default_code = ErrorCode.INVALID_NETWORK_CONFIG


class RecordError(OverlayError, ValueError):
    """A key or value in etcd is not what the overlay writes (names the key and field)."""

    default_code = ErrorCode.DECODING_FAILURE


class PoolExhaustedError(OverlayError):
    """No subnet of the cluster's pool is free: the node did not join."""

    default_code = ErrorCode.TRY_AGAIN_LATER


class NodeNameTakenError(OverlayError):
    """A live agent already holds this node name (``nodes/<name>`` under another lease)."""

    default_code = ErrorCode.TRY_AGAIN_LATER


class StoreError(OverlayError):
    """The cluster store (etcd) failed a request."""


class StoreUnavailableError(StoreError):
    """The cluster store cannot be reached (connection refused or lost, timeout)."""

    default_code = ErrorCode.TRY_AGAIN_LATER


class RevisionCompactedError(StoreError):
    """A watch asked for a revision the store has compacted away: list again."""

    def __init__(self, msg: str, *, compact_revision: int = 0) -> None:
        self.compact_revision = compact_revision
        super().__init__(msg)
