"""What the chained plugins share."""

from __future__ import annotations

from cnilib.plugins._base import PluginRequest
from cnilib.plugins._hostside import fail
from cnilib.results import Result

__all__ = ["require_prev_result"]


def require_prev_result(req: PluginRequest, missing: str) -> Result:
    """``prevResult`` in the config's version; the code-999 error ``missing`` (each
    plugin has Go's own text) when it is absent, ``null`` or not a JSON object (Go
    refuses a non-object when decoding the config; it must not crash a plugin)."""
    prev = req.prev_result
    if prev is None:
        raise fail(missing)
    return prev
