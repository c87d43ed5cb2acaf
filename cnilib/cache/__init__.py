"""The per-attachment result cache (Go libcni's ``cniCacheV1`` format)."""

from cnilib.cache._file import (
    CACHE_KIND,
    DEFAULT_CACHE_DIR,
    DURABILITIES,
    CacheEntry,
    Durability,
    FileCache,
    parse_entry,
)
from cnilib.cache._locks import AttachmentLock, LockDir

__all__ = [
    "CACHE_KIND",
    "DEFAULT_CACHE_DIR",
    "DURABILITIES",
    "AttachmentLock",
    "CacheEntry",
    "Durability",
    "FileCache",
    "LockDir",
    "parse_entry",
]
