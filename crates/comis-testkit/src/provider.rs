//! [`ProviderServer`]: a scripted LLM provider on loopback that speaks the real wire format.
//!
//! Guarantees: every request is counted and kept (headers and body) before anything else
//! happens, so a test can assert "zero requests reached the provider". A request that the real
//! API would refuse (missing header, missing field, tool results that answer no tool call,
//! bad tool name) gets the real API's status and error shape, not a scripted reply. Streams
//! are sent one event per HTTP chunk (or re-chunked at a fixed byte size), so clients see
//! partial input exactly as over a real network.
//!
//! Does not: enforce every limit of the real services (token counts, image formats), or speak
//! TLS (tests open the SSRF policy for `127.0.0.1` as an operator would).

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::channel::{Channel, Sender};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The wire format a [`ProviderServer`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `POST /v1/messages`, SSE.
    Anthropic,
    /// `POST /v1/chat/completions`, SSE ending in `data: [DONE]`.
    OpenAi,
    /// `POST /api/chat`, NDJSON.
    Ollama,
}

impl Wire {
    fn path(self) -> &'static str {
        match self {
            Wire::Anthropic => "/v1/messages",
            Wire::OpenAi => "/v1/chat/completions",
            Wire::Ollama => "/api/chat",
        }
    }
}

/// One block of a scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Text(String),
    /// A tool call; its JSON arguments are streamed in pieces of the reply's chunk size.
    ToolCall {
        id: String,
        name: String,
        input: Value,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// One event's JSON is cut short (the rest of the stream follows normally).
    Malformed,
    /// The stream ends before its final event (`message_stop`, `[DONE]`, `done: true`).
    Truncated,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Answer {
        blocks: Vec<Block>,
        fault: Fault,
    },
    Status {
        status: u16,
        retry_after: Option<String>,
        message: String,
    },
}

/// One scripted reply. Build with [`Reply::text`], [`Reply::tool_call`] or
/// [`Reply::status`], then adjust.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    kind: Kind,
    usage: (u64, u64),
    /// Characters per text / JSON delta.
    chunk_chars: usize,
    /// Re-chunk the whole body at this many bytes per HTTP chunk (0 = one event per chunk).
    wire_chunk_bytes: usize,
    delay: Duration,
    stop_reason: Option<String>,
    /// Stop after this many HTTP chunks until [`ProviderServer::release`].
    pause_after: Option<usize>,
}

impl Reply {
    fn of(kind: Kind) -> Reply {
        Reply {
            kind,
            usage: (10, 5),
            chunk_chars: 8,
            wire_chunk_bytes: 0,
            delay: Duration::ZERO,
            stop_reason: None,
            pause_after: None,
        }
    }

