//! Revoked gateway tokens, kept in `$COMIS_HOME/revoked-tokens` so that a revocation outlives a
//! SIGHUP reload (which rebuilds the gateway) and a restart.
//!
//! One line per revoked token: the lowercase hex SHA-256 digest of its secret, never the
//! secret. A token given a new secret is a new token. The file is 0600 and replaced whole on
//! each change. A file that cannot be read or holds anything else is an error for whoever
//! loads it (the daemon then does not start, or the reload is refused): ignoring it would
//! bring revoked tokens back.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::{ConfigError, home};

/// The file's name inside `COMIS_HOME`.
pub const FILE: &str = "revoked-tokens";

/// Largest file read: 1 MiB holds ~16,000 revocations, far more than a token list has.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The revocations of one `COMIS_HOME`.
#[derive(Debug)]
pub struct RevokedTokens {
    path: PathBuf,
    digests: Mutex<Vec<[u8; 32]>>,
}

impl RevokedTokens {
    /// Reads the file (absent: none revoked).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a malformed line, [`ConfigError::Io`] when unreadable.
    pub fn load(home: &Path) -> Result<RevokedTokens, ConfigError> {
        let path = home.join(FILE);
        let too_big = std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_FILE_BYTES);
        if too_big {
            return Err(ConfigError::Invalid {
                file: path,
                pos: None,
                message: format!("larger than {MAX_FILE_BYTES} bytes: not a revocation list"),
            });
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ConfigError::Io {
                    action: "reading",
                    path,
                    source,
                });
            }
        };
        let mut digests = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let digest = decode(line).ok_or_else(|| ConfigError::Invalid {
                file: path.clone(),
                pos: None,
                message: format!(
                    "line {}: not a 64-hex-digit token digest; fix or remove the line (a \
                     removed line un-revokes its token)",
                    i + 1
                ),
            })?;
            digests.push(digest);
        }
        Ok(RevokedTokens {
            path,
            digests: Mutex::new(digests),
        })
    }

    pub fn digests(&self) -> Vec<[u8; 32]> {
        self.digests.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Adds a digest and rewrites the file.
    ///
    /// # Errors
    /// [`ConfigError::Io`].
    pub fn record(&self, digest: [u8; 32]) -> Result<(), ConfigError> {
        let mut digests = self.digests.lock().unwrap_or_else(|e| e.into_inner());
        if !digests.contains(&digest) {
            digests.push(digest);
        }
        let text: String = digests
            .iter()
            .map(|d| format!("{}\n", comis_guard::hex::encode(d)))
            .collect();
        home::write_private(&self.path, text.as_bytes())
    }
}

fn decode(line: &str) -> Option<[u8; 32]> {
    let bytes = line.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn revocations_round_trip_and_a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = RevokedTokens::load(dir.path()).unwrap();
        assert!(r.digests().is_empty());
        r.record([7; 32]).unwrap();
        r.record([7; 32]).unwrap();
        r.record([0xab; 32]).unwrap();
        let again = RevokedTokens::load(dir.path()).unwrap();
        assert_eq!(again.digests(), vec![[7; 32], [0xab; 32]]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        for bad in [
            "xyz\n",
            &"g".repeat(64),
            &"0".repeat(63),
            "é".repeat(32).as_str(),
        ] {
            std::fs::write(dir.path().join(FILE), bad).unwrap();
            let err = RevokedTokens::load(dir.path()).unwrap_err();
            assert!(err.to_string().contains("line 1"), "{err}");
        }
        // Oversized: refused before it is read.
        let line = format!("{}\n", "ab".repeat(32));
        std::fs::write(dir.path().join(FILE), line.repeat(20_000)).unwrap();
        let err = RevokedTokens::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }
}
