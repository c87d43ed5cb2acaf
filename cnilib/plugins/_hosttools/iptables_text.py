"""Reading ``iptables -S`` and writing ``iptables-restore`` lines, for every plugin
that lists a table once and changes it in one transaction (ipMasq, portmap,
firewall).

``iptables -S`` is not shell syntax: iptables puts double quotes (with ``\\``,
``"`` and ``'`` escaped) only around some match arguments, such as a comment,
and prints chain and interface names as they are. A chain named ``it's``
anywhere in the table made ``shlex.split`` fail on every listing
(``No closing quotation``), and a backslash in a name was dropped.
``iptables-restore`` reads one command per line, quoted or not, so a word
holding a line break would end the rule and start a command of its own: such
a word is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cnilib.errors import ErrorCode, PluginError

__all__ = ["listing_rules", "restore_line", "restore_word", "saved_words"]

_PLAIN = re.compile(r"[A-Za-z0-9_./:!=,+%@\[\]-]+")


def saved_words(line: str) -> tuple[str, ...]:
    r"""The words of an ``iptables -S`` line, as iptables quotes them: a word in double
    quotes has ``\\``, ``\"`` and ``\'`` escaped; any other word is printed as is, so
    a chain named ``it's`` or ``a\b`` stays itself (shell rules would fail on the one
    and drop the backslash of the other)."""
    words: list[str] = []
    i, end = 0, len(line)
    while i < end:
        if line[i] == " ":
            i += 1
        elif line[i] == '"':
            word: list[str] = []
            i += 1
            while i < end and line[i] != '"':
                if line[i] == "\\" and i + 1 < end:
                    i += 1
                word.append(line[i])
                i += 1
            words.append("".join(word))
            i += 1  # the closing quote
        else:
            stop = line.find(" ", i)
            stop = end if stop < 0 else stop
            words.append(line[i:stop])
            i = stop
    return tuple(words)


def listing_rules(text: str) -> list[tuple[str, ...]]:
    """Each non-blank line of an ``iptables -S`` output, split by :func:`saved_words`."""
    return [saved_words(line) for line in text.splitlines() if line.strip()]


def restore_word(word: str) -> str:
    """One word of an ``iptables-restore`` line, double-quoted unless plain; a word
    with a line break or NUL is refused (code 999)."""
    if _PLAIN.fullmatch(word):
        return word
    if any(ch in word for ch in "\n\r\0"):
        raise PluginError(
            f"iptables-restore cannot take {word!r}: it holds a line break",
            code=ErrorCode.INTERNAL,
        )
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def restore_line(words: Iterable[str]) -> str:
    """An ``iptables-restore`` line of ``words`` (see :func:`restore_word`)."""
    return " ".join(restore_word(word) for word in words)