    /// A text answer, streamed in deltas of the chunk size (default 8 characters).
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::of(Kind::Answer {
            blocks: vec![Block::Text(text.into())],
            fault: Fault::None,
        })
    }

    /// An answer that is one tool call.
    pub fn tool_call(id: impl Into<String>, name: impl Into<String>, input: Value) -> Reply {
        Reply::of(Kind::Answer {
            blocks: vec![Block::ToolCall {
                id: id.into(),
                name: name.into(),
                input,
            }],
            fault: Fault::None,
        })
    }

    /// An answer made of these blocks, in order.
    pub fn blocks(blocks: Vec<Block>) -> Reply {
        Reply::of(Kind::Answer {
            blocks,
            fault: Fault::None,
        })
    }

    /// An error answer with the wire format's error body (`429`, `500`, `529`, `401`, …).
    pub fn status(status: u16) -> Reply {
        Reply::of(Kind::Status {
            status,
            retry_after: None,
            message: format!("scripted status {status}"),
        })
    }

    /// Sets the `Retry-After` header of a status reply (seconds, or any text to test parsing).
    #[must_use]
    pub fn retry_after(mut self, value: impl Into<String>) -> Reply {
        if let Kind::Status { retry_after, .. } = &mut self.kind {
            *retry_after = Some(value.into());
        }
        self
    }

    /// Sets the message of a status reply's error body.
    #[must_use]
    pub fn message(mut self, text: impl Into<String>) -> Reply {
        if let Kind::Status { message, .. } = &mut self.kind {
            *message = text.into();
        }
        self
    }

    /// Makes one event of the stream invalid JSON.
    #[must_use]
    pub fn malformed(mut self) -> Reply {
        if let Kind::Answer { fault, .. } = &mut self.kind {
            *fault = Fault::Malformed;
        }
        self
    }

    /// Ends the stream before its final event.
    #[must_use]
    pub fn truncated(mut self) -> Reply {
        if let Kind::Answer { fault, .. } = &mut self.kind {
            *fault = Fault::Truncated;
        }
        self
    }

    /// Waits this long before sending the response headers.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Sends the first `chunks` HTTP chunks, then waits for [`ProviderServer::release`]
    /// before the rest: lets a test see deltas arrive while the answer is still open.
    #[must_use]
    pub fn pause_after(mut self, chunks: usize) -> Reply {
        self.pause_after = Some(chunks);
        self
    }

    /// Characters per text delta and per piece of a tool call's JSON (at least 1).
    #[must_use]
    pub fn chunk_chars(mut self, n: usize) -> Reply {
        self.chunk_chars = n.max(1);
        self
    }

    /// Re-chunks the body at `n` bytes per HTTP chunk, splitting lines (and UTF-8 sequences)
    /// across chunks.
    #[must_use]
    pub fn wire_chunk_bytes(mut self, n: usize) -> Reply {
        self.wire_chunk_bytes = n;
        self
    }

    /// Token usage reported (input, output); default (10, 5).
    #[must_use]
    pub fn usage(mut self, input: u64, output: u64) -> Reply {
        self.usage = (input, output);
        self
    }

    /// The wire's stop reason, verbatim (default: the tool or end-of-turn reason).
    #[must_use]
    pub fn stop_reason(mut self, reason: impl Into<String>) -> Reply {
        self.stop_reason = Some(reason.into());
        self
    }
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Debug)]
struct Shared {
    wire: Wire,
    queue: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Option<Reply>>,
    requests: Mutex<Vec<Received>>,
    count: AtomicUsize,
    api_key: Mutex<Option<String>>,
    release: Arc<tokio::sync::Semaphore>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not turn every later assertion into a poison error.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running scripted provider. Stops accepting connections when dropped.
#[derive(Debug)]
pub struct ProviderServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for ProviderServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl ProviderServer {
    /// An Anthropic Messages API server. Requires `x-api-key` (any value unless
    /// [`expect_api_key`](Self::expect_api_key) names one) and `anthropic-version`.
    ///
    /// # Errors
    /// When `127.0.0.1:0` cannot be bound.
    pub async fn anthropic() -> std::io::Result<ProviderServer> {
        ProviderServer::start(Wire::Anthropic).await
    }

    /// An OpenAI Chat Completions server (keyless like a local vLLM unless
    /// [`expect_api_key`](Self::expect_api_key) is set).
    ///
    /// # Errors
    /// When `127.0.0.1:0` cannot be bound.
    pub async fn openai() -> std::io::Result<ProviderServer> {
        ProviderServer::start(Wire::OpenAi).await
    }

    /// An Ollama `/api/chat` server.
    ///
    /// # Errors
    /// When `127.0.0.1:0` cannot be bound.
    pub async fn ollama() -> std::io::Result<ProviderServer> {
        ProviderServer::start(Wire::Ollama).await
    }

