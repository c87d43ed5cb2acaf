"""host-local's store index: what another writer (Go's host-local, another process)
does to the store between two calls of this process is seen, and where the index
could be wrong it is not used."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cnilib.errors import PluginError
from cnilib.invoke import Command
from cnilib.plugins._base import PluginRequest
from cnilib.plugins.ipam import _index
from cnilib.plugins.ipam._store import Store
from cnilib.plugins.ipam.host_local import HostLocal
from tests.unit._guards import NO_SUCH_HOST

JSON = dict[str, Any]


@pytest.fixture(autouse=True)
def _fresh_indexes() -> Iterator[None]:
    _index.forget_all()
    yield
    _index.forget_all()


def call(data_dir: Path, command: Command, cid: str, ifname: str = "eth0") -> Any:
    conf: JSON = {
        "cniVersion": "1.0.0",
        "name": "net",
        "type": "bridge",
        "ipam": {
            "type": "host-local",
            "dataDir": str(data_dir),
            "ranges": [[{"subnet": "198.18.7.0/29"}]],
        },
    }
    req = PluginRequest(
        command=command,
        container_id=cid,
        netns="/x",
        ifname=ifname,
        args=(),
        path=(),
        config=conf,
        stdin=json.dumps(conf).encode(),
        host_netns=NO_SUCH_HOST,
    )
    plugin = HostLocal()
    if command is Command.ADD:
        return [str(ip.address) for ip in plugin.add(req).ips]
    return plugin.delete(req)


def write_as_go(store: Path, ip: str, cid: str, ifname: str = "eth0") -> None:
    """An address file as Go's host-local writes it, behind this process's back."""
    (store / ip).write_bytes(f"{cid}\r\n{ifname}".encode())


def indexed(store: Path) -> bool:
    return str(store) in _index._indexes


class TestChangesByOthers:
    def test_an_allocation_by_another_writer_is_seen_by_the_duplicate_check(
        self, tmp_path: Path
    ) -> None:
        """c2's address, written by another host-local after this process indexed the
        store, makes a second ADD of c2 the duplicate Go refuses."""
        assert ["198.18.7.2/29"] == call(tmp_path, Command.ADD, "c1")
        store = tmp_path / "net"
        assert indexed(store)
        write_as_go(store, "198.18.7.5", "c2")

        with pytest.raises(PluginError, match=r"198\.18\.7\.5 has been allocated to c2"):
            call(tmp_path, Command.ADD, "c2")

    def test_a_file_replaced_under_the_same_name_is_read_again(self, tmp_path: Path) -> None:
        """An address released and taken by another container between two calls (the
        same file name, new content, perhaps the same inode) belongs to the new one."""
        call(tmp_path, Command.ADD, "c1")
        store = tmp_path / "net"
        (store / "198.18.7.2").unlink()
        write_as_go(store, "198.18.7.2", "c9")

        call(tmp_path, Command.ADD, "c1")  # c1 holds nothing now: no duplicate
        with pytest.raises(PluginError, match=r"198\.18\.7\.2 has been allocated to c9"):
            call(tmp_path, Command.ADD, "c9")

    def test_a_release_by_another_writer_is_seen(self, tmp_path: Path) -> None:
        """c1's file deleted by someone else: c1 may be added again."""
        call(tmp_path, Command.ADD, "c1")
        (tmp_path / "net" / "198.18.7.2").unlink()

        assert ["198.18.7.3/29"] == call(tmp_path, Command.ADD, "c1")

    def test_del_releases_what_another_writer_allocated(self, tmp_path: Path) -> None:
        """DEL finds the container's files by their content, whoever wrote them."""
        call(tmp_path, Command.ADD, "c1")
        store = tmp_path / "net"
        write_as_go(store, "198.18.7.6", "c2")

        call(tmp_path, Command.DEL, "c2")

        assert not (store / "198.18.7.6").exists()
        assert (store / "198.18.7.2").exists()

    def test_content_written_after_the_file_was_created_is_seen(self, tmp_path: Path) -> None:
        """Go creates the file, then writes it: an index that read it empty in between
        reads it again once it is written."""
        call(tmp_path, Command.ADD, "c1")
        store = tmp_path / "net"
        path = store / "198.18.7.4"
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            with Store("net", str(tmp_path)) as opened, opened.locked():
                assert [] == opened.get_by_id("c3", "eth0")  # read while still empty
            os.write(fd, b"c3\r\neth0")
        finally:
            os.close(fd)

        with Store("net", str(tmp_path)) as opened, opened.locked():
            assert ["198.18.7.4"] == [str(ip) for ip in opened.get_by_id("c3", "eth0")]


