//! One function per command, each reading its inputs, doing its work and writing its
//! messages; `main` only dispatches.

use std::path::Path;
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::cli::CatalogMode;
use crate::config::{self, parse_config, read_json_file, ColumnTypes, Config};
use crate::error::{self, classify, UserError};
use crate::output::Output;
use crate::protocol::{
    self, CheckStatus, ConfiguredCatalog, ConnectionStatus, FailureType, Message,
};
use crate::state::InputState;
use crate::{catalog, discovery, listener, messages, read};
use convex::data_sync::DataSyncApi;
use convex::encoding::ValueFormat;
use convex::http::{HttpConvex, RetryPolicy};
use convex::ConvexApi;

/// `spec`: the config specification, compacted onto one line.
pub fn spec(out: &Output) -> anyhow::Result<bool> {
    let spec: &RawValue = serde_json::from_str(config::SPEC_JSON)?;
    // Compact it: stdout takes one message per line.
    let compact: Box<RawValue> =
        serde_json::value::to_raw_value(&serde_json::from_str::<serde_json::Value>(spec.get())?)?;
    out.send_blocking(Message::Spec { spec: &compact }.to_line())?;
    Ok(true)
}

/// `discover`: the deployment's tables as streams.
pub fn discover(config: &Path, out: &Output) -> anyhow::Result<bool> {
    let (_, streams) = discovered_streams(config, out)?;
    out.send_blocking(
        Message::Catalog {
            catalog: protocol::Catalog { streams: &streams },
        }
        .to_line(),
    )?;
    Ok(true)
}

/// `catalog`: a configured catalog of every stream (or of `only`), in one sync mode.
pub fn catalog(
    config: &Path,
    sync_mode: CatalogMode,
    only: &[String],
    out: &Output,
) -> anyhow::Result<bool> {
    let (_, streams) = discovered_streams(config, out)?;
    let (sync, destination) = match sync_mode {
        CatalogMode::Incremental => ("incremental", "append_dedup"),
        CatalogMode::FullRefresh => ("full_refresh", "overwrite"),
    };
    let names: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
    if let Some(unknown) = only.iter().find(|n| !names.contains(&n.as_str())) {
        return Err(UserError::config(catalog::unknown_stream(unknown, &names)).into());
    }
    let configured: Vec<serde_json::Value> = streams
        .iter()
        .filter(|s| only.is_empty() || only.contains(&s.name))
        .map(|s| {
            serde_json::json!({"stream": s, "sync_mode": sync, "destination_sync_mode": destination})
        })
        .collect();
    // One line, as every line this connector prints is one JSON value.
    let text = serde_json::to_string(&serde_json::json!({ "streams": configured }))?;
    out.send_blocking(format!("{text}\n").into_bytes())?;
    Ok(true)
}

/// `read`: the configured streams, from the saved state.
pub fn read(
    config: &Path,
    catalog: &Path,
    state: Option<&Path>,
    debug: bool,
    out: &Output,
) -> anyhow::Result<bool> {
    let catalog = load_catalog(catalog)?;
    let (config, state) =
        match load_config(config, out).and_then(|c| Ok((c, load_state(state, out)?))) {
            Ok(loaded) => loaded,
            Err(e) => {
                out.send_blocking(never_started(&catalog))?;
                return Err(e);
            }
        };
    if config.concurrency.is_some() {
        let note = messages::CONCURRENCY_IGNORED;
        out.send_blocking(Message::log(protocol::LogLevel::Info, note).to_line())?;
    }
    let activity = Arc::new(listener::Activity::default());
    let listener = Arc::new(listener::LogListener {
        out: out.clone(),
        activity: activity.clone(),
    });
    let api = Arc::new(
        HttpConvex::new(&config.client_settings(), Some(listener))?
            .with_value_format(value_format(config.column_types))
            .with_buffer_pool(out.buffer_pool()),
    );
    let options = read::ReadOptions {
        debug,
        changes: read::changes::ChangeOptions {
            every_revision: config.every_revision,
            buffer_bytes: config.change_buffer_bytes,
            checkpoint_records: read::changes::CHECKPOINT_RECORDS,
        },
        api: config.api,
        progress_every: progress_every(),
        column_types: config.column_types,
        activity,
    };
    let out = out.clone();
    let threads = if read::plan::changes_only(&catalog, &state) {
        Threads::One
    } else {
        Threads::Network
    };
    runtime(threads)?.block_on(read::read(api, out, catalog, state, options))
}

