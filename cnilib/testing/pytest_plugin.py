"""pytest fixtures for CNI tests; registered by the ``pytest11`` entry point.

Installing cnilib makes these fixtures available in every pytest run; each
name starts with ``cnilib_`` so none can clash with a project's own.

Fixture tree (scope in brackets; all others are per test)::

    cnilib_privileged [session]   probe once; skip (or fail, see below) where netns/veth are missing
    ├── cnilib_node_netns         a namespace that plays the host; plugins run inside it
    │   └── cnilib_executor       InProcessExecutor whose host is the node namespace
    │       ├── cnilib_fake_plugin    factory: cnilib_fake_plugin("fake") -> FakePlugin
    │       ├── cnilib_cni            cnilib.CNI wired to all of the above
    │       └── cnilib_async_cni      cnilib.AsyncCNI, the same for asyncio
    ├── cnilib_container_netns    factory: cnilib_container_netns() -> NetNS
    │   └── cnilib_container      factory: cnilib_container() -> Container (netns + ID)
    cnilib_cni_bin_dir            tmp CNI_PATH dir holding the recording plugin as "recorder"
    cnilib_recorder_log           where the recorder should log (a conflist's "recorder.log")
    cnilib_cache_dir              tmp dir for cnilib's result cache
    cnilib_ipam_dir               tmp dir for host-local's store (its "dataDir")
    └── cnilib_conflist           factory: cnilib_conflist(doc) -> NetworkConfigList, dataDir set

Every namespace is deleted at teardown, also when the test fails; with it
goes everything plugins made in it (links, addresses, routes, firewall rules,
sysctls). The runtimes and the executor are closed before that. Set
``CNILIB_REQUIRE_PRIVILEGED=1`` (as CI running as root does) to make the
privileged fixtures fail instead of skip where namespaces cannot be made.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cnilib.testing import install_recording_plugin
from cnilib.testing._netns import NetNS, create_netns, probe_privileged

if TYPE_CHECKING:
    import cnilib
    from cnilib.config import NetworkConfigList
    from cnilib.invoke import ChainExecutor
    from cnilib.plugins import InProcessExecutor
    from cnilib.testing._etcd import EtcdServer
    from cnilib.testing._fake import FakePluginFactory
    from cnilib.testing._world import ConflistFactory, ContainerFactory

__all__ = [
    "REQUIRE_PRIVILEGED_ENV",
    "cnilib_async_cni",
    "cnilib_cache_dir",
    "cnilib_cni",
    "cnilib_cni_bin_dir",
    "cnilib_conflist",
    "cnilib_container",
    "cnilib_container_netns",
    "cnilib_etcd",
    "cnilib_executor",
    "cnilib_fake_plugin",
    "cnilib_ipam_dir",
    "cnilib_node_netns",
    "cnilib_privileged",
    "cnilib_recorder_log",
]

REQUIRE_PRIVILEGED_ENV = "CNILIB_REQUIRE_PRIVILEGED"
"""Set to ``1`` to turn the privileged fixtures' skip into a failure."""


def _retire_netlink_worker(ns: NetNS) -> None:
    """Stop cnilib's netlink worker thread in ``ns``, so it does not keep the
    namespace alive once its name is deleted (only if cnilib.netlink is in use)."""
    netlink = sys.modules.get("cnilib.netlink")
    if netlink is not None:
        netlink.close_netns(ns.path)


def _delete_all(namespaces: list[NetNS]) -> None:
    """Delete every namespace, newest first; raise the first failure after trying them all."""
    errors: list[Exception] = []
    for ns in reversed(namespaces):
        try:
            _retire_netlink_worker(ns)
            ns.delete()
        except Exception as exc:  # keep deleting the others
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture(scope="session")
def cnilib_privileged() -> None:
    """Skip the requesting test unless network namespaces and veth pairs can be
    created here; with ``CNILIB_REQUIRE_PRIVILEGED=1``, fail it instead."""
    reason = probe_privileged()
    if reason is None:
        return
    message = f"needs network namespaces and veth pairs: {reason}"
    if os.environ.get(REQUIRE_PRIVILEGED_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_PRIVILEGED_ENV}=1 requires them)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def cnilib_node_netns(cnilib_privileged: None) -> Iterator[NetNS]:
    """A fresh ``cnilib-node-*`` namespace with ``lo`` up, playing the host; deleted afterwards."""
    ns = create_netns("cnilib-node")
    try:
        yield ns
    finally:
        _delete_all([ns])


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
        _delete_all(made)


@pytest.fixture
def cnilib_container(cnilib_container_netns: Callable[[], NetNS]) -> ContainerFactory:
    """A factory of :class:`cnilib.testing.Container` (a new namespace and a
    random container ID each, or the ID given); the namespaces are deleted afterwards."""
    from cnilib.testing._world import ContainerFactory

    return ContainerFactory(cnilib_container_netns)


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


