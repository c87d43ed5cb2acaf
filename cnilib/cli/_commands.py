"""The CLI's commands. Every user error becomes one line on stderr (or a CNI
error object on stdout with ``--json``) and exit status 1; never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from cnilib.errors import CNIError, CNIErrorGroup, ConfigError, InvalidArgumentError

TYPE_CHECKING = False  # typing's is not needed at run time

if TYPE_CHECKING:
    from cnilib._json import JSONValue
    from cnilib.config import NetworkConfigList
    from cnilib.config._parse import PlainConfList
    from cnilib.invoke import Executor
    from cnilib.runtime import CNI, RuntimeConf

__all__ = ["NO_PLUGIN_PATH", "cnitool_container_id", "printable", "printable_json", "run"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130

NO_PLUGIN_PATH = (
    "no plugin path: set CNI_PATH or --cni-path (in-process plugins get it as CNI_PATH "
    "too, as Go's skel requires, and it is searched for plugins cnilib does not have)"
)
"""The error of a command that runs in-process plugins with an empty plugin path."""


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    point = ord(ch)
    if 0xDC80 <= point <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{point - 0xDC00:02x}"
    if point < 0x100:
        return f"\\x{point:02x}"
    if point < 0x10000:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def printable(text: str) -> str:
    """``text`` safe for a terminal: every character that is not printable is
    shown as a Python-style escape (``\\x1b``, ``\\n``, ``\\u202e``).

    Control characters, invisible format and separator characters (such as
    bidi overrides) and surrogates go; letters of any script stay. Every name,
    path and error text the CLI prints from configuration, the cache or its
    arguments goes through here (except JSON, see :func:`printable_json`).
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _json_escape(ch: str) -> str:
    point = ord(ch)
    if point < 0x10000:
        return f"\\u{point:04x}"
    point -= 0x10000
    return f"\\u{0xD800 + (point >> 10):04x}\\u{0xDC00 + (point & 0x3FF):04x}"


def printable_json(text: str) -> str:
    """JSON text safe for a terminal and still the same JSON.

    Outside strings, encoded JSON holds only ASCII punctuation, digits,
    letters, spaces and newlines; so every other non-printable character is
    inside a string and can become a ``\\uXXXX`` escape.
    """
    return "".join(ch if ch.isprintable() or ch == "\n" else _json_escape(ch) for ch in text)


def _out(line: str) -> None:
    """Print ``line`` on stdout. If the reader has gone (``cnilib list | head``),
    the rest of the output is discarded and the command runs on to its end, so
    that its exit status is still the operation's outcome."""
    try:
        print(line)
    except BrokenPipeError:
        from cnilib.cli import discard_stdout

        discard_stdout()


def cnitool_container_id(netns: str) -> str:
    """cnitool's container ID: ``cnitool-`` + hex of the first 10 bytes of
    sha512(absolute netns path)."""
    import hashlib  # deferred: only the attachment verbs need it

    digest = hashlib.sha512(os.fsencode(os.path.abspath(netns))).hexdigest()
    return f"cnitool-{digest[:20]}"


def _plugin_path(args: argparse.Namespace) -> list[str]:
    return [p for p in str(args.cni_path).split(os.pathsep) if p]


def _timeout(args: argparse.Namespace) -> float | None:
    """``--timeout``: seconds per plugin call; 0 or less means none."""
    return float(args.timeout) if args.timeout and args.timeout > 0 else None


def plugin_source(args: argparse.Namespace) -> str:
    """``--plugins``, else ``$CNILIB_PLUGINS`` (unset or empty: the default);
    a value that is not one of the choices is an :class:`InvalidArgumentError`."""
    from cnilib.cli import DEFAULT_PLUGIN_SOURCE, PLUGIN_SOURCES, PLUGINS_ENV

    if args.plugins is not None:
        value, origin = str(args.plugins), "--plugins"
    else:
        value, origin = os.environ.get(PLUGINS_ENV, ""), PLUGINS_ENV
        if not value:
            return DEFAULT_PLUGIN_SOURCE
    if value not in PLUGIN_SOURCES:
        raise InvalidArgumentError(
            f'invalid {origin} value "{value}": expected one of {", ".join(PLUGIN_SOURCES)}'
        )
    return value


