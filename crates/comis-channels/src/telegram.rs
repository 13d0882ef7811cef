//! Telegram Bot API adapter: long polling (`getUpdates`) or webhook mode, `sendMessage`
//! chunked at 4 096 UTF-16 units, inline keyboards for approval requests, callback queries.
//!
//! **Guarantees.**
//! - Webhook requests are accepted only with the configured `X-Telegram-Bot-Api-Secret-Token`,
//!   compared in constant time; webhook mode refuses to start without a secret.
//! - Every update is parsed on its own: a malformed or unknown one is skipped (its offset
//!   still acknowledged, so it is not redelivered forever) and the rest are delivered.
//! - Bots (including this one) are ignored; inbound text is bounded.
//! - Replies are plain text (no `parse_mode`), so model output cannot smuggle markup.
//! - `retry_after` in a 429 answer is honoured (up to a cap); the bot token never appears in
//!   an error message (it is part of every Bot API URL, so errors are scrubbed).
//! - Circuit breaker: after 5 consecutive platform failures (transport errors, 5xx) API
//!   requests fail at once for 30 s, then one is let through to probe.
//!
//! **Does not** filter senders, dedup or check callback signatures (router and approval
//! module do); files are reported as attachment metadata, never downloaded.

use std::sync::Arc;
use std::time::Duration;

use comis_net::GuardedClient;
use comis_secrets::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::backoff::{Backoff, CircuitBreaker};
use crate::config::{TELEGRAM_API_BASE, TelegramConfig};
use crate::text::{LenUnit, split_message};
use crate::web_common::{
    CallError, MAX_RATE_LIMIT_WAIT, MAX_WEBHOOK_BODY, RunState, WebhookReply, api_breaker,
    bound_text, check_circuit, client_for, header, json_post, record_exchange, retry_rate_limited,
};
use crate::{
    Attachment, BoxFuture, Channel, ChannelError, ErrorsFor, Health, InboundMessage, InboundSender,
    OutboundMessage,
};

const NAME: &str = "telegram";
const ERR: ErrorsFor<'static> = ErrorsFor(NAME);
/// Telegram's limit for one message (UTF-16 code units).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Telegram's limit for `callback_data` (bytes).
pub const MAX_CALLBACK_DATA: usize = 64;
/// The header Telegram echoes the webhook secret in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// One inline-keyboard button; `callback_data` is opaque (signed by the approval module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineButton {
    pub text: String,
    pub callback_data: String,
}

/// The Telegram adapter.
#[derive(Debug)]
pub struct TelegramChannel {
    token: SecretString,
    webhook_url: Option<String>,
    webhook_secret: Option<SecretString>,
    base: String,
    client: GuardedClient,
    poll_timeout_secs: u32,
    backoff: (Duration, Duration),
    state: RunState,
    breaker: CircuitBreaker,
}

