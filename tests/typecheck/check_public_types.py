"""Code as a runtime author writes it: it must pass ``mypy --strict`` unchanged.

Checked by the project's mypy run (``tests`` is in its ``files``) and by
``tests/unit/test_public_types.py``; never imported by pytest.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import assert_type

import cnilib
from cnilib.results import ResultV100, as_v1, interfaces_view

caps: dict[str, cnilib.JSONValue] = {
    "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
    "dns": {"servers": ["10.1.0.10"]},
}
rt = cnilib.RuntimeConf(
    container_id="ctr1", netns=Path("/run/netns/ctr1"), ifname="eth0", capability_args=caps
)

# Built without annotations: a dict[str, dict[str, int]] is JSON-like too. (mypy
# infers a literal mixing ints and strs as dict[str, object]: annotate such a one.)
bandwidth = {"bandwidth": {"ingressRate": 1000, "egressRate": 1000}}
rt2 = cnilib.RuntimeConf("ctr1", "/run/netns/ctr1", "eth0", capability_args=bandwidth)

# Inline, the literal is checked against the parameter: mixed values are fine.
rt5 = cnilib.RuntimeConf(
    "ctr1",
    "/run/netns/ctr1",
    "eth0",
    capability_args={"portMappings": [{"hostPort": 8080, "protocol": "tcp"}]},
)

# CNI_ARGS as a mapping or as pairs.
rt3 = cnilib.RuntimeConf("ctr1", "/run/netns/ctr1", "eth0", args={"K8S_POD_NAME": "web"})
rt4 = cnilib.RuntimeConf("ctr1", "/run/netns/ctr1", "eth0", args=[("IgnoreUnknown", "1")])

typed_caps: cnilib.CapabilityArgs = bandwidth
obj: cnilib.JSONObject = {"cniVersion": "1.1.0", "name": "net", "plugins": [{"type": "bridge"}]}
assert_type(rt.capability_args["portMappings"], cnilib.JSONValue)


def first_address(cni: cnilib.CNI, conflist: cnilib.NetworkConfigList) -> str | None:
    """A typed 1.x result: .ips needs no isinstance check."""
    result = as_v1(cni.add_network_list(conflist, rt))
    assert_type(result, ResultV100 | None)
    if result is None or not result.ips or result.ips[0].address is None:
        return None
    view = interfaces_view(result, ifname=rt.ifname)
    assert_type(view.ips("eth0"), tuple[IPv4Address | IPv6Address, ...])
    return str(result.ips[0].address.ip)


def all_addresses(cni: cnilib.CNI, nets: list[cnilib.NetworkConfigList]) -> list[str]:
    """setup_networks' outcome folds into go-cni's view."""
    view = interfaces_view(cni.setup_networks("ctr1", "/run/netns/ctr1", nets))
    return [str(c.ip) for info in view.interfaces.values() for c in info.ip_configs]
