"""The CLI's escaping of text it prints: nothing reaches a terminal raw."""

from __future__ import annotations

import json

import pytest

from cnilib.cli._commands import printable, printable_json


class TestPrintable:
    @pytest.mark.parametrize(
        ("text", "shown"),
        [
            ("x\x1b[2Jy", "x\\x1b[2Jy"),
            ("a\nb\rc\td", "a\\nb\\rc\\td"),
            ("\x00\x07\x7f", "\\x00\\x07\\x7f"),
            ("\x9b31m", "\\x9b31m"),
            ("evil\u202etxt.conf", "evil\\u202etxt.conf"),
            ("a\u2028b\u200bc", "a\\u2028b\\u200bc"),
            ("tag\U000e0041", "tag\\U000e0041"),
            ("bad-\udcff.conflist", "bad-\\xff.conflist"),
            ("lone\ud800", "lone\\ud800"),
        ],
    )
    def test_escapes_control_and_invisible(self, text: str, shown: str) -> None:
        """Control, format and separator characters, and surrogates, become escapes."""
        assert shown == printable(text)

    def test_keeps_printable_text(self) -> None:
        """Printable text, non-ASCII letters, spaces and backslashes pass unchanged."""
        text = 'héllo wörld ✓ 日本 "q" a\\b $.plugins[0]'

        assert text == printable(text)


class TestPrintableJSON:
    def test_stays_json_and_printable(self) -> None:
        """JSON text keeps its layout and meaning; hidden characters become \\u escapes."""
        value = {"name": "a\x7fb\x9b\u202e\U000e0041 é", "bad": "x\udcff"}
        text = json.dumps(value, indent=4, ensure_ascii=False)

        shown = printable_json(text)

        assert value == json.loads(shown)
        assert shown.isascii() is False  # é stays as it is
        assert all(ch.isprintable() or ch == "\n" for ch in shown)
        assert shown.count("\n") == text.count("\n")
