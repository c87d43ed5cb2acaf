"""``dns-search``: a chained CNI plugin that adds DNS settings to the result.

Configuration, after an interface plugin in a conflist::

    {"type": "dns-search", "nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}

ADD returns the previous plugin's result with these nameservers and search
domains added (each once, after the ones already there); CHECK fails if the
cached result lacks them; DEL has nothing to undo.
"""

from __future__ import annotations

import attrs

from cnilib import ErrorCode, PluginError
from cnilib.plugins import BasePlugin, PluginRequest
from cnilib.results import DNS, Result, ResultV100

__all__ = ["DNSSearch"]


def _strings(req: PluginRequest, key: str) -> tuple[str, ...]:
    values = req.get_list(key)
    if not all(isinstance(value, str) for value in values):
        raise PluginError(
            f'invalid network configuration: "{key}" must be a list of strings',
            code=ErrorCode.INVALID_NETWORK_CONFIG,
        )
    return tuple(str(value) for value in values)


def _merged(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    return old + tuple(value for value in new if value not in old)


class DNSSearch(BasePlugin):
    type = "dns-search"
    # The 1.x result has one DNS block; older versions are left out for brevity.
    supported_versions = ("1.0.0", "1.1.0")

    def _previous(self, req: PluginRequest) -> ResultV100:
        previous = req.prev_result
        if previous is None:
            raise PluginError(
                f"{self.type} must be chained after an interface plugin: no prevResult",
                code=ErrorCode.INVALID_NETWORK_CONFIG,
            )
        # prev_result is already converted to the configuration's version, which
        # supported_versions restricts to 1.x.
        assert isinstance(previous, ResultV100)
        return previous

    def add(self, req: PluginRequest) -> Result:
        previous = self._previous(req)
        dns = DNS(
            nameservers=_merged(previous.dns.nameservers, _strings(req, "nameservers")),
            domain=previous.dns.domain,
            search=_merged(previous.dns.search, _strings(req, "search")),
            options=previous.dns.options,
        )
        return attrs.evolve(previous, dns=dns)

    def check(self, req: PluginRequest) -> None:
        dns = self._previous(req).dns
        missing = [
            value
            for value in (*_strings(req, "nameservers"), *_strings(req, "search"))
            if value not in (*dns.nameservers, *dns.search)
        ]
        if missing:
            raise PluginError(
                f"{self.type}: the result lacks {', '.join(missing)}",
                code=ErrorCode.INVALID_NETWORK_CONFIG,
            )
