//! The table selection of list_snapshot and document_deltas (Convex's `SelectionArg`): every
//! table, one table, one component, or a fine-grained selection of components, tables and
//! columns. Its parsing is lenient, as Convex's untagged enum is: what does not parse falls
//! through to the next form.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::api_error::ApiError;
use crate::names::{valid_component_path, valid_table_name};
use crate::selection_grammar::{inclusion, is_excluded, level};

/// Inclusion of `_other` / explicit entries.
#[derive(Debug, Clone, PartialEq)]
pub enum TableSel {
    Excluded,
    Included {
        other: bool,
        columns: BTreeMap<String, bool>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ComponentSel {
    Excluded,
    Included {
        other: bool,
        tables: BTreeMap<String, TableSel>,
    },
}

/// The table selection of list_snapshot / document_deltas (Convex's `SelectionArg`).
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    All,
    Table {
        component: String,
        table: String,
    },
    Component(String),
    Fine {
        other: bool,
        components: BTreeMap<String, ComponentSel>,
    },
}

/// Column filter for one table: `(other, explicit)`.
pub type Columns = (bool, BTreeMap<String, bool>);

impl Selection {
    /// Parses a `selection` object. `None` means it did not parse, in which case Convex's
    /// untagged enum silently falls through to the next variant (ultimately "everything").
    pub fn parse_fine(v: &Json) -> Option<Selection> {
        let (other, components) = level(v, |cv| {
            if is_excluded(cv) {
                return Some(ComponentSel::Excluded);
            }
            let (other, tables) = level(cv, |tv| {
                if is_excluded(tv) {
                    return Some(TableSel::Excluded);
                }
                let (other, columns) = level(tv, inclusion)?;
                Some(TableSel::Included { other, columns })
            })?;
            Some(ComponentSel::Included { other, tables })
        })?;
        Some(Selection::Fine { other, components })
    }

    /// Rejects what Convex's legacy endpoints turn into a bare 500: unparsable table names or
    /// component paths, and column selections that exclude `_id`.
    pub fn validate(&self) -> Result<(), ApiError> {
        match self {
            Selection::All => Ok(()),
            Selection::Table { component, table } => {
                if valid_table_name(table) && valid_component_path(component) {
                    Ok(())
                } else {
                    Err(ApiError::internal())
                }
            }
            Selection::Component(c) => {
                if valid_component_path(c) {
                    Ok(())
                } else {
                    Err(ApiError::internal())
                }
            }
            Selection::Fine { components, .. } => {
                for (path, cs) in components {
                    if !valid_component_path(path) {
                        return Err(ApiError::internal());
                    }
                    if let ComponentSel::Included { tables, .. } = cs {
                        for (name, ts) in tables {
                            if !valid_table_name(name) {
                                return Err(ApiError::internal());
                            }
                            if let TableSel::Included { other, columns } = ts {
                                if !columns.get("_id").copied().unwrap_or(*other) {
                                    return Err(ApiError::internal());
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// `None` = table not selected; `Some(None)` = all columns; `Some(Some(cols))` = filter.
    pub fn table(&self, component: &str, table: &str) -> Option<Option<Columns>> {
        match self {
            Selection::All => Some(None),
            Selection::Table {
                component: c,
                table: t,
            } => (c == component && t == table).then_some(None),
            Selection::Component(c) => (c == component).then_some(None),
            Selection::Fine { other, components } => match components.get(component) {
                None => other.then_some(None),
                Some(ComponentSel::Excluded) => None,
                Some(ComponentSel::Included { other, tables }) => match tables.get(table) {
                    None => other.then_some(None),
                    Some(TableSel::Excluded) => None,
                    Some(TableSel::Included { other, columns }) => {
                        if *other && columns.values().all(|&inc| inc) {
                            Some(None)
                        } else {
                            Some(Some((*other, columns.clone())))
                        }
                    }
                },
            },
        }
    }
}
