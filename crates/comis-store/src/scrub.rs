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
//! Does not (yet): detect credentials by pattern. `comis_guard::logscrub` (the shared Secret
//! pattern family) is not on main at the time of writing; [`text`] and [`sensitive_key`] are
//! the two calls to wire to `comis_guard::logscrub::scrub_text(s).text` and
//! `comis_guard::logscrub::is_sensitive_key` when it lands.

use serde_json::Value;

/// Replacement for the value of a sensitive field.
pub(crate) const REDACTED: &str = "[REDACTED]";

/// Sanitizes one free-text string.
pub(crate) fn text(s: &str) -> String {
    s.to_owned()
}

/// Whether a metadata key names a credential.
pub(crate) fn sensitive_key(_key: &str) -> bool {
    false
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
