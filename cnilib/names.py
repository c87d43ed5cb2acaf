"""Validation of the names that end up in cache paths and plugin environments.

Codes and texts match Go's ``pkg/utils``. cnilib runs these on every verb,
not only ADD as libcni does, so that no input can steer a cache path out of
the cache directory.
"""

from __future__ import annotations

import re

from cnilib.errors import ErrorCode, InvalidArgumentError

__all__ = ["validate_container_id", "validate_interface_name", "validate_network_name"]

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z")
_MAX_IFNAME_BYTES = 15


def validate_container_id(container_id: str) -> None:
    """Raise :class:`InvalidArgumentError` unless ``container_id`` is a valid ID."""
    if container_id == "":
        raise InvalidArgumentError("missing containerID", code=ErrorCode.UNKNOWN_CONTAINER)
    if not _NAME.match(container_id):
        raise InvalidArgumentError(
            "invalid characters in containerID",
            code=ErrorCode.INVALID_ENVIRONMENT_VARIABLES,
            details=container_id,
        )


def validate_network_name(name: str) -> None:
    """Raise :class:`InvalidArgumentError` unless ``name`` is a valid network name."""
    if name == "":
        raise InvalidArgumentError("missing network name:", code=ErrorCode.INVALID_NETWORK_CONFIG)
    if not _NAME.match(name):
        raise InvalidArgumentError(
            "invalid characters found in network name",
            code=ErrorCode.INVALID_NETWORK_CONFIG,
            details=name,
        )


def validate_interface_name(ifname: str) -> None:
    """Raise :class:`InvalidArgumentError` unless ``ifname`` can name a Linux interface."""
    code = ErrorCode.INVALID_ENVIRONMENT_VARIABLES
    if ifname == "":
        raise InvalidArgumentError("interface name is empty", code=code)
    if len(ifname.encode("utf-8", "surrogatepass")) > _MAX_IFNAME_BYTES:
        raise InvalidArgumentError(
            "interface name is too long",
            code=code,
            details=f"interface name should be less than {_MAX_IFNAME_BYTES + 1} characters",
        )
    if ifname in (".", ".."):
        raise InvalidArgumentError("interface name is . or ..", code=code)
    # NUL is refused too: Go never sees one (C strings), but Python would
    # carry it into a path and fail later with a ValueError.
    if any(ch in "/:\x00" or ch.isspace() for ch in ifname):
        raise InvalidArgumentError(
            "interface name contains / or : or whitespace characters", code=code
        )
