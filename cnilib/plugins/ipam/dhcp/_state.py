"""The lease daemon's state directory: one JSON record per lease it keeps.

Go's daemon keeps its leases in memory only: after a restart it has
forgotten every container, a DEL releases nothing and the server keeps the
address until the lease runs out. cnilib's daemon writes a record when a
lease is acquired or renewed and drops it when the lease is released, so a
restarted daemon resumes renewing and a later DEL still releases.

A record is written atomically (:mod:`cnilib.plugins._statefile`); the file
name is the lease's key (``<containerID>/<network>/<ifname>``) with every
character outside ``[A-Za-z0-9._~-]`` and a leading dot percent-encoded, so
keys never collide, never escape the directory and never make a hidden
file. A name that would pass the file system's 255-byte limit (a key is up to
254 bytes, and encoding can triple it) keeps its first 150 characters and
ends with a hash of the whole key. Records are read once, at start; the daemon
holds no file open between writes. A record that cannot be read or parsed is
logged and renamed ``*.bad`` (kept for a human, never trusted, never
silently lost).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cnilib._log import get_logger
from cnilib.plugins._statefile import drop_state, write_state

__all__ = ["RECORD_VERSION", "LeaseRecords", "record_name"]

RECORD_VERSION = 1
"""The ``version`` a record is written with; others are not resumed."""

_SUFFIX = ".json"
_log = get_logger("cnilib.dhcp")


class LeaseRecords:
    """The records of one state directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        """Where the record of ``key`` lives."""
        return self.directory / record_name(key)

    def write(self, key: str, record: Mapping[str, Any]) -> None:
        """Save ``record`` for ``key`` (atomically; replaces the previous one)."""
        document = {"version": RECORD_VERSION, "key": key, **record}
        write_state(self.path(key), json.dumps(document, sort_keys=True), what="dhcp lease record")

    def drop(self, key: str) -> None:
        """Forget ``key``'s record (none is fine)."""
        drop_state(self.path(key))

    def set_aside(self, key: str, why: str) -> None:
        """Rename ``key``'s record ``<name>.bad`` (one the daemon cannot resume)."""
        self._set_aside(self.path(key), why)

    def load(self) -> Iterator[dict[str, Any]]:
        """Every readable record of the directory (none if it does not exist).

        A file that is not a record of this version is renamed ``<name>.bad``
        and logged, so the daemon starts anyway and the evidence is kept.
        """
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names:
            if not name.endswith(_SUFFIX) or name.startswith("."):
                continue
            path = self.directory / name
            try:
                document = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                self._set_aside(path, f"cannot be read: {exc}")
                continue
            if not _is_record(document, name):
                self._set_aside(path, f"is not a version {RECORD_VERSION} lease record")
                continue
            yield document

    @staticmethod
    def _set_aside(path: Path, why: str) -> None:
        _log.error("lease record %s %s; renamed to %s.bad", path, why, path.name)
        with contextlib.suppress(OSError):
            path.replace(path.with_name(path.name + ".bad"))


def _is_record(document: object, name: str) -> bool:
    return (
        isinstance(document, dict)
        and document.get("version") == RECORD_VERSION
        and isinstance(document.get("key"), str)
        and record_name(document["key"]) == name
    )


_MAX_NAME = 240
"""Below NAME_MAX (255) with room for the ``.bad`` and temporary-file affixes."""


def record_name(key: str) -> str:
    """The file name of ``key``'s record."""
    name = quote(key, safe="")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) + len(_SUFFIX) > _MAX_NAME:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        name = f"{name[:150]}-{digest}"
    return name + _SUFFIX
