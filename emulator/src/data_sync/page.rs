//! One data sync page: reconcile the cursor with the selection, then either walk the table in
//! progress by id at `synced_ts` or follow the document log after `synced_ts`.
//!
//! Convex's rules (the backend's `table_iteration/src/data_sync.rs`): a cursor *captures* a
//! document when its table is synced, or it is the table in progress and its id is at or
//! before the walk's position. A by-id page reads documents of one table in id order as of
//! `synced_ts`; a log page emits the revisions of captured documents in commit order, whole
//! commits only, and moves `synced_ts` forward. By-id pages are used while a table is in
//! progress and `synced_ts` is fresh (less than 30 s behind), log pages otherwise.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::{Bound, Range};

use super::cursor::{CursorState, InProgress};
use super::progress::State;
use super::selection::{Columns, Selection};
use crate::api_error::ApiError;
use crate::store::{Store, StoredDoc, TableData};
use crate::value::{write_fields, write_str, Format};

/// Page limits (Convex's `DATA_SYNC_*` knobs).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Entries per page (16384); whole commits are kept, so a page may exceed it.
    pub entries: usize,
    /// Bytes of emitted values per page (64 MiB), same rule.
    pub bytes: usize,
    /// Log rows read per page, selected or not (32768, at least `entries`).
    pub rows_read: usize,
    /// Lag of `synced_ts` behind head from which log pages are used (30 s).
    pub freshness_ns: i64,
    /// Cursors older than this behind head are expired.
    pub retention_ns: i64,
}

/// `status` of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Snapshotting,
    Stale { snapshot_ts: i64 },
    UpToDate { snapshot_ts: i64 },
}

/// A computed page: everything but the sealed cursor.
pub struct Page<'a> {
    pub status: Status,
    /// `(component, table)`, sorted and deduplicated.
    pub truncates: BTreeSet<(String, String)>,
    /// The `values` array's elements, still to be written.
    pub values: Entries<'a>,
    /// What the page read (documents by id, or log rows), for the request counters.
    pub rows_read: usize,
    pub cursor: CursorState,
    /// The sync's progress row after this page.
    pub progress: State,
}

pub fn cursor_expired() -> ApiError {
    ApiError::new(
        400,
        "DataSyncCursorExpired",
        "The cursor is outside the deployment's data retention window and can no longer be \
         resumed. Restart the sync from scratch by calling /data/sync without a cursor.",
    )
}

/// A selected table, in the order the snapshot walks them (tablet id).
pub struct Target {
    pub index: usize,
    pub columns: Columns,
}

/// Live user tables (hidden import tables included) the selection resolves to, by tablet id.
pub fn targets(store: &Store, selection: &Selection) -> Vec<Target> {
    let mut out: Vec<Target> = store
        .tables
        .iter()
        .enumerate()
        .filter(|(_, t)| t.active() && !t.system())
        .filter_map(|(index, t)| {
            selection
                .table(&t.component, &t.name)
                .map(|columns| Target { index, columns })
        })
        .collect();
    out.sort_by_key(|t| store.tables[t.index].tablet);
    out
}

/// Computes the page after `received` (`None` = cold start with a new `sync_id`).
pub fn next_page<'a>(
    store: &'a Store,
    received: Option<CursorState>,
    new_sync_id: String,
    selection: &Selection,
    limits: &Limits,
) -> Result<Page<'a>, ApiError> {
    let latest = store.head;
    let mut state = match received.clone() {
        Some(c) => {
            if c.synced_ts > latest {
                return Err(ApiError::new(
                    400,
                    "InvalidDataSyncCursor",
                    "data sync cursor is ahead of the deployment's latest timestamp",
                ));
            }
            if c.synced_ts < latest.saturating_sub(limits.retention_ns) {
                return Err(cursor_expired());
            }
            c
        }
        None => CursorState {
            synced_ts: latest,
            synced: Vec::new(),
            current: None,
            sync_id: new_sync_id,
            num_docs_synced: 0,
        },
    };
    let old_tracked: HashSet<[u8; 16]> = received
        .as_ref()
        .map(|c| c.tracked().copied().collect())
        .unwrap_or_default();
    let targets = targets(store, selection);
    let by_tablet: HashMap<[u8; 16], &Target> = targets
        .iter()
        .map(|t| (store.tables[t.index].tablet, t))
        .collect();
    reconcile(&mut state, &targets, store, &by_tablet);

    let mut w = Entries::default();
    let fresh = latest - state.synced_ts < limits.freshness_ns;
    match state.current.clone() {
        Some(current) if fresh => by_id_page(
            store, &mut state, current, &targets, &by_tablet, limits, &mut w,
        ),
        _ => log_page(store, &mut state, &by_tablet, limits, latest, &mut w),
    }
    state.num_docs_synced += w.len() as u64;

    let truncates = state
        .tracked()
        .filter(|t| !old_tracked.contains(*t))
        .filter_map(|t| by_tablet.get(t))
        .map(|t| {
            let table = &store.tables[t.index];
            (table.component.clone(), table.name.clone())
        })
        .collect();
    let status = match &state.current {
        Some(_) => Status::Snapshotting,
        None if state.synced_ts == latest => Status::UpToDate {
            snapshot_ts: state.synced_ts,
        },
        None => Status::Stale {
            snapshot_ts: state.synced_ts,
        },
    };
    let progress = progress(store, &state, &targets, &by_tablet, status);
    Ok(Page {
        status,
        truncates,
        rows_read: w.rows_read,
        values: w,
        cursor: state,
        progress,
    })
}

