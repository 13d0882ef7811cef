//! Long-term memories with trust partitions, provenance, full-text and vector recall.
//!
//! ## What it defends
//! Memory poisoning: an injected instruction that the agent is persuaded to remember, and that
//! then re-enters later conversations through recall.
//!
//! ## What it guarantees
//! - **Every write is validated first** by the guard's memory write validator: `Block` refuses
//!   it (audited `memory:write_blocked`), `Downgrade` stores it at `external` trust with the
//!   tag `security-tainted` (audited `memory:write_downgraded`), `Store` keeps the requested
//!   trust. The validator sees the content; keys and tags are restricted to identifier
//!   characters, so they cannot carry text.
//! - **The source caps the trust**: content from a tool, an API or the web is `external`
//!   whatever the caller asks; conversation is at most `learned` ([`SourceKind::trust_ceiling`]).
//! - **Lower trust never replaces higher trust**: a write with a key held by a more trusted
//!   memory, or a delete by a less trusted actor, is refused with
//!   [`StoreError::TrustViolation`] and audited (`memory:overwrite_rejected`,
//!   `memory:delete_rejected`). The check and the write share one `BEGIN IMMEDIATE`
//!   transaction, so no concurrent writer can slip between them; the audit event commits even
//!   when the write is refused.
//! - **Recall leaves `external` out** unless [`SearchQuery::include_external`] is set, and
//!   every returned [`Memory`] carries its trust.
//! - **Search text is data** (see [`crate::fts`]): no query can fail on FTS5 syntax.
//!
//! ## What it does not guarantee
//! That a stored fact is true, or that a `learned` memory is benign: the validator is a
//! heuristic. The caller still wraps recalled non-system memories as external content.

use std::collections::HashMap;

use rusqlite::types::Type;
use rusqlite::{OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use comis_guard::memscan::{TAINT_TAG, Verdict};

use crate::audit::{self, AuditEvent, NewAuditEvent, Outcome, kinds};
use crate::types::{AgentId, MemoryKey, SourceKind, Tag, Trust, check_label, hex};
use crate::{Result, SqlContext, Store, StoreError, fts, time, vector};

/// Largest memory content, in bytes.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;
/// Most tags on one memory.
pub const MAX_TAGS: usize = 32;
/// Most results one search returns.
pub const MAX_RESULTS: usize = 1000;

/// A memory's row id. Ids are never reused (AUTOINCREMENT), so an id in an old audit event
/// never names a newer memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct MemoryId(pub i64);

impl std::fmt::Display for MemoryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who stored a memory, from where.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// The agent that wrote it (a sub-agent may write into its parent's memory).
    pub agent: AgentId,
    pub channel: Option<String>,
    pub sender: Option<String>,
    pub source: SourceKind,
    pub session: Option<String>,
    pub trace_id: Option<String>,
}

/// A memory to write.
#[derive(Debug, Clone)]
pub struct NewMemory {
    /// The agent whose memory this is.
    pub agent: AgentId,
    pub content: String,
    /// A named fact: at most one memory per agent has a given key.
    pub key: Option<MemoryKey>,
    /// The trust asked for; the source and the validator may lower it.
    pub trust: Trust,
    pub tags: Vec<Tag>,
    pub provenance: Provenance,
    /// The content's embedding, when an embedding provider is configured.
    pub embedding: Option<Vec<f32>>,
}

impl NewMemory {
    /// A memory written by `agent` itself from `source`, with no key, tags or embedding.
    pub fn new(
        agent: AgentId,
        content: impl Into<String>,
        trust: Trust,
        source: SourceKind,
    ) -> NewMemory {
        NewMemory {
            provenance: Provenance {
                agent: agent.clone(),
                channel: None,
                sender: None,
                source,
                session: None,
                trace_id: None,
            },
            agent,
            content: content.into(),
            key: None,
            trust,
            tags: Vec::new(),
            embedding: None,
        }
    }

    #[must_use]
    pub fn key(mut self, key: MemoryKey) -> NewMemory {
        self.key = Some(key);
        self
    }

