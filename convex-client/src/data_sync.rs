//! Convex's Data Sync API (`POST /api/v1/data/sync`, `POST /api/data_sync_cursor_from_deltas`
//! to move a legacy position onto it, and `GET /api/v1/data/list_active_syncs` for progress),
//! as a second backend beside `list_snapshot` / `document_deltas`.
//!
//! A data sync is an endless series of pages, each with an opaque cursor for the next. A page
//! either walks one table by `_id` (while a table is being snapshotted) or follows the
//! document log; `status` says when the pages so far add up to a consistent copy
//! (`stale` / `upToDate`, at `snapshotTs`). `truncates` name tables whose earlier rows are void
//! (a cold start, or a table replaced by an import or re-created).
//!
//! Values arrive in Convex's `export_json` encoding inside an envelope
//! (`{"component","table","ts","deleted","value"}`). Each is handed to the sink as it is parsed
//! from the network, in the shape `document_deltas` gives in the client's value format (the
//! `_component`, `_table`, `_ts`, `_deleted` members first, then the document in `json` or
//! `export_json`), so streams and records are the same on both APIs. An `export_json`
//! document the parser proved goes to the sink as it is, bare ([`ValueMeta::bare`]): whoever
//! writes it out writes those members first, and the document is not copied to make room.
//!
//! Memory per page, whatever its size (Convex aims at 16,384 values / 64 MiB, more for one
//! large transaction): the page parser's bound (one network chunk, one value of at most
//! [`MAX_VALUE_BYTES`], the members other than `values` together at most as much again), one
//! rewritten value ([`Converter`], for `json` or a document the parser could not prove), the
//! body read ahead of the parser (3 MiB, see `http`), and, for the retry's dedup, the identity
//! (component, table, `_id`, `_ts`: some 40 bytes) of each value delivered, about 700 KiB for
//! a full page.
//!
//! Retries: a failed page is asked again with the same cursor, and Convex recomputes the page
//! from it at that later time (nothing was consumed by the first request), so the answer may
//! differ: a by-id page at the cursor's `synced_ts` repeats exactly (same snapshot, start and
//! limits), a log page repeats the first answer's revisions and may go further, but once the
//! cursor's `synced_ts` is 30 s old Convex answers a log page where the first answer was a
//! by-id page, and a retried cold start (no cursor) starts another sync. Values the failed
//! attempt delivered would then be documents the completed answer neither sends nor captures:
//! one deleted before the walk reaches it again is never reported, and stays in the
//! destination. So the HTTP client holds a page's values until its body has ended or 2 MiB of
//! it have arrived: a page that fails before that delivered nothing. The guarantee: every value
//! of the answer that completed reaches the sink exactly once, in its order (values identical
//! to ones an earlier attempt delivered are skipped by identity: a revision is immutable); a
//! page of at most 2 MiB delivers nothing else; a larger page that fails midway may have
//! delivered values the completed answer does not hold, and those of documents it does not
//! send at all are listed in [`SyncPageEnd::unrepeated`] (each a real revision, at or before
//! the cursor's position) for the caller to account for.
//!
//! [`MAX_VALUE_BYTES`]: super::page::MAX_VALUE_BYTES

use std::borrow::Cow;
use std::future::Future;

use serde::Deserialize;

use super::encoding::{transcode, Target, ValueFormat};
use super::page::RawMeta;
use super::{
    join_head, json_i64, raw_string, ConvexError, DeltaCursor, ExportHead, PageSink, Selection,
    SnapshotTs, TableRef, ValueMeta,
};

pub const DATA_SYNC: &str = "/api/v1/data/sync";
pub const CURSOR_FROM_DELTAS: &str = "/api/data_sync_cursor_from_deltas";
pub const LIST_ACTIVE_SYNCS: &str = "/api/v1/data/list_active_syncs";

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

/// One page of a data sync, held whole.
#[derive(Debug, Clone)]
pub struct SyncPage {
    pub status: SyncStatus,
    /// Tables whose previously synced rows are void, before this page's values apply.
    pub truncates: Vec<TableRef>,
    pub values: Vec<SyncValue>,
    pub sync_id: String,
    pub next: DataSyncCursor,
}

/// What a finished Data Sync page tells, its values having gone to the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPageEnd {
    pub status: SyncStatus,
    /// Tables whose previously synced rows are void: they apply before this page's values
    /// (which the sink has already had).
    pub truncates: Vec<TableRef>,
    pub sync_id: String,
    pub next: DataSyncCursor,
    /// How many values the sink received.
    pub values: usize,
    /// Values the sink received from an attempt at this page that failed, of documents the
    /// attempt which completed did not send at all (see the module doc). Empty unless a large
    /// page failed midway and Convex answered the retry differently.
    pub unrepeated: Vec<Unrepeated>,
}

/// A value delivered by a failed attempt at a page, of a document the completed attempt did
/// not send: the destination holds it at `ts`, and the sync sends it again later only if it
/// still exists when its walk reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrepeated {
    pub table: TableRef,
    pub id: String,
    pub ts: i64,
}

/// A data sync Convex keeps progress of (`list_active_syncs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSync {
    pub sync_id: String,
    /// When the sync last fetched a page (ms since epoch).
    pub last_updated_ms: i64,
    pub progress: SyncProgress,
}

/// A sync's progress as Convex counts it: approximate (totals from table summaries, 0 while
/// those are unknown; documents synced include re-sent revisions and tombstones). Read straight
/// from the wire's `status` (`{"type": "snapshotting", "numTablesSynced": …}`): a count may be
/// missing, `null` or a float, and is then what it rounds to (0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum SyncProgress {
    Snapshotting {
        #[serde(default, deserialize_with = "count")]
        num_tables_synced: u64,
        #[serde(default, deserialize_with = "count")]
        total_tables: u64,
        #[serde(default, deserialize_with = "text")]
        current_component: String,
        #[serde(default, deserialize_with = "text")]
        current_table: String,
        #[serde(default, deserialize_with = "count")]
        num_documents_in_current_table: u64,
        #[serde(default, deserialize_with = "count")]
        total_documents_in_current_table: u64,
        #[serde(default, deserialize_with = "count")]
        num_documents_synced: u64,
        #[serde(default, deserialize_with = "count")]
        total_documents: u64,
    },
    Stale {
        #[serde(default, deserialize_with = "count")]
        total_tables: u64,
        #[serde(default, deserialize_with = "count")]
        num_documents_synced: u64,
        synced_ts: SnapshotTs,
    },
    UpToDate {
        #[serde(default, deserialize_with = "count")]
        total_tables: u64,
        #[serde(default, deserialize_with = "count")]
        num_documents_synced: u64,
        synced_ts: SnapshotTs,
    },
}

