"""Go's wording conventions that cnilib's result messages and strings follow."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from cnilib._json import type_name

__all__ = ["clean_str", "go_quote", "json_kind"]

_SURROGATES: Final = re.compile("[\ud800-\udfff]")


def clean_str(text: str) -> str:
    """Replace lone surrogates with U+FFFD, as Go does for invalid UTF-16/UTF-8."""
    return _SURROGATES.sub("\ufffd", text)


def json_kind(value: object) -> str:
    """How Go's ``UnmarshalTypeError`` names the JSON value it could not store."""
    return "bool" if isinstance(value, bool) else type_name(value)


_QUOTE_ESCAPES: Final[Mapping[str, str]] = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    '"': '\\"',
    "\\": "\\\\",
}


def go_quote(text: str) -> str:
    """Go's ``%q`` (``strconv.Quote``) of ``text``."""
    out = ['"']
    for char in clean_str(text):
        code = ord(char)
        if char in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[char])
        elif char == " " or char.isprintable():
            out.append(char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
