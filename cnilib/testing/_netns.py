"""Throwaway network namespaces for tests, driven through the ``ip`` command.

Deliberately free of pyroute2: these helpers only shell out to ``ip`` so that
a test's world (a *node* namespace that plays the host, plus container
namespaces beside it) can be built and torn down without touching the
machine's own network namespace.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

__all__ = [
    "NETNS_RUN_DIR",
    "CommandError",
    "NetNS",
    "create_netns",
    "node_and_containers",
    "probe_privileged",
]

NETNS_RUN_DIR = Path("/run/netns")
"""Where ``ip netns add`` bind-mounts named namespaces."""

UNPRIVILEGED_ENV = "CNILIB_TESTS_UNPRIVILEGED"
"""Set to ``1`` to make :func:`probe_privileged` report "unprivileged"."""

_IP = "ip"


class CommandError(subprocess.CalledProcessError):
    """A ``CalledProcessError`` whose message carries the command's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()} stderr: {str(self.stderr).strip()!r}"


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run *argv* with captured text output; on failure raise :class:`CommandError`."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, argv, output=proc.stdout, stderr=proc.stderr)
    return proc


class NetNS:
    """A named network namespace created by :func:`create_netns`.

    ``exec`` runs a command inside it (``ip netns exec <name> ...``, which also
    mounts a matching ``/sys``); ``delete`` removes it and is idempotent.
    """

    __slots__ = ("_deleted", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._deleted = False

    def __repr__(self) -> str:
        return f"NetNS({self.name!r})"

    @property
    def path(self) -> str:
        """The bind-mount path plugins receive as ``CNI_NETNS``."""
        return str(NETNS_RUN_DIR / self.name)

    @property
    def exec_prefix(self) -> tuple[str, ...]:
        """The argv prefix that runs a program inside this namespace."""
        return (_IP, "netns", "exec", self.name)

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run *argv* inside the namespace; raise ``CalledProcessError`` if *check* and it fails."""
        return _run([*self.exec_prefix, *argv], check=check)

    def exists(self) -> bool:
        """Whether the namespace's bind mount is still present."""
        return os.path.exists(self.path)

    def delete(self) -> None:
        """Remove the namespace (and every link, route and rule inside it); idempotent."""
        if self._deleted:
            return
        if self.exists():
            _run([_IP, "netns", "delete", self.name], check=False)
        self._deleted = not self.exists()
        if not self._deleted:
            raise RuntimeError(f"could not delete network namespace {self.name}")


def create_netns(prefix: str = "cnilib-test") -> NetNS:
    """Create a uniquely named namespace ``<prefix>-<random>`` with ``lo`` up."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    _run([_IP, "netns", "add", name])
    ns = NetNS(name)
    try:
        ns.exec(_IP, "link", "set", "lo", "up")
    except BaseException:
        ns.delete()
        raise
    return ns


@contextmanager
def node_and_containers(
    n: int = 1, *, prefix: str = "cnilib"
) -> Iterator[tuple[NetNS, list[NetNS]]]:
    """Yield a node namespace and *n* container namespaces; delete them all on exit."""
    with ExitStack() as stack:
        node = create_netns(f"{prefix}-node")
        stack.callback(node.delete)
        containers: list[NetNS] = []
        for _ in range(n):
            ctr = create_netns(f"{prefix}-ctr")
            stack.callback(ctr.delete)
            containers.append(ctr)
        yield node, containers


def probe_privileged() -> str | None:
    """Return ``None`` if namespaces and veth pairs can be made here, else the reason why not.

    Creates a throwaway namespace, adds a veth pair *inside it* and deletes it
    again. ``CNILIB_TESTS_UNPRIVILEGED=1`` forces a "not privileged" answer.
    """
    if os.environ.get(UNPRIVILEGED_ENV, "") not in ("", "0"):
        return f"{UNPRIVILEGED_ENV} is set"
    try:
        ns = create_netns("cnilib-probe")
    except FileNotFoundError:
        return "the `ip` command (iproute2) is not installed"
    except subprocess.CalledProcessError as exc:
        return f"cannot create a network namespace: {str(exc.stderr).strip()}"
    try:
        proc = ns.exec(_IP, "link", "add", "pa", "type", "veth", "peer", "name", "pb", check=False)
        if proc.returncode != 0:
            return f"cannot create a veth pair in a namespace: {proc.stderr.strip()}"
        return None
    finally:
        ns.delete()
