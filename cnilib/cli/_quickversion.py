"""``cnilib version TYPE`` of a binary plugin, without the executor's imports.

The executor (:class:`cnilib.invoke.SubprocessExecutor`) brings attrs and
logging along, which cost more than the rest of the command. This module asks
a binary plugin VERSION as the executor does (the same search of the plugin
path, environment, stdin, session and deadline) and reads the answer as
``decode_version_info`` does, for the case that ends well: the plugin exits 0
with a version answer. Anything else (no such plugin, an exit status, an
answer that cannot be read) returns ``None`` and the command asks again
through the executor, which reports it exactly as ever: VERSION has no side
effects, so asking twice changes nothing but the time. A deadline that passes
is reported here, with the executor's own error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import time
from collections.abc import Sequence

from cnilib._json import JSONSyntaxError, loads

__all__ = ["quick_version"]

# The executor's values (cnilib.invoke._invocation, _subprocess and _pipes),
# repeated here because importing them loads the executor.
_VERSION_STDIN = b'{"cniVersion":"1.1.0"}'
_NO_DEADLINE_BEYOND = 10 * 365 * 86400.0
_STDOUT_LIMIT = 64 << 20
_REAP_WAIT = 1.0


def _find(plugin_type: str, path: Sequence[str]) -> str | None:
    """``find_in_path`` where it finds the plugin; ``None`` where it would raise."""
    if not plugin_type or os.sep in plugin_type or "\0" in plugin_type:
        return None
    if os.altsep and os.altsep in plugin_type:
        return None
    for directory in path:
        candidate = os.path.join(directory, plugin_type)
        try:
            if stat.S_ISREG(os.stat(candidate).st_mode):
                return candidate
        except (OSError, ValueError):
            continue
    return None


def _environ() -> dict[str, str]:
    """``Invocation.version(...).environ()``: the dummies libcni sends with VERSION."""
    env = dict(os.environ)
    env.update(
        CNI_COMMAND="VERSION",
        CNI_CONTAINERID="",
        CNI_NETNS="dummy",
        CNI_IFNAME="dummy",
        CNI_ARGS="",
        CNI_PATH="dummy",
    )
    return env


def _answer(stdout: bytes) -> dict[str, object] | None:
    """What ``decode_version_info`` returns for ``stdout``, as the command prints
    it; ``None`` where it would raise."""
    try:
        obj = loads(stdout)
    except JSONSyntaxError:
        return None
    if not isinstance(obj, dict):
        return None
    cni_version = obj.get("cniVersion")
    if not isinstance(cni_version, str) or not cni_version:
        return None
    supported = obj.get("supportedVersions")
    if not supported:
        if cni_version == "0.2.0":
            return {"cniVersion": cni_version, "supportedVersions": ["0.1.0", "0.2.0"]}
        return None
    if not isinstance(supported, list) or not all(isinstance(v, str) for v in supported):
        return None
    return {"cniVersion": cni_version, "supportedVersions": list(supported)}


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def quick_version(
    plugin_type: str, path: Sequence[str], timeout: float | None
) -> dict[str, object] | None:
    """The VERSION answer of binary ``plugin_type`` found on ``path``, or ``None``
    when the executor must be asked (see the module's docstring). ``timeout``
    is the executor's deadline in seconds (``None``: none)."""
    program = _find(plugin_type, path)
    if program is None:
        return None
    deadline = None if timeout is None or timeout > _NO_DEADLINE_BEYOND else timeout
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [program],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_environ(),
            start_new_session=True,
        )
    except (OSError, ValueError):
        return None
    try:
        stdout, _ = proc.communicate(_VERSION_STDIN, timeout=deadline)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        stderr = b""
        with contextlib.suppress(subprocess.TimeoutExpired):
            stderr = proc.communicate(timeout=_REAP_WAIT)[1] or b""
        from cnilib.invoke._invocation import Invocation
        from cnilib.invoke._subprocess import timeout_error

        raise timeout_error(
            Invocation.version(plugin_type, path), started, deadline, stderr
        ) from None
    except BaseException:
        _kill_group(proc.pid)
        raise
    if proc.returncode != 0 or len(stdout) > _STDOUT_LIMIT:
        return None
    return _answer(stdout)
