"""The per-attachment result cache, in Go libcni's on-disk format.

``<cache_dir>/results/<network>-<containerID>-<ifname>`` holds a compact
``cniCacheV1`` JSON object (dir 0700, file 0600) that Go tools read too.
Unlike libcni, writes are atomic (temporary file in ``<cache_dir>/.cnilib-tmp``,
fsync, rename into ``results/``, fsync of the directory), so a crash leaves
either the old entry or the new one, never half of one, and nothing that Go
tools could mistake for an entry.

``durability`` says which crash a completed write survives: ``"full"`` (the
default) flushes it to the disk, so it survives a power loss; ``"process"``
skips both flushes, so it survives the runtime's crash (the page cache holds
it) but not the machine's. In both, a crash of the runtime never leaves half
an entry.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import stat
import time
from collections.abc import Mapping
from typing import Literal

import attrs

from cnilib._filetype import describe_type
from cnilib._json import JSONObject, JSONSyntaxError, JSONValue, go_dumps, loads
from cnilib._log import get_logger
from cnilib.cache import _fs
from cnilib.errors import CacheCollisionError, CacheError, ErrorCode, InvalidArgumentError
from cnilib.names import validate_container_id, validate_interface_name, validate_network_name

__all__ = [
    "CACHE_KIND",
    "DEFAULT_CACHE_DIR",
    "DURABILITIES",
    "CacheEntry",
    "Durability",
    "FileCache",
]

log = get_logger("cnilib.cache")

DEFAULT_CACHE_DIR = "/var/lib/cni"
CACHE_KIND = "cniCacheV1"
_RESULTS = "results"
_TMP = ".cnilib-tmp"
Durability = Literal["full", "process"]
"""What a completed cache write survives: a power loss, or only the runtime's crash."""
DURABILITIES: tuple[Durability, ...] = ("full", "process")
"""The values of ``FileCache(durability=...)``."""


@attrs.frozen
class CacheEntry:
    """One cached attachment (Go ``cachedInfo`` / ``NetworkAttachment``).

    ``result`` is the final result's JSON object as it was produced (its
    own ``cniVersion`` inside); it is absent while the ADD that wrote the
    entry is still running (see :attr:`pending`). ``legacy`` marks a
    pre-``cniCacheV1`` file that holds only a bare result.
    """

    network_name: str
    container_id: str
    ifname: str
    config: bytes = attrs.field(repr=False)
    netns: str = ""
    cni_args: tuple[tuple[str, str], ...] = ()
    capability_args: Mapping[str, JSONValue] = attrs.field(factory=dict)
    result: JSONObject | None = attrs.field(default=None, repr=False)
    legacy: bool = False
    owner: str | None = None
    """Which runtime wrote the entry (cnilib's ``cnilibOwner`` key; Go ignores it)."""

    @property
    def pending(self) -> bool:
        """Written before the plugins ran, and never completed: an interrupted ADD."""
        return not self.legacy and self.result is None

    def to_json(self) -> str:
        """The entry as Go writes it: fixed key order, empty optionals omitted."""
        parts = [
            f'"kind":{go_dumps(CACHE_KIND)}',
            f'"containerId":{go_dumps(self.container_id)}',
            f'"config":{go_dumps(base64.b64encode(self.config).decode())}',
            f'"ifName":{go_dumps(self.ifname)}',
            f'"networkName":{go_dumps(self.network_name)}',
        ]
        if self.netns:
            parts.append(f'"netns":{go_dumps(self.netns)}')
        if self.cni_args:
            parts.append(f'"cniArgs":{go_dumps([list(p) for p in self.cni_args])}')
        if self.capability_args:
            parts.append(f'"capabilityArgs":{go_dumps(dict(self.capability_args))}')
        if self.owner is not None:
            parts.append(f'"cnilibOwner":{go_dumps(self.owner)}')
        if self.result:
            # libcni turns the result into a map[string]interface{} before it
            # marshals the entry, so Go writes its keys sorted at every level.
            parts.append(f'"result":{go_dumps(self.result)}')
        return "{" + ",".join(parts) + "}"