def _executor(args: argparse.Namespace) -> Executor:
    """The executor ``--plugins`` chooses, each kind with the ``--timeout`` deadline.

    In-process plugins keep ``host_netns=None``: they do their host-side work
    in this process's namespace, as a binary the CLI starts would.
    """
    from cnilib.invoke import ChainExecutor, SubprocessExecutor

    source = plugin_source(args)
    binaries = SubprocessExecutor(timeout=_timeout(args))
    if source == "binaries":
        return binaries
    from cnilib.plugins import InProcessExecutor

    in_process = InProcessExecutor(timeout=_timeout(args))
    if source == "in-process":
        return in_process
    if source == "in-process-first":
        return ChainExecutor(in_process, binaries)
    return ChainExecutor(binaries, in_process)


def _cni(args: argparse.Namespace) -> CNI:
    from cnilib.runtime import CNI

    # No timeout here: the executor carries --timeout, for either kind of plugin.
    return CNI(
        _plugin_path(args), cache_dir=args.cache_dir, executor=_executor(args), owner=args.owner
    )


def _load_network(args: argparse.Namespace, *, check_name: bool = True) -> NetworkConfigList:
    """A network by name from the conf dir, or from a file if given a path.

    A file's network must have a valid name, as ``load_conflist`` requires of
    a network found by name (``validate`` turns this off to list every problem).
    """
    from cnilib.config import conf_from_file, conflist_from_conf, conflist_from_file, load_conflist
    from cnilib.config._load import network_name_error

    network = str(args.network)
    # A path only when it looks like one: cnitool always looks names up, and a
    # stray file named like a network in the working directory must not win.
    if os.sep in network or network.endswith((".conflist", ".conf", ".json")):
        if network.endswith(".conflist"):
            conflist = conflist_from_file(network)
        else:
            conflist = conflist_from_conf(conf_from_file(network))
        invalid = network_name_error(conflist) if check_name else None
        if invalid is not None:
            raise invalid
        return conflist
    return load_conflist(args.conf_dir, network)


def _runtime_conf(args: argparse.Namespace) -> RuntimeConf:
    from cnilib.runtime import RuntimeConf, parse_cni_args

    netns = str(args.netns)
    from cnilib._json import JSONSyntaxError, loads_object

    capability_args: dict[str, object] = {}
    if args.cap_args:
        try:
            capability_args = dict(loads_object(args.cap_args))
        except JSONSyntaxError as exc:
            raise InvalidArgumentError(f"CAP_ARGS must be a JSON object: {exc}") from exc
    container_id = args.container_id or (cnitool_container_id(netns) if netns else "")
    return RuntimeConf(
        container_id=container_id,
        netns=os.path.abspath(netns) if netns else "",
        ifname=args.ifname,
        args=parse_cni_args(args.args),
        capability_args=capability_args,  # type: ignore[arg-type]
    )


def _cmd_add(args: argparse.Namespace) -> int:
    result = _cni(args).add_network_list(_load_network(args), _runtime_conf(args))
    if result is not None:
        _out(printable_json(result.to_json(indent=4)))
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    _cni(args).check_network_list(_load_network(args), _runtime_conf(args))
    return EXIT_OK


def _cmd_del(args: argparse.Namespace) -> int:
    _cni(args).delete_network_list(_load_network(args), _runtime_conf(args))
    return EXIT_OK


