//! The texts users read: LOG lines, TRACE errors, check failures and config errors longer
//! than a line, each named by the situation it is said in. Short ones stay where they are said.
//!
//! One remedy, one wording: a stream is "refreshed", the verb of Airbyte's UI, always with
//! how to do it ([`REFRESH`], [`REFRESH_STREAM`]). No text here may hold the access key.

use std::fmt::Display;

/// [`REFRESH`]'s text, for `concat!` in the constants below.
macro_rules! refresh {
    () => {
        "Airbyte: Refresh or Clear data; PyAirbyte: read(force_full_refresh=True)"
    };
}

/// [`REFRESH_STREAM`]'s text, for `concat!` in the constants below.
macro_rules! refresh_stream {
    () => {
        concat!("refresh this stream (", refresh!(), ")")
    };
}

// ---------------------------------------------------------------------------------------------
// The refresh remedy
// ---------------------------------------------------------------------------------------------

/// How to refresh a stream, in parentheses after "until this stream is refreshed".
pub const REFRESH: &str = refresh!();

/// The remedy itself, as an imperative.
pub const REFRESH_STREAM: &str = refresh_stream!();

// ---------------------------------------------------------------------------------------------
// Config and state
// ---------------------------------------------------------------------------------------------

/// `concurrency` in a config: said once per read, at INFO (the setting does no harm).
pub const CONCURRENCY_IGNORED: &str = "The concurrency setting is deprecated since 0.6.0 and ignored: a read makes one change walk and one snapshot walk at a time, the way Convex serves data. Remove it from the configuration.";

/// A config that is not a JSON object: a config error (after "Config validation error: ").
pub const CONFIG_NOT_AN_OBJECT: &str = "the config must be a JSON object of settings, like {\"deployment_url\": \"https://<name>.convex.cloud\", \"access_key\": \"…\"}";

/// An access_key of `len` bytes, longer than any deploy key (`max`): a config error.
pub fn access_key_too_long(len: usize, max: usize) -> String {
    format!(
        "Config validation error: access_key is {len} bytes long, longer than any Convex deploy key ({max} at most); paste the deploy key exactly as the Convex dashboard shows it"
    )
}

/// An access_key holding `what` ("a space or line break", …), which no deploy key has: a
/// config error.
pub fn access_key_bad_character(what: &str) -> String {
    format!(
        "Config validation error: access_key contains {what}, which no Convex deploy key has; paste the deploy key exactly as the Convex dashboard shows it"
    )
}

/// A state file whose `value`-th JSON value (from 1) does not parse: a config error.
pub fn state_file_not_json(value: usize, error: impl Display) -> String {
    format!(
        "the state file is not valid JSON (value {value}: {error}); pass the state this connector saved (its STATE messages, as a JSON array or one per line), or none to start over"
    )
}

/// A saved stream state of a `state_version` this connector does not write (it writes 1 and
/// `latest`): why the state cannot be used.
pub fn state_version_unknown(version: impl Display, latest: u64) -> String {
    format!(
        "state_version {version} is not one this connector writes (1 or {latest}); it was saved by a newer version: upgrade the connector, or {REFRESH_STREAM}"
    )
}

/// A saved state of `stream` that does not read as a position (`why`): the stream's config
/// error.
pub fn saved_state_unusable(stream: impl Display, why: impl Display) -> String {
    format!(
        "the saved state of stream {stream} cannot be used ({why}); {REFRESH_STREAM} to sync it from scratch"
    )
}

// ---------------------------------------------------------------------------------------------
// Catalogs and discovery
// ---------------------------------------------------------------------------------------------

/// The form of a configured catalog, shown by the errors about catalog files.
const CONFIGURED_CATALOG_FORM: &str = r#"{"streams": [{"stream": {"name": "users", "json_schema": {}}, "sync_mode": "incremental", "destination_sync_mode": "append_dedup"}]}; `source-convex catalog --config config.json` writes one of every stream"#;

