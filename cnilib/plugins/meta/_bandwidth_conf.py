"""The ``bandwidth`` plugin's configuration: the four limits as Go decodes them (top-level
keys or the ``bandwidth`` capability), Go's validation, the IFB's name, and the TBF
parameters Go computes from a rate and a burst.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

import attrs

from cnilib._json import JSONValue
from cnilib.errors import ErrorCode, PluginError
from cnilib.plugins._base import PluginRequest
from cnilib.plugins._hostside import fail

__all__ = [
    "KEYS",
    "LATENCY_MS",
    "BandwidthConf",
    "BandwidthEntry",
    "Tbf",
    "ifb_name",
    "tbf_params",
]

KEYS = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")
"""The limits, in bits per second (rates) and bits (bursts)."""
LATENCY_MS = 25
"""Go's fixed TBF latency: how long a packet may wait, which sizes the queue."""
_MAX_IFB_NAME = 15
_IFB_PREFIX = "bwp"
_U64_MAX = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1
_TIME_UNITS_PER_SEC = 1_000_000


def _parse_error(message: str) -> PluginError:
    return PluginError(f"failed to parse network configuration: {message}", code=ErrorCode.INTERNAL)


def _json_kind(value: JSONValue) -> str:
    """How Go's JSON decoder names a value of the wrong type."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _uint64(value: JSONValue, field: str) -> int:
    """A JSON value as Go's ``uint64`` (null: 0); Go's error naming ``field`` if not one."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _U64_MAX:
        return value
    # Go refuses every non-integer text for a uint64, 1e3 and 1000.0 included.
    raise _parse_error(
        f"json: cannot unmarshal {_json_kind(value)} into Go struct field {field} of type uint64"
    )


def _go_fields(obj: Mapping[str, JSONValue], names: tuple[str, ...]) -> list[tuple[str, JSONValue]]:
    """The keys of ``obj`` that Go's decoder gives to one of ``names`` (exactly or
    case-insensitively), as ``(name, value)`` in the document's order: a later key
    overrides an earlier one, and the first wrong value is the one Go reports."""
    folded = {name.casefold(): name for name in names}
    found = []
    for key, value in obj.items():
        name = key if key in names else folded.get(key.casefold())
        if name is not None:
            found.append((name, value))
    return found


@attrs.frozen
class BandwidthEntry:
    """One set of limits (Go ``BandwidthEntry``); 0 means no limit."""

    ingress_rate: int = 0
    ingress_burst: int = 0
    egress_rate: int = 0
    egress_burst: int = 0

    @classmethod
    def decode(cls, obj: Mapping[str, JSONValue], struct: str) -> BandwidthEntry:
        """The limits in ``obj`` (``struct`` prefixes the field in Go's errors)."""
        values = dict.fromkeys(KEYS, 0)
        for key, value in _go_fields(obj, KEYS):
            values[key] = _uint64(value, f"{struct}{key}")
        return cls(*(values[key] for key in KEYS))

    @property
    def is_zero(self) -> bool:
        """No limit at all (ADD passes ``prevResult`` on)."""
        return not (self.ingress_rate or self.ingress_burst or self.egress_rate
                    or self.egress_burst)  # fmt: skip

    @property
    def ingress(self) -> bool:
        """Traffic to the container is limited."""
        return self.ingress_rate > 0 and self.ingress_burst > 0

    @property
    def egress(self) -> bool:
        """Traffic from the container is limited."""
        return self.egress_rate > 0 and self.egress_burst > 0


def _validate(rate: int, burst: int) -> None:
    """Go's ``validateRateAndBurst``."""
    if burst == 0 and rate != 0:
        raise fail("if rate is set, burst must also be set")
    if rate == 0 and burst != 0:
        raise fail("if burst is set, rate must also be set")
    if burst // 8 >= _U32_MAX:
        raise fail("burst cannot be more than 4GB")