    /// A server speaking `wire` on a fresh loopback port.
    ///
    /// # Errors
    /// When `127.0.0.1:0` cannot be bound.
    pub async fn start(wire: Wire) -> std::io::Result<ProviderServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            wire,
            queue: Mutex::new(VecDeque::new()),
            fallback: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            api_key: Mutex::new(None),
            release: Arc::new(tokio::sync::Semaphore::new(0)),
        });
        let s = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = Arc::clone(&s);
                        async move { Ok::<_, Infallible>(handle(&s, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(ProviderServer {
            shared,
            addr,
            accept,
        })
    }

    /// The wire format spoken.
    pub fn wire(&self) -> Wire {
        self.shared.wire
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `baseUrl` to configure: `http://127.0.0.1:PORT` for Anthropic and Ollama,
    /// `http://127.0.0.1:PORT/v1` for OpenAI (as OpenAI-compatible servers are configured).
    pub fn base_url(&self) -> String {
        match self.shared.wire {
            Wire::OpenAi => format!("http://{}/v1", self.addr),
            Wire::Anthropic | Wire::Ollama => format!("http://{}", self.addr),
        }
    }

    /// Requires exactly this API key (401 with the wire's error body otherwise).
    pub fn expect_api_key(&self, key: impl Into<String>) {
        *lock(&self.shared.api_key) = Some(key.into());
    }

    /// Queues a reply; replies are played in order, one per valid request.
    pub fn push(&self, reply: Reply) {
        lock(&self.shared.queue).push_back(reply);
    }

    /// The reply played when the queue is empty (default: a 500 saying the script ran out).
    pub fn set_fallback(&self, reply: Reply) {
        *lock(&self.shared.fallback) = Some(reply);
    }

    /// How many requests reached the server (valid or not).
    pub fn request_count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.shared.requests).clone()
    }

    /// Lets one paused stream (see [`Reply::pause_after`]) go on.
    pub fn release(&self) {
        self.shared.release.add_permits(1);
    }

    /// Replies still queued.
    pub fn pending(&self) -> usize {
        lock(&self.shared.queue).len()
    }
}

type Body = Channel<Bytes, Infallible>;

fn full(status: u16, headers: &[(&str, String)], body: Vec<u8>) -> Response<Body> {
    let (mut tx, rx) = Channel::new(2);
    if !body.is_empty() {
        // Capacity 2 and one frame: never full.
        let _ = tx.try_send(hyper::body::Frame::data(Bytes::from(body)));
    }
    drop(tx);
    let mut r = Response::new(rx);
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            r.headers_mut().append(name, value);
        }
    }
    r
}