/// A catalog file that is `discover`'s output, given to `read`: a config error.
pub fn catalog_is_discover_output() -> String {
    format!(
        "the catalog file is discover's output (streams without a sync mode), not a configured catalog: wrap each stream as {{\"stream\": <the stream>, \"sync_mode\": \"incremental\" or \"full_refresh\"}}, like {CONFIGURED_CATALOG_FORM}"
    )
}

/// A configured catalog that does not parse (`error`): a config error.
pub fn catalog_invalid(error: impl Display) -> String {
    format!(
        "the configured catalog is invalid ({error}); each stream needs a `stream.name` and a `sync_mode` of full_refresh or incremental, like {CONFIGURED_CATALOG_FORM}"
    )
}

/// A stream name the deployment has no table for and that was never synced: a config error.
/// `did_you_mean`: empty or " (did you mean …?)"; `streams`: the deployment's stream names,
/// listed.
pub fn unknown_stream(name: &str, did_you_mean: &str, streams: &str) -> String {
    format!(
        "stream {name:?} is not a table of this deployment{did_you_mean}; its streams are {streams}. Use a name `discover` lists (`source-convex catalog --config config.json` writes a configured catalog of them)"
    )
}

/// A configured stream whose table (synced before) the deployment no longer has: the
/// stream's config error.
pub fn table_gone(table: impl Display) -> String {
    format!(
        "table {table} is not in the deployment any more (deleted or renamed); refresh the source schema and update the connection's streams"
    )
}

/// `json_schemas` refused to describe the deployment (`refusal`), so streams were listed with
/// open types from `get_table_column_names`: a WARN of `check`, `discover` and `read`.
pub fn table_shapes_undescribable(refusal: impl Display) -> String {
    format!(
        "Convex could not describe this deployment's table shapes ({refusal}). Streams are listed from get_table_column_names instead, with open types: every column accepts any value, and destinations store nested values as JSON or text. To get typed columns, declare the tables in the deployment's schema.ts (defineSchema), or keep documents narrower (at most 62 user fields per object, identifier-like keys, and few distinct shapes per table)."
    )
}

// ---------------------------------------------------------------------------------------------
// Errors' hints: what to do, after Convex's own words (`error::detail_with_hint`)
// ---------------------------------------------------------------------------------------------

/// Convex refused the access key (BadAdminKey, BadDeployKey).
pub const HINT_ACCESS_KEY_REFUSED: &str = " — the access key is not valid for this deployment: generate a deploy key for it in the Convex dashboard (Settings → URL & Deploy Key) and paste it as access_key.";

/// The Data Sync API answered StreamingExportNotEnabled: not on the deployment's plan.
pub const HINT_DATA_SYNC_NOT_ON_PLAN: &str = " — the Data Sync API is not available on this deployment's plan (it needs the Pro plan on Convex Cloud); see https://www.convex.dev/plans, or set api to streaming_export.";

/// The streaming export API answered StreamingExportNotEnabled: not on the deployment's plan.
pub const HINT_STREAMING_EXPORT_NOT_ON_PLAN: &str =
    " — streaming export is not available on this deployment's plan; see https://www.convex.dev/plans.";

/// Convex answered BadFormat to `export_json`: a backend older than typed columns.
pub const HINT_NO_EXPORT_JSON: &str = " — this Convex backend does not know the export_json value format that typed columns read (an older self-hosted backend): upgrade the backend, or set column_types to legacy.";

/// Convex answered DataSyncCursorExpired to a saved cursor.
pub const HINT_DATA_SYNC_CURSOR_EXPIRED: &str = concat!(
    " — the saved Data Sync cursor is older than Convex keeps (3 days on Convex Cloud); ",
    refresh_stream!(),
    " to sync it again."
);

/// Convex answered InvalidDataSyncCursor to a saved cursor.
pub const HINT_DATA_SYNC_CURSOR_FOREIGN: &str = concat!(
    " — the saved Data Sync cursor is not one this deployment made; check deployment_url, or ",
    refresh_stream!(),
    "."
);

/// Convex answered InvalidDataSyncSelection.
pub const HINT_SELECTION_REFUSED: &str = " — Convex refused the table or column selection; run discover again and reconfigure the connection's streams.";

