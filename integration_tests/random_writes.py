"""Seeded random writes through the emulator's control API (`POST /_emulator/transaction`),
shaped to catch a read that sends more than one revision of a document: the same document
changed many times between two reads, updated then deleted, inserted then deleted, several
changes of one document inside one transaction, component tables as well as root tables.

Every document has the same fields with the same types (`name` string, `v` float64 with at
most 3 decimals, `flag` boolean, optional `note` string), present from the first insert, so
the catalog PyAirbyte discovers once fits every later revision and each value survives its
cache column (`number` is DECIMAL(38,9) there) exactly.

The op sequence is a function of the seed alone. The writer keeps its own set of live ids
(only it writes), so choices never depend on reading the emulator.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from emulator import stream_name

# (component, table): two root tables and two component tables, one of them sharing its
# name with a root table (betterAuth/users vs users).
TABLES = (("", "users"), ("", "messages"), ("betterAuth", "users"), ("betterAuth", "sessions"))

Request = Callable[..., Any]  # request(method, path, body) -> decoded JSON (emulator.Control)

STREAMS = tuple(stream_name(c, t) for c, t in TABLES)

# Small pages for the deployment under test: every read spans many snapshot and deltas pages
# (a STATE after each), so revisions of one document fall on different pages of one read;
# a little latency leaves room for writes while a read runs.
EMULATOR_SETTINGS = {"snapshot_page_limit": 4, "deltas_page_limit": 6, "latency_ms": 2}


class Writer:
    """Random transactions against one emulator; thread-safe (one lock per transaction)."""

    def __init__(self, request: Request, seed: int):
        self.request = request
        self.rng = random.Random(seed)
        self.live: dict = {t: [] for t in TABLES}
        self.lock = threading.Lock()
        self.transactions = 0
        self.counter = 0
        self.commit_ts: list = []  # every commit's ts, in order

    # -- documents --------------------------------------------------------------------------
    def _doc(self, rng: random.Random, note: bool | None = None) -> dict:
        self.counter += 1
        doc = {"name": f"doc-{self.counter}-{rng.randrange(10**6)}",
               "v": rng.randrange(-10**7, 10**7) / 1000.0,
               "flag": rng.random() < 0.5}
        if rng.random() < 0.6 if note is None else note:
            doc["note"] = rng.choice(["", "ünïcödé ✓", "a\"quote", "x" * rng.randrange(1, 40)])
        return doc

    def _patch_fields(self, rng: random.Random) -> dict:
        fields = {"v": rng.randrange(-10**7, 10**7) / 1000.0}
        if rng.random() < 0.3:
            fields["name"] = f"patched-{rng.randrange(10**6)}"
        if rng.random() < 0.2:
            fields["flag"] = rng.random() < 0.5
        return fields

    # -- one transaction ----------------------------------------------------------------------
    def commit(self, ops: list) -> dict:
        """Commits `ops` and updates the live-id model from the answer."""
        result = self.request("POST", "/_emulator/transaction", {"ops": ops})
        self.commit_ts.append(result["ts"])
        ids = iter(result.get("ids", []))
        for op in ops:
            key = (op.get("component", ""), op["table"])
            if op["op"] == "insert":
                self.live[key].append(next(ids))
            elif op["op"] == "delete":
                self.live[key].remove(op["id"])
        self.transactions += 1
        return result

    def insert_initial(self, per_table: int) -> None:
        with self.lock:
            for comp, table in TABLES:
                # Every field in every first document: the discovered schema has them all.
                self.commit([{"op": "insert", "component": comp, "table": table,
                              "doc": self._doc(self.rng, note=True)} for _ in range(per_table)])

    def _pick(self, rng: random.Random, exclude: set | None = None):
        """A random live (table, id), or None when every table is empty."""
        keys = [k for k in TABLES if any(i not in (exclude or set()) for i in self.live[k])]
        if not keys:
            return None
        key = rng.choice(keys)
        return key, rng.choice([i for i in self.live[key] if i not in (exclude or set())])

    def _op(self, kind: str, key, _id: str | None = None, rng=None) -> dict:
        comp, table = key
        op = {"op": kind, "component": comp, "table": table}
        if _id is not None:
            op["id"] = _id
        if kind == "insert" or kind == "replace":
            op["doc"] = self._doc(rng)
        elif kind == "patch":
            op["fields"] = self._patch_fields(rng)
            if rng.random() < 0.15:
                op["remove"] = ["note"]
        return op

    def step(self, rng: random.Random | None = None) -> int:
        """One random pattern (one or more transactions). Returns the transactions done."""
        rng = rng or self.rng
        with self.lock:
            before = self.transactions
            pattern = rng.choices(
                ["single", "hot", "update_delete", "insert_delete", "mixed_tx", "insert"],
                weights=[30, 20, 10, 10, 15, 15])[0]
            picked = self._pick(rng)
            if picked is None or pattern == "insert":
                key = rng.choice(TABLES)
                self.commit([self._op("insert", key, rng=rng)])
            elif pattern == "single":
                key, _id = picked
                kind = rng.choices(["patch", "replace", "delete"], weights=[5, 3, 2])[0]
                self.commit([self._op(kind, key, _id, rng)])
            elif pattern == "hot":
                # The same document many times between two reads, one transaction each.
                key, _id = picked
                for _ in range(rng.randrange(2, 7)):
                    self.commit([self._op(rng.choice(["patch", "replace"]), key, _id, rng)])
            elif pattern == "update_delete":
                key, _id = picked
                self.commit([self._op("patch", key, _id, rng)])
                self.commit([self._op("delete", key, _id)])
            elif pattern == "insert_delete":
                key = rng.choice(TABLES)
                _id = self.commit([self._op("insert", key, rng=rng)])["ids"][0]
                if rng.random() < 0.5:
                    self.commit([self._op("patch", key, _id, rng)])
                self.commit([self._op("delete", key, _id)])
            else:
                # One transaction: a document patched twice, others changed, one inserted.
                key, _id = picked
                ops = [self._op("patch", key, _id, rng), self._op("patch", key, _id, rng)]
                other = self._pick(rng, exclude={_id})
                if other is not None:
                    okey, oid = other
                    ops.append(self._op(rng.choice(["replace", "delete"]), okey, oid, rng))
                ops.append(self._op("insert", rng.choice(TABLES), rng=rng))
                self.commit(ops)
            return self.transactions - before

    def steps(self, n: int, rng: random.Random | None = None) -> int:
        return sum(self.step(rng) for _ in range(n))


class Background:
    """Runs `steps` random patterns of `writer` on a thread, `pause` seconds apart, with its
    own seeded RNG, once `gate()` is true (e.g. the connector has made its first request).
    Always runs all of them, and the caller joins before writing again, so the op sequence
    stays a function of the seed; where they land relative to a read is up to timing.
    `commit_ts` holds their commit timestamps; `join()` re-raises a failure."""

    def __init__(self, writer: Writer, seed: int, steps: int, pause: float,
                 gate: Callable[[], bool] | None = None):
        self.writer = writer
        self.rng = random.Random(seed)
        self.steps = steps
        self.pause = pause
        self.gate = gate
        self.error: BaseException | None = None
        self.commit_ts: list = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            deadline = time.monotonic() + 60
            while self.gate is not None and not self.gate():
                if time.monotonic() > deadline:
                    raise TimeoutError("the gate of the background writer stayed shut 60 s")
                time.sleep(0.002)
            first = len(self.writer.commit_ts)
            for _ in range(self.steps):
                time.sleep(self.pause)
                self.writer.step(self.rng)
            self.commit_ts = self.writer.commit_ts[first:]
        except BaseException as e:  # noqa: BLE001  (reported by join)
            self.error = e

    def start(self) -> Background:
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(timeout=120)
        if self.thread.is_alive():
            raise RuntimeError("background writer did not finish in 120 s")
        if self.error is not None:
            raise RuntimeError(f"background writer failed: {self.error!r}") from self.error


def connector_started(request: Request) -> Callable[[], bool]:
    """A gate that opens once the emulator has served an `/api/` request more than it had
    when this was called: the connector's read has begun."""
    baseline = request("GET", "/_emulator/requests")["total"]
    return lambda: request("GET", "/_emulator/requests")["total"] > baseline
