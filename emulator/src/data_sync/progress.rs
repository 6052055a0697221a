//! Data sync progress rows (Convex's `_data_sync_progress` table) and the order
//! `GET /api/v1/data/list_active_syncs` lists them in.
//!
//! Convex's rules (`model/src/data_sync_progress`, `application/src/streaming_export.rs`): a
//! sync's first page inserts its row, and a failure to do so fails the page; later pages
//! replace it best-effort, at most once per `DATA_SYNC_PROGRESS_WRITE_INTERVAL` unless the
//! status variant changed or an `upToDate` page changed the document count. Listing walks the
//! rows by `(lastUpdatedMs, _creationTime)` descending and stops at the first row older than
//! the 3-day active window. The emulator's clock is its head timestamp, so `lastUpdated` is
//! head in milliseconds and `advance_clock` ages rows out, as it expires cursors.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;

/// A sync is listed while its row was updated within this window (Convex's
/// `DATA_SYNC_ACTIVE_WINDOW`, a constant, not a knob).
pub const ACTIVE_WINDOW_MS: u64 = 3 * 24 * 60 * 60 * 1000;

/// The emulator's clock (head, in ns) as the unix milliseconds of progress rows.
pub fn clock_ms(head: i64) -> u64 {
    u64::try_from(head / 1_000_000).unwrap_or(0)
}

/// What a row says about a sync, in the wire shape of `ActiveDataSync.status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum State {
    Snapshotting {
        num_tables_synced: u64,
        total_tables: u64,
        current_component: String,
        current_table: String,
        num_documents_in_current_table: u64,
        total_documents_in_current_table: u64,
        num_documents_synced: u64,
        total_documents: u64,
    },
    Stale {
        total_tables: u64,
        num_documents_synced: u64,
        synced_ts: i64,
    },
    UpToDate {
        total_tables: u64,
        num_documents_synced: u64,
        synced_ts: i64,
    },
}

impl State {
    fn num_documents_synced(&self) -> u64 {
        match self {
            State::Snapshotting {
                num_documents_synced,
                ..
            }
            | State::Stale {
                num_documents_synced,
                ..
            }
            | State::UpToDate {
                num_documents_synced,
                ..
            } => *num_documents_synced,
        }
    }
}

/// One listed sync (`ActiveDataSync`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    sync_id: String,
    last_updated: u64,
    status: State,
    /// Insertion order, standing in for the row's `_creationTime` (the listing's tie-break).
    #[serde(skip)]
    created: u64,
}

impl Row {
    /// Where a listing that ends with this row resumes.
    pub fn key(&self) -> Position {
        Position(self.last_updated, self.created)
    }
}

/// Where a listing page ended: the last row's `(lastUpdated, creation order)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position(u64, u64);

#[derive(Default)]
pub struct Rows {
    by_sync: HashMap<String, Row>,
    created: u64,
}

/// The outcome of one page, for [`Rows::record`].
pub struct Recorded<'a> {
    pub sync_id: &'a str,
    pub state: State,
    /// Off while Convex's table summaries bootstrap: a snapshotting row cannot be computed.
    pub totals_available: bool,
    pub now_ms: u64,
    pub interval_ms: u64,
}

impl Rows {
    /// Upserts the row of a page's sync. `Err` (500, as Convex's untagged error) only when the
    /// row would be created but cannot be, which fails the page; a refresh that cannot be
    /// computed is skipped.
    pub fn record(&mut self, r: Recorded<'_>) -> Result<(), ApiError> {
        let computable = r.totals_available || !matches!(r.state, State::Snapshotting { .. });
        let Some(row) = self.by_sync.get_mut(r.sync_id) else {
            if !computable {
                return Err(ApiError::internal());
            }
            self.created += 1;
            let row = Row {
                sync_id: r.sync_id.to_owned(),
                last_updated: r.now_ms,
                status: r.state,
                created: self.created,
            };
            self.by_sync.insert(row.sync_id.clone(), row);
            return Ok(());
        };
        if !computable {
            return Ok(());
        }
        let variant_changed =
            std::mem::discriminant(&row.status) != std::mem::discriminant(&r.state);
        // A caught-up page flushes a changed count past the throttle, so a sync's final
        // progress is never lost.
        let settled_changed = matches!(r.state, State::UpToDate { .. })
            && r.state.num_documents_synced() != row.status.num_documents_synced();
        let due = r.now_ms.saturating_sub(row.last_updated) >= r.interval_ms;
        if variant_changed || settled_changed || due {
            row.last_updated = r.now_ms;
            row.status = r.state;
        }
        Ok(())
    }

