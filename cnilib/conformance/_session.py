"""One conformance run's state, and the calls checks make through it.

A check asks the session for containers and calls the plugin with
:meth:`Session.call` (anything at all) or :meth:`Session.add`,
:meth:`Session.delete` and :meth:`Session.check` (what a runtime would send).
Every exchange is kept: the error-object check reads them all at the end.

For a chained plugin, :meth:`Session.add` first attaches the container with
cnilib's in-process ``ptp`` and host-local (the *base*), and hands the base's
result to the plugin as ``prevResult``, as a runtime running the chain
would; :meth:`Session.delete` removes the base after the plugin.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from cnilib.conformance._model import Exchange
from cnilib.conformance._profile import JSONObject, Kind, Profile
from cnilib.conformance._sandbox import Container, Sandbox, Snapshot, snapshot
from cnilib.conformance._target import Target
from cnilib.spec import parse_version

__all__ = ["ADD_VERSIONS", "KNOWN_VERSIONS", "Session", "carries_prev_result"]

KNOWN_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
ADD_VERSIONS = ("0.3.1", "0.4.0", "1.0.0", "1.1.0")
"""The versions whose ADD results the kit checks (those with interfaces and indexes)."""
NETWORK = "conformance"
"""The network name of every configuration the kit sends."""

_BASE_TYPE = "ptp"


@attrs.define
class _Attachment:
    """What the kit attached to a container: the plugin's (and the base's) result."""

    version: str
    result: JSONObject | None = None
    base_result: JSONObject | None = None
    ipam: str = "host-local"


@attrs.define
class Session:
    """The plugin under test, its profile and sandbox, and what the run saw."""

    target: Target
    profile: Profile
    sandbox: Sandbox
    path: tuple[str, ...]
    """``CNI_PATH`` given to the plugin (where its IPAM delegates are found)."""
    supported: tuple[str, ...] = ()
    """The versions the plugin's VERSION answer listed that the kit knows."""
    timeout: float = 30.0
    exchanges: list[Exchange] = attrs.field(factory=list)
    attachments: dict[str, _Attachment] = attrs.field(factory=dict)
    """By container ID: what :meth:`add` made and :meth:`delete` has not removed."""
    unavailable: str | None = None
    """Why no ADD can succeed on this machine (set by the run), else ``None``."""
    settled: Snapshot | None = None
    """The node after a first attachment came and went (see ``checks._observe``)."""
    _containers: list[Container] = attrs.field(factory=list)
    _baselines: dict[str, Snapshot] = attrs.field(factory=dict)
    _base: Any = None

    # ------------------------------------------------------------------ versions

    @property
    def newest(self) -> str:
        """The newest version both the kit and the plugin know."""
        return max(self.supported, key=parse_version) if self.supported else "1.0.0"

    def supports(self, version: str) -> bool:
        return version in self.supported

    def versions_from(self, oldest: str) -> list[str]:
        """The supported versions at or after ``oldest``, oldest first."""
        floor = parse_version(oldest)
        return sorted((v for v in self.supported if parse_version(v) >= floor), key=parse_version)

    @property
    def makes_interface(self) -> bool:
        return self.profile.kind is Kind.INTERFACE

    # ------------------------------------------------------------------ configs

    def ipam_config(self, ipam: str) -> JSONObject:
        """host-local's (data dir in the sandbox) or static's section in the subnet."""
        subnet = self.sandbox.subnet
        if ipam == "static":
            # With a gateway: ptp, for one, needs an address with one.
            address = {"address": f"{subnet[200]}/{subnet.prefixlen}", "gateway": str(subnet[1])}
            return {"type": "static", "addresses": [address]}
        return {
            "type": "host-local",
            "ranges": [
                [
                    {
                        "subnet": str(subnet),
                        "rangeStart": str(subnet[10]),
                        "rangeEnd": str(subnet[99]),
                    }
                ]
            ],
            "dataDir": str(self.sandbox.directory("host-local")),
        }

    def config(
        self,
        version: str,
        *,
        ipam: str = "host-local",
        prev_result: JSONObject | None = None,
        runtime_config: bool = True,
        **extra: Any,
    ) -> JSONObject:
        """The configuration a runtime would send: the profile's, with ``name`` and
        ``cniVersion``, the IPAM section (``ipam``: host-local or static), the
        profile's ``runtimeConfig`` and ``prevResult`` when given; ``extra`` last."""
        conf: JSONObject = {"cniVersion": version, "name": NETWORK}
        body = copy.deepcopy(self.profile.config(self.sandbox))
        conf.update(body)
        conf.setdefault("type", self.target.plugin_type)
        if self.profile.kind is Kind.INTERFACE and self.profile.uses_ipam and "ipam" not in body:
            conf["ipam"] = self.ipam_config(ipam)
        if runtime_config and self.profile.runtime_config is not None:
            conf["runtimeConfig"] = dict(self.profile.runtime_config)
        if prev_result is not None:
            conf["prevResult"] = prev_result
        conf.update(extra)
        return conf

    def env(
        self,
        command: str,
        ctr: Container | None = None,
        *,
        netns: str | None = None,
        drop: Iterable[str] = (),
        **override: str,
    ) -> dict[str, str]:
        """The ``CNI_*`` environment libcni builds for ``command`` on ``ctr``;
        ``netns`` replaces the container's path, ``drop`` leaves variables out,
        ``override`` (``CNI_IFNAME="x"``) changes them."""
        attach = command in ("ADD", "DEL", "CHECK") and ctr is not None
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": ctr.id if attach and ctr else "",
            "CNI_NETNS": (netns if netns is not None else ctr.netns) if attach and ctr else "",
            "CNI_IFNAME": ctr.ifname if attach and ctr else "",
            "CNI_ARGS": "",
            "CNI_PATH": ":".join(self.path),
        }
        if command == "VERSION":
            env.update(CNI_NETNS="dummy", CNI_IFNAME="dummy", CNI_PATH="dummy")
        env.update(override)
        for name in drop:
            env.pop(name, None)
        return env

    # ------------------------------------------------------------------ containers

    def container(self, *, ifname: str = "eth0") -> Container:
        """A new container namespace for the current check (gone after it)."""
        ctr = self.sandbox.container(ifname=ifname)
        self._containers.append(ctr)
        self._baselines[ctr.id] = snapshot(ctr.ns)
        return ctr

    def container_baseline(self, ctr: Container) -> Snapshot:
        """The container's namespace as the runtime made it, before any plugin ran."""
        return self._baselines[ctr.id]

    def finish_check(self) -> None:
        """After a check: DEL what it left attached (quietly: tidying, not evidence;
        a failure here shows in the next leak check), then drop its containers."""
        try:
            for ctr in self._containers:
                if ctr.id in self.attachments:
                    # The base's DEL failing says nothing of the plugin: the leak
                    # checks see whatever it left.
                    with contextlib.suppress(Exception):
                        self.delete(ctr, record=False)
                    self.attachments.pop(ctr.id, None)
        finally:
            for ctr in self._containers:
                _unlink_stray_file(ctr)
                ctr.ns.delete()
            self._containers.clear()
            self._baselines.clear()

    # ------------------------------------------------------------------ calls

    def call(
        self,
        label: str,
        env: Mapping[str, str],
        stdin: bytes | JSONObject,
        *,
        record: bool = True,
    ) -> Exchange:
        """Call the plugin with exactly ``env`` and ``stdin`` (an object is dumped)."""
        data = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
        exchange = self.target.call(label, env, data, node=self.sandbox.node, timeout=self.timeout)
        if record:
            self.exchanges.append(exchange)
        return exchange

    def version(self, request_version: str = "1.1.0") -> Exchange:
        return self.call(
            f"VERSION (asked as {request_version})",
            self.env("VERSION"),
            {"cniVersion": request_version},
        )

    def add(
        self,
        ctr: Container,
        version: str | None = None,
        *,
        ipam: str = "host-local",
        label: str | None = None,
        **extra: Any,
    ) -> Exchange:
        """ADD as a runtime would (for a chained plugin, after the base's ADD);
        a successful result is remembered for :meth:`delete` and :meth:`check`."""
        version = version or self.newest
        attachment = self.attachments.get(ctr.id) or _Attachment(version, ipam=ipam)
        prev = None
        if self.profile.kind is Kind.CHAINED:
            if attachment.base_result is None:
                attachment.base_result = self.base_add(ctr, version)
            prev = attachment.base_result
        conf = self.config(version, ipam=ipam, prev_result=prev, **extra)
        exchange = self.call(label or f"ADD ({version})", self.env("ADD", ctr), conf)
        result = exchange.stdout_json() if exchange.succeeded else None
        if isinstance(result, dict):
            attachment.result = result
        self.attachments[ctr.id] = attachment
        return exchange

    def prev_result(self, ctr: Container) -> JSONObject | None:
        """What a runtime sends as ``prevResult`` on DEL and CHECK of ``ctr``: the
        result of the chain's last plugin (the plugin's, else the base's)."""
        attachment = self.attachments.get(ctr.id)
        if attachment is None:
            return None
        return attachment.result or attachment.base_result

    def delete(
        self,
        ctr: Container,
        version: str | None = None,
        *,
        prev_result: bool = True,
        netns: str | None = None,
        label: str | None = None,
        record: bool = True,
        **extra: Any,
    ) -> Exchange:
        """DEL as a runtime would (``prevResult`` from :meth:`add` if asked and the
        version has it); for a chained plugin the base is removed afterwards."""
        attachment = self.attachments.get(ctr.id)
        version = version or (attachment.version if attachment else self.newest)
        ipam = attachment.ipam if attachment else "host-local"
        prev = self.prev_result(ctr) if prev_result and carries_prev_result(version) else None
        conf = self.config(version, ipam=ipam, prev_result=prev, **extra)
        exchange = self.call(
            label or f"DEL ({version})", self.env("DEL", ctr, netns=netns), conf, record=record
        )
        if exchange.succeeded and attachment is not None:
            if attachment.base_result is not None:
                self.base_delete(ctr, version, netns=netns)
            del self.attachments[ctr.id]
        return exchange

    def check(
        self, ctr: Container, version: str | None = None, *, label: str | None = None
    ) -> Exchange:
        """CHECK with the ADD's result as ``prevResult``."""
        attachment = self.attachments.get(ctr.id)
        version = version or (attachment.version if attachment else self.newest)
        ipam = attachment.ipam if attachment else "host-local"
        conf = self.config(version, ipam=ipam, prev_result=self.prev_result(ctr))
        return self.call(label or f"CHECK ({version})", self.env("CHECK", ctr), conf)

    # ------------------------------------------------------------------ the base

    def _base_executor(self) -> Any:
        from cnilib.plugins import InProcessExecutor

        if self._base is None:
            self._base = InProcessExecutor(host_netns=self.sandbox.node.path)
        return self._base

    def base_config(self, version: str) -> JSONObject:
        return {
            "cniVersion": version,
            "name": NETWORK,
            "type": _BASE_TYPE,
            "ipam": self.ipam_config("host-local"),
        }

    def base_add(self, ctr: Container, version: str) -> JSONObject:
        """Attach ``ctr`` with the base (cnilib's ptp); its result. A failure is the
        kit's problem, not the plugin's: it raises."""
        out = self._base_executor().handle(
            _BASE_TYPE, self.env("ADD", ctr), json.dumps(self.base_config(version)).encode()
        )
        result: JSONObject = json.loads(out)
        return result

    def base_delete(self, ctr: Container, version: str, *, netns: str | None = None) -> None:
        self._base_executor().handle(
            _BASE_TYPE,
            self.env("DEL", ctr, netns=netns),
            json.dumps(self.base_config(version)).encode(),
        )

    # ------------------------------------------------------------------ looking

    def snapshot_node(self) -> Snapshot:
        """The node namespace and the profile's state directories."""
        return snapshot(self.sandbox.node, directories=self.profile.state_dirs(self.sandbox))

    def snapshot_container(self, ctr: Container) -> Snapshot:
        return snapshot(ctr.ns)

    def close(self) -> None:
        if self._base is not None:
            self._base.close()
            self._base = None


def carries_prev_result(version: str) -> bool:
    """Configurations of 0.4.0 and later carry ``prevResult`` on DEL."""
    return parse_version(version) >= parse_version("0.4.0")


def _unlink_stray_file(ctr: Container) -> None:
    """Remove a plain file a plugin made at a deleted namespace's path (Go's sbr 1.1.1
    does, on DEL): ``ip netns`` would list it as a namespace."""
    path = ctr.netns
    if os.path.isfile(path) and not os.path.ismount(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
