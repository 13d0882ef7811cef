//! The encrypted vault `$COMIS_HOME/secrets.enc`.
//!
//! Defends: secrets at rest against anyone who can read (or write) the file but does not hold
//! the master key: they learn the names, sizes and update times of entries, nothing else, and
//! any change they make is detected.
//!
//! ## File format `comis-secrets-v1`
//! One JSON object (binary fields are standard base64 with padding):
//!
//! ```json
//! {
//!   "format": "comis-secrets-v1",
//!   "key_check": { "salt": "<32 B>", "nonce": "<12 B>", "ciphertext": "<26 B + 16 B tag>" },
//!   "entries": {
//!     "OPENAI_API_KEY": { "salt": "<32 B>", "nonce": "<12 B>",
//!                         "ciphertext": "<value + 16 B tag>", "updated_at": 1767225600 }
//!   },
//!   "mac": "<32 B>"
//! }
//! ```
//!
//! - Each `ciphertext` is AES-256-GCM under HKDF-SHA256(master key, its own random `salt`,
//!   info `comis-secrets-v1`); the associated data is `comis-secrets-v1\0entry\0<NAME>`, so a
//!   ciphertext copied to another name does not decrypt.
//! - `key_check` seals the constant `comis-secrets-key-check-v1` (associated data
//!   `comis-secrets-v1\0key-check`). It is opened first: a wrong master key is reported as such
//!   before any entry is touched.
//! - `mac` is HMAC-SHA256, under a key derived with HKDF from the master key and the key-check
//!   salt (info `comis-secrets-v1/vault-mac`), over a length-prefixed encoding of the key check
//!   and every entry (name, salt, nonce, ciphertext, `updated_at`) in name order. It detects
//!   deleted, added, swapped or re-dated entries, which per-entry encryption alone cannot.
//! - `updated_at` is seconds since the Unix epoch (UTC).
//! - Unknown fields are an error; a different `format` is reported as unsupported.
//!
//! ## Guarantees
//! - Reads never modify the vault. A wrong key, a truncated file, unparsable JSON and an
//!   integrity failure each give one [`SecretsError`] naming the file, never a value.
//! - Writes hold an exclusive lock (`secrets.enc.lock`) across read-modify-write, so concurrent
//!   writers in different processes never lose an update, and refuse to rewrite a vault that
//!   does not verify. The file is replaced atomically (temporary file, fsync, rename, directory
//!   fsync) with mode 0600, so a writer killed at any instant leaves the old or the new vault.
//! - [`Vault::rotate_key`] re-encrypts every entry under a new master key. With a key file, the
//!   new key is first stored as `master.key.next`, then the vault is replaced, then the key file;
//!   [`Vault::open`] finishes or rolls back an interrupted rotation, so a crash at any moment
//!   leaves a vault that opens with the old or the new key.
//!
//! ## Does not
//! Detect the replacement of the whole file by an older authentic copy (no freshness), or hide
//! entry names and value lengths.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::crypto::{self, MAC_LEN, NONCE_LEN, SALT_LEN, Sealed, TAG_LEN};
use crate::master_key::{self, KeySource, MasterKey};
use crate::{SecretName, SecretsError, fsutil};

/// File name of the vault inside `COMIS_HOME`.
pub const VAULT_FILE: &str = "secrets.enc";
/// File name of the writer lock inside `COMIS_HOME`.
pub const LOCK_FILE: &str = "secrets.enc.lock";
/// File name of a new master key while a rotation is in progress.
pub const NEXT_KEY_FILE: &str = "master.key.next";
/// Largest accepted secret value, in bytes.
pub const MAX_VALUE_LEN: usize = 256 * 1024;
/// Largest accepted vault file, in bytes.
pub const MAX_VAULT_LEN: u64 = 256 * 1024 * 1024;

/// What `list` shows about one entry: never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// The entry name.
    pub name: SecretName,
    /// When the value was last set, in seconds since the Unix epoch.
    pub updated_at: u64,
}

/// What [`Vault::rotate_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// Number of entries re-encrypted.
    pub entries: usize,
    /// Where the new key now lives.
    pub new_key_source: KeySource,
}

