"""The firewall plugin's iptables rules, exactly as Go's ``iptables.go`` and
``ingresspolicy.go`` make them, in the ``filter`` table of the host namespace.

Per address family that has addresses in ``prevResult``::

    -N CNI-FORWARD
    -N CNI-ADMIN                        (iptablesAdminChainName)
    -I FORWARD 1 -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD
    -I CNI-FORWARD 1 -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN
    -A CNI-FORWARD -d <ip>/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    -A CNI-FORWARD -s <ip>/32 -j ACCEPT

(``/128`` and ``ip6tables`` for IPv6), each only if not there yet. With
``ingressPolicy`` ``same-bridge`` (or ``isolated``), for the bridge named
first in ``prevResult.interfaces``, all commented ``CNI firewall plugin
rules (ingressPolicy: same-bridge)``::

    -N CNI-ISOLATION-STAGE-1
    -N CNI-ISOLATION-STAGE-2
    -I FORWARD 1 -j CNI-ISOLATION-STAGE-1
    -I CNI-ISOLATION-STAGE-1 1 -i <br> ! -o <br> -j CNI-ISOLATION-STAGE-2
    -A CNI-ISOLATION-STAGE-1 -j RETURN
    -I CNI-ISOLATION-STAGE-2 1 -o <br> -j DROP
    -A CNI-ISOLATION-STAGE-2 -j RETURN

and for ``isolated`` also ``-I CNI-ISOLATION-STAGE-1 1 -i <br> -o <br> -j
DROP`` commented ``... (ingressPolicy: isolated)``.

DEL removes the two per-address rules (each once, as ``iptables -D``); the
chains, the jumps and the isolation rules stay, as in Go (other containers
may use them). Where Go execs iptables once per check and per change, each
family's table is listed once (``iptables -S``) and changed in one
``iptables-restore --noflush`` transaction; a missing chain is made first
with ``iptables -N`` (declaring it in the transaction would flush it if a
concurrent call had just made it).

ADD and DEL hold an exclusive ``flock`` on the host namespace (its nsfs
file, :mod:`cnilib.plugins._hosttools.netns_lock`) from the listing to the
last change, so that cnilib's calls in other threads and processes on the same
host namespace wait: two ADDs listing the table at once would each insert the
``FORWARD`` jump, the admin jump and the isolation rules they both found missing.
Go's binary takes no lock (its check-then-insert races too, with a narrower
window), so a Go call running at the same time is not held back.

Run these on the host namespace's worker (:func:`cnilib.netlink.run_in_netns`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cnilib.errors import CNIError, ErrorCode, PluginError
from cnilib.plugins._hostside import fail
from cnilib.plugins._hosttools.iptables_text import listing_rules, restore_line, saved_words
from cnilib.plugins._hosttools.netns_lock import host_netns_lock
from cnilib.plugins._hosttools.tools import find_tool, run_tool, tool_exists, tool_failure
from cnilib.plugins.meta._firewall_conf import go_quote
from cnilib.results import IPInterface

__all__ = [
    "ADMIN_COMMENT",
    "FILTER_COMMENT",
    "FORWARD_CHAIN",
    "STAGE1",
    "STAGE2",
    "FamilyRules",
    "check_rules",
    "delete_rules",
    "saved_words",
    "setup_rules",
]

log = logging.getLogger(__name__)

FORWARD_CHAIN = "CNI-FORWARD"
STAGE1 = "CNI-ISOLATION-STAGE-1"
STAGE2 = "CNI-ISOLATION-STAGE-2"
FILTER_COMMENT = "CNI firewall plugin rules"
ADMIN_COMMENT = "CNI firewall plugin admin overrides"
_POLICY_COMMENT = "CNI firewall plugin rules (ingressPolicy: {})"
_BUILTIN = "FORWARD"
_TOOLS = {4: ("iptables", "iptables-restore"), 6: ("ip6tables", "ip6tables-restore")}
_GO_PROTOCOL = {4: 0, 6: 1}  # go-iptables' Protocol, as Go's error prints it

Spec = tuple[str, ...]
"""A rule as ``iptables -S`` prints it, without ``-A <chain>``."""


def _comment(text: str) -> Spec:
    return ("-m", "comment", "--comment", text)


def host_cidr(ip: IPInterface) -> str:
    """Go's ``ipString``: the address alone, ``/32`` or ``/128``."""
    return f"{ip.ip}/{ip.max_prefixlen}"


def filter_jump() -> Spec:
    """``FORWARD``'s jump to ``CNI-FORWARD`` (Go ``generateFilterRule``)."""
    return (*_comment(FILTER_COMMENT), "-j", FORWARD_CHAIN)


