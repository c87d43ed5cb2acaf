"""cnilib.testing's namespace helpers and fixtures, against the real ``ip`` command."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cnilib.testing import (
    CommandError,
    NetNS,
    create_netns,
    node_and_containers,
    probe_privileged,
)


def netns_names() -> set[str]:
    """The names ``ip netns list`` shows right now."""
    return {p.name for p in Path("/run/netns").iterdir()} if Path("/run/netns").is_dir() else set()


class TestNetNS:
    """create_netns / NetNS.exec / NetNS.delete."""

    def test_create_gives_unique_name_with_lo_up(self) -> None:
        """Two namespaces get distinct names, a /run/netns path and ``lo`` up."""
        a, b = create_netns("cnilib-t"), create_netns("cnilib-t")
        try:
            assert a.name != b.name
            assert a.name.startswith("cnilib-t-")
            assert a.path == f"/run/netns/{a.name}"
            [lo] = json.loads(a.exec("ip", "-j", "link", "show", "lo").stdout)
            assert "UP" in lo["flags"]
        finally:
            a.delete()
            b.delete()
        assert {a.name, b.name}.isdisjoint(netns_names())

    def test_delete_is_idempotent(self) -> None:
        """Deleting twice, or after someone else deleted it, is not an error."""
        ns = create_netns("cnilib-t")
        ns.delete()
        ns.delete()
        assert not ns.exists()

    def test_exec_check_raises_with_stderr(self) -> None:
        """A failing command raises CommandError carrying stderr; check=False returns it."""
        ns = create_netns("cnilib-t")
        try:
            with pytest.raises(CommandError, match=r"nosuchdev.* does not exist"):
                ns.exec("ip", "link", "show", "nosuchdev")
            assert ns.exec("ip", "link", "show", "nosuchdev", check=False).returncode != 0
        finally:
            ns.delete()

    def test_node_and_containers_cleans_up_on_error(self) -> None:
        """The context manager deletes every namespace even when its body raises."""
        made: list[NetNS] = []

        def body() -> None:
            with node_and_containers(2) as (node, ctrs):
                made.extend([node, *ctrs])
                assert all(ns.exists() for ns in made)
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            body()
        assert len(made) == 3
        assert not any(ns.exists() for ns in made)


class TestProbe:
    """probe_privileged answers None here (root) unless forced off."""

    def test_probe_succeeds_and_leaves_nothing(self) -> None:
        """The probe passes as root and removes its namespace (``cnilib-probe-*``; other
        namespaces may come and go meanwhile, made by whatever else runs here)."""

        def probes() -> set[str]:
            return {name for name in netns_names() if name.startswith("cnilib-probe-")}

        before = probes()
        assert probe_privileged() is None
        assert probes() == before

    def test_env_forces_unprivileged(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """CNILIB_TESTS_UNPRIVILEGED=1 makes the probe report a reason."""
        monkeypatch.setenv("CNILIB_TESTS_UNPRIVILEGED", "1")
        assert probe_privileged() == "CNILIB_TESTS_UNPRIVILEGED is set"


class TestFixtures:
    """node_netns and container_netns hand out namespaces and remove them."""

    def test_node_and_container_fixtures(
        self, cnilib_node_netns: NetNS, cnilib_container_netns: Callable[[], NetNS]
    ) -> None:
        """Both fixtures give live, distinct namespaces with the expected prefixes."""
        a, b = cnilib_container_netns(), cnilib_container_netns()
        assert cnilib_node_netns.name.startswith("cnilib-node-")
        assert a.name.startswith("cnilib-ctr-")
        assert len({cnilib_node_netns.name, a.name, b.name}) == 3
        assert all(ns.exists() for ns in (cnilib_node_netns, a, b))
