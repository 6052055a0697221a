//! `source-convex`: an Airbyte source for Convex deployments.
//!
//! `main` → `run` → exit code. stdout carries only Airbyte messages, all through one writer
//! (`output`); failures become TRACE ERROR messages classified for users (`error`).

mod catalog;
mod config;
mod discovery;
mod error;
mod listener;
mod messages;
mod output;
mod protocol;
mod read;
mod state;
mod typed;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::value::RawValue;

use crate::config::{parse_config, read_json_file, ColumnTypes, Config};
use crate::error::{classify, UserError};
use crate::output::{Output, OutputClosed};
use crate::protocol::{CheckStatus, ConfiguredCatalog, ConnectionStatus, FailureType, Message};
use crate::state::InputState;
use convex::data_sync::DataSyncApi;
use convex::encoding::ValueFormat;
use convex::http::{HttpConvex, RetryPolicy};
use convex::ConvexApi;

#[derive(Parser)]
#[command(
    name = "source-convex",
    version,
    about = "Airbyte source for Convex deployments"
)]
struct Cli {
    /// More log messages (also enabled by LOG_LEVEL=debug).
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the connector's config specification.
    Spec,
    /// Check that the config can reach the deployment and read its data.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// List the deployment's tables as streams.
    Discover {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print a configured catalog of the deployment's streams, for `read --catalog` (a JSON
    /// file, not an Airbyte message).
    Catalog {
        #[arg(long)]
        config: PathBuf,
        /// How every stream is read.
        #[arg(long, value_enum, default_value_t = CatalogMode::Incremental)]
        sync_mode: CatalogMode,
        /// Only these streams (comma-separated names, as discover lists them).
        #[arg(long, value_delimiter = ',')]
        streams: Vec<String>,
    },
    /// Read the configured streams.
    Read {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        catalog: PathBuf,
        #[arg(long)]
        state: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CatalogMode {
    /// Changes only, after a first full snapshot (destination mode append_dedup).
    Incremental,
    /// Every table whole on every read (destination mode overwrite).
    FullRefresh,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    install_panic_hook();
    let stdout = match open_stdout() {
        Ok(s) => s,
        Err(e) => {
            // Rust's stdout silently drops writes to a closed descriptor: a read would lose
            // everything and exit 0. Nobody could see a message on stdout, so say it here.
            eprintln!("source-convex: stdout is not open ({e}); nothing could be reported");
            return ExitCode::FAILURE;
        }
    };
    let (out, writer) = Output::start(stdout);
    let result = run(cli, &out);
    let code = match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            if e.downcast_ref::<OutputClosed>().is_none() {
                let c = classify(&e);
                let _ = out.send_blocking(
                    Message::error(&c.message, &c.internal, c.failure_type, None).to_line(),
                );
            }
            ExitCode::FAILURE
        }
    };
    drop(out);
    match writer.finish() {
        Ok(_) => code,
        // A reader that went away (broken pipe) is not worth a message: nobody would see it.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("source-convex: writing to stdout failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// stdout as a file of its own descriptor, so every write error is seen (std's `Stdout` hides
/// `EBADF`). Fails if the process was started with stdout closed.
#[cfg(unix)]
fn open_stdout() -> std::io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    if stdout_was_closed_at_start() {
        return Err(std::io::Error::other(
            "it was closed when the process started",
        ));
    }
    Ok(std::fs::File::from(
        std::io::stdout().as_fd().try_clone_to_owned()?,
    ))
}

/// Rust's runtime reopens a closed stdout on `/dev/null` read-write before `main`, so writes
/// "succeed" into nothing. A shell's `>/dev/null` opens it write-only: read-write `/dev/null`
/// on descriptor 1 is the runtime's doing.
#[cfg(target_os = "linux")]
fn stdout_was_closed_at_start() -> bool {
    const O_ACCMODE: u32 = 0o3;
    const O_RDWR: u32 = 0o2;
    let is_null = std::fs::read_link("/proc/self/fd/1").is_ok_and(|p| p == Path::new("/dev/null"));
    let flags = std::fs::read_to_string("/proc/self/fdinfo/1")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        });
    is_null && flags.is_some_and(|f| f & O_ACCMODE == O_RDWR)
}

#[cfg(all(unix, not(target_os = "linux")))]
fn stdout_was_closed_at_start() -> bool {
    false
}

#[cfg(not(unix))]
fn open_stdout() -> std::io::Result<std::io::Stdout> {
    Ok(std::io::stdout())
}

