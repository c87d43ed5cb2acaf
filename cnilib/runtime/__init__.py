"""The runtime API: attach, check and detach containers through plugin chains.

``CNI`` (blocking) and ``AsyncCNI`` (asyncio) drive the same sans-I/O flows.
"""

from typing import TYPE_CHECKING

from cnilib._lazy import lazy_exports
from cnilib.runtime._base import Attached
from cnilib.runtime._conf import GCAttachment, RuntimeConf, parse_cni_args
from cnilib.runtime._gc import GCReport
from cnilib.runtime._ready import NetworkStatus, PluginCheck, StatusReport
from cnilib.runtime._sync import CNI, run_flow

if TYPE_CHECKING:
    from cnilib.runtime._async import AsyncCNI as AsyncCNI, run_flow_async as run_flow_async


# AsyncCNI pulls in asyncio (and ssl with it): only for those who ask.
__getattr__, __dir__ = lazy_exports(
    __name__, {"AsyncCNI": "cnilib.runtime._async", "run_flow_async": "cnilib.runtime._async"}
)


__all__ = [
    "CNI",
    "AsyncCNI",
    "Attached",
    "GCAttachment",
    "GCReport",
    "NetworkStatus",
    "PluginCheck",
    "RuntimeConf",
    "StatusReport",
    "parse_cni_args",
    "run_flow",
    "run_flow_async",
]
