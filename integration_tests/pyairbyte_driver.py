"""PyAirbyte (airbyte==0.71.3) scenarios, each run in a fresh interpreter by pyairbyte_run.py,
so the AIRBYTE_* directories (read when `airbyte` is imported) are per-test temp dirs and the
default DuckDB cache is a new one:

    python pyairbyte_driver.py SCENARIO PARAMS.json  -> prints one `RESULT <json>` line, exit 0

Assertions fail the process (exit 1) with a traceback on stderr. Every cache is compared with
the emulator's documents by the oracle (oracle.diff_rows over cache_values.cache_rows).

- test_pyairbyte.py: `full_cycle`, `bad_key`, `pip_wheel`, `rate_limited`.
- test_exact_cache.py: `exact`, the randomized exactness scenario. One seed:
  seeded random transactions (random_writes.py) interleaved with `read()`s of every stream
  into ONE cache (the default DuckDB cache, or a PostgresCache), some written by a background
  thread while a read runs; after every read each cached table must equal the emulator's
  documents at the stream's T. Then a read killed by an injected permanent error after some
  pages, and the read after it.

  PyAirbyte 0.71.3 on a failed read (airbyte/shared/sql_processor.py
  `process_airbyte_messages`, airbyte/_connector_base.py `_peek_airbyte_message`): a TRACE
  ERROR raises AirbyteConnectorFailedError while the messages are being consumed, before
  `_write_all_stream_data`, so the records spooled so far are never loaded and no STATE is
  stored (its per-stream early write waits for a stream status "SUCCEEDED", which the
  protocol never sends). The killed read must therefore leave cache and state exactly as
  they were, and the next read resumes from the last successful read's state. (Resuming from
  a killed attempt's own last STATE is checked at the message level, in test_exact_cache.py.)
- test_typed_columns.py: `typed_read`, one read of every stream into a cache (default DuckDB
  or a PostgresCache); returns the columns' SQL types as the database reports them, the
  pandas dtypes of `to_pandas()`, every cached row of the test table (exact: integers as JSON
  integers, decimals as text) and the `Could not determine airbyte type` line PyAirbyte would
  print for the mixed-union column. `typed_widened`: read, then a field of the catalog's
  int64 column gets a string, read again with the same source (catalog from the first
  discover): the load succeeds, that cell is NULL.
"""

from __future__ import annotations

import datetime
import decimal
import json
import os
import random
import sys
from pathlib import Path

import airbyte as ab  # (env is prepared by the parent process)
import sqlalchemy
from airbyte.exceptions import AirbyteConnectorCheckFailedError, AirbyteConnectorFailedError

from cache_values import cache_rows, normalize, same
from emulator import Control
from oracle import TRUTH_AT_T, assert_exact, cursor_of, diff_rows, require_documents_at, truth
from pyairbyte_run import driver_main
from random_writes import EMULATOR_SETTINGS, STREAMS, Background, Writer, connector_started

TYPED_TABLE = "everything"


# -- sources and caches ------------------------------------------------------------------------

def make_source(p: dict, *, key: str | None = None, api: str | None = None):
    """`local_executable` = the binary under test, config from `p` (`column_types` and `api`
    only when given: absent means the defaults)."""
    config = {"deployment_url": p["url"], "access_key": key or p["access_key"]}
    if p.get("column_types"):
        config["column_types"] = p["column_types"]
    if api or p.get("api"):
        config["api"] = api or p["api"]
    return ab.get_source("source-convex", local_executable=p["binary"], config=config)


def make_cache(p: dict, schema_name: str):
    """The default DuckDB cache, or (`p["cache"] == "postgres"`) a PostgresCache on the
    session's server, in `schema_name`."""
    if p.get("cache", "duckdb") == "duckdb":
        return ab.get_default_cache()
    pg = p["postgres"]
    return ab.caches.PostgresCache(host=pg["host"], port=pg["port"], username=pg["user"],
                                   password=pg["password"], database=pg["database"],
                                   schema_name=schema_name)


