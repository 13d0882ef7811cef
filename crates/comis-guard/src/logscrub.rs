//! The log sanitizer: credentials must not reach log files, which are shared for debugging and
//! shipped to aggregation services.
//!
//! ## What it defends
//! Two layers, meant to be used together by the logging pipeline:
//! - **Structured fields** ([`scrub_structured`]): the value of any field whose *key* names a
//!   credential ([`is_sensitive_key`]: `apiKey`, `token`, `password`, `secret`, `authorization`,
//!   `botToken`, `privateKey`, `cookie`, `webhookSecret`, `accessToken`, `refreshToken`,
//!   `credential(s)`, `passphrase`, `connectionString`, `accessKey`, `key`, and names ending in
//!   most of these, in camel, snake or kebab case) is replaced by `"[REDACTED]"`, at nesting
//!   depths 0 to 3, whatever its type. Every other string, and every key, goes through the
//!   free-text layer.
//! - **Free text** ([`scrub_text`]): every pattern of the registry's
//!   [`Family::Secret`](crate::patterns::Family::Secret), the same family the output guard uses,
//!   is redacted to `[REDACTED:<pattern_name>]`. Where a pattern isolates the value, the key name
//!   or public prefix stays readable: `password=[REDACTED:password_assignment]`,
//!   `postgres://app:[REDACTED:db_connection_string]@db:5432`. Unlike the output guard, warning
//!   patterns (bare `Bearer`, JWT) are redacted too: a log line never needs a live token.
//!
//! ## What it guarantees
//! - **Every input is scanned, whatever its size.** The original passed strings over 1 MiB
//!   through unchanged to avoid ReDoS, which leaked exactly the large payloads (request bodies,
//!   tool output) most likely to hold a credential. The `regex` crate is linear time, so there is
//!   no ReDoS to avoid; inputs of any length are scanned in full.
//! - **Idempotent**: scrubbing scrubbed text changes nothing, so a value logged twice, or
//!   re-logged by a relay, is not mangled.
//! - **Never fails**: if the pattern registry could not be built, [`scrub_text`] returns a
//!   single marker instead of the text (fail closed).
//!
//! ## What it does not do
//! Detect credentials that match no pattern and sit under no sensitive key (a bare random
//! string in a message), or anything below depth 3 of a structure by key name (strings there
//! are still scanned by pattern). The output guard's exact-match redaction of known values is
//! not applied here; it needs the daemon's secret values, which the log pipeline must not hold.

use std::sync::LazyLock;

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

use crate::output::{MAX_PASSES, pattern_pass, push_unique, redact};
use crate::patterns::{Family, PatternSet, Registry};
use crate::{Finding, GuardError};

/// Replacement for the value of a sensitive structured field.
pub const REDACTED: &str = "[REDACTED]";
/// Deepest nesting level (0 = top-level fields) at which sensitive keys are redacted.
pub const MAX_KEY_DEPTH: usize = 3;

/// Scrubbed text and what was removed from it.
#[derive(Debug, Clone, Serialize)]
pub struct Scrubbed {
    pub text: String,
    /// One finding per pattern that matched, in registry order.
    pub findings: Vec<Finding>,
}

/// The free-text sanitizer. [`scrub_text`] uses a process-wide one; build your own only to
/// avoid the global.
#[derive(Debug, Clone)]
pub struct LogScrubber {
    patterns: PatternSet,
}

impl LogScrubber {
    pub fn new() -> Result<Self, GuardError> {
        Ok(LogScrubber {
            patterns: Registry::global()?.select(&[Family::Secret])?,
        })
    }

    /// Redacts every credential pattern in `text`.
    pub fn scrub_text(&self, text: &str) -> Scrubbed {
        let mut findings = Vec::new();
        let mut out: Option<String> = None;
        // A marker next to the surrounding text can complete a new match; passes continue
        // until nothing changes, which is what makes scrubbing idempotent.
        for _ in 0..MAX_PASSES {
            let current = out.as_deref().unwrap_or(text);
            if !self.patterns.is_match(current) {
                break;
            }
            let mut spans = Vec::new();
            pattern_pass(&self.patterns, current, true, &mut spans, &mut findings);
            if spans.is_empty() {
                break;
            }
            out = Some(redact(current, spans).0);
        }
        Scrubbed {
            text: out.unwrap_or_else(|| text.to_owned()),
            findings,
        }
    }
}

