//! The real binary against a small in-process hostile HTTP server:
//! malformed, endless, echoing, looping, trickling, stalling and truncated answers, which the
//! emulator deliberately never gives (it answers as Convex does, faults aside). Every case
//! asserts the exact outcome (exit code, failure type, stream status), and every run (through
//! `common::Binary`, as every test of `tests/` runs the binary) asserts the invariants: every
//! stdout line is one JSON message, stdout is UTF-8, no panic, and the access key appears
//! nowhere, in stdout or stderr.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{wait_bounded, Binary, Run};
use serde_json::{json, Value};

const KEY: &str = "prod:hostile-test|aG9zdGlsZS1zZWNyZXQtdG9rZW4tMTIzNDU2Nzg5MA";
const TOKEN: &str = "aG9zdGlsZS1zZWNyZXQtdG9rZW4tMTIzNDU2Nzg5MA";
/// No case may take longer: a run past it is a hang, and fails the test.
const HANG: Duration = Duration::from_secs(60);

/// One request as the server saw it.
struct Req {
    path: String,
    /// The request head, verbatim (what an echoing proxy sends back).
    head: String,
    /// How many earlier requests had the same path.
    nth: usize,
}

/// The connector's head probe: a snapshot page of no table.
const HEAD_PROBE: &str = "/api/list_snapshot (head probe)";

enum Reply {
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// The head, then `parts` with `pause` between them (each part its own TCP write).
    Parts {
        parts: Vec<Vec<u8>>,
        pause: Duration,
    },
    /// The status line, `head_body` (more headers, the blank line, the body's start), then
    /// `filler` again and again until the client goes away.
    Endless {
        status: u16,
        head_body: Vec<u8>,
        filler: Vec<u8>,
        pause: Duration,
    },
    /// Claims more bytes than it sends, then closes.
    Truncated { body: Vec<u8>, claimed: usize },
    /// Reads the request and never answers.
    Stall,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// `head_body`, then KiB of `x` after KiB, without pause, until the client goes away.
    fn endless(status: u16, head_body: &[u8], kib: usize) -> Reply {
        Reply::Endless {
            status,
            head_body: head_body.to_vec(),
            filler: vec![b'x'; kib * 1024],
            pause: Duration::ZERO,
        }
    }

    fn raw(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body: body.into(),
        }
    }
}

type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

struct Hostile {
    /// The binary, run the way every test of `tests/` runs it.
    bin: Binary,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Hostile {
    fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let server_hits = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let handler = handler.clone();
                let hits = server_hits.clone();
                std::thread::spawn(move || serve(conn, &*handler, &hits));
            }
        });
        let mut bin = Binary::new(&url);
        bin.path = binary();
        bin.bound = HANG;
        bin.secrets = vec![KEY.to_owned(), TOKEN.to_owned()];
        Hostile { bin, hits }
    }

    fn url(&self) -> &str {
        &self.bin.url
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn config(&self, extra: Value) -> PathBuf {
        self.bin.config(KEY, &extra)
    }

    fn check(&self, extra: Value) -> Run {
        let config = self.config(extra);
        self.bin
            .run(&["check", "--config", config.to_str().unwrap()])
    }

    /// `read` of the full-refresh stream `t`, with an optional state.
    fn read(&self, extra: Value, state: Option<&str>) -> Run {
        self.read_in("full_refresh", extra, state)
    }

    /// `read` of stream `t` in `mode`, with an optional state.
    fn read_in(&self, mode: &str, extra: Value, state: Option<&str>) -> Run {
        let catalog = self.bin.write(
            "catalog.json",
            &json!({"streams": [{"stream": {"name": "t", "json_schema": {}}, "sync_mode": mode, "destination_sync_mode": "append"}]}).to_string(),
        );
        self.bin.read(&self.config(extra), &catalog, state)
    }
}

/// The binary under test: this build's, or another one's (`HOSTILE_SOURCE_CONVEX_BIN`, e.g.
/// to show a case failing on an older build). Not `SOURCE_CONVEX_BIN`: the test command sets
/// that to the release build, which does not exist yet when `cargo test` runs.
fn binary() -> String {
    std::env::var("HOSTILE_SOURCE_CONVEX_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_source-convex").to_owned())
}

