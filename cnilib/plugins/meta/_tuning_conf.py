"""The ``tuning`` plugin's configuration: its keys as Go decodes them, the sysctl
file names (refusing anything that would leave ``/proc/sys/net/``), Go's
optional allowlist, and where the backup of a link's settings lives.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from cnilib._json import JSONValue
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._hostside import fail, go_strerror
from cnilib.plugins._netconf import (
    conf_bool,
    conf_int,
    conf_str,
    load_error,
    mac_from_request,
)

__all__ = [
    "ALLOWLIST_PATH",
    "DEFAULT_DATA_DIR",
    "SYSCTL_ROOT",
    "TuningConf",
    "backup_path",
    "check_allowlist",
    "check_duplicated_sysctls",
    "sysctl_file",
]

DEFAULT_DATA_DIR = "/run/cni/tuning"
ALLOWLIST_PATH = Path("/etc/cni/tuning/allowlist.conf")
"""Go's allowlist file; a module constant (not a config key) so only code can move it."""

SYSCTL_ROOT = "/proc/sys/"
_NET_ROOT = "/proc/sys/net/"


class _Pairs(dict[str, Any]):
    """A JSON object that remembers which of its keys were given more than once."""

    duplicated: tuple[str, ...] = ()


def _pairs(items: list[tuple[str, Any]]) -> _Pairs:
    obj = _Pairs()
    seen = []
    for key, value in items:
        if key in obj:
            seen.append(key)
        obj[key] = value
    obj.duplicated = tuple(seen)
    return obj


def check_duplicated_sysctls(stdin: bytes) -> None:
    """Go's ``validateSysctlConflictingKeys``: a key given twice in ``sysctl`` is refused
    (a JSON decoder keeps only the last one, silently)."""
    try:
        top = json.loads(stdin, object_pairs_hook=_pairs)
    except ValueError:
        return  # the framework already decoded this stdin; nothing more to say here
    sysctl = top.get("sysctl") if isinstance(top, dict) else None
    if isinstance(sysctl, _Pairs) and sysctl.duplicated:
        raise fail("duplicated sysctl keys are not allowed")


def _sysctl_map(value: JSONValue, where: str, struct: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        kind = "array" if isinstance(value, list) else type(value).__name__
        kind = {"str": "string", "int": "number", "float": "number", "bool": "bool"}.get(kind, kind)
        raise load_error(
            f"json: cannot unmarshal {kind} into Go struct field {struct}.{where} "
            "of type map[string]string"
        )
    out = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise load_error(
                f"json: cannot unmarshal {json.dumps(item)} into Go struct field "
                f"{struct}.{where} of type string"
            )
        out[key] = item
    return out


def _opt_bool(conf: Mapping[str, JSONValue], key: str, struct: str) -> bool | None:
    return conf_bool(conf, key, struct) if conf.get(key) is not None else None


def _opt_int(conf: Mapping[str, JSONValue], key: str, struct: str) -> int | None:
    return conf_int(conf, key, struct) if conf.get(key) is not None else None


@attrs.frozen
class TuningConf:
    """What tuning applies, after ``CNI_ARGS``, ``runtimeConfig`` and ``args.cni``."""

    data_dir: str
    sysctl: dict[str, str]
    mac: str
    promisc: bool
    mtu: int
    allmulti: bool | None
    txqlen: int | None

    @classmethod
    def load(cls, req: PluginRequest) -> TuningConf:
        """Go's ``parseConf``: the config, then ``CNI_ARGS MAC=``, ``runtimeConfig.mac``,
        then ``args.cni``."""
        config = req.config
        sysctl = _sysctl_map(config.get("sysctl"), "sysctl", "TuningConf")
        mac = mac_from_request(req, {}) or conf_str(config, "mac", "TuningConf")
        promisc = conf_bool(config, "promisc", "TuningConf")
        mtu = conf_int(config, "mtu", "TuningConf")
        allmulti = _opt_bool(config, "allmulti", "TuningConf")
        txqlen = _opt_int(config, "txQLen", "TuningConf")
        args = config.get("args")
        cni = args.get("cni") if isinstance(args, dict) else None
        if isinstance(cni, dict):
            sysctl.update(_sysctl_map(cni.get("sysctl"), "sysctl", "IPAMArgs"))
            if cni.get("mac") is not None:
                mac = conf_str(cni, "mac", "IPAMArgs")
            promisc = p if (p := _opt_bool(cni, "promisc", "IPAMArgs")) is not None else promisc
            mtu = m if (m := _opt_int(cni, "mtu", "IPAMArgs")) is not None else mtu
            allmulti = a if (a := _opt_bool(cni, "allmulti", "IPAMArgs")) is not None else allmulti
            txqlen = t if (t := _opt_int(cni, "txQLen", "IPAMArgs")) is not None else txqlen
        return cls(
            data_dir=conf_str(config, "dataDir", "TuningConf") or DEFAULT_DATA_DIR,
            sysctl=sysctl,
            mac=mac,
            promisc=promisc,
            mtu=mtu,
            allmulti=allmulti,
            txqlen=txqlen,
        )

    @property
    def changes_link(self) -> bool:
        """Whether ADD changes the interface (and so saves its originals first)."""
        return bool(self.mac or self.mtu or self.promisc) or (
            self.allmulti is not None or self.txqlen is not None
        )


def backup_path(data_dir: str, container_id: str, ifname: str) -> Path:
    """Go's ``<dataDir>/<containerID>_<ifname>.json``."""
    return Path(data_dir) / f"{container_id}_{ifname}.json"


def sysctl_file(key: str, ifname: str) -> str:
    """The ``/proc/sys/net/...`` file of ``key`` (Go's ``getSysctlFilename``): dots become
    ``/``, then ``IFNAME`` becomes ``ifname``; anything outside ``/proc/sys/net/`` is
    refused, and so is a ``..`` component, before any path is built from it."""
    if ".." in key.split("/"):
        raise fail(
            f'invalid net sysctl key: {json.dumps(key)}: a ".." component would leave {_NET_ROOT}'
        )
    rel = key.replace(".", "/").replace("IFNAME", ifname, 1)
    path = os.path.normpath(SYSCTL_ROOT + rel)
    if not path.startswith(_NET_ROOT):
        raise fail(f"invalid net sysctl key: {json.dumps(rel)}")
    return path


def check_allowlist(sysctl: Mapping[str, str]) -> None:
    """Go's ``validateSysctlConf``: with the allowlist file present, each key must match."""
    try:
        text = ALLOWLIST_PATH.read_text()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise fail(f"open {ALLOWLIST_PATH}: {go_strerror(exc)}") from exc
    allowed = [line.strip() for line in text.split("\n") if line.strip()]
    patterns = []
    for line in allowed:
        try:
            patterns.append(re.compile(line))
        except re.error as exc:
            raise fail(f"error parsing regexp in {ALLOWLIST_PATH}: {line!r}: {exc}") from exc
    for key in sysctl:
        if not any(p.search(key) for p in patterns):
            raise fail(
                f"Sysctl {key} is not allowed. Only the following sysctls are allowed: "
                f"[{' '.join(allowed)}]"
            )
