"""Issue 10: after every read the destination is exactly the deployment at the read's end
position T (the streams' last `delta_cursor`): each live document once, at its latest `_ts`,
no deleted document live, no `_id` twice.

- PyAirbyte 0.71.3 end to end (exact_driver.py): seeded random transactions interleaved with
  `read()`s into one default DuckDB cache per seed, some written while the read runs, a read
  killed by an injected fault and the read after it; once more into a PostgresCache against a
  real PostgreSQL server (scripts/postgres.sh).
- At the message level (this file): the binary killed after its k-th STATE, what it delivered
  applied to a model destination, the read resumed from its last STATEs, and the model
  compared with the deployment at T.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path

import pytest

from exactness import (TRUTH_AT_T, cursor_of, diff_rows, report, require_documents_at,
                       truth)
from harness import (configured_catalog, connector_bin, run_connector, values_match,
                     write_json)
from pyairbyte_run import run_driver
from random_writes import STREAMS, TABLES, Background, Writer

pytestmark = pytest.mark.pyairbyte

DUCKDB_SEEDS = (101, 202, 303)
POSTGRES_SEEDS = (404,)


def run_exact(emulator_factory, tmp_path: Path, seed: int, **params) -> dict:
    emu = emulator_factory(tables=0, docs=0, seed=seed)
    result = run_driver("exact", {"url": emu.url, "access_key": emu.access_key, "seed": seed,
                                  "concurrent": TRUTH_AT_T, **params},
                        tmp_path, script="exact_driver.py", timeout=300)
    reads = result["reads"]
    assert len(reads) == 6, reads
    assert result["transactions"] > 40, result
    if TRUTH_AT_T:
        # Writes landed while reads ran (the first read always has some).
        assert sum(r["background_tx"] for r in reads) > 0, reads
    return result


@pytest.mark.parametrize("seed", DUCKDB_SEEDS)
def test_random_reads_into_duckdb_are_exact(emulator_factory, tmp_path, seed):
    run_exact(emulator_factory, tmp_path, seed, cache="duckdb")


@pytest.mark.parametrize("seed", POSTGRES_SEEDS)
def test_random_reads_into_postgres_are_exact(emulator_factory, tmp_path, seed,
                                              postgres_server):
    run_exact(emulator_factory, tmp_path, seed, cache="postgres", postgres=postgres_server)
