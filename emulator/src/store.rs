//! The multi-version document store: components, tables (tablets), revisions, the document
//! log and the commit clock: the deployment's data, and the only state a commit changes.
//!
//! Every revision is encoded once when it is written (clean `json` and lossless encoded JSON),
//! so the read endpoints only copy bytes. Old revisions are kept so a read at snapshot `S`
//! sees each document's latest revision at or before `S`.

mod tables;
mod transaction;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub use tables::TableInfo;
pub use transaction::Transaction;

use crate::ids::{self, Rng};
use crate::schema::ComponentSchema;
use crate::shape::{fingerprint_document, Shape, ShapeInterner};
use crate::value::{write_fields, write_str, Fields, Format, Value};

/// Head timestamp of a fresh deployment: mid-February 2026 in nanoseconds, 19 digits and far
/// above 2^53, like a real deployment's, so clients that parse through f64 break visibly.
pub const INITIAL_HEAD: i64 = 1_770_335_566_197_682_922;

/// Highest head `advance_clock` reaches (about year 2262 minus a day), so later commits
/// (head + a few ms) cannot overflow.
const MAX_HEAD: i64 = i64::MAX - 86_400_000_000_000;

/// `_creationTime` for the k-th insert of a commit at `ts`: milliseconds with a fraction,
/// slightly before the commit and nudged per insert so documents of one transaction differ.
pub fn creation_time(ts: i64, k: usize) -> f64 {
    (ts / 1_000) as f64 / 1_000.0 - 1.0 + (k % 1000) as f64 * 0.001
}

/// A document revision as stored and served.
pub struct StoredDoc {
    /// The whole document object (`{...}` with `_creationTime` and `_id`) in clean `json`.
    pub clean: Box<[u8]>,
    /// The same object in lossless `convex_encoded_json`; also the source of truth for
    /// patches, column selection and `export_json`.
    pub encoded: Box<[u8]>,
    pub shape: u32,
    /// The same object in `export_json`, when it differs from `encoded` (an int64 or a -0.0
    /// in it); `None`: `encoded` is also the `export_json`. Kept so every encoding a read
    /// asks for is a copy of stored bytes.
    pub export: Option<Box<[u8]>>,
}

impl StoredDoc {
    pub fn bytes(&self, format: Format) -> Option<&[u8]> {
        match format {
            Format::Clean => Some(&self.clean),
            Format::Encoded => Some(&self.encoded),
            Format::Export => Some(self.export.as_deref().unwrap_or(&self.encoded)),
        }
    }

    /// All fields, system fields included, decoded from the lossless encoding.
    pub fn fields(&self) -> Fields {
        serde_json::from_slice::<serde_json::Value>(&self.encoded)
            .ok()
            .and_then(|j| Value::from_encoded_json(&j).ok())
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .unwrap_or_default()
    }
}

/// The shape of a prepared document: already interned, or new (fingerprint and tree).
pub enum ShapeSource {
    Known(u32),
    New(u64, Shape),
}

/// Whether a `convex_encoded_json` document is already its `export_json` form: the two differ
/// only in int64 (`{"$integer":…}` vs a number) and `-0.0` (`{"$float":"AAAAAAAAAIA="}` vs
/// `-0.0`). A string that merely contains these bytes is only a false alarm (the slow path).
pub fn export_equals_encoded(encoded: &[u8]) -> bool {
    const INTEGER: &[u8] = b"{\"$integer\":";
    const NEG_ZERO: &[u8] = b"{\"$float\":\"AAAAAAAAAIA=\"}";
    // Both markers start with `{"$`: look at every `$` with two bytes before it.
    !encoded.iter().enumerate().any(|(i, &b)| {
        b == b'$' && i >= 2 && {
            let tail = &encoded[i - 2..];
            tail.starts_with(INTEGER) || tail.starts_with(NEG_ZERO)
        }
    })
}

/// A document before it is committed: encoded, with its shape not yet interned.
pub struct PreparedDoc {
    pub clean: Box<[u8]>,
    pub encoded: Box<[u8]>,
    /// `export_json`, when it differs from `encoded`.
    pub export: Option<Box<[u8]>>,
    pub shape: ShapeSource,
}

