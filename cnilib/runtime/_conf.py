"""Per-attachment parameters a runtime passes with each verb."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

import attrs

from cnilib._json import JSONValue, go_dumps
from cnilib.errors import InvalidArgumentError
from cnilib.names import validate_container_id, validate_interface_name, validate_network_name

__all__ = ["GCAttachment", "RuntimeConf", "parse_cni_args"]


def _args_tuple(
    value: Iterable[tuple[str, str]] | Iterable[list[str]],
) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for pair in value:
        items = tuple(pair)
        if len(items) != 2 or not all(isinstance(s, str) for s in items):
            raise InvalidArgumentError(
                f"CNI_ARGS entries must be (key, value) string pairs: {pair!r}"
            )
        pairs.append((items[0], items[1]))
    return tuple(pairs)


def _freeze_caps(value: Mapping[str, JSONValue]) -> Mapping[str, JSONValue]:
    return MappingProxyType(dict(value))


def _require_utf8(what: str, value: str) -> None:
    """Plugins get these as environment variables and JSON: they must be UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(f"{what} is not valid UTF-8: {value!r}") from exc


@attrs.frozen
class RuntimeConf:
    """One attachment: a container's interface in a network namespace (Go ``RuntimeConf``).

    ``args`` become ``CNI_ARGS`` (``K=V;K=V``); ``capability_args`` are
    offered to plugins as ``runtimeConfig``, each only to the plugins that
    declare that capability.
    """

    container_id: str
    netns: str
    ifname: str
    args: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_args_tuple)
    capability_args: Mapping[str, JSONValue] = attrs.field(factory=dict, converter=_freeze_caps)

    def validate(self, network: str) -> None:
        """Check every value that reaches a path or an environment variable.

        Go libcni checks names on ADD only; cnilib checks them on every verb,
        so that no input can make a cache path leave the cache directory.
        """
        validate_container_id(self.container_id)
        validate_network_name(network)
        validate_interface_name(self.ifname)
        for key, value in self.args:
            if not key or any(c in key for c in "=;\0") or any(c in value for c in ";\0"):
                raise InvalidArgumentError(
                    f"invalid CNI_ARGS pair {key!r}={value!r}: keys must be non-empty and "
                    "neither may contain ';' (keys not '=' either)"
                )
        if "\0" in self.netns:
            raise InvalidArgumentError("netns path contains a NUL byte")
        for what, value in (("netns path", self.netns), ("interface name", self.ifname)):
            _require_utf8(what, value)
        for key, value in self.args:
            _require_utf8("CNI_ARGS", key + value)
        try:
            go_dumps(dict(self.capability_args)).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidArgumentError(f"capability args are not JSON: {exc}") from exc


@attrs.frozen
class GCAttachment:
    """An attachment that GC must keep (spec ``cni.dev/valid-attachments`` entry)."""

    container_id: str
    ifname: str

    def to_object(self) -> dict[str, JSONValue]:
        """The wire form: note ``containerID``/``ifname``, unlike the cache's keys."""
        return {"containerID": self.container_id, "ifname": self.ifname}


def parse_cni_args(text: str) -> tuple[tuple[str, str], ...]:
    """Parse ``K=V;K=V`` as cnitool does: each pair needs exactly one ``=``,
    with a key and a value that are not empty (``""`` itself means no args).

    A bad pair is an :class:`InvalidArgumentError` with cnitool's text and the
    reason: ``invalid CNI_ARGS pair "K=": empty value``.
    """
    if not text:
        return ()
    pairs: list[tuple[str, str]] = []
    for item in text.split(";"):
        parts = item.split("=")
        if len(parts) != 2:
            raise InvalidArgumentError(f'invalid CNI_ARGS pair "{item}": expected KEY=VALUE')
        key, value = parts
        if not key or not value:
            empty = "key" if not key else "value"
            raise InvalidArgumentError(f'invalid CNI_ARGS pair "{item}": empty {empty}')
        pairs.append((key, value))
    return tuple(pairs)