def cache_problems(cache, stream: str, docs: dict, **kwargs) -> list:
    """The oracle on a cache table: its rows (SQL) against `docs`, columns as PyAirbyte names
    them, cells as it stores them."""
    return diff_rows(stream, cache_rows(cache, stream), docs, column=normalize, equal=same,
                     **kwargs)


# -- test_pyairbyte.py -------------------------------------------------------------------------

def compare_cache(result, stream: str, expected_live: dict, expected_deleted: set,
                  transient: frozenset = frozenset(), new_fields_ok: bool = False,
                  column_types: str = "typed") -> None:
    """The cached rows of `stream` are exactly the deployment: one row per `_id`; each live
    document's row at its latest `_ts` with its values; each id of `expected_deleted` one
    delete row (`_deleted` true, `_ab_cdc_deleted_at` set); each id of `transient` (created
    and deleted since the last read) no row or one delete row; no other row. Rows are counted
    per `_id`, so a duplicate or a stale revision fails, with every difference listed.
    `new_fields_ok`: fields added by changes after discover (not in the catalog PyAirbyte
    discovered once) have no cache column. `column_types`: the source's, which says what
    `expected_live` is and how `_ab_cdc_updated_at` is cached."""
    assert_exact(stream, {stream: cache_problems(
        result.cache, stream, expected_live, new_fields_ok=new_fields_ok,
        column_types=column_types, deleted=expected_deleted, transient=transient)})


def scenario_bad_key(p: dict) -> dict:
    source = make_source(p, key="definitely-wrong-key-123")
    try:
        source.check()
    except AirbyteConnectorCheckFailedError as e:
        return {"raised": type(e).__name__}
    raise AssertionError("check() with a wrong key did not raise")


def scenario_full_cycle(p: dict) -> dict:
    emu = Control(p["url"])
    ct = p.get("column_types", "typed")
    source = make_source(p)
    source.check()
    streams = sorted(source.get_available_streams())
    assert streams == sorted(p["expected_streams"]), streams
    source.select_all_streams()

    out: dict = {"streams": streams, "reads": []}
    result = source.read()
    out["reads"].append(result.processed_records)
    live = emu.live(ct)
    assert result.processed_records == sum(len(d) for d in live.values()), \
        (result.processed_records, {s: len(d) for s, d in live.items()})
    for s in streams:
        compare_cache(result, s, live[s], set(), new_fields_ok=True, column_types=ct)

    # Explicit changes, one transaction each: exactly 5 change records expected.
    users = sorted(live["users"])
    ops = [
        [{"op": "insert", "component": "", "table": "users",
          "doc": {"name": "pyairbyte-new", "age": 33.0}}],
        [{"op": "patch", "component": "", "table": "users", "id": users[0],
          "fields": {"name": "pyairbyte-patched"}}],
        [{"op": "replace", "component": "", "table": "users", "id": users[1],
          "doc": {"name": "pyairbyte-replaced"}}],
        [{"op": "delete", "component": "", "table": "users", "id": users[2]}],
    ]
    if "betterAuth/sessions" in streams:
        sid = sorted(live["betterAuth/sessions"])[0]
        ops.append([{"op": "delete", "component": "betterAuth", "table": "sessions", "id": sid}])
    for tx in ops:
        emu.transaction(tx)
    deleted = {"users": {users[2]}}
    if "betterAuth/sessions" in streams:
        deleted["betterAuth/sessions"] = {sid}

    result = source.read()
    out["reads"].append(result.processed_records)
    assert result.processed_records == len(ops), \
        f"second read processed {result.processed_records} records, expected {len(ops)} changes"
    live = emu.live(ct)
    for s in streams:
        compare_cache(result, s, live[s], deleted.get(s, set()), column_types=ct)

    # Generated changes (transactions of 1-8 inserts/updates/deletes).
    before = live
    summary = emu.changes(p.get("changes", 40), seed=17)
    live = emu.live(ct)
    result = source.read()
    out["reads"].append(result.processed_records)
    changed = 0
    for s in streams:
        gone = set(before[s]) - set(live[s])
        deleted.setdefault(s, set()).update(gone)
        changed += len(gone) + sum(1 for i, d in live[s].items()
                                   if i not in before[s] or before[s][i]["_ts"] != d["_ts"])
    upper = sum(summary.get(k, 0) for k in ("inserted", "updated", "deleted")) \
        if isinstance(summary, dict) else None
    assert result.processed_records >= changed, (result.processed_records, changed)
    if upper:
        assert result.processed_records <= upper, (result.processed_records, summary)
    for s in streams:
        # Ids inserted and deleted within the change set: absent, or one delete row.
        transient = frozenset({r["_id"] for r in cache_rows(result.cache, s)}
                              - set(before[s]) - set(live[s]))
        compare_cache(result, s, live[s], deleted[s], transient=transient, new_fields_ok=True,
                      column_types=ct)

    # A full refresh replaces the cache with exactly the live documents.
    result = source.read(force_full_refresh=True, write_strategy="replace")
    out["reads"].append(result.processed_records)
    assert result.processed_records == sum(len(d) for d in live.values())
    for s in streams:
        compare_cache(result, s, live[s], set(), new_fields_ok=True, column_types=ct)
    out["changes"] = summary
    return out