    #[must_use]
    pub fn tag(mut self, tag: Tag) -> NewMemory {
        self.tags.push(tag);
        self
    }

    #[must_use]
    pub fn embedding(mut self, v: Vec<f32>) -> NewMemory {
        self.embedding = Some(v);
        self
    }
}

/// A stored memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    pub id: MemoryId,
    pub agent: String,
    pub key: Option<String>,
    pub content: String,
    pub trust: Trust,
    pub tags: Vec<String>,
    pub provenance_agent: String,
    pub channel: Option<String>,
    pub sender: Option<String>,
    pub source: SourceKind,
    pub session: Option<String>,
    pub trace_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub has_embedding: bool,
}

impl Memory {
    /// One JSON object, trust first-class, times in RFC 3339.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.0,
            "agent": self.agent,
            "trust": self.trust,
            "key": self.key,
            "content": self.content,
            "tags": self.tags,
            "provenance": {
                "agent": self.provenance_agent,
                "channel": self.channel,
                "sender": self.sender,
                "source": self.source,
                "session": self.session,
                "trace_id": self.trace_id,
            },
            "created_at": time::format_ms(self.created_at),
            "updated_at": time::format_ms(self.updated_at),
            "embedded": self.has_embedding,
        })
    }

    fn from_row(r: &Row<'_>) -> rusqlite::Result<Memory> {
        let conv = |i: usize, e: StoreError| {
            rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e))
        };
        let trust: String = r.get(4)?;
        let tags: String = r.get(5)?;
        let source: String = r.get(9)?;
        Ok(Memory {
            id: MemoryId(r.get(0)?),
            agent: r.get(1)?,
            key: r.get(2)?,
            content: r.get(3)?,
            trust: Trust::from_db(&trust).map_err(|e| conv(4, e))?,
            tags: tags.split_whitespace().map(str::to_owned).collect(),
            provenance_agent: r.get(6)?,
            channel: r.get(7)?,
            sender: r.get(8)?,
            source: source.parse().map_err(|e| conv(9, e))?,
            session: r.get(10)?,
            trace_id: r.get(11)?,
            created_at: r.get(12)?,
            updated_at: r.get(13)?,
            has_embedding: r.get(14)?,
        })
    }
}

const COLUMNS: &str = "m.id, m.agent, m.key, m.content, m.trust, m.tags, m.prov_agent, \
     m.prov_channel, m.prov_sender, m.source_kind, m.session, m.trace_id, m.created_at, \
     m.updated_at, m.embedding IS NOT NULL";

/// How a write was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteVerdict {
    /// Stored at the requested trust (or the source's ceiling).
    Stored,
    /// The validator found instruction-like content: stored at `external`, tagged.
    Downgraded,
}

/// The result of a successful write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    pub id: MemoryId,
    /// The trust it was stored at.
    pub trust: Trust,
    pub verdict: WriteVerdict,
    /// The validator's reasons (empty when clean).
    pub reasons: Vec<String>,
    /// When the key existed: the trust of the memory this write replaced.
    pub replaced: Option<Trust>,
}

/// Which memory [`Store::remove_memory`] removes.
#[derive(Debug, Clone)]
pub enum Selector {
    Id(MemoryId),
    Key(MemoryKey),
}

/// A recall request.
#[derive(Debug, Clone)]
pub struct SearchQuery<'a> {
    pub agent: &'a AgentId,
    /// Plain words; any FTS5 syntax in it is treated as words.
    pub text: &'a str,
    /// The query's embedding, to fuse cosine similarity with BM25.
    pub embedding: Option<&'a [f32]>,
    /// At most this many results (clamped to 1..=[`MAX_RESULTS`]).
    pub limit: usize,
    /// Also return `external` memories (off by default: they are where poisoning lands).
    pub include_external: bool,
}

/// One recalled memory with its score (higher is better).
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub memory: Memory,
    pub score: f64,
    /// 1-based position in the full-text ranking, if it matched there.
    pub fts_rank: Option<usize>,
    /// 1-based position in the vector ranking, if it was compared.
    pub vector_rank: Option<usize>,
}

