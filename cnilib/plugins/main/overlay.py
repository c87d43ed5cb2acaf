"""The ``overlay`` plugin: a container on its node's share of the multi-node overlay.

The node's agent (``python -m cnilib.overlay agent``) claims a subnet of the cluster
CIDR in etcd, makes the node bridge and the VXLAN device, and writes the node state
file ``<runDir>/<network>.json``. This plugin reads that file, never etcd, and
delegates to the in-process ``bridge`` plugin (and through it ``host-local``) with
a configuration it builds from the state, as flannel's CNI plugin does::

    {"type": "bridge", "bridge": <state bridge>, "isGateway": true, "mtu": <state mtu>,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": <node subnet>,
              "gateway": <its first address>}]], "routes": [{"dst": <cluster CIDR>}]}}

Keys: ``runDir`` (where the agent writes the state, default ``/run/cnilib/overlay``),
``dataDir`` (host-local's, passed on), ``mtu`` (overrides the state's).
``runtimeConfig``, ``args``, ``dns``, ``prevResult`` and the GC keys are passed on too.

``ipMasq: true`` is refused (code 7) by ADD, CHECK and STATUS: bridge's rule
masquerades everything leaving the node's subnet, traffic to the other nodes'
containers included; the agent's ``--ip-masq`` masquerades only what leaves the
cluster CIDR (as flannel's plugin passes ``ipMasq: false`` and flanneld masquerades).
DEL and GC still pass it (and ``ipMasqBackend``) on to bridge, so that they remove
the rules of attachments made when it was accepted.

- ADD without a state file is code 11 (the agent has not joined yet), before
  anything is made. The delegated configuration is saved per attachment,
  ``<runDir>/<network>/<containerID>:<ifname>.json`` (atomically), before bridge
  runs, and dropped again if bridge's ADD fails (bridge rolls itself back).
- DEL uses the saved configuration, else the state file's, else succeeds doing
  nothing; the saved file is dropped once bridge's DEL succeeded. DEL is idempotent.
- CHECK runs bridge's CHECK with the saved configuration (code 999 without one).
- STATUS is code 50 without a state file, else bridge's STATUS (host-local's).
- GC runs bridge's GC with the state's configuration (without a state: nothing
  to ask bridge), and drops the saved configurations of attachments that are
  not in ``cni.dev/valid-attachments``.

Nothing here imports the etcd client: the plugin runs as an executable too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import attrs

from cnilib._json import JSONObject, JSONValue
from cnilib.errors import ErrorCode, PluginError, PluginNotAvailableError, TryAgainLaterError
from cnilib.plugins._base import BasePlugin, PluginRequest
from cnilib.plugins._hostside import fail
from cnilib.plugins._statefile import drop_state, read_state, write_state
from cnilib.plugins.main._overlay_state import (
    DEFAULT_RUN_DIR,
    NodeState,
    read_node_state,
    state_path,
)
from cnilib.plugins.main.bridge import Bridge
from cnilib.results import Result

__all__ = ["Overlay", "OverlayConf", "delegated_config"]

_WHAT = "overlay delegated configuration"

_PASSED_ON = (
    "runtimeConfig",
    "args",
    "dns",
    "prevResult",
    "cni.dev/valid-attachments",
    "cni.dev/attachments",
)
"""Keys of the request that reach bridge as they are (per call, never saved)."""


@attrs.frozen(kw_only=True)
class OverlayConf:
    """The overlay keys of a network configuration."""

    name: str
    run_dir: Path
    data_dir: str = ""
    """host-local's ``dataDir``; ``""``: host-local's default."""
    mtu: int = 0
    """``0``: the state's (the VXLAN device's) MTU."""
    ip_masq: bool = False
    """Refused by ADD, CHECK and STATUS (:meth:`refuse_ip_masq`); DEL and GC pass it on."""
    ip_masq_backend: str = ""

    @classmethod
    def load(cls, req: PluginRequest) -> OverlayConf:
        """Read ``req.config``; a wrong key is code 7 naming it."""
        run_dir = req.get_str("runDir") or DEFAULT_RUN_DIR
        mtu = req.get_int("mtu")
        if mtu != 0 and not 68 <= mtu <= 65535:  # 0: the state's
            raise PluginError(
                f'invalid network configuration: "mtu" must be between 68 and 65535, got {mtu}',
                code=ErrorCode.INVALID_NETWORK_CONFIG,
            )
        return cls(
            name=req.name,
            run_dir=Path(run_dir),
            data_dir=req.get_str("dataDir"),
            mtu=mtu,
            ip_masq=req.get_bool("ipMasq"),
            ip_masq_backend=req.get_str("ipMasqBackend"),
        )

    def refuse_ip_masq(self) -> None:
        """Code 7 if ``ipMasq`` is true: bridge would masquerade traffic to other nodes too."""
        if self.ip_masq:
            raise PluginError(
                f'invalid network configuration: overlay network "{self.name}": "ipMasq" is'
                " not supported, as bridge's masquerading would also rewrite the source of"
                " traffic to the other nodes' containers; start the node agent with"
                " --ip-masq instead (it masquerades only what leaves the cluster CIDR)",
                code=ErrorCode.INVALID_NETWORK_CONFIG,
            )

    @property
    def state_file(self) -> Path:
        """``<runDir>/<network>.json``, written by the node agent."""
        return state_path(self.run_dir, self.name)

    def saved_dir(self) -> Path:
        """``<runDir>/<network>/``: the saved per-attachment configurations."""
        return self.run_dir / self.name

    def saved_file(self, container_id: str, ifname: str) -> Path:
        """``<runDir>/<network>/<containerID>:<ifname>.json``; refused if that would
        leave the directory (skel validates both names; a caller in process may not)."""
        name = f"{container_id}:{ifname}.json"
        if "/" in name or name.startswith(".") or "\0" in name:
            raise fail(f"invalid container ID or interface name for a state file: {name!r}")
        return self.saved_dir() / name


def delegated_config(req: PluginRequest, conf: OverlayConf, state: NodeState) -> JSONObject:
    """The bridge configuration of the node's share (without the per-call keys)."""
    ipam: JSONObject = {
        "type": "host-local",
        "ranges": [[{"subnet": str(state.subnet), "gateway": str(state.gateway)}]],
        "routes": [{"dst": str(state.cluster)}],
    }
    if conf.data_dir:
        ipam["dataDir"] = conf.data_dir
    config: JSONObject = {
        "cniVersion": req.cni_version,
        "name": req.name,
        "type": "bridge",
        "bridge": state.bridge,
        "isGateway": True,
        "mtu": conf.mtu or state.mtu,
        "ipam": ipam,
    }
    if conf.ip_masq:
        config["ipMasq"] = True
        if conf.ip_masq_backend:
            config["ipMasqBackend"] = conf.ip_masq_backend
    return config


