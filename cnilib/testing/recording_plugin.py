"""A scriptable CNI plugin that records every invocation (stdlib only).

Run it as ``python3 -I -S recording_plugin.py`` or through the wrapper that
:func:`cnilib.testing.install_recording_plugin` writes. It imports nothing from
cnilib, so it behaves like any foreign plugin binary.

Every invocation appends one JSON line to the log file::

    {"verb": CNI_COMMAND, "env": {every CNI_* variable}, "stdin": <parsed stdin JSON,
     or the raw text if it is not JSON>, "argv0": <basename of argv[0]>}

plus ``"trace": {...}`` holding ``TRACEPARENT``, ``TRACESTATE`` and ``BAGGAGE``
(those set) when the runtime passed OpenTelemetry trace context.

Behaviour comes from the ``"recorder"`` key of the stdin config::

    "recorder": {
        "log": "/path/log.jsonl",          # where to record (else env RECORDER_LOG, else nowhere)
        "versions": ["0.4.0", "1.0.0"],    # supportedVersions answered to VERSION
        "ADD": {<instruction>}, "DEL": {...}, ...   # one per verb, all optional
    }

An instruction may combine these keys; they are applied in this order:

* ``"sleep": seconds`` -- sleep first (to exercise timeouts);
* ``"signal": "KILL"`` -- then kill itself with that signal;
* ``"stderr": "text"`` -- write text to stderr;
* one of the outputs: ``"result": {...}`` (printed as JSON), ``"error": {code, msg,
  details}`` (printed as JSON, exit status defaults to 1), ``"stdout": "raw text"``,
  ``"stdout_bytes_hex": "ff00"`` (raw bytes), or, with none of these, the default output;
* ``"stdout_size": N`` -- pad the output with spaces to N bytes (still valid JSON);
* ``"exit": N`` -- the exit status (default 0, or 1 with ``"error"``).

Default output: ADD prints the ``prevResult`` if there is one, else a small valid
result for the config's ``cniVersion`` (the ``ip4`` layout below 0.3.0); DEL, CHECK,
GC and STATUS print nothing; VERSION prints ``{"cniVersion": ..., "supportedVersions":
[...]}``. VERSION's stdin carries no ``recorder`` key, so its versions come from, in
order: ``recorder.versions``, env ``RECORDER_VERSIONS`` (comma list), the program
name (a basename ending in ``-v040`` supports only 0.1.0 to 0.4.0), else all seven.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

TRACE_VARIABLES = ("TRACEPARENT", "TRACESTATE", "BAGGAGE")
ALL_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
V040_SUFFIX = "-v040"


def _version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (0,)


def supported_versions(recorder: dict[str, object], argv0: str) -> list[str]:
    """The versions this invocation answers to VERSION with."""
    versions = recorder.get("versions")
    if isinstance(versions, list):
        return [str(v) for v in versions]
    env = os.environ.get("RECORDER_VERSIONS", "")
    if env:
        return [v.strip() for v in env.split(",") if v.strip()]
    if os.path.basename(argv0).endswith(V040_SUFFIX):
        return [v for v in ALL_VERSIONS if _version_key(v) <= (0, 4, 0)]
    return list(ALL_VERSIONS)


def default_add_result(config: dict[str, object]) -> dict[str, object]:
    """ADD's default: the prevResult, else one interface with 10.250.0.2/24 (config's version)."""
    prev = config.get("prevResult")
    if isinstance(prev, dict):
        return prev
    version = str(config.get("cniVersion") or "0.1.0")
    address = "10.250.0.2/24"
    if _version_key(version) < (0, 3, 0):
        return {"cniVersion": version, "ip4": {"ip": address}}
    ip: dict[str, object] = {"address": address, "interface": 0}
    if _version_key(version) < (1, 0, 0):
        ip["version"] = "4"
    iface = {"name": os.environ.get("CNI_IFNAME", ""), "sandbox": os.environ.get("CNI_NETNS", "")}
    return {"cniVersion": version, "interfaces": [iface], "ips": [ip]}


def record(log: str, verb: str, stdin: object, argv0: str) -> None:
    """Append one JSON line describing this invocation to *log*."""
    entry = {
        "verb": verb,
        "env": {k: v for k, v in os.environ.items() if k.startswith("CNI_")},
        "stdin": stdin,
        "argv0": os.path.basename(argv0),
    }
    trace = {k: os.environ[k] for k in TRACE_VARIABLES if k in os.environ}
    if trace:
        entry["trace"] = trace
    line = (json.dumps(entry, sort_keys=True) + "\n").encode()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write on an O_APPEND fd: lines never interleave
    finally:
        os.close(fd)


def _signal_number(name: str) -> int:
    name = name.upper()
    return int(getattr(signal, name if name.startswith("SIG") else "SIG" + name))


def main(argv0: str | None = None) -> int:
    """Run one invocation; return the exit status."""
    argv0 = argv0 if argv0 is not None else sys.argv[0]
    verb = os.environ.get("CNI_COMMAND", "")
    raw = sys.stdin.buffer.read().decode("utf-8", "replace")
    try:
        stdin: object = json.loads(raw)
    except ValueError:
        stdin = raw
    config: dict[str, object] = stdin if isinstance(stdin, dict) else {}
    rec = config.get("recorder")
    recorder: dict[str, object] = rec if isinstance(rec, dict) else {}

    log = recorder.get("log") or os.environ.get("RECORDER_LOG")
    if log:
        record(str(log), verb, stdin, argv0)

    instr = recorder.get(verb)
    todo: dict[str, object] = instr if isinstance(instr, dict) else {}

    if "sleep" in todo:
        time.sleep(float(str(todo["sleep"])))
    if "signal" in todo:
        os.kill(os.getpid(), _signal_number(str(todo["signal"])))
        time.sleep(60)  # the signal arrives asynchronously
    if "stderr" in todo:
        sys.stderr.write(str(todo["stderr"]))
        sys.stderr.flush()

    exit_default = 0
    out: bytes
    if "result" in todo:
        out = json.dumps(todo["result"]).encode()
    elif "error" in todo:
        out = json.dumps(todo["error"]).encode()
        exit_default = 1
    elif "stdout" in todo:
        out = str(todo["stdout"]).encode()
    elif "stdout_bytes_hex" in todo:
        out = bytes.fromhex(str(todo["stdout_bytes_hex"]))
    elif verb == "ADD":
        out = json.dumps(default_add_result(config)).encode()
    elif verb == "VERSION":
        versions = supported_versions(recorder, argv0)
        current = versions[-1] if versions else "1.1.0"
        out = json.dumps({"cniVersion": current, "supportedVersions": versions}).encode()
    else:
        out = b""
    if "stdout_size" in todo:
        out = out.ljust(int(str(todo["stdout_size"])), b" ")

    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    return int(str(todo.get("exit", exit_default)))


if __name__ == "__main__":
    sys.exit(main())
