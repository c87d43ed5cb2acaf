"""A small container runtime on cnilib: two networks per container, CHECK, DEL and GC.

Run as root: ``python3 examples/runtime.py``. Only ``ip`` (iproute2) is needed:
the plugins are cnilib's own, run in-process (no plugin process is started).

What a runtime does with CNI, in the order it does it:

1. load its networks: ``runtime-bridge.conflist`` (bridge + host-local,
   10.250.10.0/24) and ``runtime-ptp.conflist`` (ptp + host-local,
   10.250.20.0/24), both beside this file;
2. start a container: ADD both networks (``eth0``, ``eth1``) with
   ``CNI.setup_networks``, which removes the first again if the second fails;
3. CHECK them, and read back what the cache remembers (``cached_attachments``,
   ``cached_result``): this is how a restarted runtime finds its containers;
4. lose track of a second container (its namespace is gone, nobody called
   DEL) and let GC, given the containers still running, collect it;
5. stop the first container: DEL both networks.

Nothing touches the machine's own network namespace: a *node* namespace plays
the host (the plugins do their host-side work there), the containers get
namespaces beside it, the IPAM store and the result cache live in a temporary
directory, and every namespace is deleted at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("cnilib") is None:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parent))

import cnilib  # noqa: E402 -- after the sys.path fix-up above
from cnilib.results import ResultV100  # noqa: E402
from cnilib.testing import NetNS, create_netns  # noqa: E402

NETWORK_FILES = ("runtime-bridge.conflist", "runtime-ptp.conflist")
OWNER = "example-runtime"  # tags our cache entries: GC leaves other runtimes' alone


def load_networks(ipam_dir: Path) -> list[cnilib.NetworkConfigList]:
    """The networks beside this file, with host-local's store moved into *ipam_dir*."""
    networks = []
    for name in NETWORK_FILES:
        raw = json.loads((HERE / name).read_bytes())
        for plugin in raw["plugins"]:
            if "ipam" in plugin:
                plugin["ipam"]["dataDir"] = str(ipam_dir)
        networks.append(cnilib.conflist_from_bytes(json.dumps(raw, indent=2).encode()))
    return networks


def describe(result: cnilib.Result | None) -> str:
    """One line: the container's addresses (with gateways) and the host-side interface."""
    if result is None:
        return "(no result)"
    current = result.convert_to("1.1.0")  # one shape to read, whatever the plugin answered
    assert isinstance(current, ResultV100)
    ips = ", ".join(
        f"{ip.address} gw {ip.gateway}" if ip.gateway else str(ip.address) for ip in current.ips
    )
    host = [i.name for i in current.interfaces if not i.sandbox]
    return f"{ips}  host side: {', '.join(host) or '-'}"


def show_cached(
    cni: cnilib.CNI, networks: Sequence[cnilib.NetworkConfigList], container_id: str = ""
) -> None:
    """What the cache remembers: every attachment (of one container, if given)."""
    by_name = {n.name: n for n in networks}
    entries = cni.cached_attachments(container_id or None)
    print(f"--- cached attachments{f' of {container_id}' if container_id else ''}: {len(entries)}")
    for entry in entries:
        rt = cnilib.RuntimeConf(entry.container_id, entry.netns, entry.ifname)
        result = cni.cached_result(by_name[entry.network_name], rt)
        print(f"  {entry.container_id}  {entry.ifname}  {entry.network_name}  {describe(result)}")


def addresses(ns: NetNS) -> str:
    """The IPv4 addresses of each link in *ns*, as ``ip -br addr`` lists them."""
    links = (line.split() for line in ns.exec("ip", "-br", "-4", "addr").stdout.splitlines())
    return ", ".join(f"{name.split('@')[0]} {' '.join(addrs)}" for name, _, *addrs in links)


def reservations(ipam_dir: Path) -> list[str]:
    """host-local's store: one file per allocated address, named by the address."""
    return sorted(
        f"{path.parent.name}:{path.name}"
        for path in ipam_dir.glob("*/*")
        if path.name != "lock" and not path.name.startswith("last_reserved_ip.")
    )


def run(node: NetNS, web: NetNS, batch: NetNS, tmp: Path) -> None:
    """Open the runtime's CNI handle, use it, close it (ending the executor's idle threads)."""
    ipam_dir = tmp / "ipam"
    with cnilib.CNI(
        ["/usr/lib/cni"],  # CNI_PATH: plugins need one, even when none is exec'd
        cache_dir=tmp / "cache",
        executor=cnilib.InProcessExecutor(host_netns=node.path),  # host side in the node ns
        owner=OWNER,
    ) as cni:
        print(f"node namespace {node.name}; containers web ({web.name}), batch ({batch.name})")
        lifecycle(cni, load_networks(ipam_dir), web, batch, ipam_dir)


def lifecycle(
    cni: cnilib.CNI,
    networks: Sequence[cnilib.NetworkConfigList],
    web: NetNS,
    batch: NetNS,
    ipam_dir: Path,
) -> None:
    """The runtime's part: everything CNI."""
    # Start "web": ADD both networks, eth0 and eth1 (all or nothing).
    for item in cni.setup_networks("web", web.path, networks):
        print(f"ADD web {item.ifname} {item.network}: {describe(item.result)}")
    cni.check_networks("web", web.path, networks)
    print("CHECK web: both networks are in place")
    print(f"--- inside web, the kernel says: {addresses(web)}")
    show_cached(cni, networks, "web")

    # Start "batch", then lose it: its namespace goes away and nobody calls DEL
    # (the runtime crashed, say). Its cache entries and addresses stay behind.
    cni.setup_networks("batch", batch.path, networks)
    batch.delete()
    print("--- batch's namespace deleted without DEL; addresses still reserved:")
    print("  " + " ".join(reservations(ipam_dir)))

    # GC: the runtime names the attachments it still runs; the rest is stale.
    for index, network in enumerate(networks):
        report = cni.gc_network_list(network, [("web", f"eth{index}")])
        stale = " ".join(f"{e.container_id}/{e.ifname}" for e in report.stale)
        deleted = " ".join(f"{e.container_id}/{e.ifname}" for e in report.deleted)
        print(f"GC {network.name}: stale {stale or '-'}; deleted {deleted or '-'}")
    print("--- after GC, addresses reserved: " + " ".join(reservations(ipam_dir)))
    show_cached(cni, networks)

    # Stop "web": DEL both networks (last first).
    cni.teardown_networks("web", web.path, networks)
    print("DEL web: both networks removed")
    show_cached(cni, networks)
    print(f"--- addresses reserved: {' '.join(reservations(ipam_dir)) or 'none'}")


def new_netns(cleanup: contextlib.ExitStack, prefix: str) -> NetNS:
    """A namespace that *cleanup* deletes, however the run ends."""
    ns = create_netns(prefix)
    cleanup.callback(ns.delete)  # idempotent: deleting batch's twice is fine
    return ns


def main() -> int:
    """Make the namespaces, run, and delete them all; exit status 1 with one line on failure."""
    try:
        with (
            tempfile.TemporaryDirectory(prefix="cnilib-runtime-") as tmp,
            contextlib.ExitStack() as cleanup,  # every callback runs, even if one fails
        ):
            node = new_netns(cleanup, "cnilib-rt-node")
            web = new_netns(cleanup, "cnilib-rt-web")
            batch = new_netns(cleanup, "cnilib-rt-batch")
            run(node, web, batch, Path(tmp))
    except Exception as exc:
        message = " ".join(str(exc).split())  # one line, whatever the error carried
        print(f"runtime example failed: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
