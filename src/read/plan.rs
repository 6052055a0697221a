//! The plan of a read: which configured streams exist in the deployment, where each starts,
//! which columns it asks for, and which walk serves it (a snapshot, or the one change walk).

use serde_json::Value;

use crate::catalog::stream_schema;
use crate::config::ColumnTypes;
use crate::error::UserError;
use crate::messages;
use crate::naming::table_for;
use crate::protocol::{ConfiguredCatalog, ConfiguredStream, StreamDescriptor, SyncMode};
use crate::state::{InputState, Position};
use convex::DeploymentSchemas;

use super::emit::StreamRun;
use super::record::Columns;
use crate::typed::declared::Declared;

/// A configured stream: ready to run, or failed before it could start.
pub enum Planned {
    Run(Box<StreamRun>),
    Failed(StreamDescriptor, UserError),
}

pub fn descriptor(s: &ConfiguredStream) -> StreamDescriptor {
    StreamDescriptor {
        name: s.stream.name.clone(),
        namespace: s.stream.namespace.clone().filter(|n| !n.is_empty()),
    }
}

/// Resolves every configured stream against the saved state and the deployment's tables.
pub fn plan(
    catalog: &ConfiguredCatalog,
    state: &InputState,
    schemas: &DeploymentSchemas,
    types: ColumnTypes,
) -> Vec<Planned> {
    catalog
        .streams
        .iter()
        .map(|s| {
            let desc = descriptor(s);
            match resolve(s, &desc, state, schemas, types) {
                Ok(run) => Planned::Run(Box::new(run)),
                Err(e) => Planned::Failed(desc, e),
            }
        })
        .collect()
}

/// Whether every configured stream continues from a change position: the read is then pages
/// of changes only (`document_deltas` pages hold 128 rows), no snapshot and no data sync that
/// still snapshots.
pub fn changes_only(catalog: &ConfiguredCatalog, state: &InputState) -> bool {
    !catalog.streams.is_empty()
        && catalog.streams.iter().all(|s| {
            s.sync_mode == SyncMode::Incremental
                && state
                    .get(&descriptor(s))
                    .and_then(|v| Position::from_state(v).ok())
                    .is_some_and(|p| {
                        matches!(
                            p,
                            Position::Deltas(_)
                                | Position::DataSync {
                                    consistent_at: Some(_),
                                    ..
                                }
                        )
                    })
        })
}

fn resolve(
    s: &ConfiguredStream,
    desc: &StreamDescriptor,
    state: &InputState,
    schemas: &DeploymentSchemas,
    types: ColumnTypes,
) -> Result<StreamRun, UserError> {
    let table = table_for(desc).map_err(|e| {
        UserError::config(format!(
            "{e}; run discover again and reconfigure the connection"
        ))
    })?;
    let mut position = match state.get(desc) {
        None => Position::Fresh,
        Some(v) => Position::from_state(v)
            .map_err(|e| UserError::config(messages::saved_state_unusable(desc, e)))?,
    };
    // A configured table the deployment no longer has (deleted or renamed) would silently
    // read as empty forever: fail its stream instead, so someone refreshes the schema.
    let Some(discovered) = schemas.schema_of(&table) else {
        // A stream that was synced had a table: it went. One never synced is most likely a
        // name that never was one.
        if state.get(desc).is_none() {
            let names: Vec<String> = schemas
                .components
                .iter()
                .flat_map(|(c, tables)| {
                    tables.iter().map(move |(t, _)| {
                        crate::naming::stream_for(&convex::TableRef {
                            component: c.clone(),
                            table: t.clone(),
                        })
                        .name
                    })
                })
                .collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            return Err(UserError::config(crate::catalog::unknown_stream(
                &desc.name, &names,
            )));
        }
        return Err(UserError::config(messages::table_gone(table)));
    };
    // Full refresh resumes a half-done walk (the platform hands a failed attempt's checkpoint
    // to the next attempt), but a finished one is no reason to return nothing: walk again.
    if s.sync_mode == SyncMode::FullRefresh
        && matches!(position, Position::Deltas(_) | Position::DataSync { .. })
    {
        position = Position::Fresh;
    }
    let columns = record_columns(s.stream.json_schema.as_ref(), discovered, types);
    let mut run = StreamRun::new(desc.clone(), table, s.sync_mode, position, columns);
    run.columns = selected_columns(s.stream.json_schema.as_ref(), discovered);
    Ok(run)
}

