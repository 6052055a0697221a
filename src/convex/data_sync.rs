//! Convex's Data Sync API (`POST /api/v1/data/sync`, and `POST
//! /api/data_sync_cursor_from_deltas` to move a legacy position onto it), as a second backend
//! beside `list_snapshot` / `document_deltas`.
//!
//! A data sync is an endless series of pages, each with an opaque cursor for the next. A page
//! either walks one table by `_id` (while a table is being snapshotted) or follows the
//! document log; `status` says when the pages so far add up to a consistent copy
//! (`stale` / `upToDate`, at `snapshotTs`). `truncates` name tables whose earlier rows are void
//! (a cold start, or a table replaced by an import or re-created).
//!
//! Values arrive in Convex's `export_json` encoding inside an envelope. This module hands the
//! engine every value in the shape `document_deltas` gives in the client's value format (the
//! `_component`, `_table`, `_ts`, `_deleted` members first, then the document in `json` or
//! `export_json`), so streams and records are the same on both APIs.
//!
//! A page is held whole while it is converted: Convex bounds one at 16,384 entries / 64 MiB
//! of values (more only for a single larger transaction), and [`MAX_PAGE_BODY_BYTES`] refuses
//! anything beyond reason.

use std::borrow::Cow;
use std::future::Future;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::encoding::{transcode, Target, ValueFormat};
use super::{ConvexError, DeltaCursor, Selection, SnapshotTs, TableRef};

pub const DATA_SYNC: &str = "/api/v1/data/sync";
pub const CURSOR_FROM_DELTAS: &str = "/api/data_sync_cursor_from_deltas";

/// One data sync page is read whole, up to this size (Convex's own page target is 64 MiB of
/// values; one transaction larger than that still comes in one page).
pub const MAX_PAGE_BODY_BYTES: usize = 1 << 30;

/// A Data Sync cursor: opaque, sealed by the deployment, different text for the same position
/// each time (never compare two), valid for the retention window (3 days on Convex Cloud).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSyncCursor(pub String);

/// Convex error codes of the Data Sync API the engine reacts to.
pub mod codes {
    pub const CURSOR_EXPIRED: &str = "DataSyncCursorExpired";
    pub const INVALID_CURSOR: &str = "InvalidDataSyncCursor";
}

/// Where the sync stands after a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStatus {
    /// A table is still being walked: the pages so far are not a consistent copy yet.
    Snapshotting,
    /// Consistent at the timestamp; more changes are already waiting.
    Stale(SnapshotTs),
    /// Consistent at the timestamp, which is the deployment's latest.
    UpToDate(SnapshotTs),
}

impl SyncStatus {
    /// The timestamp the pages so far are a consistent copy at, if they are one.
    pub fn consistent_at(self) -> Option<SnapshotTs> {
        match self {
            SyncStatus::Snapshotting => None,
            SyncStatus::Stale(t) | SyncStatus::UpToDate(t) => Some(t),
        }
    }
}

/// One value of a page, in the shape `document_deltas` sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncValue {
    pub table: TableRef,
    pub id: String,
    /// Commit timestamp of this revision.
    pub ts: i64,
    pub deleted: bool,
    /// `{"_component":…,"_table":…,"_ts":…,"_deleted":…, <fields>}`: what `document_deltas`
    /// would send for this revision.
    pub raw: Vec<u8>,
}

/// One page of a data sync.
#[derive(Debug, Clone)]
pub struct SyncPage {
    pub status: SyncStatus,
    /// Tables whose previously synced rows are void, before this page's values apply.
    pub truncates: Vec<TableRef>,
    pub values: Vec<SyncValue>,
    pub sync_id: String,
    pub next: DataSyncCursor,
}

