"""A test harness for a CNI network, written with cnilib's pytest fixtures.

Copy this file into your project's tests and adapt NETWORK. With cnilib
installed, pytest knows the ``cnilib_*`` fixtures (no conftest needed); run as
root, since plugins need network namespaces::

    python -m pytest examples/test_harness.py

Without the privileges to make namespaces the tests skip, saying why; with
``CNILIB_REQUIRE_PRIVILEGED=1`` (set it in CI) they fail instead.

What the fixtures give each test:

* ``cnilib_cni``: a cnilib.CNI whose plugins treat a throwaway *node*
  namespace as the host (the bridge below is made there, never in the
  machine's own namespace), with its cache in a tmp directory;
* ``cnilib_container()``: a container (a fresh namespace and an ID) to attach;
* ``cnilib_conflist(doc)``: the network, with host-local's store in a tmp dir;
* ``cnilib_fake_plugin(type)``: a plugin that records its calls, here chained
  after bridge as the "audit" step of the network.

Every namespace is deleted after each test, pass or fail, and with it all
that the plugins made.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib.results import IPInterface, ResultV100
from cnilib.testing import ConflistFactory, ContainerFactory, FakePluginFactory

SUBNET = ipaddress.ip_network("10.99.0.0/24")
GATEWAY = "10.99.0.1"

# The network under test: bridge (+ host-local) and an "audit" plugin after it.
NETWORK: dict[str, Any] = {
    "cniVersion": "1.1.0",
    "name": "harness-net",
    "plugins": [
        {
            "type": "bridge",
            "bridge": "harness0",
            "isGateway": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": str(SUBNET)}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        },
        {"type": "audit"},
    ],
}


def latest(result: cnilib.Result | None) -> ResultV100:
    """The result in the newest layout, whatever version the network speaks."""
    assert result is not None
    current = result.convert_to("1.1.0")
    assert isinstance(current, ResultV100)
    return current


def address(result: cnilib.Result | None) -> IPInterface:
    """The one address a network of one interface gives a container."""
    (ip,) = latest(result).ips
    assert ip.address is not None
    return ip.address


def test_add_check_del(
    cnilib_cni: cnilib.CNI,
    cnilib_container: ContainerFactory,
    cnilib_conflist: ConflistFactory,
    cnilib_fake_plugin: FakePluginFactory,
) -> None:
    """ADD gives the container an address on SUBNET with a default route via
    the gateway; the audit step sees bridge's result; CHECK passes; DEL removes it."""
    audit = cnilib_fake_plugin("audit")
    network = cnilib_conflist(NETWORK)
    ctr = cnilib_container()
    rt = ctr.runtime_conf("eth0")

    result = latest(cnilib_cni.add_network_list(network, rt))

    # What the runtime was told ...
    (ip,) = result.ips
    assert ip.address is not None
    assert ip.address.ip in SUBNET
    assert str(ip.gateway) == GATEWAY
    # ... is what the kernel has in the container.
    assert [str(ip.address)] == ctr.addresses("eth0")
    routes = ctr.netns.exec("ip", "route", "show", "default").stdout
    assert f"default via {GATEWAY} dev eth0" in routes

    # The audit plugin ran after bridge and got bridge's result as prevResult.
    assert audit.commands == ["ADD"]
    prev = latest(audit.requests("ADD")[0].prev_result)
    assert [ip] == list(prev.ips)

    cnilib_cni.check_network_list(network, rt)

    cnilib_cni.delete_network_list(network, rt)
    assert ctr.link_names() == ["lo"]
    assert audit.commands == ["ADD", "CHECK", "DEL"]


def test_a_failing_step_rolls_the_network_back(
    cnilib_cni: cnilib.CNI,
    cnilib_container: ContainerFactory,
    cnilib_conflist: ConflistFactory,
    cnilib_fake_plugin: FakePluginFactory,
    cnilib_ipam_dir: Path,
) -> None:
    """When the audit step refuses ADD, the runtime reports its error and undoes
    bridge: no interface is left in the container and the address is free again."""
    cnilib_fake_plugin("audit", errors={"ADD": cnilib.PluginError("denied", code=100)})
    network = cnilib_conflist(NETWORK)
    ctr = cnilib_container()

    with pytest.raises(cnilib.PluginError) as failed:
        cnilib_cni.add_network_list(network, ctr.runtime_conf("eth0"))
    assert failed.value.code == 100
    assert "denied" in str(failed.value)
    assert ctr.link_names() == ["lo"]

    # The address bridge got is free again: host-local's store (in
    # cnilib_ipam_dir) holds no allocation, only its bookkeeping files.
    store = cnilib_ipam_dir / "harness-net"
    assert [f.name for f in store.iterdir() if f.name[0].isdigit()] == []


def test_two_containers_share_the_bridge(
    cnilib_cni: cnilib.CNI,
    cnilib_container: ContainerFactory,
    cnilib_conflist: ConflistFactory,
    cnilib_fake_plugin: FakePluginFactory,
) -> None:
    """Two containers on the network get different addresses and reach each other."""
    cnilib_fake_plugin("audit")
    network = cnilib_conflist(NETWORK)
    a, b = cnilib_container(), cnilib_container()
    addr_a = address(cnilib_cni.add_network_list(network, a.runtime_conf()))
    addr_b = address(cnilib_cni.add_network_list(network, b.runtime_conf()))
    assert addr_a != addr_b

    # Traffic stays between the test's namespaces: a connects to a server in b,
    # across the bridge in the node namespace.
    argv = [*b.netns.exec_prefix, sys.executable, "-c", SERVER, str(addr_b.ip)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            assert server.stdout.readline().strip() == "listening"
            client = a.netns.exec(sys.executable, "-c", CLIENT, str(addr_b.ip))
            assert f"hello {addr_a.ip}" == client.stdout.strip()
        finally:
            server.kill()


# A one-shot TCP server that greets its client by address, and its client.
SERVER = """
import socket, sys
with socket.create_server((sys.argv[1], 7777)) as srv:
    print("listening", flush=True)
    conn, (peer, _) = srv.accept()
    conn.sendall(f"hello {peer}".encode())
    conn.close()
"""
CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], 7777), timeout=10) as conn:
    print(conn.recv(100).decode())
"""
