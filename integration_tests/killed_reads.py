"""Reads at the message level: the binary run directly, cut off after its k-th STATE (the
destination got everything up to there, plus a few records it never saw checkpointed), and
a model destination that applies records in order per `_id`, as a deduplicating
destination does.

What a killed attempt leaves in the model, per stream: its records up to the stream's last
STATE, and the records after that STATE too (delivered, not checkpointed; the resumed read
starts at that STATE and covers them again). A stream with no STATE at all contributes
nothing: its resumed read is a fresh snapshot, which cannot tell of documents deleted in
between, so a destination must not keep such uncheckpointed rows (Airbyte commits a stream's
records with its checkpoints).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness import connector_bin


def stream_key(desc: dict) -> str:
    return desc["name"]


@dataclass
class Attempt:
    messages: list
    cut: bool  # stopped reading before the end of the output
    returncode: int
    stderr: str

    def states(self) -> dict:
        """{stream: stream_state of its last STATE}."""
        out = {}
        for m in self.messages:
            if m["type"] == "STATE":
                out[stream_key(m["state"]["stream"]["stream_descriptor"])] = \
                    m["state"]["stream"]["stream_state"]
        return out

    def state_input(self, previous: Optional[list] = None) -> list:
        """The `--state` to resume from: the last STATE of every stream that has one here,
        else the one it was started with."""
        by_stream = {stream_key(s["stream"]["stream_descriptor"]): s for s in previous or []}
        for m in self.messages:
            if m["type"] == "STATE":
                by_stream[stream_key(m["state"]["stream"]["stream_descriptor"])] = {
                    "type": "STREAM", "stream": m["state"]["stream"]}
        return list(by_stream.values())

    def records_per_id(self) -> dict:
        """{(stream, _id): records of it in this attempt}."""
        counts: dict = {}
        for m in self.messages:
            if m["type"] == "RECORD":
                key = (m["record"]["stream"], m["record"]["data"]["_id"])
                counts[key] = counts.get(key, 0) + 1
        return counts


def run_attempt(tmp: Path, config: Path, catalog: Path, state: Optional[list], *,
                kill_after_states: Optional[int] = None, extra_records: int = 0,
                timeout: float = 120) -> Attempt:
    """Runs `read`; with `kill_after_states`, stops reading after that many STATE lines and
    `extra_records` further RECORD lines (or fewer, when another kind of line comes first),
    and kills the process. Killed after `timeout` s
    in any case."""
    args = [str(connector_bin()), "read", "--config", str(config), "--catalog", str(catalog)]
    if state is not None:
        with tempfile.NamedTemporaryFile("w", dir=tmp, prefix="state-", suffix=".json",
                                         delete=False) as f:
            json.dump(state, f)
        args += ["--state", f.name]
    with tempfile.NamedTemporaryFile("wb", dir=tmp, prefix="stderr-", delete=False) as err:
        err_path = Path(err.name)
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err)
        messages, states, left, cut = [], 0, None, False
        watchdog = threading.Timer(timeout, proc.kill)  # a hung read fails, never blocks
        watchdog.start()
        try:
            for raw in proc.stdout:
                msg = json.loads(raw)
                if left is not None and msg["type"] != "RECORD":
                    # Fewer records than `extra_records` before the next checkpoint or status
                    # (a change walk's STATEs come together after its records): kill here.
                    cut = True
                    break
                messages.append(msg)
                if msg["type"] == "STATE":
                    states += 1
                    if kill_after_states is not None and states == kill_after_states:
                        left = extra_records
                elif msg["type"] == "RECORD" and left is not None:
                    left -= 1
                if left is not None and left <= 0:
                    cut = True
                    break
        finally:
            if cut:
                proc.kill()
            proc.stdout.close()
            rc = proc.wait()
            watchdog.cancel()
    return Attempt(messages, cut, rc, err_path.read_text(errors="replace"))


@dataclass
class ModelDestination:
    """{stream: {_id: record data}}: the last record of each `_id` wins (in delivery order)."""
    tables: dict = field(default_factory=dict)

    def apply(self, attempt: Attempt) -> None:
        last_state: dict = {}
        for i, m in enumerate(attempt.messages):
            if m["type"] == "STATE":
                last_state[stream_key(m["state"]["stream"]["stream_descriptor"])] = i
        for m in attempt.messages:
            if m["type"] != "RECORD":
                continue
            stream = m["record"]["stream"]
            if attempt.cut and stream not in last_state:
                continue  # never checkpointed: see the module docstring
            self.tables.setdefault(stream, {})[m["record"]["data"]["_id"]] = m["record"]["data"]

    def rows(self, stream: str) -> list:
        return list(self.tables.get(stream, {}).values())
