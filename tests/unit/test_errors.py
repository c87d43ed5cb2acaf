"""Tests for cnilib.errors: the error tree, codes, context, and the spec's error object."""

from __future__ import annotations

import json

import pytest

from cnilib import errors
from cnilib.errors import (
    CacheError,
    CheckNotSupportedError,
    CNIError,
    CNIErrorGroup,
    ConfigError,
    ConfigNotFoundError,
    ConfigValidationError,
    ErrorCode,
    ExecError,
    GCError,
    IncompatibleVersionError,
    InvalidArgumentError,
    LimitedConnectivityError,
    NoConfigsFoundError,
    PluginError,
    PluginNotAvailableError,
    PluginNotFoundError,
    PluginOutputError,
    PluginTimeoutError,
    ResultConversionError,
    ResultDecodeError,
    TryAgainLaterError,
    ValidationGroupError,
    VersionError,
    error_from_object,
)


class TestHierarchy:
    """The documented tree, including the stdlib bases callers may catch."""

    @pytest.mark.parametrize(
        ("cls", "bases"),
        [
            (InvalidArgumentError, (CNIError, ValueError)),
            (ConfigError, (CNIError,)),
            (ConfigNotFoundError, (ConfigError, FileNotFoundError)),
            (NoConfigsFoundError, (ConfigError,)),
            (ConfigValidationError, (ConfigError, ValueError)),
            (VersionError, (CNIError,)),
            (IncompatibleVersionError, (VersionError,)),
            (CheckNotSupportedError, (VersionError,)),
            (ResultConversionError, (VersionError,)),
            (ResultDecodeError, (CNIError, ValueError)),
            (ExecError, (CNIError,)),
            (PluginNotFoundError, (ExecError, FileNotFoundError)),
            (PluginOutputError, (ExecError,)),
            (PluginTimeoutError, (ExecError, TimeoutError)),
            (PluginError, (CNIError,)),
            (TryAgainLaterError, (PluginError,)),
            (PluginNotAvailableError, (PluginError,)),
            (LimitedConnectivityError, (PluginError,)),
            (CacheError, (CNIError,)),
            (CNIErrorGroup, (CNIError, ExceptionGroup)),
            (GCError, (CNIErrorGroup,)),
            (ValidationGroupError, (CNIErrorGroup,)),
        ],
        ids=lambda v: v.__name__ if isinstance(v, type) else "",
    )
    def test_bases(self, cls: type, bases: tuple[type, ...]) -> None:
        """Each class derives from its documented bases."""
        assert [True] * len(bases) == [issubclass(cls, b) for b in bases]

    def test_all_names_exist(self) -> None:
        """Every name in __all__ is defined, and __all__ has no duplicates."""
        assert len(set(errors.__all__)) == len(errors.__all__)
        assert [] == [n for n in errors.__all__ if not hasattr(errors, n)]


class TestCodes:
    """Default codes follow the spec table; well-known codes become ErrorCode members."""

    @pytest.mark.parametrize(
        ("error", "code"),
        [
            (CNIError("m"), 0),
            (InvalidArgumentError("m"), 4),
            (ConfigError("m"), 7),
            (NoConfigsFoundError("/d"), 7),
            (ConfigNotFoundError("/d", "n"), 7),
            (ConfigValidationError(["$.a: bad"]), 7),
            (VersionError("m"), 1),
            (IncompatibleVersionError("m"), 1),
            (CheckNotSupportedError("0.3.1"), 1),
            (ResultConversionError("m"), 1),
            (ResultDecodeError("m"), 6),
            (ExecError("m"), 0),
            (PluginNotFoundError("m"), 0),
            (PluginOutputError("m"), 0),
            (PluginTimeoutError("m", elapsed=1.0), 0),
            (PluginError("m"), 0),
            (TryAgainLaterError("m"), 11),
            (PluginNotAvailableError("m"), 50),
            (LimitedConnectivityError("m"), 51),
            (CacheError("m", path="/p"), 5),
        ],
        ids=lambda v: type(v).__name__ if isinstance(v, CNIError) else str(v),
    )
    def test_default_code(self, error: CNIError, code: int) -> None:
        """Each class carries its spec code by default."""
        assert code == error.code

    def test_well_known_code_is_enum_member(self) -> None:
        """A well-known code becomes an ErrorCode member."""
        assert ErrorCode.TRY_AGAIN_LATER is CNIError("m", code=11).code

    def test_plugin_specific_code_stays_int(self) -> None:
        """A plugin-specific code (>= 100) is kept as a plain int."""
        code = CNIError("m", code=120).code
        assert (120, int) == (code, type(code))

    def test_explicit_code_overrides_default(self) -> None:
        """code= overrides the class default."""
        assert ErrorCode.UNKNOWN_CONTAINER == InvalidArgumentError("m", code=3).code

    def test_error_code_values(self) -> None:
        """The enum holds the spec's and libcni's codes."""
        expected = {0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 50, 51, 999}
        assert expected == {int(c) for c in ErrorCode}


