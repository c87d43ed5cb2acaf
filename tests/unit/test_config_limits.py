"""Limits on what the configuration loaders read: file size, plugin count, file kind.

Go libcni has none of these; cnilib refuses early, with a ConfigError naming
the file, what a runtime should never have to parse.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest

import cnilib.config as config
from cnilib.config import (
    conf_from_bytes,
    conf_from_file,
    conflist_from_bytes,
    conflist_from_conf,
    conflist_from_file,
    load_conflist,
    scan_conf_dir,
)
from cnilib.errors import ConfigError, ErrorCode

SOURCE = "/etc/cni/net.d/10-big.conflist"


def _list(name: str, plugins: int) -> dict[str, object]:
    return {"cniVersion": "1.0.0", "name": name, "plugins": [{"type": "x"}] * plugins}


def _padded(doc: object, size: int) -> bytes:
    """``doc`` as JSON, padded with trailing spaces to exactly ``size`` bytes."""
    data = json.dumps(doc).encode()
    assert len(data) <= size
    return data + b" " * (size - len(data))


@contextmanager
def no_hang(seconds: float = 5.0) -> Iterator[None]:
    """Fail the test (instead of hanging the run) if the block blocks for ``seconds``."""

    def expire(signum: int, frame: FrameType | None) -> None:
        pytest.fail(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class TestSizeLimit:
    """Files and byte strings over MAX_CONFIG_BYTES are refused before they are parsed."""

    def test_limit_is_generous(self) -> None:
        """The documented limit: 4 MiB."""
        assert 4 * 1024 * 1024 == config.MAX_CONFIG_BYTES

    def test_oversize_file_rejected_by_size(self, tmp_path: Path) -> None:
        """A 50 MiB file is refused for its size (from fstat), naming the file."""
        path = tmp_path / "10-big.conflist"
        with path.open("wb") as handle:
            handle.truncate(50 * 1024 * 1024)

        with pytest.raises(ConfigError) as info:
            conflist_from_file(path)

        err = info.value
        assert (str(path), ErrorCode.INVALID_NETWORK_CONFIG) == (err.path, err.code)
        assert (
            f"{path}: file is 52428800 bytes, more than the limit of "
            f"{config.MAX_CONFIG_BYTES} bytes" == str(err)
        )

    def test_file_one_byte_over_rejected(self, tmp_path: Path) -> None:
        """A valid conflist one byte over the limit is refused, by file and by bytes."""
        data = _padded(_list("net", 1), config.MAX_CONFIG_BYTES + 1)
        path = tmp_path / "10-big.conflist"
        path.write_bytes(data)

        with pytest.raises(ConfigError, match="more than the limit") as by_file:
            conflist_from_file(path)
        with pytest.raises(ConfigError, match="more than the limit") as by_bytes:
            conflist_from_bytes(data, source=SOURCE)

        assert (str(path), SOURCE) == (by_file.value.path, by_bytes.value.path)

    def test_file_at_the_limit_accepted(self, tmp_path: Path) -> None:
        """A file of exactly MAX_CONFIG_BYTES bytes loads."""
        data = _padded(_list("net", 1), config.MAX_CONFIG_BYTES)
        path = tmp_path / "10-big.conflist"
        path.write_bytes(data)

        assert ("net", "net") == (
            conflist_from_file(path).name,
            conflist_from_bytes(data).name,
        )

    def test_single_conf_over_limit_rejected(self, tmp_path: Path) -> None:
        """conf_from_bytes and conf_from_file apply the same limit."""
        data = _padded({"type": "x", "name": "n"}, config.MAX_CONFIG_BYTES + 1)
        path = tmp_path / "10-big.conf"
        path.write_bytes(data)

        with pytest.raises(ConfigError, match="more than the limit") as by_bytes:
            conf_from_bytes(data, source=str(path))
        with pytest.raises(ConfigError, match="more than the limit") as by_file:
            conf_from_file(path)

        assert (str(path), str(path)) == (by_bytes.value.path, by_file.value.path)

    def test_upconverted_conf_is_not_limited_twice(self) -> None:
        """A .conf within the limit upconverts even when Go's escaping makes the list bigger."""
        data = _padded({"type": "x", "pad": "<" * (config.MAX_CONFIG_BYTES // 2)}, 2**21 + 64)
        conf = conf_from_bytes(data)

        assert ["x"] == [p.type for p in conflist_from_conf(conf).plugins]

    def test_oversize_file_does_not_hide_others(self, tmp_path: Path) -> None:
        """In a conf dir scan the oversize file is a problem and the others still load."""
        big = tmp_path / "05-big.conflist"
        with big.open("wb") as handle:
            handle.truncate(config.MAX_CONFIG_BYTES + 1)
        (tmp_path / "10-good.conflist").write_text(json.dumps(_list("good", 1)))

        scanned = scan_conf_dir(tmp_path)

        assert (["good"], [str(big)]) == (
            [n.name for n in scanned.networks],
            [p.path for p in scanned.problems],
        )
        assert "good" == load_conflist(tmp_path, "good").name


class TestPluginLimit:
    """A list with more than MAX_PLUGINS plugins is refused right after decoding."""

    def test_limit(self) -> None:
        """The documented limit: 1024 plugins."""
        assert 1024 == config.MAX_PLUGINS

    def test_one_over_rejected(self) -> None:
        """MAX_PLUGINS + 1 inline plugins: a ConfigError at $.plugins, naming the file."""
        data = json.dumps(_list("net", config.MAX_PLUGINS + 1)).encode()

        with pytest.raises(ConfigError) as info:
            conflist_from_bytes(data, source=SOURCE)

        err = info.value
        assert (SOURCE, "$.plugins", ErrorCode.INVALID_NETWORK_CONFIG) == (
            err.path,
            err.field,
            err.code,
        )
        assert (
            f"{SOURCE}: error parsing configuration list: 1025 plugins, more than the limit "
            f"of {config.MAX_PLUGINS} (at $.plugins)" == str(err)
        )

    def test_exactly_limit_accepted(self) -> None:
        """MAX_PLUGINS plugins load."""
        data = json.dumps(_list("net", config.MAX_PLUGINS)).encode()

        assert config.MAX_PLUGINS == len(conflist_from_bytes(data).plugins)

    def test_checked_before_any_plugin(self) -> None:
        """The count is checked before the plugins themselves (a bad first one is not reached)."""
        doc = _list("net", config.MAX_PLUGINS + 1)
        doc["plugins"] = [{"type": ""}, *[{"type": "x"}] * config.MAX_PLUGINS]

        with pytest.raises(ConfigError, match="more than the limit") as info:
            conflist_from_bytes(json.dumps(doc).encode())

        assert "$.plugins" == info.value.field

    def test_subdirectory_plugins_count(self, tmp_path: Path) -> None:
        """Inline plus plugin-subdirectory plugins may not exceed the limit either."""
        path = tmp_path / "10-net.conflist"
        path.write_text(json.dumps(_list("net", config.MAX_PLUGINS)))
        (tmp_path / "net").mkdir()
        (tmp_path / "net" / "a.conf").write_text(json.dumps({"type": "extra"}))

        with pytest.raises(ConfigError, match="more than the limit") as info:
            conflist_from_file(path)

        assert (str(path), "$.plugins") == (info.value.path, info.value.field)


class TestNonRegularFiles:
    """FIFOs and devices are refused without blocking."""

    def test_fifo_in_conf_dir_does_not_hang(self, tmp_path: Path) -> None:
        """A FIFO named like a config is a problem of the scan; the good file still loads."""
        fifo = tmp_path / "05-fifo.conflist"
        os.mkfifo(fifo)
        (tmp_path / "10-good.conflist").write_text(json.dumps(_list("good", 1)))

        with no_hang():
            scanned = scan_conf_dir(tmp_path)
            loaded = load_conflist(tmp_path, "good")

        assert (["good"], [str(fifo)], "good") == (
            [n.name for n in scanned.networks],
            [p.path for p in scanned.problems],
            loaded.name,
        )
        assert f"{fifo}: error reading {fifo}: not a regular file" == str(scanned.problems[0])

    def test_fifo_file_rejected(self, tmp_path: Path) -> None:
        """conflist_from_file on a FIFO (or a symlink to one) raises ConfigError at once."""
        fifo = tmp_path / "fifo.conflist"
        os.mkfifo(fifo)
        link = tmp_path / "link.conflist"
        link.symlink_to(fifo)

        with no_hang(), pytest.raises(ConfigError, match="not a regular file") as direct:
            conflist_from_file(fifo)
        with no_hang(), pytest.raises(ConfigError, match="not a regular file") as linked:
            conflist_from_file(link)

        assert (str(fifo), str(link)) == (direct.value.path, linked.value.path)

    def test_device_rejected(self) -> None:
        """A character device is not a configuration file."""
        with no_hang(), pytest.raises(ConfigError) as info:
            conf_from_file("/dev/null")

        assert "/dev/null: error reading /dev/null: not a regular file" == str(info.value)

    def test_swapped_for_fifo_after_stat(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A path that passed the first stat but is a FIFO when opened is still refused."""
        fifo = tmp_path / "fifo.conflist"
        os.mkfifo(fifo)
        regular = os.stat(__file__)
        monkeypatch.setattr(os, "stat", lambda path: regular)

        with no_hang(), pytest.raises(ConfigError, match="not a regular file"):
            conflist_from_file(fifo)


class TestGrowingFile:
    def test_file_grown_after_fstat_is_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Reading stops one byte past the limit, whatever fstat said before."""
        path = tmp_path / "10-big.conflist"
        path.write_bytes(_padded(_list("net", 1), config.MAX_CONFIG_BYTES + 10))
        real_fstat = os.fstat

        def small_fstat(fd: int) -> os.stat_result:
            info = real_fstat(fd)
            return os.stat_result((*info[:6], 100, *info[7:10]))

        monkeypatch.setattr(os, "fstat", small_fstat)

        with pytest.raises(ConfigError) as info:
            conflist_from_file(path)

        assert f"{path}: file is more than the limit of {config.MAX_CONFIG_BYTES} bytes" == str(
            info.value
        )