impl SearchHit {
    pub fn to_json(&self) -> Value {
        let mut v = self.memory.to_json();
        if let Value::Object(m) = &mut v {
            m.insert("score".into(), json!(self.score));
        }
        v
    }
}

/// What [`Store::list_memories`] selects.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub agent: Option<AgentId>,
    /// Exactly this trust (overrides `include_external`).
    pub trust: Option<Trust>,
    pub include_external: bool,
    /// Only ids below this (for paging backwards); `None` starts at the newest.
    pub before: Option<MemoryId>,
    /// 0 means 100.
    pub limit: usize,
}

/// Counts per agent and trust.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    pub groups: Vec<StatsGroup>,
    pub total: u64,
    pub database_bytes: u64,
}

/// One agent/trust pair.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatsGroup {
    pub agent: String,
    pub trust: Trust,
    pub memories: u64,
    pub embedded: u64,
}

/// A write checked and normalized, ready for SQL.
struct Prepared {
    tags: String,
    embedding: Option<Vec<u8>>,
}

fn prepare(m: &NewMemory) -> Result<Prepared> {
    if m.content.trim().is_empty() {
        return Err(StoreError::Invalid {
            what: "memory content",
            reason: "it is empty".into(),
        });
    }
    if m.content.len() > MAX_CONTENT_BYTES {
        return Err(StoreError::Invalid {
            what: "memory content",
            reason: format!(
                "it is {} bytes long; the limit is {MAX_CONTENT_BYTES}",
                m.content.len()
            ),
        });
    }
    if m.content.contains('\0') {
        return Err(StoreError::Invalid {
            what: "memory content",
            reason: "it contains a NUL character".into(),
        });
    }
    if m.tags.len() > MAX_TAGS {
        return Err(StoreError::Invalid {
            what: "tags",
            reason: format!("{} tags; the limit is {MAX_TAGS}", m.tags.len()),
        });
    }
    let p = &m.provenance;
    for (what, v) in [
        ("channel", &p.channel),
        ("sender", &p.sender),
        ("session", &p.session),
        ("trace id", &p.trace_id),
    ] {
        if let Some(v) = v {
            check_label(what, v)?;
        }
    }
    let embedding = match &m.embedding {
        Some(v) => Some(vector::encode(&vector::normalize(v)?)),
        None => None,
    };
    let mut tags: Vec<&str> = m.tags.iter().map(Tag::as_str).collect();
    tags.sort_unstable();
    tags.dedup();
    Ok(Prepared {
        tags: tags.join(" "),
        embedding,
    })
}

/// Audit metadata describing a write without its content (content may hold the very
/// injection or secret the event is about; a hash and a length identify it).
fn write_meta(ev: NewAuditEvent, m: &NewMemory) -> NewAuditEvent {
    let p = &m.provenance;
    ev.agent(&m.agent)
        .meta("requested_trust", m.trust.as_str())
        .meta("memory_key", m.key.as_ref().map(|k| k.as_str().to_owned()))
        .meta("source", p.source.as_str())
        .meta("writer", p.agent.as_str())
        .meta("channel", p.channel.clone())
        .meta("sender", p.sender.clone())
        .meta("session", p.session.clone())
        .meta("trace_id", p.trace_id.clone())
        .meta("content_sha256", hex(&Sha256::digest(m.content.as_bytes())))
        .meta("content_bytes", m.content.len())
}

/// `Ok(Err(_))` is a refused item (its audit event is in `tx`); `Err(_)` aborts the batch.
type ItemResult = Result<Result<WriteOutcome>>;

impl Store {
    /// Writes one memory (see the module docs for the rules).
    ///
    /// # Errors
    /// [`StoreError::WriteBlocked`], [`StoreError::TrustViolation`], [`StoreError::Invalid`],
    /// [`StoreError::Sqlite`].
    pub fn write_memory(&self, m: &NewMemory) -> Result<WriteOutcome> {
        let mut results = self.write_memories(std::slice::from_ref(m))?;
        results.pop().unwrap_or_else(|| {
            Err(StoreError::Invalid {
                what: "batch",
                reason: "no result".into(),
            })
        })
    }