def scenario_pip_wheel(p: dict) -> dict:
    """PyAirbyte's install path: get_source(pip_url=<the release wheel>) creates a venv under
    AIRBYTE_PROJECT_DIR, pip-installs the wheel there and runs the `source-convex` it put
    there; then check, discover, select, one read into the default DuckDB cache."""
    config = {"deployment_url": p["url"], "access_key": p["access_key"]}
    source = ab.get_source("source-convex", pip_url=p["wheel"], install_if_missing=True,
                           config=config)
    executor = source.executor
    exe = Path(executor._cli[0])
    venv = Path(os.environ["AIRBYTE_PROJECT_DIR"]) / ".venv-source-convex"
    assert exe == venv / "bin" / "source-convex" and exe.is_file(), (exe, venv)
    # PyAirbyte's version check: importlib.metadata.version("airbyte-source-convex") in that venv.
    assert executor.get_installed_version(raise_on_error=True, recheck=True) == p["version"]

    source.check()
    streams = sorted(source.get_available_streams())
    assert streams == sorted(p["expected_streams"]), streams
    source.select_all_streams()
    cache = ab.get_default_cache()
    result = source.read(cache=cache)
    live = Control(p["url"]).live()
    assert result.processed_records == sum(len(d) for d in live.values()), \
        (result.processed_records, {s: len(d) for s, d in live.items()})
    for s in streams:
        compare_cache(result, s, live[s], set())
    return {"executable": str(exe), "version": executor.reported_version,
            "records": result.processed_records,
            "cached": {s: len(cache[s].to_pandas()) for s in streams}}


def scenario_rate_limited(p: dict) -> dict:
    """Data Sync (the default `api: auto`) rate-limited once (429 with Retry-After), progress
    logged at every chance (SOURCE_CONVEX_PROGRESS_MS, set by the test): PyAirbyte takes the
    RATE_LIMITED stream statuses and the progress lines, and the cache is exact."""
    emu = Control(p["url"])
    source = make_source(p)
    source.select_all_streams()
    result = source.read()
    streams = sorted(source.get_available_streams())
    live = emu.live()
    assert result.processed_records == sum(len(live[s]) for s in streams), \
        (result.processed_records, {s: len(d) for s, d in live.items()})
    for s in streams:
        compare_cache(result, s, live[s], set())
    limited = [r["endpoint"] for r in emu.requests_made(log=True)["log"] if r["status"] == 429]
    logs = "\n".join(f.read_text(errors="replace")
                     for f in Path(os.environ["AIRBYTE_LOGGING_ROOT"]).rglob("*") if f.is_file())
    return {"records": result.processed_records, "limited": limited,
            "progress": [line for line in logs.splitlines() if "Convex reports" in line]}


# -- test_exact_cache.py -----------------------------------------------------------------------

def stream_cursors(cache, source) -> dict:
    states = cache.get_state_provider(source_name=source.name, refresh=True)
    out = {}
    for s in STREAMS:
        msg = states.get_stream_state(s, not_found=None)
        assert msg is not None, f"no state stored for stream {s} after a read"
        blob = msg.stream.stream_state
        out[s] = cursor_of(blob.model_dump() if hasattr(blob, "model_dump") else dict(blob))
    return out


