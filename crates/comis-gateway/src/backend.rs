//! The port the gateway drives the daemon through.
//!
//! Guarantees: the gateway reaches agents, sessions, memory, approvals, audit, config and secrets
//! only through [`Backend`]; every argument it passes has been authenticated, scope-checked and
//! type-checked first. Not guaranteed here: what the daemon does with a request — the runtime's own
//! checkpoints (input guard, budgets, approvals, output guard) stand behind this port.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use comis_agent::runtime::{TurnEvent, TurnReply, TurnRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

/// A boxed, sendable future: keeps [`Backend`] object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the daemon could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The arguments were well-typed but wrong (unknown agent, unknown approval id, …).
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// This daemon does not offer the function.
    #[error("not available: {0}")]
    Unavailable(String),
    /// The daemon failed.
    #[error("{0}")]
    Failed(String),
}

/// One agent as `/v1/models` and the default-agent choice see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    pub id: String,
    pub provider: String,
    pub model: String,
    /// The agent that answers when a caller names none.
    pub default: bool,
}

/// `session.list` params.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionQuery {
    #[serde(default)]
    pub agent_id: Option<String>,
}

/// `session.history` params.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryQuery {
    pub session_key: String,
    #[serde(default)]
    pub agent_id: Option<String>,
    /// 1..=1000, default 50 (clamped by the gateway).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `memory.search` params.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemoryQuery {
    pub query: String,
    #[serde(default)]
    pub agent_id: Option<String>,
    /// 1..=100, default 10 (clamped by the gateway).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `approvals.resolve` params, plus who resolved it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalResolution {
    pub id: String,
    pub approved: bool,
    #[serde(default)]
    pub reason: Option<String>,
    /// Filled in by the gateway from the caller's identity; a client cannot set it.
    #[serde(skip)]
    pub resolved_by: String,
}

/// `audit.query` params.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditQuery {
    /// 1..=1000, default 50 (clamped by the gateway).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Event kind, e.g. `gateway:auth_failed`.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Only events at or after this time (Unix ms).
    #[serde(default)]
    pub since_ms: Option<i64>,
}

/// What the gateway needs from the daemon. The binary implements it over the real runtime.
///
/// Only turns and the agent list are required; the rest default to
/// [`BackendError::Unavailable`] so a partial daemon answers clearly instead of crashing.
pub trait Backend: Send + Sync + 'static {
    /// Runs one turn to completion.
    fn execute(&self, request: TurnRequest) -> BoxFuture<'_, Result<TurnReply, BackendError>>;

    /// Runs one turn, sending live progress on `events` (dropping the receiver must not fail the
    /// turn). The returned reply is authoritative.
    fn stream(
        &self,
        request: TurnRequest,
        events: mpsc::Sender<TurnEvent>,
    ) -> BoxFuture<'_, Result<TurnReply, BackendError>>;

    /// Every configured agent.
    fn agents(&self) -> Vec<AgentInfo>;

    fn sessions(&self, _query: SessionQuery) -> BoxFuture<'_, Result<Value, BackendError>> {
        unavailable("session.list")
    }

    fn history(&self, _query: HistoryQuery) -> BoxFuture<'_, Result<Value, BackendError>> {
        unavailable("session.history")
    }

    fn memory_search(&self, _query: MemoryQuery) -> BoxFuture<'_, Result<Value, BackendError>> {
        unavailable("memory.search")
    }

    /// Pending approvals.
    fn approvals(&self) -> BoxFuture<'_, Result<Value, BackendError>> {
        unavailable("approvals.list")
    }

    fn resolve_approval(
        &self,
        _resolution: ApprovalResolution,
    ) -> BoxFuture<'_, Result<Value, BackendError>> {
        unavailable("approvals.resolve")
    }

    fn audit(&self, _query: AuditQuery) -> BoxFuture<'_, Result<Value, BackendError>> {
        unavailable("audit.query")
    }

    /// The effective configuration, secrets already redacted (the gateway redacts again).
    fn config(&self) -> Result<Value, BackendError> {
        Err(BackendError::Unavailable("config.get".into()))
    }

    /// Names of stored secrets, never values.
    fn secret_names(&self) -> Result<Vec<String>, BackendError> {
        Err(BackendError::Unavailable("secrets.list".into()))
    }

    /// Daemon status for `gateway.status` (uptime, agents, channels, …).
    /// The webhook replay cache to use, when it must outlive this gateway (the daemon keeps
    /// one across reloads, so a delivery accepted before a reload is still refused after it).
    /// `None`: a cache of this gateway's own.
    fn replay_cache(&self) -> Option<Arc<crate::webhook::ReplayCache>> {
        None
    }

    /// SHA-256 digests of token secrets revoked before this gateway started: they start
    /// revoked, so a revocation outlives a reload and a restart.
    fn revoked_tokens(&self) -> Vec<[u8; 32]> {
        Vec::new()
    }

    /// Records a revocation durably. The token is already revoked in memory when this is
    /// called; an error means it will be active again after a restart.
    fn record_revocation(&self, _digest: [u8; 32]) -> Result<(), BackendError> {
        Ok(())
    }

    fn status(&self) -> Value {
        Value::Object(serde_json::Map::new())
    }
}

fn unavailable(what: &'static str) -> BoxFuture<'static, Result<Value, BackendError>> {
    Box::pin(async move { Err(BackendError::Unavailable(what.into())) })
}
