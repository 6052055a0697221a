"""After every read the destination is exactly the deployment at the read's end
position T (the streams' last `delta_cursor`): each live document once, at its latest `_ts`,
no deleted document live, no `_id` twice (the oracle, oracle.py).

- PyAirbyte 0.71.3 end to end (pyairbyte_driver.py `exact`): seeded random transactions
  interleaved with `read()`s into one default DuckDB cache per seed, some written while the
  read runs, a read killed by an injected fault and the read after it; once more into a
  PostgresCache against a real PostgreSQL server (scripts/postgres.sh).
- At the message level (this file): the binary killed after its k-th STATE, what it delivered
  applied to a merging destination (oracle.MergingDestination), the read resumed from its
  last STATEs, and the destination compared with the deployment at T.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from harness import Connector, Run, configured_catalog, strict
from oracle import (
    TRUTH_AT_T,
    MergingDestination,
    assert_destination_exact,
    cursor_of,
    require_documents_at,
    truth,
)
from pyairbyte_run import run_driver
from random_writes import EMULATOR_SETTINGS, STREAMS, Background, Writer, connector_started

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
                        tmp_path, timeout=300)
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
    """Reads on the streaming export API, then the same connection
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


# `_creationTime` and other floats within one ULP: GET /_emulator/documents re-parses the
# stored JSON with serde_json's default (not correctly rounded) float parser: a
# `_creationTime` sent as 1770335566781.6519 comes back as 1770335566781.652.
WITHIN_ONE_ULP = strict(ulps=1)


def check_destination(label: str, emu, destination: MergingDestination, final: Run,
                      attempts: list) -> None:
    """The destination equals the deployment at each stream's T (the final attempt's last
    STATE), and no attempt sent one document twice."""
    states = final.states()
    for s in STREAMS:
        assert s in states, f"{label}: the final attempt sent no STATE for {s}"
    at_t = {s: truth(emu, s, cursor_of(states[s])) for s in STREAMS}
    assert_destination_exact(label, destination, at_t, equal=WITHIN_ONE_ULP, runs=attempts)


def killed_read(connector: Connector, catalog, state, *, kill_after_states: int | None,
                extra_records: int) -> Run:
    """`read`; with `kill_after_states`, stops reading after that many STATE lines and
    `extra_records` further RECORD lines (or fewer, when another kind of line comes first:
    a change walk's STATEs come together after its records), and kills the process."""
    with connector.stream("read", catalog=catalog, state=state, timeout=120) as s:
        states, left = 0, None
        for raw in s.lines():
            kind = json.loads(raw)["type"]
            if left is not None and kind != "RECORD":
                s.cut(drop_last=True)
                break
            if kind == "STATE":
                states += 1
                if states == kill_after_states:
                    left = extra_records
            elif kind == "RECORD" and left is not None:
                left -= 1
            if left is not None and left <= 0:
                s.cut()
                break
    return s.run


def read_with_kills(emu, writer: Writer, rng: random.Random, connector: Connector,
                    catalog: Path, state, kills: int, label: str,
                    destination: MergingDestination):
    """One read killed `kills` times (after a random k-th STATE, plus up to 3 records),
    resumed from its last STATEs each time, with writes between and during attempts; the
    destination gets what every attempt delivered. Returns the state after the complete
    attempt."""
    attempts = []
    for n in range(kills + 1):
        last = n == kills
        bg = Background(writer, rng.randrange(10**9), rng.randrange(1, 4), 0.002,
                        gate=connector_started(emu)).start() if TRUTH_AT_T else None
        try:
            # A sync sends at least one STATE per stream (a snapshot one per page; a change
            # walk one per stream after its changes, more while a large buffer is sent), so a
            # kill after at most len(STREAMS) STATEs always lands inside the attempt.
            a = killed_read(connector, catalog, state,
                            kill_after_states=None if last else rng.randrange(1, len(STREAMS) + 1),
                            extra_records=rng.randrange(0, 4))
        finally:
            if bg:
                bg.join()
        attempts.append(a)
        if last:
            assert a.exit_code == 0 and not a.cut, f"{label}: read failed:\n{a.describe()}"
        else:
            assert a.cut, f"{label}: attempt {n + 1} ended before its kill point"
        destination.apply(a)
        state = a.state_input(state)
        if not last:
            writer.steps(rng.randrange(1, 5))
    check_destination(label, emu, destination, attempts[-1], attempts)
    return state


@pytest.mark.parametrize("seed,api", KILL_SEEDS)
def test_killed_and_resumed_reads_are_exact(emulator_factory, tmp_path, seed, api):
    emu = emulator_factory(tables=0, docs=0, seed=seed)
    emu.settings(EMULATOR_SETTINGS)
    rng = random.Random(seed)
    head0 = emu.head()
    writer = Writer(emu, seed)
    writer.insert_initial(per_table=rng.randrange(6, 12))
    for s in STREAMS:
        require_documents_at(emu, s, head0)
    connector = Connector(tmp_path, {**emu.config(), "api": api})
    catalog = configured_catalog(connector.discovered())
    assert sorted(s["stream"]["name"] for s in catalog["streams"]) == sorted(STREAMS)
    catalog_path = connector.file("catalog", catalog)

    destination = MergingDestination()
    # The first read (snapshot and catch-up) killed twice, then two incremental reads
    # killed once each, with many changes before them.
    state = read_with_kills(emu, writer, rng, connector, catalog_path, None, 2,
                            f"seed {seed} first read", destination)
    for i in range(2):
        writer.steps(rng.randrange(10, 20))
        state = read_with_kills(emu, writer, rng, connector, catalog_path, state, 1,
                                f"seed {seed} read {i + 2}", destination)
