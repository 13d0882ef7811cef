//! Config redaction: what any displayed configuration (CLI, gateway `config.read`, dashboard)
//! must go through.
//!
//! Defends: credentials against exposure through configuration views.
//!
//! Guarantees: [`Redactor::redact`] returns a copy in which
//! - every string or number under a *secret-like key* is `[REDACTED]` (keys are compared
//!   case-insensitively with `_` and `-` ignored; a key is secret-like when it ends in `token`,
//!   `secret`, `password`, `passwd`, `passphrase`, `apikey`, `credential`, `privatekey`,
//!   `accesskey`, `authorization`, `cookie` or `connectionstring`, optionally plural, or is
//!   `key`, `pwd` or `pin`, or ends with the word `Key` (`appKey`, `app_key`) — a superset of the original's list); under such a key every string and
//!   number leaf of a container is hidden too (`tokens: [{id, secret}]` hides both: a token id
//!   is not secret, but a nested `{value: …}` would be, and the walk cannot tell them apart);
//! - a `${NAME}` reference or a SecretRef object is left visible (it names a secret, it is not
//!   one);
//! - every field listed by pointer (e.g. [`crate::secret_ref::ResolvedConfig::secret_paths`])
//!   is `[REDACTED]`;
//! - every occurrence of a known secret value (at least [`MIN_KNOWN_LEN`] bytes), in any string
//!   or key, is replaced by `[REDACTED]`.
//!
//! Does not: recognize a secret of unknown value under an innocent key name (the output guard's
//! patterns are the layer for that), or values shorter than [`MIN_KNOWN_LEN`] bytes.

use std::collections::BTreeSet;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::SecretName;
use crate::secret_ref::SecretRef;

/// What a redacted value becomes.
pub const REDACTED: &str = "[REDACTED]";
/// Known values shorter than this are not searched for (they would redact ordinary text).
pub const MIN_KNOWN_LEN: usize = 6;

const SECRET_SUFFIXES: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "apikey",
    "credential",
    "privatekey",
    "accesskey",
    "authorization",
    "cookie",
    "connectionstring",
];
const SECRET_EXACT: &[&str] = &["key", "pwd", "pin"];

/// Whether a configuration key names a secret.
#[must_use]
pub fn is_secret_key(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    let singular = k.strip_suffix('s').unwrap_or(&k);
    // A `key` word at the end of a compound name (`appKey`, `app_key`, `APP-KEY`), but not
    // the letters k-e-y ending another word (`monkey`, `hotkey`).
    let raw = key.strip_suffix('s').unwrap_or(key);
    let lower = raw.to_ascii_lowercase();
    let key_word = raw.ends_with("Key")
        || raw.ends_with("KEY")
            && (raw.len() == 3 || !raw[..raw.len() - 3].chars().any(char::is_lowercase))
        || lower.ends_with("_key")
        || lower.ends_with("-key");
    key_word
        || SECRET_EXACT.contains(&singular)
        || SECRET_SUFFIXES
            .iter()
            .any(|s| k.ends_with(s) || singular.ends_with(s))
}

/// Redacts by key name only (the common case: show a config file).
#[must_use]
pub fn redact_config(config: &Value) -> Value {
    Redactor::new().redact(config)
}

fn is_reference(s: &str) -> bool {
    s.strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .is_some_and(|n| SecretName::new(n).is_ok())
}

/// A configured redaction: key names, plus optional pointers and known values.
#[derive(Default)]
pub struct Redactor {
    known: Vec<SecretString>,
    paths: BTreeSet<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("known_values", &self.known.len())
            .field("paths", &self.paths)
            .finish()
    }
}

impl Redactor {
    /// Redacts by key name only.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Also replaces every occurrence of these values.
    #[must_use]
    pub fn with_known_values(mut self, values: impl IntoIterator<Item = SecretString>) -> Self {
        self.known.extend(
            values
                .into_iter()
                .filter(|v| v.expose_secret().len() >= MIN_KNOWN_LEN),
        );
        // Longest first, so a value containing another is replaced whole.
        self.known
            .sort_by_key(|v| std::cmp::Reverse(v.expose_secret().len()));
        self
    }

    /// Also replaces every value stored in `vault` (they stay inside this type, which never
    /// shows them).
    ///
    /// # Errors
    /// The read errors of [`crate::Vault::open`].
    pub fn with_vault_values(self, vault: &crate::Vault) -> Result<Self, crate::SecretsError> {
        Ok(self.with_known_values(vault.decrypt_all()?.into_values()))
    }

    /// Also redacts the fields at these JSON pointers.
    #[must_use]
    pub fn with_paths(mut self, paths: impl IntoIterator<Item = String>) -> Self {
        self.paths.extend(paths);
        self
    }

    /// The redacted copy of `v`.
    #[must_use]
    pub fn redact(&self, v: &Value) -> Value {
        self.walk(v, "", false)
    }

    fn scrub(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for k in &self.known {
            let k = k.expose_secret();
            if out.contains(k) {
                out = out.replace(k, REDACTED);
            }
        }
        out
    }

