"""Everything under tests/privileged needs CAP_NET_ADMIN and network namespaces.

Each test is marked ``privileged`` and skipped (with the probe's reason) where
namespaces or veth pairs cannot be created, or when CNILIB_TESTS_UNPRIVILEGED=1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pluggy
import pytest

from cnilib.testing import NetNS
from cnilib.testing._etcd import EtcdServer

HERE = Path(__file__).resolve().parent

# Skip reasons that mean "this run lacks what CI must have".
_REQUIRED_ENVIRONMENT = (
    "needs network namespaces and veth pairs",
    "containernetworking-plugins are not installed",
    "nftables (the nft tool) is not installed",
    "dnsmasq (Debian's dnsmasq-base) is not installed",
    "needs the etcd server binary",
    "the overlay needs aetcd",
)
ROOT = HERE.parent.parent

# The test modules import their shared helpers as ``tests.privileged._kernel`` (the name mypy
# knows them by); ``python -m pytest`` from the checkout finds it, a bare ``pytest`` needs this.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected from this directory ``privileged``."""
    for item in items:
        if item.path.resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.privileged)


@pytest.fixture(autouse=True)
def _require_privileges(cnilib_privileged: None) -> None:
    """Skip by probe (the session fixture ``cnilib_privileged``) before any test here runs."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    """With CNILIB_REQUIRE_PRIVILEGED=1 (CI, which runs as root), a skip for want of
    privileges or of the Go plugins is a failure: those tests must really run.
    Skips for a kernel feature this machine kind lacks (found by probing, e.g.
    bridge VLAN filtering) stay skips."""
    outcome = yield
    report = outcome.get_result()
    required = os.environ.get("CNILIB_REQUIRE_PRIVILEGED") == "1"
    in_here = item.path.resolve().is_relative_to(HERE)
    reason = str(report.longrepr)
    environment_missing = any(text in reason for text in _REQUIRED_ENVIRONMENT)
    if required and in_here and report.skipped and environment_missing:
        report.outcome = "failed"
        report.longrepr = f"privileged test skipped where it is required: {report.longrepr}"


@pytest.fixture(autouse=True)
def _retire_default_workers() -> Iterator[None]:
    """The default netlink pool's workers must not keep deleted test namespaces alive."""
    yield
    from cnilib import netlink

    netlink.default_pool().close()


@pytest.fixture
def ns(cnilib_container_netns: Callable[[], NetNS]) -> NetNS:
    """A fresh container namespace (deleted after the test)."""
    return cnilib_container_netns()


@pytest.fixture(scope="module")
def etcd(cnilib_privileged: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """An etcd on 127.0.0.1 (free ports, data dir in tmp) for the overlay's test modules,
    stopped when the module ends; skipped without the binary or the client (a failure
    in CI, see _REQUIRED_ENVIRONMENT)."""
    from cnilib.testing._etcd import ETCD_INSTALL_HINT, find_etcd
    from tests.privileged._overlay_world import etcd_server

    if find_etcd() is None:
        pytest.skip(f"needs the etcd server binary: {ETCD_INSTALL_HINT}")
    pytest.importorskip("aetcd", reason="the overlay needs aetcd: pip install 'cnilib[overlay]'")
    with etcd_server(tmp_path_factory.mktemp("etcd")) as server:
        yield server