/// Convex answered SnapshotTooOld or InvalidWindowToReadDocuments to a saved position.
pub const HINT_HISTORY_EXPIRED: &str = concat!(
    " — the saved position is older than Convex keeps history; ",
    refresh_stream!(),
    " to resync it."
);

/// A Data Sync endpoint answered 404: a backend older than the Data Sync API.
pub const HINT_NO_DATA_SYNC_API: &str = " — this Convex backend does not serve the Data Sync API (self-hosted backends before August 2026 lack it): upgrade the backend, or set api to streaming_export.";

/// Another endpoint answered 404: deployment_url is not a Convex deployment.
pub const HINT_NO_API_AT_URL: &str = " — no Convex API answered at this path: check deployment_url (it looks like https://<name>.convex.cloud).";

/// The deployment's TLS certificate was not trusted.
pub const HINT_TLS_UNTRUSTED: &str = " — the deployment's TLS certificate was not trusted: check deployment_url; behind a proxy that re-signs traffic, add its CA to the system's CA bundle (or point SSL_CERT_FILE at a bundle that has it).";

/// Connecting kept failing after the retries.
pub const HINT_CANNOT_CONNECT: &str = " — could not connect after several retries: check deployment_url and that this machine can reach it.";

/// Requests kept timing out after the retries.
pub const HINT_TIMED_OUT: &str = " — Convex did not answer in time after several retries; raise request_timeout_seconds if the deployment is slow.";

// ---------------------------------------------------------------------------------------------
// The read
// ---------------------------------------------------------------------------------------------

/// How `api: auto` reads incremental streams, for [`read_intro`].
pub const READ_VIA_DATA_SYNC_WHERE_SERVED: &str = "one Data Sync per incremental stream where the deployment serves Convex's Data Sync API, else one change walk for them";

/// The INFO that opens a read: how many streams, and `how` incremental ones are read.
pub fn read_intro(streams: usize, how: &str) -> String {
    format!(
        "Reading {streams} stream(s) from Convex: {how}, then one snapshot walk for the streams that need a snapshot"
    )
}

/// The INFO that ends a stream: what it sent, and how fast.
pub fn stream_summary(
    stream: impl Display,
    records: u64,
    deletes: u64,
    checkpoints: u64,
    bytes: u64,
    seconds: f64,
) -> String {
    format!(
        "Stream {stream}: {records} records ({deletes} deletes) in {checkpoints} checkpoints, {:.1} MB of documents, {seconds:.2} s, {:.0} records/s",
        bytes as f64 / 1e6,
        records as f64 / seconds.max(1e-9)
    )
}

/// A position Convex answered that a later read could not resume from (`why`): the stream's
/// transient error, instead of its STATE.
pub fn position_not_resumable(stream: impl Display, why: impl Display) -> String {
    format!(
        "Stream {stream}: Convex answered a position this connector could not resume from ({why}), so it was not saved; sync again: the next read resumes from the last saved position. If it happens again, report it to Convex support."
    )
}

// ---------------------------------------------------------------------------------------------
// The change walk
// ---------------------------------------------------------------------------------------------

/// The change walk of `selection` held `documents` changed documents (`held_bytes`) and reached
/// the change buffer (`buffer_bytes`): a WARN, and the walk ends.
pub fn change_buffer_full(
    selection: impl Display,
    documents: usize,
    held_bytes: usize,
    buffer_bytes: usize,
) -> String {
    format!(
        "Stopped reading changes of {selection}: {documents} changed documents ({:.1} MiB) reached this read's change buffer (change_buffer_mb = {}). They are delivered now, one revision each; the next read continues from there.",
        held_bytes as f64 / (1024.0 * 1024.0),
        buffer_bytes / (1024 * 1024)
    )
}

/// `changes` revisions came for documents `stream` already sent in this read: an INFO, and
/// the next read delivers them.
pub fn changes_deferred(stream: impl Display, changes: usize) -> String {
    format!(
        "Stream {stream}: {changes} changes came for documents this read had already sent (Convex re-sends documents that change while it snapshots); a read sends each document once, so the next read delivers them."
    )
}

