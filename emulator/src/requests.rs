//! Request counters and the request log of a deployment: what the `/api/` requests were,
//! what they answered, and the work the backend would have done for them. Benchmarks and
//! tests read them to check how a client paged, retried and reused iterators.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::locks::lock;

/// Per-endpoint request counters (all `/api/` requests, faulted ones included), and the
/// work the backend would have done for them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestStats {
    pub total: u64,
    pub by_endpoint: BTreeMap<String, u64>,
    /// list_snapshot requests that were not the exact continuation of the previous answer
    /// and so built a new snapshot iterator.
    pub snapshot_iterator_builds: u64,
    /// Rows read per endpoint: list_snapshot counts the documents it visits, document_deltas
    /// every log row it reads (other tables and system tables included).
    pub rows_read: BTreeMap<String, u64>,
    /// Response body bytes sent per endpoint (whole answers only: not faulted ones).
    #[serde(default)]
    pub bytes_sent: BTreeMap<String, u64>,
}

/// One logged `/api/` request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub endpoint: String,
    pub method: String,
    /// Path and query as received.
    pub uri: String,
    /// Status sent (0 when the connection was stalled, reset or truncated).
    pub status: u16,
    /// The HTTP version the request came with (`HTTP/1.1`, `HTTP/2.0`).
    #[serde(default)]
    pub version: String,
}

/// The request log keeps only the most recent entries so long benchmarks stay bounded.
const REQUEST_LOG_CAP: usize = 10_000;

#[derive(Default)]
struct Requests {
    stats: RequestStats,
    log: VecDeque<RequestRecord>,
}

/// The counters and the log of one deployment, shared by every request that reaches it.
#[derive(Default)]
pub struct RequestCounters(Mutex<Requests>);

impl RequestCounters {
    pub fn stats(&self) -> RequestStats {
        lock(&self.0).stats.clone()
    }

    /// The most recent requests, oldest first.
    pub fn log(&self) -> Vec<RequestRecord> {
        lock(&self.0).log.iter().cloned().collect()
    }

    pub fn reset(&self) {
        *lock(&self.0) = Requests::default();
    }

    pub fn count_request(&self, endpoint: &str) {
        let mut r = lock(&self.0);
        r.stats.total += 1;
        *r.stats.by_endpoint.entry(endpoint.to_owned()).or_default() += 1;
    }

    pub fn count_bytes_sent(&self, endpoint: &str, bytes: usize) {
        let mut r = lock(&self.0);
        *r.stats.bytes_sent.entry(endpoint.to_owned()).or_default() += bytes as u64;
    }

    pub fn count_rows_read(&self, endpoint: &str, rows: usize) {
        let mut r = lock(&self.0);
        *r.stats.rows_read.entry(endpoint.to_owned()).or_default() += rows as u64;
    }

    pub fn count_iterator_build(&self) {
        lock(&self.0).stats.snapshot_iterator_builds += 1;
    }

    pub fn record(&self, rec: RequestRecord) {
        let mut r = lock(&self.0);
        if r.log.len() >= REQUEST_LOG_CAP {
            r.log.pop_front();
        }
        r.log.push_back(rec);
    }
}
