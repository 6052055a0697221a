//! The table selection of list_snapshot and document_deltas (Convex's `SelectionArg`): every
//! table, one table, one component, or a fine-grained selection of components, tables and
//! columns. Its parsing is lenient, as Convex's untagged enum is: what does not parse falls
//! through to the next form.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use crate::api_error::ApiError;
use crate::names::{valid_component_path, valid_table_name};

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

fn parse_inclusion(v: &Json) -> Option<bool> {
    match v.as_str()? {
        "included" | "incl" => Some(true),
        "excluded" | "excl" => Some(false),
        _ => None,
    }
}

fn parse_other(obj: &Map<String, Json>) -> Option<bool> {
    parse_inclusion(obj.get("_other")?)
}

fn is_excluded_str(v: &Json) -> bool {
    matches!(v.as_str(), Some("excluded" | "excl"))
}

impl Selection {
    /// Parses a `selection` object. `None` means it did not parse, in which case Convex's
    /// untagged enum silently falls through to the next variant (ultimately "everything").
    pub fn parse_fine(v: &Json) -> Option<Selection> {
        let obj = v.as_object()?;
        let other = parse_other(obj)?;
        let mut components = BTreeMap::new();
        for (path, cv) in obj {
            if path == "_other" {
                continue;
            }
            let sel = if is_excluded_str(cv) {
                ComponentSel::Excluded
            } else {
                let cobj = cv.as_object()?;
                let cother = parse_other(cobj)?;
                let mut tables = BTreeMap::new();
                for (tname, tv) in cobj {
                    if tname == "_other" {
                        continue;
                    }
                    let ts = if is_excluded_str(tv) {
                        TableSel::Excluded
                    } else {
                        let tobj = tv.as_object()?;
                        let tother = parse_other(tobj)?;
                        let mut columns = BTreeMap::new();
                        for (col, colv) in tobj {
                            if col != "_other" {
                                columns.insert(col.clone(), parse_inclusion(colv)?);
                            }
                        }
                        TableSel::Included {
                            other: tother,
                            columns,
                        }
                    };
                    tables.insert(tname.clone(), ts);
                }
                ComponentSel::Included {
                    other: cother,
                    tables,
                }
            };
            components.insert(path.clone(), sel);
        }
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
