"""Third-party in-process plugins: the ``cnilib.plugins`` entry points, the
executor's precedence rules, and the example package in examples/plugin_package."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import cnilib
from cnilib.config import conflist_from_bytes
from cnilib.invoke import Command, Invocation
from cnilib.plugins import (
    BUILTIN_PLUGINS,
    ENTRY_POINT_GROUP,
    BasePlugin,
    InProcessExecutor,
    PluginRequest,
    load_plugin,
    plugin_types,
    refresh_installed,
)
from cnilib.results import Result, ResultV100, decode_result
from tests.unit._guards import NO_SUCH_HOST

EXAMPLE_SRC = Path(__file__).parents[2] / "examples" / "plugin_package" / "src"

InstallFn = Callable[..., Path]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InstallFn]:
    """Declare entry points as an installed distribution would: a ``.dist-info``
    directory on ``sys.path``, with the example package's sources beside it."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    refresh_installed()

    def declare(dist: str, **entries: str) -> Path:
        info = site / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "".join(f"{name.replace('_', '-')} = {value}\n" for name, value in entries.items())
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
        refresh_installed()
        return info

    yield declare
    refresh_installed()


class Iface(BasePlugin):
    """An interface plugin that touches nothing: ADD answers with one address."""

    type = "iface"

    def add(self, req: PluginRequest) -> Result:
        return decode_result(
            {"cniVersion": "1.1.0", "ips": [{"address": "10.9.0.2/24"}], "dns": {"search": ["a"]}},
            default_version="1.1.0",
        )


def _conflist(**dns: list[str]) -> cnilib.NetworkConfigList:
    plugins = [{"type": "iface"}, {"type": "dns-search", **dns}]
    return conflist_from_bytes(
        json.dumps({"cniVersion": "1.1.0", "name": "net", "plugins": plugins}).encode()
    )


def _cni(tmp_path: Path, executor: InProcessExecutor) -> cnilib.CNI:
    return cnilib.CNI(["/nonexistent"], cache_dir=tmp_path / "cache", executor=executor)


RT = cnilib.RuntimeConf(container_id="c1", netns="/var/run/netns/c1", ifname="eth0")


