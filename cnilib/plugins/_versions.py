"""VERSION answers without importing any plugin (for the executables' fast path)."""

from __future__ import annotations

import json

__all__ = ["version_only"]

_ALL = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]

# Types whose plugin supports fewer versions than all of them.
_SUPPORTED: dict[str, list[str]] = {
    "bandwidth": _ALL[2:],
    "firewall": _ALL[4:],
}


def version_only(plugin_type: str) -> bytes:
    """The VERSION answer of ``plugin_type``; must match its class's ``supported_versions``."""
    supported = _SUPPORTED.get(plugin_type, _ALL)
    return json.dumps({"cniVersion": "1.1.0", "supportedVersions": supported}).encode()