/// The progress row of a sync after a page (Convex's `record_data_sync_progress`): totals are
/// live documents at head, standing in for Convex's table summaries "as of a recent snapshot".
fn progress(
    store: &Store,
    state: &CursorState,
    targets: &[Target],
    by_tablet: &HashMap<[u8; 16], &Target>,
    status: Status,
) -> State {
    let num_documents_synced = state.num_docs_synced;
    // Once caught up, the synced tables are all the targets.
    let total_tables = state.synced.len() as u64;
    match (status, &state.current) {
        (Status::Stale { snapshot_ts }, _) => State::Stale {
            total_tables,
            num_documents_synced,
            synced_ts: snapshot_ts,
        },
        (Status::UpToDate { snapshot_ts }, _) => State::UpToDate {
            total_tables,
            num_documents_synced,
            synced_ts: snapshot_ts,
        },
        (Status::Snapshotting, current) => {
            let table = current
                .as_ref()
                .and_then(|c| by_tablet.get(&c.tablet))
                .map(|t| &store.tables[t.index]);
            State::Snapshotting {
                num_tables_synced: state.synced.len() as u64,
                total_tables: targets.len() as u64,
                current_component: table.map(|t| t.component.clone()).unwrap_or_default(),
                current_table: table.map(|t| t.name.clone()).unwrap_or_default(),
                num_documents_in_current_table: current.as_ref().map_or(0, |c| c.docs_synced),
                total_documents_in_current_table: table.map_or(0, |t| t.live as u64),
                num_documents_synced,
                total_documents: targets
                    .iter()
                    .map(|t| store.tables[t.index].live as u64)
                    .sum(),
            }
        }
    }
}

/// Drops deselected (or deleted, or replaced) tables from the cursor and, when no table is in
/// progress, starts the first selected one not synced yet.
fn reconcile(
    state: &mut CursorState,
    targets: &[Target],
    store: &Store,
    by_tablet: &HashMap<[u8; 16], &Target>,
) {
    state.synced.retain(|t| by_tablet.contains_key(t));
    if state
        .current
        .as_ref()
        .is_some_and(|c| !by_tablet.contains_key(&c.tablet))
    {
        state.current = None;
    }
    if state.current.is_none() {
        state.current = first_unsynced(state, targets, store);
    }
}

fn first_unsynced(state: &CursorState, targets: &[Target], store: &Store) -> Option<InProgress> {
    targets
        .iter()
        .map(|t| store.tables[t.index].tablet)
        .find(|tablet| !state.synced.contains(tablet))
        .map(|tablet| InProgress {
            tablet,
            current_id: None,
            docs_synced: 0,
        })
}

fn by_id_page<'a>(
    store: &'a Store,
    state: &mut CursorState,
    mut current: InProgress,
    targets: &[Target],
    by_tablet: &HashMap<[u8; 16], &Target>,
    limits: &Limits,
    w: &mut Entries<'a>,
) {
    let Some(target) = by_tablet.get(&current.tablet) else {
        return;
    };
    let table = &store.tables[target.index];
    let lower = match &current.current_id {
        Some(k) => Bound::Excluded(*k),
        None => Bound::Unbounded,
    };
    let mut full = false;
    for (internal, entry) in table.docs.range((lower, Bound::Unbounded)) {
        w.rows_read += 1;
        let Some(rev) = entry.at(state.synced_ts) else {
            continue;
        };
        let Some(doc) = &rev.doc else {
            continue;
        };
        w.document(table, rev.ts, doc, &target.columns);
        current.current_id = Some(*internal);
        current.docs_synced += 1;
        if w.len() >= limits.entries || w.bytes >= limits.bytes {
            full = true;
            break;
        }
    }
    if full {
        state.current = Some(current);
    } else {
        // The table is done; the next one starts (its truncate is on this page, its rows on
        // the next).
        state.synced.push(current.tablet);
        state.current = first_unsynced(state, targets, store);
    }
}