class TestEntryPoints:
    def test_installed_plugin_runs_in_a_chain(self, tmp_path: Path, install: InstallFn) -> None:
        """A type no built-in has is found through the entry point, and chains
        with prevResult like any other plugin (ADD, CHECK, DEL)."""
        install("cni-dns-search", dns_search="cni_dns_search:DNSSearch")
        executor = InProcessExecutor({"iface": Iface()}, builtins=False, host_netns=NO_SUCH_HOST)
        cni = _cni(tmp_path, executor)
        conflist = _conflist(nameservers=["10.96.0.10"], search=["a", "svc.local"])

        result = cni.add_network_list(conflist, RT)

        assert isinstance(result, ResultV100)
        assert ("10.96.0.10",) == result.dns.nameservers
        assert ("a", "svc.local") == result.dns.search
        cni.check_network_list(conflist, RT)
        drifted = _conflist(nameservers=["10.96.0.11"])
        with pytest.raises(cnilib.PluginError, match=r"lacks 10\.96\.0\.11") as caught:
            cni.check_network_list(drifted, RT)
        assert cnilib.ErrorCode.INVALID_NETWORK_CONFIG == caught.value.code
        cni.delete_network_list(conflist, RT)

    def test_listed_with_its_distribution(self, install: InstallFn) -> None:
        install("cni-dns-search", dns_search="cni_dns_search:DNSSearch")

        types = plugin_types()

        assert "cni-dns-search 1.0" == types["dns-search"]
        assert "cnilib" == types["bridge"]
        assert {"dns-search"} == set(plugin_types(builtins=False))
        assert "dns-search" not in plugin_types(installed=False)
        assert "dns-search" in InProcessExecutor().types()
        assert "dns-search" not in InProcessExecutor(installed=False).types()

    def test_installed_off_means_not_found(self, install: InstallFn) -> None:
        install("cni-dns-search", dns_search="cni_dns_search:DNSSearch")

        with pytest.raises(cnilib.PluginNotFoundError, match='no in-process plugin "dns-search"'):
            InProcessExecutor(installed=False).find("dns-search", ["/x"])

    def test_builtin_wins_over_an_entry_point_of_its_name(self, install: InstallFn) -> None:
        """Installing a package never silently replaces cnilib's own bridge."""
        install("evil", bridge="cni_dns_search:DNSSearch")

        assert "Bridge" == type(load_plugin("bridge")).__name__
        assert "cnilib" == plugin_types()["bridge"]

    def test_builtin_names_are_reserved_without_builtins(self, install: InstallFn) -> None:
        """builtins=False leaves no bridge at all: not a package's bridge either."""
        install("evil", bridge="cni_dns_search:DNSSearch")
        executor = InProcessExecutor(builtins=False)

        assert "bridge" not in executor.types()
        assert "bridge" not in plugin_types(builtins=False)
        with pytest.raises(cnilib.PluginNotFoundError, match='no in-process plugin "bridge"'):
            executor.plugin("bridge")

    def test_repr_reads_no_package_metadata(
        self, install: InstallFn, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        install("cni-dns-search", dns_search="cni_dns_search:DNSSearch")
        executor = InProcessExecutor({"iface": Iface()}, installed=False)

        def refuse(**_: object) -> object:
            raise AssertionError("entry points scanned")

        monkeypatch.setattr("importlib.metadata.entry_points", refuse)
        refresh_installed()

        assert "plugins=['iface'], builtins=True, installed=False" in repr(executor)

    def test_plugins_argument_wins_over_everything(self, install: InstallFn) -> None:
        install("cni-dns-search", dns_search="cni_dns_search:DNSSearch")
        mine = Iface()

        executor = InProcessExecutor({"dns-search": mine, "bridge": mine})

        assert mine is executor.plugin("dns-search")
        assert mine is executor.plugin("bridge")

    def test_two_distributions_declaring_one_type(self, install: InstallFn) -> None:
        install("one", dns_search="cni_dns_search:DNSSearch")
        install("two", dns_search="cni_dns_search:DNSSearch")

        with pytest.raises(cnilib.PluginNotFoundError, match=r"declared by (one|two) 1\.0 and"):
            load_plugin("dns-search")

    @pytest.mark.parametrize(
        ("target", "expected"),
        [
            ("no_such_module:X", r"could not be loaded: ModuleNotFoundError"),
            ("cni_dns_search:Missing", r"could not be loaded: AttributeError"),
            ("cni_dns_search:_merged", r"is function, not a cnilib.plugins.BasePlugin"),
        ],
    )
    def test_broken_entry_point_is_a_clear_error(
        self, install: InstallFn, target: str, expected: str
    ) -> None:
        """The message names the type, the package and the entry point."""
        install("broken", dns_search=target)

        with pytest.raises(cnilib.PluginNotFoundError, match=expected) as caught:
            InProcessExecutor().find("dns-search", ["/x"])
        assert 'plugin "dns-search" (broken 1.0, entry point' in str(caught.value)

    def test_install_refuses_a_type_that_is_no_file_name(
        self, install: InstallFn, tmp_path: Path
    ) -> None:
        """Checked for every type before anything is written."""
        from cnilib.plugins._main import install as install_executables

        info = install("odd", dns_search="cni_dns_search:DNSSearch")
        (info / "entry_points.txt").write_text(
            f"[{ENTRY_POINT_GROUP}]\nup/../x = cni_dns_search:DNSSearch\n"
        )
        refresh_installed()

        with pytest.raises(cnilib.PluginNotFoundError, match="cannot be a file name"):
            install_executables(tmp_path / "bin")
        assert not (tmp_path / "bin").exists()

    def test_a_plugin_instance_is_accepted(self, install: InstallFn, tmp_path: Path) -> None:
        module = tmp_path / "site" / "instance_plugin.py"
        module.write_text(
            "from cni_dns_search import DNSSearch\nPLUGIN = DNSSearch()\n", encoding="utf-8"
        )
        install("inst", dns_search="instance_plugin:PLUGIN")

        assert "DNSSearch" == type(load_plugin("dns-search")).__name__

    def test_failing_constructor_is_a_clear_error(self, install: InstallFn, tmp_path: Path) -> None:
        module = tmp_path / "site" / "angry_plugin.py"
        module.write_text(
            "from cnilib.plugins import BasePlugin\n"
            "class Angry(BasePlugin):\n"
            "    def __init__(self) -> None:\n"
            "        raise OSError('no config file')\n",
            encoding="utf-8",
        )
        install("angry", angry="angry_plugin:Angry")

        with pytest.raises(cnilib.PluginNotFoundError, match="could not be created: OSError"):
            load_plugin("angry")

    def test_nothing_is_scanned_for_a_builtin(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Built-in types never pay for a scan of the installed packages."""
        import importlib.metadata

        refresh_installed()

        def refuse(**_: object) -> object:
            raise AssertionError("entry points scanned")

        monkeypatch.setattr(importlib.metadata, "entry_points", refuse)
        try:
            for plugin_type in BUILTIN_PLUGINS:
                load_plugin(plugin_type)
        finally:
            refresh_installed()


class TestVerbs:
    def test_verb_as_text_is_the_verb(self) -> None:
        assert Command.DEL is Invocation(command="DEL", plugin_type="x", stdin=b"").command

    def test_unknown_verb_names_the_verbs(self) -> None:
        with pytest.raises(cnilib.InvalidArgumentError, match="unknown CNI verb 'add': expected"):
            Invocation(command="add", plugin_type="x", stdin=b"")

    def test_delegate_with_verb_as_text(self, tmp_path: Path) -> None:
        """A plugin delegating with ``"ADD"`` gets its delegate's result, not code 999."""

        class Outer(BasePlugin):
            type = "outer"

            def add(self, req: PluginRequest) -> Result:
                return decode_result(req.delegate("iface", "ADD"), default_version="1.1.0")

        executor = InProcessExecutor(
            {"outer": Outer(), "iface": Iface()}, builtins=False, host_netns=NO_SUCH_HOST
        )
        conflist = conflist_from_bytes(
            b'{"cniVersion": "1.1.0", "name": "net", "plugins": [{"type": "outer"}]}'
        )

        result = _cni(tmp_path, executor).add_network_list(conflist, RT)

        assert isinstance(result, ResultV100)
        assert "10.9.0.2/24" == str(result.ips[0].address)


CONFIG: dict[str, object] = {
    "s": "x",
    "i": 1500,
    "f": 1500.0,
    "b": True,
    "o": {"k": 1},
    "l": [1],
    "n": None,
}


class TestConfigAccessors:
    def _request(self, **config: object) -> PluginRequest:
        return PluginRequest(
            command=Command.ADD,
            container_id="c",
            netns="/x",
            ifname="eth0",
            args=(),
            path=("/x",),
            config={**CONFIG, **config},  # type: ignore[dict-item]
            stdin=b"{}",
            host_netns=NO_SUCH_HOST,
        )

    def test_values_and_defaults(self) -> None:
        req = self._request(ipam={"type": "host-local"})

        assert ("x", 1500, 1500, True) == (
            req.get_str("s"),
            req.get_int("i"),
            req.get_int("f"),
            req.get_bool("b"),
        )
        assert ({"k": 1}, [1]) == (req.get_object("o"), req.get_list("l"))
        assert ("d", 7, False, {}, []) == (
            req.get_str("n", "d"),
            req.get_int("missing", 7),
            req.get_bool("n"),
            req.get_object("missing"),
            req.get_list("n"),
        )
        assert "host-local" == req.ipam_type
        assert "" == self._request().ipam_type

    @pytest.mark.parametrize(
        ("read", "message"),
        [
            (lambda r: r.get_str("i"), r'"i" must be a string, got 1500'),
            (lambda r: r.get_int("b"), r'"b" must be an integer, got True'),
            (lambda r: r.get_int("s"), r'"s" must be an integer'),
            (lambda r: r.get_bool("i"), r'"i" must be true or false'),
            (lambda r: r.get_object("l"), r'"l" must be an object'),
            (lambda r: r.get_list("o"), r'"o" must be an array'),
        ],
    )
    def test_wrong_type_is_code_7_naming_the_field(
        self, read: Callable[[PluginRequest], object], message: str
    ) -> None:
        with pytest.raises(cnilib.PluginError, match=message) as caught:
            read(self._request())
        assert cnilib.ErrorCode.INVALID_NETWORK_CONFIG == caught.value.code

    def test_ipam_type_names_its_path(self) -> None:
        with pytest.raises(cnilib.PluginError, match=r'"ipam.type" must be a string'):
            _ = self._request(ipam={"type": 3}).ipam_type
