//! The OpenAI-compatible surface: `POST /v1/chat/completions` (JSON or SSE) and
//! `GET /v1/models[/{id}]`, for tools that speak only OpenAI's wire format.
//!
//! Guarantees:
//! - Scope `api` or `rpc` is required. `model` selects the agent (its id, or its model name;
//!   `default` picks the default agent); an unknown model is a 404 `model_not_found`.
//! - Only the last user message is the turn's input: the agent keeps its own history per
//!   session. System messages reach the agent only wrapped as external content (source `api`),
//!   never as instructions.
//! - Sessions from the `x-session-key` header or the `user` field are namespaced `api:` so a
//!   client cannot write into another channel's conversation.
//! - Streaming sends `role`, then reply text only as the runtime releases it (already through
//!   the output guard), then `finish_reason`, optional usage, and `data: [DONE]`.
//!
//! Not guaranteed: OpenAI features beyond text (tools, images, logprobs, n > 1) — ignored.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use comis_agent::runtime::{Origin, Stopped, TurnEvent, TurnReply, TurnRequest};
use comis_guard::wrap::{SourceKind, WrapOptions};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::backend::AgentInfo;
use crate::server::{AppState, default_agent, now_ms, read_body};

const API_SCOPES: &[&str] = &["api", "rpc"];

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

impl InMessage {
    fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => parts
                .iter()
                .filter(|p| p.kind == "text")
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

fn openai_error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    (
        status,
        axum::Json(
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
        ),
    )
        .into_response()
}

fn invalid(message: &str) -> Response {
    openai_error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        None,
    )
}

fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        // Ids only correlate chunks of one answer; time is unique enough without the OS source.
        return format!("{prefix}{}", now_ms());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

fn select_agent(agents: Vec<AgentInfo>, model: &str) -> Option<AgentInfo> {
    if model == "default" {
        return default_agent(agents);
    }
    if let Some(pos) = agents.iter().position(|a| a.id == model) {
        return agents.into_iter().nth(pos);
    }
    agents.into_iter().find(|a| a.model == model)
}

fn finish_reason(reply: &TurnReply) -> &'static str {
    match reply.stopped {
        Some(Stopped::StepLimit | Stopped::BudgetExceeded) => "length",
        _ => "stop",
    }
}

