"""The tuning plugin's configuration, sysctl file names, allowlist and backup file,
without a kernel (see tests/privileged/test_tuning.py for the plugin against Go's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cnilib.errors import CNIError
from cnilib.invoke import Command
from cnilib.netlink import IFF_ALLMULTI, Link
from cnilib.plugins._base import PluginRequest
from cnilib.plugins.meta import _tuning_conf as tuning, tuning as tuning_plugin
from cnilib.plugins.meta._tuning_conf import TuningConf, backup_path, sysctl_file
from tests.unit._guards import NO_SUCH_HOST

JSON = dict[str, Any]


def request(
    conf: JSON, args: tuple[tuple[str, str], ...] = (), stdin: bytes = b""
) -> PluginRequest:
    """A PluginRequest as the skel would build it."""
    return PluginRequest(
        command=Command.ADD,
        container_id="c1",
        netns="/x",
        ifname="eth0",
        args=args,
        path=(),
        config=conf,
        stdin=stdin or json.dumps(conf).encode(),
        host_netns=NO_SUCH_HOST,
    )


def load(env: tuple[tuple[str, str], ...] = (), **conf: Any) -> TuningConf:
    """TuningConf of a config with *conf*'s keys and ``CNI_ARGS`` *env*."""
    return TuningConf.load(request({"cniVersion": "1.0.0", "name": "n", **conf}, env))


# ---------------------------------------------------------------------------- config


def test_defaults() -> None:
    conf = load()
    assert conf == TuningConf(
        data_dir="/run/cni/tuning", sysctl={}, mac="", promisc=False, mtu=0,
        allmulti=None, txqlen=None,
    )  # fmt: skip
    assert not conf.changes_link


def test_mac_precedence_as_go() -> None:
    """Config ``mac``, then ``CNI_ARGS MAC=``, then ``runtimeConfig.mac``, then ``args.cni.mac``."""
    assert load(mac="02:00:00:00:00:01").mac == "02:00:00:00:00:01"
    env = (("MAC", "02:00:00:00:00:02"),)
    assert load(env, mac="02:00:00:00:00:01").mac == "02:00:00:00:00:02"
    runtime = {"mac": "02:00:00:00:00:03"}
    assert load(env, mac="02:00:00:00:00:01", runtimeConfig=runtime).mac == "02:00:00:00:00:03"
    cni = {"cni": {"mac": "02:00:00:00:00:04"}}
    assert load(env, runtimeConfig=runtime, args=cni).mac == "02:00:00:00:00:04"


def test_args_cni_override_and_merge() -> None:
    conf = load(
        mtu=1400, promisc=True, allmulti=False, txQLen=10,
        sysctl={"net.core.somaxconn": "1", "net.a": "2"},
        args={"cni": {"mtu": 1300, "promisc": False, "allmulti": True, "txQLen": 0,
                      "sysctl": {"net.core.somaxconn": "9"}}},
    )  # fmt: skip
    assert (conf.mtu, conf.promisc, conf.allmulti, conf.txqlen) == (1300, False, True, 0)
    assert conf.sysctl == {"net.core.somaxconn": "9", "net.a": "2"}
    assert conf.changes_link  # txQLen 0 is set: saved and restored


def test_args_cni_sysctl_without_top_level_sysctl() -> None:
    """Go panics (a nil map); ours merges into an empty one."""
    assert load(args={"cni": {"sysctl": {"net.a": "1"}}}).sysctl == {"net.a": "1"}


@pytest.mark.parametrize(
    ("conf", "text"),
    [
        ({"mtu": "1400"}, "Go struct field TuningConf.mtu of type int"),
        ({"promisc": 1}, "Go struct field TuningConf.promisc of type bool"),
        ({"sysctl": "x"}, "Go struct field TuningConf.sysctl of type map[string]string"),
        ({"sysctl": {"net.a": 1}}, "Go struct field TuningConf.sysctl of type string"),
        ({"args": {"cni": {"txQLen": "5"}}}, "Go struct field IPAMArgs.txQLen of type int"),
    ],
)
def test_wrong_types_are_refused(conf: JSON, text: str) -> None:
    with pytest.raises(CNIError) as info:
        load(**conf)
    assert info.value.code == 999
    assert info.value.msg.startswith("failed to load netconf: json: cannot unmarshal ")
    assert text in info.value.msg


def test_cni_args_unknown_key_refused_as_go() -> None:
    with pytest.raises(CNIError, match=r'ARGS: unknown args \["FOO=1"\]'):
        load((("FOO", "1"),))


