"""``python -m cnilib ... | head``: a reader that stops reading early.

The rest of the output is discarded, with no traceback, and the exit status
is the command's own (the operation's outcome), not a broken pipe's. No
namespace is needed: ``list``, ``validate`` and ``--version`` run no plugin
that touches the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def many_networks(tmp_path: Path) -> Path:
    """A conf dir whose ``list --json`` is far larger than a pipe holds (64 KiB)."""
    directory = tmp_path / "net.d"
    directory.mkdir()
    for i in range(1500):
        doc = {"cniVersion": "1.0.0", "name": f"net{i}", "plugins": [{"type": "loopback"}]}
        (directory / f"{i:05}-net{i}.conflist").write_text(json.dumps(doc))
    return directory


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "CNILIB_"))}


def _cli(*argv: str, stdout: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cnilib", *argv],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=_env(),
    )


def test_reader_leaves_after_one_byte(many_networks: Path) -> None:
    """The pipe fills, the reader reads one byte and closes: the rest of the
    writes fail with EPIPE, whatever the timing, and the status stays 0."""
    proc = _cli("--conf-dir", str(many_networks), "list", "--json", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert b"[" == proc.stdout.read(1)
    proc.stdout.close()

    stderr = proc.stderr.read()
    proc.stderr.close()

    assert 0 == proc.wait(timeout=120)
    assert b"" == stderr


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["--version"], 0),  # argparse prints, then exits
        (["validate", "good"], 0),  # one short line, written at exit
        (["--json", "validate", "missing"], 1),  # an error object: the error's status
    ],
)
def test_reader_gone_before_any_write(tmp_path: Path, argv: list[str], status: int) -> None:
    """stdout's read end is closed before the CLI starts: even output small
    enough to be buffered until exit is discarded quietly."""
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    doc = {"cniVersion": "1.0.0", "name": "good", "plugins": [{"type": "loopback"}]}
    (conf_dir / "10-good.conflist").write_text(json.dumps(doc))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        args = ["--conf-dir", str(conf_dir), "--plugins", "in-process", *argv]
        proc = _cli(*args, stdout=write_end)
    finally:
        os.close(write_end)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    proc.stderr.close()

    assert status == proc.wait(timeout=120)
    assert b"" == stderr
