"""Tests for cnilib.cache: Go libcni's cniCacheV1 result cache (§5).

tests/data/cache/cniCacheV1/go-bridge.json is a real file written by Go libcni
1.1.2; tests/data/cache/legacy/*.json are pre-cniCacheV1 bare results.
Deliberate improvements tested as implemented: atomic writes (no temp file
left, dot-prefixed temp names skipped by attachments()), an unknown ``kind``
is a CacheError, and path() validates every part.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cnilib.cache import CACHE_KIND, DEFAULT_CACHE_DIR, CacheEntry, FileCache, parse_entry
from cnilib.cache._file import _fsync_fd
from cnilib.errors import CacheError, ErrorCode, InvalidArgumentError

DATA = Path(__file__).resolve().parents[1] / "data" / "cache"
GO_FILE = DATA / "cniCacheV1" / "go-bridge.json"
GO_BYTES = GO_FILE.read_bytes()
GO_CONFIG = (
    b'{"cniVersion":"1.0.0","name":"pa","plugins":[\n'
    b' {"type":"bridge","bridge":"cnipa0","isGateway":true,"ipMasq":true,\n'
    b'  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.88.10.0/24"}]],'
    b'"routes":[{"dst":"0.0.0.0/0"}]}}]}\n'
)
LEGACY_FILES = sorted((DATA / "legacy").glob("*.json"))


def _entry(
    network: str = "net", container_id: str = "c1", ifname: str = "eth0", **kwargs: object
) -> CacheEntry:
    config = kwargs.pop("config", b'{"name":"net"}')
    assert isinstance(config, bytes)
    return CacheEntry(network, container_id, ifname, config, **kwargs)  # type: ignore[arg-type]


def _v1(**fields: object) -> bytes:
    obj: dict[str, object] = {
        "kind": "cniCacheV1",
        "containerId": "c1",
        "config": base64.b64encode(b"{}").decode(),
        "ifName": "eth0",
        "networkName": "net",
    }
    obj.update(fields)
    return json.dumps({k: v for k, v in obj.items() if v is not _DROP}).encode()


_DROP = object()


class TestGoFile:
    """The file written by Go libcni parses and is reproduced byte for byte."""

    def test_fields(self) -> None:
        """kind/containerId/ifName/networkName map to the entry's fields; no netns or args."""
        entry = parse_entry(GO_BYTES, str(GO_FILE))
        assert ("pa", "cnitool-f5a5ada46aa61a4e2abe", "eth0", "", (), {}, False) == (
            entry.network_name,
            entry.container_id,
            entry.ifname,
            entry.netns,
            entry.cni_args,
            dict(entry.capability_args),
            entry.legacy,
        )

    def test_config_is_original_conflist_bytes(self) -> None:
        """config decodes to the conflist bytes as read, trailing newline included."""
        assert GO_CONFIG == parse_entry(GO_BYTES, str(GO_FILE)).config

    def test_result(self) -> None:
        """result is the result object as cached."""
        result = parse_entry(GO_BYTES, str(GO_FILE)).result
        assert json.loads(GO_BYTES)["result"] == result

    def test_to_json_reproduces_go_bytes(self) -> None:
        """to_json of the parsed entry is byte-identical to the Go file."""
        assert GO_BYTES == parse_entry(GO_BYTES, str(GO_FILE)).to_json().encode()

    def test_save_reproduces_go_file(self, tmp_path: Path) -> None:
        """Saving the parsed entry writes exactly the Go file, at Go's path."""
        cache = FileCache(tmp_path)
        path = cache.save(parse_entry(GO_BYTES, str(GO_FILE)))
        assert (str(tmp_path / "results" / "pa-cnitool-f5a5ada46aa61a4e2abe-eth0"), GO_BYTES) == (
            path,
            Path(path).read_bytes(),
        )

    def test_load_go_file_from_cache_dir(self, tmp_path: Path) -> None:
        """A Go-written file placed in the cache is loaded by (network, container, ifname)."""
        results = tmp_path / "results"
        results.mkdir()
        (results / "pa-cnitool-f5a5ada46aa61a4e2abe-eth0").write_bytes(GO_BYTES)
        entry = FileCache(tmp_path).load("pa", "cnitool-f5a5ada46aa61a4e2abe", "eth0")
        assert parse_entry(GO_BYTES, "x") == entry


