"""``macspoofchk``: drop frames from a bridge port whose source MAC is not the container's.

The rule set is Go's (``pkg/link/spoofcheck.go``), so either side can tear
down what the other made:

- table ``bridge nat``, base chain ``PREROUTING`` (filter hook prerouting,
  priority -300, policy accept), both left in place on teardown;
- ``PREROUTING``: ``iifname <host veth> jump cni-br-iface-<ref>``;
- ``cni-br-iface-<ref>``: ``jump cni-br-iface-<ref>-mac``;
- ``cni-br-iface-<ref>-mac``: ``ether saddr <mac> return``, then ``drop``;

every rule commented ``macspoofchk-<ref>``, where ``ref`` is
``<containerID>-<ifname>``. Setup is one nft transaction (Go uses two: one
to declare the table and chains, one for the rules). Teardown lists the
table once and deletes what is there in one transaction; what is already
gone is fine. :func:`check_spoofcheck` (cnilib's own, Go's CHECK does not
look) names a rule that went missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cnilib.errors import PluginError
from cnilib.plugins._hostside import fail
from cnilib.plugins._hosttools.nft import Command, nft_apply, nft_list, rules_commented

__all__ = ["check_spoofcheck", "setup_spoofcheck", "spoofcheck_ref", "teardown_spoofcheck"]

_FAMILY = "bridge"
_TABLE = "nat"
_BASE_CHAIN = "PREROUTING"
_BASE_PRIORITY = -300


def spoofcheck_ref(container_id: str, ifname: str) -> str:
    """Go bridge's ``uniqueID``: ``<containerID>-<ifname>``."""
    return f"{container_id}-{ifname}"


def _iface_chain(ref: str) -> str:
    return f"cni-br-iface-{ref}"


def _mac_chain(ref: str) -> str:
    return f"{_iface_chain(ref)}-mac"


def _comment(ref: str) -> str:
    return f"macspoofchk-{ref}"


def _where(chain: str) -> dict[str, Any]:
    return {"family": _FAMILY, "table": _TABLE, "chain": chain}


def _chain(name: str) -> dict[str, Any]:
    return {"family": _FAMILY, "table": _TABLE, "name": name}


def _rule(chain: str, ref: str, *expr: Mapping[str, Any]) -> Command:
    return {"add": {"rule": {**_where(chain), "expr": list(expr), "comment": _comment(ref)}}}


def _match(left: Mapping[str, Any], right: str) -> dict[str, Any]:
    return {"match": {"op": "==", "left": left, "right": right}}


_IIFNAME = {"meta": {"key": "iifname"}}
_ETHER_SADDR = {"payload": {"protocol": "ether", "field": "saddr"}}


def setup_spoofcheck(host_iface: str, mac: str, ref: str) -> None:
    """Only frames from ``mac`` may enter the bridge through ``host_iface`` (one transaction)."""
    iface_chain, mac_chain = _iface_chain(ref), _mac_chain(ref)
    base = {
        **_chain(_BASE_CHAIN),
        "type": "filter",
        "hook": "prerouting",
        "prio": _BASE_PRIORITY,
        "policy": "accept",
    }
    batch: list[Command] = [
        {"add": {"table": {"family": _FAMILY, "name": _TABLE}}},
        {"add": {"chain": base}},
        {"add": {"chain": _chain(iface_chain)}},
        {"add": {"chain": _chain(mac_chain)}},
        {"flush": {"chain": _chain(iface_chain)}},
        {"flush": {"chain": _chain(mac_chain)}},
        _rule(_BASE_CHAIN, ref, _match(_IIFNAME, host_iface), {"jump": {"target": iface_chain}}),
        _rule(iface_chain, ref, {"jump": {"target": mac_chain}}),
        _rule(mac_chain, ref, _match(_ETHER_SADDR, mac.lower()), {"return": None}),
        _rule(mac_chain, ref, {"drop": None}),
    ]
    try:
        nft_apply(batch)
    except PluginError as exc:
        raise fail(f"failed to setup spoof-check: {exc}") from exc


def _chain_names(objects: Sequence[Mapping[str, Any]]) -> set[str]:
    return {obj["chain"]["name"] for obj in objects if "chain" in obj}


def teardown_spoofcheck(ref: str) -> None:
    """Remove ``ref``'s jump and chains; the table and ``PREROUTING`` stay (as Go leaves them)."""
    objects = nft_list("table", _FAMILY, _TABLE)
    if objects is None:
        return
    batch: list[Command] = [
        {"delete": {"rule": {**_where(_BASE_CHAIN), "handle": rule["handle"]}}}
        for rule in rules_commented(objects, _BASE_CHAIN, _comment(ref))
        if rule.get("comment") == _comment(ref)
    ]
    chains = _chain_names(objects)
    batch += [
        {"delete": {"chain": _chain(name)}}
        for name in (_iface_chain(ref), _mac_chain(ref))
        if name in chains
    ]
    try:
        nft_apply(batch)
    except PluginError as exc:
        raise fail(f"failed to teardown spoof-check: {exc}") from exc


def check_spoofcheck(host_iface: str, mac: str, ref: str) -> None:
    """Raise (code 999) naming the first missing piece of ``ref``'s rule set."""
    objects = nft_list("table", _FAMILY, _TABLE) or []
    comment = _comment(ref)
    iface_chain, mac_chain = _iface_chain(ref), _mac_chain(ref)

    def has(chain: str, *expr: Mapping[str, Any]) -> bool:
        rules = rules_commented(objects, chain, comment)
        return any(rule.get("expr") == list(expr) for rule in rules)

    expected = [
        (_BASE_CHAIN, (_match(_IIFNAME, host_iface), {"jump": {"target": iface_chain}}),
         f"the jump from {host_iface} to {iface_chain}"),
        (iface_chain, ({"jump": {"target": mac_chain}},), f"the jump to {mac_chain}"),
        (mac_chain, (_match(_ETHER_SADDR, mac.lower()), {"return": None}),
         f"the rule admitting {mac.lower()}"),
        (mac_chain, ({"drop": None},), "the rule dropping every other source"),
    ]  # fmt: skip
    for chain, expr, what in expected:
        if not has(chain, *expr):
            raise fail(f"macspoofchk: {what} is missing from {_FAMILY} {_TABLE} {chain}")
