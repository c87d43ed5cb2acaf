"""Hostile input to the runtime, fuzzed: configurations, runtime parameters
(container IDs, ifnames, netns, CNI_ARGS, capability args) and cache files.
Every verb raises only ``cnilib.CNIError`` subclasses, and no file is ever
written outside the cache directory."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings, strategies as st

import cnilib
from cnilib.cache import FileCache
from cnilib.invoke import Command, Invocation
from cnilib.testing import MockExecutor

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RESULT = b'{"cniVersion":"1.1.0","ips":[{"address":"10.0.0.2/24"}]}'
VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def answer(invocation: Invocation) -> bytes:
    """A plugin that always succeeds: a fixed valid result for ADD, versions for VERSION."""
    if invocation.command is Command.ADD:
        return RESULT
    if invocation.command is Command.VERSION:
        return json.dumps({"cniVersion": "1.1.0", "supportedVersions": VERSIONS}).encode()
    return b""


# --- strategies --------------------------------------------------------------------------

# Text that reaches paths and environment variables: surrogates, NUL, separators, dots.
NASTY = st.sampled_from(
    ["", ".", "..", "/", "../..", "a/../../b", "\x00", "a\x00b", "\ud800", "\udcff", "eth0",
     "ctr1", "net1", " ", "a b", "a;b", "a=b", "x" * 300, "é", "\n", "-", "a:b", "../ctr1"]
)  # fmt: skip
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
TEXT = st.one_of(
    NASTY, ANY_TEXT, st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]{0,12}", fullmatch=True)
)

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)

PLUGIN = st.fixed_dictionaries(
    {"type": st.one_of(st.just("fake"), TEXT)},
    optional={
        "name": TEXT,
        "cniVersion": st.one_of(st.sampled_from(VERSIONS), TEXT),
        "capabilities": st.one_of(st.dictionaries(TEXT, st.booleans(), max_size=3), JSON),
        "runtimeConfig": JSON,
        "prevResult": JSON,
        "extra": JSON,
    },
)
CONFLIST_OBJECT = st.fixed_dictionaries(
    {
        "cniVersion": st.one_of(st.sampled_from(VERSIONS), TEXT, JSON),
        "name": st.one_of(st.just("net1"), TEXT, JSON),
        "plugins": st.one_of(st.lists(PLUGIN, min_size=1, max_size=3), JSON),
    },
    optional={
        "disableCheck": st.one_of(st.booleans(), TEXT, JSON),
        "disableGC": st.one_of(st.booleans(), TEXT, JSON),
        "loadOnlyInlinedPlugins": JSON,
    },
)


def encode(value: Any) -> bytes:
    """JSON with NaN/Infinity tokens and lone surrogates kept (as a hostile writer would)."""
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


CONFLIST_BYTES = st.one_of(
    st.binary(max_size=200),
    JSON.map(encode),
    CONFLIST_OBJECT.map(encode),
)

CAPS = st.one_of(
    st.dictionaries(TEXT, JSON, max_size=3),
    st.fixed_dictionaries({"portMappings": JSON, "mac": JSON}),
)
ARGS = st.lists(st.tuples(TEXT, TEXT), max_size=3)


@st.composite
def runtime_confs(draw: st.DrawFn) -> cnilib.RuntimeConf | None:
    """A RuntimeConf from hostile parts (``None`` when even building one is refused)."""
    try:
        return cnilib.RuntimeConf(
            container_id=draw(st.one_of(st.just("ctr1"), TEXT)),
            netns=draw(st.one_of(st.just("/run/netns/x"), TEXT)),
            ifname=draw(st.one_of(st.just("eth0"), TEXT)),
            args=draw(ARGS),
            capability_args=draw(CAPS),
        )
    except cnilib.CNIError:
        return None


# --- the checks --------------------------------------------------------------------------


def tree(root: Path) -> set[str]:
    """Every path under ``root``, relative to it."""
    found = set()
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(directory, name), root))
    return found


def _plugin_dir(root: Path) -> Path:
    """A directory holding shell plugins ``fake`` and ``fake2`` that always succeed."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name in ("fake", "fake2"):
        path = bin_dir / name
        path.write_text(
            "#!/bin/sh\ncat >/dev/null\n"
            '[ "$CNI_COMMAND" = ADD ] && echo \'{"cniVersion":"1.1.0"}\'\nexit 0\n'
        )
        path.chmod(0o755)
    return bin_dir


