"""The dhcp plugin's ``ipam`` keys as Go's ``dhcp`` reads them, and the client ID.

Keys (Go ``IPAMConfig`` of ``plugins/ipam/dhcp``; matched case-insensitively,
``null`` as absent, like Go's decoder):

* ``daemonSocketPath``: the lease daemon's socket (default ``/run/cni/dhcp.sock``).
* ``priority``: the metric every returned route gets (0: none; latest Go).
* ``request: [{option, skipDefault}]``: the parameter request list (option
  55). Go's order: the requested codes in the order given, then its
  defaults ``routers`` (3) and ``subnet-mask`` (1) unless *any* entry has
  ``skipDefault: true``; no code twice; an entry without ``option`` only
  counts for ``skipDefault`` (latest Go).
* ``provide: [{option, value, fromArg}]``: options sent to the server: the
  ``value`` (at most 255 bytes) and/or the value of the ``CNI_ARGS`` key
  named by ``fromArg`` (at most 255 bytes; it wins over ``value``).

Option names are Go's six (``dhcp-client-identifier`` 61, ``subnet-mask`` 1,
``routers`` 3, ``host-name`` 12, ``user-class`` 77,
``vendor-class-identifier`` 60), otherwise a decimal number 0-255.

The wire effect follows latest Go, which applies the provided options with
its DHCP library's ``Options.Update`` (one value per code, the last one
wins, sent in code order, pad 0 and end 255 never sent) and then the request
list over them; when that list is empty (``skipDefault`` and nothing
requested) Go sends a provided option 55 as is, or else its library's own
list (1, 3, 15, 6). :attr:`DhcpConf.parameters` is that final list, and
:attr:`DhcpConf.extra_options` never holds 55. A provided option 61 replaces
the generated client ID in Go's DISCOVER/REQUEST (not in its RELEASE):
:meth:`DhcpConf.client_id` returns what to send.

For GC, ``cni.dev/valid-attachments`` is read as well
(:attr:`DhcpConf.valid_attachments`).

Deliberate differences from Go:

* Errors come when the configuration is read (the plugin, before calling the
  daemon; the daemon, for a Go plugin's request), as code 7 with the JSON
  path of the field first and Go's wording after it (Go: code 999,
  ``error calling DHCP.Allocate: Can not parse option ...``). A missing
  ``ipam`` section is an error (Go's plugin and daemon crash on it).
* A ``CNI_ARGS`` value too long for ``fromArg`` is code 4, and the message
  quotes that value (Go's quotes ``value``, usually ``""``).
* An empty ``fromArg`` takes nothing from ``CNI_ARGS`` (Go would take the
  value of a pair with an empty key, ``=x``).
* Option 53 (the message type) cannot be provided: Go would send it in
  place of DISCOVER/REQUEST and never get a lease.
* ``request`` never lists a code twice (Go lists 3 twice for
  ``{"option": "3"}`` plus its default ``routers``: its list compares typed
  codes).

Go's daemon flags (``-broadcast``, ``-timeout``, ...) are not configuration
keys and are not read here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from cnilib._json import JSONSyntaxError, JSONValue, loads_object
from cnilib.errors import ErrorCode, PluginError
from cnilib.plugins._base import PluginRequest
from cnilib.plugins.ipam._decode import JSONMap, member
from cnilib.results._gotext import clean_str, go_quote, json_kind

__all__ = [
    "CLIENT_DEFAULT_PARAMETERS",
    "DEFAULT_PARAMETERS",
    "DEFAULT_SOCKET_PATH",
    "MAX_CLIENT_KEY",
    "MAX_OPTION_VALUE",
    "OPTION_NAMES",
    "DhcpConf",
    "SHUTTING_DOWN",
    "OptionNameError",
    "client_id",
    "lease_key",
    "parse_cni_args",
    "parse_option_name",
]

DEFAULT_SOCKET_PATH = "/run/cni/dhcp.sock"

SHUTTING_DOWN = "the dhcp daemon is shutting down"
"""cnilib's daemon answers the calls in flight when it stops with this error;
cnilib's plugin reports it as code 11 (try again later)."""

