"""The lease daemon's command line, read as Go's ``flag`` package reads it."""

from __future__ import annotations

import pytest

from cnilib.errors import CNIError
from cnilib.plugins.ipam.dhcp._flags import DaemonFlags, parse_duration, parse_flags


def error_of(*argv: str) -> str:
    with pytest.raises(CNIError) as info:
        parse_flags(argv)
    return str(info.value)


def test_defaults_are_gos() -> None:
    flags = parse_flags([])
    assert flags == DaemonFlags()
    assert (flags.socket_path, flags.pidfile, flags.host_prefix) == ("/run/cni/dhcp.sock", "", "")
    assert flags.broadcast is False
    assert (flags.timeout, flags.resend_max, flags.resend_timeout) == (10.0, 62.0, 208.0)
    assert flags.state_dir == "/run/cni/dhcp"


@pytest.mark.parametrize(
    "argv",
    [
        ["-socketpath", "/tmp/d.sock"],
        ["-socketpath=/tmp/d.sock"],
        ["--socketpath=/tmp/d.sock"],
        ["--socketpath", "/tmp/d.sock"],
    ],
)
def test_value_forms(argv: list[str]) -> None:
    assert parse_flags(argv).socket_path == "/tmp/d.sock"


def test_every_flag() -> None:
    flags = parse_flags(
        [
            "-pidfile=/run/d.pid",
            "-hostprefix",
            "/host",
            "-broadcast",
            "-timeout=3s",
            "-resendmax",
            "1m",
            "--resendtimeout=2m30s",
            "-statedir",
            "/var/lib/d",
        ]
    )
    assert flags == DaemonFlags(
        pidfile="/run/d.pid",
        host_prefix="/host",
        broadcast=True,
        timeout=3.0,
        resend_max=60.0,
        resend_timeout=150.0,
        state_dir="/var/lib/d",
    )


def test_a_value_that_looks_like_a_flag_is_taken_as_the_value() -> None:
    """Go's flag takes the next argument whatever it is."""
    assert parse_flags(["-pidfile", "-broadcast"]).pidfile == "-broadcast"


def test_an_equals_sign_inside_the_value_is_kept() -> None:
    assert parse_flags(["-hostprefix=/a=b"]).host_prefix == "/a=b"


def test_an_empty_value_is_a_value() -> None:
    assert parse_flags(["-statedir="]).state_dir == ""
    assert parse_flags(["-statedir", ""]).state_dir == ""


def test_the_last_occurrence_wins() -> None:
    assert parse_flags(["-timeout=1s", "-timeout=2s"]).timeout == 2.0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-broadcast"], True),
        (["--broadcast"], True),
        (["-broadcast=true"], True),
        (["-broadcast=1"], True),
        (["-broadcast=t"], True),
        (["-broadcast=TRUE"], True),
        (["-broadcast=false"], False),
        (["-broadcast=0"], False),
        (["-broadcast=f"], False),
        (["-broadcast=FALSE"], False),
        (["-broadcast", "-broadcast=false"], False),
    ],
)
def test_booleans(argv: list[str], expected: bool) -> None:
    assert parse_flags(argv).broadcast is expected


@pytest.mark.parametrize(
    ("text", "expected"), [("True", True), ("T", True), ("False", False), ("F", False)]
)
def test_booleans_go_also_takes(text: str, expected: bool) -> None:
    assert parse_flags([f"-broadcast={text}"]).broadcast is expected


def test_a_bare_boolean_does_not_take_the_next_argument() -> None:
    """``-broadcast false``: Go reads ``false`` as a positional argument, not the value."""
    assert "unexpected argument 'false'" in error_of("-broadcast", "false")


def test_bad_boolean() -> None:
    assert error_of("-broadcast=yes").startswith('invalid boolean value "yes" for -broadcast')
    assert error_of("-broadcast=").startswith('invalid boolean value "" for -broadcast')


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("2m0.25s", 120.25),
        ("100us", 100e-6),
        ("100µs", 100e-6),
        ("7ns", 7e-9),
        ("0s", 0.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1x", "s", "1 s", "1s ", "1m-3s", "0.0.1s", "one"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("flag", ["timeout", "resendmax", "resendtimeout"])
def test_a_bad_duration_flag_names_the_flag_and_value(flag: str) -> None:
    message = error_of(f"-{flag}=10")
    assert message.startswith(f'invalid value "10" for flag -{flag}: ')
    assert "invalid duration" in message
    assert error_of(f"-{flag}", "ten").startswith(f'invalid value "ten" for flag -{flag}: ')


def test_duration_flags_in_seconds() -> None:
    flags = parse_flags(["-timeout", "500ms", "-resendmax=1.5s", "-resendtimeout=1m30s"])
    assert (flags.timeout, flags.resend_max, flags.resend_timeout) == (0.5, 1.5, 90.0)


@pytest.mark.parametrize("flag", ["timeout", "resendmax", "resendtimeout"])
def test_a_zero_duration_flag_is_refused(flag: str) -> None:
    """A zero wait leaves the client no time for a server (Go takes it and never gets a lease)."""
    assert error_of(f"-{flag}=0").startswith(f'invalid value "0" for flag -{flag}: ')
    assert error_of(f"-{flag}", "0s").startswith(f'invalid value "0s" for flag -{flag}: ')


def test_unknown_flag() -> None:
    assert error_of("-nope") == "flag provided but not defined: -nope"
    assert error_of("--nope=1") == "flag provided but not defined: -nope"
    # Go's flag names are case sensitive.
    assert error_of("-SocketPath=/x") == "flag provided but not defined: -SocketPath"


@pytest.mark.parametrize("flag", ["socketpath", "pidfile", "hostprefix", "statedir", "timeout"])
def test_missing_value(flag: str) -> None:
    assert error_of(f"-{flag}") == f"flag needs an argument: -{flag}"
    assert error_of("-broadcast", f"--{flag}") == f"flag needs an argument: -{flag}"


@pytest.mark.parametrize("argv", [["daemon"], ["/tmp/x"], ["-"], ["-timeout=1s", "extra"]])
def test_positional_arguments_are_refused(argv: list[str]) -> None:
    assert error_of(*argv) == f"unexpected argument {argv[-1]!r}"


def test_double_dash_ends_the_flags() -> None:
    assert parse_flags(["-broadcast", "--"]).broadcast is True
    assert error_of("--", "-broadcast") == "unexpected argument '-broadcast'"


def test_three_dashes_are_bad_syntax() -> None:
    assert error_of("---socketpath=/x") == "bad flag syntax: ---socketpath=/x"
    assert error_of("-=x") == "bad flag syntax: -=x"