class TestText:
    """str() reads like Go's types.Error."""

    def test_msg_only(self) -> None:
        """Without details str() is the message."""
        assert "boom" == str(CNIError("boom"))

    def test_msg_and_details(self) -> None:
        """With details str() is 'msg; details'."""
        assert "boom; more" == str(CNIError("boom", details="more"))

    def test_repr(self) -> None:
        """repr names the class, the numeric code and the message."""
        assert "TryAgainLaterError(code=11, msg='later')" == repr(TryAgainLaterError("later"))

    def test_args(self) -> None:
        """The message is the exception's argument."""
        assert ("boom",) == CNIError("boom").args


class TestWithContext:
    """with_context prefixes text without losing type, code or attributes."""

    def test_prefix_and_type_kept(self) -> None:
        """The copy has the prefix, the same class and the same code."""
        original = TryAgainLaterError("busy", details="d")
        wrapped = original.with_context('plugin type="bridge" failed (add): ')
        assert (TryAgainLaterError, 11, 'plugin type="bridge" failed (add): busy; d') == (
            type(wrapped),
            wrapped.code,
            str(wrapped),
        )

    def test_original_untouched(self) -> None:
        """The original error keeps its text."""
        original = PluginError("busy", code=120)
        original.with_context("ctx: ")
        assert ("busy", 120) == (str(original), original.code)

    def test_prefixes_nest_outermost_first(self) -> None:
        """Context added later comes first."""
        wrapped = CNIError("inner").with_context("b: ").with_context("a: ")
        assert "a: b: inner" == str(wrapped)

    def test_attributes_kept(self) -> None:
        """Subclass attributes survive (ConfigError.path/.field)."""
        wrapped = ConfigError("bad", path="/etc/cni/x.conflist", field="$.name").with_context("c: ")
        assert ("/etc/cni/x.conflist", "$.name") == (wrapped.path, wrapped.field)

    def test_cause_kept(self) -> None:
        """The __cause__ chain is preserved on the copy."""
        cause = OSError("io")
        try:
            raise CacheError("cannot read", path="/p") from cause
        except CacheError as exc:
            wrapped = exc.with_context("x: ")
        assert cause is wrapped.__cause__

    def test_msg_attribute_unchanged(self) -> None:
        """.msg stays the bare message; context is only in str() and to_object()."""
        assert "inner" == CNIError("inner").with_context("ctx: ").msg


class TestErrorObject:
    """to_object and to_json produce the spec's error object."""

    def test_minimal_object(self) -> None:
        """code and msg only, when no version and no details."""
        assert {"code": 7, "msg": "bad"} == ConfigError("bad").to_object()

    def test_full_object_key_order(self) -> None:
        """cniVersion, code, msg, details in that order."""
        obj = PluginError("m", code=120, details="d").to_object("1.1.0")
        assert [("cniVersion", "1.1.0"), ("code", 120), ("msg", "m"), ("details", "d")] == list(
            obj.items()
        )

    def test_code_is_plain_int(self) -> None:
        """The code is serialised as an int, not an enum member."""
        code = TryAgainLaterError("m").to_object()["code"]
        assert (11, int) == (code, type(code))

    def test_context_in_msg(self) -> None:
        """Context prefixes are part of msg."""
        obj = CNIError("m").with_context("p: ").to_object()
        assert "p: m" == obj["msg"]

    def test_to_json_layout(self) -> None:
        """to_json is the object with a 4-space indent, as skel prints it."""
        err = PluginNotAvailableError("down", details="why")
        expected = (
            '{\n    "cniVersion": "1.1.0",\n    "code": 50,\n'
            '    "msg": "down",\n    "details": "why"\n}'
        )
        assert expected == err.to_json("1.1.0")

    def test_to_json_round_trips(self) -> None:
        """to_json decodes back to to_object."""
        err = LimitedConnectivityError("limited")
        assert err.to_object() == json.loads(err.to_json())


