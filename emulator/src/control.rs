//! The `/_emulator/` control API (no auth): what the Rust [`Deployment`] handle offers, over
//! HTTP, for the Python conformance tests, the benchmark and shell users.

use bytes::Bytes;
use hyper::http::request::Parts;
use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use crate::deployment::{Deployment, Error, Settings};
use crate::faults::FaultRule;
use crate::generator::{self, GenerateSpec};
use crate::http::{json_value, parse_query, Resp};
use crate::value::{Fields, Format, IntoFields};

fn bad(msg: impl std::fmt::Display) -> Resp {
    json_value(400, &json!({"error": msg.to_string()}))
}

fn ok(v: Json) -> Resp {
    json_value(200, &v)
}

fn body_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Box<Resp>> {
    // An empty body counts as `{}` so argument-less POSTs need no payload.
    let slice: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(slice).map_err(|e| Box::new(bad(format!("invalid JSON body: {e}"))))
}

#[derive(Deserialize)]
struct TableArgs {
    #[serde(default)]
    component: String,
    table: String,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Insert {
        #[serde(default)]
        component: String,
        table: String,
        doc: Json,
    },
    Patch {
        #[serde(default)]
        component: String,
        table: String,
        id: String,
        #[serde(default)]
        fields: Option<Json>,
        /// Fields to remove (`undefined` in a Convex patch).
        #[serde(default)]
        remove: Vec<String>,
    },
    Replace {
        #[serde(default)]
        component: String,
        table: String,
        id: String,
        doc: Json,
    },
    Delete {
        #[serde(default)]
        component: String,
        table: String,
        id: String,
    },
}

#[derive(Deserialize)]
struct SchemaArgs {
    #[serde(default)]
    component: String,
    /// `null` removes the component's schema.
    tables: Option<Json>,
}

#[derive(Deserialize)]
struct TxArgs {
    ops: Vec<Op>,
}

#[derive(Deserialize)]
struct ChangesArgs {
    count: usize,
    #[serde(default)]
    seed: u64,
}

#[derive(Deserialize)]
struct ClockArgs {
    #[serde(default)]
    advance_ms: u64,
}

#[derive(Deserialize)]
struct ImportArgs {
    #[serde(default)]
    component: String,
    table: String,
    docs: Vec<Json>,
}

fn run_tx(dep: &Deployment, ops: Vec<Op>) -> Result<(i64, Vec<String>), Error> {
    dep.transaction_with(|tx| {
        let mut ids = Vec::new();
        for op in ops {
            match op {
                Op::Insert {
                    component,
                    table,
                    doc,
                } => ids.push(tx.insert(&component, &table, doc)?),
                Op::Patch {
                    component,
                    table,
                    id,
                    fields,
                    remove,
                } => {
                    let set = match fields {
                        Some(f) => f.into_fields()?,
                        None => Fields::new(),
                    };
                    tx.patch_remove(&component, &table, &id, set, &remove)?
                }
                Op::Replace {
                    component,
                    table,
                    id,
                    doc,
                } => tx.replace(&component, &table, &id, doc)?,
                Op::Delete {
                    component,
                    table,
                    id,
                } => tx.delete(&component, &table, &id)?,
            }
        }
        Ok(ids)
    })
}

macro_rules! try_resp {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return *r,
        }
    };
}