fn error_json(wire: Wire, status: u16, message: &str) -> Value {
    match wire {
        Wire::Anthropic => {
            let kind = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        Wire::OpenAi => {
            let (kind, code) = match status {
                401 => ("invalid_request_error", json!("invalid_api_key")),
                429 => ("requests", json!("rate_limit_exceeded")),
                s if s >= 500 => ("server_error", Value::Null),
                _ => ("invalid_request_error", Value::Null),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        Wire::Ollama => json!({"error": message}),
    }
}

fn error_response(
    wire: Wire,
    status: u16,
    message: &str,
    extra: &[(&str, String)],
) -> Response<Body> {
    let mut headers = vec![("content-type", "application/json".to_owned())];
    headers.extend(extra.iter().cloned());
    full(
        status,
        &headers,
        error_json(wire, status, message).to_string().into_bytes(),
    )
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let received = Received {
        method,
        path,
        headers,
        body,
    };
    lock(&shared.requests).push(received.clone());
    shared.count.fetch_add(1, Ordering::SeqCst);
    let wire = shared.wire;

    if received.path != wire.path() {
        return error_response(wire, 404, "not found", &[]);
    }
    if received.method != "POST" {
        return error_response(wire, 405, "method not allowed", &[]);
    }
    let expected = lock(&shared.api_key).clone();
    if let Some(message) = auth_problem(wire, &received, expected.as_deref()) {
        return error_response(wire, 401, &message, &[]);
    }
    if wire == Wire::Anthropic && received.header("anthropic-version").is_none() {
        return error_response(wire, 400, "anthropic-version: header is required", &[]);
    }
    let Ok(body) = serde_json::from_slice::<Value>(&received.body) else {
        return error_response(wire, 400, "the request body is not valid JSON", &[]);
    };
    let problem = match wire {
        Wire::Anthropic => validate_anthropic(&body),
        Wire::OpenAi => validate_openai(&body),
        Wire::Ollama => validate_ollama(&body),
    };
    if let Err(message) = problem {
        return error_response(wire, 400, &message, &[]);
    }

    let next = lock(&shared.queue).pop_front();
    let reply = match next.or_else(|| lock(&shared.fallback).clone()) {
        Some(r) => r,
        None => return error_response(wire, 500, "testkit: the reply script ran out", &[]),
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    match &reply.kind {
        Kind::Status {
            status,
            retry_after,
            message,
        } => {
            let extra: Vec<(&str, String)> = retry_after
                .iter()
                .map(|v| ("retry-after", v.clone()))
                .collect();
            error_response(wire, *status, message, &extra)
        }
        Kind::Answer { blocks, fault } => {
            let model = body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("model")
                .to_owned();
            let include_usage = body
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(
                // Ollama streams unless told not to; the others do not.
                wire == Wire::Ollama,
            );
            let events = match wire {
                Wire::Anthropic => anthropic_events(&reply, blocks, &model),
                Wire::OpenAi => openai_events(&reply, blocks, &model, include_usage),
                Wire::Ollama => ollama_events(&reply, blocks, &model),
            };
            let events = apply_fault(wire, events, *fault);
            if !streaming {
                // Non-streaming answers are not scripted; say so like a server would.
                return error_response(wire, 400, "testkit: only stream: true is scripted", &[]);
            }
            let pause = reply.pause_after.map(|n| (n, Arc::clone(&shared.release)));
            stream_response(wire, events, reply.wire_chunk_bytes, pause)
        }
    }
}

fn auth_problem(wire: Wire, r: &Received, expected: Option<&str>) -> Option<String> {
    match wire {
        Wire::Anthropic => {
            let got = r.header("x-api-key");
            match (got, expected) {
                (None, _) => Some("x-api-key header is required".to_owned()),
                (Some(g), Some(e)) if g != e => Some("invalid x-api-key".to_owned()),
                _ => None,
            }
        }
        Wire::OpenAi => {
            let expected = expected?;
            let got = r
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "));
            match got {
                Some(g) if g == expected => None,
                Some(_) => Some("Incorrect API key provided.".to_owned()),
                None => Some(
                    "You didn't provide an API key. You need to provide your API key in an \
                     Authorization header using Bearer auth."
                        .to_owned(),
                ),
            }
        }
        Wire::Ollama => None,
    }
}

/// Providers accept only these characters in tool names (and at most 64/128 of them).
fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn validate_anthropic(body: &Value) -> Result<(), String> {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    if model.is_empty() {
        return Err("model: Field required".into());
    }
    match body.get("max_tokens").and_then(Value::as_u64) {
        Some(n) if n >= 1 => {}
        _ => return Err("max_tokens: Field required".into()),
    }
    if let Some(system) = body.get("system") {
        let ok = system.is_string()
            || system.as_array().is_some_and(|a| {
                a.iter().all(|b| {
                    b.get("type").and_then(Value::as_str) == Some("text")
                        && b.get("text").is_some_and(Value::is_string)
                })
            });
        if !ok {
            return Err("system: Input should be a valid string or list of text blocks".into());
        }
    }
    if let Some(tools) = body.get("tools") {
        let tools = tools
            .as_array()
            .ok_or("tools: Input should be a valid list")?;
        for (i, t) in tools.iter().enumerate() {
            let name = t.get("name").and_then(Value::as_str).unwrap_or("");
            if !valid_tool_name(name) {
                return Err(format!(
                    "tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
                ));
            }
            if t.pointer("/input_schema/type").and_then(Value::as_str) != Some("object") {
                return Err(format!(
                    "tools.{i}.custom.input_schema.type: Field required"
                ));
            }
        }
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: Field required")?;
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    let mut open_tool_uses: HashSet<String> = HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if i == 0 && role != "user" {
            return Err("messages: first message must use the \"user\" role".into());
        }
        let blocks: Vec<Value> = match m.get("content") {
            Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
            Some(Value::Array(a)) => a.clone(),
            _ => return Err(format!("messages.{i}.content: Field required")),
        };
        let mut answered = HashSet::new();
        let mut uses = HashSet::new();
        for (j, b) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            match (role, b.get("type").and_then(Value::as_str)) {
                (_, Some("text")) => {
                    if !b.get("text").is_some_and(Value::is_string) {
                        return Err(format!("{at}.text: Field required"));
                    }
                }
                ("assistant", Some("tool_use")) => {
                    let id = b.get("id").and_then(Value::as_str).unwrap_or("");
                    let name = b.get("name").and_then(Value::as_str).unwrap_or("");
                    if id.is_empty() || !valid_tool_name(name) {
                        return Err(format!("{at}: tool_use needs an id and a valid name"));
                    }
                    if !b.get("input").is_some_and(Value::is_object) {
                        return Err(format!("{at}.input: Input should be a valid dictionary"));
                    }
                    uses.insert(id.to_owned());
                }
                ("user", Some("tool_result")) => {
                    let id = b.get("tool_use_id").and_then(Value::as_str).unwrap_or("");
                    if !open_tool_uses.contains(id) {
                        return Err(format!(
                            "{at}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. \
                             Each `tool_result` block must have a corresponding `tool_use` block \
                             in the previous message."
                        ));
                    }
                    let content_ok = match b.get("content") {
                        None | Some(Value::String(_)) | Some(Value::Array(_)) => true,
                        Some(_) => false,
                    };
                    if !content_ok {
                        return Err(format!("{at}.content: Input should be a string or a list"));
                    }
                    answered.insert(id.to_owned());
                }
                (_, other) => {
                    return Err(format!(
                        "{at}.type: unexpected block type {other:?} for {role}"
                    ));
                }
            }
        }
        match role {
            "user" => {
                if let Some(missing) = open_tool_uses.iter().find(|id| !answered.contains(*id)) {
                    return Err(format!(
                        "messages.{i}: `tool_use` ids were found without `tool_result` blocks \
                         immediately after: {missing}"
                    ));
                }
                open_tool_uses.clear();
            }
            "assistant" => {
                if !open_tool_uses.is_empty() {
                    return Err(format!(
                        "messages.{i}: `tool_use` blocks must be followed by a user message with \
                         `tool_result` blocks"
                    ));
                }
                open_tool_uses = uses;
            }
            _ => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                ));
            }
        }
    }
    if !open_tool_uses.is_empty() && messages.len() > 1 {
        // A trailing assistant tool_use is a prefill; the real API refuses it as well.
        return Err("the final assistant message has unanswered `tool_use` blocks".into());
    }
    Ok(())
}