/// How the stream's records carry values. Typed values are checked against the columns the
/// destination was set up with: the configured schema, or, when the catalog carries none (a
/// hand-written one), what discovery declares now.
fn record_columns(configured: Option<&Value>, discovered: &Value, types: ColumnTypes) -> Columns {
    match types {
        ColumnTypes::Legacy => Columns::Legacy,
        ColumnTypes::Typed => Columns::Typed(
            configured
                .and_then(Declared::from_schema)
                .or_else(|| Declared::from_schema(&stream_schema(discovered.clone(), types))),
        ),
    }
}

/// Fields the connector adds or Convex adds to every value: never columns to select.
fn is_added_field(name: &str) -> bool {
    matches!(
        name,
        "_ab_cdc_lsn"
            | "_ab_cdc_updated_at"
            | "_ab_cdc_deleted_at"
            | "_ts"
            | "_table"
            | "_component"
            | "_deleted"
    )
}

fn columns_of(schema: &Value) -> Option<Vec<String>> {
    let props = schema.get("properties")?.as_object()?;
    Some(
        props
            .keys()
            .filter(|k| !is_added_field(k))
            .cloned()
            .collect(),
    )
}

/// Airbyte's field selection: a configured schema with fewer top-level properties than
/// discovery offers asks for just those columns (`_id` always, which `Selection` adds).
/// Anything else — no properties, the same set, or more — reads every column.
pub fn selected_columns(configured: Option<&Value>, discovered: &Value) -> convex::Columns {
    let configured = columns_of(configured?)?;
    let offered = columns_of(discovered)?;
    (configured.len() < offered.len()).then_some(configured)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog(streams: &[(&str, &str)]) -> ConfiguredCatalog {
        let streams: Vec<Value> = streams
            .iter()
            .map(|(name, mode)| {
                json!({"stream": {"name": name, "json_schema": {}, "supported_sync_modes": [mode]},
                       "sync_mode": mode, "destination_sync_mode": "append"})
            })
            .collect();
        serde_json::from_value(json!({ "streams": streams })).unwrap()
    }

    #[test]
    fn only_streams_that_all_continue_from_changes_make_a_read_of_changes_only() {
        let state = InputState::parse(
            r#"{"done": {"snapshot_cursor": null, "snapshot_has_more": false, "delta_cursor": 7},
                "walking": {"snapshot_cursor": "c", "snapshot_has_more": true, "delta_cursor": 7}}"#,
        )
        .unwrap();
        let incremental = |names: &[&'static str]| {
            catalog(
                &names
                    .iter()
                    .map(|n| (*n, "incremental"))
                    .collect::<Vec<_>>(),
            )
        };
        assert!(changes_only(&incremental(&["done"]), &state));
        assert!(!changes_only(&incremental(&["done", "walking"]), &state));
        assert!(!changes_only(&incremental(&["done", "new"]), &state));
        assert!(!changes_only(&catalog(&[("done", "full_refresh")]), &state));
        assert!(!changes_only(&incremental(&[]), &state));
    }

    #[test]
    fn fewer_configured_properties_select_those_columns() {
        let discovered = json!({"type":"object","properties":{
            "_id":{"type":"string"},"_creationTime":{"type":"number"},
            "name":{"type":"string"},"age":{"type":"number"}}});
        let all = stream_schema(discovered.clone(), ColumnTypes::Typed);
        assert_eq!(selected_columns(Some(&all), &discovered), None);
        assert_eq!(selected_columns(None, &discovered), None);
        assert_eq!(selected_columns(Some(&json!({})), &discovered), None);
        let fewer = json!({"type":"object","properties":{
            "_id":{"type":"string"},"name":{"type":"string"},
            "_ab_cdc_lsn":{"type":"number"},"_ab_cdc_updated_at":{"type":"string"},
            "_ab_cdc_deleted_at":{},"_deleted":{"type":"boolean"},"_ts":{"type":"integer"}}});
        assert_eq!(
            selected_columns(Some(&fewer), &discovered),
            Some(vec!["_id".to_owned(), "name".to_owned()])
        );
    }
}
