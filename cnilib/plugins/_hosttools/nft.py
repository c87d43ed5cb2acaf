"""nftables through the ``nft`` tool's JSON interface, as Go's plugins do (go-nft, knftables).

Both Go libraries exec ``nft``; so does this module, with one JSON batch per
change (``nft -j -f -``): the kernel applies a batch as one transaction, all
or nothing. Reads use ``nft -j list ...``. Names and comments travel as JSON
strings, so no value needs quoting for nft's own syntax.

As with iptables, these run as children of a namespace worker (see
:mod:`cnilib.plugins._hosttools.tools`), so the rules land in that namespace.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cnilib.plugins._hosttools.tools import find_tool, run_tool, tool_exists, tool_failure

__all__ = [
    "Command",
    "NFT",
    "nft_apply",
    "nft_available",
    "nft_list",
    "rules_commented",
]

NFT = "nft"
_MISSING = "could not find nftables binary"

Command = Mapping[str, Any]
"""One element of an nftables JSON batch: ``{"add": {"table": {...}}}`` and so on."""


def nft_available() -> bool:
    """Whether the ``nft`` tool is installed (the kernel side is found out by using it)."""
    return tool_exists(NFT)


def nft_apply(commands: Sequence[Command]) -> None:
    """Apply ``commands`` as one transaction; a code-999 error with nft's message on failure."""
    if not commands:
        return
    argv = [find_tool(NFT, _MISSING), "-j", "-f", "-"]
    proc = run_tool(argv, json.dumps({"nftables": list(commands)}))
    if proc.returncode != 0:
        raise tool_failure(argv, proc)


def nft_list(*what: str) -> list[dict[str, Any]] | None:
    """``nft -j list <what>``: the listed objects (metainfo dropped), or None if not there.

    A table or chain that does not exist is None, not an error: callers that
    tear down must accept "already gone".
    """
    argv = [find_tool(NFT, _MISSING), "-j", "list", *what]
    proc = run_tool(argv)
    if proc.returncode != 0:
        if "No such file or directory" in proc.stderr:
            return None
        raise tool_failure(argv, proc)
    objects = json.loads(proc.stdout or '{"nftables": []}').get("nftables", [])
    return [obj for obj in objects if "metainfo" not in obj]


def rules_commented(
    objects: Sequence[Mapping[str, Any]] | None, chain: str, comment_prefix: str
) -> list[Mapping[str, Any]]:
    """The rules of ``chain`` among ``objects`` whose comment starts with ``comment_prefix``."""
    found: list[Mapping[str, Any]] = []
    for obj in objects or ():
        rule = obj.get("rule")
        if rule is None or rule.get("chain") != chain:
            continue
        if str(rule.get("comment", "")).startswith(comment_prefix):
            found.append(rule)
    return found
