"""The ``tuning`` plugin: network sysctls and interface settings of the container
(Go ``plugins/meta/tuning``, latest release).

A chained plugin: it needs ``prevResult`` and creates nothing. Keys:
``sysctl`` (map of network sysctl → value; ``.`` separates the path,
``IFNAME`` is replaced by ``CNI_IFNAME``), ``mac`` (also ``CNI_ARGS MAC=``
and ``runtimeConfig.mac``, which win), ``mtu``, ``promisc``, ``allmulti``,
``txQLen``, ``dataDir`` (default ``/run/cni/tuning``), and
``args.cni.{sysctl,mac,promisc,mtu,allmulti,txQLen}``, which win over all
of those (``args.cni.sysctl`` is merged into ``sysctl``). If
``/etc/cni/tuning/allowlist.conf`` exists, each ``sysctl`` key must match
one of its lines (regular expressions, searched, as Go's
``regexp.MatchString``).

- ADD: in ``CNI_NETNS``, writes each sysctl, saves the original MAC /
  promisc / MTU / allmulti / txQLen of ``CNI_IFNAME`` (those the config
  changes) to ``<dataDir>/<containerID>_<ifname>.json`` in Go's format, so
  that either implementation's DEL restores the other's ADD, then sets the
  new values. The result is ``prevResult`` (as the config's version), with
  the new MAC on the interface named ``CNI_IFNAME``.
- DEL: restores what the file saved and deletes it; always succeeds once
  the configuration parses (a missing namespace, link or file is fine).
- CHECK: each sysctl, the MAC, promiscuous mode (it must be off when
  ``promisc`` is not set), MTU, allmulti and txQLen have the configured
  values.
- STATUS and GC: no-op success; every spec version.

The latest release is followed where it differs from Debian's 1.1.1:
``IFNAME`` in sysctl keys replaced after the dots (so an interface name
with a dot stays whole) and in CHECK too (1.1.1 reads a directory called
``IFNAME`` there), the allowlist, refusing duplicated sysctl keys
(``duplicated sysctl keys are not allowed``), refusing an ``CNI_IFNAME``
with ``/``, ``txQLen``, no gratuitous ARP after a MAC change, spec 1.1.0,
and ``invalid net sysctl key`` naming the key with ``/`` separators.
Deliberately different from both:

- A key with a ``..`` path component (``net/../../kernel/x``) is refused
  before anything is written: ``invalid net sysctl key: "net/../../kernel/x":
  a ".." component would leave /proc/sys/net/`` (Go reads every dot as a
  separator, so it looks for ``/proc/sys/net/kernel/x`` and fails to open
  it). Every key is checked before the first write (Go writes them in
  turn and stops at the bad one), as is the MAC address.
- The allmulti CHECK text prints the configured value (Go prints a pointer).
- DEL deletes the file also when the link, the namespace or the file's JSON
  is gone (Go keeps it, and nothing would read it again).
- ``args.cni.sysctl`` without a top-level ``sysctl`` works (Go panics).
- CHECK compares MACs case-insensitively (Go compares the config's text).
- A 1.x result with an empty ``dns`` omits it (Go prints ``"dns": {}``), as
  every cnilib plugin's.
- The txQLen texts (``Error: Tuning configured Transmit Queue Length of
  ...``, ``failed to restore transmit queue length``) follow Go's pattern
  for the MTU ones.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import attrs

from cnilib.errors import CNIError
from cnilib.netlink import (
    IFF_ALLMULTI,
    Link,
    NetNSError,
    SysctlError,
    find_link,
    open_netns,
    read_sysctl,
    run_in_netns,
    set_link_allmulti,
    set_link_mac,
    set_link_mtu,
    set_link_promisc,
    set_link_txqlen,
    write_sysctl,
)
from cnilib.plugins._base import BasePlugin, PluginRequest
from cnilib.plugins._hostside import fail, go_strerror
from cnilib.plugins._linkplugin import container_netns
from cnilib.plugins._netconf import (
    parse_mac,
    requested_mac_address,
)
from cnilib.plugins._statefile import drop_state, read_state, write_state
from cnilib.plugins.meta._chain import require_prev_result
from cnilib.plugins.meta._tuning_conf import (
    SYSCTL_ROOT,
    TuningConf,
    backup_path,
    check_allowlist,
    check_duplicated_sysctls,
    sysctl_file,
)
from cnilib.results import Result

__all__ = ["Tuning"]


def _sysctl_error(path: str, exc: SysctlError) -> CNIError:
    """Go's ``os.WriteFile``/``os.ReadFile`` wording for a sysctl file that failed."""
    op = "open" if exc.errno in (errno.ENOENT, errno.EACCES, errno.EPERM) else "write"
    return fail(f"{op} {path}: {go_strerror(exc)}")


