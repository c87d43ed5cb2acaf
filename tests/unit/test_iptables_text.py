"""Reading ``iptables -S`` and writing ``iptables-restore`` lines, shared by ipMasq,
portmap and firewall (cnilib.plugins._hosttools.iptables_text)."""

from __future__ import annotations

import pytest

from cnilib.errors import PluginError
from cnilib.plugins._hosttools.iptables_text import (
    listing_rules,
    restore_line,
    restore_word,
    saved_words,
)

# What iptables -S prints for a table with a chain named with a quote and one with a
# backslash (printed as is), and a comment (double-quoted, its quotes escaped).
LISTING = """-P PREROUTING ACCEPT
-N it's
-N back\\slash
-A it's -j RETURN
-A POSTROUTING -s 10.1.0.2/32 -m comment --comment "name: \\"n\\" id: \\"c\\"" -j back\\slash

"""


def test_listing_keeps_names_as_iptables_prints_them() -> None:
    """Every user of a listing splits it the same way: a chain named ``it's`` does not
    break the listing (shell splitting failed with 'No closing quotation'), and a
    backslash in a name stays."""
    assert listing_rules(LISTING) == [
        ("-P", "PREROUTING", "ACCEPT"),
        ("-N", "it's"),
        ("-N", "back\\slash"),
        ("-A", "it's", "-j", "RETURN"),
        ("-A", "POSTROUTING", "-s", "10.1.0.2/32", "-m", "comment", "--comment",
         'name: "n" id: "c"', "-j", "back\\slash"),
    ]  # fmt: skip
    assert saved_words('-A X -m comment --comment "" -j Y')[5] == ""


def test_restore_line_round_trips_the_listing() -> None:
    """A listed rule written back for iptables-restore reads as the same words."""
    for rule in listing_rules(LISTING):
        assert saved_words(restore_line(rule)) == rule


def test_restore_words_never_hold_a_line_break() -> None:
    """iptables-restore reads a command a line, quoted or not: refused (code 999)."""
    assert restore_word("CNI-FORWARD") == "CNI-FORWARD"
    assert restore_word("a b") == '"a b"'
    for word in ("a\nCOMMIT", "a\rb", "a\0b"):
        with pytest.raises(PluginError, match="holds a line break") as info:
            restore_word(word)
        assert info.value.code == 999


@pytest.mark.parametrize(
    "module",
    [
        "cnilib.plugins._hosttools.ipmasq",
        "cnilib.plugins.meta._portmap_iptables",
        "cnilib.plugins.meta._firewall_iptables",
    ],
)
def test_every_iptables_user_splits_listings_the_same_way(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ipMasq's, portmap's and firewall's listings of a table holding a chain named
    ``it's`` (any tool on the host may make one) give iptables' words, not an error."""
    import importlib
    import subprocess

    mod = importlib.import_module(module)

    def fake_run_tool(argv: list[str], stdin: str | None = None) -> object:
        return subprocess.CompletedProcess(argv, 0, LISTING, "")

    monkeypatch.setattr(mod, "run_tool", fake_run_tool)
    monkeypatch.setattr(mod, "find_tool", lambda name, missing: f"/usr/sbin/{name}")
    lister = getattr(mod, "_list_nat", None) or mod._list
    assert ("-N", "it's") in lister(4)
