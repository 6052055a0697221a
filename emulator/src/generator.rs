//! Deterministic test data: realistic tables of mixed-type documents, and random change sets.
//!
//! Every document is generated from an RNG derived from `(seed, table, index)`, so the same
//! seed gives the same data however the work is split across threads.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::deployment::Deployment;
use crate::error::Error;
use crate::ids::{self, Rng};
use crate::store::{creation_time, prepare_doc, PreparedDoc, Store, Write};
use crate::value::{Fields, Value};

/// What to generate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateSpec {
    /// Number of root tables (users, messages, orders, ..., then table_N).
    pub tables: usize,
    /// Documents per table.
    pub docs: usize,
    /// Target size of one document in clean JSON, metadata included (bytes).
    pub doc_size: usize,
    /// Also create `betterAuth/users` (same name as the root table), `betterAuth/sessions`
    /// and `rateLimiter/rateLimits`, each with `docs` documents.
    pub components: bool,
    /// Generated changes applied after the initial load.
    pub deltas: usize,
    pub seed: u64,
}

impl Default for GenerateSpec {
    fn default() -> Self {
        GenerateSpec {
            tables: 0,
            docs: 0,
            doc_size: 400,
            components: false,
            deltas: 0,
            seed: 0,
        }
    }
}

/// Counts of a generated change set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSummary {
    /// Head after the changes.
    pub ts: i64,
    pub transactions: usize,
    pub inserted: usize,
    pub updated: usize,
    pub deleted: usize,
}

const TABLE_NAMES: &[&str] = &[
    "users",
    "messages",
    "orders",
    "products",
    "sessions",
    "events",
    "comments",
    "payments",
    "invoices",
    "posts",
    "tasks",
    "notifications",
    "accounts",
    "reviews",
    "carts",
    "shipments",
];

/// Root table names for `n` tables.
pub fn table_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match TABLE_NAMES.get(i) {
            Some(s) => (*s).to_owned(),
            None => format!("table_{i}"),
        })
        .collect()
}

const COMPONENT_TABLES: &[(&str, &str)] = &[
    ("betterAuth", "users"),
    ("betterAuth", "sessions"),
    ("rateLimiter", "rateLimits"),
];

const FIRST: &[&str] = &[
    "Ada", "Grace", "Linus", "Zoë", "José", "Łukasz", "Amélie", "Søren", "Yuki", "Chidi", "Ana",
    "Mateo", "Ngozi", "Björn", "Priya", "Wei", "Olamide", "Élodie", "Dmitri", "Aroha",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Torvalds", "Müller", "García", "Kowalski", "Dubois", "Øster", "Tanaka",
    "Okafor", "Silva", "Rossi", "Nakamura", "Ivanova", "O'Brien", "Nguyễn",
];
const CITIES: &[&str] = &[
    "Lisbon",
    "Zürich",
    "København",
    "São Paulo",
    "Kraków",
    "東京",
    "Reykjavík",
    "Montréal",
    "Lagos",
    "Wellington",
    "Berlin",
    "Austin",
];
const STATUS: &[&str] = &[
    "pending",
    "paid",
    "shipped",
    "delivered",
    "cancelled",
    "refunded",
];
const TAGS: &[&str] = &[
    "new",
    "vip",
    "beta",
    "churn-risk",
    "enterprise",
    "trial",
    "🚀",
    "fraud-check",
    "eu",
    "apac",
];

/// A long pseudo-random text (mostly ASCII, some multi-byte characters) from which padding
/// fields take slices, so large documents cost a copy instead of per-character generation.
fn corpus() -> &'static str {
    static CORPUS: OnceLock<String> = OnceLock::new();
    CORPUS.get_or_init(|| {
        const WORDS: &[&str] = &[
            "lorem",
            "ipsum",
            "dolor",
            "sit",
            "amet",
            "convex",
            "stream",
            "export",
            "snapshot",
            "delta",
            "cursor",
            "naïve",
            "café",
            "über",
            "日本語",
            "данные",
            "🙂",
            "señor",
            "quick",
            "brown",
            "fox",
            "jumps",
            "over",
            "lazy",
            "dog",
            "\"quoted\"",
            "tab\there",
            "new\nline",
        ];
        let mut rng = Rng::new(0xc0ffee);
        let mut s = String::with_capacity((2 << 20) + 64);
        while s.len() < 2 << 20 {
            let w: &&str = rng.pick(WORDS);
            s.push_str(w);
            s.push(' ');
        }
        s
    })
}

