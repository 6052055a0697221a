#!/usr/bin/env python3
"""Benchmark driver for source-convex (run it through bench/run.sh).

Starts convex-emulator with generated deployments and, in one run, measures three programs
against the same pages:

  transfer-only  bench's minimal Rust client: pages and discards (the wire's limit here)
  ours           source-convex read --config C --catalog K [--state S] > file
  peer           Airbyte's Python source-convex 0.4.51 (same config/catalog/state)

Incremental scenarios run on both of Convex's APIs, interleaved in one run: the streaming
export API (list_snapshot + document_deltas) and Data Sync (POST /api/v1/data/sync, one sync
per stream); ours and transfer-only read through each, the peer through the streaming export
API only. Full refresh reads list_snapshot on either API and is measured once, with a "first
sync" (incremental, no state) twin on both APIs.

Per scenario, API and program: wall s, records/s, CPU us/record (user+sys of the child from
wait4), peak RSS (ru_maxrss of the child), requests and rows read (emulator counters),
stdout bytes/record.
Targets are ratios/limits checked in the same run and printed PASS/MISS; the exit status only
reflects failures (a program failing, or record counts disagreeing), never a MISS.

Standard library only (Python >= 3.8; Linux: os.wait4).
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
# Which API a row read through: a full refresh reads list_snapshot on either API (the
# connector's `api` option only picks how incremental streams read), an incremental read
# goes through the streaming export API (list_snapshot + document_deltas) or Data Sync
# (POST /api/v1/data/sync, one data sync per stream).
FR, SE, DS = "list_snapshot", "streaming_export", "data_sync"
API_NAME = {FR: "either (list_snapshot)", SE: "streaming export", DS: "Data Sync"}
ROOT = os.path.dirname(HERE)
MIB = 1024 * 1024

sys.path.insert(0, os.path.join(ROOT, "integration_tests"))
from emulator import Emulator as EmulatorProcess  # noqa: E402  (the one Python client of the emulator)


class Failure(Exception):
    pass


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- emulator


class Emulator(EmulatorProcess):
    """A generated deployment of one scenario, started and logged the benchmark's way, its
    stderr in the run's work folder; `table_names`: its root tables, in order."""

    def __init__(self, binary, workdir, label, *, tables, docs, doc_size, seed, extra=()):
        log("starting", f"--tables {tables} --docs {docs} --doc-size {doc_size} --seed {seed}",
            *extra)
        t0 = time.perf_counter()
        try:
            super().__init__(Path(binary), tables=tables, docs=docs, doc_size=doc_size, seed=seed,
                             extra_args=[str(a) for a in extra], log_dir=Path(workdir),
                             startup_timeout=900)
        except (OSError, RuntimeError, TimeoutError, ValueError) as e:
            raise Failure(f"emulator {label} did not start: {e}") from e
        log(f"emulator {label} up at {self.url} in {time.perf_counter() - t0:.1f}s")
        self.table_names = [t for c, t in self.tables() if not c]


# --------------------------------------------------------------------------- measuring


def run_measured(runner, cmd, stdout_path, stderr_path, timeout):
    """Runs cmd through bench-run (stdout to a file); returns wall s, CPU s, peak RSS bytes.

    bench-run, a small static binary, forks the child and calls wait4 itself: a child forked
    straight from this Python process would inherit Python's RSS into its ru_maxrss."""
    r = subprocess.run([runner, "--stdout", stdout_path, "--stderr", stderr_path,
                        "--timeout", str(timeout), "--", *cmd],
                       capture_output=True, text=True, timeout=timeout + 60)
    if r.returncode != 0:
        raise Failure(f"bench-run failed: {r.stderr.strip()}")
    m = json.loads(r.stdout.strip().splitlines()[-1])
    rc = m["exit"] if m["exit"] is not None else -m["signal"]
    return {
        "wall": m["wall"],
        "cpu": m["user"] + m["sys"],
        "rss": m["maxrss_kib"] * 1024,
        "rc": rc,
        "timeout": m["timeout"],
    }


STREAM_RE = re.compile(rb'"stream"\s*:\s*"((?:[^"\\]|\\.)*)"')


def scan_airbyte_output(path):
    """Counts RECORD messages per stream and keeps the last STATE per stream."""
    records = {}
    states = {}
    errors = []
    statuses = {}
    with open(path, "rb") as f:
        for line in f:
            head = line[:64].replace(b" ", b"")
            if head.startswith(b'{"type":"RECORD"') or (b'"type":"RECORD"' in head):
                m = STREAM_RE.search(line, 0, 4096)
                s = m.group(1).decode() if m else "?"
                records[s] = records.get(s, 0) + 1
                continue
            if len(line) > 1_000_000:
                # A record whose "type" key is not first; count it by its stream field.
                m = STREAM_RE.search(line, 0, 4096)
                if b'"RECORD"' in line[:4096] and m:
                    s = m.group(1).decode()
                    records[s] = records.get(s, 0) + 1
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            t = msg.get("type")
            if t == "RECORD":
                s = msg["record"]["stream"]
                records[s] = records.get(s, 0) + 1
            elif t == "STATE":
                st = msg.get("state") or {}
                if st.get("type") == "STREAM":
                    name = st["stream"]["stream_descriptor"]["name"]
                    states[name] = st["stream"].get("stream_state")
            elif t == "TRACE":
                tr = msg.get("trace") or {}
                if tr.get("type") == "ERROR":
                    errors.append((tr.get("error") or {}).get("message"))
                elif tr.get("type") == "STREAM_STATUS":
                    ss = tr.get("stream_status") or {}
                    n = ((ss.get("stream_descriptor") or {}).get("name"))
                    statuses[n] = ss.get("status")
    return records, states, errors, statuses


def median(xs):
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------- programs


