//! The streaming export reads: list_snapshot pages, document_deltas pages, json_schemas and
//! get_table_column_names, computed from a [`Store`] and written straight into response bytes.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};

use crate::ids;
use crate::shape::table_schema;
use crate::store::{Store, StoredDoc, TableData};
use crate::value::{write_fields, write_str, Format, Value};

/// A Convex API error: status, `code`, `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// What Convex answers for an error without metadata (e.g. a negative timestamp).
    pub fn internal() -> ApiError {
        ApiError::new(
            500,
            "InternalServerError",
            "Your request couldn't be completed. Try again later.",
        )
    }
}

/// Inclusion of `_other` / explicit entries.
#[derive(Debug, Clone, PartialEq)]
pub enum TableSel {
    Excluded,
    Included {
        other: bool,
        columns: BTreeMap<String, bool>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ComponentSel {
    Excluded,
    Included {
        other: bool,
        tables: BTreeMap<String, TableSel>,
    },
}

/// The table selection of list_snapshot / document_deltas (Convex's `SelectionArg`).
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    All,
    Table {
        component: String,
        table: String,
    },
    Component(String),
    Fine {
        other: bool,
        components: BTreeMap<String, ComponentSel>,
    },
}

/// Column filter for one table: `(other, explicit)`.
pub type Columns = (bool, BTreeMap<String, bool>);

fn parse_inclusion(v: &Json) -> Option<bool> {
    match v.as_str()? {
        "included" | "incl" => Some(true),
        "excluded" | "excl" => Some(false),
        _ => None,
    }
}

fn parse_other(obj: &Map<String, Json>) -> Option<bool> {
    parse_inclusion(obj.get("_other")?)
}

fn is_excluded_str(v: &Json) -> bool {
    matches!(v.as_str(), Some("excluded" | "excl"))
}

impl Selection {
    /// Parses a `selection` object. `None` means it did not parse, in which case Convex's
    /// untagged enum silently falls through to the next variant (ultimately "everything").
    pub fn parse_fine(v: &Json) -> Option<Selection> {
        let obj = v.as_object()?;
        let other = parse_other(obj)?;
        let mut components = BTreeMap::new();
        for (path, cv) in obj {
            if path == "_other" {
                continue;
            }
            let sel = if is_excluded_str(cv) {
                ComponentSel::Excluded
            } else {
                let cobj = cv.as_object()?;
                let cother = parse_other(cobj)?;
                let mut tables = BTreeMap::new();
                for (tname, tv) in cobj {
                    if tname == "_other" {
                        continue;
                    }
                    let ts = if is_excluded_str(tv) {
                        TableSel::Excluded
                    } else {
                        let tobj = tv.as_object()?;
                        let tother = parse_other(tobj)?;
                        let mut columns = BTreeMap::new();
                        for (col, colv) in tobj {
                            if col != "_other" {
                                columns.insert(col.clone(), parse_inclusion(colv)?);
                            }
                        }
                        TableSel::Included {
                            other: tother,
                            columns,
                        }
                    };
                    tables.insert(tname.clone(), ts);
                }
                ComponentSel::Included {
                    other: cother,
                    tables,
                }
            };
            components.insert(path.clone(), sel);
        }
        Some(Selection::Fine { other, components })
    }

