"""The packages' lazily loaded names (cnilib._lazy)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("package", "name", "home"),
    [
        ("cnilib", "CNI", "cnilib.runtime._sync"),
        ("cnilib.runtime", "AsyncCNI", "cnilib.runtime._async"),
        ("cnilib.plugins", "InProcessExecutor", "cnilib.plugins._executor"),
        ("cnilib.plugins.ipam.dhcp", "Timing", "cnilib.plugins.ipam.dhcp._timing"),
        ("cnilib.conformance", "run_conformance", "cnilib.conformance._run"),
        ("cnilib.overlay", "Agent", "cnilib.overlay._agent"),
        ("cnilib.testing", "FakePlugin", "cnilib.testing._fake"),
    ],
)
def test_a_name_loads_its_home_on_first_access_only(package: str, name: str, home: str) -> None:
    """In a fresh interpreter: importing the package leaves the home unloaded; the
    first access loads it and caches the value in the package; dir() lists it."""
    script = f"""
import sys, importlib
pkg = importlib.import_module({package!r})
assert {home!r} not in sys.modules, "loaded at import"
assert {name!r} in dir(pkg)
value = getattr(pkg, {name!r})
assert {home!r} in sys.modules
assert vars(pkg)[{name!r}] is value is getattr(sys.modules[{home!r}], {name!r})
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert 0 == proc.returncode, proc.stderr


def test_an_unknown_name_is_an_attribute_error_naming_the_package() -> None:
    import cnilib.conformance

    with pytest.raises(AttributeError) as info:
        cnilib.conformance.nope  # noqa: B018
    assert "module 'cnilib.conformance' has no attribute 'nope'" == str(info.value)
