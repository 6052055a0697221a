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

import random
from pathlib import Path

import pytest

from exactness import (TRUTH_AT_T, cursor_of, diff_rows, report, require_documents_at,
                       truth)
from harness import configured_catalog, run_connector, values_match, write_json
from killed_reads import Attempt, ModelDestination, run_attempt
from pyairbyte_run import run_driver
from random_writes import (EMULATOR_SETTINGS, STREAMS, TABLES, Background, Writer,
                           connector_started, table_of)

pytestmark = pytest.mark.exact

DUCKDB_SEEDS = (101, 202, 303)
POSTGRES_SEEDS = (404,)
# (seed, api): the resume-from-any-checkpoint test on both APIs.
KILL_SEEDS = ((505, "streaming_export"), (606, "streaming_export"), (707, "streaming_export"),
              (808, "data_sync"), (909, "data_sync"))


def run_exact(emulator_factory, tmp_path: Path, seed: int, **params) -> dict:
    """Six reads into one cache, each checked exact against the deployment at T."""
    emu = emulator_factory(tables=0, docs=0, seed=seed)
    result = run_driver("exact", {"url": emu.url, "access_key": emu.access_key, "seed": seed,
                                  "concurrent": TRUTH_AT_T, **params},
                        tmp_path, script="exact_driver.py", timeout=300)
    reads = result["reads"]
    assert len(reads) == 6, reads
    assert result["transactions"] > 40, result
    if TRUTH_AT_T:
        # Some writes landed while a read ran (after its first request, before its end).
        assert sum(r["background_tx_during_read"] for r in reads) > 0, reads
    return result


@pytest.mark.pyairbyte
@pytest.mark.parametrize("seed", DUCKDB_SEEDS)
def test_random_reads_into_duckdb_are_exact(emulator_factory, tmp_path, seed):
    run_exact(emulator_factory, tmp_path, seed, cache="duckdb")


@pytest.mark.pyairbyte
@pytest.mark.parametrize("seed", (101,))
def test_random_legacy_reads_into_duckdb_are_exact(emulator_factory, tmp_path, seed):
    """`column_types: legacy`: the cache equals the `json` documents (int64 and bytes as
    strings), `_ab_cdc_updated_at` a string, as before typed columns."""
    result = run_exact(emulator_factory, tmp_path, seed, cache="duckdb", column_types="legacy")
    assert result["column_types"] == "legacy"


@pytest.mark.pyairbyte
@pytest.mark.parametrize("seed", (111, 222))
def test_random_data_sync_reads_into_duckdb_are_exact(emulator_factory, tmp_path, seed):
    result = run_exact(emulator_factory, tmp_path, seed, cache="duckdb", api="data_sync")
    assert set(result["apis"]) == {"data_sync"}


@pytest.mark.pyairbyte
@pytest.mark.parametrize("seed", (333,))
def test_switching_a_connection_to_data_sync_continues_exactly(emulator_factory, tmp_path,
                                                               seed):
    """Issue 13's done-when: reads on the streaming export API, then the same connection
    (same cache, same saved state) switched to `api: data_sync`: every read after the switch
    continues where the old API left off, exact, and nothing is read again."""
    result = run_exact(emulator_factory, tmp_path, seed, cache="duckdb",
                       api="streaming_export", switch_to="data_sync", switch_after=1)
    apis = result["apis"]
    assert apis[:2] == ["streaming_export", "streaming_export"] and apis[-1] == "data_sync", apis
    switched = result["reads"][2]["requests"]
    # The first data sync read converted each stream's position once and read no snapshot.
    assert switched.get("data_sync_cursor_from_deltas") == len(STREAMS), switched
    assert "list_snapshot" not in switched, switched
    assert all("data_sync_cursor_from_deltas" not in r["requests"]
               for r in result["reads"][3:]), result["reads"]


@pytest.mark.pyairbyte
@pytest.mark.parametrize("seed", POSTGRES_SEEDS)
def test_random_reads_into_postgres_are_exact(emulator_factory, tmp_path, seed,
                                              postgres_server):
    run_exact(emulator_factory, tmp_path, seed, cache="postgres", postgres=postgres_server)


def _identity(name: str) -> str:
    return name


