"""Choosing the ipMasq backend, naming nftables rules, and refusing to run off a worker."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from cnilib.errors import ErrorCode, PluginError
from cnilib.netlink import NotOnWorkerError
from cnilib.plugins._hosttools import masq as _masq, tools as _hosttools
from cnilib.plugins._hosttools.ipmasq_nft import instance_comment
from cnilib.plugins._hosttools.nft import nft_list, rules_commented


def _tools(monkeypatch: pytest.MonkeyPatch, *present: str) -> None:
    monkeypatch.setattr(
        _hosttools, "_locate", lambda name: f"/x/{name}" if name in present else None
    )


@pytest.mark.parametrize(
    ("present", "asked", "chosen"),
    [
        (("iptables", "nft"), "", "iptables"),  # Go: prefer iptables while it works
        (("nft",), "", "nftables"),  # no iptables on the host: nftables
        ((), "", "iptables"),  # neither: iptables, whose absence ADD then reports
        (("iptables",), "nftables", "nftables"),  # asked for explicitly
        (("nft",), "iptables", "iptables"),
    ],
)
def test_backend_choice(
    monkeypatch: pytest.MonkeyPatch, present: tuple[str, ...], asked: str, chosen: str
) -> None:
    _tools(monkeypatch, *present)
    conf = {"ipMasqBackend": asked} if asked else {}
    assert _masq.masq_backend(conf) == chosen


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(PluginError, match='unknown ipmasq backend "pf"') as info:
        _masq.masq_backend({"ipMasqBackend": "pf"})
    assert info.value.code == ErrorCode.INVALID_NETWORK_CONFIG


def test_backend_of_the_wrong_type_names_the_field() -> None:
    with pytest.raises(PluginError, match=r"NetConf\.ipMasqBackend of type string"):
        _masq.masq_backend({"ipMasqBackend": 1})


def h(text: str) -> str:
    return hashlib.sha512(text.encode()).hexdigest()[:16]


def test_instance_comment_is_gos() -> None:
    """``<16 hex of sha512(net)>-<16 hex of sha512(ifname:cid)>, net: .., if: .., id: ..``."""
    assert (
        instance_comment("net1", "eth0", "c1")
        == f"{h('net1')}-{h('eth0:c1')}, net: net1, if: eth0, id: c1"
    )


def test_instance_comment_is_cut_to_nft_limit() -> None:
    comment = instance_comment("n", "eth0", "c" * 200)
    assert len(comment) == 128
    assert comment.startswith(f"{h('n')}-{h('eth0:' + 'c' * 200)}, net: n, if: eth0, id: ccc")


def test_missing_nft_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _tools(monkeypatch)
    with pytest.raises(PluginError, match='could not find nftables binary: exec: "nft"') as info:
        nft_list("tables")
    assert info.value.code == ErrorCode.INTERNAL


def test_tools_refuse_the_callers_own_namespace() -> None:
    """Off a namespace worker nothing runs: rules can never land in the caller's namespace."""
    with pytest.raises(NotOnWorkerError):
        _hosttools.run_tool(["true"])


def test_rules_commented_filters_by_chain_and_comment_prefix() -> None:
    objects: list[dict[str, Any]] = [
        {"table": {"name": "t"}},
        {"rule": {"chain": "a", "handle": 1, "comment": "abc-1, x"}},
        {"rule": {"chain": "a", "handle": 2, "comment": "abd-1"}},
        {"rule": {"chain": "b", "handle": 3, "comment": "abc-1"}},
        {"rule": {"chain": "a", "handle": 4}},
    ]
    assert [r["handle"] for r in rules_commented(objects, "a", "abc")] == [1]
    assert rules_commented(None, "a", "") == []


@pytest.mark.parametrize("works", [True, False])
def test_teardown_failure_counts_only_where_the_backend_works(
    monkeypatch: pytest.MonkeyPatch, works: bool
) -> None:
    """Go's rule: a backend whose tool is installed but cannot reach the kernel (no
    nf_tables, a sandbox forbidding it) holds no rules, so its failure must not fail DEL;
    where it works, the failure is reported."""
    _tools(monkeypatch, "iptables", "nft")
    calls: list[str] = []

    def failing(*_: object) -> None:
        calls.append("nft")
        raise PluginError("nft: Operation not permitted")

    monkeypatch.setattr(_masq, "teardown_ipmasq", lambda *_: calls.append("iptables"))
    monkeypatch.setattr(_masq, "teardown_ipmasq_nft", failing)
    monkeypatch.setattr(_masq, "backend_works", lambda backend: works)
    masq = _masq.Masquerade("net", "cid", "eth0", _masq.IPTABLES)
    if works:
        with pytest.raises(PluginError, match="Operation not permitted"):
            masq.teardown(None)
    else:
        masq.teardown(None)
    assert calls == ["iptables", "nft"]


def test_gc_keeps_valid_rules_whatever_their_comment_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    """GC tells attachments apart by the hashes at the head of the comment: a valid rule
    whose readable tail Go cut at 128 bytes (not characters, as here) is kept; the rule of
    an attachment that is not valid goes."""
    from cnilib.plugins._hosttools import ipmasq_nft as _ipmasq_nft

    ifname, cid = "ethé", "c" * 120
    go_cut = instance_comment("net1", ifname, cid).encode()[:128].decode("utf-8", "replace")
    assert go_cut != instance_comment("net1", ifname, cid)
    rules = [
        {"rule": {"chain": "masq_checks", "handle": 7, "comment": go_cut}},
        {
            "rule": {
                "chain": "masq_checks",
                "handle": 8,
                "comment": instance_comment("net1", "eth0", "old"),
            }
        },
        {
            "rule": {
                "chain": "masq_checks",
                "handle": 9,
                "comment": instance_comment("net2", "eth0", "old"),
            }
        },
    ]
    applied: list[list[Any]] = []
    monkeypatch.setattr(_ipmasq_nft, "_listed_rules", lambda: rules)
    monkeypatch.setattr(_ipmasq_nft, "nft_apply", lambda batch: applied.append(list(batch)))
    _ipmasq_nft.gc_ipmasq_nft("net1", {(cid, ifname)})
    [batch] = applied
    assert [command["delete"]["rule"]["handle"] for command in batch] == [8]