@contextmanager
def sandbox(*, plugins: bool = False) -> Iterator[Path]:
    """A cache dir three levels below a fresh root (with ``plugins``, shell plugins
    ``fake`` and ``fake2`` in ``bin`` beside it); on exit, assert that nothing
    appeared in the root except under the cache dir."""
    with tempfile.TemporaryDirectory(prefix="cnilib-fuzz-") as root:
        cache = Path(root, "l1", "l2", "cache")
        cache.mkdir(parents=True)
        if plugins:
            _plugin_dir(cache.parent)
        before = tree(Path(root))
        yield cache
        outside = {p for p in tree(Path(root)) - before if not p.startswith("l1/l2/cache/")}
        assert set() == outside
        for path in tree(cache):
            resolved = os.path.realpath(cache / path)
            assert resolved.startswith(str(cache) + os.sep)


def attempt(call: Callable[[], object]) -> None:
    """Run one runtime call: success or a CNIError are fine; anything else fails the test."""
    with suppress(cnilib.CNIError):
        call()


def every_verb(cni: cnilib.CNI, conf: cnilib.NetworkConfigList, rt: cnilib.RuntimeConf) -> None:
    """Each public verb of ``cni`` on one attachment."""
    attempt(lambda: cni.add_network_list(conf, rt))
    attempt(lambda: cni.check_network_list(conf, rt))
    attempt(lambda: cni.cached_result(conf, rt))
    attempt(lambda: cni.cached_config(conf, rt))
    attempt(lambda: cni.cached_attachments(rt.container_id))
    attempt(lambda: cni.gc_network_list(conf, [(rt.container_id, rt.ifname)], dry_run=True))
    attempt(lambda: cni.delete_network_list(conf, rt))
    attempt(lambda: cni.add_network_list(conf, rt))
    attempt(lambda: cni.gc_network_list(conf, None))
    attempt(lambda: cni.status_network_list(conf))
    attempt(lambda: cni.validate_network_list(conf))
    attempt(lambda: cni.setup_networks(rt.container_id, rt.netns, [conf], args=rt.args))
    attempt(lambda: cni.teardown_networks(rt.container_id, rt.netns, [conf]))


VALID_CONF = cnilib.conflist_from_bytes(
    b'{"cniVersion":"1.1.0","name":"net1","plugins":[{"type":"fake","capabilities":'
    b'{"portMappings":true,"mac":true}},{"type":"fake2"}]}'
)
VALID_RT = cnilib.RuntimeConf("ctr1", "/run/netns/x", "eth0")


class TestFuzzedConfigs:
    @FUZZ
    @given(data=CONFLIST_BYTES)
    @example(data=b'{"cniVersion":"1.1.0","name":"../../x","plugins":[{"type":"../fake"}]}')
    @example(data=b'{"cniVersion":"1.1.0","name":"net1","plugins":[{"type":"\\ud800"}]}')
    @example(data=b'{"cniVersion":"NaN","name":"net1","plugins":[{"type":"a","x":NaN}]}')
    def test_any_conflist_raises_only_cni_errors(self, data: bytes) -> None:
        """Arbitrary bytes or JSON as a conflist: parsing and every verb raise only CNIError."""
        with sandbox() as cache:
            try:
                conf = cnilib.conflist_from_bytes(data)
            except cnilib.CNIError:
                return
            cni = cnilib.CNI(["/unused"], cache_dir=cache, executor=MockExecutor(answer))
            every_verb(cni, conf, VALID_RT)

    @FUZZ
    @given(data=CONFLIST_BYTES)
    def test_any_single_plugin_conf_raises_only_cni_errors(self, data: bytes) -> None:
        """Arbitrary bytes as a single-plugin .conf: add/check/delete_network: only CNIError."""
        with sandbox() as cache:
            try:
                plugin = cnilib.conf_from_bytes(data)
            except cnilib.CNIError:
                return
            cni = cnilib.CNI(["/unused"], cache_dir=cache, executor=MockExecutor(answer))
            attempt(lambda: cni.add_network(plugin, VALID_RT))
            attempt(lambda: cni.check_network(plugin, VALID_RT))
            attempt(lambda: cni.cached_network_result(plugin, VALID_RT))
            attempt(lambda: cni.delete_network(plugin, VALID_RT))


