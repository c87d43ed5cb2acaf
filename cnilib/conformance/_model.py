"""What a conformance run produces: outcomes, the evidence of plugin calls, a report."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["CheckResult", "CheckSpec", "Exchange", "Outcome", "Report"]


class Outcome(enum.StrEnum):
    """How a plugin fared on one check."""

    PASS = "pass"
    FAIL = "fail"
    """A MUST of the spec is broken: the run's exit status is 1."""
    WARN = "warn"
    """A SHOULD of the spec (or a convention) is not followed: reported, not failed."""
    NOT_APPLICABLE = "n/a"
    """The check does not apply to this plugin (a verb or version it does not
    support, a kind it is not, a kernel feature the machine lacks)."""
    ERROR = "error"
    """The kit itself failed while checking (it could not make a namespace, say):
    nothing is known of the plugin, and the run's exit status is 1."""


@attrs.frozen
class CheckSpec:
    """One obligation the kit checks, and where the spec states it."""

    id: str
    """Stable dotted name, e.g. ``del.netns-gone``; what ``--only`` selects."""
    title: str
    """What a plugin must do, in a sentence."""
    spec: str
    """The section it comes from, e.g. ``SPEC 1.1 §2 DEL``."""
    level: str = "must"
    """``must``: failing is a FAIL; ``should``: failing is a WARN."""


_SHOWN_ENV = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")


@attrs.frozen
class Exchange:
    """One call of the plugin, everything that went in and came out: the evidence."""

    label: str
    """What the kit was doing, e.g. ``ADD (1.0.0)``."""
    env: Mapping[str, str]
    """The ``CNI_*`` variables given (a missing one is absent)."""
    stdin: bytes
    stdout: bytes
    stderr: bytes
    exit_status: int
    """The process's exit status (negative: killed by that signal)."""
    seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.exit_status == 0

    def stdout_json(self) -> Any:
        """stdout parsed as JSON, or ``None`` where it is empty or not JSON."""
        try:
            return json.loads(self.stdout) if self.stdout.strip() else None
        except ValueError:
            return None

    def error_object(self) -> dict[str, Any] | None:
        """The error object on stdout of a failed call, if it printed one."""
        if self.succeeded:
            return None
        obj = self.stdout_json()
        return obj if isinstance(obj, dict) else None

    def error_code(self) -> int | None:
        """The ``code`` of the error object, if there is one and it is an integer."""
        obj = self.error_object()
        code = obj.get("code") if obj is not None else None
        return code if isinstance(code, int) and not isinstance(code, bool) else None

    @property
    def crashed(self) -> bool:
        """Ended the way a program that lost control ends: killed by a signal, a
        Go panic, a Python traceback, or a failure with no error object."""
        if self.exit_status < 0:
            return True
        text = self.stderr.decode(errors="replace")
        if "panic: " in text or "Traceback (most recent call last)" in text:
            return True
        return not self.succeeded and self.error_object() is None

    def describe(self) -> str:
        """One line: verb, version and how it ended."""
        if self.succeeded:
            return f"{self.label}: exit 0"
        code = self.error_code()
        how = f"exit {self.exit_status}" if self.exit_status >= 0 else f"signal {-self.exit_status}"
        if code is not None:
            obj = self.error_object() or {}
            return f"{self.label}: {how}, code {code}: {obj.get('msg', '')}"
        return f"{self.label}: {how}, no error object"

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "env": {k: self.env[k] for k in _SHOWN_ENV if k in self.env},
            "stdin": _capped(self.stdin),
            "stdout": _capped(self.stdout),
            "stderr": _capped(self.stderr),
            "exit_status": self.exit_status,
            "seconds": round(self.seconds, 4),
        }

    def render(self) -> str:
        """The exchange as text, for a human reading why a check failed."""
        env = " ".join(f"{k}={self.env[k]}" for k in _SHOWN_ENV if k in self.env)
        missing = [k for k in _SHOWN_ENV if k not in self.env]
        lines = [f"--- {self.label}", f"env: {env}"]
        if missing:
            lines.append(f"env not set: {' '.join(missing)}")
        lines.append(f"stdin: {_clip(self.stdin)}")
        lines.append(f"exit status: {self.exit_status}")
        lines.append(f"stdout: {_clip(self.stdout)}")
        lines.append(f"stderr: {_clip(self.stderr)}")
        return "\n".join(lines)


JSON_LIMIT = 64 * 1024
"""Bytes of each stream kept in JSON and JUnit evidence (a plugin may print megabytes)."""


def _capped(data: bytes) -> str:
    if len(data) <= JSON_LIMIT:
        return data.decode(errors="replace")
    kept = data[:JSON_LIMIT].decode(errors="replace")
    return f"{kept}... ({len(data)} bytes in all)"


def _clip(data: bytes, limit: int = 2000) -> str:
    text = data.decode(errors="replace").strip()
    if not text:
        return "(empty)"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


@attrs.frozen
class CheckResult:
    """One check's outcome, with the reason and the exchanges that show it."""

    check: CheckSpec
    outcome: Outcome
    reason: str = ""
    evidence: tuple[Exchange, ...] = ()

    def to_json(self, *, all_evidence: bool = False) -> dict[str, Any]:
        shown = all_evidence or self.outcome in (Outcome.FAIL, Outcome.WARN, Outcome.ERROR)
        return {
            "id": self.check.id,
            "title": self.check.title,
            "spec": self.check.spec,
            "level": self.check.level,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "evidence": [e.to_json() for e in self.evidence] if shown else [],
        }


@attrs.frozen
class Report:
    """A plugin's conformance run: every check's result, in the kit's order."""

    plugin: str
    """The plugin type."""
    target: str
    """What ran: an executable's path or ``cnilib in-process <type>``."""
    kind: str
    """The plugin's kind as the kit treated it (interface, ipam, chained, ...)."""
    supported_versions: tuple[str, ...]
    results: tuple[CheckResult, ...]
    notes: tuple[str, ...] = ()
    """What the kit could not do, and why (a missing kernel feature, a daemon)."""

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        """The checks that failed, or that the kit could not make."""
        return tuple(r for r in self.results if r.outcome in (Outcome.FAIL, Outcome.ERROR))

    @property
    def ok(self) -> bool:
        """Nothing failed (warnings and n/a allowed)."""
        return not self.failed

    def result(self, check_id: str) -> CheckResult:
        """The result of check ``check_id`` (``KeyError`` if it did not run)."""
        for r in self.results:
            if r.check.id == check_id:
                return r
        raise KeyError(check_id)

    def to_json(self, *, all_evidence: bool = False) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "target": self.target,
            "kind": self.kind,
            "supportedVersions": list(self.supported_versions),
            "summary": {o.value: self.count(o) for o in Outcome},
            "ok": self.ok,
            "notes": list(self.notes),
            "checks": [r.to_json(all_evidence=all_evidence) for r in self.results],
        }
