"""Strict checker for the stdout of an Airbyte source command.

The official protocol models make every payload optional (``{"type": "RECORD"}`` validates),
so on top of the pydantic-v2 models (``airbyte-protocol-models-pdv2``, strict mode) this module
checks what real consumers rely on: one compact JSON object per line, exactly one payload per
message, integer ``emitted_at`` on records, one SPEC / CONNECTION_STATUS / CATALOG per command,
draft-07 schemas, records only for configured streams and valid against their schema, per-stream
STATE with an exact ``recordCount``, a stream-status lifecycle ending in one terminal status per
configured stream, ``failure_type`` on every TRACE ERROR, exit code consistent with the failures
reported, and no secret anywhere in stdout or stderr.

Library use::

    report = check_output("read", stdout, stderr, exit_code,
                          configured_catalog=catalog, secrets=[config["access_key"]])
    report.raise_if_errors()

Command line (exit 0 = clean, 1 = problems found)::

    python checker.py read --stdout out.jsonl --stderr err.txt --exit-code 0 \
        --catalog catalog.json --secret "$KEY"
    python checker.py run --secret "$KEY" -- source-convex discover --config config.json
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema

try:  # pydantic-v2 official models (installed with PyAirbyte)
    from airbyte_protocol.models import AirbyteMessage as _PdAirbyteMessage
except Exception:  # noqa: BLE001  (pragma: no cover) the checker still works without them
    _PdAirbyteMessage = None

MESSAGE_TYPES = {
    "RECORD": "record",
    "STATE": "state",
    "LOG": "log",
    "SPEC": "spec",
    "CONNECTION_STATUS": "connectionStatus",
    "CATALOG": "catalog",
    "TRACE": "trace",
    "CONTROL": "control",
}
ALL_PAYLOAD_KEYS = set(MESSAGE_TYPES.values()) | {"destinationCatalog"}
TRACE_TYPES = {"ERROR": "error", "ESTIMATE": "estimate", "STREAM_STATUS": "stream_status",
               "ANALYTICS": "analytics"}
LOG_LEVELS = {"FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"}
FAILURE_TYPES = {"config_error", "system_error", "transient_error"}
STATUSES = {"STARTED", "RUNNING", "COMPLETE", "INCOMPLETE"}
TERMINAL = {"COMPLETE", "INCOMPLETE"}
SYNC_MODES = {"full_refresh", "incremental"}
COMMANDS = ("spec", "check", "discover", "read")
EXACTLY_ONE = {"spec": "SPEC", "check": "CONNECTION_STATUS", "discover": "CATALOG"}

# emitted_at is epoch milliseconds: anything below this is almost surely seconds (2001-09-09).
MIN_EPOCH_MS = 1_000_000_000_000
MAX_EPOCH_MS = 10_000_000_000_000


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _descriptor_key(descriptor: Any) -> tuple | None:
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("name"), str):
        return None
    namespace = descriptor.get("namespace")
    return (namespace or None, descriptor["name"])


def _fmt(key: tuple) -> str:
    namespace, name = key
    return f"{namespace}.{name}" if namespace else name


@dataclass
class Problem:
    line: int | None  # 1-based stdout line, None for whole-output problems
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass
class StreamTrack:
    statuses: list = field(default_factory=list)
    records: int = 0
    since_state: int = 0
    states: int = 0
    records_after_last_state: bool = False


@dataclass
class Report:
    command: str
    exit_code: int | None
    messages: list = field(default_factory=list)  # parsed dicts, in order
    errors: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    streams: dict = field(default_factory=dict)  # (namespace, name) -> StreamTrack

    @property
    def ok(self) -> bool:
        return not self.errors

    def of_type(self, type_: str) -> list:
        return [m for m in self.messages if m.get("type") == type_]

    @property
    def records(self) -> list:
        return [m["record"] for m in self.of_type("RECORD")]

    def records_by_stream(self) -> dict:
        out: dict = {}
        for rec in self.records:
            out.setdefault((rec.get("namespace") or None, rec["stream"]), []).append(rec["data"])
        return out

    @property
    def states(self) -> list:
        return [m["state"] for m in self.of_type("STATE")]

    def final_states(self) -> dict:
        out = {}
        for state in self.states:
            key = _descriptor_key((state.get("stream") or {}).get("stream_descriptor"))
            if key:
                out[key] = state["stream"].get("stream_state")
        return out

    @property
    def trace_errors(self) -> list:
        return [m["trace"]["error"] for m in self.of_type("TRACE")
                if isinstance(m.get("trace"), dict) and m["trace"].get("type") == "ERROR"
                and isinstance(m["trace"].get("error"), dict)]

    def terminal_statuses(self) -> dict:
        return {key: next((s for s in reversed(t.statuses) if s in TERMINAL), None)
                for key, t in self.streams.items()}

    def summary(self) -> str:
        lines = [f"{self.command}: exit={self.exit_code} messages={len(self.messages)} "
                 f"{dict(Counter(m.get('type') for m in self.messages))}"]
        lines += [f"ERROR {p}" for p in self.errors]
        lines += [f"WARN  {p}" for p in self.warnings]
        return "\n".join(lines)

    def raise_if_errors(self) -> None:
        if self.errors:
            raise AssertionError("protocol checker found problems:\n" + self.summary())


class _Checker:
    def __init__(self, command: str, exit_code: int | None, configured_catalog: dict | None,
                 secrets: Sequence[str], use_models: bool):
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}")
        self.r = Report(command=command, exit_code=exit_code)
        self.catalog = configured_catalog
        self.secrets = [s for s in secrets if s]
        self.use_models = use_models and _PdAirbyteMessage is not None
        self.configured: dict = {}  # key -> json_schema validator or None
        self.state_types: set = set()
        self.failure_reported = False
        self.line = 0

    # -- reporting -------------------------------------------------------------------------
    def err(self, message: str, line: int | None = -1) -> None:
        self.r.errors.append(Problem(self.line if line == -1 else line, message))

    def warn(self, message: str, line: int | None = -1) -> None:
        self.r.warnings.append(Problem(self.line if line == -1 else line, message))

    # -- configured catalog ----------------------------------------------------------------
    def load_catalog(self) -> None:
        if self.r.command != "read":
            return
        if self.catalog is None:
            self.warn("no configured catalog given: record/stream checks limited", None)
            return
        for entry in self.catalog.get("streams") or []:
            stream = (entry or {}).get("stream") or {}
            if not isinstance(stream.get("name"), str):
                continue  # an invalid catalog; the connector is expected to reject it
            key = (stream.get("namespace") or None, stream["name"])
            schema = stream.get("json_schema")
            validator = None
            if isinstance(schema, dict):
                try:
                    jsonschema.Draft7Validator.check_schema(schema)
                    validator = jsonschema.Draft7Validator(schema)
                except jsonschema.SchemaError as e:
                    self.warn(f"configured stream {_fmt(key)} has an invalid json_schema: "
                              f"{e.message}", None)
            self.configured[key] = validator

    # -- per line --------------------------------------------------------------------------
    def check_stdout(self, stdout: bytes) -> None:
        if stdout and not stdout.endswith(b"\n"):
            self.err("stdout does not end with a newline (last message unterminated)", None)
        lines = stdout.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for self.line, raw in enumerate(lines, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                self.err(f"not valid UTF-8: {e}")
                continue
            if text.endswith("\r"):
                self.err("line ends with CR")
                text = text[:-1]
            if not text.strip():
                self.err("empty line on stdout")
                continue
            try:
                msg = json.loads(text, parse_constant=self._reject_constant)
            except ValueError as e:
                self.err(f"not JSON ({e}): {text[:120]!r}")
                continue
            if not isinstance(msg, dict):
                self.err(f"JSON value is not an object: {text[:120]!r}")
                continue
            self.r.messages.append(msg)
            self.check_envelope(msg, text)
        self.line = 0

    @staticmethod
    def _reject_constant(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")

    def check_envelope(self, msg: dict, text: str) -> None:
        type_ = msg.get("type")
        if type_ not in MESSAGE_TYPES:
            self.err(f"unknown or missing message type {type_!r}")
            return
        payload_key = MESSAGE_TYPES[type_]
        extra = sorted(k for k in msg if k in ALL_PAYLOAD_KEYS and k != payload_key)
        if extra:
            self.err(f"{type_} message carries other payload keys {extra}")
        payload = msg.get(payload_key)
        if not isinstance(payload, dict):
            self.err(f"{type_} message has no object payload {payload_key!r}")
            return
        if self.use_models:
            try:
                _PdAirbyteMessage.model_validate_json(text, strict=True)
            except Exception as e:  # noqa: BLE001  (pydantic.ValidationError and its kin)
                first = str(e).splitlines()
                self.err(f"{type_} fails the official model: {' '.join(first[:3])}")
        getattr(self, f"on_{type_.lower()}")(payload)

    # -- payload checks ----------------------------------------------------------------------
    def on_spec(self, spec: dict) -> None:
        schema = spec.get("connectionSpecification")
        if not isinstance(schema, dict):
            self.err("SPEC without connectionSpecification object")
            return
        try:
            jsonschema.Draft7Validator.check_schema(schema)
        except jsonschema.SchemaError as e:
            self.err(f"connectionSpecification is not a valid draft-07 schema: {e.message}")

    def on_connection_status(self, status: dict) -> None:
        if status.get("status") not in ("SUCCEEDED", "FAILED"):
            self.err(f"CONNECTION_STATUS status {status.get('status')!r}")
        if status.get("status") == "FAILED" and not status.get("message"):
            self.warn("FAILED CONNECTION_STATUS without a message")

    def on_catalog(self, catalog: dict) -> None:
        streams = catalog.get("streams")
        if not isinstance(streams, list):
            self.err("CATALOG without streams list")
            return
        names = Counter()
        keys = Counter()
        for stream in streams:
            if not isinstance(stream, dict) or not isinstance(stream.get("name"), str):
                self.err("catalog stream without a name")
                continue
            name = stream["name"]
            names[name] += 1
            keys[(stream.get("namespace") or None, name)] += 1
            schema = stream.get("json_schema")
            if not isinstance(schema, dict):
                self.err(f"stream {name}: json_schema is not an object")
            else:
                try:
                    jsonschema.Draft7Validator.check_schema(schema)
                except jsonschema.SchemaError as e:
                    self.err(f"stream {name}: json_schema is not valid draft-07: {e.message}")
            modes = stream.get("supported_sync_modes")
            if not isinstance(modes, list) or not modes or not set(modes) <= SYNC_MODES:
                self.err(f"stream {name}: bad supported_sync_modes {modes!r}")
            if stream.get("source_defined_cursor") and not stream.get("default_cursor_field"):
                self.err(f"stream {name}: source_defined_cursor without default_cursor_field")
            pk = stream.get("source_defined_primary_key")
            if pk is not None and not (isinstance(pk, list) and all(
                    isinstance(p, list) and p and all(isinstance(x, str) for x in p) for p in pk)):
                self.err(f"stream {name}: source_defined_primary_key not a list of paths: {pk!r}")
        for name, n in names.items():
            if n > 1:
                self.err(f"stream name {name!r} appears {n} times in the catalog")
        for key, n in keys.items():
            if n > 1 and names[key[1]] <= 1:
                self.err(f"stream {_fmt(key)} appears {n} times in the catalog")

    def on_log(self, log: dict) -> None:
        if log.get("level") not in LOG_LEVELS:
            self.err(f"LOG level {log.get('level')!r}")
        if not isinstance(log.get("message"), str):
            self.err("LOG without string message")

    def on_control(self, control: dict) -> None:
        if control.get("type") != "CONNECTOR_CONFIG":
            self.err(f"CONTROL type {control.get('type')!r}")
        if not _is_number(control.get("emitted_at")):
            self.err("CONTROL emitted_at is not a number")
        if not isinstance((control.get("connectorConfig") or {}).get("config"), dict):
            self.err("CONTROL without connectorConfig.config")

    def on_record(self, rec: dict) -> None:
        if self.r.command != "read":
            self.err(f"RECORD emitted by {self.r.command}")
        if not isinstance(rec.get("stream"), str):
            self.err("RECORD without stream name")
            return
        if not _is_int(rec.get("emitted_at")):
            self.err(f"RECORD emitted_at is not an integer: {rec.get('emitted_at')!r}")
        elif not MIN_EPOCH_MS <= rec["emitted_at"] < MAX_EPOCH_MS:
            self.err(f"RECORD emitted_at {rec['emitted_at']} is not epoch milliseconds")
        ns = rec.get("namespace")
        if ns is not None and not isinstance(ns, str):
            self.err("RECORD namespace is neither string nor null")
        data = rec.get("data")
        if not isinstance(data, dict):
            self.err("RECORD data is not an object")
            return
        key = (ns or None, rec["stream"])
        track = self._configured_track("RECORD", key)
        if track is None:
            return
        track.records += 1
        track.since_state += 1
        track.records_after_last_state = True
        validator = self.configured.get(key)
        if validator is not None:
            problems = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
            if problems:
                p = problems[0]
                path = "/".join(str(x) for x in p.absolute_path) or "<root>"
                self.err(f"RECORD for {_fmt(key)} violates its json_schema at {path}: {p.message}"
                         + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))

    def on_state(self, state: dict) -> None:
        if self.r.command != "read":
            self.err(f"STATE emitted by {self.r.command}")
        stype = state.get("type")
        if stype is None or ("data" in state and state.get("data") is not None):
            self.err("LEGACY state emitted (no type / data field)")
        if stype is not None:
            self.state_types.add(stype)
        if stype != "STREAM":
            self.err(f"STATE type {stype!r}: only per-stream STREAM state is allowed")
            return
        stream = state.get("stream")
        key = _descriptor_key((stream or {}).get("stream_descriptor"))
        if key is None:
            self.err("STREAM state without stream.stream_descriptor.name")
            return
        if "stream_state" not in stream:
            self.err(f"STREAM state for {_fmt(key)} without stream_state")
        track = self._configured_track("STATE", key)
        if track is None:
            return
        count = (state.get("sourceStats") or {}).get("recordCount")
        if count is None:
            self.err(f"STATE for {_fmt(key)} without sourceStats.recordCount")
        elif not _is_number(count) or count < 0 or not math.isfinite(count) \
                or count != int(count):
            self.err(f"STATE for {_fmt(key)}: recordCount {count!r} is not a whole number >= 0")
        elif int(count) != track.since_state:
            self.err(f"STATE for {_fmt(key)}: recordCount {count!r} but {track.since_state} "
                     "records of that stream since its previous STATE")
        track.since_state = 0
        track.states += 1
        track.records_after_last_state = False

    def on_trace(self, trace: dict) -> None:
        ttype = trace.get("type")
        if ttype not in TRACE_TYPES:
            self.err(f"TRACE type {ttype!r}")
            return
        if not _is_number(trace.get("emitted_at")):
            self.err(f"TRACE emitted_at is not a number: {trace.get('emitted_at')!r}")
        sub = trace.get(TRACE_TYPES[ttype])
        if not isinstance(sub, dict):
            self.err(f"TRACE {ttype} without its {TRACE_TYPES[ttype]!r} object")
            return
        others = sorted(k for k in TRACE_TYPES.values()
                        if k != TRACE_TYPES[ttype] and trace.get(k) is not None)
        if others:
            self.err(f"TRACE {ttype} also carries {others}")
        if ttype == "ERROR":
            self.failure_reported = True
            if not isinstance(sub.get("message"), str) or not sub["message"]:
                self.err("TRACE ERROR without a message")
            ft = sub.get("failure_type")
            if ft is None:
                self.err("TRACE ERROR without failure_type")
            elif ft not in FAILURE_TYPES:
                self.err(f"TRACE ERROR failure_type {ft!r}")
        elif ttype == "STREAM_STATUS":
            self.on_stream_status(sub)
        elif ttype == "ESTIMATE" and sub.get("type") not in ("STREAM", "SYNC"):
            self.err(f"ESTIMATE type {sub.get('type')!r}")

    def on_stream_status(self, sub: dict) -> None:
        if self.r.command != "read":
            self.err(f"STREAM_STATUS emitted by {self.r.command}")
        key = _descriptor_key(sub.get("stream_descriptor"))
        status = sub.get("status")
        if key is None:
            self.err("STREAM_STATUS without stream_descriptor.name")
            return
        if status not in STATUSES:
            self.err(f"STREAM_STATUS for {_fmt(key)}: unknown status {status!r}")
            return
        if self.catalog is not None and key not in self.configured:
            self.err(f"STREAM_STATUS for stream {_fmt(key)} which is not in the configured catalog")
            return
        track = self._track(key)
        current = self._current_status(track)
        if current in TERMINAL:
            self.err(f"STREAM_STATUS {status} for {_fmt(key)} after terminal status {current}")
        elif status == "STARTED" and current is not None:
            self.err(f"STREAM_STATUS STARTED for {_fmt(key)} again (was {current})")
        elif status == "RUNNING" and current != "STARTED":
            self.err(f"STREAM_STATUS RUNNING for {_fmt(key)} after {current} (expected STARTED)")
        elif status == "COMPLETE" and current is None:
            self.err(f"STREAM_STATUS COMPLETE for {_fmt(key)} without STARTED")
        if status == "COMPLETE" and track.records_after_last_state:
            self.err(f"stream {_fmt(key)} COMPLETE with records after its last STATE")
        if status == "COMPLETE" and track.states == 0:
            self.err(f"stream {_fmt(key)} COMPLETE without any STATE (a final STATE is required)")
        if status == "INCOMPLETE":
            self.failure_reported = True
        track.statuses.append(status)

    def _configured_track(self, kind: str, key: tuple) -> StreamTrack | None:
        """The track of the stream a RECORD or STATE (`kind`) is for, which must be in the
        configured catalog (else None) and between its STARTED and its terminal status."""
        if self.catalog is not None and key not in self.configured:
            self.err(f"{kind} for stream {_fmt(key)} which is not in the configured catalog")
            return None
        track = self._track(key)
        status = self._current_status(track)
        if status is None:
            self.err(f"{kind} for {_fmt(key)} before its STARTED status")
        elif status in TERMINAL:
            self.err(f"{kind} for {_fmt(key)} after its terminal status {status}")
        return track

    def _track(self, key: tuple) -> StreamTrack:
        return self.r.streams.setdefault(key, StreamTrack())

    @staticmethod
    def _current_status(track: StreamTrack) -> str | None:
        return track.statuses[-1] if track.statuses else None

    # -- whole output ----------------------------------------------------------------------
    def finish(self, stderr: bytes) -> None:
        r = self.r
        counts = Counter(m.get("type") for m in r.messages)
        for cmd, type_ in EXACTLY_ONE.items():
            if r.command == cmd:
                if counts[type_] != 1 and not (counts[type_] == 0 and self.failure_reported):
                    self.err(f"{cmd}: expected exactly one {type_}, got {counts[type_]}", None)
            elif counts[type_]:
                self.err(f"{r.command}: unexpected {type_} message(s)", None)
        if r.command == "read":
            if len(self.state_types) > 1:
                self.err(f"mixed state types {sorted(self.state_types)}", None)
            for key in self.configured:
                track = r.streams.get(key)
                terminal = [s for s in (track.statuses if track else []) if s in TERMINAL]
                if len(terminal) != 1:
                    self.err(f"configured stream {_fmt(key)} has {len(terminal)} terminal "
                             "statuses (exactly one COMPLETE or INCOMPLETE required)", None)
                elif terminal[0] == "COMPLETE" and track.states == 0:
                    pass  # reported when COMPLETE arrived
        if r.exit_code is not None:
            if r.exit_code == 0 and self.failure_reported:
                self.err("exit code 0 although a failure was reported (TRACE ERROR or "
                         "INCOMPLETE stream)", None)
            if r.exit_code != 0 and not any(True for _ in r.trace_errors):
                self.err(f"exit code {r.exit_code} without any TRACE ERROR explaining it", None)
        for secret in self.secrets:
            if secret in self._stdout_text:
                self.err("a secret value appears on stdout", None)
            if secret.encode() in stderr:
                self.err("a secret value appears on stderr", None)

    def run(self, stdout: bytes, stderr: bytes) -> Report:
        self._stdout_text = stdout.decode("utf-8", "replace")
        self.load_catalog()
        self.check_stdout(stdout)
        self.finish(stderr)
        return self.r


def _as_bytes(data: Any) -> bytes:
    if data is None:
        return b""
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def check_output(command: str, stdout: Any, stderr: Any = b"", exit_code: int | None = None,
                 *, configured_catalog: dict | None = None, secrets: Iterable[str] = (),
                 use_models: bool = True) -> Report:
    """Check one command's output. ``stdout``/``stderr`` as bytes or str."""
    return _Checker(command, exit_code, configured_catalog, list(secrets), use_models).run(
        _as_bytes(stdout), _as_bytes(stderr))