class TestFuzzedRuntimeParameters:
    @FUZZ
    @given(rt=runtime_confs())
    @example(rt=None)
    def test_any_runtime_conf_raises_only_cni_errors(self, rt: cnilib.RuntimeConf | None) -> None:
        """Hostile container IDs, ifnames, netns, CNI_ARGS, capability args: only CNIError."""
        if rt is None:
            return
        with sandbox() as cache:
            cni = cnilib.CNI(["/unused"], cache_dir=cache, executor=MockExecutor(answer))
            every_verb(cni, VALID_CONF, rt)

    @FUZZ
    @given(
        container_id=TEXT,
        ifnames=st.lists(TEXT, min_size=1, max_size=2),
        prefix=TEXT,
        args=st.lists(st.lists(TEXT, max_size=3), max_size=2),
    )
    def test_multi_network_arguments_raise_only_cni_errors(
        self, container_id: str, ifnames: list[str], prefix: str, args: list[list[str]]
    ) -> None:
        """setup/check/teardown_networks with hostile names, prefixes and args: only CNIError."""
        with sandbox() as cache:
            cni = cnilib.CNI(["/unused"], cache_dir=cache, executor=MockExecutor(answer))
            nets = [VALID_CONF, VALID_CONF]
            pairs: Any = args
            attempt(lambda: cni.setup_networks(container_id, "/x", nets, ifnames=ifnames))
            attempt(lambda: cni.setup_networks(container_id, "/x", nets, ifname_prefix=prefix))
            attempt(lambda: cni.setup_networks(container_id, "/x", nets[:1], args=pairs))
            attempt(lambda: cni.check_networks(container_id, "/x", nets, ifname_prefix=prefix))
            attempt(lambda: cni.teardown_networks(container_id, "/x", nets, ifnames=ifnames))

    @FUZZ
    @given(keep=st.lists(st.tuples(TEXT, TEXT), max_size=3))
    @example(keep=[("ctr1", "\ud800")])
    def test_any_gc_keep_list_raises_only_cni_errors(self, keep: list[tuple[str, str]]) -> None:
        """GC with hostile (container ID, ifname) pairs to keep raises only CNIError."""
        with sandbox() as cache:
            cni = cnilib.CNI(["/unused"], cache_dir=cache, executor=MockExecutor(answer))
            attempt(lambda: cni.add_network_list(VALID_CONF, VALID_RT))
            attempt(lambda: cni.gc_network_list(VALID_CONF, keep))

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rt=runtime_confs())
    def test_async_runtime_conf_raises_only_cni_errors(self, rt: cnilib.RuntimeConf | None) -> None:
        """The same for AsyncCNI: ADD, CHECK, DEL and GC raise only CNIError."""
        if rt is None:
            return

        async def run(acni: cnilib.AsyncCNI, rt: cnilib.RuntimeConf) -> None:
            for call in (
                lambda: acni.add_network_list(VALID_CONF, rt),
                lambda: acni.check_network_list(VALID_CONF, rt),
                lambda: acni.delete_network_list(VALID_CONF, rt),
                lambda: acni.gc_network_list(
                    VALID_CONF, [(rt.container_id, rt.ifname)], dry_run=True
                ),
                lambda: acni.gc_network_list(VALID_CONF, None),
            ):
                with suppress(cnilib.CNIError):
                    await call()

        with sandbox() as cache:
            acni = cnilib.AsyncCNI(["/unused"], cache_dir=cache, executor=MockExecutor(answer))
            asyncio.run(run(acni, rt))


class TestFuzzedThroughRealProcesses:
    """What only a real exec sees: values turned into environment variables."""

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rt=runtime_confs())
    def test_runtime_conf_into_plugin_environment(self, rt: cnilib.RuntimeConf | None) -> None:
        """Hostile CNI_ARGS, netns and ifnames through the subprocess executor: only CNIError."""
        if rt is None:
            return
        with sandbox(plugins=True) as cache:
            cni = cnilib.CNI([str(cache.parent / "bin")], cache_dir=cache, timeout=10)
            attempt(lambda: cni.add_network_list(VALID_CONF, rt))
            attempt(lambda: cni.delete_network_list(VALID_CONF, rt))

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(extra=TEXT)
    @example(extra="\ud800")
    def test_plugin_dirs_raise_only_cni_errors(self, extra: str) -> None:
        """Any extra plugin directory: ADD raises only CNIError and leaves no entry if it fails."""
        with sandbox(plugins=True) as cache:
            try:
                cni = cnilib.CNI([str(cache.parent / "bin"), extra], cache_dir=cache, timeout=10)
            except cnilib.CNIError:
                return
            try:
                cni.add_network_list(VALID_CONF, VALID_RT)
            except cnilib.CNIError:
                assert [] == FileCache(cache).attachments()