static GLOBAL: LazyLock<Result<LogScrubber, GuardError>> = LazyLock::new(LogScrubber::new);

/// Redacts every credential pattern in `text` (see the module docs). Inputs of any size are
/// scanned in full.
pub fn scrub_text(text: &str) -> Scrubbed {
    match &*GLOBAL {
        Ok(s) => s.scrub_text(text),
        Err(_) => Scrubbed {
            text: "[REDACTED:log_scrubber_unavailable]".to_owned(),
            findings: vec![Finding::new(
                "log_scrubber_unavailable",
                "secret",
                crate::Severity::Critical,
            )],
        },
    }
}

/// Key names (lowercase, separators removed) that are credentials themselves.
const EXACT_KEYS: &[&str] = &["key", "auth", "pass", "pwd", "pw"];

/// Key name endings (lowercase, separators removed) that mark a credential: `token` covers
/// `token`, `botToken`, `access_token`, `refresh-token`, and so on.
const KEY_SUFFIXES: &[&str] = &[
    "apikey",
    "token",
    "password",
    "passwd",
    "secret",
    "authorization",
    "privatekey",
    "credential",
    "credentials",
    "passphrase",
    "connectionstring",
    "accesskey",
    "secretkey",
    "cookie",
];

/// Whether a structured field with this key holds a credential. Case-insensitive; `_`, `-`,
/// `.` and spaces are ignored, so `apiKey`, `api_key`, `API-KEY` and `api.key` are one key.
/// Besides the canonical names, any key *ending* in a credential word matches (`dbPassword`,
/// `githubToken`, `client_secret`, `set-cookie`); plain `key` matches only on its own, since
/// `sortKey` and `primaryKey` are not secrets.
pub fn is_sensitive_key(key: &str) -> bool {
    let norm: String = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    EXACT_KEYS.contains(&norm.as_str()) || KEY_SUFFIXES.iter().any(|s| norm.ends_with(s))
}

/// A log field value: the shape of JSON, without depending on a JSON crate. Object fields keep
/// their order.
#[derive(Debug, Clone, PartialEq)]
pub enum LogValue {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<LogValue>),
    Object(Vec<(String, LogValue)>),
}

impl Serialize for LogValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LogValue::Null => s.serialize_unit(),
            LogValue::Bool(b) => s.serialize_bool(*b),
            LogValue::Number(n) => s.serialize_f64(*n),
            LogValue::String(v) => s.serialize_str(v),
            LogValue::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            LogValue::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// A scrubbed structured value and what was removed from it.
#[derive(Debug, Clone, Serialize)]
pub struct ScrubbedValue {
    pub value: LogValue,
    /// `sensitive_key` when a field was redacted by name, plus one finding per pattern that
    /// matched in a string.
    pub findings: Vec<Finding>,
}

/// Redacts sensitive fields by key (depth 0 to [`MAX_KEY_DEPTH`]) and credential patterns in
/// every other string and every key, at any depth.
pub fn scrub_structured(value: &LogValue) -> ScrubbedValue {
    let mut findings = Vec::new();
    let value = scrub_value(value, 0, &mut findings);
    ScrubbedValue { value, findings }
}

