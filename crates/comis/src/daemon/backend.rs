//! The gateway's [`Backend`] over the real runtime and store: what `/rpc`, `/ws` and
//! `/v1/chat/completions` reach.
//!
//! Guarantees: every turn goes through `Runtime::execute` (all checkpoints); store reads run on
//! a blocking thread so a slow query never stalls the gateway; config leaves redacted and
//! secrets leave as names only. Sessions and history are scoped to one agent (the default one
//! when the caller names none).

use std::sync::Arc;
use std::time::Instant;

use comis_agent::runtime::{Runtime, TurnEvent, TurnReply, TurnRequest};
use comis_gateway::backend::{
    AgentInfo, ApprovalResolution, AuditQuery, Backend, BackendError, BoxFuture, HistoryQuery,
    MemoryQuery, SessionQuery,
};
use comis_store::{AgentId, Store};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What the daemon hands the gateway.
pub struct DaemonBackend {
    pub runtime: Arc<Runtime>,
    pub store: Arc<Store>,
    pub agents: Vec<AgentInfo>,
    /// `config show` output: already redacted.
    pub redacted_config: Value,
    pub secret_names: Vec<String>,
    pub started: Instant,
    /// Facts for `gateway.status` (gateway address, channels, sandbox layers).
    pub status: Arc<dyn Fn() -> Value + Send + Sync>,
    /// Gateway tokens revoked so far, on disk.
    pub revoked: super::revoked::RevokedTokens,
    /// The process's webhook replay cache (see `DaemonContext::replay`).
    pub replay: Arc<comis_gateway::webhook::ReplayCache>,
}

impl std::fmt::Debug for DaemonBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonBackend")
            .field("agents", &self.agents)
            .finish_non_exhaustive()
    }
}

fn failed(e: impl std::fmt::Display) -> BackendError {
    BackendError::Failed(e.to_string())
}

fn agent_error(e: comis_agent::AgentError) -> BackendError {
    match e {
        comis_agent::AgentError::UnknownAgent(_) => BackendError::InvalidParams(e.to_string()),
        other => failed(other),
    }
}

fn clamp(limit: Option<u32>, default: u32, max: u32) -> usize {
    usize::try_from(limit.unwrap_or(default).clamp(1, max)).unwrap_or(1)
}

impl DaemonBackend {
    fn agent(&self, named: Option<&str>) -> Result<AgentId, BackendError> {
        let id = match named {
            Some(id) => id.to_owned(),
            None => self
                .agents
                .iter()
                .find(|a| a.default)
                .map(|a| a.id.clone())
                .ok_or_else(|| BackendError::InvalidParams("no default agent".into()))?,
        };
        if !self.agents.iter().any(|a| a.id == id) {
            return Err(BackendError::InvalidParams(format!("unknown agent {id:?}")));
        }
        AgentId::new(&id).map_err(|e| BackendError::InvalidParams(e.to_string()))
    }

    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, comis_store::StoreError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, BackendError>> {
        let store = Arc::clone(&self.store);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&store))
                .await
                .map_err(failed)?
                .map_err(failed)
        })
    }
}

fn error_future<T: Send + 'static>(e: BackendError) -> BoxFuture<'static, Result<T, BackendError>> {
    Box::pin(async move { Err(e) })
}

