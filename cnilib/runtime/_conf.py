"""Per-attachment parameters a runtime passes with each verb."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TypeAlias

import attrs

from cnilib._json import CapabilityArgs, JSONValue, go_dumps, to_json_value
from cnilib.errors import InvalidArgumentError
from cnilib.names import validate_container_id, validate_interface_name, validate_network_name

__all__ = ["GCAttachment", "RuntimeConf", "parse_cni_args"]


CNIArgs: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str] | list[str]]
"""``CNI_ARGS`` as a caller gives them: a mapping, or (key, value) pairs in order."""


def _args_tuple(value: CNIArgs | None) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    given: object = value  # checked as the caller may really pass it, not as typed
    if isinstance(value, Mapping):
        # Iterated as-is, a dict would give its keys: "ab" would read as ("a", "b").
        value = list(value.items())
    elif isinstance(given, str | bytes):
        raise InvalidArgumentError(
            f"CNI_ARGS must be (key, value) pairs or a mapping, not a string: {value!r}"
        )
    pairs: list[tuple[str, str]] = []
    for pair in value:
        if isinstance(pair, str):  # "ab" would read as ("a", "b")
            raise InvalidArgumentError(
                f"CNI_ARGS entries must be (key, value) string pairs: {pair!r}"
            )
        items = tuple(pair)
        if len(items) != 2 or not all(isinstance(s, str) for s in items):
            raise InvalidArgumentError(
                f"CNI_ARGS entries must be (key, value) string pairs: {pair!r}"
            )
        pairs.append((items[0], items[1]))
    return tuple(pairs)


def _freeze_caps(value: CapabilityArgs | None) -> Mapping[str, JSONValue]:
    """A read-only copy made of dicts and lists (tuples and other mappings copied)."""
    if value is None:
        return MappingProxyType({})
    given: object = value  # checked as the caller may really pass it, not as typed
    if not isinstance(given, Mapping):
        # Python's own exception for a value of the wrong type, with what was expected.
        raise TypeError(
            "capability_args must be a mapping of capability names to values, "
            f"not {type(given).__name__}"
        )
    try:
        copied = {key: to_json_value(item) for key, item in value.items()}
    except RecursionError as exc:
        raise InvalidArgumentError("capability args are nested too deeply") from exc
    return MappingProxyType(copied)


def _netns_path(value: str | os.PathLike[str] | None) -> str:
    """``netns`` as a ``str``: a path object is converted with :func:`os.fspath`.

    ``None`` is ``""``, no namespace: a DEL after the container's namespace is gone.
    """
    if value is None:
        return ""
    path: object = os.fspath(value)
    if not isinstance(path, str):
        # bytes (directly or from a PathLike): CNI_NETNS is text, and UTF-8 at that.
        raise InvalidArgumentError(f"netns path must be a str or a str path, not {path!r}")
    return path


def _require_utf8(what: str, value: str) -> None:
    """Plugins get these as environment variables and JSON: they must be UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(f"{what} is not valid UTF-8: {value!r}") from exc


@attrs.frozen
class RuntimeConf:
    """One attachment: a container's interface in a network namespace (Go ``RuntimeConf``).

    ``netns`` may be any path object (``pathlib.Path``); it is kept as a
    ``str`` (``None`` is ``""``: no namespace, as for a DEL after the
    namespace is gone). ``args`` become ``CNI_ARGS`` (``K=V;K=V``), given as
    a mapping or as (key, value) pairs (pairs keep their order and may repeat
    a key); ``None`` is none. ``capability_args`` are offered to plugins as
    ``runtimeConfig``, each only to the plugins that declare that capability;
    they are copied into plain dicts and lists, read-only at the top level
    (``None`` is none).
    """

    container_id: str
    netns: str = attrs.field(converter=_netns_path)
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
