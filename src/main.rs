//! `source-convex`: an Airbyte source for Convex deployments.
//!
//! `main` → `run` → one function per command (`commands`) → exit code. stdout carries only
//! Airbyte messages, all through one writer (`output`); failures become TRACE ERROR messages
//! classified for users (`error`).

mod catalog;
mod cli;
mod commands;
mod config;
mod discovery;
mod error;
mod listener;
mod messages;
mod naming;
mod output;
mod protocol;
mod read;
mod state;
mod stdout;
mod typed;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::classify;
use crate::output::{Output, OutputClosed};
use crate::protocol::{FailureType, Message};

fn main() -> ExitCode {
    let cli = Cli::parse();
    install_panic_hook();
    let stdout = match stdout::open() {
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
        Command::Spec => commands::spec(out),
        Command::Check { config } => commands::check(&config, out),
        Command::Discover { config } => commands::discover(&config, out),
        Command::Catalog {
            config,
            sync_mode,
            streams,
        } => commands::catalog(&config, sync_mode, &streams, out),
        Command::Read {
            config,
            catalog,
            state,
        } => commands::read(&config, &catalog, state.as_deref(), debug, out),
    }
}
