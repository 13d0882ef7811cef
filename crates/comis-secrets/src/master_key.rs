//! The master key: where it comes from, how it is parsed, how its file is protected.
//!
//! Defends: the root of every vault key against being read from a file other users can read or
//! replace, against being mistyped silently (a truncated key is refused, never padded), and
//! against leaking through diagnostics.
//!
//! Guarantees:
//! - the key comes from `COMIS_MASTER_KEY` when that variable is set and not blank, otherwise
//!   from `$COMIS_HOME/master.key`; both hold exactly 32 bytes as 64 hex characters or base64
//!   (standard or URL-safe alphabet, with or without padding);
//! - the key file is opened without following symlinks and is used only when it is a regular
//!   file owned by the current user with no group or other permission bits; otherwise the
//!   error says exactly how to fix it (`chmod 600 …`);
//! - a created key file is written atomically with mode 0600;
//! - the key lives in a zeroizing `secrecy` box; `Debug` prints `[REDACTED]`, and parse errors
//!   report only the length of what was given.
//!
//! Does not: remove `COMIS_MASTER_KEY` from the process environment (that needs `unsafe` in
//! edition 2024); processes comis spawns get a filtered environment from comis-sandbox instead.

use std::fmt;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

use crate::{SecretsError, crypto, fsutil};

/// The environment variable holding the master key.
pub const ENV_VAR: &str = "COMIS_MASTER_KEY";
/// The file name of the master key inside `COMIS_HOME`.
pub const KEY_FILE: &str = "master.key";
/// Length of the master key in bytes.
pub const KEY_LEN: usize = 32;
/// A key file larger than this is not a key file.
const MAX_KEY_FILE: u64 = 4096;

/// The 32-byte master key. Never printed; zeroized on drop.
pub struct MasterKey(SecretBox<[u8; KEY_LEN]>);

impl MasterKey {
    /// Wraps raw key bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    /// A new random key from the operating system's random source.
    ///
    /// # Errors
    /// [`SecretsError::Random`] when the random source fails.
    pub fn generate() -> Result<Self, SecretsError> {
        let bytes = Zeroizing::new(crypto::random::<KEY_LEN>()?);
        Ok(Self::from_bytes(*bytes))
    }

