"""cnilib's host-local IPAM plugin, called directly (no process, no Go binary)."""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cnilib.errors import ErrorCode, PluginError
from cnilib.invoke import Command
from cnilib.plugins._base import PluginRequest
from cnilib.plugins.ipam._config import parse_resolv_conf
from cnilib.plugins.ipam._store import Store, go_trim_space
from cnilib.plugins.ipam.host_local import HostLocal
from cnilib.results import DNS, ResultV100
from tests.unit._guards import NO_SUCH_HOST

JSON = dict[str, Any]


def request(
    conf: JSON,
    command: Command = Command.ADD,
    cid: str = "c1",
    ifname: str = "eth0",
    args: tuple[tuple[str, str], ...] = (),
) -> PluginRequest:
    """A PluginRequest as the skel would build it."""
    return PluginRequest(
        command=command,
        container_id=cid,
        netns="/x",
        ifname=ifname,
        args=args,
        path=(),
        config=conf,
        stdin=json.dumps(conf).encode(),
        host_netns=NO_SUCH_HOST,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty dataDir."""
    return tmp_path / "data"


def conf_for(data_dir: Path, version: str = "1.0.0", **ipam: Any) -> JSON:
    """A host-local network config storing in data_dir."""
    return {
        "cniVersion": version,
        "name": "net",
        "type": "bridge",
        "ipam": {"type": "host-local", "dataDir": str(data_dir), **ipam},
    }


def addrs(result: ResultV100) -> list[str]:
    """The result's addresses as text."""
    return [str(ip.address) for ip in result.ips]


def add(conf: JSON, **kw: Any) -> ResultV100:
    """ADD through the plugin object."""
    return HostLocal().add(request(conf, **kw))


def error_of(conf: JSON, command: Command = Command.ADD, **kw: Any) -> PluginError:
    """The PluginError the plugin raises for this call."""
    plugin = HostLocal()
    method = {
        Command.ADD: plugin.add,
        Command.CHECK: plugin.check,
        Command.DEL: plugin.delete,
        Command.GC: plugin.gc,
    }[command]
    with pytest.raises(PluginError) as info:
        method(request(conf, command, **kw))
    return info.value


def store_files(data_dir: Path, network: str = "net") -> dict[str, bytes]:
    """Address files of the store (no lock, no last_reserved_ip)."""
    root = data_dir / network
    return {
        p.name: p.read_bytes()
        for p in sorted(root.iterdir())
        if p.name != "lock" and not p.name.startswith("last_reserved_ip.")
    }


class TestAllocation:
    def test_defaults_skip_the_gateway(self, data_dir: Path) -> None:
        """Without rangeStart/gateway the first address is .2 and the gateway .1."""
        result = add(conf_for(data_dir, subnet="10.1.2.0/24"))

        assert ["10.1.2.2/24"] == addrs(result)
        assert ipaddress.ip_address("10.1.2.1") == result.ips[0].gateway
        assert result.ips[0].interface is None

    def test_round_robin_after_last_reserved(self, data_dir: Path) -> None:
        """A released address is not reused until the range has been run through."""
        conf = conf_for(data_dir, subnet="10.1.2.0/29")
        assert ["10.1.2.2/29"] == addrs(add(conf, cid="a"))
        HostLocal().delete(request(conf, Command.DEL, cid="a"))

        assert ["10.1.2.3/29"] == addrs(add(conf, cid="b"))
        assert b"10.1.2.3" == (data_dir / "net" / "last_reserved_ip.0").read_bytes()

    def test_exhaustion_then_wrap_around(self, data_dir: Path) -> None:
        """A /29 has five addresses; the sixth ADD fails with Go's text, a freed one is reused."""
        conf = conf_for(data_dir, subnet="10.1.2.0/29")
        got = [addrs(add(conf, cid=f"c{n}"))[0] for n in range(5)]
        err = error_of(conf, cid="c5")
        HostLocal().delete(request(conf, Command.DEL, cid="c1"))

        assert [f"10.1.2.{n}/29" for n in range(2, 7)] == got
        assert (
            "failed to allocate for range 0: no IP addresses available in range set: "
            "10.1.2.1-10.1.2.6"
        ) == err.msg
        assert ErrorCode.INTERNAL == err.code
        assert ["10.1.2.3/29"] == addrs(add(conf, cid="c6"))

    def test_range_start_end_and_explicit_gateway(self, data_dir: Path) -> None:
        """rangeStart/rangeEnd bound the allocation; a gateway inside the range is skipped."""
        conf = conf_for(
            data_dir,
            ranges=[
                [
                    {
                        "subnet": "10.3.0.0/24",
                        "rangeStart": "10.3.0.10",
                        "rangeEnd": "10.3.0.12",
                        "gateway": "10.3.0.11",
                    }
                ]
            ],
        )

        assert ["10.3.0.10/24", "10.3.0.12/24"] == [addrs(add(conf, cid=c))[0] for c in "ab"]
        assert "no IP addresses available in range set: 10.3.0.10-10.3.0.12" in (
            error_of(conf, cid="c").msg
        )

    def test_several_ranges_in_a_set_are_walked_in_order(self, data_dir: Path) -> None:
        """When one range is full the next range of the set is used."""
        conf = conf_for(data_dir, ranges=[[{"subnet": "10.4.0.0/30"}, {"subnet": "10.5.0.0/30"}]])

        assert ["10.4.0.2/30", "10.5.0.2/30"] == [addrs(add(conf, cid=c))[0] for c in "ab"]
        assert (
            "no IP addresses available in range set: 10.4.0.1-10.4.0.2,10.5.0.1-10.5.0.2"
            in error_of(conf, cid="c").msg
        )

    def test_ipv6_defaults(self, data_dir: Path) -> None:
        """An IPv6 range ends on its last address and its gateway is ::1."""
        conf = conf_for(data_dir, ranges=[[{"subnet": "fd00::/126"}]])
        got = [addrs(add(conf, cid=c))[0] for c in "ab"]

        assert ["fd00::2/126", "fd00::3/126"] == got
        assert (data_dir / "net" / "fd00::3").is_file()

    def test_dual_stack_and_routes(self, data_dir: Path) -> None:
        """One address per range set, with the configured routes (1.1 fields kept)."""
        conf = conf_for(
            data_dir,
            ranges=[[{"subnet": "10.6.0.0/24"}], [{"subnet": "fd06::/64"}]],
            routes=[{"dst": "0.0.0.0/0", "gw": "10.6.0.1", "mtu": 1400}, {"dst": "::/0"}],
        )
        result = add(conf)

        assert ["10.6.0.2/24", "fd06::2/64"] == addrs(result)
        assert [1400, 0] == [r.mtu for r in result.routes]
        assert {"10.6.0.2": b"c1\r\neth0", "fd06::2": b"c1\r\neth0"} == store_files(data_dir)

    def test_ip_ranges_capability_comes_first(self, data_dir: Path) -> None:
        """runtimeConfig.ipRanges is prepended to the legacy subnet and ipam.ranges."""
        conf = conf_for(data_dir, subnet="10.7.0.0/24", ranges=[[{"subnet": "fd07::/64"}]])
        conf["runtimeConfig"] = {"ipRanges": [[{"subnet": "10.8.0.0/24"}]]}
        conf["ipam"]["ranges"].append(None)  # null range set: Go decodes it as empty
        with pytest.raises(PluginError, match="invalid range set 3: empty range set"):
            add(conf)
        conf["ipam"]["ranges"].pop()

        assert ["10.8.0.2/24", "10.7.0.2/24", "fd07::2/64"] == addrs(add(conf))

    def test_duplicate_allocation_is_refused(self, data_dir: Path) -> None:
        """A second ADD of the same (cid, ifname) fails; another ifname is a new attachment."""
        conf = conf_for(data_dir, subnet="10.1.2.0/24")
        add(conf)

        assert (
            "failed to allocate for range 0: 10.1.2.2 has been allocated to c1, "
            "duplicate allocation is not allowed"
        ) == error_of(conf).msg
        assert ["10.1.2.3/24"] == addrs(add(conf, ifname="eth1"))

    def test_failure_in_a_later_set_releases_earlier_ones(self, data_dir: Path) -> None:
        """If range set 1 is exhausted, the address taken from set 0 is released."""
        conf = conf_for(data_dir, ranges=[[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/30"}]])
        add(conf, cid="a")

        assert "failed to allocate for range 1" in error_of(conf, cid="b").msg
        assert ["10.1.0.2", "10.2.0.2"] == list(store_files(data_dir))


class TestRequestedIPs:
    @pytest.mark.parametrize(
        ("args", "extra"),
        [
            ((("IP", "10.1.2.9"),), {}),
            ((("IP", "10.1.2.9/24"),), {}),
            ((("IgnoreUnknown", "true"), ("K8S_POD_NAME", "x"), ("IP", "10.1.2.9")), {}),
            ((), {"args": {"cni": {"ips": ["10.1.2.9"]}}}),
            ((), {"runtimeConfig": {"ips": ["10.1.2.9/24"]}}),
        ],
    )
    def test_requested_ip_is_allocated(self, data_dir: Path, args: Any, extra: JSON) -> None:
        """CNI_ARGS IP=, args.cni.ips and runtimeConfig.ips each request an address."""
        conf = conf_for(data_dir, subnet="10.1.2.0/24") | extra

        assert ["10.1.2.9/24"] == addrs(add(conf, args=args))

    def test_requests_fill_their_own_families(self, data_dir: Path) -> None:
        """One requested address per family goes to the range set holding it."""
        conf = conf_for(data_dir, ranges=[[{"subnet": "10.1.2.0/24"}], [{"subnet": "fd00::/64"}]])
        conf["args"] = {"cni": {"ips": ["fd00::9", "10.1.2.9", "10.1.2.9"]}}

        assert ["10.1.2.9/24", "fd00::9/64"] == addrs(add(conf))

    def test_unfulfilled_request_releases_everything(self, data_dir: Path) -> None:
        """A requested address in no range set fails the ADD and leaves nothing behind."""
        conf = conf_for(data_dir, subnet="10.1.2.0/24")
        conf["runtimeConfig"] = {"ips": ["10.1.2.9", "10.9.9.9"]}

        assert "failed to allocate all requested IPs: 10.9.9.9" == error_of(conf).msg
        assert {} == store_files(data_dir)

    @pytest.mark.parametrize(
        ("ip", "message"),
        [
            ("10.1.2.1", "requested ip 10.1.2.1 is subnet's gateway"),
            (
                "10.1.2.5",
                "requested IP address 10.1.2.5 is not available in range set 10.1.2.1-10.1.2.254",
            ),
        ],
    )
    def test_requested_ip_refused(self, data_dir: Path, ip: str, message: str) -> None:
        """The gateway and a taken address cannot be requested."""
        conf = conf_for(data_dir, subnet="10.1.2.0/24")
        add(conf, cid="other", args=(("IP", "10.1.2.5"),))

        assert (
            f"failed to allocate for range 0: {message}" == error_of(conf, args=(("IP", ip),)).msg
        )

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (
                (("IP", "nope"),),
                'ARGS: error parsing value of pair "IP=nope": invalid IP address nope',
            ),
            ((("FOO", "1"), ("BAR", "2")), 'ARGS: unknown args ["FOO=1" "BAR=2"]'),
            (
                (("IgnoreUnknown", "x"),),
                'ARGS: error parsing value of pair "IgnoreUnknown=x": '
                "boolean unmarshal error: invalid input x",
            ),
            ((("IP", "a=b"),), 'ARGS: invalid pair "IP=a=b"'),
            (
                (("CommonArgs", "1"),),
                "ARGS: cannot unmarshal into field 'CommonArgs' - type "
                "'*types.CommonArgs' does not implement encoding.TextUnmarshaler",
            ),
        ],
    )
    def test_bad_cni_args(self, data_dir: Path, args: Any, message: str) -> None:
        """CNI_ARGS errors carry Go's text and code 4."""
        err = error_of(conf_for(data_dir, subnet="10.1.2.0/24"), args=args)

        assert (message, ErrorCode.INVALID_ENVIRONMENT_VARIABLES) == (err.msg, err.code)


class TestConfigErrors:
    @pytest.mark.parametrize(
        ("ipam", "message", "field"),
        [
            (
                {"subnet": "10.0.0.0/31"},
                "invalid range set 0: Network 10.0.0.0/31 too small to allocate from",
                "$.ipam.subnet",
            ),
            (
                {"subnet": "::ffff:10.0.0.0/120"},
                "invalid range set 0: IPNet IP and Mask version mismatch",
                "$.ipam.subnet",
            ),
            (
                {"subnet": "10.0.0.1/24"},
                "invalid range set 0: Network has host bits set. For a "
                "subnet mask of length 24 the network address is 10.0.0.0",
                "$.ipam.subnet",
            ),
            (
                {"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.0"},
                "invalid range set 0: RangeStart 10.0.1.0 not in network 10.0.0.0/24",
                "$.ipam.rangeStart",
            ),
            (
                {"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.255"},
                "invalid range set 0: RangeStart 10.0.0.255 not in network 10.0.0.0/24",
                "$.ipam.rangeStart",
            ),
            (
                {"subnet": "10.0.0.0/24", "rangeEnd": "fd00::1"},
                "invalid range set 0: RangeEnd fd00::1 not in network 10.0.0.0/24",
                "$.ipam.rangeEnd",
            ),
            ({"ranges": [[]]}, "invalid range set 0: empty range set", "$.ipam.ranges[0]"),
            (
                {"ranges": [[{"gateway": "10.0.0.1"}]]},
                "invalid range set 0: IP <nil> not v4 nor v6",
                "$.ipam.ranges[0][0].subnet",
            ),
            (
                {"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]},
                "invalid range set 0: mixed address families",
                "$.ipam.ranges[0]",
            ),
            (
                {"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.0/25"}]]},
                "invalid range set 0: subnets 10.0.0.1-10.0.0.254 and 10.0.0.1-10.0.0.126 overlap",
                "$.ipam.ranges[0]",
            ),
            (
                {"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.128/25"}]]},
                "range set 0 overlaps with 1",
                "$.ipam.ranges[1]",
            ),
            ({"gateway": "10.0.0.1"}, "no IP ranges specified", "$.ipam.ranges"),
        ],
    )
    def test_semantic_errors_keep_go_text(
        self, data_dir: Path, ipam: JSON, message: str, field: str
    ) -> None:
        """Go's message, code 7, and the field's JSON path in details."""
        err = error_of(conf_for(data_dir, **ipam))

        assert (message, ErrorCode.INVALID_NETWORK_CONFIG, f"at {field}") == (
            err.msg,
            err.code,
            err.details,
        )

    @pytest.mark.parametrize(
        ("conf", "message"),
        [
            ({"ipam": None}, "IPAM config missing 'ipam' key"),
            ({"ipam": 5}, "$.ipam: json: cannot unmarshal number into Go value of type struct"),
            (
                {"ipam": {"subnet": "10.0.0.0/33"}},
                "$.ipam.subnet: invalid CIDR address: 10.0.0.0/33",
            ),
            (
                {"ipam": {"subnet": 7}},
                "$.ipam.subnet: json: cannot unmarshal number into Go value of type types.IPNet",
            ),
            (
                {"ipam": {"subnet": "10.0.0.0/24", "gateway": "x"}},
                "$.ipam.gateway: invalid IP address: x",
            ),
            (
                {"ipam": {"subnet": "10.0.0.0/24", "gateway": 1}},
                "$.ipam.gateway: json: cannot unmarshal number into Go value of type net.IP",
            ),
            (
                {"ipam": {"dataDir": 1}},
                "$.ipam.dataDir: json: cannot unmarshal number into Go value of type string",
            ),
            (
                {"ipam": {"ranges": {}}},
                "$.ipam.ranges: json: cannot unmarshal object into Go value of type slice",
            ),
            ({"ipam": {"ranges": [5]}}, "$.ipam.ranges[0]: expected a list of ranges"),
            ({"ipam": {"ranges": [[5]]}}, "$.ipam.ranges[0][0]: expected a range object"),
            ({"ipam": {"routes": [{"dst": "x"}]}}, "$.ipam.routes[0].dst: invalid CIDR address: x"),
            (
                {"ipam": {"subnet": "10.0.0.0/24"}, "args": {"cni": {"ips": [5]}}},
                "$.args.cni.ips[0]: expected an IP address string",
            ),
            (
                {"ipam": {"subnet": "10.0.0.0/24"}, "runtimeConfig": {"ips": ["x"]}},
                "$.runtimeConfig.ips[0]: invalid IP address x",
            ),
        ],
    )
    def test_decoding_errors_name_the_field(self, conf: JSON, message: str) -> None:
        """Malformed members fail with code 7 and a message starting with the JSON path."""
        err = error_of({"cniVersion": "1.0.0", "name": "net", **conf})

        assert (message, ErrorCode.INVALID_NETWORK_CONFIG) == (err.msg, err.code)

    @pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "", "nonsense"])
    def test_two_addresses_per_family_need_0_3_0(self, data_dir: Path, version: str) -> None:
        """Before 0.3.0 a result holds one address per family."""
        conf = conf_for(
            data_dir, version, ranges=[[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/24"}]]
        )

        assert f"CNI version {version} does not support more than 1 address per family" == (
            error_of(conf).msg
        )

    def test_keys_match_case_insensitively(self, data_dir: Path) -> None:
        """Like Go's decoder, {"IPAM": {"Subnet": ...}} is understood; gateway "" is no gateway."""
        conf = {
            "cniVersion": "1.0.0",
            "name": "net",
            "IPAM": {"DataDir": str(data_dir), "SUBNET": "10.9.0.0/24", "gateway": ""},
        }

        assert ["10.9.0.2/24"] == addrs(add(conf))


class TestResolvConf:
    def test_resolv_conf_becomes_dns(self, data_dir: Path, tmp_path: Path) -> None:
        """nameserver, domain, search and options lines; comments and junk ignored."""
        path = tmp_path / "resolv.conf"
        path.write_text(
            "# comment\n; also\nnameserver 1.1.1.1\nnameserver  ::1 \r\ndomain a.b\n"
            "search x y\nsearch z\noptions ndots:5\nnameserver\nunknown q\n"
        )
        result = add(conf_for(data_dir, subnet="10.0.0.0/24", resolvConf=str(path)))

        assert (
            DNS(
                nameservers=["1.1.1.1", "::1"],
                domain="a.b",
                search=["x", "y", "z"],
                options=["ndots:5"],
            )
            == result.dns
        )

    def test_missing_resolv_conf_is_io_error(self, data_dir: Path, tmp_path: Path) -> None:
        """An unreadable resolvConf fails with code 5 and Go's wording."""
        err = error_of(conf_for(data_dir, subnet="10.0.0.0/24", resolvConf=str(tmp_path / "no")))

        assert (f"open {tmp_path / 'no'}: no such file or directory", ErrorCode.IO_FAILURE) == (
            err.msg,
            err.code,
        )

    def test_empty_file_gives_empty_dns(self) -> None:
        """No usable line, no DNS."""
        assert parse_resolv_conf(b"\n# x\n").is_empty()


class TestStoreFormat:
    def test_files_modes_and_content(self, data_dir: Path) -> None:
        """Go 1.1.1's layout: 0755 dir, 0644 address files without newline, 0750 lock."""
        old = os.umask(0o022)
        try:
            add(conf_for(data_dir, subnet="10.0.0.0/24"), cid="  c1 \n")
        finally:
            os.umask(old)
        root = data_dir / "net"

        def mode(p: Path) -> int:
            return stat.S_IMODE(p.stat().st_mode)

        assert (0o755, 0o755, 0o644, 0o644, 0o750) == (
            mode(data_dir),
            mode(root),
            mode(root / "10.0.0.2"),
            mode(root / "last_reserved_ip.0"),
            mode(root / "lock"),
        )
        assert b"c1\r\neth0" == (root / "10.0.0.2").read_bytes()
        assert 0 == (root / "lock").stat().st_size

    def test_default_data_dir(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without dataDir the store is DEFAULT_DATA_DIR/<network>, /var/lib/cni/networks."""
        from cnilib.plugins.ipam import _store

        assert "/var/lib/cni/networks" == _store.DEFAULT_DATA_DIR
        monkeypatch.setattr(_store, "DEFAULT_DATA_DIR", str(tmp_path))
        add({"cniVersion": "1.0.0", "name": "n", "ipam": {"subnet": "10.0.0.0/24"}})

        assert (tmp_path / "n" / "10.0.0.2").is_file()

    def test_unwritable_store_is_io_error(self, tmp_path: Path) -> None:
        """A dataDir below a file cannot be created: code 5."""
        (tmp_path / "file").write_text("")
        err = error_of(conf_for(tmp_path / "file", subnet="10.0.0.0/24"))

        assert (f"mkdir {tmp_path / 'file'}: not a directory", ErrorCode.IO_FAILURE) == (
            err.msg,
            err.code,
        )

    def test_unreadable_last_reserved_ip_starts_from_the_beginning(self, data_dir: Path) -> None:
        """Garbage in last_reserved_ip.0 only loses round-robin, as in Go."""
        conf = conf_for(data_dir, subnet="10.0.0.0/24")
        (data_dir / "net").mkdir(parents=True)
        (data_dir / "net" / "last_reserved_ip.0").write_text("10.0.0.7\n")

        assert ["10.0.0.2/24"] == addrs(add(conf))

    def test_lock_excludes_other_holders(self, data_dir: Path) -> None:
        """An ADD waits while another open file description holds the flock."""
        conf = conf_for(data_dir, subnet="10.0.0.0/24")
        HostLocal().delete(request(conf, Command.DEL))  # creates the store and lock
        fd = os.open(data_dir / "net" / "lock", os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        done = threading.Event()

        def work() -> None:
            add(conf)
            done.set()

        worker = threading.Thread(target=work)
        worker.start()
        try:
            time.sleep(0.2)
            assert not done.is_set()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        worker.join(5)
        assert done.is_set()

    def test_go_trim_space_keeps_ascii_separators(self) -> None:
        """Go's TrimSpace does not strip \\x1c-\\x1f (Python's strip would)."""
        assert "\x1cid" == go_trim_space(" \x1cid\r\n\u3000")

    def test_write_failure_removes_the_file(
        self, data_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failed write leaves no half-written address file behind (code 5)."""
        conf = conf_for(data_dir, subnet="10.0.0.0/24")
        HostLocal().delete(request(conf, Command.DEL))

        def broken(fd: int, data: bytes) -> int:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "write", broken)
        err = error_of(conf)
        monkeypatch.undo()

        assert (
            ErrorCode.IO_FAILURE,
            f"failed to allocate for range 0: write "
            f"{data_dir / 'net' / '10.0.0.2'}: no space left on device",
        ) == (err.code, err.msg)
        assert {} == store_files(data_dir)

    def test_last_reserved_write_failure(self, data_dir: Path) -> None:
        """If last_reserved_ip cannot be written, the ADD fails with code 5."""
        conf = conf_for(data_dir, subnet="10.0.0.0/24")
        (data_dir / "net" / "last_reserved_ip.0").mkdir(parents=True)

        assert ErrorCode.IO_FAILURE == error_of(conf).code


class TestDelCheck:
    def test_del_is_idempotent_and_needs_no_store(self, data_dir: Path) -> None:
        """DEL of an unknown container succeeds, twice, and creates only the store skeleton."""
        conf = conf_for(data_dir, subnet="10.0.0.0/24")
        HostLocal().delete(request(conf, Command.DEL))
        HostLocal().delete(request(conf, Command.DEL))

        assert ["lock"] == sorted(os.listdir(data_dir / "net"))

    def test_del_releases_only_its_interface(self, data_dir: Path) -> None:
        """DEL of (c1, eth0) keeps (c1, eth1) and other containers."""
        conf = conf_for(data_dir, subnet="10.0.0.0/24")
        add(conf)
        add(conf, ifname="eth1")
        add(conf, cid="c2")
        HostLocal().delete(request(conf, Command.DEL))

        assert {"10.0.0.3": b"c1\r\neth1", "10.0.0.4": b"c2\r\neth0"} == store_files(data_dir)

    @pytest.mark.parametrize(("sets", "left"), [(1, ["10.0.1.9"]), (2, [])])
    def test_legacy_files_fall_back(self, data_dir: Path, sets: int, left: list[str]) -> None:
        """Legacy ``<cid>`` files go when nothing new-format matched in a pass (one per set)."""
        ranges = [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/24"}]][:sets]
        conf = conf_for(data_dir, ranges=ranges)
        add(conf)
        (data_dir / "net" / "10.0.1.9").write_bytes(b"c1\n")
        HostLocal().check(request(conf, Command.CHECK))
        HostLocal().delete(request(conf, Command.DEL))

        assert left == list(store_files(data_dir))

    def test_legacy_file_alone_satisfies_check(self, data_dir: Path) -> None:
        """CHECK accepts a legacy file holding just the container ID."""
        conf = conf_for(data_dir, subnet="10.0.0.0/24")
        (data_dir / "net" / "sub").mkdir(parents=True)
        (data_dir / "net" / "sub" / "10.0.0.9").write_bytes(b"c1")

        HostLocal().check(request(conf, Command.CHECK))
        HostLocal().delete(request(conf, Command.DEL))
        assert not (data_dir / "net" / "sub" / "10.0.0.9").exists()

    def test_check_fails_without_allocation(self, data_dir: Path) -> None:
        """CHECK for a container with no address fails with Go's text."""
        conf = conf_for(data_dir, subnet="10.0.0.0/24")
        add(conf, cid="other")

        assert "host-local: Failed to find address added by container c1" == (
            error_of(conf, Command.CHECK).msg
        )


class TestGC:
    def _conf(self, data_dir: Path, valid: Any) -> JSON:
        conf = conf_for(data_dir, "1.1.0", subnet="10.0.0.0/24")
        if valid is not ...:
            conf["cni.dev/valid-attachments"] = valid
        return conf

    def test_releases_what_no_attachment_owns(self, data_dir: Path) -> None:
        """Stale (cid, ifname) pairs go; valid ones, legacy files of valid IDs, bookkeeping stay."""
        conf = self._conf(data_dir, [{"containerID": "keep", "ifname": "eth0"}])
        for cid, ifname in [("keep", "eth0"), ("keep", "eth1"), ("gone", "eth0")]:
            add(conf, cid=cid, ifname=ifname)
        (data_dir / "net" / "10.0.0.50").write_bytes(b"keep")
        (data_dir / "net" / "10.0.0.51").write_bytes(b"gone")
        (data_dir / "net" / "notes").write_bytes(b"gone\r\neth0")
        HostLocal().gc(request(conf, Command.GC))

        assert {"10.0.0.2": b"keep\r\neth0", "10.0.0.50": b"keep", "notes": b"gone\r\neth0"} == (
            store_files(data_dir)
        )
        assert (data_dir / "net" / "last_reserved_ip.0").exists()

    def test_freed_addresses_are_reusable(self, data_dir: Path) -> None:
        """After GC with no valid attachment, the whole range is free again."""
        conf = self._conf(data_dir, [])
        small = conf_for(data_dir, "1.1.0", subnet="10.0.0.0/30")
        small["cni.dev/valid-attachments"] = None
        add(small, cid="a")
        HostLocal().gc(request(small, Command.GC))

        assert ["10.0.0.2/30"] == addrs(add(small, cid="b"))
        assert conf["cni.dev/valid-attachments"] == []

    @pytest.mark.parametrize(
        ("valid", "message"),
        [
            (..., "GC needs cni.dev/valid-attachments in the configuration"),
            (
                {},
                "$.cni.dev/valid-attachments: json: cannot unmarshal object into Go value of "
                "type slice",
            ),
            ([5], '$["cni.dev/valid-attachments"][0]: expected an object'),
            (
                [{"containerID": 5}],
                '$["cni.dev/valid-attachments"][0].containerID: json: '
                "cannot unmarshal number into Go value of type string",
            ),
        ],
    )
    def test_malformed_valid_attachments(self, data_dir: Path, valid: Any, message: str) -> None:
        """A missing or malformed list is a code-7 error; nothing is released."""
        conf = self._conf(data_dir, valid)
        add(conf)
        err = error_of(conf, Command.GC)

        assert (message, ErrorCode.INVALID_NETWORK_CONFIG) == (err.msg, err.code)
        assert ["10.0.0.2"] == list(store_files(data_dir))

    def test_unremovable_file_is_reported(
        self, data_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A file GC cannot remove fails the GC with code 5 after trying the others."""
        conf = self._conf(data_dir, [])
        add(conf, cid="a")
        add(conf, cid="b")
        real = os.unlink

        def unlink(path: Any) -> None:
            if str(path).endswith("10.0.0.2"):
                raise PermissionError(13, "Permission denied", str(path))
            real(path)

        monkeypatch.setattr(os, "unlink", unlink)
        err = error_of(conf, Command.GC)

        assert ErrorCode.IO_FAILURE == err.code
        assert "permission denied" in err.msg
        assert ["10.0.0.2"] == list(store_files(data_dir))

    def test_file_already_gone_is_fine(
        self, data_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A file removed by someone else between listing and unlinking is no error."""
        conf = self._conf(data_dir, [])
        add(conf)
        real = os.unlink

        def unlink(path: Any) -> None:
            real(path)
            raise FileNotFoundError(2, "No such file or directory", str(path))

        monkeypatch.setattr(os, "unlink", unlink)
        HostLocal().gc(request(conf, Command.GC))

        assert {} == store_files(data_dir)


class TestStoreEdges:
    """The store tolerates what Go's filepath.Walk tolerates, and reports I/O errors as Go."""

    def test_relative_data_dir(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A relative dataDir is relative to the working directory, every level 0755."""
        monkeypatch.chdir(tmp_path)
        add(conf_for(Path("rel") / "deeper", subnet="10.0.0.0/24"))

        assert (tmp_path / "rel" / "deeper" / "net" / "10.0.0.2").is_file()

    def test_lock_that_cannot_be_opened(self, tmp_path: Path) -> None:
        """A directory where the lock file belongs: code 5, Go's wording."""
        (tmp_path / "net" / "lock").mkdir(parents=True)
        err = error_of(conf_for(tmp_path, subnet="10.0.0.0/24"))

        assert (f"open {tmp_path / 'net' / 'lock'}: is a directory", ErrorCode.IO_FAILURE) == (
            err.msg,
            err.code,
        )

    def test_close_twice(self, tmp_path: Path) -> None:
        """Closing a store twice is harmless."""
        store = Store("net", str(tmp_path))
        store.close()
        store.close()

    def test_reserve_open_error(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An address file that cannot be created (not EEXIST) fails the allocation, code 5."""
        real = os.open

        def fake_open(path: Any, flags: int, mode: int = 0o777) -> int:
            if str(path).endswith("10.0.0.2"):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, flags, mode)

        monkeypatch.setattr(os, "open", fake_open)
        err = error_of(conf_for(tmp_path, subnet="10.0.0.0/24"))

        assert ErrorCode.IO_FAILURE == err.code
        assert err.msg.endswith("10.0.0.2: permission denied")

    def test_vanished_directory(self, tmp_path: Path) -> None:
        """Releasing from a store whose directory disappeared finds nothing, raises nothing."""
        store = Store("net", str(tmp_path))
        (tmp_path / "net" / "lock").unlink()
        (tmp_path / "net").rmdir()
        with store.locked():
            store.release_by_id("c1", "eth0")
        store.close()

    def test_unreadable_entries_are_skipped(self, data_dir: Path) -> None:
        """Dangling links and files not named by an address do not disturb ADD, CHECK or DEL."""
        conf = conf_for(data_dir, subnet="10.0.0.0/24")
        root = data_dir / "net"
        root.mkdir(parents=True)
        (root / "dangling").symlink_to(root / "nowhere")
        (root / "notes").write_bytes(b"c1\r\neth0")
        add(conf)
        HostLocal().check(request(conf, Command.CHECK))
        HostLocal().delete(request(conf, Command.DEL))

        assert {"dangling", "lock", "last_reserved_ip.0"} == {p.name for p in root.iterdir()}

    def test_unremovable_match_is_skipped(
        self, data_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """DEL eats removal errors (Go: "release as much as possible")."""
        conf = conf_for(data_dir, subnet="10.0.0.0/24")
        add(conf)

        def unlink(path: Any) -> None:
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(os, "unlink", unlink)
        HostLocal().delete(request(conf, Command.DEL))
        monkeypatch.undo()

        assert ["10.0.0.2"] == list(store_files(data_dir))

    def test_gc_skips_odd_address_entries(self, data_dir: Path) -> None:
        """GC ignores a dangling link or a directory named by an address."""
        conf = conf_for(data_dir, "1.1.0", subnet="10.0.0.0/24")
        conf["cni.dev/valid-attachments"] = []
        root = data_dir / "net"
        (root / "10.0.0.8").mkdir(parents=True)
        (root / "10.0.0.9").symlink_to(root / "nowhere")
        HostLocal().gc(request(conf, Command.GC))

        assert {"10.0.0.8", "10.0.0.9", "lock"} == {p.name for p in root.iterdir()}

    def test_gc_unreadable_address_file(self, data_dir: Path) -> None:
        """An address file GC cannot read (a symlink loop) fails the GC with code 5."""
        conf = conf_for(data_dir, "1.1.0", subnet="10.0.0.0/24")
        conf["cni.dev/valid-attachments"] = []
        root = data_dir / "net"
        root.mkdir(parents=True)
        (root / "10.0.0.9").symlink_to(root / "10.0.0.9")

        assert ErrorCode.IO_FAILURE == error_of(conf, Command.GC).code

    def test_cni_args_without_ip(self, data_dir: Path) -> None:
        """CNI_ARGS without IP= requests nothing."""
        conf = conf_for(data_dir, subnet="10.0.0.0/24")

        assert ["10.0.0.2/24"] == addrs(add(conf, args=(("IgnoreUnknown", "1"), ("X", "y"))))
