//! Self-measurement: generation time and list_snapshot serving rate over one keep-alive
//! connection. `cargo run --release -p convex-emulator --example throughput -- [tables] [docs]`
//! (default 2 × 100000 documents of ~400 B).

// Test helpers outside #[test] fns may unwrap and panic too (clippy.toml covers only those fns).
#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{enc, Conn};
use convex_emulator::{Config, EmulatorServer, GenerateSpec};

fn main() {
    let mut args = std::env::args().skip(1);
    let tables: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let docs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
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
    let auth = format!("Convex {}", emu.access_key());
    let mut conn = Conn::open(emu.addr()).expect("connect");
    let t = Instant::now();
    let (mut n, mut bytes, mut pages) = (0usize, 0usize, 0usize);
    for table in convex_emulator::table_names(tables) {
        let mut extra = String::new();
        loop {
            let r = conn
                .send(
                    "GET",
                    &format!("/api/list_snapshot?tableName={table}&format=json{extra}"),
                    &[("Authorization", &auth)],
                    None,
                )
                .expect("page");
            // Parse only the page's tail (snapshot, cursor, hasMore) and count values by
            // their fixed prefix, so the client's JSON parsing does not dominate the figure.
            let body = &r.body;
            let from = body.len().saturating_sub(300);
            let tail_at = from
                + body[from..]
                    .windows(13)
                    .rposition(|w| w == b"],\"snapshot\":")
                    .expect("page tail");
            let mut tail = b"{".to_vec();
            tail.extend_from_slice(&body[tail_at + 2..]);
            let v: serde_json::Value = serde_json::from_slice(&tail).expect("tail json");
            pages += 1;
            bytes += body.len();
            n += std::str::from_utf8(body)
                .expect("utf-8")
                .matches("{\"_component\":")
                .count();
            if v["hasMore"] != true {
                break;
            }
            extra = format!(
                "&snapshot={}&cursor={}",
                v["snapshot"],
                enc(v["cursor"].as_str().unwrap_or_default())
            );
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "served {n} documents in {pages} pages, {:.1} MB, in {secs:.2} s: {:.0} docs/s, {:.0} MB/s \
         (one client connection)",
        bytes as f64 / 1e6,
        n as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
}
