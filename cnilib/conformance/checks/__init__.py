"""The conformance checks. Importing this package registers them, in this order:
VERSION first (the run needs its answer), ADD, DEL, CHECK, chains and IPAM, STATUS
and GC, and last the checks that read every exchange the others made."""

from cnilib.conformance.checks import version  # noqa: I001  (the order is the run's)
from cnilib.conformance.checks import add
from cnilib.conformance.checks import delete
from cnilib.conformance.checks import check
from cnilib.conformance.checks import chain
from cnilib.conformance.checks import lifecycle
from cnilib.conformance.checks import errors

__all__ = ["add", "chain", "check", "delete", "errors", "lifecycle", "version"]
