//! The audit log: append-only, SHA-256 hash-chained security events in `audit_events`.
//!
//! ## What it defends
//! Silent rewriting of the record of what the agents did and what the guards decided. Each
//! event's hash covers its own fields and the previous event's hash, so changing, removing or
//! inserting one event breaks the chain at that point; the newest (sequence, hash) is also
//! written to an anchor file outside the database (`$COMIS_HOME/audit/chain-head`), so
//! removing the newest events is detected too. Triggers make the table append-only for
//! comis's own code (a bug cannot update or delete an event).
//!
//! ## What it guarantees
//! - [`Store::verify_audit`] reports every event whose hash does not match its fields
//!   (edited), every broken link (an event inserted, deleted or replaced before it), every gap
//!   in the sequence (deleted), and an anchor that points past the end (truncated) or at a
//!   different hash (rewritten).
//! - Appends are serialized by SQLite's write lock (`BEGIN IMMEDIATE`), so two processes
//!   appending at once still produce one chain.
//! - Free text in metadata is sanitized before hashing (see `scrub`), and metadata is bounded
//!   ([`MAX_METADATA_BYTES`]); an oversized one is replaced by a note, never dropped with its
//!   event.
//!
//! ## What it does not guarantee
//! The chain has no secret key: someone who can write both the database and the anchor file
//! can recompute a consistent forged chain. Detecting that needs a copy of the head kept
//! elsewhere (`comis audit verify` prints it). The anchor is written after the commit, so
//! after a crash it may lag behind the database; a lagging anchor is not a problem, one ahead
//! of the database is.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::str::FromStr;