def _cmd_gc(args: argparse.Namespace) -> int:
    report = _cni(args).gc_network_list(
        _load_network(args), None, all_owners=args.all_owners, dry_run=args.dry_run
    )
    verb = "would delete" if args.dry_run else "deleted"
    entries = report.stale if args.dry_run else report.deleted
    for entry in entries:
        fields = (entry.network_name, entry.container_id, entry.ifname)
        _out("\t".join((verb, *map(printable, fields))))
    if report.skipped_owners:
        print(f"kept {report.skipped_owners} attachment(s) of other owners", file=sys.stderr)
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    _cni(args).status_network_list(_load_network(args))
    return EXIT_OK


def _cmd_version(args: argparse.Namespace) -> int:
    answer = _quick_version(args)
    if answer is None:
        info = _executor(args).version_info(args.plugin, _plugin_path(args))
        answer = {
            "cniVersion": info.cni_version,
            "supportedVersions": list(info.supported_versions),
        }
    _out(json.dumps(answer))
    return EXIT_OK


def _quick_version(args: argparse.Namespace) -> dict[str, object] | None:
    """A binary's answer without the executor's imports (see
    :mod:`cnilib.cli._quickversion`), where nothing but the answer is wanted:
    binaries only, no ``-v`` log, no trace context to pass on."""
    from cnilib import tracing

    if plugin_source(args) != "binaries" or args.verbose or tracing.in_use():
        return None
    from cnilib.cli._quickversion import quick_version

    return quick_version(str(args.plugin), _plugin_path(args), _timeout(args))


def _print_json(value: object) -> None:
    # json.dumps escapes every control and non-ASCII character itself.
    _out(json.dumps(value, indent=4))


def _validation(
    *,
    network: str | None,
    source: str,
    cni_version: str | None,
    capabilities: Sequence[str],
    problems: Sequence[str],
) -> dict[str, JSONValue]:
    """``validate --json``'s object (documented in docs/cli.md)."""
    return {
        "network": network,
        "source": source,
        "valid": not problems,
        "cniVersion": cni_version,
        "capabilities": list(capabilities),
        "problems": list(problems),
    }


def _print_problems(header: str, problems: Sequence[str]) -> None:
    print(f"{header}: {len(problems)} problem(s)", file=sys.stderr)
    for problem in problems:
        print(f"  {printable(problem)}", file=sys.stderr)


def _cmd_validate(args: argparse.Namespace) -> int:
    from cnilib.config import schema_problems

    try:
        conflist = _load_network(args, check_name=False)
    except ConfigError as exc:
        # The loader stops at the first problem; the schema can still list them all.
        refused = exc.path or str(args.network)
        document, raw_problems = _raw_schema_problems(refused)
        if not raw_problems:
            raise
        if args.json:
            name, version = (document.get(k) for k in ("name", "cniVersion"))
            _print_json(
                _validation(
                    network=name if isinstance(name, str) else None,
                    source=refused,
                    cni_version=version if isinstance(version, str) else None,
                    capabilities=(),
                    problems=raw_problems,
                )
            )
        else:
            _print_problems(printable(refused), raw_problems)
        return EXIT_FAILURE
    problems = schema_problems(conflist)
    try:
        capabilities = _validate_plugins(args, conflist)
    except CNIError as exc:
        group = getattr(exc, "exceptions", None)
        problems += [str(e) for e in group] if group else [str(exc)]
        capabilities = ()
    source = conflist.source or str(args.network)
    if args.json:
        _print_json(
            _validation(
                network=conflist.name,
                source=source,
                cni_version=conflist.cni_version,
                capabilities=capabilities,
                problems=problems,
            )
        )
        return EXIT_FAILURE if problems else EXIT_OK
    header = f'network "{printable(conflist.name)}" ({printable(source)})'
    if problems:
        _print_problems(header, problems)
        return EXIT_FAILURE
    caps = printable(", ".join(capabilities) or "none")
    _out(f"{header}: valid, cniVersion {printable(conflist.cni_version)}, capabilities: {caps}")
    return EXIT_OK


