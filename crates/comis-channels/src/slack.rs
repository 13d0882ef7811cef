//! Slack adapter: the Events API over HTTP (the gateway mounts [`SlackChannel::handle_webhook`])
//! and `chat.postMessage` for replies, threaded with `thread_ts`.
//!
//! **Guarantees.**
//! - A request is processed only when `X-Slack-Signature` is `v0=` + HMAC-SHA256 of
//!   `v0:<timestamp>:<body>` under the signing secret (compared in constant time),
//!   `X-Slack-Request-Timestamp` is within 5 minutes of now (either way), and the signature has
//!   not been seen within that window (replay cache). The body is bounded before hashing.
//! - `url_verification` is answered only after the signature check.
//! - Message events from bots (`bot_id`), from this app's own user and with a `subtype`
//!   (edits, deletions, joins; `file_share` and `thread_broadcast` excepted) are ignored;
//!   unknown payload and event types are acknowledged and dropped.
//! - `429` answers are waited out per `Retry-After` (capped); replies go out in 4 000-char
//!   chunks, each in the thread of the message answered.
//! - Circuit breaker: after 5 consecutive platform failures (transport errors, 5xx) API
//!   requests fail at once for 30 s, then one is let through to probe.
//!
//! **Does not** run Socket Mode (`mode: socket` is refused), filter senders or dedup (the router
//! does, on `event_id` = `<channel>:<ts>`, which also merges the `message`/`app_mention` pair).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comis_net::GuardedClient;
use comis_secrets::{ExposeSecret, SecretString};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::backoff::{Backoff, CircuitBreaker};
use crate::config::{SLACK_API_BASE, SlackConfig};
use crate::text::{LenUnit, split_message};
use crate::web_common::{
    CallError, MAX_RATE_LIMIT_WAIT, MAX_WEBHOOK_BODY, RunState, WebhookReply, api_breaker,
    bound_text, check_circuit, client_for, header, json_post, record_exchange, retry_rate_limited,
};
use crate::{
    Attachment, BoxFuture, Channel, ChannelError, ErrorsFor, Health, InboundMessage, InboundSender,
    OutboundMessage,
};

const NAME: &str = "slack";
const ERR: ErrorsFor<'static> = ErrorsFor(NAME);
/// Slack's recommended limit for one message (characters).
pub const MAX_MESSAGE_LEN: usize = 4000;
/// How far a request timestamp may be from now.
pub const MAX_SKEW_SECS: i64 = 300;
/// Signatures remembered for replay detection (beyond this, requests are refused with 503).
const REPLAY_CAPACITY: usize = 20_000;

/// The Slack adapter.
#[derive(Debug)]
pub struct SlackChannel {
    token: SecretString,
    signing_secret: SecretString,
    base: String,
    client: GuardedClient,
    backoff: (Duration, Duration),
    state: RunState,
    /// Signatures seen inside the replay window.
    seen: Arc<ReplayCache>,
    bot_user: Mutex<Option<String>>,
    breaker: CircuitBreaker,
}

