"""CNI ADD results of every spec version: decoding, encoding, conversion.

Go ``pkg/types/{020,040,100}``, ``pkg/types/create`` and the result half of
``pkg/invoke``, with libcni's exact semantics::

    result = decode_result(stdout, default_version=netconf.cni_version)
    cached = result.to_json()                 # as libcni writes it
    older = result.convert_to("0.4.0")        # Go GetAsVersion
    current = result.as_v1()                  # typed ResultV100: .ips, .interfaces
    view = interfaces_view(result)            # go-cni's per-interface view

:class:`Interface` and :class:`IPConfig` are the 1.x types; the 0.3/0.4 and
0.1/0.2 ones live in :mod:`cnilib.results.v040` and :mod:`cnilib.results.v020`.
"""

from cnilib.results import v020 as v020, v040 as v040, v100 as v100
from cnilib.results._common import DNS as DNS, Result as Result, Route as Route
from cnilib.results._convert import convert_result as convert_result
from cnilib.results._decode import decode_result as decode_result
from cnilib.results._ip import IPAddress as IPAddress, IPInterface as IPInterface
from cnilib.results._view import (
    InterfaceInfo as InterfaceInfo,
    InterfacesView as InterfacesView,
    IPInfo as IPInfo,
    NetworkResult as NetworkResult,
    as_v1 as as_v1,
    interfaces_view as interfaces_view,
)
from cnilib.results.v020 import ResultV020 as ResultV020
from cnilib.results.v040 import ResultV040 as ResultV040
from cnilib.results.v100 import (
    Interface as Interface,
    IPConfig as IPConfig,
    ResultV100 as ResultV100,
)

__all__ = [
    "DNS",
    "IPAddress",
    "IPConfig",
    "IPInfo",
    "IPInterface",
    "Interface",
    "InterfaceInfo",
    "InterfacesView",
    "NetworkResult",
    "Result",
    "ResultV020",
    "ResultV040",
    "ResultV100",
    "Route",
    "as_v1",
    "convert_result",
    "decode_result",
    "interfaces_view",
    "v020",
    "v040",
    "v100",
]
