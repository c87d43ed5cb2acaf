"""The conformance kit's pure logic: how an exchange is judged (crash, error code),
snapshots and their diff, the parsing of ``ip -j`` / ``iptables-save`` output into
snapshot items, the check registry and how a run maps findings to outcomes, ``only``
resolution, and the result validation the ADD checks use. No namespace is made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest

from cnilib.conformance import _run as run_mod, check_ids
from cnilib.conformance._model import CheckSpec, Exchange, Outcome, Report
from cnilib.conformance._profile import Kind, Profile
from cnilib.conformance._registry import (
    CHECKS,
    Finding,
    check,
    failed,
    not_applicable,
    passed,
)
from cnilib.conformance._sandbox import (
    Snapshot,
    _addr_items,
    _ipt_items,
    _json_list,
    _link_items,
    _qdisc_items,
    _route_items,
    _rule_items,
)
from cnilib.conformance.checks._verdicts import result_problems
from cnilib.errors import InvalidArgumentError
from cnilib.testing import CommandError


def exchange(
    stdout: bytes = b"", *, status: int = 0, stderr: bytes = b"", label: str = "ADD (1.1.0)"
) -> Exchange:
    return Exchange(label, {"CNI_COMMAND": "ADD"}, b"{}", stdout, stderr, status)


ERROR = b'{"code": 7, "msg": "bad config", "details": "field x"}'


# --------------------------------------------------------------------------- Exchange


def test_success_is_no_crash_and_has_no_error_object() -> None:
    e = exchange(ERROR)  # exit 0: whatever stdout says, it is not an error
    assert e.succeeded
    assert not e.crashed
    assert e.error_object() is None
    assert e.error_code() is None
    assert e.describe() == "ADD (1.1.0): exit 0"


def test_failure_with_an_error_object() -> None:
    e = exchange(ERROR, status=1)
    assert not e.succeeded
    assert not e.crashed
    assert e.error_code() == 7
    assert e.describe() == "ADD (1.1.0): exit 1, code 7: bad config"


@pytest.mark.parametrize(
    ("stdout", "status", "stderr", "how"),
    [
        (b"", 1, b"", "exit 1, no error object"),
        (b"error: no such device", 1, b"", "exit 1, no error object"),
        (b"[1, 2]", 1, b"", "exit 1, no error object"),  # JSON, not an object
        (b"", -9, b"", "signal 9, no error object"),
        (ERROR, -11, b"", "signal 11, code 7: bad config"),
        (ERROR, 2, b"panic: runtime error: index out of range\n", "exit 2, code 7: bad config"),
        (ERROR, 1, b"Traceback (most recent call last):\n  ...\nKeyError: 'x'", "exit 1, code 7"),
    ],
    ids=["empty", "text", "json-list", "killed", "killed-after-json", "go-panic", "traceback"],
)
def test_crashes(stdout: bytes, status: int, stderr: bytes, how: str) -> None:
    e = exchange(stdout, status=status, stderr=stderr)
    assert e.crashed
    assert e.describe().startswith(f"ADD (1.1.0): {how}")


def test_a_panic_of_a_successful_call_is_a_crash() -> None:
    assert exchange(b"{}", stderr=b"panic: boom").crashed


@pytest.mark.parametrize(
    "stdout",
    [b'{"code": true, "msg": "x"}', b'{"code": "7", "msg": "x"}', b'{"msg": "x"}', b"{not json"],
)
def test_error_code_is_an_integer_or_none(stdout: bytes) -> None:
    assert exchange(stdout, status=1).error_code() is None


def test_stdout_json() -> None:
    assert exchange(b"  \n").stdout_json() is None
    assert exchange(b"{nope").stdout_json() is None
    assert exchange(b'{"a": 1}').stdout_json() == {"a": 1}


def test_evidence_shows_only_the_cni_variables_and_says_which_are_missing() -> None:
    e = Exchange("DEL (1.0.0)", {"CNI_COMMAND": "DEL", "SECRET": "x"}, b"{}", b"", b"", 0)
    assert e.to_json()["env"] == {"CNI_COMMAND": "DEL"}
    text = e.render()
    assert "SECRET" not in text
    assert "env not set: CNI_CONTAINERID CNI_NETNS CNI_IFNAME CNI_ARGS CNI_PATH" in text
    assert "stdout: (empty)" in text


def test_report_ok_counts_fail_and_error_not_warn() -> None:
    spec = CheckSpec("x.y", "t", "s")

    def report(*outcomes: Outcome) -> Report:
        from cnilib.conformance._model import CheckResult

        results = tuple(CheckResult(spec, o) for o in outcomes)
        return Report("p", "t", "interface", (), results)

    assert report(Outcome.PASS, Outcome.WARN, Outcome.NOT_APPLICABLE).ok
    assert not report(Outcome.PASS, Outcome.FAIL).ok
    assert not report(Outcome.ERROR).ok
    assert report(Outcome.WARN, Outcome.WARN).count(Outcome.WARN) == 2


# --------------------------------------------------------------------------- snapshots


def test_snapshot_diff_both_ways_sorted() -> None:
    before = Snapshot(frozenset({"link lo kind=loopback mtu=65536", "route table=main b"}))
    after = Snapshot(frozenset({"link lo kind=loopback mtu=65536", "z new", "a new"}))
    assert after.added_since(before) == ["a new", "z new"]
    assert after.removed_since(before) == ["route table=main b"]
    assert after.added_since(after) == []


def test_link_items() -> None:
    links = [
        {"ifname": "lo", "flags": ["LOOPBACK", "UP"], "mtu": 65536, "link_type": "loopback"},
        {
            "ifname": "veth1a2b",
            "flags": ["BROADCAST", "UP", "LOWER_UP"],
            "mtu": 1500,
            "master": "cni0",
            "link_type": "ether",
            "linkinfo": {"info_kind": "veth"},
        },
        {
            "ifname": "cni0",
            "flags": ["BROADCAST"],
            "mtu": 1500,
            "linkinfo": {"info_kind": "bridge"},
        },
    ]
    assert list(_link_items(links)) == [
        "link lo kind=loopback mtu=65536 up",
        "link veth1a2b kind=veth mtu=1500 master=cni0 up",
        "link cni0 kind=bridge mtu=1500",
    ]


def test_addr_items_skip_the_kernels_ipv6_link_local() -> None:
    links: list[dict[str, Any]] = [
        {
            "ifname": "eth0",
            "addr_info": [
                {"family": "inet", "local": "198.18.3.10", "prefixlen": 24},
                {"family": "inet6", "local": "fe80::1c2a:ff:fe00:1", "prefixlen": 64},
                {"family": "inet6", "local": "fd00::10", "prefixlen": 64},
                {"family": "inet", "local": "169.254.1.1", "prefixlen": 16},  # v4: kept
            ],
        },
        {"ifname": "lo"},
    ]
    assert list(_addr_items(links)) == [
        "addr eth0 198.18.3.10/24",
        "addr eth0 fd00::10/64",
        "addr eth0 169.254.1.1/16",
    ]


def test_route_items_skip_what_the_kernel_makes() -> None:
    routes: list[dict[str, Any]] = [
        {"dst": "default", "gateway": "198.18.3.1", "dev": "eth0", "flags": []},
        {"dst": "198.18.3.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link"},
        {"type": "local", "dst": "127.0.0.1", "dev": "lo", "table": "local"},
        {"type": "broadcast", "dst": "198.18.3.255", "dev": "eth0", "table": "local"},
        {"dst": "fe80::/64", "dev": "eth0", "protocol": "boot"},
        {"type": "multicast", "dst": "ff00::/8", "dev": "eth0", "table": "local"},
        {"dst": "198.18.3.10", "dev": "veth1", "scope": "link"},
        {"dst": "10.9.0.0/16", "gateway": "198.18.3.1", "dev": "eth0", "table": "100"},
    ]
    assert list(_route_items(routes)) == [
        "route table=main default via 198.18.3.1 dev eth0",
        "route table=main 198.18.3.10 dev veth1",
        "route table=100 10.9.0.0/16 via 198.18.3.1 dev eth0",
    ]


def test_rule_items_skip_the_default_rules() -> None:
    rules = [
        {"priority": 0, "src": "all", "table": "local"},
        {"priority": 100, "src": "198.18.3.10", "table": "100"},
        {"priority": 32766, "src": "all", "table": "main"},
        {"priority": 32767, "src": "all", "table": "default"},
    ]
    assert list(_rule_items(rules)) == ["rule 100 src=198.18.3.10 lookup 100"]


IPTABLES_SAVE = """\
# Generated by iptables-nft-save v1.8.9
*nat
:PREROUTING ACCEPT [12:720]
:CNI-HOSTPORT-DNAT - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
COMMIT
*filter
:FORWARD DROP [0:0]
COMMIT
# Completed
"""


def test_ipt_items_drop_the_counters() -> None:
    assert sorted(_ipt_items(IPTABLES_SAVE, "ipt")) == [
        "ipt filter :FORWARD DROP",
        "ipt nat -A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        "ipt nat :CNI-HOSTPORT-DNAT -",
        "ipt nat :PREROUTING ACCEPT",
    ]
    again = IPTABLES_SAVE.replace("[12:720]", "[99:5940]")
    assert set(_ipt_items(again, "ipt")) == set(_ipt_items(IPTABLES_SAVE, "ipt"))


def test_qdisc_items_skip_the_kernels_defaults() -> None:
    qdiscs: list[dict[str, Any]] = [
        {"kind": "noqueue", "handle": "0:", "dev": "lo", "root": True},
        {"kind": "fq_codel", "handle": "0:", "dev": "eth0", "root": True},
        {"kind": "tbf", "handle": "1:", "dev": "veth1", "root": True},
        {"kind": "ingress", "handle": "ffff:", "dev": "veth1", "parent": "ffff:fff1"},
    ]
    assert list(_qdisc_items(qdiscs)) == ["qdisc veth1 tbf 1:", "qdisc veth1 ingress ffff:"]


@pytest.mark.parametrize(("text", "want"), [("", []), ("  \n", []), ("{}", []), ("[{}]", [{}])])
def test_json_list(text: str, want: list[dict[str, Any]]) -> None:
    assert _json_list(text) == want


# --------------------------------------------------------------------------- results


VALID_RESULT = {
    "cniVersion": "1.1.0",
    "interfaces": [{"name": "eth0", "mac": "0a:58:0a:00:00:02", "sandbox": "/run/netns/c"}],
    "ips": [{"interface": 0, "address": "198.18.3.10/24", "gateway": "198.18.3.1"}],
}


def test_result_problems() -> None:
    assert result_problems(VALID_RESULT, "1.1.0") == []
    said = result_problems(dict(VALID_RESULT, cniVersion="1.0.0"), "1.1.0")
    assert said == ["cniVersion is '1.0.0', the request's is '1.1.0'"]
    assert result_problems([1], "1.1.0") == ["stdout is not a JSON object: [1]"]
    assert result_problems(None, "1.1.0") == ["stdout is not a JSON object: null"]
    shape = result_problems(dict(VALID_RESULT, ips=[{"interface": "zero"}]), "1.1.0")
    assert shape
    assert all("cniVersion" not in p for p in shape)


def test_result_problems_of_an_old_version_use_its_schema() -> None:
    old = {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "198.18.3.10/24"}]}
    assert result_problems(old, "0.4.0") == []
    assert result_problems(dict(old, ips="198.18.3.10/24"), "0.4.0")


class AddingSession:
    """What the ADD-reading checks ask of a session before they look at the kernel:
    an ADD that succeeds with ``stdout``."""

    def __init__(self, kind: Kind, stdout: bytes) -> None:
        self.profile = Profile(kind=kind, config=lambda sandbox: {})
        self.unavailable: str | None = None
        self.newest = "1.1.0"
        self._stdout = stdout

    def versions_from(self, oldest: str) -> list[str]:
        return ["1.1.0"]

    def container(self) -> object:
        return object()

    def add(self, ctr: object, version: str | None = None, **kw: Any) -> Exchange:
        return exchange(self._stdout)


@pytest.mark.parametrize(
    ("check_id", "kind"),
    [
        ("add.interfaces", Kind.INTERFACE),
        ("add.sandbox", Kind.INTERFACE),
        ("chain.prev-result", Kind.CHAINED),
    ],
)
@pytest.mark.parametrize(
    "stdout",
    [
        b'{"cniVersion": "1.1.0", "interfaces": ["eth0"], "ips": []}',
        b'{"cniVersion": "1.1.0", "interfaces": [], "ips": ["198.18.3.10/24"]}',
        b'{"cniVersion": "1.1.0", "interfaces": "eth0"}',
        b'{"cniVersion": "1.1.0", "routes": [1]}',
        b"[]",
    ],
)
def test_a_malformed_add_result_fails_the_checks_that_read_it(
    check_id: str, kind: Kind, stdout: bytes
) -> None:
    """The plugin's fault, shown as a FAIL with the ADD as evidence, not an ERROR
    of the kit tripping over the result's entries."""
    check_ids()
    fn = next(fn for spec, fn in CHECKS if spec.id == check_id)
    finding = run_mod._run_one(cast(Any, AddingSession(kind, stdout)), fn)
    assert finding.outcome is Outcome.FAIL, finding.reason
    assert [e.stdout for e in finding.evidence] == [stdout]