def check_exact(label: str, emu: Control, cache, source, column_types: str = "typed") -> dict:
    cursors = stream_cursors(cache, source)
    assert_exact(label, {s: cache_problems(cache, s, truth(emu, s, cursors[s], column_types),
                                           column_types=column_types) for s in STREAMS})
    return cursors


def snapshot_cache(cache, source) -> tuple:
    rows = {s: sorted(json.dumps({k: str(v) for k, v in r.items() if k != "_airbyte_meta"},
                                 sort_keys=True) for r in cache_rows(cache, s))
            for s in STREAMS}
    return rows, stream_cursors(cache, source)


def scenario_exact(p: dict) -> dict:
    seed = p["seed"]
    column_types = p.get("column_types", "typed")
    emu = Control(p["url"])
    concurrent = p.get("concurrent", True)
    assert TRUTH_AT_T or not concurrent, "writes during a read need the truth at T (ts=)"
    rng = random.Random(seed)
    emu.settings(EMULATOR_SETTINGS)
    head0 = emu.head()
    writer = Writer(emu, seed)
    writer.insert_initial(per_table=rng.randrange(5, 10))
    for s in STREAMS:
        require_documents_at(emu, s, head0)

    cache = make_cache(p, f"exact_seed_{seed}")

    def source_on(api: str):
        s = make_source(p, api=api)
        assert sorted(s.get_available_streams()) == sorted(STREAMS), s.get_available_streams()
        s.select_all_streams()
        return s

    # `api` is the config's API; with `switch_to`, the connection is switched to that API
    # after read `switch_after` (PyAirbyte keeps the state in the cache, by source name).
    api = p.get("api", "streaming_export")
    source = source_on(api)
    out: dict = {"seed": seed, "reads": [], "apis": [], "column_types": column_types}

    def read(label: str, background_steps: int) -> None:
        emu.reset_requests()
        bg = None
        if concurrent and background_steps:
            bg = Background(writer, seed * 7919 + len(out["reads"]), background_steps, 0.005,
                            gate=connector_started(emu)).start()
        try:
            result = source.read(cache=cache)
        finally:
            if bg:
                bg.join()
        cursors = check_exact(f"seed {seed} {label} ({api}, {column_types})", emu, cache,
                              source, column_types)
        out["apis"].append(api)
        # Background writes committed after the connector's first request and at or before
        # the end position: written while the read ran, and part of what it had to deliver.
        during = sum(1 for ts in (bg.commit_ts if bg else []) if ts <= max(cursors.values()))
        out["reads"].append({"label": label, "records": result.processed_records,
                             "requests": emu.requests_made()["by_endpoint"],
                             "background_tx": len(bg.commit_ts) if bg else 0,
                             "background_tx_during_read": during, "cursors": cursors})

    # First read: snapshot plus catch-up, with writes landing during it.
    read("read 1 (first)", rng.randrange(2, 5))
    for i in range(p.get("rounds", 4)):
        if p.get("switch_to") and i == p.get("switch_after", 1):
            api = p["switch_to"]
            source = source_on(api)
        writer.steps(rng.randrange(3, 12))
        read(f"read {i + 2}", rng.randrange(0, 4))

    # A read killed by a permanent error on document_deltas after a few pages.
    writer.steps(rng.randrange(8, 16))
    before = snapshot_cache(cache, source)
    # A data sync of these small tables takes a page or two per stream; a change walk more.
    after_pages = rng.randrange(0, 3) if api == "data_sync" else rng.randrange(2, 6)
    emu.reset_requests()
    faulted = "data_sync" if api == "data_sync" else "document_deltas"
    emu.add_fault({"endpoint": faulted, "kind": "status", "status": 400, "code": "BadRequest",
                   "message": "injected by test_exact_cache", "after": after_pages,
                   "times": 0})
    try:
        source.read(cache=cache)
    except AirbyteConnectorFailedError:
        pass
    else:
        raise AssertionError(f"seed {seed}: the read with a permanent {faulted} fault succeeded")
    finally:
        emu.clear_faults()
    served = emu.requests_made()["by_endpoint"].get(faulted, 0)
    assert served > after_pages, (served, after_pages)
    assert snapshot_cache(cache, source) == before, \
        f"seed {seed}: the failed read changed the cache or its state (PyAirbyte 0.71.3 " \
        "writes nothing on a failed read; see this file's docstring)"
    out["killed_after_pages"] = after_pages
    writer.steps(rng.randrange(2, 6))
    read("read after the killed one", rng.randrange(1, 4))
    out["transactions"] = writer.transactions
    return out