fn serve(mut conn: TcpStream, handler: &Handler, hits: &Mutex<HashMap<String, usize>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
    let mut path = target.split('?').next().unwrap_or("/").to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if conn.read_exact(&mut body).is_err() {
        return;
    }
    let probe = serde_json::from_slice::<Value>(&body)
        .is_ok_and(|b| b["selection"] == json!({"_other": "excluded"}));
    if path == "/api/list_snapshot" && probe {
        path = HEAD_PROBE.to_owned();
    }
    let nth = {
        let mut h = hits.lock().unwrap();
        let n = h.entry(path.clone()).or_default();
        *n += 1;
        *n - 1
    };
    let reply = handler(&Req { path, head, nth });
    let status_line = |status: u16| format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    // Write errors mean the client went away: that ends the case, whatever it was.
    let _ = match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut out = status_line(status);
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            conn.write_all(out.as_bytes())
                .and_then(|()| conn.write_all(&body))
        }
        Reply::Parts { parts, pause } => {
            let len: usize = parts.iter().map(Vec::len).sum();
            let out = format!("{}Content-Length: {len}\r\n\r\n", status_line(200));
            conn.write_all(out.as_bytes()).and_then(|()| {
                for p in parts {
                    conn.write_all(&p)?;
                    conn.flush()?;
                    std::thread::sleep(pause);
                }
                Ok(())
            })
        }
        Reply::Endless {
            status,
            head_body,
            filler,
            pause,
        } => conn
            .write_all(status_line(status).as_bytes())
            .and_then(|()| conn.write_all(&head_body))
            .and_then(|()| loop {
                conn.write_all(&filler)?;
                if !pause.is_zero() {
                    std::thread::sleep(pause);
                }
            }),
        Reply::Truncated { body, claimed } => {
            let out = format!("{}Content-Length: {claimed}\r\n\r\n", status_line(200));
            conn.write_all(out.as_bytes())
                .and_then(|()| conn.write_all(&body))
        }
        Reply::Stall => {
            // Until the client hangs up.
            let mut sink = [0u8; 64];
            while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
            Ok(())
        }
    };
}

fn schemas() -> Reply {
    Reply::json(200, &json!({"t": {"type": "object", "properties": {}}}))
}

fn doc(id: &str) -> Value {
    json!({"_id": id, "_creationTime": 1.5, "_ts": 1_770_000_000_000_000_001i64, "_table": "t", "n": [1, {"s": "é\"}"}]})
}

fn page(docs: &[Value]) -> Value {
    json!({"values": docs, "snapshot": 1_770_000_000_000_000_009i64, "cursor": "c", "hasMore": false})
}