# --------------------------------------------------------------------------- registry, --only


def test_check_rejects_a_level_and_a_second_registration() -> None:
    with pytest.raises(ValueError, match="level"):
        check("x.new", "t", "s", level="may")
    taken = check_ids()[0]
    with pytest.raises(ValueError, match="registered twice"):
        check(taken, "t", "s")(lambda session: passed())
    assert check_ids().count(taken) == 1


def test_check_ids_are_unique_dotted_and_in_groups() -> None:
    ids = check_ids()
    assert len(ids) == len(set(ids))
    assert all(i.count(".") == 1 for i in ids)
    assert ids[0].startswith("version.")
    assert ids[-1].startswith("errors.")


def test_chosen_by_id_and_by_group() -> None:
    ids = check_ids()
    assert run_mod.select_checks(None) is None
    assert run_mod.select_checks(["del.twice"]) == {"del.twice"}
    dels = {i for i in ids if i.startswith("del.")}
    assert len(dels) > 1
    assert run_mod.select_checks(["del"]) == dels
    assert run_mod.select_checks(["del", "check.after-add"]) == dels | {"check.after-add"}
    assert run_mod.select_checks([]) == set()


@pytest.mark.parametrize("wanted", ["del.nope", "dele", "del.", "DEL"])
def test_chosen_unknown_names_it(wanted: str) -> None:
    with pytest.raises(InvalidArgumentError, match=f"no conformance check {wanted}"):
        run_mod.select_checks(["del", wanted])


