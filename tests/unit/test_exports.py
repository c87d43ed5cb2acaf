"""The public surface: every exported name resolves, and importing is cheap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import cnilib


class TestExports:
    @pytest.mark.parametrize("name", cnilib.__all__)
    def test_every_exported_name_resolves(self, name: str) -> None:
        """Each name in cnilib.__all__ is an attribute of the package."""
        assert getattr(cnilib, name) is not None

    def test_all_has_no_duplicates_or_private_names(self) -> None:
        """__all__ lists each public name once and nothing private (but __version__)."""
        names = [n for n in cnilib.__all__ if n != "__version__"]

        assert len(set(names)) == len(names)
        assert [] == [n for n in names if n.startswith("_")]

    def test_unknown_attribute_is_attribute_error(self) -> None:
        """A missing name raises AttributeError, as for any module."""
        with pytest.raises(AttributeError, match="no attribute 'Nope'"):
            _ = cnilib.Nope

    def test_dir_lists_lazy_names(self) -> None:
        """dir(cnilib) shows names that are loaded lazily."""
        assert {"CNI", "RuntimeConf", "Result"} <= set(dir(cnilib))

    def test_errors_share_one_root(self) -> None:
        """Every exported exception class derives from CNIError."""
        errors = [getattr(cnilib, n) for n in cnilib.__all__ if n.endswith("Error")]

        assert all(issubclass(e, cnilib.CNIError) for e in errors)

    def test_import_is_lazy(self) -> None:
        """import cnilib loads neither attrs, cattrs, jsonschema nor pyroute2."""
        code = (
            "import sys, cnilib\n"
            "print(sorted(m for m in ('attrs', 'cattrs', 'jsonschema', 'pyroute2') "
            "if m in sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )

        assert "[]" == out.stdout.strip()

    def test_pytest_plugin_import_is_cheap(self) -> None:
        """The pytest plugin, loaded by every pytest run where cnilib is installed,
        loads neither the invoke layer nor the runtime, nor attrs."""
        code = (
            "import sys, cnilib.testing.pytest_plugin\n"
            "print(sorted(m for m in ('cnilib.invoke', 'cnilib.runtime', 'cnilib.plugins', "
            "'attrs') if m in sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )

        assert "[]" == out.stdout.strip()

    def test_a_runtime_loads_no_openssl(self, tmp_path: Path) -> None:
        """A runtime that writes a cache entry does not load hashlib's OpenSSL
        (about 3.6 MiB of memory in every runtime process)."""
        code = (
            "import sys, cnilib\n"
            # Not cnilib.testing's MockExecutor: its namespace helpers import secrets.
            "class Answer:\n"
            "    timeout = None\n"
            "    def find(self, plugin_type, path): return plugin_type\n"
            '    def exec(self, call): return b\'{"cniVersion": "1.0.0"}\'\n'
            f"cni = cnilib.CNI(cache_dir={str(tmp_path)!r}, executor=Answer())\n"
            "net = cnilib.conflist_from_dict("
            "{'cniVersion': '1.0.0', 'name': 'n', 'plugins': [{'type': 'a'}]})\n"
            "cni.add_network_list(net, cnilib.RuntimeConf('c', '/run/netns/c', 'eth0'))\n"
            "assert cni.cached_attachments(), 'nothing cached'\n"
            "print(sorted(m for m in ('_hashlib', 'hashlib', 'secrets') if m in sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )

        assert "[]" == out.stdout.strip()

    def test_mock_executor_is_still_exported(self) -> None:
        """MockExecutor, loaded on first use, is the class of cnilib.testing._mock."""
        import cnilib.testing
        from cnilib.testing._mock import MockExecutor

        assert cnilib.testing.MockExecutor is MockExecutor
        assert "MockExecutor" in dir(cnilib.testing)
