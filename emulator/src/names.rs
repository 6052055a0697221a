//! Which table names and component paths Convex accepts. The write path refuses others,
//! the legacy export endpoints answer them with a bare 500, and the Data Sync API with
//! `InvalidDataSyncSelection`.

/// Convex table names: an identifier of at most 64 characters (system tables start with `_`).
pub fn valid_table_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    s.len() <= 64 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `""` (root) or identifiers separated by `/`.
pub fn valid_component_path(s: &str) -> bool {
    s.is_empty()
        || s.split('/').all(|seg| {
            let mut chars = seg.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
                && seg.len() <= 64
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}
