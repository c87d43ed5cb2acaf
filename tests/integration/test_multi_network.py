"""Several networks per container (go-cni's Setup/Remove/Check), for CNI and
AsyncCNI alike: interface naming, deterministic result order, removal of the
networks already attached when one fails, teardown and check that try all."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cnilib
from cnilib._json import JSONValue
from cnilib.invoke import Command, Invocation
from cnilib.testing import MockExecutor, read_recording

DRIVERS = ["CNI", "AsyncCNI"]
DELAY = {"net1": 0.4, "net2": 0.2, "net3": 0.0}
"""How long each network's ADD takes in the ordering test: the last finishes first."""
NS = "/run/netns/ctr1"

Nets = Callable[..., list[cnilib.NetworkConfigList]]


async def done(value: Any) -> Any:
    """The value of a runtime call, awaited when the driver is AsyncCNI."""
    if inspect.isawaitable(value):
        return await value
    return value


def runtime(driver: str, **kwargs: Any) -> Any:
    return {"CNI": cnilib.CNI, "AsyncCNI": cnilib.AsyncCNI}[driver](**kwargs)


def result_for(index: int) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "ips": [{"address": f"10.{index}.0.2/24"}]}


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def cni(driver: str, cnilib_cni_bin_dir: Path, cnilib_cache_dir: Path) -> Any:
    """The runtime under test, with the recorder on its CNI_PATH."""
    return runtime(
        driver, plugin_dirs=[str(cnilib_cni_bin_dir)], cache_dir=cnilib_cache_dir, timeout=20
    )


@pytest.fixture
def nets(cnilib_recorder_log: Path) -> Nets:
    """``nets(n, net2={...})``: lists net1 … netN of two recorder plugins each (tags
    ``<net>-a``, ``<net>-b``); plugin a answers ADD with a result unique to its network;
    keyword arguments give a network's recorder instructions for plugin b."""

    def make(n: int, **instructions: dict[str, Any]) -> list[cnilib.NetworkConfigList]:
        out = []
        for index in range(1, n + 1):
            name = f"net{index}"
            first = {"log": str(cnilib_recorder_log), "ADD": {"result": result_for(index)}}
            second = {"log": str(cnilib_recorder_log), **instructions.get(name, {})}
            plugins = [
                {"type": "recorder", "tag": f"{name}-a", "recorder": first},
                {"type": "recorder", "tag": f"{name}-b", "recorder": second},
            ]
            doc = {"cniVersion": "1.1.0", "name": name, "plugins": plugins}
            out.append(cnilib.conflist_from_bytes(json.dumps(doc).encode()))
        return out

    return make


def recorded(log: Path) -> list[tuple[str, str, str]]:
    """(verb, tag, CNI_IFNAME) of every recorded call."""
    out = []
    for call in read_recording(log):
        stdin, env = call["stdin"], call["env"]
        assert isinstance(stdin, dict)
        assert isinstance(env, dict)
        out.append((str(call["verb"]), str(stdin.get("tag")), str(env["CNI_IFNAME"])))
    return out


def forget_calls(log: Path) -> None:
    """Start the recording afresh."""
    log.unlink()


def entries(cache_dir: Path) -> list[str]:
    results = cache_dir / "results"
    return sorted(os.listdir(results)) if results.exists() else []


def error_object(code: int, msg: str) -> dict[str, Any]:
    return {"error": {"code": code, "msg": msg}}


