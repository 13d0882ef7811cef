//! JSON-RPC 2.0: the method table with each method's scopes, request validation, batches, and
//! the `POST /rpc` route. The WebSocket route uses the same dispatcher.
//!
//! Guarantees:
//! - Scope is checked before parameters are parsed and before the backend is reached; a
//!   violation is −32603 "Insufficient scope: requires '<scope>'" (the original's wording).
//! - Parameters are type-checked into structs that refuse unknown fields (−32602) before any
//!   backend call; limits are clamped.
//! - A batch over `maxBatchSize` or empty is one −32600; notifications get no answer.
//! - `config.get` output is redacted again here even though the backend redacts already.
//!
//! Not guaranteed: atomicity of a batch (each call stands alone, run concurrently).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use comis_agent::runtime::{Origin, TurnEvent, TurnReply, TurnRequest};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::auth::{Caller, SCOPES};
use crate::backend::{
    ApprovalResolution, AuditQuery, BackendError, HistoryQuery, MemoryQuery, SessionQuery,
};
use crate::server::{AppState, now_ms};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
pub const RATE_LIMITED: i64 = -32000;

/// Every method and the scopes that may call it (any one suffices; `*` always does).
pub const METHODS: &[(&str, &[&str])] = &[
    ("system.ping", &["rpc"]),
    ("agent.execute", &["rpc"]),
    ("agent.stream", &["rpc", "ws"]),
    ("session.list", &["rpc"]),
    ("session.history", &["rpc"]),
    ("memory.search", &["rpc"]),
    ("approvals.list", &["admin"]),
    ("approvals.resolve", &["admin"]),
    ("audit.query", &["admin"]),
    ("config.get", &["admin"]),
    ("secrets.list", &["admin"]),
    ("tokens.list", &["admin"]),
    ("tokens.revoke", &["admin"]),
    ("gateway.status", &["admin"]),
];

/// The notification method carrying a streamed turn's progress.
pub const STREAM_NOTIFICATION: &str = "agent.stream.event";

#[derive(Debug)]
pub(crate) struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

impl From<BackendError> for RpcError {
    fn from(e: BackendError) -> RpcError {
        match e {
            BackendError::InvalidParams(m) => RpcError::new(INVALID_PARAMS, m),
            BackendError::Unavailable(m) => {
                RpcError::new(METHOD_NOT_FOUND, format!("Method not available: {m}"))
            }
            BackendError::Failed(m) => RpcError::new(INTERNAL_ERROR, m),
        }
    }
}

pub(crate) fn error_value(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Live notifications to a WebSocket client; absent over HTTP.
pub(crate) type Notify = mpsc::Sender<Value>;

/// Handles one JSON-RPC payload (single or batch). `None`: nothing to answer (notifications).
pub(crate) async fn handle_payload(
    state: &Arc<AppState>,
    caller: &Caller,
    payload: &[u8],
    notify: Option<&Notify>,
) -> Option<Value> {
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(_) => {
            state.metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
            return Some(error_value(Value::Null, PARSE_ERROR, "Parse error"));
        }
    };
    match value {
        Value::Array(items) => {
            let max = state.config.max_batch_size;
            if items.is_empty() || items.len() > max {
                state.metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
                let msg = if items.is_empty() {
                    "Invalid Request: empty batch".to_owned()
                } else {
                    format!(
                        "Invalid Request: batch of {} exceeds maxBatchSize {max}",
                        items.len()
                    )
                };
                return Some(error_value(Value::Null, INVALID_REQUEST, &msg));
            }
            let answers = futures_util::future::join_all(
                items
                    .into_iter()
                    .map(|item| handle_one(state, caller, item, notify)),
            )
            .await;
            let answers: Vec<Value> = answers.into_iter().flatten().collect();
            (!answers.is_empty()).then_some(Value::Array(answers))
        }
        single => handle_one(state, caller, single, notify).await,
    }
}

