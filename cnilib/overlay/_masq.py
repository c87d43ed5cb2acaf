"""The node's masquerading (``agent --ip-masq``): NAT for what leaves the cluster only.

bridge's ``ipMasq`` masquerades everything that leaves the node's subnet, so a
container on another node would see this node's address instead of the container's.
As ``flanneld --ip-masq`` does, the agent instead installs, in the node namespace's
nat table, a chain of its own (:func:`masq_chain`) jumped to from ``POSTROUTING``
(the jump carries :func:`masq_comment`), holding::

    -A <chain> -s <cluster CIDR> -d <cluster CIDR> -j RETURN
    -A <chain> -s <node subnet> ! -d 224.0.0.0/4 -j MASQUERADE

so traffic between containers keeps its addresses on every node, and traffic from
the node's containers to anywhere else (multicast aside) leaves with the node's.

:func:`setup_masquerade` lists the table once and makes it so in one
``iptables-restore --noflush`` transaction: nothing when it already is, a chain
with other rules (the node moved to another subnet) rewritten, duplicate or
different jumps replaced by one. :func:`teardown_masquerade` removes the jumps
and the chain. Both run ``iptables`` as a child of a namespace worker
(:func:`cnilib.netlink.run_in_netns`): the rules land in that namespace and
nowhere else. The planning functions are pure, for tests without root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from ipaddress import IPv4Network

from cnilib import netlink
from cnilib.plugins._hosttools.iptables_text import listing_rules, restore_line
from cnilib.plugins._hosttools.tools import find_tool, run_tool, tool_failure

__all__ = [
    "MULTICAST",
    "chain_rules",
    "install_masquerade",
    "masq_chain",
    "masq_comment",
    "plan_setup",
    "plan_teardown",
    "remove_masquerade",
    "setup_masquerade",
    "teardown_masquerade",
]

MULTICAST = "224.0.0.0/4"
"""Never masqueraded (bridge's and flannel's rule too)."""

_CHAIN_PREFIX = "CNI-OVL-"
_MAX_CHAIN_LENGTH = 28
"""iptables' limit on a chain name (``XT_EXTENSION_MAXNAMELEN`` less the NUL)."""
_HASH_DIGITS = _MAX_CHAIN_LENGTH - len(_CHAIN_PREFIX)

Rule = tuple[str, ...]


def masq_chain(network: str) -> str:
    """``CNI-OVL-<network>``; for a name too long for iptables' 28 characters,
    ``CNI-OVL-`` and the first 20 hex digits of its SHA-256."""
    chain = _CHAIN_PREFIX + network
    if len(chain) <= _MAX_CHAIN_LENGTH:
        return chain
    return _CHAIN_PREFIX + hashlib.sha256(network.encode()).hexdigest()[:_HASH_DIGITS]


def masq_comment(network: str) -> str:
    """The comment of the ``POSTROUTING`` jump, naming the overlay network."""
    return f'cnilib overlay "{network}" masquerading'


def chain_rules(network: str, cluster: IPv4Network, subnet: IPv4Network) -> tuple[Rule, ...]:
    """The chain's rules, as ``iptables -S`` prints them."""
    chain = masq_chain(network)
    return (
        ("-A", chain, "-s", str(cluster), "-d", str(cluster), "-j", "RETURN"),
        ("-A", chain, "-s", str(subnet), "!", "-d", MULTICAST, "-j", "MASQUERADE"),
    )


def _jump(network: str) -> Rule:
    comment = masq_comment(network)
    return ("-A", "POSTROUTING", "-m", "comment", "--comment", comment, "-j", masq_chain(network))


def _jumps(existing: Sequence[Rule], chain: str) -> list[Rule]:
    """Every ``POSTROUTING`` rule jumping to ``chain``, ours or not."""
    return [r for r in existing if r[:2] == ("-A", "POSTROUTING") and r[-2:] == ("-j", chain)]


def plan_setup(
    existing: Sequence[Rule], network: str, cluster: IPv4Network, subnet: IPv4Network
) -> list[Rule]:
    """The ``iptables-restore`` lines turning the nat table ``existing`` (``iptables -S``
    split into words) into one with the chain holding exactly :func:`chain_rules` and
    one jump to it; empty when it already is so."""
    chain = masq_chain(network)
    wanted = list(chain_rules(network, cluster, subnet))
    lines: list[Rule] = []
    if ("-N", chain) not in existing:
        lines.append((f":{chain}", "-", "[0:0]"))
        lines += wanted
    elif [r for r in existing if r[:2] == ("-A", chain)] != wanted:
        lines.append(("-F", chain))
        lines += wanted
    jump = _jump(network)
    jumps = _jumps(existing, chain)
    if jumps != [jump]:
        lines += [("-D", *rule[1:]) for rule in jumps]
        lines.append(jump)
    return lines


def plan_teardown(existing: Sequence[Rule], network: str) -> list[Rule]:
    """The ``iptables-restore`` lines removing every jump to the chain and the chain."""
    chain = masq_chain(network)
    lines: list[Rule] = [("-D", *rule[1:]) for rule in _jumps(existing, chain)]
    if ("-N", chain) in existing:
        lines += [("-F", chain), ("-X", chain)]
    return lines


def _run(argv: list[str], stdin: str | None = None) -> str:
    proc = run_tool(argv, stdin)
    if proc.returncode != 0:
        raise tool_failure(argv, proc)
    return proc.stdout


def _list_nat() -> list[Rule]:
    iptables = find_tool("iptables", "overlay masquerading needs iptables")
    return listing_rules(_run([iptables, "-w", "-t", "nat", "-S"]))


def _restore(lines: Sequence[Rule]) -> None:
    if not lines:
        return
    restore = find_tool("iptables-restore", "overlay masquerading needs iptables-restore")
    text = "\n".join(["*nat", *(restore_line(rule) for rule in lines), "COMMIT", ""])
    _run([restore, "-w", "--noflush"], stdin=text)


def setup_masquerade(network: str, cluster: IPv4Network, subnet: IPv4Network) -> None:
    """Make the node's masquerading for ``subnet`` (idempotent); on a namespace worker."""
    _restore(plan_setup(_list_nat(), network, cluster, subnet))


def teardown_masquerade(network: str) -> None:
    """Remove the node's masquerading of ``network`` (none there: nothing); on a worker."""
    _restore(plan_teardown(_list_nat(), network))


async def install_masquerade(
    netns: str | None, network: str, cluster: IPv4Network, subnet: IPv4Network
) -> None:
    """:func:`setup_masquerade` in the node namespace ``netns`` (None: this process's)."""
    await netlink.arun_in_netns(netns, setup_masquerade, network, cluster, subnet)


async def remove_masquerade(netns: str | None, network: str) -> None:
    """:func:`teardown_masquerade` in the node namespace ``netns`` (None: this process's)."""
    await netlink.arun_in_netns(netns, teardown_masquerade, network)