class TestToJson:
    """CacheEntry.to_json: Go's field order, empty optionals omitted."""

    def test_minimal(self) -> None:
        """Required fields only, in Go's order; config is standard base64."""
        entry = _entry(config=b"\xfb\xff")
        expected = (
            '{"kind":"cniCacheV1","containerId":"c1","config":"+/8=",'
            '"ifName":"eth0","networkName":"net"}'
        )
        assert expected == entry.to_json()

    def test_all_fields_in_order(self) -> None:
        """netns, cniArgs, capabilityArgs (sorted keys), result follow in Go's order."""
        entry = _entry(
            netns="/run/netns/x",
            cni_args=(("K8S_POD_NAME", "p"), ("IP", "10.0.0.2")),
            capability_args={"portMappings": [{"hostPort": 80}], "mac": "m"},
            result={"cniVersion": "1.0.0"},
        )
        expected = (
            '{"kind":"cniCacheV1","containerId":"c1","config":"eyJuYW1lIjoibmV0In0=","ifName":"eth0",'
            '"networkName":"net","netns":"/run/netns/x","cniArgs":[["K8S_POD_NAME","p"],["IP","10.0.0.2"]],'
            '"capabilityArgs":{"mac":"m","portMappings":[{"hostPort":80}]},"result":{"cniVersion":"1.0.0"}}'
        )
        assert expected == entry.to_json()

    def test_result_keys_sorted(self) -> None:
        """result is written with sorted keys at every level (libcni caches it as a map)."""
        entry = _entry(
            result={
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "mac": "m", "sandbox": "/s"}],
                "ips": [{"address": "10.0.0.2/24", "interface": 0}],
                "dns": {"nameservers": ["1.1.1.1"]},
            }
        )
        expected = (
            '"result":{"cniVersion":"1.0.0","dns":{"nameservers":["1.1.1.1"]},'
            '"interfaces":[{"mac":"m","name":"eth0","sandbox":"/s"}],'
            '"ips":[{"address":"10.0.0.2/24","interface":0}]}}'
        )
        assert True is entry.to_json().endswith(expected)

    def test_empty_result_omitted(self) -> None:
        """An empty or missing result is omitted (omitempty)."""
        assert (False, False) == (
            '"result"' in _entry(result={}).to_json(),
            '"result"' in _entry().to_json(),
        )

    def test_go_escapes(self) -> None:
        """Strings are written with Go's HTML escapes."""
        assert '"containerId":"c1"' in _entry(netns="/a<b").to_json()
        assert '"netns":"/a\\u003cb"' in _entry(netns="/a<b").to_json()

    def test_round_trip(self) -> None:
        """parse_entry(to_json(e)) == e."""
        entry = _entry(
            netns="/run/netns/x",
            cni_args=(("A", "1"),),
            capability_args={"mac": "m"},
            result={"cniVersion": "1.1.0", "ips": []},
        )
        assert entry == parse_entry(entry.to_json().encode(), "p")


