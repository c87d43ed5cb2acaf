"""``ipMasq`` with nftables, in the layout of Go's ``pkg/ip/ipmasq_nftables_linux.go``.

Table ``inet cni_plugins_masquerade``:

- ``postrouting`` (nat hook, priority 100): ``ip daddr 224.0.0.0/4 return``,
  ``ip6 daddr ff00::/8 return``, ``goto masq_checks`` (rewritten on every
  setup, so it is always exactly these three);
- ``masq_checks``: one rule per container address,
  ``ip saddr <ip> ip daddr != <subnet> masquerade``, commented
  ``<hash(network)>-<hash(ifname:containerID)>, net: <network>, if: <ifname>, id: <cid>``.

The comment's leading hashes find an attachment's rules (teardown) and a
network's rules (GC) without trusting anything else in the table, so rules
written by Go's plugins and by these functions are interchangeable. Setup
replaces the attachment's old rules in the same transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from cnilib.plugins._hosttools.nft import Command, nft_apply, nft_list, rules_commented
from cnilib.results import IPInterface

__all__ = ["gc_ipmasq_nft", "instance_comment", "setup_ipmasq_nft", "teardown_ipmasq_nft"]

TABLE = "cni_plugins_masquerade"
CHAIN = "masq_checks"
_POSTROUTING = "postrouting"
_FAMILY = "inet"
_COMMENT_MAX = 128  # knftables.CommentLengthMax
_HASH_LENGTH = 16
_INSTANCE = 2 * _HASH_LENGTH + 1  # "<network hash>-<attachment hash>"
_MULTICAST = {"ip": ("224.0.0.0", 4), "ip6": ("ff00::", 8)}


def _hash(text: str) -> str:
    return hashlib.sha512(text.encode()).hexdigest()[:_HASH_LENGTH]


def _network_hash(network: str) -> str:
    return _hash(network)


def _instance_hash(network: str, ifname: str, container_id: str) -> str:
    return f"{_network_hash(network)}-{_hash(f'{ifname}:{container_id}')}"


def instance_comment(network: str, ifname: str, container_id: str) -> str:
    """Go ``commentForInstance``: hashes first, then a readable tail, cut to 128 chars."""

    def plain(text: str) -> str:
        return text.replace('"', "")

    comment = (
        f"{_instance_hash(network, ifname, container_id)}, net: {plain(network)}, "
        f"if: {plain(ifname)}, id: {plain(container_id)}"
    )
    return comment[:_COMMENT_MAX]


def _in_table(**fields: Any) -> dict[str, Any]:
    return {"family": _FAMILY, "table": TABLE, **fields}


def _prefix(addr: str, length: int) -> dict[str, Any]:
    return {"prefix": {"addr": addr, "len": length}}


def _addr_match(proto: str, field: str, op: str, right: object) -> dict[str, Any]:
    left = {"payload": {"protocol": proto, "field": field}}
    return {"match": {"op": op, "left": left, "right": right}}


def _listed_rules() -> list[dict[str, Any]] | None:
    return nft_list("chain", _FAMILY, TABLE, CHAIN)


def _delete(rules: Iterable[Mapping[str, Any]]) -> list[Command]:
    return [{"delete": {"rule": _in_table(chain=CHAIN, handle=r["handle"])}} for r in rules]


def setup_ipmasq_nft(
    ips: Sequence[IPInterface], network: str, ifname: str, container_id: str
) -> None:
    """Masquerade traffic from each of ``ips`` leaving its subnet (one transaction)."""
    stale = rules_commented(_listed_rules(), CHAIN, _instance_hash(network, ifname, container_id))
    comment = instance_comment(network, ifname, container_id)
    postrouting = _in_table(name=_POSTROUTING)
    batch: list[Command] = [
        {"add": {"table": {"family": _FAMILY, "name": TABLE}}},
        {"add": {"chain": _in_table(name=CHAIN)}},
        {"add": {"chain": {**postrouting, "type": "nat", "hook": "postrouting", "prio": 100,
                           "policy": "accept"}}},
        {"flush": {"chain": postrouting}},
    ]  # fmt: skip
    for proto, (addr, length) in _MULTICAST.items():
        match = _addr_match(proto, "daddr", "==", _prefix(addr, length))
        rule = _in_table(chain=_POSTROUTING, expr=[match, {"return": None}])
        batch.append({"add": {"rule": rule}})
    goto = {"goto": {"target": CHAIN}}
    batch.append({"add": {"rule": _in_table(chain=_POSTROUTING, expr=[goto])}})
    batch += _delete(stale)
    for ipn in ips:
        proto = "ip" if ipn.version == 4 else "ip6"
        net = ipn.network
        expr = [
            _addr_match(proto, "saddr", "==", str(ipn.ip)),
            _addr_match(proto, "daddr", "!=", _prefix(str(net.network_address), net.prefixlen)),
            {"masquerade": None},
        ]
        batch.append({"add": {"rule": _in_table(chain=CHAIN, expr=expr, comment=comment)}})
    nft_apply(batch)


def teardown_ipmasq_nft(network: str, ifname: str, container_id: str) -> None:
    """Delete the attachment's rules; none (or no table) is fine."""
    rules = rules_commented(_listed_rules(), CHAIN, _instance_hash(network, ifname, container_id))
    nft_apply(_delete(rules))


def gc_ipmasq_nft(network: str, valid: Collection[tuple[str, str]]) -> None:
    """Delete the network's rules of every attachment not in ``valid`` ((containerID, ifname)).

    Rules are told apart by the hashes that begin their comments, not by the
    whole comment: Go cuts a long comment at 128 bytes, this module at 128
    characters, and the two differ for a non-ASCII name.
    """
    keep = {_instance_hash(network, ifname, cid) for cid, ifname in valid}
    rules = rules_commented(_listed_rules(), CHAIN, _network_hash(network))
    nft_apply(_delete(r for r in rules if str(r.get("comment", ""))[:_INSTANCE] not in keep))
