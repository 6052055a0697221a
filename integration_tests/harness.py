"""The one way the Python suite runs the connector binary: where the binaries are, the
`Connector` (spec/check/discover/read with config, catalog and state files written read-only
as PyAirbyte writes them; the whole output captured, or streamed line by line and cut off),
and what a run gives back (`Run`: exit code, stdout, stderr, the messages).

Binary locations come from env vars so packaging can switch the release build to another
target directory: SOURCE_CONVEX_BIN, CONVEX_EMULATOR_BIN (default target/release/...), and
SOURCE_CONVEX_WHEEL (default: the wheel in target/wheels/).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
IT_DIR = Path(__file__).resolve().parent

# The fixed loopback port of the emulator that integration_tests/config.json points at
# (used by the airbyte-cdk standard tests, which read that file).
FIXED_PORT = 18731
FIXED_ACCESS_KEY = "it-access-key-7c2f9d41e8"
CONNECTOR_TIMEOUT = float(os.environ.get("SOURCE_CONVEX_TEST_TIMEOUT", "300"))


def _bin(env_var: str, name: str) -> Path:
    value = os.environ.get(env_var)
    path = Path(value) if value else REPO_ROOT / "target" / "release" / name
    return path.resolve()


def connector_bin() -> Path:
    return _bin("SOURCE_CONVEX_BIN", "source-convex")


def emulator_bin() -> Path:
    return _bin("CONVEX_EMULATOR_BIN", "convex-emulator")


def connector_wheel() -> Path:
    """The release wheel (scripts/build-wheel.sh): $SOURCE_CONVEX_WHEEL, else the one wheel of
    the crate's version in target/wheels/."""
    value = os.environ.get("SOURCE_CONVEX_WHEEL")
    if value:
        return Path(value).resolve()
    wheels = sorted((REPO_ROOT / "target" / "wheels").glob(
        f"airbyte_source_convex-{crate_version()}-py3-none-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel in target/wheels, found {wheels} "
                           "(run scripts/build-wheel.sh or set SOURCE_CONVEX_WHEEL)")
    return wheels[0]


def crate_version() -> str:
    """`version` of the root crate's [package] in Cargo.toml (the wheel carries the same)."""
    in_package = False
    for line in (REPO_ROOT / "Cargo.toml").read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            in_package = line.strip() == "[package]"
        elif in_package and line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    raise RuntimeError("no [package] version in Cargo.toml")


def require_binaries() -> None:
    missing = [str(p) for p in (connector_bin(), emulator_bin()) if not os.access(p, os.X_OK)]
    if missing:
        raise RuntimeError(
            "binaries not built: " + ", ".join(missing)
            + " (run `cargo build --release --workspace` or set SOURCE_CONVEX_BIN / "
            "CONVEX_EMULATOR_BIN)")


def write_json(path: Path, value: Any, *, mode: int = 0o444) -> Path:
    path.write_text(json.dumps(value))
    path.chmod(mode)
    return path


def stream_key(descriptor: dict) -> str:
    """The stream a STATE's `stream_descriptor` names (its name: components are in it)."""
    return descriptor["name"]


@dataclass
class Run:
    """One run of the binary. `cut`: stdout was read only up to a point and the process
    killed there (`Connector.stream`); `stdout` then holds the lines read."""
    argv: list
    exit_code: int
    stdout: bytes
    stderr: bytes
    seconds: float
    cut: bool = False

    @property
    def messages(self) -> list:
        return [json.loads(line) for line in self.stdout.decode().splitlines() if line.strip()]

    def of_type(self, type_: str) -> list:
        return [m for m in self.messages if m.get("type") == type_]

    def states(self) -> dict:
        """{stream: stream_state of its last STATE}."""
        return {stream_key(m["state"]["stream"]["stream_descriptor"]):
                m["state"]["stream"]["stream_state"] for m in self.of_type("STATE")}

    def state_input(self, previous: list | None = None) -> list:
        """The `--state` to resume from: the last STATE of every stream that has one here,
        else the one of `previous` (the state this run started with)."""
        by_stream = {stream_key(s["stream"]["stream_descriptor"]): s for s in previous or []}
        for m in self.of_type("STATE"):
            by_stream[stream_key(m["state"]["stream"]["stream_descriptor"])] = {
                "type": "STREAM", "stream": m["state"]["stream"]}
        return list(by_stream.values())

    def records_per_id(self) -> dict:
        """{(stream, _id): how many records of it this run sent}."""
        counts: dict = {}
        for m in self.of_type("RECORD"):
            key = (m["record"]["stream"], m["record"]["data"]["_id"])
            counts[key] = counts.get(key, 0) + 1
        return counts

    def describe(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit={self.exit_code} ({self.seconds:.2f}s)"
                f"{' cut' if self.cut else ''}\n"
                f"--- stdout (tail) ---\n{self.stdout[-3000:].decode('utf-8', 'replace')}\n"
                f"--- stderr (tail) ---\n{self.stderr[-3000:].decode('utf-8', 'replace')}")


class Streaming:
    """A run whose stdout is read line by line (`lines()`); `cut()` stops reading there and
    kills the process (`drop_last`: the line just read is not part of the run: it came after
    the cut). Ends killed after `timeout` s in any case, so a hung run fails, never blocks.
    `run` is the Run once the `with` block is left."""

    def __init__(self, argv: list, timeout: float, tmp: Path):
        self.argv = argv
        self.timeout = timeout
        self.tmp = tmp
        self.read: list = []
        self.run: Run | None = None
        self._cut = False

    def lines(self) -> Iterator[bytes]:
        for raw in self.proc.stdout:
            self.read.append(raw)
            yield raw
            if self._cut:
                return

    def cut(self, drop_last: bool = False) -> None:
        self._cut = True
        if drop_last and self.read:
            self.read.pop()

    def __enter__(self) -> Streaming:
        self.start = time.monotonic()
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="stderr-")
        self.stderr_path = Path(name)
        with os.fdopen(fd, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=err)
        self.watchdog = threading.Timer(self.timeout, self.proc.kill)
        self.watchdog.start()
        return self

    def __exit__(self, exc_type, *exc: Any) -> None:
        try:
            if self._cut or exc_type is not None:
                self.proc.kill()
            self.proc.stdout.close()
            code = self.proc.wait()
        finally:
            self.watchdog.cancel()
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.run = Run(self.argv, code, b"".join(self.read), self.stderr_path.read_bytes(),
                       time.monotonic() - self.start, cut=self._cut)


