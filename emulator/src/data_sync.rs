//! Convex's Data Sync API, computed from a [`Store`]: the sealed cursor that carries a
//! sync's whole state ([`cursor`]), the pages that walk tables by id and then follow the
//! document log ([`page`]), the progress rows `list_active_syncs` lists ([`progress`]) and
//! the `selection` argument ([`selection`]). The endpoints (`crate::endpoint::data_sync`,
//! `data_sync_cursor_from_deltas`, `list_active_syncs`) parse requests and write answers
//! from these.

pub mod cursor;
pub mod page;
pub mod progress;
pub mod selection;

use std::sync::Mutex;

use cursor::{CursorState, Sealer};
use page::Limits;
use progress::Rows;
use selection::Selection;

use crate::api_error::ApiError;
use crate::locks::lock;
use crate::settings::Settings;
use crate::store::Store;
use crate::version::client_name;

/// Rows of the document log a page reads at most (Convex's `DATA_SYNC_MAX_ROWS_READ`).
const MAX_ROWS_READ: usize = 32_768;
/// Lag behind head from which a snapshotting sync catches up through the log first
/// (Convex's `DATA_SYNC_BY_ID_FRESHNESS_SECONDS`).
const BY_ID_FRESHNESS_NS: i64 = 30_000_000_000;

/// A deployment's data sync state: the secret its cursors are sealed with, and the syncs'
/// progress rows (Convex's `_data_sync_progress`), kept apart from the store because they
/// are system rows no export endpoint reads.
#[derive(Default)]
pub struct SyncState {
    sealer: Sealer,
    progress: Mutex<Rows>,
}

impl SyncState {
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    pub fn progress<R>(&self, f: impl FnOnce(&mut Rows) -> R) -> R {
        f(&mut lock(&self.progress))
    }

    /// A new sync's id: a UUID v4, prefixed as Convex prefixes it for known clients.
    pub fn new_sync_id(&self, client: Option<&str>) -> String {
        format!("{}{}", sync_id_prefix(client), self.sealer.uuid_v4())
    }
}

/// The page limits the settings give (Convex's `DATA_SYNC_*` knobs).
pub fn limits(settings: &Settings) -> Limits {
    let entries = settings.data_sync_page_entries.max(1);
    Limits {
        entries,
        bytes: settings.data_sync_page_bytes.max(1),
        rows_read: MAX_ROWS_READ.max(entries),
        freshness_ns: BY_ID_FRESHNESS_NS,
        retention_ns: settings.data_sync_retention_ns(),
    }
}

/// The sync id prefix Convex gives a client: `Convex-Client: airbyte-export-<semver>` makes
/// `airbyte-` ids, `fivetran-export-*` / `fivetran-import-*` make `fivetran-` ids.
fn sync_id_prefix(client: Option<&str>) -> &'static str {
    let Some(s) = client else { return "" };
    // The header was validated, so it has a client name; the whole value stands in if not.
    match client_name(s).unwrap_or(s) {
        "airbyte-export" => "airbyte-",
        "fivetran-export" | "fivetran-import" => "fivetran-",
        _ => "",
    }
}

/// The state of a sync converted from a document_deltas cursor at `ts`: everything at or
/// before `ts` of the tables the selection resolves to now counts as synced, so its first
/// page has no truncates and exactly the revisions after `ts`.
pub fn converted_cursor(
    store: &Store,
    ts: i64,
    selection: &Selection,
    limits: &Limits,
    new_sync_id: impl FnOnce() -> String,
) -> Result<CursorState, ApiError> {
    if ts > store.head {
        return Err(ApiError::new(
            400,
            "InvalidDataSyncCursor",
            "document_deltas cursor is ahead of the deployment's latest timestamp",
        ));
    }
    if ts < store.head.saturating_sub(limits.retention_ns) {
        return Err(page::cursor_expired());
    }
    Ok(CursorState {
        synced_ts: ts,
        synced: page::targets(store, selection)
            .iter()
            .map(|t| store.tables[t.index].tablet)
            .collect(),
        current: None,
        sync_id: new_sync_id(),
        num_docs_synced: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::sync_id_prefix;

    #[test]
    fn sync_id_prefix_follows_the_client_name() {
        assert_eq!(sync_id_prefix(Some("airbyte-export-0.5.0")), "airbyte-");
        assert_eq!(
            sync_id_prefix(Some("fivetran-export-1.2.3-rc.1")),
            "fivetran-"
        );
        assert_eq!(sync_id_prefix(Some("fivetran-import-1.0.0")), "fivetran-");
        assert_eq!(sync_id_prefix(Some("airbyte-data-sync-0.1.0")), "");
        assert_eq!(sync_id_prefix(Some("npm-1.0.0")), "");
        assert_eq!(sync_id_prefix(None), "");
    }
}
