//! The `/_emulator/` control API (no auth): what the Rust [`Deployment`] handle offers, over
//! HTTP, for the Python conformance tests, the benchmark and shell users.
//!
//! [`ROUTES`] is the whole API: one `(method, path, handler)` entry per route. A handler
//! answers 200 with its JSON value, or 400 `{"error": <its message>}`; a request no entry
//! matches gets 404 `{"error": "no control route <method> <path>"}`.

use std::time::Duration;

use bytes::Bytes;
use hyper::http::request::Parts;
use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use crate::deployment::Deployment;
use crate::error::Error;
use crate::faults::FaultRule;
use crate::generator::{self, GenerateSpec};
use crate::http::{json_value, parse_query, Resp};
use crate::settings::Settings;
use crate::value::{Fields, Format, IntoFields};

/// A control request: its head and its body.
pub struct Call<'a> {
    parts: &'a Parts,
    body: &'a Bytes,
}

/// A handler's answer: a JSON value (200), or the message of a 400.
type Answer = Result<Json, String>;

type Handler = fn(&Deployment, &Call<'_>) -> Answer;

/// Every control route, under `/_emulator`.
const ROUTES: &[(Method, &str, Handler)] = &[
    (Method::POST, "/transaction", transaction),
    (Method::POST, "/changes", changes),
    (Method::POST, "/generate", generate),
    (Method::GET, "/documents", documents),
    (Method::GET, "/schema", schema),
    (Method::POST, "/schema", set_schema),
    (Method::GET, "/tables", tables),
    (Method::POST, "/tables/create", create_table),
    (Method::POST, "/tables/clear", clear_table),
    (Method::POST, "/tables/delete", delete_table),
    (Method::POST, "/tables/import", import_table),
    (Method::GET, "/head", head),
    (Method::POST, "/clock", clock),
    (Method::GET, "/settings", settings),
    (Method::POST, "/settings", set_settings),
    (Method::GET, "/faults", faults),
    (Method::POST, "/faults", add_fault),
    (Method::DELETE, "/faults", clear_faults),
    (Method::GET, "/requests", requests),
    (Method::POST, "/requests/reset", reset_requests),
    (Method::POST, "/shutdown", shutdown),
];

pub fn handle(dep: &Deployment, parts: &Parts, body: &Bytes) -> Resp {
    let path = parts.uri.path().trim_start_matches("/_emulator");
    let Some((_, _, handler)) = ROUTES
        .iter()
        .find(|(method, route, _)| *method == parts.method && *route == path)
    else {
        return json_value(
            404,
            &json!({"error": format!("no control route {} {}", parts.method, parts.uri.path())}),
        );
    };
    match handler(dep, &Call { parts, body }) {
        Ok(v) => json_value(200, &v),
        Err(msg) => json_value(400, &json!({ "error": msg })),
    }
}

impl Call<'_> {
    /// The body as `T`; an empty body counts as `{}` so argument-less POSTs need no payload.
    fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T, String> {
        let slice: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            self.body
        };
        serde_json::from_slice(slice).map_err(|e| format!("invalid JSON body: {e}"))
    }

    /// The last value of a query parameter.
    fn query(&self, key: &str) -> Option<String> {
        parse_query(self.parts.uri.query())
            .into_iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

fn to_json(v: impl serde::Serialize) -> Json {
    serde_json::to_value(v).unwrap_or_default()
}

/// `{"ts"}` of a write, or its error.
fn ts(r: Result<i64, Error>) -> Answer {
    r.map(|ts| json!({ "ts": ts })).map_err(|e| e.to_string())
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

fn transaction(dep: &Deployment, call: &Call<'_>) -> Answer {
    #[derive(Deserialize)]
    struct Args {
        ops: Vec<Op>,
    }
    let args: Args = call.json()?;
    let (ts, ids) = dep
        .transaction_with(|tx| {
            let mut ids = Vec::new();
            for op in args.ops {
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
        .map_err(|e| e.to_string())?;
    Ok(json!({"ts": ts, "ids": ids}))
}

fn changes(dep: &Deployment, call: &Call<'_>) -> Answer {
    #[derive(Deserialize)]
    struct Args {
        count: usize,
        #[serde(default)]
        seed: u64,
    }
    let a: Args = call.json()?;
    let s = generator::changes(dep, a.count, a.seed).map_err(|e| e.to_string())?;
    Ok(json!({"ts": s.ts, "transactions": s.transactions,
        "inserted": s.inserted, "updated": s.updated, "deleted": s.deleted}))
}

fn generate(dep: &Deployment, call: &Call<'_>) -> Answer {
    let spec: GenerateSpec = call.json()?;
    let s = generator::generate(dep, &spec).map_err(|e| e.to_string())?;
    Ok(json!({"ts": s.ts}))
}

/// `?table=T&component=C[&ts=TS][&format=F]`: as `documents_at` at `TS`, or without `ts` as
/// `live_documents`.
fn documents(dep: &Deployment, call: &Call<'_>) -> Answer {
    let table = call
        .query("table")
        .ok_or("missing query parameter `table`")?;
    let component = call.query("component").unwrap_or_default();
    let format = match call.query("format") {
        None => Format::Clean,
        Some(f) => Format::parse(&f).ok_or_else(|| format!("unknown format {f}"))?,
    };
    let docs = match call.query("ts") {
        None => dep.live_documents_in(&component, &table, format),
        Some(ts) => {
            let ts = ts
                .parse::<i64>()
                .map_err(|e| format!("invalid ts {ts:?}: {e}"))?;
            dep.documents_at_in(&component, &table, ts, format)
        }
    };
    Ok(json!({ "documents": docs }))
}

fn schema(dep: &Deployment, _: &Call<'_>) -> Answer {
    Ok(to_json(dep.schemas()))
}

fn set_schema(dep: &Deployment, call: &Call<'_>) -> Answer {
    #[derive(Deserialize)]
    struct Args {
        #[serde(default)]
        component: String,
        /// `null` removes the component's schema.
        tables: Option<Json>,
    }
    let a: Args = call.json()?;
    dep.set_schema(&a.component, a.tables)
        .map_err(|e| e.to_string())?;
    Ok(to_json(dep.schemas()))
}

fn tables(dep: &Deployment, _: &Call<'_>) -> Answer {
    Ok(to_json(dep.tables()))
}

#[derive(Deserialize)]
struct TableArgs {
    #[serde(default)]
    component: String,
    table: String,
}

fn create_table(dep: &Deployment, call: &Call<'_>) -> Answer {
    let a: TableArgs = call.json()?;
    ts(dep.create_table(&a.component, &a.table))
}

fn clear_table(dep: &Deployment, call: &Call<'_>) -> Answer {
    let a: TableArgs = call.json()?;
    ts(dep.clear_table(&a.component, &a.table))
}

fn delete_table(dep: &Deployment, call: &Call<'_>) -> Answer {
    let a: TableArgs = call.json()?;
    ts(dep.delete_table(&a.component, &a.table))
}

fn import_table(dep: &Deployment, call: &Call<'_>) -> Answer {
    #[derive(Deserialize)]
    struct Args {
        #[serde(default)]
        component: String,
        table: String,
        docs: Vec<Json>,
    }
    let a: Args = call.json()?;
    let (rows_ts, ts) = dep
        .import_table(&a.component, &a.table, a.docs)
        .map_err(|e| e.to_string())?;
    Ok(json!({"rows_ts": rows_ts, "ts": ts}))
}

fn head(dep: &Deployment, _: &Call<'_>) -> Answer {
    Ok(json!({"head": dep.head()}))
}

fn clock(dep: &Deployment, call: &Call<'_>) -> Answer {
    #[derive(Deserialize)]
    struct Args {
        #[serde(default)]
        advance_ms: u64,
    }
    let a: Args = call.json()?;
    let head = dep.advance_clock(Duration::from_millis(a.advance_ms));
    Ok(json!({ "head": head }))
}

fn settings(dep: &Deployment, _: &Call<'_>) -> Answer {
    Ok(to_json(dep.settings()))
}

/// Merges a partial settings object into the current settings; unknown keys are refused.
fn set_settings(dep: &Deployment, call: &Call<'_>) -> Answer {
    let Json::Object(patch) = call.json::<Json>()? else {
        return Err("settings must be a JSON object".into());
    };
    let mut current = to_json(dep.settings());
    if let Json::Object(cur) = &mut current {
        for (k, v) in patch {
            if !cur.contains_key(&k) {
                return Err(format!("unknown setting {k:?}"));
            }
            cur.insert(k, v);
        }
    }
    let s = serde_json::from_value::<Settings>(current)
        .map_err(|e| format!("invalid settings: {e}"))?;
    dep.set_settings(s.clone());
    Ok(to_json(s))
}

fn faults(dep: &Deployment, _: &Call<'_>) -> Answer {
    Ok(to_json(dep.faults()))
}

fn add_fault(dep: &Deployment, call: &Call<'_>) -> Answer {
    let rule: FaultRule = call.json()?;
    dep.add_fault(rule).map_err(|e| e.to_string())?;
    Ok(to_json(dep.faults()))
}

fn clear_faults(dep: &Deployment, _: &Call<'_>) -> Answer {
    dep.clear_faults();
    Ok(json!([]))
}

/// The counters; with `?log=<anything but false>` also the request log.
fn requests(dep: &Deployment, call: &Call<'_>) -> Answer {
    let mut v = to_json(dep.requests());
    let log = parse_query(call.parts.uri.query())
        .iter()
        .any(|(k, v)| k == "log" && v != "false");
    if log {
        v["log"] = to_json(dep.request_log());
    }
    Ok(v)
}

fn reset_requests(dep: &Deployment, _: &Call<'_>) -> Answer {
    dep.reset_requests();
    Ok(to_json(dep.requests()))
}

fn shutdown(dep: &Deployment, _: &Call<'_>) -> Answer {
    // Signal a moment later so this answer is written before connections close.
    let dep = dep.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        dep.request_shutdown();
    });
    Ok(json!({"shutting_down": true}))
}
