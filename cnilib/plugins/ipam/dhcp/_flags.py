"""The daemon's command line, as Go's ``flag`` package reads it.

Go's flags take one or two dashes and ``-name value`` or ``-name=value``;
durations are Go's (``10s``, ``1m30s``, ``500ms``), booleans are bare or
``=true``/``=false``. The names are Go's, so a unit file written for Go's
daemon starts cnilib's unchanged; ``-statedir`` is cnilib's own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

from cnilib.errors import CNIError

__all__ = ["DaemonFlags", "parse_duration", "parse_flags"]

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


@attrs.frozen
class DaemonFlags:
    """The daemon's settings (Go's defaults)."""

    socket_path: str = "/run/cni/dhcp.sock"
    pidfile: str = ""
    host_prefix: str = ""
    broadcast: bool = False
    timeout: float = 10.0
    resend_max: float = 62.0
    resend_timeout: float = 208.0
    state_dir: str = "/run/cni/dhcp"


def parse_duration(text: str) -> float:
    """Go ``time.ParseDuration`` for the non-negative durations a flag takes, in seconds."""
    if text == "0":
        return 0.0
    position, total = 0, 0.0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not text:
        raise ValueError(f"time: invalid duration {text!r}")
    return total


_STRINGS = {"socketpath": "socket_path", "pidfile": "pidfile", "hostprefix": "host_prefix"}
_STRINGS_OWN = {"statedir": "state_dir"}
_DURATIONS = {"timeout": "timeout", "resendmax": "resend_max", "resendtimeout": "resend_timeout"}
_BOOLS = {"broadcast": "broadcast"}


def parse_flags(argv: Sequence[str]) -> DaemonFlags:
    """The flags of ``argv`` (the arguments after ``daemon``)."""
    values: dict[str, object] = {}
    strings = {**_STRINGS, **_STRINGS_OWN}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            break
        if not arg.startswith("-") or arg in ("-", "---"):
            raise CNIError(f"unexpected argument {arg!r}")
        name, has_value, value = arg.lstrip("-").partition("=")
        if name in _BOOLS:
            if has_value and value not in ("true", "false", "1", "0", "t", "f", "TRUE", "FALSE"):
                raise CNIError(f'invalid boolean value "{value}" for -{name}')
            values[_BOOLS[name]] = not has_value or value in ("true", "1", "t", "TRUE")
            continue
        if name not in strings and name not in _DURATIONS:
            raise CNIError(f"flag provided but not defined: -{name}")
        if not has_value:
            if not args:
                raise CNIError(f"flag needs an argument: -{name}")
            value = args.pop(0)
        if name in _DURATIONS:
            try:
                values[_DURATIONS[name]] = parse_duration(value)
            except ValueError as exc:
                raise CNIError(f'invalid value "{value}" for flag -{name}: {exc}') from None
        else:
            values[strings[name]] = value
    if args:
        raise CNIError(f"unexpected argument {args[0]!r}")
    return DaemonFlags(**values)  # type: ignore[arg-type]
