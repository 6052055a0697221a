//! Which stream of the read each value of a walk belongs to. A walk reads the tables of
//! several streams over one selection, so every value is routed by its `_component` and
//! `_table`; a value of a table the walk did not ask for means the deployment ignored the
//! selection, and stops the walk instead of mixing tables.

use crate::error::UserError;
use convex::{Selection, ValueMeta};

use super::emit::StreamRun;

/// Looked up for every value a walk takes: foldhash, not the standard library's SipHash. It
/// holds only the read's own table names; what the server sends is looked up, never added.
type Map<V> = foldhash::HashMap<String, V>;

pub struct Routes {
    /// Component → table → index of the stream in the read.
    by_table: Map<Map<usize>>,
    /// What the walk asks Convex for: the members' tables, with their columns.
    pub selection: Selection,
}

impl Routes {
    /// The routes and selection of a walk over the streams `members` (indexes into `runs`).
    pub fn of(runs: &[StreamRun], members: &[usize]) -> Self {
        let mut by_table: Map<Map<usize>> = Map::default();
        let mut selection = Selection::new();
        for &m in members {
            let run = &runs[m];
            by_table
                .entry(run.table.component.clone())
                .or_default()
                .insert(run.table.table.clone(), m);
            selection.add(run.table.clone(), run.columns.clone());
        }
        Routes {
            by_table,
            selection,
        }
    }

    /// The stream `meta`'s value belongs to. `what` names the value in the error ("a
    /// document", "a change").
    pub fn stream(&self, meta: &ValueMeta<'_>, what: &str) -> Result<usize, UserError> {
        self.by_table
            .get(&*meta.component)
            .and_then(|t| t.get(&*meta.table))
            .copied()
            .ok_or_else(|| {
                UserError::system(crate::messages::table_selection_ignored(
                    what,
                    &meta.table,
                    &meta.component,
                    &self.selection,
                ))
            })
    }
}
