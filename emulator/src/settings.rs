//! [`Settings`]: the runtime-adjustable behaviour of a deployment (page sizes, limits,
//! switches, the list_snapshot cost model), with Convex's defaults.

use serde::{Deserialize, Serialize};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Runtime-adjustable behaviour. Over HTTP, `POST /_emulator/settings` merges a partial object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Documents per list_snapshot page (Convex: 1024).
    pub snapshot_page_limit: usize,
    /// Rows read / values returned per document_deltas page (Convex: 128).
    pub deltas_page_limit: usize,
    /// Oldest accepted `snapshot` relative to head (Convex's `LIST_SNAPSHOT_MAX_AGE_SECS`:
    /// 5 days).
    pub snapshot_max_age_ms: u64,
    /// Document retention (Convex's `DOCUMENT_RETENTION_DELAY`: 14 days; the self-hosted
    /// Docker image sets 2 days, see [`Settings::self_hosted_docker`]). Older deltas cursors
    /// get 400 InvalidWindowToReadDocuments; a list_snapshot whose snapshot is older gets
    /// 503 OutOfRetention, on every retry.
    pub retention_ms: u64,
    /// Off = 403 StreamingExportNotEnabled on every endpoint.
    pub streaming_export_enabled: bool,
    /// Delay added before every `/api/` response.
    pub latency_ms: u64,
    /// Reproduces convex-backend issue #302: the tableName filter is ignored and every
    /// table's rows are returned.
    pub ignore_table_filter: bool,
    /// Off = the access key lacks `deployment:data:view` (403 OperationNotPermitted).
    pub data_view_permission: bool,
    /// Further keys that authenticate but lack `deployment:data:view`.
    pub keys_without_data_view: Vec<String>,
    /// Off = json_schemas answers 503 TableSummariesUnavailable (backend bootstrapping).
    pub table_summaries_ready: bool,
    /// Requests whose injected delay or list_snapshot work reaches this get a bare 408 after
    /// it (Convex: 300 s).
    pub request_timeout_ms: u64,
    /// Entries per `/api/v1/data/sync` page (Convex: 16384; whole commits are kept).
    pub data_sync_page_entries: usize,
    /// Bytes of emitted values per data sync page (Convex: 64 MiB; whole commits are kept).
    pub data_sync_page_bytes: usize,
    /// Age behind head from which a data sync cursor is expired (Convex Cloud: 3 days).
    pub data_sync_retention_ms: u64,
    /// A sync's progress row (list_active_syncs) is refreshed at most this often, in the
    /// emulator's clock, unless its status variant changes or a caught-up page changes its
    /// count (Convex's `DATA_SYNC_PROGRESS_WRITE_INTERVAL_MS`: 5000). 0 = every page.
    pub data_sync_progress_write_interval_ms: u64,
    /// A self-hosted backend from before the Data Sync API (2026-07-10): its three routes
    /// answer as unknown routes do, and document_deltas skips the tables of non-root
    /// components, as before Convex's fix of 2026-08-11.
    pub no_data_sync: bool,
    /// list_snapshot cost model (all zero = free): fixed time of an iterator rebuild.
    pub snapshot_build_base_ms: u64,
    /// Rebuild time per document-log row written after the request's snapshot.
    pub snapshot_build_us_per_row: u64,
    /// Time per document a list_snapshot page returns.
    pub snapshot_read_us_per_doc: u64,
    /// A list_snapshot page is cut once its work (rebuild plus documents) reaches this
    /// (Convex: 60 s); it still holds at least one document.
    pub snapshot_page_time_limit_ms: u64,
    /// Background churn: every this many ms a scheduler-like commit writes a row of the
    /// system table `_scheduled_functions` (0 = off).
    pub system_write_interval_ms: u64,
}

/// Document retention of Convex's self-hosted Docker image (its docker-compose file sets
/// 2 days instead of the backend's 14-day default).
pub const SELF_HOSTED_DOCKER_RETENTION_MS: u64 = 2 * DAY_MS;

impl Settings {
    /// The defaults with the self-hosted Docker image's 2-day document retention.
    pub fn self_hosted_docker() -> Settings {
        Settings {
            retention_ms: SELF_HOSTED_DOCKER_RETENTION_MS,
            ..Settings::default()
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            snapshot_page_limit: 1024,
            deltas_page_limit: 128,
            snapshot_max_age_ms: 5 * DAY_MS,
            retention_ms: 14 * DAY_MS,
            streaming_export_enabled: true,
            latency_ms: 0,
            ignore_table_filter: false,
            data_view_permission: true,
            keys_without_data_view: Vec::new(),
            table_summaries_ready: true,
            request_timeout_ms: 300_000,
            data_sync_page_entries: 16_384,
            data_sync_page_bytes: 64 << 20,
            data_sync_retention_ms: 3 * DAY_MS,
            data_sync_progress_write_interval_ms: 5_000,
            no_data_sync: false,
            snapshot_build_base_ms: 0,
            snapshot_build_us_per_row: 0,
            snapshot_read_us_per_doc: 0,
            snapshot_page_time_limit_ms: 60_000,
            system_write_interval_ms: 0,
        }
    }
}

impl Settings {
    /// `snapshot_max_age_ms` in nanoseconds, the unit of timestamps.
    pub fn snapshot_max_age_ns(&self) -> i64 {
        ms_to_ns(self.snapshot_max_age_ms)
    }

    /// `retention_ms` in nanoseconds.
    pub fn retention_ns(&self) -> i64 {
        ms_to_ns(self.retention_ms)
    }

    /// `data_sync_retention_ms` in nanoseconds.
    pub fn data_sync_retention_ns(&self) -> i64 {
        ms_to_ns(self.data_sync_retention_ms)
    }
}

/// Milliseconds as nanoseconds, saturating: a huge setting means "never", not an overflow.
fn ms_to_ns(ms: u64) -> i64 {
    i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}
