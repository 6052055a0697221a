"""The randomized exactness scenario of issue 10 in PyAirbyte (airbyte==0.71.3), run in a
fresh interpreter by test_exact_cache.py (see pyairbyte_run.py):

    python exact_driver.py exact PARAMS.json  -> prints one RESULT line, exit 0

One seed: seeded random transactions (random_writes.py) interleaved with `read()`s of every
stream into ONE cache (the default DuckDB cache, or a PostgresCache), some written by a
background thread while a read runs; after every read each cached table must equal the
emulator's documents at the stream's T (exactness.py). Then a read killed by an injected
permanent error after some pages, and the read after it.

PyAirbyte 0.71.3 on a failed read (airbyte/shared/sql_processor.py `process_airbyte_messages`,
airbyte/_connector_base.py `_peek_airbyte_message`): a TRACE ERROR raises
AirbyteConnectorFailedError while the messages are being consumed, before
`_write_all_stream_data`, so the records spooled so far are never loaded and no STATE is
stored (its per-stream early write waits for a stream status "SUCCEEDED", which the protocol
never sends). The killed read must therefore leave cache and state exactly as they were, and
the next read resumes from the last successful read's state. (Resuming from a killed
attempt's own last STATE is checked at the message level, in test_exact_cache.py.)
"""

from __future__ import annotations

import functools
import json
import random
import sys

import airbyte as ab  # noqa: E402  (env is prepared by the parent process)
from airbyte.exceptions import AirbyteConnectorFailedError
from sqlalchemy import select

from cache_values import normalize, same
from exactness import cursor_of, diff_rows, report, require_documents_at, truth, TRUTH_AT_T
from pyairbyte_driver import control
from pyairbyte_run import driver_main
from random_writes import (EMULATOR_SETTINGS, STREAMS, TABLES, Background, Writer,
                           connector_started, table_of)


def make_cache(p: dict):
    if p["cache"] == "duckdb":
        return ab.get_default_cache()
    pg = p["postgres"]
    return ab.caches.PostgresCache(host=pg["host"], port=pg["port"], username=pg["user"],
                                   password=pg["password"], database=pg["database"],
                                   schema_name=f"exact_seed_{p['seed']}")


def cache_rows(cache, stream: str) -> list:
    """Every row of the stream's table, read with SQL (exact integers and decimals)."""
    if stream not in cache.streams:
        return []
    return cache.run_sql_query(select(cache[stream].to_sql_table()))


def stream_cursors(cache, source) -> dict:
    states = cache.get_state_provider(source_name=source.name, refresh=True)
    out = {}
    for s in STREAMS:
        msg = states.get_stream_state(s, not_found=None)
        assert msg is not None, f"no state stored for stream {s} after a read"
        blob = msg.stream.stream_state
        out[s] = cursor_of(blob.model_dump() if hasattr(blob, "model_dump") else dict(blob))
    return out


def check_exact(label: str, request, cache, source, column_types: str = "typed") -> dict:
    cursors = stream_cursors(cache, source)
    problems = {}
    for s in STREAMS:
        docs = truth(request, *table_of(s), cursors[s], column_types)
        problems[s] = diff_rows(s, cache_rows(cache, s), docs, column=normalize, equal=same,
                                column_types=column_types)
    message = report(label, problems)
    assert message is None, message
    return cursors


def snapshot_cache(cache, source) -> tuple:
    rows = {s: sorted((json.dumps({k: str(v) for k, v in r.items() if k != "_airbyte_meta"},
                                  sort_keys=True) for r in cache_rows(cache, s)))
            for s in STREAMS}
    return rows, stream_cursors(cache, source)


