"""Sync/async parity: one list of scenarios, run against ``CNI`` and ``AsyncCNI``
with real recorder processes, must give identical outcomes: exception type, code,
text, notes and rollback; the recorded invocations; the cache afterwards."""

from __future__ import annotations

import inspect
import json
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

import cnilib
from cnilib.invoke import PluginInfo
from cnilib.testing import install_recording_plugin, read_recording

RT1 = cnilib.RuntimeConf("ctr1", "/run/netns/ctr1", "eth0")
RT2 = cnilib.RuntimeConf("ctr2", "/run/netns/ctr2", "eth0")
RESULT_A = {
    "cniVersion": "1.1.0",
    "interfaces": [{"name": "eth0", "sandbox": "/run/netns/ctr1"}],
    "ips": [{"address": "10.250.0.5/24", "gateway": "10.250.0.1", "interface": 0}],
}

Confs = dict[str, Any]
"""The scenario's network lists by name, and ``"solo"``: a single-plugin config."""
Step = Callable[[Any, Confs], object]
"""One call on the runtime (``CNI`` or ``AsyncCNI``): returns a value or an awaitable."""
Call = tuple[str, str, bool]


def err(code: int, msg: str) -> dict[str, Any]:
    """A recorder instruction: answer with this error object."""
    return {"error": {"code": code, "msg": msg}}


@attrs.frozen
class Scenario:
    """Networks (name -> plugin entries), steps, and what must come out of them."""

    name: str
    steps: tuple[Step, ...]
    errors: tuple[str | None, ...]
    """Per step: the exception type's name, or ``None`` for success."""
    calls: tuple[Call, ...]
    """Every recorded (verb, tag, has prevResult), in order."""
    entries: tuple[str, ...] = ()
    """The cache files afterwards."""
    networks: dict[str, list[dict[str, Any]]] = attrs.Factory(dict)
    version: str = "1.1.0"
    timeout: float = 20
    corrupt: bool = False
    """Write garbage as net1's cache entry for ctr1/eth0 before the steps."""


def add(net: str = "net1", rt: cnilib.RuntimeConf = RT1) -> Step:
    return lambda cni, c: cni.add_network_list(c[net], rt)


def check(net: str = "net1", rt: cnilib.RuntimeConf = RT1) -> Step:
    return lambda cni, c: cni.check_network_list(c[net], rt)


def delete(net: str = "net1", rt: cnilib.RuntimeConf = RT1) -> Step:
    return lambda cni, c: cni.delete_network_list(c[net], rt)


def gc(valid: Sequence[tuple[str, str]] | None, **kwargs: bool) -> Step:
    return lambda cni, c: cni.gc_network_list(c["net1"], valid, **kwargs)


NETS = ["net1", "net2"]

