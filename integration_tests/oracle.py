"""The merging-destination oracle: is a destination exactly the deployment at a timestamp?

A destination merges what a read sends by primary key (`_id`): `MergingDestination` does so
with the connector's RECORD and STATE messages (the model of a deduplicating destination,
with Airbyte's checkpoint rule for a killed attempt); PyAirbyte's caches do so themselves and
are read back with SQL (cache_values.cache_rows). Either way the rows of each stream are
compared with the emulator's documents as of T, the `delta_cursor` of the stream's last STATE
(`GET /_emulator/documents?component=C&table=T&ts=T`), or with the live documents where
nothing is written between a read and the comparison.

A destination table is exact when each live document has exactly one row, at its latest
`_ts` and with its values, no row for a document that is not live is live (a deleted
document's row is a delete, or absent), and no `_id` has two rows. `diff_rows` returns every
problem, one line each, and `report` makes one message of them, so a failure shows the
whole diff.
"""

from __future__ import annotations

import datetime
import decimal
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cache_values import is_null, plain
from emulator import Control, table_of
from harness import Run

# The one-line switch. True: the truth is the documents as of T (`ts=`), which stays right
# when writes land while a read runs. False: the live documents, right only when nothing is
# written between a read's end and the comparison (callers then turn background writes off).
TRUTH_AT_T = True

# `_ab_cdc_lsn` must be the document's `_ts` exactly (PyAirbyte maps the
# declared `number` through float64, 1770335567024386710 -> 1770335567024386816). False checks
# everything else, for a connector that has the one-revision fix but not yet this one.
LSN_EXACT = True

CDC_FIELDS = ("_ab_cdc_lsn", "_ab_cdc_updated_at", "_ab_cdc_deleted_at", "_deleted")
MAX_LINES = 60


# -- the destination ---------------------------------------------------------------------------

@dataclass
class MergingDestination:
    """{stream: {_id: record data}}: the last record of each `_id` wins, in delivery order,
    as a destination that merges by primary key (`append_dedup`) keeps it.

    What a cut (killed) run leaves, per stream: its records up to the stream's last STATE,
    and the records after that STATE too (delivered, not checkpointed; the resumed read
    starts at that STATE and covers them again). A stream with no STATE at all contributes
    nothing: its resumed read is a fresh snapshot, which cannot tell of documents deleted in
    between, so a destination must not keep such uncheckpointed rows (Airbyte commits a
    stream's records with its checkpoints)."""
    tables: dict = field(default_factory=dict)

    def apply(self, run: Run) -> MergingDestination:
        checkpointed = set(run.states())
        for m in run.of_type("RECORD"):
            stream = m["record"]["stream"]
            if run.cut and stream not in checkpointed:
                continue  # never checkpointed: see the class docstring
            self.tables.setdefault(stream, {})[m["record"]["data"]["_id"]] = m["record"]["data"]
        return self

    def rows(self, stream: str) -> list:
        return list(self.tables.get(stream, {}).values())


# -- the truth ---------------------------------------------------------------------------------

def truth(control: Control, stream: str, ts: int, column_types: str = "typed") -> dict:
    """{_id: document} of `stream` at T (live when TRUTH_AT_T is off)."""
    return control.documents(*table_of(stream), ts=ts if TRUTH_AT_T else None,
                             column_types=column_types)


def require_documents_at(control: Control, stream: str, before_first_write: int) -> None:
    """Fails unless the emulator answers `ts=`: the table had no document at a timestamp
    before its first insert, so documents as of then must be none (an emulator that ignores
    the parameter returns the live ones and every comparison would use the wrong truth)."""
    if not TRUTH_AT_T:
        return
    live = control.documents(*table_of(stream))
    then = control.documents(*table_of(stream), ts=before_first_write)
    assert live and not then, (
        f"GET /_emulator/documents?ts={before_first_write} returned {len(then)} documents of "
        f"{stream} that were inserted after that timestamp: this emulator does not "
        "answer `ts=`. Set oracle.TRUTH_AT_T = False to run without "
        "writes during reads.")