def scenario_exact(p: dict) -> dict:
    seed = p["seed"]
    column_types = p.get("column_types", "typed")
    request = functools.partial(control, p["url"])
    concurrent = p.get("concurrent", True)
    assert TRUTH_AT_T or not concurrent, "writes during a read need the truth at T (ts=)"
    rng = random.Random(seed)
    request("POST", "/_emulator/settings", EMULATOR_SETTINGS)
    head0 = request("GET", "/_emulator/head")["head"]
    writer = Writer(request, seed)
    writer.insert_initial(per_table=rng.randrange(5, 10))
    for comp, table in TABLES:
        require_documents_at(request, comp, table, head0)

    cache = make_cache(p)

    def make_source(api: str):
        config = {"deployment_url": p["url"], "access_key": p["access_key"], "api": api,
                  "column_types": column_types}
        s = ab.get_source("source-convex", local_executable=p["binary"], config=config)
        assert sorted(s.get_available_streams()) == sorted(STREAMS), s.get_available_streams()
        s.select_all_streams()
        return s

    # `api` is the config's API; with `switch_to`, the connection is switched to that API
    # after read `switch_after` (PyAirbyte keeps the state in the cache, by source name).
    api = p.get("api", "streaming_export")
    source = make_source(api)
    out: dict = {"seed": seed, "reads": [], "apis": [], "column_types": column_types}

    def read(label: str, background_steps: int) -> None:
        request("POST", "/_emulator/requests/reset", {})
        bg = None
        if concurrent and background_steps:
            bg = Background(writer, seed * 7919 + len(out["reads"]), background_steps, 0.005,
                            gate=connector_started(request)).start()
        try:
            result = source.read(cache=cache)
        finally:
            if bg:
                bg.join()
        cursors = check_exact(f"seed {seed} {label} ({api}, {column_types})", request, cache,
                              source, column_types)
        out["apis"].append(api)
        # Background writes committed after the connector's first request and at or before
        # the end position: written while the read ran, and part of what it had to deliver.
        during = sum(1 for ts in (bg.commit_ts if bg else []) if ts <= max(cursors.values()))
        served = request("GET", "/_emulator/requests")["by_endpoint"]
        out["reads"].append({"label": label, "records": result.processed_records,
                             "requests": served,
                             "background_tx": len(bg.commit_ts) if bg else 0,
                             "background_tx_during_read": during, "cursors": cursors})

    # First read: snapshot plus catch-up, with writes landing during it.
    read("read 1 (first)", rng.randrange(2, 5))
    for i in range(p.get("rounds", 4)):
        if p.get("switch_to") and i == p.get("switch_after", 1):
            api = p["switch_to"]
            source = make_source(api)
        writer.steps(rng.randrange(3, 12))
        read(f"read {i + 2}", rng.randrange(0, 4))

    # A read killed by a permanent error on document_deltas after a few pages.
    writer.steps(rng.randrange(8, 16))
    before = snapshot_cache(cache, source)
    # A data sync of these small tables takes a page or two per stream; a change walk more.
    after_pages = rng.randrange(0, 3) if api == "data_sync" else rng.randrange(2, 6)
    request("POST", "/_emulator/requests/reset", {})
    faulted = "data_sync" if api == "data_sync" else "document_deltas"
    request("POST", "/_emulator/faults", {"endpoint": faulted, "kind": "status",
                                          "status": 400, "code": "BadRequest",
                                          "message": "injected by test_exact_cache",
                                          "after": after_pages, "times": 0})
    try:
        source.read(cache=cache)
    except AirbyteConnectorFailedError:
        pass
    else:
        raise AssertionError(f"seed {seed}: the read with a permanent {faulted} fault succeeded")
    finally:
        request("DELETE", "/_emulator/faults")
    served = request("GET", "/_emulator/requests")["by_endpoint"].get(faulted, 0)
    assert served > after_pages, (served, after_pages)
    assert snapshot_cache(cache, source) == before, \
        f"seed {seed}: the failed read changed the cache or its state (PyAirbyte 0.71.3 " \
        "writes nothing on a failed read; see this file's docstring)"
    out["killed_after_pages"] = after_pages
    writer.steps(rng.randrange(2, 6))
    read("read after the killed one", rng.randrange(1, 4))
    out["transactions"] = writer.transactions
    return out


if __name__ == "__main__":
    sys.exit(driver_main(globals()))