    /// Writes many memories in one transaction. Each item is validated and checked on its own:
    /// a blocked or refused item does not stop the others. A database error aborts the whole
    /// batch (nothing from it is stored).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] for the batch; per-item errors are in the vector.
    pub fn write_memories(&self, items: &[NewMemory]) -> Result<Vec<Result<WriteOutcome>>> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a memory write")?;
        let now = time::now_ms();
        let mut head: Option<AuditEvent> = None;
        let mut out = Vec::with_capacity(items.len());
        for m in items {
            out.push(self.write_one(&tx, m, now, &mut head)?);
        }
        tx.commit().ctx("committing memory writes")?;
        drop(conn);
        self.anchor(head.as_ref());
        Ok(out)
    }

    fn write_one(
        &self,
        tx: &Transaction<'_>,
        m: &NewMemory,
        now: i64,
        head: &mut Option<AuditEvent>,
    ) -> ItemResult {
        let prepared = match prepare(m) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let verdict = self.validator.validate(&m.content);
        let mut record = |ev: NewAuditEvent| -> Result<()> {
            *head = Some(audit::append(tx, ev)?);
            Ok(())
        };
        if verdict.verdict == Verdict::Block {
            record(
                write_meta(
                    NewAuditEvent::fixed(kinds::MEMORY_WRITE_BLOCKED, Outcome::Denied),
                    m,
                )
                .meta("reasons", verdict.reasons.clone()),
            )?;
            return Ok(Err(StoreError::WriteBlocked {
                reasons: verdict.reasons,
            }));
        }
        let mut trust = m.trust.min(m.provenance.source.trust_ceiling());
        let mut tags = prepared.tags;
        let downgraded = verdict.verdict == Verdict::Downgrade;
        if downgraded {
            trust = Trust::External;
            if !tags.split(' ').any(|t| t == TAINT_TAG) {
                if !tags.is_empty() {
                    tags.push(' ');
                }
                tags.push_str(TAINT_TAG);
            }
            record(
                write_meta(
                    NewAuditEvent::fixed(kinds::MEMORY_WRITE_DOWNGRADED, Outcome::Downgraded),
                    m,
                )
                .meta("stored_trust", trust.as_str())
                .meta("reasons", verdict.reasons.clone()),
            )?;
        }

        let existing: Option<(i64, String)> = match &m.key {
            None => None,
            Some(k) => tx
                .prepare_cached("SELECT id, trust FROM memories WHERE agent = ?1 AND key = ?2")
                .and_then(|mut s| {
                    s.query_row(params![m.agent.as_str(), k.as_str()], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                })
                .ctx("looking up a memory key")?,
        };
        let p = &m.provenance;
        let verdict_out = if downgraded {
            WriteVerdict::Downgraded
        } else {
            WriteVerdict::Stored
        };
        if let Some((id, existing_trust)) = existing {
            let existing_trust = Trust::from_db(&existing_trust)?;
            if existing_trust > trust {
                record(
                    write_meta(
                        NewAuditEvent::fixed(kinds::MEMORY_OVERWRITE_REJECTED, Outcome::Denied),
                        m,
                    )
                    .meta("memory_id", id)
                    .meta("existing_trust", existing_trust.as_str())
                    .meta("attempted_trust", trust.as_str()),
                )?;
                return Ok(Err(StoreError::TrustViolation {
                    op: "overwrite",
                    target: format!(
                        "memory key {} of agent {}",
                        m.key.as_ref().map_or("", MemoryKey::as_str),
                        m.agent
                    ),
                    existing: existing_trust,
                    attempted: trust,
                }));
            }
            tx.prepare_cached(
                "UPDATE memories SET content = ?2, trust = ?3, tags = ?4, prov_agent = ?5,
                     prov_channel = ?6, prov_sender = ?7, source_kind = ?8, session = ?9,
                     trace_id = ?10, updated_at = ?11, embedding = ?12
                 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    m.content,
                    trust.as_str(),
                    tags,
                    p.agent.as_str(),
                    p.channel,
                    p.sender,
                    p.source.as_str(),
                    p.session,
                    p.trace_id,
                    now,
                    prepared.embedding,
                ])
            })
            .ctx("overwriting a memory")?;
            return Ok(Ok(WriteOutcome {
                id: MemoryId(id),
                trust,
                verdict: verdict_out,
                reasons: verdict.reasons,
                replaced: Some(existing_trust),
            }));
        }
        tx.prepare_cached(
            "INSERT INTO memories (agent, key, content, trust, tags, prov_agent, prov_channel,
                 prov_sender, source_kind, session, trace_id, created_at, updated_at, embedding)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13)",
        )
        .and_then(|mut s| {
            s.execute(params![
                m.agent.as_str(),
                m.key.as_ref().map(MemoryKey::as_str),
                m.content,
                trust.as_str(),
                tags,
                p.agent.as_str(),
                p.channel,
                p.sender,
                p.source.as_str(),
                p.session,
                p.trace_id,
                now,
                prepared.embedding,
            ])
        })
        .ctx("inserting a memory")?;
        Ok(Ok(WriteOutcome {
            id: MemoryId(tx.last_insert_rowid()),
            trust,
            verdict: verdict_out,
            reasons: verdict.reasons,
            replaced: None,
        }))
    }

    /// The memory with this id.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn get_memory(&self, id: MemoryId) -> Result<Option<Memory>> {
        let conn = self.lock();
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM memories m WHERE m.id = ?1"))
            .and_then(|mut s| s.query_row([id.0], Memory::from_row).optional())
            .ctx("reading a memory")
    }

    /// The memory of `agent` with this key.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn get_memory_by_key(&self, agent: &AgentId, key: &MemoryKey) -> Result<Option<Memory>> {
        let conn = self.lock();
        conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM memories m WHERE m.agent = ?1 AND m.key = ?2"
        ))
        .and_then(|mut s| {
            s.query_row([agent.as_str(), key.as_str()], Memory::from_row)
                .optional()
        })
        .ctx("reading a memory")
    }

    /// Removes a memory on behalf of an actor with trust `actor`. A less trusted actor cannot
    /// remove a more trusted memory (refused and audited); a removal is audited too.
    /// `agent`, when given, must own the memory.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::TrustViolation`], [`StoreError::Sqlite`].
    pub fn remove_memory(
        &self,
        agent: Option<&AgentId>,
        selector: &Selector,
        actor: Trust,
        actor_label: &str,
    ) -> Result<Memory> {
        check_label("actor", actor_label)?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a memory removal")?;
        let found = match selector {
            Selector::Id(id) => tx
                .query_row(
                    &format!("SELECT {COLUMNS} FROM memories m WHERE m.id = ?1"),
                    [id.0],
                    Memory::from_row,
                )
                .optional(),
            Selector::Key(k) => match agent {
                Some(a) => tx
                    .query_row(
                        &format!(
                            "SELECT {COLUMNS} FROM memories m WHERE m.agent = ?1 AND m.key = ?2"
                        ),
                        [a.as_str(), k.as_str()],
                        Memory::from_row,
                    )
                    .optional(),
                None => {
                    return Err(StoreError::Invalid {
                        what: "removal",
                        reason: "removing by key needs the agent".into(),
                    });
                }
            },
        }
        .ctx("finding the memory to remove")?;
        let describe = || match selector {
            Selector::Id(id) => format!("memory {id}"),
            Selector::Key(k) => format!("memory key {k}"),
        };
        let m = match found {
            Some(m) if agent.is_none_or(|a| a.as_str() == m.agent) => m,
            _ => {
                return Err(StoreError::NotFound {
                    what: "memory",
                    id: describe(),
                });
            }
        };
        let owner = AgentId::new(&m.agent)?;
        let base = |kind, outcome| {
            NewAuditEvent::fixed(kind, outcome)
                .agent(&owner)
                .meta("memory_id", m.id.0)
                .meta("memory_key", m.key.clone())
                .meta("memory_trust", m.trust.as_str())
                .meta("actor", actor_label)
                .meta("actor_trust", actor.as_str())
        };
        if m.trust > actor {
            let ev = audit::append(&tx, base(kinds::MEMORY_DELETE_REJECTED, Outcome::Denied))?;
            tx.commit().ctx("committing an audit event")?;
            drop(conn);
            self.anchor(Some(&ev));
            return Err(StoreError::TrustViolation {
                op: "delete",
                target: describe(),
                existing: m.trust,
                attempted: actor,
            });
        }
        tx.execute("DELETE FROM memories WHERE id = ?1", [m.id.0])
            .ctx("removing a memory")?;
        let ev = audit::append(&tx, base(kinds::MEMORY_DELETED, Outcome::Success))?;
        tx.commit().ctx("committing a memory removal")?;
        drop(conn);
        self.anchor(Some(&ev));
        Ok(m)
    }

    /// Recalls memories: BM25 full-text ranking, fused with cosine similarity (RRF) when the
    /// query has an embedding. `external` memories only with `include_external`.
    ///
    /// Scores are comparable within one result list only. On a table of
    /// [`PRUNE_MIN_ROWS`] rows or more, words found in 2% or more of the newest memories
    /// (sampled) are left out of the BM25 ranking, where their weight is near zero but their
    /// cost is a pass over most of the table; when every word is that common, the newest
    /// memories containing all of them are returned (score 0).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad query embedding, [`StoreError::Sqlite`].
    pub fn search_memories(&self, q: &SearchQuery<'_>) -> Result<Vec<SearchHit>> {
        let limit = q.limit.clamp(1, MAX_RESULTS);
        let query_vec = match q.embedding {
            Some(v) => Some(vector::normalize(v)?),
            None => None,
        };
        // With two rankings to fuse, each contributes more candidates than the final count.
        let candidates = if query_vec.is_some() {
            limit * 4
        } else {
            limit
        };
        let trust_clause = if q.include_external {
            ""
        } else {
            "AND m.trust != 'external'"
        };
        let conn = self.lock();
        let fts_hits = full_text(&conn, q, candidates, trust_clause)?;
        let Some(query_vec) = query_vec else {
            return Ok(fts_hits
                .into_iter()
                .enumerate()
                .map(|(i, (memory, score))| SearchHit {
                    memory,
                    score,
                    fts_rank: Some(i + 1),
                    vector_rank: None,
                })
                .collect());
        };

        // Vector candidates: a scan of the agent's embedded memories.
        let mut scored: Vec<(i64, f64)> = Vec::new();
        {
            let sql = format!(
                "SELECT m.id, m.embedding FROM memories m
                 WHERE m.agent = ?1 AND m.embedding IS NOT NULL {trust_clause}"
            );
            let mut stmt = conn.prepare_cached(&sql).ctx("searching embeddings")?;
            let mut rows = stmt.query([q.agent.as_str()]).ctx("searching embeddings")?;
            while let Some(r) = rows.next().ctx("reading embeddings")? {
                let id: i64 = r.get(0).ctx("reading embeddings")?;
                let blob = r.get_ref(1).ctx("reading embeddings")?;
                if let Ok(bytes) = blob.as_blob() {
                    if let Some(sim) = vector::similarity(&query_vec, bytes) {
                        scored.push((id, sim));
                    }
                }
            }
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.truncate(candidates);

        let mut fused: HashMap<i64, (Option<usize>, Option<usize>)> = HashMap::new();
        for (i, (m, _)) in fts_hits.iter().enumerate() {
            fused.entry(m.id.0).or_default().0 = Some(i + 1);
        }
        for (i, (id, _)) in scored.iter().enumerate() {
            fused.entry(*id).or_default().1 = Some(i + 1);
        }
        let mut ranked: Vec<(i64, Option<usize>, Option<usize>, f64)> = fused
            .into_iter()
            .map(|(id, (f, v))| (id, f, v, vector::rrf(f, v)))
            .collect();
        ranked.sort_by(|a, b| b.3.total_cmp(&a.3).then(b.0.cmp(&a.0)));
        ranked.truncate(limit);

        let mut loaded: HashMap<i64, Memory> =
            fts_hits.into_iter().map(|(m, _)| (m.id.0, m)).collect();
        let mut out = Vec::with_capacity(ranked.len());
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM memories m WHERE m.id = ?1"))
            .ctx("reading a memory")?;
        for (id, f, v, score) in ranked {
            let memory = match loaded.remove(&id) {
                Some(m) => m,
                None => match stmt
                    .query_row([id], Memory::from_row)
                    .optional()
                    .ctx("reading a memory")?
                {
                    Some(m) => m,
                    None => continue,
                },
            };
            out.push(SearchHit {
                memory,
                score,
                fts_rank: f,
                vector_rank: v,
            });
        }
        Ok(out)
    }

    /// Memories, newest first.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn list_memories(&self, f: &ListFilter) -> Result<Vec<Memory>> {
        let mut clauses = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(a) = &f.agent {
            clauses.push("m.agent = ?");
            args.push(a.as_str().to_owned().into());
        }
        match f.trust {
            Some(t) => {
                clauses.push("m.trust = ?");
                args.push(t.as_str().to_owned().into());
            }
            None if !f.include_external => clauses.push("m.trust != 'external'"),
            None => {}
        }
        if let Some(b) = f.before {
            clauses.push("m.id < ?");
            args.push(b.0.into());
        }
        let limit = if f.limit == 0 {
            100
        } else {
            f.limit.min(100_000)
        };
        args.push(i64::try_from(limit).unwrap_or(100).into());
        let where_ = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM memories m {where_} ORDER BY m.id DESC LIMIT ?"
            ))
            .ctx("listing memories")?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), Memory::from_row)
            .ctx("listing memories")?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx("listing memories")
    }

    /// Counts per agent and trust (all agents when `agent` is `None`).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn memory_stats(&self, agent: Option<&AgentId>) -> Result<Stats> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT agent, trust, count(*), count(embedding) FROM memories
                 WHERE ?1 IS NULL OR agent = ?1 GROUP BY agent, trust ORDER BY agent, trust",
            )
            .ctx("counting memories")?;
        let rows = stmt
            .query_map([agent.map(AgentId::as_str)], |r| {
                let trust: String = r.get(1)?;
                Ok((
                    r.get::<_, String>(0)?,
                    trust,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .ctx("counting memories")?;
        let mut groups = Vec::new();
        let mut total = 0u64;
        for row in rows {
            let (agent, trust, n, e) = row.ctx("counting memories")?;
            let n = u64::try_from(n).unwrap_or(0);
            total += n;
            groups.push(StatsGroup {
                agent,
                trust: Trust::from_db(&trust)?,
                memories: n,
                embedded: u64::try_from(e).unwrap_or(0),
            });
        }
        groups.sort_by(|a, b| a.agent.cmp(&b.agent).then(b.trust.cmp(&a.trust)));
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .ctx("measuring the database")?;
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .ctx("measuring the database")?;
        Ok(Stats {
            groups,
            total,
            database_bytes: u64::try_from(pages.saturating_mul(page_size)).unwrap_or(0),
        })
    }
}

/// Below this many rows (by id), every word of a query is ranked: it is cheap.
pub const PRUNE_MIN_ROWS: i64 = 20_000;
/// How many of the newest rows are sampled to estimate how common a word is.
const SAMPLE_ROWS: i64 = 4096;
/// A word found in at least this share of the sampled rows is "common".
const COMMON_PER_MILLE: i64 = 20;

/// How a query is run.
enum Plan {
    /// BM25 over these words (any of them).
    Ranked(String),
    /// Every word is common: documents with all of them, newest first (BM25 could not tell
    /// them apart and would score most of the table).
    Newest(String),
}

/// Chooses the words to rank by. BM25 gives a word found in a large share of documents
/// almost no weight (its IDF is near zero), yet ranking it costs a pass over every document
/// that has it: on a large table, common words are left out of the ranked query. With fewer
/// than [`PRUNE_MIN_ROWS`] rows every word is used.
fn plan(conn: &rusqlite::Connection, terms: &[String]) -> Result<Option<Plan>> {
    let Some(all) = fts::any_of(terms) else {
        return Ok(None);
    };
    let max_id: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM memories")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .ctx("sizing the memory table")?;
    if max_id < PRUNE_MIN_ROWS {
        return Ok(Some(Plan::Ranked(all)));
    }
    let cap = SAMPLE_ROWS * COMMON_PER_MILLE / 1000;
    let mut stmt = conn
        .prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM memories_fts
             WHERE memories_fts MATCH ?1 AND rowid > ?2 LIMIT ?3)",
        )
        .ctx("sampling word frequencies")?;
    let mut selective = Vec::new();
    for t in terms {
        let n: i64 = stmt
            .query_row(params![fts::quote(t), max_id - SAMPLE_ROWS, cap], |r| {
                r.get(0)
            })
            .ctx("sampling word frequencies")?;
        if n < cap {
            selective.push(t.as_str());
        }
    }
    Ok(match fts::any_of(&selective) {
        Some(q) => Some(Plan::Ranked(q)),
        None => fts::all_of(terms).map(Plan::Newest),
    })
}

