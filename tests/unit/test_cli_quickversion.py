"""``cnilib version``'s quick path answers as the executor does, or leaves it to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnilib.cli._quickversion import quick_version
from cnilib.errors import CNIError, PluginTimeoutError
from cnilib.invoke import SubprocessExecutor


def _plugin(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\ncat >/dev/null\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    _plugin(
        tmp_path, "good", """echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'"""
    )
    _plugin(tmp_path, "old", """echo '{"cniVersion":"0.2.0"}'""")
    # Its answer carries the CNI_* environment it was given.
    _plugin(
        tmp_path,
        "env",
        'printf \'{"cniVersion":"1.1.0","supportedVersions":["%s","%s","%s","%s","%s","%s"]}\' '
        '"$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH"',
    )
    _plugin(tmp_path, "failing", """echo '{"code":7,"msg":"nope"}'; exit 1""")
    _plugin(
        tmp_path,
        "prehistoric",
        """echo '{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}'; exit 1""",
    )
    _plugin(tmp_path, "garbled", "echo 'not json'")
    _plugin(tmp_path, "nolist", """echo '{"cniVersion":"1.0.0"}'""")
    _plugin(tmp_path, "slow", "sleep 5")
    return tmp_path


def _executor_answer(name: str, path: list[str]) -> dict[str, object]:
    info = SubprocessExecutor().version_info(name, path)
    return {"cniVersion": info.cni_version, "supportedVersions": list(info.supported_versions)}


@pytest.mark.parametrize("name", ["good", "old", "env"])
def test_an_answer_is_the_executors(plugins: Path, name: str) -> None:
    path = [str(plugins / "missing"), str(plugins)]
    assert quick_version(name, path, 30.0) == _executor_answer(name, path)


@pytest.mark.parametrize("name", ["failing", "prehistoric", "garbled", "nolist"])
def test_anything_but_an_answer_is_left_to_the_executor(plugins: Path, name: str) -> None:
    assert quick_version(name, [str(plugins)], 30.0) is None


@pytest.mark.parametrize(
    ("name", "path"),
    [("absent", ["."]), ("good", []), ("", ["."]), ("a/good", ["."]), ("go\0od", ["."])],
)
def test_a_plugin_the_executor_would_not_find_is_left_to_it(
    plugins: Path, name: str, path: list[str]
) -> None:
    path = [str(plugins / p) for p in path]
    assert quick_version(name, path, 30.0) is None
    with pytest.raises(CNIError):
        SubprocessExecutor().version_info(name, path)


def test_a_deadline_is_the_executors_error(plugins: Path) -> None:
    with pytest.raises(PluginTimeoutError) as quick:
        quick_version("slow", [str(plugins)], 0.2)
    with pytest.raises(PluginTimeoutError) as slow:
        SubprocessExecutor(timeout=0.2).version_info("slow", [str(plugins)])
    prefix = 'plugin "slow" (VERSION) timed out after '
    suffix = "s (deadline 0.2s); its process group was killed"
    for error in (quick.value, slow.value):
        assert str(error).startswith(prefix)
        assert str(error).endswith(suffix)
