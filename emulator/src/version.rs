//! The `Convex-Client` header's `<client>-<semver>` form: Convex refuses a header that does
//! not have it, and names data sync ids after the client part.

/// `x.y.z` (a pre-release or build suffix allowed): what Convex accepts after a client name.
pub fn is_semver(s: &str) -> bool {
    let core = s.split(['-', '+']).next().unwrap_or("");
    let nums: Vec<&str> = core.split('.').collect();
    nums.len() == 3
        && nums
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The client name of a `<client>-<semver>` value: what precedes the first `-` whose rest is
/// a semver (so `airbyte-export-1.2.3` and pre-release suffixes like `x-1.0.0-rc.1` split
/// where they should). `None` when no `-` is followed by a semver.
pub fn client_name(header: &str) -> Option<&str> {
    header
        .match_indices('-')
        .map(|(i, _)| i)
        .find(|&i| is_semver(&header[i + 1..]))
        .map(|i| &header[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_split_before_the_semver() {
        assert_eq!(client_name("airbyte-export-0.5.0"), Some("airbyte-export"));
        assert_eq!(client_name("x-1.0.0-rc.1"), Some("x"));
        assert_eq!(client_name("npm-1.0"), None);
        assert_eq!(client_name("-1.0.0"), Some(""));
        assert!(is_semver("1.2.3+build") && !is_semver("1.2") && !is_semver("1.a.3"));
    }
}