/// The statuses of streams a read could not start (bad config or state): each known stream
/// still gets a terminal status before the error, STARTED first (a terminal status alone
/// breaks strict checkers).
fn never_started(catalog: &ConfiguredCatalog) -> Vec<u8> {
    let mut buf = Vec::new();
    for s in &catalog.streams {
        let desc = protocol::StreamDescriptor {
            name: s.stream.name.clone(),
            namespace: s.stream.namespace.clone().filter(|n| !n.is_empty()),
        };
        Message::stream_status(&desc, protocol::StreamStatusKind::Started).write_line(&mut buf);
        Message::stream_status(&desc, protocol::StreamStatusKind::Incomplete).write_line(&mut buf);
    }
    buf
}

/// How often a long read logs its progress: every 15 s, or every `SOURCE_CONVEX_PROGRESS_MS`
/// milliseconds (for watching a short read, and for tests).
fn progress_every() -> std::time::Duration {
    std::env::var("SOURCE_CONVEX_PROGRESS_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(read::emit::PROGRESS_EVERY, std::time::Duration::from_millis)
}

/// Typed columns read `export_json`, the encoding that tells every Convex type apart.
fn value_format(types: ColumnTypes) -> ValueFormat {
    match types {
        ColumnTypes::Typed => ValueFormat::ExportJson,
        ColumnTypes::Legacy => ValueFormat::Json,
    }
}

/// Which threads run a command's async work (stdout has its own thread, `output.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Threads {
    /// The engine and the network on one thread: a page's request, chunks and values never
    /// wake another thread. For commands of a few requests, and reads of changes only, whose
    /// pages are small: 10k changes on 2 × 100k took 14 % less CPU than with workers.
    One,
    /// Worker threads read the network while the engine parses: snapshot pages (1,024
    /// documents) and a data sync's snapshot are CPU-bound bulk, and the next page's body
    /// arrives while this one is written (on one thread, a full refresh reached 0.89× of
    /// transfer-only's records/s, with workers 1.06×).
    Network,
}

fn runtime(threads: Threads) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::Network => tokio::runtime::Builder::new_multi_thread(),
    };
    Ok(builder.enable_all().build()?)
}

/// Reads and validates the config; a plain-http URL to another machine is allowed (a private
/// network's backend) but said to be unencrypted.
fn load_config(path: &Path, out: &Output) -> anyhow::Result<Config> {
    let value = read_json_file(path, "config")?;
    let config = parse_config(&value)?;
    warn_if_cleartext(&config, out)?;
    Ok(config)
}

fn warn_if_cleartext(config: &Config, out: &Output) -> anyhow::Result<()> {
    if let Some(warning) = config.deployment_url.cleartext_warning() {
        out.send_blocking(Message::log(protocol::LogLevel::Warn, &warning).to_line())?;
    }
    Ok(())
}

/// The deployment's streams as `discover` lists them.
fn discovered_streams(
    path: &Path,
    out: &Output,
) -> anyhow::Result<(Config, Vec<protocol::AirbyteStream>)> {
    let config = load_config(path, out)?;
    let api = HttpConvex::new(&config.client_settings(), None)?
        .with_retry_policy(RetryPolicy::interactive());
    let described = runtime(Threads::One)?
        .block_on(discovery::describe(&api))
        .map_err(|e| anyhow::Error::new(e).context("discovering tables"))?;
    if let Some(w) = &described.warning {
        out.send_blocking(Message::log(protocol::LogLevel::Warn, w).to_line())?;
    }
    let streams = catalog::build_catalog(described.schemas, config.column_types);
    Ok((config, streams))
}

