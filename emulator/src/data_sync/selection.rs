//! The `selection` argument of the data sync endpoints: which components, tables and columns
//! a sync exports.
//!
//! Grammar (Convex's `Selection`, `ComponentSelection`, `TableSelection`):
//! `{"_other": I, "<component path>": C, ...}`, where C is `"excluded"` or
//! `{"_other": I, "<table>": T, ...}`, T is `"excluded"` or `{"_other": I, "<column>": I, ...}`
//! and I is `"included"` / `"excluded"` (or the aliases `"incl"` / `"excl"`). `_other` is
//! required at every level. Unlike the legacy endpoints, a malformed selection is a 400
//! `BadJsonBody` (serde's error) and a well-formed but invalid one a 400
//! `InvalidDataSyncSelection`.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use crate::api_error::ApiError;
use crate::names::{valid_component_path, valid_table_name};
use crate::selection_grammar as grammar;

/// What a selection says about one table's columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Columns {
    other: bool,
    explicit: BTreeMap<String, bool>,
}

impl Columns {
    fn all() -> Columns {
        Columns {
            other: true,
            explicit: BTreeMap::new(),
        }
    }

    #[cfg(test)]
    pub fn all_for_tests() -> Columns {
        Columns::all()
    }

    /// Whether every field is exported.
    pub fn keeps_all(&self) -> bool {
        self.other && self.explicit.values().all(|&k| k)
    }

    /// Whether field `name` (system fields included) is exported.
    pub fn keeps(&self, name: &str) -> bool {
        self.explicit.get(name).copied().unwrap_or(self.other)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum TableSel {
    Excluded,
    Included(Columns),
}

#[derive(Clone, Debug, PartialEq)]
enum ComponentSel {
    Excluded,
    Included {
        other: bool,
        tables: BTreeMap<String, TableSel>,
    },
}

/// A parsed and validated selection.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    other: bool,
    components: BTreeMap<String, ComponentSel>,
}

impl Selection {
    /// What an absent `selection` means: every table of every component.
    pub fn everything() -> Selection {
        Selection {
            other: true,
            components: BTreeMap::new(),
        }
    }

    /// The columns exported from `component`/`table`, or `None` if the table is not selected.
    pub fn table(&self, component: &str, table: &str) -> Option<Columns> {
        let (other, tables) = match self.components.get(component) {
            None => return self.other.then(Columns::all),
            Some(ComponentSel::Excluded) => return None,
            Some(ComponentSel::Included { other, tables }) => (*other, tables),
        };
        match tables.get(table) {
            None => other.then(Columns::all),
            Some(TableSel::Excluded) => None,
            Some(TableSel::Included(c)) => Some(c.clone()),
        }
    }

    /// A request body's raw `selection` field (`None` = absent). `null` is refused at once:
    /// serde refuses it while the body is deserialized, before the endpoint looks at its
    /// cursor; any other value is only parsed, by [`Selection::from_arg`], after that.
    pub fn field(body: &Json) -> Result<Option<Json>, ApiError> {
        match body.get("selection") {
            Some(Json::Null) => Err(ApiError::bad_json_target(
                "selection: invalid type: null, expected struct Selection",
            )),
            v => Ok(v.cloned()),
        }
    }

    /// Parses the request's `selection` field (`None` = absent).
    pub fn from_arg(v: Option<&Json>) -> Result<Selection, ApiError> {
        let Some(v) = v else {
            return Ok(Selection::everything());
        };
        let sel =
            parse(v).map_err(|e| ApiError::bad_json_target(format_args!("selection: {e}")))?;
        sel.validate()?;
        Ok(sel)
    }

