"""Naming a file's type in messages, for every module that refuses a wrong one."""

from __future__ import annotations

import stat

__all__ = ["describe_type"]


def describe_type(mode: int) -> str:
    """``a symbolic link``, ``a regular file``, … for messages."""
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "of an unknown type"