class TestParseEntry:
    """parse_entry: cniCacheV1, legacy, and every corruption as a CacheError naming the path."""

    @pytest.mark.parametrize("path", LEGACY_FILES, ids=lambda p: p.name)
    def test_legacy_bare_result(self, path: Path) -> None:
        """A file without 'kind' is a legacy bare result: legacy=True, result = the file."""
        entry = parse_entry(path.read_bytes(), str(path))
        assert (True, json.loads(path.read_bytes()), "", "", "", b"") == (
            entry.legacy,
            entry.result,
            entry.network_name,
            entry.container_id,
            entry.ifname,
            entry.config,
        )

    def test_optional_fields(self) -> None:
        """netns, cniArgs and capabilityArgs are read when present; null reads as absent."""
        data = _v1(netns="/n", cniArgs=[["A", "1"]], capabilityArgs={"mac": "m"}, result=None)
        entry = parse_entry(data, "p")
        assert ("/n", (("A", "1"),), {"mac": "m"}, None) == (
            entry.netns,
            entry.cni_args,
            dict(entry.capability_args),
            entry.result,
        )

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"{", "corrupt cache entry"),
            (b"", "corrupt cache entry"),
            (b"\xff", "corrupt cache entry"),
            (b"[]", "not a JSON object"),
            (b'"x"', "not a JSON object"),
            (_v1(kind="cniCacheV2"), "unknown cache entry kind 'cniCacheV2'"),
            (_v1(kind=None), "unknown cache entry kind"),
            (_v1(kind=""), "unknown cache entry kind"),
            (_v1(containerId=5), "field 'containerId' must be a string"),
            (_v1(containerId=_DROP), "field 'containerId' must be a string"),
            (_v1(ifName=None), "field 'ifName' must be a string"),
            (_v1(networkName=[]), "field 'networkName' must be a string"),
            (_v1(netns=1), "field 'netns' must be a string"),
            (_v1(config=_DROP), "field 'config'"),
            (_v1(config=5), "field 'config'"),
            (_v1(config="not base64!"), "field 'config' is not base64"),
            (_v1(config="YQ"), "field 'config' is not base64"),
            (_v1(cniArgs="A=1"), "cniArgs"),
            (_v1(cniArgs=[["A"]]), "cniArgs"),
            (_v1(cniArgs=[["A", 1]]), "cniArgs"),
            (_v1(cniArgs=[{"A": "1"}]), "cniArgs"),
            (_v1(capabilityArgs=[1]), "must be objects"),
            (_v1(result=[1]), "must be objects"),
            (_v1(result="x"), "must be objects"),
        ],
        ids=lambda v: v.decode(errors="replace")[:60] if isinstance(v, bytes) else str(v),
    )
    def test_corrupt(self, data: bytes, reason: str) -> None:
        """Corrupt files raise CacheError with the path, code 6."""
        with pytest.raises(CacheError) as info:
            parse_entry(data, "/var/lib/cni/results/x")
        err = info.value
        assert (True, "/var/lib/cni/results/x", True, ErrorCode.DECODING_FAILURE) == (
            reason in str(err),
            err.path,
            str(err).endswith("(/var/lib/cni/results/x)"),
            err.code,
        )