def _validate_plugins(args: argparse.Namespace, conflist: NetworkConfigList) -> tuple[str, ...]:
    """The network's plugins exist and support its version: its capabilities.

    The runtime's own flow, driven without building the runtime (cattrs, the
    cache, the result models: most of ``validate``'s start-up time). ``CNI`` is
    used where it would add something: the operation's log line (``-v``),
    spans (OpenTelemetry loaded), or its errors for a plugin path or cache
    directory it refuses.
    """
    from cnilib import tracing

    path = _plugin_path(args)
    cache_dir = str(args.cache_dir)
    plain = not args.verbose and not tracing.in_use() and cache_dir and "\0" not in cache_dir
    if not plain or any("\0" in p or not _encodable(p) for p in path):
        return _cni(args).validate_network_list(conflist)
    from cnilib.invoke._versions import drive, validate_flow

    return drive(validate_flow(conflist, path), _executor(args))


def _encodable(text: str) -> bool:
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return True


def _raw_schema_problems(path: str) -> tuple[dict[str, JSONValue], list[str]]:
    """A config file that the loader refused, if it is JSON at all: its top-level
    object (empty if it is not one) and its schema problems."""
    from cnilib import schema
    from cnilib._json import JSONSyntaxError, loads
    from cnilib.config._load import read_conf_file

    try:
        document = loads(read_conf_file(path))
    except (ConfigError, JSONSyntaxError):
        return {}, []
    kind = "netconflist" if isinstance(document, dict) and "plugins" in document else "plugin"
    top = document if isinstance(document, dict) else {}
    return top, schema.schema_problems(kind, document)


def _scan(conf_dir: str) -> list[PlainConfList | ConfigError]:
    """Every configuration file in ``conf_dir``, in file-name order: its network,
    or why it could not be loaded. A network whose name is invalid is loaded
    all the same, so that ``list`` can show it to be found and fixed.

    The networks are the loaders' plain records, not the attrs models: the
    same parsing and errors, without attrs' import (most of ``list``'s time)."""
    from cnilib.config._load import ALL_EXTENSIONS, conf_files, plain_load_any

    found: list[PlainConfList | ConfigError] = []
    for path in conf_files(conf_dir, ALL_EXTENSIONS):
        try:
            found.append(plain_load_any(path))
        except ConfigError as exc:
            found.append(exc)
    return found


def _cmd_list(args: argparse.Namespace) -> int:
    from cnilib.config._load import invalid_name_reason, network_name_error

    found = _scan(args.conf_dir)
    if not found:
        if args.json:
            _print_json([])
        else:
            print(f"no network configurations in {printable(args.conf_dir)}", file=sys.stderr)
        return EXIT_FAILURE
    listed: list[JSONValue] = []
    problems: list[ConfigError] = []
    unloadable: list[ConfigError] = []
    for net in found:
        if isinstance(net, ConfigError):
            unloadable.append(net)
            # In JSON a file that could not be loaded is an entry too: a source and a problem.
            listed.append(
                {
                    "name": None,
                    "cniVersion": None,
                    "plugins": [],
                    "source": net.path,
                    "invalidName": None,
                    "problems": [str(net)],
                }
            )
            continue
        types = [p.type for p in net.plugins]
        # Still listed, so that it can be found and fixed; flagged, and a problem.
        reason = invalid_name_reason(net.name)
        invalid = network_name_error(net) if reason is not None else None
        if invalid is not None:
            problems.append(invalid)
        listed.append(
            {
                "name": net.name,
                "cniVersion": net.cni_version or None,
                "plugins": list(types),
                "source": net.source,
                "invalidName": reason if invalid is not None else None,
                "problems": [str(invalid)] if invalid is not None else [],
            }
        )
        if not args.json:
            fields = [net.name, net.cni_version or "-", ",".join(types), net.source or ""]
            if reason is not None and invalid is not None:
                fields.append(f"invalid network name: {reason}")
            _out("\t".join(map(printable, fields)))
    if args.json:
        _print_json(listed)
    else:
        for problem in (*unloadable, *problems):
            print(f"problem: {printable(str(problem))}", file=sys.stderr)
    return EXIT_FAILURE if unloadable or problems else EXIT_OK