class Bench:
    def __init__(self, opts):
        self.o = opts
        self.work = opts.workdir
        os.makedirs(self.work, exist_ok=True)
        self.results = []  # rows: dict(scenario, program, ...)
        self.notes = []
        self.failures = []
        self.targets = []
        self.run_no = 0

    # -- files
    def write_json(self, name, obj):
        p = os.path.join(self.work, name)
        with open(p, "w") as f:
            json.dump(obj, f)
        return p

    def config(self, emu, extra=None):
        return self.write_json("config.json", {"deployment_url": emu.url, "access_key": emu.access_key,
                                               **(extra or {})})

    def catalog(self, tables, mode, name="catalog.json"):
        streams = []
        for t in tables:
            streams.append({
                "stream": {
                    "name": t,
                    "json_schema": {},
                    "supported_sync_modes": ["full_refresh", "incremental"],
                    "source_defined_cursor": True,
                    "default_cursor_field": ["_ts"],
                    "source_defined_primary_key": [["_id"]],
                },
                "sync_mode": mode,
                "destination_sync_mode": "append" if mode == "incremental" else "overwrite",
            })
        return self.write_json(name, {"streams": streams})

    def saved_state(self, states):
        """A state file of saved per-stream `stream_state`s (as a read printed them)."""
        st = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": t}, "stream_state": v}}
              for t, v in states.items()]
        return self.write_json("state.json", st)

    def state(self, cursors):
        st = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": t},
                                             "stream_state": {"snapshot_cursor": None,
                                                              "snapshot_has_more": False,
                                                              "delta_cursor": c}}}
              for t, c in cursors.items()]
        return self.write_json("state.json", st)

    # -- one measured run of one program
    def measure(self, emu, scenario, program, tables, mode, cursors=None, parallel=False,
                expect=None, timeout=None, keep_output=False, config_extra=None, states=None,
                api=None, label=None):
        """program: 'transfer-only' | 'ours' | 'peer'. Returns the row (not stored: `repeat`
        stores its medians).

        api: None for a full refresh (list_snapshot whatever the API; ours gets the default
        config), SE or DS for an incremental read through that API (ours gets `"api"` set
        explicitly, so a change of the default moves no row). cursors: streaming export
        deltas cursors (a legacy state for ours and the peer). states: saved `stream_state`s
        as a read printed them; on DS, transfer-only pages from their `data_sync_cursor`s.
        label: the program's label in the log (default: program)."""
        if api not in (None, SE, DS):
            raise ValueError(f"api {api!r}")
        if program == "peer" and api == DS:
            raise ValueError("the peer has no Data Sync API")
        self.run_no += 1
        tag = re.sub(r"[^A-Za-z0-9_.-]+", "_",
                     f"{self.run_no:03d}-{scenario}-{label or program}{'-ds' if api == DS else ''}")
        out = os.path.join(self.work, tag + ".stdout")
        err = os.path.join(self.work, tag + ".stderr")
        if program == "transfer-only":
            cmd = [self.o.transfer_bin, "--url", emu.url, "--key", emu.access_key,
                   "--tables", ",".join(tables)]
            if api == DS:
                cmd += ["--api", "data_sync"]
                if states:
                    cmd += ["--data-sync-cursors",
                            ",".join(f"{t}={s['data_sync_cursor']}" for t, s in states.items())]
            else:
                cmd += ["--mode", mode]
                if cursors:
                    cmd += ["--delta-cursors", ",".join(f"{t}={c}" for t, c in cursors.items())]
                if parallel:
                    cmd.append("--parallel")
        else:
            binary = self.o.ours_bin if program == "ours" else self.o.peer_bin
            extra = None
            if program == "ours":
                extra = dict(config_extra or {})
                if api is not None:
                    extra["api"] = api
            cmd = [binary, "read", "--config", self.config(emu, extra),
                   "--catalog", self.catalog(tables, mode)]
            if cursors:
                cmd += ["--state", self.state(cursors)]
            elif states:
                cmd += ["--state", self.saved_state(states)]
        emu.reset_requests()
        m = run_measured(self.o.runner_bin, cmd, out, err, timeout or self.o.timeout)
        reqs = emu.requests_made()
        row = {"scenario": scenario, "program": program, "api": api or FR, "tables": list(tables), **m,
               "requests": reqs.get("total") if isinstance(reqs, dict) else None,
               "by_endpoint": reqs.get("by_endpoint") if isinstance(reqs, dict) else None,
               "builds": reqs.get("snapshot_iterator_builds") if isinstance(reqs, dict) else None,
               "rows_read": reqs.get("rows_read") if isinstance(reqs, dict) else None,
               "bytes_sent": reqs.get("bytes_sent") if isinstance(reqs, dict) else None,
               "stdout_bytes": os.path.getsize(out), "cmd": cmd}
        problem = None
        if m["timeout"]:
            problem = f"timed out after {timeout or self.o.timeout}s"
        elif m["rc"] != 0:
            problem = f"exit code {m['rc']}"
        if program == "transfer-only":
            if not problem:
                with open(out) as f:
                    summary = json.loads(f.read().strip().splitlines()[-1])
                row["records"] = summary["records"]
                row["per_table"] = {t: v["records"] for t, v in summary["tables"].items()}
                row["summary"] = summary
        else:
            recs, states, errors, statuses = scan_airbyte_output(out)
            row["records"] = sum(recs.values())
            row["per_table"] = recs
            row["states"] = states
            if errors and not problem:
                problem = "TRACE ERROR: " + "; ".join(str(e)[:200] for e in errors)
            bad = [t for t in tables if statuses.get(t) not in (None, "COMPLETE")]
            if bad and not problem:
                problem = "streams not COMPLETE: " + ", ".join(f"{t}={statuses.get(t)}" for t in bad)
        if expect is not None and not problem:
            got = row.get("records")
            if got != expect:
                problem = f"{got} records, expected {expect}"
        row["problem"] = problem
        if problem:
            try:
                with open(err, "rb") as f:
                    tail = f.read()[-600:].decode(errors="replace")
            except OSError:
                tail = ""
            stderr_note = f" (stderr: {tail.strip()})" if tail.strip() else ""
            self.failures.append(f"{scenario} / {label or program} ({API_NAME[api or FR]}): {problem}{stderr_note}")
            log(f"FAIL {scenario} / {label or program}{' [DS]' if api == DS else ''}: {problem}")
        else:
            shown = (label or program) + (" [DS]" if api == DS else "")
            log(f"{scenario:28s} {shown:26s} {m['wall']:8.3f}s {row.get('records', 0):>9} rec  "
                f"cpu {m['cpu']:.3f}s  rss {m['rss'] / MIB:.1f} MiB  req {row['requests']}")
        if not keep_output and row["stdout_bytes"] > 50 * MIB:
            os.truncate(out, 0)
        return row

    def repeat(self, n, emu, scenario, variants, **kw):
        """Runs each (program-label, kwargs) variant n times, interleaved; stores medians.

        Returns the rows keyed by (api, label): api is FR for a full refresh, else the
        variant's `api` (SE or DS), so one scenario can hold both APIs side by side."""
        runs = {}
        for _ in range(n):
            for label, vkw in variants:
                a = dict(kw)
                a.update(vkw)
                key = (a.get("api") or FR, label)
                runs.setdefault(key, []).append(
                    self.measure(emu, scenario, label.split(" ")[0], label=label, **a))
        rows = {}
        for (api, label), rs in runs.items():
            ok = [r for r in rs if not r["problem"]]
            base = dict(rs[-1])
            base["program"] = label
            base["api"] = api
            base["n"] = len(rs)
            if ok:
                for k in ("wall", "cpu"):
                    base[k] = median([r[k] for r in ok])
                base["rss"] = max(r["rss"] for r in ok)
                base["walls"] = [r["wall"] for r in ok]
                failed = [r["problem"] for r in rs if r["problem"] is not None]
                base["problem"] = None if len(ok) == len(rs) else failed[0]
            rows[(api, label)] = base
            self.results.append(base)
        return rows

    # -- consistency checks
    def agree(self, scenario, rows, keys=None):
        """Record counts per table must agree between the rows `keys` (default: all)."""
        keys = list(rows) if keys is None else keys
        counts = {f"{lb} ({API_NAME[a]})": {t: n for t, n in (rows[(a, lb)].get("per_table") or {}).items() if n}
                  for a, lb in keys if rows.get((a, lb)) and not rows[(a, lb)]["problem"]}
        vals = list(counts.values())
        if len(vals) >= 2 and any(v != vals[0] for v in vals[1:]):
            self.failures.append(f"{scenario}: record counts disagree: " + json.dumps(counts))
            log(f"FAIL {scenario}: record counts disagree: {counts}")
            return False
        return True

    def target(self, name, ok, measured, limit):
        self.targets.append({"name": name, "ok": ok, "measured": measured, "limit": limit})