    fn validate(&self) -> Result<(), ApiError> {
        let invalid = |cause: String| {
            ApiError::new(
                400,
                "InvalidDataSyncSelection",
                format!("Invalid selection: {cause}"),
            )
        };
        for (path, c) in &self.components {
            if !valid_component_path(path) {
                return Err(invalid(format!("invalid component path {path:?}")));
            }
            let ComponentSel::Included { tables, .. } = c else {
                continue;
            };
            for (name, t) in tables {
                if !valid_table_name(name) {
                    return Err(invalid(format!("invalid table name {name:?}")));
                }
                if let TableSel::Included(cols) = t {
                    if !cols.keeps("_id") {
                        return Err(invalid(
                            "`_id` must be included in the column selection".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn type_name(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("boolean `{b}`"),
        Json::Number(n) => format!("number `{n}`"),
        Json::String(s) => format!("string {s:?}"),
        Json::Array(_) => "sequence".into(),
        Json::Object(_) => "map".into(),
    }
}

fn inclusion(v: &Json) -> Result<bool, String> {
    match v {
        Json::String(s) => grammar::inclusion(v)
            .ok_or_else(|| format!("unknown variant `{s}`, expected `excluded` or `included`")),
        other => Err(format!(
            "invalid type: {}, expected a string",
            type_name(other)
        )),
    }
}

fn other_of(obj: &Map<String, Json>) -> Result<bool, String> {
    match obj.get("_other") {
        None => Err("missing field `_other`".into()),
        Some(v) => inclusion(v),
    }
}

fn parse(v: &Json) -> Result<Selection, String> {
    let Json::Object(obj) = v else {
        return Err(format!(
            "invalid type: {}, expected struct Selection",
            type_name(v)
        ));
    };
    let other = other_of(obj)?;
    // Serde's untagged enums report any failure inside a variant as this one message.
    let components = grammar::entries(obj, parse_component).ok_or_else(|| {
        "data did not match any variant of untagged enum ComponentSelection".to_owned()
    })?;
    Ok(Selection { other, components })
}

fn parse_component(v: &Json) -> Option<ComponentSel> {
    if grammar::is_excluded(v) {
        return Some(ComponentSel::Excluded);
    }
    let (other, tables) = grammar::level(v, parse_table)?;
    Some(ComponentSel::Included { other, tables })
}

fn parse_table(v: &Json) -> Option<TableSel> {
    if grammar::is_excluded(v) {
        return Some(TableSel::Excluded);
    }
    let (other, explicit) = grammar::level(v, grammar::inclusion)?;
    Some(TableSel::Included(Columns { other, explicit }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(v: Json) -> &'static str {
        match Selection::from_arg(Some(&v)) {
            Ok(_) => "ok",
            Err(e) => e.code,
        }
    }

    #[test]
    fn grammar_accepts_and_rejects_like_convex() {
        assert_eq!(code(json!({"_other": "incl"})), "ok");
        assert_eq!(
            code(json!({"_other": "excluded", "": {"_other": "excl", "users":
                {"_other": "included", "ssn": "excluded"}, "logs": "excl"}, "c/d": "excluded"})),
            "ok"
        );
        assert_eq!(code(json!(null)), "BadJsonBody");
        assert_eq!(code(json!({})), "BadJsonBody");
        assert_eq!(code(json!({"_other": "bogus"})), "BadJsonBody");
        assert_eq!(
            code(json!({"_other": "included", "": "included"})),
            "BadJsonBody"
        );
        assert_eq!(code(json!({"_other": "included", "": {}})), "BadJsonBody");
        assert_eq!(
            code(
                json!({"_other": "included", "": {"_other": "included", "t": {"_other": "included", "a": true}}})
            ),
            "BadJsonBody"
        );
        assert_eq!(
            code(
                json!({"_other": "included", "": {"_other": "included", "t": {"_other": "excluded"}}})
            ),
            "InvalidDataSyncSelection"
        );
        assert_eq!(
            code(
                json!({"_other": "included", "": {"_other": "included", "t": {"_other": "included", "_id": "excl"}}})
            ),
            "InvalidDataSyncSelection"
        );
        assert_eq!(
            code(json!({"_other": "included", "": {"_other": "included", "bad-name": "excluded"}})),
            "InvalidDataSyncSelection"
        );
        assert_eq!(
            code(json!({"_other": "included", "9comp": "excluded"})),
            "InvalidDataSyncSelection"
        );
    }

    #[test]
    fn resolution_follows_other_at_each_level() {
        let s = Selection::from_arg(Some(&json!({"_other": "excluded",
            "": {"_other": "excluded", "users": {"_other": "included", "ssn": "excluded"}},
            "c": {"_other": "included", "x": "excluded"}})))
        .unwrap();
        let users = s.table("", "users").unwrap();
        assert!(users.keeps("_id") && users.keeps("name") && !users.keeps("ssn"));
        assert!(s.table("", "posts").is_none());
        assert!(s.table("c", "y").unwrap().keeps("anything"));
        assert!(s.table("c", "x").is_none());
        assert!(s.table("other", "y").is_none());
        assert!(Selection::everything().table("z", "t").is_some());
    }
}
