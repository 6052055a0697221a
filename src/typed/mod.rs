//! Typed columns: every Convex column declared as what it holds, in the form Airbyte
//! destinations and PyAirbyte type, and every record's values checked against what the
//! connection declares.
//!
//! - [`schema`] turns Convex's `json_schemas` (the legacy `json` description: int64 as a
//!   "base10 string", special floats as `anyOf [number, string]`, nullable fields as `anyOf`
//!   with null) into the types destinations map: `integer`, `number`, `["null", X]`.
//! - [`declared`] reads the kinds of JSON value each top-level column accepts from a
//!   configured catalog's schema, and finds the values of a document that do not fit.
//!
//! The values themselves come in Convex's `export_json` encoding, which tells every type apart
//! (`convex::encoding`); the record writer re-encodes the few documents that need it.

pub mod declared;
pub mod schema;
