"""Tests for cnilib.config file loading: ConfFiles, ConfListFromFile, LoadNetworkConf (§1.7, §1.8).

Deliberate improvements tested as implemented: load_conflist skips
unparsable files (listed in ConfigNotFoundError.problems/details) instead of
aborting; scan_conf_dir; the plugin subdirectory is never joined for an
invalid network name.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from cnilib.config import (
    ConfDir,
    conf_files,
    conf_from_file,
    conflist_from_file,
    load_conflist,
    plugin_confs_from_dir,
    scan_conf_dir,
)
from cnilib.errors import ConfigError, ConfigNotFoundError, ErrorCode, NoConfigsFoundError


def _write(path: Path, content: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else json.dumps(content)
    path.write_text(text, encoding="utf-8")
    return path


def _list(name: str, *types: str, **keys: object) -> dict[str, object]:
    return {"cniVersion": "1.0.0", "name": name, "plugins": [{"type": t} for t in types], **keys}


def _names(paths: list[str]) -> list[str]:
    return [os.path.basename(p) for p in paths]


class TestConfFiles:
    """conf_files mirrors Go ConfFiles."""

    def test_missing_dir(self, tmp_path: Path) -> None:
        """A missing directory gives [] (no error)."""
        assert [] == conf_files(tmp_path / "nope", [".conf"])

    def test_sorted_by_name(self, tmp_path: Path) -> None:
        """Files come sorted by name (byte order: upper case before lower case)."""
        for name in ("b.conf", "a.conf", "B.conf", "10-x.conf", "9-x.conf"):
            _write(tmp_path / name, "{}")
        assert ["10-x.conf", "9-x.conf", "B.conf", "a.conf", "b.conf"] == _names(
            conf_files(tmp_path, [".conf"])
        )

    def test_non_utf8_file_name(self, tmp_path: Path) -> None:
        """A file name that is not UTF-8 is listed, in byte order, instead of crashing."""
        for raw in (b"\xff.conf", b"a.conf", b"\xc3\xa9.conf"):
            _write(Path(os.fsdecode(os.fsencode(tmp_path) + b"/" + raw)), "{}")
        assert [b"a.conf", b"\xc3\xa9.conf", b"\xff.conf"] == [
            os.fsencode(name) for name in _names(conf_files(tmp_path, [".conf"]))
        ]

    def test_full_paths(self, tmp_path: Path) -> None:
        """Entries are joined with the directory."""
        _write(tmp_path / "a.conf", "{}")
        assert [str(tmp_path / "a.conf")] == conf_files(tmp_path, [".conf"])

    def test_extension_match(self, tmp_path: Path) -> None:
        """Only the last suffix counts, case-sensitively."""
        names = [
            "a.conf",
            "b.conflist",
            "c.json",
            "d.CONF",
            "e.conf.bak",
            "f.conf~",
            "g",
            "h.jsonc",
            "i.x.conf",
        ]
        for name in names:
            _write(tmp_path / name, "{}")
        assert (
            ["a.conf", "i.x.conf"],
            ["b.conflist"],
            ["a.conf", "b.conflist", "c.json", "i.x.conf"],
        ) == (
            _names(conf_files(tmp_path, [".conf"])),
            _names(conf_files(tmp_path, (".conflist",))),
            _names(conf_files(tmp_path, [".conf", ".conflist", ".json"])),
        )

    def test_directories_skipped(self, tmp_path: Path) -> None:
        """Directories are skipped even with a matching extension."""
        (tmp_path / "dir.conf").mkdir()
        _write(tmp_path / "a.conf", "{}")
        assert ["a.conf"] == _names(conf_files(tmp_path, [".conf"]))

    def test_not_recursive(self, tmp_path: Path) -> None:
        """Files in subdirectories are not listed."""
        _write(tmp_path / "sub" / "a.conf", "{}")
        assert [] == conf_files(tmp_path, [".conf"])

    def test_symlink_to_file_listed(self, tmp_path: Path) -> None:
        """A symlink to a file is listed like a file."""
        target = _write(tmp_path / "real" / "x", "{}")
        (tmp_path / "link.conf").symlink_to(target)
        assert ["link.conf"] == _names(conf_files(tmp_path, [".conf"]))

    def test_symlink_to_dir_not_skipped(self, tmp_path: Path) -> None:
        """A symlink to a directory is listed, as Go's ReadDir entry is not a dir."""
        (tmp_path / "real").mkdir()
        (tmp_path / "link.conf").symlink_to(tmp_path / "real")
        assert ["link.conf"] == _names(conf_files(tmp_path, [".conf"]))

    def test_dotfile_named_like_extension(self, tmp_path: Path) -> None:
        """A file named exactly '.conflist' has extension '.conflist' (Go filepath.Ext)."""
        _write(tmp_path / ".conflist", "{}")
        assert [".conflist"] == _names(conf_files(tmp_path, [".conflist"]))

    def test_not_a_directory(self, tmp_path: Path) -> None:
        """Another read error (a file instead of a directory) is a ConfigError naming it."""
        path = _write(tmp_path / "file", "x")
        with pytest.raises(ConfigError, match="error reading directory") as info:
            conf_files(path, [".conf"])
        assert str(path) == info.value.path