def _cmd_doctor(args: argparse.Namespace) -> int:
    from cnilib.cli._doctor import doctor  # its own module; it uses the helpers above

    return doctor(args)


def _cmd_overlay(args: argparse.Namespace) -> int:
    from cnilib.overlay._cli import main as overlay_main  # no etcd client unless needed

    return overlay_main(args.rest, prog="cnilib overlay")


def _cmd_conformance(args: argparse.Namespace) -> int:
    from cnilib.conformance._cli import main as conformance_main  # the kit only when run

    return conformance_main(args.rest, prog="cnilib conformance")


_COMMANDS = {
    "add": _cmd_add,
    "check": _cmd_check,
    "del": _cmd_del,
    "gc": _cmd_gc,
    "status": _cmd_status,
    "version": _cmd_version,
    "doctor": _cmd_doctor,
    "validate": _cmd_validate,
    "list": _cmd_list,
    "overlay": _cmd_overlay,
    "conformance": _cmd_conformance,
}


def _error_text(exc: BaseException) -> str:
    """``str(exc)`` without the trailing whitespace plugins often leave on
    ``msg`` and ``details`` (Go's ``fmt.Errorf("...\\n")``): it would show as a
    stray ``\\n`` escape, or before the ``; `` that joins the two."""
    if isinstance(exc, CNIError) and type(exc).__str__ is CNIError.__str__:
        text = exc.msg.rstrip()
        details = exc.details.rstrip()
        if details:
            text = f"{text}; {details}"
        return "".join(exc.context) + text
    return str(exc).rstrip()


def _error_lines(exc: BaseException) -> list[str]:
    """One escaped line per failure: a group's members each get their own."""
    if not isinstance(exc, CNIErrorGroup):
        return [printable(_error_text(exc))]
    # An exception group is never empty.
    first, *rest = [line for member in exc.exceptions for line in _error_lines(member)]
    return [printable("".join(exc.context)) + first, *rest]


def _report(args: argparse.Namespace, exc: CNIError) -> None:
    if args.json:
        # json.dumps escapes every control and non-ASCII character itself.
        _out(json.dumps(exc.to_object(), indent=4))
    else:
        text = "\n  ".join(_error_lines(exc))
        print(f"cnilib {args.command}: error: {text}", file=sys.stderr)


def _log_to_stderr(verbosity: int) -> Callable[[], None]:
    """``-v``/``-vv``: log to stderr (see :mod:`cnilib.cli._verbose`); returns
    what undoes it. Without ``-v`` nothing is set up, and logging is not imported."""
    if verbosity <= 0:
        return _leave_logging
    from cnilib.cli._verbose import log_to_stderr

    return log_to_stderr(verbosity)


def _leave_logging() -> None:
    return None


_NEED_PLUGIN_PATH = frozenset({"add", "check", "del", "gc", "status", "doctor"})
"""Commands whose plugins get ``CNI_PATH`` and require it (all but VERSION's)."""


def _check_plugin_path(args: argparse.Namespace, source: str) -> None:
    """Refuse, before anything runs, in-process plugins with an empty plugin path.

    They would each fail with skel's ``required env variables [CNI_PATH]
    missing`` (half-way through a chain); binaries alone keep libcni's own
    ``no paths provided``.
    """
    if source != "binaries" and args.command in _NEED_PLUGIN_PATH and not _plugin_path(args):
        raise InvalidArgumentError(NO_PLUGIN_PATH)


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; map errors to exit codes."""
    restore_logging = _log_to_stderr(int(args.verbose or 0))
    try:
        # A bad --plugins or CNILIB_PLUGINS fails every command alike.
        _check_plugin_path(args, plugin_source(args))
        return _COMMANDS[args.command](args)
    except CNIError as exc:
        _report(args, exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"cnilib {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        restore_logging()