def detect_command(argv: Sequence[str]) -> str:
    for arg in argv:
        if arg in COMMANDS:
            return arg
    raise ValueError(f"no Airbyte command in {list(argv)}")


def _catalog_from_argv(argv: Sequence[str]) -> dict | None:
    args = list(argv)
    if "--catalog" in args and args.index("--catalog") + 1 < len(args):
        with open(args[args.index("--catalog") + 1], encoding="utf-8") as f:
            return json.load(f)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=(*COMMANDS, "run"))
    parser.add_argument("--stdout", help="file with the command's stdout (default: stdin)")
    parser.add_argument("--stderr", help="file with the command's stderr")
    parser.add_argument("--exit-code", type=int)
    parser.add_argument("--catalog", help="configured catalog given to read")
    parser.add_argument("--secret", action="append", default=[], help="value that must not leak")
    parser.add_argument("--no-models", action="store_true", help="skip pydantic model validation")
    argv = list(sys.argv[1:] if argv is None else argv)
    run_argv: list = []
    if "--" in argv:  # `run ... -- CONNECTOR COMMAND LINE`
        run_argv = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    ns = parser.parse_args(argv)
    ns.argv = run_argv
    catalog = None
    if ns.catalog:
        with open(ns.catalog, encoding="utf-8") as f:
            catalog = json.load(f)
    if ns.command == "run":
        if not ns.argv:
            parser.error("run needs the connector command line after --")
        proc = subprocess.run(ns.argv, capture_output=True, stdin=subprocess.DEVNULL)
        command = detect_command(ns.argv)
        if catalog is None and command == "read":
            catalog = _catalog_from_argv(ns.argv)
        stdout, stderr, exit_code = proc.stdout, proc.stderr, proc.returncode
    else:
        command = ns.command
        if ns.stdout:
            with open(ns.stdout, "rb") as f:
                stdout = f.read()
        else:
            stdout = sys.stdin.buffer.read()
        stderr = b""
        if ns.stderr:
            with open(ns.stderr, "rb") as f:
                stderr = f.read()
        exit_code = ns.exit_code
    report = check_output(command, stdout, stderr, exit_code, configured_catalog=catalog,
                          secrets=ns.secret, use_models=not ns.no_models)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