SCENARIOS = [
    Scenario(
        "success-chain",
        networks={"net1": [{"tag": "a", "recorder": {"ADD": {"result": RESULT_A}}}, {"tag": "b"}]},
        steps=(
            add(),
            check(),
            lambda cni, c: cni.cached_result(c["net1"], RT1),
            lambda cni, c: cni.cached_config(c["net1"], RT1),
            lambda cni, c: cni.cached_attachments("ctr1"),
            delete(),
        ),
        errors=(None,) * 6,
        calls=(
            ("ADD", "a", False),
            ("ADD", "b", True),
            ("CHECK", "a", True),
            ("CHECK", "b", True),
            ("DEL", "b", True),
            ("DEL", "a", True),
        ),
    ),
    Scenario(
        "plugin-2-answers-error",
        networks={"net1": [{"tag": "a"}, {"tag": "b", "recorder": {"ADD": err(7, "bad")}}, {}]},
        steps=(add(),),
        errors=("PluginError",),
        calls=(("ADD", "a", False), ("ADD", "b", True), ("DEL", "a", True)),
    ),
    Scenario(
        "plugin-2-killed-by-signal",
        networks={"net1": [{"tag": "a"}, {"tag": "b", "recorder": {"ADD": {"signal": "KILL"}}}]},
        steps=(add(),),
        errors=("PluginOutputError",),
        calls=(("ADD", "a", False), ("ADD", "b", True), ("DEL", "b", True), ("DEL", "a", True)),
    ),
    Scenario(
        "plugin-2-prints-garbage",
        networks={"net1": [{"tag": "a"}, {"tag": "b", "recorder": {"ADD": {"stdout": "{oops"}}}]},
        steps=(add(),),
        errors=("ResultDecodeError",),
        calls=(("ADD", "a", False), ("ADD", "b", True), ("DEL", "b", True), ("DEL", "a", True)),
    ),
    Scenario(
        "plugin-2-times-out",
        networks={"net1": [{"tag": "a"}, {"tag": "b", "recorder": {"ADD": {"sleep": 10}}}]},
        timeout=0.5,
        steps=(add(),),
        errors=("PluginTimeoutError",),
        calls=(("ADD", "a", False), ("ADD", "b", True), ("DEL", "b", True), ("DEL", "a", True)),
    ),
    Scenario(
        "plugin-prints-10mb",
        networks={
            "net1": [
                {"tag": "a", "recorder": {"ADD": {"result": RESULT_A, "stdout_size": 10_000_000}}},
                {
                    "tag": "b",
                    "recorder": {"ADD": {"stdout": "oops", "exit": 1, "stdout_size": 10_000_000}},
                },
            ]
        },
        steps=(add(),),
        errors=("PluginOutputError",),
        calls=(("ADD", "a", False), ("ADD", "b", True), ("DEL", "b", True), ("DEL", "a", True)),
    ),
    Scenario(
        "plugin-prints-nothing-exit-0",
        networks={"net1": [{"tag": "a"}, {"tag": "b", "recorder": {"ADD": {"stdout": ""}}}]},
        steps=(add(),),
        errors=("ResultDecodeError",),
        calls=(("ADD", "a", False), ("ADD", "b", True), ("DEL", "b", True), ("DEL", "a", True)),
    ),
    Scenario(
        "rollback-del-fails",
        networks={
            "net1": [
                {"tag": "a", "recorder": {"DEL": err(11, "busy")}},
                {"tag": "b", "recorder": {"ADD": err(7, "bad")}},
            ]
        },
        steps=(add(), lambda cni, c: cni.cached_attachments()),
        errors=("PluginError", None),
        calls=(("ADD", "a", False), ("ADD", "b", True), ("DEL", "a", True)),
        entries=("net1-ctr1-eth0",),
    ),
    Scenario(
        "check-fails",
        networks={"net1": [{"tag": "a"}, {"tag": "b", "recorder": {"CHECK": err(11, "later")}}]},
        steps=(add(), check()),
        errors=(None, "TryAgainLaterError"),
        calls=(("ADD", "a", False), ("ADD", "b", True), ("CHECK", "a", True), ("CHECK", "b", True)),
        entries=("net1-ctr1-eth0",),
    ),
    Scenario(
        "delete-fails-keeps-entry",
        networks={"net1": [{"tag": "a"}, {"tag": "b", "recorder": {"DEL": err(11, "busy")}}]},
        steps=(add(), delete()),
        errors=(None, "TryAgainLaterError"),
        calls=(("ADD", "a", False), ("ADD", "b", True), ("DEL", "b", True)),
        entries=("net1-ctr1-eth0",),
    ),
    Scenario(
        "gc-with-valid-list",
        networks={"net1": [{"tag": "a"}]},
        steps=(add(), add(rt=RT2), gc([("ctr1", "eth0")])),
        errors=(None, None, None),
        calls=(("ADD", "a", False), ("ADD", "a", False), ("DEL", "a", True), ("GC", "a", False)),
        entries=("net1-ctr1-eth0",),
    ),
    Scenario(
        "gc-dry-run",
        networks={"net1": [{"tag": "a"}]},
        steps=(add(), gc([], dry_run=True)),
        errors=(None, None),
        calls=(("ADD", "a", False),),
        entries=("net1-ctr1-eth0",),
    ),
    Scenario(
        "gc-failures-collected",
        networks={"net1": [{"tag": "a", "recorder": {"DEL": err(11, "x"), "GC": err(5, "y")}}]},
        steps=(add(), gc(None)),
        errors=(None, "GCError"),
        calls=(("ADD", "a", False), ("DEL", "a", True), ("GC", "a", False)),
        entries=("net1-ctr1-eth0",),
    ),
    Scenario(
        "gc-below-1.1.0-sends-no-gc",
        networks={"net1": [{"tag": "a"}]},
        version="1.0.0",
        steps=(add(), gc(None)),
        errors=(None, None),
        calls=(("ADD", "a", False), ("DEL", "a", True)),
    ),
    Scenario(
        "status-50",
        networks={"net1": [{"tag": "a", "recorder": {"STATUS": err(50, "no ipam")}}, {"tag": "b"}]},
        steps=(lambda cni, c: cni.status_network_list(c["net1"]),),
        errors=("PluginNotAvailableError",),
        calls=(("STATUS", "a", False),),
    ),
    Scenario(
        "status-below-1.1.0-is-a-no-op",
        networks={"net1": [{"tag": "a", "recorder": {"STATUS": err(50, "no")}}]},
        version="1.0.0",
        steps=(lambda cni, c: cni.status_network_list(c["net1"]),),
        errors=(None,),
        calls=(),
    ),
    Scenario(
        "cache-corrupt-on-del",
        networks={"net1": [{"tag": "a"}, {"tag": "b"}]},
        corrupt=True,
        steps=(delete(),),
        errors=(None,),
        calls=(("DEL", "b", False), ("DEL", "a", False)),
    ),
    Scenario(
        "cache-corrupt-on-check",
        networks={"net1": [{"tag": "a"}]},
        corrupt=True,
        steps=(check(), lambda cni, c: cni.cached_result(c["net1"], RT1)),
        errors=("CacheError", "CacheError"),
        calls=(),
        entries=("net1-ctr1-eth0",),
    ),
    Scenario(
        "check-below-0.4.0",
        networks={"net1": [{"tag": "a"}]},
        version="0.3.1",
        steps=(add(), check(), delete()),
        errors=(None, "CheckNotSupportedError", None),
        calls=(("ADD", "a", False), ("DEL", "a", False)),
    ),
    Scenario(
        "validate-version-gate",
        networks={"net1": [{"type": "recorder-v040"}, {"type": "recorder-v040"}], "net2": [{}]},
        version="1.0.0",
        steps=(
            lambda cni, c: cni.validate_network_list(c["net1"]),
            lambda cni, c: cni.validate_network_list(c["net2"]),
            lambda cni, c: cni.get_version_info("recorder-v040"),
            lambda cni, c: cni.get_version_info("nope"),
        ),
        errors=("ValidationGroupError", None, None, "PluginNotFoundError"),
        calls=(),
    ),
    Scenario(
        "invalid-arguments",
        networks={"net1": [{"tag": "a"}]},
        steps=(
            add(rt=cnilib.RuntimeConf("../x", "/x", "eth0")),
            delete(rt=cnilib.RuntimeConf("ctr1", "/x", "e/th0")),
            add(rt=cnilib.RuntimeConf("ctr1", "/x", "eth0", args=(("K", "a;b"),))),
        ),
        errors=("InvalidArgumentError",) * 3,
        calls=(),
    ),
    Scenario(
        "single-plugin",
        steps=(
            lambda cni, c: cni.add_network(c["solo"], RT1),
            lambda cni, c: cni.cached_network_result(c["solo"], RT1),
            lambda cni, c: cni.check_network(c["solo"], RT1),
            lambda cni, c: cni.delete_network(c["solo"], RT1),
        ),
        errors=(None, None, "PluginError", None),
        calls=(("ADD", "s", False), ("CHECK", "s", True), ("DEL", "s", True)),
    ),
    Scenario(
        "multi-network",
        networks={"net1": [{"tag": "a"}], "net2": [{"tag": "b"}]},
        steps=(
            lambda cni, c: cni.setup_networks("ctr1", "/x", [c["net1"], c["net2"]]),
            lambda cni, c: cni.check_networks("ctr1", "/x", [c["net1"], c["net2"]]),
            lambda cni, c: cni.teardown_networks("ctr1", "/x", [c["net1"], c["net2"]]),
        ),
        errors=(None, None, None),
        calls=(
            ("ADD", "a", False),
            ("ADD", "b", False),
            ("CHECK", "a", True),
            ("CHECK", "b", True),
            ("DEL", "b", True),
            ("DEL", "a", True),
        ),
    ),
    Scenario(
        "multi-network-second-fails",
        networks={"net1": [{"tag": "a"}], "net2": [{"tag": "b", "recorder": {"ADD": err(7, "x")}}]},
        steps=(lambda cni, c: cni.setup_networks("ctr1", "/x", [c["net1"], c["net2"]]),),
        errors=("PluginError",),
        calls=(("ADD", "a", False), ("ADD", "b", False), ("DEL", "a", True)),
    ),
    Scenario(
        "multi-network-teardown-fails",
        networks={
            "net1": [{"tag": "a", "recorder": {"DEL": err(11, "x")}}],
            "net2": [{"tag": "b", "recorder": {"DEL": err(11, "y")}}],
        },
        steps=(
            lambda cni, c: cni.setup_networks("ctr1", "/x", [c["net1"], c["net2"]]),
            lambda cni, c: cni.teardown_networks("ctr1", "/x", [c["net1"], c["net2"]]),
        ),
        errors=(None, "TeardownError"),
        calls=(("ADD", "a", False), ("ADD", "b", False), ("DEL", "b", True), ("DEL", "a", True)),
        entries=("net1-ctr1-eth0", "net2-ctr1-eth1"),
    ),
]

