//! The one place where audit-event free text is sanitized before it is hashed and stored.
//!
//! Defends: credentials reaching the audit log through free-text fields (a sender name, a
//! tool parameter, a reason) — the audit log is append-only, so a leaked value could never be
//! removed from it.
//!
//! Guarantees: every string in an event's metadata, at any depth, and every object key passes
//! through [`text`]; the value of a key for which [`sensitive_key`] is true is replaced by
//! `"[REDACTED]"` whatever its type. The store itself keeps stored content out of events (it
//! records a SHA-256 and a length instead).
//!
//! Both rules are the log sanitizer's (`comis_guard::logscrub`): the shared Secret pattern
//! family for free text, its key list for field names. Unlike the log pipeline, redaction by
//! key applies at every depth here: metadata is small and an audit event is forever.
//!
//! Does not: detect a credential that matches no pattern and sits under no sensitive key.

use serde_json::Value;

/// Replacement for the value of a sensitive field.
pub(crate) const REDACTED: &str = "[REDACTED]";

/// Sanitizes one free-text string.
pub(crate) fn text(s: &str) -> String {
    comis_guard::logscrub::scrub_text(s).text
}

/// Whether a metadata key names a credential.
pub(crate) fn sensitive_key(key: &str) -> bool {
    comis_guard::logscrub::is_sensitive_key(key)
}

/// Sanitizes every string and key in `value`.
pub(crate) fn value(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(text(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(value).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if sensitive_key(&k) {
                        Value::String(REDACTED.to_owned())
                    } else {
                        value(v)
                    };
                    (text(&k), v)
                })
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_by_key_and_by_pattern_at_any_depth() {
        let token = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
        let v = value(json!({
            "tool": "http",
            "params": {"headers": {"Authorization": "Bearer abc"}, "url": format!("https://x.test/?t={token}")},
            "list": [{"deep": {"deeper": {"password": "hunter2hunter2"}}}],
            "note": format!("the token is {token}"),
            "apiKey": 12345,
        }));
        let text = v.to_string();
        assert!(!text.contains(token), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("Bearer abc"),
            "{text}"
        );
        assert_eq!(v["apiKey"], REDACTED);
        assert_eq!(v["tool"], "http");
    }
}
