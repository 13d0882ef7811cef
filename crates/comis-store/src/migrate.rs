//! Versioned schema migrations, in code.
//!
//! Guarantees: each migration runs in its own `BEGIN IMMEDIATE` transaction together with the
//! `user_version` bump, so a crash leaves the database at the previous version or the next,
//! never between; two processes opening a fresh file at once migrate it once (the version is
//! re-read under the write lock); a database with a version newer than [`LATEST`] is refused
//! (an older comis must not write a schema it does not understand); a non-empty SQLite file
//! that is not a comis database is refused rather than altered.
//!
//! Does not: migrate downwards. Migrations are append-only: an applied migration's SQL is
//! never edited, a change is a new migration.

use rusqlite::Connection;

use crate::db::APPLICATION_ID;
use crate::{Result, SqlContext, StoreError};

/// One schema step.
#[derive(Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    sql: &'static str,
}

/// Every migration, in order. `MIGRATIONS[i].version == i + 1`.
pub static MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "memories with trust and provenance, full-text index, audit log",
        sql: r#"
CREATE TABLE memories (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    agent        TEXT NOT NULL,
    key          TEXT,
    content      TEXT NOT NULL,
    trust        TEXT NOT NULL CHECK (trust IN ('system', 'learned', 'external')),
    tags         TEXT NOT NULL DEFAULT '',
    prov_agent   TEXT NOT NULL,
    prov_channel TEXT,
    prov_sender  TEXT,
    source_kind  TEXT NOT NULL CHECK (source_kind IN
                     ('system', 'operator', 'conversation', 'tool', 'web', 'api', 'unknown')),
    session      TEXT,
    trace_id     TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE UNIQUE INDEX memories_agent_key ON memories (agent, key) WHERE key IS NOT NULL;
CREATE INDEX memories_agent_trust ON memories (agent, trust, id);

CREATE VIRTUAL TABLE memories_fts USING fts5 (
    content, key, tags,
    content = 'memories', content_rowid = 'id',
    tokenize = 'porter unicode61'
);
INSERT INTO memories_fts (memories_fts, rank) VALUES ('rank', 'bm25(1.0, 2.0, 0.5)');
CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, content, key, tags)
    VALUES (new.id, new.content, new.key, new.tags);
END;
CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content, key, tags)
    VALUES ('delete', old.id, old.content, old.key, old.tags);
END;
CREATE TRIGGER memories_fts_update AFTER UPDATE OF content, key, tags ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content, key, tags)
    VALUES ('delete', old.id, old.content, old.key, old.tags);
    INSERT INTO memories_fts (rowid, content, key, tags)
    VALUES (new.id, new.content, new.key, new.tags);
END;

CREATE TABLE audit_events (
    seq       INTEGER PRIMARY KEY,
    id        TEXT NOT NULL UNIQUE,
    ts        INTEGER NOT NULL,
    type      TEXT NOT NULL,
    agent     TEXT,
    outcome   TEXT NOT NULL,
    metadata  TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX audit_events_ts ON audit_events (ts);
CREATE INDEX audit_events_type ON audit_events (type, seq);
CREATE INDEX audit_events_agent ON audit_events (agent, seq);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
"#,
    },
    Migration {
        version: 2,
        name: "transcripts, approvals, memory embeddings",
        sql: r#"
ALTER TABLE memories ADD COLUMN embedding BLOB;
CREATE INDEX memories_agent_embedded ON memories (agent) WHERE embedding IS NOT NULL;

CREATE TABLE transcript_messages (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    agent    TEXT NOT NULL,
    channel  TEXT NOT NULL,
    thread   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    role     TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    sender   TEXT,
    content  TEXT NOT NULL,
    ts       INTEGER NOT NULL,
    trace_id TEXT,
    UNIQUE (agent, channel, thread, seq)
);
CREATE INDEX transcript_messages_ts ON transcript_messages (agent, ts);
CREATE TRIGGER transcript_messages_no_update BEFORE UPDATE ON transcript_messages BEGIN
    SELECT RAISE(ABORT, 'transcripts are append-only');
END;
CREATE TRIGGER transcript_messages_no_delete BEFORE DELETE ON transcript_messages BEGIN
    SELECT RAISE(ABORT, 'transcripts are append-only');
END;

CREATE TABLE approvals (
    id          TEXT PRIMARY KEY,
    agent       TEXT NOT NULL,
    session     TEXT NOT NULL,
    tool        TEXT NOT NULL,
    action      TEXT NOT NULL,
    params      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied')),
    resolved_by TEXT,
    resolved_at INTEGER,
    reason      TEXT
);
CREATE INDEX approvals_pending ON approvals (status, created_at);
"#,
    },
];

/// The schema version this build writes.
pub const LATEST: i64 = 2;

/// The `user_version` of the database.
///
/// # Errors
/// [`StoreError::Sqlite`].
pub fn current_version(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx("reading the schema version")
}

/// Brings the database up to `target` (at most [`LATEST`]).
///
/// # Errors
/// [`StoreError::SchemaTooNew`], [`StoreError::NotComis`], [`StoreError::Sqlite`].
pub fn migrate(conn: &Connection, target: i64) -> Result<()> {
    let target = target.min(LATEST);
    // Cheap check without the write lock: most opens find the schema current.
    let found = current_version(conn)?;
    if found > LATEST {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: LATEST,
        });
    }
    if found >= target {
        return Ok(());
    }
    for m in MIGRATIONS.iter().filter(|m| m.version <= target) {
        // `Connection::transaction_with_behavior` needs `&mut`; the store holds the
        // connection behind `&`, so the transaction is spelled out.
        conn.execute_batch("BEGIN IMMEDIATE")
            .ctx("starting a migration")?;
        let step = apply(conn, m);
        match step {
            Ok(()) => conn.execute_batch("COMMIT").ctx("committing a migration")?,
            Err(e) => {
                // The transaction may already be gone (SQLite rolls back on some errors).
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Applies `m` inside the caller's transaction unless it is already applied.
fn apply(conn: &Connection, m: &Migration) -> Result<()> {
    let version = current_version(conn)?;
    if version > LATEST {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: LATEST,
        });
    }
    if version >= m.version {
        return Ok(());
    }
    if version == 0 {
        let objects: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'",
                [],
                |r| r.get(0),
            )
            .ctx("inspecting an unversioned database")?;
        if objects != 0 {
            return Err(StoreError::NotComis {
                path: conn.path().unwrap_or("?").into(),
                reason: format!("it has {objects} tables or indexes but no comis schema version"),
            });
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .ctx("marking the database as comis's")?;
    }
    if version != m.version - 1 {
        return Err(StoreError::NotComis {
            path: conn.path().unwrap_or("?").into(),
            reason: format!(
                "schema version {version} cannot be migrated by step {}",
                m.version
            ),
        });
    }
    conn.execute_batch(m.sql)
        .ctx("applying a schema migration")?;
    conn.pragma_update(None, "user_version", m.version)
        .ctx("recording the schema version")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i64::try_from(i).unwrap() + 1, "{}", m.name);
        }
        assert_eq!(MIGRATIONS.last().unwrap().version, LATEST);
    }
}
