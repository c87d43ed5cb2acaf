"""The runtime API: attach, check and detach containers through plugin chains.

``CNI`` (blocking) and ``AsyncCNI`` (asyncio) drive the same sans-I/O flows.
"""

from cnilib.runtime._async import AsyncCNI, run_flow_async
from cnilib.runtime._base import Attached
from cnilib.runtime._conf import GCAttachment, RuntimeConf, parse_cni_args
from cnilib.runtime._gc import GCReport
from cnilib.runtime._sync import CNI, run_flow

__all__ = [
    "CNI",
    "AsyncCNI",
    "Attached",
    "GCAttachment",
    "GCReport",
    "RuntimeConf",
    "parse_cni_args",
    "run_flow",
    "run_flow_async",
]