fn log_page<'a>(
    store: &'a Store,
    state: &mut CursorState,
    by_tablet: &HashMap<[u8; 16], &Target>,
    limits: &Limits,
    latest: i64,
    w: &mut Entries<'a>,
) {
    let synced: HashSet<[u8; 16]> = state.synced.iter().copied().collect();
    let current = state.current.as_ref();
    let log = &store.log;
    let mut i = log.partition_point(|e| e.ts <= state.synced_ts);
    let mut rows_read = 0usize;
    let mut consumed: Option<i64> = None;
    // A single-table selection reads only that table's log (Convex's
    // `load_documents_from_table`); a wider one reads the global log, every table's rows.
    let only = match by_tablet.keys().collect::<Vec<_>>()[..] {
        [t] => Some(*t),
        _ => None,
    };
    while i < log.len() && log[i].ts <= latest {
        let ts = log[i].ts;
        let end = i + log[i..].partition_point(|e| e.ts == ts);
        let rows = match only {
            Some(t) => log[i..end]
                .iter()
                .filter(|e| store.tables[e.table as usize].tablet == t)
                .count(),
            None => end - i,
        };
        // The row that reaches the read limit ends the page before its commit, unless it is
        // the page's first commit (which is then returned whole).
        if consumed.is_some() && rows_read + rows >= limits.rows_read {
            break;
        }
        rows_read += rows;
        for e in &log[i..end] {
            let table = &store.tables[e.table as usize];
            let captured = synced.contains(&table.tablet)
                || current.is_some_and(|c| {
                    c.tablet == table.tablet && c.current_id.is_some_and(|id| e.internal <= id)
                });
            if !captured {
                continue;
            }
            let Some(target) = by_tablet.get(&table.tablet) else {
                continue;
            };
            match &e.doc {
                Some(doc) => w.document(table, e.ts, doc, &target.columns),
                None => w.tombstone(table, e.ts, &e.internal),
            }
        }
        consumed = Some(ts);
        i = end;
        if w.len() >= limits.entries || w.bytes >= limits.bytes {
            break;
        }
    }
    w.rows_read += rows_read;
    let exhausted = i >= log.len() || log[i].ts > latest;
    state.synced_ts = if exhausted {
        latest
    } else {
        consumed.unwrap_or(state.synced_ts)
    };
}

/// Largest number of bytes an `i64` takes in decimal.
const MAX_I64_LEN: usize = 20;

/// One element of `values`: `{"component","table","ts","deleted","value"}`.
struct Entry<'a> {
    table: &'a TableData,
    ts: i64,
    deleted: bool,
    value: ValueBytes<'a>,
}

enum ValueBytes<'a> {
    /// A stored `export_json` document.
    Stored(&'a [u8]),
    /// A column-filtered document or a tombstone, in `Entries::scratch`.
    Scratch(Range<usize>),
}

/// The entries of a page, collected before anything is written, so that the response is
/// allocated once at its final size: a page holds up to 16384 documents (64 MiB), and
/// growing a buffer, then copying it into the response, cost more than copying the stored
/// documents themselves.
#[derive(Default)]
pub struct Entries<'a> {
    list: Vec<Entry<'a>>,
    scratch: Vec<u8>,
    /// Bytes of the emitted `value` objects (the page-size measure).
    bytes: usize,
    /// Documents (by id) or log rows the page read, emitted or not.
    rows_read: usize,
}

impl<'a> Entries<'a> {
    fn len(&self) -> usize {
        self.list.len()
    }

    /// A live revision in `export_json`, keeping only the selected columns.
    fn document(&mut self, table: &'a TableData, ts: i64, doc: &'a StoredDoc, columns: &Columns) {
        let value = match doc.bytes(Format::Export).filter(|_| columns.keeps_all()) {
            Some(bytes) => {
                self.bytes += bytes.len();
                ValueBytes::Stored(bytes)
            }
            None => {
                let start = self.scratch.len();
                self.scratch.push(b'{');
                let fields = doc.fields();
                write_fields(
                    fields.iter().filter(|(k, _)| columns.keeps(k)),
                    Format::Export,
                    &mut self.scratch,
                );
                self.scratch.push(b'}');
                self.bytes += self.scratch.len() - start;
                ValueBytes::Scratch(start..self.scratch.len())
            }
        };
        self.list.push(Entry {
            table,
            ts,
            deleted: false,
            value,
        });
    }

