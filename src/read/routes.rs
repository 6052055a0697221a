//! Which stream of the read each value of a walk belongs to. A walk reads the tables of
//! several streams over one selection, so every value is routed by its `_component` and
//! `_table`; a value of a table the walk did not ask for means the deployment ignored the
//! selection, and stops the walk instead of mixing tables.

use crate::error::UserError;
use convex::{Selection, ValueMeta};

use super::emit::{is_of_table, StreamRun};
use convex::TableRef;

/// Looked up for every value a walk takes: foldhash, not the standard library's SipHash. It
/// holds only the read's own table names; what the server sends is looked up, never added.
type Map<V> = foldhash::HashMap<String, V>;

/// Walks of at most this many tables find a value's stream by comparing names one stream
/// after another: a change walk interleaves its tables, so most of its values are looked up,
/// and a few word-by-word comparisons cost less than hashing two names and comparing them
/// with `memcmp`.
const COMPARED_ONE_BY_ONE: usize = 8;

pub struct Routes {
    lookup: Lookup,
    /// What the walk asks Convex for: the members' tables, with their columns.
    pub selection: Selection,
}

/// How a value's table is found among the walk's.
enum Lookup {
    /// Each table with the index of its stream, compared one by one.
    Few(Vec<(TableRef, usize)>),
    /// Component → table → index of the stream in the read.
    Many(Map<Map<usize>>),
}

impl Routes {
    /// The routes and selection of a walk over the streams `members` (indexes into `runs`).
    pub fn of(runs: &[StreamRun], members: &[usize]) -> Self {
        let mut selection = Selection::new();
        for &m in members {
            selection.add(runs[m].table.clone(), runs[m].columns.clone());
        }
        let lookup = if members.len() <= COMPARED_ONE_BY_ONE {
            Lookup::Few(
                members
                    .iter()
                    .map(|&m| (runs[m].table.clone(), m))
                    .collect(),
            )
        } else {
            let mut by_table: Map<Map<usize>> = Map::default();
            for &m in members {
                let table = &runs[m].table;
                by_table
                    .entry(table.component.clone())
                    .or_default()
                    .insert(table.table.clone(), m);
            }
            Lookup::Many(by_table)
        };
        Routes { lookup, selection }
    }

    /// The stream `meta`'s value belongs to. `what` names the value in the error ("a
    /// document", "a change").
    pub fn stream(&self, meta: &ValueMeta<'_>, what: &str) -> Result<usize, UserError> {
        let found = match &self.lookup {
            Lookup::Few(tables) => tables
                .iter()
                .find(|(table, _)| is_of_table(meta, table))
                .map(|&(_, stream)| stream),
            Lookup::Many(by_table) => by_table
                .get(&*meta.component)
                .and_then(|t| t.get(&*meta.table))
                .copied(),
        };
        found.ok_or_else(|| {
            UserError::system(crate::messages::table_selection_ignored(
                what,
                &meta.table,
                &meta.component,
                &self.selection,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{StreamDescriptor, SyncMode};
    use crate::read::record::Columns;
    use crate::state::Position;
    use std::borrow::Cow;

    fn runs(tables: &[(&str, &str)]) -> Vec<StreamRun> {
        tables
            .iter()
            .map(|&(component, table)| {
                let desc = StreamDescriptor {
                    name: table.into(),
                    namespace: None,
                };
                let table = TableRef {
                    component: component.into(),
                    table: table.into(),
                };
                StreamRun::new(
                    desc,
                    table,
                    SyncMode::Incremental,
                    Position::Fresh,
                    Columns::Typed(None),
                )
            })
            .collect()
    }

    fn meta<'a>(component: &'a str, table: &'a str) -> ValueMeta<'a> {
        ValueMeta {
            table: Cow::Borrowed(table),
            component: Cow::Borrowed(component),
            id: Cow::Borrowed("id"),
            ts: 1,
            deleted: Some(false),
            members: None,
            bare: false,
        }
    }

    /// Few tables are compared one by one, many are hashed: both route every table of the
    /// walk to its stream, tell components apart, and refuse a table the walk did not ask for.
    #[test]
    fn few_and_many_tables_route_the_same() {
        let mut tables = vec![("", "a"), ("", "messages"), ("waitlist", "messages")];
        let long = "a_table_name_longer_than_sixteen_bytes_".repeat(2);
        tables.push(("", &long));
        let many: Vec<String> = (0..COMPARED_ONE_BY_ONE).map(|i| format!("t{i}")).collect();
        for count in [tables.len(), tables.len() + many.len()] {
            let mut all = tables.clone();
            all.extend(many.iter().map(|t| ("", t.as_str())));
            all.truncate(count);
            let runs = runs(&all);
            let members: Vec<usize> = (0..runs.len()).collect();
            let routes = Routes::of(&runs, &members);
            assert_eq!(
                matches!(routes.lookup, Lookup::Many(_)),
                count > COMPARED_ONE_BY_ONE
            );
            for (i, &(component, table)) in all.iter().enumerate() {
                assert_eq!(
                    routes.stream(&meta(component, table), "a change").ok(),
                    Some(i)
                );
            }
            for (component, table) in [("", "b"), ("other", "a"), ("", "message"), ("", "")] {
                assert!(routes.stream(&meta(component, table), "a change").is_err());
            }
            let near = format!("{}x", &long[..long.len() - 1]);
            assert!(routes.stream(&meta("", &near), "a change").is_err());
        }
    }
}