fn text(rng: &mut Rng, len: usize) -> String {
    let c = corpus();
    let len = len.min(c.len() / 2);
    let mut start = rng.below((c.len() - len) as u64) as usize;
    while !c.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = start + len;
    while !c.is_char_boundary(end) {
        end -= 1;
    }
    c[start..end].to_owned()
}

fn name(rng: &mut Rng) -> String {
    format!("{} {}", rng.pick(FIRST), rng.pick(LAST))
}

fn email(rng: &mut Rng, n: u64) -> String {
    format!("{}.{}@example.com", rng.pick(FIRST).to_lowercase(), n)
}

fn money(rng: &mut Rng) -> f64 {
    (rng.range(0, 1_000_000) as f64) / 100.0
}

/// A float that is occasionally NaN, ±infinity or -0.0, so schemas and encoders see them.
fn score(rng: &mut Rng) -> f64 {
    match rng.below(400) {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => -0.0,
        _ => rng.unit() * 100.0,
    }
}

fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

fn obj(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Generates the user fields of one document of `table`, padded towards `doc_size` bytes.
pub fn document(table: &str, rng: &mut Rng, n: u64, doc_size: usize) -> Fields {
    let mut f: BTreeMap<String, Value> = BTreeMap::new();
    let mut put = |k: &str, v: Value| {
        f.insert(k.to_owned(), v);
    };
    let profile = profile_of(table);
    match profile {
        0 => {
            put("name", name(rng).into());
            put("email", email(rng, n).into());
            put("age", Value::Float64(rng.range(18, 90) as f64));
            put(
                "balance",
                Value::Int64(rng.range(-5_000_000_000, 5_000_000_000)),
            );
            put("avatar", Value::Bytes(bytes(rng, 12)));
            put("active", rng.chance(0.8).into());
            put(
                "note",
                if rng.chance(0.5) {
                    Value::Null
                } else {
                    text(rng, 20).into()
                },
            );
            if rng.chance(0.7) {
                put(
                    "address",
                    obj(vec![
                        ("city", (*rng.pick(CITIES)).into()),
                        ("zip", format!("{:05}", rng.below(100_000)).into()),
                        (
                            "geo",
                            obj(vec![
                                ("lat", Value::Float64(rng.unit() * 180.0 - 90.0)),
                                ("lng", Value::Float64(rng.unit() * 360.0 - 180.0)),
                            ]),
                        ),
                    ]),
                );
            }
            let tags = (0..rng.below(4))
                .map(|_| Value::from(*rng.pick(TAGS)))
                .collect();
            put("tags", Value::Array(tags));
            put("score", Value::Float64(score(rng)));
        }
        1 => {
            put("author", name(rng).into());
            put("channel", format!("#{}", rng.pick(TAGS)).into());
            put(
                "sentAt",
                Value::Float64(1.77e12 + rng.below(1_000_000_000) as f64),
            );
            put("edited", rng.chance(0.1).into());
            put("seq", Value::Int64(n as i64));
            let reactions = (0..rng.below(3))
                .map(|_| {
                    obj(vec![
                        ("emoji", (*rng.pick(&["👍", "🎉", "❤️", "😂"])).into()),
                        ("count", Value::Int64(rng.range(1, 50))),
                    ])
                })
                .collect();
            put("reactions", Value::Array(reactions));
            if rng.chance(0.2) {
                put("attachment", Value::Bytes(bytes(rng, 24)));
            }
        }
        2 => {
            put("customer", email(rng, n).into());
            put("status", (*rng.pick(STATUS)).into());
            put("total", Value::Float64(money(rng)));
            put("quantity", Value::Int64(rng.range(1, 20)));
            let items = (0..1 + rng.below(3))
                .map(|_| {
                    obj(vec![
                        ("sku", format!("SKU-{:06}", rng.below(1_000_000)).into()),
                        ("qty", Value::Int64(rng.range(1, 5))),
                        ("price", Value::Float64(money(rng))),
                    ])
                })
                .collect();
            put("items", Value::Array(items));
            put("shipped", rng.chance(0.5).into());
            put(
                "discount",
                if rng.chance(0.3) {
                    Value::Float64(money(rng) / 10.0)
                } else {
                    Value::Null
                },
            );
        }
        _ => {
            put("title", text(rng, 24).into());
            put("kind", (*rng.pick(TAGS)).into());
            put("count", Value::Int64(rng.range(0, i64::MAX)));
            put("ratio", Value::Float64(score(rng)));
            put("flag", rng.chance(0.5).into());
            put("blob", Value::Bytes(bytes(rng, 8)));
            put(
                "meta",
                obj(vec![
                    ("source", (*rng.pick(CITIES)).into()),
                    ("version", Value::Int64(rng.range(1, 10))),
                    ("labels", Value::Array(vec![(*rng.pick(TAGS)).into()])),
                ]),
            );
            if rng.chance(0.5) {
                put("optional", Value::Null);
            }
        }
    }
    // Metadata (`_component`, `_table`, `_ts`, `_id`, `_creationTime`) is ~130 bytes; the
    // rest of the target goes into a text field. Sized from the typed fields without encoding
    // them (an estimate is enough for a size target).
    let used = 130
        + table.len()
        + f.iter()
            .map(|(k, v)| k.len() + 4 + approx_len(v))
            .sum::<usize>();
    let pad = doc_size.saturating_sub(used + 12);
    let field = if profile == 1 { "body" } else { "bio" };
    f.insert(field.to_owned(), Value::String(text(rng, pad)));
    f
}

fn approx_len(v: &Value) -> usize {
    match v {
        Value::Null => 4,
        Value::Int64(_) => 12,
        Value::Float64(_) => 18,
        Value::Boolean(_) => 5,
        Value::String(s) => s.len() + 2,
        Value::Bytes(b) => b.len() * 4 / 3 + 4,
        Value::Array(a) => 2 + a.iter().map(|v| approx_len(v) + 1).sum::<usize>(),
        Value::Object(m) => {
            2 + m
                .iter()
                .map(|(k, v)| k.len() + 4 + approx_len(v))
                .sum::<usize>()
        }
    }
}

fn profile_of(table: &str) -> u8 {
    match table {
        "users" | "accounts" | "sessions" => 0,
        "messages" | "comments" | "posts" | "notifications" => 1,
        "orders" | "payments" | "invoices" | "carts" | "shipments" => 2,
        other => {
            (other
                .bytes()
                .fold(0u32, |a, b| a.wrapping_mul(31) + u32::from(b))
                % 4) as u8
        }
    }
}

/// Documents are committed in transactions of this many inserts during the initial load.
const LOAD_TX: usize = 512;

/// Loads the initial data of `spec` (then applies `spec.deltas` changes).
pub fn generate(dep: &Deployment, spec: &GenerateSpec) -> Result<ChangeSummary, Error> {
    let mut targets: Vec<(String, String)> = table_names(spec.tables)
        .into_iter()
        .map(|t| (String::new(), t))
        .collect();
    if spec.components {
        targets.extend(
            COMPONENT_TABLES
                .iter()
                .map(|(c, t)| ((*c).to_owned(), (*t).to_owned())),
        );
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    {
        let mut s = dep.store_mut();
        s.doc_size = spec.doc_size;
        for (ti, (component, table)) in targets.iter().enumerate() {
            load_table(&mut s, spec, ti as u64, component, table, threads);
        }
    }
    if spec.deltas > 0 {
        changes(dep, spec.deltas, spec.seed.wrapping_add(1))
    } else {
        Ok(ChangeSummary {
            ts: dep.head(),
            ..ChangeSummary::default()
        })
    }
}

fn load_table(
    s: &mut Store,
    spec: &GenerateSpec,
    table_idx: u64,
    component: &str,
    table: &str,
    threads: usize,
) {
    let (ti, mut new_table) = match s.find_table(component, table) {
        Some(i) => (i, None),
        None => (
            s.tables.len(),
            Some(s.new_table_spec(component, table, false)),
        ),
    };
    let number = match &new_table {
        Some(t) => t.number,
        None => s.tables[ti].number,
    };
    if spec.docs == 0 {
        if let Some(t) = new_table.take() {
            let ts = s.next_ts();
            s.apply(ts, vec![t], Vec::new());
        }
        return;
    }
    // Prepare a batch of commits in parallel (encoding dominates), then apply them in order.
    let batch_docs = LOAD_TX * 32;
    let mut start = 0;
    while start < spec.docs {
        let end = (start + batch_docs).min(spec.docs);
        let mut head = s.head;
        let mut commit_ts = Vec::new();
        for _ in (start..end).step_by(LOAD_TX) {
            head += 1_000_000 + s.rng.below(2_000_000) as i64;
            commit_ts.push(head);
        }
        let shapes = &s.shapes;
        let make = |i: usize| -> ([u8; 16], PreparedDoc) {
            let mut rng = Rng::derive(spec.seed, &[table_idx, i as u64]);
            let internal = rng.bytes16();
            let fields = document(table, &mut rng, i as u64, spec.doc_size);
            let ts = commit_ts[(i - start) / LOAD_TX];
            let id = ids::document_id(number, &internal);
            (
                internal,
                prepare_doc(
                    &id,
                    creation_time(ts, (i - start) % LOAD_TX),
                    &fields,
                    shapes,
                ),
            )
        };
        let per = (end - start).div_ceil(threads);
        let prepared: Vec<([u8; 16], PreparedDoc)> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..threads)
                .map(|k| {
                    let lo = (start + k * per).min(end);
                    let hi = (lo + per).min(end);
                    let make = &make;
                    sc.spawn(move || (lo..hi).map(make).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut it = prepared.into_iter();
        for ts in commit_ts {
            let writes: Vec<Write> = it
                .by_ref()
                .take(LOAD_TX)
                .map(|(internal, doc)| Write {
                    table: ti,
                    internal,
                    doc: Some(doc),
                })
                .collect();
            let tables = new_table.take().into_iter().collect();
            s.apply(ts, tables, writes);
        }
        start = end;
    }
}

/// Applies `count` generated changes (about 30% inserts, 50% updates, 20% deletes) over the
/// existing user tables, in transactions of 1 to 8 changes.
pub fn changes(dep: &Deployment, count: usize, seed: u64) -> Result<ChangeSummary, Error> {
    let mut rng = Rng::derive(seed, &[0xc4a9]);
    let mut sum = ChangeSummary::default();
    let mut done = 0;
    let mut serial = 0u64;
    while done < count {
        let size = if rng.chance(0.7) {
            1
        } else {
            2 + rng.below(7) as usize
        }
        .min(count - done);
        let doc_size = dep.store().doc_size;
        let (_, (ins, upd, del)) = dep.transaction_with(|tx| {
            let (mut ins, mut upd, mut del) = (0, 0, 0);
            for _ in 0..size {
                let tables: Vec<(String, String, usize)> = tx.user_tables();
                if tables.is_empty() {
                    return Err(Error("no tables to change: generate or create some".into()));
                }
                let (component, table, live) = rng.pick(&tables).clone();
                let roll = rng.below(10);
                serial += 1;
                if roll < 3 || live == 0 {
                    let doc = document(&table, &mut rng, 1_000_000 + serial, doc_size);
                    tx.insert(&component, &table, doc)?;
                    ins += 1;
                    continue;
                }
                let Some(id) = tx.random_live_id(&component, &table, &mut rng) else {
                    // Every document of the table was deleted earlier in this transaction.
                    let doc = document(&table, &mut rng, 1_000_000 + serial, doc_size);
                    tx.insert(&component, &table, doc)?;
                    ins += 1;
                    continue;
                };
                if roll < 8 {
                    if rng.chance(0.5) {
                        let doc = document(&table, &mut rng, serial, doc_size);
                        tx.replace(&component, &table, &id, doc)?;
                    } else {
                        let mut patch = Fields::new();
                        patch.insert("updatedAt".into(), Value::Float64(tx.ts() as f64 / 1e6));
                        patch.insert("revision".into(), Value::Int64(serial as i64));
                        tx.patch(&component, &table, &id, patch)?;
                    }
                    upd += 1;
                } else {
                    tx.delete(&component, &table, &id)?;
                    del += 1;
                }
            }
            Ok((ins, upd, del))
        })?;
        sum.transactions += 1;
        sum.inserted += ins;
        sum.updated += upd;
        sum.deleted += del;
        done += size;
    }
    sum.ts = dep.head();
    Ok(sum)
}
