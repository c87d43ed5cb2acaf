"""ADD: the result, what it says against what the kernel has, and bad requests."""

from __future__ import annotations

from cnilib.conformance._profile import Kind
from cnilib.conformance._registry import Finding, check, failed, not_applicable, passed, warned
from cnilib.conformance._session import ADD_VERSIONS, Session
from cnilib.conformance.checks._observe import (
    addresses_of,
    container_iface,
    interfaces_in,
    left_behind,
    settled_node,
)
from cnilib.conformance.checks._verdicts import (
    add_blocked,
    attached,
    failed_add,
    judged,
    kind_of,
    result_problems,
    unexpected,
)
from cnilib.errors import ErrorCode

REQUIRED_ENV = ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME")


@check(
    "add.result",
    "ADD in every supported version from 0.3.1 on prints a result valid against that "
    "version's schema, in that version",
    "SPEC 1.1 §5 ADD success; §2 ADD",
)
def add_result(session: Session) -> Finding:
    if (blocked := add_blocked(session, ADD_VERSIONS[0])) is not None:
        return blocked
    wrong = []
    reasons = []
    for version in session.versions_from(ADD_VERSIONS[0]):
        ctr = session.container()
        exchange = session.add(ctr, version)
        if not exchange.succeeded:
            wrong.append(exchange)
            reasons.append(failed_add(exchange))
        elif problems := result_problems(exchange.stdout_json(), version):
            wrong.append(exchange)
            reasons.append(f"{version}: {unexpected(problems)}")
        session.delete(ctr)
    if wrong:
        return failed("; ".join(reasons), *wrong)
    return passed(reason=f"valid in {', '.join(session.versions_from(ADD_VERSIONS[0]))}")


@check(
    "add.interfaces",
    "the result's interfaces exist where it says, with its MACs and addresses, and every "
    "ips[].interface is an index into interfaces",
    "SPEC 1.1 §5 ADD success (interfaces, ips.interface)",
)
def add_interfaces(session: Session) -> Finding:
    if (blocked := add_blocked(session, ADD_VERSIONS[0])) is not None:
        return blocked
    ctr, exchange, result, why = attached(session, session.newest)
    if why is not None:
        return why
    interfaces = result.get("interfaces") or []
    problems = []
    for i, ip in enumerate(result.get("ips") or []):
        index = ip.get("interface")
        if index is not None and not (isinstance(index, int) and 0 <= index < len(interfaces)):
            problems.append(f"ips[{i}].interface is {index!r}; there are {len(interfaces)}")
    if session.profile.kind is Kind.IPAM:
        if interfaces:
            problems.append("an IPAM plugin's result has interfaces")
        return failed("; ".join(problems), exchange) if problems else passed(exchange)
    in_ctr = interfaces_in(ctr.ns)
    in_node = interfaces_in(session.sandbox.node)
    wanted = container_iface(session, ctr)
    if not any(
        iface.get("name") == wanted and iface.get("sandbox") == ctr.netns for iface in interfaces
    ):
        problems.append(f"no interface {wanted!r} with sandbox {ctr.netns!r} in the result")
    for i, iface in enumerate(interfaces):
        where = in_ctr if iface.get("sandbox") else in_node
        link = where.get(iface.get("name", ""))
        if link is None:
            side = "container" if iface.get("sandbox") else "node (host)"
            problems.append(f"interfaces[{i}] {iface.get('name')!r} is not in the {side} namespace")
            continue
        mac = iface.get("mac")
        if mac and link.get("address", "").lower() != str(mac).lower():
            problems.append(
                f"interfaces[{i}] {iface['name']!r}: MAC {mac}, the kernel's {link.get('address')}"
            )
        problems += [
            f"{ip.get('address')} is said to be on {iface['name']!r}, which lacks it"
            for ip in result.get("ips") or []
            if ip.get("interface") == i and ip.get("address") not in addresses_of(link)
        ]
    if problems:
        return failed(unexpected(problems), exchange)
    return passed(exchange)