    /// One page of active syncs after `after`, most recently updated first, and whether the
    /// listing goes on (the page filled up).
    pub fn list(&self, now_ms: u64, after: Option<Position>, limit: usize) -> (Vec<&Row>, bool) {
        let cutoff = now_ms.saturating_sub(ACTIVE_WINDOW_MS);
        let mut rows: Vec<&Row> = self
            .by_sync
            .values()
            .filter(|r| after.is_none_or(|a| r.key() < a))
            .collect();
        rows.sort_unstable_by_key(|r| std::cmp::Reverse(r.key()));
        let mut page = Vec::with_capacity(limit.min(rows.len()));
        for r in rows {
            if page.len() == limit {
                break;
            }
            // Ordered by lastUpdated, so every later row is inactive too: the listing ends.
            if r.last_updated < cutoff {
                return (page, false);
            }
            page.push(r);
        }
        // Like Convex's index walk, a page that filled up has a cursor even when no active
        // row follows (the next page is then empty).
        let full = page.len() == limit;
        (page, full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up_to_date(n: u64) -> State {
        State::UpToDate {
            total_tables: 1,
            num_documents_synced: n,
            synced_ts: 7,
        }
    }

    fn snapshotting(n: u64) -> State {
        State::Snapshotting {
            num_tables_synced: 0,
            total_tables: 2,
            current_component: String::new(),
            current_table: "t".into(),
            num_documents_in_current_table: n,
            total_documents_in_current_table: 10,
            num_documents_synced: n,
            total_documents: 20,
        }
    }

    fn record(rows: &mut Rows, state: State, now_ms: u64, ready: bool) -> Result<(), ApiError> {
        rows.record(Recorded {
            sync_id: "s",
            state,
            totals_available: ready,
            now_ms,
            interval_ms: 5_000,
        })
    }

    fn row(rows: &Rows) -> (u64, State) {
        let r = &rows.by_sync["s"];
        (r.last_updated, r.status.clone())
    }

    #[test]
    fn updates_are_throttled_unless_the_variant_or_a_settled_count_changes() {
        // Rule: `DataSyncProgressModel::update` writes when the interval passed, the state
        // variant changed, or a caught-up page changed the document count; otherwise the row
        // keeps its old state and time.
        let mut rows = Rows::default();
        record(&mut rows, snapshotting(1), 1_000, true).unwrap();
        record(&mut rows, snapshotting(2), 5_999, true).unwrap();
        assert_eq!(row(&rows), (1_000, snapshotting(1)), "throttled");
        record(&mut rows, snapshotting(3), 6_000, true).unwrap();
        assert_eq!(row(&rows), (6_000, snapshotting(3)), "interval passed");
        record(&mut rows, up_to_date(4), 6_001, true).unwrap();
        assert_eq!(row(&rows), (6_001, up_to_date(4)), "variant changed");
        record(&mut rows, up_to_date(5), 6_002, true).unwrap();
        assert_eq!(row(&rows), (6_002, up_to_date(5)), "settled count changed");
        record(&mut rows, up_to_date(5), 6_003, true).unwrap();
        assert_eq!(row(&rows), (6_002, up_to_date(5)), "nothing new: throttled");
    }

    #[test]
    fn without_table_summaries_creation_fails_and_refreshes_are_skipped() {
        // Rule: a snapshotting row needs table counts; inserting the row is part of the page
        // (its failure fails the page), refreshing it is best-effort.
        let mut rows = Rows::default();
        let e = record(&mut rows, snapshotting(1), 1_000, false).unwrap_err();
        assert_eq!((e.status, e.code), (500, "InternalServerError"));
        assert!(rows.by_sync.is_empty());
        record(&mut rows, up_to_date(1), 1_000, false).unwrap();
        record(&mut rows, snapshotting(2), 99_000, false).unwrap();
        assert_eq!(row(&rows), (1_000, up_to_date(1)));
    }
}