# -- test_typed_columns.py ---------------------------------------------------------------------

def jsonable(v):
    """A cell as exact JSON: Decimal -> {"decimal": text}, datetime -> {"datetime": iso}."""
    if isinstance(v, decimal.Decimal):
        return {"decimal": str(v)}
    if isinstance(v, (datetime.datetime, datetime.date)):
        return {"datetime": v.isoformat()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v


def table_facts(cache, stream: str) -> dict:
    sql_table = cache[stream].to_sql_table()
    insp = sqlalchemy.inspect(cache.get_sql_engine())
    cols = insp.get_columns(sql_table.name, schema=cache.schema_name)
    rows = cache_rows(cache, stream)
    df = cache[stream].to_pandas()
    return {"sql_types": {c["name"]: str(c["type"]) for c in cols},
            "pandas": {c: str(t) for c, t in df.dtypes.items()},
            "rows": [jsonable(dict(r)) for r in rows]}


def assert_typed_exact(label: str, emu: Control, cache, column_types: str, skip=()) -> None:
    """The test table in the cache is the live documents (`skip`: (_id, field) pairs left
    out of the comparison)."""
    docs = emu.documents("", TYPED_TABLE, column_types=column_types)
    for _id, field_ in skip:
        docs[_id] = {k: v for k, v in docs[_id].items() if k != field_}
    assert_exact(label, {TYPED_TABLE: cache_problems(cache, TYPED_TABLE, docs,
                                                     column_types=column_types,
                                                     new_fields_ok=bool(skip))})


def typed_source(p: dict):
    source = make_source(p)
    source.select_all_streams()
    return source


def scenario_typed_read(p: dict) -> dict:
    ct = p.get("column_types") or "typed"
    source = typed_source(p)
    cache = make_cache(p, p.get("schema", ""))
    props = {s.stream.name: s.stream.json_schema["properties"]
             for s in source.configured_catalog.streams}
    result = source.read(cache=cache)
    facts = table_facts(cache, TYPED_TABLE)
    assert_typed_exact(f"{TYPED_TABLE} ({p['api']}, {p.get('cache')}, {ct})", Control(p["url"]),
                       cache, ct)
    mixed = props[TYPED_TABLE].get("mixed")
    return {**facts, "records": result.processed_records, "schema": props[TYPED_TABLE],
            "cache": p.get("cache", "duckdb"),
            "undetermined_mixed": f"Could not determine airbyte type from JSON schema: {mixed}"}


def scenario_typed_widened(p: dict) -> dict:
    emu = Control(p["url"])
    source = typed_source(p)
    cache = make_cache(p, p.get("schema", ""))
    first = source.read(cache=cache)
    assert_typed_exact("before", emu, cache, "typed")
    emu.transaction([{"op": "patch", "component": "", "table": TYPED_TABLE, "id": p["widen_id"],
                      "fields": {"big": "no longer an int64"}}])
    second = source.read(cache=cache)  # same source: the catalog of the first discover
    after = table_facts(cache, TYPED_TABLE)
    assert_typed_exact("after", emu, cache, "typed", skip=[(p["widen_id"], "big")])
    return {"records": [first.processed_records, second.processed_records],
            "rows": after["rows"], "sql_types": after["sql_types"],
            "schema_big": {st.stream.name: st.stream.json_schema
                           for st in source.configured_catalog.streams}[TYPED_TABLE]
            ["properties"]["big"]}


if __name__ == "__main__":
    sys.exit(driver_main(globals()))
