"""PyAirbyte (airbyte==0.71.3) scenarios, each run in a fresh interpreter by
test_pyairbyte.py, so the AIRBYTE_* directories (read when `airbyte` is imported) are
per-test temp dirs and the default DuckDB cache is a new one.

    python pyairbyte_driver.py SCENARIO PARAMS.json  -> prints one JSON result line, exit 0

Assertions fail the process (exit 1) with a traceback on stderr.
"""

from __future__ import annotations

import decimal
import json
import math
import os
import re
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import airbyte as ab  # noqa: E402  (env is prepared by the parent process)
from airbyte.exceptions import AirbyteConnectorCheckFailedError


def normalize(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", name.lower())


def control(url: str, method: str, path: str, body=None):
    req = urllib.request.Request(url + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=60) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


def live_docs(url: str, component: str, table: str) -> dict:
    q = urlencode({"table": table, "component": component})
    return {d["_id"]: d for d in control(url, "GET", f"/_emulator/documents?{q}")["documents"]}


def split_stream(name: str):
    component, _, table = name.rpartition("/")
    return component, table


def is_null(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def plain(v):
    """A cached cell as plain Python (numpy scalars/arrays, JSON text)."""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if hasattr(v, "item") and not isinstance(v, (list, dict)):
        v = v.item()
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            pass
    return v


def same(expected, got) -> bool:
    if is_null(expected):
        return is_null(got)
    if isinstance(expected, bool):
        return got == expected
    if isinstance(expected, (int, float)) and isinstance(got, str):
        # PyAirbyte cannot type `anyOf` schemas (Convex's float64-with-NaN schema) and
        # stores them as JSON text.
        try:
            got = json.loads(got)
        except ValueError:
            return False
    if isinstance(expected, (int, float)):
        # PyAirbyte stores JSON-schema "number" as DECIMAL(38, 9): 9 fractional digits.
        if isinstance(got, decimal.Decimal):
            if isinstance(expected, int):
                return got == expected
            tol = decimal.Decimal("0.0000000005")
            return abs(decimal.Decimal(repr(expected)) - got) <= tol
        return isinstance(got, (int, float)) and not isinstance(got, bool) and \
            math.isclose(float(expected), float(got), rel_tol=1e-12,
                         abs_tol=5e-10)
    if isinstance(expected, (list, dict)):
        got = plain(got)
        return json.dumps(expected, sort_keys=True) == json.dumps(got, sort_keys=True) or \
            _deep_close(expected, got)
    return expected == plain(got)


def _deep_close(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_deep_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_deep_close(x, y) for x, y in zip(a, b))
    return same(a, b)


def compare_cache(result, stream: str, expected_live: dict, expected_deleted: set,
                  ambiguous: dict | None = None, new_fields_ok: bool = False) -> int:
    """Cached rows of `stream` == the live documents, deleted ids marked deleted.

    `ambiguous` = {id: ts before the batch} for documents changed in the last read: a
    document changed twice in one read arrives twice, and PyAirbyte's MERGE of a batch with
    duplicate primary keys keeps either version (DuckDB MERGE order), so for those ids an
    intermediate version (ts between the two) or a not-yet-applied delete is accepted.
    Returns how many ids needed that allowance. `new_fields_ok`: fields added by changes
    after discover (not in the catalog PyAirbyte discovered once) have no cache column."""
    ambiguous = ambiguous or {}
    df = result[stream].to_pandas()
    rows = {}
    for rec in df.to_dict(orient="records"):
        rows[rec["_id"]] = rec
    live_rows = {i: r for i, r in rows.items() if not bool(plain(r.get("_deleted")))}
    deleted_rows = {i: r for i, r in rows.items() if bool(plain(r.get("_deleted")))}
    allowed = 0
    for _id in set(live_rows) - set(expected_live):
        assert _id in expected_deleted and _id in ambiguous, \
            f"{stream}: cached live row {_id} is not a live document"
        allowed += 1
    missing = set(expected_live) - set(live_rows)
    assert not missing, f"{stream}: live documents missing from the cache: {missing}"
    assert set(deleted_rows) <= expected_deleted, (stream, set(deleted_rows) - expected_deleted)
    assert {i for i in expected_deleted if i not in ambiguous} <= set(deleted_rows), \
        (stream, expected_deleted - set(deleted_rows))
    for _id, doc in expected_live.items():
        row = live_rows[_id]
        if _id in ambiguous and not same(doc["_ts"], row["_ts"]):
            assert ambiguous[_id] < int(plain(row["_ts"])) < doc["_ts"], (stream, _id)
            allowed += 1
            continue
        for key, value in doc.items():
            col = normalize(key)
            if new_fields_ok and col not in row:
                continue
            assert col in row, f"{stream}: column {col} missing (have {sorted(row)})"
            assert same(value, row[col]), f"{stream} {_id} {key}: {value!r} != {row[col]!r}"
        assert same(doc["_ts"], row["_ab_cdc_lsn"])
        assert is_null(row["_ab_cdc_deleted_at"])
        assert isinstance(row["_ab_cdc_updated_at"], str)
    for _id, row in deleted_rows.items():
        assert not is_null(row["_ab_cdc_deleted_at"]), (stream, _id)
    return allowed


def make_source(p: dict, key: str | None = None):
    config = {"deployment_url": p["url"], "access_key": key or p["access_key"]}
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
    source = make_source(p)
    source.check()
    streams = sorted(source.get_available_streams())
    assert streams == sorted(p["expected_streams"]), streams
    source.select_all_streams()

    out: dict = {"streams": streams, "reads": []}
    result = source.read()
    out["reads"].append(result.processed_records)
    live = {s: live_docs(url, *split_stream(s)) for s in streams}
    assert result.processed_records == sum(len(d) for d in live.values()), \
        (result.processed_records, {s: len(d) for s, d in live.items()})
    for s in streams:
        compare_cache(result, s, live[s], set(), new_fields_ok=True)

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
    live = {s: live_docs(url, *split_stream(s)) for s in streams}
    for s in streams:
        compare_cache(result, s, live[s], deleted.get(s, set()))

    # Generated changes (transactions of 1-8 inserts/updates/deletes).
    before = live
    summary = control(url, "POST", "/_emulator/changes", {"count": p.get("changes", 40),
                                                           "seed": 17})
    live = {s: live_docs(url, *split_stream(s)) for s in streams}
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
    allowed = 0
    for s in streams:
        touched = {i: before[s][i]["_ts"] if i in before[s] else 0
                   for i in set(before[s]) | set(live[s])
                   if i not in before[s] or i not in live[s]
                   or before[s][i]["_ts"] != live[s][i]["_ts"]}
        # ids inserted and deleted within the change set arrive as deletes too
        cached = result[s].to_pandas().to_dict(orient="records")
        for r in cached:
            if r["_id"] not in before[s] and r["_id"] not in live[s]:
                deleted[s].add(r["_id"])
                touched.setdefault(r["_id"], 0)
        allowed += compare_cache(result, s, live[s], deleted[s], ambiguous=touched,
                                 new_fields_ok=True)
    out["pyairbyte_merge_ambiguities"] = allowed

    # A full refresh replaces the cache with exactly the live documents.
    result = source.read(force_full_refresh=True, write_strategy="replace")
    out["reads"].append(result.processed_records)
    assert result.processed_records == sum(len(d) for d in live.values())
    for s in streams:
        compare_cache(result, s, live[s], set(), new_fields_ok=True)
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
    live = {s: live_docs(p["url"], *split_stream(s)) for s in streams}
    assert result.processed_records == sum(len(d) for d in live.values()), \
        (result.processed_records, {s: len(d) for s, d in live.items()})
    for s in streams:
        compare_cache(result, s, live[s], set())
    return {"executable": str(exe), "version": executor.reported_version,
            "records": result.processed_records,
            "cached": {s: len(cache[s].to_pandas()) for s in streams}}


def main() -> int:
    scenario, params_path = sys.argv[1], sys.argv[2]
    with open(params_path, encoding="utf-8") as f:
        params = json.load(f)
    result = globals()[f"scenario_{scenario}"](params)
    print("RESULT " + json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