/// Request signatures seen inside the replay window (signature → request timestamp). An
/// adapter has its own unless given one that outlives it ([`SlackChannel::with_replay_cache`]).
#[derive(Debug, Default)]
pub struct ReplayCache(Mutex<HashMap<String, i64>>);

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl SlackChannel {
    /// An adapter for `config`; `allow_hosts` is `security.ssrf.allowHosts` (the `apiBase`
    /// host is added).
    ///
    /// # Errors
    /// [`ChannelError::Config`]: no `botToken` or `signingSecret`, `mode` other than `http`,
    /// a bad `apiBase`.
    pub fn new(config: &SlackConfig, allow_hosts: &[String]) -> Result<Self, ChannelError> {
        if config.mode != "http" {
            return Err(ERR.config(format!(
                "mode {:?} is not supported; use \"http\" (Events API)",
                config.mode
            )));
        }
        let token = config
            .bot_token
            .clone()
            .ok_or_else(|| ERR.config("botToken is required"))?;
        let signing_secret = config
            .signing_secret
            .clone()
            .ok_or_else(|| ERR.config("signingSecret is required"))?;
        if signing_secret.expose_secret().is_empty() || token.expose_secret().is_empty() {
            return Err(ERR.config("botToken and signingSecret must not be empty"));
        }
        let base = config.api_base.trim_end_matches('/').to_owned();
        let (client, _) = client_for(NAME, &[(&base, SLACK_API_BASE)], allow_hosts)?;
        Ok(Self {
            token,
            signing_secret,
            base,
            client,
            backoff: (Duration::from_secs(1), Duration::from_secs(60)),
            state: RunState::new(),
            seen: Arc::default(),
            bot_user: Mutex::new(None),
            breaker: api_breaker(),
        })
    }

    /// Uses `cache` for replay detection: the daemon keeps one for the process, so a request
    /// accepted before a reload (which builds a new adapter) is still refused after it.
    #[must_use]
    pub fn with_replay_cache(mut self, cache: Arc<ReplayCache>) -> Self {
        self.seen = cache;
        self
    }

    /// Backoff for `auth.test` at start (default 1 s doubling to 60 s).
    #[must_use]
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = (base, max);
        self
    }

    /// Asks `run` to return.
    pub fn stop(&self) {
        self.state.request_stop();
    }

    /// The expected `v0=` signature of `body` at `timestamp`.
    fn expected_signature(&self, timestamp: &str, body: &[u8]) -> Option<String> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.signing_secret.expose_secret().as_bytes()).ok()?;
        mac.update(b"v0:");
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac.update(body);
        Some(format!(
            "v0={}",
            comis_guard::hex::encode(&mac.finalize().into_bytes())
        ))
    }

    /// Checks signature, window and replay; `Err(reply)` says why not.
    fn verify(&self, headers: &[(String, String)], body: &[u8]) -> Result<(), WebhookReply> {
        let unauthorized = |why: &str| WebhookReply::reject(401, why);
        let ts_text = header(headers, "X-Slack-Request-Timestamp")
            .ok_or_else(|| unauthorized("missing X-Slack-Request-Timestamp"))?;
        let ts: i64 = ts_text
            .parse()
            .map_err(|_| unauthorized("malformed X-Slack-Request-Timestamp"))?;
        let now = now_secs();
        if (now - ts).abs() > MAX_SKEW_SECS {
            return Err(unauthorized("stale or future request timestamp"));
        }
        let given = header(headers, "X-Slack-Signature")
            .ok_or_else(|| unauthorized("missing X-Slack-Signature"))?;
        let expected = self
            .expected_signature(ts_text, body)
            .ok_or_else(|| unauthorized("signing secret unusable"))?;
        let ok: bool = given.as_bytes().ct_eq(expected.as_bytes()).into();
        if !ok {
            return Err(unauthorized("bad signature"));
        }
        let mut seen = self.seen.0.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= REPLAY_CAPACITY / 2 {
            seen.retain(|_, t| (now - *t).abs() <= MAX_SKEW_SECS);
        }
        if seen.len() >= REPLAY_CAPACITY {
            return Err(WebhookReply::reject(503, "replay cache full"));
        }
        if seen.insert(expected, ts).is_some() {
            return Err(unauthorized("replayed request"));
        }
        Ok(())
    }

    /// Handles one Events API request (the gateway mounts this at its Slack events path and
    /// answers with the reply).
    pub fn handle_webhook(&self, headers: &[(String, String)], body: &[u8]) -> WebhookReply {
        if body.len() > MAX_WEBHOOK_BODY {
            return WebhookReply::reject(413, "request too large");
        }
        if let Err(reply) = self.verify(headers, body) {
            return reply;
        }
        let Ok(payload) = serde_json::from_slice::<Value>(body) else {
            return WebhookReply::reject(400, "body is not JSON");
        };
        match payload.get("type").and_then(Value::as_str) {
            Some("url_verification") => match payload.get("challenge").and_then(Value::as_str) {
                Some(c) if c.len() <= 1024 => WebhookReply::json(&json!({ "challenge": c })),
                _ => WebhookReply::reject(400, "bad challenge"),
            },
            Some("event_callback") => {
                if !self.state.is_running() {
                    return WebhookReply::reject(503, "channel is not running");
                }
                let Some(msg) = self.normalize(&payload) else {
                    return WebhookReply::ok();
                };
                match self.state.try_deliver(msg) {
                    Ok(()) => WebhookReply::ok(),
                    Err(reply) => reply,
                }
            }
            // app_rate_limited and anything newer: acknowledged, nothing to do.
            _ => WebhookReply::ok(),
        }
    }

    fn normalize(&self, payload: &Value) -> Option<InboundMessage> {
        let event: Event = serde_json::from_value(payload.get("event")?.clone()).ok()?;
        if !matches!(event.kind.as_str(), "message" | "app_mention") {
            return None;
        }
        if event.bot_id.is_some() {
            return None;
        }
        if let Some(sub) = &event.subtype
            && !matches!(sub.as_str(), "file_share" | "thread_broadcast")
        {
            return None;
        }
        let user = event.user?;
        let own = self
            .bot_user
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if own.as_deref() == Some(user.as_str()) {
            return None;
        }
        let channel = event.channel?;
        let ts = event.ts?;
        let attachments: Vec<Attachment> = event
            .files
            .unwrap_or_default()
            .into_iter()
            .take(20)
            .map(|f| Attachment {
                name: f.name.unwrap_or_else(|| "file".into()),
                mime: f.mimetype,
                size: f.size,
            })
            .collect();
        let raw = event.text.unwrap_or_default();
        if raw.is_empty() && attachments.is_empty() {
            return None;
        }
        let (text, cut) = bound_text(&raw);
        let mut metadata = vec![("event_type".to_owned(), event.kind.clone())];
        if let Some(team) = payload.get("team_id").and_then(Value::as_str) {
            metadata.push(("team".into(), team.to_owned()));
        }
        if cut {
            metadata.push(("truncated".into(), "true".into()));
        }
        Some(InboundMessage {
            channel: NAME.into(),
            event_id: format!("{channel}:{ts}"),
            direct: event.channel_type.as_deref() == Some("im") || event.kind == "app_mention",
            chat: channel,
            thread: event.thread_ts,
            sender: user,
            sender_aliases: Vec::new(),
            text,
            attachments,
            metadata,
        })
    }

    /// POSTs `body` to Web API `method`; `Ok(response)` when Slack says `ok`.
    async fn call(&self, method: &str, body: &Value) -> Result<Value, CallError> {
        let req = json_post(
            format!("{}/{method}", self.base),
            body,
            Some(format!("Bearer {}", self.token.expose_secret())),
        );
        check_circuit(&self.breaker, NAME).map_err(CallError::Other)?;
        let resp = self.client.fetch(req).await;
        record_exchange(&self.breaker, &resp);
        let resp = resp.map_err(|e| CallError::Other(ERR.transport(e.to_string())))?;
        if resp.status == 429 {
            let secs = resp
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
            return Err(CallError::RateLimited(Duration::from_secs(secs)));
        }
        let parsed: Value = serde_json::from_slice(&resp.body).map_err(|_| {
            CallError::Other(ERR.protocol(format!(
                "{method}: HTTP {} with a body that is not JSON",
                resp.status
            )))
        })?;
        if parsed.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(parsed);
        }
        let error = parsed
            .get("error")
            .and_then(Value::as_str)
            .map(|e| comis_guard::unicode::display_safe(e, 100))
            .unwrap_or_else(|| format!("HTTP {}", resp.status));
        let e = ERR.api(format!("{method}: {error}"));
        if matches!(
            error.as_str(),
            "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked" | "token_expired"
        ) {
            Err(CallError::Fatal(e))
        } else {
            Err(CallError::Other(e))
        }
    }

    async fn call_with_retry(&self, method: &str, body: &Value) -> Result<Value, ChannelError> {
        retry_rate_limited(NAME, || self.call(method, body)).await
    }

    async fn run_inner(&self) -> Result<(), ChannelError> {
        let mut backoff = Backoff::new(self.backoff.0, self.backoff.1);
        // auth.test proves the token and names our own user, whose messages we ignore.
        loop {
            match self.call("auth.test", &json!({})).await {
                Ok(v) => {
                    let user = v.get("user_id").and_then(Value::as_str).map(str::to_owned);
                    *self.bot_user.lock().unwrap_or_else(PoisonError::into_inner) = user;
                    break;
                }
                Err(CallError::Fatal(e)) => return Err(e),
                Err(CallError::RateLimited(d)) => self.pause(d.min(MAX_RATE_LIMIT_WAIT)).await,
                Err(CallError::Other(_)) => {
                    self.state.set_health(Health::Reconnecting);
                    self.pause(backoff.next_delay()).await;
                }
            }
            if self.state.is_stopping() {
                return Ok(());
            }
        }
        self.state.set_health(Health::Connected);
        self.state.stopped().await;
        Ok(())
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            () = self.state.stopped() => {}
            () = tokio::time::sleep(d) => {}
        }
    }

    async fn send_chunks(&self, message: OutboundMessage) -> Result<(), ChannelError> {
        let valid_id = |s: &str| {
            !s.is_empty()
                && s.len() <= 32
                && s.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        };
        if !valid_id(&message.chat) {
            return Err(ERR.protocol("chat is not a Slack channel id"));
        }
        let thread = message
            .thread
            .as_deref()
            .filter(|t| t.len() <= 32 && t.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
        for piece in split_message(&message.text, MAX_MESSAGE_LEN, LenUnit::Chars) {
            let mut body = json!({ "channel": message.chat, "text": piece });
            if let Some(t) = thread {
                body["thread_ts"] = json!(t);
            }
            self.call_with_retry("chat.postMessage", &body).await?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct File {
    name: Option<String>,
    mimetype: Option<String>,
    size: Option<u64>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    subtype: Option<String>,
    bot_id: Option<String>,
    user: Option<String>,
    channel: Option<String>,
    channel_type: Option<String>,
    text: Option<String>,
    ts: Option<String>,
    thread_ts: Option<String>,
    files: Option<Vec<File>>,
}

impl Channel for SlackChannel {
    fn name(&self) -> &str {
        NAME
    }

    fn max_message_len(&self) -> usize {
        MAX_MESSAGE_LEN
    }

    fn run(
        self: Arc<Self>,
        inbound: InboundSender,
    ) -> BoxFuture<'static, Result<(), ChannelError>> {
        Box::pin(async move { self.state.supervise(inbound, self.run_inner()).await })
    }

    fn send<'a>(&'a self, message: OutboundMessage) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(self.send_chunks(message))
    }

    fn health(&self) -> Health {
        self.state.health()
    }
}
