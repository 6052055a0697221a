//! Fault injection, the `/_emulator/` control API, the generator and the binary.

// Test helpers outside #[test] fns may unwrap and panic too (clippy.toml covers only those fns).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use convex_emulator::{Config, Deployment, FaultKind, FaultRule, GenerateSpec};
use serde_json::json;

fn conn_path() -> &'static str {
    "/api/test_streaming_export_connection"
}

#[test]
fn fault_status_after_and_times() {
    let emu = start();
    let rule: FaultRule = serde_json::from_value(json!({"endpoint": "list_snapshot",
        "kind": "status", "status": 503, "code": "Overloaded", "message": "busy",
        "after": 2, "times": 1}))
    .unwrap();
    emu.deployment().add_fault(rule).unwrap();
    let statuses: Vec<u16> = (0..4)
        .map(|_| get(&emu, "/api/list_snapshot").status)
        .collect();
    assert_eq!(statuses, [200, 200, 503, 200]);
    assert_eq!(get(&emu, conn_path()).status, 200);
    emu.deployment()
        .add_fault(FaultRule::status("*", 500, "InternalServerError", "x"))
        .unwrap();
    let r = get(&emu, conn_path());
    r.assert_error(500, "InternalServerError");
    emu.deployment().clear_faults();
    assert_eq!(get(&emu, conn_path()).status, 200);
}

#[test]
fn fault_html_and_rate_limit() {
    let emu = start();
    let dep = emu.deployment();
    dep.add_fault(FaultRule {
        status: Some(502),
        times: 1,
        ..FaultRule::new("json_schemas", FaultKind::Html)
    })
    .unwrap();
    let r = get(&emu, "/api/json_schemas");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert!(r.text().contains("<html>"));
    let rule: FaultRule = serde_json::from_value(
        json!({"endpoint": "*", "kind": "rate_limit", "retry_after_secs": 7, "times": 2}),
    )
    .unwrap();
    dep.add_fault(rule).unwrap();
    for _ in 0..2 {
        let r = get(&emu, conn_path());
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("7"));
    }
    assert_eq!(get(&emu, conn_path()).status, 200);
}