def cursor_of(stream_state: Any) -> int:
    """T of a stream: the `delta_cursor` of its last STATE (an int, never a float)."""
    value = stream_state.get("delta_cursor") if isinstance(stream_state, dict) else None
    assert isinstance(value, int) and not isinstance(value, bool) and value > 0, \
        f"stream state without an integer delta_cursor: {stream_state!r}"
    return value


# -- cells -------------------------------------------------------------------------------------

# `_ab_cdc_updated_at` with `column_types: legacy`: the Python connector's form. Typed:
# RFC 3339 with microseconds and `Z`, `_ts` truncated (typed_updated_at_ok).
LEGACY_UPDATED_AT_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$")
TYPED_UPDATED_AT_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def updated_at_of(ts: int) -> datetime.datetime:
    """`_ab_cdc_updated_at` of typed columns: `_ts` (ns) truncated to microseconds, UTC."""
    return EPOCH + datetime.timedelta(microseconds=ts // 1000)


def typed_updated_at_ok(cell: Any, ts: int) -> bool:
    """A typed `_ab_cdc_updated_at`: the RFC 3339 text `2023-11-14T22:13:20.123456Z` (as sent)
    or a timestamp cell (a cache's TIMESTAMP column; naive means UTC), equal to `_ts`
    truncated to microseconds."""
    cell = plain(cell)
    if isinstance(cell, str):
        if not TYPED_UPDATED_AT_RE.match(cell):
            return False
        cell = datetime.datetime.strptime(cell, "%Y-%m-%dT%H:%M:%S.%fZ")
    if hasattr(cell, "to_pydatetime"):
        cell = cell.to_pydatetime()
    if not isinstance(cell, datetime.datetime):
        return False
    if cell.tzinfo is None:
        cell = cell.replace(tzinfo=datetime.UTC)
    return cell == updated_at_of(ts)


def as_int(v: Any) -> int | None:
    """An exact integer cell (`_ts`, `_ab_cdc_lsn`), or None if it is not one. A float is
    never accepted: it cannot hold a 19-digit timestamp."""
    v = plain(v)
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, decimal.Decimal) and v == v.to_integral_value():
        return int(v)
    if isinstance(v, str) and v.lstrip("-").isdigit():
        return int(v)
    return None


def is_deleted(row: dict) -> bool:
    return plain(row.get("_deleted")) is True


def _brief(row: dict) -> str:
    return (f"_ts={plain(row.get('_ts'))!r} _deleted={plain(row.get('_deleted'))!r} "
            f"_ab_cdc_lsn={plain(row.get('_ab_cdc_lsn'))!r}")


def _identity(name: str) -> str:
    return name


# -- the comparison ----------------------------------------------------------------------------