/// The Data Sync API as the read engine sees it.
pub trait DataSyncApi: Send + Sync + 'static {
    /// The page after `cursor` (`None` = a cold start) of `selection`.
    fn data_sync(
        &self,
        selection: &Selection,
        cursor: Option<&DataSyncCursor>,
    ) -> impl Future<Output = Result<SyncPage, ConvexError>> + Send;

    /// A cursor that treats every revision at or before `cursor` of the tables of
    /// `selection` as synced: a legacy position moved onto the Data Sync API.
    fn cursor_from_deltas(
        &self,
        selection: &Selection,
        cursor: DeltaCursor,
    ) -> impl Future<Output = Result<DataSyncCursor, ConvexError>> + Send;
}

/// The request body of a page.
pub fn sync_body(selection: &Selection, cursor: Option<&DataSyncCursor>) -> String {
    let mut body = serde_json::Map::new();
    if let Some(c) = cursor {
        body.insert("cursor".into(), c.0.clone().into());
    }
    body.insert("selection".into(), selection.to_json());
    serde_json::Value::Object(body).to_string()
}

/// The request body of a conversion.
pub fn from_deltas_body(selection: &Selection, cursor: DeltaCursor) -> String {
    serde_json::json!({"cursor": cursor.0, "selection": selection.to_json()}).to_string()
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum WireStatus {
    Snapshotting,
    Stale {
        #[serde(rename = "snapshotTs")]
        snapshot_ts: i64,
    },
    UpToDate {
        #[serde(rename = "snapshotTs")]
        snapshot_ts: i64,
    },
}

#[derive(Deserialize)]
struct WireTable<'a> {
    #[serde(borrow)]
    component: Cow<'a, str>,
    #[serde(borrow)]
    table: Cow<'a, str>,
}

#[derive(Deserialize)]
struct WireValue<'a> {
    #[serde(borrow)]
    component: Cow<'a, str>,
    #[serde(borrow)]
    table: Cow<'a, str>,
    ts: i64,
    deleted: bool,
    #[serde(borrow)]
    value: &'a RawValue,
}

#[derive(Deserialize)]
struct WirePagination {
    #[serde(rename = "nextCursor")]
    next_cursor: String,
}

#[derive(Deserialize)]
struct WirePage<'a> {
    status: WireStatus,
    #[serde(borrow, default)]
    truncates: Vec<WireTable<'a>>,
    #[serde(borrow)]
    values: Vec<WireValue<'a>>,
    #[serde(rename = "syncId", default)]
    sync_id: String,
    pagination: WirePagination,
}

/// Parses and converts one page body.
pub fn parse_page(body: &[u8], format: ValueFormat) -> Result<SyncPage, String> {
    let wire: WirePage<'_> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let status = match wire.status {
        WireStatus::Snapshotting => SyncStatus::Snapshotting,
        WireStatus::Stale { snapshot_ts } => SyncStatus::Stale(SnapshotTs(snapshot_ts)),
        WireStatus::UpToDate { snapshot_ts } => SyncStatus::UpToDate(SnapshotTs(snapshot_ts)),
    };
    if wire.pagination.next_cursor.is_empty() {
        return Err("the page has an empty `pagination.nextCursor`".into());
    }
    let mut values = Vec::with_capacity(wire.values.len());
    for v in wire.values {
        let table = TableRef {
            component: v.component.into_owned(),
            table: v.table.into_owned(),
        };
        let converted = to_deltas_shape(&table, v.ts, v.deleted, v.value.get().as_bytes(), format)
            .map_err(|e| format!("a value of {table} at {}: {e}", v.ts))?;
        values.push(SyncValue {
            table,
            id: converted.id,
            ts: v.ts,
            deleted: v.deleted,
            raw: converted.raw,
        });
    }
    Ok(SyncPage {
        status,
        truncates: wire
            .truncates
            .into_iter()
            .map(|t| TableRef {
                component: t.component.into_owned(),
                table: t.table.into_owned(),
            })
            .collect(),
        values,
        sync_id: wire.sync_id,
        next: DataSyncCursor(wire.pagination.next_cursor),
    })
}

