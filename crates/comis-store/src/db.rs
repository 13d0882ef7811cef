//! Opening the database file safely.
//!
//! Defends: other local users reading memories, transcripts and the audit log (the file is
//! created 0600 before SQLite touches it, and tightened to 0600 if found looser; SQLite gives
//! its `-wal` and `-shm` files the main file's mode), and a tampered or foreign file steering
//! comis (`trusted_schema=OFF` keeps triggers and views in the file from calling functions
//! with side effects; a file whose `application_id` is not comis's is refused).
//!
//! Guarantees: the connection is in WAL mode with foreign keys on, a busy timeout, and
//! `synchronous=NORMAL` (durable against a killed process, consistent after power loss).
//!
//! Does not: protect against the file's owner (root or the comis user) editing it; the audit
//! chain detects that for the audit log only.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::{Result, SqlContext, StoreError};

/// `PRAGMA application_id` of a comis database: "coms" in ASCII.
pub(crate) const APPLICATION_ID: i64 = 0x636f_6d73;

/// How long a writer waits for another process's write lock before giving up.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn open_connection(path: &Path) -> Result<Connection> {
    create_private(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).ctx("opening the database")?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx("setting the busy timeout")?;
    let app_id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| not_comis(path, &e))?;
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(StoreError::NotComis {
            path: path.to_owned(),
            reason: format!("its application_id is {app_id:#x}"),
        });
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .ctx("switching to WAL")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotComis {
            path: path.to_owned(),
            reason: format!("it cannot use WAL journaling (got {mode})"),
        });
    }
    conn.execute_batch(
        "PRAGMA synchronous=NORMAL;
         PRAGMA foreign_keys=ON;
         PRAGMA trusted_schema=OFF;
         PRAGMA secure_delete=ON;
         PRAGMA temp_store=MEMORY;
         PRAGMA cache_size=-32768;",
    )
    .ctx("configuring the connection")?;
    Ok(conn)
}

/// A SQLite error on the very first read means the file is not a database.
fn not_comis(path: &Path, e: &rusqlite::Error) -> StoreError {
    StoreError::NotComis {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Creates `path` empty with mode 0600 if missing; tightens it to 0600 if group or others
/// have any access; refuses anything that is not a regular file.
fn create_private(path: &Path) -> Result<()> {
    let io = |action: &'static str| {
        move |source| StoreError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io("opening the database file"))?;
    let meta = file
        .metadata()
        .map_err(io("inspecting the database file"))?;
    if !meta.is_file() {
        return Err(StoreError::NotComis {
            path: path.to_owned(),
            reason: "it is not a regular file".into(),
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(io("restricting the database file to mode 0600"))?;
    }
    Ok(())
}