class TestFileCache:
    """FileCache: Go's path layout, modes, atomic writes."""

    def test_default_dir(self) -> None:
        """The default cache directory is /var/lib/cni."""
        assert ("/var/lib/cni", "/var/lib/cni", "/var/lib/cni/results") == (
            DEFAULT_CACHE_DIR,
            FileCache().cache_dir,
            FileCache().results_dir,
        )

    def test_kind(self) -> None:
        """The kind written is cniCacheV1."""
        assert "cniCacheV1" == CACHE_KIND

    def test_path(self, tmp_path: Path) -> None:
        """<cache>/results/<network>-<containerID>-<ifname>."""
        assert str(tmp_path / "results" / "net-c1-eth0") == FileCache(tmp_path).path(
            "net", "c1", "eth0"
        )

    @pytest.mark.parametrize(
        ("network", "container_id", "ifname"),
        [
            ("../x", "c1", "eth0"),
            ("a/b", "c1", "eth0"),
            ("", "c1", "eth0"),
            ("net", "../x", "eth0"),
            ("net", "a/b", "eth0"),
            ("net", "", "eth0"),
            ("net", "c1", "a/b"),
            ("net", "c1", ".."),
            ("net", "c1", ""),
            ("net", "c1", "a\x00b"),
        ],
    )
    def test_path_refuses_escapes(
        self, tmp_path: Path, network: str, container_id: str, ifname: str
    ) -> None:
        """Any part that could leave the cache directory is an InvalidArgumentError."""
        with pytest.raises(InvalidArgumentError):
            FileCache(tmp_path).path(network, container_id, ifname)

    def test_save_modes(self, tmp_path: Path) -> None:
        """The file is 0600 and results/ is 0700."""
        cache = FileCache(tmp_path / "cache")
        path = cache.save(_entry())
        assert (0o600, 0o700) == (
            stat.S_IMODE(os.stat(path).st_mode),
            stat.S_IMODE(os.stat(cache.results_dir).st_mode),
        )

    def test_save_leaves_no_temp_file(self, tmp_path: Path) -> None:
        """Only the entry remains in results/ after saves and overwrites."""
        cache = FileCache(tmp_path)
        cache.save(_entry())
        cache.save(_entry(netns="/n"))
        assert ["net-c1-eth0"] == os.listdir(cache.results_dir)

    def test_save_bytes(self, tmp_path: Path) -> None:
        """The file holds to_json(), compact, without a trailing newline."""
        entry = _entry(result={"cniVersion": "1.0.0"})
        path = FileCache(tmp_path).save(entry)
        assert entry.to_json().encode() == Path(path).read_bytes()

    def test_save_load_round_trip(self, tmp_path: Path) -> None:
        """load() returns what save() wrote."""
        cache = FileCache(tmp_path)
        entry = _entry(
            netns="/n", cni_args=(("A", "1"),), capability_args={"x": [1]}, result={"a": 1}
        )
        cache.save(entry)
        assert entry == cache.load("net", "c1", "eth0")

    def test_overwrite(self, tmp_path: Path) -> None:
        """A second save replaces the entry."""
        cache = FileCache(tmp_path)
        cache.save(_entry(netns="/a"))
        cache.save(_entry(netns="/b"))
        loaded = cache.load("net", "c1", "eth0")
        assert "/b" == (loaded.netns if loaded else None)

    def test_save_validates(self, tmp_path: Path) -> None:
        """save() refuses an entry whose names would escape."""
        with pytest.raises(InvalidArgumentError):
            FileCache(tmp_path).save(_entry(network="../x"))

    def test_save_failure_is_cache_error(self, tmp_path: Path) -> None:
        """A cache dir that cannot be created is a CacheError naming the offending path."""
        blocker = tmp_path / "file"
        blocker.write_text("x")
        cache = FileCache(blocker)
        with pytest.raises(CacheError, match="is a regular file, not a directory") as info:
            cache.save(_entry())
        # The offending path, not the entry's: that is what the user must fix.
        assert (str(blocker), ErrorCode.IO_FAILURE) == (
            info.value.path,
            info.value.code,
        )

    def test_save_replace_failure_cleans_up(self, tmp_path: Path) -> None:
        """If the rename fails (target is a directory), the temp file is removed."""
        cache = FileCache(tmp_path)
        os.makedirs(cache.path("net", "c1", "eth0"))
        with pytest.raises(CacheError, match="cannot write cache entry"):
            cache.save(_entry())
        assert ["net-c1-eth0"] == os.listdir(cache.results_dir)

    def test_load_missing(self, tmp_path: Path) -> None:
        """A missing entry (or missing cache dir) loads as None."""
        assert None is FileCache(tmp_path / "none").load("net", "c1", "eth0")

    def test_load_corrupt(self, tmp_path: Path) -> None:
        """A corrupt entry is a CacheError naming its path."""
        cache = FileCache(tmp_path)
        path = cache.path("net", "c1", "eth0")
        os.makedirs(cache.results_dir)
        Path(path).write_bytes(b"{")
        with pytest.raises(CacheError) as info:
            cache.load("net", "c1", "eth0")
        assert path == info.value.path

    def test_load_unreadable(self, tmp_path: Path) -> None:
        """An entry that cannot be read (a directory) is a CacheError."""
        cache = FileCache(tmp_path)
        os.makedirs(cache.path("net", "c1", "eth0"))
        with pytest.raises(CacheError, match="is a directory, not a regular file"):
            cache.load("net", "c1", "eth0")

    @pytest.mark.parametrize("path", LEGACY_FILES, ids=lambda p: p.name)
    def test_load_legacy(self, tmp_path: Path, path: Path) -> None:
        """A legacy file at the entry's path loads with legacy=True."""
        cache = FileCache(tmp_path)
        os.makedirs(cache.results_dir)
        Path(cache.path("net", "c1", "eth0")).write_bytes(path.read_bytes())
        loaded = cache.load("net", "c1", "eth0")
        assert (True, json.loads(path.read_bytes())) == (
            loaded.legacy if loaded else None,
            loaded.result if loaded else None,
        )

    def test_delete(self, tmp_path: Path) -> None:
        """delete() removes the entry (True), then reports there is none (False)."""
        cache = FileCache(tmp_path)
        cache.save(_entry())
        assert (True, False, None) == (
            cache.delete("net", "c1", "eth0"),
            cache.delete("net", "c1", "eth0"),
            cache.load("net", "c1", "eth0"),
        )

    def test_delete_failure(self, tmp_path: Path) -> None:
        """A path that cannot be unlinked (a directory) is a CacheError."""
        cache = FileCache(tmp_path)
        os.makedirs(cache.path("net", "c1", "eth0"))
        with pytest.raises(CacheError, match="is a directory, not a regular file: left alone"):
            cache.delete("net", "c1", "eth0")
        assert os.path.isdir(cache.path("net", "c1", "eth0"))

    def test_repr(self, tmp_path: Path) -> None:
        """repr names the cache dir."""
        assert f"FileCache({str(tmp_path)!r})" == repr(FileCache(tmp_path))