/// Parses `{"cursor": "<data sync cursor>"}`.
pub fn parse_converted(body: &[u8]) -> Result<DataSyncCursor, String> {
    #[derive(Deserialize)]
    struct Converted {
        cursor: String,
    }
    let c: Converted = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if c.cursor.is_empty() {
        return Err("the conversion answered an empty cursor".into());
    }
    Ok(DataSyncCursor(c.cursor))
}

struct Converted {
    id: String,
    raw: Vec<u8>,
}

/// One `export_json` document (already valid JSON: serde parsed it) → the shape
/// `document_deltas` sends in `format` (its metadata members first), and its `_id`.
fn to_deltas_shape(
    table: &TableRef,
    ts: i64,
    deleted: bool,
    value: &[u8],
    format: ValueFormat,
) -> Result<Converted, String> {
    let value = value.trim_ascii();
    if value.first() != Some(&b'{') {
        return Err("the value is not a JSON object".into());
    }
    let mut raw = Vec::with_capacity(value.len() + 96 + table.table.len());
    raw.extend_from_slice(b"{\"_component\":");
    write_json_str(&table.component, &mut raw);
    raw.extend_from_slice(b",\"_table\":");
    write_json_str(&table.table, &mut raw);
    raw.extend_from_slice(b",\"_ts\":");
    raw.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
    raw.extend_from_slice(if deleted {
        b",\"_deleted\":true"
    } else {
        b",\"_deleted\":false"
    });
    // The value is transcoded in place after the metadata; its `{` then becomes the `,`
    // that joins its members to them (or goes, with its whitespace, if it has none).
    let start = raw.len();
    let target = match format {
        ValueFormat::Json => Target::Legacy,
        ValueFormat::ExportJson => Target::Unchanged,
    };
    let found = transcode(value, target, &[], &mut raw)?;
    let id = found.id.ok_or("the value has no `_id` string")?;
    let members = raw.get(start + 1..raw.len() - 1).unwrap_or_default();
    if members.iter().all(u8::is_ascii_whitespace) {
        raw.truncate(start);
        raw.push(b'}');
    } else {
        raw[start] = b',';
    }
    Ok(Converted { id, raw })
}