use rusqlite::{OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::types::{AgentId, hex, random_id};
use crate::{Result, SqlContext, Store, StoreError, scrub, time};

/// The anchor file's name inside the audit directory.
pub const ANCHOR_FILE: &str = "chain-head";
/// `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Largest metadata JSON stored with an event, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Most problems [`Store::verify_audit`] lists (it still counts them all).
pub const MAX_REPORTED_PROBLEMS: usize = 100;
/// Domain separation for the hash, and its version.
const HASH_DOMAIN: &[u8] = b"comis-audit-v1\0";

/// An event type such as `memory:write_blocked`: lowercase `area:name`, at most 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventType(String);

impl EventType {
    /// Validates `s`: `[a-z][a-z0-9_]*` segments joined by `:` (at least two), dots allowed
    /// after the first segment.
    ///
    /// # Errors
    /// [`StoreError::Invalid`].
    pub fn new(s: &str) -> Result<EventType> {
        let ok = s.len() <= 64
            && s.split(':').count() >= 2
            && s.split(':').enumerate().all(|(i, seg)| {
                seg.starts_with(|c: char| c.is_ascii_lowercase())
                    && seg.chars().all(|c| {
                        c.is_ascii_lowercase()
                            || c.is_ascii_digit()
                            || c == '_'
                            || (i > 0 && c == '.')
                    })
            });
        if ok {
            Ok(EventType(s.to_owned()))
        } else {
            Err(StoreError::Invalid {
                what: "audit event type",
                reason: format!("{s:?} is not of the form area:name (lowercase, at most 64 bytes)"),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A type the store itself emits (known valid).
    fn fixed(s: &'static str) -> EventType {
        EventType(s.to_owned())
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The event types this crate emits.
pub mod kinds {
    pub const MEMORY_WRITE_BLOCKED: &str = "memory:write_blocked";
    pub const MEMORY_WRITE_DOWNGRADED: &str = "memory:write_downgraded";
    pub const MEMORY_OVERWRITE_REJECTED: &str = "memory:overwrite_rejected";
    pub const MEMORY_DELETE_REJECTED: &str = "memory:delete_rejected";
    pub const MEMORY_DELETED: &str = "memory:deleted";
    pub const APPROVAL_REQUESTED: &str = "approval:requested";
    pub const APPROVAL_RESOLVED: &str = "approval:resolved";
}

/// What came of the action an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Done as asked.
    Success,
    /// Done, at reduced trust.
    Downgraded,
    /// Refused by a security rule.
    Denied,
    /// Failed for another reason.
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Downgraded => "downgraded",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }
}

impl FromStr for Outcome {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Outcome> {
        [
            Outcome::Success,
            Outcome::Downgraded,
            Outcome::Denied,
            Outcome::Failure,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| StoreError::Invalid {
            what: "audit outcome",
            reason: format!("{s:?} is not one of success, downgraded, denied, failure"),
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub kind: EventType,
    pub agent: Option<AgentId>,
    pub outcome: Outcome,
    pub metadata: Map<String, Value>,
}

impl NewAuditEvent {
    pub fn new(kind: EventType, outcome: Outcome) -> NewAuditEvent {
        NewAuditEvent {
            kind,
            agent: None,
            outcome,
            metadata: Map::new(),
        }
    }

    pub(crate) fn fixed(kind: &'static str, outcome: Outcome) -> NewAuditEvent {
        NewAuditEvent::new(EventType::fixed(kind), outcome)
    }

    #[must_use]
    pub fn agent(mut self, agent: &AgentId) -> NewAuditEvent {
        self.agent = Some(agent.clone());
        self
    }

    #[must_use]
    pub fn meta(mut self, key: &str, value: impl Into<Value>) -> NewAuditEvent {
        self.metadata.insert(key.to_owned(), value.into());
        self
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// Random 128-bit identifier (hex).
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
    pub kind: String,
    pub agent: Option<String>,
    pub outcome: String,
    /// The metadata JSON exactly as stored and hashed.
    pub metadata: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEvent {
    /// The hash this event's fields and `prev_hash` produce.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(HASH_DOMAIN);
        h.update(self.seq.to_be_bytes());
        field(&mut h, self.id.as_bytes());
        h.update(self.ts.to_be_bytes());
        field(&mut h, self.kind.as_bytes());
        match &self.agent {
            Some(a) => {
                h.update([1]);
                field(&mut h, a.as_bytes());
            }
            None => h.update([0]),
        }
        field(&mut h, self.outcome.as_bytes());
        field(&mut h, self.metadata.as_bytes());
        field(&mut h, self.prev_hash.as_bytes());
        hex(&h.finalize())
    }

    /// The event as one JSON object (`ts` in RFC 3339, metadata parsed).
    pub fn to_json(&self) -> Value {
        json!({
            "seq": self.seq,
            "id": self.id,
            "ts": time::format_ms(self.ts),
            "type": self.kind,
            "agent": self.agent,
            "outcome": self.outcome,
            "metadata": serde_json::from_str::<Value>(&self.metadata).unwrap_or(Value::Null),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        })
    }

    fn from_row(r: &Row<'_>) -> rusqlite::Result<AuditEvent> {
        Ok(AuditEvent {
            seq: r.get(0)?,
            id: r.get(1)?,
            ts: r.get(2)?,
            kind: r.get(3)?,
            agent: r.get(4)?,
            outcome: r.get(5)?,
            metadata: r.get(6)?,
            prev_hash: r.get(7)?,
            hash: r.get(8)?,
        })
    }
}

/// Length-prefixed, so that no two different field lists hash the same bytes.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
    h.update(bytes);
}

const COLUMNS: &str = "seq, id, ts, type, agent, outcome, metadata, prev_hash, hash";

/// What [`Store::audit_search`] selects. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// An exact type (`memory:write_blocked`), a prefix ending in `*` (`memory:*`), or an area
    /// without a colon (`memory`, meaning `memory:*`).
    pub kind: Option<String>,
    pub agent: Option<AgentId>,
    pub outcome: Option<Outcome>,
    /// Only events at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Only events with a larger sequence number.
    pub after_seq: Option<i64>,
    /// At most this many (the newest ones); 0 means 100.
    pub limit: usize,
}

/// One thing [`Store::verify_audit`] found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum VerifyProblem {
    /// The event's fields do not produce its hash: it was edited.
    Edited { seq: i64 },
    /// The event's `prev_hash` is not the previous event's hash: an event before it was
    /// inserted, deleted or replaced.
    BrokenLink { seq: i64 },
    /// Sequence numbers jump: events were deleted (or renumbered).
    Gap { expected: i64, found: i64 },
    /// The anchor names an event past the end of the log: the newest events were deleted.
    Truncated { anchor_seq: i64, last_seq: i64 },
    /// The event at the anchor's position has another hash: the chain was rewritten.
    AnchorMismatch { seq: i64 },
    /// There are events but no anchor file.
    AnchorMissing,
    /// The anchor file cannot be read or parsed.
    AnchorUnreadable { reason: String },
}

impl fmt::Display for VerifyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyProblem::Edited { seq } => {
                write!(
                    f,
                    "event {seq} was edited: its hash does not match its fields"
                )
            }
            VerifyProblem::BrokenLink { seq } => write!(
                f,
                "event {seq} does not follow the previous event: an event before it was \
                 inserted, deleted or replaced"
            ),
            VerifyProblem::Gap { expected, found } => write!(
                f,
                "events {expected} to {} are missing (deleted)",
                found.saturating_sub(1)
            ),
            VerifyProblem::Truncated {
                anchor_seq,
                last_seq,
            } => write!(
                f,
                "the log ends at event {last_seq} but event {anchor_seq} was recorded: the \
                 newest events were deleted"
            ),
            VerifyProblem::AnchorMismatch { seq } => write!(
                f,
                "event {seq} differs from the one recorded in the anchor: the chain was rewritten"
            ),
            VerifyProblem::AnchorMissing => f.write_str(
                "the anchor file is missing although the log has events (deleted, or the \
                 database was copied without its audit directory)",
            ),
            VerifyProblem::AnchorUnreadable { reason } => {
                write!(f, "the anchor file cannot be read: {reason}")
            }
        }
    }
}

/// The result of [`Store::verify_audit`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Events checked.
    pub events: u64,
    /// The newest event's sequence number and hash: keep a copy elsewhere to detect a
    /// recomputed chain later.
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
    /// The anchor as read, if any.
    pub anchor_seq: Option<i64>,
    /// Every problem found (at most [`MAX_REPORTED_PROBLEMS`] listed).
    pub problems: Vec<VerifyProblem>,
    /// How many problems there were in all.
    pub problem_count: u64,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problem_count == 0
    }
}

/// Appends `ev` inside `tx`. The caller commits, then calls [`Store::anchor`].
pub(crate) fn append(tx: &Transaction<'_>, ev: NewAuditEvent) -> Result<AuditEvent> {
    let metadata = scrub::value(Value::Object(ev.metadata));
    let mut metadata = metadata.to_string();
    if metadata.len() > MAX_METADATA_BYTES {
        metadata = json!({"metadata_omitted": "too large", "bytes": metadata.len()}).to_string();
    }
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .ctx("reading the audit chain head")?;
    let (seq, prev_hash) = match last {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let mut event = AuditEvent {
        seq,
        id: random_id()?,
        ts: time::now_ms(),
        kind: ev.kind.0,
        agent: ev.agent.map(|a| a.as_str().to_owned()),
        outcome: ev.outcome.as_str().to_owned(),
        metadata,
        prev_hash,
        hash: String::new(),
    };
    event.hash = event.compute_hash();
    tx.prepare_cached(
        "INSERT INTO audit_events (seq, id, ts, type, agent, outcome, metadata, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            event.seq,
            event.id,
            event.ts,
            event.kind,
            event.agent,
            event.outcome,
            event.metadata,
            event.prev_hash,
            event.hash
        ])
    })
    .ctx("appending an audit event")?;
    Ok(event)
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Store {
    /// Appends one event to the audit log.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] or [`StoreError::Random`].
    pub fn audit(&self, ev: NewAuditEvent) -> Result<AuditEvent> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting an audit append")?;
        let event = append(&tx, ev)?;
        tx.commit().ctx("committing an audit event")?;
        drop(conn);
        self.anchor(Some(&event));
        Ok(event)
    }

    /// Records the chain head in the anchor file (after the commit). A failure here is not
    /// an error for the caller, whose event is already durable: the anchor only lags, which
    /// verification accepts.
    pub(crate) fn anchor(&self, head: Option<&AuditEvent>) {
        if let (Some(path), Some(ev)) = (&self.anchor, head) {
            let _ = write_anchor(path, ev.seq, &ev.hash);
        }
    }

    /// The `n` newest events, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn audit_tail(&self, n: usize) -> Result<Vec<AuditEvent>> {
        self.audit_search(&AuditFilter {
            limit: n.max(1),
            ..AuditFilter::default()
        })
    }

    /// Events matching `filter`: the newest `filter.limit`, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] or [`StoreError::Invalid`] for a malformed type filter.
    pub fn audit_search(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let mut clauses: Vec<&str> = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(kind) = &filter.kind {
            if kind.is_empty() || kind.len() > 64 || kind.chars().any(char::is_control) {
                return Err(StoreError::Invalid {
                    what: "audit type filter",
                    reason: "use a type such as memory:write_blocked, or memory:*".into(),
                });
            }
            if let Some(prefix) = kind.strip_suffix('*') {
                clauses.push("type LIKE ? ESCAPE '\\'");
                args.push(format!("{}%", like_escape(prefix)).into());
            } else if !kind.contains(':') {
                clauses.push("type LIKE ? ESCAPE '\\'");
                args.push(format!("{}:%", like_escape(kind)).into());
            } else {
                clauses.push("type = ?");
                args.push(kind.clone().into());
            }
        }
        if let Some(agent) = &filter.agent {
            clauses.push("agent = ?");
            args.push(agent.as_str().to_owned().into());
        }
        if let Some(outcome) = filter.outcome {
            clauses.push("outcome = ?");
            args.push(outcome.as_str().to_owned().into());
        }
        if let Some(since) = filter.since_ms {
            clauses.push("ts >= ?");
            args.push(since.into());
        }
        if let Some(after) = filter.after_seq {
            clauses.push("seq > ?");
            args.push(after.into());
        }
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
        let where_ = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!("SELECT {COLUMNS} FROM audit_events {where_} ORDER BY seq DESC LIMIT ?");
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&sql).ctx("searching the audit log")?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), AuditEvent::from_row)
            .ctx("searching the audit log")?;
        let mut out = rows
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx("reading audit events")?;
        out.reverse();
        Ok(out)
    }

    /// Events after `seq`, oldest first, at most `limit` (for `tail -f`).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn audit_after(&self, seq: i64, limit: usize) -> Result<Vec<AuditEvent>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM audit_events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))
            .ctx("reading the audit log")?;
        let rows = stmt
            .query_map(
                params![seq, i64::try_from(limit).unwrap_or(i64::MAX)],
                AuditEvent::from_row,
            )
            .ctx("reading the audit log")?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx("reading audit events")
    }

    /// Walks the whole chain and the anchor; see the module docs for what is detected.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the log cannot be read at all.
    pub fn verify_audit(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport {
            events: 0,
            head_seq: None,
            head_hash: None,
            anchor_seq: None,
            problems: Vec::new(),
            problem_count: 0,
        };
        let problem = |report: &mut VerifyReport, p: VerifyProblem| {
            report.problem_count += 1;
            if report.problems.len() < MAX_REPORTED_PROBLEMS {
                report.problems.push(p);
            }
        };
        let anchor = match &self.anchor {
            Some(path) => read_anchor(path),
            None => Ok(None),
        };
        let mut anchor_hash_seen: Option<bool> = None;

        let mut conn = self.lock();
        // One read transaction: a consistent snapshot even while another process appends.
        let tx = conn.transaction().ctx("starting audit verification")?;
        {
            let mut stmt = tx
                .prepare(&format!("SELECT {COLUMNS} FROM audit_events ORDER BY seq"))
                .ctx("reading the audit log")?;
            let mut rows = stmt.query([]).ctx("reading the audit log")?;
            let mut expected_seq = 1;
            let mut prev_hash = GENESIS_HASH.to_owned();
            while let Some(row) = rows.next().ctx("reading the audit log")? {
                let ev = AuditEvent::from_row(row).ctx("decoding an audit event")?;
                report.events += 1;
                if ev.seq != expected_seq {
                    problem(
                        &mut report,
                        VerifyProblem::Gap {
                            expected: expected_seq,
                            found: ev.seq,
                        },
                    );
                }
                if ev.compute_hash() != ev.hash {
                    problem(&mut report, VerifyProblem::Edited { seq: ev.seq });
                }
                if ev.prev_hash != prev_hash {
                    problem(&mut report, VerifyProblem::BrokenLink { seq: ev.seq });
                }
                if let Ok(Some((aseq, ahash))) = &anchor {
                    if ev.seq == *aseq {
                        anchor_hash_seen = Some(ev.hash == *ahash);
                    }
                }
                expected_seq = ev.seq.saturating_add(1);
                prev_hash = ev.hash.clone();
                report.head_seq = Some(ev.seq);
                report.head_hash = Some(ev.hash);
            }
        }
        tx.finish().ctx("ending audit verification")?;
        drop(conn);

        match anchor {
            Err(reason) => problem(&mut report, VerifyProblem::AnchorUnreadable { reason }),
            Ok(None) if self.anchor.is_some() && report.events > 0 => {
                problem(&mut report, VerifyProblem::AnchorMissing);
            }
            Ok(None) => {}
            Ok(Some((aseq, _))) => {
                report.anchor_seq = Some(aseq);
                let last = report.head_seq.unwrap_or(0);
                if aseq > last {
                    problem(
                        &mut report,
                        VerifyProblem::Truncated {
                            anchor_seq: aseq,
                            last_seq: last,
                        },
                    );
                } else if anchor_hash_seen == Some(false) || anchor_hash_seen.is_none() {
                    problem(&mut report, VerifyProblem::AnchorMismatch { seq: aseq });
                }
            }
        }
        Ok(report)
    }
}