class TestAttachments:
    """attachments() follows GetCachedAttachments (§5.6)."""

    @pytest.fixture
    def cache(self, tmp_path: Path) -> FileCache:
        """A cache with v1 entries for two containers plus files attachments() must skip."""
        cache = FileCache(tmp_path)
        cache.save(_entry("net", "c1", "eth0"))
        cache.save(_entry("net", "c1", "eth1"))
        cache.save(_entry("other", "c1", "eth0"))
        cache.save(_entry("net", "c2", "eth0"))
        cache.save(_entry("net", "c12", "eth0"))
        results = Path(cache.results_dir)
        # legacy bare result
        (results / "legacy-c1-eth0").write_bytes(
            (DATA / "legacy" / "result-0.3.1.json").read_bytes()
        )
        # atomic-save temp file: a complete entry, but dot-prefixed
        (results / ".tmp-abc").write_bytes(_entry("tmp", "c1", "eth0").to_json().encode())
        # file name says c1, content says c9
        (results / "liar-c1-eth0").write_bytes(_entry("liar", "c9", "eth0").to_json().encode())
        # empty ifName / networkName
        (results / "noif-c1-x").write_bytes(_v1(containerId="c1", ifName="", networkName="noif"))
        (results / "nonet-c1-x").write_bytes(_v1(containerId="c1", ifName="eth0", networkName=""))
        # corrupt and unknown kinds
        (results / "corrupt-c1-eth0").write_bytes(b"{")
        (results / "kind-c1-eth0").write_bytes(_v1(kind="other"))
        # a directory
        (results / "dir-c1-eth0").mkdir()
        return cache

    @staticmethod
    def _keys(entries: list[CacheEntry]) -> list[tuple[str, str, str]]:
        return [(e.network_name, e.container_id, e.ifname) for e in entries]

    def test_by_container(self, cache: FileCache) -> None:
        """Only valid cniCacheV1 entries of that container, sorted by file name."""
        assert [
            ("net", "c1", "eth0"),
            ("net", "c1", "eth1"),
            ("other", "c1", "eth0"),
        ] == self._keys(cache.attachments("c1"))

    def test_no_prefix_confusion(self, cache: FileCache) -> None:
        """Container c1 does not match c12's files, nor the reverse."""
        assert ([("net", "c12", "eth0")], [("net", "c2", "eth0")]) == (
            self._keys(cache.attachments("c12")),
            self._keys(cache.attachments("c2")),
        )

    def test_all(self, cache: FileCache) -> None:
        """Without a container ID every valid entry is returned (liar included: no ID to check)."""
        assert [
            ("liar", "c9", "eth0"),
            ("net", "c1", "eth0"),
            ("net", "c1", "eth1"),
            ("net", "c12", "eth0"),
            ("net", "c2", "eth0"),
            ("other", "c1", "eth0"),
        ] == self._keys(cache.attachments())

    def test_empty_string_means_all(self, cache: FileCache) -> None:
        """An empty container ID means no filter, as in Go."""
        assert self._keys(cache.attachments()) == self._keys(cache.attachments(""))

    def test_name_must_have_id_inside(self, tmp_path: Path) -> None:
        """A file whose name starts or ends with -<id>- is skipped (Go: pos <= 0 or at the end)."""
        cache = FileCache(tmp_path)
        os.makedirs(cache.results_dir)
        results = Path(cache.results_dir)
        (results / "-c1-eth0").write_bytes(_entry("net", "c1", "eth0").to_json().encode())
        (results / "net-c1-").write_bytes(_entry("net", "c1", "eth0").to_json().encode())
        assert [] == cache.attachments("c1")

    def test_missing_dir(self, tmp_path: Path) -> None:
        """A missing results directory gives []."""
        assert [] == FileCache(tmp_path).attachments("c1")

    def test_unlistable_dir(self, tmp_path: Path) -> None:
        """A results path that cannot be listed is a CacheError."""
        cache = FileCache(tmp_path)
        Path(cache.results_dir).write_text("x")
        with pytest.raises(CacheError, match="is a regular file, not a directory") as info:
            cache.attachments()
        assert cache.results_dir == info.value.path

    def test_entries_carry_everything(self, tmp_path: Path) -> None:
        """Returned entries hold config, netns, args and capability args."""
        cache = FileCache(tmp_path)
        entry = _entry(
            netns="/n", cni_args=(("A", "1"),), capability_args={"mac": "m"}, result={"x": 1}
        )
        cache.save(entry)
        assert [entry] == cache.attachments("c1")


