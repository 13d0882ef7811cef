//! Conversation transcripts: every message of every conversation, per agent, channel and
//! thread.
//!
//! Defends: loss of the record of what was said (and so of what an injected message asked
//! for). Context trimming and compaction decide what the *model* sees; they never touch this
//! table.
//!
//! Guarantees: messages are append-only (triggers refuse `UPDATE` and `DELETE`, and this
//! module has neither); each conversation numbers its messages 1, 2, 3… without gaps, under
//! the write lock so two writers cannot take the same number.
//!
//! Does not: search transcripts by content, or scrub them: a transcript keeps what was said.

use rusqlite::{Row, TransactionBehavior, params};
use serde_json::{Value, json};

use crate::types::{AgentId, check_label};
use crate::{Result, SqlContext, Store, StoreError, time};

/// Largest message stored, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Who said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    User,
    Assistant,
    System,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
            Role::Tool => "tool",
        }
    }

    fn from_db(s: &str) -> Option<Role> {
        [Role::User, Role::Assistant, Role::System, Role::Tool]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// A message to append.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub agent: AgentId,
    pub channel: String,
    /// The thread (or chat, or peer) inside the channel; use the same value for the same
    /// conversation.
    pub thread: String,
    pub role: Role,
    pub sender: Option<String>,
    pub content: String,
    pub trace_id: Option<String>,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: i64,
    pub agent: String,
    pub channel: String,
    pub thread: String,
    /// Position in the conversation, from 1.
    pub seq: i64,
    pub role: Role,
    pub sender: Option<String>,
    pub content: String,
    pub ts: i64,
    pub trace_id: Option<String>,
}

impl Message {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "agent": self.agent, "channel": self.channel,
            "thread": self.thread, "seq": self.seq, "role": self.role.as_str(),
            "sender": self.sender, "content": self.content,
            "ts": time::format_ms(self.ts), "trace_id": self.trace_id,
        })
    }

    fn from_row(r: &Row<'_>) -> rusqlite::Result<Message> {
        let role: String = r.get(5)?;
        Ok(Message {
            id: r.get(0)?,
            agent: r.get(1)?,
            channel: r.get(2)?,
            thread: r.get(3)?,
            seq: r.get(4)?,
            role: Role::from_db(&role).ok_or(rusqlite::Error::InvalidColumnType(
                5,
                "role".into(),
                rusqlite::types::Type::Text,
            ))?,
            sender: r.get(6)?,
            content: r.get(7)?,
            ts: r.get(8)?,
            trace_id: r.get(9)?,
        })
    }
}

/// One conversation's summary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Conversation {
    pub channel: String,
    pub thread: String,
    pub messages: i64,
    pub first_ts: i64,
    pub last_ts: i64,
}

const COLUMNS: &str = "id, agent, channel, thread, seq, role, sender, content, ts, trace_id";

impl Store {
    /// Appends a message; returns it as stored.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an oversized message or malformed label,
    /// [`StoreError::Sqlite`].
    pub fn append_message(&self, m: &NewMessage) -> Result<Message> {
        if m.channel.is_empty() || m.thread.is_empty() {
            return Err(StoreError::Invalid {
                what: "message",
                reason: "channel and thread must not be empty".into(),
            });
        }
        check_label("channel", &m.channel)?;
        check_label("thread", &m.thread)?;
        for (what, v) in [("sender", &m.sender), ("trace id", &m.trace_id)] {
            if let Some(v) = v {
                check_label(what, v)?;
            }
        }
        if m.content.len() > MAX_MESSAGE_BYTES {
            return Err(StoreError::Invalid {
                what: "message",
                reason: format!(
                    "it is {} bytes long; the limit is {MAX_MESSAGE_BYTES}",
                    m.content.len()
                ),
            });
        }
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a transcript append")?;
        let seq: i64 = tx
            .prepare_cached(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM transcript_messages
                 WHERE agent = ?1 AND channel = ?2 AND thread = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![m.agent.as_str(), m.channel, m.thread], |r| r.get(0))
            })
            .ctx("numbering a message")?;
        let ts = time::now_ms();
        tx.prepare_cached(
            "INSERT INTO transcript_messages
                 (agent, channel, thread, seq, role, sender, content, ts, trace_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .and_then(|mut s| {
            s.execute(params![
                m.agent.as_str(),
                m.channel,
                m.thread,
                seq,
                m.role.as_str(),
                m.sender,
                m.content,
                ts,
                m.trace_id
            ])
        })
        .ctx("appending a message")?;
        let id = tx.last_insert_rowid();
        tx.commit().ctx("committing a message")?;
        Ok(Message {
            id,
            agent: m.agent.as_str().to_owned(),
            channel: m.channel.clone(),
            thread: m.thread.clone(),
            seq,
            role: m.role,
            sender: m.sender.clone(),
            content: m.content.clone(),
            ts,
            trace_id: m.trace_id.clone(),
        })
    }

    /// Messages of one conversation with `seq > after`, in order, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn messages(
        &self,
        agent: &AgentId,
        channel: &str,
        thread: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM transcript_messages
                 WHERE agent = ?1 AND channel = ?2 AND thread = ?3 AND seq > ?4
                 ORDER BY seq LIMIT ?5"
            ))
            .ctx("reading a transcript")?;
        let rows = stmt
            .query_map(
                params![
                    agent.as_str(),
                    channel,
                    thread,
                    after,
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                Message::from_row,
            )
            .ctx("reading a transcript")?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx("reading a transcript")
    }

    /// The conversations of `agent`, most recently active first.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn conversations(&self, agent: &AgentId) -> Result<Vec<Conversation>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT channel, thread, count(*), min(ts), max(ts) FROM transcript_messages
                 WHERE agent = ?1 GROUP BY channel, thread ORDER BY max(ts) DESC",
            )
            .ctx("listing conversations")?;
        let rows = stmt
            .query_map([agent.as_str()], |r| {
                Ok(Conversation {
                    channel: r.get(0)?,
                    thread: r.get(1)?,
                    messages: r.get(2)?,
                    first_ts: r.get(3)?,
                    last_ts: r.get(4)?,
                })
            })
            .ctx("listing conversations")?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx("listing conversations")
    }
}