    /// A deletion: the value is exactly `{"_id": ...}`.
    fn tombstone(&mut self, table: &'a TableData, ts: i64, internal: &[u8; 16]) {
        let start = self.scratch.len();
        self.scratch.extend_from_slice(b"{\"_id\":");
        write_str(&table.doc_id(internal), &mut self.scratch);
        self.scratch.push(b'}');
        self.bytes += self.scratch.len() - start;
        self.list.push(Entry {
            table,
            ts,
            deleted: true,
            value: ValueBytes::Scratch(start..self.scratch.len()),
        });
    }

    /// At least the number of bytes [`Entries::write`] appends (exact but for the digits of
    /// each `ts`).
    pub fn max_len(&self) -> usize {
        const FIXED: usize = MAX_I64_LEN + DELETED_FALSE.len() + 2;
        self.bytes
            + self
                .list
                .iter()
                .map(|e| e.table.sync_prefix.len() + FIXED)
                .sum::<usize>()
    }

    /// Appends the entries, comma-separated, without brackets.
    pub fn write(&self, out: &mut Vec<u8>) {
        for (i, e) in self.list.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&e.table.sync_prefix);
            out.extend_from_slice(itoa::Buffer::new().format(e.ts).as_bytes());
            out.extend_from_slice(if e.deleted {
                DELETED_TRUE
            } else {
                DELETED_FALSE
            });
            out.extend_from_slice(match &e.value {
                ValueBytes::Stored(bytes) => bytes,
                ValueBytes::Scratch(r) => &self.scratch[r.clone()],
            });
            out.push(b'}');
        }
    }
}