impl std::fmt::Display for SyncProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A total of 0 is one Convex does not know yet.
        let of = |n: u64, total: u64| {
            if total == 0 {
                format!("{n}")
            } else {
                format!("{n} of ~{total}")
            }
        };
        match self {
            SyncProgress::Snapshotting {
                num_tables_synced,
                total_tables,
                current_component,
                current_table,
                num_documents_in_current_table,
                total_documents_in_current_table,
                num_documents_synced,
                total_documents,
            } => {
                let table = TableRef {
                    component: current_component.clone(),
                    table: current_table.clone(),
                };
                write!(
                    f,
                    "snapshotting {table} ({} documents), {num_tables_synced} of {total_tables} tables done, {} documents synced",
                    of(*num_documents_in_current_table, *total_documents_in_current_table),
                    of(*num_documents_synced, *total_documents),
                )
            }
            SyncProgress::Stale {
                total_tables,
                num_documents_synced,
                synced_ts,
            } => write!(
                f,
                "synced to {synced_ts}, catching up ({num_documents_synced} documents synced, {total_tables} tables)"
            ),
            SyncProgress::UpToDate {
                total_tables,
                num_documents_synced,
                synced_ts,
            } => write!(
                f,
                "up to date at {synced_ts} ({num_documents_synced} documents synced, {total_tables} tables)"
            ),
        }
    }
}

/// The Data Sync API as the read engine sees it.
pub trait DataSyncApi: Send + Sync + 'static {
    /// The page after `cursor` (`None` = a cold start) of `selection`, held whole.
    fn data_sync(
        &self,
        selection: &Selection,
        cursor: Option<&DataSyncCursor>,
    ) -> impl Future<Output = Result<SyncPage, ConvexError>> + Send;

    /// The page after `cursor` (`None` = a cold start) of `selection`, each value handed to
    /// `sink` as it arrives, as a `document_deltas` value (`deleted` always set). Errors: a
    /// [`ConvexError`], or the sink's own.
    ///
    /// The default reads the page whole through [`DataSyncApi::data_sync`] (for in-memory
    /// implementations); the HTTP client streams it.
    fn data_sync_page<S: PageSink>(
        &self,
        selection: &Selection,
        cursor: Option<&DataSyncCursor>,
        sink: &mut S,
    ) -> impl Future<Output = anyhow::Result<SyncPageEnd>> + Send {
        async move {
            let page = self.data_sync(selection, cursor).await?;
            for v in &page.values {
                let meta = ValueMeta {
                    table: Cow::Borrowed(&v.table.table),
                    component: Cow::Borrowed(&v.table.component),
                    id: Cow::Borrowed(&v.id),
                    ts: v.ts,
                    deleted: Some(v.deleted),
                    members: None,
                    bare: false,
                };
                sink.value(&v.raw, &meta)?;
            }
            sink.flush().await?;
            Ok(SyncPageEnd {
                status: page.status,
                truncates: page.truncates,
                sync_id: page.sync_id,
                next: page.next,
                values: page.values.len(),
                unrepeated: Vec::new(),
            })
        }
    }

    /// A cursor that treats every revision at or before `cursor` of the tables of
    /// `selection` as synced: a legacy position moved onto the Data Sync API.
    fn cursor_from_deltas(
        &self,
        selection: &Selection,
        cursor: DeltaCursor,
    ) -> impl Future<Output = Result<DataSyncCursor, ConvexError>> + Send;

    /// Convex's progress of the sync `sync_id`, if Convex lists it among the syncs active in
    /// the last 3 days (`None` too where progress is not known, as by default).
    fn active_sync(
        &self,
        sync_id: &str,
    ) -> impl Future<Output = Result<Option<ActiveSync>, ConvexError>> + Send {
        let _ = sync_id;
        async { Ok(None) }
    }
}

/// The request body of a page.
pub fn sync_body(selection: &Selection, cursor: Option<&DataSyncCursor>) -> String {
    match cursor {
        Some(c) => {
            let cursor = serde_json::Value::from(c.0.as_str()).to_string();
            selection.request_body(&[("cursor", &cursor)], &[])
        }
        None => selection.request_body(&[], &[]),
    }
}

