//! Retention as Convex configures it: the backend's knobs by default (document retention
//! 14 days, `LIST_SNAPSHOT_MAX_AGE_SECS` 5 days), the self-hosted Docker image's 2-day
//! retention behind a switch, and a list_snapshot whose snapshot fell out of retention failing
//! with a 503 that no retry heals.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use convex_emulator::{Config, Settings, SELF_HOSTED_DOCKER_RETENTION_MS};
use serde_json::json;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// With the backend's defaults a deltas cursor 13 days old is still readable and one 15 days
/// old is outside retention; a snapshot 4 days old is listable, one 6 days old too old.
#[test]
fn defaults_are_the_backends_knobs() {
    let emu = start();
    let dep = emu.deployment();
    dep.insert("", "t", json!({})).unwrap();
    let t0 = dep.head();
    dep.advance_clock(4 * DAY);
    assert_eq!(
        get(&emu, &format!("/api/list_snapshot?snapshot={t0}")).status,
        200
    );
    dep.advance_clock(2 * DAY);
    get(&emu, &format!("/api/list_snapshot?snapshot={t0}")).assert_error(400, "SnapshotTooOld");
    dep.advance_clock(7 * DAY);
    assert_eq!(
        get(&emu, &format!("/api/document_deltas?cursor={t0}")).status,
        200
    );
    dep.advance_clock(2 * DAY);
    get(&emu, &format!("/api/document_deltas?cursor={t0}"))
        .assert_error(400, "InvalidWindowToReadDocuments");
}

/// With the self-hosted Docker retention (2 days) a 3-day-old snapshot passes the 5-day age
/// check, but its revisions are gone: the walk fails with 503 OutOfRetention, and every
/// retry (first page or continuation) fails the same way, so only a new snapshot helps.
#[test]
fn a_snapshot_out_of_retention_is_a_503_that_retries_cannot_fix() {
    let emu = start_with(Config {
        settings: Settings::self_hosted_docker(),
        ..Config::default()
    });
    let dep = emu.deployment();
    assert_eq!(dep.settings().retention_ms, SELF_HOSTED_DOCKER_RETENTION_MS);
    dep.update_settings(|s| s.snapshot_page_limit = 1);
    dep.insert("", "t", json!({})).unwrap();
    dep.insert("", "t", json!({})).unwrap();
    let first = get(&emu, "/api/list_snapshot?tableName=t").json();
    let s = first["snapshot"].as_i64().unwrap();
    let next = format!(
        "/api/list_snapshot?tableName=t&snapshot={s}&cursor={}",
        enc(first["cursor"].as_str().unwrap())
    );
    dep.advance_clock(3 * DAY);
    for _ in 0..3 {
        get(&emu, &next).assert_error(503, "OutOfRetention");
        get(
            &emu,
            &format!("/api/list_snapshot?tableName=t&snapshot={s}"),
        )
        .assert_error(503, "OutOfRetention");
    }
    get(&emu, &format!("/api/document_deltas?cursor={s}"))
        .assert_error(400, "InvalidWindowToReadDocuments");
    // A fresh walk works.
    assert_eq!(snapshot_values(&emu, "tableName=t").len(), 2);
}

/// The binary exposes the switch and the cost/churn settings as flags.
#[test]
fn binary_flags_set_retention_costs_and_churn() {
    let (mut child, info) = spawn_binary(
        env!("CARGO_BIN_EXE_convex-emulator"),
        &[
            "--port",
            "0",
            "--self-hosted-docker-retention",
            "--snapshot-build-base-ms",
            "3",
            "--snapshot-build-us-per-row",
            "4",
            "--snapshot-read-us-per-doc",
            "5",
            "--snapshot-page-time-limit-ms",
            "60",
            "--request-timeout-ms",
            "300",
            "--system-write-interval-ms",
            "0",
        ],
    );
    let addr = address(&info);
    let s = settings_at(addr);
    assert_eq!(s["retention_ms"], SELF_HOSTED_DOCKER_RETENTION_MS);
    assert_eq!(s["snapshot_build_base_ms"], 3);
    assert_eq!(s["snapshot_build_us_per_row"], 4);
    assert_eq!(s["snapshot_read_us_per_doc"], 5);
    assert_eq!(s["snapshot_page_time_limit_ms"], 60);
    assert_eq!(s["request_timeout_ms"], 300);
    assert_eq!(s["system_write_interval_ms"], 0);
    request(addr, "POST", "/_emulator/shutdown", &[], None).unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(10), "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let help = Command::new(env!("CARGO_BIN_EXE_convex-emulator"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--self-hosted-docker-retention",
        "--snapshot-build-base-ms",
        "--snapshot-build-us-per-row",
        "--snapshot-read-us-per-doc",
        "--snapshot-page-time-limit-ms",
        "--request-timeout-ms",
        "--system-write-interval-ms",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}
