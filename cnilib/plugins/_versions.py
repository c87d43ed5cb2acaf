"""VERSION answers without importing any plugin (for the executables' fast path)."""

from __future__ import annotations

import json

__all__ = ["answer_version", "version_only"]

_ALL = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]

# Types whose plugin supports fewer versions than all of them.
_SUPPORTED: dict[str, list[str]] = {
    "bandwidth": _ALL[2:],
    "firewall": _ALL[4:],
}


def version_only(plugin_type: str, stdin: bytes = b"") -> bytes:
    """The VERSION answer of ``plugin_type``; must match its class's ``supported_versions``."""
    return answer_version(_SUPPORTED.get(plugin_type, _ALL), stdin)


def answer_version(supported: list[str], stdin: bytes) -> bytes:
    """A VERSION answer: ``supported``, in the version the request asked for.

    The spec's VERSION result carries "the value of cniVersion specified on input";
    Go's skel answers its own newest version instead, and libcni reads either. A
    request that is not JSON, or asks for a version not supported, gets the newest.
    """
    try:
        asked = json.loads(stdin).get("cniVersion") if stdin.strip() else None
    except (ValueError, AttributeError):  # not JSON, or not an object
        asked = None
    version = asked if isinstance(asked, str) and asked in supported else supported[-1]
    return json.dumps({"cniVersion": version, "supportedVersions": supported}).encode()
