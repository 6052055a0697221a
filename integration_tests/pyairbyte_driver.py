"""PyAirbyte (airbyte==0.71.3) scenarios, each run in a fresh interpreter by
test_pyairbyte.py, so the AIRBYTE_* directories (read when `airbyte` is imported) are
per-test temp dirs and the default DuckDB cache is a new one.

    python pyairbyte_driver.py SCENARIO PARAMS.json  -> prints one JSON result line, exit 0

Assertions fail the process (exit 1) with a traceback on stderr.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import airbyte as ab  # noqa: E402  (env is prepared by the parent process)
from airbyte.exceptions import AirbyteConnectorCheckFailedError
from sqlalchemy import select

from cache_values import normalize, same
from exactness import diff_rows, documents, report
from pyairbyte_run import driver_main


def control(url: str, method: str, path: str, body=None):
    req = urllib.request.Request(url + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=60) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


def live_docs(url: str, component: str, table: str, column_types: str = "typed") -> dict:
    """The live documents as records of `column_types` carry them (exactness.documents)."""
    return documents(functools.partial(control, url), component, table, None, column_types)


def split_stream(name: str):
    component, _, table = name.rpartition("/")
    return component, table


def cached_rows(result, stream: str) -> list:
    """Every row of the stream's cache table, read with SQL (exact integers and decimals)."""
    return result.cache.run_sql_query(select(result[stream].to_sql_table()))


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
    `expected_live` is (live_docs) and how `_ab_cdc_updated_at` is cached."""
    rows = cached_rows(result, stream)
    problems = diff_rows(stream, rows, expected_live, column=normalize, equal=same,
                         new_fields_ok=new_fields_ok, column_types=column_types)
    by_id: dict = {}
    for row in rows:
        by_id.setdefault(row["_id"], []).append(row)
    for _id in sorted(expected_deleted):
        group = by_id.get(_id, [])
        if not group:
            problems.append(f"DELETE-MISSING {stream} _id={_id}: deleted, but the cache has "
                            "no delete row for it")
    for _id in sorted(set(by_id) - set(expected_live) - set(expected_deleted) - transient):
        problems.append(f"UNKNOWN {stream} _id={_id}: a row for no document this test knows")
    message = report(stream, {stream: problems})
    assert message is None, message


def make_source(p: dict, key: str | None = None):
    config = {"deployment_url": p["url"], "access_key": key or p["access_key"]}
    if p.get("column_types"):
        config["column_types"] = p["column_types"]
    return ab.get_source("source-convex", local_executable=p["binary"], config=config)


def scenario_bad_key(p: dict) -> dict:
    source = make_source(p, key="definitely-wrong-key-123")
    try:
        source.check()
    except AirbyteConnectorCheckFailedError as e:
        return {"raised": type(e).__name__}
    raise AssertionError("check() with a wrong key did not raise")


def scenario_full_cycle(p: dict) -> dict:
    url = p["url"]
    ct = p.get("column_types", "typed")
    source = make_source(p)
    source.check()
    streams = sorted(source.get_available_streams())
    assert streams == sorted(p["expected_streams"]), streams
    source.select_all_streams()

    out: dict = {"streams": streams, "reads": []}
    result = source.read()
    out["reads"].append(result.processed_records)
    live = {s: live_docs(url, *split_stream(s), ct) for s in streams}
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
        control(url, "POST", "/_emulator/transaction", {"ops": tx})
    deleted = {"users": {users[2]}}
    if "betterAuth/sessions" in streams:
        deleted["betterAuth/sessions"] = {sid}

    result = source.read()
    out["reads"].append(result.processed_records)
    assert result.processed_records == len(ops), \
        f"second read processed {result.processed_records} records, expected {len(ops)} changes"
    live = {s: live_docs(url, *split_stream(s), ct) for s in streams}
    for s in streams:
        compare_cache(result, s, live[s], deleted.get(s, set()), column_types=ct)

    # Generated changes (transactions of 1-8 inserts/updates/deletes).
    before = live
    summary = control(url, "POST", "/_emulator/changes", {"count": p.get("changes", 40),
                                                           "seed": 17})
    live = {s: live_docs(url, *split_stream(s), ct) for s in streams}
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
        transient = {r["_id"] for r in cached_rows(result, s)} - set(before[s]) - set(live[s])
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
    live = {s: live_docs(p["url"], *split_stream(s), "typed") for s in streams}
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
    url = p["url"]
    source = make_source(p)
    source.select_all_streams()
    result = source.read()
    streams = sorted(source.get_available_streams())
    live = {s: live_docs(url, *split_stream(s)) for s in streams}
    assert result.processed_records == sum(len(d) for d in live.values()), \
        (result.processed_records, {s: len(d) for s, d in live.items()})
    for s in streams:
        compare_cache(result, s, live[s], set())
    log = control(url, "GET", "/_emulator/requests?log=true")["log"]
    limited = [r["endpoint"] for r in log if r["status"] == 429]
    logs = "\n".join(f.read_text(errors="replace")
                     for f in Path(os.environ["AIRBYTE_LOGGING_ROOT"]).rglob("*") if f.is_file())
    return {"records": result.processed_records, "limited": limited,
            "progress": [line for line in logs.splitlines() if "Convex reports" in line]}


if __name__ == "__main__":
    sys.exit(driver_main(globals()))