fn validate_openai(body: &Value) -> Result<(), String> {
    if body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        return Err("you must provide a model parameter".into());
    }
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if body.get("stream_options").is_some() && !stream {
        return Err(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(),
        );
    }
    if let Some(tools) = body.get("tools") {
        let tools = tools
            .as_array()
            .ok_or("Invalid type for 'tools': expected an array")?;
        for (i, t) in tools.iter().enumerate() {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(format!("Missing required parameter: 'tools[{i}].type'."));
            }
            let name = t
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !valid_tool_name(name) {
                return Err(format!(
                    "Invalid 'tools[{i}].function.name': string does not match pattern. Expected \
                     a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
                ));
            }
            if let Some(p) = t.pointer("/function/parameters")
                && !p.is_object()
            {
                return Err(format!(
                    "Invalid 'tools[{i}].function.parameters': expected an object"
                ));
            }
        }
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("Missing required parameter: 'messages'.")?;
    if messages.is_empty() {
        return Err(
            "Invalid 'messages': empty array. Expected an array with minimum length 1".into(),
        );
    }
    let mut open: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "tool" && !open.is_empty() {
            return Err(format!(
                "An assistant message with 'tool_calls' must be followed by tool messages \
                 responding to each 'tool_call_id'. The following tool_call_ids did not have \
                 response messages: {}",
                open.join(", ")
            ));
        }
        let content = m.get("content");
        match role {
            "system" | "developer" | "user" => {
                let ok = matches!(content, Some(Value::String(_)) | Some(Value::Array(_)));
                if !ok {
                    return Err(format!(
                        "Missing required parameter: 'messages[{i}].content'."
                    ));
                }
            }
            "assistant" => {
                let calls = m.get("tool_calls").and_then(Value::as_array);
                let has_content = matches!(content, Some(Value::String(_)) | Some(Value::Array(_)));
                if !has_content && calls.is_none_or(Vec::is_empty) {
                    return Err(format!(
                        "Invalid 'messages[{i}]': an assistant message needs content or tool_calls"
                    ));
                }
                for (j, c) in calls.into_iter().flatten().enumerate() {
                    let id = c.get("id").and_then(Value::as_str).unwrap_or("");
                    let name = c
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let args_ok = c
                        .pointer("/function/arguments")
                        .is_some_and(Value::is_string);
                    if id.is_empty()
                        || c.get("type").and_then(Value::as_str) != Some("function")
                        || !valid_tool_name(name)
                        || !args_ok
                    {
                        return Err(format!("Invalid 'messages[{i}].tool_calls[{j}]'"));
                    }
                    open.push(id.to_owned());
                }
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                let Some(pos) = open.iter().position(|o| o == id) else {
                    return Err(format!(
                        "Invalid parameter: messages with role 'tool' must be a response to a \
                         preceeding message with 'tool_calls'. (messages[{i}], tool_call_id {id:?})"
                    ));
                };
                open.remove(pos);
                if !matches!(content, Some(Value::String(_)) | Some(Value::Array(_))) {
                    return Err(format!(
                        "Missing required parameter: 'messages[{i}].content'."
                    ));
                }
            }
            other => {
                return Err(format!(
                    "Invalid value: '{other}'. Supported values are: 'system', 'assistant', \
                     'user', 'tool', and 'developer'."
                ));
            }
        }
    }
    Ok(())
}