async fn handle_one(
    state: &Arc<AppState>,
    caller: &Caller,
    request: Value,
    notify: Option<&Notify>,
) -> Option<Value> {
    state.metrics.rpc_calls.fetch_add(1, Ordering::Relaxed);
    let answer = match validate(request) {
        Err((id, e)) => Some(error_value(id, e.code, &e.message)),
        Ok((id, method, params)) => {
            let result = call(state, caller, &method, params, id.as_ref(), notify).await;
            // A notification (no id) gets no answer, success or error.
            id.map(|id| match result {
                Ok(v) => json!({"jsonrpc": "2.0", "id": id, "result": v}),
                Err(e) => error_value(id, e.code, &e.message),
            })
        }
    };
    if answer.as_ref().is_some_and(|a| a.get("error").is_some()) {
        state.metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
    }
    answer
}

type Validated = (Option<Value>, String, Value);

fn validate(request: Value) -> Result<Validated, (Value, RpcError)> {
    let invalid = |id: Value, why: &str| {
        (
            id,
            RpcError::new(INVALID_REQUEST, format!("Invalid Request: {why}")),
        )
    };
    let Value::Object(mut obj) = request else {
        return Err(invalid(Value::Null, "not an object"));
    };
    let id = match obj.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id),
        Some(_) => return Err(invalid(Value::Null, "id must be a string, number or null")),
    };
    let echo = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid(echo, "jsonrpc must be \"2.0\""));
    }
    let Some(Value::String(method)) = obj.remove("method") else {
        return Err(invalid(echo, "method must be a string"));
    };
    let params = obj.remove("params").unwrap_or(Value::Object(Map::new()));
    Ok((id, method, params))
}

fn params<T: DeserializeOwned>(p: Value) -> Result<T, RpcError> {
    if !p.is_object() {
        return Err(RpcError::new(
            INVALID_PARAMS,
            "Invalid params: params must be an object",
        ));
    }
    serde_json::from_value(p)
        .map_err(|e| RpcError::new(INVALID_PARAMS, format!("Invalid params: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TurnParams {
    message: String,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default, alias = "session")]
    session_key: Option<String>,
    #[serde(default)]
    trace_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeParams {
    id: String,
}

fn clamp(limit: Option<u32>, default: u32, max: u32) -> Option<u32> {
    Some(limit.unwrap_or(default).clamp(1, max))
}

async fn call(
    state: &Arc<AppState>,
    caller: &Caller,
    method: &str,
    p: Value,
    id: Option<&Value>,
    notify: Option<&Notify>,
) -> Result<Value, RpcError> {
    let Some((_, scopes)) = METHODS.iter().find(|(m, _)| *m == method) else {
        return Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
        ));
    };
    if !caller.has_any(scopes) {
        return Err(RpcError::new(
            INTERNAL_ERROR,
            format!(
                "Insufficient scope: requires '{}'",
                scopes.first().unwrap_or(&"*")
            ),
        ));
    }
    let backend = &state.backend;
    match method {
        "system.ping" => {
            let _: Empty = params(p)?;
            Ok(json!({"pong": true, "ts": now_ms()}))
        }
        "agent.execute" | "agent.stream" => {
            let tp: TurnParams = params(p)?;
            let request = turn_request(state, caller, tp)?;
            let (agent, session) = (request.agent_id.clone(), request.session.clone());
            state.metrics.turns.fetch_add(1, Ordering::Relaxed);
            if method == "agent.execute" {
                let reply = backend.execute(request).await?;
                return Ok(reply_value(&agent, &session, &reply, None));
            }
            let (tx, mut rx) = mpsc::channel::<TurnEvent>(64);
            let request_id = id.cloned().unwrap_or(Value::Null);
            let sink = notify.cloned();
            let forward = tokio::spawn(async move {
                let mut collected = Vec::new();
                while let Some(event) = rx.recv().await {
                    let ev = serde_json::to_value(&event).unwrap_or(Value::Null);
                    match &sink {
                        Some(out) => {
                            let note = json!({
                                "jsonrpc": "2.0",
                                "method": STREAM_NOTIFICATION,
                                "params": {"requestId": request_id, "event": ev},
                            });
                            // A client gone mid-stream must not fail the turn.
                            let _ = out.send(note).await;
                        }
                        None => collected.push(ev),
                    }
                }
                collected
            });
            let result = backend.stream(request, tx).await;
            let collected = forward.await.unwrap_or_default();
            let reply = result?;
            let events = notify.is_none().then_some(collected);
            Ok(reply_value(&agent, &session, &reply, events))
        }
        "session.list" => Ok(backend.sessions(params::<SessionQuery>(p)?).await?),
        "session.history" => {
            let mut q: HistoryQuery = params(p)?;
            q.limit = clamp(q.limit, 50, 1000);
            Ok(backend.history(q).await?)
        }
        "memory.search" => {
            let mut q: MemoryQuery = params(p)?;
            q.limit = clamp(q.limit, 10, 100);
            Ok(backend.memory_search(q).await?)
        }
        "approvals.list" => {
            let _: Empty = params(p)?;
            Ok(backend.approvals().await?)
        }
        "approvals.resolve" => {
            let mut r: ApprovalResolution = params(p)?;
            r.resolved_by = caller.label();
            Ok(backend.resolve_approval(r).await?)
        }
        "audit.query" => {
            let mut q: AuditQuery = params(p)?;
            q.limit = clamp(q.limit, 50, 1000);
            Ok(backend.audit(q).await?)
        }
        "config.get" => {
            let _: Empty = params(p)?;
            Ok(comis_secrets::redact::redact_config(&backend.config()?))
        }
        "secrets.list" => {
            let _: Empty = params(p)?;
            Ok(json!({"names": backend.secret_names()?}))
        }
        "tokens.list" => {
            let _: Empty = params(p)?;
            Ok(json!({"tokens": state.tokens.list()}))
        }
        "tokens.revoke" => {
            let r: RevokeParams = params(p)?;
            if let Some(persisted) = crate::server::revoke_token(
                &state.tokens,
                backend.as_ref(),
                &state.events,
                &r.id,
                &caller.label(),
            ) {
                Ok(json!({"revoked": r.id, "persisted": persisted}))
            } else {
                Err(RpcError::new(
                    INVALID_PARAMS,
                    format!("Invalid params: no active token '{}'", r.id),
                ))
            }
        }
        "gateway.status" => {
            let _: Empty = params(p)?;
            let m = &state.metrics;
            Ok(json!({
                "gateway": {
                    "address": state.local_addr.to_string(),
                    "tls": state.tls,
                    "startedAt": crate::server::format_ms(state.started_ms),
                    "uptimeMs": now_ms() - state.started_ms,
                    "connections": m.connections_active.load(Ordering::Relaxed),
                    "wsConnections": m.ws_active.load(Ordering::Relaxed),
                    "requests": m.requests.load(Ordering::Relaxed),
                    "authFailures": m.auth_failures.load(Ordering::Relaxed),
                    "tokens": state.tokens.list().iter().filter(|t| !t.revoked).count(),
                },
                "daemon": backend.status(),
            }))
        }
        _ => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
        )),
    }
}

