"""``python -m cnilib.conformance`` (also ``python -m cnilib conformance``): run
plugins through the conformance checks and print what each did.

Only argparse is imported up front; the kit is imported when a run needs it. A
user error (an unknown plugin, a bad ``--config`` file, any
:class:`cnilib.CNIError`) is one line on stderr, or the CNI error object on
stdout with ``--json``, and exit status 1; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnilib.cli._argtypes import positive_seconds

if TYPE_CHECKING:
    from cnilib.conformance._model import Report
    from cnilib.errors import CNIError

__all__ = ["KINDS", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130

ERROR_PREFIX = "cnilib conformance"
"""What starts the one line of a user error, whichever way the kit was started."""

KINDS = ("interface", "ipam", "chained", "loopback")
"""``--kind``'s choices: the values of :class:`cnilib.conformance.Kind`."""

_DESCRIPTION = """\
Run CNI plugins through the spec's obligations (ADD, CHECK, DEL, VERSION,
errors, cleanup) and report each check as PASS, FAIL (a MUST broken), WARN
(a SHOULD not followed), n/a or ERROR (the kit itself failed), with the
evidence (env, stdin, stdout, stderr, exit status) of what did not pass.

A plugin is an executable named TYPE on --cni-path (a Go binary, say), or
with --in-process cnilib's own plugin of that type.
"""