fn validate_ollama(body: &Value) -> Result<(), String> {
    if body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        return Err("model is required".into());
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages is required")?;
    for m in messages {
        match m.get("role").and_then(Value::as_str) {
            Some("system" | "user" | "assistant" | "tool") => {}
            _ => return Err("invalid role".into()),
        }
        if !m.get("content").is_none_or(Value::is_string) {
            return Err("json: cannot unmarshal array into Go struct field Message.messages.content of type string".into());
        }
        for c in m
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !c
                .pointer("/function/arguments")
                .is_some_and(Value::is_object)
            {
                return Err("json: cannot unmarshal string into Go struct field ToolCallFunction.messages.tool_calls.function.arguments of type api.ToolCallFunctionArguments".into());
            }
        }
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        for t in tools {
            if t.get("type").and_then(Value::as_str) != Some("function")
                || !valid_tool_name(
                    t.pointer("/function/name")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                )
            {
                return Err("invalid tool definition".into());
            }
        }
    }
    Ok(())
}

/// Splits `s` into pieces of `n` characters (never inside a UTF-8 sequence).
fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

fn has_tool_call(blocks: &[Block]) -> bool {
    blocks.iter().any(|b| matches!(b, Block::ToolCall { .. }))
}

/// One event on the wire, and whether it is the final "end" event.
#[derive(Debug, Clone)]
struct Event {
    text: String,
    terminal: bool,
}