# --------------------------------------------------------------------------- scenarios


def fmt_rate(r):
    if not r.get("records") or not r.get("wall"):
        return "-"
    return f"{r['records'] / r['wall']:,.0f}"


def rate(r):
    if not r or r.get("problem") or not r.get("records") or not r.get("wall"):
        return None
    return r["records"] / r["wall"]


def cpu_us(r):
    if not r or r.get("problem") or not r.get("records"):
        return None
    return r["cpu"] / r["records"] * 1e6


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def head_cursors(b, emu, tables, scenario):
    """delta_cursor = head for every table, by one transfer-only incremental walk."""
    row = b.measure(emu, scenario + " (setup)", "transfer-only", tables, "incremental")
    if row["problem"]:
        raise Failure(f"could not read the head cursors: {row['problem']}")
    return {t: v["delta_cursor"] for t, v in row["summary"]["tables"].items()}


def data_sync_states(b, emu, tables, scenario, row=None):
    """Each table's last STATE from a read of ours on the Data Sync API: a Data Sync position
    at the head. `row`: a measured cold-start read of ours on DS to take them from; without
    one (or if it failed), one unmeasured read now."""
    if row is None or row["problem"] or not all(t in (row.get("states") or {}) for t in tables):
        row = b.measure(emu, scenario + " (setup)", "ours", tables, "incremental", api=DS)
        if row["problem"]:
            raise Failure(f"{scenario}: could not take Data Sync states: {row['problem']}")
    states = {t: (row.get("states") or {}).get(t) for t in tables}
    for t, st in states.items():
        if not (isinstance(st, dict) and st.get("api") == "data_sync" and st.get("data_sync_cursor")):
            raise Failure(f"{scenario}: the last STATE of {t} is not a Data Sync position: {json.dumps(st)[:300]}")
    return states


def single_walk_pages(emu, tables, cursor):
    """Pages of one document_deltas walk over all `tables` from `cursor`: the reference a
    change walk is measured against (requests made here are reset before the programs run)."""
    selection = {"_other": "excluded", "": {"_other": "excluded", **{t: {"_other": "included"} for t in tables}}}
    pages = 0
    while True:
        req = urllib.request.Request(emu.url + "/api/document_deltas", method="POST",
                                     data=json.dumps({"cursor": cursor, "selection": selection,
                                                      "format": "json"}).encode())
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Convex {emu.access_key}")
        with urllib.request.urlopen(req, timeout=120) as r:
            page = json.loads(r.read())
        pages += 1
        cursor = page["cursor"]
        if not page["hasMore"]:
            return pages


def count_label(n):
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n >= 1000 else str(n)


def both_apis(programs, se=None, ds=None):
    """Variants of `programs` (labels) on the streaming export API, then on Data Sync."""
    return ([(p, {"api": SE, **(se or {})}) for p in programs] +
            [(p, {"api": DS, **(ds or {})}) for p in programs])


def first_sync(b, emu, name, tables, n, expect, programs=("transfer-only", "ours")):
    """The first sync of incremental streams with no state, on both APIs, interleaved:
    list_snapshot + document_deltas, or a cold-start data sync that snapshots the tables."""
    rows = b.repeat(n, emu, name, both_apis(programs), tables=tables, mode="incremental",
                    expect=expect)
    b.agree(name, rows)
    api_notes(b, name, rows)
    return rows


def sent_mb(r):
    return sum((r.get("bytes_sent") or {}).values()) / 1e6


def rows_read(r):
    return sum((r.get("rows_read") or {}).values())


