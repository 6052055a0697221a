//! The randomized oracle, on both APIs: random transactions between reads (the same document
//! many times, update then delete, insert then delete), reads of mixed positions (new streams,
//! resets, full refresh, small change buffers, reads cut off after a random message and
//! resumed from their last STATE). After each read, a destination that merges each read the
//! way PyAirbyte's caches do (one merge per read keyed by `_id`, no deduplication) holds
//! exactly the emulator's documents as of each stream's end T.
//!
//! `ORACLE_SEEDS=n` (default 40) runs more seeds by hand, from `ORACLE_SEED` (default 0);
//! `ORACLE_DEBUG=1` prints every read.

use super::*;
use destination::committed;

#[test]
fn randomized_reads_leave_the_destination_exactly_the_deployment() {
    randomized(Api::StreamingExport);
}

/// The same on the Data Sync API, with writes while it reads (so snapshots are caught up
/// through the log and documents come again at newer revisions) and clock jumps past Convex's
/// freshness window (so log pages come in the middle of snapshots).
#[test]
fn randomized_data_sync_reads_leave_the_destination_exactly_the_deployment() {
    randomized(Api::DataSync);
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Commits one random transaction of 1 to 3 writes over `tables`; `live` is kept the live
/// documents as (table, `_id`).
fn random_transaction(
    emu: &Emu,
    rng: &mut fastrand::Rng,
    tables: &[&str],
    live: &mut Vec<(String, String)>,
) {
    emu.commit(|tx| {
        for _ in 0..rng.usize(1..4) {
            let roll = rng.u8(..10);
            let v = encoded(&json!({"v": rng.u32(..1000)}));
            if roll < 3 || live.is_empty() {
                let t = tables[rng.usize(..tables.len())];
                let id = tx.insert("", t, v)?;
                live.push((t.to_owned(), id));
            } else if roll < 8 {
                let (t, id) = &live[rng.usize(..live.len())];
                tx.replace("", t, id, v)?;
            } else {
                let (t, id) = live.swap_remove(rng.usize(..live.len()));
                tx.delete("", &t, &id)?;
            }
        }
        Ok(())
    });
}

/// Runs the seeds on a few threads (each seed has its own deployment) and checks that most
/// rounds ended consistent.
fn randomized(api: Api) {
    let seeds = env_u64("ORACLE_SEEDS", 40);
    let first = env_u64("ORACLE_SEED", 0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4)) as u64;
    let compared: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|k| {
                s.spawn(move || {
                    (first + k..first + seeds)
                        .step_by(threads as usize)
                        .map(|seed| one_seed(api, seed))
                        .sum::<usize>()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    // Most rounds end consistent (a stop mid-snapshot is the exception).
    assert!(
        compared > seeds as usize * 8 * 2,
        "only {compared} comparisons"
    );
}

/// Eight rounds of writes and reads on a new deployment; returns how many streams were
/// compared with the deployment.
fn one_seed(api: Api, seed: u64) -> usize {
    const TABLES: [&str; 3] = ["a", "b", "c"];
    let mut compared = 0;
    let mut rng = fastrand::Rng::with_seed(seed);
    let emu = Emu::new(&[("a", 3), ("b", 0), ("c", 5)]);
    if api == Api::DataSync {
        let lag = rng.u32(1..6);
        emu.api.set_before_data_sync(Some(churn(seed + 1000, lag)));
    }
    let mut dest = MergingDestination::default();
    let mut state = String::new();
    for round in 0..8 {
        // The live documents (a data sync's writer changed them too).
        let mut live: Vec<(String, String)> = Vec::new();
        for t in TABLES {
            live.extend(emu.ids(t).into_iter().map(|id| (t.to_owned(), id)));
        }
        for _ in 0..rng.usize(0..12) {
            random_transaction(&emu, &mut rng, &TABLES, &mut live);
        }
        // Stream c is full refresh in some rounds; b joins late; a is reset once.
        let c_mode = if round % 3 == 2 {
            "full_refresh"
        } else {
            "incremental"
        };
        let mut streams = vec![("a", "incremental"), ("c", c_mode)];
        if round >= 2 {
            streams.push(("b", "incremental"));
        }
        if round == 5 {
            let mut v: Value = serde_json::from_str(&state).unwrap();
            v.as_array_mut()
                .unwrap()
                .retain(|s| s["stream"]["stream_descriptor"]["name"] != "a");
            state = v.to_string();
            dest.tables.remove("a");
        }
        let mut opts = ReadOptions { api, ..options() };
        if rng.bool() {
            opts.changes.buffer_bytes = rng.usize(150..2000);
        }
        opts.changes.checkpoint_records = rng.usize(1..6);
        let catalog = || catalog_of(&streams, json!({}));
        let (ok, messages) = emu.run_with(catalog(), &state, opts.clone());
        assert!(ok, "seed {seed} round {round}");
        // Overwrite mode: a full refresh replaces the table with what this read sends.
        if c_mode == "full_refresh" {
            dest.tables.remove("c");
        }
        let kill = rng.u8(..3) == 0 && messages.len() > 2;
        if std::env::var("ORACLE_DEBUG").is_ok() {
            eprintln!(
                "seed {seed} round {round} kill {kill} buffer {} state {state}",
                opts.changes.buffer_bytes
            );
            for m in &messages {
                eprintln!("  {m}");
            }
        }
        let messages = if kill {
            // Killed after a random message: what got out is merged, and the next read
            // resumes from the last STATE that got out.
            let cut = rng.usize(1..messages.len());
            let delivered = &messages[..cut];
            dest.merge(
                &committed(delivered),
                &format!("seed {seed} round {round} killed"),
            );
            state = state_after(delivered, &state);
            let (ok, resumed) = emu.run_with(catalog(), &state, opts.clone());
            assert!(ok, "seed {seed} round {round} resumed");
            // A full refresh that had finished before the kill starts over: its new
            // snapshot replaces what the killed attempt sent.
            let c_finished = delivered.iter().any(|m| {
                m["state"]["stream"]["stream_descriptor"]["name"] == "c"
                    && m["state"]["stream"]["stream_state"]["snapshot_has_more"] == false
            });
            if c_mode == "full_refresh" && c_finished {
                dest.tables.remove("c");
            }
            resumed
        } else {
            messages
        };
        let what = format!("seed {seed} round {round}");
        dest.merge(&messages, &what);
        state = state_after(&messages, &state);
        let names: Vec<&str> = streams.iter().map(|(s, _)| *s).collect();
        let consistent = assert_consistent(&emu, &dest, &messages, &names, &what);
        // A data sync stopped in the middle of its snapshot (before a page that would
        // repeat a document) is consistent at no timestamp yet: the next reads are.
        if consistent < names.len() {
            assert_eq!(api, Api::DataSync, "{what}");
        }
        compared += consistent;
    }
    compared
}
