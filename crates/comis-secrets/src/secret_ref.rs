//! SecretRef resolution: configuration that names its credentials instead of containing them.
//!
//! Defends: plaintext credentials in `config.yaml`, and the resolver itself against being
//! turned into a file-read or command-execution primitive by a hostile config value.
//!
//! ## Syntax
//! - `${NAME}` inside any configuration string is replaced by the secret `NAME` (looked up
//!   through a [`SecretAccess`], so a scoped manager audits it). `$${` writes a literal `${`.
//!   An unset name, an invalid name or an unterminated `${` is an error (fail closed).
//! - A SecretRef object replaces a string value: an object whose only keys are `source`, `id`
//!   and optionally `provider`:
//!   - `{source: env, id: NAME}`: the secret `NAME` through the [`SecretAccess`];
//!   - `{source: file, id: "/abs/path"}` or `id: "/abs/path#/json/pointer"`: the trimmed file
//!     content, or the string at that RFC 6901 pointer of the JSON file;
//!   - `{source: exec, provider: "/abs/helper", id: NAME}`: the value a credential helper
//!     returns (protocol below).
//!
//! ## Guarantees
//! - `file`: the path is absolute with no `..`; neither it nor its canonical target lies under a
//!   restricted path (`/proc`, `/sys`, `/dev`, and the vault and master-key files added with
//!   [`SecretRefResolver::restrict_comis_home`]), so a symlink cannot smuggle one in; the final
//!   open does not follow symlinks, must give a regular file, and at most [`MAX_FILE_LEN`] bytes
//!   are read. The file is read into zeroizing memory.
//! - `exec`: the helper is an absolute path, run without a shell through a [`HelperRunner`]
//!   (the real one is in comis-sandbox: only it may spawn processes) with a deadline (default
//!   [`DEFAULT_EXEC_TIMEOUT`]) after which it is killed. It receives on stdin
//!   `{"protocolVersion":1,"provider":"<helper>","ids":["<id>"]}` and must answer with
//!   `{"protocolVersion":1,"values":{"<id>":"<non-empty string>"}}` (an optional `errors`
//!   object `{"<id>":{"message":"…"}}` reports a failure); anything else, or more than
//!   [`MAX_HELPER_OUTPUT`] bytes, is refused.
//! - Errors give the JSON pointer of the config field and the name/path/helper concerned,
//!   never a value. [`ResolvedConfig`] zeroizes its strings when dropped and its `Debug` is
//!   redacted.
//!
//! ## Does not
//! Protect against a restricted file reached through a hard link, or against a path whose
//! intermediate directories are swapped between the checks and the open (the final component
//! is opened with `O_NOFOLLOW`; the rest relies on the operator owning the directories).

use std::collections::BTreeSet;
use std::fmt;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use zeroize::{Zeroize, Zeroizing};

use crate::manager::SecretAccess;
use crate::{SecretName, SecretsError, fsutil, master_key, redact, vault};

/// Largest file a `file` SecretRef may read (1 MiB).
pub const MAX_FILE_LEN: u64 = 1024 * 1024;
/// Largest answer accepted from a credential helper (1 MiB).
pub const MAX_HELPER_OUTPUT: usize = 1024 * 1024;
/// Default deadline of a credential helper.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(10);
/// Version of the credential-helper protocol.
pub const HELPER_PROTOCOL_VERSION: u64 = 1;
/// Paths a `file` SecretRef may never read.
pub const RESTRICTED_PREFIXES: &[&str] = &["/proc", "/sys", "/dev"];

/// Why a credential helper failed. Never carries the helper's output, which may hold secrets.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// The helper could not be started.
    #[error("could not be started: {0}")]
    Spawn(String),
    /// The helper did not finish in time and was killed.
    #[error("did not answer within {0:?} and was killed")]
    Timeout(Duration),
    /// The helper exited unsuccessfully.
    #[error("failed ({0})")]
    Failed(String),
    /// The helper wrote more than the allowed amount.
    #[error("wrote more than {0} bytes")]
    OutputTooLarge(usize),
}

