"""Per-attachment state a plugin keeps between ADD and DEL (Go's ``dataDir`` files).

Written atomically (temporary file, fsync, rename) and readable by root
only, so a crash never leaves half a record that a later DEL would trust.
Each plugin names its files (host-device: ``<containerID>:<ifname>.json``).
Errors name the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from cnilib.plugins._hostside import fail

__all__ = ["drop_state", "read_state", "write_state"]


def write_state(path: Path, text: str, *, what: str) -> None:
    """Write ``text`` to ``path`` atomically, mode 0600 (``what``: for the error)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_dir(path.parent)  # the rename itself survives a crash too
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise fail(f"failed to save {what} to {path}: {exc.strerror}") from exc


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_state(path: Path, *, what: str) -> str | None:
    """The content of ``path``; None when there is none."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise fail(f"failed to read {what} from {path}: {exc.strerror}") from exc


def drop_state(path: Path) -> None:
    """Delete ``path`` (gone already is fine)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
