//! list_snapshot's cost model. Convex keeps one cached snapshot iterator per deployment,
//! keyed by (snapshot, remaining tables, cursor): a request that continues the previous
//! answer exactly resumes it, any other request builds a new one, one build at a time under
//! a global lock, and a build merges the document log from the snapshot up to head, so it
//! costs more the older the snapshot. Pages are also cut after a time budget and requests
//! killed after a timeout. The costs are settings (zero by default); the cache and the
//! counters always run.

use std::sync::Mutex;
use std::time::Duration;

use crate::export::Selection;
use crate::locks::lock;
use crate::settings::Settings;

/// A position in a snapshot walk: (tablet, document id) as a list_snapshot cursor names it.
pub type Position = ([u8; 16], [u8; 16]);

/// What identifies the cached iterator: the request that would continue it.
#[derive(Clone, Debug, PartialEq)]
pub struct IteratorKey {
    pub snapshot: i64,
    pub selection: Selection,
    pub position: Position,
}

/// The deployment's one cached list_snapshot iterator and its global build lock.
pub struct IteratorCache {
    /// The request that would continue the cached iterator (`None`: nothing cached).
    next: Mutex<Option<IteratorKey>>,
    /// Held while an iterator is rebuilt: one build at a time, like Convex.
    build: tokio::sync::Mutex<()>,
}

impl Default for IteratorCache {
    fn default() -> Self {
        IteratorCache {
            next: Mutex::new(None),
            build: tokio::sync::Mutex::new(()),
        }
    }
}

impl IteratorCache {
    /// Whether `key` continues the cached iterator (then the request resumes it).
    pub fn continues(&self, key: &IteratorKey) -> bool {
        lock(&self.next).as_ref() == Some(key)
    }

    /// Records what the next request must be to resume the cached iterator (`None` when the
    /// walk ended, or the build was killed).
    pub fn cache(&self, next: Option<IteratorKey>) {
        *lock(&self.next) = next;
    }

    /// Waits for the global build lock.
    pub async fn build_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.build.lock().await
    }
}

/// The time a rebuild takes: a fixed part plus a part per document-log row written after
/// the snapshot (the rows the new iterator merges).
pub fn build_cost(settings: &Settings, log_rows_after_snapshot: usize) -> Duration {
    let per_row = settings
        .snapshot_build_us_per_row
        .saturating_mul(log_rows_after_snapshot as u64);
    Duration::from_millis(settings.snapshot_build_base_ms) + Duration::from_micros(per_row)
}

/// Documents a page may hold when `spent` of its time budget already went to the build:
/// like Convex, the page stops after the first document that takes it past the budget, so
/// it holds at least one.
pub fn page_document_limit(settings: &Settings, spent: Duration, page_limit: usize) -> usize {
    let page_limit = page_limit.max(1);
    let budget = Duration::from_millis(settings.snapshot_page_time_limit_ms);
    let per_doc = Duration::from_micros(settings.snapshot_read_us_per_doc);
    if spent >= budget {
        return 1;
    }
    if per_doc.is_zero() {
        return page_limit;
    }
    let left = (budget - spent).as_micros();
    let docs = left.div_ceil(per_doc.as_micros()).max(1);
    usize::try_from(docs).unwrap_or(usize::MAX).min(page_limit)
}

/// Time spent reading `docs` documents of a page.
pub fn read_cost(settings: &Settings, docs: usize) -> Duration {
    Duration::from_micros(
        settings
            .snapshot_read_us_per_doc
            .saturating_mul(docs as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs(base: u64, per_row: u64, per_doc: u64, budget: u64) -> Settings {
        Settings {
            snapshot_build_base_ms: base,
            snapshot_build_us_per_row: per_row,
            snapshot_read_us_per_doc: per_doc,
            snapshot_page_time_limit_ms: budget,
            ..Settings::default()
        }
    }

    #[test]
    fn build_cost_grows_with_the_log_after_the_snapshot() {
        let s = costs(2, 10, 0, 60_000);
        assert_eq!(build_cost(&s, 0), Duration::from_millis(2));
        assert_eq!(build_cost(&s, 1000), Duration::from_millis(12));
        assert_eq!(build_cost(&Settings::default(), 1_000_000), Duration::ZERO);
    }

    #[test]
    fn page_is_cut_by_its_time_budget_but_holds_one_document() {
        let s = costs(0, 0, 1000, 10);
        assert_eq!(page_document_limit(&s, Duration::ZERO, 1024), 10);
        assert_eq!(
            page_document_limit(&s, Duration::from_micros(9_500), 1024),
            1
        );
        assert_eq!(page_document_limit(&s, Duration::from_millis(50), 1024), 1);
        assert_eq!(page_document_limit(&s, Duration::ZERO, 4), 4);
        assert_eq!(
            page_document_limit(&Settings::default(), Duration::ZERO, 1024),
            1024
        );
    }
}