class Connector:
    """Runs the binary with files under `tmp`: `config` (a dict, written once, or a path),
    catalogs and states (dicts/lists are written as JSON, strings as they are, paths taken
    as they are), each file read-only, as PyAirbyte hands them over."""

    def __init__(self, tmp: Path, config: dict | Path | None = None,
                 binary: Path | None = None):
        self.tmp = tmp
        self.binary = Path(binary or connector_bin())
        self.n = 0
        self.config_path = None if config is None else self.file("config", config)

    def file(self, stem: str, value: Any, *, suffix: str = ".json") -> Path:
        """`value` as a read-only file: a Path as it is, a str as its text, else as JSON."""
        if isinstance(value, Path):
            return value
        self.n += 1
        path = self.tmp / f"{stem}-{self.n}{suffix}"
        if isinstance(value, str):
            path.write_text(value)
            path.chmod(0o444)
            return path
        return write_json(path, value)

    def args(self, command: str, *, config: Any = None, catalog: Any = None,
             state: Any = None, extra: Sequence[str] = ()) -> list:
        """The argv of `command` (without the binary): `--config` (this connector's unless
        given; none for spec), `--catalog` and `--state` when given, then `extra`."""
        args = [command]
        if command != "spec":
            args += ["--config", str(self.file("config", config) if config is not None
                                     else self.config_path)]
        if catalog is not None:
            args += ["--catalog", str(self.file("catalog", catalog))]
        if state is not None:
            args += ["--state", str(self.file("state", state, suffix=state_suffix(state)))]
        return args + list(extra)

    def run(self, args: Sequence[Any], *, timeout: float | None = None,
            env: dict | None = None) -> Run:
        """The binary with `args`, its whole output captured."""
        argv = [str(self.binary), *map(str, args)]
        start = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL,
                              timeout=timeout or CONNECTOR_TIMEOUT,
                              env={**os.environ, **(env or {})})
        return Run(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)

    def command(self, command: str, **files: Any) -> Run:
        """spec, check, discover or read (`config=`, `catalog=`, `state=`, `extra=`)."""
        return self.run(self.args(command, **files))

    def discovered(self, config: Any = None) -> dict:
        """The catalog `discover` prints (the run must succeed)."""
        run = self.command("discover", config=config)
        catalogs = run.of_type("CATALOG")
        assert run.exit_code == 0 and len(catalogs) == 1, run.describe()
        return catalogs[0]["catalog"]

    @contextmanager
    def stream(self, command: str, *, timeout: float | None = None,
               **files: Any) -> Iterator[Streaming]:
        """`command` with its stdout read line by line (`with c.stream("read", ...) as s:
        for raw in s.lines(): ... s.cut()`); `s.run` after the block."""
        argv = [str(self.binary), *self.args(command, **files)]
        with Streaming(argv, timeout or CONNECTOR_TIMEOUT, self.tmp) as s:
            yield s


def state_suffix(state: Any) -> str:
    """PyAirbyte names its state files `.txt`; a state given as text is written as such."""
    return ".txt" if isinstance(state, str) else ".json"


def run_connector(args: Sequence[Any], *, timeout: float | None = None,
                  env: dict | None = None) -> Run:
    """The binary with `args` (paths as they are), its whole output captured."""
    return Connector(Path(tempfile.gettempdir())).run(args, timeout=timeout, env=env)


def configured_catalog(discovered: dict, sync_mode: str = "incremental",
                       destination_sync_mode: str = "append_dedup",
                       names: Sequence[str] | None = None) -> dict:
    """A ConfiguredAirbyteCatalog for the discovered streams, like the platform builds it."""
    streams = []
    for stream in discovered["streams"]:
        if names is not None and stream["name"] not in names:
            continue
        entry = {"stream": stream, "sync_mode": sync_mode,
                 "destination_sync_mode": destination_sync_mode,
                 "primary_key": stream.get("source_defined_primary_key") or [["_id"]]}
        if sync_mode == "incremental":
            entry["cursor_field"] = stream.get("default_cursor_field") or ["_ts"]
        streams.append(entry)
    return {"streams": streams}


def values_match(a: Any, b: Any, ulps: int = 0) -> bool:
    """Deep equality, strict about types (1 != 1.0 != True); floats may differ by `ulps` ULPs
    (0 = exact: GET /_emulator/documents must give the very values list_snapshot sends)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, float) or not isinstance(b, float):
            return False  # 1 and 1.0 are different JSON texts
        return abs(a - b) <= ulps * math.ulp(max(abs(a), abs(b)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_match(a[k], b[k], ulps) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_match(x, y, ulps) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def strict(ulps: int = 0) -> Callable[[Any, Any], bool]:
    """`values_match` with `ulps` as an `equal(expected, got)` for the oracle."""
    return lambda expected, got: values_match(expected, got, ulps)