_ELAPSED = re.compile(r"timed out after \d+\.\ds")


def norm(text: str) -> str:
    """Error text with the (inherently variable) elapsed time of a timeout masked."""
    return _ELAPSED.sub("timed out after <t>s", text)


def summarize(value: object) -> object:
    """A comparable, JSON-like picture of whatever a runtime method returned."""
    if value is None or isinstance(value, str | int | bytes):
        return value
    if isinstance(value, cnilib.GCReport):
        return {
            "stale": summarize(list(value.stale)),
            "deleted": summarize(list(value.deleted)),
            "skipped_owners": value.skipped_owners,
            "plugins_gc": value.plugins_gc,
        }
    if isinstance(value, cnilib.CacheEntry):
        return [value.network_name, value.container_id, value.ifname, value.pending, value.owner]
    if isinstance(value, cnilib.Attached):
        return [value.network, value.ifname, summarize(value.result)]
    if isinstance(value, cnilib.RuntimeConf):
        return [value.container_id, value.netns, value.ifname, value.args]
    if isinstance(value, PluginInfo):
        return [value.cni_version, list(value.supported_versions)]
    if isinstance(value, list | tuple):
        return [summarize(v) for v in value]
    to_json = getattr(value, "to_json", None)
    if to_json is not None:  # a Result
        return json.loads(to_json())
    raise AssertionError(f"no summary for {value!r}")


