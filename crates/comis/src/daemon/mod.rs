//! The daemon's process lifecycle: one instance per `COMIS_HOME`, its pid, its state.
//!
//! Guarantees: [`InstanceLock::acquire`] takes an exclusive `flock` on `$COMIS_HOME/daemon.lock`
//! and holds it for the life of the process, so a second daemon on the same home refuses to
//! start, and "running" is decided by the lock (the kernel releases it when the process dies,
//! however it dies), never by a possibly stale pid file. The pid and state files are 0600 and
//! written atomically.
//!
//! Does not: coordinate daemons on different homes, or survive a home on a filesystem without
//! `flock` (NFS without lock support). In the instant between a new daemon taking the lock and
//! writing its pid, the pid file may still name a crashed predecessor; `stop` in that instant
//! would signal that stale pid.

pub mod backend;
pub mod logging;
pub mod revoked;
pub mod run;
pub mod wiring;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, home};

pub const LOCK_FILE: &str = "daemon.lock";
pub const PID_FILE: &str = "daemon.pid";
pub const STATE_FILE: &str = "daemon.json";

/// `$COMIS_HOME/logs/daemon.log` unless `daemon.logging.filePath` says otherwise.
pub fn log_path(home: &Path, configured: Option<&str>) -> PathBuf {
    match configured {
        Some(p) if !p.is_empty() => home.join(p),
        _ => home.join("logs").join("daemon.log"),
    }
}

/// What `comis daemon status` shows, written by the daemon once it is ready.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DaemonState {
    pub pid: u32,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    pub gateway: String,
    pub agents: Vec<String>,
    pub channels: Vec<String>,
    /// Layer name → active and why; empty until the host probe has finished.
    pub sandbox: Vec<(String, bool, String)>,
    pub config_loaded_at: u64,
}

impl DaemonState {
    pub fn write(&self, home: &Path) -> Result<(), ConfigError> {
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        home::write_private(&home.join(STATE_FILE), &text)
    }

    pub fn read(home: &Path) -> Option<DaemonState> {
        let text = std::fs::read(home.join(STATE_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

fn open_lock(home: &Path) -> Result<File, ConfigError> {
    let path = home.join(LOCK_FILE);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|source| ConfigError::Io {
            action: "opening the daemon lock",
            path,
            source,
        })
}

/// The exclusive instance lock; released when dropped or when the process ends.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    /// Takes the lock, or `Ok(None)` when another process holds it.
    pub fn acquire(home: &Path) -> Result<Option<InstanceLock>, ConfigError> {
        let file = open_lock(home)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(InstanceLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(ConfigError::Io {
                action: "locking",
                path: home.join(LOCK_FILE),
                source: e.into(),
            }),
        }
    }
}

/// The pid of the running daemon of `home`, if one holds the lock.
pub fn running(home: &Path) -> Option<u32> {
    let file = open_lock(home).ok()?;
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        // We got it: nobody holds the exclusive lock (ours is released when `file` drops).
        Ok(()) => None,
        Err(_) => Some(read_pid(home).unwrap_or(0)),
    }
}

pub fn read_pid(home: &Path) -> Option<u32> {
    std::fs::read_to_string(home.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
