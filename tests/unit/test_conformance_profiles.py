"""The conformance kit's profiles: profile_for's resolution and refusals, and what
every known profile's configuration looks like (no namespaces: a fake sandbox)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any, cast

import pytest

from cnilib.conformance._profile import Kind
from cnilib.conformance.profiles import PROFILES, _builtin, parse_kind, profile_for
from cnilib.errors import InvalidArgumentError

EXPECTED_KINDS = {
    "bridge": Kind.INTERFACE,
    "ptp": Kind.INTERFACE,
    "macvlan": Kind.INTERFACE,
    "ipvlan": Kind.INTERFACE,
    "vlan": Kind.INTERFACE,
    "host-device": Kind.INTERFACE,
    "dummy": Kind.INTERFACE,
    "overlay": Kind.INTERFACE,
    "loopback": Kind.LOOPBACK,
    "host-local": Kind.IPAM,
    "static": Kind.IPAM,
    "dhcp": Kind.IPAM,
    "tuning": Kind.CHAINED,
    "portmap": Kind.CHAINED,
    "bandwidth": Kind.CHAINED,
    "firewall": Kind.CHAINED,
    "sbr": Kind.CHAINED,
    "vrf": Kind.CHAINED,
}


class FakeNode:
    """Answers the node commands a profile's config may run (host-device's device
    check) as if the device were there, and records them."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, ...]] = []

    def exec(self, *argv: str, check: bool = True) -> Any:
        self.commands.append(argv)

        class Done:
            returncode = 0
            stdout = json.dumps([{"ifname": argv[-1]}]) if "-j" in argv else ""
            stderr = ""

        return Done()