def diff_rows(stream: str, rows: Iterable[dict], truth_docs: dict, *,
              equal: Callable[[Any, Any], bool], column: Callable[[str], str] = _identity,
              new_fields_ok: bool = False, exact_keys: bool = False,
              column_types: str = "typed", deleted: set | None = None,
              transient: frozenset = frozenset()) -> list:
    """Every way `rows` (one destination table) differs from `truth_docs` ({_id: doc}).

    `column(field)` names a document field's column; `equal(expected, got)` compares a value
    with a cell. `new_fields_ok`: a field without a column (added after discover) is skipped.
    A column that no field of the document maps to must be null (a removed field); with
    `exact_keys` (rows that are record data, not table rows) it must not be there at all.
    `column_types`: `legacy` wants `_ab_cdc_updated_at` the Python connector's string;
    `typed` the document's `_ts` as a date-time (`typed_updated_at_ok`).

    `deleted`, when the caller knows every id the destination has seen: each id of it has a
    delete row, each id of `transient` (created and deleted between two reads) no row or a
    delete row, and there is no row of any other id."""
    rows = list(rows)
    by_id: dict = {}
    for row in rows:
        by_id.setdefault(plain(row.get("_id")), []).append(row)
    problems = []
    cdc_cols = {column(c) for c in CDC_FIELDS}
    for _id, group in sorted(by_id.items(), key=lambda kv: str(kv[0])):
        if len(group) > 1:
            want = truth_docs.get(_id)
            want_s = f"live at _ts={want['_ts']}" if want else "not live"
            problems.append(f"DUPLICATE {stream} _id={_id}: {len(group)} rows (expected one, "
                            f"{want_s}): " + " | ".join(_brief(r) for r in group))
    for _id, doc in sorted(truth_docs.items()):
        group = by_id.get(_id, [])
        if not group:
            problems.append(f"MISSING {stream} _id={_id}: live at _ts={doc['_ts']}, no row")
            continue
        if len(group) > 1:
            continue  # reported above
        problems += _live_row_problems(stream, _id, group[0], doc, column=column, equal=equal,
                                       new_fields_ok=new_fields_ok, exact_keys=exact_keys,
                                       column_types=column_types, cdc_cols=cdc_cols)
    for _id, group in sorted(by_id.items(), key=lambda kv: str(kv[0])):
        if _id in truth_docs or len(group) > 1:
            continue
        row = group[0]
        if not is_deleted(row):
            problems.append(f"LIVE-BUT-DELETED {stream} _id={_id}: not in the deployment at T, "
                            f"cached as live ({_brief(row)})")
        elif is_null(row.get(column("_ab_cdc_deleted_at"))):
            problems.append(f"DELETED-AT {stream} _id={_id}: delete row without "
                            "_ab_cdc_deleted_at")
    if deleted is not None:
        for _id in sorted(deleted):
            if not by_id.get(_id):
                problems.append(f"DELETE-MISSING {stream} _id={_id}: deleted, but the "
                                "destination has no delete row for it")
        for _id in sorted(set(by_id) - set(truth_docs) - set(deleted) - transient):
            problems.append(f"UNKNOWN {stream} _id={_id}: a row for no document this test "
                            "knows")
    return problems


def _live_row_problems(stream: str, _id: Any, row: dict, doc: dict, *, column, equal,
                       new_fields_ok: bool, exact_keys: bool, column_types: str,
                       cdc_cols: set) -> list:
    """What is wrong with the one row of a live document."""
    if is_deleted(row):
        return [f"DELETED-BUT-LIVE {stream} _id={_id}: live at _ts={doc['_ts']}, "
                f"the row is a delete ({_brief(row)})"]
    got_ts = as_int(row.get(column("_ts")))
    if got_ts != doc["_ts"]:
        kind = "STALE" if got_ts is not None and got_ts < doc["_ts"] else "WRONG-TS"
        return [f"{kind} {stream} _id={_id}: expected _ts={doc['_ts']}, got "
                f"{plain(row.get(column('_ts')))!r}"]
    problems = []
    if plain(row.get(column("_deleted"))) is not False:
        problems.append(f"DELETED-FLAG {stream} _id={_id}: live row has _deleted="
                        f"{row.get(column('_deleted'))!r}, not false")
    lsn = as_int(row.get(column("_ab_cdc_lsn")))
    if LSN_EXACT and lsn != doc["_ts"]:
        problems.append(f"LSN {stream} _id={_id}: expected _ab_cdc_lsn={doc['_ts']} "
                        f"exactly, got {plain(row.get(column('_ab_cdc_lsn')))!r}")
    updated_at = row.get(column("_ab_cdc_updated_at"))
    if column_types == "legacy" and not (isinstance(plain(updated_at), str)
                                         and LEGACY_UPDATED_AT_RE.match(plain(updated_at))):
        problems.append(f"UPDATED-AT {stream} _id={_id}: _ab_cdc_updated_at is "
                        f"{updated_at!r}, not the Python connector's date-time string")
    elif column_types == "typed" and not typed_updated_at_ok(updated_at, doc["_ts"]):
        problems.append(f"UPDATED-AT {stream} _id={_id}: _ab_cdc_updated_at is "
                        f"{updated_at!r}, not the date-time of _ts={doc['_ts']} "
                        f"({updated_at_of(doc['_ts']).isoformat()})")
    if not is_null(row.get(column("_ab_cdc_deleted_at"))):
        problems.append(f"DELETED-AT {stream} _id={_id}: live row has _ab_cdc_deleted_at="
                        f"{row.get(column('_ab_cdc_deleted_at'))!r}")
    mapped = set()
    for key, value in doc.items():
        col = column(key)
        mapped.add(col)
        if col not in row:
            if not new_fields_ok:
                problems.append(f"COLUMN {stream}: no column {col} for field {key} "
                                f"(have {sorted(row)})")
            continue
        if key == "_ts":
            continue
        if not equal(value, row[col]):
            problems.append(f"FIELD {stream} _id={_id} {key}: expected {value!r}, "
                            f"got {row[col]!r}")
    for col, cell in row.items():
        if col in mapped or col in cdc_cols or col.startswith("_airbyte"):
            continue
        if exact_keys or not is_null(cell):
            problems.append(f"EXTRA {stream} _id={_id} {col}: the document has no such "
                            f"field, the destination has {cell!r}")
    return problems