// ---------------------------------------------------------------------------------------------
// On-disk envelope (only ciphertext, salts, nonces, names and dates ever reach these types).

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedB64 {
    salt: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryB64 {
    salt: String,
    nonce: String,
    ciphertext: String,
    updated_at: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: String,
    key_check: SealedB64,
    entries: BTreeMap<String, EntryB64>,
    mac: String,
}

/// A parsed, decoded vault (entries still encrypted).
#[derive(Clone)]
struct Contents {
    key_check: Sealed,
    entries: BTreeMap<String, Entry>,
}

#[derive(Clone)]
struct Entry {
    sealed: Sealed,
    updated_at: u64,
}

fn push_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_be_bytes());
    out.extend_from_slice(b);
}

impl Contents {
    fn new(key: &MasterKey) -> Result<Self, SecretsError> {
        Ok(Self {
            key_check: crypto::seal(key, crypto::KEY_CHECK_AAD, crypto::KEY_CHECK_PLAINTEXT)?,
            entries: BTreeMap::new(),
        })
    }

    /// The canonical bytes the vault MAC covers.
    fn mac_input(&self) -> Vec<u8> {
        let mut out = Vec::new();
        push_bytes(&mut out, b"comis-secrets-v1\0mac");
        push_bytes(&mut out, &self.key_check.salt);
        push_bytes(&mut out, &self.key_check.nonce);
        push_bytes(&mut out, &self.key_check.ciphertext);
        out.extend_from_slice(&(self.entries.len() as u64).to_be_bytes());
        for (name, e) in &self.entries {
            push_bytes(&mut out, name.as_bytes());
            push_bytes(&mut out, &e.sealed.salt);
            push_bytes(&mut out, &e.sealed.nonce);
            push_bytes(&mut out, &e.sealed.ciphertext);
            out.extend_from_slice(&e.updated_at.to_be_bytes());
        }
        out
    }

    fn key_opens(&self, key: &MasterKey) -> bool {
        crypto::open(key, crypto::KEY_CHECK_AAD, &self.key_check)
            .is_some_and(|p| bool::from(p.as_slice().ct_eq(crypto::KEY_CHECK_PLAINTEXT)))
    }

    fn to_json(&self, key: &MasterKey) -> Result<Vec<u8>, SecretsError> {
        let enc = |s: &Sealed| SealedB64 {
            salt: B64.encode(s.salt),
            nonce: B64.encode(s.nonce),
            ciphertext: B64.encode(&s.ciphertext),
        };
        let mac = crypto::mac(key, &self.key_check.salt, &self.mac_input())?;
        let env = Envelope {
            format: crypto::FORMAT.to_owned(),
            key_check: enc(&self.key_check),
            entries: self
                .entries
                .iter()
                .map(|(n, e)| {
                    let s = enc(&e.sealed);
                    (
                        n.clone(),
                        EntryB64 {
                            salt: s.salt,
                            nonce: s.nonce,
                            ciphertext: s.ciphertext,
                            updated_at: e.updated_at,
                        },
                    )
                })
                .collect(),
            mac: B64.encode(mac),
        };
        let mut out = serde_json::to_vec_pretty(&env).map_err(|e| SecretsError::Crypto {
            what: format!("serializing the vault: {e}"),
        })?;
        out.push(b'\n');
        Ok(out)
    }
}

