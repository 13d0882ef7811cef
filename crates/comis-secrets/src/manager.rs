//! SecretManager and ScopedSecretManager: the only road from code to a credential.
//!
//! Defends: credentials against enumeration (there is no "all values" call), against agents
//! reading credentials meant for other agents (per-agent allowlists), and against silent access
//! (every scoped access is reported to an observer as a `secret:accessed` event).
//!
//! Guarantees:
//! - [`SecretManager`] holds a *defensive snapshot* taken at creation: later changes to the
//!   process environment or the vault are invisible to it. It answers `get`, `has`, `require`
//!   and `keys` (names only). `COMIS_MASTER_KEY` is never part of the snapshot.
//! - [`ScopedSecretManager`] implements the same [`SecretAccess`] trait (callers cannot tell it
//!   apart), grants exactly the names its [`SecretAllowlist`] matches, and **fails closed**: an
//!   empty or missing allowlist grants nothing; unrestricted access needs an explicit `["*"]`.
//!   Every `get`/`has`/`require` emits one [`SecretAccessEvent`] with outcome `success`,
//!   `denied` or `not_found`; a denied name is reported as denied whether it exists or not, so
//!   an agent cannot probe for names outside its scope.
//! - Errors name the key (and agent), never a value; values are [`SecretString`]s.
//!
//! Known weakness of the original we do not copy: in the seeds and the TypeScript original an
//! empty `agents.<id>.secrets.allow` means *unrestricted* (with a one-time warning), so an agent
//! whose config forgot the list can read every credential. Here it grants nothing.
//!
//! Does not: stop code that holds a value from copying it; limit how often a name is read
//! (rate limiting belongs to the caller).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use serde::Serialize;

use crate::master_key::ENV_VAR as MASTER_KEY_VAR;
use crate::{SecretsError, Vault};

/// The name of the audit event every scoped access emits.
pub const SECRET_ACCESSED_EVENT: &str = "secret:accessed";

/// The four operations of a secret manager. Implemented by [`SecretManager`] and by its
/// per-agent decorator [`ScopedSecretManager`].
pub trait SecretAccess {
    /// The value of `name`, or `None`.
    fn get(&self, name: &str) -> Option<SecretString>;
    /// Whether `name` is set (and, for a scoped manager, allowed).
    fn has(&self, name: &str) -> bool;
    /// The value of `name`.
    ///
    /// # Errors
    /// [`SecretsError::Required`] when it is not set; [`SecretsError::Denied`] when a scoped
    /// manager does not allow it.
    fn require(&self, name: &str) -> Result<SecretString, SecretsError>;
    /// The names (never values) that are set (and allowed), sorted.
    fn keys(&self) -> Vec<String>;
}

/// A snapshot of secrets: vault entries and/or the process environment.
#[derive(Clone)]
pub struct SecretManager {
    values: BTreeMap<String, SecretString>,
}

impl fmt::Debug for SecretManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretManager")
            .field("keys", &self.values.len())
            .finish_non_exhaustive()
    }
}

fn env_snapshot() -> BTreeMap<String, SecretString> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            let v = v.into_string().ok()?;
            (k != MASTER_KEY_VAR).then(|| (k, SecretString::from(v)))
        })
        .collect()
}

impl SecretManager {
    /// A manager over the given values.
    pub fn from_values(values: impl IntoIterator<Item = (String, SecretString)>) -> Self {
        Self {
            values: values
                .into_iter()
                .filter(|(k, _)| k != MASTER_KEY_VAR)
                .collect(),
        }
    }

    /// A snapshot of the process environment now (variables that are not valid UTF-8 and
    /// `COMIS_MASTER_KEY` are left out).
    #[must_use]
    pub fn from_process_env() -> Self {
        Self {
            values: env_snapshot(),
        }
    }

    /// A snapshot of every vault entry, overridden by the process environment where both
    /// define a name (as in the original comis: the operator's environment wins).
    ///
    /// # Errors
    /// The read errors of [`Vault::open`].
    pub fn from_vault_and_env(vault: &Vault) -> Result<Self, SecretsError> {
        let mut values = vault.decrypt_all()?;
        values.extend(env_snapshot());
        Ok(Self { values })
    }
}

