"""Test harness: binary locations, the Convex emulator process and its control API, and
running the connector binary.

Binary locations come from env vars so packaging can switch the release build to another
target directory: SOURCE_CONVEX_BIN, CONVEX_EMULATOR_BIN (default target/release/...), and
SOURCE_CONVEX_WHEEL (default: the wheel in target/wheels/).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

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


class Emulator:
    """A `convex-emulator` process. Use as a context manager or call stop()."""

    def __init__(self, *, tables: int = 2, docs: int = 20, deltas: int = 0,
                 components: bool = False, seed: int = 1, port: int = 0,
                 access_key: Optional[str] = None, faults: Sequence[dict] = (),
                 extra_args: Sequence[str] = (), log_dir: Optional[Path] = None):
        args = [str(emulator_bin()), "--port", str(port), "--tables", str(tables),
                "--docs", str(docs), "--seed", str(seed)]
        if deltas:
            args += ["--deltas", str(deltas)]
        if components:
            args.append("--components")
        if access_key:
            args += ["--access-key", access_key]
        for fault in faults:
            args += ["--fault", json.dumps(fault)]
        args += list(extra_args)
        self.args = args
        log_dir = log_dir or Path(tempfile.mkdtemp(prefix="convex-emulator-"))
        self.stderr_path = log_dir / f"emulator-{os.getpid()}-{time.monotonic_ns()}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr)
        try:
            line = self._read_line(timeout=30)
            info = json.loads(line)
            self.url: str = info["url"].rstrip("/")
            self.access_key: str = info["access_key"]
        except Exception:
            self.stop()
            raise

    def _read_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"emulator did not announce itself: {self.args} "
                                   f"stderr={self.stderr_tail()}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise RuntimeError(f"emulator exited ({self.proc.wait()}) before announcing: "
                                       f"{self.args} stderr={self.stderr_tail()}")
                buf += chunk
        return buf.split(b"\n", 1)[0].decode()

    def stderr_tail(self, n: int = 2000) -> str:
        try:
            return self.stderr_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    # -- config helpers ---------------------------------------------------------------------
    def config(self, **extra: Any) -> dict:
        return {"deployment_url": self.url, "access_key": self.access_key, **extra}

    # -- control API --------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path} -> {e.code}: {e.read()[:500]!r}") from e
        return json.loads(raw) if raw.strip() else None

    def transaction(self, ops: list) -> dict:
        return self.request("POST", "/_emulator/transaction", {"ops": ops})

    def changes(self, count: int, seed: int = 7) -> Any:
        return self.request("POST", "/_emulator/changes", {"count": count, "seed": seed})

    def documents(self, table: str, component: str = "", column_types: str = "legacy") -> list:
        """The live documents as records of `column_types` carry them: `legacy` Convex's
        `json` encoding; `typed` the `export_json` one converted (`typed_truth`)."""
        from urllib.parse import urlencode
        q = {"table": table, "component": component}
        if column_types == "typed":
            q["format"] = "export_json"
        docs = self.request("GET", f"/_emulator/documents?{urlencode(q)}")["documents"]
        return [typed_truth(d) for d in docs] if column_types == "typed" else docs

    def tables(self) -> Any:
        return self.request("GET", "/_emulator/tables")

    def add_fault(self, fault: dict) -> Any:
        return self.request("POST", "/_emulator/faults", fault)

    def clear_faults(self) -> Any:
        return self.request("DELETE", "/_emulator/faults")

    def requests_made(self) -> dict:
        return self.request("GET", "/_emulator/requests")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request("POST", "/_emulator/shutdown", {}, timeout=5)
            except Exception:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> "Emulator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


COLUMN_TYPES = ("typed", "legacy")


def typed_truth(value: Any) -> Any:
    """An `export_json` document (or value) as `column_types: typed` records carry it:
    `{"$bytes": b}` -> b (base64 text), `{"$float": ...}` (NaN, ±Infinity) -> None; int64
    stays an exact integer, floats numbers."""
    if isinstance(value, dict):
        if len(value) == 1 and "$bytes" in value:
            return value["$bytes"]
        if len(value) == 1 and "$float" in value:
            return None
        return {k: typed_truth(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed_truth(v) for v in value]
    return value


def table_list(emulator: Emulator) -> list:
    """[(component, table)] from GET /_emulator/tables, tolerant of a few response shapes."""
    data = emulator.tables()
    if isinstance(data, dict):
        data = data.get("tables", data)
    out = []
    if isinstance(data, dict):  # {"component": ["t1", ...]} or {"t": ...}
        for comp, tables in data.items():
            if isinstance(tables, list):
                out += [(comp, t if isinstance(t, str) else t.get("table") or t.get("name"))
                        for t in tables]
            else:
                out.append(("", comp))
    else:
        for t in data:
            if isinstance(t, str):
                out.append(("", t))
            else:
                out.append((t.get("component", "") or "", t.get("table") or t.get("name")))
    return out


def stream_name(component: str, table: str) -> str:
    return f"{component}/{table}" if component else table


@dataclass
class Run:
    argv: list
    exit_code: int
    stdout: bytes
    stderr: bytes
    seconds: float

    @property
    def lines(self) -> list:
        return [json.loads(line) for line in self.stdout.decode().splitlines() if line.strip()]

    def describe(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit={self.exit_code} ({self.seconds:.2f}s)\n"
                f"--- stdout (tail) ---\n{self.stdout[-3000:].decode('utf-8', 'replace')}\n"
                f"--- stderr (tail) ---\n{self.stderr[-3000:].decode('utf-8', 'replace')}")


def run_connector(args: Sequence[str], *, timeout: Optional[float] = None,
                  env: Optional[dict] = None) -> Run:
    argv = [str(connector_bin()), *map(str, args)]
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=timeout or CONNECTOR_TIMEOUT,
                          env={**os.environ, **(env or {})})
    return Run(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def write_json(path: Path, value: Any, *, mode: int = 0o444) -> Path:
    path.write_text(json.dumps(value))
    path.chmod(mode)
    return path


def configured_catalog(discovered: dict, sync_mode: str = "incremental",
                       destination_sync_mode: str = "append_dedup",
                       names: Optional[Sequence[str]] = None) -> dict:
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
    import math
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, float) or not isinstance(b, float):
            return False  # 1 and 1.0 are different JSON texts
        return abs(a - b) <= ulps * math.ulp(max(abs(a), abs(b)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_match(a[k], b[k], ulps) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_match(x, y, ulps) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