def api_notes(b, name, rows, label="ours"):
    """One note comparing `label` on the two APIs (requests by endpoint, server rows read and
    bytes, wall, CPU, peak RSS)."""
    se, ds = rows.get((SE, label)), rows.get((DS, label))
    if not se or not ds or se["problem"] or ds["problem"]:
        return
    w = ratio(ds["wall"], se["wall"])
    cs, cd = cpu_us(se), cpu_us(ds)
    cpu = f"CPU {cd:.2f} vs {cs:.2f} µs/rec, " if cs and cd else ""
    b.notes.append(
        f"{name}: {label} on Data Sync vs streaming export: wall {ds['wall'] * 1000:.1f} vs "
        f"{se['wall'] * 1000:.1f} ms ({w:.2f}×), {cpu}peak RSS {ds['rss'] / MIB:.1f} vs "
        f"{se['rss'] / MIB:.1f} MiB; requests {json.dumps(ds.get('by_endpoint'))} vs "
        f"{json.dumps(se.get('by_endpoint'))}; rows read by the server {json.dumps(ds.get('rows_read'))} "
        f"vs {json.dumps(se.get('rows_read'))}; {sent_mb(ds):.1f} vs {sent_mb(se):.1f} MB sent.")


def full_refresh_api_check(b, emu, name, tables, expect):
    """A full refresh reads list_snapshot whatever the `api` option says: one unmeasured read
    of ours with `api: data_sync` must make no Data Sync request (so the full-refresh rows
    stand for both APIs)."""
    row = b.measure(emu, name + " (api check)", "ours", tables, "full_refresh", expect=expect,
                    config_extra={"api": "data_sync"})
    if row["problem"]:
        return
    eps = row.get("by_endpoint") or {}
    ds = {k: v for k, v in eps.items() if "data_sync" in k}
    if ds:
        b.failures.append(f"{name}: a full refresh with api data_sync made Data Sync requests {json.dumps(eps)}")
    else:
        b.notes.append(f"{name}: with `api: data_sync` the same full refresh made the same kind of "
                       f"requests ({json.dumps(eps)}): full refresh reads list_snapshot on either API, "
                       f"so its rows stand for both.")


def generated(b, emu_bin, ntables, docs, seed, label, *extra):
    """An emulator serving `ntables` generated tables of `docs` documents of ~400 B each."""
    return Emulator(emu_bin, b.work, label, tables=ntables, docs=docs, doc_size=400, seed=seed,
                    extra=extra)


def full_refresh_name(ntables, docs):
    """The size label (`2x100k`) and the name of a full-refresh scenario."""
    size = f"{ntables}x{count_label(docs)}"
    return size, f"full refresh {size}"


def full_refresh_rows(b, emu, name, tables, n, expect):
    """Transfer-only and ours, each reading the tables whole `n` times."""
    return b.repeat(n, emu, name, [("transfer-only", {}), ("ours", {})],
                    tables=tables, mode="full_refresh", expect=expect)


# Ours, sending every revision of a changed document instead of the latest per read.
EVERY_REVISION = {"config_extra": {"every_revision": True}}


def changes_on_both_apis(b, emu, name, tables, se, ds, peer, o, n):
    """Every program reads the same changes on both APIs (ours also with every_revision), and
    the peer on the streaming export API: the rows of an incremental scenario."""
    variants = [("transfer-only", {"api": SE, **se}),
                ("ours every-revision", {"api": SE, **se, **EVERY_REVISION}),
                ("ours", {"api": SE, **se}),
                ("transfer-only", {"api": DS, **ds}),
                ("ours every-revision", {"api": DS, **ds, **EVERY_REVISION}),
                ("ours", {"api": DS, **ds})]
    rows = b.repeat(n, emu, name, variants, tables=tables, mode="incremental")
    for p in peer:
        rows.update(b.repeat(1, emu, name, [(p, {"api": SE})], tables=tables, mode="incremental",
                             cursors=se["cursors"], timeout=o.peer_timeout))
    return rows


def incremental_checks(b, name, rows, nd):
    """Checks of a change read on each API: transfer-only saw the changes, and the default
    (one revision per document) sent no more records than there were revisions."""
    for api in (SE, DS):
        t, o_ = rows.get((api, "transfer-only")), rows.get((api, "ours"))
        if not t or not o_:
            continue
        got = t.get("records")
        if got is not None and not t["problem"] and got < nd * 0.5:
            b.failures.append(f"{name} ({API_NAME[api]}): only {got} change records for {nd} changes")
        exact = o_.get("records")
        if exact is not None and got is not None and not o_["problem"] and not t["problem"] and not exact <= got:
            b.failures.append(f"{name} ({API_NAME[api]}): ours sent {exact} records, more than the {got} revisions")
    # Every revision, as transfer-only and the peer send them, on both APIs; the default
    # sends each changed document once (fewer records, by design), the same on both APIs.
    b.agree(name, rows, [k for k in rows if k[1] != "ours"])
    b.agree(name, rows, [k for k in rows if k[1] == "ours"])