impl SecretAccess for SecretManager {
    fn get(&self, name: &str) -> Option<SecretString> {
        self.values.get(name).cloned()
    }

    fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    fn require(&self, name: &str) -> Result<SecretString, SecretsError> {
        self.get(name).ok_or_else(|| SecretsError::Required {
            name: display_safe_name(name),
        })
    }

    fn keys(&self) -> Vec<String> {
        self.values.keys().cloned().collect()
    }
}

/// A requested name is attacker-chosen when an agent asks for it: made safe for errors and
/// audit events, at most 128 characters.
fn display_safe_name(name: &str) -> String {
    comis_guard::unicode::display_safe(name, 128)
}

// ---------------------------------------------------------------------------------------------

/// A per-agent allowlist of secret names: glob patterns where only `*` is special (any run of
/// characters, possibly empty), matched case-insensitively against the whole name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretAllowlist {
    patterns: Vec<String>,
}

impl SecretAllowlist {
    /// Grants nothing (what an empty or missing `agents.<id>.secrets.allow` means).
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Builds an allowlist from the `agents.<id>.secrets.allow` entries.
    ///
    /// # Errors
    /// [`SecretsError::InvalidPattern`] for an empty pattern, one longer than 128 bytes, or one
    /// with characters other than `A-Z a-z 0-9 _ *`.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, SecretsError> {
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let p = p.as_ref();
            let invalid = |reason: &str| SecretsError::InvalidPattern {
                pattern: display_safe_name(p),
                reason: reason.to_owned(),
            };
            if p.is_empty() {
                return Err(invalid("the pattern is empty"));
            }
            if p.len() > 128 {
                return Err(invalid("the pattern is longer than 128 bytes"));
            }
            if !p
                .bytes()
                .all(|b| b == b'_' || b == b'*' || b.is_ascii_alphanumeric())
            {
                return Err(invalid(
                    "only A-Z, a-z, 0-9, _ and the wildcard * are allowed",
                ));
            }
            out.push(p.to_ascii_lowercase());
        }
        Ok(Self { patterns: out })
    }

    /// The allowlist of `agent_id` from a configuration: `agents.<id>.secrets.allow`. A
    /// missing agent, `secrets` section or `allow` list grants nothing.
    ///
    /// # Errors
    /// [`SecretsError::InvalidPattern`] when `allow` is not a list of valid pattern strings.
    pub fn from_config(config: &serde_json::Value, agent_id: &str) -> Result<Self, SecretsError> {
        let Some(allow) = config
            .get("agents")
            .and_then(|a| a.get(agent_id))
            .and_then(|a| a.get("secrets"))
            .and_then(|s| s.get("allow"))
        else {
            return Ok(Self::none());
        };
        let not_list = || SecretsError::InvalidPattern {
            pattern: format!("agents.{}.secrets.allow", display_safe_name(agent_id)),
            reason: "must be a list of strings".into(),
        };
        let items = allow.as_array().ok_or_else(not_list)?;
        let patterns = items
            .iter()
            .map(|v| v.as_str().ok_or_else(not_list))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(&patterns)
    }

    /// Whether `name` is granted.
    #[must_use]
    pub fn allows(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.patterns
            .iter()
            .any(|p| glob_match(p.as_bytes(), name.as_bytes()))
    }

    /// Whether the list grants nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// Wildcard match with `*` only; linear in practice, O(p·n) worst case (both ≤ 128 bytes for
/// patterns, names are whatever the caller asks).
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

// ---------------------------------------------------------------------------------------------

/// The result of one access attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessOutcome {
    /// The name is allowed and set.
    Success,
    /// The allowlist does not grant the name.
    Denied,
    /// The name is allowed but not set.
    NotFound,
}

/// One `secret:accessed` audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretAccessEvent {
    /// The agent that asked.
    pub agent_id: String,
    /// The name it asked for (control characters replaced, at most 128 characters).
    pub secret_name: String,
    /// What happened.
    pub outcome: AccessOutcome,
    /// When, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// Receives every [`SecretAccessEvent`] (the daemon connects this to its event bus).