@attrs.frozen
class BandwidthConf:
    """The limits that apply (None: none configured), after Go's precedence."""

    bandwidth: BandwidthEntry | None

    @classmethod
    def load(cls, req: PluginRequest) -> BandwidthConf:
        """Go's ``parseConfig``: decode, pick the limits, validate them, then check
        that a ``prevResult`` converts.

        Any of the four keys at the top level (even ``null``) makes the top-level
        limits the ones that apply, and ``runtimeConfig.bandwidth`` is ignored, as
        Go's embedded ``*BandwidthEntry`` is allocated by the first of its keys.
        """
        config = req.config
        top: dict[str, int] | None = None
        from_runtime: BandwidthEntry | None = None
        for name, value in _go_fields(config, (*KEYS, "runtimeConfig")):
            if name != "runtimeConfig":
                top = top if top is not None else {}
                top[name] = _uint64(value, f"PluginConf.{name}")
            elif value is not None:
                from_runtime = _runtime_bandwidth(value, from_runtime)
        bandwidth = from_runtime
        if top is not None:
            bandwidth = BandwidthEntry(*(top.get(key, 0) for key in KEYS))
        if bandwidth is not None:
            _validate(bandwidth.ingress_rate, bandwidth.ingress_burst)
            _validate(bandwidth.egress_rate, bandwidth.egress_burst)
        if config.get("prevResult") is not None:
            req.prev_result  # noqa: B018 - raises Go's error for one that does not convert
        return cls(bandwidth)


def _runtime_bandwidth(runtime: JSONValue, before: BandwidthEntry | None) -> BandwidthEntry | None:
    """``runtimeConfig``'s ``bandwidth`` (``before``: what an earlier ``runtimeConfig``
    key gave, which Go's decoder keeps unless this one sets it)."""
    if not isinstance(runtime, dict):
        raise _parse_error(
            f"json: cannot unmarshal {_json_kind(runtime).split()[0]} into Go struct "
            "field PluginConf.runtimeConfig of type struct { "
            "Bandwidth *main.BandwidthEntry "
            '"json:\\"bandwidth,omitempty\\"" }'
        )
    entry = before
    for _, value in _go_fields(runtime, ("bandwidth",)):
        if value is None:
            entry = None
            continue
        if not isinstance(value, dict):
            raise _parse_error(
                f"json: cannot unmarshal {_json_kind(value).split()[0]} into Go struct "
                "field .runtimeConfig.bandwidth of type main.BandwidthEntry"
            )
        entry = BandwidthEntry.decode(value, "BandwidthEntry.runtimeConfig.bandwidth.")
    return entry


def ifb_name(network: str, container_id: str) -> str:
    """Go's ``getIfbDeviceName``: ``bwp`` + sha512(network + containerID) in hex, 15 chars,
    so that Go's DEL finds the IFB of cnilib's ADD and the other way round."""
    digest = hashlib.sha512((network + container_id).encode()).hexdigest()
    return (_IFB_PREFIX + digest)[:_MAX_IFB_NAME]


def _go_uint32(value: float) -> int:
    """Go's ``uint32(f)`` on amd64: truncated through int64, so out of range is 0 or wraps."""
    if not math.isfinite(value) or abs(value) >= 2.0**63:
        return 0
    return int(value) & _U32_MAX


@attrs.frozen
class Tbf:
    """What a TBF qdisc is given: bytes per second, bytes, scheduler ticks."""

    rate: int
    limit: int
    buffer: int


def tbf_params(rate_bits: int, burst_bits: int, tick_in_usec: float) -> Tbf:
    """Go's ``createTBF`` arithmetic (float64 and uint32 as Go's): the rate in bytes, the
    bucket (``buffer``) as the time the burst takes at that rate in ticks, and the queue
    limit as what the rate sends in 25 ms plus the burst."""
    rate = rate_bits // 8
    burst = (burst_bits // 8) & _U32_MAX
    seconds = float(burst) * float(_TIME_UNITS_PER_SEC) / float(rate) if rate else math.inf
    buffer = _go_uint32(float(_go_uint32(seconds)) * tick_in_usec)
    latency = float(_TIME_UNITS_PER_SEC) * (LATENCY_MS / 1000.0)
    limit = (_go_uint32(float(rate) * latency / float(_TIME_UNITS_PER_SEC)) + burst) & _U32_MAX
    return Tbf(rate=rate, limit=limit, buffer=buffer)