def describe(exc: cnilib.CNIError) -> dict[str, object]:
    """Everything a caller can see of an error."""
    rollback = exc.rollback
    report = getattr(exc, "report", None)
    return {
        "type": type(exc).__name__,
        "code": int(exc.code),
        "str": norm(str(exc)),
        "notes": [norm(n) for n in getattr(exc, "__notes__", [])],
        "rollback": None
        if rollback is None
        else [list(rollback.deleted), [norm(str(f)) for f in rollback.failures]],
        "members": [
            [type(e).__name__, int(e.code), norm(str(e))] for e in getattr(exc, "exceptions", ())
        ],
        "report": summarize(report) if report is not None else None,
    }


@attrs.frozen
class Outcome:
    steps: list[tuple[str, Any]]
    """Per step: ``("returned", summary)`` or ``("raised", description)``."""
    calls: list[list[Any]]
    """Per recorded call: verb, tag, prevResult, CNI_* environment."""
    cache: dict[str, object]
    """Cache file name -> bytes, and ``.cnilib-tmp`` -> its file names."""


def prepare(scenario: Scenario, work: Path) -> Confs:
    """Empty ``work``, write a corrupt entry if asked, and build the scenario's configs."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    log = work / "recorder.jsonl"
    confs: Confs = {}
    for name, plugins in scenario.networks.items():
        entries = []
        for extra in plugins:
            extra = dict(extra)
            recorder = {"log": str(log), **extra.pop("recorder", {})}
            entries.append({"type": "recorder", "recorder": recorder, **extra})
        doc = {"cniVersion": scenario.version, "name": name, "plugins": entries}
        confs[name] = cnilib.conflist_from_bytes(json.dumps(doc).encode())
    solo = {
        "cniVersion": "1.0.0",
        "name": "solo",
        "type": "recorder",
        "tag": "s",
        "recorder": {"log": str(log), "CHECK": err(4, "bad env")},
    }
    confs["solo"] = cnilib.conf_from_bytes(json.dumps(solo).encode())
    if scenario.corrupt:
        results = work / "cache" / "results"
        results.mkdir(parents=True)
        (results / "net1-ctr1-eth0").write_bytes(b'{"kind":"cniCacheV1","config":')
    return confs


def observe(work: Path) -> tuple[list[list[Any]], dict[str, object]]:
    """The recorded calls and the cache's state."""
    calls = [
        [c["verb"], c["stdin"].get("tag"), c["stdin"].get("prevResult"), c["env"]]
        for c in (dict[str, Any](c) for c in read_recording(work / "recorder.jsonl"))
    ]
    results, tmp = work / "cache" / "results", work / "cache" / ".cnilib-tmp"
    files = sorted(results.iterdir()) if results.exists() else []
    state: dict[str, object] = {p.name: p.read_bytes() for p in files}
    state[".cnilib-tmp"] = sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []
    return calls, state


