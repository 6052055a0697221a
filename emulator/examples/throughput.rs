//! Self-measurement: generation time, then the serving rate of one table paged through
//! list_snapshot (`export_json`) and through a one-table Data Sync (cold start until
//! `upToDate`), over one keep-alive connection.
//! `cargo run --release -p convex-emulator --example throughput -- [tables] [docs] [runs]`
//! (default 2 × 100000 documents of ~400 B, 5 runs of each).
//!
//! Besides the wall time of each loop (client included), it reports the CPU time the
//! server's threads spent per document (Linux: from `/proc/self/task/*/schedstat`).

// Test helpers outside #[test] fns may unwrap and panic too (clippy.toml covers only those fns).
#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{enc, Conn, Resp};
use convex_emulator::{Config, EmulatorServer, GenerateSpec};
use serde_json::{json, Value};

fn main() {
    let mut args = std::env::args().skip(1);
    let tables: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let docs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let t = Instant::now();
    let emu = EmulatorServer::start(Config {
        generate: GenerateSpec {
            tables,
            docs,
            ..GenerateSpec::default()
        },
        ..Config::default()
    })
    .expect("start");
    println!(
        "generated {tables} x {docs} documents in {:.2?}",
        t.elapsed()
    );
    let table = convex_emulator::table_names(tables.max(1)).remove(0);
    let auth = format!("Convex {}", emu.access_key());
    let mut conn = Conn::open(emu.addr()).expect("connect");
    conn.set_read_timeout(Duration::from_secs(120));
    for _ in 0..runs {
        for (api, walk) in [
            ("list_snapshot", list_snapshot as Walk),
            ("data_sync", data_sync as Walk),
        ] {
            let cpu = server_cpu();
            let t = Instant::now();
            let w = walk(&mut conn, &auth, &table);
            let secs = t.elapsed().as_secs_f64();
            let cpu = server_cpu()
                .zip(cpu)
                .map(|(after, before)| {
                    format!(", server CPU {:.0} ns/doc", ns(after - before, w.docs))
                })
                .unwrap_or_default();
            println!(
                "{api:>13}: {} documents in {} pages, {:.1} MB, {:.0} ms: {:.0} docs/s, \
                 {:.0} ns/doc{cpu}",
                w.docs,
                w.pages,
                w.bytes as f64 / 1e6,
                secs * 1e3,
                w.docs as f64 / secs,
                ns(secs, w.docs),
            );
        }
    }
}

fn ns(secs: f64, docs: usize) -> f64 {
    secs * 1e9 / docs.max(1) as f64
}

type Walk = fn(&mut Conn, &str, &str) -> Walked;

#[derive(Default)]
struct Walked {
    docs: usize,
    pages: usize,
    bytes: usize,
}

impl Walked {
    /// Counts page `r` (its documents by their prefix `doc`) and returns its [`tail`] from
    /// `marker` on.
    fn page(&mut self, r: &Resp, doc: &str, marker: &[u8]) -> Value {
        assert_eq!(r.status, 200, "{}", r.text());
        self.pages += 1;
        self.bytes += r.body.len();
        self.docs += count(&r.body, doc);
        tail(&r.body, marker)
    }
}

/// The JSON object made of a page's last fields, which start at `marker` (a few hundred
/// bytes from the end): parsing only those keeps the client's share of the time small.
fn tail(body: &[u8], marker: &[u8]) -> Value {
    let from = body.len().saturating_sub(1000);
    let at = from
        + body[from..]
            .windows(marker.len())
            .rposition(|w| w == marker)
            .expect("page tail");
    let mut t = b"{".to_vec();
    t.extend_from_slice(&body[at + 2..]);
    serde_json::from_slice(&t).expect("tail json")
}

/// Values are counted by their fixed prefix.
fn count(body: &[u8], prefix: &str) -> usize {
    std::str::from_utf8(body)
        .expect("utf-8")
        .matches(prefix)
        .count()
}

fn list_snapshot(conn: &mut Conn, auth: &str, table: &str) -> Walked {
    let mut w = Walked::default();
    let mut extra = String::new();
    loop {
        let path = format!("/api/list_snapshot?tableName={table}&format=export_json{extra}");
        let r = conn
            .send("GET", &path, &[("Authorization", auth)], None)
            .expect("page");
        let v = w.page(&r, "{\"_component\":", b"],\"snapshot\":");
        if v["hasMore"] != true {
            return w;
        }
        extra = format!(
            "&snapshot={}&cursor={}",
            v["snapshot"],
            enc(v["cursor"].as_str().unwrap_or_default())
        );
    }
}

fn data_sync(conn: &mut Conn, auth: &str, table: &str) -> Walked {
    let mut w = Walked::default();
    let selection =
        json!({"_other": "excluded", "": {"_other": "excluded", table: {"_other": "included"}}});
    let mut body = json!({ "selection": selection });
    let headers = [
        ("Authorization", auth),
        ("Content-Type", "application/json"),
    ];
    loop {
        let b = serde_json::to_vec(&body).unwrap();
        let r = conn
            .send("POST", "/api/v1/data/sync", &headers, Some(&b))
            .expect("page");
        let v = w.page(&r, ",\"deleted\":", b"],\"syncId\":");
        if r.body.starts_with(b"{\"status\":{\"type\":\"upToDate\"") {
            return w;
        }
        body["cursor"] = v["pagination"]["nextCursor"].clone();
    }
}

/// CPU seconds of this process's emulator threads, when `/proc` shows them (`schedstat`
/// counts nanoseconds; `stat`'s ticks are too coarse for a 100 ms loop).
fn server_cpu() -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let name = std::fs::read_to_string(dir.join("comm")).ok()?;
        // `comm` keeps 15 bytes: the runtime's "convex-emulator-worker" threads show as
        // "convex-emulator".
        if !name.starts_with("convex-emulator") {
            continue;
        }
        let sched = std::fs::read_to_string(dir.join("schedstat")).ok()?;
        ns += sched.split(' ').next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}