    /// Rejects what Convex's legacy endpoints turn into a bare 500: unparsable table names or
    /// component paths, and column selections that exclude `_id`.
    pub fn validate(&self) -> Result<(), ApiError> {
        match self {
            Selection::All => Ok(()),
            Selection::Table { component, table } => {
                if valid_table_name(table) && valid_component_path(component) {
                    Ok(())
                } else {
                    Err(ApiError::internal())
                }
            }
            Selection::Component(c) => {
                if valid_component_path(c) {
                    Ok(())
                } else {
                    Err(ApiError::internal())
                }
            }
            Selection::Fine { components, .. } => {
                for (path, cs) in components {
                    if !valid_component_path(path) {
                        return Err(ApiError::internal());
                    }
                    if let ComponentSel::Included { tables, .. } = cs {
                        for (name, ts) in tables {
                            if !valid_table_name(name) {
                                return Err(ApiError::internal());
                            }
                            if let TableSel::Included { other, columns } = ts {
                                if !columns.get("_id").copied().unwrap_or(*other) {
                                    return Err(ApiError::internal());
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// `None` = table not selected; `Some(None)` = all columns; `Some(Some(cols))` = filter.
    pub fn table(&self, component: &str, table: &str) -> Option<Option<Columns>> {
        match self {
            Selection::All => Some(None),
            Selection::Table {
                component: c,
                table: t,
            } => (c == component && t == table).then_some(None),
            Selection::Component(c) => (c == component).then_some(None),
            Selection::Fine { other, components } => match components.get(component) {
                None => other.then_some(None),
                Some(ComponentSel::Excluded) => None,
                Some(ComponentSel::Included { other, tables }) => match tables.get(table) {
                    None => other.then_some(None),
                    Some(TableSel::Excluded) => None,
                    Some(TableSel::Included { other, columns }) => {
                        if *other && columns.values().all(|&inc| inc) {
                            Some(None)
                        } else {
                            Some(Some((*other, columns.clone())))
                        }
                    }
                },
            },
        }
    }
}

/// Convex table names: an identifier of at most 64 characters (system tables start with `_`).
pub fn valid_table_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    s.len() <= 64 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `""` (root) or identifiers separated by `/`.
pub fn valid_component_path(s: &str) -> bool {
    s.is_empty()
        || s.split('/').all(|seg| {
            let mut chars = seg.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
                && seg.len() <= 64
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Per-table decision made once per request: which tables are read and how.
struct TablePlan {
    selected: bool,
    columns: Option<Columns>,
}

fn plan(store: &Store, selection: &Selection) -> Vec<TablePlan> {
    store
        .tables
        .iter()
        .map(|t| {
            if t.system() {
                return TablePlan {
                    selected: false,
                    columns: None,
                };
            }
            match selection.table(&t.component, &t.name) {
                Some(columns) => TablePlan {
                    selected: true,
                    columns,
                },
                None => TablePlan {
                    selected: false,
                    columns: None,
                },
            }
        })
        .collect()
}

/// Appends `{"_component":..,"_table":..,"_ts":<ts>`, optionally `,"_deleted":false`, then
/// the document's fields and `}`.
fn write_value(
    out: &mut Vec<u8>,
    table: &TableData,
    ts: i64,
    with_deleted_false: bool,
    doc: &StoredDoc,
    format: Format,
    columns: &Option<Columns>,
) {
    out.extend_from_slice(&table.prefix);
    out.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
    if with_deleted_false {
        out.extend_from_slice(b",\"_deleted\":false");
    }
    match (columns, doc.bytes(format)) {
        (None, Some(bytes)) => {
            // Stored objects always hold `_id`, so there is at least one field after `{`.
            out.push(b',');
            out.extend_from_slice(&bytes[1..]);
        }
        _ => {
            // Slow path (column selection or export_json): decode and re-encode.
            let fields = doc.fields();
            let kept: Vec<(&String, &Value)> = fields
                .iter()
                .filter(|(k, _)| match columns {
                    None => true,
                    Some((other, cols)) => cols.get(k.as_str()).copied().unwrap_or(*other),
                })
                .collect();
            if !kept.is_empty() {
                out.push(b',');
            }
            write_fields(kept.into_iter(), format, out);
            out.push(b'}');
        }
    }
}

pub struct SnapshotArgs {
    pub snapshot: Option<i64>,
    pub cursor: Option<String>,
    pub selection: Selection,
    pub format: Format,
}

fn invalid_cursor() -> ApiError {
    ApiError::new(
        400,
        "InvalidListSnapshotCursor",
        "Invalid value for the `cursor` argument of list_snapshot. Use a `cursor` returned by a \
         previous list_snapshot call, and treat it as an opaque value.",
    )
}

fn parse_snapshot_cursor(s: &str) -> Result<([u8; 16], [u8; 16]), ApiError> {
    let j: Json = serde_json::from_str(s).map_err(|_| invalid_cursor())?;
    let tablet = j
        .get("tablet")
        .and_then(Json::as_str)
        .and_then(ids::parse_tablet)
        .ok_or_else(invalid_cursor)?;
    let id = j
        .get("id")
        .and_then(Json::as_str)
        .and_then(ids::parse_document_id)
        .ok_or_else(invalid_cursor)?;
    Ok((tablet, id))
}

/// Checks a `snapshot` argument against head and the maximum age.
pub fn check_snapshot(s: i64, head: i64, max_age_ns: i64) -> Result<(), ApiError> {
    if s < 0 {
        return Err(ApiError::internal());
    }
    if s > head {
        return Err(ApiError::new(
            400,
            "SnapshotTooNew",
            format!("Snapshot value {s} is in the future."),
        ));
    }
    if s < head.saturating_sub(max_age_ns) {
        return Err(ApiError::new(
            400,
            "SnapshotTooOld",
            format!("Snapshot value {s} is too far in the past."),
        ));
    }
    Ok(())
}

/// Where a list_snapshot request starts: its snapshot and the position after its cursor.
pub struct SnapshotStart {
    pub snapshot: i64,
    pub start: Option<([u8; 16], [u8; 16])>,
}

/// Checks a list_snapshot request in Convex's order: the cursor is parsed first (while the
/// arguments are read), then the snapshot is checked against head and the maximum age, then
/// the selection.
pub fn prepare_snapshot(
    store: &Store,
    args: &SnapshotArgs,
    max_age_ns: i64,
) -> Result<SnapshotStart, ApiError> {
    let start = match &args.cursor {
        Some(c) => Some(parse_snapshot_cursor(c)?),
        None => None,
    };
    let snapshot = match args.snapshot {
        Some(s) => {
            check_snapshot(s, store.head, max_age_ns)?;
            s
        }
        None => store.head,
    };
    args.selection.validate()?;
    Ok(SnapshotStart { snapshot, start })
}

/// Document-log rows written after `snapshot` (what an iterator built at it merges).
pub fn log_rows_after(store: &Store, snapshot: i64) -> usize {
    store.log.len() - store.log.partition_point(|e| e.ts <= snapshot)
}

/// One list_snapshot page: the response bytes and what the page cost.
pub struct SnapshotPage {
    pub body: Vec<u8>,
    pub snapshot: i64,
    /// Documents returned.
    pub returned: usize,
    /// Document entries visited (returned, or not visible at the snapshot).
    pub rows_read: usize,
    /// The position the returned cursor names (`None` when `hasMore` is false).
    pub next: Option<([u8; 16], [u8; 16])>,
}

/// One list_snapshot page.
pub fn list_snapshot(
    store: &Store,
    args: &SnapshotArgs,
    page_limit: usize,
    max_age_ns: i64,
) -> Result<SnapshotPage, ApiError> {
    let SnapshotStart { snapshot, start } = prepare_snapshot(store, args, max_age_ns)?;
    let plans = plan(store, &args.selection);
    // Tables present at the snapshot, in tablet-id order (random, so not alphabetical).
    let mut order: Vec<usize> = (0..store.tables.len())
        .filter(|&i| plans[i].selected && store.tables[i].exists_at(snapshot))
        .collect();
    order.sort_by_key(|&i| store.tables[i].tablet);
    if let Some((tablet, _)) = &start {
        order.retain(|&i| store.tables[i].tablet >= *tablet);
    }

    let limit = page_limit.max(1);
    let mut out = Vec::with_capacity(64 * 1024);
    out.extend_from_slice(b"{\"values\":[");
    let (mut count, mut visited) = (0usize, 0usize);
    let mut next_cursor: Option<(usize, Option<[u8; 16]>)> = None;
    if let Some(&ti) = order.first() {
        let table = &store.tables[ti];
        let lower = match &start {
            Some((tablet, id)) if *tablet == table.tablet => std::ops::Bound::Excluded(*id),
            _ => std::ops::Bound::Unbounded,
        };
        let columns = &plans[ti].columns;
        let mut last = None;
        for (internal, entry) in table.docs.range((lower, std::ops::Bound::Unbounded)) {
            visited += 1;
            let Some(rev) = entry.at(snapshot) else {
                continue;
            };
            let Some(doc) = &rev.doc else { continue };
            if count > 0 {
                out.push(b',');
            }
            write_value(&mut out, table, rev.ts, false, doc, args.format, columns);
            count += 1;
            last = Some(*internal);
            if count >= limit {
                break;
            }
        }
        if count >= limit {
            next_cursor = Some((ti, last));
        } else if let Some(&next) = order.get(1) {
            next_cursor = Some((next, None));
        }
    }
    out.extend_from_slice(b"],\"snapshot\":");
    out.extend_from_slice(itoa::Buffer::new().format(snapshot).as_bytes());
    out.extend_from_slice(b",\"cursor\":");
    let mut next = None;
    match next_cursor {
        Some((ti, id)) => {
            let table = &store.tables[ti];
            // The minimum id for "start of this table"; resuming after it skips nothing
            // because generated internal ids are never all zero.
            let id = id.unwrap_or([0u8; 16]);
            next = Some((table.tablet, id));
            let cursor = format!(
                "{{\"tablet\":\"{}\",\"id\":\"{}\"}}",
                table.tablet_str,
                table.doc_id(&id)
            );
            write_str(&cursor, &mut out);
            out.extend_from_slice(b",\"hasMore\":true}");
        }
        None => out.extend_from_slice(b"null,\"hasMore\":false}"),
    }
    Ok(SnapshotPage {
        body: out,
        snapshot,
        returned: count,
        rows_read: visited,
        next,
    })
}

pub struct DeltasArgs {
    pub cursor: i64,
    pub selection: Selection,
    pub format: Format,
    /// A backend from before 2026-08-11 skipped the rows of non-root components' tables
    /// (after counting them as read).
    pub skip_components: bool,
}

/// One document_deltas page as response bytes, and the number of log rows it read.
pub fn document_deltas(
    store: &Store,
    args: &DeltasArgs,
    page_limit: usize,
    retention_ns: i64,
) -> Result<(Vec<u8>, usize), ApiError> {
    let cursor = args.cursor;
    if cursor < 0 {
        return Err(ApiError::internal());
    }
    if cursor < store.head.saturating_sub(retention_ns) {
        return Err(ApiError::new(
            400,
            "InvalidWindowToReadDocuments",
            format!(
                "Trying to synchronize from timestamp {cursor}, which is older than the \
                 database\u{2019}s retention window. This may happen if you paused your Fivetran \
                 or Airbyte connector for a long period of time. Please perform a full sync of \
                 the connector. See https://docs.convex.dev/production/integrations/ for more \
                 information."
            ),
        ));
    }
    args.selection.validate()?;
    let plans = plan(store, &args.selection);
    let upper = store.head;
    let limit = page_limit.max(1);
    let start = store.log.partition_point(|e| e.ts <= cursor);
    let mut out = Vec::with_capacity(16 * 1024);
    out.extend_from_slice(b"{\"values\":[");
    let (mut read, mut returned) = (0usize, 0usize);
    let mut cutoff: Option<i64> = None;
    let mut has_more = false;
    for e in &store.log[start..] {
        if e.ts > upper {
            break;
        }
        if let Some(c) = cutoff {
            // Never split a transaction: stop only at the first row of a later commit.
            if e.ts > c {
                has_more = true;
                break;
            }
        }
        // Rows of every table count toward the read limit, selected or not, like Convex.
        read += 1;
        let table = &store.tables[e.table as usize];
        let p = &plans[e.table as usize];
        // Rows of tables deleted since are skipped, even historical ones.
        let exported = !args.skip_components || table.component.is_empty();
        if p.selected && table.active() && exported {
            if returned > 0 {
                out.push(b',');
            }
            match &e.doc {
                Some(doc) => write_value(&mut out, table, e.ts, true, doc, args.format, &p.columns),
                None => {
                    out.extend_from_slice(&table.prefix);
                    out.extend_from_slice(itoa::Buffer::new().format(e.ts).as_bytes());
                    out.extend_from_slice(b",\"_deleted\":true,\"_id\":");
                    write_str(&table.doc_id(&e.internal), &mut out);
                    out.push(b'}');
                }
            }
            returned += 1;
        }
        if cutoff.is_none() && (read >= limit || returned >= limit) {
            cutoff = Some(e.ts);
        }
    }
    out.extend_from_slice(b"],\"cursor\":");
    // A cursor past head yields an empty page whose cursor is head (smaller than the input).
    let next = cutoff.unwrap_or(upper);
    out.extend_from_slice(itoa::Buffer::new().format(next).as_bytes());
    out.extend_from_slice(if has_more {
        b",\"hasMore\":true}"
    } else {
        b",\"hasMore\":false}"
    });
    Ok((out, read))
}

/// Components in json_schemas order: root first, then children by component id.
fn component_order(store: &Store) -> Vec<&str> {
    let mut comps: Vec<&crate::store::Component> = store.components.iter().collect();
    comps.sort_by_key(|c| (!c.path.is_empty(), c.id));
    comps.iter().map(|c| c.path.as_str()).collect()
}

/// Tables json_schemas lists for a component: active, user, not hidden, in tablet order.
fn schema_tables<'a>(store: &'a Store, component: &str) -> Vec<&'a TableData> {
    let mut tables: Vec<&TableData> = store
        .tables
        .iter()
        .filter(|t| t.active() && !t.hidden && !t.system() && t.component == component)
        .collect();
    tables.sort_by_key(|t| t.tablet);
    tables
}

/// What json_schemas answers. A table whose shape is not an object is described from its
/// component's active schema; without a usable one the whole call fails.
pub fn json_schemas(
    store: &Store,
    format: Format,
    delta_schema: bool,
    by_component: bool,
) -> Result<Json, ApiError> {
    let names = |n| store.table_name(n);
    let mut flat = Map::new();
    let mut nested = Map::new();
    for comp in component_order(store) {
        let mut per = Map::new();
        for t in schema_tables(store, comp) {
            let shape = store.table_shape(t);
            let schema = match table_schema(t.number, &shape, format, delta_schema, &names) {
                Some(s) => s,
                None => crate::schema::table_schema_from(
                    store.schemas.get(comp),
                    comp,
                    &t.name,
                    format,
                    delta_schema,
                )?,
            };
            if by_component {
                per.insert(t.name.clone(), schema);
            } else {
                // A same-named table in a later component overwrites the earlier entry.
                flat.insert(t.name.clone(), schema);
            }
        }
        if by_component {
            nested.insert(comp.to_owned(), Json::Object(per));
        }
    }
    Ok(Json::Object(if by_component { nested } else { flat }))
}

pub fn table_column_names(store: &Store) -> Json {
    let mut by = Map::new();
    for comp in component_order(store) {
        let tables: Vec<Json> = schema_tables(store, comp)
            .into_iter()
            .map(|t| {
                let cols = crate::shape::column_names(&store.table_shape(t));
                json!({"name": t.name, "columns": cols})
            })
            .collect();
        by.insert(comp.to_owned(), Json::Array(tables));
    }
    json!({ "byComponent": by })
}

/// Live documents of a table at head, each exactly as list_snapshot sends it in `format`.
pub fn live_documents(store: &Store, ti: usize, format: Format) -> Vec<Json> {
    documents_at(store, ti, i64::MAX, format)
}

/// The documents of a table live at `ts`, each at its latest revision at or before `ts`, as
/// list_snapshot at snapshot `ts` sends them.
pub fn documents_at(store: &Store, ti: usize, ts: i64, format: Format) -> Vec<Json> {
    let table = &store.tables[ti];
    let mut buf = Vec::new();
    table
        .docs
        .values()
        .filter_map(|e| {
            let rev = e.at(ts)?;
            let doc = rev.doc.as_ref()?;
            buf.clear();
            write_value(&mut buf, table, rev.ts, false, doc, format, &None);
            serde_json::from_slice(&buf).ok()
        })
        .collect()
}