/// `document_deltas` answered a cursor that does not move past `asked`: a system error.
pub fn deltas_cursor_stuck(
    selection: impl Display,
    has_more: bool,
    cursor: impl Display,
    asked: i64,
) -> String {
    format!(
        "document_deltas of {selection} answered hasMore={has_more} with a cursor ({cursor}) that does not advance past {asked}; stopping instead of reading the same changes forever"
    )
}

/// A stream's saved `position` is later than the deployment's `latest` timestamp: a WARN, and
/// the table is read again from a fresh snapshot.
pub fn saved_position_ahead(stream: impl Display, position: i64, latest: impl Display) -> String {
    format!(
        "Stream {stream}: its saved position ({position}) is later than anything this deployment has written (its latest is {latest}): the state comes from another deployment (deployment_url changed), or this deployment was restored from a backup. Re-reading the table from a fresh snapshot now; rows the destination holds that this deployment does not have stay there until this stream is refreshed ({REFRESH})."
    )
}

/// A stream's saved position is older than the change log (InvalidWindowToReadDocuments): a
/// WARN, and the table is read again from a fresh snapshot.
pub fn change_log_expired(stream: impl Display) -> String {
    format!(
        "Stream {stream}: the saved position is older than Convex's change-log retention (InvalidWindowToReadDocuments). Re-reading the whole table from a fresh snapshot now; documents deleted during the gap are not reported as deletes, so destinations may keep them until this stream is refreshed ({REFRESH})."
    )
}

// ---------------------------------------------------------------------------------------------
// Data Sync
// ---------------------------------------------------------------------------------------------

/// `api: data_sync` on a deployment without the Data Sync API (`error`, the 404): the
/// stream's config error.
pub fn data_sync_not_served(error: impl Display) -> String {
    format!(
        "this deployment does not serve Convex's Data Sync API ({error:#}): it is a self-hosted backend older than 2026-07-10. Set api to \"auto\" or \"streaming_export\" in the source's configuration, or upgrade the backend."
    )
}

/// Convex converted a stream's streaming export position `at` into a Data Sync cursor: an INFO.
pub fn moved_to_data_sync(stream: impl Display, at: impl Display) -> String {
    format!(
        "Stream {stream}: moved from the streaming export API (position {at}) to Convex's Data Sync API; Convex converted the position, so nothing is read again."
    )
}

/// Why Convex refused to convert a streaming export position it calls invalid, for
/// [`data_sync_conversion_refused`].
pub const CONVERSION_REFUSED_POSITION_AHEAD: &str = "it is later than anything this deployment has written: the state comes from another deployment (deployment_url changed), or this deployment was restored from a backup";

/// Convex refused to convert a stream's streaming export position `at` (its `detail`, and
/// `why`): a WARN, and a new Data Sync of the table starts.
pub fn data_sync_conversion_refused(
    stream: impl Display,
    at: impl Display,
    detail: impl Display,
    why: &str,
) -> String {
    format!(
        "Stream {stream}: Convex could not convert its streaming export position {at} to a Data Sync cursor ({detail}): {why}. Starting a new Data Sync of the table instead: every document is sent again, and documents deleted since that position stay in the destination until this stream is refreshed ({REFRESH})."
    )
}

/// A stream's saved Data Sync cursor expired (DataSyncCursorExpired): a WARN, and a new sync
/// of the table starts.
pub fn data_sync_cursor_expired(stream: impl Display) -> String {
    format!(
        "Stream {stream}: its Data Sync cursor has expired (DataSyncCursorExpired: the stream was not read within Convex's retention, 3 days on Convex Cloud). Starting a new sync of the table now: every document is sent again, and documents deleted in the meantime stay in the destination until this stream is refreshed ({REFRESH})."
    )
}

/// Convex refused a Data Sync cursor of `selection` it had answered in this read (`detail`):
/// a system error.
pub fn data_sync_cursor_refused_mid_read(selection: impl Display, detail: impl Display) -> String {
    format!(
        "Convex refused a Data Sync cursor of {selection} that it had answered itself earlier in this read ({detail}); nothing of the refused page was saved. Sync again: the next read resumes from the last saved position. If it happens again, report it to Convex support."
    )
}

