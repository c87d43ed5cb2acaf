"""Turning what a plugin printed into results or errors, with libcni's texts."""

from __future__ import annotations

from cnilib._json import JSONSyntaxError, go_text, loads, loads_object
from cnilib.errors import CNIError, PluginError, PluginOutputError, error_from_object
from cnilib.invoke._invocation import PluginInfo

__all__ = ["STDERR_TAIL_BYTES", "decode_failure", "decode_version_info", "tail"]

STDERR_TAIL_BYTES = 4096
"""How much of a plugin's stderr an error keeps (the end, where the reason is)."""

_QUOTE_LIMIT = 1024


def tail(data: bytes, limit: int = STDERR_TAIL_BYTES) -> bytes:
    """The last ``limit`` bytes of ``data``."""
    return data[-limit:]


def _quote(data: bytes) -> str:
    """Plugin output for a message: decoded leniently, trimmed, quoted."""
    text = data.decode("utf-8", errors="replace").strip()
    if len(text) > _QUOTE_LIMIT:
        text = text[:_QUOTE_LIMIT] + f"... ({len(data)} bytes)"
    return '"' + text.replace('"', '\\"') + '"'


def decode_failure(
    stdout: bytes, stderr: bytes, exit_reason: str, returncode: int | None, *, note: str = ""
) -> CNIError:
    """The error for a plugin that exited non-zero (libcni ``pluginErr``).

    ``exit_reason`` reads like Go's exec error: ``exit status 1``,
    ``signal: killed``. ``note``, if any, is appended (after ``; ``) to the
    text of an error that is not the plugin's own error object.
    """
    suffix = f"; {note}" if note else ""
    kept_stderr = tail(stderr)
    if stdout.strip():
        try:
            # Leniently: invalid UTF-8 inside a string becomes U+FFFD, so that a
            # stray byte in ``msg`` does not lose the plugin's code. This is Go's
            # behaviour too (encoding/json replaces invalid UTF-8 when it
            # unmarshals a string), so libcni keeps the code as well; results
            # are read the same way (cnilib.results).
            obj = loads_object(go_text(stdout))
            return error_from_object(obj, stderr=kept_stderr)
        except (JSONSyntaxError, ValueError) as exc:
            return PluginOutputError(
                "netplugin failed but error parsing its diagnostic message "
                f"{_quote(stdout)}: {exc}{suffix}",
                stdout=stdout,
                stderr=kept_stderr,
                returncode=returncode,
            )
    if stderr.strip():
        return PluginOutputError(
            f"netplugin failed: {_quote(kept_stderr)}: {exit_reason}{suffix}",
            stderr=kept_stderr,
            returncode=returncode,
        )
    return PluginOutputError(
        f"netplugin failed with no error message: {exit_reason}{suffix}", returncode=returncode
    )


def decode_version_info(stdout: bytes) -> PluginInfo:
    """Decode a VERSION answer (Go ``PluginDecoder``)."""
    try:
        obj = loads(stdout)
    except JSONSyntaxError as exc:
        raise PluginOutputError(f"decoding version info: {exc}", stdout=stdout) from exc
    if not isinstance(obj, dict):
        raise PluginOutputError("decoding version info: not a JSON object", stdout=stdout)
    cni_version = obj.get("cniVersion")
    if not isinstance(cni_version, str) or not cni_version:
        raise PluginOutputError("decoding version info: missing field cniVersion", stdout=stdout)
    supported = obj.get("supportedVersions")
    if not supported:
        if cni_version == "0.2.0":
            return PluginInfo(cni_version, ("0.1.0", "0.2.0"))
        raise PluginOutputError(
            "decoding version info: missing field supportedVersions", stdout=stdout
        )
    if not isinstance(supported, list) or not all(isinstance(v, str) for v in supported):
        raise PluginOutputError(
            "decoding version info: supportedVersions must be a list of strings", stdout=stdout
        )
    return PluginInfo(cni_version, tuple(v for v in supported if isinstance(v, str)))


def is_pre_version_plugin(error: CNIError) -> bool:
    """A plugin older than 0.2.0 answers VERSION with this exact error."""
    return isinstance(error, PluginError) and str(error) == "unknown CNI_COMMAND: VERSION"