/// Encodes a document; `fields` are the user fields (no `_`-prefixed names), `id` names the
/// table (its number is part of the `_id` field's shape). The shape tree is only built when
/// `known` does not already hold the document's fingerprint.
pub fn prepare_doc(
    id: &str,
    creation_time: f64,
    fields: &Fields,
    known: &ShapeInterner,
) -> PreparedDoc {
    // The id names its table number, which the `_id` field's shape records.
    let number = ids::decode_document_id(id).map_or(0, |(n, _)| n);
    let key = fingerprint_document(number, fields);
    let shape = match known.lookup(key) {
        Some(id) => ShapeSource::Known(id),
        None => ShapeSource::New(key, Shape::of_document(number, fields)),
    };
    let encode = |format: Format| {
        let mut out = Vec::with_capacity(64 + fields.len() * 24);
        out.push(b'{');
        // User fields cannot start with '_', so the two system fields sit between the
        // fields that sort before '_' (upper case) and those after it (lower case): this
        // keeps the object in Convex's sorted field order without building a merged map.
        use std::ops::Bound;
        let before = fields.range::<str, _>((Bound::Unbounded, Bound::Excluded("_")));
        let after = fields.range::<str, _>((Bound::Included("_"), Bound::Unbounded));
        let n_before = before.clone().count();
        write_fields(before, format, &mut out);
        if n_before > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"\"_creationTime\":");
        crate::value::write_finite(creation_time, &mut out);
        out.extend_from_slice(b",\"_id\":");
        write_str(id, &mut out);
        let mut after = after.peekable();
        if after.peek().is_some() {
            out.push(b',');
            write_fields(after, format, &mut out);
        }
        out.push(b'}');
        out.into_boxed_slice()
    };
    let encoded = encode(Format::Encoded);
    PreparedDoc {
        clean: encode(Format::Clean),
        export: (!export_equals_encoded(&encoded)).then(|| encode(Format::Export)),
        encoded,
        shape,
    }
}

#[derive(Clone)]
pub struct Revision {
    pub ts: i64,
    /// `None` = deleted at `ts`.
    pub doc: Option<Arc<StoredDoc>>,
}

/// Revisions of one document; `older` stays unallocated for documents written once.
pub struct DocEntry {
    pub latest: Revision,
    pub older: Vec<Revision>,
}

impl DocEntry {
    /// The revision visible at snapshot `s`, if the document existed then.
    pub fn at(&self, s: i64) -> Option<&Revision> {
        if self.latest.ts <= s {
            return Some(&self.latest);
        }
        self.older.iter().rev().find(|r| r.ts <= s)
    }
}

pub struct TableData {
    pub component: String,
    pub name: String,
    pub tablet: [u8; 16],
    pub tablet_str: String,
    pub number: u32,
    pub created_ts: i64,
    pub deleted_ts: Option<i64>,
    /// Import in progress: exported by list_snapshot/document_deltas, not by json_schemas.
    pub hidden: bool,
    /// When the table became visible under its name (its creation, or an import's swap;
    /// `i64::MAX` while hidden), for reads "as of" a past timestamp.
    pub shown_ts: i64,
    pub docs: BTreeMap<[u8; 16], DocEntry>,
    /// Live-document count per interned shape at head, for json_schemas.
    pub shape_counts: HashMap<u32, u64>,
    /// Set once the table's shape widened in a way Convex never narrows back (a union
    /// contracted past its limits, objects absorbed into a record): the shape from then on,
    /// until the table is empty again.
    pub sticky_shape: Option<Shape>,
    pub live: usize,
    /// `{"_component":"..","_table":"..","_ts":` — the constant start of every exported value.
    pub prefix: Box<[u8]>,
    /// `{"component":"..","table":"..","ts":` — the constant start of every data sync entry.
    pub sync_prefix: Box<[u8]>,
    /// Internal ids of this table's `_tables` row and its two `_index` rows.
    pub meta_rows: [[u8; 16]; 3],
}

impl TableData {
    pub fn system(&self) -> bool {
        self.name.starts_with('_')
    }

    pub fn exists_at(&self, s: i64) -> bool {
        self.created_ts <= s && self.deleted_ts.is_none_or(|d| d > s)
    }

    pub fn active(&self) -> bool {
        self.deleted_ts.is_none()
    }

    pub fn doc_id(&self, internal: &[u8; 16]) -> String {
        ids::document_id(self.number, internal)
    }

    pub fn live_doc(&self, internal: &[u8; 16]) -> Option<&Arc<StoredDoc>> {
        self.docs.get(internal)?.latest.doc.as_ref()
    }
}

pub struct LogEntry {
    pub ts: i64,
    pub table: u32,
    pub internal: [u8; 16],
    pub doc: Option<Arc<StoredDoc>>,
}

