"""What a lease keeper's client puts in its DHCP messages, and its JSON form."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

__all__ = ["LeaseRequestOptions"]


def _int_tuple(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(values)


def _option_tuple(values: Iterable[tuple[int, bytes]]) -> tuple[tuple[int, bytes], ...]:
    return tuple((code, bytes(value)) for code, value in values)


@attrs.frozen
class LeaseRequestOptions:
    """What the client puts in its messages (from the IPAM configuration)."""

    client_id: bytes
    """Option 61's payload (Go: ``b"\\x00" + "<containerID>/<net>/<ifname>"``)."""
    parameters: tuple[int, ...] = attrs.field(default=(), converter=_int_tuple)
    """Option 55, in this order (none when empty)."""
    extra_options: tuple[tuple[int, bytes], ...] = attrs.field(default=(), converter=_option_tuple)
    """Further options (Go's ``provide``), sent as given on DISCOVER and REQUEST."""
    broadcast: bool = False
    """Ask the server to broadcast its answers while we have no address (Go ``-broadcast``)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form (bytes as hex)."""
        return {
            "client_id": self.client_id.hex(),
            "parameters": list(self.parameters),
            "extra_options": [[code, value.hex()] for code, value in self.extra_options],
            "broadcast": self.broadcast,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LeaseRequestOptions:
        """The inverse of :meth:`to_json`."""
        return cls(
            client_id=bytes.fromhex(data["client_id"]),
            parameters=tuple(int(code) for code in data["parameters"]),
            extra_options=tuple(
                (int(code), bytes.fromhex(value)) for code, value in data["extra_options"]
            ),
            broadcast=bool(data["broadcast"]),
        )