/// A deployment with table `t`: `snapshot` answers list_snapshot, deltas are empty.
fn deployment(snapshot: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Hostile {
    Hostile::start(move |req| match req.path.as_str() {
        "/api/json_schemas" => schemas(),
        HEAD_PROBE => Reply::json(
            200,
            &json!({"values": [], "snapshot": 1_770_000_000_000_000_009i64, "cursor": null, "hasMore": false}),
        ),
        "/api/list_snapshot" => snapshot(req),
        "/api/document_deltas" => Reply::json(
            200,
            &json!({"values": [], "cursor": 1_770_000_000_000_000_009i64, "hasMore": false}),
        ),
        _ => Reply::raw(404, "no"),
    })
}

/// Asserts that `run` took `seconds` (at least the start, less than the end).
fn assert_took(run: &Run, seconds: std::ops::Range<u64>) {
    let took = run.elapsed;
    let (min, max) = (seconds.start, seconds.end);
    assert!(
        took >= Duration::from_secs(min) && took < Duration::from_secs(max),
        "{took:?}"
    );
}

/// The request head as an echoing server or proxy sends it back, `Authorization` included.
fn echo(req: &Req) -> String {
    assert!(req.head.contains(KEY), "the client sent the key");
    format!("you sent: {}", req.head)
}

// ---- the key echoed back never reaches output

#[test]
fn an_echoed_key_is_redacted_in_check_status() {
    let h = Hostile::start(|req| {
        Reply::json(401, &json!({"code": "BadDeployKey", "message": echo(req)}))
    });
    let run = h.check(json!({}));
    assert_eq!(run.code, 0);
    let (status, message) = run.check_status();
    assert_eq!(status, "FAILED");
    assert!(
        message.contains("BadDeployKey") && message.contains("Convex <redacted>"),
        "{message}"
    );
}

#[test]
fn an_echoed_key_is_redacted_in_retry_warnings_and_the_trace() {
    // A 5xx echoing the headers as plain text, retried at once (Retry-After: 0).
    let h = deployment(|req| Reply::Full {
        status: 503,
        headers: vec![("Retry-After", "0".into())],
        body: echo(req).into_bytes(),
    });
    let run = h.read(json!({}), None);
    let message = run.assert_failed("t", "transient_error");
    assert!(message.contains("<redacted>"), "{message}");
    let warnings = run.logs("WARN");
    assert_eq!(warnings.len(), 5, "{warnings:?}");
    assert!(
        warnings.iter().all(|w| w.contains("Convex <redacted>")),
        "{warnings:?}"
    );
    assert_eq!(h.hits("/api/list_snapshot"), 6);
}

#[test]
fn an_echoed_key_in_a_200_is_redacted() {
    // A page whose `snapshot` is the echo: serde's message quotes the string it refused.
    let h = deployment(|req| {
        Reply::json(
            200,
            &json!({"values": [], "snapshot": echo(req), "cursor": null, "hasMore": false}),
        )
    });
    let run = h.read(json!({}), None);
    let message = run.assert_failed("t", "system_error");
    assert!(message.contains("Convex <redacted>"), "{message}");
    // Not retried: a wrong body does not become right.
    assert_eq!(h.hits("/api/list_snapshot"), 1);
    // A proxy's HTML page instead of JSON: the same, without the page in the message.
    let h = deployment(|req| Reply::raw(200, format!("<html>{}</html>", echo(req))));
    let message = h.read(json!({}), None).assert_failed("t", "system_error");
    assert!(message.contains("unexpected '<' at byte 0"), "{message}");
}

// ---- defects 3 and 5: what reaches stdout is valid JSON, one record per line

#[test]
fn a_bad_document_fails_the_stream_before_its_state() {
    let good = doc("a").to_string();
    let bad: [&[u8]; 5] = [
        br#"{"_id":"b","_ts":+5,"_table":"t"}"#,
        b"{\"_id\":\"b\",\"_ts\":5,\"_table\":\"t\",\"s\":\"\xff\xfe\"}",
        b"{\"_id\":\"b\",\"_ts\":5,\"_table\":\"t\",\"s\":\"raw\nline\"}",
        br#"{"_id":"b",,"_ts":5,"_table":"t"}"#,
        // An element that is an array with "_ts" inside, split across two chunks: this one
        // made the parser panic (exit 101, no terminal status).
        br#"["x","_ts","y"]"#,
    ];
    for bad in bad {
        let mut body = format!(r#"{{"values":[{good},"#).into_bytes();
        body.extend_from_slice(bad);
        // Split two bytes before the bad element ends: inside it, after any `"_ts"`.
        let split = body.len() - 2;
        body.extend_from_slice(br#"],"snapshot":9,"cursor":"c","hasMore":false}"#);
        let parts = vec![body[..split].to_vec(), body[split..].to_vec()];
        let h = deployment(move |_| Reply::Parts {
            parts: parts.clone(),
            pause: Duration::from_millis(50),
        });
        let run = h.read(json!({}), None);
        let message = run.assert_failed("t", "system_error");
        assert!(
            message.contains("not valid JSON") || message.contains("must be a JSON object"),
            "{message}"
        );
        assert_eq!(h.hits("/api/list_snapshot"), 1, "not retried");
    }
}

#[test]
fn a_pretty_printed_page_becomes_one_line_records() {
    let docs = [doc("a"), doc("b"), doc("c")];
    let body = serde_json::to_string_pretty(&page(&docs)).unwrap();
    assert!(body.lines().count() > 20);
    let h = deployment(move |_| Reply::raw(200, body.clone()));
    let run = h.read(json!({}), None);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let records = run.of_type("RECORD");
    assert_eq!(records.len(), 3);
    for (r, d) in records.iter().zip(&docs) {
        for (k, v) in d.as_object().unwrap() {
            assert_eq!(r["record"]["data"][k], *v);
        }
    }
    assert_eq!(run.statuses("t").last().unwrap(), "COMPLETE");
    assert_eq!(run.of_type("STATE").len(), 1);
    // One line per message: 3 records among them.
    assert_eq!(run.stdout.lines().count(), run.messages.len());
}

// ---- endless bodies are cut at their caps

#[test]
fn an_endless_schemas_body_is_cut_at_its_cap() {
    let h = Hostile::start(|_| {
        Reply::endless(
            200,
            b"\r\n{\"t\":{\"type\":\"object\",\"description\":\"",
            256,
        )
    });
    let config = h.config(json!({}));
    let run = h
        .bin
        .run(&["discover", "--config", config.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    let (kind, message) = run.error();
    assert_eq!(kind, "system_error");
    assert!(message.contains("larger than 64 MiB"), "{message}");
}

#[test]
fn an_endless_document_is_cut_at_its_cap() {
    let h = deployment(|_| Reply::endless(200, b"\r\n{\"values\":[{\"_id\":\"a\",\"pad\":\"", 256));
    let run = h.read(json!({}), None);
    let message = run.assert_failed("t", "system_error");
    assert!(message.contains("larger than 16 MiB"), "{message}");
}

#[test]
fn an_endless_error_body_is_read_only_to_its_cap() {
    let h = deployment(|_| Reply::endless(503, b"Retry-After: 0\r\n\r\n<html>", 64));
    let run = h.read(json!({}), None);
    run.assert_failed("t", "transient_error");
    assert_eq!(h.hits("/api/list_snapshot"), 6);
}

// ---- deadlines

#[test]
fn a_trickling_body_ends_at_the_overall_deadline() {
    // Never idle for a second, never finished: only the overall deadline (5 × 1 s) ends it.
    let h = deployment(|req| {
        if req.nth == 0 {
            Reply::Endless {
                status: 200,
                head_body: b"\r\n{\"values\":[".to_vec(),
                filler: b" ".to_vec(),
                pause: Duration::from_millis(200),
            }
        } else {
            Reply::json(200, &page(&[doc("a")]))
        }
    });
    let run = h.read(json!({"request_timeout_seconds": 1}), None);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.of_type("RECORD").len(), 1);
    assert_eq!(h.hits("/api/list_snapshot"), 2);
    assert_eq!(run.logs("WARN").len(), 1, "{:?}", run.logs("WARN"));
    assert_took(&run, 5..20);
}

#[test]
fn check_does_not_wait_out_a_long_retry_after() {
    let h = Hostile::start(|req| {
        if req.nth == 0 {
            Reply::Full {
                status: 429,
                headers: vec![("Retry-After", "3600".into())],
                body: br#"{"code":"RateLimited","message":"slow down"}"#.to_vec(),
            }
        } else {
            Reply::json(401, &json!({"code": "BadDeployKey", "message": "no"}))
        }
    });
    let run = h.check(json!({}));
    let (status, message) = run.check_status();
    assert_eq!(status, "FAILED");
    assert!(message.contains("BadDeployKey"), "{message}");
    assert_eq!(h.hits("/api/json_schemas"), 2);
    // One wait of at most 5 s, not of two minutes.
    assert_took(&run, 4..15);
}

// ---- redirects, truncated pages and pages requested ahead

#[test]
fn a_redirect_loop_ends_without_retries() {
    let h = Hostile::start(|req| Reply::Full {
        status: 302,
        headers: vec![("Location", format!("{}?again", req.path))],
        body: Vec::new(),
    });
    let run = h.check(json!({}));
    let (status, message) = run.check_status();
    assert_eq!(status, "FAILED");
    assert!(message.contains("keeps redirecting"), "{message}");
    // The first request and nine redirects, once: a loop is not retried.
    assert_eq!(h.hits("/api/json_schemas"), 10);
}

#[test]
fn a_redirect_to_https_is_reported_not_blamed_on_tls() {
    let h = Hostile::start(|_| Reply::Full {
        status: 301,
        headers: vec![("Location", "https://127.0.0.1:9/api/json_schemas".into())],
        body: Vec::new(),
    });
    let run = h.check(json!({}));
    let (status, message) = run.check_status();
    assert_eq!(status, "FAILED");
    assert!(
        message.contains("redirects to \"https://127.0.0.1:9/api/json_schemas\""),
        "{message}"
    );
    assert!(!message.contains("certificate"), "{message}");
}

// ---- truncation heals

#[test]
fn a_truncated_page_is_read_again_exactly() {
    let full = page(&[doc("a"), doc("b")]).to_string().into_bytes();
    let h = deployment(move |req| {
        if req.nth == 0 {
            Reply::Truncated {
                body: full[..full.len() / 2].to_vec(),
                claimed: full.len(),
            }
        } else {
            Reply::raw(200, full.clone())
        }
    });
    let run = h.read(json!({}), None);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let ids: Vec<_> = run
        .of_type("RECORD")
        .iter()
        .map(|r| r["record"]["data"]["_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(h.hits("/api/list_snapshot"), 2);
}

// ---- pages requested ahead (the next page of a walk is asked for once a body has arrived)

/// Page `n` of a three-page walk: two documents, and the cursor of the next page.
fn walk_page(n: usize) -> Value {
    let docs = [doc(&format!("p{n}a")), doc(&format!("p{n}b"))];
    let mut p = page(&docs);
    if n < 2 {
        p["cursor"] = json!(format!("after \"{n}\""));
        p["hasMore"] = json!(true);
    }
    p
}

fn record_ids(run: &Run) -> Vec<String> {
    run.of_type("RECORD")
        .iter()
        .map(|r| r["record"]["data"]["_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn pages_requested_ahead_are_each_requested_once_and_kept_in_order() {
    let h = deployment(|req| Reply::json(200, &walk_page(req.nth)));
    let run = h.read(json!({}), None);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(record_ids(&run), ["p0a", "p0b", "p1a", "p1b", "p2a", "p2b"]);
    assert_eq!(run.of_type("STATE").len(), 3);
    assert_eq!(h.hits("/api/list_snapshot"), 3);
}

#[test]
fn a_page_requested_ahead_that_fails_is_retried_like_any_other() {
    // The second page's first answer is a 503: requested ahead, it fails when its turn comes,
    // and is asked for again; nothing is lost or sent twice.
    let h = deployment(|req| match req.nth {
        1 => Reply::Full {
            status: 503,
            headers: vec![("Retry-After", "0".into())],
            body: b"busy".to_vec(),
        },
        n => Reply::json(200, &walk_page(n.saturating_sub(1))),
    });
    let run = h.read(json!({}), None);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(record_ids(&run), ["p0a", "p0b", "p1a", "p1b", "p2a", "p2b"]);
    assert_eq!(h.hits("/api/list_snapshot"), 4);
}

#[test]
fn a_bad_page_stops_the_walk_with_at_most_one_page_requested_ahead() {
    let h = deployment(|req| {
        if req.nth == 1 {
            let mut body = walk_page(1).to_string().into_bytes();
            let at = body.windows(4).position(|w| w == b"p1b\"").unwrap();
            body.insert(at + 4, b'+');
            Reply::raw(200, body)
        } else {
            Reply::json(200, &walk_page(req.nth))
        }
    });
    let run = h.read(json!({}), None);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(
        run.statuses("t").last().map(String::as_str),
        Some("INCOMPLETE")
    );
    let (failure, message) = run.error();
    assert_eq!(failure, "system_error", "{message}");
    assert!(message.contains("not valid JSON"), "{message}");
    // The first page and its STATE; nothing of the page after the bad one.
    assert_eq!(run.of_type("STATE").len(), 1, "{}", run.stdout);
    let ids = record_ids(&run);
    assert_eq!(ids[..2], ["p0a", "p0b"]);
    assert!(ids.iter().all(|id| !id.starts_with("p2")), "{ids:?}");
    // The bad page's body had arrived: the page after it may have been asked for, no more.
    assert!((2..=3).contains(&h.hits("/api/list_snapshot")));
}

// ---- config mistakes, duplicate streams, huge cursors, a closed stdout

#[test]
fn config_mistakes_are_config_errors_before_any_request() {
    let h = Hostile::start(|_| schemas());
    let cases = [
        (
            json!({"deployment_url": "http://murky-swan-635.convex.cloud", "access_key": KEY}),
            "use https://murky-swan-635.convex.cloud",
        ),
        (
            json!({"deployment_url": h.url(), "access_key": "prod:x|tökén-with-umlauts"}),
            "non-ASCII",
        ),
        (
            json!({"deployment_url": h.url(), "access_key": format!("prod:x|{}", "k".repeat(5000))}),
            "longer than any Convex deploy key",
        ),
        (json!([h.url(), KEY]), "must be a JSON object"),
    ];
    for (config, want) in cases {
        let path = h.bin.write("bad.json", &config.to_string());
        let run = h.bin.run(&["check", "--config", path.to_str().unwrap()]);
        assert_eq!(run.code, 0);
        let (status, message) = run.check_status();
        assert_eq!(status, "FAILED");
        assert!(message.contains(want), "{message}");
    }
    assert_eq!(h.hits("/api/json_schemas"), 0);
    // A whole float passes the spec check, and now the parse too.
    let run = h.check(json!({"concurrency": 8.0}));
    assert_eq!(run.check_status().0, "SUCCEEDED", "{}", run.stdout);
}

#[test]
fn a_stream_listed_twice_is_refused() {
    let h = deployment(|_| Reply::json(200, &page(&[doc("a")])));
    let config = h.config(json!({}));
    let stream = json!({"stream": {"name": "t", "json_schema": {}}, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"});
    let catalog = h.bin.write(
        "twice.json",
        &json!({"streams": [stream, stream]}).to_string(),
    );
    let run = h.bin.read(&config, &catalog, None);
    assert_eq!(run.code, 1);
    let (kind, message) = run.error();
    assert_eq!(kind, "config_error");
    assert!(message.contains("more than once"), "{message}");
    assert!(run.of_type("RECORD").is_empty());
}

#[test]
fn a_huge_saved_cursor_is_not_sent_retried_or_echoed() {
    let h = deployment(|_| Reply::json(200, &page(&[doc("a")])));
    let cursor = "c".repeat(1024 * 1024);
    let state = json!([{"type": "STREAM", "stream": {"stream_descriptor": {"name": "t", "namespace": null},
        "stream_state": {"snapshot_cursor": cursor, "snapshot_has_more": true, "delta_cursor": 1_770_000_000_000_000_009i64}}}]);
    let run = h.read(json!({}), Some(&state.to_string()));
    let message = run.assert_failed("t", "config_error");
    assert!(message.contains("refresh this stream"), "{message}");
    assert_eq!(h.hits("/api/list_snapshot"), 0);
    assert!(
        run.stdout.len() < 20_000,
        "{} bytes of stdout",
        run.stdout.len()
    );
}

#[test]
fn a_closed_stdout_is_a_failure_not_a_silent_success() {
    let h = deployment(|_| Reply::json(200, &page(&[doc("a")])));
    let config = h.config(json!({}));
    let catalog = h.bin.write(
        "catalog.json",
        &json!({"streams": [{"stream": {"name": "t"}, "sync_mode": "full_refresh"}]}).to_string(),
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" read --config \"$1\" --catalog \"$2\" >&-")
        .arg(&h.bin.path)
        .arg(&config)
        .arg(&catalog)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stdout"), "{stderr}");
}

#[test]
fn a_stalled_request_gives_up_once_stdouts_reader_is_gone() {
    let h = deployment(|_| Reply::Stall);
    let config = h.config(json!({"request_timeout_seconds": 1}));
    let catalog = h.bin.write(
        "catalog.json",
        &json!({"streams": [{"stream": {"name": "t"}, "sync_mode": "full_refresh"}]}).to_string(),
    );
    let started = Instant::now();
    let mut child = h.bin.spawn(&[
        "read",
        "--config",
        config.to_str().unwrap(),
        "--catalog",
        catalog.to_str().unwrap(),
    ]);
    // Read the first line, then go away like a crashed platform.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = wait_bounded(child, h.bin.bound);
    assert_ne!(out.status.code(), Some(0));
    // One stalled attempt (1 s), the warning that finds the pipe closed, one backoff; not
    // six attempts with growing waits (15 s and more).
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(h.hits("/api/list_snapshot") <= 2);
}

// ---- the Data Sync API answering out of its own bounds

/// The deployment's head in these cases.
const HEAD: i64 = 1_770_000_000_000_000_009;

/// A deployment with table `t` whose data syncs `sync` answers (POST /api/v1/data/sync).
fn data_sync_deployment(sync: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Hostile {
    Hostile::start(move |req| match req.path.as_str() {
        "/api/json_schemas" => schemas(),
        HEAD_PROBE => Reply::json(
            200,
            &json!({"values": [], "snapshot": HEAD, "cursor": null, "hasMore": false}),
        ),
        "/api/v1/data/sync" => sync(req),
        _ => Reply::raw(404, "no"),
    })
}

fn sync_value(id: &str, deleted: bool) -> Value {
    let value = if deleted {
        json!({"_id": id})
    } else {
        json!({"_id": id, "_creationTime": 1.5, "n": 1})
    };
    json!({"component": "", "table": "t", "ts": HEAD - 5, "deleted": deleted, "value": value})
}

fn sync_page(status: Value, values: Vec<Value>, next: &str) -> Reply {
    Reply::json(
        200,
        &json!({"status": status, "truncates": [], "values": values, "syncId": "airbyte-h",
                "pagination": {"hasMore": true, "nextCursor": next}}),
    )
}

fn up_to_date(at: i64) -> Value {
    json!({"type": "upToDate", "snapshotTs": at})
}

fn read_data_sync(h: &Hostile) -> Run {
    h.read_in("incremental", json!({"api": "data_sync"}), Some("[]"))
}

/// A page whose timestamp is 0 or below, or whose next cursor is larger than any Convex gives,
/// would be saved and then refused by the next read (a stream stuck until reset). It is refused
/// when it ends instead, as a retryable error: no STATE covers it. (Its values stream out as
/// they arrive, before the page's cursor, which Convex sends last; the next read, resuming
/// from the last STATE, sends them again, as after any interrupted page.)
#[test]
fn a_data_sync_page_the_next_read_could_not_resume_after_is_refused() {
    let huge = "c".repeat(64 * 1024 + 1);
    for (status, next) in [
        (up_to_date(0), "c1".to_owned()),
        (up_to_date(-3), "c1".to_owned()),
        (up_to_date(HEAD), huge),
    ] {
        let h = data_sync_deployment(move |_| {
            sync_page(status.clone(), vec![sync_value("a", false)], &next)
        });
        let run = read_data_sync(&h);
        let message = run.assert_failed("t", "transient_error");
        assert!(
            message.contains("could not resume after") && message.contains("Sync again"),
            "{message}"
        );
        assert!(run.of_type("STATE").is_empty(), "{}", run.stdout);
    }
}

/// A data sync that never reports `upToDate` is not read forever: after a bounded number of
/// pages without progress the read ends cleanly at its last position, with a WARN, and empty
/// pages do not each emit a STATE. Stale pages repeating one tombstone are bounded the same way.
#[test]
fn a_data_sync_that_never_catches_up_ends_the_read_at_its_last_position() {
    for tombstones in [false, true] {
        let h = data_sync_deployment(move |req| {
            let values = if tombstones {
                vec![sync_value("gone", true)]
            } else {
                vec![]
            };
            sync_page(
                json!({"type": "stale", "snapshotTs": HEAD - 1}),
                values,
                &format!("c{}", req.nth),
            )
        });
        let run = read_data_sync(&h);
        assert_eq!(run.code, 0, "{}", run.stdout);
        let requests = h.hits("/api/v1/data/sync");
        assert!(requests <= 70, "{requests} pages");
        let warn = run.logs("WARN");
        assert_eq!(warn.len(), 1, "{warn:?}");
        assert!(
            warn[0].contains("neither walked the table nor moved"),
            "{}",
            warn[0]
        );
        let states = run.of_type("STATE");
        assert_eq!(states.len(), 1, "{}", run.stdout);
        // The read's last position: the next read goes on from there. The first page moved
        // the consistent timestamp; the 64 after it did not (a page asked for ahead, if any,
        // was not taken).
        let saved = &states[0]["state"]["stream"]["stream_state"];
        assert_eq!(saved["data_sync_cursor"], "c64");
        assert!((65..=66).contains(&requests), "{requests} pages");
        assert_eq!(
            run.of_type("RECORD").len(),
            usize::from(tombstones),
            "{}",
            run.stdout
        );
    }
}

/// The same stall while the sync still snapshots and a change was deferred: the read cannot
/// end at a position before the deferred change (it sent documents after it, which the next
/// read would not capture: a later delete of one would never reach the destination), and it
/// cannot go on. It fails as a retryable error, with no STATE after what it sent since its
/// last checkpoint.
#[test]
fn a_data_sync_that_stalls_while_it_defers_and_snapshots_fails_the_stream() {
    let h = data_sync_deployment(|req| {
        let snapshotting = json!({"type": "snapshotting"});
        match req.nth {
            // A page by `_id`, then `a` again at a newer revision (deferred: it went out),
            // then new documents by `_id` (sent at once), then pages without progress.
            0 => sync_page(
                snapshotting,
                vec![sync_value("a", false), sync_value("b", false)],
                "c1",
            ),
            1 => {
                let mut again = sync_value("a", false);
                again["ts"] = json!(HEAD - 2);
                sync_page(snapshotting, vec![again], "c2")
            }
            2 => sync_page(
                snapshotting,
                vec![sync_value("c", false), sync_value("d", false)],
                "c3",
            ),
            n => sync_page(snapshotting, vec![], &format!("c{}", n + 1)),
        }
    });
    let run = read_data_sync(&h);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(
        run.statuses("t").last().map(String::as_str),
        Some("INCOMPLETE"),
        "{}",
        run.stdout
    );
    let (failure, message) = run.error();
    assert_eq!(failure, "transient_error", "{message}");
    assert!(
        message.contains("neither walked the table nor moved")
            && message.contains("continues from its last checkpoint"),
        "{message}"
    );
    assert!(run.logs("WARN").is_empty(), "{:?}", run.logs("WARN"));
    // Records a, b, then STATE c1; c and d went out after it, and no STATE follows them.
    let kinds: Vec<String> = run
        .messages
        .iter()
        .filter_map(|m| match m["type"].as_str() {
            Some("RECORD") => Some(
                m["record"]["data"]["_id"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
            ),
            Some("STATE") => Some(format!(
                "STATE {}",
                m["state"]["stream"]["stream_state"]["data_sync_cursor"]
                    .as_str()
                    .unwrap_or("?")
            )),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["a", "b", "STATE c1", "c", "d"], "{}", run.stdout);
}

/// Held pages keep their cursors until the read delivers them: those count against
/// `change_buffer_mb` with the documents, so huge cursors cannot grow memory without bound.
#[test]
fn held_data_sync_cursors_count_against_the_change_buffer() {
    let cursor = "k".repeat(60 * 1024);
    let h = data_sync_deployment(move |req| {
        // A log page (not a walk by `_id`): one changed document, and a 60 KiB cursor.
        sync_page(
            json!({"type": "stale", "snapshotTs": HEAD - 1_000 + req.nth as i64}),
            vec![sync_value(&format!("d{}", 1000 - req.nth), false)],
            &format!("{}{}", req.nth, cursor),
        )
    });
    let run = h.read_in(
        "incremental",
        json!({"api": "data_sync", "change_buffer_mb": 1}),
        Some("[]"),
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    let pages = h.hits("/api/v1/data/sync");
    // 1 MiB of 60 KiB cursors: the read stops after about 17 pages, not at the 64-page bound.
    assert!((15..=20).contains(&pages), "{pages} pages");
    assert!(
        run.logs("WARN")[0].contains("change buffer (change_buffer_mb = 1)"),
        "{:?}",
        run.logs("WARN")
    );
}

/// A cursor Convex answered a page ago, then refused: a server-side problem, retried; not the
/// user's saved state or deployment_url.
#[test]
fn a_refused_cursor_the_server_issued_in_this_read_is_a_system_error() {
    let h = data_sync_deployment(|req| {
        if req.nth == 0 {
            sync_page(
                json!({"type": "snapshotting"}),
                vec![sync_value("a", false)],
                "c1",
            )
        } else {
            Reply::json(
                400,
                &json!({"code": "InvalidDataSyncCursor", "message": "Invalid cursor"}),
            )
        }
    });
    let run = read_data_sync(&h);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let (failure, message) = run.error();
    assert_eq!(failure, "system_error", "{message}");
    assert!(
        message.contains("answered itself earlier in this read"),
        "{message}"
    );
    assert!(!message.contains("deployment_url"), "{message}");
}