# ---------------------------------------------------------------------------- sysctls


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("net.ipv4.conf.eth0.arp_filter", "/proc/sys/net/ipv4/conf/eth0/arp_filter"),
        ("net/ipv4/ip_forward", "/proc/sys/net/ipv4/ip_forward"),
        ("net.ipv4.conf.IFNAME.arp_filter", "/proc/sys/net/ipv4/conf/eth0.100/arp_filter"),
        ("net..core.somaxconn", "/proc/sys/net/core/somaxconn"),
        ("/net/core/somaxconn", "/proc/sys/net/core/somaxconn"),  # Go's filepath.Join too
    ],
)
def test_sysctl_file(key: str, path: str) -> None:
    """Dots become ``/``, then ``IFNAME`` the interface (a dotted name stays whole)."""
    ifname = "eth0.100" if "IFNAME" in key else "eth0"
    assert sysctl_file(key, ifname) == path


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("kernel.domainname", 'invalid net sysctl key: "kernel/domainname"'),
        ("net", 'invalid net sysctl key: "net"'),
        ("netfilter.x", 'invalid net sysctl key: "netfilter/x"'),
        ("net/../../kernel/domainname", 'invalid net sysctl key: "net/../../kernel/domainname": '
                                        'a ".." component would leave /proc/sys/net/'),
        ("net.ipv4/../../../kernel/foo", 'invalid net sysctl key: "net.ipv4/../../../kernel/foo": '
                                         'a ".." component would leave /proc/sys/net/'),
    ],
)  # fmt: skip
def test_sysctl_file_refuses_outside_net(key: str, text: str) -> None:
    with pytest.raises(CNIError) as info:
        sysctl_file(key, "eth0")
    assert (info.value.code, info.value.msg) == (999, text)


def test_ifname_dotdot_cannot_escape() -> None:
    """An ``IFNAME`` replaced by ``..`` is resolved before the prefix check."""
    with pytest.raises(CNIError, match="invalid net sysctl key"):
        sysctl_file("net/IFNAME/kernel/domainname", "..")


def test_duplicated_sysctl_keys_refused() -> None:
    stdin = b'{"cniVersion":"1.0.0","name":"n","sysctl":{"net.a":"1","net.a":"2"}}'
    with pytest.raises(CNIError) as info:
        tuning.check_duplicated_sysctls(stdin)
    assert (info.value.code, info.value.msg) == (999, "duplicated sysctl keys are not allowed")
    # Only the top-level sysctl counts (as Go's sysctlCheck struct).
    tuning.check_duplicated_sysctls(b'{"args":{"cni":{"sysctl":{"net.a":"1","net.a":"2"}}}}')
    tuning.check_duplicated_sysctls(b'{"sysctl":{"net.a":"1","net.b":"2"}}')


def test_allowlist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    allow = tmp_path / "allowlist.conf"
    monkeypatch.setattr(tuning, "ALLOWLIST_PATH", allow)
    tuning.check_allowlist({"anything": "1"})  # no file: no check
    allow.write_text("^net\\.core\\.\n   \nsomaxconn\n")
    tuning.check_allowlist({"net.core.x": "1", "net.ipv4.tcp_somaxconn": "1"})
    with pytest.raises(CNIError) as info:
        tuning.check_allowlist({"net.ipv4.ip_forward": "1"})
    assert info.value.msg == (
        "Sysctl net.ipv4.ip_forward is not allowed. Only the following sysctls are allowed: "
        "[^net\\.core\\. somaxconn]"
    )
    allow.write_text("net.(\n")
    with pytest.raises(CNIError, match="error parsing regexp"):
        tuning.check_allowlist({"net.a": "1"})


# ----------------------------------------------------------------------------- backup


def test_backup_path_and_format_are_gos() -> None:
    assert backup_path("/d", "cid", "eth0") == Path("/d/cid_eth0.json")
    conf = load(mac="02:00:00:00:00:01", mtu=1400, promisc=True, allmulti=True, txQLen=5)
    link = Link(index=3, name="eth0", mac="9e:3e:f7:59:7a:4d", mtu=1500, flags=IFF_ALLMULTI,
                txqlen=1000, promiscuity=0)  # fmt: skip
    text = json.dumps(tuning_plugin._originals(conf, link), indent=1)
    assert text == (  # the bytes Go 1.1.1 wrote for this link (plus latest's txQLen)
        '{\n "mac": "9e:3e:f7:59:7a:4d",\n "promisc": false,\n "mtu": 1500,\n'
        ' "allmulti": true,\n "txQLen": 1000\n}'
    )
    only_mtu = tuning_plugin._originals(load(mtu=1400), link)
    assert json.dumps(only_mtu, indent=1) == '{\n "mtu": 1500\n}'


@pytest.mark.parametrize(
    ("text", "saved"),
    [
        ('{"mtu": 1500, "promisc": true}', {"mtu": 1500, "promisc": True}),
        ('{"txQLen": 0}', {"txQLen": 0}),
        ("not json", None),
        ("[]", None),
        ('{"mtu": "1500"}', None),
        ('{"promisc": 1}', None),
    ],
)
def test_saved(text: str, saved: JSON | None) -> None:
    """What DEL reads back; anything Go could not decode is nothing to restore."""
    assert tuning_plugin._saved(text) == saved