@pytest.fixture
def cnilib_ipam_dir(tmp_path: Path) -> Path:
    """An empty tmp directory for host-local's store (the IPAM section's ``dataDir``)."""
    path = tmp_path / "cni-ipam"
    path.mkdir()
    return path


@pytest.fixture
def cnilib_conflist(cnilib_ipam_dir: Path) -> ConflistFactory:
    """A parser of conflist documents (mappings or JSON text) whose host-local
    stores default to :func:`cnilib_ipam_dir` (see :func:`cnilib.testing.conflist`)."""
    from cnilib.testing._world import conflist

    def parse(config: Mapping[str, Any] | str | bytes) -> NetworkConfigList:
        return conflist(config, data_dir=cnilib_ipam_dir)

    return parse


@pytest.fixture
def cnilib_executor(cnilib_node_netns: NetNS) -> Iterator[InProcessExecutor]:
    """An :class:`cnilib.InProcessExecutor` whose plugins treat the node
    namespace as the host; register more plugins with its ``register``.
    Closed at teardown (its idle call threads end), before the namespace goes."""
    from cnilib.plugins import InProcessExecutor

    executor = InProcessExecutor(host_netns=cnilib_node_netns.path)
    try:
        yield executor
    finally:
        executor.close()


@pytest.fixture
def cnilib_fake_plugin(cnilib_executor: InProcessExecutor) -> FakePluginFactory:
    """A factory of :class:`cnilib.testing.FakePlugin`, each registered with
    :func:`cnilib_executor` under the type given (default ``"fake"``)."""
    from cnilib.testing._fake import FakePluginFactory

    return FakePluginFactory(cnilib_executor)


def _run_aside(coro: Coroutine[object, object, None]) -> None:
    """Run ``coro`` to the end on an event loop of its own.

    The test's loop is over (or belongs to a plugin) by teardown; a private
    loop, never made the thread's current one, leaves the asyncio plugins'
    loop handling alone.
    """
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(coro)
    finally:
        loop.close()


def _chain(executor: InProcessExecutor, node: NetNS) -> ChainExecutor:
    """In-process plugins first, then executables run under ``ip netns exec <node>``."""
    from cnilib.invoke import ChainExecutor, SubprocessExecutor

    return ChainExecutor(executor, SubprocessExecutor(wrapper=node.exec_prefix))


@pytest.fixture
def cnilib_cni(
    cnilib_executor: InProcessExecutor,
    cnilib_node_netns: NetNS,
    cnilib_cni_bin_dir: Path,
    cnilib_cache_dir: Path,
) -> Iterator[cnilib.CNI]:
    """A :class:`cnilib.CNI` ready to run plugins in the node namespace:
    cnilib's plugins and registered fakes in process (:func:`cnilib_executor`),
    any other type as an executable from :func:`cnilib_cni_bin_dir` under
    ``ip netns exec <node>``; its cache in :func:`cnilib_cache_dir`. Closed
    at teardown."""
    from cnilib import CNI

    executor = _chain(cnilib_executor, cnilib_node_netns)
    cni = CNI([str(cnilib_cni_bin_dir)], cache_dir=cnilib_cache_dir, executor=executor)
    try:
        yield cni
    finally:
        cni.close()


@pytest.fixture
def cnilib_async_cni(
    cnilib_executor: InProcessExecutor,
    cnilib_node_netns: NetNS,
    cnilib_cni_bin_dir: Path,
    cnilib_cache_dir: Path,
) -> Iterator[cnilib.AsyncCNI]:
    """:func:`cnilib_cni` for asyncio: a :class:`cnilib.AsyncCNI` wired the same
    way, closed (``aclose()``) at teardown.

    A plain fixture, not an async one, so that it needs no asyncio plugin
    (pytest-asyncio in strict mode, anyio) and serves the tests of any."""
    from cnilib import AsyncCNI

    executor = _chain(cnilib_executor, cnilib_node_netns)
    cni = AsyncCNI([str(cnilib_cni_bin_dir)], cache_dir=cnilib_cache_dir, executor=executor)
    try:
        yield cni
    finally:
        _run_aside(cni.aclose())


@pytest.fixture
def cnilib_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """A running :class:`cnilib.testing._etcd.EtcdServer` on 127.0.0.1 (free ports, data
    in ``tmp_path``), stopped at teardown; ``stop()``/``start()`` stage an outage.

    Skipped when the etcd binary is missing (``apt-get install etcd-server``); with
    ``CNILIB_REQUIRE_PRIVILEGED=1``, as in CI, that fails the test instead."""
    from cnilib.testing._etcd import ETCD_INSTALL_HINT, EtcdServer, find_etcd

    if find_etcd() is None:
        message = f"needs the etcd server binary: {ETCD_INSTALL_HINT}"
        if os.environ.get(REQUIRE_PRIVILEGED_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRE_PRIVILEGED_ENV}=1 requires it)", pytrace=False)
        pytest.skip(message)
    server = EtcdServer(tmp_path / "etcd")
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)