# --------------------------------------------------------------------------- the run's mapping


class FakeTarget:
    plugin_type = "fake"
    description = "a fake"


class FakeSession:
    """What ``_run`` reads of a session, with a VERSION answer of our choosing."""

    def __init__(self, profile: Profile, version_out: bytes, *, status: int = 0) -> None:
        self.profile = profile
        self.target = FakeTarget()
        self.sandbox = object()
        self.supported: tuple[str, ...] = ()
        self.unavailable: str | None = None
        self.finished = 0
        self._version = exchange(version_out, status=status, label="VERSION")

    def version(self) -> Exchange:
        return self._version

    def finish_check(self) -> None:
        self.finished += 1


VERSIONS = b'{"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0", "9.9.9"]}'


def profile(**kw: Any) -> Profile:
    return Profile(kind=Kind.INTERFACE, config=lambda sandbox: {}, **kw)


def install(
    monkeypatch: pytest.MonkeyPatch, *checks: tuple[str, str, Callable[..., Finding]]
) -> None:
    registry = [(CheckSpec(i, i, "spec", level), fn) for i, level, fn in checks]
    monkeypatch.setattr(run_mod, "CHECKS", registry)


def boom(session: Any) -> Finding:
    raise RuntimeError("the kit tripped")


def test_should_failures_warn_must_failures_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    install(
        monkeypatch,
        ("a.must-fail", "must", lambda s: failed("no")),
        ("a.should-fail", "should", lambda s: failed("no")),
        ("a.should-pass", "should", lambda s: passed()),
        ("a.should-na", "should", lambda s: not_applicable("n/a")),
        ("a.must-na", "must", lambda s: not_applicable("n/a")),
        ("a.kit-error", "should", boom),
        ("a.after-error", "must", lambda s: passed()),
    )
    session = FakeSession(profile(), VERSIONS)
    report = run_mod._run(cast(Any, session), None)
    got = {r.check.id: r.outcome for r in report.results}
    assert got == {
        "a.must-fail": Outcome.FAIL,
        "a.should-fail": Outcome.WARN,
        "a.should-pass": Outcome.PASS,
        "a.should-na": Outcome.NOT_APPLICABLE,
        "a.must-na": Outcome.NOT_APPLICABLE,
        "a.kit-error": Outcome.ERROR,  # never a WARN, though the check is a should
        "a.after-error": Outcome.PASS,
    }
    assert "the kit tripped" in report.result("a.kit-error").reason
    assert session.finished == 7
    assert report.supported_versions == ("0.4.0", "1.0.0", "1.1.0")
    assert report.notes == ("VERSION lists versions the kit does not know: 9.9.9",)
    assert {r.check.id for r in report.failed} == {"a.must-fail", "a.kit-error"}