def _link(ifname: str) -> Link:
    link = find_link(ifname)
    if link is None:
        raise fail(f'failed to get "{ifname}": Link not found')
    return link


def _originals(conf: TuningConf, link: Link) -> dict[str, Any]:
    """Go's ``configToRestore`` for ``link``: its fields in Go's order, omitempty."""
    saved: dict[str, Any] = {}
    if conf.mac:
        saved["mac"] = link.mac
    if conf.promisc:
        saved["promisc"] = link.promiscuity != 0
    if conf.mtu:
        saved["mtu"] = link.mtu
    if conf.allmulti is not None:
        saved["allmulti"] = bool(link.flags & IFF_ALLMULTI)
    if conf.txqlen is not None:
        saved["txQLen"] = link.txqlen
    return saved


def _apply(conf: TuningConf, files: dict[str, str], ifname: str, backup: Path) -> None:
    """ADD in the container namespace: sysctls, the backup, then the link's settings."""
    for path, value in files.items():
        try:
            write_sysctl(path.removeprefix(SYSCTL_ROOT), value)
        except SysctlError as exc:
            raise _sysctl_error(path, exc) from exc
    if not conf.changes_link:
        return
    link = _link(ifname)
    text = json.dumps(_originals(conf, link), indent=1)  # Go's json.MarshalIndent(v, "", " ")
    write_state(backup, text, what=f"the original settings of {ifname}")
    if conf.mac:
        set_link_mac(link.name, parse_mac(conf.mac))
    if conf.promisc:
        set_link_promisc(link.name, True)
    if conf.mtu:
        set_link_mtu(link.name, conf.mtu)
    if conf.allmulti is not None:
        set_link_allmulti(link.name, conf.allmulti)
    if conf.txqlen is not None:
        set_link_txqlen(link.name, conf.txqlen)


def _go_bool(value: bool) -> str:
    return "true" if value else "false"


def _verify(conf: TuningConf, files: dict[str, str], ifname: str) -> None:
    """CHECK in the container namespace, in Go's order and with Go's texts."""
    for path, want in files.items():
        try:
            have = read_sysctl(path.removeprefix(SYSCTL_ROOT))
        except SysctlError as exc:
            raise fail(f"open {path}: {go_strerror(exc)}") from exc
        if have != want:
            raise fail(
                f"Error: Tuning configured value of {path} is {want}, current value is {have}"
            )
    link = find_link(ifname)
    if link is None:
        raise fail(f"Cannot find container link {ifname}")
    if conf.mac:
        try:
            same = parse_mac(conf.mac) == link.mac
        except ValueError:
            same = False
        if not same:
            raise fail(
                f"Error: Tuning configured Ethernet of {ifname} is {conf.mac}, "
                f"current value is {link.mac}"
            )
    if conf.promisc != (link.promiscuity != 0):
        raise fail(
            f"Error: Tuning link {ifname} configured promisc is {_go_bool(conf.promisc)}, "
            f"current value is {link.promiscuity}"
        )
    if conf.mtu and conf.mtu != link.mtu:
        raise fail(
            f"Error: Tuning configured MTU of {ifname} is {conf.mtu}, current value is {link.mtu}"
        )
    allmulti = bool(link.flags & IFF_ALLMULTI)
    if conf.allmulti is not None and conf.allmulti != allmulti:
        raise fail(
            f"Error: Tuning configured all-multicast mode of {ifname} is "
            f"{_go_bool(conf.allmulti)}, current value is {_go_bool(allmulti)}"
        )
    if conf.txqlen is not None and conf.txqlen != link.txqlen:
        raise fail(
            f"Error: Tuning configured Transmit Queue Length of {ifname} is {conf.txqlen}, "
            f"current value is {link.txqlen}"
        )