def _strict(expected, got) -> bool:
    # Exact types; floats within one ULP, because GET /_emulator/documents re-parses the
    # stored JSON with serde_json's default (not correctly rounded) float parser: a
    # `_creationTime` sent as 1770335566781.6519 comes back as 1770335566781.652.
    return values_match(expected, got, ulps=1)


def check_model(label: str, emu, model: ModelDestination, final: Attempt,
                attempts: list) -> None:
    """The model equals the deployment at each stream's T (the final attempt's last
    STATE), and no attempt sent one document twice."""
    states = final.states()
    problems = {}
    for s in STREAMS:
        assert s in states, f"{label}: the final attempt sent no STATE for {s}"
        docs = truth(emu.request, *table_of(s), cursor_of(states[s]))
        problems[s] = diff_rows(s, model.rows(s), docs, column=_identity, equal=_strict)
    for n, a in enumerate(attempts, 1):
        for (stream, _id), count in sorted(a.records_per_id().items()):
            if count > 1:
                problems.setdefault(stream, []).append(
                    f"DUPLICATE {stream} _id={_id}: {count} records in attempt {n} of this read")
    message = report(label, problems)
    assert message is None, message


def read_with_kills(emu, writer: Writer, rng: random.Random, tmp: Path, config: Path,
                    catalog: Path, state, kills: int, label: str, model: ModelDestination):
    """One read killed `kills` times (after a random k-th STATE, plus up to 3 records),
    resumed from its last STATEs each time, with writes between and during attempts; the
    model gets what every attempt delivered. Returns the state after the complete attempt."""
    attempts = []
    for n in range(kills + 1):
        last = n == kills
        bg = Background(writer, rng.randrange(10**9), rng.randrange(1, 4), 0.002,
                        gate=connector_started(emu.request)).start() if TRUTH_AT_T else None
        try:
            # A sync sends at least one STATE per stream (a snapshot one per page; a change
            # walk one per stream after its changes, more while a large buffer is sent), so a
            # kill after at most len(STREAMS) STATEs always lands inside the attempt.
            a = run_attempt(tmp, config, catalog, state,
                            kill_after_states=None if last else rng.randrange(1, len(STREAMS) + 1),
                            extra_records=rng.randrange(0, 4))
        finally:
            if bg:
                bg.join()
        attempts.append(a)
        if last:
            assert a.returncode == 0 and not a.cut, f"{label}: read failed:\n{a.stderr[-3000:]}"
        else:
            assert a.cut, f"{label}: attempt {n + 1} ended before its kill point"
        model.apply(a)
        state = a.state_input(state)
        if not last:
            writer.steps(rng.randrange(1, 5))
    check_model(label, emu, model, attempts[-1], attempts)
    return state


@pytest.mark.parametrize("seed,api", KILL_SEEDS)
def test_killed_and_resumed_reads_are_exact(emulator_factory, tmp_path, seed, api):
    emu = emulator_factory(tables=0, docs=0, seed=seed)
    emu.request("POST", "/_emulator/settings", EMULATOR_SETTINGS)
    rng = random.Random(seed)
    head0 = emu.request("GET", "/_emulator/head")["head"]
    writer = Writer(emu.request, seed)
    writer.insert_initial(per_table=rng.randrange(6, 12))
    for comp, table in TABLES:
        require_documents_at(emu.request, comp, table, head0)
    config = write_json(tmp_path / "config.json", {**emu.config(), "api": api})
    discovered = run_connector(["discover", "--config", config])
    assert discovered.exit_code == 0, discovered.describe()
    catalog_msg = next(m for m in discovered.lines if m.get("type") == "CATALOG")
    catalog = configured_catalog(catalog_msg["catalog"])
    assert sorted(s["stream"]["name"] for s in catalog["streams"]) == sorted(STREAMS)
    catalog_path = write_json(tmp_path / "catalog.json", catalog)

    model = ModelDestination()
    # The first read (snapshot and catch-up) killed twice, then two incremental reads
    # killed once each, with many changes before them.
    state = read_with_kills(emu, writer, rng, tmp_path, config, catalog_path, None, 2,
                            f"seed {seed} first read", model)
    for i in range(2):
        writer.steps(rng.randrange(10, 20))
        state = read_with_kills(emu, writer, rng, tmp_path, config, catalog_path, state, 1,
                                f"seed {seed} read {i + 2}", model)
