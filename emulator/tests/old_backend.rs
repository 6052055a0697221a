//! `--no-data-sync` (setting `no_data_sync`): a self-hosted Convex backend from before the Data
//! Sync API (2026-07-10), which also predates the fix of 2026-08-11 (convex-backend #56050)
//! before which `document_deltas` skipped the tables of non-root components.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use convex_emulator::{Config, EmulatorServer, GenerateSpec};
use serde_json::{json, Value};

const ROUTES: [(&str, &str); 3] = [
    ("POST", "/api/v1/data/sync"),
    ("POST", "/api/data_sync_cursor_from_deltas"),
    ("GET", "/api/v1/data/list_active_syncs"),
];

fn call(emu: &EmulatorServer, method: &str, path: &str, auth: bool) -> Resp {
    let key = format!("Convex {}", emu.access_key());
    let mut headers = vec![("Content-Type", "application/json")];
    if auth {
        headers.push(("Authorization", &key));
    }
    let body = (method == "POST").then_some(&br#"{"cursor": 0}"#[..]);
    request(emu.addr(), method, path, &headers, body).unwrap()
}

/// Convex's router has no fallback route: axum's bare 404.
fn assert_no_route(r: &Resp, what: &str) {
    assert_eq!(r.status, 404, "{what}: {}", r.text());
    assert!(r.body.is_empty(), "{what}: {}", r.text());
    assert_eq!(r.header("content-type"), None, "{what}");
    assert_eq!(r.header("content-length"), Some("0"), "{what}");
}

fn set(emu: &EmulatorServer, settings: Value) {
    let r = control(emu, "POST", "/_emulator/settings", Some(&settings));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn the_data_sync_routes_answer_as_routes_the_backend_does_not_have() {
    // Rule: a backend without the Data Sync API has none of its three routes; Convex's
    // router answers any path it does not serve with a bare 404 (empty body, no
    // Content-Type), whatever the method and before looking at the caller. The switch is a
    // setting, so a running deployment can flip it.
    let emu = start();
    for (m, p) in ROUTES {
        assert_ne!(call(&emu, m, p, true).status, 404, "{m} {p} is served");
    }
    assert_no_route(&call(&emu, "GET", "/api/nope", true), "unknown route");
    assert_no_route(&call(&emu, "GET", "/nope", false), "unknown path");

    set(&emu, json!({"no_data_sync": true}));
    for (m, p) in ROUTES {
        assert_no_route(&call(&emu, m, p, true), p);
        assert_no_route(&call(&emu, m, p, false), p);
        let other = if m == "GET" { "POST" } else { "GET" };
        assert_no_route(&call(&emu, other, p, true), p);
    }
    // The streaming export endpoints are still there.
    assert_eq!(
        call(&emu, "GET", "/api/test_streaming_export_connection", true).status,
        200
    );
    let log: BTreeSet<(String, u16)> = emu
        .deployment()
        .request_log()
        .into_iter()
        .map(|r| (r.endpoint, r.status))
        .collect();
    assert!(log.contains(&("data_sync".to_owned(), 404)), "{log:?}");

    set(&emu, json!({"no_data_sync": false}));
    for (m, p) in ROUTES {
        assert_ne!(
            call(&emu, m, p, true).status,
            404,
            "{m} {p} is served again"
        );
    }
}

#[test]
fn document_deltas_skips_component_tables_but_list_snapshot_does_not() {
    // Rule: before 2026-08-11, document_deltas dropped the rows of tables in non-root
    // components (after counting them toward the rows it read); root tables and
    // list_snapshot were unaffected.
    let emu = start_with(Config {
        generate: GenerateSpec {
            tables: 1,
            docs: 3,
            components: true,
            ..GenerateSpec::default()
        },
        ..Config::default()
    });
    let dep = emu.deployment();
    let from = dep.head();
    dep.insert("", "users", json!({"n": 1.0})).unwrap();
    dep.insert("betterAuth", "users", json!({"n": 2.0}))
        .unwrap();
    dep.insert("rateLimiter", "rateLimits", json!({"n": 3.0}))
        .unwrap();
    let changed = |emu: &EmulatorServer| -> Vec<(String, String)> {
        all_deltas(emu, from, "")
            .0
            .iter()
            .flat_map(|p| p["values"].as_array().unwrap().clone())
            .map(|v| {
                (
                    v["_component"].as_str().unwrap().to_owned(),
                    v["_table"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let all = changed(&emu);
    assert_eq!(all.len(), 3, "{all:?}");

    set(&emu, json!({"no_data_sync": true}));
    assert_eq!(changed(&emu), [("".to_owned(), "users".to_owned())]);
    // Selected explicitly, a component's table still gets nothing.
    let p = deltas(&emu, from, "tableName=users&component=betterAuth");
    assert_eq!(p["values"], json!([]));
    // The skipped rows were read: a one-row page budget ends at each of them.
    dep.update_settings(|s| s.deltas_page_limit = 1);
    let (pages, cursor) = all_deltas(&emu, from, "");
    assert_eq!(pages.len(), 3);
    assert_eq!(cursor, dep.head());
    dep.update_settings(|s| s.deltas_page_limit = 128);
    // list_snapshot still walks every component.
    let components: BTreeSet<String> = snapshot_values(&emu, "")
        .iter()
        .map(|v| v["_component"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        components,
        BTreeSet::from(["".into(), "betterAuth".into(), "rateLimiter".into()])
    );

    set(&emu, json!({"no_data_sync": false}));
    assert_eq!(changed(&emu), all);
}

#[test]
fn the_cli_flags_set_the_old_backend_and_the_progress_interval() {
    let (mut child, info) = spawn_binary(
        env!("CARGO_BIN_EXE_convex-emulator"),
        &[
            "--port",
            "0",
            "--no-data-sync",
            "--data-sync-progress-write-interval-ms",
            "0",
        ],
    );
    let addr = address(&info);
    let s = settings_at(addr);
    assert_eq!(s["no_data_sync"], true);
    assert_eq!(s["data_sync_progress_write_interval_ms"], 0);
    let auth = format!("Convex {}", info["access_key"].as_str().unwrap());
    let r = request(
        addr,
        "POST",
        "/api/v1/data/sync",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(b"{}"),
    )
    .unwrap();
    assert_no_route(&r, "data sync");
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
    for flag in ["--no-data-sync", "--data-sync-progress-write-interval-ms"] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    let (mut child, info) = spawn_binary(env!("CARGO_BIN_EXE_convex-emulator"), &["--port", "0"]);
    let addr = address(&info);
    let s = settings_at(addr);
    assert_eq!(s["no_data_sync"], false);
    assert_eq!(
        s["data_sync_progress_write_interval_ms"], 5_000,
        "Convex's knob"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