def duplicates_per_attempt(runs: Iterable[Run]) -> dict:
    """{stream: problems}: a document sent more than once by one run (attempt) of a read."""
    problems: dict = {}
    for n, run in enumerate(runs, 1):
        for (stream, _id), count in sorted(run.records_per_id().items()):
            if count > 1:
                problems.setdefault(stream, []).append(
                    f"DUPLICATE {stream} _id={_id}: {count} records in attempt {n} of this read")
    return problems


# Problem kinds, most telling first: a report cut at MAX_LINES keeps the worst.
KINDS = ("DUPLICATE", "STALE", "LIVE-BUT-DELETED", "DELETED-BUT-LIVE", "MISSING", "WRONG-TS",
         "DELETE-MISSING", "UNKNOWN", "FIELD", "EXTRA", "COLUMN", "DELETED-FLAG", "DELETED-AT",
         "UPDATED-AT", "LSN")


def _kind(line: str) -> str:
    return line.split(" ", 1)[0]


def report(label: str, problems_by_stream: dict) -> str | None:
    """One message for every stream's problems (None when there are none): a count per
    stream and per kind, then the problems, worst kinds first, cut at MAX_LINES lines."""
    lines = [p for s in sorted(problems_by_stream) for p in problems_by_stream[s]]
    if not lines:
        return None
    rank = {k: i for i, k in enumerate(KINDS)}
    lines.sort(key=lambda ln: rank.get(_kind(ln), len(KINDS)))
    per_stream = ", ".join(f"{s}: {len(p)}" for s, p in sorted(problems_by_stream.items()) if p)
    kinds: dict = {}
    for ln in lines:
        kinds[_kind(ln)] = kinds.get(_kind(ln), 0) + 1
    per_kind = ", ".join(f"{k} {n}" for k, n in kinds.items())
    head = f"{label}: destination differs from the deployment at T ({per_stream}; {per_kind})"
    more = [f"... and {len(lines) - MAX_LINES} more"] if len(lines) > MAX_LINES else []
    return "\n".join([head] + ["  " + ln for ln in lines[:MAX_LINES]] + more)


def assert_exact(label: str, problems_by_stream: dict) -> None:
    message = report(label, problems_by_stream)
    assert message is None, message


def assert_destination_exact(label: str, destination: MergingDestination, truth_docs: dict, *,
                             equal: Callable[[Any, Any], bool], runs: Iterable[Run] = (),
                             column_types: str = "typed") -> None:
    """The destination equals `truth_docs` ({stream: {_id: doc}}) record for record (no
    key a document lacks), and no run of `runs` sent one document twice."""
    problems = duplicates_per_attempt(runs)
    for stream, docs in truth_docs.items():
        problems.setdefault(stream, []).extend(
            diff_rows(stream, destination.rows(stream), docs, equal=equal, exact_keys=True,
                      column_types=column_types))
    assert_exact(label, problems)
