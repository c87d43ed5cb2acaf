"""The runtime API: attach, check and detach containers through plugin chains."""

from cnilib.runtime._conf import GCAttachment, RuntimeConf, parse_cni_args
from cnilib.runtime._sync import CNI, run_flow

__all__ = ["CNI", "GCAttachment", "RuntimeConf", "parse_cni_args", "run_flow"]
