"""How a cell of a PyAirbyte cache compares with the Convex value it came from.

PyAirbyte (airbyte==0.71.3) stores JSON-schema `number` as DECIMAL(38,9), `anyOf` schemas
(Convex's float64-with-NaN) as JSON text, arrays and objects as JSON, and names columns by
lower-casing and replacing every other character with `_`. These helpers accept exactly
that, nothing else. `normalize` and `same` are the `column` and `equal` of the oracle
(oracle.diff_rows) for a cache's rows, which `cache_rows` reads.
"""

from __future__ import annotations

import decimal
import json
import math
import re


def normalize(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", name.lower())


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
        if isinstance(got, str) and got in ("true", "false"):
            # An `anyOf` column (legacy `boolean | null`) holds JSON text, as numbers below.
            return got == json.dumps(expected)
        return got == expected
    if isinstance(expected, (int, float)) and isinstance(got, str):
        # PyAirbyte cannot type `anyOf` schemas (Convex's float64-with-NaN schema) and
        # stores them as JSON text.
        try:
            got = json.loads(got)
        except ValueError:
            return False
    if isinstance(expected, (int, float)):
        # PyAirbyte stores JSON-schema "number" as DECIMAL(38, 9): 9 fractional digits of
        # the float64 it parsed, converted by DuckDB within about one unit in the last place
        # (1770451742160.0 arrives as 1770451742160.000244141); GET /_emulator/documents,
        # the expected side, may itself be one ULP off (serde_json's default float parser).
        if isinstance(got, decimal.Decimal):
            if isinstance(expected, int):
                return got == expected
            if math.isinf(expected):
                return False
            tol = max(decimal.Decimal("0.000000001"), 3 * decimal.Decimal(math.ulp(expected)))
            return abs(decimal.Decimal(expected) - got) <= tol
        if isinstance(expected, int) and isinstance(got, int) and not isinstance(got, bool):
            return expected == got
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
        return len(a) == len(b) and all(_deep_close(x, y) for x, y in zip(a, b, strict=True))
    return same(a, b)


def cache_rows(cache, stream: str) -> list:
    """Every row of the stream's cache table, read with SQL (exact integers and decimals);
    none when the cache has no table for it."""
    from sqlalchemy import select  # in PyAirbyte's interpreter only

    if stream not in cache.streams:
        return []
    return cache.run_sql_query(select(cache[stream].to_sql_table()))
