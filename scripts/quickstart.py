"""PyAirbyte walk-through of source-convex against the Convex emulator (scripts/quickstart.sh).

The Airbyte part is exactly what you would run against a real deployment; only the
deployment URL/key and the `/_emulator/changes` call (which stands in for your app writing
data) come from the emulator:

    import airbyte as ab
    source = ab.get_source(
        "source-convex",
        pip_url="/abs/path/to/airbyte_source_convex-1.1.6-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        install_if_missing=True,        # PyAirbyte pip-installs the wheel into its own venv
        config={"deployment_url": "https://<name>.convex.cloud", "access_key": "<deploy key>"},
    )
    source.check()
    streams = source.get_available_streams()
    source.select_all_streams()
    cache = ab.get_default_cache()
    source.read(cache=cache)            # first call: full snapshot; later calls: only changes
    df = cache["users"].to_pandas()

AIRBYTE_OFFLINE_MODE=1 (and DO_NOT_TRACK=1) must be in the environment before `import airbyte`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# The emulator's client and the cache-vs-deployment comparison are the test suite's.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration_tests"))
from cache_values import cache_rows, normalize, same
from emulator import Control, table_of
from oracle import diff_rows


def compare_with_deployment(cache, emulator: Control, streams: list[str]) -> list[str]:
    """What differs between the cache and the deployment (the test suite's oracle): an `_id`
    twice, a live row that is stale or deleted in Convex, a document missing, a value that
    differs. Empty when the cache is exact. Fields your app added after the first read have no
    cache column yet (PyAirbyte keeps the catalog it discovered first)."""
    problems = []
    for name in streams:
        problems += diff_rows(name, cache_rows(cache, name), emulator.documents(*table_of(name)),
                              column=normalize, equal=same, new_fields_ok=True)
    return problems


def table_counts(cache, streams: list[str]) -> dict[str, tuple[int, int]]:
    """(rows, rows marked _deleted) per stream in the cache."""
    out = {}
    for name in streams:
        rows = cache_rows(cache, name)  # a table that never had a row has no cache table
        out[name] = (len(rows), sum(1 for r in rows if r["_deleted"] is True))
    return out


class _TypeNotes:
    """Counts PyAirbyte 0.71.3's `print("Could not determine airbyte type ...")`, which it prints
    for every column whose JSON schema it cannot type (and then stores as text). With typed
    columns (the connector's default) the sample data has none; the count says so."""

    NOTE = "Could not determine airbyte type from JSON schema"

    def __init__(self, stream):
        self._stream = stream
        self.seen = 0

    def write(self, text):
        self.seen += text.count(self.NOTE)
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", required=True, help="path of the wheel (scripts/build-wheel.sh)")
    ap.add_argument("--emulator", required=True,
                    help="file holding the emulator's JSON line {url, access_key}")
    ap.add_argument("--changes", type=int, default=200,
                    help="changes to apply before the second read")
    args = ap.parse_args()

    if os.environ.get("AIRBYTE_OFFLINE_MODE") != "1":
        print("set AIRBYTE_OFFLINE_MODE=1 before running (scripts/quickstart.sh does)",
              file=sys.stderr)
        return 2
    import airbyte as ab  # after the environment is set: PyAirbyte reads it at import time
    import airbyte.progress
    import pandas as pd

    # PyAirbyte takes any stdout that is not a terminal for a notebook when IPython can be
    # imported (this venv has it for the notebook test), and then prints
    # "<IPython.core.display.Markdown object>" at every progress update of a piped or logged
    # run. Outside a notebook, its terminal progress (a summary when piped) is what a log
    # should show.
    if not sys.stdout.isatty() and "ipykernel" not in sys.modules:
        airbyte.progress.IS_NOTEBOOK = False

    notes = _TypeNotes(sys.stdout)
    sys.stdout = notes
    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", 12)
    pd.set_option("display.max_colwidth", 28)

    with open(args.emulator, encoding="utf-8") as f:
        emu = json.loads(f.readline())
    config = {"deployment_url": emu["url"], "access_key": emu["access_key"]}
    emulator = Control(emu["url"])

    print("-- ab.get_source(\"source-convex\", pip_url=<the wheel>, install_if_missing=True)")
    source = ab.get_source(
        "source-convex",
        pip_url=os.path.abspath(args.wheel),
        install_if_missing=True,
        config=config,
    )
    print(f"installed version {source.executor.reported_version} into its own venv")

    print("\n-- source.check()")
    source.check()  # raises AirbyteConnectorCheckFailedError on a bad URL or key
    print("connection OK")

    print("\n-- source.get_available_streams()")
    streams = source.get_available_streams()
    for name in streams:
        note = "   (component table: namespace = component path)" if "/" in name else ""
        print(f"  {name}{note}")

    source.select_all_streams()
    cache = ab.get_default_cache()  # DuckDB file under $AIRBYTE_CACHE_ROOT/default_cache/

    print("\n-- first source.read(): full snapshot of every table")
    t0 = time.monotonic()
    result = source.read(cache=cache)
    print(f"{result.processed_records} records in {time.monotonic() - t0:.1f}s")
    before = table_counts(cache, streams)
    for name, (rows, _) in before.items():
        print(f"  {name:<36} {rows:>7} rows")

    preview = next((s for s in streams if "/" not in s), streams[0])
    df = cache[preview].to_pandas()
    user_cols = [c for c in df.columns if not c.startswith("_")][:4]
    cols = ["_id", *user_cols, "_ab_cdc_updated_at", "_deleted"]
    cols = [c for c in cols if c in df.columns]
    print(f"\n-- cache[{preview!r}].to_pandas(): {len(df)} rows x {len(df.columns)} columns; "
          f"first 5 rows of {len(cols)} of them")
    print(df[cols].head(5).to_string(index=False))
    typed = {c: str(t) for c, t in df.dtypes.items() if not c.startswith("_airbyte")}
    print(f"column dtypes: {', '.join(f'{c}={t}' for c, t in typed.items())}")

    print(f"\n-- your app writes to Convex: the emulator applies {args.changes} "
          "inserts/updates/deletes")
    applied = emulator.changes(args.changes, seed=7)
    if applied is not None:
        print(f"  emulator: {json.dumps(applied) if not isinstance(applied, str) else applied}")

    print("\n-- second source.read(): incremental, resumes from the state saved in the cache")
    t0 = time.monotonic()
    result2 = source.read(cache=cache)
    print(f"{result2.processed_records} change records in {time.monotonic() - t0:.1f}s "
          f"(the first read had {result.processed_records})")
    after = table_counts(cache, streams)
    print(f"  {'stream':<36} {'rows before':>11} {'rows after':>10} {'_deleted':>8}")
    for name in streams:
        print(f"  {name:<36} {before[name][0]:>11} {after[name][0]:>10} {after[name][1]:>8}")
    print("Deletes arrive as records with _deleted = true and _ab_cdc_deleted_at set; PyAirbyte\n"
          "merges on _id, so a deleted document stays in the cache as a row marked deleted.")

    print("\n-- the cache against the deployment (the emulator's documents, row by row)")
    problems = compare_with_deployment(cache, emulator, streams)
    if problems:
        print(f"NOT exact: {len(problems)} differences", file=sys.stderr)
        for p in problems[:20]:
            print(f"  {p}", file=sys.stderr)
        return 1
    live = sum(len(emulator.documents(*table_of(n))) for n in streams)
    print(f"exact: every live document once at its latest _ts ({live} in {len(streams)} "
          "streams), no deleted document live, no _id twice")

    if result2.processed_records == 0 or result2.processed_records >= result.processed_records:
        print("unexpected: the second read should pick up only the changes", file=sys.stderr)
        return 1
    if notes.seen:
        print(f"unexpected: PyAirbyte could not type {notes.seen} column(s) and stored them "
              "as text", file=sys.stderr)
        return 1
    print("typed: PyAirbyte gave every column its SQL type")
    return 0


if __name__ == "__main__":
    sys.exit(main())
