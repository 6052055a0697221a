//! [`Transaction`]: the writes of one commit, staged against the store and applied
//! atomically at one new timestamp, or not at all.

use std::collections::HashMap;

use super::{creation_time, prepare_doc, NewTable, Store, Write};
use crate::error::{fail, Error};
use crate::ids;
use crate::names::{valid_component_path, valid_table_name};
use crate::value::{Fields, IntoFields, Value};

pub(super) fn check_names(component: &str, table: &str) -> Result<(), Error> {
    if !valid_table_name(table) {
        return fail(format!("invalid table name {table:?}"));
    }
    if !valid_component_path(component) {
        return fail(format!("invalid component path {component:?}"));
    }
    Ok(())
}

pub(super) fn check_fields(fields: &Fields) -> Result<(), Error> {
    for k in fields.keys() {
        if k.is_empty() || k.starts_with('_') || k.starts_with('$') {
            return fail(format!(
                "invalid top-level field name {k:?}: names starting with '_' or '$' are reserved"
            ));
        }
    }
    Ok(())
}

/// Where a table of a transaction lives: existing in the store, or created by this commit.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum TableRef {
    Existing(usize),
    New(usize),
}

struct PendingDoc {
    creation_time: f64,
    /// `None` = deleted.
    fields: Option<Fields>,
    /// Whether the document existed before this transaction.
    existed: bool,
}

/// Writes of one transaction, applied atomically by `Deployment::transaction`.
pub struct Transaction<'a> {
    store: &'a mut Store,
    ts: i64,
    new_tables: Vec<NewTable>,
    docs: HashMap<(TableRef, [u8; 16]), PendingDoc>,
    inserts: usize,
}

