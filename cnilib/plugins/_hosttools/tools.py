"""Finding and running the host's packet-filter tools (iptables, nft) for the plugins.

A tool is run as a child process of a namespace job
(:func:`cnilib.netlink.run_in_netns`): the child inherits the namespace the
job's thread is in, so rules land there and nowhere else. Running a tool
outside a job is refused (:class:`cnilib.netlink.NotOnWorkerError`), which
keeps a plugin from ever touching the caller's own namespace by mistake.

Plugins run as root, so the tool that runs must be the system's:

- it is looked up only in the *absolute* entries of ``PATH``, then in the
  fixed sbin/bin directories. An empty entry (``PATH=/usr/bin::/usr/sbin``,
  which means the working directory) or a relative one is skipped, where
  ``shutil.which`` would have run an ``iptables`` lying in whatever directory
  the runtime was started from (Go refuses the same, ``exec.ErrDot``);
- it runs with a minimal environment: ``PATH`` set to the fixed directories
  and ``LC_ALL=C`` (its messages are matched in English), nothing inherited;
- it runs for at most :data:`TOOL_TIMEOUT` seconds, then is killed and the
  call fails with a code-999 error naming it (``iptables -w`` waits for the
  xtables lock without end).
"""

from __future__ import annotations

import os
import stat
import subprocess

from cnilib.errors import ErrorCode, PluginError
from cnilib.netlink import netns_label

__all__ = ["TOOL_TIMEOUT", "find_tool", "run_tool", "tool_exists", "tool_failure"]

# Plugins may run with a minimal PATH (a runtime's CNI environment); the
# tools live in sbin on every distribution we know.
_FALLBACK_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")

TOOL_TIMEOUT = 30.0
"""Seconds one run of a tool may take before it is killed (far above the
milliseconds an iptables or nft call takes, below the 60 s plugin deadline)."""

_TOOL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
"""The whole environment a tool gets."""


def _search_dirs() -> list[str]:
    """The absolute ``PATH`` entries, in order, then the fixed directories."""
    entries = os.environ.get("PATH", "").split(os.pathsep)
    dirs = [entry for entry in entries if os.path.isabs(entry)]
    return dirs + [d for d in _FALLBACK_DIRS if d not in dirs]


def _locate(name: str) -> str | None:
    if not name or "/" in name:  # a name with a slash is a path, maybe a relative one
        return None
    for directory in _search_dirs():
        candidate = os.path.join(directory, name)
        try:
            regular = stat.S_ISREG(os.stat(candidate).st_mode)
        except (OSError, ValueError):  # ValueError: a NUL in PATH
            continue
        if regular and os.access(candidate, os.X_OK):
            return candidate
    return None


def tool_exists(name: str) -> bool:
    """Whether ``name`` is in an absolute PATH entry or one of the usual sbin/bin directories."""
    return _locate(name) is not None


def find_tool(name: str, missing: str) -> str:
    """The absolute path of ``name``; else a code-999 error ``<missing>: exec: "<name>": ...``."""
    found = _locate(name)
    if found is None:
        raise PluginError(
            f'{missing}: exec: "{name}": executable file not found in $PATH',
            code=ErrorCode.INTERNAL,
        )
    return found


def run_tool(
    argv: list[str], stdin: str | None = None, *, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the current job's namespace; its outcome, whatever the exit status.

    ``timeout`` defaults to :data:`TOOL_TIMEOUT`; past it the tool is killed
    and a code-999 :class:`PluginError` naming it is raised.
    """
    netns_label()  # raises NotOnWorkerError: never run a filter tool in the caller's namespace
    limit = TOOL_TIMEOUT if timeout is None else timeout
    try:
        return subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            env=dict(_TOOL_ENV),
            timeout=limit,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed and reaped it
        # What it printed so far (bytes: run() does not decode it on a timeout).
        stderr = exc.stderr.decode(errors="replace").strip() if exc.stderr else ""
        detail = f": {stderr}" if stderr else ""
        raise PluginError(
            f"running [{' '.join(argv)}]: timed out after {limit:g}s, killed{detail}",
            code=ErrorCode.INTERNAL,
        ) from None


def tool_failure(argv: list[str], proc: subprocess.CompletedProcess[str]) -> PluginError:
    """The error for a tool that exited non-zero, with Go's ``running [...]`` shape."""
    return PluginError(
        f"running [{' '.join(argv)}]: exit status {proc.returncode}: {proc.stderr.strip()}",
        code=ErrorCode.INTERNAL,
    )
