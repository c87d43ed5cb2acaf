"""File-system access inside the cache directory that never follows a link.

The cache directory is root's, but a runtime may run with a loose umask or
share a parent with other users; a planted symbolic link in it must never
make root open, truncate or unlink a file elsewhere. So every directory
below the cache root is opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to
its parent's fd, every file relative to its directory's fd with
``O_NOFOLLOW``, and nothing is unlinked before ``lstat`` says it is a plain
file. A link found there is reported and left alone.

The cache root itself is the caller's configuration and is followed (a
distribution may well make ``/var/lib/cni`` a link). Every directory cnilib
creates, the root's missing ancestors included, is made 0700 whatever the
process umask (Go's ``MkdirAll(dir, 0700)``), and a directory of the cache
tree found writable by others is tightened to 0700.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Sequence

from cnilib._filetype import describe_type
from cnilib._log import get_logger
from cnilib.errors import CacheError

__all__ = [
    "PRIVATE_DIR_MODE",
    "ensure_root",
    "open_dir",
    "open_file",
    "opened_children",
    "opened_dir",
    "unlink_file",
]

log = get_logger("cnilib.cache")

PRIVATE_DIR_MODE = 0o700
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _mkdir_private(path: str, dir_fd: int | None = None) -> bool:
    """Create one directory 0700 regardless of the umask; ``False`` if it existed."""
    try:
        os.mkdir(path, PRIVATE_DIR_MODE, dir_fd=dir_fd)
    except FileExistsError:
        return False
    # The umask cannot add bits, only remove them; chmod anyway in case a
    # default ACL widened the new directory. Through an O_NOFOLLOW fd: chmod's
    # own follow_symlinks=False is missing before glibc 2.32.
    with contextlib.suppress(OSError):
        fd = os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
        try:
            os.fchmod(fd, PRIVATE_DIR_MODE)
        finally:
            os.close(fd)
    return True


def _is_dir(path: str) -> bool:
    """True for a directory (or a link to one), False for nothing at all; a
    :class:`CacheError` for anything else.

    One ``stat``, then one ``lstat`` only if there was nothing: a directory
    another thread or process makes in between reads as missing, and its
    ``mkdir`` then finds it there, which is fine (two ``stat`` calls in a row
    would take that directory for something else).
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # missing, or under a non-directory
        mode = None
    if mode is None:
        try:
            link_mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return False
        if not stat.S_ISLNK(link_mode):  # it appeared meanwhile
            return _is_dir(path)
        # a link to nowhere (an unmounted volume?)
        raise CacheError("is a symbolic link to a missing directory, not a directory", path=path)
    if stat.S_ISDIR(mode):
        return True
    raise CacheError(f"is {describe_type(mode)}, not a directory", path=path)


def ensure_root(root: str) -> None:
    """Create the cache root and its missing ancestors, each 0700."""
    missing: list[str] = []
    current = os.path.abspath(root)
    while not _is_dir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for path in reversed(missing):
        try:
            _mkdir_private(path)
        except OSError as exc:
            raise CacheError(f"cannot create cache directory: {exc.strerror}", path=path) from exc