/// Runs a credential helper: `argv[0]` is an absolute program path, run without a shell, with
/// `stdin` written to its standard input; returns its standard output. Implementations must
/// kill the process when `timeout` passes and should stop reading after
/// [`MAX_HELPER_OUTPUT`] + 1 bytes. The production implementation lives in comis-sandbox.
pub trait HelperRunner: Send + Sync {
    /// Runs the helper.
    ///
    /// # Errors
    /// A [`HelperError`] for a start failure, timeout, non-zero exit or oversized output.
    fn run(&self, argv: &[String], stdin: &[u8], timeout: Duration)
    -> Result<Vec<u8>, HelperError>;
}

/// Where a SecretRef takes its value from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    /// A secret manager name.
    Env,
    /// A file, optionally a JSON pointer inside it.
    File,
    /// A credential helper.
    Exec,
}

/// A parsed SecretRef object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The source.
    pub source: SecretSource,
    /// For `exec`, the helper path; otherwise informational (defaults to `default`).
    pub provider: String,
    /// The secret name, file path (with optional `#pointer`) or helper id.
    pub id: String,
}

impl SecretRef {
    /// Recognizes a SecretRef object: `Ok(None)` when `obj` is not one (it lacks `source` or
    /// `id`, or has other keys); an error when it is one but malformed.
    ///
    /// # Errors
    /// [`SecretsError::SecretRef`] for an unknown source or non-string fields.
    pub fn from_object(obj: &Map<String, Value>, at: &str) -> Result<Option<Self>, SecretsError> {
        let is_ref = obj.contains_key("source")
            && obj.contains_key("id")
            && obj
                .keys()
                .all(|k| matches!(k.as_str(), "source" | "id" | "provider"));
        if !is_ref {
            return Ok(None);
        }
        let err = |reason: &str| SecretsError::SecretRef {
            at: at.to_owned(),
            reason: reason.to_owned(),
        };
        let source = match obj.get("source").and_then(Value::as_str) {
            Some("env") => SecretSource::Env,
            Some("file") => SecretSource::File,
            Some("exec") => SecretSource::Exec,
            _ => return Err(err("`source` must be \"env\", \"file\" or \"exec\"")),
        };
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| err("`id` must be a non-empty string"))?;
        let provider = match obj.get("provider") {
            None => "default",
            Some(Value::String(p)) if !p.is_empty() => p.as_str(),
            Some(_) => return Err(err("`provider` must be a non-empty string")),
        };
        Ok(Some(Self {
            source,
            provider: provider.to_owned(),
            id: id.to_owned(),
        }))
    }
}

/// A configuration with every `${VAR}` and SecretRef resolved.
pub struct ResolvedConfig {
    value: Value,
    secret_paths: BTreeSet<String>,
}

impl ResolvedConfig {
    /// The resolved configuration (contains plaintext secrets: never display it; use
    /// [`ResolvedConfig::redacted`]).
    #[must_use]
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// JSON pointers of the fields whose value came from a secret.
    #[must_use]
    pub fn secret_paths(&self) -> &BTreeSet<String> {
        &self.secret_paths
    }

    /// A copy fit for display: secret-derived fields and secret-like keys are `[REDACTED]`.
    #[must_use]
    pub fn redacted(&self) -> Value {
        redact::Redactor::new()
            .with_paths(self.secret_paths.iter().cloned())
            .redact(&self.value)
    }
}

impl fmt::Debug for ResolvedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedConfig")
            .field("value", &self.redacted())
            .field("secret_paths", &self.secret_paths)
            .finish()
    }
}

impl Drop for ResolvedConfig {
    fn drop(&mut self) {
        zeroize_value(&mut self.value);
    }
}

/// Overwrites every string inside `v` with zeros before it is freed.
pub(crate) fn zeroize_value(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(zeroize_value),
        Value::Object(o) => o.values_mut().for_each(zeroize_value),
        _ => {}
    }
}

fn pointer_escape(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

/// Resolves `${VAR}` and SecretRef objects. Build one per resolution context.
pub struct SecretRefResolver<'a> {
    secrets: &'a dyn SecretAccess,
    runner: Option<&'a dyn HelperRunner>,
    restricted: Vec<PathBuf>,
    exec_timeout: Duration,
}

