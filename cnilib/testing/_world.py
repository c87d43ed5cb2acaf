"""The pieces of a test's CNI world that are not fixtures: containers and conflists.

A :class:`Container` is a container namespace plus the ID the runtime knows
it by, with helpers that read its interfaces and addresses back.
:func:`with_data_dir` points host-local's store of a conflist at a test's
directory, so nothing is written under ``/var/lib/cni``.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, cast

from cnilib.config import NetworkConfigList, conflist_from_bytes
from cnilib.runtime import RuntimeConf
from cnilib.testing._netns import NetNS

__all__ = ["ConflistFactory", "Container", "ContainerFactory", "conflist", "with_data_dir"]


ConflistFactory: TypeAlias = Callable[[Mapping[str, Any] | str | bytes], NetworkConfigList]
"""What the ``cnilib_conflist`` fixture gives a test: document in, parsed conflist out."""


def _new_id() -> str:
    return f"cnilib-test-{secrets.token_hex(6)}"


@dataclass(frozen=True)
class Container:
    """A container for a test: its network namespace and its container ID.

    ``netns.path`` is what plugins get as ``CNI_NETNS``;
    :meth:`runtime_conf` builds the :class:`cnilib.RuntimeConf` of one of its
    interfaces; :meth:`addresses` and :meth:`link_names` read the namespace
    back (through ``ip``), to check what the plugins did.
    """

    netns: NetNS
    id: str = field(default_factory=_new_id)

    @property
    def path(self) -> str:
        """The namespace's path, as plugins receive it in ``CNI_NETNS``."""
        return self.netns.path

    def runtime_conf(self, ifname: str = "eth0", **kwargs: Any) -> RuntimeConf:
        """The runtime parameters of interface ``ifname`` of this container.

        ``kwargs`` go to :class:`cnilib.RuntimeConf` (``args``, ``capability_args``, …).
        """
        return RuntimeConf(self.id, self.netns.path, ifname, **kwargs)

    def _ip_json(self, *argv: str) -> list[dict[str, Any]]:
        out = self.netns.exec("ip", "-json", *argv).stdout
        return cast("list[dict[str, Any]]", json.loads(out or "[]"))

    def link_names(self) -> list[str]:
        """The names of every link in the namespace (``lo`` included), in kernel order."""
        return [str(link["ifname"]) for link in self._ip_json("link", "show")]

    def addresses(self, ifname: str = "eth0", *, link_local: bool = False) -> list[str]:
        """The addresses on ``ifname`` in CIDR form (``"10.22.0.2/24"``), in kernel order.

        IPv6 link-local addresses (which the kernel adds by itself) are left
        out unless ``link_local``. Raises ``CalledProcessError`` if there is
        no such interface.
        """
        found = []
        for link in self._ip_json("address", "show", "dev", ifname):
            for addr in link.get("addr_info", []):
                if addr.get("scope") == "link" and not link_local:
                    continue
                found.append(f"{addr['local']}/{addr['prefixlen']}")
        return found


def with_data_dir(config: Mapping[str, Any], data_dir: str | Path) -> dict[str, Any]:
    """A deep copy of a conflist (or single plugin) document whose host-local
    IPAM sections without a ``dataDir`` store their addresses under ``data_dir``.

    host-local's default store is ``/var/lib/cni/networks``, shared by every
    runtime on the machine; a test's allocations belong in its own directory.
    A ``dataDir`` the document sets is kept.
    """
    doc = copy.deepcopy(dict(config))
    plugins = doc.get("plugins")
    entries = plugins if isinstance(plugins, list) else [doc]
    for entry in entries:
        ipam = entry.get("ipam") if isinstance(entry, dict) else None
        if isinstance(ipam, dict) and ipam.get("type") == "host-local":
            ipam.setdefault("dataDir", str(data_dir))
    return doc


def conflist(
    config: Mapping[str, Any] | str | bytes, *, data_dir: str | Path | None = None
) -> NetworkConfigList:
    """Parse a conflist document (a mapping, or JSON text) as
    :func:`cnilib.conflist_from_bytes` does (a malformed one raises
    :class:`cnilib.ConfigError`), host-local's store under ``data_dir`` when
    one is given (see :func:`with_data_dir`)."""
    if isinstance(config, str | bytes):
        data = config.encode() if isinstance(config, str) else config
        parsed = conflist_from_bytes(data)
        if data_dir is None:
            return parsed
        config = parsed.raw
    if data_dir is not None:
        config = with_data_dir(config, data_dir)
    return conflist_from_bytes(json.dumps(config).encode())


class ContainerFactory:
    """Makes :class:`Container` instances, each in a new namespace from
    ``make_netns`` (what the ``cnilib_container`` fixture gives a test)."""

    def __init__(self, make_netns: Callable[[], NetNS]) -> None:
        self._make_netns = make_netns
        self.made: list[Container] = []

    def __call__(self, container_id: str | None = None) -> Container:
        """A container in a new namespace, its ID ``container_id`` or a random ``cnilib-test-*``."""
        netns = self._make_netns()
        ctr = Container(netns) if container_id is None else Container(netns, container_id)
        self.made.append(ctr)
        return ctr
