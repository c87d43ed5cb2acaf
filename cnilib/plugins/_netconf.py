"""Reading a main plugin's network configuration as Go's ``json.Unmarshal`` into its ``NetConf``.

Typed getters that fail with Go's wording (``failed to load netconf: json:
cannot unmarshal string into Go struct field NetConf.mtu of type int``);
``null`` and absent keys give the zero value, as in Go. Also the shared
pieces every veth plugin reads: the IPAM type, a ``dns`` override, a MAC
address (``CNI_ARGS MAC=``, ``args.cni.mac``, ``runtimeConfig.mac``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from cnilib._json import JSONValue
from cnilib.errors import ErrorCode, PluginError
from cnilib.plugins._base import PluginRequest
from cnilib.results import DNS

__all__ = [
    "conf_bool",
    "conf_int",
    "conf_str",
    "dns_override",
    "ipam_type",
    "load_error",
    "mac_from_request",
    "parse_mac",
    "requested_mac_address",
]


def load_error(message: str) -> PluginError:
    """``failed to load netconf: <message>`` (code 999, as Go's skel reports it)."""
    return PluginError(f"failed to load netconf: {message}", code=ErrorCode.INTERNAL)


def _json_type(value: JSONValue) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {value}" if isinstance(value, float) else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _mismatch(field: str, value: JSONValue, go_type: str, struct: str) -> PluginError:
    return load_error(
        f"json: cannot unmarshal {_json_type(value)} into Go struct field "
        f"{struct}.{field} of type {go_type}"
    )


def conf_bool(conf: Mapping[str, JSONValue], key: str, struct: str = "NetConf") -> bool:
    """``conf[key]`` as a Go ``bool`` (absent or null: False)."""
    value = conf.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _mismatch(key, value, "bool", struct)
    return value


def conf_int(conf: Mapping[str, JSONValue], key: str, struct: str = "NetConf") -> int:
    """``conf[key]`` as a Go ``int`` (absent or null: 0)."""
    value = conf.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _mismatch(key, value, "int", struct)
    if isinstance(value, float) and not value.is_integer():
        raise _mismatch(key, value, "int", struct)
    return int(value)


def conf_str(conf: Mapping[str, JSONValue], key: str, struct: str = "NetConf") -> str:
    """``conf[key]`` as a Go ``string`` (absent or null: "")."""
    value = conf.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _mismatch(key, value, "string", struct)
    return value


def _object(conf: Mapping[str, JSONValue], key: str, struct: str) -> Mapping[str, JSONValue]:
    value = conf.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _mismatch(key, value, struct, "NetConf")
    return value


def ipam_type(conf: Mapping[str, JSONValue]) -> str:
    """``ipam.type``; ``""`` means no IPAM (a layer-2 attachment)."""
    return conf_str(_object(conf, "ipam", "types.IPAM"), "type", "IPAM")


def _strings(conf: Mapping[str, JSONValue], key: str) -> tuple[str, ...] | None:
    value = conf.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _mismatch(key, value, "[]string", "DNS")
    return tuple(str(v) for v in value)


def dns_override(conf: Mapping[str, JSONValue]) -> DNS | None:
    """The config's ``dns`` when it sets anything (Go ``dnsConfSet``), else None.

    As in Go, a present but empty list counts as set (it clears IPAM's DNS).
    """
    dns = _object(conf, "dns", "types.DNS")
    nameservers, search, options = (_strings(dns, k) for k in ("nameservers", "search", "options"))
    domain = conf_str(dns, "domain", "DNS")
    if nameservers is None and search is None and options is None and not domain:
        return None
    return DNS(nameservers=nameservers or (), domain=domain, search=search or (),
               options=options or ())  # fmt: skip


_MAC = re.compile(r"[0-9a-fA-F]{2}([:-])(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}")
_MAC_DOTTED = re.compile(r"[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}")


def parse_mac(text: str) -> str:
    """A 6-byte MAC in any of Go ``net.ParseMAC``'s forms, as ``aa:bb:cc:dd:ee:ff``."""
    if _MAC.fullmatch(text):
        digits = re.sub(r"[:-]", "", text)
    elif _MAC_DOTTED.fullmatch(text):
        digits = text.replace(".", "")
    else:
        raise ValueError(f"address {text}: invalid MAC address")
    digits = digits.lower()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def requested_mac_address(text: str) -> str:
    """A MAC a configuration asks for, as :func:`parse_mac` gives it; Go's error when it
    is none (``invalid args zz for MAC addr: address zz: invalid MAC address``)."""
    try:
        return parse_mac(text)
    except ValueError as exc:
        raise PluginError(
            f"invalid args {text} for MAC addr: {exc}", code=ErrorCode.INTERNAL
        ) from exc


def _truthy(pair: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true"):
        return True
    if lowered in ("0", "false"):
        return False
    raise PluginError(
        f'ARGS: error parsing value of pair "{pair}": boolean unmarshal error: '
        f"invalid input {lowered}",
        code=ErrorCode.INTERNAL,
    )


def mac_from_request(req: PluginRequest, conf: Mapping[str, JSONValue]) -> str:
    """The requested container MAC: ``CNI_ARGS MAC=``, then ``args.cni.mac``, then
    ``runtimeConfig.mac`` (the last one set wins); ``""`` for none.

    ``CNI_ARGS`` are read as Go's ``types.LoadArgs`` into ``{IgnoreUnknown, MAC}``:
    any other key is an error unless ``IgnoreUnknown`` is true.
    """
    mac = ""
    unknown: list[str] = []
    ignore_unknown = False
    for key, value in req.args:
        pair = f"{key}={value}"
        if "=" in value:
            raise PluginError(f'ARGS: invalid pair "{pair}"', code=ErrorCode.INTERNAL)
        if key == "MAC":
            mac = value or mac
        elif key == "IgnoreUnknown":
            ignore_unknown = _truthy(pair, value)
        else:
            unknown.append(pair)
    if unknown and not ignore_unknown:
        listed = " ".join(f'"{pair}"' for pair in unknown)
        raise PluginError(f"ARGS: unknown args [{listed}]", code=ErrorCode.INTERNAL)
    cni_args = _object(_object(conf, "args", "struct"), "cni", "main.BridgeArgs")
    mac = conf_str(cni_args, "mac", "BridgeArgs") or mac
    return conf_str(req.runtime_config, "mac", "struct") or mac