@check(
    "add.sandbox",
    "container interfaces carry sandbox = CNI_NETNS; interfaces on the host carry none",
    "SPEC 1.1 §5 ADD success (interfaces.sandbox: should be the value of CNI_NETNS)",
    level="should",
)
def add_sandbox(session: Session) -> Finding:
    if session.profile.kind is Kind.IPAM:
        return not_applicable("an IPAM plugin reports no interfaces")
    if (blocked := add_blocked(session, ADD_VERSIONS[0])) is not None:
        return blocked
    ctr, exchange, result, why = attached(session, session.newest)
    if why is not None:
        return why
    in_ctr = interfaces_in(ctr.ns)
    in_node = interfaces_in(session.sandbox.node)
    problems = []
    for i, iface in enumerate(result.get("interfaces") or []):
        name, sandbox = iface.get("name"), iface.get("sandbox")
        if sandbox and sandbox != ctr.netns:
            problems.append(f"interfaces[{i}] {name!r}: sandbox {sandbox!r}, not {ctr.netns!r}")
        elif not sandbox and name in in_ctr and name not in in_node:
            problems.append(f"interfaces[{i}] {name!r} is in the container, without sandbox")
        elif sandbox and name in in_node and name not in in_ctr:
            problems.append(f"interfaces[{i}] {name!r} is on the host, with a sandbox")
    if problems:
        return failed(unexpected(problems), exchange)
    return passed(exchange)


@check(
    "add.twice",
    "the same ADD twice (which a runtime must not send) is an error for a plugin that makes "
    "the interface (it exists already), a result or an error for others, never a crash; "
    "one DEL then removes everything",
    "SPEC 1.1 §2 ADD (if an interface of the requested name already exists in the "
    "container, the plugin must return an error); §3 Attachment lifecycle",
)
def add_twice(session: Session) -> Finding:
    if (blocked := add_blocked(session)) is not None:
        return blocked
    before = settled_node(session)
    ctr = session.container()
    first = session.add(ctr, session.newest, label="ADD (first)")
    if not first.succeeded:
        return failed(failed_add(first), first)
    second = session.add(ctr, session.newest, label="ADD (the same again)")
    delete = session.delete(ctr)
    musts, shoulds = [], []
    if second.crashed:
        musts.append(f"the second ADD crashed: {second.describe()}")
    elif second.succeeded and session.makes_interface:
        musts.append(f"the second ADD succeeded, though {ctr.ifname} exists in the container")
    elif second.succeeded and result_problems(second.stdout_json(), session.newest):
        musts.append("the second ADD succeeded with an invalid result")
    if not delete.succeeded:
        musts.append(f"the DEL failed: {delete.describe()}")
    elif left := left_behind(session, before, ctr):
        shoulds.append(f"left behind after the DEL: {unexpected(left)}")
    if musts or shoulds:
        return judged(musts, shoulds, first, second, delete)
    how = "succeeded" if second.succeeded else f"failed ({second.describe()})"
    return passed(reason=f"the second ADD {how}")


@check(
    "add.missing-env",
    "ADD without CNI_CONTAINERID, CNI_NETNS or CNI_IFNAME fails with code 4 naming the "
    "variable, and changes nothing",
    "SPEC 1.1 §2 Parameters; §2 Errors (code 4, Invalid necessary environment variables)",
)
def add_missing_env(session: Session) -> Finding:
    return _missing(session, REQUIRED_ENV)


@check(
    "add.missing-command-or-path",
    "a call without CNI_COMMAND, or an ADD without CNI_PATH, fails with code 4 naming the "
    "variable, and changes nothing",
    "SPEC 1.1 §2 Parameters (CNI_COMMAND, CNI_PATH); §2 Errors (code 4)",
    level="should",
)
def add_missing_command_or_path(session: Session) -> Finding:
    return _missing(session, ("CNI_COMMAND", "CNI_PATH"))