impl fmt::Debug for SecretRefResolver<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretRefResolver")
            .field("runner", &self.runner.is_some())
            .field("restricted", &self.restricted)
            .field("exec_timeout", &self.exec_timeout)
            .finish_non_exhaustive()
    }
}

impl<'a> SecretRefResolver<'a> {
    /// A resolver reading `env` refs and `${VAR}` from `secrets`, with no credential helper
    /// runner (so `exec` refs fail) and the default restricted paths.
    #[must_use]
    pub fn new(secrets: &'a dyn SecretAccess) -> Self {
        Self {
            secrets,
            runner: None,
            restricted: RESTRICTED_PREFIXES.iter().map(PathBuf::from).collect(),
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
        }
    }

    /// Enables `exec` refs through `runner`.
    #[must_use]
    pub fn with_runner(mut self, runner: &'a dyn HelperRunner) -> Self {
        self.runner = Some(runner);
        self
    }

    /// Sets the credential helper deadline.
    #[must_use]
    pub fn with_exec_timeout(mut self, timeout: Duration) -> Self {
        self.exec_timeout = timeout;
        self
    }

    /// Forbids `file` refs from reading `path` or anything under it.
    #[must_use]
    pub fn with_restricted_path(mut self, path: impl Into<PathBuf>) -> Self {
        let p: PathBuf = path.into();
        if let Ok(c) = p.canonicalize() {
            if c != p {
                self.restricted.push(c);
            }
        }
        self.restricted.push(p);
        self
    }

    /// Forbids `file` refs from reading the vault, its lock and the master key files of `home`.
    #[must_use]
    pub fn restrict_comis_home(self, home: &Path) -> Self {
        self.with_restricted_path(home.join(vault::VAULT_FILE))
            .with_restricted_path(home.join(vault::LOCK_FILE))
            .with_restricted_path(home.join(vault::NEXT_KEY_FILE))
            .with_restricted_path(master_key::key_file_path(home))
    }

    /// Resolves every `${VAR}` and SecretRef in `config`; fails on the first error.
    ///
    /// # Errors
    /// [`SecretsError::SecretRef`] or [`SecretsError::Helper`] naming the config field.
    pub fn resolve_config(&self, config: &Value) -> Result<ResolvedConfig, SecretsError> {
        let mut paths = BTreeSet::new();
        let value = self.walk(config, String::new(), &mut paths)?;
        Ok(ResolvedConfig {
            value,
            secret_paths: paths,
        })
    }