async def run(scenario: Scenario, driver: str, work: Path, bin_dir: Path) -> Outcome:
    """Run the scenario's steps with a fresh runtime of kind ``driver`` in ``work``."""
    confs = prepare(scenario, work)
    kind = {"CNI": cnilib.CNI, "AsyncCNI": cnilib.AsyncCNI}[driver]
    runtime = kind([str(bin_dir)], cache_dir=work / "cache", timeout=scenario.timeout, owner="rt")
    steps: list[tuple[str, Any]] = []
    for step in scenario.steps:
        try:
            value = step(runtime, confs)
            if inspect.isawaitable(value):
                value = await value
        except cnilib.CNIError as exc:
            steps.append(("raised", describe(exc)))
        else:
            steps.append(("returned", summarize(value)))
    calls, cache = observe(work)
    return Outcome(steps, calls, cache)


@pytest.fixture
def bin_dir(cnilib_cni_bin_dir: Path) -> Path:
    """The recorder as ``recorder`` and as ``recorder-v040`` (VERSION up to 0.4.0)."""
    install_recording_plugin(cnilib_cni_bin_dir, "recorder-v040")
    return cnilib_cni_bin_dir


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
class TestParity:
    @pytest.mark.asyncio
    @pytest.mark.parametrize("driver", ["CNI", "AsyncCNI"])
    async def test_outcome_as_declared(
        self, scenario: Scenario, driver: str, tmp_path: Path, bin_dir: Path
    ) -> None:
        """Each driver raises the declared errors, makes the declared calls, leaves the entries."""
        outcome = await run(scenario, driver, tmp_path / "work", bin_dir)

        errors = [d["type"] if kind == "raised" else None for kind, d in outcome.steps]
        calls = [(c[0], c[1] or "", c[2] is not None) for c in outcome.calls]
        entries = tuple(name for name in outcome.cache if name != ".cnilib-tmp")
        assert list(scenario.errors) == errors
        assert list(scenario.calls) == calls
        assert scenario.entries == entries
        assert [] == outcome.cache[".cnilib-tmp"]

    @pytest.mark.asyncio
    async def test_identical_outcomes(
        self, scenario: Scenario, tmp_path: Path, bin_dir: Path
    ) -> None:
        """CNI and AsyncCNI give the same errors, texts, calls, environment and cache bytes."""
        work = tmp_path / "work"  # the same paths for both, so texts and bytes can match

        sync = await run(scenario, "CNI", work, bin_dir)
        async_ = await run(scenario, "AsyncCNI", work, bin_dir)

        assert sync.steps == async_.steps
        assert sync.calls == async_.calls
        assert sync.cache == async_.cache


class TestScenarioDetails:
    """Spot checks that the parity scenarios exercise what their names say."""

    @pytest.mark.asyncio
    async def test_rollback_and_note_are_compared(self, tmp_path: Path, bin_dir: Path) -> None:
        """The failing-plugin scenario's outcome carries the rollback and its note."""
        (scenario,) = [s for s in SCENARIOS if s.name == "plugin-2-answers-error"]

        outcome = await run(scenario, "AsyncCNI", tmp_path / "w", bin_dir)

        ((kind, step),) = outcome.steps
        assert "raised" == kind
        assert {
            "type": "PluginError",
            "code": 7,
            "str": 'plugin type="recorder" failed (add): bad',
            "notes": ["rolled back: DEL recorder"],
            "rollback": [["recorder"], []],
            "members": [],
            "report": None,
        } == step

    @pytest.mark.asyncio
    async def test_timeout_text_is_masked_only_in_its_number(
        self, tmp_path: Path, bin_dir: Path
    ) -> None:
        """The timeout scenario's text keeps everything but the elapsed seconds."""
        (scenario,) = [s for s in SCENARIOS if s.name == "plugin-2-times-out"]

        outcome = await run(scenario, "CNI", tmp_path / "w", bin_dir)

        ((kind, step),) = outcome.steps
        assert "raised" == kind
        assert (
            'plugin type="recorder" failed (add): plugin "recorder" (ADD) timed out after <t>s '
            "(deadline 0.5s); its process group was killed"
        ) == step["str"]