class TestConfigErrors:
    """ConfigError and its subclasses add the file and JSON path to libcni's text."""

    def test_path_and_field(self) -> None:
        """Message is '<path>: <text> (at <field>)'."""
        err = ConfigError("no name", path="/etc/cni/net.d/a.conflist", field="$.name")
        assert "/etc/cni/net.d/a.conflist: no name (at $.name)" == str(err)

    def test_field_only(self) -> None:
        """Without a path only the field suffix is added."""
        assert "no name (at $.name)" == str(ConfigError("no name", field="$.name"))

    def test_path_only(self) -> None:
        """Without a field only the path prefix is added."""
        assert "/p: bad" == str(ConfigError("bad", path="/p"))

    def test_neither(self) -> None:
        """Without path or field the text is unchanged and attributes are None."""
        err = ConfigError("bad")
        assert ("bad", None, None) == (str(err), err.path, err.field)

    def test_not_found(self) -> None:
        """ConfigNotFoundError uses libcni's NotFoundError text."""
        err = ConfigNotFoundError("/etc/cni/net.d", "pa")
        assert (
            'no net configuration with name "pa" in /etc/cni/net.d',
            "/etc/cni/net.d",
            "pa",
            (),
        ) == (
            str(err),
            err.directory,
            err.name,
            err.problems,
        )

    def test_no_configs_found(self) -> None:
        """NoConfigsFoundError uses libcni's text."""
        err = NoConfigsFoundError("/etc/cni/net.d")
        assert ("no net configurations found in /etc/cni/net.d", "/etc/cni/net.d") == (
            str(err),
            err.directory,
        )

    def test_validation_summary_singular(self) -> None:
        """One problem reads '1 problem: ...'."""
        err = ConfigValidationError(["$.name: required"], path="/p")
        assert ("/p: 1 problem: $.name: required", ["$.name: required"]) == (str(err), err.problems)

    def test_validation_summary_plural(self) -> None:
        """Several problems are joined with '; '."""
        err = ConfigValidationError(["$.a: x", "$.b: y"])
        assert "2 problems: $.a: x; $.b: y" == str(err)


class TestOtherErrors:
    """Structured attributes of the remaining classes."""

    def test_check_not_supported_text(self) -> None:
        """The text ends like Go's ErrorCheckNotSupp."""
        err = CheckNotSupportedError("0.3.1")
        assert ('configuration version "0.3.1" does not support the CHECK command', "0.3.1") == (
            str(err),
            err.config_version,
        )

    def test_incompatible_version_attributes(self) -> None:
        """config_version and supported are kept (supported as a tuple)."""
        err = IncompatibleVersionError("m", config_version="1.1.0", supported=["0.4.0", "1.0.0"])
        assert ("1.1.0", ("0.4.0", "1.0.0")) == (err.config_version, err.supported)

    def test_result_conversion_attributes(self) -> None:
        """from_version and to_version are kept."""
        err = ResultConversionError("m", from_version="1.0.0", to_version="0.2.0")
        assert ("1.0.0", "0.2.0") == (err.from_version, err.to_version)

    def test_plugin_not_found_attributes(self) -> None:
        """plugin_type and search_path (tuple) are kept."""
        err = PluginNotFoundError("m", plugin_type="bridge", search_path=["/a", "/b"])
        assert ("bridge", ("/a", "/b")) == (err.plugin_type, err.search_path)

    def test_plugin_output_attributes(self) -> None:
        """stdout, stderr and returncode are kept."""
        err = PluginOutputError("m", stdout=b"o", stderr=b"e", returncode=2)
        assert (b"o", b"e", 2) == (err.stdout, err.stderr, err.returncode)

    def test_plugin_timeout_attributes(self) -> None:
        """elapsed and stderr are kept."""
        err = PluginTimeoutError("m", elapsed=2.5, stderr=b"e")
        assert (2.5, b"e") == (err.elapsed, err.stderr)

    def test_cache_error_text(self) -> None:
        """CacheError appends the path in parentheses and keeps it."""
        err = CacheError("corrupt", path="/var/lib/cni/results/x", code=6)
        assert ("corrupt (/var/lib/cni/results/x)", "/var/lib/cni/results/x", 6) == (
            str(err),
            err.path,
            err.code,
        )