    fn walk(&self, v: &Value, at: &str, secret: bool) -> Value {
        if !at.is_empty() && self.paths.contains(at) {
            return Value::String(REDACTED.into());
        }
        match v {
            Value::String(s) if secret && !is_reference(s) => Value::String(REDACTED.into()),
            Value::Number(_) if secret => Value::String(REDACTED.into()),
            Value::String(s) => Value::String(self.scrub(s)),
            Value::Array(a) => Value::Array(
                a.iter()
                    .enumerate()
                    .map(|(i, x)| self.walk(x, &format!("{at}/{i}"), secret))
                    .collect(),
            ),
            Value::Object(o) => {
                let is_ref = SecretRef::from_object(o, at).ok().flatten().is_some();
                let mut out = Map::new();
                for (k, x) in o {
                    let child_at = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    let child_secret = !is_ref && (secret || is_secret_key(k));
                    out.insert(self.scrub(k), self.walk(x, &child_at, child_secret));
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn key_names() {
        for k in [
            "botToken",
            "bot_token",
            "apiKey",
            "api_key",
            "API-KEY",
            "appSecret",
            "hmacSecret",
            "webhookSecret",
            "password",
            "private_key",
            "privateKey",
            "credentials",
            "tokens",
            "accessToken",
            "refreshToken",
            "connectionString",
            "cookie",
            "Authorization",
            "key",
            "secrets",
            "passphrase",
            "accessKey",
            "appKey",
            "app_key",
            "APIKEY",
            "keys",
            "publicKeys",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "port",
            "host",
            "keyPath",
            "allowFrom",
            "id",
            "scopes",
            "model",
            "bypass",
            "monkey",
            "tokenizer",
            "hotkey",
            "Monkey",
            "keyring",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn redacts_nested_secret_fields_and_keeps_the_rest() {
        let cfg = json!({
            "gateway": {"port": 4766, "tokens": [{"id": "cli", "secret": "s3cr3t-gw-token-value", "scopes": ["admin"]}]},
            "channels": {"telegram": {"botToken": "123:ABCdef", "allowFrom": ["alice"]}},
            "providers": {"openai": {"apiKey": "${OPENAI_API_KEY}", "model": "gpt"}},
            "webhooks": {"token": {"source": "file", "id": "/run/secrets/hook"}},
            "db": {"password": 123456, "enabled": true, "extra": null},
            "apiKeys": ["k1-aaaaaaa", "k2-bbbbbbb"],
        });
        let r = redact_config(&cfg);
        assert_eq!(r["gateway"]["port"], 4766);
        assert_eq!(
            r["gateway"]["tokens"][0]["id"], REDACTED,
            "under `tokens`, ids are hidden too"
        );
        assert_eq!(r["gateway"]["tokens"][0]["secret"], REDACTED);
        assert_eq!(r["channels"]["telegram"]["botToken"], REDACTED);
        assert_eq!(r["channels"]["telegram"]["allowFrom"][0], "alice");
        assert_eq!(r["providers"]["openai"]["apiKey"], "${OPENAI_API_KEY}");
        assert_eq!(r["providers"]["openai"]["model"], "gpt");
        assert_eq!(r["webhooks"]["token"]["source"], "file");
        assert_eq!(r["db"]["password"], REDACTED);
        assert_eq!(r["db"]["enabled"], true);
        assert_eq!(r["apiKeys"], json!([REDACTED, REDACTED]));
        let s = r.to_string();
        for v in ["s3cr3t", "ABCdef", "123456", "k1-a"] {
            assert!(!s.contains(v), "{v} in {s}");
        }
    }

    #[test]
    fn known_values_and_paths() {
        let cfg = json!({"url": "https://h/?k=hunter2hunter2&x=1", "note": "hunter2hunter2", "short": "abc",
                         "hunter2hunter2": 1, "plain": {"field": "x"}});
        let r = Redactor::new()
            .with_known_values([
                SecretString::from("hunter2hunter2"),
                SecretString::from("abc"),
            ])
            .with_paths(["/plain/field".to_owned()])
            .redact(&cfg);
        assert_eq!(r["url"], "https://h/?k=[REDACTED]&x=1");
        assert_eq!(r["note"], REDACTED);
        assert_eq!(r["short"], "abc");
        assert_eq!(r["plain"]["field"], REDACTED);
        assert!(!r.to_string().contains("hunter2"));
    }

    proptest! {
        #[test]
        fn a_known_value_never_survives(secret in "[a-zA-Z0-9]{6,20}", pre in "\\PC{0,10}", post in "\\PC{0,10}") {
            prop_assume!(!REDACTED.contains(&secret));
            let cfg = json!({"a": format!("{pre}{secret}{post}"), "b": [secret.clone()], "c": {"d": secret.clone()}});
            let r = Redactor::new().with_known_values([SecretString::from(secret.clone())]).redact(&cfg);
            prop_assert!(!r.to_string().contains(&secret));
        }

        #[test]
        fn secret_keys_never_show_their_string(key in "(bot|api|app|hmac)(Token|Secret|Key|_key|_token)", val in "[a-z0-9]{8,16}") {
            let cfg = json!({"x": {key.clone(): val.clone()}});
            prop_assert!(!redact_config(&cfg).to_string().contains(&val));
        }
    }
}