def _missing(session: Session, names: tuple[str, ...]) -> Finding:
    if not session.supported:
        return not_applicable("VERSION listed no version the kit knows")
    ctr = session.container()
    before = session.snapshot_node()
    conf = session.config(session.newest)
    musts: list[str] = []
    shoulds: list[str] = []
    evidence = []
    for name in names:
        label = "a call without CNI_COMMAND" if name == "CNI_COMMAND" else f"ADD without {name}"
        exchange = session.call(label, session.env("ADD", ctr, drop=[name]), conf)
        msg = str((exchange.error_object() or {}).get("msg", ""))
        if exchange.succeeded:
            musts.append(f"without {name}: exit 0")
        elif exchange.crashed:
            musts.append(f"without {name}: crashed ({exchange.describe()})")
        elif exchange.error_code() != ErrorCode.INVALID_ENVIRONMENT_VARIABLES:
            shoulds.append(f"without {name}: code {exchange.error_code()}, not 4")
        elif name not in msg:  # code 4's message must name the variables
            musts.append(f"without {name}: the message does not name it: {msg!r}")
        else:
            continue
        evidence.append(exchange)
        if exchange.succeeded:
            session.delete(ctr, record=False)
    if left := left_behind(session, before, ctr):
        shoulds.append(f"the namespaces changed: {unexpected(left)}")
    if musts or shoulds:
        return judged(musts, shoulds, *evidence)
    return passed(reason=f"code 4 naming {', '.join(names)}")


@check(
    "add.undecodable-config",
    "ADD whose stdin is not JSON fails with code 6",
    "SPEC 1.1 §2 Errors (code 6, Failed to decode content)",
)
def add_undecodable(session: Session) -> Finding:
    ctr = session.container()
    exchange = session.call("ADD (stdin not JSON)", session.env("ADD", ctr), b"{not json")
    if exchange.succeeded:
        session.delete(ctr, record=False)
        return failed("ADD succeeded", exchange)
    if exchange.crashed:
        return failed(f"crashed: {exchange.describe()}", exchange)
    if exchange.error_code() != ErrorCode.DECODING_FAILURE:
        return warned(f"code {exchange.error_code()}, not 6", exchange)
    return passed(exchange)


@check(
    "add.invalid-config",
    "ADD with a configuration of the wrong shape (name a number) fails with code 6 or 7",
    "SPEC 1.1 §2 Errors (code 6, code 7 Invalid network config); §1 Network configuration",
    level="should",
)
def add_invalid_config(session: Session) -> Finding:
    if not session.supported:
        return not_applicable("VERSION listed no version the kit knows")
    ctr = session.container()
    conf = session.config(session.newest, name=42)
    exchange = session.call("ADD (name is a number)", session.env("ADD", ctr), conf)
    if exchange.succeeded:
        session.delete(ctr, record=False)
        return failed("ADD succeeded", exchange)
    if exchange.crashed:
        return failed(f"crashed: {exchange.describe()}", exchange)
    code = exchange.error_code()
    if code not in (ErrorCode.DECODING_FAILURE, ErrorCode.INVALID_NETWORK_CONFIG):
        return failed(f"code {code}, not 6 or 7", exchange)
    return passed(exchange)


@check(
    "add.missing-netns",
    "ADD with a CNI_NETNS that does not exist fails with an error object, not a crash, "
    "and leaves nothing on the host",
    "SPEC 1.1 §2 Parameters (CNI_NETNS); §2 Errors",
)
def add_missing_netns(session: Session) -> Finding:
    if session.profile.kind not in (Kind.INTERFACE, Kind.LOOPBACK):
        return not_applicable(f"{kind_of(session)} need not enter the namespace")
    if (blocked := add_blocked(session)) is not None:
        return blocked
    before = settled_node(session)
    ctr = session.container()
    gone = f"{ctr.netns}-does-not-exist"
    conf = session.config(session.newest)
    exchange = session.call("ADD (CNI_NETNS missing)", session.env("ADD", ctr, netns=gone), conf)
    if exchange.succeeded:
        session.delete(ctr, netns=gone, record=False)
        return failed("ADD succeeded", exchange)
    if exchange.crashed:
        return failed(f"crashed: {exchange.describe()}", exchange)
    if left := left_behind(session, before):
        return warned(f"it failed, and left behind: {unexpected(left)}", exchange)
    return passed(exchange)