const DELETED_FALSE: &[u8] = b",\"deleted\":false,\"value\":";
const DELETED_TRUE: &[u8] = b",\"deleted\":true,\"value\":";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::Deployment;
    use serde_json::json;

    /// A page computed and rendered under a short read lock (tests commit between pages).
    struct Done {
        status: Status,
        cursor: CursorState,
        rows_read: usize,
        values: Vec<u8>,
    }

    fn run(
        dep: &Deployment,
        cursor: Option<CursorState>,
        sel: &Selection,
        limits: &Limits,
    ) -> Result<Done, ApiError> {
        let store = dep.store();
        let p = next_page(&store, cursor, "s".into(), sel, limits)?;
        Ok(Done {
            status: p.status,
            rows_read: p.rows_read,
            values: rendered(&p.values),
            cursor: p.cursor,
        })
    }

    fn rendered(e: &Entries<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        e.write(&mut out);
        out
    }

    fn limits(rows_read: usize) -> Limits {
        Limits {
            entries: 100,
            bytes: 1 << 26,
            rows_read,
            freshness_ns: 30_000_000_000,
            retention_ns: i64::MAX,
        }
    }

    fn commit(dep: &Deployment, table: &str, n: usize) -> i64 {
        dep.transaction(|tx| {
            for _ in 0..n {
                tx.insert("", table, json!({}))?;
            }
            Ok(())
        })
        .unwrap()
    }

    fn only_y() -> Selection {
        Selection::from_arg(Some(&json!({"_other": "excluded",
            "": {"_other": "excluded", "y": {"_other": "included"}}})))
        .unwrap()
    }

    #[test]
    fn the_fast_path_writes_exactly_what_the_export_encoder_writes() {
        let dep = Deployment::new(1, "k");
        let docs = [
            (
                json!({"a": 1.5, "b": {"$bytes": "AAEC"}, "c": {"$float": "AAAAAAAA8H8="},
                    "d": [null, true, "x\"$integer\":"], "E": {"n": {"$float": "AAAAAAAA+H8="}}}),
                true,
            ),
            (json!({"a": {"$integer": "BQAAAAAAAAA="}}), false),
            (json!({"z": [{"$float": "AAAAAAAAAIA="}]}), false),
            (json!({"s": "{\"$integer\":"}), true),
        ];
        for (doc, fast) in docs {
            dep.insert("", "t", doc).unwrap();
            let store = dep.store();
            let t = store.tables.iter().find(|t| t.name == "t").unwrap();
            let latest = t
                .docs
                .values()
                .map(|e| &e.latest)
                .max_by_key(|r| r.ts)
                .unwrap();
            let stored = latest.doc.as_ref().unwrap();
            assert_eq!(stored.export.is_none(), fast);
            let mut slow = vec![b'{'];
            write_fields(stored.fields().iter(), Format::Export, &mut slow);
            slow.push(b'}');
            if fast {
                assert_eq!(
                    String::from_utf8_lossy(&stored.encoded),
                    String::from_utf8_lossy(&slow)
                );
            }
            let mut w = Entries::default();
            w.document(t, latest.ts, stored, &Columns::all_for_tests());
            let out = rendered(&w);
            assert!(out.len() <= w.max_len());
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let slow: serde_json::Value = serde_json::from_slice(&slow).unwrap();
            assert_eq!(v["value"], slow);
        }
    }

    #[test]
    fn a_cursor_ahead_of_the_deployment_is_invalid() {
        // Rule: a cursor whose synced_ts is past the latest timestamp (e.g. after a backup
        // was restored) is 400 InvalidDataSyncCursor.
        let dep = Deployment::new(1, "k");
        let sel = Selection::everything();
        let first = run(&dep, None, &sel, &limits(10)).unwrap();
        let mut ahead = first.cursor.clone();
        ahead.synced_ts = dep.head() + 1;
        let e = run(&dep, Some(ahead), &sel, &limits(10)).err().unwrap();
        assert_eq!((e.status, e.code), (400, "InvalidDataSyncCursor"));
        assert!(run(&dep, Some(first.cursor), &sel, &limits(10)).is_ok());
    }

    #[test]
    fn the_rows_read_limit_counts_unselected_rows_and_drops_a_partial_commit() {
        // Rule: a log page of a selection of several tables reads the global log, at most
        // DATA_SYNC_MAX_ROWS_READ rows of every table; the commit holding the row that reaches
        // the limit is left for the next page, unless it is the page's first commit, which is
        // read whole.
        let dep = Deployment::new(1, "k");
        commit(&dep, "y", 1);
        commit(&dep, "z", 1);
        let sel = Selection::from_arg(Some(&json!({"_other": "excluded",
            "": {"_other": "excluded", "y": {"_other": "included"}, "z": {"_other": "included"}}})))
        .unwrap();
        let mut p0 = run(&dep, None, &sel, &limits(4)).unwrap();
        while p0.status == Status::Snapshotting {
            p0 = run(&dep, Some(p0.cursor), &sel, &limits(4)).unwrap();
        }
        assert_eq!(
            p0.status,
            Status::UpToDate {
                snapshot_ts: dep.head()
            }
        );
        let c1 = commit(&dep, "x", 3);
        commit(&dep, "y", 3);
        let p1 = run(&dep, Some(p0.cursor), &sel, &limits(4)).unwrap();
        assert!(p1.values.is_empty());
        assert_eq!(p1.status, Status::Stale { snapshot_ts: c1 });
        let big = commit(&dep, "x", 6);
        let p2 = run(&dep, Some(p1.cursor), &sel, &limits(4)).unwrap();
        assert_eq!(
            p2.values.iter().filter(|&&b| b == b'{').count(),
            6,
            "3 entries, 3 values"
        );
        assert!(matches!(p2.status, Status::Stale { .. }));
        let p3 = run(&dep, Some(p2.cursor), &sel, &limits(4)).unwrap();
        assert!(p3.values.is_empty());
        assert_eq!(p3.status, Status::UpToDate { snapshot_ts: big });
    }

    #[test]
    fn a_single_table_selection_reads_only_that_tables_log() {
        // Rule: with one table selected, a log page reads that table's log alone
        // (`load_documents_from_table`): other tables' rows neither count toward the read
        // limit nor are read.
        let dep = Deployment::new(1, "k");
        commit(&dep, "y", 1);
        let sel = only_y();
        let p0 = run(&dep, None, &sel, &limits(4)).unwrap();
        assert_eq!(p0.rows_read, 1, "the by-id walk read one document");
        for _ in 0..3 {
            commit(&dep, "x", 3);
        }
        commit(&dep, "y", 2);
        let p1 = run(&dep, Some(p0.cursor), &sel, &limits(4)).unwrap();
        assert_eq!(p1.rows_read, 2, "only y's rows are read");
        assert_eq!(
            p1.values.iter().filter(|&&b| b == b'{').count(),
            4,
            "2 entries, 2 values"
        );
        assert_eq!(
            p1.status,
            Status::UpToDate {
                snapshot_ts: dep.head()
            }
        );
    }
}
