"""The ``firewall`` plugin's configuration: its keys as Go decodes them, the checks
made before any rule is touched, and which backend serves a call.

Go's ``getBackend`` takes ``"iptables"``, ``"firewalld"``, or anything else
meaning "firewalld if it is running on the D-Bus system bus, else iptables".
cnilib has no D-Bus client, so only the iptables backend exists here:

- ``"backend": "firewalld"`` is refused (ADD and CHECK) with
  :func:`firewalld_unsupported`'s error. DEL with it succeeds and does
  nothing: cnilib's ADD never made anything through firewalld;
- no ``backend`` means iptables, unless firewalld is running (its system bus
  socket and a process named ``firewalld``), where Go would use firewalld:
  then ADD and CHECK are refused rather than putting the rules somewhere the
  administrator does not expect;
- any other value is refused (Go silently takes its default for it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import attrs

from cnilib.errors import ErrorCode, PluginError
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._hostside import fail
from cnilib.plugins._netconf import conf_str

__all__ = [
    "BACKEND_FIREWALLD",
    "BACKEND_IPTABLES",
    "DEFAULT_ADMIN_CHAIN",
    "INGRESS_POLICIES",
    "POLICY_ISOLATED",
    "POLICY_OPEN",
    "POLICY_SAME_BRIDGE",
    "FirewallConf",
    "firewalld_running",
    "firewalld_unsupported",
    "go_quote",
]

BACKEND_IPTABLES = "iptables"
BACKEND_FIREWALLD = "firewalld"
DEFAULT_ADMIN_CHAIN = "CNI-ADMIN"
DEFAULT_ZONE = "trusted"

POLICY_OPEN = "open"
POLICY_SAME_BRIDGE = "same-bridge"
POLICY_ISOLATED = "isolated"
INGRESS_POLICIES = ("", POLICY_OPEN, POLICY_SAME_BRIDGE, POLICY_ISOLATED)
"""``""`` is the default, ``open``."""

_STRUCT = "FirewallNetConf"
_SYSTEM_BUS = (Path("/run/dbus/system_bus_socket"), Path("/var/run/dbus/system_bus_socket"))
_MAX_CHAIN_NAME = 28  # iptables' XT_EXTENSION_MAXNAMELEN (29) less the NUL
_RESERVED_TARGETS = frozenset(
    {"ACCEPT", "DROP", "RETURN", "QUEUE", "REJECT", "LOG", "FORWARD", "INPUT", "OUTPUT"}
)


def go_quote(text: str) -> str:
    """Go's ``%q`` of ``text`` for the printable texts configs hold."""
    return json.dumps(text, ensure_ascii=False)


def _admin_chain(name: str) -> str:
    """``iptablesAdminChainName``, checked so that iptables never sees a bad name (Go
    passes it as is, and iptables fails with a usage message after some rules are in)."""
    if not name:
        return DEFAULT_ADMIN_CHAIN
    bad = ""
    if len(name) > _MAX_CHAIN_NAME:
        bad = f"longer than {_MAX_CHAIN_NAME} characters"
    elif any(ch.isspace() or not ch.isprintable() for ch in name) or '"' in name:
        bad = "has a blank, quote or control character"
    elif name[0] in "-!":
        bad = f"starts with {name[0]!r}"
    elif name in _RESERVED_TARGETS or name == "CNI-FORWARD":  # case-sensitive, as iptables
        bad = "is a built-in chain or target, or the plugin's own CNI-FORWARD"
    if bad:
        raise PluginError(
            f"invalid iptablesAdminChainName {go_quote(name)}: {bad}",
            code=ErrorCode.INVALID_NETWORK_CONFIG,
        )
    return name


@attrs.frozen
class FirewallConf:
    """The firewall keys of one call."""

    backend: str
    """As configured (``""``: Go's default)."""
    admin_chain: str
    zone: str
    ingress_policy: str

    @classmethod
    def load(cls, req: PluginRequest, *, lenient: bool = False) -> FirewallConf:
        """Go's ``parseConf`` (the keys' types, the zone's default), then cnilib's checks:
        a known backend and ingress policy, a usable admin chain name. ``lenient`` (DEL)
        skips those three: DEL uses none of them, and a configuration that ADD refused
        (or that changed since) must not keep an attachment's rules from going, as
        Go's DEL lets it."""
        config = req.config
        conf = cls(
            backend=conf_str(config, "backend", _STRUCT),
            admin_chain=conf_str(config, "iptablesAdminChainName", _STRUCT),
            zone=conf_str(config, "firewalldZone", _STRUCT) or DEFAULT_ZONE,
            ingress_policy=conf_str(config, "ingressPolicy", _STRUCT),
        )
        if lenient:
            return conf
        if conf.backend not in ("", BACKEND_IPTABLES, BACKEND_FIREWALLD):
            raise PluginError(
                f"unknown firewall backend {go_quote(conf.backend)}: "
                f'use "{BACKEND_IPTABLES}" (or "{BACKEND_FIREWALLD}", which cnilib does not '
                "support)",
                code=ErrorCode.INVALID_NETWORK_CONFIG,
            )
        if conf.ingress_policy not in INGRESS_POLICIES:
            raise fail(f"unknown ingress policy: {go_quote(conf.ingress_policy)}")
        return attrs.evolve(conf, admin_chain=_admin_chain(conf.admin_chain))

    @property
    def isolates(self) -> bool:
        """Whether the ingress policy makes the per-bridge isolation chains."""
        return self.ingress_policy in (POLICY_SAME_BRIDGE, POLICY_ISOLATED)

    def uses_iptables(self) -> bool:
        """Whether the iptables backend serves ADD and CHECK; raises where Go would use
        firewalld (configured, or running with no backend configured)."""
        if self.backend == BACKEND_FIREWALLD:
            raise firewalld_unsupported()
        if not self.backend and firewalld_running():
            raise fail(
                "firewalld is running, and Go's firewall plugin would put this container "
                "into its zone over D-Bus, which cnilib's cannot do: set "
                f'"backend": "{BACKEND_IPTABLES}" to use iptables rules anyway'
            )
        return True


def firewalld_unsupported() -> PluginError:
    """The error of ``"backend": "firewalld"``."""
    return fail(
        f'firewall backend "{BACKEND_FIREWALLD}" is not supported by cnilib (it has no D-Bus '
        f'client): use "backend": "{BACKEND_IPTABLES}", or Go\'s firewall binary'
    )


def firewalld_running() -> bool:
    """Whether firewalld looks up: the system bus socket exists and a process is named
    ``firewalld`` (Go asks the bus for the name's owner)."""
    if not any(path.exists() for path in _SYSTEM_BUS):
        return False
    try:
        pids = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return False
    for pid in pids:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue  # gone meanwhile
        if comm == BACKEND_FIREWALLD:
            return True
    return False
