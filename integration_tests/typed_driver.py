"""PyAirbyte (airbyte==0.71.3) scenarios of test_typed_columns.py, each run in a fresh
interpreter (pyairbyte_run.py):

    python typed_driver.py SCENARIO PARAMS.json  -> prints one RESULT line, exit 0

`read`: one read of every stream into a cache (default DuckDB or a PostgresCache); returns the
columns' SQL types as the database reports them, the pandas dtypes of `to_pandas()`, every
cached row of the test table (exact: integers as JSON integers, decimals as text) and the
`Could not determine airbyte type` line PyAirbyte would print for the mixed-union column.
Value exactness against the emulator's export_json documents is asserted here (diff_rows).

`widened`: read, then a field of the catalog's int64 column gets a string, read again with
the same source (catalog from the first discover): the load succeeds, that cell is NULL.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import sys

import airbyte as ab  # noqa: E402  (env is prepared by the parent process)
import sqlalchemy
from sqlalchemy import select

from cache_values import normalize, same
from exactness import diff_rows, documents, report
from pyairbyte_driver import control
from pyairbyte_run import driver_main

TABLE = "everything"


def make_cache(p: dict):
    if p.get("cache", "duckdb") == "duckdb":
        return ab.get_default_cache()
    pg = p["postgres"]
    return ab.caches.PostgresCache(host=pg["host"], port=pg["port"], username=pg["user"],
                                   password=pg["password"], database=pg["database"],
                                   schema_name=p["schema"])


def make_source(p: dict):
    config = {"deployment_url": p["url"], "access_key": p["access_key"], "api": p["api"]}
    if p.get("column_types"):  # absent: the default (typed)
        config["column_types"] = p["column_types"]
    source = ab.get_source("source-convex", local_executable=p["binary"], config=config)
    source.select_all_streams()
    return source


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
    rows = cache.run_sql_query(select(sql_table))
    df = cache[stream].to_pandas()
    return {"sql_types": {c["name"]: str(c["type"]) for c in cols},
            "pandas": {c: str(t) for c, t in df.dtypes.items()},
            "rows": [jsonable(dict(r)) for r in rows], "raw_rows": rows}


def exact_problems(request, stream: str, rows: list, column_types: str, skip=()) -> list:
    docs = documents(request, "", stream, None, column_types)
    for _id, field in skip:
        docs[_id] = {k: v for k, v in docs[_id].items() if k != field}
    return diff_rows(stream, rows, docs, column=normalize, equal=same,
                     column_types=column_types, new_fields_ok=bool(skip))


def scenario_read(p: dict) -> dict:
    request = functools.partial(control, p["url"])
    ct = p.get("column_types") or "typed"
    source = make_source(p)
    cache = make_cache(p)
    props = {s.stream.name: s.stream.json_schema["properties"]
             for s in source.configured_catalog.streams}
    result = source.read(cache=cache)
    facts = table_facts(cache, TABLE)
    message = report(f"{TABLE} ({p['api']}, {p.get('cache')}, {ct})",
                     {TABLE: exact_problems(request, TABLE, facts.pop("raw_rows"), ct)})
    assert message is None, message
    mixed = props[TABLE].get("mixed")
    return {**facts, "records": result.processed_records, "schema": props[TABLE],
            "cache": p.get("cache", "duckdb"),
            "undetermined_mixed": f"Could not determine airbyte type from JSON schema: {mixed}"}


def scenario_widened(p: dict) -> dict:
    request = functools.partial(control, p["url"])
    source = make_source(p)
    cache = make_cache(p)
    first = source.read(cache=cache)
    before = table_facts(cache, TABLE)
    message = report("before", {TABLE: exact_problems(request, TABLE, before.pop("raw_rows"),
                                                      "typed")})
    assert message is None, message
    request("POST", "/_emulator/transaction", {"ops": [
        {"op": "patch", "component": "", "table": TABLE, "id": p["widen_id"],
         "fields": {"big": "no longer an int64"}}]})
    second = source.read(cache=cache)  # same source: the catalog of the first discover
    after = table_facts(cache, TABLE)
    message = report("after", {TABLE: exact_problems(
        request, TABLE, after.pop("raw_rows"), "typed", skip=[(p["widen_id"], "big")])})
    assert message is None, message
    return {"records": [first.processed_records, second.processed_records],
            "rows": after["rows"], "sql_types": after["sql_types"],
            "schema_big": {st.stream.name: st.stream.json_schema
                           for st in source.configured_catalog.streams}[TABLE]
            ["properties"]["big"]}


if __name__ == "__main__":
    sys.exit(driver_main(globals()))