pub trait SecretAccessObserver: Send + Sync {
    /// Called once per access, after the decision, before the value is returned.
    fn on_access(&self, event: &SecretAccessEvent);
}

impl<F: Fn(&SecretAccessEvent) + Send + Sync> SecretAccessObserver for F {
    fn on_access(&self, event: &SecretAccessEvent) {
        self(event);
    }
}

/// A [`SecretAccess`] decorator that limits one agent to its allowlist and reports every
/// access.
pub struct ScopedSecretManager {
    base: Arc<dyn SecretAccess + Send + Sync>,
    agent_id: String,
    allow: SecretAllowlist,
    observer: Arc<dyn SecretAccessObserver>,
}

impl fmt::Debug for ScopedSecretManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedSecretManager")
            .field("agent_id", &self.agent_id)
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

impl ScopedSecretManager {
    /// Scopes `base` to `agent_id` with `allow`; events go to `observer`.
    pub fn new(
        base: Arc<dyn SecretAccess + Send + Sync>,
        agent_id: impl Into<String>,
        allow: SecretAllowlist,
        observer: Arc<dyn SecretAccessObserver>,
    ) -> Self {
        Self {
            base,
            agent_id: agent_id.into(),
            allow,
            observer,
        }
    }

    /// The agent this manager serves.
    #[must_use]
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    fn decide(&self, name: &str) -> AccessOutcome {
        if !self.allow.allows(name) {
            AccessOutcome::Denied
        } else if self.base.has(name) {
            AccessOutcome::Success
        } else {
            AccessOutcome::NotFound
        }
    }

    fn emit(&self, name: &str, outcome: AccessOutcome) {
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.observer.on_access(&SecretAccessEvent {
            agent_id: self.agent_id.clone(),
            secret_name: display_safe_name(name),
            outcome,
            timestamp_ms,
        });
    }
}

impl SecretAccess for ScopedSecretManager {
    fn get(&self, name: &str) -> Option<SecretString> {
        let mut outcome = self.decide(name);
        let value = match outcome {
            AccessOutcome::Success => self.base.get(name),
            _ => None,
        };
        if outcome == AccessOutcome::Success && value.is_none() {
            outcome = AccessOutcome::NotFound;
        }
        self.emit(name, outcome);
        value
    }

    fn has(&self, name: &str) -> bool {
        let outcome = self.decide(name);
        self.emit(name, outcome);
        outcome == AccessOutcome::Success
    }

    fn require(&self, name: &str) -> Result<SecretString, SecretsError> {
        match self.decide(name) {
            AccessOutcome::Denied => {
                self.emit(name, AccessOutcome::Denied);
                Err(SecretsError::Denied {
                    agent_id: display_safe_name(&self.agent_id),
                    name: display_safe_name(name),
                })
            }
            _ => match self.base.get(name) {
                Some(v) => {
                    self.emit(name, AccessOutcome::Success);
                    Ok(v)
                }
                None => {
                    self.emit(name, AccessOutcome::NotFound);
                    Err(SecretsError::Required {
                        name: display_safe_name(name),
                    })
                }
            },
        }
    }

