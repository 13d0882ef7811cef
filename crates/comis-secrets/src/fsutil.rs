//! Crash-safe, private file writes and the writer lock.
//!
//! Defends: the vault and key files against torn writes (a crash or SIGKILL in the middle of a
//! write), lost updates (two writers interleaving read-modify-write), and exposure through
//! permissive modes.
//!
//! Guarantees:
//! - [`atomic_write`] creates a fresh temporary file beside the target (`O_EXCL`, mode 0600),
//!   writes and fsyncs it, renames it over the target and fsyncs the directory; at every
//!   instant the target is either the complete old file or the complete new one;
//! - [`WriterLock`] is an exclusive `flock` on a separate lock file (locking the data file
//!   itself would not work, since rename replaces its inode); it is released when dropped or
//!   when the process dies, so a killed writer never leaves the vault locked.
//!
//! Does not: protect readers from seeing a file that is older than a concurrent write (readers
//! take no lock; they see the old or the new version, both complete).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::{SecretsError, crypto};

/// `O_NOFOLLOW` for [`OpenOptionsExt::custom_flags`].
pub(crate) const O_NOFOLLOW: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
/// `O_NONBLOCK`, so that opening a FIFO planted where a file should be cannot hang.
pub(crate) const O_NONBLOCK: i32 = rustix::fs::OFlags::NONBLOCK.bits() as i32;
/// `ELOOP`: what opening a symlink with `O_NOFOLLOW` fails with.
pub(crate) const ELOOP: i32 = rustix::io::Errno::LOOP.raw_os_error();

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SecretsError {
    let path = path.to_owned();
    move |source| SecretsError::Io {
        action,
        path,
        source,
    }
}

/// The prefix of temporary files written for `target`: `.<name>.tmp.`
fn temp_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.tmp.")
}

fn parent_of(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Writes `data` to `target` atomically with mode 0600 (see the module doc).
pub(crate) fn atomic_write(target: &Path, data: &[u8]) -> Result<(), SecretsError> {
    let dir = parent_of(target);
    let suffix = crypto::random::<8>()?;
    let mut tmp_name = temp_prefix(target);
    for b in suffix {
        tmp_name.push_str(&format!("{b:02x}"));
    }
    let tmp = dir.join(tmp_name);
    let result = write_then_rename(&tmp, target, data);
    if result.is_err() {
        // Best effort: a leftover temporary file is harmless (encrypted, 0600) and removed by
        // the next writer, so a failure to remove it here is not reported over the real error.
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(&dir)
}

fn write_then_rename(tmp: &Path, target: &Path, data: &[u8]) -> Result<(), SecretsError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(O_NOFOLLOW)
        .open(tmp)
        .map_err(io_err("creating temporary file", tmp))?;
    f.write_all(data).map_err(io_err("writing", tmp))?;
    f.sync_all().map_err(io_err("syncing", tmp))?;
    drop(f);
    fs::rename(tmp, target).map_err(io_err("renaming temporary file onto", target))
}

/// Fsyncs a directory so that a rename in it survives a power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SecretsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory", dir))
}

/// Removes temporary files that writers of `target` killed mid-write left behind. Call only
/// while holding the [`WriterLock`], so no live writer's temporary file is removed.
pub(crate) fn remove_stale_temps(target: &Path) {
    let dir = parent_of(target);
    let prefix = temp_prefix(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            // Best effort, see atomic_write.
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Reads a whole file of at most `max` bytes, without following a final symlink; `None` when
/// it does not exist.
pub(crate) fn read_limited(path: &Path, max: u64) -> Result<Option<Vec<u8>>, SecretsError> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW | O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("opening", path)(e)),
    };
    let meta = f.metadata().map_err(io_err("inspecting", path))?;
    if !meta.is_file() {
        return Err(SecretsError::Io {
            action: "opening",
            path: path.to_owned(),
            source: std::io::Error::other("not a regular file"),
        });
    }
    let mut buf = Vec::new();
    f.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(io_err("reading", path))?;
    if buf.len() as u64 > max {
        return Err(SecretsError::Io {
            action: "reading",
            path: path.to_owned(),
            source: std::io::Error::other(format!("file is larger than {max} bytes")),
        });
    }
    Ok(Some(buf))
}

/// An exclusive advisory lock held for the lifetime of the value.
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
}

impl WriterLock {
    /// Blocks until the exclusive lock on `path` (created 0600 if missing) is held.
    pub(crate) fn acquire(path: &Path) -> Result<Self, SecretsError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(O_NOFOLLOW)
            .open(path)
            .map_err(io_err("opening lock file", path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err("locking", path)(e.into()))?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_with_mode_0600_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        atomic_write(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temps_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(dir.path().join(".f.tmp.abcd"), b"x").unwrap();
        fs::write(dir.path().join(".g.tmp.abcd"), b"x").unwrap();
        remove_stale_temps(&p);
        assert!(!dir.path().join(".f.tmp.abcd").exists());
        assert!(dir.path().join(".g.tmp.abcd").exists());
    }

    #[test]
    fn read_limited_refuses_large_symlink_and_fifo_like() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        assert!(read_limited(&p, 10).unwrap().is_none());
        fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read_limited(&p, 10).unwrap().unwrap(), b"0123456789");
        assert!(read_limited(&p, 9).is_err());
        let l = dir.path().join("l");
        std::os::unix::fs::symlink(&p, &l).unwrap();
        assert!(read_limited(&l, 10).is_err());
        assert!(read_limited(dir.path(), 10).is_err());
    }

    #[test]
    fn lock_is_exclusive_between_handles() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let held = WriterLock::acquire(&p).unwrap();
        let f = File::open(&p).unwrap();
        assert!(
            rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err()
        );
        drop(held);
        assert!(
            rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
        );
    }
}