impl<'a> Transaction<'a> {
    pub(crate) fn new(store: &'a mut Store) -> Transaction<'a> {
        let ts = store.next_ts();
        Transaction {
            store,
            ts,
            new_tables: Vec::new(),
            docs: HashMap::new(),
            inserts: 0,
        }
    }

    /// The timestamp this transaction will commit at.
    pub fn ts(&self) -> i64 {
        self.ts
    }

    fn table(&mut self, component: &str, table: &str, create: bool) -> Result<TableRef, Error> {
        if let Some(i) = self.store.find_table(component, table) {
            return Ok(TableRef::Existing(i));
        }
        if let Some(i) = self
            .new_tables
            .iter()
            .position(|t| t.component == component && t.name == table)
        {
            return Ok(TableRef::New(i));
        }
        if !create {
            return fail(format!("table {component:?}/{table:?} not found"));
        }
        check_names(component, table)?;
        let spec = self.store.new_table_spec(component, table, false);
        self.new_tables.push(spec);
        Ok(TableRef::New(self.new_tables.len() - 1))
    }

    fn table_number(&self, t: TableRef) -> u32 {
        match t {
            TableRef::Existing(i) => self.store.tables[i].number,
            TableRef::New(i) => self.new_tables[i].number,
        }
    }

    /// Inserts a document (creating the table, and its component, if needed); returns its id.
    pub fn insert(
        &mut self,
        component: &str,
        table: &str,
        doc: impl IntoFields,
    ) -> Result<String, Error> {
        let fields = doc.into_fields()?;
        check_fields(&fields)?;
        let t = self.table(component, table, true)?;
        let internal = loop {
            let candidate = self.store.rng.bytes16();
            let taken = match t {
                TableRef::Existing(i) => self.store.tables[i].docs.contains_key(&candidate),
                TableRef::New(_) => false,
            } || self.docs.contains_key(&(t, candidate));
            if !taken {
                break candidate;
            }
        };
        let creation_time = creation_time(self.ts, self.inserts);
        self.inserts += 1;
        self.docs.insert(
            (t, internal),
            PendingDoc {
                creation_time,
                fields: Some(fields),
                existed: false,
            },
        );
        Ok(ids::document_id(self.table_number(t), &internal))
    }

    /// The current user fields of a document (this transaction's writes included).
    pub fn get(&mut self, component: &str, table: &str, id: &str) -> Result<Option<Fields>, Error> {
        let key = self.locate(component, table, id)?;
        Ok(self.current(key)?.and_then(|p| p.fields.clone()))
    }

    fn locate(
        &mut self,
        component: &str,
        table: &str,
        id: &str,
    ) -> Result<(TableRef, [u8; 16]), Error> {
        let t = self.table(component, table, false)?;
        let Some(internal) = ids::parse_document_id(id) else {
            return fail(format!("invalid document id {id:?}"));
        };
        Ok((t, internal))
    }

    /// Loads a document into the pending set (from the store if not yet touched).
    fn current(&mut self, key: (TableRef, [u8; 16])) -> Result<Option<&mut PendingDoc>, Error> {
        if !self.docs.contains_key(&key) {
            let TableRef::Existing(i) = key.0 else {
                return Ok(None);
            };
            let Some(doc) = self.store.tables[i].live_doc(&key.1) else {
                return Ok(None);
            };
            let mut fields = doc.fields();
            let creation_time = match fields.remove("_creationTime") {
                Some(Value::Float64(f)) => f,
                _ => 0.0,
            };
            fields.remove("_id");
            self.docs.insert(
                key,
                PendingDoc {
                    creation_time,
                    fields: Some(fields),
                    existed: true,
                },
            );
        }
        Ok(self.docs.get_mut(&key).filter(|p| p.fields.is_some()))
    }

    fn live(&mut self, component: &str, table: &str, id: &str) -> Result<&mut PendingDoc, Error> {
        let key = self.locate(component, table, id)?;
        match self.current(key)? {
            Some(p) => Ok(p),
            None => fail(format!(
                "document {id} not found in {component:?}/{table:?}"
            )),
        }
    }

    /// Sets the given fields (shallow merge, like `db.patch`).
    pub fn patch(
        &mut self,
        component: &str,
        table: &str,
        id: &str,
        fields: impl IntoFields,
    ) -> Result<(), Error> {
        self.patch_remove(component, table, id, fields, &[])
    }

    /// Sets `fields` and removes `remove` (what `db.patch` does with `undefined`).
    pub fn patch_remove(
        &mut self,
        component: &str,
        table: &str,
        id: &str,
        fields: impl IntoFields,
        remove: &[String],
    ) -> Result<(), Error> {
        let set = fields.into_fields()?;
        check_fields(&set)?;
        let p = self.live(component, table, id)?;
        if let Some(f) = p.fields.as_mut() {
            for k in remove {
                f.remove(k);
            }
            f.extend(set);
        }
        Ok(())
    }

    /// Replaces all user fields (like `db.replace`); `_id` and `_creationTime` are kept.
    pub fn replace(
        &mut self,
        component: &str,
        table: &str,
        id: &str,
        doc: impl IntoFields,
    ) -> Result<(), Error> {
        let fields = doc.into_fields()?;
        check_fields(&fields)?;
        let p = self.live(component, table, id)?;
        p.fields = Some(fields);
        Ok(())
    }

    pub fn delete(&mut self, component: &str, table: &str, id: &str) -> Result<(), Error> {
        let p = self.live(component, table, id)?;
        p.fields = None;
        Ok(())
    }

    /// Active user tables as `(component, table, live documents)`, in creation order.
    pub(crate) fn user_tables(&self) -> Vec<(String, String, usize)> {
        self.store
            .tables
            .iter()
            .filter(|t| t.active() && !t.hidden && !t.system())
            .map(|t| (t.component.clone(), t.name.clone(), t.live))
            .collect()
    }

    /// A pseudo-random document of the table that is live at head and not deleted by this
    /// transaction (O(log n): the first live id at or after a random key, wrapping around).
    pub(crate) fn random_live_id(
        &mut self,
        component: &str,
        table: &str,
        rng: &mut ids::Rng,
    ) -> Option<String> {
        let TableRef::Existing(i) = self.table(component, table, false).ok()? else {
            return None;
        };
        let t = &self.store.tables[i];
        let key = rng.bytes16();
        let docs = &self.docs;
        let (internal, _) = t
            .docs
            .range(key..)
            .chain(t.docs.range(..key))
            .find(|(k, e)| {
                e.latest.doc.is_some()
                    && docs
                        .get(&(TableRef::Existing(i), **k))
                        .is_none_or(|p| p.fields.is_some())
            })?;
        Some(t.doc_id(internal))
    }

    pub(crate) fn commit(self) -> i64 {
        let Transaction {
            store,
            ts,
            new_tables,
            docs,
            ..
        } = self;
        let base = store.tables.len();
        let mut writes = Vec::with_capacity(docs.len());
        for ((t, internal), p) in docs {
            // Inserted then deleted in the same transaction: nothing happened.
            if p.fields.is_none() && !p.existed {
                continue;
            }
            let (ti, number) = match t {
                TableRef::Existing(i) => (i, store.tables[i].number),
                TableRef::New(i) => (base + i, new_tables[i].number),
            };
            let doc = p.fields.as_ref().map(|f| {
                prepare_doc(
                    &ids::document_id(number, &internal),
                    p.creation_time,
                    f,
                    &store.shapes,
                )
            });
            writes.push(Write {
                table: ti,
                internal,
                doc,
            });
        }
        if writes.is_empty() && new_tables.is_empty() {
            return store.head;
        }
        store.apply(ts, new_tables, writes)
    }
}
