"""The lease daemon's state directory: one JSON record per lease."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cnilib.plugins.ipam.dhcp._conf import lease_key
from cnilib.plugins.ipam.dhcp._state import RECORD_VERSION, LeaseRecords

KEYS = [
    "cid/dhcpnet/eth0",
    "c1/net/with/slashes/eth0",
    "ctr/réseau-ü/eth0",
    "ctr/网络/eth0",
    "a/../../etc/passwd",
    "a/../..",
    "a%2Fb/net/eth0",
    "a/b/c d\n",
]


def record(n: int = 0) -> dict[str, Any]:
    return {"containerID": f"c{n}", "network": "net", "lease": {"state": "bound", "n": n}}


@pytest.mark.parametrize("key", [*KEYS, "..", "../../etc/passwd", "."])
def test_a_key_is_a_file_inside_the_directory(tmp_path: Path, key: str) -> None:
    records = LeaseRecords(tmp_path / "state")
    path = records.path(key)
    assert path.parent == tmp_path / "state"
    assert "/" not in path.name
    assert path.name.endswith(".json")
    assert path.resolve().parent == (tmp_path / "state").resolve()


def test_keys_never_collide() -> None:
    records = LeaseRecords("/x")
    more = ["a/b", "a%2Fb", "a_b", "a-b", "A/b", "..", "."]
    names = {records.path(key).name for key in [*KEYS, *more]}
    assert len(names) == len(KEYS) + len(more)


@pytest.mark.parametrize("key", KEYS)
def test_round_trip(tmp_path: Path, key: str) -> None:
    records = LeaseRecords(tmp_path / "state")
    records.write(key, record(1))
    [loaded] = records.load()
    assert loaded == {"version": RECORD_VERSION, "key": key, **record(1)}
    assert os.listdir(tmp_path / "state") == [records.path(key).name]
    assert list(tmp_path.iterdir()) == [tmp_path / "state"]  # nothing escaped


def test_several_records_and_replace(tmp_path: Path) -> None:
    records = LeaseRecords(tmp_path)
    for n, key in enumerate(KEYS[:3]):
        records.write(key, record(n))
    records.write(KEYS[0], record(9))
    loaded = {doc["key"]: doc["containerID"] for doc in records.load()}
    assert loaded == {KEYS[0]: "c9", KEYS[1]: "c1", KEYS[2]: "c2"}
    assert sorted(os.listdir(tmp_path)) == sorted(records.path(k).name for k in KEYS[:3])


def test_files_are_private(tmp_path: Path) -> None:
    records = LeaseRecords(tmp_path / "new" / "state")
    records.write(KEYS[0], record())
    mode = stat.S_IMODE(records.path(KEYS[0]).stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE((tmp_path / "new" / "state").stat().st_mode) == 0o700


def test_drop(tmp_path: Path) -> None:
    records = LeaseRecords(tmp_path)
    records.write(KEYS[0], record())
    records.write(KEYS[1], record())
    records.drop(KEYS[0])
    records.drop(KEYS[0])  # again: fine
    records.drop("never/written/eth9")
    assert [doc["key"] for doc in records.load()] == [KEYS[1]]


def test_a_missing_directory_has_no_records(tmp_path: Path) -> None:
    assert list(LeaseRecords(tmp_path / "nope").load()) == []
    assert not (tmp_path / "nope").exists()


def test_foreign_files_are_ignored_and_kept(tmp_path: Path) -> None:
    records = LeaseRecords(tmp_path)
    records.write(KEYS[0], record())
    foreign = {
        "README": "hello",
        "notes.txt": "{}",
        ".hidden.json": "garbage",  # a temporary file of an interrupted write
        f".{records.path(KEYS[0]).name}.abc123": "partial",
        "old.json.bad": "x",
    }
    for name, text in foreign.items():
        (tmp_path / name).write_text(text)
    assert [doc["key"] for doc in records.load()] == [KEYS[0]]
    for name, text in foreign.items():
        assert (tmp_path / name).read_text() == text


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "cannot be read"),
        (b"\xff\xfe", "cannot be read"),
        ("[1, 2]", "is not a version 1 lease record"),
        ('{"version": 2, "key": "a"}', "is not a version 1 lease record"),
        ('{"key": "a"}', "is not a version 1 lease record"),
        ('{"version": 1, "key": 7}', "is not a version 1 lease record"),
        ('{"version": 1, "key": "b"}', "is not a version 1 lease record"),  # not its file
    ],
)
def test_bad_files_are_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str | bytes, why: str
) -> None:
    records = LeaseRecords(tmp_path)
    records.write(KEYS[0], record())
    bad = records.path("a")
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content)
    with caplog.at_level(logging.ERROR, "cnilib.dhcp"):
        assert [doc["key"] for doc in records.load()] == [KEYS[0]]
    assert not bad.exists()
    aside = bad.with_name(bad.name + ".bad")
    assert aside.read_bytes() == (content if isinstance(content, bytes) else content.encode())
    assert why in caplog.text
    assert str(bad) in caplog.text
    # Set aside once: the next start neither loads nor renames it again.
    assert [doc["key"] for doc in records.load()] == [KEYS[0]]
    assert aside.exists()


def test_an_unreadable_entry_is_set_aside(tmp_path: Path) -> None:
    records = LeaseRecords(tmp_path)
    records.path("dir").mkdir()
    assert list(records.load()) == []
    assert (tmp_path / (records.path("dir").name + ".bad")).is_dir()


def test_a_written_record_is_json_with_its_key(tmp_path: Path) -> None:
    records = LeaseRecords(tmp_path)
    records.write(KEYS[1], {"lease": {"x": 1}})
    document = json.loads(records.path(KEYS[1]).read_text())
    assert document == {"version": RECORD_VERSION, "key": KEYS[1], "lease": {"x": 1}}


def test_a_long_key_is_recorded(tmp_path: Path) -> None:
    key = lease_key("0123456789abcdef" * 4, "网络" * 40, "eth0")
    assert len(key.encode()) == 254
    records = LeaseRecords(tmp_path)
    records.write(key, record())
    assert [doc["key"] for doc in records.load()] == [key]


@pytest.mark.parametrize("key", ["../../etc/passwd", ".c/net/eth0"])
def test_a_key_starting_with_a_dot_is_resumed(tmp_path: Path, key: str) -> None:
    records = LeaseRecords(tmp_path)
    records.write(key, record())
    assert [doc["key"] for doc in records.load()] == [key]