OPTION_NAMES: Mapping[str, int] = {
    "dhcp-client-identifier": 61,
    "subnet-mask": 1,
    "routers": 3,
    "host-name": 12,
    "user-class": 77,
    "vendor-class-identifier": 60,
}
"""Go's ``optionNameToID``: the only names it knows (others are numbers)."""

DEFAULT_PARAMETERS: tuple[int, ...] = (3, 1, 6, 15)
"""Appended to ``request`` unless an entry has ``skipDefault``: Go's
``requestOptionsDefault`` (routers, subnet-mask), then the DNS servers and the
domain name, which Go does not ask for. A server sends only the options it
is asked for, and the result's ``dns`` is filled from them (Go's is always
empty)."""

CLIENT_DEFAULT_PARAMETERS: tuple[int, ...] = (1, 3, 15, 6)
"""The list Go's DHCP library (nclient4) sends when Go's own list is empty."""

MAX_OPTION_VALUE = 255
"""Go's limit on a provided value, in bytes (one option's length octet)."""

MAX_CLIENT_KEY = 254
"""Latest Go truncates ``<containerID>/<network>/<ifname>`` to this many bytes."""

_PAD, _END = 0, 255
_MESSAGE_TYPE = 53
_PARAMETER_LIST = 55
_CLIENT_ID = 61
_INT64_MAX = 2**63 - 1
_VALID = "cni.dev/valid-attachments"


class OptionNameError(ValueError):
    """An option name Go's ``parseOptionName`` refuses; the text is Go's."""


def parse_option_name(option: str) -> int:
    """Go's ``parseOptionName``: a known name, else ``strconv.ParseUint(option, 10, 8)``."""
    code = OPTION_NAMES.get(option)
    if code is not None:
        return code
    # strconv.ParseUint: digit by digit, a range error as soon as the value
    # passes 255 (even if a non-digit follows), a syntax error otherwise.
    problem = "invalid syntax" if not option else ""
    value = 0
    for char in option:
        if not "0" <= char <= "9":
            problem = "invalid syntax"
            break
        value = value * 10 + ord(char) - ord("0")
        if value > 255:
            problem = "value out of range"
            break
    if problem:
        raise OptionNameError(
            f"Can not parse option: strconv.ParseUint: parsing {go_quote(option)}: {problem}"
        )
    return value


def parse_cni_args(text: str) -> dict[str, str]:
    """``CNI_ARGS`` as Go's dhcp reads them: ``;``-separated ``key=value`` pairs,
    pairs without ``=`` ignored, the last value of a key kept."""
    pairs: dict[str, str] = {}
    for item in text.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            pairs[key] = value
    return pairs


