//! The command line: the four Airbyte commands (`spec`, `check`, `discover`, `read`) and
//! `catalog`, a convenience for people running the binary by hand.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "source-convex",
    version,
    about = "Airbyte source for Convex deployments"
)]
pub struct Cli {
    /// More log messages (also enabled by LOG_LEVEL=debug).
    #[arg(long, global = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
pub enum CatalogMode {
    /// Changes only, after a first full snapshot (destination mode append_dedup).
    Incremental,
    /// Every table whole on every read (destination mode overwrite).
    FullRefresh,
}
