"""``cnilib doctor``: can these networks attach containers, and if not, why?

One report per network: where each plugin (and IPAM plugin) runs from, the
spec versions it answers VERSION with against the list's ``cniVersion``, and
STATUS for spec 1.1 lists; then the files that could not be loaded. cnitool
has nothing like it; the library's equivalent is ``CNI.status_report``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import attrs

from cnilib import spec
from cnilib.cli._commands import (
    EXIT_FAILURE,
    EXIT_OK,
    _cni,
    _load_network,
    _out,
    _plugin_path,
    _print_json,
    printable,
)
from cnilib.config import NetworkConfigList
from cnilib.errors import CNIError, ConfigError
from cnilib.invoke import Executor, PluginInfo
from cnilib.runtime import CNI, NetworkStatus, PluginCheck

__all__ = ["doctor"]


@attrs.frozen
class _Versions:
    """One found plugin's VERSION answer, against the list's ``cniVersion``."""

    info: PluginInfo | None
    error: CNIError | None

    def supports(self, version: str) -> bool:
        return self.info is not None and self.info.supports(version)


def _versions(executor: Executor, path: Sequence[str], check: PluginCheck) -> _Versions | None:
    if not check.found:
        return None
    try:
        return _Versions(executor.version_info(check.plugin_type, path), None)
    except CNIError as exc:
        return _Versions(None, exc)


def _plugin_ok(network: NetworkStatus, check: PluginCheck, versions: _Versions | None) -> bool:
    return check.found and versions is not None and versions.supports(network.cni_version)


@attrs.frozen
class _Network:
    """What doctor found out about one network."""

    status: NetworkStatus
    versions: tuple[_Versions | None, ...]
    status_ran: bool
    status_error: CNIError | None

    @property
    def plugins_ok(self) -> bool:
        return all(
            _plugin_ok(self.status, check, found)
            for check, found in zip(self.status.plugins, self.versions, strict=True)
        )

    @property
    def ready(self) -> bool:
        return self.plugins_ok and self.status_error is None

    def status_text(self) -> str:
        if self.status_error is not None:
            return f"failed: {self.status_error}"
        if self.status_ran:
            return "ok"
        if not self.plugins_ok:
            return "not run: a plugin is missing or does not speak the list's cniVersion"
        return f"not run: cniVersion {self.status.cni_version} has no STATUS (1.1.0 and later)"


def _examine(cni: CNI, path: Sequence[str], conflist: NetworkConfigList) -> _Network:
    (status,) = cni.status_report([conflist], status=False).networks
    versions = tuple(_versions(cni.executor, path, check) for check in status.plugins)
    network = _Network(status, versions, False, None)
    # STATUS only where every plugin is there and speaks the list's version: a
    # plugin older than STATUS would only answer with a confusing error.
    if network.plugins_ok and spec.has_status(spec.parse_version(conflist.cni_version)):
        try:
            cni.status_network_list(conflist)
        except CNIError as exc:
            return attrs.evolve(network, status_ran=True, status_error=exc)
        return attrs.evolve(network, status_ran=True)
    return network


def _location(check: PluginCheck) -> str | None:
    location = check.location
    if location is not None and location.startswith("<in-process "):
        return "in-process"
    return location


def _plugin_line(network: NetworkStatus, check: PluginCheck, versions: _Versions | None) -> str:
    head = f"{check.role} {check.plugin_type}: "
    if not check.found:
        return f"{head}not found: {check.error}"
    assert versions is not None
    if versions.info is None:
        return f"{head}{_location(check)}, VERSION failed: {versions.error}"
    supported = ", ".join(versions.info.supported_versions)
    verdict = "supports" if versions.supports(network.cni_version) else "does not support"
    return f"{head}{_location(check)}, {verdict} {network.cni_version} (speaks {supported})"


def _plugin_object(
    network: NetworkStatus, check: PluginCheck, versions: _Versions | None
) -> dict[str, object]:
    info = versions.info if versions is not None else None
    error = check.error or (versions.error if versions is not None else None)
    return {
        "type": check.plugin_type,
        "role": check.role,
        "location": _location(check),
        "supportedVersions": list(info.supported_versions) if info is not None else None,
        "supportsListVersion": _plugin_ok(network, check, versions),
        "error": str(error) if error is not None else None,
    }


def doctor(args: argparse.Namespace) -> int:
    """Report on one network, or on every network of the conf dir; exit 1 unless all are ready."""
    from cnilib.config import scan_conf_dir

    cni = _cni(args)
    path = _plugin_path(args)
    problems: Sequence[ConfigError] = ()
    if args.network:
        conflists: Sequence[NetworkConfigList] = [_load_network(args)]
    else:
        conf_dir = scan_conf_dir(args.conf_dir)
        conflists, problems = conf_dir.networks, conf_dir.problems
    networks = [_examine(cni, path, conflist) for conflist in conflists]
    all_ready = bool(networks) and not problems and all(n.ready for n in networks)
    if args.json:
        _print_json(
            {
                "ready": all_ready,
                "networks": [_network_object(network) for network in networks],
                "problems": [str(problem) for problem in problems],
            }
        )
        return EXIT_OK if all_ready else EXIT_FAILURE
    for network in networks:
        status = network.status
        where = f" ({status.source})" if status.source else ""
        verdict = "ready" if network.ready else "NOT READY"
        _out(printable(f'network "{status.name}"{where}, cniVersion {status.cni_version}: ')
             + verdict)  # fmt: skip
        for check, versions in zip(status.plugins, network.versions, strict=True):
            _out("  " + printable(_plugin_line(status, check, versions)))
        _out("  " + printable(f"STATUS: {network.status_text()}"))
    for problem in problems:
        _out(printable(f"problem: {problem}"))
    if not networks and not problems:
        _out(printable(f"no network configurations in {args.conf_dir}"))
    return EXIT_OK if all_ready else EXIT_FAILURE


def _network_object(network: _Network) -> dict[str, object]:
    status = network.status
    return {
        "name": status.name,
        "source": status.source,
        "cniVersion": status.cni_version,
        "ready": network.ready,
        "plugins": [
            _plugin_object(status, check, found)
            for check, found in zip(status.plugins, network.versions, strict=True)
        ],
        "status": network.status_text(),
    }
