//! The comis data directory (`COMIS_HOME`, default `$HOME/.comis`).
//!
//! Defends: the vault, the master key and, later, the database and audit log against other
//! local users, by keeping them in a directory only the owner can enter.
//!
//! Guarantees: [`ensure`] creates the directory (and missing parents) with mode 0700, and
//! refuses an existing one that is not a directory or that group or others can write (they
//! could replace `secrets.enc` or `master.key`), with the `chmod` that fixes it. A relative
//! `COMIS_HOME` is made absolute against the current directory once, here.
//!
//! Does not: tighten an existing directory that is merely group- or world-readable (files in
//! it are created 0600; `comis doctor` is where permissions get repaired).

use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::ConfigError;

/// The environment variable that overrides the data directory.
pub const HOME_VAR: &str = "COMIS_HOME";

/// The data directory: `COMIS_HOME` if set and not empty, else `$HOME/.comis`.
///
/// # Errors
/// [`ConfigError::NoHome`] when neither variable is usable.
pub fn path() -> Result<PathBuf, ConfigError> {
    let from_env = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let p = match from_env(HOME_VAR) {
        Some(p) => p,
        None => from_env("HOME").ok_or(ConfigError::NoHome)?.join(".comis"),
    };
    if p.is_absolute() {
        return Ok(p);
    }
    let cwd = std::env::current_dir().map_err(|source| ConfigError::Io {
        action: "resolving relative COMIS_HOME against the current directory",
        path: p.clone(),
        source,
    })?;
    Ok(cwd.join(p))
}

/// A new, empty, private (0700) directory under the system's temporary directory, for a
/// throw-away home such as `comis demo`'s. The caller removes it.
///
/// # Errors
/// [`ConfigError::Io`] when it cannot be created.
pub fn fresh_temp_dir(prefix: &str) -> Result<PathBuf, ConfigError> {
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).map_err(|e| ConfigError::Io {
        action: "drawing a random directory name",
        path: PathBuf::from(prefix),
        source: std::io::Error::other(e.to_string()),
    })?;
    let p = std::env::temp_dir().join(format!("{prefix}-{}", comis_guard::hex::encode(&suffix)));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&p)
        .map_err(|source| ConfigError::Io {
            action: "creating a temporary directory",
            path: p.clone(),
            source,
        })?;
    Ok(p)
}

/// [`path`], created 0700 if missing and checked if present.
///
/// # Errors
/// [`ConfigError::BadHome`] or [`ConfigError::Io`].
pub fn ensure() -> Result<PathBuf, ConfigError> {
    let p = path()?;
    ensure_dir(&p)?;
    Ok(p)
}

/// Creates `p` with mode 0700 when missing; checks it otherwise.
///
/// # Errors
/// [`ConfigError::BadHome`] or [`ConfigError::Io`].
pub fn ensure_dir(p: &Path) -> Result<(), ConfigError> {
    match fs::metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(p)
            .map_err(|source| ConfigError::Io {
                action: "creating the data directory",
                path: p.to_owned(),
                source,
            }),
        Err(source) => Err(ConfigError::Io {
            action: "inspecting the data directory",
            path: p.to_owned(),
            source,
        }),
        Ok(m) if !m.is_dir() => Err(ConfigError::BadHome {
            path: p.to_owned(),
            reason: "it exists and is not a directory".into(),
        }),
        Ok(m) if m.mode() & 0o022 != 0 => Err(ConfigError::BadHome {
            path: p.to_owned(),
            reason: format!(
                "group or others can write to it (mode {:03o}), so they could replace the \
                 vault or the master key; fix it with: chmod 700 {}",
                m.mode() & 0o777,
                p.display()
            ),
        }),
        Ok(_) => Ok(()),
    }
}

/// Writes `bytes` to `path` atomically with mode 0600 (temporary file beside it, fsync,
/// rename), replacing any existing file.
///
/// # Errors
/// [`ConfigError::Io`].
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| ConfigError::Io {
        action: "writing",
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_private_directories() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a/b/home");
        ensure_dir(&p).unwrap();
        for d in [t.path().join("a"), t.path().join("a/b"), p.clone()] {
            assert_eq!(
                fs::metadata(&d).unwrap().mode() & 0o777,
                0o700,
                "{}",
                d.display()
            );
        }
        ensure_dir(&p).unwrap();
    }

    #[test]
    fn refuses_writable_by_others_and_files() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("home");
        fs::create_dir(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure_dir(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 700"), "{e}");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&p).unwrap();
        let f = t.path().join("file");
        fs::write(&f, b"").unwrap();
        assert!(ensure_dir(&f).is_err());
    }
}