    /// Parses 64 hex characters or base64 of exactly 32 bytes; surrounding whitespace is
    /// ignored. `origin` names where the text came from, for the error message.
    ///
    /// # Errors
    /// [`SecretsError::MasterKeyInvalid`], which gives the length of the input but no content.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SecretsError> {
        let t = text.trim();
        let invalid = |reason: String| SecretsError::MasterKeyInvalid {
            origin: origin.to_owned(),
            reason,
        };
        if t.len() == 2 * KEY_LEN && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut out = Zeroizing::new([0u8; KEY_LEN]);
            for (i, pair) in t.as_bytes().chunks_exact(2).enumerate() {
                out[i] = (hex_val(pair[0]) << 4) | hex_val(pair[1]);
            }
            return Ok(Self::from_bytes(*out));
        }
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let mut buf = Zeroizing::new(Vec::with_capacity(48));
            if engine.decode_vec(t, &mut buf).is_ok() && buf.len() == KEY_LEN {
                let mut out = Zeroizing::new([0u8; KEY_LEN]);
                out.copy_from_slice(&buf);
                return Ok(Self::from_bytes(*out));
            }
        }
        Err(invalid(format!(
            "expected {KEY_LEN} bytes written as 64 hex characters or base64 (44 characters); \
             got {} characters that are neither",
            t.chars().count()
        )))
    }

    /// The key as 64 lower-case hex characters (for writing the key file).
    #[must_use]
    pub fn to_hex(&self) -> Zeroizing<String> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = Zeroizing::new(String::with_capacity(2 * KEY_LEN));
        for b in self.0.expose_secret() {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        s
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// Where a master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `COMIS_MASTER_KEY` environment variable.
    Env,
    /// A key file (normally `$COMIS_HOME/master.key`).
    File(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env => f.write_str(ENV_VAR),
            KeySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// `$COMIS_HOME/master.key`.
#[must_use]
pub fn key_file_path(home: &Path) -> PathBuf {
    home.join(KEY_FILE)
}

/// Reads `COMIS_MASTER_KEY`; `None` when unset or blank.
///
/// # Errors
/// [`SecretsError::MasterKeyInvalid`] when set but not valid Unicode or not a 32-byte key.
pub fn from_env() -> Result<Option<MasterKey>, SecretsError> {
    let Some(raw) = std::env::var_os(ENV_VAR) else {
        return Ok(None);
    };
    let Some(text) = raw.to_str() else {
        return Err(SecretsError::MasterKeyInvalid {
            origin: ENV_VAR.into(),
            reason: "not valid UTF-8".into(),
        });
    };
    let text = Zeroizing::new(text.to_owned());
    drop(raw);
    if text.trim().is_empty() {
        return Ok(None);
    }
    MasterKey::parse(&text, ENV_VAR).map(Some)
}

/// Loads the master key: `COMIS_MASTER_KEY` first, then `$COMIS_HOME/master.key`.
///
/// # Errors
/// [`SecretsError::MasterKeyMissing`] when neither exists; the errors of [`from_env`] and
/// [`read_key_file`] otherwise.
pub fn load(home: &Path) -> Result<(MasterKey, KeySource), SecretsError> {
    if let Some(k) = from_env()? {
        return Ok((k, KeySource::Env));
    }
    let path = key_file_path(home);
    match read_key_file(&path)? {
        Some(k) => Ok((k, KeySource::File(path))),
        None => Err(SecretsError::MasterKeyMissing { path }),
    }
}

/// Reads a key file; `None` when it does not exist. Refuses symlinks, files that are not
/// regular, files owned by another user, and files with any group or other permission bit.
///
/// # Errors
/// [`SecretsError::MasterKeyPermissions`], [`SecretsError::MasterKeyUnsafe`],
/// [`SecretsError::MasterKeyInvalid`] or [`SecretsError::Io`].
pub fn read_key_file(path: &Path) -> Result<Option<MasterKey>, SecretsError> {
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(fsutil::O_NOFOLLOW | fsutil::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(fsutil::ELOOP) => {
            return Err(SecretsError::MasterKeyUnsafe {
                path: path.to_owned(),
                reason: "it is a symbolic link; put the key file itself there".into(),
            });
        }
        Err(source) => {
            return Err(SecretsError::Io {
                action: "opening master key file",
                path: path.to_owned(),
                source,
            });
        }
    };
    check_key_file(&file, path)?;
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_KEY_FILE)
        .read_to_string(&mut text)
        .map_err(|source| SecretsError::Io {
            action: "reading master key file",
            path: path.to_owned(),
            source,
        })?;
    MasterKey::parse(&text, &path.display().to_string()).map(Some)
}

fn check_key_file(file: &File, path: &Path) -> Result<(), SecretsError> {
    let meta = file.metadata().map_err(|source| SecretsError::Io {
        action: "inspecting master key file",
        path: path.to_owned(),
        source,
    })?;
    let unsafe_file = |reason: String| SecretsError::MasterKeyUnsafe {
        path: path.to_owned(),
        reason,
    };
    if !meta.is_file() {
        return Err(unsafe_file("it is not a regular file".into()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(unsafe_file(format!(
            "it is owned by uid {} but comis runs as uid {me}; fix it with: chown {me} {}",
            meta.uid(),
            path.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(SecretsError::MasterKeyPermissions {
            path: path.to_owned(),
            mode: meta.mode() & 0o777,
        });
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(unsafe_file(format!(
            "it is {} bytes long, which is not a key file",
            meta.len()
        )));
    }
    Ok(())
}

/// Writes `key` to `path` atomically (temporary file, fsync, rename, fsync of the directory)
/// with mode 0600, replacing any existing file.
///
/// # Errors
/// [`SecretsError::Io`].
pub fn write_key_file(path: &Path, key: &MasterKey) -> Result<(), SecretsError> {
    let mut text = key.to_hex();
    text.push('\n');
    fsutil::atomic_write(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn parses_hex_and_all_base64_forms() {
        let want: Vec<u8> = (0..32).collect();
        let k = MasterKey::parse(HEX, "t").unwrap();
        assert_eq!(k.bytes().as_slice(), want.as_slice());
        let k = MasterKey::parse(&HEX.to_uppercase(), "t").unwrap();
        assert_eq!(k.bytes().as_slice(), want.as_slice());
        for e in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let text = format!("  {}\n", e.encode(&want));
            assert_eq!(
                MasterKey::parse(&text, "t").unwrap().bytes().as_slice(),
                &want[..]
            );
        }
        assert_eq!(MasterKey::parse(HEX, "t").unwrap().to_hex().as_str(), HEX);
    }

    #[test]
    fn rejects_wrong_sizes_and_garbage_without_echo() {
        let short_b64 = STANDARD.encode([7u8; 31]);
        let long_b64 = STANDARD.encode([7u8; 33]);
        for bad in [
            "",
            &HEX[..62],
            &format!("{HEX}00"),
            &format!("{}zz", &HEX[..62]),
            short_b64.as_str(),
            long_b64.as_str(),
            "not a key at all, definitely not",
        ] {
            let e = MasterKey::parse(bad, "COMIS_MASTER_KEY")
                .unwrap_err()
                .to_string();
            assert!(e.contains("COMIS_MASTER_KEY"), "{e}");
            if bad.len() > 4 {
                assert!(!e.contains(bad.trim()), "error echoes the key: {e}");
            }
        }
    }

    #[test]
    fn debug_is_redacted() {
        let k = MasterKey::parse(HEX, "t").unwrap();
        let d = format!("{k:?}");
        assert_eq!(d, "MasterKey([REDACTED])");
    }

    #[test]
    fn key_file_permissions_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(KEY_FILE);
        assert!(read_key_file(&p).unwrap().is_none());
        write_key_file(&p, &MasterKey::parse(HEX, "t").unwrap()).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(read_key_file(&p).unwrap().unwrap().to_hex().as_str(), HEX);
        for mode in [0o640, 0o604, 0o644, 0o660, 0o602] {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            let e = read_key_file(&p).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
            assert!(!e.contains(HEX));
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_key_file(&p).unwrap().is_some());
    }

    #[test]
    fn key_file_symlink_and_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.key");
        write_key_file(&real, &MasterKey::generate().unwrap()).unwrap();
        let link = dir.path().join(KEY_FILE);
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = read_key_file(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let d = dir.path().join("d");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(read_key_file(&d).is_err());
    }

    #[test]
    fn key_file_with_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(KEY_FILE);
        fsutil::atomic_write(&p, b"hunter2 is my password").unwrap();
        let e = read_key_file(&p).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        fsutil::atomic_write(&p, &vec![b'a'; 10_000]).unwrap();
        assert!(read_key_file(&p).is_err());
    }
}