/// Full-text candidates of `q.agent`, best first, with their scores (higher is better).
fn full_text(
    conn: &rusqlite::Connection,
    q: &SearchQuery<'_>,
    candidates: usize,
    trust_clause: &str,
) -> Result<Vec<(Memory, f64)>> {
    let terms = fts::terms(q.text);
    let limit = i64::try_from(candidates).unwrap_or(1);
    let collect = |stmt: &mut rusqlite::CachedStatement<'_>, args: &[&dyn rusqlite::ToSql]| {
        stmt.query_map(args, |r| Ok((Memory::from_row(r)?, r.get::<_, f64>(15)?)))
            .ctx("searching memories")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx("reading search results")
    };
    match plan(conn, &terms)? {
        None => Ok(Vec::new()),
        Some(Plan::Ranked(query)) => {
            // Rank inside FTS5 first, without touching `memories` for every match; fall back
            // to ranking joined rows only when the best ones belong to other agents or trust
            // levels.
            let wide = limit.saturating_mul(8).max(64);
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS}, -f.rank FROM
                       (SELECT rowid, rank FROM memories_fts WHERE memories_fts MATCH ?1
                        ORDER BY rank LIMIT ?4) AS f
                     JOIN memories m ON m.id = f.rowid
                     WHERE m.agent = ?2 {trust_clause} ORDER BY f.rank LIMIT ?3"
                ))
                .ctx("searching memories")?;
            let hits = collect(&mut stmt, &[&query, &q.agent.as_str(), &limit, &wide])?;
            if i64::try_from(hits.len()).unwrap_or(0) >= limit {
                return Ok(hits);
            }
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS}, -memories_fts.rank FROM memories_fts
                     JOIN memories m ON m.id = memories_fts.rowid
                     WHERE memories_fts MATCH ?1 AND m.agent = ?2 {trust_clause}
                     ORDER BY memories_fts.rank LIMIT ?3"
                ))
                .ctx("searching memories")?;
            collect(&mut stmt, &[&query, &q.agent.as_str(), &limit])
        }
        Some(Plan::Newest(query)) => {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS}, 0.0 FROM memories_fts
                     JOIN memories m ON m.id = memories_fts.rowid
                     WHERE memories_fts MATCH ?1 AND m.agent = ?2 {trust_clause}
                     ORDER BY memories_fts.rowid DESC LIMIT ?3"
                ))
                .ctx("searching memories")?;
            collect(&mut stmt, &[&query, &q.agent.as_str(), &limit])
        }
    }
}