pub fn handle(dep: &Deployment, parts: &Parts, body: &Bytes) -> Resp {
    let path = parts.uri.path().trim_start_matches("/_emulator");
    let get = parts.method == Method::GET;
    let post = parts.method == Method::POST;
    let delete = parts.method == Method::DELETE;
    match path {
        "/transaction" if post => {
            let args: TxArgs = try_resp!(body_json(body));
            match run_tx(dep, args.ops) {
                Ok((ts, ids)) => ok(json!({"ts": ts, "ids": ids})),
                Err(e) => bad(e),
            }
        }
        "/changes" if post => {
            let args: ChangesArgs = try_resp!(body_json(body));
            match generator::changes(dep, args.count, args.seed) {
                Ok(s) => ok(json!({"ts": s.ts, "transactions": s.transactions,
                    "inserted": s.inserted, "updated": s.updated, "deleted": s.deleted})),
                Err(e) => bad(e),
            }
        }
        "/generate" if post => {
            let spec: GenerateSpec = try_resp!(body_json(body));
            match generator::generate(dep, &spec) {
                Ok(s) => ok(json!({"ts": s.ts})),
                Err(e) => bad(e),
            }
        }
        "/documents" if get => {
            let q = parse_query(parts.uri.query());
            let find = |k: &str| {
                q.iter()
                    .rev()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
            };
            let Some(table) = find("table") else {
                return bad("missing query parameter `table`");
            };
            let component = find("component").unwrap_or_default();
            let format = match find("format") {
                None => Format::Clean,
                Some(f) => match Format::parse(&f) {
                    Some(f) => f,
                    None => return bad(format!("unknown format {f}")),
                },
            };
            let docs = match find("ts") {
                None => dep.live_documents_in(&component, &table, format),
                Some(ts) => match ts.parse::<i64>() {
                    Ok(ts) => dep.documents_at_in(&component, &table, ts, format),
                    Err(e) => return bad(format!("invalid ts {ts:?}: {e}")),
                },
            };
            ok(json!({"documents": docs}))
        }
        "/schema" if get => ok(serde_json::to_value(dep.schemas()).unwrap_or_default()),
        "/schema" if post => {
            let a: SchemaArgs = try_resp!(body_json(body));
            match dep.set_schema(&a.component, a.tables) {
                Ok(()) => ok(serde_json::to_value(dep.schemas()).unwrap_or_default()),
                Err(e) => bad(e),
            }
        }
        "/tables" if get => ok(serde_json::to_value(dep.tables()).unwrap_or_default()),
        "/tables/create" | "/tables/clear" | "/tables/delete" if post => {
            let a: TableArgs = try_resp!(body_json(body));
            let r = match path {
                "/tables/create" => dep.create_table(&a.component, &a.table),
                "/tables/clear" => dep.clear_table(&a.component, &a.table),
                _ => dep.delete_table(&a.component, &a.table),
            };
            match r {
                Ok(ts) => ok(json!({"ts": ts})),
                Err(e) => bad(e),
            }
        }
        "/tables/import" if post => {
            let a: ImportArgs = try_resp!(body_json(body));
            match dep.import_table(&a.component, &a.table, a.docs) {
                Ok((rows_ts, ts)) => ok(json!({"rows_ts": rows_ts, "ts": ts})),
                Err(e) => bad(e),
            }
        }
        "/head" if get => ok(json!({"head": dep.head()})),
        "/clock" if post => {
            let a: ClockArgs = try_resp!(body_json(body));
            let head = dep.advance_clock(std::time::Duration::from_millis(a.advance_ms));
            ok(json!({"head": head}))
        }
        "/settings" if get => ok(serde_json::to_value(dep.settings()).unwrap_or_default()),
        "/settings" if post => {
            let patch: Json = try_resp!(body_json(body));
            let Json::Object(patch) = patch else {
                return bad("settings must be a JSON object");
            };
            let mut current = serde_json::to_value(dep.settings()).unwrap_or_default();
            if let Json::Object(cur) = &mut current {
                for (k, v) in patch {
                    if !cur.contains_key(&k) {
                        return bad(format!("unknown setting {k:?}"));
                    }
                    cur.insert(k, v);
                }
            }
            match serde_json::from_value::<Settings>(current) {
                Ok(s) => {
                    dep.set_settings(s.clone());
                    ok(serde_json::to_value(s).unwrap_or_default())
                }
                Err(e) => bad(format!("invalid settings: {e}")),
            }
        }
        "/faults" if get => ok(serde_json::to_value(dep.faults()).unwrap_or_default()),
        "/faults" if post => {
            let rule: FaultRule = try_resp!(body_json(body));
            match dep.add_fault(rule) {
                Ok(()) => ok(serde_json::to_value(dep.faults()).unwrap_or_default()),
                Err(e) => bad(e),
            }
        }
        "/faults" if delete => {
            dep.clear_faults();
            ok(json!([]))
        }
        "/requests" if get => {
            let stats = dep.requests();
            let q = parse_query(parts.uri.query());
            let mut v = serde_json::to_value(&stats).unwrap_or_default();
            if q.iter().any(|(k, v)| k == "log" && v != "false") {
                v["log"] = serde_json::to_value(dep.request_log()).unwrap_or_default();
            }
            ok(v)
        }
        "/requests/reset" if post => {
            dep.reset_requests();
            ok(serde_json::to_value(dep.requests()).unwrap_or_default())
        }
        "/shutdown" if post => {
            // Signal a moment later so this answer is written before connections close.
            let dep = dep.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(100));
                dep.request_shutdown();
            });
            ok(json!({"shutting_down": true}))
        }
        _ => json_value(
            404,
            &json!({"error": format!("no control route {} {}", parts.method, parts.uri.path())}),
        ),
    }
}
