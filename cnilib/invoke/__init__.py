"""The executor seam: how a plugin call is described and carried out."""

from cnilib.invoke._chain import ChainExecutor
from cnilib.invoke._decode import decode_failure, decode_version_info
from cnilib.invoke._invocation import Command, Executor, Invocation, PluginInfo, format_cni_args
from cnilib.invoke._subprocess import DEFAULT_TIMEOUT, SubprocessExecutor, find_in_path

__all__ = [
    "DEFAULT_TIMEOUT",
    "ChainExecutor",
    "Command",
    "Executor",
    "Invocation",
    "PluginInfo",
    "SubprocessExecutor",
    "decode_failure",
    "decode_version_info",
    "find_in_path",
    "format_cni_args",
]