/// The request body of a conversion.
pub fn from_deltas_body(selection: &Selection, cursor: DeltaCursor) -> String {
    selection.request_body(&[("cursor", &cursor.0.to_string())], &[])
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
struct WireTable {
    component: String,
    table: String,
}

#[derive(Deserialize)]
struct WirePagination {
    #[serde(rename = "nextCursor")]
    next_cursor: Option<String>,
}

/// The end of a page from its members other than `values` (raw JSON, as the page parser keeps
/// them; the last of a repeated name counts), having delivered `values` values.
pub fn page_end(fields: &[(String, Vec<u8>)], values: usize) -> Result<SyncPageEnd, String> {
    let get = |name: &str| {
        fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    };
    let parse = |name: &str| -> Result<Option<serde_json::Value>, String> {
        get(name)
            .map(serde_json::from_slice)
            .transpose()
            .map_err(|e| format!("the page's `{name}` is not valid JSON: {e}"))
    };
    let bad = |name: &str, e: serde_json::Error| {
        format!("the page's `{name}` is not what the API documents: {e}")
    };
    let status = parse("status")?.ok_or("the page has no `status`")?;
    let status = match WireStatus::deserialize(status).map_err(|e| bad("status", e))? {
        WireStatus::Snapshotting => SyncStatus::Snapshotting,
        WireStatus::Stale { snapshot_ts } => SyncStatus::Stale(SnapshotTs(snapshot_ts)),
        WireStatus::UpToDate { snapshot_ts } => SyncStatus::UpToDate(SnapshotTs(snapshot_ts)),
    };
    let pagination = parse("pagination")?.ok_or("the page has no `pagination`")?;
    let next = WirePagination::deserialize(pagination)
        .map_err(|e| bad("pagination", e))?
        .next_cursor
        .ok_or("the page has no `pagination.nextCursor`")?;
    if next.is_empty() {
        return Err("the page has an empty `pagination.nextCursor`".into());
    }
    let truncates = match parse("truncates")? {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(t) => Vec::<WireTable>::deserialize(t)
            .map_err(|e| bad("truncates", e))?
            .into_iter()
            .map(|t| TableRef {
                component: t.component,
                table: t.table,
            })
            .collect(),
    };
    let sync_id = match parse("syncId")? {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(s) => String::deserialize(s).map_err(|e| bad("syncId", e))?,
    };
    Ok(SyncPageEnd {
        status,
        truncates,
        sync_id,
        next: DataSyncCursor(next),
        values,
        unrepeated: Vec::new(),
    })
}

/// Turns each envelope the page parser finds ([`RawMeta`] of a Data Sync page) into the value
/// `document_deltas` would send: the document itself, bare (see [`ValueMeta::bare`]), where
/// the parser proved it compact and found its `_id` and the format keeps it as it is;
/// otherwise rewritten whole into one buffer reused from value to value.
pub struct Converter {
    target: Target,
    out: Vec<u8>,
}

impl Converter {
    pub fn new(format: ValueFormat) -> Self {
        Converter {
            target: match format {
                ValueFormat::Json => Target::Legacy,
                ValueFormat::ExportJson => Target::Unchanged,
            },
            out: Vec::new(),
        }
    }

    /// The value and its metadata, or what is wrong with the envelope. The members come with
    /// it when the parser found the document's (and the document goes out as it is).
    pub fn convert<'a>(
        &'a mut self,
        raw: RawMeta<'a>,
    ) -> Result<(&'a [u8], ValueMeta<'a>), String> {
        // Names the parser proved plain (no escapes) are borrowed as they are.
        let plain = raw.plain_names;
        let name = |json: Option<&'a str>, what: &str| -> Result<Cow<'a, str>, String> {
            let json = json.ok_or_else(|| format!("a value has no `{what}`"))?;
            plain_string(json, plain).map_err(|e| format!("a value's `{what}`: {e}"))
        };
        let component = name(raw.component, "component")?;
        let table = name(raw.table, "table")?;
        let ts = raw.ts.ok_or("a value has no `ts`")?.trim_ascii();
        let ts = json_i64(ts)
            .or_else(|| ts.parse().ok())
            .ok_or_else(|| format!("a value's `ts` {ts} is not an integer"))?;
        let deleted = match raw.deleted.map(str::trim_ascii) {
            Some("true") => true,
            Some("false") => false,
            None => return Err("a value has no `deleted`".into()),
            Some(other) => return Err(format!("a value's `deleted` {other} is not a boolean")),
        };
        let at = || format!("a value of {component}/{table} at {ts}");
        let value = raw
            .value
            .map(str::trim_ascii)
            .filter(|v| v.starts_with('{'))
            .ok_or_else(|| format!("{} has no object `value`", at()))?;
        if let Some(id) = raw.id.filter(|_| self.target == Target::Unchanged) {
            // Proven compact and valid by the parser, `_id` found: the document as it is.
            let id = id.trim_ascii();
            if !id.starts_with('"') {
                return Err(format!("{} has no `_id` string", at()));
            }
            let id = plain_string(id, plain).map_err(|e| format!("{}: `_id`: {e}", at()))?;
            let meta = ValueMeta {
                table,
                component,
                id,
                ts,
                deleted: Some(deleted),
                members: raw.members,
                bare: true,
            };
            return Ok((value.as_bytes(), meta));
        }
        let out = &mut self.out;
        out.clear();
        let names = TableRef {
            component: component.to_string(),
            table: table.to_string(),
        };
        ExportHead::new(&names).write(out, ts, deleted);
        let start = out.len();
        let found = transcode(value.as_bytes(), self.target, &[], out)
            .map_err(|e| format!("{}: {e}", at()))?;
        let id = found
            .id
            .ok_or_else(|| format!("{} has no `_id` string", at()))?;
        join_head(out, start);
        let meta = ValueMeta {
            table,
            component,
            id: Cow::Owned(id),
            ts,
            deleted: Some(deleted),
            members: None,
            bare: false,
        };
        Ok((&self.out[..], meta))
    }
}

/// The text of a JSON string; when the parser proved it has no escape (`plain`), borrowed
/// between its quotes without a second look.
fn plain_string(json: &str, plain: bool) -> Result<Cow<'_, str>, String> {
    let json = json.trim_ascii();
    match json.strip_prefix('"').and_then(|j| j.strip_suffix('"')) {
        Some(inner) if plain => Ok(Cow::Borrowed(inner)),
        _ => raw_string(json),
    }
}

/// A whole page parsed as the HTTP client parses it as it arrives (for tests): its values as
/// the sink gets them, then its end.
#[cfg(test)]
pub struct SyncPageParser {
    parser: super::page::PageParser,
    converter: Converter,
    values: usize,
}

#[cfg(test)]
impl SyncPageParser {
    pub fn new(format: ValueFormat) -> Self {
        SyncPageParser {
            parser: super::page::PageParser::sync_envelopes(format == ValueFormat::ExportJson),
            converter: Converter::new(format),
            values: 0,
        }
    }

    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut on_value: impl FnMut(&[u8], &ValueMeta<'_>),
    ) -> Result<(), String> {
        let converter = &mut self.converter;
        let values = &mut self.values;
        self.parser
            .feed(chunk, |_, raw| {
                let (bytes, meta) = converter.convert(raw)?;
                if !meta.bare {
                    on_value(bytes, &meta);
                } else {
                    // As `document_deltas` sends it, members and all.
                    let whole = meta.whole(bytes);
                    let shift = u32::try_from(whole.len().saturating_sub(bytes.len())).unwrap();
                    let members: Option<Vec<crate::page::Member>> = meta.members.map(|m| {
                        m.iter()
                            .map(|m| crate::page::Member {
                                key: (m.key.0 + shift, m.key.1 + shift),
                                value: (m.value.0 + shift, m.value.1 + shift),
                            })
                            .collect()
                    });
                    let meta = ValueMeta {
                        members: members.as_deref(),
                        bare: false,
                        ..meta.clone()
                    };
                    on_value(&whole, &meta);
                }
                *values += 1;
                Ok::<(), String>(())
            })
            .map_err(|e| match e {
                super::page::FeedError::Syntax(e) => e.to_string(),
                super::page::FeedError::Sink(e) => e,
            })
    }