impl Backend for DaemonBackend {
    fn execute(&self, request: TurnRequest) -> BoxFuture<'_, Result<TurnReply, BackendError>> {
        Box::pin(async move {
            self.runtime
                .execute(request, None)
                .await
                .map_err(agent_error)
        })
    }

    fn stream(
        &self,
        request: TurnRequest,
        events: mpsc::Sender<TurnEvent>,
    ) -> BoxFuture<'_, Result<TurnReply, BackendError>> {
        Box::pin(async move {
            let (tx, mut rx) = mpsc::unbounded_channel::<TurnEvent>();
            // The runtime's live feed is unbounded (a turn never waits on a slow client); the
            // forwarder stops once the client has gone.
            let forward = tokio::spawn(async move {
                while let Some(ev) = rx.recv().await {
                    if events.send(ev).await.is_err() {
                        break;
                    }
                }
            });
            let reply = self
                .runtime
                .execute(request, Some(tx))
                .await
                .map_err(agent_error);
            let _ = forward.await;
            reply
        })
    }

    fn agents(&self) -> Vec<AgentInfo> {
        self.agents.clone()
    }

    fn sessions(&self, query: SessionQuery) -> BoxFuture<'_, Result<Value, BackendError>> {
        let agent = match self.agent(query.agent_id.as_deref()) {
            Ok(a) => a,
            Err(e) => return error_future(e),
        };
        self.blocking(move |store| {
            let list = store.conversations(&agent)?;
            Ok(Value::Array(
                list.iter()
                    .map(|c| {
                        json!({"channel": c.channel, "sessionKey": c.thread, "messages": c.messages,
                               "firstTs": c.first_ts, "lastTs": c.last_ts})
                    })
                    .collect(),
            ))
        })
    }

    fn history(&self, query: HistoryQuery) -> BoxFuture<'_, Result<Value, BackendError>> {
        let agent = match self.agent(query.agent_id.as_deref()) {
            Ok(a) => a,
            Err(e) => return error_future(e),
        };
        let limit = clamp(query.limit, 50, 1000);
        self.blocking(move |store| {
            // A session key is unique per channel; look it up on every channel it was used on.
            let mut out = Vec::new();
            for c in store.conversations(&agent)? {
                if c.thread == query.session_key {
                    for m in store.messages(&agent, &c.channel, &c.thread, 0, limit)? {
                        out.push(m.to_json());
                    }
                }
            }
            Ok(Value::Array(out))
        })
    }

    fn memory_search(&self, query: MemoryQuery) -> BoxFuture<'_, Result<Value, BackendError>> {
        let agent = match self.agent(query.agent_id.as_deref()) {
            Ok(a) => a,
            Err(e) => return error_future(e),
        };
        let limit = clamp(query.limit, 10, 100);
        self.blocking(move |store| {
            let hits = store.search_memories(&comis_store::SearchQuery {
                agent: &agent,
                text: &query.query,
                embedding: None,
                limit,
                include_external: false,
            })?;
            Ok(Value::Array(hits.iter().map(|h| h.to_json()).collect()))
        })
    }

    fn approvals(&self) -> BoxFuture<'_, Result<Value, BackendError>> {
        let pending = serde_json::to_value(self.runtime.pending_approvals()).map_err(failed);
        Box::pin(async move { pending })
    }

    fn resolve_approval(
        &self,
        resolution: ApprovalResolution,
    ) -> BoxFuture<'_, Result<Value, BackendError>> {
        let result = self
            .runtime
            .resolve_approval(&resolution.id, resolution.approved, &resolution.resolved_by)
            .map_err(|e| BackendError::InvalidParams(e.to_string()))
            .and_then(|r| serde_json::to_value(r).map_err(failed));
        Box::pin(async move { result })
    }

    fn audit(&self, query: AuditQuery) -> BoxFuture<'_, Result<Value, BackendError>> {
        let agent = match query.agent_id.as_deref().map(AgentId::new).transpose() {
            Ok(a) => a,
            Err(e) => return error_future(BackendError::InvalidParams(e.to_string())),
        };
        let limit = clamp(query.limit, 50, 1000);
        self.blocking(move |store| {
            let filter = comis_store::AuditFilter {
                kind: query.kind,
                agent,
                since_ms: query.since_ms,
                limit,
                ..comis_store::AuditFilter::default()
            };
            let events = store.audit_search(&filter)?;
            Ok(Value::Array(events.iter().map(|e| e.to_json()).collect()))
        })
    }

    fn config(&self) -> Result<Value, BackendError> {
        Ok(self.redacted_config.clone())
    }

    fn secret_names(&self) -> Result<Vec<String>, BackendError> {
        Ok(self.secret_names.clone())
    }

    fn replay_cache(&self) -> Option<Arc<comis_gateway::webhook::ReplayCache>> {
        Some(self.replay.clone())
    }

    fn revoked_tokens(&self) -> Vec<[u8; 32]> {
        self.revoked.digests()
    }

    fn record_revocation(&self, digest: [u8; 32]) -> Result<(), BackendError> {
        self.revoked.record(digest).map_err(|e| {
            tracing::error!(error = %e, "a gateway token is revoked only until restart");
            failed(e)
        })
    }

    fn status(&self) -> Value {
        let mut status = (self.status)();
        if let Value::Object(map) = &mut status {
            map.insert(
                "uptimeMs".into(),
                json!(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)),
            );
            map.insert("agents".into(), json!(self.runtime.agent_ids()));
            map.insert(
                "pendingApprovals".into(),
                json!(self.runtime.pending_approvals().len()),
            );
        }
        status
    }
}