def admin_jump(admin_chain: str) -> Spec:
    """``CNI-FORWARD``'s jump to the admin chain (Go ``generateAdminRule``)."""
    return (*_comment(ADMIN_COMMENT), "-j", admin_chain)


def address_rules(cidr: str) -> tuple[Spec, Spec]:
    """Go ``getPrivChainRules``: replies to the address, and all from it."""
    return (
        ("-d", cidr, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
        ("-s", cidr, "-j", "ACCEPT"),
    )


def _go_words(spec: Spec) -> str:
    """A rule as Go's ``%v`` prints its ``[]string`` (the words, unquoted)."""
    return "[" + " ".join(spec) + "]"


class FamilyRules:
    """What one family's table should hold for a call: its addresses and, for an
    isolating ingress policy, the bridge."""

    def __init__(
        self,
        version: int,
        cidrs: Sequence[str],
        admin_chain: str,
        bridge: str = "",
        policy: str = "",
    ) -> None:
        self.version = version
        self.cidrs = list(cidrs)
        self.admin_chain = admin_chain
        self.bridge = bridge
        self.policy = policy

    def isolation(self) -> list[tuple[str, Spec, bool]]:
        """Go ``setupIsolationChains``' rules in its order: (chain, rule, prepend)."""
        if not self.bridge:
            return []
        br = self.bridge
        same = _comment(_POLICY_COMMENT.format("same-bridge"))
        rules: list[tuple[str, Spec, bool]] = [
            (_BUILTIN, (*same, "-j", STAGE1), True),
            (STAGE1, ("-i", br, "!", "-o", br, *same, "-j", STAGE2), True),
        ]
        if self.policy == "isolated":
            isolated = _comment(_POLICY_COMMENT.format("isolated"))
            rules.append((STAGE1, ("-i", br, "-o", br, *isolated, "-j", "DROP"), True))
        rules += [
            (STAGE1, (*same, "-j", "RETURN"), False),
            (STAGE2, ("-o", br, *same, "-j", "DROP"), True),
            (STAGE2, (*same, "-j", "RETURN"), False),
        ]
        return rules


class _Table:
    """One family's filter table as listed, and the changes made to it, in order."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.chains: dict[str, list[Spec]] = {}
        self.new_chains: list[str] = []
        self.ops: list[tuple[str, ...]] = []
        for words in _list(version):
            if words[:1] in (("-P",), ("-N",)) and len(words) >= 2:
                self.chains.setdefault(words[1], [])
            elif words[:1] == ("-A",) and len(words) >= 2:
                self.chains.setdefault(words[1], []).append(tuple(words[2:]))

    def has(self, chain: str, spec: Spec) -> bool:
        return spec in self.chains.get(chain, ())

    def ensure_chain(self, chain: str) -> None:
        if chain not in self.chains:
            self.chains[chain] = []
            self.new_chains.append(chain)

    def insert_unique(self, chain: str, spec: Spec, *, prepend: bool = True) -> None:
        """Go ``InsertUnique`` / ``ensureFirstChainRule`` (position 1) or ``AppendUnique``."""
        if self.has(chain, spec):
            return
        if prepend:
            self.chains[chain].insert(0, spec)
            self.ops.append(("-I", chain, "1", *spec))
        else:
            self.chains[chain].append(spec)
            self.ops.append(("-A", chain, *spec))

    def delete(self, chain: str, spec: Spec) -> None:
        if self.has(chain, spec):
            self.chains[chain].remove(spec)
            self.ops.append(("-D", chain, *spec))

    def commit(self) -> None:
        tool, restore = (_tool(self.version, i) for i in (0, 1))
        for chain in self.new_chains:
            argv = [tool, "-w", "-t", "filter", "-N", chain]
            proc = run_tool(argv)
            if proc.returncode != 0 and "already exists" not in proc.stderr:
                if "clash with target name" in proc.stderr:  # only a configured name can
                    raise PluginError(
                        f"invalid iptablesAdminChainName {go_quote(chain)}: iptables refuses "
                        "it: chain name may not clash with target name",
                        code=ErrorCode.INVALID_NETWORK_CONFIG,
                    )
                raise tool_failure(argv, proc)
        if self.ops:
            text = "\n".join(["*filter", *(restore_line(op) for op in self.ops), "COMMIT", ""])
            argv = [restore, "-w", "--noflush"]
            proc = run_tool(argv, text)
            if proc.returncode != 0:
                raise tool_failure(argv, proc)
        self.new_chains, self.ops = [], []


def _tool(version: int, which: int) -> str:
    return find_tool(
        _TOOLS[version][which], f"could not initialize iptables protocol {_GO_PROTOCOL[version]}"
    )


def _list(version: int) -> list[tuple[str, ...]]:
    argv = [_tool(version, 0), "-w", "-t", "filter", "-S"]
    proc = run_tool(argv)
    if proc.returncode != 0:
        raise tool_failure(argv, proc)
    return listing_rules(proc.stdout)


def setup_rules(families: Sequence[FamilyRules]) -> None:
    """ADD: Go's ``iptablesBackend.Add`` then ``setupIngressPolicy``, per family.

    Each family's changes are one transaction; when a later family's fail, the address
    rules an earlier family's added are taken out again (best effort), so a failed ADD
    lets no address through (Go cleans up only the failing family's)."""
    with host_netns_lock("firewall"):
        added: list[tuple[int, list[Spec]]] = []
        try:
            for fam in families:
                added.append((fam.version, _setup(fam)))  # noqa: PERF401 (kept on a failure)
        except CNIError:
            for version, specs in added:
                _undo(version, specs)
            raise


def _setup(fam: FamilyRules) -> list[Spec]:
    """One family's ADD; the address rules it added (not there before)."""
    table = _Table(fam.version)
    added: list[Spec] = []
    if fam.cidrs:
        table.ensure_chain(FORWARD_CHAIN)
        table.ensure_chain(fam.admin_chain)
        table.insert_unique(_BUILTIN, filter_jump())
        table.insert_unique(FORWARD_CHAIN, admin_jump(fam.admin_chain))
        for cidr in fam.cidrs:
            for spec in address_rules(cidr):
                if not table.has(FORWARD_CHAIN, spec):
                    added.append(spec)
                table.insert_unique(FORWARD_CHAIN, spec, prepend=False)
    isolation = fam.isolation()
    if isolation:
        table.ensure_chain(STAGE1)
        table.ensure_chain(STAGE2)
        for chain, spec, prepend in isolation:
            table.insert_unique(chain, spec, prepend=prepend)
    table.commit()
    return added


def _undo(version: int, specs: Sequence[Spec]) -> None:
    """Remove address rules a failed ADD made; logged when that fails too."""
    try:
        table = _Table(version)
        for spec in specs:
            table.delete(FORWARD_CHAIN, spec)
        table.commit()
    except CNIError as exc:
        log.warning("firewall ADD failed: IPv%d rules it made not removed: %s", version, exc)


def delete_rules(families: Sequence[FamilyRules]) -> None:
    """DEL: remove each address's two rules from ``CNI-FORWARD``. Best effort, as Go's
    (which ignores every error here): a family whose tool is missing holds no rules,
    and a failing tool is logged."""
    with host_netns_lock("firewall"):
        _delete(families)


def _delete(families: Sequence[FamilyRules]) -> None:
    for fam in families:
        if not fam.cidrs or not tool_exists(_TOOLS[fam.version][0]):
            continue
        # A second try, on a fresh listing, for a rule that went between the listing
        # and the transaction (a Go DEL does not take the lock): one missing rule
        # fails the whole transaction.
        for attempt in (1, 2):
            try:
                table = _Table(fam.version)
                for cidr in fam.cidrs:
                    for spec in address_rules(cidr):
                        table.delete(FORWARD_CHAIN, spec)
                table.commit()
                break
            except CNIError as exc:
                if attempt == 2:
                    log.warning("firewall DEL: IPv%d rules not removed: %s", fam.version, exc)


def check_rules(families: Sequence[FamilyRules]) -> None:
    """CHECK: the jumps and each address's rules are there (Go's texts), and so are the
    isolation rules of the ingress policy (Go does not look at those). Nothing is
    created (Go's CHECK makes the two chains when they are missing)."""
    for fam in families:
        if not fam.cidrs:
            continue
        table = _Table(fam.version)
        if not table.has(_BUILTIN, filter_jump()):
            raise fail(f"expected FORWARD rule {_go_words(filter_jump())} not found")
        if not table.has(FORWARD_CHAIN, admin_jump(fam.admin_chain)):
            raise fail(
                f"expected {FORWARD_CHAIN} rule {_go_words(admin_jump(fam.admin_chain))} not found"
            )
        for cidr in fam.cidrs:
            for spec in address_rules(cidr):
                if not table.has(FORWARD_CHAIN, spec):
                    raise fail(f"expected rule {_go_words(spec)} not found")
        for chain, spec, _ in fam.isolation():
            if not table.has(chain, spec):
                raise fail(f"expected {chain} rule {_go_words(spec)} not found")
