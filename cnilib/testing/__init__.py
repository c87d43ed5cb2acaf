"""Helpers for testing code that uses cnilib (and cnilib itself).

* Throwaway network namespaces driven by the ``ip`` command: :func:`create_netns`,
  :class:`NetNS`, :func:`node_and_containers`, and :func:`probe_privileged` to skip
  cleanly where namespaces or veth pairs cannot be made.
* A recording CNI plugin (``recording_plugin.py``, stdlib only) installed on a
  ``CNI_PATH`` by :func:`install_recording_plugin`; :func:`read_recording` parses its log.
* :class:`FakePlugin`, an in-process plugin that records its calls and answers
  as told, and :class:`Container` (a namespace plus a container ID).
* :func:`conflist` and :func:`with_data_dir` keep host-local's store in a test's
  directory.
* pytest fixtures in :mod:`cnilib.testing.pytest_plugin` (all named ``cnilib_*``).

The fake plugin, the mock executor and the container helpers load the
runtime on first use, so importing this package (which pytest does in every
run) stays cheap.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from cnilib._lazy import lazy_exports
from cnilib.testing._netns import (
    CommandError as CommandError,
    NetNS as NetNS,
    create_netns as create_netns,
    node_and_containers as node_and_containers,
    probe_privileged as probe_privileged,
)

if TYPE_CHECKING:
    from cnilib.testing._fake import (
        FakePlugin as FakePlugin,
        FakePluginFactory as FakePluginFactory,
        FakeResult as FakeResult,
    )
    from cnilib.testing._mock import MockExecutor as MockExecutor
    from cnilib.testing._world import (
        ConflistFactory as ConflistFactory,
        Container as Container,
        ContainerFactory as ContainerFactory,
        conflist as conflist,
        with_data_dir as with_data_dir,
    )

_LAZY: dict[str, str] = {
    "FakePlugin": "cnilib.testing._fake",
    "FakePluginFactory": "cnilib.testing._fake",
    "FakeResult": "cnilib.testing._fake",
    "MockExecutor": "cnilib.testing._mock",
    "ConflistFactory": "cnilib.testing._world",
    "Container": "cnilib.testing._world",
    "ContainerFactory": "cnilib.testing._world",
    "conflist": "cnilib.testing._world",
    "with_data_dir": "cnilib.testing._world",
}

__all__ = [
    "RECORDING_PLUGIN",
    "CommandError",
    "ConflistFactory",
    "Container",
    "ContainerFactory",
    "FakePlugin",
    "FakePluginFactory",
    "FakeResult",
    "MockExecutor",
    "NetNS",
    "conflist",
    "create_netns",
    "install_recording_plugin",
    "node_and_containers",
    "probe_privileged",
    "read_recording",
    "with_data_dir",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


RECORDING_PLUGIN = Path(__file__).with_name("recording_plugin.py")
"""The recorder's source; runnable as ``python3 -I -S <this path>``."""

_WRAPPER = '''\
#!{python} -IS
"""CNI test plugin {name!r}: runs cnilib's recording plugin (see install_recording_plugin)."""
import importlib.util
import sys

_spec = importlib.util.spec_from_file_location("_cnilib_recorder", {source!r})
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
sys.exit(_mod.main(sys.argv[0]))
'''


def install_recording_plugin(bin_dir: str | os.PathLike[str], name: str = "recorder") -> Path:
    """Write an executable ``bin_dir/name`` that runs the recording plugin; return its path.

    With *bin_dir* on ``CNI_PATH`` a plugin ``"type": "<name>"`` finds it. A
    *name* ending in ``-v040`` makes it answer VERSION with 0.1.0 to 0.4.0 only.
    The shebang says ``-IS`` rather than ``-I -S``: Linux hands everything after
    the interpreter to it as one argument, and Python rejects ``"-I -S"``.
    """
    directory = Path(bin_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(_WRAPPER.format(python=sys.executable, name=name, source=str(RECORDING_PLUGIN)))
    path.chmod(0o755)
    return path


def read_recording(log: str | os.PathLike[str]) -> list[dict[str, object]]:
    """The invocations recorded in *log*, oldest first (empty if nothing was recorded)."""
    try:
        text = Path(log).read_text()
    except FileNotFoundError:
        return []
    return [cast("dict[str, object]", json.loads(line)) for line in text.splitlines() if line]
