//! # comis-secrets
//!
//! Where comis keeps the credentials of its agents (LLM provider keys, channel bot tokens) and
//! the only road by which code reaches them.
//!
//! ## What this crate defends
//! - **Secrets at rest**: the vault `$COMIS_HOME/secrets.enc` ([`vault`]) holds every value
//!   encrypted with AES-256-GCM under a per-encryption key derived by HKDF-SHA256 from the
//!   master key ([`master_key`]); the entry name is bound as associated data and the whole file
//!   carries an HMAC, so moved, swapped, edited, deleted or truncated entries are detected.
//! - **Enumeration and over-reach**: [`SecretManager`] answers `get`/`has`/`require`/`keys`
//!   (names only), never "all values"; [`ScopedSecretManager`] gives each agent only the names
//!   its allowlist grants (fail closed: an empty list grants nothing) and reports every access to
//!   a [`SecretAccessObserver`].
//! - **Leaks through configuration**: [`secret_ref`] resolves `${VAR}` and SecretRef objects
//!   (env, file, exec sources) without plaintext in the config file; [`redact`] shows secret
//!   values and secret-like fields as `[REDACTED]` wherever configuration is displayed.
//! - **Leaks through diagnostics**: values live in `secrecy`/`zeroize` types, which never
//!   implement `Display` and whose `Debug` prints `[REDACTED]`; every [`SecretsError`] names the
//!   secret, the file or the config path concerned, never a value.
//!
//! ## What it does not defend
//! - A compromised host or a malicious operator: whoever can read the master key can read every
//!   secret (threat model: the operator and the host OS are trusted).
//! - Rollback of the whole vault file to an older, authentic copy made with the same key: the
//!   per-file HMAC proves authenticity, not freshness.
//! - Copies a process makes outside these types (the kernel's pipe buffers, a library's own
//!   buffers, the `COMIS_MASTER_KEY` environment block, which cannot be cleared without `unsafe`).
#![forbid(unsafe_code)]

mod crypto;
mod fsutil;
pub mod manager;
pub mod master_key;
pub mod name;
pub mod prompt;
pub mod redact;
pub mod secret_ref;
pub mod vault;

use std::path::PathBuf;

pub use manager::{
    AccessOutcome, ScopedSecretManager, SecretAccess, SecretAccessEvent, SecretAccessObserver,
    SecretAllowlist, SecretManager,
};
pub use master_key::{KeySource, MasterKey};
pub use name::SecretName;
pub use secrecy::{ExposeSecret, SecretString};
pub use secret_ref::{HelperError, HelperRunner, SecretRefResolver};
pub use vault::{EntryInfo, Vault};

/// The one error type of this crate. No variant ever carries a secret value: they name the
/// secret, the file or the configuration path concerned, and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A filesystem operation failed.
    #[error("{action} {p}: {source}", p = .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No master key is configured.
    #[error(
        "no master key: set COMIS_MASTER_KEY (32 bytes, hex or base64) or create {p} \
         (`comis secrets set` creates one on first use)",
        p = .path.display()
    )]
    MasterKeyMissing { path: PathBuf },
    /// The master key is present but cannot be used.
    #[error("invalid master key from {origin}: {reason}")]
    MasterKeyInvalid { origin: String, reason: String },
    /// The master key file is accessible to other users.
    #[error(
        "refusing to use master key file {p}: it is readable or writable by group or others \
         (mode {mode:04o}); fix it with: chmod 600 {p}",
        p = .path.display()
    )]
    MasterKeyPermissions { path: PathBuf, mode: u32 },
    /// The master key file is owned by another user or is not a regular file.
    #[error("refusing to use master key file {p}: {reason}", p = .path.display())]
    MasterKeyUnsafe { path: PathBuf, reason: String },
    /// The key check of the vault does not open with this master key.
    #[error(
        "wrong master key for vault {p}: the key check does not verify (is COMIS_MASTER_KEY \
         or master.key the one this vault was written with?)",
        p = .path.display()
    )]
    WrongMasterKey { path: PathBuf },
    /// The vault file cannot be parsed (truncated, not JSON, malformed fields).
    #[error("vault {p} is corrupt or truncated: {reason}; it was left unchanged", p = .path.display())]
    VaultCorrupt { path: PathBuf, reason: String },
    /// The vault parses and the key is right, but its content was altered.
    #[error(
        "vault {p} failed its integrity check: {reason}; it was modified outside comis and \
         was left unchanged",
        p = .path.display()
    )]
    VaultTampered { path: PathBuf, reason: String },
    /// The vault was written by an unknown format version.
    #[error("vault {p} has unsupported format {found:?} (this comis reads comis-secrets-v1)", p = .path.display())]
    UnsupportedVersion { path: PathBuf, found: String },
    /// A secret name is not acceptable.
    #[error("invalid secret name: {reason}")]
    InvalidName { reason: String },
    /// The secret does not exist.
    #[error("secret {name} is not set")]
    NotFound { name: String },
    /// A required secret is not set (the message says where to set it).
    #[error("required secret {name} is not set: store it with `comis secrets set {name}`")]
    Required { name: String },
    /// The agent's allowlist does not grant this secret.
    #[error(
        "agent {agent_id} is not allowed to access secret {name} (agents.{agent_id}.secrets.allow)"
    )]
    Denied { agent_id: String, name: String },
    /// An allowlist pattern is malformed.
    #[error("invalid secrets allowlist pattern {pattern:?}: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    /// A secret value is not acceptable (empty, too large, not UTF-8). The value is not shown.
    #[error("invalid value for secret {name}: {reason}")]
    InvalidValue { name: String, reason: String },
    /// Resolving a `${VAR}` or SecretRef in the configuration failed.
    #[error("SecretRef at {at}: {reason}")]
    SecretRef { at: String, reason: String },
    /// A credential helper failed.
    #[error("SecretRef at {at}: credential helper {helper}: {source}")]
    Helper {
        at: String,
        helper: String,
        #[source]
        source: HelperError,
    },
    /// The operating system's random source failed.
    #[error("random source unavailable: {0}")]
    Random(String),
    /// The cipher refused to operate (never expected with valid key and nonce sizes).
    #[error("encryption failed for {what}")]
    Crypto { what: String },
    /// Reading a value from the terminal or standard input failed.
    #[error("reading the secret value: {0}")]
    Input(String),
}

/// Result alias of this crate.
pub type Result<T, E = SecretsError> = std::result::Result<T, E>;