impl TelegramChannel {
    /// An adapter for `config`; `allow_hosts` is `security.ssrf.allowHosts` (the `apiBase`
    /// host is added to it).
    ///
    /// # Errors
    /// [`ChannelError::Config`]: no `botToken`, a webhook URL without a valid secret, a bad
    /// `apiBase`.
    pub fn new(config: &TelegramConfig, allow_hosts: &[String]) -> Result<Self, ChannelError> {
        let token = config
            .bot_token
            .clone()
            .ok_or_else(|| ERR.config("botToken is required"))?;
        let t = token.expose_secret();
        if t.is_empty() || t.contains(['/', '?', '#']) || t.chars().any(char::is_whitespace) {
            return Err(ERR.config("botToken is malformed"));
        }
        if let Some(url) = &config.webhook_url {
            let secret = config
                .webhook_secret
                .as_ref()
                .ok_or_else(|| ERR.config("webhookUrl needs webhookSecret"))?;
            let s = secret.expose_secret();
            let valid = (1..=256).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                return Err(ERR.config("webhookSecret must be 1-256 of A-Z a-z 0-9 _ -"));
            }
            if !url.starts_with("https://") {
                return Err(ERR.config("webhookUrl must be https"));
            }
        }
        let base = config.api_base.trim_end_matches('/').to_owned();
        let (client, _) = client_for(NAME, &[(&base, TELEGRAM_API_BASE)], allow_hosts)?;
        Ok(Self {
            token,
            webhook_url: config.webhook_url.clone(),
            webhook_secret: config.webhook_secret.clone(),
            base,
            client,
            poll_timeout_secs: 25,
            backoff: (Duration::from_secs(1), Duration::from_secs(60)),
            state: RunState::new(),
            breaker: api_breaker(),
        })
    }

    /// The long-poll timeout sent to `getUpdates` (default 25 s, under the client's 30 s).
    #[must_use]
    pub fn with_poll_timeout(mut self, secs: u32) -> Self {
        self.poll_timeout_secs = secs.min(25);
        self
    }

    /// Reconnect backoff (default 1 s doubling to 60 s).
    #[must_use]
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = (base, max);
        self
    }

    /// Asks `run` to return.
    pub fn stop(&self) {
        self.state.request_stop();
    }

    /// Error text with the token scrubbed (Bot API URLs carry it in the path).
    fn scrub(&self, text: &str) -> String {
        text.replace(self.token.expose_secret(), "<token>")
    }

    /// Calls `method` with a JSON body; `Ok(result)` when Telegram says `ok`.
    async fn call(&self, method: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!("{}/bot{}/{method}", self.base, self.token.expose_secret());
        let req = json_post(url, body, None);
        check_circuit(&self.breaker, NAME).map_err(CallError::Other)?;
        let resp = self.client.fetch(req).await;
        record_exchange(&self.breaker, &resp);
        let resp = resp.map_err(|e| CallError::Other(ERR.transport(self.scrub(&e.to_string()))))?;
        let parsed: Value = serde_json::from_slice(&resp.body).map_err(|_| {
            CallError::Other(ERR.protocol(format!(
                "{method}: HTTP {} with a body that is not JSON",
                resp.status
            )))
        })?;
        if parsed.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(parsed.get("result").cloned().unwrap_or(Value::Null));
        }
        let code = parsed
            .get("error_code")
            .and_then(Value::as_u64)
            .unwrap_or(u64::from(resp.status));
        let desc = parsed
            .get("description")
            .and_then(Value::as_str)
            .map(|d| comis_guard::unicode::display_safe(d, 200))
            .unwrap_or_default();
        if code == 429 {
            let secs = parsed
                .pointer("/parameters/retry_after")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            return Err(CallError::RateLimited(Duration::from_secs(secs)));
        }
        let e = ERR.api(format!("{method}: {code} {}", self.scrub(&desc)));
        if code == 401 || code == 404 {
            Err(CallError::Fatal(e))
        } else {
            Err(CallError::Other(e))
        }
    }

    /// [`call`](Self::call), waiting out rate limits a few times.
    async fn call_with_retry(&self, method: &str, body: &Value) -> Result<Value, ChannelError> {
        retry_rate_limited(NAME, || self.call(method, body)).await
    }

    /// Handles one webhook request (the gateway mounts this at its Telegram webhook path and
    /// answers with the reply). Checks the secret header in constant time, parses the update
    /// and delivers it.
    pub fn handle_webhook(&self, headers: &[(String, String)], body: &[u8]) -> WebhookReply {
        let Some(expected) = &self.webhook_secret else {
            return WebhookReply::reject(404, "webhook mode is not configured");
        };
        let given = header(headers, SECRET_HEADER).unwrap_or("");
        let ok: bool = given
            .as_bytes()
            .ct_eq(expected.expose_secret().as_bytes())
            .into();
        if !ok {
            return WebhookReply::reject(401, "bad or missing secret token");
        }
        if body.len() > MAX_WEBHOOK_BODY {
            return WebhookReply::reject(413, "update too large");
        }
        if !self.state.is_running() {
            return WebhookReply::reject(503, "channel is not running");
        }
        let Ok(update) = serde_json::from_slice::<Value>(body) else {
            return WebhookReply::reject(400, "update is not JSON");
        };
        let Some(msg) = self.normalize(&update) else {
            return WebhookReply::ok();
        };
        if let (Some(id), Ok(rt)) = (callback_id(&update), tokio::runtime::Handle::try_current()) {
            // Acknowledge the button press off the request path; failure only leaves the
            // button's spinner running on the user's side.
            let body = json!({ "callback_query_id": id });
            let client = self.client.clone();
            let url = format!(
                "{}/bot{}/answerCallbackQuery",
                self.base,
                self.token.expose_secret()
            );
            rt.spawn(async move {
                let req = json_post(url, &body, None);
                let _ = client.fetch(req).await;
            });
        }
        match self.state.try_deliver(msg) {
            Ok(()) => WebhookReply::ok(),
            Err(reply) => reply,
        }
    }

    /// One update as an inbound message; `None` for updates that carry nothing for an agent
    /// (bots, service messages, unknown kinds, malformed shapes).
    fn normalize(&self, update: &Value) -> Option<InboundMessage> {
        if let Some(cb) = update.get("callback_query") {
            let cb: CallbackQuery = serde_json::from_value(cb.clone()).ok()?;
            if cb.from.is_bot {
                return None;
            }
            let data = cb.data?;
            let chat = cb.message.as_ref().map(|m| m.chat.id.to_string())?;
            return Some(InboundMessage {
                channel: NAME.into(),
                event_id: format!("cb:{}", cb.id),
                chat,
                thread: None,
                sender: cb.from.id.to_string(),
                sender_aliases: cb.from.username.into_iter().collect(),
                text: bound_text(&data).0,
                direct: cb
                    .message
                    .as_ref()
                    .is_some_and(|m| m.chat.kind == "private"),
                attachments: Vec::new(),
                metadata: vec![("kind".into(), "callback_query".into())],
            });
        }
        let m: Message = serde_json::from_value(update.get("message")?.clone()).ok()?;
        let from = m.from?;
        if from.is_bot {
            return None;
        }
        let mut attachments = Vec::new();
        if let Some(d) = m.document {
            attachments.push(Attachment {
                name: d.file_name.unwrap_or_else(|| "document".into()),
                mime: d.mime_type,
                size: d.file_size,
            });
        }
        if let Some(largest) = m
            .photo
            .and_then(|p| p.into_iter().max_by_key(|s| s.file_size))
        {
            attachments.push(Attachment {
                name: "photo.jpg".into(),
                mime: Some("image/jpeg".into()),
                size: largest.file_size,
            });
        }
        let raw = m.text.or(m.caption).unwrap_or_default();
        if raw.is_empty() && attachments.is_empty() {
            return None;
        }
        let (text, cut) = bound_text(&raw);
        let mut metadata = vec![("chat_type".into(), m.chat.kind.clone())];
        if let Some(title) = m.chat.title {
            metadata.push(("chat_title".into(), title));
        }
        let name = [from.first_name, from.last_name]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if !name.is_empty() {
            metadata.push(("sender_name".into(), name));
        }
        if cut {
            metadata.push(("truncated".into(), "true".into()));
        }
        Some(InboundMessage {
            channel: NAME.into(),
            event_id: format!("{}:{}", m.chat.id, m.message_id),
            chat: m.chat.id.to_string(),
            thread: m.message_thread_id.map(|t| t.to_string()),
            sender: from.id.to_string(),
            sender_aliases: from.username.into_iter().collect(),
            text,
            direct: m.chat.kind == "private",
            attachments,
            metadata,
        })
    }

    async fn run_inner(&self, inbound: &InboundSender) -> Result<(), ChannelError> {
        let mut backoff = Backoff::new(self.backoff.0, self.backoff.1);
        if let (Some(url), Some(secret)) = (&self.webhook_url, &self.webhook_secret) {
            // Webhook mode: register, then updates arrive through `handle_webhook`.
            loop {
                let body = json!({
                    "url": url,
                    "secret_token": secret.expose_secret(),
                    "allowed_updates": ["message", "callback_query"],
                });
                match self.call("setWebhook", &body).await {
                    Ok(_) => break,
                    Err(CallError::Fatal(e)) => return Err(e),
                    Err(CallError::RateLimited(d)) => self.pause(d).await,
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
            return Ok(());
        }
        // Polling mode: a webhook left registered would make getUpdates fail with 409.
        if let Err(CallError::Fatal(e)) = self.call("deleteWebhook", &json!({})).await {
            return Err(e);
        }
        let mut offset: i64 = 0;
        while !self.state.is_stopping() {
            let body = json!({
                "offset": offset,
                "timeout": self.poll_timeout_secs,
                "allowed_updates": ["message", "callback_query"],
            });
            let result = tokio::select! {
                () = self.state.stopped() => return Ok(()),
                r = self.call("getUpdates", &body) => r,
            };
            let updates = match result {
                Ok(v) => v,
                Err(CallError::Fatal(e)) => return Err(e),
                Err(CallError::RateLimited(d)) => {
                    self.pause(d.min(MAX_RATE_LIMIT_WAIT)).await;
                    continue;
                }
                Err(CallError::Other(_)) => {
                    self.state.set_health(Health::Reconnecting);
                    self.pause(backoff.next_delay()).await;
                    continue;
                }
            };
            self.state.set_health(Health::Connected);
            backoff.reset();
            let Some(list) = updates.as_array() else {
                self.pause(backoff.next_delay()).await;
                continue;
            };
            for update in list {
                let Some(id) = update.get("update_id").and_then(Value::as_i64) else {
                    continue;
                };
                offset = offset.max(id.saturating_add(1));
                if let Some(msg) = self.normalize(update) {
                    if let Some(cb) = callback_id(update) {
                        let _ = self
                            .call("answerCallbackQuery", &json!({"callback_query_id": cb}))
                            .await;
                    }
                    if inbound.send(msg).await.is_err() {
                        return Err(ChannelError::Stopped {
                            channel: NAME.into(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Sleeps `d` unless a stop comes first.
    async fn pause(&self, d: Duration) {
        tokio::select! {
            () = self.state.stopped() => {}
            () = tokio::time::sleep(d) => {}
        }
    }

    /// Sends `message` with an inline keyboard (one button per row) under its last chunk.
    ///
    /// # Errors
    /// [`ChannelError::Protocol`] for a bad chat id or a `callback_data` that is empty or over
    /// 64 bytes; [`ChannelError::Api`]/[`ChannelError::Transport`] when Telegram refuses.
    pub async fn send_with_buttons(
        &self,
        message: OutboundMessage,
        buttons: &[InlineButton],
    ) -> Result<(), ChannelError> {
        for b in buttons {
            if b.callback_data.is_empty() || b.callback_data.len() > MAX_CALLBACK_DATA {
                return Err(ERR.protocol("callback_data must be 1-64 bytes"));
            }
            if b.text.is_empty() {
                return Err(ERR.protocol("button text is empty"));
            }
        }
        let keyboard: Vec<Value> = buttons
            .iter()
            .map(|b| json!([{"text": b.text, "callback_data": b.callback_data}]))
            .collect();
        self.send_chunks(message, Some(json!({ "inline_keyboard": keyboard })))
            .await
    }

    async fn send_chunks(
        &self,
        message: OutboundMessage,
        markup: Option<Value>,
    ) -> Result<(), ChannelError> {
        let chat = chat_id(&message.chat)?;
        let pieces = split_message(&message.text, MAX_MESSAGE_LEN, LenUnit::Utf16);
        let last = pieces.len().saturating_sub(1);
        for (i, piece) in pieces.into_iter().enumerate() {
            let mut body = json!({ "chat_id": chat, "text": piece });
            if let Some(t) = message
                .thread
                .as_deref()
                .and_then(|t| t.parse::<i64>().ok())
            {
                body["message_thread_id"] = json!(t);
            }
            let reply_to = message
                .in_reply_to
                .as_deref()
                .and_then(|r| r.rsplit(':').next())
                .and_then(|r| r.parse::<i64>().ok());
            if let (0, Some(id)) = (i, reply_to) {
                body["reply_parameters"] =
                    json!({ "message_id": id, "allow_sending_without_reply": true });
            }
            if let (true, Some(m)) = (i == last, &markup) {
                body["reply_markup"] = m.clone();
            }
            self.call_with_retry("sendMessage", &body).await?;
        }
        Ok(())
    }
}

/// A chat id as Telegram takes it: a number, or `@channelusername`.
fn chat_id(chat: &str) -> Result<Value, ChannelError> {
    if let Ok(n) = chat.parse::<i64>() {
        return Ok(json!(n));
    }
    let name = chat.strip_prefix('@').unwrap_or("");
    if (5..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Ok(json!(chat));
    }
    Err(ERR.protocol("chat is not a Telegram chat id"))
}

fn callback_id(update: &Value) -> Option<&str> {
    update.pointer("/callback_query/id").and_then(Value::as_str)
}

#[derive(Deserialize)]
struct User {
    id: i64,
    #[serde(default)]
    is_bot: bool,
    username: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
    title: Option<String>,
}

#[derive(Deserialize)]
struct Document {
    file_name: Option<String>,
    mime_type: Option<String>,
    file_size: Option<u64>,
}

#[derive(Deserialize)]
struct PhotoSize {
    file_size: Option<u64>,
}

#[derive(Deserialize)]
struct Message {
    message_id: i64,
    message_thread_id: Option<i64>,
    from: Option<User>,
    chat: Chat,
    text: Option<String>,
    caption: Option<String>,
    document: Option<Document>,
    photo: Option<Vec<PhotoSize>>,
}

#[derive(Deserialize)]
struct CallbackMessage {
    chat: Chat,
}

#[derive(Deserialize)]
struct CallbackQuery {
    id: String,
    from: User,
    message: Option<CallbackMessage>,
    data: Option<String>,
}

impl Channel for TelegramChannel {
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
        Box::pin(async move {
            self.state
                .supervise(inbound.clone(), self.run_inner(&inbound))
                .await
        })
    }

    fn send<'a>(&'a self, message: OutboundMessage) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(self.send_chunks(message, None))
    }

    fn health(&self) -> Health {
        self.state.health()
    }
}