def _saved(text: str) -> dict[str, Any] | None:
    """The backup file's ``configToRestore``; None if it is not one (Go: nothing to do)."""
    try:
        saved = json.loads(text)
    except ValueError:
        return None
    if not isinstance(saved, dict):
        return None
    kinds = {"mac": str, "promisc": bool, "mtu": int, "allmulti": bool, "txQLen": int}
    for key, kind in kinds.items():
        value = saved.get(key)
        if value is not None and (type(value) is not kind):
            return None
    return saved


def _restore(saved: dict[str, Any], ifname: str) -> list[str]:
    """DEL in the container namespace: put back what ADD saved (Go's order).

    Returns the errors (empty: all restored); ``["no link"]`` when the link is gone.
    """
    if find_link(ifname) is None:
        return ["no link"]
    errors: list[str] = []
    steps: list[tuple[str, str, Any]] = [
        ("mtu", "MTU", lambda v: set_link_mtu(ifname, v) if v else None),
        ("mac", "MAC address", lambda v: set_link_mac(ifname, parse_mac(v)) if v else None),
        ("promisc", "promiscuous mode", lambda v: set_link_promisc(ifname, v)),
        ("allmulti", "all-multicast mode", lambda v: set_link_allmulti(ifname, v)),
        ("txQLen", "transmit queue length", lambda v: set_link_txqlen(ifname, v)),
    ]
    for key, what, step in steps:
        if saved.get(key) is None:
            continue
        try:
            step(saved[key])
        except (CNIError, ValueError) as exc:
            errors.append(f"failed to restore {what}: {exc}")
    return errors


class Tuning(BasePlugin):
    """Go's tuning plugin, in process."""

    type = "tuning"

    def add(self, req: PluginRequest) -> Result:
        """Sysctls and interface settings in ``CNI_NETNS``; ``prevResult`` passed on."""
        check_duplicated_sysctls(req.stdin)
        conf = TuningConf.load(req)
        check_allowlist(conf.sysctl)
        if "/" in req.ifname:
            raise fail(f"Interface name ({req.ifname}) contains an invalid character /")
        prev = require_prev_result(req, "Required prevResult missing")
        # Everything that can be refused is, before the first change.
        files = {sysctl_file(key, req.ifname): value for key, value in conf.sysctl.items()}
        if conf.mac:
            requested_mac_address(conf.mac)
        backup = backup_path(conf.data_dir, req.container_id, req.ifname)
        with container_netns(req) as ctr:
            run_in_netns(ctr, _apply, conf, files, req.ifname, backup)
        if not conf.mac:
            return prev
        v1 = prev.as_v1()
        interfaces = [
            attrs.evolve(i, mac=conf.mac) if i.name == req.ifname else i for i in v1.interfaces
        ]
        return attrs.evolve(v1, interfaces=interfaces).convert_to(req.cni_version)

    def check(self, req: PluginRequest) -> None:
        """Each configured value is what ``CNI_IFNAME`` in ``CNI_NETNS`` has."""
        check_duplicated_sysctls(req.stdin)
        conf = TuningConf.load(req)
        prev = require_prev_result(req, "Required prevResult missing")
        prev.as_v1()
        files = {sysctl_file(key, req.ifname): value for key, value in conf.sysctl.items()}
        with container_netns(req) as ctr:
            run_in_netns(ctr, _verify, conf, files, req.ifname)

    def delete(self, req: PluginRequest) -> None:
        """Restore the saved settings and drop the file; best effort, as Go."""
        conf = TuningConf.load(req)
        backup = backup_path(conf.data_dir, req.container_id, req.ifname)
        try:
            text = read_state(backup, what="the original settings")
        except CNIError:
            return  # unreadable: Go ignores every DEL error after parsing the config
        if text is None:
            return
        saved = _saved(text)
        if saved is not None and req.netns:
            try:
                with open_netns(req.netns) as ctr:
                    errors = run_in_netns(ctr, _restore, saved, req.ifname)
            except (NetNSError, CNIError):
                errors = []  # the namespace is gone, and the link with it
            if errors and errors != ["no link"]:
                return  # keep the file: a later DEL may still restore (Go)
        drop_state(backup)
