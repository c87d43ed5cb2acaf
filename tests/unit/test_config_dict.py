"""Configuration from dicts, and the conf-dir loader's default network."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import cnilib
from cnilib.config import scan_conf_dir

LIST: cnilib.JSONObject = {
    "cniVersion": "1.0.0",
    "name": "net",
    "plugins": [{"type": "bridge", "bridge": "<b>"}],
}


class TestConflistFromDict:
    def test_same_as_from_bytes(self) -> None:
        """A dict gives the list conflist_from_bytes gives for its Go encoding."""
        conflist = cnilib.conflist_from_dict(LIST, source="code")
        expected = cnilib.conflist_from_bytes(conflist.bytes, source="code")

        assert expected == conflist
        assert b'"bridge":"\\u003cb\\u003e"' in conflist.bytes  # Go's escaping

    def test_errors_are_those_of_the_byte_parser(self) -> None:
        """A list without a name fails with libcni's text, naming the source."""
        with pytest.raises(cnilib.ConfigError) as info:
            cnilib.conflist_from_dict({"plugins": [{"type": "x"}]}, source="mine")

        assert "mine: error parsing configuration list: no name (at $.name)" == str(info.value)

    def test_single_plugin_conf_is_wrapped(self) -> None:
        """A dict with a type and no plugins is a .conf: wrapped, taking its name and version."""
        conflist = cnilib.conflist_from_dict({"cniVersion": "0.4.0", "name": "n", "type": "ptp"})

        assert ("n", "0.4.0", ["ptp"]) == (
            conflist.name,
            conflist.cni_version,
            [p.type for p in conflist.plugins],
        )

    def test_list_without_plugins_is_refused(self) -> None:
        """Neither plugins nor a type: no plugin configs found (no subdirectory to add any)."""
        with pytest.raises(cnilib.ConfigError, match="no plugin configs found"):
            cnilib.conflist_from_dict({"cniVersion": "1.0.0", "name": "n"})

    @pytest.mark.parametrize("value", [float("nan"), {1, 2}])
    def test_non_json_is_config_error(self, value: object) -> None:
        """A NaN or a set inside is a ConfigError, not a ValueError or TypeError."""
        obj = {"name": "n", "plugins": [{"type": "x", "v": value}]}

        with pytest.raises(cnilib.ConfigError, match="not JSON"):
            cnilib.conflist_from_dict(obj)  # type: ignore[arg-type]

    def test_conf_from_dict(self) -> None:
        """conf_from_dict checks as conf_from_bytes: type is required."""
        assert "bridge" == cnilib.conf_from_dict({"type": "bridge"}).type
        with pytest.raises(cnilib.ConfigError, match="missing 'type'"):
            cnilib.conf_from_dict({"name": "x"})

    def test_tuples_and_mappings_inside(self) -> None:
        """Tuples inside the dict are written as JSON arrays."""
        conflist = cnilib.conflist_from_dict({"name": "n", "plugins": ({"type": "x"},)})

        assert json.loads(conflist.bytes)["plugins"] == [{"type": "x"}]


def _write(directory: Path, name: str, network: str, plugin: str = "bridge") -> None:
    conf: dict[str, object] = {"cniVersion": "1.0.0", "name": network}
    if name.endswith(".conflist"):
        conf["plugins"] = [{"type": plugin}]
    else:
        conf["type"] = plugin
    (directory / name).write_text(json.dumps(conf))


class TestDefaultNetwork:
    def test_first_file_that_loads_is_default(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A broken first file is a WARNING and a problem; the next good file is the default."""
        (tmp_path / "00-broken.conflist").write_text("{")
        _write(tmp_path, "10-b.conflist", "b")
        _write(tmp_path, "20-a.conf", "a")

        with caplog.at_level(logging.WARNING, logger="cnilib.config"):
            scanned = scan_conf_dir(tmp_path)

        assert scanned.default is not None
        assert "b" == scanned.default.name
        assert ["b", "a"] == [n.name for n in scanned.networks]
        assert ["00-broken.conflist"] == [Path(p.path or "").name for p in scanned.problems]
        assert "00-broken.conflist" in caplog.text

    def test_max_networks_stops_after_enough_loaded(self, tmp_path: Path) -> None:
        """max_networks=1 loads only the default network; bad files before it don't count."""
        (tmp_path / "00-broken.conf").write_text("[]")
        _write(tmp_path, "10-b.conflist", "b")
        (tmp_path / "20-never-read.conflist").write_text("{")

        scanned = scan_conf_dir(tmp_path, max_networks=1)

        assert ["b"] == [n.name for n in scanned.networks]
        assert 1 == len(scanned.problems)

    def test_zero_means_all(self, tmp_path: Path) -> None:
        """max_networks=0 loads everything, as containerd's max_conf_num = 0."""
        _write(tmp_path, "1.conflist", "a")
        _write(tmp_path, "2.conflist", "b")

        assert 2 == len(scan_conf_dir(tmp_path, max_networks=0).networks)

    def test_negative_is_invalid(self, tmp_path: Path) -> None:
        """A negative max_networks is an InvalidArgumentError."""
        with pytest.raises(cnilib.InvalidArgumentError):
            scan_conf_dir(tmp_path, max_networks=-1)

    def test_invalid_network_name_is_a_problem(self, tmp_path: Path) -> None:
        """A network named '../x' is reported, not offered as the default."""
        _write(tmp_path, "00-bad.conflist", "../x")
        _write(tmp_path, "10-good.conflist", "good")

        scanned = scan_conf_dir(tmp_path)

        assert scanned.default is not None
        assert "good" == scanned.default.name
        assert "$.name" == scanned.problems[0].field

    def test_empty_directory_has_no_default(self, tmp_path: Path) -> None:
        """No configuration: default is None."""
        assert scan_conf_dir(tmp_path).default is None