class TestWhereTheIndexIsNotUsed:
    def test_without_the_lock_every_file_is_read(self, tmp_path: Path) -> None:
        call(tmp_path, Command.ADD, "c1")
        _index.forget_all()
        with Store("net", str(tmp_path)) as opened:
            assert ["198.18.7.2"] == [str(ip) for ip in opened.get_by_id("c1", "eth0")]
        assert not indexed(tmp_path / "net")

    def test_a_subdirectory_is_walked_as_go_walks_it(self, tmp_path: Path) -> None:
        """Go's walk descends into a subdirectory: an index of the top level alone would
        miss the file there, so there is none, and the file is found."""
        call(tmp_path, Command.ADD, "c1")
        sub = tmp_path / "net" / "old"
        sub.mkdir()
        write_as_go(sub, "198.18.7.6", "c2")

        with pytest.raises(PluginError, match=r"198\.18\.7\.6 has been allocated to c2"):
            call(tmp_path, Command.ADD, "c2")
        assert not indexed(tmp_path / "net")

    def test_a_symbolic_link_is_read_through_each_time(self, tmp_path: Path) -> None:
        """A link's target can change without an event on the store: no index."""
        call(tmp_path, Command.ADD, "c1")
        target = tmp_path / "elsewhere"
        target.write_bytes(b"c4\r\neth0")
        (tmp_path / "net" / "198.18.7.6").symlink_to(target)

        with pytest.raises(PluginError, match="has been allocated to c4"):
            call(tmp_path, Command.ADD, "c4")
        assert not indexed(tmp_path / "net")
        target.write_bytes(b"c5\r\neth0")
        with pytest.raises(PluginError, match="has been allocated to c5"):
            call(tmp_path, Command.ADD, "c5")

    def test_a_store_deleted_and_made_again_is_indexed_afresh(self, tmp_path: Path) -> None:
        call(tmp_path, Command.ADD, "c1")
        store = tmp_path / "net"
        for child in store.iterdir():
            child.unlink()
        store.rmdir()
        store.mkdir()
        write_as_go(store, "198.18.7.3", "c2")

        with pytest.raises(PluginError, match=r"198\.18\.7\.3 has been allocated to c2"):
            call(tmp_path, Command.ADD, "c2")

    def test_least_recently_used_stores_are_dropped(self, tmp_path: Path) -> None:
        """One inotify instance per store, at most MAX_INDEXES of them."""
        for n in range(_index.MAX_INDEXES + 3):
            call(tmp_path / f"d{n}", Command.ADD, "c1")
        assert _index.MAX_INDEXES == len(_index._indexes)
        assert not indexed(tmp_path / "d0" / "net")
        assert indexed(tmp_path / f"d{_index.MAX_INDEXES + 2}" / "net")

    def test_a_forked_child_starts_without_indexes(self, tmp_path: Path) -> None:
        """The parent's inotify instance is not shared with a child: each would read
        events the other then misses."""
        call(tmp_path, Command.ADD, "c1")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.write(write, str(len(_index._indexes)).encode())
            os._exit(0)
        os.close(write)
        try:
            assert b"0" == os.read(read, 16)
        finally:
            os.close(read)
            os.waitpid(pid, 0)
        assert indexed(tmp_path / "net")

    def test_a_store_whose_path_now_names_another_directory_is_indexed_afresh(
        self, tmp_path: Path
    ) -> None:
        """The data directory moved away and another made at its path (no event reaches
        the old store's watch): DEL of c1 must not go by the old store's files and
        remove c2's file that has the same name in the new one."""
        call(tmp_path / "d", Command.ADD, "c1")
        call(tmp_path / "d", Command.ADD, "c3")  # the index has read c1's file now
        (tmp_path / "d").rename(tmp_path / "d.old")
        store = tmp_path / "d" / "net"
        store.mkdir(parents=True)
        write_as_go(store, "198.18.7.2", "c2")

        call(tmp_path / "d", Command.DEL, "c1")

        assert (store / "198.18.7.2").exists()
        assert (tmp_path / "d.old" / "net" / "198.18.7.2").exists()
        with pytest.raises(PluginError, match=r"198\.18\.7\.2 has been allocated to c2"):
            call(tmp_path / "d", Command.ADD, "c2")

    def test_a_fork_while_another_thread_holds_the_indexes_lock_does_not_hang(
        self, tmp_path: Path
    ) -> None:
        """The child forgets the parent's indexes without waiting for a lock that a
        thread it does not have held at the fork."""
        import threading
        import time

        call(tmp_path, Command.ADD, "c1")
        with _index._indexes_lock:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                os._exit(0 if not _index._indexes else 2)
        deadline = time.monotonic() + 10
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done or time.monotonic() > deadline:
                break
            threading.Event().wait(0.01)
        if not done:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        assert done
        assert os.waitstatus_to_exitcode(status) == 0