    pub fn finish(self) -> Result<SyncPageEnd, String> {
        if !self.parser.saw_values() {
            return Err("the page has no `values`".into());
        }
        let fields = self.parser.finish().map_err(|e| e.to_string())?;
        page_end(&fields, self.values)
    }
}

/// One page of `list_active_syncs`: the sync asked for, if listed, and the cursor of the next
/// page, if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSyncsPage {
    pub found: Option<ActiveSync>,
    pub next: Option<String>,
}

/// Parses `{"syncs":[ActiveDataSync…],"pagination":{"hasMore","nextCursor"}}`, looking for
/// `sync_id`. Only that sync's status must be one this client knows; unknown members are
/// ignored.
pub fn parse_active_syncs(body: &[u8], sync_id: &str) -> Result<ActiveSyncsPage, String> {
    #[derive(Deserialize)]
    struct Page {
        syncs: Vec<Sync>,
        #[serde(default)]
        pagination: Option<Pagination>,
    }
    #[derive(Deserialize)]
    struct Sync {
        #[serde(rename = "syncId")]
        sync_id: Option<String>,
        #[serde(rename = "lastUpdated", default)]
        last_updated: Option<serde_json::Number>,
        #[serde(default)]
        status: serde_json::Value,
    }
    #[derive(Deserialize)]
    struct Pagination {
        #[serde(rename = "hasMore", default)]
        has_more: bool,
        #[serde(rename = "nextCursor", default)]
        next_cursor: Option<String>,
    }
    let page: Page = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let next = page
        .pagination
        .filter(|p| p.has_more)
        .and_then(|p| p.next_cursor)
        .filter(|c| !c.is_empty());
    let Some(sync) = page
        .syncs
        .into_iter()
        .find(|s| s.sync_id.as_deref() == Some(sync_id))
    else {
        return Ok(ActiveSyncsPage { found: None, next });
    };
    let progress = SyncProgress::deserialize(sync.status)
        .map_err(|e| format!("the status of sync {sync_id} is not what the API documents: {e}"))?;
    let last_updated_ms = sync
        .last_updated
        .and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)))
        .unwrap_or(0);
    Ok(ActiveSyncsPage {
        found: Some(ActiveSync {
            sync_id: sync_id.to_owned(),
            last_updated_ms,
            progress,
        }),
        next,
    })
}