/// Convex refused a stream's saved Data Sync cursor (`detail`): the stream's config error.
pub fn saved_data_sync_cursor_refused(stream: impl Display, detail: impl Display) -> String {
    format!(
        "Convex refused the saved Data Sync cursor of stream {stream} ({detail}): it was not made by this deployment, or it was altered. Check that deployment_url is the deployment this connection synced, or {REFRESH_STREAM}."
    )
}

/// A Data Sync page whose position a later read could not resume after (`why`): the stream's
/// transient error.
pub fn data_sync_page_not_resumable(stream: impl Display, why: impl Display) -> String {
    format!(
        "Stream {stream}: Convex answered a Data Sync page this connector could not resume after ({why}); it was not taken. Sync again: the next read resumes from the last saved position. If it happens again, report it to Convex support."
    )
}

/// Convex reports a stream's table replaced (truncated): a WARN and an analytics message.
pub fn table_replaced(stream: impl Display) -> String {
    format!(
        "Stream {stream}: Convex reports that its table was replaced (by an import, or deleted and re-created). Its current documents are read again from scratch now, but documents that vanished with the old table stay in the destination: {REFRESH_STREAM}."
    )
}

/// `pages` Data Sync pages in a row made no progress: a WARN, and the read stops there.
pub fn data_sync_stalled(stream: impl Display, pages: u32) -> String {
    format!(
        "Stream {stream}: Convex's Data Sync answered {pages} pages in a row that neither walked the table nor moved its consistent timestamp; stopped this read at its last position instead of asking forever. The next read continues from there; if this repeats, report it to Convex support."
    )
}

/// The same while the stream deferred changes and its sync was still snapshotting: the
/// stream's `transient_error`.
pub fn data_sync_stalled_while_deferring(stream: impl Display, pages: u32) -> String {
    format!(
        "Stream {stream}: Convex's Data Sync answered {pages} pages in a row that neither walked the table nor moved its consistent timestamp, while this read was still snapshotting the table and had changes to leave to the next read. A read ending here would have to resume before documents it sent, and a later delete of one of them would never reach the destination, so it fails instead: Sync again, and it continues from its last checkpoint. If this repeats, report it to Convex support."
    )
}

// ---------------------------------------------------------------------------------------------
// Fall back to streaming export
// ---------------------------------------------------------------------------------------------

/// `api: auto` on a deployment without the Data Sync API: an INFO.
pub const FALLING_BACK_TO_STREAMING_EXPORT: &str = "This deployment does not serve Convex's Data Sync API (POST /api/v1/data/sync answered 404: a self-hosted backend older than 2026-07-10), so incremental streams read through the streaming export API (list_snapshot and document_deltas).";

/// The fall back, for incremental `streams` of components, which such backends' change log
/// skips: a WARN.
pub fn component_streams_see_no_changes(streams: &[String]) -> String {
    format!(
        "Streams {} are tables of Convex components. Backends without the Data Sync API also predate Convex's fix of 2026-08-11: their document_deltas skips the tables of components, so these streams see no change after their first sync on this backend (their rows stay as first synced). Upgrade the backend, or sync these streams with Full refresh.",
        streams.join(", ")
    )
}

/// A stream saved on the Data Sync API, consistent at `at`, continues on the streaming export
/// API: an INFO.
pub fn data_sync_position_continues_on_deltas(stream: impl Display, at: impl Display) -> String {
    format!(
        "Stream {stream}: its saved position is a Data Sync cursor, consistent at {at}; on the streaming export API it continues from that timestamp through document_deltas."
    )
}