class TestErrorFromObject:
    """error_from_object maps a decoded error object to the right class."""

    @pytest.mark.parametrize(
        ("code", "cls"),
        [
            (11, TryAgainLaterError),
            (50, PluginNotAvailableError),
            (51, LimitedConnectivityError),
            (0, PluginError),
            (7, PluginError),
            (120, PluginError),
        ],
    )
    def test_class_by_code(self, code: int, cls: type[PluginError]) -> None:
        """11/50/51 get their subclasses; every other code is a plain PluginError."""
        err = error_from_object({"code": code, "msg": "m", "details": "d"}, stderr=b"log")
        assert (cls, code, "m", "d", b"log") == (
            type(err),
            err.code,
            err.msg,
            err.details,
            err.stderr,
        )

    def test_code_only_defaults_texts(self) -> None:
        """An object with only a code gets empty msg and details."""
        err = error_from_object({"code": 11})
        assert (TryAgainLaterError, 11, "", "") == (type(err), err.code, err.msg, err.details)

    def test_msg_only_defaults_code(self) -> None:
        """An object with only a msg gets code 0."""
        err = error_from_object({"msg": "m"})
        assert (PluginError, 0, "m") == (type(err), err.code, err.msg)

    @pytest.mark.parametrize("obj", [{}, {"details": "d"}, {"cniVersion": "1.0.0"}])
    def test_rejects_objects_without_code_or_msg(self, obj: dict[str, object]) -> None:
        """An object with neither code nor msg is not an error object."""
        with pytest.raises(ValueError, match="not an error object"):
            error_from_object(obj)

    def test_extra_keys_ignored(self) -> None:
        """cniVersion and unknown keys do not matter."""
        err = error_from_object({"cniVersion": "1.0.0", "code": 11, "msg": "m", "x": 1})
        assert TryAgainLaterError is type(err)

    @pytest.mark.parametrize(
        "obj",
        [
            {"code": True, "msg": "m"},
            {"code": -1, "msg": "m"},
            {"code": "11", "msg": "m"},
            {"code": 11.0, "msg": "m"},
            {"code": None, "msg": "m"},
            {"code": 1, "msg": 5},
            {"code": 1, "msg": None},
            {"code": 1, "msg": "m", "details": ["d"]},
        ],
    )
    def test_rejects_bad_objects(self, obj: dict[str, object]) -> None:
        """Wrong types raise ValueError (the caller reports raw output instead)."""
        with pytest.raises(ValueError, match=r"^error object '"):
            error_from_object(obj)


class TestErrorGroup:
    """CNIErrorGroup is both an ExceptionGroup and a CNIError."""

    def test_text_one_per_line(self) -> None:
        """str() lists each error on its own line."""
        group = GCError("gc failed", [CNIError("a"), PluginError("b", details="c")])
        assert "a\nb; c" == str(group)

    def test_fields(self) -> None:
        """msg, code and exceptions are set; details lists every member, one per line."""
        inner = (CNIError("a"), CNIError("b", details="x"))
        group = ValidationGroupError("invalid", inner)
        assert ("invalid", 0, "a\nb; x", inner) == (
            group.msg,
            group.code,
            group.details,
            group.exceptions,
        )

    def test_with_context(self) -> None:
        """Context prefixes the whole text and keeps the class."""
        group = GCError("gc", [CNIError("a")]).with_context("ctx: ")
        assert (GCError, "ctx: a") == (type(group), str(group))

    def test_split_keeps_class(self) -> None:
        """except*-style splitting yields groups of the same class."""
        group = GCError("gc", [TryAgainLaterError("a"), CNIError("b")])
        matched, rest = group.split(TryAgainLaterError)
        assert (GCError, GCError, 1, 1) == (
            type(matched),
            type(rest),
            len(matched.exceptions) if matched else 0,
            len(rest.exceptions) if rest else 0,
        )