def _with_call_keys(req: PluginRequest, base: Mapping[str, JSONValue]) -> JSONObject:
    config = dict(base)
    config["cniVersion"] = req.cni_version
    for key in _PASSED_ON:
        if key in req.config:
            config[key] = req.config[key]
    return config


def _as_bridge(req: PluginRequest, base: Mapping[str, JSONValue]) -> PluginRequest:
    """``req`` for bridge: the delegated configuration as its config and its stdin."""
    config = _with_call_keys(req, base)
    return attrs.evolve(req, config=config, stdin=json.dumps(config).encode())


def _not_joined(conf: OverlayConf) -> str:
    return (
        f'overlay network "{conf.name}": the node agent has not joined yet (no {conf.state_file})'
    )


def _read_saved(path: Path) -> JSONObject | None:
    text = read_state(path, what=_WHAT)
    if text is None:
        return None
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise fail(f"failed to read {_WHAT} from {path}: {exc}") from exc
    if not isinstance(config, dict) or config.get("type") != "bridge":
        raise fail(f"failed to read {_WHAT} from {path}: not a bridge configuration")
    return config


class Overlay(BasePlugin):
    """Attach containers to the node bridge of the overlay, through ``bridge``."""

    type = "overlay"
    supported_versions = Bridge.supported_versions

    def __init__(self) -> None:
        self._bridge = Bridge()

    def _state(self, conf: OverlayConf) -> NodeState | None:
        return read_node_state(conf.state_file)

    def add(self, req: PluginRequest) -> Result:
        """Bridge's ADD on the node's subnet; code 11 before the agent has joined."""
        conf = OverlayConf.load(req)
        conf.refuse_ip_masq()
        state = self._state(conf)
        if state is None:
            raise TryAgainLaterError(_not_joined(conf))
        base = delegated_config(req, conf, state)
        saved = conf.saved_file(req.container_id, req.ifname)
        # Saved first: a DEL after a crash half-way through ADD still finds it.
        write_state(saved, json.dumps(base, indent=2) + "\n", what=_WHAT)
        try:
            return self._bridge.add(_as_bridge(req, base))
        except BaseException:
            drop_state(saved)  # bridge rolled its own work back
            raise

    def delete(self, req: PluginRequest) -> None:
        """Bridge's DEL with the configuration ADD used; nothing known: success."""
        conf = OverlayConf.load(req)
        saved = conf.saved_file(req.container_id, req.ifname)
        base = _read_saved(saved)
        if base is None:
            state = self._state(conf)
            if state is None:
                return  # never added through this node's state: nothing to undo
            base = delegated_config(req, conf, state)
        self._bridge.delete(_as_bridge(req, base))
        drop_state(saved)

    def check(self, req: PluginRequest) -> None:
        """Bridge's CHECK with the saved configuration."""
        conf = OverlayConf.load(req)
        conf.refuse_ip_masq()
        saved = conf.saved_file(req.container_id, req.ifname)
        base = _read_saved(saved)
        if base is None:
            raise fail(
                f'overlay network "{conf.name}": no saved configuration for container '
                f'"{req.container_id}" interface "{req.ifname}" ({saved})'
            )
        self._bridge.check(_as_bridge(req, base))

    def status(self, req: PluginRequest) -> None:
        """Code 50 until the agent has joined; then host-local's STATUS."""
        conf = OverlayConf.load(req)
        conf.refuse_ip_masq()
        state = self._state(conf)
        if state is None:
            raise PluginNotAvailableError(_not_joined(conf))
        self._bridge.status(_as_bridge(req, delegated_config(req, conf, state)))

    def gc(self, req: PluginRequest) -> None:
        """Bridge's GC (host-local's and the masquerading rules), then the saved
        configurations of attachments no longer valid."""
        conf = OverlayConf.load(req)
        valid = req.valid_attachments()
        state = self._state(conf)
        if state is not None:
            self._bridge.gc(_as_bridge(req, delegated_config(req, conf, state)))
        try:
            saved = sorted(conf.saved_dir().glob("*:*.json"))
        except OSError:
            return
        for path in saved:
            container_id, _, ifname = path.name.removesuffix(".json").rpartition(":")
            if (container_id, ifname) not in valid:
                drop_state(path)
