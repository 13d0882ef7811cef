//! Approval requests, persisted: pending until a human decides, a timeout passes, or the
//! daemon restarts.
//!
//! Defends: an approval that is silently forgotten (the original kept pending requests in
//! memory and a JSON file) and an approval that outlives its context. A request is a row from
//! the moment it is made; on start the daemon calls [`Store::deny_pending_approvals`], so a
//! request from the previous run ends **denied** (`system:restart`), never approved and never
//! lost. A request past its deadline is denied (`system:timeout`) when next touched, even if
//! an approval arrives late.
//!
//! Guarantees: resolution is idempotent (resolving a resolved request returns it unchanged,
//! so a late or duplicate approval cannot flip a denial); every request and every resolution
//! is an audit event (`approval:requested`, `approval:resolved`); the read-check-write of a
//! resolution is one `BEGIN IMMEDIATE` transaction, so two resolvers cannot both win.
//!
//! Does not: notify anyone or wait; the agent's approval gate does that and uses this table
//! as its memory.

use std::fmt;

use rusqlite::{OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde_json::{Value, json};

use crate::audit::{self, AuditEvent, NewAuditEvent, Outcome, kinds};
use crate::types::{AgentId, check_label, random_id};
use crate::{Result, SqlContext, Store, StoreError, time};

/// Largest parameters JSON stored with a request, in bytes.
pub const MAX_PARAMS_BYTES: usize = 64 * 1024;
/// Who resolves requests left pending by a previous run.
pub const BY_RESTART: &str = "system:restart";
/// Who resolves requests past their deadline.
pub const BY_TIMEOUT: &str = "system:timeout";

/// A request id: 32 lowercase hex digits (users may type an 8-digit prefix).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApprovalId(String);

impl ApprovalId {
    /// # Errors
    /// [`StoreError::Invalid`] unless `s` is 32 lowercase hex digits.
    pub fn new(s: &str) -> Result<ApprovalId> {
        if s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(ApprovalId(s.to_owned()))
        } else {
            Err(StoreError::Invalid {
                what: "approval id",
                reason: "it must be 32 lowercase hex digits".into(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
        }
    }

    fn from_db(s: &str) -> Option<ApprovalStatus> {
        [
            ApprovalStatus::Pending,
            ApprovalStatus::Approved,
            ApprovalStatus::Denied,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// A human's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

/// A request to make.
#[derive(Debug, Clone)]
pub struct NewApproval {
    pub agent: AgentId,
    pub session: String,
    pub tool: String,
    pub action: String,
    pub params: Value,
    /// How long a human has to answer (1 ms to 7 days).
    pub timeout_ms: i64,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub id: ApprovalId,
    pub agent: String,
    pub session: String,
    pub tool: String,
    pub action: String,
    pub params: Value,
    pub created_at: i64,
    pub expires_at: i64,
    pub status: ApprovalStatus,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<i64>,
    pub reason: Option<String>,
}

impl Approval {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.as_str(), "agent": self.agent, "session": self.session,
            "tool": self.tool, "action": self.action, "params": self.params,
            "created_at": time::format_ms(self.created_at),
            "expires_at": time::format_ms(self.expires_at),
            "status": self.status.as_str(), "resolved_by": self.resolved_by,
            "resolved_at": self.resolved_at.map(time::format_ms), "reason": self.reason,
        })
    }

    fn from_row(r: &Row<'_>) -> rusqlite::Result<Approval> {
        let bad = |i: usize| {
            rusqlite::Error::InvalidColumnType(i, "approvals".into(), rusqlite::types::Type::Text)
        };
        let id: String = r.get(0)?;
        let params: String = r.get(5)?;
        let status: String = r.get(8)?;
        Ok(Approval {
            id: ApprovalId::new(&id).map_err(|_| bad(0))?,
            agent: r.get(1)?,
            session: r.get(2)?,
            tool: r.get(3)?,
            action: r.get(4)?,
            params: serde_json::from_str(&params).map_err(|_| bad(5))?,
            created_at: r.get(6)?,
            expires_at: r.get(7)?,
            status: ApprovalStatus::from_db(&status).ok_or_else(|| bad(8))?,
            resolved_by: r.get(9)?,
            resolved_at: r.get(10)?,
            reason: r.get(11)?,
        })
    }
}

const COLUMNS: &str = "id, agent, session, tool, action, params, created_at, expires_at, status, \
     resolved_by, resolved_at, reason";

fn get_in(tx: &Transaction<'_>, id: &ApprovalId) -> Result<Option<Approval>> {
    tx.query_row(
        &format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"),
        [id.as_str()],
        Approval::from_row,
    )
    .optional()
    .ctx("reading an approval")
}

/// Marks `a` resolved inside `tx` and appends its audit event.
fn settle(
    tx: &Transaction<'_>,
    a: &mut Approval,
    status: ApprovalStatus,
    by: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<AuditEvent> {
    tx.execute(
        "UPDATE approvals SET status = ?2, resolved_by = ?3, resolved_at = ?4, reason = ?5
         WHERE id = ?1 AND status = 'pending'",
        params![a.id.as_str(), status.as_str(), by, now, reason],
    )
    .ctx("resolving an approval")?;
    a.status = status;
    a.resolved_by = Some(by.to_owned());
    a.resolved_at = Some(now);
    a.reason = reason.map(str::to_owned);
    let agent = AgentId::new(&a.agent)?;
    let outcome = if status == ApprovalStatus::Approved {
        Outcome::Success
    } else {
        Outcome::Denied
    };
    audit::append(
        tx,
        NewAuditEvent::fixed(kinds::APPROVAL_RESOLVED, outcome)
            .agent(&agent)
            .meta("approval_id", a.id.as_str())
            .meta("tool", a.tool.as_str())
            .meta("action", a.action.as_str())
            .meta("session", a.session.as_str())
            .meta("status", status.as_str())
            .meta("resolved_by", by)
            .meta("reason", reason),
    )
}

impl Store {
    /// Records a pending request (audited `approval:requested`).
    ///
    /// # Errors
    /// [`StoreError::Invalid`], [`StoreError::Sqlite`].
    pub fn request_approval(&self, n: &NewApproval) -> Result<Approval> {
        for (what, v) in [
            ("session", &n.session),
            ("tool", &n.tool),
            ("action", &n.action),
        ] {
            if v.is_empty() {
                return Err(StoreError::Invalid {
                    what,
                    reason: "it is empty".into(),
                });
            }
            check_label(what, v)?;
        }
        if !(1..=7 * 86_400_000).contains(&n.timeout_ms) {
            return Err(StoreError::Invalid {
                what: "approval timeout",
                reason: "it must be between 1 ms and 7 days".into(),
            });
        }
        let params = n.params.to_string();
        if params.len() > MAX_PARAMS_BYTES {
            return Err(StoreError::Invalid {
                what: "approval parameters",
                reason: format!("{} bytes; the limit is {MAX_PARAMS_BYTES}", params.len()),
            });
        }
        let now = time::now_ms();
        let a = Approval {
            id: ApprovalId(random_id()?),
            agent: n.agent.as_str().to_owned(),
            session: n.session.clone(),
            tool: n.tool.clone(),
            action: n.action.clone(),
            params: n.params.clone(),
            created_at: now,
            expires_at: now.saturating_add(n.timeout_ms),
            status: ApprovalStatus::Pending,
            resolved_by: None,
            resolved_at: None,
            reason: None,
        };
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting an approval request")?;
        tx.execute(
            &format!(
                "INSERT INTO approvals ({COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', NULL, NULL, NULL)"
            ),
            params![
                a.id.as_str(),
                a.agent,
                a.session,
                a.tool,
                a.action,
                params,
                a.created_at,
                a.expires_at
            ],
        )
        .ctx("recording an approval request")?;
        let ev = audit::append(
            &tx,
            NewAuditEvent::fixed(kinds::APPROVAL_REQUESTED, Outcome::Success)
                .agent(&n.agent)
                .meta("approval_id", a.id.as_str())
                .meta("tool", a.tool.as_str())
                .meta("action", a.action.as_str())
                .meta("session", a.session.as_str())
                .meta("timeout_ms", n.timeout_ms)
                .meta("params", n.params.clone()),
        )?;
        tx.commit().ctx("committing an approval request")?;
        drop(conn);
        self.anchor(Some(&ev));
        Ok(a)
    }

    /// Resolves a request. A request already resolved is returned unchanged (idempotent: a
    /// late approval cannot flip a denial). A request past its deadline is denied by
    /// `system:timeout` whatever the decision.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Invalid`], [`StoreError::Sqlite`].
    pub fn resolve_approval(
        &self,
        id: &ApprovalId,
        decision: Decision,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Approval> {
        check_label("resolver", by)?;
        if let Some(r) = reason {
            check_label("reason", r)?;
        }
        self.resolve_at(id, decision, by, reason, time::now_ms())
    }

    #[doc(hidden)]
    pub fn resolve_at(
        &self,
        id: &ApprovalId,
        decision: Decision,
        by: &str,
        reason: Option<&str>,
        now: i64,
    ) -> Result<Approval> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting an approval resolution")?;
        let mut a = get_in(&tx, id)?.ok_or_else(|| StoreError::NotFound {
            what: "approval request",
            id: id.to_string(),
        })?;
        if a.status != ApprovalStatus::Pending {
            return Ok(a);
        }
        let ev = if now > a.expires_at {
            settle(
                &tx,
                &mut a,
                ApprovalStatus::Denied,
                BY_TIMEOUT,
                Some("timed out"),
                now,
            )?
        } else {
            let status = match decision {
                Decision::Approve => ApprovalStatus::Approved,
                Decision::Deny => ApprovalStatus::Denied,
            };
            settle(&tx, &mut a, status, by, reason, now)?
        };
        tx.commit().ctx("committing an approval resolution")?;
        drop(conn);
        self.anchor(Some(&ev));
        Ok(a)
    }

    /// The request with this id.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn get_approval(&self, id: &ApprovalId) -> Result<Option<Approval>> {
        let mut conn = self.lock();
        let tx = conn.transaction().ctx("reading an approval")?;
        let a = get_in(&tx, id)?;
        tx.finish().ctx("reading an approval")?;
        Ok(a)
    }

    /// The one request whose id starts with `prefix` (at least 4 hex digits), as typed in
    /// `/approve 1a2b3c4d`.
    ///
    /// # Errors
    /// [`StoreError::Invalid`], [`StoreError::NotFound`], [`StoreError::Ambiguous`].
    pub fn find_approval(&self, prefix: &str) -> Result<Approval> {
        if prefix.len() < 4
            || prefix.len() > 32
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(StoreError::Invalid {
                what: "approval id prefix",
                reason: "use 4 to 32 lowercase hex digits".into(),
            });
        }
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM approvals WHERE substr(id, 1, ?2) = ?1 LIMIT 2"
            ))
            .ctx("finding an approval")?;
        let found = stmt
            .query_map(
                params![prefix, i64::try_from(prefix.len()).unwrap_or(32)],
                Approval::from_row,
            )
            .ctx("finding an approval")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx("finding an approval")?;
        match found.len() {
            0 => Err(StoreError::NotFound {
                what: "approval request",
                id: prefix.to_owned(),
            }),
            1 => found.into_iter().next().ok_or(StoreError::NotFound {
                what: "approval request",
                id: prefix.to_owned(),
            }),
            n => Err(StoreError::Ambiguous {
                what: "approval id",
                prefix: prefix.to_owned(),
                count: n,
            }),
        }
    }

    /// Pending requests (of `agent`, or all), oldest first, after denying the overdue ones.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn pending_approvals(&self, agent: Option<&AgentId>) -> Result<Vec<Approval>> {
        self.expire_approvals(time::now_ms())?;
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM approvals WHERE status = 'pending'
                 AND (?1 IS NULL OR agent = ?1) ORDER BY created_at, id"
            ))
            .ctx("listing approvals")?;
        let rows = stmt
            .query_map([agent.map(AgentId::as_str)], Approval::from_row)
            .ctx("listing approvals")?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx("listing approvals")
    }

    /// Denies (`system:timeout`) every pending request whose deadline is before `now`.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn expire_approvals(&self, now: i64) -> Result<usize> {
        self.deny_where("expires_at < ?1", now, BY_TIMEOUT, "timed out")
    }

    /// Denies (`system:restart`) every pending request: the daemon calls this on start, since
    /// whoever was waiting for an answer is gone. Returns how many were denied.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn deny_pending_approvals(&self) -> Result<usize> {
        self.deny_where("?1 IS NOT NULL", 0, BY_RESTART, "the daemon restarted")
    }

    fn deny_where(&self, cond: &str, arg: i64, by: &str, reason: &str) -> Result<usize> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting to deny approvals")?;
        let mut pending = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM approvals WHERE status = 'pending' AND {cond}"
                ))
                .ctx("listing approvals")?;
            let rows = stmt
                .query_map([arg], Approval::from_row)
                .ctx("listing approvals")?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .ctx("listing approvals")?
        };
        if pending.is_empty() {
            return Ok(0);
        }
        let now = time::now_ms();
        let mut head = None;
        for a in &mut pending {
            head = Some(settle(
                &tx,
                a,
                ApprovalStatus::Denied,
                by,
                Some(reason),
                now,
            )?);
        }
        tx.commit().ctx("committing approval denials")?;
        drop(conn);
        self.anchor(head.as_ref());
        Ok(pending.len())
    }
}