/// The configured catalog, in the protocol's form or as a bare list of its streams.
fn load_catalog(path: &Path) -> anyhow::Result<ConfiguredCatalog> {
    let value = match read_json_file(path, "catalog")? {
        serde_json::Value::Array(streams) => serde_json::json!({ "streams": streams }),
        other => other,
    };
    if catalog::is_discovered_catalog(&value) {
        return Err(UserError::config(messages::catalog_is_discover_output()).into());
    }
    let catalog = serde_json::from_value(value)
        .map_err(|e| UserError::config(messages::catalog_invalid(e)))?;
    catalog::check_streams_unique(&catalog)?;
    Ok(catalog)
}

/// Reads the state file; entries that name no stream are said in a WARN, not dropped silently
/// (they would otherwise mean a full resync without a word).
fn load_state(path: Option<&Path>, out: &Output) -> anyhow::Result<InputState> {
    let Some(path) = path else {
        return Ok(InputState::default());
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        UserError::config(format!(
            "cannot read the state file {}: {e}",
            path.display()
        ))
    })?;
    let state = InputState::parse(&text)?;
    for entry in state.unrecognised() {
        let msg =
            format!("the state file holds {entry}; it was ignored (no stream resumes from it)");
        out.send_blocking(Message::log(protocol::LogLevel::Warn, &msg).to_line())?;
    }
    Ok(state)
}

/// `check`: a config or credential problem is an answer (FAILED, exit 0), not a crash.
pub fn check(path: &Path, out: &Output) -> anyhow::Result<bool> {
    let status = |status, message: Option<&str>| {
        Message::ConnectionStatus {
            connection_status: ConnectionStatus { status, message },
        }
        .to_line()
    };
    let config = match read_json_file(path, "config")
        .and_then(|v| parse_config(&v).map_err(anyhow::Error::from))
    {
        Ok(c) => c,
        Err(e) => {
            let c = classify(&e);
            if c.failure_type != FailureType::ConfigError {
                return Err(e);
            }
            out.send_blocking(status(CheckStatus::Failed, Some(&c.message)))?;
            return Ok(true);
        }
    };
    warn_if_cleartext(&config, out)?;
    let api = HttpConvex::new(&config.client_settings(), None)?
        .with_retry_policy(RetryPolicy::interactive());
    // `json_schemas` answering 200 proves the key, the data-view permission and that streaming
    // export is on the plan: the same request the Python connector made, so a complete check.
    let rt = runtime(Threads::One)?;
    match rt.block_on(discovery::describe(&api)) {
        Ok(described) => {
            if let Some(w) = &described.warning {
                out.send_blocking(Message::log(protocol::LogLevel::Warn, w).to_line())?;
            }
            match rt.block_on(check_data_sync(&api, config.api)) {
                Ok(()) => out.send_blocking(status(CheckStatus::Succeeded, None))?,
                Err(message) => out.send_blocking(status(CheckStatus::Failed, Some(&message)))?,
            }
        }
        Err(e) => {
            let message = format!(
                "Connection to Convex via json_schemas endpoint failed: {}",
                error::detail_with_hint(&e)
            );
            out.send_blocking(status(CheckStatus::Failed, Some(&message)))?
        }
    }
    Ok(true)
}

/// With `api: data_sync`, that the deployment serves the Data Sync API to this key: Convex
/// converts the head timestamp into a cursor for a selection of no table (nothing is read,
/// and no sync starts).
async fn check_data_sync(api: &HttpConvex, which: config::Api) -> Result<(), String> {
    if which != config::Api::DataSync {
        return Ok(());
    }
    let fail = |e: &dyn std::fmt::Display| {
        format!("Connection to Convex's Data Sync API (api: data_sync) failed: {e}")
    };
    let head = api.head().await.map_err(|e| fail(&format!("{e:#}")))?;
    api.cursor_from_deltas(&convex::Selection::new(), convex::DeltaCursor(head.0))
        .await
        .map(|_| ())
        .map_err(|e| fail(&error::detail_with_hint(&e)))
}