fn scrub_value(value: &LogValue, depth: usize, findings: &mut Vec<Finding>) -> LogValue {
    match value {
        LogValue::String(s) => LogValue::String(scrub_into(s, findings)),
        LogValue::Array(items) => LogValue::Array(
            items
                .iter()
                .map(|v| scrub_value(v, depth + 1, findings))
                .collect(),
        ),
        LogValue::Object(fields) => LogValue::Object(
            fields
                .iter()
                .map(|(k, v)| {
                    let v = if depth <= MAX_KEY_DEPTH && is_sensitive_key(k) {
                        push_unique(
                            findings,
                            Finding::new("sensitive_key", "secret", crate::Severity::Critical),
                        );
                        LogValue::String(REDACTED.to_owned())
                    } else {
                        scrub_value(v, depth + 1, findings)
                    };
                    (scrub_into(k, findings), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn scrub_into(s: &str, findings: &mut Vec<Finding>) -> String {
    let out = scrub_text(s);
    for f in out.findings {
        push_unique(findings, f);
    }
    out.text
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn obj(fields: &[(&str, LogValue)]) -> LogValue {
        LogValue::Object(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    fn s(v: &str) -> LogValue {
        LogValue::String(v.to_owned())
    }

    #[test]
    fn clean_log_line_passes() {
        let line = "2026-05-04T10:00:00Z INFO agent=main session=42 tool=web_fetch status=200 \
                    took=120ms commit=9a038989604e8da62ecddbe2094b16ce1b778be1";
        let out = scrub_text(line);
        assert_eq!(out.text, line);
        assert!(out.findings.is_empty());
    }

    #[test]
    fn the_original_seventeen_replacements_all_redact() {
        // One line per replacement of the TypeScript sanitizer, in its order.
        let cases = [
            (
                "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
                "anthropic_key",
            ),
            ("sk-proj-abcdefghijklmnopqrstuvwxyz012345", "openai_key"),
            ("sk-abcdefghijklmnopqrstuvwxyz012345", "openai_key"),
            ("Bearer abcdef0123456789abcdef", "bearer_token"),
            (
                "123456789:AAHdqTcvCH1vGWJxfSe1ofSAs0K5PALDsaw",
                "telegram_bot_token",
            ),
            ("AKIAZ7QRSTUVWXYZ2345", "aws_access_key"),
            (
                "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws_secret_key",
            ),
            ("sk_live_ReTllpYQYfIZu2Jnf2lAPFjD", "stripe_key"),
            ("AIzaSyD3asb-2pEZVqMkmL6M9N6nHZRR_znhrh0", "google_api_key"),
            (
                "xapp-1-A0123456789-0123456789012-abcdef0123456789abcdef0123456789",
                "slack_token",
            ),
            (
                "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",
                "sendgrid_key",
            ),
            (
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fw",
                "jwt",
            ),
            (
                "mysql://root:hunter22@10.0.0.5:3306/app",
                "db_connection_string",
            ),
            (
                "https://deploy:s3cretpw@git.example.com/repo.git",
                "url_password",
            ),
            (
                "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs",
                "discord_bot_token",
            ),
            (
                "signing_secret=8b1118b376c313ed420e5133ba91307817ed52c2",
                "hex_secret",
            ),
            ("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", "github_token"),
        ];
        for (secret, name) in cases {
            let line = format!("request failed: {secret} (retrying)");
            let out = scrub_text(&line);
            assert!(
                out.findings.iter().any(|f| f.name == name),
                "{secret}: {:?}",
                out.findings
            );
            assert!(
                out.text.contains(&format!("[REDACTED:{name}]")),
                "{}",
                out.text
            );
            assert!(out.text.ends_with(" (retrying)"), "{}", out.text);
        }
    }

    #[test]
    fn key_names_stay_readable() {
        let out =
            scrub_text("connecting with password=Hunter2!x and api_key: 'Ab3dEf6hIj9kLm2nOp5q'");
        assert_eq!(
            out.text,
            "connecting with password=[REDACTED:password_assignment] and api_key: \
             '[REDACTED:generic_api_key]'"
        );
    }

    #[test]
    fn inputs_over_one_mebibyte_are_scanned() {
        let mut big = "x".repeat(2 * 1024 * 1024);
        big.push_str(" 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");
        let out = scrub_text(&big);
        assert!(out.text.ends_with(" [REDACTED:github_token]"));
        assert!(!out.text.contains("ghp_"));
    }

    #[test]
    fn hostile_inputs() {
        assert_eq!(scrub_text("").text, "");
        let pem_no_end = format!("-----BEGIN PRIVATE KEY-----{}", "A".repeat(100_000));
        let out = scrub_text(&pem_no_end);
        assert!(out.text.starts_with("[REDACTED:private_key]"));
        let tricky = "password=\u{202E}Hunter2!\u{200B}x 🏴\u{E0067}".repeat(500);
        let once = scrub_text(&tricky).text;
        assert_eq!(scrub_text(&once).text, once);
    }

    #[test]
    fn sensitive_keys() {
        for k in [
            "apiKey",
            "api_key",
            "API-KEY",
            "token",
            "password",
            "secret",
            "authorization",
            "Authorization",
            "botToken",
            "bot_token",
            "privateKey",
            "private-key",
            "cookie",
            "webhookSecret",
            "accessToken",
            "refresh_token",
            "credential",
            "credentials",
            "passphrase",
            "connectionString",
            "accessKey",
            "key",
            "dbPassword",
            "client_secret",
            "Set-Cookie",
            "x-api-key",
        ] {
            assert!(is_sensitive_key(k), "{k}");
        }
        for k in [
            "sortKey",
            "primaryKey",
            "keyboard",
            "tokens",
            "max_tokens",
            "tokenCount",
            "author",
            "session",
            "passenger",
            "user",
            "monkey",
            "secretName",
        ] {
            assert!(!is_sensitive_key(k), "{k}");
        }
    }

    #[test]
    fn structured_redaction_to_depth_three() {
        let deep = |leaf: LogValue| {
            // depth 0 object -> 1 -> 2 -> 3 holds `password`
            obj(&[(
                "a",
                obj(&[("b", obj(&[("c", obj(&[("password", leaf)]))]))]),
            )])
        };
        let out = scrub_structured(&deep(s("hunter2")));
        assert_eq!(out.value, deep(s(REDACTED)));
        assert_eq!(out.findings[0].name, "sensitive_key");
        // One level deeper is beyond the key rule, but pattern scanning still applies.
        let deeper = obj(&[("z", deep(s("x")))]);
        let out = scrub_structured(&obj(&[("z", deep(s("postgres://u:pw123456@db/x")))]));
        assert_eq!(
            out.value,
            obj(&[(
                "z",
                deep(s("postgres://u:[REDACTED:db_connection_string]@db/x"))
            )])
        );
        assert_eq!(scrub_structured(&deeper).value, deeper);
    }

    #[test]
    fn structured_values_of_any_type_and_arrays() {
        let v = obj(&[
            ("token", LogValue::Number(12345.0)),
            ("apiKey", obj(&[("nested", s("x"))])),
            (
                "list",
                LogValue::Array(vec![obj(&[("secret", s("v"))]), s("ok")]),
            ),
            (
                "msg",
                s("auth with 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"),
            ),
            ("count", LogValue::Number(3.0)),
            ("flag", LogValue::Bool(true)),
            ("none", LogValue::Null),
        ]);
        let out = scrub_structured(&v);
        let want = obj(&[
            ("token", s(REDACTED)),
            ("apiKey", s(REDACTED)),
            (
                "list",
                LogValue::Array(vec![obj(&[("secret", s(REDACTED))]), s("ok")]),
            ),
            ("msg", s("auth with [REDACTED:github_token]")),
            ("count", LogValue::Number(3.0)),
            ("flag", LogValue::Bool(true)),
            ("none", LogValue::Null),
        ]);
        assert_eq!(out.value, want);
        let names: Vec<_> = out.findings.iter().map(|f| f.name.as_ref()).collect();
        assert_eq!(names, ["sensitive_key", "github_token"]);
        let json = serde_json::to_string(&out.value).unwrap();
        assert!(json.starts_with("{\"token\":\"[REDACTED]\""), "{json}");
    }

    /// Fragments that look like credentials, to make random lines hit the patterns.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ -~]{0,12}",
            Just("password=".to_owned()),
            Just("api_key: ".to_owned()),
            Just("token=".to_owned()),
            Just("Bearer ".to_owned()),
            Just("https://u:".to_owned()),
            Just("@host/".to_owned()),
            Just("[REDACTED:".to_owned()),
            Just("]".to_owned()),
            Just("sk-ant-".to_owned()),
            "[A-Za-z0-9+/=_.-]{8,48}",
            "[0-9a-f]{32,40}",
            Just("-----BEGIN PRIVATE KEY-----\n".to_owned()),
            Just("-----END PRIVATE KEY-----".to_owned()),
            Just("Authorization: Basic ".to_owned()),
            Just("postgres://".to_owned()),
            Just("eyJ".to_owned()),
            Just("AKIA".to_owned()),
            Just("PW=".to_owned()),
            Just(". ".to_owned()),
        ]
    }

    proptest! {
        #[test]
        fn scrubbing_is_idempotent(parts in proptest::collection::vec(fragment(), 0..12)) {
            let line = parts.concat();
            let once = scrub_text(&line).text;
            let twice = scrub_text(&once).text;
            prop_assert_eq!(&twice, &once, "input {:?}", line);
        }

        #[test]
        fn arbitrary_text_does_not_panic(line in "(?s).{0,200}") {
            let _ = scrub_text(&line);
        }
    }
}
