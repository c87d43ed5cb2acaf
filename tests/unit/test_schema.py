"""Tests for cnilib.schema: the bundled JSON Schemas and the problem reporter.

Vectors live in tests/data: a valid file must produce no problem; an invalid
``<case>.json`` has a sibling ``<case>.errors.json`` listing the JSON paths
of *every* problem expected, compared as a set.
"""

from __future__ import annotations

import ast
import base64
import json
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from cnilib.errors import ConfigValidationError
from cnilib.schema import (
    SCHEMA_NAMES,
    _validate,
    load_schema,
    result_schema_for,
    schema_problems,
    validate,
)

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
SCHEMA_DIR = REPO / "schemas"
GO_CACHE_FILE = DATA / "cache" / "cniCacheV1" / "go-bridge.json"


def _load(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


def _invalid_cases(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.json") if not p.name.endswith(".errors.json"))


def _expected_paths(case: Path) -> set[str]:
    expected = _load(case.with_name(case.name.removesuffix(".json") + ".errors.json"))
    assert isinstance(expected, list)
    return {str(p) for p in expected}


def _paths(problems: list[str]) -> set[str]:
    return {problem.split(": ", 1)[0] for problem in problems}


def _ids(value: object) -> str:
    """Test ids: a file's name, anything else as text."""
    return value.name if isinstance(value, Path) else str(value)


def _result_schema(document: object) -> str:
    version = document.get("cniVersion", "") if isinstance(document, dict) else ""
    return result_schema_for(str(version))


VALID_CONFLISTS = sorted((DATA / "conflists" / "valid").glob("*.conflist"))
INVALID_CONFLISTS = _invalid_cases(DATA / "conflists" / "invalid")
VALID_RESULTS = sorted((DATA / "schema" / "results" / "valid").glob("*.json"))
INVALID_RESULTS = _invalid_cases(DATA / "schema" / "results" / "invalid")
OBJECT_SCHEMAS = ("error", "version", "cache-entry")
VALID_OBJECTS = [
    (name, path)
    for name in OBJECT_SCHEMAS
    for path in sorted((DATA / "schema" / name / "valid").glob("*.json"))
]
INVALID_OBJECTS = [
    (name, path)
    for name in OBJECT_SCHEMAS
    for path in _invalid_cases(DATA / "schema" / name / "invalid")
]


class TestSchemaFiles:
    """The schema files themselves."""

    @pytest.mark.parametrize("path", sorted(SCHEMA_DIR.glob("*.schema.json")), ids=_ids)
    def test_is_valid_draft_2020_12(self, path: Path) -> None:
        """Every schema file passes the draft 2020-12 metaschema."""
        from jsonschema import Draft202012Validator

        schema = _load(path)
        assert isinstance(schema, dict)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)

    @pytest.mark.parametrize("path", sorted(SCHEMA_DIR.glob("*.schema.json")), ids=_ids)
    def test_has_id_title_and_description(self, path: Path) -> None:
        """Every schema file has an $id matching its file name, a title and a description."""
        schema = _load(path)
        assert isinstance(schema, dict)
        assert schema["$id"] == f"https://cnilib.dev/schemas/{path.name}"
        assert schema["title"]
        assert schema["description"]

    def test_every_public_name_has_a_file(self) -> None:
        """Each name in SCHEMA_NAMES has a <name>.schema.json file."""
        stems = {p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json")}
        assert set(SCHEMA_NAMES) <= stems
        assert len(SCHEMA_NAMES) == 8

    def test_package_sees_the_same_files(self) -> None:
        """The files read through importlib.resources are the repository's schemas/."""
        packaged = resources.files("cnilib") / "schemas"
        names = {entry.name for entry in packaged.iterdir() if entry.name.endswith(".json")}
        assert names == {p.name for p in SCHEMA_DIR.glob("*.schema.json")}

    def test_load_schema_returns_a_copy(self) -> None:
        """load_schema hands out a copy, so callers cannot alter the validator's schema."""
        schema = load_schema("plugin")
        schema["required"] = []
        assert schema_problems("plugin", {}) == ["$.type: missing required property"]


class TestConflists:
    """Network configuration lists against netconflist.schema.json."""

    @pytest.mark.parametrize("path", VALID_CONFLISTS, ids=_ids)
    def test_valid_conflist_has_no_problem(self, path: Path) -> None:
        """A realistic conflist validates without any problem."""
        assert schema_problems("netconflist", _load(path)) == []

    @pytest.mark.parametrize("path", INVALID_CONFLISTS, ids=_ids)
    def test_invalid_conflist_reports_exactly_the_expected_paths(self, path: Path) -> None:
        """An invalid conflist reports a problem at every expected path, and nowhere else."""
        assert _paths(schema_problems("netconflist", _load(path))) == _expected_paths(path)

    def test_vectors_exist(self) -> None:
        """The data set keeps several valid and invalid conflists, one with many problems."""
        assert len(VALID_CONFLISTS) >= 5
        assert len(INVALID_CONFLISTS) >= 10
        assert len(_expected_paths(DATA / "conflists" / "invalid" / "multi-problem.json")) > 10

    def test_plugins_may_come_from_the_subdirectory(self) -> None:
        """A conflist without 'plugins' is valid unless loadOnlyInlinedPlugins is true."""
        assert schema_problems("netconflist", {"name": "n"}) == []
        assert schema_problems("netconflist", {"name": "n", "loadOnlyInlinedPlugins": "TRUE"}) == [
            "$.plugins: required when loadOnlyInlinedPlugins is true"
        ]

    @pytest.mark.parametrize("value", [True, False, "true", "False", "TRUE", "fAlSe"])
    def test_boolean_flags_accept_strings_case_insensitively(self, value: object) -> None:
        """disableCheck, disableGC and loadOnlyInlinedPlugins take booleans or "true"/"false"."""
        conf = {"name": "n", "plugins": [{"type": "x"}]}
        for key in ("disableCheck", "disableGC", "loadOnlyInlinedPlugins"):
            assert schema_problems("netconflist", {**conf, key: value}) == []

    def test_cni_version_is_only_parsed_alongside_cni_versions(self) -> None:
        """A lone cniVersion may be any string; with cniVersions it must parse, as in libcni."""
        conf = {"name": "n", "cniVersion": "broken", "plugins": [{"type": "x"}]}
        assert schema_problems("netconflist", conf) == []
        assert schema_problems("netconflist", {**conf, "cniVersions": ["1.0.0"]}) == [
            "$.cniVersion: 'broken' is not a valid CNI version"
        ]
        assert schema_problems("netconflist", {**conf, "cniVersion": "", "cniVersions": []}) == []

    def test_message_names_the_bad_cidr(self) -> None:
        """A bad subnet deep in host-local IPAM is reported with its full path and value."""
        path = DATA / "conflists" / "invalid" / "host-local-bad-subnet.json"
        assert schema_problems("netconflist", _load(path)) == [
            "$.plugins[1].ipam.ranges[0][0].subnet: '10.1.2.3/33' is not a valid CIDR"
        ]


class TestResults:
    """Results of every spec version against the schema of their family."""

    @pytest.mark.parametrize("path", VALID_RESULTS, ids=_ids)
    def test_valid_result_has_no_problem(self, path: Path) -> None:
        """A valid result validates against the schema chosen by its cniVersion."""
        document = _load(path)
        assert schema_problems(_result_schema(document), document) == []

    @pytest.mark.parametrize("path", INVALID_RESULTS, ids=_ids)
    def test_invalid_result_reports_exactly_the_expected_paths(self, path: Path) -> None:
        """An invalid result reports every expected path, and nowhere else."""
        document = _load(path)
        assert _paths(schema_problems(_result_schema(document), document)) == _expected_paths(path)

    def test_every_family_has_valid_and_invalid_vectors(self) -> None:
        """Each result family is covered by at least one valid and one invalid vector."""
        for vectors in (VALID_RESULTS, INVALID_RESULTS):
            families = {result_schema_for(p.name.split("-", 1)[0]) for p in vectors}
            assert families == {"result-1.x", "result-0.4", "result-0.2"}

    def test_version_mismatch_is_reported(self) -> None:
        """A result labelled with another family's version fails that schema's cniVersion."""
        assert schema_problems("result-1.x", {"cniVersion": "0.4.0"}) == [
            "$.cniVersion: '0.4.0' is not one of '1.0.0', '1.1.0'"
        ]


class TestResultSchemaFor:
    """Choosing a result schema from a cniVersion."""

    @pytest.mark.parametrize(
        ("version", "name"),
        [
            ("", "result-0.2"),
            ("0.1.0", "result-0.2"),
            ("0.2.0", "result-0.2"),
            ("0.3.0", "result-0.4"),
            ("0.3.1", "result-0.4"),
            ("0.4.0", "result-0.4"),
            ("1.0.0", "result-1.x"),
            ("1.1.0", "result-1.x"),
        ],
    )
    def test_known_version_maps_to_its_family(self, version: str, name: str) -> None:
        """Every spec result version maps to its family's schema; empty means 0.1.0."""
        assert result_schema_for(version) == name

    @pytest.mark.parametrize("version", ["1.2.0", "1", "1.0", "0.4567.0", "latest"])
    def test_unknown_version_is_a_value_error(self, version: str) -> None:
        """A version Go has no result type for raises ValueError, as create.Create fails."""
        with pytest.raises(ValueError, match="unsupported CNI result version"):
            result_schema_for(version)


class TestObjects:
    """Error objects, VERSION output and cache entries."""

    @pytest.mark.parametrize(("name", "path"), VALID_OBJECTS, ids=_ids)
    def test_valid_object_has_no_problem(self, name: str, path: Path) -> None:
        """A valid error, version or cache-entry object validates without any problem."""
        assert schema_problems(name, _load(path)) == []

    @pytest.mark.parametrize(("name", "path"), INVALID_OBJECTS, ids=_ids)
    def test_invalid_object_reports_exactly_the_expected_paths(self, name: str, path: Path) -> None:
        """An invalid error, version or cache-entry object reports every expected path."""
        assert _paths(schema_problems(name, _load(path))) == _expected_paths(path)

    def test_go_written_cache_entry_is_valid(self) -> None:
        """The cache file Go libcni 1.1.2 wrote after a bridge ADD validates as is."""
        raw = GO_CACHE_FILE.read_bytes()
        assert not raw.endswith(b"\n")
        assert schema_problems("cache-entry", json.loads(raw)) == []

    def test_go_cache_config_is_a_valid_conflist(self) -> None:
        """The base64 'config' of the Go cache entry decodes to a valid conflist."""
        entry = _load(GO_CACHE_FILE)
        assert isinstance(entry, dict)
        config = json.loads(base64.b64decode(entry["config"], validate=True))
        assert schema_problems("netconflist", config) == []

    def test_error_from_cnilib_is_valid(self) -> None:
        """The error object cnilib itself writes validates, with or without cniVersion."""
        error = ConfigValidationError(["$.name: missing required property"])
        assert schema_problems("error", error.to_object()) == []
        assert schema_problems("error", error.to_object("1.1.0")) == []


class TestProblems:
    """The shape and order of reported problems."""

    def test_problems_are_sorted_by_path_with_numeric_indices(self) -> None:
        """Problems come sorted by path, with array indices compared as numbers."""
        plugins: list[dict[str, str]] = [{"type": "x"}] * 10 + [{}]
        plugins[2] = {}
        conf = {"name": "n", "plugins": plugins, "cniVersion": 1}
        assert schema_problems("netconflist", conf) == [
            "$.cniVersion: expected string, got number",
            "$.plugins[2].type: missing required property",
            "$.plugins[10].type: missing required property",
        ]

    def test_missing_property_is_named_in_the_path(self) -> None:
        """A missing required property is reported at its own path, not its parent's."""
        assert schema_problems("error", {}) == [
            "$.code: missing required property",
            "$.msg: missing required property",
        ]

    @pytest.mark.parametrize(
        ("segments", "text"),
        [
            ([], "$"),
            (["plugins", 1, "type"], "$.plugins[1].type"),
            (["ranges", 0, 0, "subnet"], "$.ranges[0][0].subnet"),
            (["cni.dev/valid-attachments", 0], "$['cni.dev/valid-attachments'][0]"),
            (["it's", "a b", "_ok1", "1x"], "$['it\\'s']['a b']._ok1['1x']"),
        ],
    )
    def test_path_notation(self, segments: list[int | str], text: str) -> None:
        """Paths use .key for identifiers, ['key'] otherwise, and [i] for items."""
        assert _validate.format_path(segments) == text

    def test_long_values_are_shortened(self) -> None:
        """A long offending value is cut short in the message."""
        (problem,) = schema_problems("netconflist", {"name": "-" * 200})
        assert problem.endswith("... is not a valid network name")
        assert len(problem) < 120

    @pytest.mark.parametrize("name", ["defs", "netconf", "", "result-1.0"])
    def test_unknown_schema_name_is_a_value_error(self, name: str) -> None:
        """Only the names in SCHEMA_NAMES can be validated against."""
        with pytest.raises(ValueError, match="unknown schema"):
            schema_problems(name, {})
        with pytest.raises(ValueError, match="unknown schema"):
            validate(name, {})
        with pytest.raises(ValueError, match="unknown schema"):
            load_schema(name)

    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["name", "type", "plugins", "ipam", "ips", "code", "x"]),
                    inner,
                    max_size=4,
                )
            ),
            max_leaves=12,
        ),
        st.sampled_from(SCHEMA_NAMES),
    )
    def test_any_json_gives_well_formed_sorted_problems(self, instance: object, name: str) -> None:
        """For any JSON value, every problem reads "$...: message" and the list is unique."""
        problems = schema_problems(name, instance)
        assert len(set(problems)) == len(problems)
        for problem in problems:
            path, _, message = problem.partition(": ")
            assert path.startswith("$")
            assert message


