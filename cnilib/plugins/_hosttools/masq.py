"""``ipMasq`` for bridge and ptp: one attachment's masquerading, on iptables or nftables.

``ipMasqBackend`` picks the backend as Go's plugins (1.5 and later) do:
``"iptables"``, ``"nftables"``, or unset, meaning iptables unless the host
has no ``iptables`` tool and has ``nft``. The iptables rules are Go 1.1.1's
(:mod:`cnilib.plugins._hosttools.ipmasq`), the nftables ones Go's newer table
(:mod:`cnilib.plugins._hosttools.ipmasq_nft`).

Teardown clears both backends, as Go's ``TeardownIPMasqForNetworks`` does:
the attachment may have been made under another configuration or by another
plugin version. A backend whose tool is not installed cannot hold rules
and is skipped.

Call these inside a job in the host namespace (``run_in_netns``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

import attrs

from cnilib._json import JSONValue
from cnilib.errors import ErrorCode, PluginError
from cnilib.plugins._hosttools.ipmasq import (
    format_chain_name,
    format_comment,
    gc_ipmasq,
    setup_ipmasq,
    teardown_ipmasq,
)
from cnilib.plugins._hosttools.ipmasq_nft import (
    gc_ipmasq_nft,
    setup_ipmasq_nft,
    teardown_ipmasq_nft,
)
from cnilib.plugins._hosttools.nft import NFT, nft_available
from cnilib.plugins._hosttools.tools import find_tool, run_tool, tool_exists
from cnilib.plugins._netconf import conf_str
from cnilib.results import IPInterface

__all__ = [
    "IPTABLES",
    "NFTABLES",
    "Masquerade",
    "backend_works",
    "gc_masquerade",
    "masq_backend",
]

IPTABLES = "iptables"
NFTABLES = "nftables"
# Each backend's tool, and a read that works only where the backend does.
_PROBES = {
    IPTABLES: ("iptables", "-w", "-t", "filter", "-S", "INPUT"),
    NFTABLES: (NFT, "list", "tables"),
}


def masq_backend(conf: Mapping[str, JSONValue]) -> str:
    """The ``ipMasqBackend`` of ``conf``, else the host's default; code 7 if unknown."""
    backend = conf_str(conf, "ipMasqBackend")
    if backend in (IPTABLES, NFTABLES):
        return backend
    if backend:
        raise PluginError(
            f'unknown ipmasq backend "{backend}"', code=ErrorCode.INVALID_NETWORK_CONFIG
        )
    if not tool_exists(IPTABLES) and nft_available():
        return NFTABLES
    return IPTABLES


@attrs.frozen
class Masquerade:
    """The masquerading rules of one attachment (network, container, interface)."""

    network: str
    container_id: str
    ifname: str
    backend: str = IPTABLES

    @property
    def _iptables_names(self) -> tuple[str, str]:
        # Go 1.1.1 names the chain after network and container only.
        return (
            format_chain_name(self.network, self.container_id),
            format_comment(self.network, self.container_id),
        )

    def setup(self, ips: Sequence[IPInterface]) -> None:
        """Masquerade traffic from ``ips`` that leaves their subnets."""
        if self.backend == NFTABLES:
            setup_ipmasq_nft(ips, self.network, self.ifname, self.container_id)
        else:
            setup_ipmasq(ips, *self._iptables_names)

    def teardown(self, ips: Sequence[IPInterface] | None) -> None:
        """Remove this attachment's rules from both backends; ``ips`` None: addresses unknown."""
        _in_each_backend(
            lambda: teardown_ipmasq(ips, *self._iptables_names),
            lambda: teardown_ipmasq_nft(self.network, self.ifname, self.container_id),
        )


def gc_masquerade(network: str, valid: Collection[tuple[str, str]]) -> None:
    """Drop ``network``'s masquerading rules of attachments not in ``valid`` (containerID,
    ifname), in both backends: nftables per attachment, iptables per container."""
    _in_each_backend(
        lambda: gc_ipmasq(network, {cid for cid, _ in valid}),
        lambda: gc_ipmasq_nft(network, valid),
    )


def _in_each_backend(iptables: Callable[[], None], nftables: Callable[[], None]) -> None:
    """Run each backend's part where its tool is installed; all failures in one error.

    As Go's teardown and GC do, a backend's failure counts only if that
    backend works on this host: an installed tool whose kernel side is
    missing or forbidden cannot hold rules, so it must not fail every DEL.
    """
    failures: list[str] = []
    for backend, part in ((IPTABLES, iptables), (NFTABLES, nftables)):
        if not tool_exists(_PROBES[backend][0]):
            continue
        try:
            part()
        except PluginError as exc:
            if backend_works(backend):
                failures.append(exc.msg)
    if failures:
        raise PluginError("\n".join(failures), code=ErrorCode.INTERNAL)


def backend_works(backend: str) -> bool:
    """Whether ``backend`` can read rules here (Go ``SupportsIPTables``, ``SupportsNFTables``)."""
    tool, *args = _PROBES[backend]
    try:
        path = find_tool(tool, "probe")
    except PluginError:
        return False
    return run_tool([path, *args]).returncode == 0