/// Any panic still ends as a TRACE ERROR on stdout, so callers see why the sync failed.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let internal = format!("panic{location}: {payload}");
        let line = Message::error(
            "source-convex hit an internal error (a bug); please report it with this message",
            &internal,
            FailureType::SystemError,
            None,
        )
        .to_line();
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&line);
        let _ = stdout.flush();
    }));
}

/// Runs a command. `Ok(false)` = a failure already reported on stdout.
fn run(cli: Cli, out: &Output) -> anyhow::Result<bool> {
    let debug =
        cli.debug || std::env::var("LOG_LEVEL").is_ok_and(|v| v.eq_ignore_ascii_case("debug"));
    match cli.command {
        Command::Spec => {
            let spec: &RawValue = serde_json::from_str(config::SPEC_JSON)?;
            // Compact it: stdout takes one message per line.
            let compact: Box<RawValue> =
                serde_json::value::to_raw_value(&serde_json::from_str::<serde_json::Value>(
                    spec.get(),
                )?)?;
            out.send_blocking(Message::Spec { spec: &compact }.to_line())?;
            Ok(true)
        }
        Command::Check { config } => check(&config, out),
        Command::Discover { config } => {
            let (_, streams) = discover(&config, out)?;
            out.send_blocking(
                Message::Catalog {
                    catalog: protocol::Catalog { streams: &streams },
                }
                .to_line(),
            )?;
            Ok(true)
        }
        Command::Catalog {
            config,
            sync_mode,
            streams: only,
        } => {
            let (_, streams) = discover(&config, out)?;
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
        Command::Read {
            config,
            catalog,
            state,
        } => {
            let catalog = load_catalog(&catalog)?;
            let (config, state) = match load_config(&config, out)
                .and_then(|c| Ok((c, load_state(state.as_deref(), out)?)))
            {
                Ok(loaded) => loaded,
                Err(e) => {
                    // Known streams still get their terminal status before the error.
                    let mut buf = Vec::new();
                    for s in &catalog.streams {
                        let desc = protocol::StreamDescriptor {
                            name: s.stream.name.clone(),
                            namespace: s.stream.namespace.clone().filter(|n| !n.is_empty()),
                        };
                        // STARTED first: a terminal status alone breaks strict checkers.
                        Message::stream_status(&desc, protocol::StreamStatusKind::Started)
                            .write_line(&mut buf);
                        Message::stream_status(&desc, protocol::StreamStatusKind::Incomplete)
                            .write_line(&mut buf);
                    }
                    out.send_blocking(buf)?;
                    return Err(e);
                }
            };
            if config.concurrency.is_some() {
                let note = "The concurrency setting is deprecated since 0.6.0 and ignored: a read makes one change walk and one snapshot walk at a time, the way Convex serves data. Remove it from the configuration.";
                out.send_blocking(Message::log(protocol::LogLevel::Info, note).to_line())?;
            }
            let activity = Arc::new(listener::Activity::default());
            let listener = Arc::new(listener::LogListener {
                out: out.clone(),
                activity: activity.clone(),
            });
            let api = Arc::new(
                HttpConvex::new(&config.client_settings(), Some(listener))?
                    .with_value_format(value_format(config.column_types)),
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
            runtime()?.block_on(read::read(api, out, catalog, state, options))
        }
    }
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
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
fn discover(path: &Path, out: &Output) -> anyhow::Result<(Config, Vec<protocol::AirbyteStream>)> {
    let config = load_config(path, out)?;
    let api = HttpConvex::new(&config.client_settings(), None)?
        .with_retry_policy(RetryPolicy::interactive());
    let described = runtime()?
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
    const FORM: &str = r#"{"streams": [{"stream": {"name": "users", "json_schema": {}}, "sync_mode": "incremental", "destination_sync_mode": "append_dedup"}]}; `source-convex catalog --config config.json` writes one of every stream"#;
    let value = match read_json_file(path, "catalog")? {
        serde_json::Value::Array(streams) => serde_json::json!({ "streams": streams }),
        other => other,
    };
    if catalog::is_discovered_catalog(&value) {
        return Err(UserError::config(format!(
            "the catalog file is discover's output (streams without a sync mode), not a configured catalog: wrap each stream as {{\"stream\": <the stream>, \"sync_mode\": \"incremental\" or \"full_refresh\"}}, like {FORM}"
        ))
        .into());
    }
    let catalog = serde_json::from_value(value).map_err(|e| {
        UserError::config(format!(
            "the configured catalog is invalid ({e}); each stream needs a `stream.name` and a `sync_mode` of full_refresh or incremental, like {FORM}"
        ))
    })?;
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
fn check(path: &Path, out: &Output) -> anyhow::Result<bool> {
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
    let rt = runtime()?;
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
