//! The client against the emulator, as its callers use it: a data sync's and a deltas walk's
//! pages streamed, each next one read ahead, and failed ones retried. The tests of each part on its own are
//! in that part's file.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{HttpConvex, Listener, RetryPolicy, Retrying};
use crate::data_sync::{DataSyncApi, SyncStatus};
use crate::encoding::ValueFormat;
use crate::{PageSink, Selection, TableRef, ValueMeta};

#[derive(Default)]
struct Heard(Mutex<Vec<String>>);

impl Listener for Heard {
    fn retrying<'a>(&'a self, r: Retrying<'a>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let line = format!(
            "retrying {} {:?} {:?}",
            r.rate_limited,
            r.retry_after,
            r.error.status()
        );
        self.0.lock().unwrap().push(line);
        Box::pin(std::future::ready(()))
    }
    fn recovered<'a>(&'a self, what: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        self.0.lock().unwrap().push(format!("recovered {what}"));
        Box::pin(std::future::ready(()))
    }
    fn gone(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::pending())
    }
}

struct Values(Vec<(String, String, i64, Option<bool>, bool)>);

impl PageSink for Values {
    fn value(&mut self, raw: &[u8], meta: &ValueMeta<'_>) -> anyhow::Result<()> {
        let raw = String::from_utf8(meta.whole(raw).into_owned())?;
        self.0.push((
            meta.id.to_string(),
            raw,
            meta.ts,
            meta.deleted,
            meta.members.is_some(),
        ));
        Ok(())
    }
    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

fn requests(dep: &convex_emulator::Deployment, endpoint: &str) -> u64 {
    dep.requests()
        .by_endpoint
        .get(endpoint)
        .copied()
        .unwrap_or(0)
}

fn data_sync_requests(dep: &convex_emulator::Deployment) -> u64 {
    requests(dep, "data_sync")
}

/// Against the emulator: a sync's pages stream to the sink, each next page is requested
/// while the one before is still being handed out (never after `upToDate`), a page cut
/// off midway is retried without a value twice, and a rate limit reaches the listener.
#[tokio::test]
async fn a_data_sync_streams_reads_ahead_and_retries_against_the_emulator() {
    use convex_emulator::{EmulatorServer, FaultRule};
    let emu = EmulatorServer::start(convex_emulator::Config::default()).unwrap();
    let dep = emu.deployment().clone();
    dep.transaction(|tx| {
        for i in 0..250 {
            tx.insert("", "users", serde_json::json!({"n": i, "s": "x".repeat(i)}))?;
        }
        Ok(())
    })
    .unwrap();
    dep.update_settings(|s| s.data_sync_page_entries = 40);
    let config = crate::settings::tests::settings_for(emu.url(), emu.access_key());
    let heard = Arc::new(Heard::default());
    let client = HttpConvex::new(&config, Some(heard.clone() as Arc<dyn Listener>))
        .unwrap()
        .with_value_format(ValueFormat::ExportJson)
        .with_retry_policy(RetryPolicy {
            base_delay: Duration::from_millis(10),
            max_retry_after: Duration::from_millis(20),
            ..RetryPolicy::default()
        });
    let rule = |r: serde_json::Value| serde_json::from_value::<FaultRule>(r).unwrap();
    // The third request (a page read ahead) is cut off halfway; the fifth is refused.
    dep.add_fault(rule(
        serde_json::json!({"endpoint":"data_sync","kind":"truncate","after":2,"times":1}),
    ))
    .unwrap();
    dep.add_fault(rule(serde_json::json!({"endpoint":"data_sync","kind":"rate_limit","retry_after_secs":7,"after":4,"times":1})))
        .unwrap();
    let selection = Selection::one(TableRef::root("users"), None);
    let mut sink = Values(Vec::new());
    let mut cursor = None;
    let mut pages = 0;
    let mut unrepeated = Vec::new();
    loop {
        let end = client
            .data_sync_page(&selection, cursor.as_ref(), &mut sink)
            .await
            .unwrap();
        pages += 1;
        unrepeated.extend(end.unrepeated);
        assert!(end.sync_id.starts_with("airbyte-"), "{}", end.sync_id);
        if pages == 1 {
            assert_eq!(end.truncates, vec![TableRef::root("users")]);
        }
        if matches!(end.status, SyncStatus::UpToDate(_)) {
            break;
        }
        // The next page is asked for without waiting for the caller: one request per
        // page read and per retry, and one more.
        cursor = Some(end.next);
        let retries = || {
            let heard = heard.0.lock().unwrap();
            heard.iter().filter(|h| h.starts_with("retrying")).count() as u64
        };
        let mut waited = 0;
        while data_sync_requests(&dep) < pages + retries() + 1 && waited < 300 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        assert_eq!(
            data_sync_requests(&dep),
            pages + retries() + 1,
            "page {pages}: no request ahead"
        );
        assert!(pages < 50);
    }
    // Nothing is asked for after `upToDate`.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(data_sync_requests(&dep), pages + 2);
    assert_eq!(unrepeated, [], "a by-id page repeats exactly");
    let mut ids: Vec<&str> = sink.0.iter().map(|v| v.0.as_str()).collect();
    let all = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((ids.len(), all), (250, 250), "each document exactly once");
    for (id, raw, ts, deleted, members) in &sink.0 {
        let v: serde_json::Value = serde_json::from_str(raw).unwrap();
        assert_eq!(v["_id"], id.as_str());
        assert_eq!(v["_table"], "users");
        assert_eq!(v["_ts"].as_i64(), Some(*ts));
        assert_eq!(*deleted, Some(false));
        assert!(members, "export_json values come with their members");
    }
    let heard = heard.0.lock().unwrap().clone();
    assert_eq!(heard.len(), 4, "{heard:?}");
    assert!(heard[0].starts_with("retrying false None"), "{heard:?}");
    assert!(
        heard[1].starts_with("recovered the data sync page of"),
        "{heard:?}"
    );
    assert_eq!(heard[2], "retrying true Some(7s) Some(429)");
    assert!(heard[3].starts_with("recovered"), "{heard:?}");
}

/// Against the emulator: each next `document_deltas` page (128 log rows) is requested while
/// the one before is still being handed out, and none after the page without more.
#[tokio::test]
async fn a_deltas_walk_reads_each_next_page_ahead_until_the_log_ends() {
    use crate::{ConvexApi, DeltaCursor};
    use convex_emulator::EmulatorServer;
    let emu = EmulatorServer::start(convex_emulator::Config::default()).unwrap();
    let dep = emu.deployment().clone();
    let config = crate::settings::tests::settings_for(emu.url(), emu.access_key());
    let client = HttpConvex::new(&config, None).unwrap();
    let start = client.head().await.unwrap();
    // One transaction per document: 300 log rows, three pages.
    for i in 0..300 {
        dep.transaction(|tx| {
            tx.insert("", "users", serde_json::json!({ "n": i }))
                .map(drop)
        })
        .unwrap();
    }
    let selection = Selection::one(TableRef::root("users"), None);
    let mut sink = Values(Vec::new());
    let mut cursor = DeltaCursor(start.0);
    let mut pages = 0;
    loop {
        let end = client
            .document_deltas(&selection, cursor, &mut sink)
            .await
            .unwrap();
        pages += 1;
        if !end.has_more {
            break;
        }
        cursor = end.cursor;
        let mut waited = 0;
        while requests(&dep, "document_deltas") < pages + 1 && waited < 300 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        assert_eq!(
            requests(&dep, "document_deltas"),
            pages + 1,
            "page {pages}: no request ahead"
        );
        assert!(pages < 10);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        requests(&dep, "document_deltas"),
        pages,
        "nothing after the last page"
    );
    assert_eq!((pages, sink.0.len()), (3, 300));
}
