//! list_snapshot's cost model and the work counters (`snapshot_iterator_builds`,
//! `rows_read`), as Convex's backend spends them: one cached snapshot iterator per
//! deployment, rebuilt under one global lock whenever a request is not the exact
//! continuation of the previous answer, at a cost that grows with the document log written
//! since the snapshot; pages cut by a time budget; requests killed by a timeout.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use convex_emulator::Deployment;
use serde_json::{json, Value};

/// Commits `n` one-document transactions into `table`.
fn write_rows(dep: &Deployment, table: &str, n: usize) {
    for i in 0..n {
        dep.insert("", table, json!({"i": i as f64})).unwrap();
    }
}

/// The next-page query of a list_snapshot answer, or `None` when it was the last.
fn next_query(table: &str, page: &Value) -> Option<String> {
    page["hasMore"].as_bool().unwrap().then(|| {
        format!(
            "tableName={table}&snapshot={}&cursor={}",
            page["snapshot"],
            enc(page["cursor"].as_str().unwrap())
        )
    })
}

fn page(emu: &convex_emulator::EmulatorServer, query: &str) -> Value {
    let r = get(emu, &format!("/api/list_snapshot?{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Convex resumes its one cached iterator only for the exact continuation of the previous
/// answer: a walk read page after page builds once; two walks interleaved page by page
/// rebuild on every page; repeating a page (a retry) rebuilds too.
#[test]
fn interleaved_walks_rebuild_on_every_page_and_a_lone_walk_builds_once() {
    let emu = start();
    let dep = emu.deployment();
    dep.update_settings(|s| s.snapshot_page_limit = 2);
    write_rows(dep, "a", 7);
    write_rows(dep, "b", 7);

    let walk = walk_snapshot(&emu, "tableName=a");
    assert!(walk.len() >= 4);
    let stats = dep.requests();
    assert_eq!(stats.snapshot_iterator_builds, 1);
    assert_eq!(stats.rows_read["list_snapshot"], 7);

    dep.reset_requests();
    assert_eq!(dep.requests().snapshot_iterator_builds, 0);
    assert!(dep.requests().rows_read.is_empty());
    let (mut qa, mut qb) = (
        Some("tableName=a".to_owned()),
        Some("tableName=b".to_owned()),
    );
    let mut pages = 0;
    while qa.is_some() || qb.is_some() {
        if let Some(q) = qa.take() {
            qa = next_query("a", &page(&emu, &q));
            pages += 1;
        }
        if let Some(q) = qb.take() {
            qb = next_query("b", &page(&emu, &q));
            pages += 1;
        }
    }
    assert_eq!(dep.requests().snapshot_iterator_builds, pages);

    // A retry of the page just answered is not its continuation; continuing the retry's
    // answer is.
    dep.reset_requests();
    let first = page(&emu, "tableName=a");
    let q = next_query("a", &first).unwrap();
    page(&emu, &q);
    let retried = page(&emu, &q);
    assert_eq!(dep.requests().snapshot_iterator_builds, 2);
    let q2 = next_query("a", &retried).unwrap();
    page(&emu, &q2);
    assert_eq!(dep.requests().snapshot_iterator_builds, 2);
    // The same position under another selection is another iterator.
    let other = q2.replace("tableName=a", "component=");
    assert_eq!(
        get(&emu, &format!("/api/list_snapshot?{other}")).status,
        200
    );
    let stats = control(&emu, "GET", "/_emulator/requests", None).json();
    assert_eq!(stats["snapshot_iterator_builds"], 3, "{stats}");
    let reset = control(&emu, "POST", "/_emulator/requests/reset", None).json();
    assert_eq!(reset["snapshot_iterator_builds"], 0);
    assert_eq!(reset["rows_read"], json!({}));
}

/// A rebuild merges the document log from the snapshot up to head, so it costs more the
/// older the snapshot; continuing the cached iterator costs nothing extra.
#[test]
fn rebuild_cost_grows_with_the_log_after_the_snapshot() {
    let emu = start();
    let dep = emu.deployment();
    write_rows(dep, "a", 3);
    let control_resp = control(
        &emu,
        "POST",
        "/_emulator/settings",
        Some(&json!({"snapshot_page_limit": 1, "snapshot_build_us_per_row": 5000})),
    );
    assert_eq!(control_resp.status, 200, "{}", control_resp.text());
    assert_eq!(control_resp.json()["snapshot_build_us_per_row"], 5000);

    let timed = |q: &str| {
        let t = Instant::now();
        let p = page(&emu, q);
        (p, t.elapsed())
    };
    // At head nothing was written after the snapshot: a cheap build.
    let (first, fresh) = timed("tableName=a");
    assert!(fresh < Duration::from_millis(250), "{fresh:?}");
    let q = next_query("a", &first).unwrap();
    // 100 commits later, continuing the iterator is still cheap...
    write_rows(dep, "other", 100);
    let (second, continued) = timed(&q);
    assert!(continued < Duration::from_millis(250), "{continued:?}");
    // ...but a request that is not its continuation pays 100 rows × 5 ms.
    let (_, rebuilt) = timed(&q);
    assert!(rebuilt >= Duration::from_millis(500), "{rebuilt:?}");
    assert_eq!(second, page(&emu, &q), "the cost changes no answer");
    assert_eq!(dep.requests().snapshot_iterator_builds, 3);
}

/// Only one list_snapshot call can be initializing an iterator at a time: two concurrent
/// rebuilds wait for each other.
#[test]
fn rebuilds_are_serialized_by_one_global_lock() {
    let emu = start();
    let dep = emu.deployment();
    write_rows(dep, "a", 2);
    write_rows(dep, "b", 2);
    dep.update_settings(|s| s.snapshot_build_base_ms = 300);
    let t = Instant::now();
    std::thread::scope(|s| {
        for table in ["a", "b"] {
            let emu = &emu;
            s.spawn(move || page(emu, &format!("tableName={table}")));
        }
    });
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(dep.requests().snapshot_iterator_builds, 2);
}

/// Convex cuts a list_snapshot page once its work passes a time budget (60 s), after at
/// least one document; a rebuild's time counts toward the page that pays it.
#[test]
fn pages_are_cut_by_the_scaled_time_budget() {
    let emu = start();
    let dep = emu.deployment();
    write_rows(dep, "a", 30);
    dep.update_settings(|s| {
        s.snapshot_read_us_per_doc = 1000;
        s.snapshot_page_time_limit_ms = 5;
    });
    let sizes: Vec<usize> = walk_snapshot(&emu, "tableName=a")
        .iter()
        .map(|p| p["values"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 30);
    assert!(
        sizes[..sizes.len() - 1].iter().all(|&n| n == 5),
        "{sizes:?}"
    );

    // A rebuild that alone exhausts the budget leaves room for one document; the
    // continuation pages that follow it are full again.
    dep.update_settings(|s| s.snapshot_build_base_ms = 10);
    let first = page(&emu, "tableName=a");
    assert_eq!(first["values"].as_array().unwrap().len(), 1);
    let second = page(&emu, &next_query("a", &first).unwrap());
    assert_eq!(second["values"].as_array().unwrap().len(), 5);
}

/// Convex kills a request after 300 s with a bare 408; a rebuild that never fits in the
/// (scaled) timeout therefore never succeeds, and is never cached.
#[test]
fn a_rebuild_longer_than_the_request_timeout_is_a_bare_408() {
    let emu = start();
    let dep = emu.deployment();
    write_rows(dep, "a", 3);
    dep.update_settings(|s| {
        s.snapshot_page_limit = 1;
        s.request_timeout_ms = 200;
    });
    let first = page(&emu, "tableName=a");
    let q = next_query("a", &first).unwrap();
    dep.update_settings(|s| s.snapshot_build_base_ms = 1000);
    page(&emu, &q); // the continuation needs no build
    let retry_same = get(&emu, &format!("/api/list_snapshot?{q}"));
    let t = Instant::now();
    let r = get(&emu, &format!("/api/list_snapshot?{q}"));
    assert_eq!(r.status, 408);
    assert!(r.body.is_empty());
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(retry_same.status, 408);
    assert_eq!(dep.requests().snapshot_iterator_builds, 3);
}

/// document_deltas reads up to 128 log rows of every table per page before its table filter
/// applies, so a filtered walk reads the whole log; `rows_read` counts every row read.
#[test]
fn deltas_rows_read_counts_filtered_rows() {
    let emu = start();
    let dep = emu.deployment();
    dep.create_table("", "a").unwrap();
    dep.create_table("", "b").unwrap();
    let cursor = dep.head();
    for _ in 0..100 {
        dep.insert("", "a", json!({})).unwrap();
        dep.insert("", "b", json!({})).unwrap();
    }
    dep.reset_requests();
    let (pages, _) = all_deltas(&emu, cursor, "tableName=a");
    let values: usize = pages
        .iter()
        .map(|p| p["values"].as_array().unwrap().len())
        .sum();
    assert_eq!(values, 100);
    let stats = dep.requests();
    assert_eq!(stats.rows_read["document_deltas"], 200);
    assert_eq!(stats.by_endpoint["document_deltas"], pages.len() as u64);
    assert!(!stats.rows_read.contains_key("list_snapshot"));
}
