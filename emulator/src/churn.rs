//! Background churn of a busy deployment: Convex's scheduler, crons and storage write system
//! rows all the time, and every one of them counts toward the 128 rows a document_deltas page
//! reads. With `system_write_interval_ms` set, this task commits one `_scheduled_functions`
//! row per interval and deletes the row written 8 intervals earlier (the job ran).

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::json;

use crate::deployment::Deployment;

const TABLE: &str = "_scheduled_functions";
/// Rows kept before the oldest is deleted, so the table stays small however long it runs.
const KEPT: usize = 8;

/// Runs until the deployment shuts down; idle while the interval is 0.
pub async fn system_writer(dep: Deployment) {
    let mut shutdown = dep.lifecycle().shutdown_signal();
    let mut recent: VecDeque<String> = VecDeque::new();
    loop {
        let interval = dep.settings().system_write_interval_ms;
        let wait = Duration::from_millis(if interval == 0 { 100 } else { interval });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if interval == 0 {
            continue;
        }
        let done = if recent.len() >= KEPT {
            recent.pop_front()
        } else {
            None
        };
        let written = dep.transaction_with(|tx| {
            if let Some(id) = &done {
                // Gone already if a test cleared the table: nothing to clean up then.
                let _ = tx.delete("", TABLE, id);
            }
            tx.insert("", TABLE, json!({"name": "jobs:run", "state": "pending"}))
        });
        match written {
            Ok((_, id)) => recent.push_back(id),
            Err(e) => eprintln!("convex-emulator: system writer: {e}"),
        }
    }
}