    fn walk(
        &self,
        v: &Value,
        at: String,
        paths: &mut BTreeSet<String>,
    ) -> Result<Value, SecretsError> {
        Ok(match v {
            Value::String(s) => {
                let (out, used) = self.substitute(s, &at)?;
                if used {
                    paths.insert(at);
                }
                Value::String(out.to_string())
            }
            Value::Array(a) => Value::Array(
                a.iter()
                    .enumerate()
                    .map(|(i, x)| self.walk(x, format!("{at}/{i}"), paths))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(o) => {
                if let Some(r) = SecretRef::from_object(o, &at)? {
                    let secret = self.resolve(&r, &at)?;
                    paths.insert(at);
                    return Ok(Value::String(secret.expose_secret().to_owned()));
                }
                let mut out = Map::new();
                for (k, x) in o {
                    let child = self.walk(x, format!("{at}/{}", pointer_escape(k)), paths)?;
                    out.insert(k.clone(), child);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    /// Replaces `${NAME}` in `s`; returns the result and whether any secret was inserted.
    ///
    /// # Errors
    /// [`SecretsError::SecretRef`] for an unset or invalid name or an unterminated `${`.
    pub fn substitute(&self, s: &str, at: &str) -> Result<(Zeroizing<String>, bool), SecretsError> {
        let err = |reason: String| SecretsError::SecretRef {
            at: at.to_owned(),
            reason,
        };
        let mut out = Zeroizing::new(String::with_capacity(s.len()));
        let mut used = false;
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("$${") {
                out.push_str("${");
                rest = after;
            } else if let Some(after) = tail.strip_prefix("${") {
                let Some(end) = after.find('}') else {
                    return Err(err(
                        "`${` without a closing `}` (write `$${` for a literal)".into(),
                    ));
                };
                let name =
                    SecretName::new(&after[..end]).map_err(|e| err(format!("in `${{…}}`: {e}")))?;
                let value = self.secrets.get(name.as_str()).ok_or_else(|| {
                    err(format!(
                        "${{{name}}} is not set: store it with `comis secrets set {name}`"
                    ))
                })?;
                out.push_str(value.expose_secret());
                used = true;
                rest = &after[end + 1..];
            } else {
                out.push('$');
                rest = &tail[1..];
            }
        }
        out.push_str(rest);
        Ok((out, used))
    }

    /// Resolves one SecretRef.
    ///
    /// # Errors
    /// [`SecretsError::SecretRef`] or [`SecretsError::Helper`].
    pub fn resolve(&self, r: &SecretRef, at: &str) -> Result<SecretString, SecretsError> {
        match r.source {
            SecretSource::Env => {
                let name = SecretName::new(&r.id).map_err(|e| SecretsError::SecretRef {
                    at: at.to_owned(),
                    reason: e.to_string(),
                })?;
                self.secrets
                    .get(name.as_str())
                    .ok_or_else(|| SecretsError::SecretRef {
                        at: at.to_owned(),
                        reason: format!("secret {name} is not set"),
                    })
            }
            SecretSource::File => self.resolve_file(&r.id, at),
            SecretSource::Exec => self.resolve_exec(r, at),
        }
    }

    fn resolve_file(&self, id: &str, at: &str) -> Result<SecretString, SecretsError> {
        let err = |reason: String| SecretsError::SecretRef {
            at: at.to_owned(),
            reason,
        };
        let (path_str, pointer) = match id.split_once('#') {
            Some((p, ptr)) => (p, Some(ptr)),
            None => (id, None),
        };
        let path = Path::new(path_str);
        let shown = path.display();
        if !path.is_absolute() {
            return Err(err(format!("file path {shown} is not absolute")));
        }
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(err(format!("file path {shown} contains `..`")));
        }
        if let Some(p) = pointer {
            if !p.is_empty() && !p.starts_with('/') {
                return Err(err(
                    "a JSON pointer after `#` must be empty or start with `/`".into(),
                ));
            }
        }
        self.check_restricted(path).map_err(&err)?;
        let canonical = path
            .canonicalize()
            .map_err(|e| err(format!("file {shown}: {e}")))?;
        self.check_restricted(&canonical).map_err(&err)?;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(fsutil::O_NOFOLLOW | fsutil::O_NONBLOCK)
            .open(&canonical)
            .map_err(|e| err(format!("file {shown}: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| err(format!("file {shown}: {e}")))?;
        if !meta.is_file() {
            return Err(err(format!("{shown} is not a regular file")));
        }
        if meta.len() > MAX_FILE_LEN {
            return Err(err(format!(
                "file {shown} is {} bytes; at most {MAX_FILE_LEN} are read",
                meta.len()
            )));
        }
        let mut buf = Zeroizing::new(Vec::new());
        file.take(MAX_FILE_LEN + 1)
            .read_to_end(&mut buf)
            .map_err(|e| err(format!("file {shown}: {e}")))?;
        if buf.len() as u64 > MAX_FILE_LEN {
            return Err(err(format!(
                "file {shown} grew beyond {MAX_FILE_LEN} bytes while read"
            )));
        }
        let text = std::str::from_utf8(&buf)
            .map_err(|_| err(format!("file {shown} is not UTF-8 text")))?;
        let value = match pointer {
            None => SecretString::from(text.trim()),
            Some(ptr) => {
                let mut doc: Value = serde_json::from_str(text)
                    .map_err(|e| err(format!("file {shown} is not JSON (line {})", e.line())))?;
                let found = doc
                    .pointer(ptr)
                    .and_then(Value::as_str)
                    .map(SecretString::from);
                zeroize_value(&mut doc);
                found.ok_or_else(|| {
                    err(format!(
                        "JSON pointer {ptr} in {shown} does not name a string"
                    ))
                })?
            }
        };
        if value.expose_secret().is_empty() {
            return Err(err(format!("file {shown} gives an empty value")));
        }
        Ok(value)
    }

    fn check_restricted(&self, path: &Path) -> Result<(), String> {
        match self.restricted.iter().find(|r| path.starts_with(r)) {
            Some(r) => Err(format!(
                "file path {} is under the restricted path {}",
                path.display(),
                r.display()
            )),
            None => Ok(()),
        }
    }

    fn resolve_exec(&self, r: &SecretRef, at: &str) -> Result<SecretString, SecretsError> {
        let err = |reason: String| SecretsError::SecretRef {
            at: at.to_owned(),
            reason,
        };
        let helper = &r.provider;
        let Some(runner) = self.runner else {
            return Err(err(
                "exec SecretRefs need a credential helper runner and none is configured".into(),
            ));
        };
        if !Path::new(helper).is_absolute() {
            return Err(err(format!(
                "exec provider {helper:?} must be the absolute path of the helper (no PATH lookup)"
            )));
        }
        let request = json!({
            "protocolVersion": HELPER_PROTOCOL_VERSION,
            "provider": helper,
            "ids": [r.id],
        });
        let stdin = serde_json::to_vec(&request).map_err(|e| err(e.to_string()))?;
        let out = Zeroizing::new(
            runner
                .run(std::slice::from_ref(helper), &stdin, self.exec_timeout)
                .map_err(|source| SecretsError::Helper {
                    at: at.to_owned(),
                    helper: helper.clone(),
                    source,
                })?,
        );
        let bad = |what: &str| err(format!("credential helper {helper}: {what}"));
        if out.len() > MAX_HELPER_OUTPUT {
            return Err(bad(&format!(
                "answer is larger than {MAX_HELPER_OUTPUT} bytes"
            )));
        }
        let mut reply: Value =
            serde_json::from_slice(&out).map_err(|_| bad("answer is not JSON"))?;
        let result = validate_reply(&reply, &r.id).map_err(|w| bad(&w));
        zeroize_value(&mut reply);
        result
    }
}

/// Checks the shape of a helper reply and extracts the value of `id`.
fn validate_reply(reply: &Value, id: &str) -> Result<SecretString, String> {
    let Some(obj) = reply.as_object() else {
        return Err("answer is not a JSON object".into());
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "protocolVersion" | "values" | "errors"))
    {
        return Err(format!(
            "answer has an unknown field {:?}",
            comis_guard::unicode::display_safe(k, 40)
        ));
    }
    if obj.get("protocolVersion").and_then(Value::as_u64) != Some(HELPER_PROTOCOL_VERSION) {
        return Err(format!(
            "answer must have \"protocolVersion\": {HELPER_PROTOCOL_VERSION}"
        ));
    }
    if let Some(e) = obj.get("errors") {
        let Some(errors) = e.as_object() else {
            return Err("\"errors\" must be an object".into());
        };
        if let Some(e) = errors.get(id) {
            let msg = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            return Err(format!(
                "reported an error for {id}: {}",
                comis_guard::unicode::display_safe(msg, 200)
            ));
        }
    }
    let Some(values) = obj.get("values").and_then(Value::as_object) else {
        return Err("answer must have a \"values\" object".into());
    };
    match values.get(id) {
        Some(Value::String(s)) if !s.is_empty() => Ok(SecretString::from(s.as_str())),
        Some(Value::String(_)) => Err(format!("value for {id} is empty")),
        Some(_) => Err(format!("value for {id} is not a string")),
        None => Err(format!("answer has no value for {id}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::SecretManager;

    fn mgr() -> SecretManager {
        SecretManager::from_values([
            (
                "OPENAI_API_KEY".to_owned(),
                SecretString::from("sk-live-123456"),
            ),
            ("TOKEN".to_owned(), SecretString::from("tok-abcdef")),
        ])
    }

    #[test]
    fn substitution_escape_and_errors() {
        let m = mgr();
        let r = SecretRefResolver::new(&m);
        let (s, used) = r.substitute("Bearer ${TOKEN}!", "/a").unwrap();
        assert_eq!(s.as_str(), "Bearer tok-abcdef!");
        assert!(used);
        let (s, used) = r.substitute("cost $5, literal $${TOKEN}, $", "/a").unwrap();
        assert_eq!(s.as_str(), "cost $5, literal ${TOKEN}, $");
        assert!(!used);
        for bad in ["${MISSING}", "${TOKEN", "${}", "${A-B}", "${ TOKEN}"] {
            let e = r.substitute(bad, "/gateway/token").unwrap_err().to_string();
            assert!(e.contains("/gateway/token"), "{e}");
            assert!(!e.contains("tok-abcdef"));
        }
    }

    #[test]
    fn secret_ref_objects_are_recognized_strictly() {
        let at = "/x";
        let o = |v: Value| v.as_object().unwrap().clone();
        assert!(
            SecretRef::from_object(&o(json!({"source":"env","id":"A"})), at)
                .unwrap()
                .is_some()
        );
        assert!(
            SecretRef::from_object(&o(json!({"source":"env"})), at)
                .unwrap()
                .is_none()
        );
        assert!(
            SecretRef::from_object(&o(json!({"source":"env","id":"A","x":1})), at)
                .unwrap()
                .is_none()
        );
        for bad in [
            json!({"source":"vault","id":"A"}),
            json!({"source":"env","id":""}),
            json!({"source":"env","id":5}),
            json!({"source":"env","id":"A","provider":7}),
        ] {
            assert!(SecretRef::from_object(&o(bad), at).is_err());
        }
    }

    #[test]
    fn resolve_config_records_paths_and_redacts() {
        let m = mgr();
        let r = SecretRefResolver::new(&m);
        let cfg = json!({
            "providers": {"openai": {"apiKey": {"source": "env", "id": "OPENAI_API_KEY"}}},
            "gateway": {"url": "https://x/?t=${TOKEN}", "port": 4766},
            "list": ["${TOKEN}", "plain"],
        });
        let rc = r.resolve_config(&cfg).unwrap();
        assert_eq!(
            rc.value()["providers"]["openai"]["apiKey"],
            "sk-live-123456"
        );
        assert_eq!(rc.value()["list"][0], "tok-abcdef");
        let paths: Vec<_> = rc.secret_paths().iter().cloned().collect();
        assert_eq!(
            paths,
            ["/gateway/url", "/list/0", "/providers/openai/apiKey"]
        );
        let shown = format!("{rc:?} {}", rc.redacted());
        assert!(
            !shown.contains("sk-live") && !shown.contains("tok-abcdef"),
            "{shown}"
        );
        assert_eq!(rc.redacted()["gateway"]["port"], 4766);
        assert_eq!(rc.redacted()["list"][1], "plain");
    }

    #[test]
    fn env_ref_goes_through_manager() {
        let m = mgr();
        let r = SecretRefResolver::new(&m);
        let e = r
            .resolve_config(&json!({"a": {"source":"env","id":"NOPE"}}))
            .unwrap_err();
        assert!(e.to_string().contains("NOPE") && e.to_string().contains("/a"));
    }

    #[test]
    fn exec_without_runner_fails_closed() {
        let m = mgr();
        let r = SecretRefResolver::new(&m);
        let e = r
            .resolve_config(&json!({"a": {"source":"exec","provider":"/bin/true","id":"X"}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("runner"), "{e}");
    }

    #[test]
    fn reply_validation() {
        let ok = json!({"protocolVersion":1,"values":{"X":"v"}});
        assert_eq!(validate_reply(&ok, "X").unwrap().expose_secret(), "v");
        for bad in [
            json!([]),
            json!({"protocolVersion":2,"values":{"X":"v"}}),
            json!({"protocolVersion":"1","values":{"X":"v"}}),
            json!({"values":{"X":"v"}}),
            json!({"protocolVersion":1}),
            json!({"protocolVersion":1,"values":[]}),
            json!({"protocolVersion":1,"values":{"Y":"v"}}),
            json!({"protocolVersion":1,"values":{"X":""}}),
            json!({"protocolVersion":1,"values":{"X":1}}),
            json!({"protocolVersion":1,"values":{"X":"v"},"extra":true}),
            json!({"protocolVersion":1,"values":{"X":"v"},"errors":[]}),
            json!({"protocolVersion":1,"values":{},"errors":{"X":{"message":"locked"}}}),
        ] {
            assert!(validate_reply(&bad, "X").is_err(), "{bad}");
        }
    }
}
