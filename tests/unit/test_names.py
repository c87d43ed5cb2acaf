"""Tests for cnilib.names: Go pkg/utils validation, codes, texts and details."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, strategies as st

from cnilib.errors import ErrorCode, InvalidArgumentError
from cnilib.names import validate_container_id, validate_interface_name, validate_network_name

VALID_NAMES = ["a", "A", "0", "abc", "a_b.c-d", "0-0", "net.v1", "a" * 300, "x..", "9_"]
INVALID_NAMES = ["-abc", "_a", ".a", "a b", "a/b", "a:b", "é", "abc\n", "a\x00", "a@b", "a+b", " a"]


class TestContainerID:
    """validate_container_id: code 3 when missing, code 4 with details when malformed."""

    @pytest.mark.parametrize("value", VALID_NAMES)
    def test_valid(self, value: str) -> None:
        """IDs matching ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$ pass."""
        validate_container_id(value)  # does not raise

    def test_missing(self) -> None:
        """'' is 'missing containerID', code 3, no details."""
        with pytest.raises(InvalidArgumentError) as info:
            validate_container_id("")
        err = info.value
        assert ("missing containerID", ErrorCode.UNKNOWN_CONTAINER, "") == (
            err.msg,
            err.code,
            err.details,
        )

    @pytest.mark.parametrize("value", INVALID_NAMES)
    def test_invalid(self, value: str) -> None:
        """Bad characters: 'invalid characters in containerID', code 4, details = the ID."""
        with pytest.raises(InvalidArgumentError) as info:
            validate_container_id(value)
        err = info.value
        assert (
            "invalid characters in containerID",
            ErrorCode.INVALID_ENVIRONMENT_VARIABLES,
            value,
        ) == (
            err.msg,
            err.code,
            err.details,
        )

    def test_is_value_error(self) -> None:
        """Callers can catch ValueError."""
        with pytest.raises(ValueError, match="invalid characters in containerID; a/b"):
            validate_container_id("a/b")


class TestNetworkName:
    """validate_network_name: code 7 for both failures."""

    @pytest.mark.parametrize("value", VALID_NAMES)
    def test_valid(self, value: str) -> None:
        """Names matching the regex pass."""
        validate_network_name(value)  # does not raise

    def test_missing(self) -> None:
        """'' is 'missing network name:' (with libcni's trailing colon), code 7."""
        with pytest.raises(InvalidArgumentError) as info:
            validate_network_name("")
        err = info.value
        assert ("missing network name:", ErrorCode.INVALID_NETWORK_CONFIG, "") == (
            err.msg,
            err.code,
            err.details,
        )

    @pytest.mark.parametrize("value", [*INVALID_NAMES, "../x", "..", "."])
    def test_invalid(self, value: str) -> None:
        """Bad characters: 'invalid characters found in network name', code 7, details = name."""
        with pytest.raises(InvalidArgumentError) as info:
            validate_network_name(value)
        err = info.value
        assert (
            "invalid characters found in network name",
            ErrorCode.INVALID_NETWORK_CONFIG,
            value,
        ) == (
            err.msg,
            err.code,
            err.details,
        )

    @given(st.from_regex(r"\A[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z"))
    def test_regex_matches_are_valid(self, name: str) -> None:
        """Every string the spec's regex accepts is valid."""
        validate_network_name(name)  # does not raise

    @given(st.text(min_size=1))
    def test_never_other_exception(self, name: str) -> None:
        """Any text is accepted or raises InvalidArgumentError."""
        with contextlib.suppress(InvalidArgumentError):
            validate_network_name(name)


class TestInterfaceName:
    """validate_interface_name: all failures are code 4."""

    @pytest.mark.parametrize(
        "value",
        ["eth0", "a", "x" * 15, "...", "eth0.100", "veth-1_x", "é" * 7, "e\u200bx", "net@1"],
    )
    def test_valid(self, value: str) -> None:
        """Names up to 15 bytes without / : or whitespace pass."""
        validate_interface_name(value)  # does not raise

    @pytest.mark.parametrize(
        ("value", "msg", "details"),
        [
            ("", "interface name is empty", ""),
            (
                "x" * 16,
                "interface name is too long",
                "interface name should be less than 16 characters",
            ),
            (
                "é" * 8,
                "interface name is too long",
                "interface name should be less than 16 characters",
            ),
            (".", "interface name is . or ..", ""),
            ("..", "interface name is . or ..", ""),
            ("a/b", "interface name contains / or : or whitespace characters", ""),
            ("a:b", "interface name contains / or : or whitespace characters", ""),
            ("a b", "interface name contains / or : or whitespace characters", ""),
            ("a\tb", "interface name contains / or : or whitespace characters", ""),
            ("a\nb", "interface name contains / or : or whitespace characters", ""),
            ("a\u00a0b", "interface name contains / or : or whitespace characters", ""),
            ("a\u2003b", "interface name contains / or : or whitespace characters", ""),
            ("a\u0085b", "interface name contains / or : or whitespace characters", ""),
            ("a\u3000b", "interface name contains / or : or whitespace characters", ""),
            ("a\x00b", "interface name contains / or : or whitespace characters", ""),
        ],
        ids=repr,
    )
    def test_invalid(self, value: str, msg: str, details: str) -> None:
        """Each rule gives its libcni message; NUL is refused too (cnilib improvement)."""
        with pytest.raises(InvalidArgumentError) as info:
            validate_interface_name(value)
        err = info.value
        assert (msg, ErrorCode.INVALID_ENVIRONMENT_VARIABLES, details) == (
            err.msg,
            err.code,
            err.details,
        )

    def test_length_checked_before_characters(self) -> None:
        """A long name with a slash reports the length, as Go checks length first."""
        with pytest.raises(InvalidArgumentError, match="too long"):
            validate_interface_name("a/" * 10)

    def test_surrogate_does_not_crash(self) -> None:
        """A name holding a surrogate is judged, not crashed on (UnicodeEncodeError)."""
        with contextlib.suppress(InvalidArgumentError):
            validate_interface_name("eth\udcff")

    @given(st.text(st.characters(codec="utf-8"), max_size=20))
    def test_never_other_exception(self, name: str) -> None:
        """Any text without surrogates is accepted or raises InvalidArgumentError."""
        with contextlib.suppress(InvalidArgumentError):
            validate_interface_name(name)