class TestSetup:
    @pytest.mark.asyncio
    async def test_serial_setup_names_interfaces_eth0_eth1(
        self, cni: Any, nets: Nets, cnilib_recorder_log: Path, cnilib_cache_dir: Path
    ) -> None:
        """Interfaces are eth0, eth1, …; results come back in network order; all cached."""
        attached = await done(cni.setup_networks("ctr1", NS, nets(3)))

        assert [
            ("net1", "eth0", result_for(1)["ips"]),
            ("net2", "eth1", result_for(2)["ips"]),
            ("net3", "eth2", result_for(3)["ips"]),
        ] == [(a.network, a.ifname, json.loads(a.result.to_json())["ips"]) for a in attached]
        assert [("ADD", f"net{i}-{p}", f"eth{i - 1}") for i in (1, 2, 3) for p in "ab"] == recorded(
            cnilib_recorder_log
        )
        assert ["net1-ctr1-eth0", "net2-ctr1-eth1", "net3-ctr1-eth2"] == entries(cnilib_cache_dir)

    @pytest.mark.asyncio
    async def test_prefix_and_explicit_ifnames(
        self, cni: Any, nets: Nets, cnilib_recorder_log: Path, cnilib_cache_dir: Path
    ) -> None:
        """ifname_prefix names net0, net1, …; explicit ifnames are used as given."""
        by_prefix = await done(cni.setup_networks("ctr1", NS, nets(2), ifname_prefix="net"))
        given = await done(cni.setup_networks("ctr2", NS, nets(2), ifnames=["ens5", "lan"]))

        assert [("net1", "net0"), ("net2", "net1")] == [(a.network, a.ifname) for a in by_prefix]
        assert [("net1", "ens5"), ("net2", "lan")] == [(a.network, a.ifname) for a in given]
        assert [
            "net1-ctr1-net0",
            "net1-ctr2-ens5",
            "net2-ctr1-net1",
            "net2-ctr2-lan",
        ] == entries(cnilib_cache_dir)

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "ifnames", [["eth0"], ["eth0", "eth1", "eth2"], ["eth0", "a/b"], ["eth0", ""]]
    )
    async def test_bad_ifnames_refused_before_any_plugin(
        self, cni: Any, nets: Nets, cnilib_recorder_log: Path, ifnames: list[str]
    ) -> None:
        """A wrong number of ifnames or an invalid one is refused; no plugin runs."""
        with pytest.raises(cnilib.InvalidArgumentError):
            await done(cni.setup_networks("ctr1", NS, nets(2), ifnames=ifnames))

        assert [] == recorded(cnilib_recorder_log)

    @pytest.mark.asyncio
    @pytest.mark.parametrize("concurrent", [False, True])
    async def test_result_order_is_input_order(
        self, driver: str, cnilib_cache_dir: Path, concurrent: bool
    ) -> None:
        """Results follow the networks' order even when later networks finish first."""
        finished: list[str] = []

        def answer(invocation: Invocation) -> bytes:
            name = json.loads(invocation.stdin)["name"]
            finished.append(name)
            index = int(name[-1])
            return json.dumps(result_for(index)).encode()

        def sync_handler(invocation: Invocation) -> bytes:
            name = json.loads(invocation.stdin)["name"]
            time.sleep(DELAY[name])
            return answer(invocation)

        async def async_handler(invocation: Invocation) -> bytes:
            name = json.loads(invocation.stdin)["name"]
            await asyncio.sleep(DELAY[name])
            return answer(invocation)

        handler = sync_handler if driver == "CNI" else async_handler
        cni = runtime(driver, cache_dir=cnilib_cache_dir, executor=MockExecutor(handler))
        confs = [
            cnilib.conflist_from_bytes(
                json.dumps({"cniVersion": "1.1.0", "name": n, "plugins": [{"type": "x"}]}).encode()
            )
            for n in ("net1", "net2", "net3")
        ]

        attached = await done(cni.setup_networks("ctr1", NS, confs, concurrent=concurrent))

        expected_finish = ["net3", "net2", "net1"] if concurrent else ["net1", "net2", "net3"]
        assert expected_finish == finished
        assert [("net1", "eth0"), ("net2", "eth1"), ("net3", "eth2")] == [
            (a.network, a.ifname) for a in attached
        ]
        assert [result_for(i)["ips"] for i in (1, 2, 3)] == [
            json.loads(a.result.to_json())["ips"] for a in attached
        ]

    @pytest.mark.asyncio
    @pytest.mark.parametrize("concurrent", [False, True])
    async def test_failing_second_network_removes_the_first(
        self,
        cni: Any,
        nets: Nets,
        cnilib_recorder_log: Path,
        cnilib_cache_dir: Path,
        concurrent: bool,
    ) -> None:
        """net2 fails: its chain rolls itself back, net1 is DELed again; notes say so."""
        confs = nets(2, net2={"ADD": error_object(7, "no room")})

        with pytest.raises(cnilib.PluginError) as info:
            await done(cni.setup_networks("ctr1", NS, confs, concurrent=concurrent))

        err = info.value
        assert 'plugin type="recorder" failed (add): no room' == str(err)
        assert 7 == err.code
        assert ["rolled back: DEL recorder", "removed again: net1"] == err.__notes__
        calls = recorded(cnilib_recorder_log)
        assert sorted(
            [
                ("ADD", "net1-a", "eth0"),
                ("ADD", "net1-b", "eth0"),
                ("ADD", "net2-a", "eth1"),
                ("ADD", "net2-b", "eth1"),
                ("DEL", "net2-a", "eth1"),
                ("DEL", "net1-b", "eth0"),
                ("DEL", "net1-a", "eth0"),
            ]
        ) == sorted(calls)
        net1_dels = [c for c in calls if c[0] == "DEL" and c[1].startswith("net1")]
        assert [("DEL", "net1-b", "eth0"), ("DEL", "net1-a", "eth0")] == net1_dels
        assert [] == entries(cnilib_cache_dir)

    @pytest.mark.asyncio
    async def test_serial_failure_removes_every_attached_network(
        self, cni: Any, nets: Nets, cnilib_recorder_log: Path, cnilib_cache_dir: Path
    ) -> None:
        """With three networks and the middle one failing, nothing stays attached."""
        confs = nets(3, net2={"ADD": error_object(11, "later")})

        with pytest.raises(cnilib.TryAgainLaterError) as info:
            await done(cni.setup_networks("ctr1", NS, confs))

        assert "removed again: " in info.value.__notes__[-1]
        assert "net1" in info.value.__notes__[-1]
        adds = {c[1] for c in recorded(cnilib_recorder_log) if c[0] == "ADD"}
        dels = {c[1] for c in recorded(cnilib_recorder_log) if c[0] == "DEL"}
        assert adds - {"net2-b"} == dels  # whatever was attached was removed
        assert [] == entries(cnilib_cache_dir)

    @pytest.mark.asyncio
    async def test_serial_setup_stops_at_first_failure(
        self, cni: Any, nets: Nets, cnilib_recorder_log: Path
    ) -> None:
        """Serial setup attaches nothing after the first failing network."""
        confs = nets(3, net2={"ADD": error_object(11, "later")})

        with pytest.raises(cnilib.TryAgainLaterError):
            await done(cni.setup_networks("ctr1", NS, confs))

        assert [] == [c for c in recorded(cnilib_recorder_log) if c[1].startswith("net3")]

    @pytest.mark.asyncio
    async def test_removal_failure_is_noted(
        self, cni: Any, nets: Nets, cnilib_recorder_log: Path, cnilib_cache_dir: Path
    ) -> None:
        """If removing an attached network fails, the note says which and why; its entry stays."""
        confs = nets(
            2,
            net1={"DEL": error_object(11, "stuck")},
            net2={"ADD": error_object(7, "no room")},
        )

        with pytest.raises(cnilib.PluginError) as info:
            await done(cni.setup_networks("ctr1", NS, confs))

        assert [
            "rolled back: DEL recorder",
            'could not remove: net1: plugin type="recorder" failed (delete): stuck',
        ] == info.value.__notes__
        assert ["net1-ctr1-eth0"] == entries(cnilib_cache_dir)

    @pytest.mark.asyncio
    async def test_interrupted_setup_removes_attached_networks(
        self, driver: str, cnilib_cache_dir: Path
    ) -> None:
        """Cancelling setup_networks (Ctrl-C for CNI) in net2's ADD also removes net1."""
        started = asyncio.Event()

        def sync_handler(invocation: Invocation) -> bytes:
            if invocation.command.value == "ADD" and b'"net2"' in invocation.stdin:
                raise KeyboardInterrupt
            return json.dumps(result_for(1)).encode() if invocation.command.value == "ADD" else b""

        async def async_handler(invocation: Invocation) -> bytes:
            if invocation.command.value == "ADD" and b'"net2"' in invocation.stdin:
                started.set()
                await asyncio.sleep(60)
            return sync_handler(invocation)

        mock = MockExecutor(sync_handler if driver == "CNI" else async_handler)
        cni = runtime(driver, cache_dir=cnilib_cache_dir, executor=mock)
        confs = [
            cnilib.conflist_from_bytes(
                json.dumps({"cniVersion": "1.1.0", "name": n, "plugins": [{"type": "x"}]}).encode()
            )
            for n in ("net1", "net2")
        ]

        if driver == "CNI":
            with pytest.raises(KeyboardInterrupt):
                cni.setup_networks("ctr1", NS, confs)
        else:
            task = asyncio.create_task(cni.setup_networks("ctr1", NS, confs))
            await asyncio.wait_for(started.wait(), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        assert [("ADD", "eth0"), ("ADD", "eth1"), ("DEL", "eth1"), ("DEL", "eth0")] == [
            (i.command.value, i.ifname) for i in mock.invocations
        ]
        assert [] == entries(cnilib_cache_dir)


class TestTeardownAndCheck:
    @pytest.mark.asyncio
    @pytest.mark.parametrize("concurrent", [False, True])
    async def test_teardown_removes_all_last_first(
        self,
        cni: Any,
        nets: Nets,
        cnilib_recorder_log: Path,
        cnilib_cache_dir: Path,
        concurrent: bool,
    ) -> None:
        """teardown_networks DELs every network (serially: last first) and empties the cache."""
        await done(cni.setup_networks("ctr1", NS, nets(3)))
        forget_calls(cnilib_recorder_log)

        await done(cni.teardown_networks("ctr1", NS, nets(3), concurrent=concurrent))

        dels = [(c[1], c[2]) for c in recorded(cnilib_recorder_log)]
        expected = [(f"net{i}-{p}", f"eth{i - 1}") for i in (3, 2, 1) for p in "ba"]
        assert expected == dels if not concurrent else sorted(expected) == sorted(dels)
        assert [] == entries(cnilib_cache_dir)

    @pytest.mark.asyncio
    @pytest.mark.parametrize("concurrent", [False, True])
    async def test_teardown_attempts_all_and_raises_every_failure(
        self,
        cni: Any,
        nets: Nets,
        cnilib_recorder_log: Path,
        cnilib_cache_dir: Path,
        concurrent: bool,
    ) -> None:
        """Two failing DELs: the third network is still removed; one TeardownError has both."""
        confs = nets(
            3, net1={"DEL": error_object(11, "one")}, net3={"DEL": error_object(5, "three")}
        )
        await done(cni.setup_networks("ctr1", NS, confs))
        forget_calls(cnilib_recorder_log)

        with pytest.raises(cnilib.TeardownError) as info:
            await done(cni.teardown_networks("ctr1", NS, confs, concurrent=concurrent))

        err = info.value
        assert [
            (cnilib.PluginError, 5, 'plugin type="recorder" failed (delete): three'),
            (cnilib.TryAgainLaterError, 11, 'plugin type="recorder" failed (delete): one'),
        ] == [(type(e), e.code, str(e)) for e in err.exceptions if isinstance(e, cnilib.CNIError)]
        assert 2 == len(err.exceptions)
        assert "teardown of container ctr1 failed" == err.msg
        assert {"net3-b", "net2-b", "net2-a", "net1-b"} == {
            c[1] for c in recorded(cnilib_recorder_log)
        }
        assert ["net1-ctr1-eth0", "net3-ctr1-eth2"] == entries(cnilib_cache_dir)

    @pytest.mark.asyncio
    async def test_check_networks_checks_every_network(
        self, cni: Any, nets: Nets, cnilib_recorder_log: Path
    ) -> None:
        """check_networks CHECKs each network's chain on its interface, in order."""
        await done(cni.setup_networks("ctr1", NS, nets(2)))
        forget_calls(cnilib_recorder_log)

        await done(cni.check_networks("ctr1", NS, nets(2)))

        assert [
            ("CHECK", "net1-a", "eth0"),
            ("CHECK", "net1-b", "eth0"),
            ("CHECK", "net2-a", "eth1"),
            ("CHECK", "net2-b", "eth1"),
        ] == recorded(cnilib_recorder_log)

    @pytest.mark.asyncio
    async def test_check_networks_reports_failures_after_checking_all(
        self, cni: Any, nets: Nets, cnilib_recorder_log: Path
    ) -> None:
        """A failing CHECK does not stop the others; the failures are raised together."""
        confs = nets(3, net1={"CHECK": error_object(11, "not yet")})
        await done(cni.setup_networks("ctr1", NS, confs))
        forget_calls(cnilib_recorder_log)

        with pytest.raises(cnilib.TeardownError) as info:
            await done(cni.check_networks("ctr1", NS, confs))

        assert "check of container ctr1 failed" == info.value.msg
        assert ['plugin type="recorder" failed (check): not yet'] == [
            str(e) for e in info.value.exceptions
        ]
        assert ["net2-a", "net2-b", "net3-a", "net3-b"] == [
            c[1] for c in recorded(cnilib_recorder_log) if c[1] >= "net2"
        ]


class TestRecordedArgs:
    """DEL and CHECK without CNI_ARGS or capability args use those the ADD recorded."""

    @staticmethod
    def runtime_config(invocation: Invocation) -> object:
        return json.loads(invocation.stdin).get("runtimeConfig")

    @pytest.mark.parametrize("driver", ["sync", "async"])
    def test_teardown_and_check_networks_default_to_the_recorded_args(
        self, tmp_path: Path, driver: str
    ) -> None:
        mock = MockExecutor(recorded_answer)
        nets = [capable_net("n1"), capable_net("n2")]
        caps: dict[str, JSONValue] = {
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
        }
        if driver == "sync":
            cni = cnilib.CNI([], cache_dir=tmp_path, executor=mock)
            cni.setup_networks("c1", "/ns", nets, capability_args=caps, args=[("K", "v")])
            cni.check_networks("c1", "/ns", nets)
            cni.teardown_networks("c1", "/ns", nets)
        else:
            acni = cnilib.AsyncCNI([], cache_dir=tmp_path, executor=mock)

            async def run() -> None:
                await acni.setup_networks(
                    "c1", "/ns", nets, capability_args=caps, args=[("K", "v")]
                )
                await acni.check_networks("c1", "/ns", nets)
                await acni.teardown_networks("c1", "/ns", nets)

            asyncio.run(run())

        seen = [(i.command.value, i.args, self.runtime_config(i)) for i in mock.invocations]
        expected_rc = {"portMappings": caps["portMappings"]}
        assert [("ADD", (("K", "v"),), expected_rc)] * 2 + [
            ("CHECK", (("K", "v"),), expected_rc)
        ] * 2 + [("DEL", (("K", "v"),), expected_rc)] * 2 == seen

    def test_explicit_args_win_over_the_recorded_ones(self, tmp_path: Path) -> None:
        mock = MockExecutor(recorded_answer)
        cni = cnilib.CNI([], cache_dir=tmp_path, executor=mock)
        caps: dict[str, JSONValue] = {
            "portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "tcp"}]
        }
        other: dict[str, JSONValue] = {
            "portMappings": [{"hostPort": 3, "containerPort": 4, "protocol": "udp"}]
        }
        rt = cnilib.RuntimeConf("c1", "/ns", "eth0", capability_args=caps)
        cni.add_network_list(capable_net("n1"), rt)

        cni.delete_network_list(
            capable_net("n1"), cnilib.RuntimeConf("c1", "/ns", "eth0", capability_args=other)
        )

        assert other == self.runtime_config(mock.invocations[-1])

    def test_recorded_keys_fill_in_what_the_caller_leaves_out(self, tmp_path: Path) -> None:
        """A DEL that sends only some capability args or CNI_ARGS keys still gets
        the other recorded ones; the caller's win key by key."""
        mock = MockExecutor(recorded_answer)
        cni = cnilib.CNI([], cache_dir=tmp_path, executor=mock)
        ports: JSONValue = [{"hostPort": 1, "containerPort": 2, "protocol": "tcp"}]
        net = capable_net("n1", "portMappings", "dns")
        cni.add_network_list(
            net,
            cnilib.RuntimeConf(
                "c1",
                "/ns",
                "eth0",
                args=[("A", "1"), ("B", "2")],
                capability_args={"portMappings": ports, "dns": {"servers": ["10.0.0.1"]}},
            ),
        )

        cni.delete_network_list(
            net,
            cnilib.RuntimeConf(
                "c1", "/ns", "eth0", args=[("B", "3")], capability_args={"dns": {"servers": []}}
            ),
        )

        last = mock.invocations[-1]
        assert (("A", "1"), ("B", "3")) == last.args
        assert {"portMappings": ports, "dns": {"servers": []}} == self.runtime_config(last)

    def test_single_network_del_after_a_crash_uses_the_pending_entrys_args(
        self, tmp_path: Path
    ) -> None:
        """An interrupted ADD's pending entry carries the capability args too."""
        from cnilib.cache import CacheEntry, FileCache

        caps: dict[str, JSONValue] = {
            "portMappings": [{"hostPort": 5, "containerPort": 6, "protocol": "tcp"}]
        }
        net = capable_net("n1")
        FileCache(tmp_path).save(
            CacheEntry("n1", "c1", "eth0", net.bytes, netns="/ns", capability_args=caps)
        )
        mock = MockExecutor(recorded_answer)
        cnilib.CNI([], cache_dir=tmp_path, executor=mock).delete_network_list(
            net, cnilib.RuntimeConf("c1", "/ns", "eth0")
        )

        assert caps == self.runtime_config(mock.invocations[-1])
        assert "prevResult" not in json.loads(mock.invocations[-1].stdin)


def capable_net(name: str, *capabilities: str) -> cnilib.NetworkConfigList:
    enabled = dict.fromkeys(capabilities or ("portMappings",), True)
    doc = {
        "cniVersion": "1.1.0",
        "name": name,
        "plugins": [{"type": "pm", "capabilities": enabled}],
    }
    return cnilib.conflist_from_bytes(json.dumps(doc).encode())


def recorded_answer(invocation: Invocation) -> bytes:
    if invocation.command is Command.ADD:
        return b'{"cniVersion":"1.1.0","ips":[{"address":"10.1.2.3/24"}]}'
    return b""