class TestFsyncDir:
    """Directory fsync after rename/unlink is best effort."""

    def test_fsync_refused_ignored(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A filesystem that refuses fsync on a directory does not fail the operation."""

        def refuse(fd: int) -> None:
            raise OSError("EINVAL")

        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        monkeypatch.setattr(os, "fsync", refuse)
        try:
            _fsync_fd(fd)  # does not raise
        finally:
            os.close(fd)


class TestCacheDirRemovedUnderneath:
    def test_save_recreates_removed_dirs(self, tmp_path: Path) -> None:
        """After the cache dir is deleted, the next save makes it again."""
        import shutil

        from cnilib.cache import CacheEntry, FileCache

        cache = FileCache(tmp_path / "c")
        entry = CacheEntry("net", "c1", "eth0", b"{}", result={"cniVersion": "1.0.0"})
        cache.save(entry)
        shutil.rmtree(tmp_path / "c")

        cache.save(entry)

        assert cache.load("net", "c1", "eth0") == entry


class TestCacheRootMadeConcurrently:
    """Two runtimes (threads or processes) making the same new cache root at once."""

    def test_a_root_made_by_someone_else_meanwhile_is_fine(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The root is missing when looked at and made by another thread right after:
        not an error (it was 'is a directory, not a directory' under load)."""
        from cnilib.cache import _fs

        root = tmp_path / "a" / "cache"
        real_stat = os.stat
        raced: list[str] = []

        def stat_then_lose_the_race(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            if str(path) == str(root) and not raced:
                raced.append(str(path))
                os.makedirs(root)  # the other thread, just after our look
                raise FileNotFoundError(2, "No such file or directory", str(path))
            return real_stat(path, *args, **kwargs)

        monkeypatch.setattr(os, "stat", stat_then_lose_the_race)
        _fs.ensure_root(str(root))
        assert raced == [str(root)]
        assert root.is_dir()

    def test_threads_make_one_root(self, tmp_path: Path) -> None:
        """Sixteen threads, one new nested root: all succeed, the root is private."""
        from concurrent.futures import ThreadPoolExecutor

        from cnilib.cache import _fs

        for attempt in range(20):
            root = str(tmp_path / f"try{attempt}" / "x" / "cache")
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(_fs.ensure_root, [root] * 16))
            assert stat.S_IMODE(os.stat(root).st_mode) == 0o700

    def test_what_is_not_a_directory_is_still_refused(self, tmp_path: Path) -> None:
        """A file and a link to nowhere where the root should be: named errors."""
        from cnilib.cache import _fs

        (tmp_path / "file").write_text("")
        with pytest.raises(CacheError, match="is a regular file, not a directory"):
            _fs.ensure_root(str(tmp_path / "file" / "cache"))
        (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
        with pytest.raises(CacheError, match="symbolic link to a missing directory"):
            _fs.ensure_root(str(tmp_path / "dangling"))