fn write_json_str(s: &str, out: &mut Vec<u8>) {
    // Serialising a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn convert(value: &str) -> Value {
        let c = to_deltas_shape(
            &TableRef::root("users"),
            1770335566197682922,
            false,
            value.as_bytes(),
            ValueFormat::Json,
        )
        .unwrap();
        serde_json::from_slice(&c.raw).unwrap()
    }

    #[test]
    fn export_json_becomes_the_legacy_json_shape() {
        let v = convert(
            r#"{"_creationTime":1770335566197.5,"_id":"jd7a","age":33,"big":-9223372036854775808,"f":1.0,"z":-0.0,"e":1e300,"b":{"$bytes":"AAEC"},"nan":{"$float":"AAAAAAAA+H8="},"inf":{"$float":"AAAAAAAA8H8="},"ninf":{"$float":"AAAAAAAA8P8="},"nested":{"a":[1,2.5,{"$bytes":""},"x\"y"],"t":true,"n":null}}"#,
        );
        assert_eq!(
            v,
            json!({"_component":"","_table":"users","_ts":1770335566197682922i64,"_deleted":false,
                "_creationTime":1770335566197.5,"_id":"jd7a","age":"33","big":"-9223372036854775808",
                "f":1.0,"z":-0.0,"e":1e300,"b":"AAEC","nan":"NaN","inf":"Infinity","ninf":"-Infinity",
                "nested":{"a":["1",2.5,"","x\"y"],"t":true,"n":null}})
        );
    }

    #[test]
    fn bytes_outside_numbers_are_copied_verbatim() {
        let c = to_deltas_shape(
            &TableRef::root("t"),
            5,
            false,
            br#"{"_id":"a\u00e9","s":"\u0000 \ud83d\ude00 1.5","f":2.50}"#,
            ValueFormat::Json,
        )
        .unwrap();
        assert_eq!(c.id, "a\u{e9}");
        assert_eq!(
            std::str::from_utf8(&c.raw).unwrap(),
            r#"{"_component":"","_table":"t","_ts":5,"_deleted":false,"_id":"a\u00e9","s":"\u0000 \ud83d\ude00 1.5","f":2.50}"#
        );
    }

    #[test]
    fn tombstones_have_the_deltas_shape() {
        let c = to_deltas_shape(
            &TableRef {
                component: "auth".into(),
                table: "users".into(),
            },
            9,
            true,
            br#"{"_id":"x1"}"#,
            ValueFormat::Json,
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&c.raw).unwrap(),
            r#"{"_component":"auth","_table":"users","_ts":9,"_deleted":true,"_id":"x1"}"#
        );
    }

    #[test]
    fn a_page_parses_with_its_status_truncates_and_cursor() {
        let body = br#"{"status":{"type":"stale","snapshotTs":1770335566197682922},"truncates":[{"component":"","table":"users"}],"values":[{"component":"","table":"users","ts":1770335566197682000,"deleted":false,"value":{"_id":"a","n":1}}],"syncId":"airbyte-1","pagination":{"hasMore":true,"nextCursor":"01ab"}}"#;
        let p = parse_page(body, ValueFormat::Json).unwrap();
        assert_eq!(p.status, SyncStatus::Stale(SnapshotTs(1770335566197682922)));
        assert_eq!(p.truncates, vec![TableRef::root("users")]);
        assert_eq!(p.values.len(), 1);
        assert_eq!(p.values[0].id, "a");
        assert_eq!(p.values[0].ts, 1770335566197682000);
        assert_eq!(p.next, DataSyncCursor("01ab".into()));
        assert_eq!(p.sync_id, "airbyte-1");
        let snap = br#"{"status":{"type":"snapshotting"},"truncates":[],"values":[],"syncId":"s","pagination":{"hasMore":true,"nextCursor":"c"}}"#;
        assert_eq!(
            parse_page(snap, ValueFormat::Json).unwrap().status,
            SyncStatus::Snapshotting
        );
        for bad in [
            &br#"{"status":{"type":"later"},"values":[],"pagination":{"nextCursor":"c"}}"#[..],
            br#"{"status":{"type":"snapshotting"},"values":[{"component":"","table":"t","ts":1,"deleted":false,"value":[1]}],"pagination":{"nextCursor":"c"}}"#,
            br#"{"status":{"type":"snapshotting"},"values":[{"component":"","table":"t","ts":1,"deleted":false,"value":{"n":1}}],"pagination":{"nextCursor":"c"}}"#,
            br#"{"status":{"type":"snapshotting"},"values":[],"pagination":{"nextCursor":""}}"#,
            br#"{"status":{"type":"snapshotting"},"values":[{"component":"","table":"t","ts":1,"deleted":false,"value":{"_id":"a","s":"\u0001"#,
            b"{\"status\":{\"type\":\"snapshotting\"},\"values\":[{\"component\":\"\",\"table\":\"t\",\"ts\":1,\"deleted\":false,\"value\":{\"_id\":\"a\xff\"}}],\"pagination\":{\"nextCursor\":\"c\"}}",
        ] {
            assert!(parse_page(bad, ValueFormat::Json).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn bodies_carry_the_selection_and_cursor() {
        let s = Selection::one(TableRef::root("users"), None);
        let b: Value = serde_json::from_str(&sync_body(&s, None)).unwrap();
        assert_eq!(
            b,
            json!({"selection":{"_other":"excluded","":{"_other":"excluded","users":{"_other":"included"}}}})
        );
        let c = DataSyncCursor("01ff".into());
        let b: Value = serde_json::from_str(&sync_body(&s, Some(&c))).unwrap();
        assert_eq!(b["cursor"], "01ff");
        let b: Value =
            serde_json::from_str(&from_deltas_body(&s, DeltaCursor(1770335566197682922))).unwrap();
        assert_eq!(b["cursor"].as_i64(), Some(1770335566197682922));
    }
}