def _field(obj: Mapping[str, JSONValue], key: str, path: str, *, required: bool) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise CacheError(
            f"corrupt cache entry: field {key!r} must be a string",
            path=path,
            code=ErrorCode.DECODING_FAILURE,
        )
    return value


def parse_entry(data: bytes, path: str) -> CacheEntry:
    """Decode a cache file: a ``cniCacheV1`` object or a legacy bare result."""
    try:
        obj = loads(data)
    except JSONSyntaxError as exc:
        raise CacheError(
            f"corrupt cache entry: {exc}", path=path, code=ErrorCode.DECODING_FAILURE
        ) from exc
    if not isinstance(obj, dict):
        raise CacheError(
            "corrupt cache entry: not a JSON object", path=path, code=ErrorCode.DECODING_FAILURE
        )
    if "kind" not in obj:
        # Before cniCacheV1, libcni cached the bare result and nothing else.
        return CacheEntry("", "", "", b"", result=obj, legacy=True)
    if obj["kind"] != CACHE_KIND:
        raise CacheError(
            f"unknown cache entry kind {obj['kind']!r}",
            path=path,
            code=ErrorCode.DECODING_FAILURE,
        )
    try:
        config = base64.b64decode(_field(obj, "config", path, required=True), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CacheError(
            "corrupt cache entry: field 'config' is not base64",
            path=path,
            code=ErrorCode.DECODING_FAILURE,
        ) from exc
    cni_args_raw = obj.get("cniArgs") or []
    if not isinstance(cni_args_raw, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p)
        for p in cni_args_raw
    ):
        raise CacheError(
            "corrupt cache entry: field 'cniArgs' must be a list of [key, value] pairs",
            path=path,
            code=ErrorCode.DECODING_FAILURE,
        )
    cap_args = obj.get("capabilityArgs") or {}
    result = obj.get("result")
    if not isinstance(cap_args, dict) or (result is not None and not isinstance(result, dict)):
        raise CacheError(
            "corrupt cache entry: 'capabilityArgs' and 'result' must be objects",
            path=path,
            code=ErrorCode.DECODING_FAILURE,
        )
    return CacheEntry(
        network_name=_field(obj, "networkName", path, required=True),
        container_id=_field(obj, "containerId", path, required=True),
        ifname=_field(obj, "ifName", path, required=True),
        config=config,
        netns=_field(obj, "netns", path, required=False),
        cni_args=tuple((str(p[0]), str(p[1])) for p in cni_args_raw if isinstance(p, list)),
        capability_args=cap_args,
        result=result,
        owner=_field(obj, "cnilibOwner", path, required=False) or None,
    )