class TestFuzzedCacheFiles:
    @FUZZ
    @given(data=st.one_of(st.binary(max_size=300), JSON.map(encode)))
    @example(data=b'{"kind":"cniCacheV1","config":')
    @example(data=b"\xff\xfe")
    def test_any_bytes_as_the_cache_file(self, data: bytes) -> None:
        """Arbitrary bytes as net1/ctr1/eth0's cache file: every verb raises only CNIError."""
        with sandbox() as cache:
            results = cache / "results"
            results.mkdir(mode=0o700)
            (results / "net1-ctr1-eth0").write_bytes(data)
            (results / "net1-other-eth0").write_bytes(data)
            cni = cnilib.CNI(["/unused"], cache_dir=cache, executor=MockExecutor(answer))
            attempt(lambda: cni.check_network_list(VALID_CONF, VALID_RT))
            attempt(lambda: cni.cached_result(VALID_CONF, VALID_RT))
            attempt(lambda: cni.cached_config(VALID_CONF, VALID_RT))
            attempt(lambda: cni.cached_attachments())
            attempt(lambda: cni.gc_network_list(VALID_CONF, [("ctr1", "eth0")], dry_run=True))
            attempt(lambda: cni.gc_network_list(VALID_CONF, [("ctr1", "eth0")]))
            attempt(lambda: cni.delete_network_list(VALID_CONF, VALID_RT))

    @FUZZ
    @given(
        fields=st.fixed_dictionaries(
            {"kind": st.one_of(st.just("cniCacheV1"), JSON)},
            optional={
                "containerId": st.one_of(TEXT, JSON),
                "ifName": st.one_of(TEXT, JSON),
                "networkName": st.one_of(st.just("net1"), TEXT, JSON),
                "config": st.one_of(
                    st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()),
                    st.just(base64.b64encode(VALID_CONF.bytes).decode()),
                    JSON,
                ),
                "netns": st.one_of(TEXT, JSON),
                "cniArgs": st.one_of(st.lists(st.lists(TEXT, max_size=3), max_size=3), JSON),
                "capabilityArgs": st.one_of(CAPS, JSON),
                "cnilibOwner": st.one_of(TEXT, JSON),
                "result": st.one_of(st.just(json.loads(RESULT)), JSON),
            },
        ),
        name=st.one_of(st.just("net1-ctr1-eth0"), st.just("net1-x-eth0"), TEXT),
    )
    @example(
        fields={
            "kind": "cniCacheV1",
            "containerId": "../../../escape",
            "ifName": "eth0",
            "networkName": "net1",
            "config": "",
        },
        name="net1-x-eth0",
    )
    def test_any_cache_entry_fields(self, fields: dict[str, Any], name: str) -> None:
        """A cniCacheV1 object with hostile fields, under any file name: GC, DEL, CHECK and
        the cache queries raise only CNIError and write nothing outside the cache."""
        with sandbox() as cache:
            results = cache / "results"
            results.mkdir(mode=0o700)
            try:
                (results / name).write_bytes(encode(fields))
            except (OSError, ValueError, UnicodeEncodeError):
                return  # not a file name this filesystem takes
            cni = cnilib.CNI(["/unused"], cache_dir=cache, executor=MockExecutor(answer))
            attempt(lambda: cni.cached_attachments())
            attempt(lambda: cni.cached_attachments("ctr1"))
            attempt(lambda: cni.gc_network_list(VALID_CONF, [], dry_run=True))
            attempt(lambda: cni.gc_network_list(VALID_CONF, []))
            attempt(lambda: cni.check_network_list(VALID_CONF, VALID_RT))
            attempt(lambda: cni.delete_network_list(VALID_CONF, VALID_RT))
