"""What the chained plugins (tuning, portmap, bandwidth, firewall, sbr) share, checked
across them without a kernel."""

from __future__ import annotations

import json

import pytest

from cnilib._json import JSONValue
from cnilib.errors import CNIError
from cnilib.invoke import Command
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._registry import BUILTIN_PLUGINS, load_plugin
from cnilib.plugins._versions import version_only
from tests.unit._guards import NO_SUCH_HOST

CHAINED = ("tuning", "portmap", "bandwidth", "firewall", "sbr")


def _request(plugin_type: str, prev: JSONValue) -> PluginRequest:
    config: dict[str, JSONValue] = {
        "cniVersion": "1.0.0",
        "name": "net1",
        "type": plugin_type,
        "prevResult": prev,
        "ingressRate": 1000,
        "ingressBurst": 1000,
        "runtimeConfig": {
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
        },
    }
    return PluginRequest(
        command=Command.ADD, container_id="c1", netns="/nonexistent/ns", ifname="eth0",
        args=(), path=(), config=config, stdin=json.dumps(config).encode(),
        host_netns=NO_SUCH_HOST,
    )  # fmt: skip


@pytest.mark.parametrize("plugin_type", CHAINED)
@pytest.mark.parametrize("prev", ["x", [1], 5, True])
def test_a_prev_result_that_is_not_an_object_is_a_plugin_error(
    plugin_type: str, prev: JSONValue
) -> None:
    """A ``prevResult`` that is not a JSON object is a cnilib error (a missing
    ``prevResult``, or a failure opening the namespace), never a crash."""
    plugin = load_plugin(plugin_type)
    with pytest.raises(CNIError):
        plugin.add(_request(plugin_type, prev))


@pytest.mark.parametrize("plugin_type", sorted(BUILTIN_PLUGINS))
def test_version_fast_path_matches_each_plugin(plugin_type: str) -> None:
    """The executables answer VERSION without importing the plugin: the answer must be
    the plugin class's own supported versions."""
    answer = json.loads(version_only(plugin_type))
    assert answer["supportedVersions"] == list(load_plugin(plugin_type).supported_versions)
