//! # comis-store
//!
//! The one SQLite database of comis (`$COMIS_HOME/comis.db`): long-term memories partitioned by
//! trust, conversation transcripts, the hash-chained audit log and persisted approval requests.
//!
//! ## What it defends
//! - **Memory poisoning.** Memory is where an indirect prompt injection becomes persistent:
//!   text an attacker got the agent to *remember* re-enters every later conversation through
//!   recall. Every write runs the guard's memory write validator first (block, downgrade to
//!   `external`, or store), a lower-trust write can neither overwrite nor delete a
//!   higher-trust memory, and recall leaves `external` memories out unless asked.
//! - **Silent tampering with the record.** Every security decision is an audit event,
//!   appended to a SHA-256 hash chain whose head is also anchored outside the database, so an
//!   edited, inserted or deleted event is found by [`Store::verify_audit`].
//! - **Forgotten approvals.** A pending approval request survives a restart as a row, and the
//!   daemon denies it on start ([`Store::deny_pending_approvals`]): never silently dropped.
//! - **Query injection.** User text given to search is data: it is turned into quoted FTS5
//!   terms, so no FTS5 syntax in it can fail the query or change its meaning.
//!
//! ## What it guarantees
//! - One writer per process (a mutex around one connection), WAL so that other processes
//!   (`comis memory`, `comis audit`) can open the same file while the daemon runs, a busy
//!   timeout so they wait instead of failing, and `BEGIN IMMEDIATE` around every
//!   read-check-write so a check and the write it guards cannot interleave with another
//!   writer.
//! - A write that returned `Ok` survives the writer being killed (WAL, `synchronous=NORMAL`).
//! - The database file is created with mode 0600 (tightened if found looser) and refused when
//!   it is not a comis database or has a newer schema than this build knows.
//!
//! ## What it does not guarantee
//! - Durability of the last transactions across a *power loss* (`synchronous=NORMAL`): the
//!   database stays consistent, but the most recent commits may be rolled back.
//! - Protection from someone who can rewrite the database *and* the audit anchor file: the
//!   chain then only proves consistency; keep the head printed by `comis audit verify`
//!   somewhere else to detect that.
//! - Truth: a memory that passes every check can still be false.
#![forbid(unsafe_code)]

pub mod approval;
pub mod audit;
mod db;
pub mod fts;
pub mod memory;
pub mod migrate;
mod scrub;
pub mod time;
pub mod transcript;
pub mod types;
pub mod vector;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use comis_guard::memscan::MemoryValidator;
use rusqlite::Connection;

pub use approval::{Approval, ApprovalId, ApprovalStatus, Decision, NewApproval};
pub use audit::{
    AuditEvent, AuditFilter, EventType, NewAuditEvent, Outcome, VerifyProblem, VerifyReport,
};
pub use memory::{
    Memory, MemoryId, NewMemory, Provenance, SearchHit, SearchQuery, Stats, WriteOutcome,
    WriteVerdict,
};
pub use transcript::{Conversation, Message, NewMessage, Role};
pub use types::{AgentId, MemoryKey, SourceKind, Tag, Trust};

/// The database file name inside the data directory.
pub const DB_FILE: &str = "comis.db";

/// The one error type of this crate. Messages name the thing concerned, never a stored value.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error while doing `action`.
    #[error("database error while {action}: {source}")]
    Sqlite {
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is a SQLite database of something else, or not a database at all.
    #[error("{} is not a comis database: {reason}", path.display())]
    NotComis { path: PathBuf, reason: String },
    /// The database was written by a newer comis (fail closed rather than misread it).
    #[error(
        "the database schema is version {found}, newer than this comis understands \
         ({supported}); upgrade comis"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    /// An argument is malformed or out of range.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// The memory write validator refused the content (audited as `memory:write_blocked`).
    #[error("memory write blocked by the content validator ({})", reasons.join(", "))]
    WriteBlocked { reasons: Vec<String> },
    /// A lower-trust actor tried to overwrite or delete a higher-trust memory (audited).
    #[error(
        "refused to {op} {target}: it has {existing} trust and the request only {attempted} trust"
    )]
    TrustViolation {
        op: &'static str,
        target: String,
        existing: Trust,
        attempted: Trust,
    },
    /// Nothing with this identifier exists.
    #[error("no {what} {id}")]
    NotFound { what: &'static str, id: String },
    /// An identifier prefix matched more than one record.
    #[error("{what} prefix {prefix} is ambiguous: it matches {count} records")]
    Ambiguous {
        what: &'static str,
        prefix: String,
        count: usize,
    },
    /// The guard could not build its validator (the store refuses to open: fail closed).
    #[error("{0}")]
    Guard(#[from] comis_guard::GuardError),
    /// The operating system's random source failed.
    #[error("random source unavailable: {0}")]
    Random(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Adds the action being performed to a SQLite error.
pub(crate) trait SqlContext<T> {
    fn ctx(self, action: &'static str) -> Result<T>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn ctx(self, action: &'static str) -> Result<T> {
        self.map_err(|source| StoreError::Sqlite { action, source })
    }
}

/// Options for [`Store::open_with`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where the audit chain's head is anchored outside the database; `None` disables the
    /// anchor (truncation of the newest events then goes undetected). [`Store::open`] uses
    /// `audit/chain-head` next to the database.
    pub audit_anchor: Option<PathBuf>,
}

/// The store: one connection, used by one writer at a time.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    anchor: Option<PathBuf>,
    validator: MemoryValidator,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, migrating it to the current schema,
    /// with the audit anchor at `audit/chain-head` beside it.
    ///
    /// # Errors
    /// [`StoreError::Io`], [`StoreError::NotComis`], [`StoreError::SchemaTooNew`],
    /// [`StoreError::Sqlite`] or [`StoreError::Guard`].
    pub fn open(path: &Path) -> Result<Store> {
        let anchor = path
            .parent()
            .map(|dir| dir.join("audit").join(audit::ANCHOR_FILE));
        Store::open_with(
            path,
            Options {
                audit_anchor: anchor,
            },
        )
    }

    /// Opens `$home/comis.db` (see [`Store::open`]).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_in(home: &Path) -> Result<Store> {
        Store::open(&home.join(DB_FILE))
    }

    /// [`Store::open`] with explicit options.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with(path: &Path, options: Options) -> Result<Store> {
        let validator = MemoryValidator::new()?;
        let conn = db::open_connection(path)?;
        migrate::migrate(&conn, migrate::LATEST)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            anchor: options.audit_anchor,
            validator,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The audit anchor file, when there is one.
    pub fn audit_anchor(&self) -> Option<&Path> {
        self.anchor.as_deref()
    }

    /// The schema version of the open database.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn schema_version(&self) -> Result<i64> {
        migrate::current_version(&self.lock())
    }

    /// Runs SQLite's own consistency check; `Ok(vec!["ok"])` when the file is sound.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("PRAGMA integrity_check")
            .ctx("checking integrity")?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .ctx("checking integrity")?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx("checking integrity")
    }

    /// The connection. A panic while it was held cannot have left a transaction open (a
    /// `Transaction` rolls back on drop), so a poisoned lock is safe to take over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Opens the database at `path` migrated only up to `version`, for migration tests.
///
/// # Errors
/// As [`Store::open`].
#[doc(hidden)]
pub fn open_raw_at_version(path: &Path, version: i64) -> Result<Connection> {
    let conn = db::open_connection(path)?;
    migrate::migrate(&conn, version)?;
    Ok(conn)
}
