//! Loading `$COMIS_HOME/config.yaml`: read (bounded), parse (positions kept), resolve SecretRefs
//! through the vault and the environment, deserialize strictly, then let the owning crates check
//! the parts only they understand.
//!
//! Guarantees: every refusal names the file, the line and the column, and for an unknown key or
//! an unknown value the nearest valid one (edit distance); secret values never appear in an
//! error. A [`Loaded`] keeps the resolved document only inside `ResolvedConfig` (zeroized on
//! drop) and shows it only redacted.
//!
//! Does not: watch the file; the daemon reloads on SIGHUP by calling [`load`] again.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use comis_secrets::secret_ref::ResolvedConfig;
use comis_secrets::{HelperError, HelperRunner, SecretManager, SecretRefResolver, SecretsError};
use serde_json::Value;

use super::ConfigError;
use super::schema::Config;
use super::yaml::{self, Pos, Spans};

/// File name of the configuration inside `COMIS_HOME`.
pub const CONFIG_FILE: &str = "config.yaml";

/// `$COMIS_HOME/config.yaml`.
pub fn config_path(home: &Path) -> PathBuf {
    home.join(CONFIG_FILE)
}

/// A validated configuration.
pub struct Loaded {
    pub config: Config,
    pub path: PathBuf,
    /// The file as written (SecretRefs unresolved): safe to inspect for plaintext secrets.
    pub raw: Value,
    resolved: ResolvedConfig,
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field("path", &self.path)
            .field("resolved", &self.resolved)
            .finish_non_exhaustive()
    }
}

impl Loaded {
    /// The resolved document with secret-derived fields and secret-like keys `[REDACTED]`.
    pub fn redacted(&self) -> Value {
        self.resolved.redacted()
    }
}

/// Runs `exec` SecretRef credential helpers through comis-sandbox (the one place that spawns).
struct SandboxHelpers;

impl HelperRunner for SandboxHelpers {
    fn run(
        &self,
        argv: &[String],
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, HelperError> {
        let out = comis_sandbox::run_trusted_helper(argv, stdin, timeout)
            .map_err(|e| HelperError::Spawn(e.to_string()))?;
        if out.truncated {
            return Err(HelperError::OutputTooLarge(
                comis_sandbox::helper::HELPER_OUTPUT_CAP,
            ));
        }
        if !out.exit.success() {
            return Err(HelperError::Failed(format!("{:?}", out.exit)));
        }
        Ok(out.stdout.to_vec())
    }
}

/// The secrets SecretRefs resolve against: the vault (when there is one) and the environment.
///
/// # Errors
/// The vault's errors (wrong key, tampered file).
pub fn secret_manager(home: &Path) -> Result<SecretManager, SecretsError> {
    if home.join(comis_secrets::vault::VAULT_FILE).exists() {
        let vault = comis_secrets::Vault::open(home)?;
        SecretManager::from_vault_and_env(&vault)
    } else {
        Ok(SecretManager::from_process_env())
    }
}

/// Reads at most [`yaml::MAX_BYTES`] + 1 bytes of `path`.
pub fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    let io = |source| ConfigError::Io {
        action: "reading the configuration",
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ConfigError::Missing {
                path: path.to_owned(),
            }
        } else {
            io(e)
        }
    })?;
    let mut bytes = Vec::new();
    file.take(yaml::MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    String::from_utf8(bytes).map_err(|_| ConfigError::Invalid {
        file: path.to_owned(),
        pos: None,
        message: "the file is not valid UTF-8".into(),
    })
}

/// Loads and validates `$COMIS_HOME/config.yaml`.
///
/// # Errors
/// [`ConfigError::Missing`], [`ConfigError::Invalid`] (with position and suggestion), or I/O.
pub fn load(home: &Path) -> Result<Loaded, ConfigError> {
    let path = config_path(home);
    let text = read_bounded(&path)?;
    let secrets = secret_manager(home).map_err(|e| ConfigError::Invalid {
        file: path.clone(),
        pos: None,
        message: format!("opening the vault to resolve SecretRefs: {e}"),
    })?;
    load_text(&path, &text, home, &secrets)
}