class TestValidate:
    """validate() raising ConfigValidationError."""

    def test_valid_instance_returns_none(self) -> None:
        """A valid instance passes silently."""
        validate("plugin", {"type": "bridge"})

    def test_invalid_instance_raises_with_every_problem(self) -> None:
        """An invalid instance raises ConfigValidationError listing all problems and the file."""
        with pytest.raises(ConfigValidationError) as info:
            validate("plugin", {"type": "", "capabilities": []}, path="/etc/cni/net.d/x.conf")
        assert info.value.problems == [
            "$.capabilities: expected object, got array",
            "$.type: must not be empty",
        ]
        assert info.value.path == "/etc/cni/net.d/x.conf"
        assert str(info.value).startswith("/etc/cni/net.d/x.conf: 2 problems: ")

    def test_validation_error_is_a_value_error(self) -> None:
        """The raised error can be caught as a ValueError."""
        with pytest.raises(ValueError, match=r"\$\.name"):
            validate("netconflist", {})


class TestFormats:
    """The cidr and ip formats follow Go's net.ParseCIDR and net.ParseIP."""

    @pytest.mark.parametrize(
        "text",
        ["10.0.0.0/8", "10.1.2.3/24", "0.0.0.0/0", "::/0", "fd00::1/128", "::ffff:1.2.3.4/120"],
    )
    def test_valid_cidr(self, text: str) -> None:
        """Addresses with an in-range decimal prefix are CIDRs; host bits are allowed."""
        assert _validate._is_cidr(text)

    @pytest.mark.parametrize(
        "text",
        [
            "10.1.2.3/33",
            "10.1.2.3",
            "10.0.0.0/255.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "010.0.0.0/8",
            "fe80::1%eth0/64",
            "2001:db8::/129",
            "default",
            "",
        ],
    )
    def test_invalid_cidr(self, text: str) -> None:
        """Missing, malformed or out-of-range prefixes and zones are not CIDRs."""
        assert not _validate._is_cidr(text)

    @pytest.mark.parametrize(
        ("text", "valid"),
        [
            ("10.88.10.1", True),
            ("fd00::1", True),
            ("::ffff:10.0.0.1", True),
            ("10.0.0.256", False),
            ("fe80::1%eth0", False),
            ("10.0.0.1/32", False),
            ("", False),
        ],
    )
    def test_ip(self, text: str, valid: bool) -> None:
        """IP addresses are plain IPv4 or IPv6 without zone or prefix."""
        assert _validate._is_ip(text) is valid

    @given(st.ip_addresses(), st.integers(min_value=0, max_value=200))
    def test_cidr_prefix_bound_follows_the_family(self, address: object, bits: int) -> None:
        """A prefix is valid exactly when it fits the address family."""
        limit = 32 if "." in str(address) and ":" not in str(address) else 128
        assert _validate._is_cidr(f"{address}/{bits}") is (bits <= limit)

    def test_formats_only_judge_strings(self) -> None:
        """A non-string where a CIDR is expected gets one type problem, not a format one."""
        assert schema_problems("result-1.x", {"ips": [{"address": 5}]}) == [
            "$.ips[0].address: expected string, got number"
        ]


class TestImportCost:
    """Importing cnilib.schema stays cheap."""

    def test_jsonschema_is_not_imported_at_module_level(self) -> None:
        """_validate imports jsonschema and referencing only inside functions."""
        tree = ast.parse(Path(_validate.__file__).read_text(encoding="utf-8"))
        top_level: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.Import):
                top_level.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                top_level.add(node.module.split(".")[0])
        assert not top_level & {"jsonschema", "referencing"}

    def test_validators_are_built_once(self) -> None:
        """The compiled validator for a schema is cached and reused."""
        assert _validate._validator("plugin") is _validate._validator("plugin")