pub struct Component {
    pub path: String,
    /// Random id: json_schemas visits child components in id order, like Convex.
    pub id: [u8; 16],
}

/// A table to create in a commit.
pub struct NewTable {
    pub component: String,
    pub name: String,
    pub tablet: [u8; 16],
    pub number: u32,
    pub hidden: bool,
}

/// One document write of a commit; `doc: None` deletes.
pub struct Write {
    pub table: usize,
    pub internal: [u8; 16],
    pub doc: Option<PreparedDoc>,
}

pub struct Store {
    pub head: i64,
    pub rng: Rng,
    pub components: Vec<Component>,
    pub tables: Vec<TableData>,
    pub log: Vec<LogEntry>,
    pub shapes: ShapeInterner,
    pub next_table_number: u32,
    /// Document size target of generated changes (set by the last data generation).
    pub doc_size: usize,
    /// Active `schema.ts` per component path.
    pub schemas: BTreeMap<String, ComponentSchema>,
    /// Randomness of system rows, apart from `rng` so they leave user ids and timestamps
    /// exactly as they were.
    pub system_rng: Rng,
    /// Indices of the `_tables` and `_index` system tables, once a table was created.
    pub catalog: Option<(usize, usize)>,
}

/// Names of the catalog tables whose rows table creation and deletion write.
pub const CATALOG_TABLES: [&str; 2] = ["_tables", "_index"];

/// The two indexes Convex creates with every table.
const DEFAULT_INDEXES: [&str; 2] = ["by_id", "by_creation_time"];

impl Store {
    pub fn new(seed: u64) -> Store {
        let mut rng = Rng::derive(seed, &[0xdeb1]);
        let root = Component {
            path: String::new(),
            id: rng.bytes16(),
        };
        Store {
            head: INITIAL_HEAD + (rng.below(1_000_000_000) as i64),
            rng,
            components: vec![root],
            tables: Vec::new(),
            log: Vec::new(),
            shapes: ShapeInterner::default(),
            // Convex numbers user tables from 10001.
            next_table_number: 10_001,
            doc_size: 400,
            schemas: BTreeMap::new(),
            system_rng: Rng::derive(seed, &[0x0051_57e3]),
            catalog: None,
        }
    }

    /// Moves head forward without a commit, like Convex's periodic max-repeatable-timestamp
    /// bumps; used to age snapshots and cursors past their limits.
    pub fn advance_clock(&mut self, by: Duration) -> i64 {
        let ns = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.head = self.head.saturating_add(ns).min(MAX_HEAD);
        self.head
    }

    /// The timestamp the next commit gets: 1-3 ms after head with nanosecond jitter, so
    /// timestamps look like a real deployment's (never round numbers).
    pub fn next_ts(&mut self) -> i64 {
        self.head + 1_000_000 + self.rng.below(2_000_000) as i64
    }

