//! The access key never leaves the process in a message. Every protocol line but RECORDs is
//! built by `Message::write_line`, which asks `contains_secret` and, when a line holds a
//! secret, rewrites its strings with `redact_value`: one place, whatever echoed the key (an
//! error body, a proxy's page, a Convex `message`, a retried 5xx).
//!
//! RECORD data is the deployment's own documents and is never rewritten.

use std::borrow::Cow;
use std::sync::RwLock;

use serde_json::Value;

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Shorter strings are not looked for: they would match ordinary text. Deploy keys are far
/// longer (`prod:<deployment>|<token>`).
const MIN_SECRET_LEN: usize = 8;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret, in every form an echo may carry it: as is, URL-encoded, and the token
/// after the key's last `|` (the part that grants access, whatever encodes the separators).
pub fn register_secret(secret: &str) {
    let mut forms = vec![secret.to_owned()];
    forms.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
    if let Some((_, token)) = secret.rsplit_once('|') {
        forms.push(token.to_owned());
    }
    let Ok(mut secrets) = SECRETS.write() else {
        return;
    };
    for f in forms {
        if f.len() >= MIN_SECRET_LEN && !secrets.contains(&f) {
            secrets.push(f);
        }
    }
    // Longest first, so a form that contains another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Whether `bytes` hold any registered secret. Cheap when none is registered or found.
pub fn contains_secret(bytes: &[u8]) -> bool {
    let Ok(secrets) = SECRETS.read() else {
        return false;
    };
    secrets
        .iter()
        .any(|s| memchr::memmem::find(bytes, s.as_bytes()).is_some())
}

/// `text` with every registered secret replaced by `REDACTED`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let Ok(secrets) = SECRETS.read() else {
        return Cow::Borrowed(text);
    };
    let mut out = Cow::Borrowed(text);
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = Cow::Owned(out.replace(s.as_str(), REDACTED));
        }
    }
    out
}

/// Redacts every string of a JSON value, object keys included.
pub fn redact_value(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Cow::Owned(r) = redact(s) {
                *s = r;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_value),
        Value::Object(o) => {
            let entries = std::mem::take(o);
            for (k, mut child) in entries {
                redact_value(&mut child);
                o.insert(redact(&k).into_owned(), child);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_form_of_a_registered_key_is_replaced() {
        let key = "prod:redact-test-deployment|eyJ2MiI6InJlZGFjdC10ZXN0LXRva2VuIn0";
        register_secret(key);
        let echoed = format!(
            "Authorization: Convex {key}; q={}; token {}",
            url::form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>(),
            key.rsplit_once('|').unwrap().1
        );
        let r = redact(&echoed);
        assert!(!r.contains("eyJ2MiI6InJlZGFjdC10ZXN0LXRva2VuIn0"), "{r}");
        assert!(!r.contains("redact-test-deployment|"), "{r}");
        assert!(r.starts_with("Authorization: Convex <redacted>;"), "{r}");
        assert!(contains_secret(echoed.as_bytes()));
        assert!(!contains_secret(r.as_bytes()));
        let mut v = json!({"a": [echoed.clone()], echoed.clone(): 1, "n": 5});
        redact_value(&mut v);
        assert!(!contains_secret(v.to_string().as_bytes()), "{v}");
        assert_eq!(v["n"], 5);
        // Ordinary text, and secrets too short to tell from it, are left alone.
        register_secret("short");
        assert_eq!(redact("a short note"), "a short note");
    }
}
