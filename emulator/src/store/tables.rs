//! Whole-table and whole-component operations on the store: create, clear, delete and
//! import a table (each its own commit), list the tables, and set a component's schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::transaction::{check_fields, check_names};
use super::{creation_time, prepare_doc, Store, Write, CATALOG_TABLES};
use crate::error::{fail, Error};
use crate::ids;
use crate::names::valid_component_path;
use crate::schema::{self, ComponentSchema};
use crate::value::{Fields, IntoFields};

/// A table as listed by `Deployment::tables`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    pub component: String,
    pub table: String,
    /// Live documents at head.
    pub documents: usize,
    /// 22-character URL-safe base64 tablet id (what list_snapshot cursors name).
    pub tablet: String,
}

impl Store {
    /// Creates an empty table (a commit). No-op returning head if it already exists.
    pub fn create_table(&mut self, component: &str, table: &str) -> Result<i64, Error> {
        check_names(component, table)?;
        if self.find_table(component, table).is_some() {
            return Ok(self.head);
        }
        let spec = self.new_table_spec(component, table, false);
        let ts = self.next_ts();
        Ok(self.apply(ts, vec![spec], Vec::new()))
    }

    /// Deletes every document of a table in one transaction (tombstones are emitted), like
    /// the dashboard's "Clear Table".
    pub fn clear_table(&mut self, component: &str, table: &str) -> Result<i64, Error> {
        let Some(ti) = self.find_table(component, table) else {
            return fail(format!("table {component:?}/{table:?} not found"));
        };
        let writes: Vec<Write> = self.tables[ti]
            .docs
            .iter()
            .filter(|(_, e)| e.latest.doc.is_some())
            .map(|(k, _)| Write {
                table: ti,
                internal: *k,
                doc: None,
            })
            .collect();
        if writes.is_empty() {
            return Ok(self.head);
        }
        let ts = self.next_ts();
        Ok(self.apply(ts, Vec::new(), writes))
    }

    /// Deletes a table: no tombstones; its not-yet-consumed deltas vanish from
    /// document_deltas; json_schemas stops listing it. Snapshots taken before still see it.
    pub fn delete_table(&mut self, component: &str, table: &str) -> Result<i64, Error> {
        let Some(ti) = self.find_table(component, table) else {
            return fail(format!("table {component:?}/{table:?} not found"));
        };
        let ts = self.next_ts();
        Ok(self.drop_table(ti, ts))
    }

    /// Replaces a table's contents the way `npx convex import --replace` does: the new rows
    /// are first written to a hidden table (exported as inserts by document_deltas, not
    /// listed by json_schemas), then the hidden table replaces the old one; the old rows get
    /// no tombstones. Returns `(ts of the rows, ts of the swap)`.
    pub fn import_table<D: IntoFields>(
        &mut self,
        component: &str,
        table: &str,
        docs: impl IntoIterator<Item = D>,
    ) -> Result<(i64, i64), Error> {
        check_names(component, table)?;
        let docs: Vec<Fields> = docs
            .into_iter()
            .map(|d| d.into_fields().map_err(Error::from))
            .collect::<Result<_, _>>()?;
        for d in &docs {
            check_fields(d)?;
        }
        let spec = self.new_table_spec(component, table, true);
        let number = spec.number;
        let ts1 = self.next_ts();
        let ti = self.tables.len();
        let mut writes = Vec::with_capacity(docs.len());
        for (k, fields) in docs.iter().enumerate() {
            let internal = self.rng.bytes16();
            let id = ids::document_id(number, &internal);
            let doc = prepare_doc(&id, creation_time(ts1, k), fields, &self.shapes);
            writes.push(Write {
                table: ti,
                internal,
                doc: Some(doc),
            });
        }
        self.apply(ts1, vec![spec], writes);
        let ts2 = self.next_ts();
        let mut swap = Vec::new();
        if let Some(old) = self.find_table(component, table) {
            self.tables[old].deleted_ts = Some(ts2);
            swap.extend(self.catalog_writes(old, ts2, None, true));
        }
        self.tables[ti].hidden = false;
        self.tables[ti].shown_ts = ts2;
        swap.extend(self.catalog_writes(ti, ts2, Some("active"), false));
        self.apply(ts2, Vec::new(), swap);
        Ok((ts1, ts2))
    }

    /// Tables at head (system and hidden tables included, deleted ones not), sorted by
    /// (component, table).
    pub fn table_infos(&self) -> Vec<TableInfo> {
        let mut out: Vec<TableInfo> = self
            .tables
            .iter()
            // The catalog tables are the emulator's bookkeeping, not tables a user made.
            .filter(|t| t.active() && !t.hidden)
            .filter(|t| !(t.component.is_empty() && CATALOG_TABLES.contains(&t.name.as_str())))
            .map(|t| TableInfo {
                component: t.component.clone(),
                table: t.name.clone(),
                documents: t.live,
                tablet: t.tablet_str.clone(),
            })
            .collect();
        out.sort_by(|a, b| (&a.component, &a.table).cmp(&(&b.component, &b.table)));
        out
    }

    /// Sets (or with `None` removes) a component's active schema, checking its validators.
    pub fn set_schema(
        &mut self,
        component: &str,
        tables: Option<serde_json::Value>,
    ) -> Result<(), Error> {
        if !valid_component_path(component) {
            return fail(format!("invalid component path {component:?}"));
        }
        match tables {
            None => {
                self.schemas.remove(component);
            }
            Some(v) => {
                let tables: ComponentSchema = serde_json::from_value(v)
                    .map_err(|e| Error(format!("schema tables must be an object: {e}")))?;
                schema::validate(&tables).map_err(Error)?;
                self.schemas.insert(component.to_owned(), tables);
            }
        }
        Ok(())
    }

    /// The active schemas as JSON, by component path.
    pub fn schema_values(&self) -> BTreeMap<String, serde_json::Value> {
        self.schemas
            .iter()
            .map(|(c, t)| (c.clone(), serde_json::to_value(t).unwrap_or_default()))
            .collect()
    }
}