/// A name that may be `null` (none yet: empty).
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// A count that may be `null` (unknown: 0) or, from a JavaScript backend, a float.
fn count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n: Option<serde_json::Number> = Option::deserialize(d)?;
    Ok(
        n.and_then(|n| n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)))
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A value as the sink got it: its bytes and metadata (members as (key, value) texts).
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Got {
        raw: String,
        table: String,
        component: String,
        id: String,
        ts: i64,
        deleted: Option<bool>,
        members: Option<Vec<(String, String)>>,
    }

    fn got(raw: &[u8], m: &ValueMeta<'_>) -> Got {
        let text = String::from_utf8(raw.to_vec()).unwrap();
        let span = |(a, b): (u32, u32)| text[a as usize..b as usize].to_owned();
        Got {
            members: m
                .members
                .map(|ms| ms.iter().map(|mm| (span(mm.key), span(mm.value))).collect()),
            raw: text.clone(),
            table: m.table.to_string(),
            component: m.component.to_string(),
            id: m.id.to_string(),
            ts: m.ts,
            deleted: m.deleted,
        }
    }

    /// The values and end of `body` fed in parts of the given sizes (the rest in one).
    fn parse_parts(
        body: &[u8],
        parts: &[usize],
        format: ValueFormat,
    ) -> Result<(Vec<Got>, SyncPageEnd), String> {
        let mut p = SyncPageParser::new(format);
        let mut values = Vec::new();
        let mut rest = body;
        for &n in parts {
            let (part, tail) = rest.split_at(n.min(rest.len()));
            rest = tail;
            p.feed(part, |raw, m| values.push(got(raw, m)))?;
        }
        p.feed(rest, |raw, m| values.push(got(raw, m)))?;
        let end = p.finish()?;
        assert_eq!(end.values, values.len());
        Ok((values, end))
    }

    fn parse(body: &[u8], format: ValueFormat) -> Result<(Vec<Got>, SyncPageEnd), String> {
        parse_parts(body, &[], format)
    }

    fn page_of(values: &[String]) -> String {
        format!(
            r#"{{"status":{{"type":"snapshotting"}},"truncates":[],"values":[{}],"syncId":"s","pagination":{{"hasMore":true,"nextCursor":"c"}}}}"#,
            values.join(",")
        )
    }

    fn envelope(component: &str, table: &str, ts: i64, deleted: bool, value: &str) -> String {
        format!(
            r#"{{"component":{},"table":{},"ts":{ts},"deleted":{deleted},"value":{value}}}"#,
            json!(component),
            json!(table)
        )
    }

    /// One document of `users` at a fixed ts, converted.
    fn convert(value: &str, format: ValueFormat) -> Got {
        let page = page_of(&[envelope("", "users", 1770335566197682922, false, value)]);
        let (mut values, _) = parse(page.as_bytes(), format).unwrap();
        assert_eq!(values.len(), 1);
        values.remove(0)
    }

    const EVERY_TYPE: &str = r#"{"_creationTime":1770335566197.5,"_id":"jd7a","age":33,"big":-9223372036854775808,"f":1.0,"z":-0.0,"e":1e300,"b":{"$bytes":"AAEC"},"nan":{"$float":"AAAAAAAA+H8="},"inf":{"$float":"AAAAAAAA8H8="},"ninf":{"$float":"AAAAAAAA8P8="},"nested":{"a":[1,2.5,{"$bytes":""},"x\"y"],"t":true,"n":null}}"#;

    #[test]
    fn export_json_becomes_the_legacy_json_shape() {
        let v = convert(EVERY_TYPE, ValueFormat::Json);
        assert_eq!(
            serde_json::from_str::<Value>(&v.raw).unwrap(),
            json!({"_component":"","_table":"users","_ts":1770335566197682922i64,"_deleted":false,
                "_creationTime":1770335566197.5,"_id":"jd7a","age":"33","big":"-9223372036854775808",
                "f":1.0,"z":-0.0,"e":1e300,"b":"AAEC","nan":"NaN","inf":"Infinity","ninf":"-Infinity",
                "nested":{"a":["1",2.5,"","x\"y"],"t":true,"n":null}})
        );
        assert_eq!((v.id.as_str(), v.ts), ("jd7a", 1770335566197682922));
        assert_eq!(v.deleted, Some(false));
        // `json` clients get no members (typed columns read `export_json`).
        assert_eq!(v.members, None);
    }

    #[test]
    fn export_json_is_kept_with_the_metadata_in_front() {
        let v = convert(EVERY_TYPE, ValueFormat::ExportJson);
        let want = format!(
            r#"{{"_component":"","_table":"users","_ts":1770335566197682922,"_deleted":false,{}"#,
            &EVERY_TYPE[1..]
        );
        assert_eq!(v.raw, want);
        // The document's members are where a full walk of the value finds them (the
        // metadata's are not given: what reads members skips `_` fields).
        let mut walked = Vec::new();
        crate::page::fast::prove(&v.raw, Some(&mut walked)).unwrap();
        let text = |(a, b): (u32, u32)| v.raw[a as usize..b as usize].to_owned();
        let walked: Vec<_> = walked
            .iter()
            .map(|m| (text(m.key), text(m.value)))
            .collect();
        assert_eq!(v.members.as_deref(), Some(&walked[4..]));
        assert_eq!(walked[0], ("_component".into(), "\"\"".into()));
        assert_eq!(walked[2], ("_ts".into(), "1770335566197682922".into()));
        assert_eq!(walked[5], ("_id".into(), "\"jd7a\"".into()));
    }

    #[test]
    fn bytes_outside_numbers_are_copied_verbatim() {
        let c = convert(
            r#"{"_id":"a\u00e9","s":"\u0000 \ud83d\ude00 1.5","f":2.50}"#,
            ValueFormat::Json,
        );
        assert_eq!(c.id, "a\u{e9}");
        assert_eq!(
            c.raw,
            r#"{"_component":"","_table":"users","_ts":1770335566197682922,"_deleted":false,"_id":"a\u00e9","s":"\u0000 \ud83d\ude00 1.5","f":2.50}"#
        );
        let e = convert(
            r#"{"_id":"a\u00e9","s":"\u0000 \ud83d\ude00 1.5","f":2.50}"#,
            ValueFormat::ExportJson,
        );
        assert_eq!((e.id, e.raw), (c.id, c.raw));
    }

    #[test]
    fn tombstones_have_the_deltas_shape() {
        for format in [ValueFormat::Json, ValueFormat::ExportJson] {
            let page = page_of(&[envelope("auth", "users", 9, true, r#"{"_id":"x1"}"#)]);
            let (values, _) = parse(page.as_bytes(), format).unwrap();
            let v = &values[0];
            assert_eq!(
                v.raw,
                r#"{"_component":"auth","_table":"users","_ts":9,"_deleted":true,"_id":"x1"}"#
            );
            assert_eq!(v.deleted, Some(true));
            assert_eq!((v.component.as_str(), v.table.as_str()), ("auth", "users"));
            assert_eq!(v.id, "x1");
        }
    }

    /// Components (root, nested, escaped in the JSON) reach the metadata and the value.
    #[test]
    fn components_are_named_in_the_metadata_and_the_value() {
        let values = [
            envelope("", "t", 1, false, r#"{"_id":"a"}"#),
            envelope("auth/sessions", "users", 2, false, r#"{"_id":"b","n":1}"#),
            r#"{"component":"\u0061uth","table":"t\u00e9","ts":3,"deleted":false,"value":{"_id":"\u0063"}}"#.to_owned(),
        ];
        for format in [ValueFormat::Json, ValueFormat::ExportJson] {
            let (got, _) = parse(page_of(&values).as_bytes(), format).unwrap();
            let meta: Vec<_> = got
                .iter()
                .map(|g| (g.component.as_str(), g.table.as_str(), g.id.as_str()))
                .collect();
            assert_eq!(
                meta,
                [
                    ("", "t", "a"),
                    ("auth/sessions", "users", "b"),
                    ("auth", "té", "c")
                ]
            );
            let v: Value = serde_json::from_str(&got[2].raw).unwrap();
            assert_eq!(v["_component"], "auth");
            assert_eq!(v["_table"], "té");
            assert_eq!(
                got[1]
                    .raw
                    .matches("\"_component\":\"auth/sessions\"")
                    .count(),
                1
            );
        }
    }

    #[test]
    fn a_page_parses_with_its_status_truncates_and_cursor() {
        let body = br#"{"status":{"type":"stale","snapshotTs":1770335566197682922},"truncates":[{"component":"","table":"users"}],"values":[{"component":"","table":"users","ts":1770335566197682000,"deleted":false,"value":{"_id":"a","n":1}}],"syncId":"airbyte-1","pagination":{"hasMore":true,"nextCursor":"01ab"}}"#;
        let (values, end) = parse(body, ValueFormat::Json).unwrap();
        assert_eq!(
            end.status,
            SyncStatus::Stale(SnapshotTs(1770335566197682922))
        );
        assert_eq!(end.truncates, vec![TableRef::root("users")]);
        assert_eq!(values.len(), 1);
        assert_eq!(values[0].id, "a");
        assert_eq!(values[0].ts, 1770335566197682000);
        assert_eq!(end.next, DataSyncCursor("01ab".into()));
        assert_eq!(end.sync_id, "airbyte-1");
        assert_eq!((end.values, end.unrepeated), (1, vec![]));
        let snap = br#"{"status":{"type":"snapshotting"},"truncates":[],"values":[],"syncId":"s","pagination":{"hasMore":true,"nextCursor":"c"}}"#;
        assert_eq!(
            parse(snap, ValueFormat::Json).unwrap().1.status,
            SyncStatus::Snapshotting
        );
        let up = br#"{"status":{"type":"upToDate","snapshotTs":5},"values":[],"pagination":{"nextCursor":"c"}}"#;
        let (_, end) = parse(up, ValueFormat::Json).unwrap();
        assert_eq!(end.status, SyncStatus::UpToDate(SnapshotTs(5)));
        assert!(end.truncates.is_empty() && end.sync_id.is_empty());
    }

    /// The page's members in every order, and an envelope's, whatever the chunks.
    #[test]
    fn keys_in_any_order() {
        let members = [
            r#""status":{"snapshotTs":7,"type":"stale"}"#,
            r#""truncates":[{"table":"t","component":"c"}]"#,
            r#""values":[{"value":{"n":[1],"_id":"i"},"deleted":false,"ts":3,"table":"t","component":"c"},{"deleted":true,"component":"c","value":{"_id":"j"},"table":"t","ts":4}]"#,
            r#""syncId":"s1""#,
            r#""pagination":{"nextCursor":"cur","hasMore":true}"#,
        ];
        fn permutations(rest: Vec<usize>) -> Vec<Vec<usize>> {
            if rest.len() <= 1 {
                return vec![rest];
            }
            let mut out = Vec::new();
            for (i, &first) in rest.iter().enumerate() {
                let mut others = rest.clone();
                others.remove(i);
                for mut p in permutations(others) {
                    p.insert(0, first);
                    out.push(p);
                }
            }
            out
        }
        let mut want = None;
        let mut seen = 0;
        for order in permutations((0..members.len()).collect()) {
            let body = format!(
                "{{{}}}",
                order
                    .iter()
                    .map(|&k| members[k])
                    .collect::<Vec<_>>()
                    .join(",")
            );
            for cut in [1, 7, body.len()] {
                let parts: Vec<usize> = vec![cut; body.len() / cut + 1];
                let got = parse_parts(body.as_bytes(), &parts, ValueFormat::ExportJson)
                    .unwrap_or_else(|e| panic!("{body}: {e}"));
                match &want {
                    None => want = Some(got),
                    Some(w) => assert_eq!(&got, w, "{body} in chunks of {cut}"),
                }
            }
            seen += 1;
        }
        assert_eq!(seen, 120);
        let (values, end) = want.unwrap();
        assert_eq!(end.status, SyncStatus::Stale(SnapshotTs(7)));
        assert_eq!(
            end.truncates,
            vec![TableRef {
                component: "c".into(),
                table: "t".into()
            }]
        );
        assert_eq!((end.sync_id.as_str(), end.next.0.as_str()), ("s1", "cur"));
        assert_eq!(
            values[0].raw,
            r#"{"_component":"c","_table":"t","_ts":3,"_deleted":false,"n":[1],"_id":"i"}"#
        );
        assert_eq!(values[1].deleted, Some(true));
        assert_eq!(values[1].id, "j");
    }

    /// Values split anywhere by the network, or pretty-printed (the parser's exact path): the
    /// same bytes and metadata as whole compact ones, and the members wherever the document
    /// was proven.
    #[test]
    fn values_split_across_chunks_are_the_same_values() {
        let docs = [
            envelope("", "users", 1770335566197682922, false, EVERY_TYPE),
            envelope("a/b", "t", -5, true, r#"{"_id":"k\"1"}"#),
            envelope(
                "",
                "e",
                0,
                false,
                r#"{"_id":"é✓","s":"}]\\\"","x":{"_id":1}}"#,
            ),
        ];
        let body = page_of(&docs);
        for format in [ValueFormat::Json, ValueFormat::ExportJson] {
            let (whole, end) = parse(body.as_bytes(), format).unwrap();
            assert_eq!(whole.len(), 3);
            if format == ValueFormat::ExportJson {
                assert!(whole.iter().all(|g| g.members.is_some()));
            }
            let strip = |g: &[Got]| {
                g.iter()
                    .map(|g| Got {
                        members: None,
                        ..g.clone()
                    })
                    .collect::<Vec<_>>()
            };
            for cut in 1..body.len() {
                for cut2 in [cut + 1, cut + 13, body.len()] {
                    let parts = [cut, cut2.min(body.len()) - cut];
                    let (got, e) = parse_parts(body.as_bytes(), &parts, format).unwrap();
                    assert_eq!(e, end);
                    assert_eq!(strip(&got), strip(&whole), "cut at {cut} and {cut2}");
                    // Members, when given, are the whole value's.
                    for (g, w) in got.iter().zip(&whole) {
                        if g.members.is_some() {
                            assert_eq!(g.members, w.members, "cut at {cut}");
                        }
                    }
                }
            }
            // Whitespace anywhere outside strings: the same compact values.
            let pretty =
                serde_json::to_string_pretty(&serde_json::from_str::<Value>(&body).unwrap())
                    .unwrap();
            let (got, e) = parse_parts(pretty.as_bytes(), &[5, 100, 1000], format).unwrap();
            assert_eq!(e, end);
            // `to_string_pretty` re-encodes strings and `1e300`, so compare meaning.
            for (g, w) in got.iter().zip(&whole) {
                assert!(!g.raw.contains('\n'));
                assert_eq!(
                    serde_json::from_str::<Value>(&g.raw).unwrap(),
                    serde_json::from_str::<Value>(&w.raw).unwrap()
                );
                assert_eq!((&g.id, g.ts, g.deleted), (&w.id, w.ts, w.deleted));
            }
        }
    }

    /// A document nested deeper than the fast path follows takes the exact path whole.
    #[test]
    fn deep_documents_take_the_exact_path() {
        let deep = format!(
            r#"{{"_id":"d","x":{}true{}}}"#,
            "[".repeat(70),
            "]".repeat(70)
        );
        for format in [ValueFormat::Json, ValueFormat::ExportJson] {
            let v = convert(&deep, format);
            assert_eq!(v.id, "d");
            assert_eq!(v.members, None);
            assert!(v.raw.ends_with(&deep[1..]), "{}", v.raw);
        }
    }

    #[test]
    fn hostile_pages_are_refused_with_what_is_wrong() {
        let ok = |v: &str| page_of(&[v.to_owned()]);
        let cases: Vec<(String, &str)> = vec![
            (r#"{"values":[],"pagination":{"nextCursor":"c"}}"#.into(), "no `status`"),
            (r#"{"status":{"type":"later"},"values":[],"pagination":{"nextCursor":"c"}}"#.into(), "`status`"),
            (r#"{"status":{"type":"stale"},"values":[],"pagination":{"nextCursor":"c"}}"#.into(), "`status`"),
            (r#"{"status":{"type":"snapshotting"},"values":[]}"#.into(), "no `pagination`"),
            (r#"{"status":{"type":"snapshotting"},"values":[],"pagination":{"hasMore":true}}"#.into(), "no `pagination.nextCursor`"),
            (r#"{"status":{"type":"snapshotting"},"values":[],"pagination":{"nextCursor":null}}"#.into(), "no `pagination.nextCursor`"),
            (r#"{"status":{"type":"snapshotting"},"values":[],"pagination":{"nextCursor":""}}"#.into(), "empty `pagination.nextCursor`"),
            (r#"{"status":{"type":"snapshotting"},"values":[],"pagination":{"nextCursor":7}}"#.into(), "`pagination`"),
            (r#"{"status":{"type":"snapshotting"},"pagination":{"nextCursor":"c"}}"#.into(), "no `values`"),
            (r#"{"status":{"type":"snapshotting"},"values":{},"pagination":{"nextCursor":"c"}}"#.into(), "expected shape"),
            (r#"{"status":{"type":"snapshotting"},"values":[],"truncates":[{"table":1}],"pagination":{"nextCursor":"c"}}"#.into(), "`truncates`"),
            (r#"{"status":{"type":"snapshotting"},"values":[],"syncId":5,"pagination":{"nextCursor":"c"}}"#.into(), "`syncId`"),
            (ok(&envelope("", "t", 1, false, "[1]")), "no object `value`"),
            (ok(&envelope("", "t", 1, false, "\"x\"")), "no object `value`"),
            (ok(&envelope("", "t", 1, false, "null")), "no object `value`"),
            (ok(r#"{"component":"","table":"t","ts":1,"deleted":false}"#), "no object `value`"),
            (ok(&envelope("", "t", 1, false, r#"{"n":1}"#)), "no `_id` string"),
            (ok(&envelope("", "t", 1, false, r#"{"_id":5}"#)), "no `_id` string"),
            (ok(&envelope("", "t", 1, false, r#"{}"#)), "no `_id` string"),
            (ok(r#"{"component":"","table":"t","ts":1.5,"deleted":false,"value":{"_id":"a"}}"#), "not an integer"),
            (ok(r#"{"component":"","table":"t","ts":"1","deleted":false,"value":{"_id":"a"}}"#), "not an integer"),
            (ok(r#"{"component":"","table":"t","ts":99999999999999999999,"deleted":false,"value":{"_id":"a"}}"#), "not an integer"),
            (ok(r#"{"component":"","table":"t","ts":1,"deleted":0,"value":{"_id":"a"}}"#), "not a boolean"),
            (ok(r#"{"component":"","table":"t","ts":1,"value":{"_id":"a"}}"#), "no `deleted`"),
            (ok(r#"{"table":"t","ts":1,"deleted":false,"value":{"_id":"a"}}"#), "no `component`"),
            (ok(r#"{"component":"","table":7,"ts":1,"deleted":false,"value":{"_id":"a"}}"#), "`table`"),
            (ok(r#"[1]"#), "must be a JSON object"),
            (ok(r#"{"component":"","table":"t","ts":1,"deleted":false,"value":{"_id":"a","s":"\u0001"}"#), "not valid JSON"),
            (ok("{\"component\":\"\",\"table\":\"t\",\"ts\":1,\"deleted\":false,\"value\":{\"_id\":\"a\x01\"}}"), "not valid JSON"),
            (ok("{\"component\":\"\",\"table\":\"t\",\"ts\":+1,\"deleted\":false,\"value\":{\"_id\":\"a\"}}"), "not valid JSON"),
            ("<html>502</html>".into(), "expected shape"),
        ];
        for (body, want) in &cases {
            for format in [ValueFormat::Json, ValueFormat::ExportJson] {
                for chunk in [3, body.len()] {
                    let parts = vec![chunk; body.len() / chunk + 1];
                    let err = parse_parts(body.as_bytes(), &parts, format)
                        .err()
                        .unwrap_or_else(|| panic!("accepted {body}"));
                    assert!(err.contains(want), "{body}: {err:?}, not {want:?}");
                }
            }
        }
        let bad_utf8 = b"{\"status\":{\"type\":\"snapshotting\"},\"values\":[{\"component\":\"\",\"table\":\"t\",\"ts\":1,\"deleted\":false,\"value\":{\"_id\":\"a\xff\"}}],\"pagination\":{\"nextCursor\":\"c\"}}";
        assert!(parse(bad_utf8, ValueFormat::Json).is_err());
        // A page cut anywhere is refused (the HTTP client counts that as the network's fault).
        let page = page_of(&[envelope("", "t", 1, false, r#"{"_id":"a"}"#)]);
        for cut in 0..page.len() {
            assert!(
                parse(&page.as_bytes()[..cut], ValueFormat::Json).is_err(),
                "{cut}"
            );
        }
        // Members other than `values` are bounded together, not only one by one.
        let mut p = SyncPageParser::new(ValueFormat::Json);
        p.feed(b"{", |_, _| {}).unwrap();
        let field = format!(r#""x":"{}","#, "y".repeat(1 << 20));
        let refused = (0..40).any(|_| p.feed(field.as_bytes(), |_, _| {}).is_err());
        assert!(refused);
    }

    /// The bridge for implementations that hold a page whole: the sink gets its values as
    /// `document_deltas` values, the end the rest.
    #[tokio::test]
    async fn whole_pages_reach_the_sink_through_the_default() {
        struct Whole;
        impl DataSyncApi for Whole {
            async fn data_sync(
                &self,
                _: &Selection,
                _: Option<&DataSyncCursor>,
            ) -> Result<SyncPage, ConvexError> {
                Ok(SyncPage {
                    status: SyncStatus::UpToDate(SnapshotTs(9)),
                    truncates: vec![TableRef::root("t")],
                    values: vec![SyncValue {
                        table: TableRef::root("t"),
                        id: "a".into(),
                        ts: 8,
                        deleted: true,
                        raw: br#"{"_component":"","_table":"t","_ts":8,"_deleted":true,"_id":"a"}"#
                            .to_vec(),
                    }],
                    sync_id: "s".into(),
                    next: DataSyncCursor("n".into()),
                })
            }
            async fn cursor_from_deltas(
                &self,
                _: &Selection,
                _: DeltaCursor,
            ) -> Result<DataSyncCursor, ConvexError> {
                Ok(DataSyncCursor("c".into()))
            }
        }
        struct Sink(Vec<Got>, usize);
        impl PageSink for Sink {
            fn value(&mut self, raw: &[u8], meta: &ValueMeta<'_>) -> anyhow::Result<()> {
                self.0.push(got(raw, meta));
                Ok(())
            }
            async fn flush(&mut self) -> anyhow::Result<()> {
                self.1 += 1;
                Ok(())
            }
        }
        let mut sink = Sink(Vec::new(), 0);
        let end = Whole
            .data_sync_page(&Selection::new(), None, &mut sink)
            .await
            .unwrap();
        assert_eq!(end.values, 1);
        assert_eq!(end.status, SyncStatus::UpToDate(SnapshotTs(9)));
        assert_eq!(end.next.0, "n");
        assert_eq!(sink.0[0].deleted, Some(true));
        assert_eq!((sink.0[0].id.as_str(), sink.0[0].ts), ("a", 8));
        assert!(sink.1 >= 1);
        assert_eq!(Whole.active_sync("s").await.unwrap(), None);
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
        let text = from_deltas_body(&s, DeltaCursor(1770335566197682922));
        let b: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(b["cursor"].as_i64(), Some(1770335566197682922));
        // Written as text: the bytes of the serialised object, members in this order.
        assert_eq!(
            text,
            json!({"cursor": 1770335566197682922_i64, "selection": s.to_json()}).to_string()
        );
    }

    /// `list_active_syncs` answers as the API documents them (doc §7), with members this
    /// client does not know, other syncs in states it does not know, and a next page.
    #[test]
    fn active_syncs_are_found_by_id() {
        let body = br#"{"syncs":[
            {"syncId":"fivetran-1","lastUpdated":1770335566197,"status":{"type":"backfilling","x":1}},
            {"syncId":"airbyte-2b1c","lastUpdated":1770335566197,"extra":true,"status":{"type":"snapshotting","numTablesSynced":2,"totalTables":12,"currentComponent":"","currentTable":"messages","numDocumentsInCurrentTable":143000,"totalDocumentsInCurrentTable":890000,"numDocumentsSynced":1230000,"totalDocuments":2900000,"eta":5}},
            {"syncId":"airbyte-3","lastUpdated":1770335566000,"status":{"type":"stale","totalTables":3,"numDocumentsSynced":40,"syncedTs":1770335566197682922}},
            {"syncId":"airbyte-4","lastUpdated":1.770335566e12,"status":{"type":"upToDate","totalTables":1,"numDocumentsSynced":null,"syncedTs":1770335566197682922}}
        ],"pagination":{"hasMore":true,"nextCursor":"p2"}}"#;
        let page = parse_active_syncs(body, "airbyte-2b1c").unwrap();
        assert_eq!(page.next.as_deref(), Some("p2"));
        let sync = page.found.unwrap();
        assert_eq!(sync.last_updated_ms, 1770335566197);
        assert_eq!(
            sync.progress,
            SyncProgress::Snapshotting {
                num_tables_synced: 2,
                total_tables: 12,
                current_component: String::new(),
                current_table: "messages".into(),
                num_documents_in_current_table: 143000,
                total_documents_in_current_table: 890000,
                num_documents_synced: 1230000,
                total_documents: 2900000,
            }
        );
        assert_eq!(
            sync.progress.to_string(),
            "snapshotting messages (143000 of ~890000 documents), 2 of 12 tables done, 1230000 of ~2900000 documents synced"
        );
        let stale = parse_active_syncs(body, "airbyte-3")
            .unwrap()
            .found
            .unwrap();
        assert_eq!(
            stale.progress,
            SyncProgress::Stale {
                total_tables: 3,
                num_documents_synced: 40,
                synced_ts: SnapshotTs(1770335566197682922)
            }
        );
        let up = parse_active_syncs(body, "airbyte-4")
            .unwrap()
            .found
            .unwrap();
        assert_eq!(up.last_updated_ms, 1770335566000);
        assert!(matches!(
            up.progress,
            SyncProgress::UpToDate {
                num_documents_synced: 0,
                ..
            }
        ));
        assert!(up
            .progress
            .to_string()
            .starts_with("up to date at 1770335566197682922"));
        // Not listed: the next page, or none.
        let missing = parse_active_syncs(body, "nope").unwrap();
        assert_eq!((missing.found, missing.next.as_deref()), (None, Some("p2")));
        let last =
            parse_active_syncs(br#"{"syncs":[],"pagination":{"hasMore":false}}"#, "x").unwrap();
        assert_eq!(
            last,
            ActiveSyncsPage {
                found: None,
                next: None
            }
        );
        // The sync asked for in a state this client does not know, or a body that is not a list.
        assert!(parse_active_syncs(body, "fivetran-1").is_err());
        assert!(parse_active_syncs(b"{}", "x").is_err());
        assert!(parse_active_syncs(b"[]", "x").is_err());
    }
}
