//! The grammar both `selection` arguments share (the legacy endpoints' fine-grained one and
//! the Data Sync API's): at each level `{"_other": I, "<name>": E, ...}`, with `_other`
//! required, where I is `"included"` / `"excluded"` (or the aliases `"incl"` / `"excl"`).

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

/// An inclusion (I): `true` for included; `None` if `v` is none.
pub fn inclusion(v: &Json) -> Option<bool> {
    match v.as_str()? {
        "included" | "incl" => Some(true),
        "excluded" | "excl" => Some(false),
        _ => None,
    }
}

/// Whether `v` is the `"excluded"` that stands for a whole component or table.
pub fn is_excluded(v: &Json) -> bool {
    matches!(v.as_str(), Some("excluded" | "excl"))
}

/// A level's entries other than `_other`, each parsed by `entry`; `None` at the first that
/// does not parse.
pub fn entries<T>(
    obj: &Map<String, Json>,
    mut entry: impl FnMut(&Json) -> Option<T>,
) -> Option<BTreeMap<String, T>> {
    obj.iter()
        .filter(|(k, _)| *k != "_other")
        .map(|(k, v)| Some((k.clone(), entry(v)?)))
        .collect()
}

/// A level: its `_other` and its [`entries`]; `None` if `v` is no object, has no valid
/// `_other`, or an entry does not parse.
pub fn level<T>(
    v: &Json,
    entry: impl FnMut(&Json) -> Option<T>,
) -> Option<(bool, BTreeMap<String, T>)> {
    let obj = v.as_object()?;
    Some((inclusion(obj.get("_other")?)?, entries(obj, entry)?))
}
