"""cnilib demo: attach a throwaway "container" to a bridge network.

Run as root: ``python3 examples/demo.py``. By default the plugins are cnilib's
own, run in-process (``examples/inprocess.conflist``: bridge with host-local
and ipMasq, then the chained portmap, bandwidth and firewall; loopback from
``examples/loopback.conflist``): no plugin process is started, and only ``ip``
(iproute2) and ``iptables`` are needed. The container gets a port mapping
(the node's port 8080 to the container's 80) and a bandwidth limit through
capability arguments, and the demo talks to a small server in the container
through the node's port. ``--go`` runs Debian's Go reference plugins from
/usr/lib/cni instead (``containernetworking-plugins``), on
``examples/bridge.conflist`` (bridge with ipMasq + portmap, no mapping asked
for: Go's portmap 1.1.1 fails CHECK with one).

Nothing touches the machine's own network namespace: the demo creates a *node*
namespace that plays the host (in-process plugins do their host-side work
there; binaries are exec'd inside it) and a *container* namespace beside it,
keeps the IPAM store and the result cache in a temporary directory, and
deletes all of it at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("cnilib") is None:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parent))

import cnilib  # noqa: E402 -- after the sys.path fix-up above
from cnilib.testing import NetNS, create_netns  # noqa: E402

PLUGIN_DIR = "/usr/lib/cni"
USE_GO = "--go" in sys.argv[1:]
HOST_PORT, CONTAINER_PORT = 8080, 80
CAPABILITIES: dict[str, cnilib.JSONLike] = {
    "portMappings": [{"hostPort": HOST_PORT, "containerPort": CONTAINER_PORT, "protocol": "tcp"}],
    # bits per second and bits: 10 Mbit/s each way, bursts of 1 Mbit
    "bandwidth": {"ingressRate": 10_000_000, "ingressBurst": 1_000_000,
                  "egressRate": 10_000_000, "egressBurst": 1_000_000},
}  # fmt: skip

# The container's server: one line to each TCP connection, until it is killed.
SERVER = f"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {CONTAINER_PORT})); s.listen(4); print("ready", flush=True)
while True:
    c, peer = s.accept(); c.sendall(f"hello from the container to {{peer[0]}}".encode()); c.close()
"""
CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as c:
    print(c.recv(200).decode())
"""


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


@contextlib.contextmanager
def server_in(ctr: NetNS) -> Iterator[None]:
    """:data:`SERVER` running in the container for the block."""
    proc = subprocess.Popen(
        [*ctr.exec_prefix, sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the container's server did not start")
        yield
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def through_the_host_port(node: NetNS, ctr: NetNS, address: str) -> None:
    """Connect from the node to its own ``address``:HOST_PORT; portmap's DNAT takes the
    connection to the container's server."""
    with server_in(ctr):
        answer = node.exec(sys.executable, "-c", CLIENT, address, str(HOST_PORT)).stdout.strip()
    print(f"--- portmap: {address}:{HOST_PORT} on the node answered: {answer}")


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
    # Go's portmap 1.1.1 fails CHECK with a mapping on a host with ip6tables
    # (containernetworking/plugins#819): with --go, no mapping is asked for.
    capabilities = None if USE_GO else CAPABILITIES
    eth_rt = cnilib.RuntimeConf(
        container_id="demo", netns=ctr.path, ifname="eth0", capability_args=capabilities
    )

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
    if not USE_GO:
        assert result is not None
        through_the_host_port(node, ctr, str(result.as_v1().ips[0].gateway))
        qdiscs = node.exec("tc", "qdisc", "show").stdout.splitlines()
        print(f"--- bandwidth: the node's rate limits (tc qdisc show in {node.name})")
        print("\n".join(line for line in qdiscs if " tbf " in line))

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
