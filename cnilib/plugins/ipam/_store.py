"""host-local's on-disk store, byte-compatible with Go's ``backend/disk``.

``<dataDir>/<network>/`` (0755) holds one file per allocated address, named
by the canonical address text and holding ``<containerID>\\r\\n<ifname>``
(older Go versions wrote ``<containerID>`` alone), ``last_reserved_ip.<i>``
per range set, and ``lock``. Every allocation and release holds an
exclusive ``flock(2)`` on ``lock``, exactly as Go's ``go-filemutex`` does,
so Go's host-local and this one can share a store concurrently. The lock
is taken on an open file description of its own per :class:`Store`, so
threads of one process exclude each other too.

File modes are Go 1.1.1's (subject to the umask): address files and
``last_reserved_ip.*`` 0644, ``lock`` 0750, directories 0755.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from cnilib.errors import ErrorCode, PluginError
from cnilib.plugins.ipam._index import index_for
from cnilib.results import IPAddress
from cnilib.results._ip import IPParseError, format_ip, parse_ip

__all__ = [
    "ADDRESS_FILE_MODE",
    "DEFAULT_DATA_DIR",
    "LINE_BREAK",
    "Store",
    "go_trim_space",
    "os_error",
]

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
LINE_BREAK = "\r\n"
LAST_IP_PREFIX = "last_reserved_ip."
ADDRESS_FILE_MODE = 0o644
"""Go 1.1.1 ``Reserve`` creates address files 0644 (and so does this store)."""
LOCK_FILE_MODE = 0o750
DIR_MODE = 0o755

# unicode.IsSpace, which strings.TrimSpace strips (Python's strip() also strips \x1c-\x1f).
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # noqa: E501


def go_trim_space(text: str) -> str:
    """Go ``strings.TrimSpace``."""
    return text.strip(_GO_SPACE)


def os_error(op: str, exc: OSError) -> PluginError:
    """An ``OSError`` worded as Go's ``*PathError`` (``open /x: permission denied``), code 5."""
    reason = exc.strerror or str(exc)
    reason = reason[:1].lower() + reason[1:]
    where = f" {exc.filename}" if exc.filename is not None else ""
    return PluginError(f"{op}{where}: {reason}", code=ErrorCode.IO_FAILURE)


def _mkdir_all(path: str) -> None:
    """Go ``os.MkdirAll(path, 0755)``: every missing component gets the mode."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path.rstrip(os.sep))
    if parent and parent != path:
        _mkdir_all(parent)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not os.path.isdir(path):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path) from None


_READ_SIZE = 4096


def _read(path: str) -> bytes:
    """The whole file, in as few system calls as possible: this runs once per store
    file on every ADD, so a short read (every address file) ends it without a
    second ``read`` to see the end."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunk = os.read(fd, _READ_SIZE)
        if len(chunk) < _READ_SIZE:
            return chunk
        chunks = [chunk]
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read_trimmed(path: str) -> str:
    """A store file's content as the lookups compare it (Go ``strings.TrimSpace``)."""
    return go_trim_space(_read(path).decode("utf-8", "surrogateescape"))