def _wrong_type(path: str, name: str, dir_fd: int) -> CacheError:
    """The error for a path that should be a directory and is not."""
    try:
        kind = describe_type(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        kind = "of an unknown type"
    if kind == "a symbolic link":
        log.warning("%s is a symbolic link; cnilib leaves it alone", path)
        return CacheError(
            "is a symbolic link, not a directory: cnilib does not follow links in its cache",
            path=path,
        )
    return CacheError(f"is {kind}, not a directory", path=path)


def _tighten(fd: int, path: str) -> None:
    """A directory of the cache tree writable by others is an attack surface."""
    mode = os.fstat(fd).st_mode
    if mode & 0o022:
        log.warning("%s was mode %o; tightening it to 0700", path, stat.S_IMODE(mode))
        try:
            os.fchmod(fd, PRIVATE_DIR_MODE)
        except OSError as exc:  # a read-only mount, another owner: reading still works
            log.warning("cannot tighten %s: %s", path, exc.strerror)


def _open_root(root: str, *, create: bool) -> int:
    try:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            with contextlib.suppress(OSError):
                kind = describe_type(os.stat(root).st_mode)
                raise CacheError(f"is {kind}, not a directory", path=root) from exc
        raise CacheError(f"cannot open cache directory: {exc.strerror}", path=root) from exc
    ensure_root(root)
    return _open_root(root, create=False)


def _open_child(fd: int, part: str, path: str, *, create: bool) -> int:
    # Open first and create only when missing: the common case costs one call.
    for attempt in (1, 2):
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create or attempt == 2:
                raise
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _wrong_type(path, part, fd) from exc
            raise CacheError(f"cannot open directory: {exc.strerror}", path=path) from exc
        try:
            _mkdir_private(part, dir_fd=fd)
        except OSError as exc:
            raise CacheError(f"cannot create directory: {exc.strerror}", path=path) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def open_dir(root: str, parts: Sequence[str], *, create: bool) -> int:
    """Open ``root/parts[0]/parts[1]/…`` without following a link below ``root``.

    With ``create``, missing levels (and the root) are made 0700. Returns a
    directory fd (close it); raises :class:`FileNotFoundError` when a level is
    missing and ``create`` is false, :class:`CacheError` for anything else.
    """
    fd = _open_root(root, create=create)
    path = root
    try:
        for part in parts:
            path = os.path.join(path, part)
            child = _open_child(fd, part, path, create=create)
            os.close(fd)
            fd = child
            _tighten(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def opened_children(root: str, names: Sequence[str], *, create: bool) -> Iterator[list[int]]:
    """The fds of several direct children of ``root`` (opened as :func:`open_dir`
    opens one level, the root only once), closed on exit."""
    root_fd = _open_root(root, create=create)
    fds: list[int] = []
    try:
        for name in names:
            path = os.path.join(root, name)
            fds.append(_open_child(root_fd, name, path, create=create))
            _tighten(fds[-1], path)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    finally:
        os.close(root_fd)
    try:
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


@contextlib.contextmanager
def opened_dir(root: str, parts: Sequence[str], *, create: bool) -> Iterator[int]:
    """:func:`open_dir` as a context manager that closes the fd."""
    fd = open_dir(root, parts, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def open_file(name: str, flags: int, dir_fd: int, path: str, mode: int = 0o600) -> int:
    """Open a regular file in ``dir_fd`` without following a link or blocking
    on a FIFO; ``path`` names it in errors. ``FileNotFoundError`` passes through."""
    try:
        fd = os.open(
            name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=dir_fd
        )
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            log.warning("%s is a symbolic link; cnilib leaves it alone", path)
            raise CacheError(
                "is a symbolic link: cnilib does not follow links in its cache", path=path
            ) from exc
        raise CacheError(f"cannot open: {exc.strerror}", path=path) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CacheError(f"is {describe_type(info.st_mode)}, not a regular file", path=path)
        if info.st_nlink > 1:
            # cnilib's files have one name; another one is a hard link planted to
            # make root write (truncate a lock file, say) through it.
            raise CacheError(f"has {info.st_nlink} hard links: left alone", path=path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def unlink_file(name: str, dir_fd: int, path: str) -> bool:
    """Unlink ``name`` if it is a regular file; ``False`` if it is gone.

    Anything else (a link, a directory, …) raises :class:`CacheError` and is
    left where it is.
    """
    try:
        st_mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise CacheError(f"cannot inspect: {exc.strerror}", path=path) from exc
    if not stat.S_ISREG(st_mode):
        if stat.S_ISLNK(st_mode):
            log.warning("%s is a symbolic link; cnilib leaves it alone", path)
        raise CacheError(f"is {describe_type(st_mode)}, not a regular file: left alone", path=path)
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise CacheError(f"cannot remove: {exc.strerror}", path=path) from exc
    return True
