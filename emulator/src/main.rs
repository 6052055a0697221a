//! `convex-emulator`: serves an emulated Convex deployment until SIGTERM/SIGINT or
//! `POST /_emulator/shutdown`. Prints one JSON line `{"url":..,"access_key":..}` (plus
//! `"ca_file"` with `--tls`) on stdout once it is listening (callers read it to learn the port); logs go to stderr.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use convex_emulator::{Config, FaultRule, GenerateSpec, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "convex-emulator",
    version,
    about = "Emulated Convex streaming export API (legacy endpoints and the Data Sync API)"
)]
struct Args {
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value = "emulator-access-key")]
    access_key: String,
    /// Number of generated root tables (users, messages, orders, ..., table_N).
    #[arg(long, default_value_t = 0)]
    tables: usize,
    /// Documents per generated table.
    #[arg(long, default_value_t = 0)]
    docs: usize,
    /// Generated changes applied after the initial load.
    #[arg(long, default_value_t = 0)]
    deltas: usize,
    /// Target document size in bytes (clean JSON, metadata included).
    #[arg(long, default_value_t = 400)]
    doc_size: usize,
    /// Also generate betterAuth/users, betterAuth/sessions and rateLimiter/rateLimits.
    #[arg(long)]
    components: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Delay added to every /api/ response.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// A fault rule as JSON (repeatable), e.g. '{"endpoint":"*","kind":"rate_limit","times":2}'.
    #[arg(long = "fault")]
    faults: Vec<String>,
    #[arg(long)]
    snapshot_max_age_ms: Option<u64>,
    /// Document retention (default 14 days, Convex's knob).
    #[arg(long)]
    retention_ms: Option<u64>,
    /// Use the self-hosted Docker image's 2-day document retention (overridden by
    /// --retention-ms).
    #[arg(long)]
    self_hosted_docker_retention: bool,
    #[arg(long)]
    snapshot_page_limit: Option<usize>,
    #[arg(long)]
    deltas_page_limit: Option<usize>,
    /// Serve https (HTTP/2 and HTTP/1.1 by ALPN) with a self-made certificate; the URL line
    /// then also names the CA's PEM file ("ca_file") for the client to trust.
    #[arg(long)]
    tls: bool,
    /// Reproduce convex-backend issue #302 (tableName filter ignored).
    #[arg(long)]
    ignore_table_filter: bool,
    /// Entries per /api/v1/data/sync page (Convex: 16384; a transaction is never split).
    #[arg(long)]
    data_sync_page_entries: Option<usize>,
    /// Bytes of values per /api/v1/data/sync page (Convex: 67108864 = 64 MiB).
    #[arg(long)]
    data_sync_page_bytes: Option<usize>,
    /// Age behind head at which a data sync cursor expires (default 3 days, Convex Cloud's).
    #[arg(long)]
    data_sync_retention_ms: Option<u64>,
    /// A sync's list_active_syncs progress is refreshed at most this often (emulator clock;
    /// Convex: 5000), unless its status variant or its caught-up count changes; 0 = every page.
    #[arg(long)]
    data_sync_progress_write_interval_ms: Option<u64>,
    /// Behave as a self-hosted backend from before the Data Sync API (2026-07-10): its routes
    /// answer 404 as unknown routes do, and document_deltas skips non-root components' tables.
    #[arg(long)]
    no_data_sync: bool,
    /// list_snapshot cost model: fixed time of a snapshot iterator rebuild (a request that
    /// is not the exact continuation of the previous answer).
    #[arg(long, default_value_t = 0)]
    snapshot_build_base_ms: u64,
    /// Rebuild time per document-log row written after the request's snapshot.
    #[arg(long, default_value_t = 0)]
    snapshot_build_us_per_row: u64,
    /// Time per document a list_snapshot page returns.
    #[arg(long, default_value_t = 0)]
    snapshot_read_us_per_doc: u64,
    /// A list_snapshot page is cut once its work reaches this (Convex: 60 s).
    #[arg(long, default_value_t = 60_000)]
    snapshot_page_time_limit_ms: u64,
    /// Background churn: one `_scheduled_functions` commit every this many ms (0 = off).
    #[arg(long, default_value_t = 0)]
    system_write_interval_ms: u64,
    /// Requests taking this long get a bare 408 (Convex: 300 s).
    #[arg(long, default_value_t = 300_000)]
    request_timeout_ms: u64,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("convex-emulator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `*slot = v` if the option was given (`Some(v)`).
fn set_given<T>(slot: &mut T, given: Option<T>) {
    if let Some(v) = given {
        *slot = v;
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut settings = Settings {
        latency_ms: args.latency_ms,
        ignore_table_filter: args.ignore_table_filter,
        snapshot_build_base_ms: args.snapshot_build_base_ms,
        snapshot_build_us_per_row: args.snapshot_build_us_per_row,
        snapshot_read_us_per_doc: args.snapshot_read_us_per_doc,
        snapshot_page_time_limit_ms: args.snapshot_page_time_limit_ms,
        request_timeout_ms: args.request_timeout_ms,
        system_write_interval_ms: args.system_write_interval_ms,
        no_data_sync: args.no_data_sync,
        ..Settings::default()
    };
    if args.self_hosted_docker_retention {
        settings.retention_ms = convex_emulator::SELF_HOSTED_DOCKER_RETENTION_MS;
    }
    set_given(&mut settings.snapshot_max_age_ms, args.snapshot_max_age_ms);
    set_given(&mut settings.retention_ms, args.retention_ms);
    set_given(&mut settings.snapshot_page_limit, args.snapshot_page_limit);
    set_given(&mut settings.deltas_page_limit, args.deltas_page_limit);
    set_given(
        &mut settings.data_sync_page_entries,
        args.data_sync_page_entries,
    );
    set_given(
        &mut settings.data_sync_page_bytes,
        args.data_sync_page_bytes,
    );
    set_given(
        &mut settings.data_sync_retention_ms,
        args.data_sync_retention_ms,
    );
    set_given(
        &mut settings.data_sync_progress_write_interval_ms,
        args.data_sync_progress_write_interval_ms,
    );
    let faults = args
        .faults
        .iter()
        .map(|f| {
            serde_json::from_str::<FaultRule>(f)
                .map_err(|e| anyhow::anyhow!("invalid --fault {f:?}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = Config {
        host: args.host.clone(),
        port: args.port,
        access_key: args.access_key.clone(),
        seed: args.seed,
        generate: GenerateSpec {
            tables: args.tables,
            docs: args.docs,
            doc_size: args.doc_size,
            components: args.components,
            deltas: args.deltas,
            seed: args.seed,
        },
        settings,
        faults,
        tls: args.tls,
    };
    let started = Instant::now();
    let dep = config.deployment()?;
    let total: usize = dep.tables().iter().map(|t| t.documents).sum();
    eprintln!(
        "convex-emulator: generated {} tables, {total} documents in {:.2?}",
        dep.tables().len(),
        started.elapsed()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Handlers are installed before the URL line is printed, so a caller that signals
        // right after reading it still gets a clean shutdown.
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
        let addr = listener.local_addr()?;
        let tls = if args.tls {
            Some(convex_emulator::self_signed_tls(
                &std::env::temp_dir(),
                &args.host,
            )?)
        } else {
            None
        };
        let mut line = serde_json::json!({
            "url": format!("{}://{addr}", if tls.is_some() { "https" } else { "http" }),
            "access_key": args.access_key,
        });
        if let Some(t) = &tls {
            line["ca_file"] = serde_json::json!(t.ca_file);
        }
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
        }
        eprintln!("convex-emulator: listening on {}", line["url"]);
        let signals = dep.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            eprintln!("convex-emulator: signal received, shutting down");
            signals.request_shutdown();
        });
        match &tls {
            Some(t) => convex_emulator::serve_tls(listener, dep, t).await,
            None => convex_emulator::serve(listener, dep).await,
        }
        anyhow::Ok(())
    })?;
    rt.shutdown_background();
    Ok(())
}