def _payload(text: str) -> bytes:
    """The bytes Go sends for a string (``CNI_ARGS`` keep their raw bytes)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return clean_str(text).encode("utf-8")


def lease_key(container_id: str, net_name: str, ifname: str) -> str:
    """Go's ``generateClientID``: ``<containerID>/<network>/<ifname>``, cut to
    :data:`MAX_CLIENT_KEY` bytes (latest Go). The daemon keys its leases by it.

    A cut through a multi-byte character leaves its bytes escaped as
    ``\\xNN``, so two keys differ whenever Go's byte strings do.
    """
    raw = _payload(f"{container_id}/{net_name}/{ifname}")[:MAX_CLIENT_KEY]
    return raw.decode("utf-8", "backslashreplace")


def client_id(container_id: str, net_name: str, ifname: str) -> bytes:
    """Option 61's payload as Go sends it: type 0, then the key's (cut) bytes."""
    raw = _payload(f"{container_id}/{net_name}/{ifname}")[:MAX_CLIENT_KEY]
    return b"\x00" + raw


def _error(
    path: str, text: str, source: str, code: int = ErrorCode.INVALID_NETWORK_CONFIG
) -> PluginError:
    return PluginError(f"{path}: {text}", code=code, details=f"in {source}" if source else "")


def _type_error(path: str, value: JSONValue, go_type: str, source: str) -> PluginError:
    return _error(
        path, f"json: cannot unmarshal {json_kind(value)} into Go value of type {go_type}", source
    )


def _string(obj: JSONMap, name: str, path: str, source: str, go_type: str = "string") -> str:
    value = member(obj, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _type_error(f"{path}.{name}", value, go_type, source)
    return value


def _bool(obj: JSONMap, name: str, path: str, source: str) -> bool:
    value = member(obj, name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _type_error(f"{path}.{name}", value, "bool", source)
    return value


def _int(obj: JSONMap, name: str, path: str, source: str) -> int:
    value = member(obj, name)
    if value is None:
        return 0
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not value.is_integer())
        or abs(value) > _INT64_MAX
    ):
        raise _type_error(f"{path}.{name}", value, "int", source)
    return int(value)


def _objects(obj: JSONMap, name: str, path: str, go_type: str, source: str) -> list[JSONMap]:
    """A list of objects; a ``null`` entry is an empty object (Go's zero struct)."""
    value = member(obj, name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _type_error(f"{path}.{name}", value, f"[]{go_type}", source)
    found: list[JSONMap] = []
    for i, item in enumerate(value):
        if item is None:
            item = {}
        if not isinstance(item, dict):
            raise _type_error(f"{path}.{name}[{i}]", item, go_type, source)
        found.append(item)
    return found


def _option(entry: JSONMap, path: str, source: str) -> tuple[str, int]:
    text = _string(entry, "option", path, source, "main.DHCPOption")
    try:
        return text, parse_option_name(text)
    except OptionNameError as exc:
        raise _error(
            f"{path}.option", f"Can not parse option {go_quote(text)}: {exc}", source
        ) from None


def _attachments(config: JSONMap, source: str) -> frozenset[tuple[str, str]] | None:
    """``cni.dev/valid-attachments`` (the key libcni's GC writes)."""
    value = config.get(_VALID)
    if value is None:
        return None
    where = f"$[{go_quote(_VALID)}]"
    if not isinstance(value, list):
        raise _type_error(where, value, "[]attachment", source)
    pairs = set()
    for i, entry in enumerate(value):
        path = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise _type_error(path, entry, "attachment", source)
        pairs.add(
            (_string(entry, "containerID", path, source), _string(entry, "ifname", path, source))
        )
    return frozenset(pairs)


@attrs.frozen
class DhcpConf:
    """What the plugin and the daemon take from a network configuration."""

    network: str
    """The network name (``name``; part of the client ID)."""
    cni_version: str = ""
    socket_path: str = DEFAULT_SOCKET_PATH
    priority: int = 0
    """Every route's ``priority`` when non-zero."""
    parameters: tuple[int, ...] = DEFAULT_PARAMETERS
    """Option 55 as sent, in order."""
    extra_options: tuple[tuple[int, bytes], ...] = ()
    """The provided options as sent: (code, payload), one per code, by code."""
    client_id_override: bytes | None = None
    """A provided option 61, sent instead of the generated client ID."""
    attachments: frozenset[tuple[str, str]] | None = None
    """``cni.dev/valid-attachments`` as (containerID, ifname) pairs; None when absent."""

    @classmethod
    def from_netconf(
        cls,
        config: Mapping[str, JSONValue],
        *,
        args: str | Sequence[tuple[str, str]] = (),
        source: str,
    ) -> DhcpConf:
        """Read ``config`` (the whole network configuration) and ``CNI_ARGS``
        (the raw string, or parsed pairs) as Go's ``prepareOptions`` does.

        ``source`` says where the configuration came from; it ends the
        details of any error (``in <source>``).
        """
        ipam = member(config, "ipam")
        if ipam is None:
            raise _error("$.ipam", "IPAM config missing 'ipam' key", source)
        if not isinstance(ipam, dict):
            raise _type_error("$.ipam", ipam, "main.IPAMConfig", source)
        cni_args = parse_cni_args(args) if isinstance(args, str) else dict(args)

        provided: dict[int, bytes] = {}
        for i, entry in enumerate(
            _objects(ipam, "provide", "$.ipam", "main.ProvideOption", source)
        ):
            path = f"$.ipam.provide[{i}]"
            option, code = _option(entry, path, source)
            value = _string(entry, "value", path, source)
            from_arg = _string(entry, "fromArg", path, source)
            if value:
                payload = _payload(value)
                if len(payload) > MAX_OPTION_VALUE:
                    raise _error(
                        f"{path}.value",
                        f"value too long for option {go_quote(option)}: {go_quote(value)}",
                        source,
                    )
                provided[code] = payload
            if from_arg and from_arg in cni_args:
                arg = cni_args[from_arg]
                payload = _payload(arg)
                if len(payload) > MAX_OPTION_VALUE:
                    raise _error(
                        f"{path}.fromArg",
                        f"value too long for option {go_quote(option)} from CNI_ARGS "
                        f"{go_quote(from_arg)}: {go_quote(arg)}",
                        source,
                        ErrorCode.INVALID_ENVIRONMENT_VARIABLES,
                    )
                provided[code] = payload
            if code == _MESSAGE_TYPE and code in provided:
                raise _error(
                    f"{path}.option",
                    "option 53 (DHCP message type) is the client's own and cannot be provided",
                    source,
                )

        requested: list[int] = []
        skip_default = False
        for i, entry in enumerate(
            _objects(ipam, "request", "$.ipam", "main.RequestOption", source)
        ):
            path = f"$.ipam.request[{i}]"
            skip_default = _bool(entry, "skipDefault", path, source) or skip_default
            if not _string(entry, "option", path, source, "main.DHCPOption"):
                continue
            _, code = _option(entry, path, source)
            if code not in requested:
                requested.append(code)
        if not skip_default:
            requested += [code for code in DEFAULT_PARAMETERS if code not in requested]
        if not requested:
            own = provided.get(_PARAMETER_LIST)
            requested = list(own) if own is not None else list(CLIENT_DEFAULT_PARAMETERS)
        provided.pop(_PARAMETER_LIST, None)

        return cls(
            network=_string(config, "name", "$", source),
            cni_version=_string(config, "cniVersion", "$", source),
            socket_path=_string(ipam, "daemonSocketPath", "$.ipam", source) or DEFAULT_SOCKET_PATH,
            priority=_int(ipam, "priority", "$.ipam", source),
            parameters=tuple(requested),
            extra_options=tuple(
                (code, provided[code])
                for code in sorted(provided)
                if code not in (_PAD, _END, _CLIENT_ID)
            ),
            client_id_override=provided.get(_CLIENT_ID),
            attachments=_attachments(config, source),
        )

    @classmethod
    def from_request(cls, request: PluginRequest) -> DhcpConf:
        """The configuration of a plugin call (its stdin and ``CNI_ARGS``)."""
        return cls.from_netconf(request.config, args=request.args, source="stdin")

    @classmethod
    def from_stdin(cls, data: bytes, *, args: str, source: str) -> DhcpConf:
        """The configuration the daemon gets over RPC: ``StdinData`` and ``Args``
        (Go's ``error parsing netconf`` for JSON that does not decode, code 6)."""
        try:
            config = loads_object(data)
        except JSONSyntaxError as exc:
            raise PluginError(
                f"error parsing netconf: {exc}",
                code=ErrorCode.DECODING_FAILURE,
                details=f"in {source}" if source else "",
            ) from None
        return cls.from_netconf(config, args=args, source=source)

    def lease_key(self, container_id: str, ifname: str) -> str:
        """:func:`lease_key` for this network."""
        return lease_key(container_id, self.network, ifname)

    def client_id(self, container_id: str, ifname: str) -> bytes:
        """Option 61 for DISCOVER and REQUEST: a provided one, else :func:`client_id`."""
        if self.client_id_override is not None:
            return self.client_id_override
        return client_id(container_id, self.network, ifname)

    @property
    def valid_attachments(self) -> frozenset[tuple[str, str]]:
        """GC's valid attachments (code 7 when the configuration has none)."""
        if self.attachments is None:
            raise _error(f"$[{go_quote(_VALID)}]", f"GC needs {_VALID} in the configuration", "")
        return self.attachments