/// Parses and structurally validates the vault bytes (no key needed). Returns the contents
/// and the stored MAC.
fn parse(path: &Path, bytes: &[u8]) -> Result<(Contents, Vec<u8>), SecretsError> {
    let corrupt = |reason: String| SecretsError::VaultCorrupt {
        path: path.to_owned(),
        reason,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(corrupt("the file is empty".into()));
    }
    // serde_json's messages may quote input; only its category and position are reported.
    let describe = |e: &serde_json::Error| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "it ends early (truncated)",
            serde_json::error::Category::Syntax => "it is not valid JSON",
            serde_json::error::Category::Data => "a field has the wrong shape",
            serde_json::error::Category::Io => "it could not be read",
        };
        format!("{what} at line {} column {}", e.line(), e.column())
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(describe(&e)))?;
    match value.get("format") {
        Some(serde_json::Value::String(f)) if f == crypto::FORMAT => {}
        Some(serde_json::Value::String(f)) => {
            let found: String = f.chars().filter(|c| !c.is_control()).take(40).collect();
            return Err(SecretsError::UnsupportedVersion {
                path: path.to_owned(),
                found,
            });
        }
        _ => return Err(corrupt("the \"format\" field is missing".into())),
    }
    let env: Envelope = serde_json::from_value(value).map_err(|e| corrupt(describe(&e)))?;
    let b64 = |what: &str, s: &str| {
        B64.decode(s)
            .map_err(|_| corrupt(format!("{what} is not valid base64")))
    };
    let fixed = |what: &str, s: &str, n: usize| -> Result<Vec<u8>, SecretsError> {
        let v = b64(what, s)?;
        if v.len() == n {
            Ok(v)
        } else {
            Err(corrupt(format!(
                "{what} has {} bytes instead of {n}",
                v.len()
            )))
        }
    };
    let sealed = |what: &str, salt: &str, nonce: &str, ct: &str| -> Result<Sealed, SecretsError> {
        let salt = fixed(&format!("{what} salt"), salt, SALT_LEN)?;
        let nonce = fixed(&format!("{what} nonce"), nonce, NONCE_LEN)?;
        let ciphertext = b64(&format!("{what} ciphertext"), ct)?;
        if ciphertext.len() < TAG_LEN {
            return Err(corrupt(format!(
                "{what} ciphertext is shorter than its tag"
            )));
        }
        let mut s = Sealed {
            salt: [0; SALT_LEN],
            nonce: [0; NONCE_LEN],
            ciphertext,
        };
        s.salt.copy_from_slice(&salt);
        s.nonce.copy_from_slice(&nonce);
        Ok(s)
    };
    let k = &env.key_check;
    let key_check = sealed("key check", &k.salt, &k.nonce, &k.ciphertext)?;
    let mut entries = BTreeMap::new();
    for (name, e) in &env.entries {
        let valid = SecretName::new(name)
            .map_err(|_| corrupt("an entry name is not a valid secret name".into()))?;
        let what = format!("entry {valid}");
        entries.insert(
            name.clone(),
            Entry {
                sealed: sealed(&what, &e.salt, &e.nonce, &e.ciphertext)?,
                updated_at: e.updated_at,
            },
        );
    }
    let mac = fixed("mac", &env.mac, MAC_LEN)?;
    Ok((Contents { key_check, entries }, mac))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn check_value(name: &SecretName, value: &SecretString) -> Result<(), SecretsError> {
    let v = value.expose_secret();
    let invalid = |reason: &str| SecretsError::InvalidValue {
        name: name.to_string(),
        reason: reason.to_owned(),
    };
    if v.is_empty() {
        return Err(invalid("the value is empty"));
    }
    if v.len() > MAX_VALUE_LEN {
        return Err(invalid(&format!(
            "the value is {} bytes long; at most {MAX_VALUE_LEN} are allowed",
            v.len()
        )));
    }
    if v.contains('\0') {
        return Err(invalid("the value contains a NUL character"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// A handle on the vault of one `COMIS_HOME`, with the master key that opens it.
///
/// Every operation reads the file afresh and verifies the key check and the MAC, so a handle
/// never acts on stale or unverified data.
pub struct Vault {
    home: PathBuf,
    path: PathBuf,
    lock_path: PathBuf,
    key: MasterKey,
    source: KeySource,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("key", &"[REDACTED]")
            .field("key_source", &self.source)
            .finish()
    }
}

impl Vault {
    /// Opens the vault of `home` with the configured master key (`COMIS_MASTER_KEY`, else
    /// `home/master.key`), finishing or rolling back an interrupted key rotation first, and
    /// verifies the vault if it exists.
    ///
    /// # Errors
    /// Key errors ([`SecretsError::MasterKeyMissing`], …), [`SecretsError::WrongMasterKey`],
    /// [`SecretsError::VaultCorrupt`], [`SecretsError::VaultTampered`].
    pub fn open(home: &Path) -> Result<Self, SecretsError> {
        let vault = Self::open_unverified(home)?;
        match vault.read() {
            Ok(_) => Ok(vault),
            // A rotation in another process may have replaced both files between our reading
            // the key and the vault: once it is finished (the lock is free), look again.
            Err(SecretsError::WrongMasterKey { .. })
                if matches!(vault.source, KeySource::File(_)) =>
            {
                let _lock = fsutil::WriterLock::acquire(&vault.lock_path)?;
                let (key, source) = master_key::load(home)?;
                let vault = Self::new(home, key, source);
                vault.read()?;
                Ok(vault)
            }
            Err(e) => Err(e),
        }
    }

    /// Like [`Vault::open`], but when there is neither a master key nor a vault yet, creates
    /// `home/master.key` (mode 0600) first. Returns whether a key was created.
    ///
    /// # Errors
    /// As [`Vault::open`]; refuses to create a key when a vault already exists.
    pub fn open_or_create(home: &Path) -> Result<(Self, bool), SecretsError> {
        match Self::open(home) {
            Err(SecretsError::MasterKeyMissing { path }) => {
                let vault_path = home.join(VAULT_FILE);
                if vault_path.exists() {
                    return Err(SecretsError::MasterKeyMissing { path });
                }
                let lock = fsutil::WriterLock::acquire(&home.join(LOCK_FILE))?;
                // Re-check under the lock: another process may have created it meanwhile.
                let created = master_key::read_key_file(&path)?.is_none() && !vault_path.exists();
                if created {
                    master_key::write_key_file(&path, &MasterKey::generate()?)?;
                }
                drop(lock);
                Ok((Self::open(home)?, created))
            }
            other => other.map(|v| (v, false)),
        }
    }

    /// Opens the vault of `home` with an explicit key (the daemon and tests use this).
    ///
    /// # Errors
    /// As [`Vault::open`], without the key-loading errors.
    pub fn with_key(home: &Path, key: MasterKey, source: KeySource) -> Result<Self, SecretsError> {
        let vault = Self::new(home, key, source);
        vault.read()?;
        Ok(vault)
    }

    fn new(home: &Path, key: MasterKey, source: KeySource) -> Self {
        Self {
            home: home.to_owned(),
            path: home.join(VAULT_FILE),
            lock_path: home.join(LOCK_FILE),
            key,
            source,
        }
    }

    fn open_unverified(home: &Path) -> Result<Self, SecretsError> {
        let (key, source) = master_key::load(home)?;
        let next = home.join(NEXT_KEY_FILE);
        if matches!(source, KeySource::File(_)) && fs::symlink_metadata(&next).is_ok() {
            return Self::recover_rotation(home);
        }
        Ok(Self::new(home, key, source))
    }

    /// Finishes or rolls back a rotation interrupted between writing `master.key.next` and
    /// renaming it onto `master.key`. Runs under the writer lock, with the key reloaded, since a
    /// rotation may have been running in another process until the lock was granted.
    fn recover_rotation(home: &Path) -> Result<Self, SecretsError> {
        let _lock = fsutil::WriterLock::acquire(&home.join(LOCK_FILE))?;
        let (key, source) = master_key::load(home)?;
        let next_path = home.join(NEXT_KEY_FILE);
        let Some(next_key) = master_key::read_key_file(&next_path)? else {
            return Ok(Self::new(home, key, source));
        };
        let vault = Self::new(home, key, source);
        let Some(bytes) = fsutil::read_limited(&vault.path, MAX_VAULT_LEN)? else {
            remove_file(&next_path)?;
            return Ok(vault);
        };
        let (contents, _) = parse(&vault.path, &bytes)?;
        if contents.key_opens(&vault.key) {
            // The vault was never replaced: the rotation did not happen.
            remove_file(&next_path)?;
            return Ok(vault);
        }
        if contents.key_opens(&next_key) {
            // The vault was replaced: the new key is the right one; finish the rotation.
            let key_path = master_key::key_file_path(home);
            fs::rename(&next_path, &key_path).map_err(|source| SecretsError::Io {
                action: "renaming the rotated master key onto",
                path: key_path.clone(),
                source,
            })?;
            fsutil::sync_dir(home)?;
            return Ok(Self::new(home, next_key, KeySource::File(key_path)));
        }
        // Neither key opens it: leave both files for the operator; the read reports it.
        Ok(vault)
    }

    /// Where the master key of this handle came from.
    #[must_use]
    pub fn key_source(&self) -> &KeySource {
        &self.source
    }

    /// The vault file path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and verifies the vault; `None` when the file does not exist yet.
    fn read(&self) -> Result<Option<Contents>, SecretsError> {
        let Some(bytes) = fsutil::read_limited(&self.path, MAX_VAULT_LEN)? else {
            return Ok(None);
        };
        let (contents, mac) = parse(&self.path, &bytes)?;
        if !contents.key_opens(&self.key) {
            return Err(SecretsError::WrongMasterKey {
                path: self.path.clone(),
            });
        }
        if !crypto::mac_verify(
            &self.key,
            &contents.key_check.salt,
            &contents.mac_input(),
            &mac,
        ) {
            return Err(SecretsError::VaultTampered {
                path: self.path.clone(),
                reason: "the vault MAC does not match its entries (entries were added, removed, \
                         swapped or edited)"
                    .into(),
            });
        }
        Ok(Some(contents))
    }

    /// Runs `change` on the verified contents under the writer lock and writes the result.
    fn modify<T>(
        &self,
        change: impl FnOnce(&mut Contents) -> Result<T, SecretsError>,
    ) -> Result<T, SecretsError> {
        let _lock = fsutil::WriterLock::acquire(&self.lock_path)?;
        fsutil::remove_stale_temps(&self.path);
        let mut contents = match self.read()? {
            Some(c) => c,
            None => Contents::new(&self.key)?,
        };
        let out = change(&mut contents)?;
        fsutil::atomic_write(&self.path, &contents.to_json(&self.key)?)?;
        Ok(out)
    }

    fn decrypt(&self, name: &str, entry: &Entry) -> Result<SecretString, SecretsError> {
        let tampered = || SecretsError::VaultTampered {
            path: self.path.clone(),
            reason: format!("entry {name} does not decrypt under its own name"),
        };
        let plain = crypto::open(&self.key, &crypto::entry_aad(name), &entry.sealed)
            .ok_or_else(tampered)?;
        let text = std::str::from_utf8(&plain).map_err(|_| tampered())?;
        Ok(SecretString::from(text))
    }

    /// Names and update times of every entry, in name order.
    ///
    /// # Errors
    /// The read errors of [`Vault::open`].
    pub fn list(&self) -> Result<Vec<EntryInfo>, SecretsError> {
        let Some(c) = self.read()? else {
            return Ok(Vec::new());
        };
        c.entries
            .iter()
            .map(|(n, e)| {
                Ok(EntryInfo {
                    name: SecretName::new(n)?,
                    updated_at: e.updated_at,
                })
            })
            .collect()
    }

    /// The value of `name`, or `None` when it is not set.
    ///
    /// # Errors
    /// The read errors of [`Vault::open`]; [`SecretsError::VaultTampered`] when the entry does
    /// not authenticate.
    pub fn get(&self, name: &SecretName) -> Result<Option<SecretString>, SecretsError> {
        let Some(c) = self.read()? else {
            return Ok(None);
        };
        c.entries
            .get(name.as_str())
            .map(|e| self.decrypt(name.as_str(), e))
            .transpose()
    }

    /// Sets `name` to `value` (creating the vault if needed).
    ///
    /// # Errors
    /// [`SecretsError::InvalidValue`] for an empty, oversized or NUL-containing value; the read
    /// errors of [`Vault::open`] (the vault is then left unchanged); I/O errors.
    pub fn set(&self, name: &SecretName, value: &SecretString) -> Result<(), SecretsError> {
        self.set_many(std::slice::from_ref(&(name.clone(), value.clone())))
    }

    /// Sets several entries in one atomic write.
    ///
    /// # Errors
    /// As [`Vault::set`].
    pub fn set_many(&self, items: &[(SecretName, SecretString)]) -> Result<(), SecretsError> {
        for (n, v) in items {
            check_value(n, v)?;
        }
        self.modify(|c| {
            let t = now();
            for (n, v) in items {
                let sealed = crypto::seal(
                    &self.key,
                    &crypto::entry_aad(n.as_str()),
                    v.expose_secret().as_bytes(),
                )?;
                c.entries.insert(
                    n.as_str().to_owned(),
                    Entry {
                        sealed,
                        updated_at: t,
                    },
                );
            }
            Ok(())
        })
    }

    /// Removes `name`; returns whether it existed. Nothing is written when it did not.
    ///
    /// # Errors
    /// The read errors of [`Vault::open`]; I/O errors.
    pub fn remove(&self, name: &SecretName) -> Result<bool, SecretsError> {
        if self
            .read()?
            .is_none_or(|c| !c.entries.contains_key(name.as_str()))
        {
            return Ok(false);
        }
        self.modify(|c| Ok(c.entries.remove(name.as_str()).is_some()))
    }

    /// Every value, for building a [`crate::SecretManager`] or a [`crate::redact::Redactor`].
    /// Crate-private: there is no public way to enumerate values.
    pub(crate) fn decrypt_all(&self) -> Result<BTreeMap<String, SecretString>, SecretsError> {
        let Some(c) = self.read()? else {
            return Ok(BTreeMap::new());
        };
        c.entries
            .iter()
            .map(|(n, e)| Ok((n.clone(), self.decrypt(n, e)?)))
            .collect()
    }

    /// Re-encrypts every entry under a new master key.
    ///
    /// `new_key`: the key to rotate to; `None` generates one. With a key from
    /// `COMIS_MASTER_KEY`, the caller must supply it (comis cannot change the environment) and
    /// the vault is rewritten in one atomic step. With a key file, the steps are: write
    /// `master.key.next`, replace the vault, rename the new key onto `master.key`; see
    /// [`Vault::open`] for recovery.
    ///
    /// # Errors
    /// [`SecretsError::MasterKeyInvalid`] when the key comes from the environment and no new
    /// key is given; the read errors of [`Vault::open`] (then nothing is changed); I/O errors.
    pub fn rotate_key(
        &mut self,
        new_key: Option<MasterKey>,
    ) -> Result<RotationReport, SecretsError> {
        let new_key = match (new_key, &self.source) {
            (Some(k), _) => k,
            (None, KeySource::File(_)) => MasterKey::generate()?,
            (None, KeySource::Env) => {
                return Err(SecretsError::MasterKeyInvalid {
                    origin: master_key::ENV_VAR.into(),
                    reason: "the master key comes from the environment, so comis cannot store \
                             a new one: supply the new key (comis secrets rotate-key \
                             --new-key-stdin) and then update COMIS_MASTER_KEY"
                        .into(),
                });
            }
        };
        let _lock = fsutil::WriterLock::acquire(&self.lock_path)?;
        fsutil::remove_stale_temps(&self.path);
        let contents = self.read()?.map_or_else(|| Contents::new(&self.key), Ok)?;
        // Decrypt everything first: a vault with one bad entry is not rotated at all.
        let mut fresh = Contents::new(&new_key)?;
        for (name, e) in &contents.entries {
            let value = self.decrypt(name, e)?;
            let sealed = crypto::seal(
                &new_key,
                &crypto::entry_aad(name),
                value.expose_secret().as_bytes(),
            )?;
            fresh.entries.insert(
                name.clone(),
                Entry {
                    sealed,
                    updated_at: e.updated_at,
                },
            );
        }
        let bytes = fresh.to_json(&new_key)?;
        let new_source = match &self.source {
            KeySource::Env => {
                fsutil::atomic_write(&self.path, &bytes)?;
                KeySource::Env
            }
            KeySource::File(key_path) => {
                let next = self.home.join(NEXT_KEY_FILE);
                fsutil::remove_stale_temps(&next);
                master_key::write_key_file(&next, &new_key)?;
                fsutil::atomic_write(&self.path, &bytes)?;
                fs::rename(&next, key_path).map_err(|source| SecretsError::Io {
                    action: "renaming the rotated master key onto",
                    path: key_path.clone(),
                    source,
                })?;
                fsutil::sync_dir(&self.home)?;
                KeySource::File(key_path.clone())
            }
        };
        self.key = new_key;
        self.source = new_source.clone();
        Ok(RotationReport {
            entries: fresh.entries.len(),
            new_key_source: new_source,
        })
    }
}

fn remove_file(path: &Path) -> Result<(), SecretsError> {
    fs::remove_file(path).map_err(|source| SecretsError::Io {
        action: "removing",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn key(b: u8) -> MasterKey {
        MasterKey::from_bytes([b; 32])
    }
    fn name(s: &str) -> SecretName {
        SecretName::new(s).unwrap()
    }
    fn vault(home: &Path, b: u8) -> Vault {
        Vault::new(home, key(b), KeySource::Env)
    }

    #[test]
    fn mac_input_is_injective_on_boundaries() {
        let k = key(1);
        let mut a = Contents::new(&k).unwrap();
        let mut b = a.clone();
        let s = crypto::seal(&k, b"x", b"v").unwrap();
        a.entries.insert(
            "AB".into(),
            Entry {
                sealed: s.clone(),
                updated_at: 1,
            },
        );
        b.entries.insert(
            "A".into(),
            Entry {
                sealed: s,
                updated_at: 1,
            },
        );
        assert_ne!(a.mac_input(), b.mac_input());
    }

    #[test]
    fn empty_home_lists_nothing_and_reads_none() {
        let d = tempfile::tempdir().unwrap();
        let v = vault(d.path(), 1);
        assert!(v.list().unwrap().is_empty());
        assert!(v.get(&name("X")).unwrap().is_none());
        assert!(!v.remove(&name("X")).unwrap());
        assert!(
            !d.path().join(VAULT_FILE).exists(),
            "a read must not create the vault"
        );
    }

    #[test]
    fn invalid_values_are_refused_without_echo() {
        let d = tempfile::tempdir().unwrap();
        let v = vault(d.path(), 1);
        for bad in [
            String::new(),
            "a\0secretvalue".into(),
            "z".repeat(MAX_VALUE_LEN + 1),
        ] {
            let e = v
                .set(&name("X"), &SecretString::from(bad.clone()))
                .unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("X"), "{msg}");
            if !bad.is_empty() {
                assert!(
                    !msg.contains("secretvalue") && !msg.contains("zzzz"),
                    "{msg}"
                );
            }
        }
        assert!(!d.path().join(VAULT_FILE).exists());
    }

    #[test]
    fn swapped_entries_fail_even_with_a_recomputed_mac() {
        // The MAC catches a swap first; this shows the per-entry associated data is a second,
        // independent layer: re-MACed with the right key, a swapped entry still fails.
        let d = tempfile::tempdir().unwrap();
        let v = vault(d.path(), 1);
        v.set(&name("A"), &SecretString::from("value-of-a"))
            .unwrap();
        v.set(&name("B"), &SecretString::from("value-of-b"))
            .unwrap();
        let mut c = v.read().unwrap().unwrap();
        let a = c.entries.get("A").unwrap().clone();
        let b = c.entries.get("B").unwrap().clone();
        c.entries.insert("A".into(), b);
        c.entries.insert("B".into(), a);
        fs::write(v.path(), c.to_json(&key(1)).unwrap()).unwrap();
        let e = v.get(&name("A")).unwrap_err();
        assert!(matches!(e, SecretsError::VaultTampered { .. }), "{e}");
        assert!(e.to_string().contains("entry A"), "{e}");
        assert!(!e.to_string().contains("value-of"));
    }

    #[test]
    fn unknown_format_and_unknown_fields_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let v = vault(d.path(), 1);
        v.set(&name("X"), &SecretString::from("value-1")).unwrap();
        let text = fs::read_to_string(v.path()).unwrap();
        fs::write(
            v.path(),
            text.replace("comis-secrets-v1", "comis-secrets-v9"),
        )
        .unwrap();
        assert!(matches!(
            v.list(),
            Err(SecretsError::UnsupportedVersion { .. })
        ));
        let mut j: serde_json::Value = serde_json::from_str(&text).unwrap();
        j["extra"] = serde_json::json!(1);
        fs::write(v.path(), serde_json::to_vec(&j).unwrap()).unwrap();
        assert!(matches!(v.list(), Err(SecretsError::VaultCorrupt { .. })));
    }
}