    fn keys(&self) -> Vec<String> {
        self.base
            .keys()
            .into_iter()
            .filter(|k| self.allow.allows(k))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;
    use secrecy::ExposeSecret;
    use std::sync::Mutex;

    const VALUE: &str = "sk-proj-VERYSECRETVALUE0123456789";

    fn base() -> Arc<dyn SecretAccess + Send + Sync> {
        Arc::new(SecretManager::from_values([
            ("OPENAI_API_KEY".to_owned(), SecretString::from(VALUE)),
            ("OPENAI_ORG".to_owned(), SecretString::from("org-1")),
            (
                "TELEGRAM_BOT_TOKEN".to_owned(),
                SecretString::from("123:abc"),
            ),
            (MASTER_KEY_VAR.to_owned(), SecretString::from("never")),
        ]))
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<SecretAccessEvent>>);
    impl SecretAccessObserver for Recorder {
        fn on_access(&self, e: &SecretAccessEvent) {
            self.0.lock().unwrap().push(e.clone());
        }
    }
    impl Recorder {
        fn outcomes(&self) -> Vec<(String, AccessOutcome)> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|e| (e.secret_name.clone(), e.outcome))
                .collect()
        }
    }

    fn scoped(patterns: &[&str]) -> (ScopedSecretManager, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        let m = ScopedSecretManager::new(
            base(),
            "support",
            SecretAllowlist::new(patterns).unwrap(),
            rec.clone(),
        );
        (m, rec)
    }

    #[test]
    fn manager_has_four_operations_and_never_the_master_key() {
        let m = SecretManager::from_values([
            ("A".to_owned(), SecretString::from(VALUE)),
            (MASTER_KEY_VAR.to_owned(), SecretString::from("k")),
        ]);
        assert_eq!(m.get("A").unwrap().expose_secret(), VALUE);
        assert!(m.has("A") && !m.has("B") && !m.has(MASTER_KEY_VAR));
        assert_eq!(m.keys(), vec!["A".to_owned()]);
        let e = m.require("B").unwrap_err().to_string();
        assert!(e.contains("B") && e.contains("not set"), "{e}");
        let d = format!("{m:?} {:?}", m.get("A"));
        assert!(!d.contains(VALUE), "{d}");
    }

    #[test]
    fn env_snapshot_is_defensive() {
        // The process environment is read once; later changes cannot be made visible without
        // `unsafe` (set_var), so this checks the snapshot excludes the master key variable and
        // is a copy: dropping it and taking another gives an equal set of names.
        let a = SecretManager::from_process_env();
        assert!(!a.has(MASTER_KEY_VAR));
        let b = SecretManager::from_process_env();
        assert_eq!(a.keys(), b.keys());
    }

    #[test]
    fn empty_allowlist_grants_nothing_and_says_so() {
        let (m, rec) = scoped(&[]);
        assert!(m.get("OPENAI_API_KEY").is_none());
        assert!(!m.has("OPENAI_API_KEY"));
        let e = m.require("OPENAI_API_KEY").unwrap_err().to_string();
        assert!(e.contains("support") && e.contains("not allowed"), "{e}");
        assert!(m.keys().is_empty());
        assert!(
            rec.outcomes()
                .iter()
                .all(|(_, o)| *o == AccessOutcome::Denied)
        );
        assert_eq!(rec.outcomes().len(), 3);
    }

    #[test]
    fn glob_allowlist_is_case_insensitive_and_audited() {
        let (m, rec) = scoped(&["openai_*"]);
        assert_eq!(m.get("OPENAI_API_KEY").unwrap().expose_secret(), VALUE);
        assert!(m.has("OPENAI_ORG"));
        assert!(m.get("OPENAI_MISSING").is_none());
        assert!(m.get("TELEGRAM_BOT_TOKEN").is_none());
        assert!(matches!(
            m.require("OPENAI_NOPE"),
            Err(SecretsError::Required { .. })
        ));
        assert!(matches!(
            m.require("TELEGRAM_BOT_TOKEN"),
            Err(SecretsError::Denied { .. })
        ));
        assert_eq!(
            m.keys(),
            vec!["OPENAI_API_KEY".to_owned(), "OPENAI_ORG".to_owned()]
        );
        use AccessOutcome::*;
        assert_eq!(
            rec.outcomes(),
            vec![
                ("OPENAI_API_KEY".into(), Success),
                ("OPENAI_ORG".into(), Success),
                ("OPENAI_MISSING".into(), NotFound),
                ("TELEGRAM_BOT_TOKEN".into(), Denied),
                ("OPENAI_NOPE".into(), NotFound),
                ("TELEGRAM_BOT_TOKEN".into(), Denied),
            ]
        );
        let ev = &rec.0.lock().unwrap()[0];
        assert_eq!(ev.agent_id, "support");
        let json = serde_json::to_string(ev).unwrap();
        assert!(json.contains("\"outcome\":\"success\""), "{json}");
        assert!(!json.contains(VALUE));
    }

    #[test]
    fn explicit_star_grants_all_but_master_key_absent() {
        let (m, _) = scoped(&["*"]);
        assert!(m.has("TELEGRAM_BOT_TOKEN") && m.has("OPENAI_ORG"));
        assert!(!m.has(MASTER_KEY_VAR));
    }

    #[test]
    fn hostile_names_are_sanitized_in_events_and_errors() {
        let (m, rec) = scoped(&["*"]);
        let evil = format!("X\n{}\u{1b}[31m", "A".repeat(500));
        assert!(m.get(&evil).is_none());
        let e = m.require(&evil).unwrap_err().to_string();
        assert!(!e.contains('\n') && !e.contains('\u{1b}'));
        let ev = &rec.0.lock().unwrap()[0];
        assert!(!ev.secret_name.contains('\n') && ev.secret_name.chars().count() <= 129);
    }

    #[test]
    fn allowlist_from_config_fails_closed() {
        let cfg = serde_json::json!({"agents": {
            "a": {"secrets": {"allow": ["OPENAI_*"]}},
            "b": {"secrets": {}},
            "c": {},
            "d": {"secrets": {"allow": "OPENAI_*"}},
            "e": {"secrets": {"allow": [1]}},
            "f": {"secrets": {"allow": []}},
        }});
        assert!(
            SecretAllowlist::from_config(&cfg, "a")
                .unwrap()
                .allows("openai_x")
        );
        for id in ["b", "c", "f", "missing"] {
            assert!(
                SecretAllowlist::from_config(&cfg, id).unwrap().is_empty(),
                "{id}"
            );
        }
        for id in ["d", "e"] {
            assert!(SecretAllowlist::from_config(&cfg, id).is_err(), "{id}");
        }
        assert!(
            SecretAllowlist::from_config(&serde_json::json!(null), "a")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn invalid_patterns_are_refused() {
        for p in [
            "",
            "OPENAI-*",
            "a.b",
            "(.*)",
            "[A-Z]*",
            "x?",
            &"A".repeat(129),
        ] {
            assert!(SecretAllowlist::new(&[p]).is_err(), "{p}");
        }
    }

    #[test]
    fn observer_closures_work() {
        let seen = Arc::new(Mutex::new(0));
        let s2 = seen.clone();
        let obs: Arc<dyn SecretAccessObserver> = Arc::new(move |_: &SecretAccessEvent| {
            *s2.lock().unwrap() += 1;
        });
        let m = ScopedSecretManager::new(base(), "a", SecretAllowlist::none(), obs);
        let _ = m.has("X");
        assert_eq!(*seen.lock().unwrap(), 1);
    }

    fn naive(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| naive(rest, &s[i..])),
            Some((c, rest)) => s.first() == Some(c) && naive(rest, &s[1..]),
        }
    }

    proptest! {
        #[test]
        fn glob_agrees_with_naive(p in "[ab*]{0,8}", s in "[ab]{0,10}") {
            prop_assert_eq!(glob_match(p.as_bytes(), s.as_bytes()), naive(p.as_bytes(), s.as_bytes()));
        }

        #[test]
        fn scoped_never_returns_a_name_outside_the_allowlist(
            pats in proptest::collection::vec("[A-Z_*]{1,6}", 0..4),
            name in "[A-Z_]{1,20}",
        ) {
            let allow = SecretAllowlist::new(&pats).unwrap();
            let values = SecretManager::from_values([(name.clone(), SecretString::from("v"))]);
            let m = ScopedSecretManager::new(
                Arc::new(values), "a", allow.clone(), Arc::new(|_: &SecretAccessEvent| {}));
            prop_assert_eq!(m.get(&name).is_some(), allow.allows(&name));
            prop_assert!(m.keys().iter().all(|k| allow.allows(k)));
            if pats.is_empty() {
                prop_assert!(m.get(&name).is_none());
            }
        }
    }
}
