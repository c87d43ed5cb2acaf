"""Bytes → configuration models, with Go libcni's rules and error texts.

Each error keeps libcni's wording (``error parsing configuration list: no
name``) and adds what libcni leaves out: the file and the JSON path of the
offending field.

The parser itself builds plain records (:class:`PlainPluginConf`,
:class:`PlainConfList`) with the models' fields; the public functions turn
them into the attrs models, whose module is imported only then. ``cnilib
list`` reads the plain records and never imports attrs, which costs more
than the rest of that command.
"""

from __future__ import annotations

from collections.abc import Mapping

from cnilib import spec
from cnilib._json import JSONObject, JSONSyntaxError, JSONValue, go_dumps, loads
from cnilib.errors import ConfigError, VersionError

TYPE_CHECKING = False  # typing's costs a quick command start-up milliseconds
if TYPE_CHECKING:
    from cnilib.config._model import NetworkConfigList, PluginConf

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_PLUGINS",
    "PlainConfList",
    "PlainPluginConf",
    "check_plugin_count",
    "check_size",
    "conf_from_bytes",
    "conflist_from_bytes",
    "conflist_from_conf",
    "go_type",
    "plain_conf_from_bytes",
    "plain_conflist_from_bytes",
    "plain_conflist_from_conf",
    "to_conflist",
    "to_plugin_conf",
]

_LIST_PREFIX = "error parsing configuration list: "
_CONF_PREFIX = "error parsing configuration: "


class PlainPluginConf:
    """:class:`~cnilib.config.PluginConf`'s fields, in a plain class."""

    __slots__ = ("bytes", "capabilities", "cni_version", "name", "raw", "source", "type")

    def __init__(
        self,
        plugin_type: str,
        raw: Mapping[str, JSONValue],
        data: bytes,
        name: str | None,
        cni_version: str | None,
        capabilities: Mapping[str, bool],
        source: str | None,
    ) -> None:
        self.type = plugin_type
        self.raw = raw
        self.bytes = data
        self.name = name
        self.cni_version = cni_version
        self.capabilities = capabilities
        self.source = source


class PlainConfList:
    """:class:`~cnilib.config.NetworkConfigList`'s fields, in a plain class."""

    __slots__ = (
        "bytes",
        "cni_version",
        "cni_versions",
        "disable_check",
        "disable_gc",
        "load_only_inlined_plugins",
        "name",
        "plugins",
        "raw",
        "source",
    )

    def __init__(
        self,
        name: str,
        cni_version: str,
        plugins: tuple[PlainPluginConf, ...],
        data: bytes,
        disable_check: bool,
        disable_gc: bool,
        load_only_inlined_plugins: bool,
        cni_versions: tuple[str, ...],
        raw: Mapping[str, JSONValue],
        source: str | None,
    ) -> None:
        self.name = name
        self.cni_version = cni_version
        self.plugins = plugins
        self.bytes = data
        self.disable_check = disable_check
        self.disable_gc = disable_gc
        self.load_only_inlined_plugins = load_only_inlined_plugins
        self.cni_versions = cni_versions
        self.raw = raw
        self.source = source


def to_plugin_conf(plain: PlainPluginConf) -> PluginConf:
    """The model of a parsed plugin configuration."""
    from cnilib.config._model import PluginConf

    return PluginConf(
        type=plain.type,
        raw=plain.raw,
        bytes=plain.bytes,
        name=plain.name,
        cni_version=plain.cni_version,
        capabilities=plain.capabilities,
        source=plain.source,
    )


def to_conflist(
    plain: PlainConfList, extra_plugins: tuple[PluginConf, ...] = ()
) -> NetworkConfigList:
    """The model of a parsed list, ``extra_plugins`` after its own."""
    from cnilib.config._model import NetworkConfigList

    return NetworkConfigList(
        name=plain.name,
        cni_version=plain.cni_version,
        plugins=(*map(to_plugin_conf, plain.plugins), *extra_plugins),
        bytes=plain.bytes,
        disable_check=plain.disable_check,
        disable_gc=plain.disable_gc,
        load_only_inlined_plugins=plain.load_only_inlined_plugins,
        cni_versions=plain.cni_versions,
        raw=plain.raw,
        source=plain.source,
    )