fn turn_request(
    state: &AppState,
    caller: &Caller,
    tp: TurnParams,
) -> Result<TurnRequest, RpcError> {
    let agent = state
        .resolve_agent(tp.agent_id.as_deref())
        .map_err(|e| RpcError::new(INVALID_PARAMS, format!("Invalid params: {e}")))?;
    Ok(TurnRequest {
        agent_id: agent.id,
        session: tp
            .session_key
            .unwrap_or_else(|| format!("gateway:{}", caller.token_id)),
        text: tp.message,
        origin: Origin {
            channel: "gateway".into(),
            sender: caller.label(),
        },
        trace_id: tp.trace_id,
    })
}

fn reply_value(agent: &str, session: &str, reply: &TurnReply, events: Option<Vec<Value>>) -> Value {
    let mut v = serde_json::to_value(reply).unwrap_or_else(|_| json!({}));
    if let Value::Object(obj) = &mut v {
        obj.insert("agentId".into(), agent.into());
        obj.insert("sessionKey".into(), session.into());
        if let Some(events) = events {
            obj.insert("events".into(), Value::Array(events));
        }
    }
    v
}

/// `POST /rpc`.
pub(crate) async fn http_rpc(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let caller = match state.authenticate(&parts, SCOPES) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let limit = state.config.http_body_limit_bytes;
    let bytes = match crate::server::read_body(body, limit).await {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            state.metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
            let msg = format!("Invalid Request: body larger than {limit} bytes");
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(error_value(Value::Null, INVALID_REQUEST, &msg)),
            )
                .into_response();
        }
        Err(r) => return r,
    };
    match handle_payload(&state, &caller, &bytes, None).await {
        Some(v) => axum::Json(v).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}
