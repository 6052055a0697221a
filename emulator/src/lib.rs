//! An in-memory emulator of the Convex streaming export HTTP API (`/api/list_snapshot`,
//! `/api/document_deltas`, `/api/json_schemas`, ..., and the Data Sync API
//! `/api/v1/data/sync`, `/api/v1/data/list_active_syncs`), for tests and benchmarks of
//! `source-convex` where no real Convex deployment can be reached.
//!
//! ```no_run
//! use convex_emulator::{Config, EmulatorServer};
//! use serde_json::json;
//!
//! let emu = EmulatorServer::start(Config::default()).unwrap();
//! let dep = emu.deployment().clone();
//! let ts = dep
//!     .transaction(|tx| {
//!         tx.insert("", "users", json!({"name": "ada", "age": {"$integer": "JAAAAAAAAAA="}}))?;
//!         Ok(())
//!     })
//!     .unwrap();
//! assert_eq!(dep.head(), ts);
//! println!("{} {}", emu.url(), emu.access_key());
//! ```
//!
//! See README.md for the HTTP control API (`/_emulator/`), the CLI and the fault rules.

// Leaves: shared types and helpers that depend on no other module of the crate (or only
// on other leaves).
mod api_error;
mod error;
mod ids;
mod lifecycle;
mod locks;
mod names;
mod selection_grammar;
mod settings;
mod shape;
mod tls;
mod value;
mod version;

// The data, and the reads computed from it.
mod data_sync;
mod export;
mod schema;
mod store;

// Serving and observing it.
mod faults;
mod requests;
mod snapshot_cost;

// The handle on all of it, and what drives it.
mod churn;
mod deployment;
mod generator;

// HTTP: the Convex endpoints, the control API and the server.
mod control;
mod endpoint;
mod http;
mod server;

pub use deployment::Deployment;
pub use error::Error;
pub use faults::{FaultKind, FaultRule};
pub use generator::{table_names, ChangeSummary, GenerateSpec};
pub use requests::{RequestRecord, RequestStats};
pub use server::{serve, serve_tls, Config, EmulatorServer};
pub use settings::{Settings, SELF_HOSTED_DOCKER_RETENTION_MS};
pub use store::{TableInfo, Transaction};
pub use tls::{self_signed as self_signed_tls, Tls};
pub use value::{Fields, Format, IntoFields, Value, ValueError};

/// Generates data into a deployment (see [`GenerateSpec`]).
pub fn generate(dep: &Deployment, spec: &GenerateSpec) -> Result<ChangeSummary, Error> {
    generator::generate(dep, spec)
}

/// Applies `count` generated changes (inserts, updates, deletes; some multi-document
/// transactions) over the deployment's user tables.
pub fn apply_changes(dep: &Deployment, count: usize, seed: u64) -> Result<ChangeSummary, Error> {
    generator::changes(dep, count, seed)
}

/// Builds a Convex document id string from a table number and a 16-byte internal id
/// (exposed for tests that need well-formed ids of their own).
pub fn document_id(table_number: u32, internal: &[u8; 16]) -> String {
    ids::document_id(table_number, internal)
}
