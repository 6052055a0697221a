"""Typed columns (`column_types`, default `typed`) end to end in PyAirbyte 0.71.3.

One table holds every Convex value type (written in convex_encoded_json through
`POST /_emulator/transaction`): float64, a float64 holding NaN in one document, int64 beyond
2^53 of both signs, nullable number/string/boolean, bytes, an Id, a nested object, an array,
an optional field and a mixed int64|string union. Read through `ab.get_source(...,
local_executable=...)` on both APIs into the default DuckDB cache and into a PostgresCache:
each column's SQL type, its pandas dtype, every value exact (against the emulator's
export_json documents, pyairbyte_driver.py), and no `Could not determine airbyte type` but for
the mixed union. Once with `column_types: legacy` (int64 as text). And a field widened after
discover: the load succeeds, the cell is NULL, the other rows intact.
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct

import pytest

from pyairbyte_run import run_driver

pytestmark = pytest.mark.pyairbyte

TABLE = "everything"
UNDETERMINED = "Could not determine airbyte type"
BIG_POS = 2**62 + 7
BIG_NEG = -(2**62) - 9
BIG_53 = 2**53 + 1


def i64(n: int) -> dict:
    return {"$integer": base64.b64encode(struct.pack("<q", n)).decode()}


def f64_special(x: float) -> dict:
    return {"$float": base64.b64encode(struct.pack("<d", x)).decode()}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def build_table(emu) -> dict:
    """Writes the test table (and `targets`, whose `_id` the Ids reference); returns the
    expected Python values by document (None: null or absent)."""
    target = emu.transaction([{"op": "insert", "table": "targets",
                               "doc": {"label": "t"}}])["ids"][0]
    blobs = [b"\x00\xffhi", b"", bytes(range(10))]
    docs = [
        {"f64": 1.5, "maybe_nan": f64_special(math.nan), "big": i64(BIG_POS), "n_num": None,
         "n_str": "a", "n_bool": True, "blob": {"$bytes": b64(blobs[0])}, "ref": target,
         "nested": {"k": i64(5), "inner": {"s": "x"}, "f": 0.25}, "arr": [i64(1), i64(2)],
         "opt": "present", "mixed": i64(7)},
        {"f64": -2.25, "maybe_nan": 3.5, "big": i64(BIG_NEG), "n_num": 4.75, "n_str": None,
         "n_bool": None, "blob": {"$bytes": b64(blobs[1])}, "ref": target,
         "nested": {"k": i64(-6), "inner": {"s": "y"}, "f": 1.0}, "arr": [],
         "mixed": "seven"},
        {"f64": 1e10, "maybe_nan": -0.5, "big": i64(BIG_53), "n_num": None, "n_str": "c",
         "n_bool": False, "blob": {"$bytes": b64(blobs[2])}, "ref": target,
         "nested": {"k": i64(0), "inner": {"s": "z"}, "f": -3.5}, "arr": [i64(3)],
         "opt": "x", "mixed": i64(-1)},
    ]
    ids = emu.transaction([{"op": "insert", "table": TABLE, "doc": d} for d in docs])["ids"]
    return {"ids": ids, "target": target, "blobs": [b64(b) for b in blobs]}


# The SQL type each typed column must have (a prefix of the type the database reports:
# DuckDB DECIMAL(38,9) / Postgres NUMERIC(38,9), JSON / JSONB, TIMESTAMP WITH TIME ZONE).
TYPED_SQL = {"big": "BIGINT", "_ts": "BIGINT", "_ab_cdc_lsn": "BIGINT",
             "f64": ("DECIMAL", "NUMERIC"), "maybe_nan": ("DECIMAL", "NUMERIC"),
             "n_num": ("DECIMAL", "NUMERIC"), "_creationtime": ("DECIMAL", "NUMERIC"),
             "n_bool": "BOOLEAN", "_deleted": "BOOLEAN",
             "n_str": "VARCHAR", "blob": "VARCHAR", "ref": "VARCHAR", "_id": "VARCHAR",
             "opt": "VARCHAR", "mixed": "VARCHAR",
             "_ab_cdc_updated_at": "TIMESTAMP", "_ab_cdc_deleted_at": "TIMESTAMP"}
NUMERIC_PANDAS = {"big": ("int64", "Int64"), "f64": ("float64",), "maybe_nan": ("float64",),
                  "n_num": ("float64",)}


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def rows_by_id(result) -> dict:
    return {r["_id"]: r for r in result["rows"]}


def decimal_of(cell) -> float:
    assert isinstance(cell, dict) and "decimal" in cell, cell
    return float(cell["decimal"])


def check_typed(result: dict, built: dict) -> None:
    sql = {k: v.upper() for k, v in result["sql_types"].items()}
    # Objects and arrays: JSON (Postgres JSON/JSONB); DuckDB reports PyAirbyte's JSON columns
    # as VARCHAR (duckdb_engine), their cells are JSON text, parsed below.
    json_sql = ("JSON",) if result["cache"] == "postgres" else ("JSON", "VARCHAR")
    for col in ("nested", "arr"):
        assert sql.get(col) in json_sql or sql.get(col, "").startswith("JSONB"), (col, sql)
    for col, want in TYPED_SQL.items():
        want = (want,) if isinstance(want, str) else want
        assert sql.get(col, "").startswith(want), (col, sql.get(col), sql)
    for col, want in NUMERIC_PANDAS.items():
        assert result["pandas"][col] in want, (col, result["pandas"])
    schema = result["schema"]
    assert schema["big"] == {"type": "integer"}, schema["big"]
    assert schema["f64"] == {"type": "number"}, schema["f64"]
    assert schema["maybe_nan"] == {"type": ["null", "number"]}, schema["maybe_nan"]
    assert "anyOf" in schema["mixed"], schema["mixed"]

    rows = rows_by_id(result)
    a, b, c = (rows[i] for i in built["ids"])
    # int64 exact beyond 2^53, both signs (JSON integers from SQL BIGINT, never floats).
    assert [a["big"], b["big"], c["big"]] == [BIG_POS, BIG_NEG, BIG_53]
    assert all(type(r["big"]) is int for r in (a, b, c))
    assert [decimal_of(r["f64"]) for r in (a, b, c)] == [1.5, -2.25, 1e10]
    assert a["maybe_nan"] is None, a["maybe_nan"]  # NaN: NULL
    assert [decimal_of(b["maybe_nan"]), decimal_of(c["maybe_nan"])] == [3.5, -0.5]
    assert [a["n_num"], c["n_num"]] == [None, None] and decimal_of(b["n_num"]) == 4.75
    assert [a["n_str"], b["n_str"], c["n_str"]] == ["a", None, "c"]
    assert [a["n_bool"], b["n_bool"], c["n_bool"]] == [True, None, False]
    assert [a["blob"], b["blob"], c["blob"]] == built["blobs"]
    assert {a["ref"], b["ref"], c["ref"]} == {built["target"]}
    assert [a["opt"], b["opt"], c["opt"]] == ["present", None, "x"]
    for row, k in ((a, 5), (b, -6), (c, 0)):
        nested = row["nested"]
        nested = json.loads(nested) if isinstance(nested, str) else nested
        assert nested["k"] == k and type(nested["k"]) is int, nested
    for row in (a, b, c):
        arr = json.loads(row["arr"]) if isinstance(row["arr"], str) else row["arr"]
        assert isinstance(arr, list) and all(type(x) is int for x in arr), row["arr"]
        assert isinstance(row["_ab_cdc_updated_at"], dict) and \
            "datetime" in row["_ab_cdc_updated_at"], row["_ab_cdc_updated_at"]

    # PyAirbyte cannot type only the mixed union; every line it printed names that schema.
    # (rich's print wraps long lines: whitespace is compared collapsed.)
    out = flat(result["_stdout"] + result["_stderr"])
    n = out.count(UNDETERMINED)
    assert n, "PyAirbyte printed nothing for the mixed-union column"
    assert out.count(flat(result["undetermined_mixed"])) == n, out.split(UNDETERMINED)[1:]


@pytest.fixture
def typed_emulator(emulator_factory):
    emu = emulator_factory(tables=0, docs=0, seed=31)
    return emu, build_table(emu)


@pytest.mark.parametrize("api", ["streaming_export", "data_sync"])
def test_typed_columns_into_duckdb(typed_emulator, tmp_path, api):
    emu, built = typed_emulator
    result = run_driver("typed_read", {"url": emu.url, "access_key": emu.access_key,
                                       "api": api, "cache": "duckdb"},
                        tmp_path, output=True)
    assert result["records"] == 4  # three test documents and one target
    check_typed(result, built)


@pytest.mark.parametrize("api", ["streaming_export", "data_sync"])
def test_typed_columns_into_postgres(typed_emulator, tmp_path, api, postgres_server):
    emu, built = typed_emulator
    result = run_driver("typed_read", {"url": emu.url, "access_key": emu.access_key,
                                       "api": api, "cache": "postgres",
                                       "postgres": postgres_server, "schema": f"typed_{api}"},
                        tmp_path, output=True)
    assert result["records"] == 4
    check_typed(result, built)


def test_legacy_columns_stay_text(typed_emulator, tmp_path):
    """`column_types: legacy`: int64 declared and cached as text, NaN as "NaN", bytes as
    base64 text, `_ab_cdc_updated_at` a string: the old typing, values as before."""
    emu, built = typed_emulator
    result = run_driver("typed_read", {"url": emu.url, "access_key": emu.access_key,
                                       "api": "streaming_export", "cache": "duckdb",
                                       "column_types": "legacy"},
                        tmp_path, output=True)
    sql = {k: v.upper() for k, v in result["sql_types"].items()}
    assert sql["big"] == "VARCHAR", sql
    assert sql["_ab_cdc_updated_at"] == "VARCHAR", sql
    assert result["pandas"]["big"] == "object", result["pandas"]
    rows = rows_by_id(result)
    a, b, c = (rows[i] for i in built["ids"])
    assert [a["big"], b["big"], c["big"]] == [str(BIG_POS), str(BIG_NEG), str(BIG_53)]
    assert a["maybe_nan"] in ("NaN", '"NaN"'), a["maybe_nan"]
    assert result["schema"]["big"]["type"] == "string", result["schema"]["big"]
    out = flat(result["_stdout"] + result["_stderr"])
    assert out.count(UNDETERMINED) > 1, \
        "legacy schemas keep Convex's anyOf: PyAirbyte cannot type several columns"


@pytest.mark.parametrize("api", ["streaming_export", "data_sync"])
def test_widened_field_is_nulled_and_the_load_succeeds(typed_emulator, tmp_path, api):
    emu, built = typed_emulator
    widen = built["ids"][1]
    result = run_driver("typed_widened", {"url": emu.url, "access_key": emu.access_key,
                                          "api": api, "cache": "duckdb", "widen_id": widen},
                        tmp_path)
    assert result["records"] == [4, 1], result["records"]
    assert result["schema_big"] == {"type": "integer"}
    assert result["sql_types"]["big"].upper() == "BIGINT"
    rows = rows_by_id(result)
    assert rows[widen]["big"] is None, rows[widen]
    assert rows[widen]["n_num"] == {"decimal": "4.750000000"}, rows[widen]
    assert [rows[i]["big"] for i in (built["ids"][0], built["ids"][2])] == [BIG_POS, BIG_53]