class TestConfFromFile:
    """conf_from_file reads a single plugin config."""

    def test_reads_and_keeps_bytes(self, tmp_path: Path) -> None:
        """The file's exact bytes are kept and the source is its path."""
        path = _write(tmp_path / "a.conf", '{"type": "bridge", "name": "a"}\n')
        conf = conf_from_file(path)
        assert ("bridge", b'{"type": "bridge", "name": "a"}\n', str(path)) == (
            conf.type,
            conf.bytes,
            conf.source,
        )

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is 'error reading <path>: ...' with the path."""
        path = tmp_path / "none.conf"
        with pytest.raises(ConfigError, match=f"error reading {path}") as info:
            conf_from_file(path)
        assert (str(path), ErrorCode.INVALID_NETWORK_CONFIG) == (info.value.path, info.value.code)

    def test_parse_error_names_file(self, tmp_path: Path) -> None:
        """A parse error starts with the file path."""
        path = _write(tmp_path / "a.conf", {"name": "x"})
        with pytest.raises(ConfigError) as info:
            conf_from_file(path)
        assert f"{path}: error parsing configuration: missing 'type' (at $.type)" == str(info.value)


class TestConflistFromFile:
    """conflist_from_file: parse, merge the plugin subdirectory, require plugins (§1.8.4/§1.8.5)."""

    def test_plain(self, tmp_path: Path) -> None:
        """A list without a subdirectory has its inline plugins; source and bytes are the file's."""
        path = _write(tmp_path / "a.conflist", _list("net", "bridge", "portmap"))
        conflist = conflist_from_file(path)
        assert (["bridge", "portmap"], str(path), path.read_bytes()) == (
            [p.type for p in conflist.plugins],
            conflist.source,
            conflist.bytes,
        )

    def test_subdir_plugins_appended(self, tmp_path: Path) -> None:
        """<dir>/<name>/*.conf plugins follow the inline ones, sorted, only .conf."""
        path = _write(tmp_path / "a.conflist", _list("net", "bridge"))
        _write(tmp_path / "net" / "20-tuning.conf", {"type": "tuning"})
        _write(tmp_path / "net" / "10-portmap.conf", {"type": "portmap"})
        _write(tmp_path / "net" / "30-other.json", {"type": "json-ignored"})
        _write(tmp_path / "net" / "40-list.conflist", {"type": "conflist-ignored"})
        _write(tmp_path / "net" / "deeper" / "50-deep.conf", {"type": "deep-ignored"})
        conflist = conflist_from_file(path)
        assert (["bridge", "portmap", "tuning"], str(tmp_path / "net" / "10-portmap.conf")) == (
            [p.type for p in conflist.plugins],
            conflist.plugins[1].source,
        )

    def test_subdir_plugin_bytes_are_file_bytes(self, tmp_path: Path) -> None:
        """A subdirectory plugin keeps its file's bytes (not re-marshalled)."""
        path = _write(tmp_path / "a.conflist", _list("net", "bridge"))
        sub = _write(tmp_path / "net" / "a.conf", '{ "type": "tuning" }\n')
        assert sub.read_bytes() == conflist_from_file(path).plugins[1].bytes

    def test_subdir_only(self, tmp_path: Path) -> None:
        """A list without 'plugins' takes its plugins from the subdirectory."""
        path = _write(tmp_path / "a.conflist", {"cniVersion": "1.1.0", "name": "net"})
        _write(tmp_path / "net" / "a.conf", {"type": "bridge"})
        assert ["bridge"] == [p.type for p in conflist_from_file(path).plugins]

    @pytest.mark.parametrize("flag", [True, "true", "TRUE"])
    def test_load_only_inlined_skips_subdir(self, tmp_path: Path, flag: object) -> None:
        """loadOnlyInlinedPlugins (bool or string) ignores the subdirectory."""
        path = _write(tmp_path / "a.conflist", _list("net", "bridge", loadOnlyInlinedPlugins=flag))
        _write(tmp_path / "net" / "a.conf", {"type": "tuning"})
        assert ["bridge"] == [p.type for p in conflist_from_file(path).plugins]

    def test_subdir_loaded_for_old_versions(self, tmp_path: Path) -> None:
        """The subdirectory is merged for every config version (opt-out flag)."""
        path = _write(
            tmp_path / "a.conflist",
            {"cniVersion": "0.3.1", "name": "net", "plugins": [{"type": "b"}]},
        )
        _write(tmp_path / "net" / "a.conf", {"type": "tuning"})
        assert ["b", "tuning"] == [p.type for p in conflist_from_file(path).plugins]

    def test_no_plugins_at_all(self, tmp_path: Path) -> None:
        """No inline plugins and no subdirectory: 'no plugin configs found'."""
        path = _write(tmp_path / "a.conflist", {"cniVersion": "1.1.0", "name": "net"})
        with pytest.raises(ConfigError) as info:
            conflist_from_file(path)
        err = info.value
        assert (f"{path}: no plugin configs found (at $.plugins)", str(path), "$.plugins", 7) == (
            str(err),
            err.path,
            err.field,
            err.code,
        )

    def test_empty_subdir(self, tmp_path: Path) -> None:
        """An empty subdirectory adds nothing (and is no error)."""
        (tmp_path / "net").mkdir()
        path = _write(tmp_path / "a.conflist", {"name": "net"})
        with pytest.raises(ConfigError, match="no plugin configs found"):
            conflist_from_file(path)

    def test_bad_subdir_plugin(self, tmp_path: Path) -> None:
        """A subdirectory plugin without type fails, naming that file."""
        path = _write(tmp_path / "a.conflist", _list("net", "bridge"))
        bad = _write(tmp_path / "net" / "a.conf", {"mtu": 1})
        with pytest.raises(
            ConfigError, match="error parsing configuration: missing 'type'"
        ) as info:
            conflist_from_file(path)
        assert str(bad) == info.value.path

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is 'error reading <path>'."""
        with pytest.raises(ConfigError, match="error reading "):
            conflist_from_file(tmp_path / "none.conflist")


class TestPluginConfsFromDir:
    """plugin_confs_from_dir reads <dir>/<network>/*.conf."""

    def test_missing_subdir(self, tmp_path: Path) -> None:
        """A missing subdirectory gives []."""
        assert [] == plugin_confs_from_dir(tmp_path, "net")

    @pytest.mark.parametrize("name", ["", "..", "../etc", "a/b", "."])
    def test_invalid_network_name_never_joined(self, tmp_path: Path, name: str) -> None:
        """An invalid network name gives [] instead of reading another directory."""
        _write(tmp_path / "x.conf", {"type": "from-parent-dir"})
        _write(tmp_path / "sub" / "a" / "b" / "y.conf", {"type": "nested"})
        assert [] == plugin_confs_from_dir(tmp_path / "sub", name)


class TestLoadConflist:
    """load_conflist: libcni's search order and errors, skipping broken files."""

    def test_conflist_before_conf(self, tmp_path: Path) -> None:
        """A .conflist wins over a .conf of the same name, even if the .conf sorts first."""
        _write(tmp_path / "00-net.conf", {"name": "net", "type": "from-conf"})
        _write(tmp_path / "99-net.conflist", _list("net", "from-conflist"))
        assert ["from-conflist"] == [p.type for p in load_conflist(tmp_path, "net").plugins]

    def test_first_conflist_by_name_wins(self, tmp_path: Path) -> None:
        """Among lists with the same name, the first file in sorted order wins."""
        _write(tmp_path / "20.conflist", _list("net", "second"))
        _write(tmp_path / "10.conflist", _list("net", "first"))
        loaded = load_conflist(tmp_path, "net")
        assert (["first"], str(tmp_path / "10.conflist")) == (
            [p.type for p in loaded.plugins],
            loaded.source,
        )

    def test_selects_by_name(self, tmp_path: Path) -> None:
        """Lists with other names are passed over."""
        _write(tmp_path / "10.conflist", _list("other", "x"))
        _write(tmp_path / "20.conflist", _list("net", "y"))
        assert "net" == load_conflist(tmp_path, "net").name

    @pytest.mark.parametrize("ext", [".conf", ".json"])
    def test_single_conf_fallback(self, tmp_path: Path, ext: str) -> None:
        """A .conf/.json with the name is upconverted to a list."""
        _write(tmp_path / f"a{ext}", {"cniVersion": "0.4.0", "name": "net", "type": "bridge"})
        loaded = load_conflist(tmp_path, "net")
        assert ("net", "0.4.0", ["bridge"], str(tmp_path / f"a{ext}")) == (
            loaded.name,
            loaded.cni_version,
            [p.type for p in loaded.plugins],
            loaded.source,
        )

    def test_conf_and_json_sorted_together(self, tmp_path: Path) -> None:
        """.conf and .json files are searched together in name order."""
        _write(tmp_path / "b.conf", {"name": "net", "type": "from-b"})
        _write(tmp_path / "a.json", {"name": "net", "type": "from-a"})
        assert ["from-a"] == [p.type for p in load_conflist(tmp_path, "net").plugins]

    def test_upconverted_conf_ignores_subdir(self, tmp_path: Path) -> None:
        """Subdirectory plugins are not loaded for an upconverted .conf (§1.4.3)."""
        _write(tmp_path / "a.conf", {"name": "net", "type": "bridge"})
        _write(tmp_path / "net" / "b.conf", {"type": "tuning"})
        assert ["bridge"] == [p.type for p in load_conflist(tmp_path, "net").plugins]

    def test_conflist_merges_subdir(self, tmp_path: Path) -> None:
        """A list found by name has its subdirectory plugins."""
        _write(tmp_path / "a.conflist", _list("net", "bridge"))
        _write(tmp_path / "net" / "b.conf", {"type": "tuning"})
        assert ["bridge", "tuning"] == [p.type for p in load_conflist(tmp_path, "net").plugins]

    def test_accepts_pathlike(self, tmp_path: Path) -> None:
        """The directory may be a Path or a str."""
        _write(tmp_path / "a.conflist", _list("net", "bridge"))
        assert load_conflist(str(tmp_path), "net").name == load_conflist(tmp_path, "net").name

    def test_missing_dir(self, tmp_path: Path) -> None:
        """A missing directory is NoConfigsFoundError with libcni's text."""
        directory = tmp_path / "none"
        with pytest.raises(NoConfigsFoundError) as info:
            load_conflist(directory, "net")
        assert (f"no net configurations found in {directory}", str(directory), 7) == (
            str(info.value),
            info.value.directory,
            info.value.code,
        )

    def test_no_config_files(self, tmp_path: Path) -> None:
        """A directory without .conflist/.conf/.json files is NoConfigsFoundError."""
        _write(tmp_path / "README", "x")
        _write(tmp_path / "a.yaml", "x")
        (tmp_path / "dir.conflist").mkdir()
        with pytest.raises(NoConfigsFoundError):
            load_conflist(tmp_path, "net")

    def test_lists_exist_but_no_match(self, tmp_path: Path) -> None:
        """Lists exist, none matches, no .conf: ConfigNotFoundError with libcni's text."""
        _write(tmp_path / "a.conflist", _list("other", "b"))
        with pytest.raises(ConfigNotFoundError) as info:
            load_conflist(tmp_path, "net")
        err = info.value
        assert (
            f'no net configuration with name "net" in {tmp_path}',
            str(tmp_path),
            "net",
            (),
            7,
        ) == (
            str(err),
            err.directory,
            err.name,
            err.problems,
            err.code,
        )

    def test_confs_exist_but_no_match(self, tmp_path: Path) -> None:
        """Only .conf files, none matching: ConfigNotFoundError."""
        _write(tmp_path / "a.conf", {"name": "other", "type": "b"})
        with pytest.raises(ConfigNotFoundError, match='no net configuration with name "net"'):
            load_conflist(tmp_path, "net")

    def test_not_found_is_file_not_found_error(self, tmp_path: Path) -> None:
        """ConfigNotFoundError can be caught as FileNotFoundError."""
        _write(tmp_path / "a.conflist", _list("other", "b"))
        with pytest.raises(FileNotFoundError):
            load_conflist(tmp_path, "net")

    def test_broken_file_skipped(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """A broken list sorting first does not stop the search; it is logged (improvement)."""
        _write(tmp_path / "00-broken.conflist", "{")
        _write(tmp_path / "10-net.conflist", _list("net", "bridge"))
        with caplog.at_level(logging.WARNING, logger="cnilib.config"):
            loaded = load_conflist(tmp_path, "net")
        assert ("net", True) == (loaded.name, "00-broken.conflist" in caplog.text)

    def test_problems_listed_when_not_found(self, tmp_path: Path) -> None:
        """Unloadable files are listed in problems and details when the name is not found."""
        broken = _write(tmp_path / "00-broken.conflist", "{")
        empty = _write(tmp_path / "10-empty.conflist", {"name": "net"})
        bad_conf = _write(tmp_path / "20-bad.conf", {"name": "net"})
        with pytest.raises(ConfigNotFoundError) as info:
            load_conflist(tmp_path, "net")
        err = info.value
        assert ([str(broken), str(empty), str(bad_conf)], True, True) == (
            [p.path for p in err.problems],
            err.details.startswith("3 file(s) could not be loaded: "),
            str(err).startswith(f'no net configuration with name "net" in {tmp_path}; 3 file(s)'),
        )

    @pytest.mark.parametrize("name", ["../../bad", "x\x1b[2Jy", "a\nb", ""])
    def test_invalid_name_is_a_config_error(self, tmp_path: Path, name: str) -> None:
        """A network found by an invalid name is a ConfigError naming its file and $.name."""
        path = _write(tmp_path / "10-bad.conflist", _list(name, "bridge"))
        _write(tmp_path / "20-good.conflist", _list("good", "bridge"))
        with pytest.raises(ConfigError) as info:
            load_conflist(tmp_path, name)
        err = info.value
        assert (str(path), "$.name", ErrorCode.INVALID_NETWORK_CONFIG, False) == (
            err.path,
            err.field,
            err.code,
            isinstance(err, ConfigNotFoundError),
        )
        assert str(err).startswith(f'{path}: invalid network name "{name}": ')
        assert "good" == load_conflist(tmp_path, "good").name

    def test_invalid_name_in_single_conf(self, tmp_path: Path) -> None:
        """A .conf found by an invalid name is refused the same way."""
        path = _write(tmp_path / "10-bad.conf", {"name": "a/b", "type": "bridge"})
        with pytest.raises(ConfigError) as info:
            load_conflist(tmp_path, "a/b")
        assert (str(path), "$.name") == (info.value.path, info.value.field)

    def test_plugin_less_list_is_a_problem(self, tmp_path: Path) -> None:
        """A list that would have no plugins is a problem ('no plugin configs found')."""
        _write(tmp_path / "a.conflist", {"name": "net"})
        with pytest.raises(ConfigNotFoundError) as info:
            load_conflist(tmp_path, "net")
        problems = info.value.problems
        assert [(str(tmp_path / "a.conflist"), "$.plugins", True)] == [
            (p.path, p.field, "no plugin configs found" in str(p)) for p in problems
        ]


class TestScanConfDir:
    """scan_conf_dir loads everything (improvement): networks in default-network order, problems."""

    def test_scan(self, tmp_path: Path) -> None:
        """All extensions in name order; broken files become problems."""
        _write(tmp_path / "10-b.conf", {"name": "b", "type": "x"})
        _write(tmp_path / "20-a.conflist", _list("a", "y"))
        _write(tmp_path / "30-c.json", {"name": "c", "type": "z"})
        broken = _write(tmp_path / "40-broken.conflist", "not json")
        scanned = scan_conf_dir(tmp_path)
        assert (str(tmp_path), ["b", "a", "c"], [str(broken)]) == (
            scanned.directory,
            [n.name for n in scanned.networks],
            [p.path for p in scanned.problems],
        )

    def test_get_prefers_conflist(self, tmp_path: Path) -> None:
        """get() returns a .conflist before a .conf of the same name."""
        _write(tmp_path / "10-net.conf", {"name": "net", "type": "from-conf"})
        _write(tmp_path / "20-net.conflist", _list("net", "from-conflist"))
        scanned = scan_conf_dir(tmp_path)
        found = scanned.get("net")
        assert (["from-conflist"], None) == (
            [p.type for p in found.plugins] if found else None,
            scanned.get("missing"),
        )

    def test_get_falls_back_to_conf(self, tmp_path: Path) -> None:
        """get() finds a .conf network when no list has the name."""
        _write(tmp_path / "10-net.conf", {"name": "net", "type": "from-conf"})
        found = scan_conf_dir(tmp_path).get("net")
        assert ["from-conf"] == ([p.type for p in found.plugins] if found else None)

    def test_missing_dir(self, tmp_path: Path) -> None:
        """A missing directory scans as empty."""
        assert ConfDir(str(tmp_path / "x"), (), ()) == scan_conf_dir(tmp_path / "x")
