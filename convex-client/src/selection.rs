//! What one walk reads: a set of tables, each with all its columns or only some of them, in the
//! fine-grained `selection` grammar that `list_snapshot` and `document_deltas` accept in a POST
//! body. One walk over a selection replaces one walk per table: Convex's deltas pages read 128
//! rows of every table whatever the filter, so per-table walks read the log once per table.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use super::TableRef;

/// Columns of one table: `None` = every column.
pub type Columns = Option<Vec<String>>;

/// Tables (with their columns) that one walk reads. Built by the engine; never empty in a walk
/// that returns values (an empty selection reads nothing, which is how the head is probed).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    tables: BTreeMap<TableRef, Columns>,
    /// [`Selection::to_json`] as text, rendered once: every page of a walk sends it, and a
    /// walk of `document_deltas` asks for a page per 128 log rows.
    text: OnceLock<String>,
}

/// Two selections are equal when they read the same (whether either was rendered yet does
/// not matter).
impl PartialEq for Selection {
    fn eq(&self, other: &Self) -> bool {
        self.tables == other.tables
    }
}

impl Eq for Selection {}

impl Selection {
    pub fn new() -> Self {
        Selection::default()
    }

    pub fn one(table: TableRef, columns: Columns) -> Self {
        let mut s = Selection::new();
        s.add(table, columns);
        s
    }

    /// Adds a table. `_id` is always read (Convex rejects a column selection without it, and
    /// every record needs it); a table added twice reads the union of both column sets.
    pub fn add(&mut self, table: TableRef, columns: Columns) {
        self.text = OnceLock::new();
        let columns = columns.map(|mut c| {
            if !c.iter().any(|n| n == "_id") {
                c.push("_id".to_owned());
            }
            c.sort();
            c.dedup();
            c
        });
        match self.tables.get_mut(&table) {
            Some(existing) => {
                *existing = match (existing.take(), columns) {
                    (Some(mut a), Some(b)) => {
                        a.extend(b);
                        a.sort();
                        a.dedup();
                        Some(a)
                    }
                    _ => None,
                }
            }
            None => {
                self.tables.insert(table, columns);
            }
        }
    }

    pub fn contains(&self, component: &str, table: &str) -> bool {
        self.tables
            .keys()
            .any(|t| t.component == component && t.table == table)
    }

    /// Convex's `Selection` JSON: components → tables → columns, each level with a required
    /// `_other`. Everything not named is excluded.
    pub fn to_json(&self) -> Value {
        let mut components: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
        for (t, columns) in &self.tables {
            let table = match columns {
                None => json!({"_other": "included"}),
                Some(cols) => {
                    let mut m = Map::new();
                    m.insert("_other".into(), "excluded".into());
                    for c in cols {
                        m.insert(c.clone(), "included".into());
                    }
                    Value::Object(m)
                }
            };
            components
                .entry(&t.component)
                .or_insert_with(|| {
                    let mut m = Map::new();
                    m.insert("_other".into(), "excluded".into());
                    m
                })
                .insert(t.table.clone(), table);
        }
        let mut top = Map::new();
        top.insert("_other".into(), "excluded".into());
        for (c, tables) in components {
            top.insert(c.to_owned(), Value::Object(tables));
        }
        Value::Object(top)
    }

    /// [`Selection::to_json`] as compact JSON text.
    pub fn json_text(&self) -> &str {
        self.text.get_or_init(|| self.to_json().to_string())
    }

    /// A request's JSON body: the members `before`, then `selection` (this selection), then
    /// the members `after`, each value given as JSON text and each name a plain identifier (the
    /// names are this crate's own literals: written between quotes, not escaped). Written as
    /// text around the rendered selection: the same bytes as serialising that object with its
    /// members in this order.
    pub fn request_body(&self, before: &[(&str, &str)], after: &[(&str, &str)]) -> String {
        let selection = self.json_text();
        let own = [("selection", selection)];
        let members = before.iter().chain(&own).chain(after);
        let mut body = String::with_capacity(selection.len() + 64);
        body.push('{');
        for (i, (name, value)) in members.enumerate() {
            debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            if i > 0 {
                body.push(',');
            }
            body.push('"');
            body.push_str(name);
            body.push_str("\":");
            body.push_str(value);
        }
        body.push('}');
        body
    }
}

impl std::fmt::Display for Selection {
    /// `users, betterAuth/users`: for messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.tables.is_empty() {
            return f.write_str("no table");
        }
        for (i, t) in self.tables.keys().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_json_names_exactly_the_tables_and_columns() {
        let mut s = Selection::new();
        s.add(TableRef::root("users"), None);
        s.add(
            TableRef {
                component: "betterAuth".into(),
                table: "users".into(),
            },
            Some(vec!["email".into()]),
        );
        assert_eq!(
            s.to_json(),
            json!({"_other":"excluded",
                   "":{"_other":"excluded","users":{"_other":"included"}},
                   "betterAuth":{"_other":"excluded",
                                 "users":{"_other":"excluded","_id":"included","email":"included"}}})
        );
        assert!(s.contains("betterAuth", "users"));
        assert!(!s.contains("betterAuth", "sessions"));
        assert_eq!(s.to_string(), "users, betterAuth/users");
    }

    #[test]
    fn an_empty_selection_excludes_everything_and_column_sets_merge() {
        assert_eq!(Selection::new().to_json(), json!({"_other":"excluded"}));
        let mut s = Selection::one(TableRef::root("t"), Some(vec!["a".into()]));
        s.add(TableRef::root("t"), Some(vec!["b".into(), "_id".into()]));
        assert_eq!(
            s.to_json()[""]["t"],
            json!({"_other":"excluded","_id":"included","a":"included","b":"included"})
        );
        s.add(TableRef::root("t"), None);
        assert_eq!(s.to_json()[""]["t"], json!({"_other":"included"}));
    }

    #[test]
    fn the_rendered_text_follows_every_table_added() {
        let mut s = Selection::one(TableRef::root("a"), None);
        let first = s.json_text().to_owned();
        assert_eq!(first, s.to_json().to_string());
        let copy = s.clone();
        s.add(TableRef::root("b"), Some(vec!["x".into()]));
        assert_eq!(s.json_text(), s.to_json().to_string());
        assert_ne!(s.json_text(), first);
        // A copy keeps its own text, and equality ignores whether a text was rendered.
        assert_eq!(copy.json_text(), first);
        assert_eq!(copy, Selection::one(TableRef::root("a"), None));
        assert_ne!(copy, s);
    }
}
