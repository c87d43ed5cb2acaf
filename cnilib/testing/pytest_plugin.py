"""pytest fixtures for CNI tests; enable with ``pytest_plugins = ["cnilib.testing.pytest_plugin"]``.

Fixture tree (scope in brackets)::

    privileged [session]          probe once; pytest.skip(<reason>) where netns/veth are unavailable
    ├── node_netns [function]     a namespace that plays the host; plugins run inside it
    └── container_netns [function] factory: container_netns() -> NetNS, all deleted at teardown
    cni_bin_dir [function]        tmp dir holding the recording plugin as "recorder"
    recorder_log [function]       where the recorder should log (a conflist's "recorder.log")
    cache_dir [function]          tmp dir for cnilib's result cache

Every namespace is deleted at teardown, also when the test fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cnilib.testing import install_recording_plugin
from cnilib.testing._netns import NetNS, create_netns, probe_privileged

__all__ = [
    "cache_dir",
    "cni_bin_dir",
    "container_netns",
    "node_netns",
    "privileged",
    "recorder_log",
]


@pytest.fixture(scope="session")
def privileged() -> None:
    """Skip the requesting test unless network namespaces and veth pairs can be created."""
    reason = probe_privileged()
    if reason is not None:
        pytest.skip(f"needs network namespaces and veth pairs: {reason}")


@pytest.fixture
def node_netns(privileged: None) -> Iterator[NetNS]:
    """A fresh ``cnilib-node-*`` namespace with ``lo`` up, playing the host; deleted afterwards."""
    ns = create_netns("cnilib-node")
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture
def container_netns(privileged: None) -> Iterator[Callable[[], NetNS]]:
    """A factory of ``cnilib-ctr-*`` namespaces; every one it made is deleted afterwards."""
    made: list[NetNS] = []

    def make() -> NetNS:
        ns = create_netns("cnilib-ctr")
        made.append(ns)
        return ns

    try:
        yield make
    finally:
        errors: list[Exception] = []
        for ns in reversed(made):
            try:
                ns.delete()
            except Exception as exc:  # keep deleting the others
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def cni_bin_dir(tmp_path: Path) -> Path:
    """A tmp ``CNI_PATH`` directory with the recording plugin installed as ``recorder``."""
    bin_dir = tmp_path / "cni-bin"
    install_recording_plugin(bin_dir)
    return bin_dir


@pytest.fixture
def recorder_log(tmp_path: Path) -> Path:
    """Where the recording plugin should log (put it in the conflist's ``recorder.log``)."""
    return tmp_path / "recorder.jsonl"


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """An empty tmp directory for cnilib's result cache."""
    path = tmp_path / "cni-cache"
    path.mkdir()
    return path