#[test]
fn fault_latency_and_global_latency() {
    let emu = start();
    let dep = emu.deployment();
    dep.add_fault(FaultRule::new("*", FaultKind::Latency).ms(150).times(1))
        .unwrap();
    let t = Instant::now();
    assert_eq!(get(&emu, conn_path()).status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    let t = Instant::now();
    get(&emu, conn_path());
    assert!(t.elapsed() < Duration::from_millis(150));
    dep.update_settings(|s| s.latency_ms = 100);
    let t = Instant::now();
    get(&emu, conn_path());
    assert!(t.elapsed() >= Duration::from_millis(100));
}

#[test]
fn fault_stall_before_and_after_headers() {
    let emu = start();
    let dep = emu.deployment();
    dep.add_fault(FaultRule::new("list_snapshot", FaultKind::Stall).times(1))
        .unwrap();
    let auth = format!("Convex {KEY}");
    let mut c = Conn::open(emu.addr()).unwrap();
    c.set_read_timeout(Duration::from_millis(300));
    let e = c
        .send(
            "GET",
            "/api/list_snapshot",
            &[("Authorization", &auth)],
            None,
        )
        .unwrap_err();
    assert!(matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));

    let mut rule = FaultRule::new("list_snapshot", FaultKind::Stall).times(1);
    rule.after_headers = true;
    dep.add_fault(rule).unwrap();
    // The headers arrive, then the body stops: a client with a body timeout gives up.
    let s = std::net::TcpStream::connect(emu.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    use std::io::{Read, Write};
    let mut s2 = s.try_clone().unwrap();
    write!(
        s2,
        "GET /api/list_snapshot HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let err = loop {
        match (&s).read(&mut buf) {
            Ok(0) => panic!("closed instead of stalling"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    // Shutdown does not wait for stalled connections.
    let t = Instant::now();
    emu.shutdown();
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn fault_reset_and_truncate() {
    let emu = start();
    let dep = emu.deployment();
    for i in 0..50 {
        dep.insert("", "t", json!({"i": i as f64})).unwrap();
    }
    let rule: FaultRule =
        serde_json::from_value(json!({"endpoint": "list_snapshot", "kind": "reset", "times": 1}))
            .unwrap();
    dep.add_fault(rule).unwrap();
    let auth = format!("Convex {KEY}");
    let e = request(
        emu.addr(),
        "GET",
        "/api/list_snapshot",
        &[("Authorization", &auth)],
        None,
    )
    .unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
        ),
        "{e:?}"
    );
    dep.add_fault(FaultRule::new("list_snapshot", FaultKind::Truncate).times(1))
        .unwrap();
    let e = request(
        emu.addr(),
        "GET",
        "/api/list_snapshot",
        &[("Authorization", &auth)],
        None,
    )
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    assert!(e.to_string().contains("truncated body"), "{e}");
    // The next request is normal again.
    assert_eq!(get(&emu, "/api/list_snapshot").status, 200);
    let stats = dep.requests();
    assert_eq!(stats.by_endpoint["list_snapshot"], 3);
    let log = dep.request_log();
    assert_eq!(log.iter().filter(|r| r.status == 0).count(), 2);
}

#[test]
fn fault_rate_is_seeded() {
    let run = || {
        let emu = start_with(Config {
            seed: 3,
            ..Config::default()
        });
        emu.deployment()
            .add_fault(FaultRule::status("*", 503, "Overloaded", "x").rate(0.5))
            .unwrap();
        (0..40)
            .map(|_| get(&emu, conn_path()).status)
            .collect::<Vec<_>>()
    };
    let a = run();
    assert_eq!(a, run());
    let hits = a.iter().filter(|&&s| s == 503).count();
    assert!((8..=32).contains(&hits), "{hits}");
}

#[test]
fn ignore_table_filter_reproduces_issue_302() {
    let emu = start();
    let dep = emu.deployment();
    dep.insert("", "a", json!({})).unwrap();
    dep.insert("", "b", json!({})).unwrap();
    let r = control(
        &emu,
        "POST",
        "/_emulator/settings",
        Some(&json!({"ignore_table_filter": true})),
    );
    assert_eq!(r.status, 200);
    assert_eq!(snapshot_values(&emu, "tableName=a").len(), 2);
    let p = deltas(&emu, dep.head() - 10_000_000, "tableName=a");
    assert_eq!(p["values"].as_array().unwrap().len(), 2);
}

#[test]
fn control_api_round_trip() {
    let emu = start();
    let r = control(
        &emu,
        "POST",
        "/_emulator/transaction",
        Some(&json!({"ops": [
            {"op": "insert", "component": "", "table": "users", "doc": {"name": "a", "n": {"$integer": "AQAAAAAAAAA="}}},
            {"op": "insert", "table": "users", "doc": {"name": "b"}}
        ]})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let ts = body["ts"].as_i64().unwrap();
    let ids = body["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2);
    let id0 = ids[0].as_str().unwrap();
    assert_eq!(id0.len(), 32);
    let r = control(
        &emu,
        "POST",
        "/_emulator/transaction",
        Some(&json!({"ops": [
            {"op": "patch", "table": "users", "id": id0, "fields": {"age": 3.0}, "remove": ["n"]},
            {"op": "replace", "table": "users", "id": ids[1], "doc": {"name": "B"}},
        ]})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let docs = control(
        &emu,
        "GET",
        "/_emulator/documents?table=users&component=",
        None,
    )
    .json();
    let docs = docs["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 2);
    let a = docs.iter().find(|d| d["_id"] == id0).unwrap();
    assert_eq!(a["age"], 3.0);
    assert!(a.get("n").is_none());
    assert!(a["_ts"].as_i64().unwrap() > ts);
    assert_eq!(
        docs,
        emu.deployment().live_documents("", "users").as_slice()
    );
    // Errors leave nothing behind.
    let head = emu.deployment().head();
    let r = control(
        &emu,
        "POST",
        "/_emulator/transaction",
        Some(
            &json!({"ops": [{"op": "insert", "table": "users", "doc": {}},
                             {"op": "delete", "table": "users", "id": "nope"}]}),
        ),
    );
    assert_eq!(r.status, 400);
    assert_eq!(emu.deployment().head(), head);
    assert_eq!(
        control(
            &emu,
            "POST",
            "/_emulator/transaction",
            Some(&json!({"ops": [{"op": "insert", "table": "t", "doc": {"_x": 1}}]}))
        )
        .status,
        400
    );

    let tables = control(&emu, "GET", "/_emulator/tables", None).json();
    assert_eq!(tables[0]["table"], "users");
    assert_eq!(tables[0]["documents"], 2);
    for (path, status) in [
        ("/_emulator/tables/create", 200),
        ("/_emulator/tables/clear", 200),
        ("/_emulator/tables/delete", 200),
        ("/_emulator/tables/delete", 400),
    ] {
        let r = control(
            &emu,
            "POST",
            path,
            Some(&json!({"component": "", "table": "extra"})),
        );
        assert_eq!(r.status, status, "{path}: {}", r.text());
    }
    let r = control(
        &emu,
        "POST",
        "/_emulator/changes",
        Some(&json!({"count": 50, "seed": 1})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let c = r.json();
    assert_eq!(
        c["inserted"].as_u64().unwrap()
            + c["updated"].as_u64().unwrap()
            + c["deleted"].as_u64().unwrap(),
        50
    );
    let head = emu.deployment().head();
    let r = control(
        &emu,
        "POST",
        "/_emulator/clock",
        Some(&json!({"advance_ms": 1000})),
    );
    assert_eq!(r.json()["head"].as_i64(), Some(head + 1_000_000_000));

    let s = control(&emu, "GET", "/_emulator/settings", None).json();
    assert_eq!(s["snapshot_page_limit"], 1024);
    let s = control(
        &emu,
        "POST",
        "/_emulator/settings",
        Some(&json!({"deltas_page_limit": 5})),
    )
    .json();
    assert_eq!(s["deltas_page_limit"], 5);
    assert_eq!(emu.deployment().settings().deltas_page_limit, 5);
    assert_eq!(
        control(
            &emu,
            "POST",
            "/_emulator/settings",
            Some(&json!({"bogus": 1}))
        )
        .status,
        400
    );

    let r = control(
        &emu,
        "POST",
        "/_emulator/faults",
        Some(
            &json!({"endpoint": "json_schemas", "kind": "status", "status": 503, "code": "Overloaded", "message": "m"}),
        ),
    );
    assert_eq!(r.status, 200);
    get(&emu, "/api/json_schemas").assert_error(503, "Overloaded");
    assert_eq!(
        control(&emu, "DELETE", "/_emulator/faults", None).status,
        200
    );
    assert_eq!(get(&emu, "/api/json_schemas").status, 200);

    let req = control(&emu, "GET", "/_emulator/requests", None).json();
    assert_eq!(req["by_endpoint"]["json_schemas"], 2);
    assert!(req["total"].as_u64().unwrap() >= 2);
    control(&emu, "POST", "/_emulator/requests/reset", None);
    assert_eq!(
        control(&emu, "GET", "/_emulator/requests", None).json()["total"],
        0
    );
    assert_eq!(control(&emu, "POST", "/_emulator/nope", None).status, 404);
}

fn generated(seed: u64) -> Deployment {
    let dep = Deployment::new(seed, "k");
    convex_emulator::generate(
        &dep,
        &GenerateSpec {
            tables: 3,
            docs: 300,
            components: true,
            deltas: 200,
            seed,
            ..Default::default()
        },
    )
    .unwrap();
    dep
}

#[test]
fn generator_is_deterministic() {
    let (a, b, c) = (generated(5), generated(5), generated(6));
    assert_eq!(a.tables(), b.tables());
    assert_eq!(a.head(), b.head());
    let names: Vec<(String, String)> = a
        .tables()
        .into_iter()
        .map(|t| (t.component, t.table))
        .collect();
    assert!(names.contains(&("betterAuth".into(), "users".into())));
    assert!(names.contains(&("".into(), "users".into())));
    for (comp, t) in &names {
        assert_eq!(a.live_documents(comp, t), b.live_documents(comp, t));
    }
    assert_eq!(
        a.json_schemas(convex_emulator::Format::Clean, true, true)
            .unwrap(),
        b.json_schemas(convex_emulator::Format::Clean, true, true)
            .unwrap()
    );
    assert_ne!(a.live_documents("", "users"), c.live_documents("", "users"));
}

#[test]
fn generator_doc_size_and_mixed_types() {
    let dep = Deployment::new(1, "k");
    convex_emulator::generate(
        &dep,
        &GenerateSpec {
            tables: 4,
            docs: 200,
            doc_size: 2000,
            seed: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let docs = dep.live_documents("", "orders");
    let avg = docs.iter().map(|d| d.to_string().len()).sum::<usize>() / docs.len();
    assert!((1700..2400).contains(&avg), "average size {avg}");
    let schema = dep
        .json_schemas(convex_emulator::Format::Clean, false, false)
        .unwrap();
    let users = schema["users"]["properties"].to_string();
    for needle in ["int64", "base64 bytes", "boolean", "array", "null"] {
        assert!(users.contains(needle), "{needle} missing from {users}");
    }
    // Near-1 MiB documents.
    let big = Deployment::new(2, "k");
    convex_emulator::generate(
        &big,
        &GenerateSpec {
            tables: 1,
            docs: 3,
            doc_size: 1_000_000,
            seed: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let d = big.live_documents("", "users");
    assert!(d
        .iter()
        .all(|x| (900_000..1_048_576).contains(&x.to_string().len())));
}

#[test]
fn binary_prints_url_and_shuts_down() {
    let (mut child, info) = spawn_binary(
        env!("CARGO_BIN_EXE_convex-emulator"),
        &[
            "--port",
            "0",
            "--tables",
            "2",
            "--docs",
            "30",
            "--seed",
            "4",
            "--fault",
            r#"{"endpoint":"json_schemas","kind":"status","status":503,"times":1}"#,
        ],
    );
    assert_eq!(info["access_key"], "emulator-access-key");
    let addr = address(&info);
    let auth = "Convex emulator-access-key";
    let r = request(
        addr,
        "GET",
        "/api/json_schemas",
        &[("Authorization", auth)],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 503);
    let r = request(
        addr,
        "GET",
        "/api/json_schemas",
        &[("Authorization", auth)],
        None,
    )
    .unwrap();
    assert_eq!(r.json().as_object().unwrap().len(), 2);
    let r = request(
        addr,
        "GET",
        "/api/list_snapshot?tableName=users&format=json",
        &[("Authorization", auth)],
        None,
    )
    .unwrap();
    assert_eq!(r.json()["values"].as_array().unwrap().len(), 30);
    request(addr, "POST", "/_emulator/shutdown", &[], None).unwrap();
    assert_exits_cleanly(&mut child);
}

/// Waits (at most 10 s) for the emulator process to exit, and checks it exited with success.
fn assert_exits_cleanly(child: &mut std::process::Child) {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn binary_exits_on_sigterm() {
    let (mut child, info) = spawn_binary(env!("CARGO_BIN_EXE_convex-emulator"), &["--port", "0"]);
    assert!(info["url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_exits_cleanly(&mut child);
}

#[test]
fn malformed_requests_never_panic() {
    let emu = start();
    let auth = format!("Convex {KEY}");
    let bodies: [&[u8]; 6] = [
        b"",
        b"null",
        b"[]",
        b"{\"cursor\":1e400}",
        b"{\"selection\":[1]}",
        b"\xff\xfe",
    ];
    for path in ["/api/list_snapshot", "/api/document_deltas"] {
        for b in bodies {
            let r = request(
                emu.addr(),
                "POST",
                path,
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                Some(b),
            )
            .unwrap();
            assert!(
                r.status == 400 || r.status == 200,
                "{path} {b:?}: {}",
                r.status
            );
        }
    }
    for q in [
        "snapshot=99999999999999999999",
        "cursor=%ZZ",
        "tableName=%00",
        "component=a//b",
        "format=",
    ] {
        let r = get(&emu, &format!("/api/list_snapshot?{q}"));
        assert!(r.status < 600, "{q}");
        let r = get(&emu, &format!("/api/document_deltas?{q}"));
        assert!(r.status < 600, "{q}");
    }
    // Still alive.
    assert_eq!(get(&emu, conn_path()).status, 200);
}

/// `bytes_sent` counts the body bytes of the answers sent whole, per endpoint (what the
/// benchmark reports as bytes on the wire), and not those of faulted ones.
#[test]
fn bytes_sent_count_whole_answers_per_endpoint() {
    let emu = start_with(Config {
        generate: GenerateSpec {
            tables: 1,
            docs: 20,
            ..GenerateSpec::default()
        },
        ..Config::default()
    });
    let dep = emu.deployment();
    dep.reset_requests();
    let a = get(&emu, "/api/list_snapshot?tableName=users&format=json");
    let b = post(&emu, "/api/v1/data/sync", &json!({}));
    assert_eq!((a.status, b.status), (200, 200));
    dep.add_fault(FaultRule::new("list_snapshot", FaultKind::Truncate).times(1))
        .unwrap();
    let _ = request(
        emu.addr(),
        "GET",
        "/api/list_snapshot?tableName=users&format=json",
        &[("Authorization", &format!("Convex {}", emu.access_key()))],
        None,
    );
    let stats = dep.requests();
    assert_eq!(stats.bytes_sent["list_snapshot"], a.body.len() as u64);
    assert_eq!(stats.bytes_sent["data_sync"], b.body.len() as u64);
    assert_eq!(stats.by_endpoint["list_snapshot"], 2);
}
