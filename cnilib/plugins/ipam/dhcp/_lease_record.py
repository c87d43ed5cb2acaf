"""A lease as the daemon's state file stores it: encoding, decoding, validation.

:class:`LeaseRecord` is what a :class:`~cnilib.plugins.ipam.dhcp._lease.LeaseKeeper`
saves after every change and resumes from in a restarted daemon: the
attachment (key, namespace, interface), what its client sends, its state,
the wall time its lease counts from and the ACK that granted it.
:meth:`LeaseRecord.from_json` refuses, with :class:`LeaseRecordError`, a
record the keeper could not use later: a missing or malformed field, a time
no clock shows, an option or address that could not be sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import attrs

from cnilib.netlink._dhcp import DhcpReply, DhcpRequest, MessageType, encode_message
from cnilib.plugins.ipam.dhcp._lease_state import HELD, LeaseState
from cnilib.plugins.ipam.dhcp._options import DhcpOptionError
from cnilib.plugins.ipam.dhcp._request_options import LeaseRequestOptions
from cnilib.plugins.ipam.dhcp._timing import format_wall_time, lease_timers

__all__ = ["LeaseRecord", "LeaseRecordError"]


class LeaseRecordError(ValueError):
    """A saved lease record cannot be resumed (malformed or incomplete)."""


@attrs.frozen
class LeaseRecord:
    """One saved lease; ``obtained`` and ``ack`` are both None or both set."""

    key: str
    """The lease's name (Go's client ID string, ``<containerID>/<net>/<ifname>``)."""
    netns: str
    """The container namespace's path."""
    ifname: str
    """The interface in it."""
    options: LeaseRequestOptions
    """What the client sends."""
    state: LeaseState
    """Where the lease stood when saved."""
    obtained: float | None = None
    """Wall time the lease counts from (the sending of the REQUEST the ACK answered)."""
    ack: DhcpReply | None = None
    """The ACK that granted the lease."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form, for :meth:`from_json`."""
        ack = self.ack
        return {
            "key": self.key,
            "netns": self.netns,
            "ifname": self.ifname,
            "options": self.options.to_json(),
            "state": self.state.value,
            "obtained": self.obtained,
            "ack": None
            if ack is None
            else {
                "yiaddr": ack.yiaddr,
                "chaddr": ack.chaddr,
                "server_mac": ack.server_mac,
                "server_ip": ack.server_ip,
                "options": {str(code): value.hex() for code, value in sorted(ack.options.items())},
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LeaseRecord:
        """The inverse of :meth:`to_json`, validated.

        A record without its ACK or time has neither (a lease never acquired,
        or released). Raises :class:`LeaseRecordError` for a record a keeper
        cannot resume.
        """
        try:
            return cls._decode(data)
        except LeaseRecordError:
            raise
        except (
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            OverflowError,
            OSError,
            DhcpOptionError,
        ) as exc:
            raise LeaseRecordError(f"dhcp lease record: {exc!r}") from exc

    @classmethod
    def _decode(cls, data: Mapping[str, Any]) -> LeaseRecord:
        key, netns, ifname = str(data["key"]), str(data["netns"]), str(data["ifname"])
        options = LeaseRequestOptions.from_json(data["options"])
        # What the keeper will send must encode: else its task would fail at T1.
        encode_message(
            DhcpRequest(
                MessageType.REQUEST,
                0,
                "00:00:00:00:00:00",
                client_id=options.client_id,
                parameters=options.parameters,
                extra_options=options.extra_options,
            )
        )
        state = LeaseState(data["state"])
        raw_ack = data["ack"]
        obtained = data["obtained"]
        if raw_ack is None or obtained is None:
            if state in HELD:
                raise LeaseRecordError("a held lease without its ACK")
            return cls(key, netns, ifname, options, state)
        ack = DhcpReply(
            message_type=MessageType.ACK,
            xid=0,
            yiaddr=str(ipaddress.IPv4Address(raw_ack["yiaddr"])),
            chaddr=_mac(raw_ack["chaddr"]),
            options={_code(c): bytes.fromhex(v) for c, v in raw_ack["options"].items()},
            server_mac=_mac(raw_ack["server_mac"]),
            server_ip=str(ipaddress.IPv4Address(raw_ack["server_ip"])),
        )
        if not isinstance(obtained, int | float) or isinstance(obtained, bool):
            raise LeaseRecordError(f"dhcp lease record: obtained {obtained!r} is no time")
        obtained = float(obtained)
        # A time datetime cannot show (NaN, infinite, past year 9999) is no time either.
        format_wall_time(obtained + max(lease_timers(ack.options)))
        return cls(key, netns, ifname, options, state, obtained, ack)


def _mac(value: object) -> str:
    """An Ethernet address from a record (it is sent to: a bad one fails late)."""
    text = str(value).lower()
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and set(p) <= set("0123456789abcdef") for p in parts):
        raise LeaseRecordError(f"dhcp lease record: {value!r} is not an Ethernet address")
    return text


def _code(value: object) -> int:
    code = int(str(value))
    if not 1 <= code <= 254:
        raise LeaseRecordError(f"dhcp lease record: option code {value!r} is out of range")
    return code
