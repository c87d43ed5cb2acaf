"""The ``dummy`` plugin: a dummy interface in the container
(Go ``plugins/main/dummy``, latest release; Debian's 1.1.1 has none).

Keys: ``ipam`` (required). No other key: a dummy has no master, mode or
MTU setting, and ``dns`` is not read (the result carries IPAM's, as Go's).

- ADD creates the dummy in the container and applies IPAM's addresses and
  routes. Result: ``interfaces = [the dummy (sandbox)]``, every
  ``ips[].interface = 0``, IPAM's DNS. A failed ADD deletes the link and
  releases IPAM's address.
- DEL: IPAM DEL, then the link; an empty or missing ``CNI_NETNS`` and a
  missing link are success.
- CHECK: IPAM CHECK; the interface of ``prevResult`` is a dummy in
  ``CNI_NETNS``, up, with the result's MAC and addresses (no route check,
  as Go's).
- STATUS and GC: IPAM's (Go has no GC: a no-op).

A kernel built without dummy links fails ADD with ``failed to create
dummy: ...`` naming ``CONFIG_DUMMY``.

Deliberate differences from Go's dummy:

- A name taken in the container reads ``failed to rename dummy to "eth0":
  file exists``, as the other interface plugins say it (Go's dummy:
  ``failed to create dummy: file exists``).
- DEL runs IPAM DEL only when ``ipam`` is configured, so it succeeds
  without (Go fails: ``no plugin name provided``); STATUS without ``ipam``
  says ``dummy interface requires an IPAM configuration`` (Go: ``no plugin
  name provided``).
- The kernel's lack of dummy links reads ``failed to create dummy: ...
  built without CONFIG_DUMMY (operation not supported)`` (Go: ``failed to
  create dummy: operation not supported``); a namespace that cannot be
  opened is named (Go prints ``%!q(<nil>)``), and a missing one reads
  ``failed to open netns "<path>": netns: open <path>: No such file or
  directory`` (Go: ``... failed to Statfs ...``).
- CHECK texts are the interface plugins' shared ones, lower-case as Go's
  latest macvlan (Go's dummy: ``dummy: Required prevResult missing``,
  ``Error: Container interface eth0 not of type dummy``); ``Interface eth0
  is down`` is Go's. A 1.x result omits an empty ``dns`` (see
  :mod:`cnilib.plugins.main.loopback`); a wrongly typed ``ipam`` reads
  ``failed to load netconf: json: ...`` as in the other plugins (Go's
  dummy: ``failed to parse network config: ...``).
"""

from __future__ import annotations

from cnilib.netlink import Link
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._hostside import fail
from cnilib.plugins._linkcheck import check_interface
from cnilib.plugins._linkplugin import (
    InterfacePlugin,
    configure_container,
    container_netns,
    host_netns,
    interface_result,
    ipam_lease,
)
from cnilib.plugins._sublink import new_link
from cnilib.results import Result

__all__ = ["Dummy"]


def _up(link: Link) -> None:
    if not link.up:
        raise fail(f"Interface {link.name} is down")


class Dummy(InterfacePlugin):
    """Go's dummy plugin, in process."""

    type = "dummy"
    requires_ipam = True

    def add(self, req: PluginRequest) -> Result:
        """The dummy in the container, then IPAM's addresses."""
        ipam_plugin = self.ipam_of(req)
        with (
            container_netns(req) as ctr,
            host_netns(req) as host,
            new_link(ctr, req.ifname, "dummy", made_in=host),
            ipam_lease(req, ipam_plugin) as ipam,
        ):
            link = configure_container(ctr, req.ifname, ipam)
        return interface_result(req, link, ipam, None)

    def check(self, req: PluginRequest) -> None:
        """IPAM CHECK, then the dummy against ``prevResult``: up, its MAC and addresses."""
        ipam = self.ipam_of(req)
        check_interface(req, ipam, kind="dummy", validate=_up, routes=False)