class Store:
    """One network's directory, opened as Go's ``disk.New`` opens it (creating it).

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, network: str, data_dir: str) -> None:
        self.directory = os.path.normpath(os.path.join(data_dir or DEFAULT_DATA_DIR, network))
        try:
            _mkdir_all(self.directory)
        except OSError as exc:
            raise os_error("mkdir", exc) from exc
        try:
            self._lock_fd = os.open(
                self.path_of("lock"), os.O_CREAT | os.O_RDONLY | os.O_CLOEXEC, LOCK_FILE_MODE
            )
        except OSError as exc:
            raise os_error("open", exc) from exc
        self._held = False

    def close(self) -> None:
        """Close the lock file (releasing the lock if held)."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's exclusive flock."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._held = True
        try:
            yield
        finally:
            self._held = False
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def path_of(self, name: str) -> str:
        """The path of a file in the store."""
        return os.path.join(self.directory, name)

    def reserve(self, container_id: str, ifname: str, ip: IPAddress, range_id: str) -> bool:
        """Create ``ip``'s file; False if it exists. Then record it as last reserved."""
        path = self.path_of(format_ip(ip))
        try:
            fd = os.open(path, os.O_RDWR | os.O_EXCL | os.O_CREAT | os.O_CLOEXEC, ADDRESS_FILE_MODE)
        except FileExistsError:
            return False
        except OSError as exc:
            raise os_error("open", exc) from exc
        content = (go_trim_space(container_id) + LINE_BREAK + ifname).encode(
            "utf-8", "surrogateescape"
        )
        try:
            try:
                os.write(fd, content)
            finally:
                os.close(fd)
        except OSError as exc:
            os.unlink(path)
            exc.filename = path
            raise os_error("write", exc) from exc
        last = self.path_of(LAST_IP_PREFIX + range_id)
        try:
            fd = os.open(last, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, format_ip(ip).encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise os_error("open", exc) from exc
        return True

    def last_reserved_ip(self, range_id: str) -> IPAddress | None:
        """The address in ``last_reserved_ip.<range_id>``, None if missing or unreadable."""
        try:
            with open(self.path_of(LAST_IP_PREFIX + range_id), "rb") as fh:
                data = fh.read()
            return parse_ip(data.decode("utf-8", "surrogateescape"))
        except (OSError, IPParseError):
            return None

    def _walk(self, top: str | None = None) -> Iterator[str]:
        """Every non-directory below the store, in Go ``filepath.Walk`` order."""
        top = self.directory if top is None else top
        try:
            with os.scandir(top) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError:
            return
        for entry in entries:
            # The directory entry's type, as Go's Lstat: a symlink to a directory is a file.
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:  # pragma: no cover - only where the type needs an lstat that fails
                continue
            if is_dir:
                yield from self._walk(entry.path)
            else:
                yield entry.path

    def _holding(self, *wanted: str) -> list[str]:
        """The paths of the files below the store whose trimmed content is one of
        ``wanted``, in Go's walk order.

        Under the lock, from the process's index of the store (:mod:`._index`): no file
        is read but those changed since its last use, and no other file is looked at.
        Else by reading every file, as Go does.
        """
        index = index_for(self.directory, _read_trimmed) if self._held else None
        if index is not None:
            return index.holding(wanted)
        found = []
        for path in self._walk():
            try:
                content = _read_trimmed(path)
            except OSError:
                continue
            if content in wanted:
                found.append(path)
        return found

    def _release_by_key(self, match: str) -> bool:
        found = False
        for path in self._holding(match):
            try:
                os.unlink(path)
            except OSError:
                continue
            found = True
        return found

    def release_by_id(self, container_id: str, ifname: str) -> None:
        """Go ``ReleaseByID``: remove every file of (cid, ifname); if none, of a legacy ``cid``."""
        cid = go_trim_space(container_id)
        if not self._release_by_key(cid + LINE_BREAK + ifname):
            self._release_by_key(cid)

    def find_by_id(self, container_id: str, ifname: str) -> bool:
        """Go ``FindByID`` (takes the lock): some file holds (cid, ifname), or legacy ``cid``."""
        cid = go_trim_space(container_id)
        with self.locked():
            return bool(self._holding(cid + LINE_BREAK + ifname, cid))

    def get_by_id(self, container_id: str, ifname: str) -> list[IPAddress]:
        """Go ``GetByID``: addresses whose file holds (cid, ifname) or legacy ``cid``."""
        cid = go_trim_space(container_id)
        found = []
        for path in self._holding(cid + LINE_BREAK + ifname, cid):
            try:
                found.append(parse_ip(os.path.basename(path)))
            except IPParseError:
                continue
        return found

    def allocations(self) -> Iterator[tuple[str, str, str | None]]:
        """(file name, containerID, ifname or None for a legacy file) of each address file
        directly in the store."""
        for name in sorted(os.listdir(self.directory)):
            try:
                parse_ip(name)
            except IPParseError:
                continue
            path = self.path_of(name)
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.EISDIR):
                    continue
                raise os_error("open", exc) from exc
            content = go_trim_space(data.decode("utf-8", "surrogateescape"))
            cid, sep, ifname = content.partition(LINE_BREAK)
            yield name, cid, ifname if sep else None
