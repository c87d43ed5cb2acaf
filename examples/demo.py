"""cnilib demo: attach a throwaway "container" to a bridge network.

Run as root: ``python3 examples/demo.py``. By default the plugins are cnilib's
own, run in-process (bridge + host-local from ``examples/inprocess.conflist``,
loopback from ``examples/loopback.conflist``): no plugin process is started and
only ``ip`` (iproute2) is needed. ``--go`` runs Debian's Go reference plugins
from /usr/lib/cni instead (``containernetworking-plugins`` and ``iptables``),
on ``examples/bridge.conflist`` (bridge with ipMasq + portmap).

Nothing touches the machine's own network namespace: the demo creates a *node*
namespace that plays the host (in-process plugins do their host-side work
there; binaries are exec'd inside it) and a *container* namespace beside it,
keeps the IPAM store and the result cache in a temporary directory, and
deletes all of it at the end, also on failure.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("cnilib") is None:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parent))

import cnilib  # noqa: E402 -- after the sys.path fix-up above
from cnilib.testing import NetNS, create_netns  # noqa: E402

PLUGIN_DIR = "/usr/lib/cni"
USE_GO = "--go" in sys.argv[1:]


def load_bridge_conflist(data_dir: Path, name: str) -> cnilib.NetworkConfigList:
    """examples/<name> with host-local's ``dataDir`` moved into *data_dir*."""
    raw = json.loads((HERE / name).read_bytes())
    for plugin in raw["plugins"]:
        if "ipam" in plugin:
            plugin["ipam"]["dataDir"] = str(data_dir)
    return cnilib.conflist_from_bytes(json.dumps(raw, indent=2).encode())


def show(title: str, ns: NetNS, *argv: str) -> None:
    """Print a command's output from inside a namespace."""
    print(f"--- {title}: {' '.join(argv)} (in {ns.name})")
    print(ns.exec(*argv).stdout.rstrip())


def demo(tmp: Path) -> None:
    """Create the namespaces, then ADD, CHECK and DEL both networks, removing everything after."""
    node = create_netns("cnilib-node")
    try:
        ctr = create_netns("cnilib-ctr")
        try:
            ctr.exec("ip", "link", "set", "lo", "down")  # let the loopback plugin do its job
            run(node, ctr, tmp)
        finally:
            ctr.delete()
    finally:
        node.delete()


def run(node: NetNS, ctr: NetNS, tmp: Path) -> None:
    """The CNI part: a loopback network and a bridge network for one container."""
    if USE_GO:
        executor: cnilib.Executor = cnilib.SubprocessExecutor(
            wrapper=node.exec_prefix, timeout=30.0
        )
        bridge = load_bridge_conflist(tmp / "ipam", "bridge.conflist")
        print("plugins: Debian's Go binaries, exec'd inside the node namespace")
    else:
        executor = cnilib.InProcessExecutor(host_netns=node.path)
        bridge = load_bridge_conflist(tmp / "ipam", "inprocess.conflist")
        print("plugins: cnilib's own, in-process (no plugin process is started)")
    cni = cnilib.CNI([PLUGIN_DIR], cache_dir=str(tmp / "cache"), executor=executor)
    loopback = cnilib.conflist_from_file(HERE / "loopback.conflist")
    lo_rt = cnilib.RuntimeConf(container_id="demo", netns=ctr.path, ifname="lo")
    eth_rt = cnilib.RuntimeConf(container_id="demo", netns=ctr.path, ifname="eth0")

    print(f"node namespace {node.name}, container namespace {ctr.name}")
    cni.add_network_list(loopback, lo_rt)
    result = cni.add_network_list(bridge, eth_rt)
    print("--- ADD result of the bridge network:")
    print(result.to_json(indent=4) if result is not None else "(no result)")

    cni.check_network_list(loopback, lo_rt)
    cni.check_network_list(bridge, eth_rt)
    print("--- CHECK: both networks are in place")
    show("container addresses", ctr, "ip", "addr")
    show("container routes", ctr, "ip", "route")
    show("node bridge ports", node, "bridge", "link")

    cni.delete_network_list(bridge, eth_rt)
    cni.delete_network_list(loopback, lo_rt)
    print("--- DEL: both networks removed")
    show("container links after DEL", ctr, "ip", "-br", "link")
    left = cni.cached_attachments()
    print(f"--- cached attachments left: {len(left)}")


def main() -> int:
    """Run the demo; one clear line on stderr and exit status 1 on failure."""
    try:
        with tempfile.TemporaryDirectory(prefix="cnilib-demo-") as tmp:
            demo(Path(tmp))
    except Exception as exc:
        message = " ".join(str(exc).split())  # one line, whatever the error carried
        print(f"demo failed: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