/// Writes `v1 <seq> <hash>` atomically (temporary file, then rename), creating the directory
/// 0700. Never moves the anchor backwards: a slower concurrent writer must not hide events.
fn write_anchor(path: &Path, seq: i64, hash: &str) -> std::io::Result<()> {
    if let Ok(Some((current, _))) = read_anchor(path) {
        if current >= seq {
            return Ok(());
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let tmp = dir.join(format!(
        ".{ANCHOR_FILE}.{}.{}",
        std::process::id(),
        random_id().unwrap_or_default()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(format!("v1 {seq} {hash}\n").as_bytes())?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads the anchor: `Ok(None)` when absent, `Err(reason)` when unreadable or malformed.
fn read_anchor(path: &Path) -> std::result::Result<Option<(i64, String)>, String> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some(seq), Some(hash), None)
            if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            seq.parse::<i64>()
                .map(|s| Some((s, hash.to_owned())))
                .map_err(|_| format!("{}: malformed sequence number", path.display()))
        }
        _ => Err(format!("{}: not a comis audit anchor", path.display())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn event_types() {
        for ok in [
            "memory:write_blocked",
            "approval:resolved",
            "a:b:c",
            "tool:exec.run",
        ] {
            assert!(EventType::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "memory",
            "Memory:x",
            "memory:",
            ":x",
            "a b:c",
            "a.b:c",
            &format!("a:{}", "x".repeat(70)),
        ] {
            assert!(EventType::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hash_covers_every_field() {
        let base = AuditEvent {
            seq: 1,
            id: "i".into(),
            ts: 5,
            kind: "a:b".into(),
            agent: None,
            outcome: "success".into(),
            metadata: "{}".into(),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        };
        let h = base.compute_hash();
        let variants = [
            AuditEvent {
                seq: 2,
                ..base.clone()
            },
            AuditEvent {
                id: "j".into(),
                ..base.clone()
            },
            AuditEvent {
                ts: 6,
                ..base.clone()
            },
            AuditEvent {
                kind: "a:c".into(),
                ..base.clone()
            },
            AuditEvent {
                agent: Some(String::new()),
                ..base.clone()
            },
            AuditEvent {
                outcome: "denied".into(),
                ..base.clone()
            },
            AuditEvent {
                metadata: "{ }".into(),
                ..base.clone()
            },
            AuditEvent {
                prev_hash: "1".repeat(64),
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.compute_hash(), h, "{v:?}");
        }
    }

    #[test]
    fn anchor_round_trip_and_malformed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit").join(ANCHOR_FILE);
        assert_eq!(read_anchor(&p), Ok(None));
        write_anchor(&p, 3, &"a".repeat(64)).unwrap();
        assert_eq!(read_anchor(&p), Ok(Some((3, "a".repeat(64)))));
        // Never backwards.
        write_anchor(&p, 2, &"b".repeat(64)).unwrap();
        assert_eq!(read_anchor(&p).unwrap().unwrap().0, 3);
        for junk in [
            "",
            "v1 x aa",
            "v2 1 aa",
            &format!("v1 1 {} extra", "a".repeat(64)),
        ] {
            fs::write(&p, junk).unwrap();
            assert!(read_anchor(&p).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(like_escape("a%b_c\\"), "a\\%b\\_c\\\\");
    }
}
