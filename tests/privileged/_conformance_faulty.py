"""Deliberately broken plugins, each breaking one obligation the conformance kit checks.

The in-process ones wrap cnilib's own ``ptp`` (which passes every check) and
change one verb, so that a run finding exactly the broken obligation shows the
kit pinpoints it. What an in-process plugin cannot get wrong (the skel answers
VERSION, checks the environment and decodes stdin) is broken by small
executable scripts (:func:`write_script`), run from a directory of their own.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import attrs

from cnilib import spec
from cnilib.errors import ErrorCode, PluginError
from cnilib.plugins import ALL_VERSIONS, BasePlugin, PluginRequest
from cnilib.plugins.main.ptp import Ptp
from cnilib.results import Result, ResultV100

__all__ = [
    "AddCrashesWhenNetnsMissing",
    "AddTwiceCrashes",
    "BadInterfaceIndex",
    "ChainDropsInterfaces",
    "ChainPassesThrough",
    "CheckAlwaysFails",
    "CheckAlwaysSucceeds",
    "CheckRaisesKeyError",
    "DelDoesNothing",
    "DelFailsTwice",
    "DelFailsWhenNetnsGone",
    "DelFailsWithoutAdd",
    "DelNeedsNetns",
    "DelNeedsPrevResult",
    "GcReleasesEverything",
    "IgnoresVersion",
    "NoSandbox",
    "WrongResultVersion",
    "script_config",
    "write_script",
]


def _fail(msg: str) -> PluginError:
    return PluginError(msg, code=ErrorCode.INTERNAL)


# --------------------------------------------------------------------------- DEL


class DelDoesNothing(Ptp):
    """DEL succeeds and removes nothing: the veth, the routes and the address stay."""

    def delete(self, req: PluginRequest) -> None:
        pass


class DelFailsWhenNetnsGone(Ptp):
    """DEL fails when CNI_NETNS names a namespace that no longer exists."""

    def delete(self, req: PluginRequest) -> None:
        if req.netns and not os.path.exists(req.netns):
            raise _fail(f"cannot open {req.netns}")
        super().delete(req)


class DelFailsWithoutAdd(Ptp):
    """DEL of a container it never added fails."""

    def __init__(self) -> None:
        self.added: set[str] = set()

    def add(self, req: PluginRequest) -> Result:
        self.added.add(req.container_id)
        return super().add(req)

    def delete(self, req: PluginRequest) -> None:
        if req.container_id not in self.added:
            raise _fail(f"unknown container {req.container_id}")
        super().delete(req)


class DelFailsTwice(Ptp):
    """A second DEL of the same attachment fails."""

    def __init__(self) -> None:
        self.deleted: set[str] = set()

    def delete(self, req: PluginRequest) -> None:
        if req.container_id in self.deleted:
            raise _fail(f"{req.container_id} is already deleted")
        super().delete(req)
        self.deleted.add(req.container_id)


class DelNeedsPrevResult(Ptp):
    """DEL fails without prevResult (a SHOULD: the spec asks it to clean up what it can)."""

    def delete(self, req: PluginRequest) -> None:
        if req.config.get("prevResult") is None:
            raise _fail("DEL needs prevResult")
        super().delete(req)


class DelNeedsNetns(Ptp):
    """DEL fails with CNI_NETNS empty."""

    def delete(self, req: PluginRequest) -> None:
        if not req.netns:
            raise _fail("DEL needs CNI_NETNS")
        super().delete(req)


# --------------------------------------------------------------------------- ADD


def _v1(req: PluginRequest, result: Result) -> ResultV100:
    converted = result.convert_to(req.cni_version).as_v1()
    return attrs.evolve(converted, cni_version=req.cni_version)


class BadInterfaceIndex(Ptp):
    """ADD's result points its addresses at an interface index past the list's end."""

    def add(self, req: PluginRequest) -> Result:
        result = _v1(req, super().add(req))
        far = len(result.interfaces) + 3
        return attrs.evolve(result, ips=[attrs.evolve(ip, interface=far) for ip in result.ips])


class NoSandbox(Ptp):
    """ADD's result leaves out the container interface's ``sandbox``."""

    def add(self, req: PluginRequest) -> Result:
        result = _v1(req, super().add(req))
        ifaces = [attrs.evolve(i, sandbox="") for i in result.interfaces]
        return attrs.evolve(result, interfaces=ifaces)


@attrs.frozen(kw_only=True)
class _Mislabelled(ResultV100):
    """A 1.x result that skel cannot convert: it prints its own ``cniVersion``."""

    def convert_to(self, version: str | spec.SpecVersion) -> Result:
        return self


class WrongResultVersion(Ptp):
    """ADD answers in 1.0.0 when asked 1.1.0 (and in 1.1.0 when asked anything else)."""

    def add(self, req: PluginRequest) -> Result:
        result = super().add(req).convert_to("1.1.0").as_v1()
        other = "1.0.0" if req.cni_version == "1.1.0" else "1.1.0"
        return _Mislabelled(
            cni_version=other,
            interfaces=result.interfaces,
            ips=result.ips,
            routes=result.routes,
            dns=result.dns,
        )


class AddTwiceCrashes(Ptp):
    """The second ADD of the same container raises a Python exception (a crash)."""

    def __init__(self) -> None:
        self.added: dict[str, str] = {}

    def add(self, req: PluginRequest) -> Result:
        if req.container_id in self.added:
            raise KeyError(req.container_id)  # a bug: the plugin did not expect it
        self.added[req.container_id] = req.ifname
        return super().add(req)

    def delete(self, req: PluginRequest) -> None:
        super().delete(req)
        self.added.pop(req.container_id, None)


class AddCrashesWhenNetnsMissing(Ptp):
    """ADD opens CNI_NETNS without handling its absence: a Python exception escapes."""

    def add(self, req: PluginRequest) -> Result:
        os.stat(req.netns)  # FileNotFoundError, unhandled
        return super().add(req)


# --------------------------------------------------------------------------- CHECK


class CheckAlwaysFails(Ptp):
    """CHECK fails even right after ADD."""

    def check(self, req: PluginRequest) -> None:
        raise _fail("something is wrong, somewhere")


class CheckAlwaysSucceeds(Ptp):
    """CHECK succeeds whatever the kernel has (a SHOULD: it ought to notice a break)."""

    def check(self, req: PluginRequest) -> None:
        pass


class CheckRaisesKeyError(Ptp):
    """CHECK lets a Python exception escape: skel makes code 999 of it, a crash."""

    def check(self, req: PluginRequest) -> None:
        raise KeyError("prevResult")


# --------------------------------------------------------------------------- versions, GC


class _AcceptsAnything(tuple[str, ...]):
    """Lists some versions, yet answers "yes" to any: skel then never says code 1."""

    def __contains__(self, item: object) -> bool:
        return True


class IgnoresVersion(Ptp):
    """Lists 0.4.0 and later, then works in whatever version it is asked."""

    supported_versions = _AcceptsAnything(v for v in ALL_VERSIONS if v >= "0.4.0")


class GcReleasesEverything(Ptp):
    """GC releases every address of the network, the valid attachments' too."""

    def gc(self, req: PluginRequest) -> None:
        ipam = req.get_object("ipam")
        data_dir = ipam.get("dataDir")
        if isinstance(data_dir, str):
            shutil.rmtree(Path(data_dir, req.name), ignore_errors=True)


