"""A conformance kit for CNI plugins: does a plugin do what the CNI spec says?

It runs a plugin (an executable such as a Go binary, or cnilib's in-process
plugin) through the spec's obligations, ADD, CHECK, DEL, VERSION, error objects
and codes, cleanup, idempotence, in network namespaces it makes for the run and
deletes afterwards (a node namespace plays the host; the machine's own namespace
is never touched). Each check ends PASS, FAIL (a MUST broken), WARN (a SHOULD
not followed), n/a or ERROR (the kit itself failed), with the evidence of every
call that did not pass: env, stdin, stdout, stderr and exit status.

From Python (needs root)::

    from cnilib.conformance import run_conformance, table

    report = run_conformance("bridge", path=["/usr/lib/cni"])
    print(table(report))
    assert report.ok, [r.check.id for r in report.failed]

From the command line: ``python -m cnilib conformance --cni-path /usr/lib/cni bridge``
(``--list`` prints the checks, ``--json`` and ``--junit FILE`` write machine
readable results). In pytest: the ``cnilib_conformance`` fixture and
:func:`assert_conforms`.

Importing this package is cheap: the kit loads on first use of a name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnilib._lazy import lazy_exports

if TYPE_CHECKING:
    from cnilib.conformance._assert import ConformanceRunner, assert_conforms
    from cnilib.conformance._model import CheckResult, CheckSpec, Exchange, Outcome, Report
    from cnilib.conformance._output import junit_xml, table, to_json
    from cnilib.conformance._profile import Kind, Profile
    from cnilib.conformance._run import check_ids, run_conformance

__all__ = [
    "CheckResult",
    "CheckSpec",
    "ConformanceRunner",
    "Exchange",
    "Kind",
    "Outcome",
    "Profile",
    "Report",
    "assert_conforms",
    "check_ids",
    "junit_xml",
    "run_conformance",
    "table",
    "to_json",
]

_HOMES = {
    "CheckResult": "cnilib.conformance._model",
    "CheckSpec": "cnilib.conformance._model",
    "Exchange": "cnilib.conformance._model",
    "Outcome": "cnilib.conformance._model",
    "Report": "cnilib.conformance._model",
    "junit_xml": "cnilib.conformance._output",
    "table": "cnilib.conformance._output",
    "to_json": "cnilib.conformance._output",
    "Kind": "cnilib.conformance._profile",
    "Profile": "cnilib.conformance._profile",
    "check_ids": "cnilib.conformance._run",
    "assert_conforms": "cnilib.conformance._assert",
    "ConformanceRunner": "cnilib.conformance._assert",
    "run_conformance": "cnilib.conformance._run",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