def test_only_the_chosen_checks_run(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []

    def mark(name: str) -> Callable[[Any], Finding]:
        def fn(session: Any) -> Finding:
            ran.append(name)
            return passed()

        return fn

    install(monkeypatch, ("a.one", "must", mark("one")), ("b.two", "must", mark("two")))
    report = run_mod._run(cast(Any, FakeSession(profile(), VERSIONS)), {"b.two"})
    assert ran == ["two"]
    assert [r.check.id for r in report.results] == ["b.two"]


def test_version_without_a_list_is_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch)
    session = FakeSession(profile(), b"", status=1)
    report = run_mod._run(cast(Any, session), None)
    assert report.supported_versions == ()
    assert report.notes[0].startswith("VERSION gave no list of versions (VERSION: exit 1")


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"needs_daemon": "needs its daemon"}, "needs its daemon"),
        ({"requires": lambda: "CONFIG_DUMMY is off"}, "CONFIG_DUMMY is off"),
        ({"requires": lambda: "kernel first", "needs_daemon": "daemon"}, "kernel first"),
    ],
)
def test_unavailable_still_sets_up_the_node(
    monkeypatch: pytest.MonkeyPatch, kw: dict[str, Any], why: str
) -> None:
    """No ADD can succeed, yet the node is set up: a DEL of nothing may look for what
    the configuration names (vlan's master)."""
    install(monkeypatch)
    set_up: list[object] = []
    session = FakeSession(profile(setup=set_up.append, **kw), VERSIONS)
    report = run_mod._run(cast(Any, session), None)
    assert session.unavailable == why
    assert f"no ADD can succeed here: {why}" in report.notes
    assert set_up == [session.sandbox]


def test_a_setup_that_fails_makes_add_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch)

    def setup(sandbox: object) -> None:
        raise CommandError(2, ["ip", "link", "add"], stderr="RTNETLINK answers: File exists")

    session = FakeSession(profile(setup=setup, requires=lambda: None), VERSIONS)
    report = run_mod._run(cast(Any, session), None)
    assert session.unavailable is not None
    assert session.unavailable.startswith("the kit could not set up the node: ")
    assert "File exists" in session.unavailable
    assert f"no ADD can succeed here: {session.unavailable}" in report.notes


def test_available_sets_up_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch)
    set_up: list[object] = []
    session = FakeSession(profile(setup=set_up.append, requires=lambda: None), VERSIONS)
    run_mod._run(cast(Any, session), None)
    assert session.unavailable is None
    assert set_up == [session.sandbox]