def scenarios(b, o):
    smoke = o.smoke
    peer = [] if (smoke or not o.peer_bin) else ["peer"]
    N = o.repeat
    emu_bin = o.emulator_bin
    seed = 7

    # ---- 1. full refresh 2 x 100k (~400 B), the first sync on both APIs, then incremental
    # scenarios on the same deployment
    docs = 2000 if smoke else 100_000
    size, name = full_refresh_name(2, docs)
    emu = generated(b, emu_bin, 2, docs, seed, "full")
    try:
        tables = emu.table_names[:2]
        rows = full_refresh_rows(b, emu, name, tables, N, 2 * docs)
        for p in peer:
            rows.update(b.repeat(1, emu, name, [(p, {})], tables=tables, mode="full_refresh",
                                 expect=2 * docs, timeout=o.peer_timeout))
        b.agree(name, rows)
        full_refresh_api_check(b, emu, name, tables, 2 * docs)
        o_, t_, p_ = rows.get((FR, "ours")), rows.get((FR, "transfer-only")), rows.get((FR, "peer"))
        full_cpu = cpu_us(o_)
        r = ratio(rate(o_), rate(t_))
        b.target(f"{name}: ours ≥ 90 % of transfer-only records/s", r is not None and r >= 0.9,
                 f"{r:.2f}×" if r else "n/a", "≥ 0.90×")
        if peer:
            r = ratio(rate(o_), rate(p_))
            b.target(f"{name}: ours ≥ 50× the peer's records/s", r is not None and r >= 50,
                     f"{r:.1f}×" if r else "n/a", "≥ 50×")
        c = full_cpu
        b.target(f"{name}: ours CPU per record", c is not None and c <= 1.5,
                 f"{c:.2f} µs" if c else "n/a", "≤ 1.5 µs")

        # ---- 1b. first sync of incremental streams, both APIs
        name = f"first sync {size}"
        rows = first_sync(b, emu, name, tables, N, 2 * docs)
        se_o, ds_o = rows[(SE, "ours")], rows[(DS, "ours")]
        cs, cd = cpu_us(se_o), cpu_us(ds_o)
        r = ratio(cd, cs)
        b.target(f"Data Sync first sync {size}: ours CPU per record ≤ 1.3× streaming export's (same run)",
                 r is not None and r <= 1.3, f"{cd:.2f} vs {cs:.2f} µs ({r:.2f}×)" if r else "n/a", "≤ 1.30×")
        rss = ds_o["rss"] / MIB if not ds_o["problem"] else None
        b.target(f"Data Sync first sync {size}: ours peak RSS ≤ 32 MiB", rss is not None and rss <= 32,
                 f"{rss:.1f} MiB" if rss is not None else "n/a", "≤ 32 MiB")
        w = ratio(ds_o["wall"], se_o["wall"]) if not (ds_o["problem"] or se_o["problem"]) else None
        b.target(f"Data Sync first sync {size}: ours wall ≤ 1.2× streaming export's",
                 w is not None and w <= 1.2,
                 f"{ds_o['wall']:.3f} vs {se_o['wall']:.3f} s ({w:.2f}×)" if w else "n/a", "≤ 1.20×")
        # A Data Sync position at the head: the last STATEs of ours' cold start above.
        ds_states = data_sync_states(b, emu, tables, name, ds_o)

        # ---- 2. incremental, nothing new
        name = "incremental, nothing new"
        cursors = head_cursors(b, emu, tables, name)
        se = {"cursors": cursors}
        ds = {"states": ds_states}
        rows = b.repeat(max(N, 5), emu, name, both_apis(["transfer-only", "ours"], se, ds),
                        tables=tables, mode="incremental", expect=0)
        for p in peer:
            rows.update(b.repeat(1, emu, name, [(p, {"api": SE})], tables=tables, mode="incremental",
                                 cursors=cursors, expect=0, timeout=o.peer_timeout))
        so = rows[(SE, "ours")]
        w = so["wall"] if not so["problem"] else None
        b.target(f"{name}: ours wall", w is not None and w <= 0.020,
                 f"{w * 1000:.1f} ms" if w is not None else "n/a", "≤ 20 ms")
        api_notes(b, name, rows)

        # ---- 3. incremental, 10k deltas (applied once, after both APIs' positions were
        # taken; every program on both APIs reads the same ones)
        nd = 500 if smoke else 10_000
        name = f"incremental, {count_label(nd)} deltas"
        emu.request("POST", "/_emulator/changes", {"count": nd, "seed": seed + 1}, timeout=600)
        # At least 9 reads each: a read of 10k changes takes tens of milliseconds of CPU, so
        # its median is the noisiest of the CPU targets (with 3 reads, two slow ones once made
        # a median of 37 ms for a read that usually takes about 22), and 6 more reads of each
        # program cost a few seconds.
        rows = changes_on_both_apis(b, emu, name, tables, se, ds, peer, o, max(N, 9))
        incremental_checks(b, name, rows, nd)
        r = ratio(rate(rows[(SE, "ours every-revision")]), rate(rows[(SE, "transfer-only")]))
        b.target(f"{name}: ours (every_revision) ≥ 90 % of transfer-only records/s",
                 r is not None and r >= 0.9, f"{r:.2f}×" if r else "n/a", "≥ 0.90×")
        for api in (SE, DS):
            c = cpu_us(rows[(api, "ours")])
            r = ratio(c, full_cpu)
            b.target(f"incremental {count_label(nd)} deltas: ours CPU per record ≤ 1.5× full refresh "
                     f"{size}'s ({API_NAME[api]})", r is not None and r <= 1.5,
                     f"{c:.2f} vs {full_cpu:.2f} µs ({r:.2f}×)" if r else "n/a", "≤ 1.50×")
            ro, rt = rows[(api, "ours")], rows[(api, "transfer-only")]
            w = ratio(ro["wall"], rt["wall"]) if not (ro["problem"] or rt["problem"]) else None
            b.notes.append(f"{name} ({API_NAME[api]}): the default (one revision per document) sent "
                           f"{ro.get('records')} records for {rt.get('records')} revisions, in {w:.2f}× "
                           f"transfer-only's wall time." if w else
                           f"{name} ({API_NAME[api]}): the default mode or transfer-only did not complete")
        api_notes(b, name, rows)
    finally:
        emu.stop()

    # ---- 4. full refresh 1M documents (memory), and the first sync of 1M on both APIs
    docs = 5000 if smoke else 1_000_000
    size, name = full_refresh_name(1, docs)
    emu = generated(b, emu_bin, 1, docs, seed, "1m")
    try:
        tables = emu.table_names[:1]
        # As many runs as the other scenarios (about a second each): one run of each program
        # was a coin toss on this shared machine.
        rows = full_refresh_rows(b, emu, name, tables, N, docs)
        b.agree(name, rows)
        if not smoke:
            b.notes.append(f"{name}: the peer is not run (at its 6–12k records/s it would take minutes).")
        o_ = rows[(FR, "ours")]
        rss = o_["rss"] / MIB if not o_["problem"] else None
        b.target(f"{name}: ours peak RSS", rss is not None and rss <= 32,
                 f"{rss:.1f} MiB" if rss else "n/a", "≤ 32 MiB")
        c = cpu_us(o_)
        b.target(f"{name}: ours CPU per record", c is not None and c <= 1.5,
                 f"{c:.2f} µs" if c else "n/a", "≤ 1.5 µs")
        r = ratio(rate(o_), rate(rows[(FR, "transfer-only")]))
        b.target(f"{name}: ours ≥ 90 % of transfer-only records/s", r is not None and r >= 0.9,
                 f"{r:.2f}×" if r else "n/a", "≥ 0.90×")
        first_sync(b, emu, f"first sync {size}", tables, N, docs)
    finally:
        emu.stop()

    # ---- 5. many tables, changes spread across them: what the change walks cost the server
    ntab = 16
    docs = 50 if smoke else 500
    nd = 800 if smoke else 10_000
    name = f"{ntab} tables, {count_label(nd)} changes spread"
    emu = generated(b, emu_bin, ntab, docs, seed, "spread")
    try:
        tables = emu.table_names[:ntab]
        cursors = head_cursors(b, emu, tables, name)
        ds_states = data_sync_states(b, emu, tables, name)
        emu.request("POST", "/_emulator/changes", {"count": nd, "seed": seed + 2}, timeout=600)
        single = single_walk_pages(emu, tables, min(cursors.values()))
        se, ds = {"cursors": cursors}, {"states": ds_states}
        rows = changes_on_both_apis(b, emu, name, tables, se, ds, peer, o, N)
        incremental_checks(b, name, rows, nd)
        deltas = {lb: (r.get("by_endpoint") or {}).get("document_deltas") for (a, lb), r in rows.items() if a == SE}
        read = {lb: (r.get("rows_read") or {}).get("document_deltas") for (a, lb), r in rows.items() if a == SE}
        b.notes.append(f"{name}: document_deltas requests {json.dumps(deltas)}, log rows the server "
                       f"read {json.dumps(read)}; one walk over all tables takes {single} requests.")
        syncs = {lb: (r.get("by_endpoint") or {}).get("data_sync") for (a, lb), r in rows.items() if a == DS}
        sread = {lb: (r.get("rows_read") or {}).get("data_sync") for (a, lb), r in rows.items() if a == DS}
        b.notes.append(f"{name} (Data Sync, one sync per table, each reading only its table's log): "
                       f"data_sync requests {json.dumps(syncs)}, rows the server read {json.dumps(sread)}.")
        d = deltas.get("ours")
        r = ratio(d, single)
        b.target(f"{name}: ours change-walk requests ≤ 1.25 × one walk's", r is not None and r <= 1.25,
                 f"{d} vs {single} ({r:.2f}×)" if r else "n/a", "≤ 1.25×")
    finally:
        emu.stop()

    # ---- 5b. full refresh of 8 tables with the list_snapshot cost model and background churn,
    # and their first sync on both APIs (Data Sync does not use list_snapshot's iterator)
    docs = 1500 if smoke else o.latency_docs
    name = f"8 tables x{docs / 1000:g}k full refresh, snapshot cost model"
    emu = generated(b, emu_bin, 8, docs, seed, "costs",
                    "--snapshot-build-base-ms", 5, "--snapshot-build-us-per-row", 2,
                    "--system-write-interval-ms", 20)
    try:
        tables = emu.table_names[:8]
        rows = b.repeat(N, emu, name, [("transfer-only parallel", {"parallel": True}),
                                       ("transfer-only", {}), ("ours", {})],
                        tables=tables, mode="full_refresh")
        if peer and not o.peer_skip_latency:
            rows.update(b.repeat(1, emu, name, [(p, {}) for p in peer], tables=tables,
                                 mode="full_refresh", expect=rows[(FR, "transfer-only")].get("records"),
                                 timeout=o.peer_timeout))
        b.agree(name, rows)
        builds = {lb: r.get("builds") for (_a, lb), r in rows.items()}
        b.notes.append(f"{name}: snapshot iterator builds {json.dumps(builds)} (8 tables; ours walks "
                       f"them in one walk, plus one head probe, a page of no table).")
        got = builds.get("ours")
        b.target(f"{name}: ours iterator builds ≤ one for the read's walk + the head probe",
                 got is not None and got <= 2, f"{got}", "≤ 2")
        r = ratio(rate(rows[(FR, "ours")]), rate(rows[(FR, "transfer-only")]))
        b.target(f"{name}: ours ≥ 90 % of sequential transfer-only records/s",
                 r is not None and r >= 0.9, f"{r:.2f}×" if r else "n/a", "≥ 0.90×")
        name = f"8 tables x{docs / 1000:g}k first sync, snapshot cost model"
        first_sync(b, emu, name, tables, N, 8 * docs)
        b.notes.append(f"{name}: the emulator's cost model prices list_snapshot only (iterator "
                       f"builds, page time); its Data Sync pages cost nothing extra, so this "
                       f"scenario's Data Sync rows do not model what a data sync page costs Convex.")
    finally:
        emu.stop()

    # ---- 6. documents near the 1 MiB limit (memory bound), at two table sizes; full refresh,
    # and the first sync on both APIs (Data Sync pages hold up to 64 MiB of values)
    size = 1_000_000
    small, big = (2, 6) if smoke else (o.bigdoc_small, o.bigdoc_big)
    rss = {}
    for docs in (small, big):
        name = f"~1 MiB docs x{docs}"
        emu = Emulator(emu_bin, b.work, f"big{docs}", tables=1, docs=docs, doc_size=size, seed=seed)
        try:
            tables = emu.table_names[:1]
            rows = b.repeat(1, emu, name, [("transfer-only", {}), ("ours", {})],
                            tables=tables, mode="full_refresh", expect=docs)
            if peer and docs == small:
                rows.update(b.repeat(1, emu, name, [(p, {}) for p in peer], tables=tables,
                                     mode="full_refresh", expect=docs, timeout=o.peer_timeout))
            b.agree(name, rows)
            ours = rows[(FR, "ours")]
            rss[docs] = ours["rss"] / MIB if not ours["problem"] else None
            first_sync(b, emu, f"~1 MiB docs x{docs} first sync", tables, 1, docs)
        finally:
            emu.stop()
    ok = all(v is not None for v in rss.values())
    bound = o.bigdoc_rss_bound
    if ok:
        grow = rss[big] - rss[small]
        b.target(f"~1 MiB docs: ours peak RSS bounded (≤ {bound} MiB at x{small} and at x{big}, a full "
                 f"1024-document page of ~1 GB; growth between them ≤ 16 MiB)", rss[big] <= bound and grow <= 16,
                 f"{rss[small]:.0f} → {rss[big]:.0f} MiB", f"≤ {bound} MiB, growth ≤ 16 MiB")
    else:
        b.target("~1 MiB docs: ours peak RSS bounded", False, "n/a", f"≤ {bound} MiB")