# --------------------------------------------------------------------------- chained


class _Chained(BasePlugin):
    """A chained plugin that does nothing but answer with prevResult (or what
    :meth:`transform` makes of it)."""

    type = "faulty-chain"

    def add(self, req: PluginRequest) -> Result:
        prev = req.prev_result
        if prev is None:
            raise PluginError("needs prevResult", code=ErrorCode.INVALID_NETWORK_CONFIG)
        return self.transform(_v1(req, prev))

    def transform(self, prev: ResultV100) -> ResultV100:
        return prev


class ChainPassesThrough(_Chained):
    """The correct one: prevResult unchanged."""


class ChainDropsInterfaces(_Chained):
    """Answers with prevResult's addresses and routes but none of its interfaces."""

    def transform(self, prev: ResultV100) -> ResultV100:
        ips = [attrs.evolve(ip, interface=None) for ip in prev.ips]
        return attrs.evolve(prev, interfaces=(), ips=ips)


# --------------------------------------------------------------------------- scripts

SCRIPT_TYPE = "scripted"
"""The plugin type (and file name) of the scripts."""

SCRIPT_VERSIONS = ("0.3.1", "0.4.0", "1.0.0", "1.1.0")

# A plugin with no interface to make: VERSION, error objects, DEL and STATUS and GC
# succeed, ADD fails with an error object (the checks run on it need no ADD). FAULT
# changes one thing.
_SCRIPT = r"""#!{python} -IS
import json, os, sys

FAULT = {fault!r}
SUPPORTED = {supported!r}
REQUIRED = {{
    "CNI_CONTAINERID": ("ADD", "CHECK", "DEL"),
    "CNI_NETNS": ("ADD", "CHECK"),
    "CNI_IFNAME": ("ADD", "CHECK", "DEL"),
    "CNI_PATH": ("ADD", "CHECK", "DEL", "GC", "STATUS"),
}}


def fail(code, msg):
    if FAULT == "stdout-text":
        print("error: " + msg)
    else:
        error = {{"cniVersion": "1.1.0", "code": code, "msg": msg}}
        if FAULT == "error-details":
            error["details"] = 42  # the spec's details is a string
        print(json.dumps(error))
    sys.exit(1)


command = os.environ.get("CNI_COMMAND", "")
if not command:
    fail(4, "required env variables [CNI_COMMAND] missing")
data = sys.stdin.buffer.read()
if command == "VERSION":
    try:
        asked = json.loads(data).get("cniVersion", "0.1.0")
    except ValueError:
        asked = "0.1.0"
    listed = list(SUPPORTED)
    if FAULT == "version-inconsistent" and asked != "1.1.0":
        listed = [v for v in listed if v != asked]
    # Skel's way (its newest, whatever was asked) is the fault; the spec echoes.
    answer = {{"cniVersion": "1.1.0" if FAULT == "version-newest" else asked}}
    if FAULT != "version-no-list":
        answer["supportedVersions"] = listed
    print(json.dumps(answer))
    sys.exit(0)
missing = [n for n, verbs in REQUIRED.items() if command in verbs and not os.environ.get(n)]
if missing:
    code = 7 if FAULT == "env-code" and "CNI_PATH" not in missing else 4
    fail(code, "required env variables [%s] missing" % ",".join(missing))
try:
    conf = json.loads(data)
except ValueError:
    fail(7 if FAULT == "decode-code" else 6, "error unmarshall network config")
if not isinstance(conf.get("name"), str):
    fail(42 if FAULT == "odd-code" else 7, "missing network name")
version = conf.get("cniVersion", "0.1.0")
if version not in SUPPORTED:
    fail(1, "incompatible CNI versions")
if command == "CHECK" and version in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
    if FAULT != "check-old":
        fail(1, "config version does not allow CHECK")
    sys.exit(0)
if command == "ADD":
    fail(999, "this plugin makes nothing")
if command == "STATUS" and FAULT == "status-code":
    fail(7, "not ready")
sys.exit(0)
"""

SCRIPT_FAULTS = (
    "none",
    "stdout-text",
    "error-details",
    "version-no-list",
    "version-inconsistent",
    "version-newest",
    "env-code",
    "decode-code",
    "odd-code",
    "check-old",
    "status-code",
)


def write_script(directory: Path, fault: str = "none") -> Path:
    """Write the plugin script ``directory/scripted`` with ``fault`` (one of
    :data:`SCRIPT_FAULTS`; ``none`` is the correct one); its path."""
    if fault not in SCRIPT_FAULTS:
        raise ValueError(f"unknown fault {fault!r}")
    path = directory / SCRIPT_TYPE
    path.write_text(_SCRIPT.format(python=sys.executable, fault=fault, supported=SCRIPT_VERSIONS))
    path.chmod(0o755)
    return path


def script_config() -> dict[str, Any]:
    """The configuration the kit sends the script (its type only)."""
    return {"type": SCRIPT_TYPE}