class FileCache:
    """The results cache under ``cache_dir`` (Go's ``CacheDir``).

    Nothing below ``cache_dir`` is reached through a symbolic link (see
    :mod:`cnilib.cache._fs`): a link planted in the cache is reported and
    left alone, never followed.

    :param durability: what a completed write (and a removal) survives.
        ``"full"`` (default): a power loss; the entry's file and then its
        directory are fsynced before :meth:`save` returns. ``"process"``: the
        runtime's crash but not the machine's; nothing is fsynced, so an entry
        written in the last seconds before a power loss may be missing, the
        earlier one, or (on a filesystem that does not write data before a
        rename) empty after the reboot. Saves two fsyncs per ADD (see
        docs/reliability.md).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
        *,
        durability: Durability = "full",
    ) -> None:
        if durability not in DURABILITIES:
            raise InvalidArgumentError(
                f"cache durability must be one of {', '.join(map(repr, DURABILITIES))}, "
                f"got {durability!r}"
            )
        self.durability: Durability = durability
        self.cache_dir = os.fspath(cache_dir)
        if not self.cache_dir:
            raise InvalidArgumentError("cache directory must not be empty")
        if "\0" in self.cache_dir:
            raise InvalidArgumentError(f"cache directory contains a NUL byte: {self.cache_dir!r}")
        self.results_dir = os.path.join(self.cache_dir, _RESULTS)
        # Temporary files live beside results/, not in it: Go's
        # GetCachedAttachments reads every file in results/, so a file left
        # by a crash mid-write must never be there.
        self.tmp_dir = os.path.join(self.cache_dir, _TMP)

    def __repr__(self) -> str:
        if self.durability == "full":
            return f"FileCache({self.cache_dir!r})"
        return f"FileCache({self.cache_dir!r}, durability={self.durability!r})"

    def path(self, network: str, container_id: str, ifname: str) -> str:
        """The entry's path; every part is validated, so it cannot leave the cache."""
        return os.path.join(self.results_dir, self.file_name(network, container_id, ifname))

    @staticmethod
    def file_name(network: str, container_id: str, ifname: str) -> str:
        """The entry's file name in ``results/`` (Go's ``<net>-<cid>-<if>``)."""
        validate_network_name(network)
        validate_container_id(container_id)
        validate_interface_name(ifname)
        return f"{network}-{container_id}-{ifname}"

    def save(self, entry: CacheEntry, *, durable: bool = True) -> str:
        """Write ``entry`` atomically; return its path.

        ``durable`` also fsyncs the file and the directory, so the entry
        survives power loss; it is ignored with ``durability="process"``. ADD's
        pending entry is written without: it only has to survive the runtime
        process dying (the page cache does), and after a power loss the kernel
        state it would describe is gone too.
        """
        durable = durable and self.durability == "full"
        name = self.file_name(entry.network_name, entry.container_id, entry.ifname)
        path = os.path.join(self.results_dir, name)
        data = entry.to_json().encode()
        with _fs.opened_children(self.cache_dir, (_TMP, _RESULTS), create=True) as (
            tmp_fd,
            results_fd,
        ):
            tmp = _write_temp(tmp_fd, self.tmp_dir, data, durable=durable)
            try:
                os.replace(tmp, name, src_dir_fd=tmp_fd, dst_dir_fd=results_fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=tmp_fd)
                raise CacheError(f"cannot write cache entry: {exc.strerror}", path=path) from exc
            if durable:
                _fsync_fd(results_fd)
        return path

    def remove_stale_temp_files(self, older_than: float = 3600.0) -> int:
        """Delete temporary files left by a crash mid-write; return how many.

        A write takes milliseconds, so a file older than ``older_than``
        seconds is orphaned. GC calls this. Only regular files are removed:
        a link or anything else found there is logged and left alone.
        """
        removed = 0
        cutoff = time.time() - older_than
        try:
            tmp_fd = _fs.open_dir(self.cache_dir, (_TMP,), create=False)
        except FileNotFoundError:
            return 0
        try:
            for name in _listdir(tmp_fd, self.tmp_dir):
                path = os.path.join(self.tmp_dir, name)
                try:
                    info = os.stat(name, dir_fd=tmp_fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise CacheError(f"cannot inspect: {exc.strerror}", path=path) from exc
                if not stat.S_ISREG(info.st_mode):
                    log.warning(
                        "%s is %s, not a temporary file: left alone",
                        path,
                        describe_type(info.st_mode),
                    )
                    continue
                if info.st_mtime < cutoff and _fs.unlink_file(name, tmp_fd, path):
                    removed += 1
        finally:
            os.close(tmp_fd)
        return removed

    def _read(self, name: str, results_fd: int | None = None) -> bytes | None:
        """The bytes of ``results/<name>``; ``None`` if it (or results/) is missing."""
        if results_fd is None:
            try:
                with _fs.opened_dir(self.cache_dir, (_RESULTS,), create=False) as fd:
                    return self._read(name, fd)
            except FileNotFoundError:
                return None
        path = os.path.join(self.results_dir, name)
        try:
            fd = _fs.open_file(name, os.O_RDONLY, results_fd, path)
        except FileNotFoundError:
            return None
        try:
            with os.fdopen(fd, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise CacheError(f"cannot read cache entry: {exc.strerror}", path=path) from exc

    def load(self, network: str, container_id: str, ifname: str) -> CacheEntry | None:
        """The entry, ``None`` if there is none, or :class:`CacheError` if corrupt."""
        return self._load(network, container_id, ifname, None)

    def _load(
        self, network: str, container_id: str, ifname: str, results_fd: int | None
    ) -> CacheEntry | None:
        path = self.path(network, container_id, ifname)
        data = self._read(self.file_name(network, container_id, ifname), results_fd)
        if data is None:
            return None
        entry = parse_entry(data, path)
        if not entry.legacy and (entry.network_name, entry.container_id, entry.ifname) != (
            network,
            container_id,
            ifname,
        ):
            # Go's "<net>-<cid>-<if>" names are ambiguous ("n-a","b" vs "n","a-b").
            raise CacheCollisionError(
                f"cache entry belongs to another attachment (network {entry.network_name!r}, "
                f"container {entry.container_id!r}, interface {entry.ifname!r})",
                path=path,
                code=ErrorCode.INVALID_ENVIRONMENT_VARIABLES,
            )
        return entry

    def delete(self, network: str, container_id: str, ifname: str) -> bool:
        """Remove the entry; ``False`` if there was none, or if the file holds
        another attachment's entry (see :class:`CacheCollisionError`).

        A corrupt entry is removed; one that is not a regular file (a link,
        say) raises :class:`CacheError` and is left alone.
        """
        name = self.file_name(network, container_id, ifname)
        path = os.path.join(self.results_dir, name)
        try:
            with _fs.opened_dir(self.cache_dir, (_RESULTS,), create=False) as results_fd:
                try:
                    self._load(network, container_id, ifname, results_fd)
                except CacheCollisionError:
                    return False
                except CacheError:
                    pass  # corrupt: remove it all the same (unlink_file refuses anything else)
                if not _fs.unlink_file(name, results_fd, path):
                    return False
                if self.durability == "full":
                    _fsync_fd(results_fd)
        except FileNotFoundError:
            return False
        return True

    def attachments(self, container_id: str | None = None) -> list[CacheEntry]:
        """Every readable ``cniCacheV1`` entry, sorted by file name (Go
        ``GetCachedAttachments``); legacy and unreadable files are skipped."""
        try:
            results_fd = _fs.open_dir(self.cache_dir, (_RESULTS,), create=False)
        except FileNotFoundError:
            return []
        found: list[CacheEntry] = []
        try:
            for name in sorted(_listdir(results_fd, self.results_dir)):
                if name.startswith("."):
                    continue
                if container_id:
                    marker = f"-{container_id}-"
                    index = name.find(marker)
                    if index <= 0 or name.endswith(marker):
                        continue
                path = os.path.join(self.results_dir, name)
                try:
                    data = self._read(name, results_fd)
                    if data is None:  # removed since the listing
                        continue
                    entry = parse_entry(data, path)
                except CacheError as exc:
                    log.debug("skipping cache file %s: %s", path, exc)
                    continue
                if entry.legacy or not entry.ifname or not entry.network_name:
                    continue
                if container_id and entry.container_id != container_id:
                    continue
                found.append(entry)
        finally:
            os.close(results_fd)
        return found


def _listdir(dir_fd: int, path: str) -> list[str]:
    try:
        return os.listdir(dir_fd)
    except OSError as exc:
        raise CacheError(f"cannot list directory: {exc.strerror}", path=path) from exc


def _write_temp(tmp_fd: int, tmp_dir: str, data: bytes, *, durable: bool) -> str:
    """Write ``data`` to a new private file in the temp dir; return its name."""
    for _ in range(100):
        # os.urandom, not secrets: secrets imports hashlib, whose OpenSSL costs
        # every runtime process about 3.6 MiB of memory for a random name.
        name = f"entry-{os.urandom(6).hex()}"
        try:
            fd = os.open(
                name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=tmp_fd,
            )
        except FileExistsError:
            continue
        except OSError as exc:
            raise CacheError(
                f"cannot write cache entry: {exc.strerror}", path=os.path.join(tmp_dir, name)
            ) from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=tmp_fd)
            raise CacheError(
                f"cannot write cache entry: {exc.strerror}", path=os.path.join(tmp_dir, name)
            ) from exc
        return name
    raise CacheError("cannot pick a temporary file name", path=tmp_dir)  # pragma: no cover


def _fsync_fd(dir_fd: int) -> None:
    """Make a rename or unlink durable (best effort: some filesystems refuse)."""
    with contextlib.suppress(OSError):
        os.fsync(dir_fd)
