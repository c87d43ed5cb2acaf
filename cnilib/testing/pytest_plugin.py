"""pytest fixtures for CNI tests; registered by the ``pytest11`` entry point.

Fixture tree (scope in brackets)::

    cnilib_privileged [session]   probe once; skip with the reason where netns/veth are missing
    ├── cnilib_node_netns         a namespace that plays the host; plugins run inside it
    └── cnilib_container_netns    factory: cnilib_container_netns() -> NetNS
    cnilib_cni_bin_dir            tmp dir holding the recording plugin as "recorder"
    cnilib_recorder_log           where the recorder should log (a conflist's "recorder.log")
    cnilib_cache_dir              tmp dir for cnilib's result cache

Every namespace is deleted at teardown, also when the test fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cnilib.testing import install_recording_plugin
from cnilib.testing._netns import NetNS, create_netns, probe_privileged

__all__ = [
    "cnilib_cache_dir",
    "cnilib_cni_bin_dir",
    "cnilib_container_netns",
    "cnilib_node_netns",
    "cnilib_privileged",
    "cnilib_recorder_log",
]


@pytest.fixture(scope="session")
def cnilib_privileged() -> None:
    """Skip the requesting test unless network namespaces and veth pairs can be created."""
    reason = probe_privileged()
    if reason is not None:
        pytest.skip(f"needs network namespaces and veth pairs: {reason}")


@pytest.fixture
def cnilib_node_netns(cnilib_privileged: None) -> Iterator[NetNS]:
    """A fresh ``cnilib-node-*`` namespace with ``lo`` up, playing the host; deleted afterwards."""
    ns = create_netns("cnilib-node")
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture
def cnilib_container_netns(cnilib_privileged: None) -> Iterator[Callable[[], NetNS]]:
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
def cnilib_cni_bin_dir(tmp_path: Path) -> Path:
    """A tmp ``CNI_PATH`` directory with the recording plugin installed as ``recorder``."""
    bin_dir = tmp_path / "cni-bin"
    install_recording_plugin(bin_dir)
    return bin_dir


@pytest.fixture
def cnilib_recorder_log(tmp_path: Path) -> Path:
    """Where the recording plugin should log (put it in the conflist's ``recorder.log``)."""
    return tmp_path / "recorder.jsonl"


@pytest.fixture
def cnilib_cache_dir(tmp_path: Path) -> Path:
    """An empty tmp directory for cnilib's result cache."""
    path = tmp_path / "cni-cache"
    path.mkdir()
    return path
