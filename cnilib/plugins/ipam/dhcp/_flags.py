"""The daemon's command line, as Go's ``flag`` package reads it.

Go's flags take one or two dashes and ``-name value`` or ``-name=value``;
durations are Go's (``10s``, ``1m30s``, ``500ms``), booleans are bare or
``=value`` with Go's ``strconv.ParseBool`` spellings (``true``, ``False``,
``1``, ``f``, ...). The names are Go's, so a unit file written for Go's
daemon starts cnilib's unchanged; ``-statedir`` is cnilib's own. ``-h`` and
``-help`` ask for the usage (exit status 0, as Go's).

Unlike Go's ``flag``, which stops at the first argument that is not a flag
and ignores the rest, such an argument is an error (the flags after it would
be silently ignored); and a duration must be positive (Go takes ``0`` and
negative ones, which leave the client no time to wait for a server).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

from cnilib.errors import CNIError

__all__ = ["USAGE", "DaemonFlags", "FlagsHelp", "parse_duration", "parse_flags"]

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
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
"""Go's ``strconv.ParseBool``."""

USAGE = "\n".join(
    [
        "Usage of daemon:",
        "  -broadcast              set the BROADCAST flag on DISCOVER and REQUEST",
        "  -hostprefix string      prefix to the host's root (before every netns path)",
        "  -pidfile string         absolute path to write the daemon's PID to",
        "  -resendmax duration     longest delay between attempts (default 1m2s)",
        "  -resendtimeout duration give up acquiring a lease after (default 3m28s)",
        "  -socketpath string      the daemon's socket (default /run/cni/dhcp.sock)",
        '  -statedir string        the lease records, "" for none (default /run/cni/dhcp)',
        "  -timeout duration       how long one attempt waits for a server (default 10s)",
    ]
)


class FlagsHelp(CNIError):  # noqa: N818 -- a request, not an error
    """``-h`` or ``-help``: the text is the usage."""


def parse_flags(argv: Sequence[str]) -> DaemonFlags:
    """The flags of ``argv`` (the arguments after ``daemon``)."""
    values: dict[str, object] = {}
    strings = {**_STRINGS, **_STRINGS_OWN}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            raise CNIError(f"unexpected argument {arg!r}")
        name, has_value, value = arg[2 if arg.startswith("--") else 1 :].partition("=")
        if not name or name.startswith("-"):
            raise CNIError(f"bad flag syntax: {arg}")
        if name in ("h", "help"):
            raise FlagsHelp(USAGE)
        if name in _BOOLS:
            if has_value and value not in _TRUE + _FALSE:
                raise CNIError(f'invalid boolean value "{value}" for -{name}: parse error')
            values[_BOOLS[name]] = not has_value or value in _TRUE
            continue
        if name not in strings and name not in _DURATIONS:
            raise CNIError(f"flag provided but not defined: -{name}")
        if not has_value:
            if not args:
                raise CNIError(f"flag needs an argument: -{name}")
            value = args.pop(0)
        if name in _DURATIONS:
            try:
                seconds = parse_duration(value)
            except ValueError as exc:
                raise CNIError(f'invalid value "{value}" for flag -{name}: {exc}') from None
            if seconds <= 0:
                raise CNIError(f'invalid value "{value}" for flag -{name}: must be positive')
            values[_DURATIONS[name]] = seconds
        else:
            values[strings[name]] = value
    if args:
        raise CNIError(f"unexpected argument {args[0]!r}")
    return DaemonFlags(**values)  # type: ignore[arg-type]