_EPILOG = """\
WARNING: this runs the plugin for real. Every run makes network namespaces of
its own (a node namespace playing the host, and container namespaces), runs
the plugin only inside them, never in this machine's own namespace, and
deletes them all afterwards, also on failure. That needs root (except --list).

exit status:
  0    no check failed or errored (warnings and n/a allowed)
  1    a check failed or errored, or a cnilib error (unknown plugin, bad
       --config file, not root)
  2    usage error
  130  interrupted

examples:
  python -m cnilib conformance --cni-path /usr/lib/cni bridge ptp
  python -m cnilib conformance --in-process --only del bridge
  python -m cnilib conformance --config my.json --kind interface myplugin
  python -m cnilib conformance --list
"""


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        usage="%(prog)s [options] TYPE [TYPE ...]\n       %(prog)s --list",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "types", metavar="TYPE", nargs="*", help="plugin type(s) to test, one report each"
    )
    parser.add_argument(
        "--cni-path",
        metavar="PATH",
        help="plugin directories, ':'-separated, where TYPE and its delegates are found "
        "(default $CNI_PATH, else /opt/cni/bin)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="test cnilib's in-process plugin of each TYPE instead of an executable",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the plugin's configuration object (JSON, without name and cniVersion) for a "
        "plugin the kit has no profile for, or to replace the profile's (with --kind)",
    )
    parser.add_argument(
        "--kind", choices=KINDS, help="how the plugin takes part in an attachment (with --config)"
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        action="append",
        default=[],
        help="a directory where the plugin keeps per-attachment files, which DEL must "
        "leave empty of them (repeatable)",
    )
    parser.add_argument(
        "--only",
        metavar="ID",
        action="append",
        help="run only this check, or the checks of a group such as 'del' (repeatable)",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="print the checks (id, level, title, spec section) and exit; no root needed",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument(
        "--junit", metavar="FILE", help="also write the results as JUnit XML to FILE"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show the evidence of every check (default: of failures and warnings only)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=30.0,
        help="seconds per call of an executable plugin (default 30)",
    )
    return parser


def _write(text: str) -> None:
    """Write to stdout; a reader that has gone changes neither the run nor its status."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        from cnilib.cli import discard_stdout

        discard_stdout()


def _list(as_json: bool) -> None:
    from cnilib.conformance._registry import CHECKS
    from cnilib.conformance._run import check_ids

    check_ids()  # loads the check modules
    specs = [spec for spec, _ in CHECKS]
    if as_json:
        rows = [{"id": s.id, "title": s.title, "spec": s.spec, "level": s.level} for s in specs]
        _write(json.dumps(rows, indent=2) + "\n")
        return
    width = max((len(s.id) for s in specs), default=0)
    _write("".join(f"{s.id:<{width}}  {s.level:<6}  {s.title}  [{s.spec}]\n" for s in specs))


def load_config(path: str) -> dict[str, Any]:
    """The ``--config`` file's JSON object; a :class:`~cnilib.errors.ConfigError`
    naming the file if it cannot be read or is not one."""
    from cnilib._json import JSONSyntaxError, loads_object
    from cnilib.config._load import read_conf_file
    from cnilib.errors import ConfigError

    try:
        data = read_conf_file(path)  # a regular file of sane size, read without blocking
        try:
            return dict(loads_object(data))
        except JSONSyntaxError as exc:
            raise ConfigError(f"{path}: not a JSON object: {exc}") from exc
    except ConfigError as exc:
        error = ConfigError(f"--config {exc}")  # the text starts with the file's name
        error.path = path
        raise error from exc


def _check_only(only: Sequence[str] | None) -> None:
    """Refuse an unknown ``--only`` before anything runs (and before the root check)."""
    if only is None:
        return
    from cnilib.conformance._run import check_ids, select_checks

    check_ids()  # loads the check modules
    select_checks(only)


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed over it, so a
    reader never sees half a file; an ``OSError`` becomes a :class:`CNIError`."""
    from cnilib.errors import CNIError

    target = Path(path)
    try:
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(temp, 0o644)
            os.replace(temp, target)
        except BaseException:
            os.unlink(temp)
            raise
    except OSError as exc:
        raise CNIError(f"cannot write --junit {path}: {exc.strerror or exc}") from exc


def _need_root() -> None:
    from cnilib.errors import CNIError

    if os.geteuid() != 0:
        raise CNIError(
            "needs root: every check runs the plugin in network namespaces the kit makes "
            "and deletes (--list needs none)"
        )


def _run(
    args: argparse.Namespace, config: dict[str, Any] | None
) -> tuple[list[Report], list[tuple[str, CNIError]]]:
    """A report per type; a type that cannot be run (not found, no profile) is an
    error of its own, and the other types still run."""
    from cnilib.conformance._run import run_conformance
    from cnilib.errors import CNIError

    path = None
    if args.cni_path is not None:
        path = [p for p in args.cni_path.split(":") if p]
    reports: list[Report] = []
    errors: list[tuple[str, CNIError]] = []
    for plugin_type in args.types:
        try:
            reports.append(
                run_conformance(
                    plugin_type,
                    path=path,
                    in_process=args.in_process,
                    config=config,
                    kind=args.kind,
                    state_dirs=args.state_dir,
                    only=args.only,
                    timeout=args.timeout,
                )
            )
        except CNIError as exc:
            errors.append((plugin_type, exc))
    return reports, errors


def _show(
    args: argparse.Namespace, reports: list[Report], errors: list[tuple[str, CNIError]]
) -> None:
    from cnilib.cli._commands import printable
    from cnilib.conformance._output import junit_xml, table, to_json

    if args.json:
        failures = [{"plugin": t, **exc.to_object()} for t, exc in errors]
        _write(to_json(reports, verbose=args.verbose, errors=failures))
    else:
        if reports:
            _write(table(reports, verbose=args.verbose))
        for plugin_type, exc in errors:
            text = printable(f"{plugin_type}: {str(exc).rstrip()}")
            print(f"{ERROR_PREFIX}: {text}", file=sys.stderr)
    if args.junit is not None:
        write_atomically(args.junit, junit_xml(reports))


def _report_error(args: argparse.Namespace, exc: Exception) -> None:
    from cnilib.cli._commands import printable
    from cnilib.errors import CNIError

    if args.json and isinstance(exc, CNIError):
        # json.dumps escapes every control and non-ASCII character itself.
        _write(json.dumps(exc.to_object(), indent=4) + "\n")
    else:
        print(f"{ERROR_PREFIX}: {printable(str(exc).rstrip())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m cnilib.conformance") -> int:
    """Run the command line; return the exit status (2: usage error, raised by argparse)."""
    from cnilib.errors import CNIError

    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.cni_path is not None and not [p for p in args.cni_path.split(":") if p]:
        parser.error("--cni-path: no directory given")
    if not args.list and not args.types:
        parser.error("give a plugin TYPE to test (or --list)")
    if args.list and args.types:
        parser.error("--list takes no TYPE")
    try:
        if args.list:
            _list(args.json)
            return EXIT_OK
        config = load_config(args.config) if args.config is not None else None
        _check_only(args.only)
        _need_root()
        reports, errors = _run(args, config)
        _show(args, reports, errors)
    except CNIError as exc:
        _report_error(args, exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{ERROR_PREFIX}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if all(r.ok for r in reports) and not errors else EXIT_FAILURE
