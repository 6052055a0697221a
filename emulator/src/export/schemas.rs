//! json_schemas and get_table_column_names: the inferred shape of every exported table, or
//! its `schema.ts` definition where the shape cannot be described field by field.

use serde_json::{json, Map, Value as Json};

use crate::api_error::ApiError;
use crate::schema::table_schema_from;
use crate::shape::{column_names, table_schema};
use crate::store::{Component, Store, TableData};
use crate::value::Format;

/// Components in json_schemas order: root first, then children by component id.
fn component_order(store: &Store) -> Vec<&str> {
    let mut comps: Vec<&Component> = store.components.iter().collect();
    comps.sort_by_key(|c| (!c.path.is_empty(), c.id));
    comps.iter().map(|c| c.path.as_str()).collect()
}

/// Tables json_schemas lists for a component: active, user, not hidden, in tablet order.
fn schema_tables<'a>(store: &'a Store, component: &str) -> Vec<&'a TableData> {
    let mut tables: Vec<&TableData> = store
        .tables
        .iter()
        .filter(|t| t.active() && !t.hidden && !t.system() && t.component == component)
        .collect();
    tables.sort_by_key(|t| t.tablet);
    tables
}

/// What json_schemas answers. A table whose shape is not an object is described from its
/// component's active schema; without a usable one the whole call fails.
pub fn json_schemas(
    store: &Store,
    format: Format,
    delta_schema: bool,
    by_component: bool,
) -> Result<Json, ApiError> {
    let names = |n| store.table_name(n);
    let mut flat = Map::new();
    let mut nested = Map::new();
    for comp in component_order(store) {
        let mut per = Map::new();
        for t in schema_tables(store, comp) {
            let shape = store.table_shape(t);
            let schema = match table_schema(t.number, &shape, format, delta_schema, &names) {
                Some(s) => s,
                None => {
                    table_schema_from(store.schemas.get(comp), comp, &t.name, format, delta_schema)?
                }
            };
            if by_component {
                per.insert(t.name.clone(), schema);
            } else {
                // A same-named table in a later component overwrites the earlier entry.
                flat.insert(t.name.clone(), schema);
            }
        }
        if by_component {
            nested.insert(comp.to_owned(), Json::Object(per));
        }
    }
    Ok(Json::Object(if by_component { nested } else { flat }))
}

pub fn table_column_names(store: &Store) -> Json {
    let mut by = Map::new();
    for comp in component_order(store) {
        let tables: Vec<Json> = schema_tables(store, comp)
            .into_iter()
            .map(|t| {
                let cols = column_names(&store.table_shape(t));
                json!({"name": t.name, "columns": cols})
            })
            .collect();
        by.insert(comp.to_owned(), Json::Array(tables));
    }
    json!({ "byComponent": by })
}
