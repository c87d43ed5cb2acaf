"""Names a package exports but loads only when first used (PEP 562).

A package lists where each such name lives and installs the pair this returns
as its module-level ``__getattr__`` and ``__dir__``::

    __getattr__, __dir__ = lazy_exports(__name__, {"AsyncCNI": "cnilib.runtime._async"})

The first access imports the home module and caches the value in the package,
so later accesses cost a dictionary lookup. Type checkers see the names through
the package's ``if TYPE_CHECKING:`` imports.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # typing itself is not imported: ``--help`` does without it
if TYPE_CHECKING:
    from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, homes: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose names in ``homes`` (name
    to the module that defines it) are imported on first access."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:  # noqa: N807  (the module hook's own name)
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(namespace) | set(homes))

    return __getattr__, __dir__
