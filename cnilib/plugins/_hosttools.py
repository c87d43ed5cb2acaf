"""Finding and running the host's packet-filter tools (iptables, nft) for the plugins.

A tool is run as a child process of a namespace worker
(:func:`cnilib.netlink.run_in_netns`): the child inherits that thread's
network namespace, so rules land there and nowhere else. Running a tool on
any other thread is refused (:class:`cnilib.netlink.NotOnWorkerError`),
which keeps a plugin from ever touching the caller's own namespace by
mistake.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from cnilib.errors import ErrorCode, PluginError
from cnilib.netlink import netns_label

__all__ = ["find_tool", "run_tool", "tool_exists", "tool_failure"]

# Plugins may run with a minimal PATH (a runtime's CNI environment); the
# tools live in sbin on every distribution we know.
_FALLBACK_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def _locate(name: str) -> str | None:
    found = shutil.which(name)
    if found is not None:
        return found
    for directory in _FALLBACK_DIRS:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def tool_exists(name: str) -> bool:
    """Whether ``name`` is on PATH or in one of the usual sbin/bin directories."""
    return _locate(name) is not None


def find_tool(name: str, missing: str) -> str:
    """The path of ``name``; else a code-999 error ``<missing>: exec: "<name>": ...``."""
    found = _locate(name)
    if found is None:
        raise PluginError(
            f'{missing}: exec: "{name}": executable file not found in $PATH',
            code=ErrorCode.INTERNAL,
        )
    return found


def run_tool(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the current worker's namespace; its outcome, whatever the exit status."""
    netns_label()  # raises NotOnWorkerError: never run a filter tool in the caller's namespace
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)


def tool_failure(argv: list[str], proc: subprocess.CompletedProcess[str]) -> PluginError:
    """The error for a tool that exited non-zero, with Go's ``running [...]`` shape."""
    return PluginError(
        f"running [{' '.join(argv)}]: exit status {proc.returncode}: {proc.stderr.strip()}",
        code=ErrorCode.INTERNAL,
    )
