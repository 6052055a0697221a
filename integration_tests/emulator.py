"""The one Python client of `convex-emulator`: start the binary (`Emulator`), and its control
API under `/_emulator/` (`Control`): writes, generated changes, documents (live or as of a
timestamp, in either column encoding), tables, faults, settings, request counts.

Everything that talks to an emulator goes through here: the pytest process, the PyAirbyte
drivers in their own interpreters (`Control(url)`), scripts/quickstart.py and the benchmark
(bench/bench.py, bench/profile.sh).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

COLUMN_TYPES = ("typed", "legacy")


def stream_name(component: str, table: str) -> str:
    """The stream of a table: `component/table`, or the table's name at the root."""
    return f"{component}/{table}" if component else table


def table_of(stream: str) -> tuple[str, str]:
    """(component, table) of a stream name (the inverse of `stream_name`)."""
    component, _, table = stream.rpartition("/")
    return component, table


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


class Control:
    """The control API of the emulator at `url` (no proxy, JSON in and out)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

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

    __call__ = request  # a Control is the `request(method, path, body)` callable others take

    # -- writes ---------------------------------------------------------------------------------
    def transaction(self, ops: list) -> dict:
        return self.request("POST", "/_emulator/transaction", {"ops": ops})

    def changes(self, count: int, seed: int = 7) -> Any:
        return self.request("POST", "/_emulator/changes", {"count": count, "seed": seed})

    # -- reads ----------------------------------------------------------------------------------
    def documents(self, component: str, table: str, *, ts: int | None = None,
                  column_types: str = "typed") -> dict:
        """{_id: document} of one table, live (`ts` None) or as of `ts`, as records of
        `column_types` carry it: `legacy` Convex's `json` encoding (int64 and bytes as
        strings, NaN as "NaN"); `typed` the `export_json` encoding through `typed_truth`."""
        q = {"component": component, "table": table}
        if ts is not None:
            q["ts"] = str(ts)
        if column_types == "typed":
            q["format"] = "export_json"
        docs = self.request("GET", f"/_emulator/documents?{urlencode(q)}")["documents"]
        if column_types == "typed":
            docs = [typed_truth(d) for d in docs]
        return {d["_id"]: d for d in docs}

    def tables(self) -> list:
        """[(component, table)] from GET /_emulator/tables, tolerant of a few response shapes."""
        data = self.request("GET", "/_emulator/tables")
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

    def streams(self) -> list:
        return [stream_name(c, t) for c, t in self.tables()]

    def live(self, column_types: str = "typed") -> dict:
        """{stream: {_id: document}} of every table, live."""
        return {stream_name(c, t): self.documents(c, t, column_types=column_types)
                for c, t in self.tables()}

    def head(self) -> int:
        return self.request("GET", "/_emulator/head")["head"]

    # -- faults, settings, request counts -------------------------------------------------------
    def add_fault(self, fault: dict) -> Any:
        return self.request("POST", "/_emulator/faults", fault)

    def clear_faults(self) -> Any:
        return self.request("DELETE", "/_emulator/faults")

    def settings(self, settings: dict) -> Any:
        return self.request("POST", "/_emulator/settings", settings)

    def requests_made(self, log: bool = False) -> dict:
        return self.request("GET", "/_emulator/requests" + ("?log=true" if log else ""))

    def reset_requests(self) -> Any:
        return self.request("POST", "/_emulator/requests/reset", {})


class Emulator(Control):
    """A `convex-emulator` process (use as a context manager or call stop())."""

    def __init__(self, binary: Path, *, tables: int = 2, docs: int = 20, doc_size: int = 0,
                 deltas: int = 0, components: bool = False, seed: int = 1, port: int = 0,
                 access_key: str | None = None, faults: Sequence[dict] = (),
                 extra_args: Sequence[str] = (), log_dir: Path | None = None,
                 startup_timeout: float = 30):
        """`doc_size`: about how many bytes each generated document takes (0: the emulator's
        default). `startup_timeout`: seconds to generate the data and announce itself (a
        million documents take minutes)."""
        args = [str(binary), "--port", str(port), "--tables", str(tables),
                "--docs", str(docs), "--seed", str(seed)]
        if doc_size:
            args += ["--doc-size", str(doc_size)]
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
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115  (closed by stop())
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr)
        try:
            info = json.loads(self._read_line(timeout=startup_timeout))
            super().__init__(info["url"])
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

    def config(self, **extra: Any) -> dict:
        """A connector config for this deployment."""
        return {"deployment_url": self.url, "access_key": self.access_key, **extra}

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):  # killed below if it does not stop
                self.request("POST", "/_emulator/shutdown", {}, timeout=5)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