# --------------------------------------------------------------------------- report


def cmd_out(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # noqa: BLE001  (a fact of the report, unknown)
        return "?"


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.1f} GiB"
    except Exception:  # noqa: BLE001  (a fact of the report, unknown)
        pass
    load = os.getloadavg()
    dirty = cmd_out(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
    return [
        ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        ("nproc", str(os.cpu_count())),
        ("CPU", cpu),
        ("memory", mem),
        ("kernel", platform.release()),
        ("rustc", cmd_out(["rustc", "--version"])),
        ("python (peer)", "n/a"),
        ("source tree", cmd_out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]) +
         (" + uncommitted changes" if dirty else "")),
        ("load average at start", f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"),
    ]


def table_md(b):
    hdr = ("| scenario | API | program | n | wall s | records | records/s | CPU µs/rec | peak RSS MiB "
           "| requests | rows read (server) | iterator builds | MB sent (server) | stdout B/rec |\n"
           "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    lines = [hdr]
    for r in b.results:
        api = API_NAME[r.get("api", FR)]
        if r["problem"]:
            lines.append(f"| {r['scenario']} | {api} | {r['program']} | {r.get('n', 1)} | FAILED: {r['problem']} "
                         "| | | | | | | | | |")
            continue
        recs = r.get("records") or 0
        c = cpu_us(r)
        bpr = (r["stdout_bytes"] / recs) if recs and r["program"] != "transfer-only" else None
        lines.append(
            f"| {r['scenario']} | {api} | {r['program']} | {r.get('n', 1)} | {r['wall']:.3f} | {recs:,} "
            f"| {fmt_rate(r)} | {'-' if c is None else f'{c:.2f}'} | {r['rss'] / MIB:.1f} "
            f"| {r['requests'] if r['requests'] is not None else '?'} "
            f"| {rows_read(r):,} | {r.get('builds', '?')} "
            f"| {sent_mb(r):.1f} "
            f"| {'-' if bpr is None else f'{bpr:.0f}'} |")
    return "\n".join(lines)


def grouped(b):
    """{(scenario, api): {program: row}} in the order measured."""
    by = {}
    for r in b.results:
        by.setdefault((r["scenario"], r.get("api", FR)), {})[r["program"]] = r
    return by


def ratios_md(b):
    by = grouped(b)
    lines = ["| scenario | API | ours/transfer-only records/s | ours/peer records/s | CPU µs/rec ours vs peer "
             "| peak RSS ours vs peer | requests ours / transfer-only / peer "
             "| rows read (server) ours / transfer-only / peer |",
             "|---|---|--:|--:|--:|--:|--:|--:|"]
    for (s, api), progs in by.items():
        o, t, p = progs.get("ours"), progs.get("transfer-only"), progs.get("peer")
        if not o:
            continue
        if api == DS and not p:
            # The peer has no Data Sync API: its streaming export read of the same scenario.
            p = by.get((s, SE), {}).get("peer")
        def f(x, d=2):
            return "-" if x is None else f"{x:.{d}f}×"

        rt = ratio(rate(o), rate(t))
        rp = ratio(rate(o), rate(p))
        co, cp = cpu_us(o), cpu_us(p)
        cpu = "-" if co is None else (f"{co:.2f} vs {cp:.1f} µs ({cp / co:.0f}× less)" if cp else f"{co:.2f} µs")
        rss = "-" if o["problem"] else (f"{o['rss'] / MIB:.1f} vs {p['rss'] / MIB:.1f} MiB"
                                        if p and not p["problem"] else f"{o['rss'] / MIB:.1f} MiB")
        rq = " / ".join(str(x["requests"]) if x and not x["problem"] else "-" for x in (o, t, p))
        rr = " / ".join(f"{rows_read(x):,}" if x and not x["problem"] else "-" for x in (o, t, p))
        lines.append(f"| {s} | {API_NAME[api]} | {f(rt)} | {f(rp, 1)} | {cpu} | {rss} | {rq} | {rr} |")
    return "\n".join(lines)


def apis_md(b):
    """The scenarios measured on both APIs, one line per program: streaming export / Data Sync."""
    by = grouped(b)
    lines = ["| scenario | program | wall s | CPU µs/rec | peak RSS MiB | requests | rows read (server) "
             "| MB sent (server) | records |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    n = 0
    for (s, api), progs in by.items():
        if api != SE or (s, DS) not in by:
            continue
        ds_progs = by[(s, DS)]
        for prog, se in progs.items():
            ds = ds_progs.get(prog)
            if not ds:
                continue
            n += 1
            if se["problem"] or ds["problem"]:
                lines.append(f"| {s} | {prog} | FAILED | | | | | | |")
                continue

            def pair(fa, fmt, x=se, y=ds, r=False):
                va, vb = fa(x), fa(y)
                if va is None or vb is None:
                    return "-"
                q = f" ({vb / va:.2f}×)" if r and va else ""
                return f"{fmt(va)} / {fmt(vb)}{q}"
            lines.append(
                f"| {s} | {prog} | {pair(lambda r: r['wall'], lambda v: f'{v:.3f}', r=True)} "
                f"| {pair(cpu_us, lambda v: f'{v:.2f}', r=True)} "
                f"| {pair(lambda r: r['rss'] / MIB, lambda v: f'{v:.1f}')} "
                f"| {pair(lambda r: r['requests'], str)} "
                f"| {pair(rows_read, lambda v: f'{v:,}')} "
                f"| {pair(sent_mb, lambda v: f'{v:.1f}')} "
                f"| {pair(lambda r: r.get('records'), lambda v: f'{v:,}')} |")
    return "\n".join(lines) if n else ""


def targets_md(b):
    lines = ["| target | measured | limit | result |", "|---|--:|--:|:-:|"]
    for t in b.targets:
        lines.append(f"| {t['name']} | {t['measured']} | {t['limit']} | {'PASS' if t['ok'] else 'MISS'} |")
    return "\n".join(lines)


def report(b, o, started, elapsed):
    mach = machine()
    if o.peer_bin:
        mach[6] = ("python (peer)", o.peer_python_version or "?")
    parts = []
    parts.append("# Benchmarks\n")
    parts.append("<!-- Generated by bench/run.sh: do not edit by hand. Hand-written analysis lives in "
                 "bench/ANALYSIS.md and is copied in below. -->\n")
    parts.append(
        "Command: `bench/run.sh` (full run, ~10–20 min) or `bench/run.sh --smoke` (tiny data, "
        "ours + transfer-only only; checks that the benchmark still works, not how fast). "
        "Every figure below was measured by that command in the run described here; on a shared "
        "2-core machine absolute times are noisy, so the targets are ratios between programs "
        "measured in the same run (interleaved, median of `n` runs).\n")
    parts.append("Programs: **transfer-only** = `bench/src/bin/transfer-only.rs`, pages through the "
                 "same responses the connector reads and discards them (the wire's limit on this "
                 "machine): `list_snapshot`/`document_deltas` on one keep-alive connection per "
                 "table, or, on Data Sync, the same data syncs (one per table, selection = that "
                 "table, cold start or from the same saved cursor, to the first `upToDate` page) "
                 "one after another on one keep-alive connection; **ours** = "
                 "`source-convex read --config C --catalog K [--state S]` with stdout to a file; "
                 "**peer** = Airbyte's Python `source-convex` 0.4.51 from PyPI in the benchmark's "
                 "own venv, same config, catalog and state (it has only the streaming export API).\n")
    parts.append("APIs: every incremental scenario runs on both of Convex's APIs in the same run, "
                 "interleaved: **streaming export** (`\"api\": \"streaming_export\"`: "
                 "`list_snapshot` + `document_deltas`) and **Data Sync** (`\"api\": \"data_sync\"`: "
                 "`POST /api/v1/data/sync`, one data sync per stream). A *first sync* is an "
                 "incremental read without state (on Data Sync, a cold-start sync that snapshots the "
                 "table); the incremental scenarios start from positions taken before the changes "
                 "were applied: deltas cursors at the head on the streaming export API, the last "
                 "STATE per stream of ours' Data Sync first sync (a `state_version` 2 Data Sync "
                 "cursor) on Data Sync, which transfer-only resumes from too. Full refresh reads "
                 "`list_snapshot` on either API (checked each run: a full refresh with "
                 "`api: data_sync` makes no Data Sync request), so full-refresh rows are measured "
                 "once, API \"either\"; each full-refresh scenario has a *first sync* twin measured "
                 "on both APIs.\n")
    parts.append("Columns: wall = median wall-clock seconds of the child; CPU µs/rec = user+sys of "
                 "the child (wait4) per record; peak RSS = ru_maxrss of the child (max over runs); "
                 "requests = emulator `GET /_emulator/requests` total for the run; rows read = the "
                 "emulator's `rows_read` summed over endpoints (document entries a list_snapshot page "
                 "visited, log rows document_deltas visited, rows a data sync page read by id or "
                 "from the log); stdout B/rec = bytes written to stdout per record (all messages).\n")
    parts.append("## Machine\n")
    parts.append("| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in mach))
    parts.append(f"\nRun {'(smoke)' if o.smoke else '(full)'} started {started} UTC, took {elapsed:.0f} s. "
                 f"Binaries: ours `{o.ours_bin}`, emulator `{o.emulator_bin}`, transfer-only "
                 f"`{o.transfer_bin}`, peer `{o.peer_bin or 'not run'}`.\n")
    if o.peer_note:
        parts.append(f"Peer: {o.peer_note}\n")
    if o.smoke:
        parts.append("**Smoke run**: tiny data, checks that every program runs and that record counts "
                     "agree; the figures and PASS/MISS below say nothing about speed.\n")
    parts.append("## Targets\n")
    parts.append(targets_md(b) + "\n")
    parts.append("## Ratios\n")
    parts.append("Per scenario and API. On Data Sync rows, *peer* is the peer's streaming export read "
                 "of the same scenario (it has no Data Sync API).\n")
    parts.append(ratios_md(b) + "\n")
    both = apis_md(b)
    if both:
        parts.append("## Both APIs\n")
        parts.append("The scenarios measured on both APIs: each cell is streaming export / Data Sync "
                     "(with Data Sync's ratio to streaming export for wall and CPU).\n")
        parts.append(both + "\n")
    parts.append("## Measurements\n")
    parts.append(table_md(b) + "\n")
    if b.notes or b.failures:
        parts.append("## Notes from this run\n")
        parts.append("\n".join(f"- {n}" for n in b.notes + [f"FAILURE: {f}" for f in b.failures]) + "\n")
    analysis = os.path.join(HERE, "ANALYSIS.md")
    if os.path.exists(analysis) and not o.smoke:
        with open(analysis) as f:
            parts.append(f.read().strip() + "\n")
    return "\n".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--ours-bin", required=True)
    ap.add_argument("--emulator-bin", required=True)
    ap.add_argument("--transfer-bin", required=True)
    ap.add_argument("--runner-bin", default="", help="bench-run (default: next to --transfer-bin)")
    ap.add_argument("--peer-bin", default="")
    ap.add_argument("--peer-note", default="")
    ap.add_argument("--peer-python-version", default="")
    ap.add_argument("--workdir", default=os.path.join(HERE, "out"))
    ap.add_argument("--output", default="", help="markdown report path")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--peer-timeout", type=float, default=600)
    ap.add_argument("--peer-skip-latency", action="store_true")
    ap.add_argument("--latency-docs", type=int, default=20_000)
    ap.add_argument("--bigdoc-small", type=int, default=64)
    ap.add_argument("--bigdoc-big", type=int, default=1024)
    ap.add_argument("--bigdoc-rss-bound", type=int, default=64)
    o = ap.parse_args()
    if not o.runner_bin:
        o.runner_bin = os.path.join(os.path.dirname(os.path.abspath(o.transfer_bin)), "bench-run")
    if o.smoke:
        o.repeat = min(o.repeat, 1)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    t0 = time.time()
    b = Bench(o)
    try:
        scenarios(b, o)
    except Failure as e:
        b.failures.append(str(e))
        log("FAIL", e)
    except Exception as e:  # noqa: BLE001  (keep a report of what was measured)
        b.failures.append(f"harness error: {type(e).__name__}: {e}")
        log("FAIL harness error:", repr(e))
        import traceback
        traceback.print_exc()
    md = report(b, o, started, time.time() - t0)
    if o.output:
        with open(o.output, "w") as f:
            f.write(md)
        log("wrote", o.output)
    print(md)
    if b.failures:
        log(f"{len(b.failures)} failure(s):")
        for f in b.failures:
            log("  -", f)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