def go_type(value: object) -> str:
    """Go's ``%T`` of a value decoded into ``interface{}``, for libcni-identical texts."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


MAX_CONFIG_BYTES = 4 * 1024 * 1024
"""Largest configuration accepted, as a file (checked with fstat before
reading) or as bytes given to the parsing functions. Real configurations are a
few KiB; even one carrying long route lists or certificates inline stays far
below 1 MiB, so 4 MiB refuses nothing real, while its worst case parses in
well under a second (a 50 MB list took about 70 s)."""

MAX_PLUGINS = 1024
"""Most plugins in one list, inline and plugin-subdirectory ones together,
checked right after JSON decoding. Real chains hold one to a handful of
plugins, each run as a process per verb; a thousand is already far past any
usable chain."""

MAX_DEPTH = 64
"""Deepest nesting accepted in a configuration. Real configs nest a handful of
levels; without a bound, one deep enough to parse fails later, when the
runtime re-encodes it for a plugin."""


def _depth(value: JSONValue) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return deepest


def check_size(size: int, source: str | None, what: str) -> None:
    """Refuse a configuration of ``size`` bytes past :data:`MAX_CONFIG_BYTES`."""
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{what} is {size} bytes, more than the limit of {MAX_CONFIG_BYTES} bytes",
            path=source,
        )


def check_plugin_count(count: int, source: str | None, detail: str = "") -> None:
    """Refuse a list of ``count`` plugins past :data:`MAX_PLUGINS`."""
    if count > MAX_PLUGINS:
        raise ConfigError(
            f"{_LIST_PREFIX}{count} plugins{detail}, more than the limit of {MAX_PLUGINS}",
            path=source,
            field="$.plugins",
        )


def _decode(
    data: bytes, prefix: str, source: str | None, *, extra_plugins: int | None = None
) -> JSONObject:
    """Decode and bound a configuration; ``extra_plugins`` (lists only) counts
    plugins that will be appended, so the plugin limit is checked before
    anything walks the document."""
    try:
        value = loads(data)
    except JSONSyntaxError as exc:
        raise ConfigError(f"{prefix}{exc}", path=source) from exc
    if extra_plugins is not None and isinstance(value, dict):
        entries = value.get("plugins")
        inline = len(entries) if isinstance(entries, list) else 0
        check_plugin_count(inline + extra_plugins, source)
    if _depth(value) > MAX_DEPTH:
        raise ConfigError(f"{prefix}nested deeper than {MAX_DEPTH} levels", path=source)
    if not isinstance(value, dict):
        raise ConfigError(
            f"{prefix}top level must be a JSON object, got {go_type(value)}", path=source
        )
    return value


def _parse_bool(raw: Mapping[str, JSONValue], key: str, source: str | None) -> bool:
    """A boolean flag that Go libcni also accepts as the strings "true"/"false"."""
    value = raw.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise ConfigError(
            f'{_LIST_PREFIX}invalid value "{lowered}" for {key}', path=source, field=f"$.{key}"
        )
    raise ConfigError(
        f"{_LIST_PREFIX}invalid type {go_type(value)} for {key}", path=source, field=f"$.{key}"
    )


def _select_version(
    raw: Mapping[str, JSONValue], source: str | None
) -> tuple[str, tuple[str, ...]]:
    """Pick the list's version as Go libcni's ``ConfListFromBytes`` does."""
    cni_version = raw.get("cniVersion", "")
    if not isinstance(cni_version, str):
        raise ConfigError(
            f"{_LIST_PREFIX}invalid cniVersion type {go_type(cni_version)}",
            path=source,
            field="$.cniVersion",
        )
    if "cniVersions" not in raw:
        return cni_version, ()
    declared = raw["cniVersions"]
    if not isinstance(declared, list):
        raise ConfigError(
            f"{_LIST_PREFIX}invalid type for cniVersions: {go_type(declared)}",
            path=source,
            field="$.cniVersions",
        )
    candidates: list[spec.SpecVersion] = []
    for index, entry in enumerate(declared):
        field = f"$.cniVersions[{index}]"
        if not isinstance(entry, str):
            raise ConfigError(
                f"{_LIST_PREFIX}invalid type for cniVersions index {index}: {go_type(entry)}",
                path=source,
                field=field,
            )
        try:
            parsed = spec.parse_version(entry)
        except VersionError as exc:
            raise ConfigError(
                f"{_LIST_PREFIX}invalid cniVersions entry {entry} at index {index}: {exc}",
                path=source,
                field=field,
            ) from exc
        if parsed <= spec.CURRENT:
            candidates.append(parsed)
    if cni_version:
        try:
            parsed = spec.parse_version(cni_version)
        except VersionError as exc:
            raise ConfigError(
                f"{_LIST_PREFIX}invalid cniVersion {cni_version}: {exc}",
                path=source,
                field="$.cniVersion",
            ) from exc
        if parsed <= spec.CURRENT:
            candidates.append(parsed)
    versions = tuple(e for e in declared if isinstance(e, str))
    if not candidates:
        return cni_version, versions
    return str(max(candidates, key=lambda v: v.key)), versions


_STRING_LISTS_OF_DNS = ("nameservers", "search", "options")


def _plugin_from_mapping(
    raw: JSONObject, data: bytes, source: str | None, field_prefix: str, msg_prefix: str = ""
) -> PlainPluginConf:
    """Check the typed keys of one plugin object (Go ``types.PluginConf``).

    As in Go's decoder, JSON ``null`` in a typed field means "absent".
    """
    prefix = msg_prefix + _CONF_PREFIX

    def bad(field: str, want: str, value: object) -> ConfigError:
        return ConfigError(
            f"{prefix}field {field!r} must be {want}, got {go_type(value)}",
            path=source,
            field=f"{field_prefix}.{field}",
        )

    def check(
        container: Mapping[str, JSONValue], key: str, kind: type, want: str, field: str
    ) -> None:
        value = container.get(key)
        if value is not None and not isinstance(value, kind):
            raise bad(field, want, value)

    plugin_type = raw.get("type")
    if plugin_type is not None and not isinstance(plugin_type, str):
        raise bad("type", "a string", plugin_type)
    if not plugin_type:
        raise ConfigError(f"{prefix}missing 'type'", path=source, field=f"{field_prefix}.type")
    for key in ("name", "cniVersion"):
        check(raw, key, str, "a string", key)
    for key in ("capabilities", "ipam", "dns", "prevResult"):
        check(raw, key, dict, "an object", key)
    capabilities: dict[str, bool] = {}
    caps = raw.get("capabilities")
    for cap, enabled in (caps or {}).items() if isinstance(caps, dict) else ():
        if enabled is not None and not isinstance(enabled, bool):
            raise bad(f"capabilities.{cap}", "a boolean", enabled)
        capabilities[cap] = bool(enabled)
    ipam = raw.get("ipam")
    if isinstance(ipam, dict):
        check(ipam, "type", str, "a string", "ipam.type")
    dns = raw.get("dns")
    if isinstance(dns, dict):
        check(dns, "domain", str, "a string", "dns.domain")
        for key in _STRING_LISTS_OF_DNS:
            entries = dns.get(key)
            if entries is not None and (
                not isinstance(entries, list) or not all(isinstance(e, str) for e in entries)
            ):
                raise bad(f"dns.{key}", "a list of strings", entries)
    name = raw.get("name")
    version = raw.get("cniVersion")
    return PlainPluginConf(
        plugin_type,
        raw,
        data,
        name if isinstance(name, str) else None,
        version if isinstance(version, str) else None,
        capabilities,
        source,
    )


def conf_from_bytes(data: bytes, *, source: str | None = None) -> PluginConf:
    """Parse a single plugin configuration (a ``.conf`` file; Go ``ConfFromBytes``).

    ``data`` longer than :data:`MAX_CONFIG_BYTES` is refused before decoding.
    """
    return to_plugin_conf(plain_conf_from_bytes(data, source=source))


def plain_conf_from_bytes(data: bytes, *, source: str | None = None) -> PlainPluginConf:
    """:func:`conf_from_bytes`, as a plain record."""
    check_size(len(data), source, f"{_CONF_PREFIX}configuration")
    raw = _decode(data, _CONF_PREFIX, source)
    return _plugin_from_mapping(raw, data, source, "$")


def conflist_from_bytes(
    data: bytes, *, source: str | None = None, extra_plugins: tuple[PluginConf, ...] = ()
) -> NetworkConfigList:
    """Parse a network configuration list (Go ``NetworkConfFromBytes``).

    ``extra_plugins`` are appended after the inline ones (the 1.1 plugin
    subdirectory); the file loader supplies them. ``data`` longer than
    :data:`MAX_CONFIG_BYTES`, or more than :data:`MAX_PLUGINS` plugins in all,
    is refused before any plugin is looked at.
    """
    plain = plain_conflist_from_bytes(data, source=source, extra=len(extra_plugins))
    return to_conflist(plain, extra_plugins)


def plain_conflist_from_bytes(
    data: bytes, *, source: str | None = None, extra: int = 0
) -> PlainConfList:
    """:func:`conflist_from_bytes`, as a plain record of the inline plugins;
    ``extra`` counts the plugins to be added after them."""
    check_size(len(data), source, f"{_LIST_PREFIX}configuration")
    return _conflist(data, source, extra)


def _conflist(data: bytes, source: str | None, extra: int) -> PlainConfList:
    raw = _decode(data, _LIST_PREFIX, source, extra_plugins=extra)
    if "name" not in raw:
        raise ConfigError(f"{_LIST_PREFIX}no name", path=source, field="$.name")
    name = raw["name"]
    if not isinstance(name, str):
        raise ConfigError(
            f"{_LIST_PREFIX}invalid name type {go_type(name)}", path=source, field="$.name"
        )
    cni_version, cni_versions = _select_version(raw, source)
    disable_check = _parse_bool(raw, "disableCheck", source)
    disable_gc = _parse_bool(raw, "disableGC", source)
    only_inlined = _parse_bool(raw, "loadOnlyInlinedPlugins", source)

    plugins: list[PlainPluginConf] = []
    if "plugins" in raw:
        entries = raw["plugins"]
        if not isinstance(entries, list):
            raise ConfigError(
                f"{_LIST_PREFIX}invalid 'plugins' type {go_type(entries)}",
                path=source,
                field="$.plugins",
            )
        if not entries:
            raise ConfigError(f"{_LIST_PREFIX}no plugins in list", path=source, field="$.plugins")
        for index, entry in enumerate(entries):
            field = f"$.plugins[{index}]"
            if not isinstance(entry, dict):
                raise ConfigError(
                    f"{_LIST_PREFIX}failed to parse plugin config {index}: "
                    f"expected an object, got {go_type(entry)}",
                    path=source,
                    field=field,
                )
            # Go re-marshals each entry: compact, key-sorted JSON.
            entry_bytes = go_dumps(entry).encode()
            plugins.append(
                _plugin_from_mapping(
                    entry, entry_bytes, source, field, f"failed to parse plugin config {index}: "
                )
            )
    elif only_inlined:
        raise ConfigError(
            f"{_LIST_PREFIX}`loadOnlyInlinedPlugins` is true, and no 'plugins' key",
            path=source,
            field="$.plugins",
        )
    return PlainConfList(
        name,
        cni_version,
        tuple(plugins),
        data,
        disable_check,
        disable_gc,
        only_inlined,
        cni_versions,
        raw,
        source,
    )


def conflist_from_conf(conf: PluginConf) -> NetworkConfigList:
    """Wrap a single plugin configuration in a list (Go ``ConfListFromConf``).

    The plugin keeps its own ``name``/``cniVersion``; the list takes them
    (``""`` when missing, as libcni does).
    """
    return to_conflist(plain_conflist_from_conf(conf))


def plain_conflist_from_conf(conf: PluginConf | PlainPluginConf) -> PlainConfList:
    """:func:`conflist_from_conf`, as a plain record."""
    wrapper = {
        "name": conf.name or "",
        "cniVersion": conf.cni_version or "",
        "plugins": [dict(conf.raw)],
    }
    # Not size-checked again: the conf was, and Go's escaping of <, > and &
    # can make the wrapper several times larger than the conf it wraps.
    return _conflist(go_dumps(wrapper).encode(), conf.source, 0)