fn sse(name: Option<&str>, data: &Value) -> Event {
    let text = match name {
        Some(n) => format!("event: {n}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    };
    Event {
        text,
        terminal: false,
    }
}

fn anthropic_events(reply: &Reply, blocks: &[Block], model: &str) -> Vec<Event> {
    let (input, output) = reply.usage;
    let mut out = vec![sse(
        Some("message_start"),
        &json!({"type": "message_start", "message": {
            "id": "msg_testkit", "type": "message", "role": "assistant", "content": [],
            "model": model, "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": 1}}}),
    )];
    out.push(sse(Some("ping"), &json!({"type": "ping"})));
    for (index, block) in blocks.iter().enumerate() {
        match block {
            Block::Text(text) => {
                out.push(sse(
                    Some("content_block_start"),
                    &json!({"type": "content_block_start", "index": index,
                            "content_block": {"type": "text", "text": ""}}),
                ));
                for p in pieces(text, reply.chunk_chars) {
                    out.push(sse(
                        Some("content_block_delta"),
                        &json!({"type": "content_block_delta", "index": index,
                                "delta": {"type": "text_delta", "text": p}}),
                    ));
                }
            }
            Block::ToolCall { id, name, input } => {
                out.push(sse(
                    Some("content_block_start"),
                    &json!({"type": "content_block_start", "index": index,
                            "content_block": {"type": "tool_use", "id": id, "name": name,
                                              "input": {}}}),
                ));
                for p in pieces(&input.to_string(), reply.chunk_chars) {
                    out.push(sse(
                        Some("content_block_delta"),
                        &json!({"type": "content_block_delta", "index": index,
                                "delta": {"type": "input_json_delta", "partial_json": p}}),
                    ));
                }
            }
        }
        out.push(sse(
            Some("content_block_stop"),
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    let stop = reply.stop_reason.clone().unwrap_or_else(|| {
        if has_tool_call(blocks) {
            "tool_use"
        } else {
            "end_turn"
        }
        .to_owned()
    });
    out.push(sse(
        Some("message_delta"),
        &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"output_tokens": output}}),
    ));
    let mut end = sse(Some("message_stop"), &json!({"type": "message_stop"}));
    end.terminal = true;
    out.push(end);
    out
}

fn openai_events(reply: &Reply, blocks: &[Block], model: &str, include_usage: bool) -> Vec<Event> {
    let chunk = |delta: Value, finish: Value| {
        sse(
            None,
            &json!({"id": "chatcmpl-testkit", "object": "chat.completion.chunk", "created": 0,
                    "model": model, "system_fingerprint": null,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null,
                                 "finish_reason": finish}]}),
        )
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let mut call_index = 0usize;
    for block in blocks {
        match block {
            Block::Text(text) => {
                for p in pieces(text, reply.chunk_chars) {
                    out.push(chunk(json!({"content": p}), Value::Null));
                }
            }
            Block::ToolCall { id, name, input } => {
                out.push(chunk(
                    json!({"tool_calls": [{"index": call_index, "id": id, "type": "function",
                                           "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ));
                for p in pieces(&input.to_string(), reply.chunk_chars) {
                    out.push(chunk(
                        json!({"tool_calls": [{"index": call_index,
                                               "function": {"arguments": p}}]}),
                        Value::Null,
                    ));
                }
                call_index += 1;
            }
        }
    }
    let stop = reply.stop_reason.clone().unwrap_or_else(|| {
        if has_tool_call(blocks) {
            "tool_calls"
        } else {
            "stop"
        }
        .to_owned()
    });
    out.push(chunk(json!({}), json!(stop)));
    if include_usage {
        let (input, output) = reply.usage;
        out.push(sse(
            None,
            &json!({"id": "chatcmpl-testkit", "object": "chat.completion.chunk", "created": 0,
                    "model": model, "choices": [],
                    "usage": {"prompt_tokens": input, "completion_tokens": output,
                              "total_tokens": input + output}}),
        ));
    }
    out.push(Event {
        text: "data: [DONE]\n\n".to_owned(),
        terminal: true,
    });
    out
}

fn ollama_events(reply: &Reply, blocks: &[Block], model: &str) -> Vec<Event> {
    let line = |v: Value| Event {
        text: format!("{v}\n"),
        terminal: false,
    };
    let at = "2026-01-01T00:00:00Z";
    let mut out = Vec::new();
    for block in blocks {
        match block {
            Block::Text(text) => {
                for p in pieces(text, reply.chunk_chars) {
                    out.push(line(json!({"model": model, "created_at": at,
                        "message": {"role": "assistant", "content": p}, "done": false})));
                }
            }
            // Ollama sends a tool call whole, arguments as an object, without an id.
            Block::ToolCall { name, input, .. } => {
                out.push(line(json!({"model": model, "created_at": at,
                    "message": {"role": "assistant", "content": "",
                                "tool_calls": [{"function": {"name": name, "arguments": input}}]},
                    "done": false})));
            }
        }
    }
    let (input, output) = reply.usage;
    let stop = reply
        .stop_reason
        .clone()
        .unwrap_or_else(|| "stop".to_owned());
    let mut end = line(json!({"model": model, "created_at": at,
        "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": stop,
        "total_duration": 1000, "load_duration": 10, "prompt_eval_count": input,
        "prompt_eval_duration": 100, "eval_count": output, "eval_duration": 500}));
    end.terminal = true;
    out.push(end);
    out
}

fn apply_fault(wire: Wire, mut events: Vec<Event>, fault: Fault) -> Vec<Event> {
    match fault {
        Fault::None => events,
        Fault::Truncated => {
            // Keep the first half (at least one event), never the terminal one.
            let keep = (events.len() / 2)
                .max(1)
                .min(events.len().saturating_sub(1));
            events.truncate(keep);
            events
        }
        Fault::Malformed => {
            let bad = match wire {
                Wire::Anthropic => {
                    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"unterminated\n\n"
                }
                Wire::OpenAi => {
                    "data: {\"id\":\"chatcmpl-testkit\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"unterminated\n\n"
                }
                Wire::Ollama => {
                    "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"unterminated\n"
                }
            };
            let at = 1.min(events.len());
            events.insert(
                at,
                Event {
                    text: bad.to_owned(),
                    terminal: false,
                },
            );
            events
        }
    }
}

fn stream_response(
    wire: Wire,
    events: Vec<Event>,
    wire_chunk_bytes: usize,
    pause: Option<(usize, Arc<tokio::sync::Semaphore>)>,
) -> Response<Body> {
    let content_type = match wire {
        Wire::Anthropic | Wire::OpenAi => "text/event-stream; charset=utf-8",
        Wire::Ollama => "application/x-ndjson",
    };
    let (tx, rx): (Sender<Bytes, Infallible>, Body) = Channel::new(16);
    let frames: Vec<Bytes> = if wire_chunk_bytes == 0 {
        events
            .into_iter()
            .map(|e| Bytes::from(e.text.into_bytes()))
            .collect()
    } else {
        let all: Vec<u8> = events
            .into_iter()
            .flat_map(|e| e.text.into_bytes())
            .collect();
        all.chunks(wire_chunk_bytes)
            .map(Bytes::copy_from_slice)
            .collect()
    };
    tokio::spawn(async move {
        let mut tx = tx;
        for (i, f) in frames.into_iter().enumerate() {
            if let Some((n, gate)) = &pause
                && i == *n
                && gate.acquire().await.map(|p| p.forget()).is_err()
            {
                return;
            }
            if tx.send_data(f).await.is_err() {
                return;
            }
            // Give the connection a chance to flush, so chunks arrive as separate reads.
            tokio::task::yield_now().await;
        }
    });
    let mut r = Response::new(rx);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn pieces_never_split_a_character() {
        assert_eq!(pieces("héllo", 2), ["hé", "ll", "o"]);
        assert_eq!(pieces("", 3), Vec::<String>::new());
    }

    #[test]
    fn anthropic_validation_matches_the_api() {
        let ok = json!({"model": "m", "max_tokens": 10,
                        "messages": [{"role": "user", "content": "hi"}]});
        assert!(validate_anthropic(&ok).is_ok());
        let no_max = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        assert!(
            validate_anthropic(&no_max)
                .unwrap_err()
                .contains("max_tokens")
        );
        let orphan = json!({"model": "m", "max_tokens": 10, "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "r"}]}]});
        assert!(
            validate_anthropic(&orphan)
                .unwrap_err()
                .contains("tool_use_id")
        );
        let unanswered = json!({"model": "m", "max_tokens": 10, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "a", "input": {}}]},
            {"role": "user", "content": "ignored your call"}]});
        assert!(
            validate_anthropic(&unanswered)
                .unwrap_err()
                .contains("without `tool_result`")
        );
        let bad_tool = json!({"model": "m", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "file.write", "input_schema": {"type": "object"}}]});
        assert!(
            validate_anthropic(&bad_tool)
                .unwrap_err()
                .contains("pattern")
        );
    }

    #[test]
    fn openai_validation_matches_the_api() {
        let ok = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        assert!(validate_openai(&ok).is_ok());
        let opts = json!({"model": "m", "stream_options": {"include_usage": true},
                          "messages": [{"role": "user", "content": "hi"}]});
        assert!(
            validate_openai(&opts)
                .unwrap_err()
                .contains("stream_options")
        );
        let orphan = json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "c1", "content": "r"}]});
        assert!(
            validate_openai(&orphan)
                .unwrap_err()
                .contains("role 'tool'")
        );
        let unanswered = json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]},
            {"role": "user", "content": "next"}]});
        assert!(validate_openai(&unanswered).unwrap_err().contains("c1"));
    }

    #[test]
    fn faults_never_send_the_terminal_event() {
        let reply = Reply::text("hello world");
        let blocks = vec![Block::Text("hello world".into())];
        let events = anthropic_events(&reply, &blocks, "m");
        assert!(events.last().unwrap().terminal);
        let cut = apply_fault(Wire::Anthropic, events.clone(), Fault::Truncated);
        assert!(cut.iter().all(|e| !e.terminal));
        let bad = apply_fault(Wire::Anthropic, events, Fault::Malformed);
        assert!(bad.iter().any(|e| e.text.contains("unterminated")));
    }
}