fn usage(reply: &TurnReply) -> Value {
    json!({
        "prompt_tokens": reply.usage.input_tokens,
        "completion_tokens": reply.usage.output_tokens,
        "total_tokens": reply.usage.total(),
    })
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let caller = match state.authenticate(&parts, API_SCOPES) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let bytes = match read_body(body, state.config.http_body_limit_bytes).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let chat: ChatRequest = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => return invalid(&format!("Invalid request body: {e}")),
    };
    let Some(agent) = select_agent(state.backend.agents(), &chat.model) else {
        return openai_error(
            StatusCode::NOT_FOUND,
            &format!("The model '{}' does not exist", chat.model),
            "invalid_request_error",
            Some("model_not_found"),
        );
    };
    let Some(last_user) = chat.messages.iter().rev().find(|m| m.role == "user") else {
        return invalid("messages must contain a user message");
    };
    let mut text = String::new();
    for m in chat
        .messages
        .iter()
        .filter(|m| m.role == "system" || m.role == "developer")
    {
        let opts = WrapOptions::new(SourceKind::Api).subject("system message from the API caller");
        match comis_guard::wrap::wrap(&m.text(), &opts) {
            Ok(w) => {
                text.push_str(&w.text);
                text.push('\n');
            }
            Err(e) => {
                return openai_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &e.to_string(),
                    "server_error",
                    None,
                );
            }
        }
    }
    text.push_str(&last_user.text());

    let session_hint = parts
        .headers
        .get("x-session-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(chat.user.clone());
    let session = match session_hint {
        Some(s) if !s.is_empty() => format!("api:{s}"),
        _ => format!("api:{}", caller.token_id),
    };
    let request = TurnRequest {
        agent_id: agent.id.clone(),
        session,
        text,
        origin: Origin {
            channel: "gateway".into(),
            sender: caller.label(),
        },
        trace_id: None,
    };
    state.metrics.turns.fetch_add(1, Ordering::Relaxed);
    let id = random_id("chatcmpl-");
    let created = now_ms() / 1000;
    if !chat.stream {
        return match state.backend.execute(request).await {
            Ok(reply) => axum::Json(json!({
                "id": id,
                "object": "chat.completion",
                "created": created,
                "model": chat.model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": finish_reason(&reply),
                }],
                "usage": usage(&reply),
            }))
            .into_response(),
            Err(e) => openai_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &e.to_string(),
                "server_error",
                None,
            ),
        };
    }

    let include_usage = chat.stream_options.is_some_and(|o| o.include_usage);
    let (body_tx, body_rx) = mpsc::channel::<bytes::Bytes>(64);
    let backend = state.backend.clone();
    let model = chat.model;
    tokio::spawn(async move {
        let chunk = |delta: Value, finish: Option<&str>| {
            sse(&json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }))
        };
        if body_tx
            .send(chunk(json!({"role": "assistant", "content": ""}), None))
            .await
            .is_err()
        {
            return;
        }
        let (tx, mut rx) = mpsc::channel::<TurnEvent>(64);
        let forward = {
            let body_tx = body_tx.clone();
            async move {
                let mut sent = false;
                while let Some(event) = rx.recv().await {
                    if let TurnEvent::Text { text } = event
                        && !text.is_empty()
                    {
                        sent = true;
                        let _ = body_tx.send(chunk(json!({"content": text}), None)).await;
                    }
                }
                sent
            }
        };
        let (result, streamed) = tokio::join!(backend.stream(request, tx), forward);
        match result {
            Ok(reply) => {
                if !streamed && !reply.text.is_empty() {
                    let _ = body_tx
                        .send(chunk(json!({"content": reply.text}), None))
                        .await;
                }
                let _ = body_tx
                    .send(chunk(json!({}), Some(finish_reason(&reply))))
                    .await;
                if include_usage {
                    let _ = body_tx
                        .send(sse(&json!({
                            "id": id, "object": "chat.completion.chunk", "created": created,
                            "model": model, "choices": [], "usage": usage(&reply),
                        })))
                        .await;
                }
            }
            Err(e) => {
                let _ = body_tx
                    .send(sse(
                        &json!({"error": {"message": e.to_string(), "type": "server_error"}}),
                    ))
                    .await;
            }
        }
        let _ = body_tx
            .send(bytes::Bytes::from_static(b"data: [DONE]\n\n"))
            .await;
    });
    let stream = futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

fn sse(v: &Value) -> bytes::Bytes {
    bytes::Bytes::from(format!("data: {v}\n\n"))
}

fn model_entry(a: &AgentInfo, created: i64) -> Value {
    json!({
        "id": a.id, "object": "model", "created": created, "owned_by": "comis",
        "provider": a.provider, "model": a.model, "context_window": 200_000,
    })
}

/// `GET /v1/models`.
pub(crate) async fn models(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Err(r) = state.authenticate(&parts, API_SCOPES) {
        return r;
    }
    let created = state.started_ms / 1000;
    let data: Vec<Value> = state
        .backend
        .agents()
        .iter()
        .map(|a| model_entry(a, created))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /v1/models/{id}`.
pub(crate) async fn model(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    if let Err(r) = state.authenticate(&parts, API_SCOPES) {
        return r;
    }
    match state.backend.agents().iter().find(|a| a.id == id) {
        Some(a) => axum::Json(model_entry(a, state.started_ms / 1000)).into_response(),
        None => openai_error(
            StatusCode::NOT_FOUND,
            &format!("The model '{id}' does not exist"),
            "invalid_request_error",
            Some("model_not_found"),
        ),
    }
}