class FakeSandbox:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.subnet = ipaddress.ip_network("198.18.7.0/24")
        self.node = FakeNode()

    def directory(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@pytest.fixture
def sandbox(tmp_path: Path) -> Any:
    return FakeSandbox(tmp_path)


def test_every_plugin_type_has_a_profile_of_its_kind() -> None:
    assert {t: p.kind for t, p in PROFILES.items()} == EXPECTED_KINDS


@pytest.mark.parametrize("plugin_type", sorted(EXPECTED_KINDS))
def test_config_is_a_json_object_of_the_type_without_what_the_kit_sets(
    plugin_type: str, sandbox: Any
) -> None:
    conf = PROFILES[plugin_type].config(sandbox)
    assert json.loads(json.dumps(conf)) == conf
    assert "name" not in conf
    assert "cniVersion" not in conf
    assert conf["type"] == plugin_type
    if PROFILES[plugin_type].uses_ipam:
        assert "ipam" not in conf  # the session adds host-local's or static's
    if PROFILES[plugin_type].kind is Kind.IPAM:
        assert conf["ipam"]["type"] == plugin_type


@pytest.mark.parametrize("plugin_type", sorted(EXPECTED_KINDS))
def test_state_dirs_are_in_the_sandbox(plugin_type: str, sandbox: Any) -> None:
    for directory in PROFILES[plugin_type].state_dirs(sandbox):
        assert directory.is_relative_to(sandbox.workdir)


def test_host_local_allocates_in_the_sandbox_subnet_and_keeps_its_files_there(
    sandbox: Any,
) -> None:
    profile = PROFILES["host-local"]
    ipam = profile.config(sandbox)["ipam"]
    (range_,) = ipam["ranges"][0]
    assert ipaddress.ip_network(range_["subnet"]) == sandbox.subnet
    assert ipaddress.ip_address(range_["rangeStart"]) in sandbox.subnet
    # The kit's network's directory only: a shared data dir holds other networks too.
    assert profile.state_dirs(sandbox) == [Path(ipam["dataDir"]) / "conformance"]
    assert Path(ipam["dataDir"]).is_relative_to(sandbox.workdir)


def test_static_address_is_in_the_sandbox_subnet(sandbox: Any) -> None:
    (address,) = PROFILES["static"].config(sandbox)["ipam"]["addresses"]
    assert ipaddress.ip_interface(address["address"]).network == sandbox.subnet


def test_plugins_using_the_sessions_host_local_show_its_files(sandbox: Any) -> None:
    for plugin_type in ("bridge", "ptp", "macvlan", "tuning", "portmap"):
        assert sandbox.directory("host-local") in PROFILES[plugin_type].state_dirs(sandbox)


def test_own_state_dirs_are_configured_into_the_sandbox(sandbox: Any) -> None:
    for plugin_type, key in (("tuning", "dataDir"), ("host-device", "dataDir")):
        conf = PROFILES[plugin_type].config(sandbox)
        assert Path(conf[key]) in PROFILES[plugin_type].state_dirs(sandbox)


def test_portmap_maps_a_host_port() -> None:
    runtime = PROFILES["portmap"].runtime_config
    assert runtime is not None
    (mapping,) = runtime["portMappings"]
    assert mapping["protocol"] == "tcp"
    assert 1024 < mapping["hostPort"] < 65536


def test_daemon_plugins_say_what_they_need() -> None:
    assert "--config" in (PROFILES["dhcp"].needs_daemon or "")
    assert all(p.needs_daemon is None for t, p in PROFILES.items() if t != "dhcp")


def test_the_kit_plays_the_overlay_agent_only_in_its_own_run_dir(tmp_path: Path) -> None:
    """The overlay profile writes the node state file the agent would (in the kit's
    runDir); with a configuration of the user's it writes nothing (the real agent's)."""
    from cnilib.plugins.main._overlay_state import read_node_state, state_path

    class FakeSandbox:
        workdir = tmp_path
        subnet = ipaddress.IPv4Network("198.18.7.0/24")

        def directory(self, name: str) -> Path:
            path = tmp_path / name
            path.mkdir(exist_ok=True)
            return path

    sandbox = cast(Any, FakeSandbox())
    profile = PROFILES["overlay"]
    assert profile.setup is not None
    profile.setup(sandbox)
    run_dir = profile.config(sandbox)["runDir"]
    state = read_node_state(state_path(run_dir, "conformance"))
    assert state is not None
    assert (state.subnet, state.gateway) == (sandbox.subnet, sandbox.subnet[1])
    assert sandbox.subnet.subnet_of(state.cluster)
    mine = profile_for("overlay", config={"type": "overlay", "runDir": str(tmp_path / "real")})
    assert mine.setup is None


def test_link_kinds_this_kernel_may_lack_are_probed() -> None:
    probed = {t for t, p in PROFILES.items() if p.requires is not None}
    assert {"ipvlan", "vlan", "dummy", "vrf"} <= probed


def test_known_type_without_config_is_its_profile() -> None:
    assert profile_for("bridge") is PROFILES["bridge"]


def test_state_dirs_given_are_added_to_the_profiles(sandbox: Any, tmp_path: Path) -> None:
    profile = profile_for("tuning", state_dirs=[str(tmp_path / "mine")])
    dirs = profile.state_dirs(sandbox)
    assert dirs[-1] == tmp_path / "mine"
    assert dirs[:-1] == PROFILES["tuning"].state_dirs(sandbox)


def test_unknown_type_without_config_names_the_known_types_and_the_options() -> None:
    with pytest.raises(InvalidArgumentError) as err:
        profile_for("frobnicator")
    text = str(err.value)
    assert "'frobnicator'" in text
    assert "bridge" in text
    assert "vrf" in text
    assert "--config" in text
    assert "--kind" in text


def test_unknown_type_with_config_needs_a_kind() -> None:
    with pytest.raises(InvalidArgumentError, match="--kind"):
        profile_for("frobnicator", config={"type": "frobnicator"})


def test_unknown_type_with_config_and_kind(sandbox: Any) -> None:
    profile = profile_for("frobnicator", config={"type": "frobnicator", "x": [1]}, kind="chained")
    assert profile.kind is Kind.CHAINED
    assert profile.config(sandbox) == {"type": "frobnicator", "x": [1]}
    assert profile.breaker is None
    assert profile.state_dirs(sandbox) == []


def test_given_config_drops_what_the_kit_sets_and_is_copied(sandbox: Any) -> None:
    given = {"cniVersion": "0.4.0", "name": "mine", "type": "ptp", "mtu": 1400, "dns": {}}
    profile = profile_for("ptp", config=given)
    conf = profile.config(sandbox)
    assert conf == {"type": "ptp", "mtu": 1400, "dns": {}}
    conf["dns"]["nameservers"] = ["192.0.2.1"]
    assert profile.config(sandbox)["dns"] == {}
    assert given["dns"] == {}


def test_known_type_with_config_keeps_its_kind_and_breaker(sandbox: Any) -> None:
    profile = profile_for("tuning", config={"type": "tuning", "mtu": 1300})
    assert profile.kind is Kind.CHAINED
    assert profile.breaker is PROFILES["tuning"].breaker
    # No dataDir in the given config: tuning's default is where its files go.
    assert Path("/run/cni/tuning") in profile.state_dirs(sandbox)


def test_known_type_with_config_reads_its_host_local_dir_from_it(sandbox: Any) -> None:
    config = {"type": "host-local", "ipam": {"type": "host-local", "dataDir": "/srv/ipam"}}
    dirs = profile_for("host-local", config=config).state_dirs(sandbox)
    assert dirs == [Path("/srv/ipam/conformance")]


def test_a_config_for_a_daemon_plugin_assumes_the_users_daemon() -> None:
    profile = profile_for("dhcp", config={"type": "dhcp", "ipam": {"type": "dhcp"}})
    assert profile.needs_daemon is None
    assert profile.kind is Kind.IPAM


def test_a_runtime_config_in_the_given_config_replaces_the_profiles() -> None:
    profile = profile_for("portmap", config={"type": "portmap", "runtimeConfig": {}})
    assert profile.runtime_config is None
    assert profile_for("portmap", config={"type": "portmap"}).runtime_config is not None


def test_kind_replaces_a_known_types() -> None:
    assert profile_for("ptp", kind="chained").kind is Kind.CHAINED
    assert profile_for("ptp", kind=Kind.INTERFACE) is PROFILES["ptp"]


@pytest.mark.parametrize(
    "config",
    [[{"type": "ptp"}], {"type": "ptp", "plugins": []}, {"type": "bridge"}],
)
def test_a_config_that_is_not_the_plugins_object_is_refused(config: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="'ptp'"):
        profile_for("ptp", config=config)


@pytest.mark.parametrize("text", ["interface", "IPAM", " Chained", "loopback"])
def test_parse_kind_takes_the_names(text: str) -> None:
    assert parse_kind(text).value == text.strip().lower()


def test_a_bad_kind_lists_the_kinds() -> None:
    with pytest.raises(InvalidArgumentError) as err:
        profile_for("ptp", kind="sidecar")
    assert "'sidecar'" in str(err.value)
    for kind in Kind:
        assert kind.value in str(err.value)


def test_host_device_config_makes_its_device_in_the_node_only(sandbox: Any) -> None:
    PROFILES["host-device"].config(sandbox)
    assert sandbox.node.commands  # looked for (and would make) the device there
    assert all(cmd[0] == "ip" for cmd in sandbox.node.commands)


def test_the_uplink_is_the_master_of_the_sublink_plugins(sandbox: Any) -> None:
    for plugin_type in ("macvlan", "ipvlan", "vlan"):
        assert PROFILES[plugin_type].config(sandbox)["master"] == _builtin.UPLINK[0]
        assert PROFILES[plugin_type].setup is not None