    /// The active (not deleted) table with this name, hidden import tables excluded.
    pub fn find_table(&self, component: &str, name: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.active() && !t.hidden && t.component == component && t.name == name)
    }

    /// The table that carried this name at `ts` (created and shown at or before it, not yet
    /// deleted), if any.
    pub fn find_table_at(&self, component: &str, name: &str, ts: i64) -> Option<usize> {
        self.tables.iter().position(|t| {
            t.component == component && t.name == name && t.shown_ts <= ts && t.exists_at(ts)
        })
    }

    pub fn new_table_spec(&mut self, component: &str, name: &str, hidden: bool) -> NewTable {
        let t = NewTable {
            component: component.to_owned(),
            name: name.to_owned(),
            tablet: self.rng.bytes16(),
            number: self.next_table_number,
            hidden,
        };
        self.next_table_number += 1;
        t
    }

    fn ensure_component(&mut self, path: &str) {
        if !self.components.iter().any(|c| c.path == path) {
            let id = self.rng.bytes16();
            self.components.push(Component {
                path: path.to_owned(),
                id,
            });
        }
    }

    fn push_table(&mut self, t: NewTable, ts: i64) -> usize {
        let mut prefix = Vec::new();
        prefix.extend_from_slice(b"{\"_component\":");
        write_str(&t.component, &mut prefix);
        prefix.extend_from_slice(b",\"_table\":");
        write_str(&t.name, &mut prefix);
        prefix.extend_from_slice(b",\"_ts\":");
        let mut sync_prefix = b"{\"component\":".to_vec();
        write_str(&t.component, &mut sync_prefix);
        sync_prefix.extend_from_slice(b",\"table\":");
        write_str(&t.name, &mut sync_prefix);
        sync_prefix.extend_from_slice(b",\"ts\":");
        let meta_rows = [
            self.system_rng.bytes16(),
            self.system_rng.bytes16(),
            self.system_rng.bytes16(),
        ];
        self.tables.push(TableData {
            tablet_str: ids::tablet_string(&t.tablet),
            component: t.component,
            name: t.name,
            tablet: t.tablet,
            number: t.number,
            created_ts: ts,
            deleted_ts: None,
            hidden: t.hidden,
            shown_ts: if t.hidden { i64::MAX } else { ts },
            docs: BTreeMap::new(),
            shape_counts: HashMap::new(),
            sticky_shape: None,
            live: 0,
            prefix: prefix.into_boxed_slice(),
            sync_prefix: sync_prefix.into_boxed_slice(),
            meta_rows,
        });
        self.tables.len() - 1
    }

    /// The `_tables` and `_index` tables, created (unlogged, like Convex's bootstrap) on
    /// first use.
    fn catalog(&mut self, ts: i64) -> (usize, usize) {
        if let Some(c) = self.catalog {
            return c;
        }
        let make = |s: &mut Store, name: &str, number: u32| {
            let t = NewTable {
                component: String::new(),
                name: name.to_owned(),
                tablet: s.system_rng.bytes16(),
                number,
                hidden: false,
            };
            s.push_table(t, ts)
        };
        let c = (
            make(self, CATALOG_TABLES[0], 1),
            make(self, CATALOG_TABLES[1], 2),
        );
        self.catalog = Some(c);
        c
    }

    /// The catalog rows a table's creation (`state` "active", or "hidden" during an import),
    /// a state change or its deletion (`None`) writes: its `_tables` row and, on creation and
    /// deletion, its two `_index` rows. Convex writes such rows too, and document_deltas
    /// reads them like any other.
    pub fn catalog_writes(
        &mut self,
        ti: usize,
        ts: i64,
        state: Option<&str>,
        indexes: bool,
    ) -> Vec<Write> {
        let (tables, index) = self.catalog(ts);
        let t = &self.tables[ti];
        let rows = t.meta_rows;
        let (name, component, number, tablet) = (
            t.name.clone(),
            t.component.clone(),
            t.number,
            t.tablet_str.clone(),
        );
        let doc = |s: &Store, table: usize, internal: &[u8; 16], fields: Fields| {
            let id = ids::document_id(s.tables[table].number, internal);
            prepare_doc(&id, (ts / 1_000_000) as f64, &fields, &s.shapes)
        };
        let mut writes = Vec::with_capacity(3);
        let table_doc = state.map(|state| {
            let fields: Fields = [
                ("name".to_owned(), Value::String(name)),
                ("namespace".to_owned(), Value::String(component)),
                ("number".to_owned(), Value::Int64(i64::from(number))),
                ("state".to_owned(), Value::String(state.to_owned())),
            ]
            .into_iter()
            .collect();
            doc(self, tables, &rows[0], fields)
        });
        writes.push(Write {
            table: tables,
            internal: rows[0],
            doc: table_doc,
        });
        if indexes {
            for (k, descriptor) in DEFAULT_INDEXES.iter().enumerate() {
                let index_doc = state.map(|_| {
                    let fields: Fields = [
                        (
                            "descriptor".to_owned(),
                            Value::String((*descriptor).to_owned()),
                        ),
                        ("table".to_owned(), Value::String(tablet.clone())),
                    ]
                    .into_iter()
                    .collect();
                    doc(self, index, &rows[k + 1], fields)
                });
                writes.push(Write {
                    table: index,
                    internal: rows[k + 1],
                    doc: index_doc,
                });
            }
        }
        writes
    }

    /// Deletes a table at a new commit `ts`, writing its catalog rows.
    pub fn drop_table(&mut self, ti: usize, ts: i64) -> i64 {
        self.tables[ti].deleted_ts = Some(ts);
        let writes = self.catalog_writes(ti, ts, None, true);
        self.apply(ts, Vec::new(), writes)
    }

    /// Applies one transaction at `ts` (> head): creates tables (and their catalog rows),
    /// then writes documents.
    pub fn apply(&mut self, ts: i64, new_tables: Vec<NewTable>, mut writes: Vec<Write>) -> i64 {
        debug_assert!(ts > self.head);
        let mut created = Vec::with_capacity(new_tables.len());
        for t in new_tables {
            self.ensure_component(&t.component);
            created.push(self.push_table(t, ts));
        }
        for ti in created {
            let state = if self.tables[ti].hidden {
                "hidden"
            } else {
                "active"
            };
            let rows = self.catalog_writes(ti, ts, Some(state), true);
            writes.extend(rows);
        }
        // The document log is ordered by (ts, tablet id, document id) within a commit.
        writes.sort_by(|a, b| {
            (self.tables[a.table].tablet, a.internal)
                .cmp(&(self.tables[b.table].tablet, b.internal))
        });
        self.log.reserve(writes.len());
        // Shapes that became live in a table with this commit (their count went 0 -> 1).
        let mut arrived: Vec<(usize, u32)> = Vec::new();
        let mut touched: Vec<usize> = Vec::new();
        for w in writes {
            let doc = w.doc.map(|p| {
                Arc::new(StoredDoc {
                    export: p.export,
                    clean: p.clean,
                    encoded: p.encoded,
                    shape: match p.shape {
                        ShapeSource::Known(id) => id,
                        ShapeSource::New(key, shape) => self.shapes.intern(key, shape),
                    },
                })
            });
            let table = &mut self.tables[w.table];
            let new_rev = Revision {
                ts,
                doc: doc.clone(),
            };
            match table.docs.get_mut(&w.internal) {
                Some(entry) => {
                    if let Some(old) = &entry.latest.doc {
                        dec(&mut table.shape_counts, old.shape);
                        table.live -= 1;
                    }
                    let old = std::mem::replace(&mut entry.latest, new_rev);
                    entry.older.push(old);
                }
                None => {
                    table.docs.insert(
                        w.internal,
                        DocEntry {
                            latest: new_rev,
                            older: Vec::new(),
                        },
                    );
                }
            }
            if let Some(d) = &doc {
                let n = table.shape_counts.entry(d.shape).or_default();
                *n += 1;
                if *n == 1 {
                    arrived.push((w.table, d.shape));
                }
                table.live += 1;
            }
            if touched.last() != Some(&w.table) {
                touched.push(w.table);
            }
            self.log.push(LogEntry {
                ts,
                table: w.table as u32,
                internal: w.internal,
                doc,
            });
        }
        for ti in touched {
            if self.tables[ti].live == 0 {
                self.tables[ti].sticky_shape = None;
            }
        }
        arrived.sort_unstable();
        arrived.dedup();
        for (ti, shape) in arrived {
            self.widen(ti, shape);
        }
        self.head = ts;
        ts
    }

    /// Follows a new live shape of a table: once the table's shape has widened for good,
    /// every new shape is merged into the sticky one; otherwise the union of the live
    /// shapes is checked for such a widening.
    fn widen(&mut self, ti: usize, shape: u32) {
        let new = self.shapes.get(shape).clone();
        let sticky = match self.tables[ti].sticky_shape.take() {
            Some(s) => Some(s.union(new)),
            None => {
                let mut widened = false;
                let exact = self.live_union(&self.tables[ti], &mut widened);
                (widened || exact.has_record()).then_some(exact)
            }
        };
        self.tables[ti].sticky_shape = sticky;
    }

    fn live_union(&self, table: &TableData, widened: &mut bool) -> Shape {
        let mut ids: Vec<u32> = table
            .shape_counts
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(&id, _)| id)
            .collect();
        // Sorted so the union (and so the schema's member order) is deterministic.
        ids.sort_unstable();
        ids.into_iter().fold(Shape::Never, |acc, id| {
            acc.union_tracked(self.shapes.get(id).clone(), widened)
        })
    }

    /// The table's shape as Convex infers it: the union of its live documents' shapes,
    /// or the sticky widened shape (`Never` when empty).
    pub fn table_shape(&self, table: &TableData) -> Shape {
        if table.live == 0 {
            return Shape::Never;
        }
        if let Some(s) = &table.sticky_shape {
            return s.clone();
        }
        self.live_union(table, &mut false)
    }

    /// The name of the active table with this number, for `Id(<table>)` descriptions.
    pub fn table_name(&self, number: u32) -> Option<String> {
        self.tables
            .iter()
            .find(|t| t.number == number && t.active())
            .map(|t| t.name.clone())
    }
}

fn dec(counts: &mut HashMap<u32, u64>, shape: u32) {
    if let Some(n) = counts.get_mut(&shape) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&shape);
        }
    }
}
