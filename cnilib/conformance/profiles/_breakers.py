"""Breakers: each undoes one thing a plugin's ADD made, so that its CHECK must fail.

A breaker gets the session, the container and the ADD result; it changes the
container's namespace or the node's (never the machine's own) and says what it
did. What it breaks is read from the ADD result and from the configuration the
session sends (so that a configuration given with ``--config`` is broken too).
A breaker that finds nothing to break raises :class:`NothingToBreakError`: the
kit then reports its own failure rather than a CHECK that had nothing to find.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnilib.conformance._profile import JSONObject
    from cnilib.conformance._sandbox import Container
    from cnilib.conformance._session import Session

__all__ = [
    "Breaker",
    "NothingToBreakError",
    "bandwidth_breaker",
    "container_address_breaker",
    "firewall_breaker",
    "host_local_breaker",
    "loopback_breaker",
    "portmap_breaker",
    "sbr_breaker",
    "tuning_breaker",
    "vrf_breaker",
]

Breaker = Callable[["Session", "Container", "JSONObject"], str]

HOST_LOCAL_DEFAULT_DIR = "/var/lib/cni/networks"
"""host-local's ``dataDir`` when the configuration sets none."""


class NothingToBreakError(RuntimeError):
    """The attachment has nothing this breaker knows how to break."""


def _sent_config(session: Session) -> JSONObject:
    """The configuration the session sends (with name, type and IPAM section)."""
    return session.config(session.newest, runtime_config=False)


def _container_ips(result: JSONObject, ifname: str) -> list[str]:
    """The ADD result's addresses (CIDR) on ``ifname`` in the container: those whose
    ``interface`` names it; with no index on any address, all of them."""
    interfaces = result.get("interfaces") or []
    ips = [ip for ip in result.get("ips") or [] if isinstance(ip, dict) and ip.get("address")]
    on_if = []
    for ip in ips:
        index = ip.get("interface")
        if isinstance(index, int) and 0 <= index < len(interfaces):
            iface = interfaces[index]
            if iface.get("name") == ifname and iface.get("sandbox"):
                on_if.append(str(ip["address"]))
    if on_if:
        return on_if
    if all(not isinstance(ip.get("interface"), int) for ip in ips):
        return [str(ip["address"]) for ip in ips]
    return []


def _first_ip(result: JSONObject, ifname: str) -> str:
    ips = _container_ips(result, ifname)
    if not ips:
        raise NothingToBreakError(f"the ADD result lists no address on {ifname}")
    return ips[0]


def _bare(cidr: str) -> str:
    return cidr.split("/", 1)[0]


def _full_prefix(cidr: str) -> str:
    """The address as a host route's prefix, as firewall's rules name it."""
    ip = _bare(cidr)
    return f"{ip}/128" if ":" in ip else f"{ip}/32"


def container_address_breaker(session: Session, ctr: Container, result: JSONObject) -> str:
    """Delete the container interface's first address from the ADD result (every
    interface plugin's CHECK compares the interface's addresses with its result);
    without an address, delete the interface."""
    ips = _container_ips(result, ctr.ifname)
    if not ips:
        ctr.ns.exec("ip", "link", "del", "dev", ctr.ifname)
        return f"deleted {ctr.ifname} in the container (the ADD result gave it no address)"
    ctr.ns.exec("ip", "addr", "del", ips[0], "dev", ctr.ifname)
    return f"deleted address {ips[0]} from {ctr.ifname} in the container"


def loopback_breaker(session: Session, ctr: Container, result: JSONObject) -> str:
    """Set the container's ``lo`` down again."""
    ctr.ns.exec("ip", "link", "set", "lo", "down")
    return "set lo down in the container"


def host_local_breaker(session: Session, ctr: Container, result: JSONObject) -> str:
    """Delete host-local's reservation file of the ADD's first address
    (``<dataDir>/<network>/<ip>``): CHECK looks the container's reservation up."""
    conf = _sent_config(session)
    ipam = conf.get("ipam") or {}
    data_dir = Path(ipam.get("dataDir") or HOST_LOCAL_DEFAULT_DIR)
    ips = [str(ip["address"]) for ip in result.get("ips") or [] if ip.get("address")]
    if not ips:
        raise NothingToBreakError("the ADD result lists no address")
    reservation = data_dir / str(conf["name"]) / _bare(ips[0])
    if not reservation.is_file():
        raise NothingToBreakError(f"host-local kept no reservation file {reservation}")
    reservation.unlink()
    return f"deleted host-local's reservation file {reservation}"