/// [`load`] on a given text (`path` names it in errors).
///
/// # Errors
/// [`ConfigError::Invalid`].
pub fn load_text(
    path: &Path,
    text: &str,
    home: &Path,
    secrets: &SecretManager,
) -> Result<Loaded, ConfigError> {
    let invalid = |pos: Option<Pos>, message: String| ConfigError::Invalid {
        file: path.to_owned(),
        pos,
        message,
    };
    let (raw, spans) = yaml::parse(text).map_err(|e| invalid(e.pos, e.message))?;
    let runner = SandboxHelpers;
    let resolver = SecretRefResolver::new(secrets)
        .with_runner(&runner)
        .restrict_comis_home(home);
    let resolved = resolver.resolve_config(&raw).map_err(|e| {
        let pos = match &e {
            SecretsError::SecretRef { at, .. } | SecretsError::Helper { at, .. } => spans.value(at),
            _ => None,
        };
        invalid(pos, e.to_string())
    })?;
    let config: Config = serde_path_to_error::deserialize(resolved.value()).map_err(|e| {
        // serde quotes the offending value; a value that came from a secret is not repeated.
        if resolved.secret_paths().contains(&pointer_of(e.path())) {
            let inner = e.inner().to_string();
            let expected = inner.rfind(", expected").map_or("", |i| &inner[i..]);
            return invalid(
                spans.value(&pointer_of(e.path())),
                format!(
                    "{}: the value from a secret does not fit here{expected}",
                    dotted(&pointer_of(e.path()))
                ),
            );
        }
        typed_error(&e, &spans, path)
    })?;
    let check =
        |pointer: &str, r: Result<(), String>| r.map_err(|m| invalid(spans.value(pointer), m));
    check(
        "/executor/broker/bindings",
        comis_net::broker::Bindings::parse(&Value::Array(config.executor.broker.bindings.clone()))
            .map(|_| ())
            .map_err(|e| e.to_string()),
    )?;
    check(
        "/security/ssrf/allowHosts",
        comis_net::SsrfPolicy::with_allow_hosts(&config.security.ssrf.allow_hosts)
            .map(|_| ())
            .map_err(|e| e.to_string()),
    )?;
    // An agent naming a provider that does not exist would pass every type check and only
    // fail when the daemon builds it; refuse it here, where the position is known.
    // (Only agents the file names: the implicit default agent of a file without `agents` is
    // the daemon's to report.)
    for (id, agent) in &config.agents {
        let at = format!("/agents/{}", yaml::escape(id));
        if spans.holds(&at) && !config.providers.entries.contains_key(&agent.provider) {
            let known: Vec<&str> = config
                .providers
                .entries
                .keys()
                .map(String::as_str)
                .collect();
            return Err(invalid(
                spans
                    .value(&format!("{at}/provider"))
                    .or_else(|| spans.value(&at)),
                format!(
                    "agents.{id}.provider: no provider {:?} in providers.entries (configured: {})",
                    agent.provider,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
    Ok(Loaded {
        config,
        path: path.to_owned(),
        raw,
        resolved,
    })
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut p = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => p.push_str(&format!("/{index}")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                p.push('/');
                p.push_str(&yaml::escape(key));
            }
            Segment::Unknown => {}
        }
    }
    p
}

/// The dotted form of a pointer, for messages: `/agents/a/budgets` → `agents.a.budgets`.
fn dotted(pointer: &str) -> String {
    pointer
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

fn typed_error(
    e: &serde_path_to_error::Error<serde_json::Error>,
    spans: &Spans,
    file: &Path,
) -> ConfigError {
    let pointer = pointer_of(e.path());
    let message = e.inner().to_string();
    // serde's own wording: "unknown field `x`, expected one of `a`, `b`" and
    // "unknown variant `x`, expected one of …"; the candidates follow "expected".
    let unknown = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split_once('`'));
    let (pos, message) = match unknown {
        Some((bad, rest)) => {
            let candidates: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
            let is_field = message.starts_with("unknown field");
            // The path may stop at the parent mapping or include the key itself.
            let key_ptr = if pointer.ends_with(&format!("/{}", yaml::escape(bad))) {
                pointer.clone()
            } else {
                format!("{pointer}/{}", yaml::escape(bad))
            };
            let pos = if is_field {
                spans.key(&key_ptr).or_else(|| spans.value(&pointer))
            } else {
                spans.value(&pointer)
            };
            let what = if is_field { "key" } else { "value" };
            let place = if is_field {
                dotted(&key_ptr)
            } else {
                dotted(&pointer)
            };
            let hint = match nearest(bad, &candidates) {
                Some(best) => format!("; did you mean `{best}`?"),
                None if candidates.is_empty() => String::new(),
                None => format!("; valid: {}", candidates.join(", ")),
            };
            (pos, format!("unknown {what} `{bad}` at {place}{hint}"))
        }
        None => {
            let place = dotted(&pointer);
            let pos = spans.value(&pointer);
            if place.is_empty() {
                (pos, message)
            } else {
                (pos, format!("{place}: {message}"))
            }
        }
    };
    ConfigError::Invalid {
        file: file.to_owned(),
        pos,
        message,
    }
}

/// The candidate closest to `bad` by edit distance, if close enough to be a likely typo.
pub fn nearest<'a>(bad: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let bad_l = bad.to_lowercase();
    candidates
        .iter()
        .map(|c| (levenshtein(&bad_l, &c.to_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.chars().count().max(bad.chars().count()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use comis_secrets::{ExposeSecret, SecretString};

    fn load_str(text: &str) -> Result<Loaded, ConfigError> {
        let secrets = SecretManager::from_values([(
            "GW_TOKEN".to_owned(),
            SecretString::from("a".repeat(40)),
        )]);
        load_text(Path::new("/x/config.yaml"), text, Path::new("/x"), &secrets)
    }

    #[test]
    fn empty_file_is_the_safe_default() {
        let l = load_str("").unwrap();
        assert!(l.config.agents.contains_key("default"));
        assert_eq!(l.config.gateway.host, "127.0.0.1");
        assert!(
            l.config
                .security
                .action_confirmation
                .require_for_destructive
        );
    }

    #[test]
    fn unknown_key_names_line_column_and_suggestion() {
        let e = load_str("gateway:\n  host: 127.0.0.1\n  prot: 1234\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/x/config.yaml:3:3: "), "{e}");
        assert!(e.contains("did you mean `port`"), "{e}");
        let e = load_str("agents:\n  a:\n    budgets:\n      perHuor: 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":4:7:") && e.contains("`perHour`"), "{e}");
        let e = load_str("gatewya: {}\n").unwrap_err().to_string();
        assert!(e.contains(":1:1:") && e.contains("`gateway`"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_value() {
        let e = load_str("gateway:\n  port: seventy\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2:9:") && e.contains("gateway.port"), "{e}");
        let e = load_str("logLevel: verbose\n").unwrap_err().to_string();
        assert!(e.contains(":1:11:"), "{e}");
    }

    #[test]
    fn secret_refs_resolve_into_secret_strings() {
        let l = load_str(
            "gateway:\n  tokens:\n    - id: cli\n      secret: {source: env, id: GW_TOKEN}\n",
        )
        .unwrap();
        assert_eq!(
            l.config.gateway.tokens[0].secret.expose_secret(),
            "a".repeat(40)
        );
        let shown = l.redacted().to_string();
        assert!(!shown.contains(&"a".repeat(40)), "{shown}");
        let e = load_str("gateway:\n  tokens:\n    - id: cli\n      secret: ${MISSING}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":4:15:"), "{e}");
    }

    #[test]
    fn a_misplaced_secret_is_not_quoted_in_the_error() {
        let e = load_str("gateway:\n  host: ${GW_TOKEN}\n  port: ${GW_TOKEN}\n")
            .unwrap_err()
            .to_string();
        assert!(!e.contains(&"a".repeat(40)), "{e}");
        assert!(e.contains(":3:9:") && e.contains("expected u16"), "{e}");
    }

    #[test]
    fn owning_crates_check_their_parts() {
        let e = load_str("executor:\n  broker:\n    bindings:\n      - preset: nope\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":4:"), "{e}");
        assert!(load_str("security:\n  ssrf:\n    allowHosts: ['']\n").is_err());
    }

    #[test]
    fn nearest_is_a_typo_not_a_guess() {
        assert_eq!(nearest("prot", &["host", "port"]), Some("port"));
        assert_eq!(nearest("zzzzzz", &["host", "port"]), None);
    }
}