/// A stream saved on the Data Sync API while it snapshotted starts over on the streaming
/// export API: a WARN.
pub fn data_sync_snapshot_restarts_on_deltas(stream: impl Display) -> String {
    format!(
        "Stream {stream}: its saved position is a Data Sync cursor in the middle of its snapshot, which the streaming export API cannot continue; the table is read again from a fresh snapshot. Rows deleted meanwhile stay in the destination until this stream is refreshed ({REFRESH})."
    )
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

/// Why a resumed snapshot walk cannot continue (SnapshotTooNew), for [`snapshot_restarted`]
/// and [`snapshot_lost_mid_read`].
pub const SNAPSHOT_LATER_THAN_DEPLOYMENT: &str = "the saved snapshot is later than anything this deployment has written (SnapshotTooNew): the state comes from another deployment, or this one was restored from a backup";

/// A snapshot walk Convex cannot continue (`why`, `error`) after it sent documents in this
/// read: a transient error.
pub fn snapshot_lost_mid_read(why: &str, error: impl Display) -> String {
    format!(
        "{why} in the middle of this read, after documents were sent ({error:#}); sync again: the next read restarts the table from a fresh snapshot before it sends anything"
    )
}

/// A snapshot walk of `streams` Convex cannot continue (`why`) restarts before it sent
/// anything: a WARN.
pub fn snapshot_restarted(streams: &[String], why: &str) -> String {
    format!(
        "{} {}: {why}. Restarting from a fresh snapshot now; rows already synced are sent again, and rows deleted since the old snapshot are not reported as deletes.",
        if streams.len() == 1 { "Stream" } else { "Streams" },
        streams.join(", ")
    )
}

/// `list_snapshot` answered another snapshot than the one asked for: a system error.
pub fn snapshot_at_wrong_timestamp(
    selection: impl Display,
    answered: impl Display,
    asked: impl Display,
) -> String {
    format!(
        "list_snapshot of {selection} answered at snapshot {answered} instead of the requested {asked}; the pages would not be consistent"
    )
}

/// `list_snapshot` answered a cursor it had answered before in the walk: a system error.
pub fn snapshot_cursor_repeated(selection: impl Display) -> String {
    format!(
        "list_snapshot of {selection} answered a cursor it had already answered in this walk; stopping instead of sending the same records forever"
    )
}

/// A snapshot walk of `streams` streams stopped (`error`); `alone` of them go on one by one:
/// a WARN.
pub fn snapshot_walk_split(streams: usize, error: impl Display, alone: usize) -> String {
    format!(
        "The snapshot walk of {streams} streams stopped ({error:#}); {alone} go on alone from their last checkpoint."
    )
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// A document of another table (`table` in `component`) came for a stream of `asked`: a
/// system error (see get-convex/convex-backend issue #302).
pub fn table_filter_ignored(table: &str, component: &str, asked: impl Display) -> String {
    format!(
        "Convex returned a document of table {table:?} (component {component:?}) when asked for {asked}: the deployment ignored the table filter (see get-convex/convex-backend issue #302). The stream was stopped instead of mixing tables; upgrade or contact Convex support."
    )
}

/// `what` ("a document", "a change") of a table (`table` in `component`) the walk of
/// `selection` did not ask for: a system error (see get-convex/convex-backend issue #302).
pub fn table_selection_ignored(
    what: &str,
    table: &str,
    component: &str,
    selection: impl Display,
) -> String {
    format!(
        "Convex returned {what} of table {table:?} (component {component:?}) when asked for {selection}: the deployment ignored the table selection (see get-convex/convex-backend issue #302). The walk was stopped instead of mixing tables; upgrade or contact Convex support."
    )
}

/// A typed field holds a `found` value where the catalog declares `declared`: a WARN, once per
/// stream and field (the values are sent as null).
pub fn field_type_changed(stream: &str, field: &str, found: &str, declared: &str) -> String {
    format!(
        "Stream {stream}: field `{field}` holds a {found} where the configured catalog declares {declared}: the table's shape in Convex changed since its schema was discovered. Such values are sent as null, and named in each record's meta.changes, so that the destination's load does not fail. Refresh the source schema to get the field's new type, then {REFRESH_STREAM} to re-sync its earlier rows."
    )
}

/// A typed field holds NaN or an infinity: an INFO, once per stream and field (the values are
/// sent as null).
pub fn field_not_a_number(stream: &str, field: &str) -> String {
    format!(
        "Stream {stream}: field `{field}` holds NaN or an infinity, which JSON cannot carry as a number: such values are sent as null, and named in each record's meta.changes. To receive them as the strings \"NaN\", \"Infinity\" and \"-Infinity\" instead, set column_types to legacy."
    )
}