def tuning_breaker(session: Session, ctr: Container, result: JSONObject) -> str:
    """Write another value to the first sysctl the configuration sets, else change
    the MTU it sets, in the container."""
    conf = _sent_config(session)
    # Only the container's own network sysctls: ip netns exec separates no other
    # namespace, so any other key would be the machine's.
    sysctls = {k: v for k, v in (conf.get("sysctl") or {}).items() if k.startswith("net.")}
    if sysctls:
        key, value = next(iter(sysctls.items()))
        parts = [ctr.ifname if part == "IFNAME" else part for part in key.split(".")]
        path = "/proc/sys/" + "/".join(parts)
        other = "0" if str(value).strip() != "0" else "1"
        ctr.ns.exec("sh", "-c", 'echo "$1" > "$2"', "sh", other, path)
        return f"wrote {other} to {path} in the container (the configuration sets {value})"
    mtu = conf.get("mtu")
    if isinstance(mtu, int) and mtu:
        other_mtu = 1280 if mtu != 1280 else 1300
        ctr.ns.exec("ip", "link", "set", "dev", ctr.ifname, "mtu", str(other_mtu))
        return f"set the MTU of {ctr.ifname} to {other_mtu} in the container (configured: {mtu})"
    raise NothingToBreakError("the configuration sets neither a net.* sysctl nor an MTU")


def portmap_breaker(session: Session, ctr: Container, result: JSONObject) -> str:
    """Empty the container's DNAT chain in the node's nat table (``CNI-DN-<hash>``,
    the name Go's and cnilib's portmap give it), else delete its rules from the
    nftables backend's ``cni_hostport`` table."""
    from cnilib.plugins.meta._portmap_iptables import dnat_chain_name

    node = session.sandbox.node
    chain = dnat_chain_name(str(_sent_config(session)["name"]), ctr.id)
    flushed = node.exec("iptables", "-w", "-t", "nat", "-F", chain, check=False)
    if flushed.returncode == 0:
        return f"flushed the node's iptables nat chain {chain} (the container's DNAT rules)"
    deleted = _delete_nft_rules(session, "cni_hostport", "hostports", ctr.id)
    if deleted:
        return f"deleted {deleted} rule(s) of the container from the node's nft chain hostports"
    raise NothingToBreakError(f"no iptables chain {chain} and no nftables rule of the container")


def _delete_nft_rules(session: Session, table: str, chain: str, comment: str) -> int:
    node = session.sandbox.node
    deleted = 0
    for family in ("ip", "ip6"):
        listing = node.exec("nft", "-j", "list", "chain", family, table, chain, check=False)
        if listing.returncode != 0:
            continue
        for entry in json.loads(listing.stdout).get("nftables", []):
            rule: dict[str, Any] = entry.get("rule") or {}
            if rule.get("comment") == comment:
                node.exec("nft", "delete", "rule", family, table, chain,
                          "handle", str(rule["handle"]))  # fmt: skip
                deleted += 1
    return deleted


def bandwidth_breaker(session: Session, ctr: Container, result: JSONObject) -> str:
    """Replace the TBF qdisc the plugin put at the root of the host veth (ingress
    limit), else of the IFB (egress), by one with another rate: both Go's CHECK
    and cnilib's compare the root TBF's rate with the configuration."""
    node = session.sandbox.node
    host_links = [
        str(iface["name"])
        for iface in result.get("interfaces") or []
        if isinstance(iface, dict) and not iface.get("sandbox") and iface.get("name")
    ]
    for link in host_links:
        shown = node.exec("tc", "-j", "qdisc", "show", "dev", link, "root", check=False)
        qdiscs = json.loads(shown.stdout or "[]") if shown.returncode == 0 else []
        if any(q.get("kind") == "tbf" for q in qdiscs):
            node.exec("tc", "qdisc", "replace", "dev", link, "root",
                      "tbf", "rate", "1234kbit", "burst", "16kb", "latency", "25ms")  # fmt: skip
            return f"replaced the root TBF of {link} in the node by one of rate 1234kbit"
    raise NothingToBreakError(f"no TBF at the root of {', '.join(host_links) or 'any host link'}")


def firewall_breaker(session: Session, ctr: Container, result: JSONObject) -> str:
    """Delete the container address's ``-s <ip> -j ACCEPT`` rule from the node's
    ``CNI-FORWARD`` chain (filter table)."""
    prefix = _full_prefix(_first_ip(result, ctr.ifname))
    tool = "ip6tables" if ":" in prefix else "iptables"
    session.sandbox.node.exec(tool, "-w", "-t", "filter", "-D", "CNI-FORWARD",
                              "-s", prefix, "-j", "ACCEPT")  # fmt: skip
    return f"deleted '-A CNI-FORWARD -s {prefix} -j ACCEPT' from the node's {tool} filter table"


def sbr_breaker(session: Session, ctr: Container, result: JSONObject) -> str:
    """Delete the container's policy rule ``from <address>`` that sbr added."""
    ip = _bare(_first_ip(result, ctr.ifname))
    family = "-6" if ":" in ip else "-4"
    shown = ctr.ns.exec("ip", "-j", family, "rule", "show")
    for rule in json.loads(shown.stdout or "[]"):
        if rule.get("src") == ip:
            ctr.ns.exec("ip", family, "rule", "del", "pref", str(rule["priority"]))
            return f"deleted the rule 'from {ip} lookup {rule.get('table')}' in the container"
    raise NothingToBreakError(f"no policy rule from {ip} in the container")


def vrf_breaker(session: Session, ctr: Container, result: JSONObject) -> str:
    """Take ``CNI_IFNAME`` out of its VRF in the container."""
    ctr.ns.exec("ip", "link", "set", "dev", ctr.ifname, "nomaster")
    return f"took {ctr.ifname} out of its VRF (nomaster) in the container"
