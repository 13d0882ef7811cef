//! Discord adapter: the Gateway WebSocket for inbound `MESSAGE_CREATE`, REST
//! `POST /channels/{id}/messages` for replies in 2 000-char chunks.
//!
//! **Guarantees.**
//! - The gateway connection goes through `comis_net::ws` (SSRF-checked, DNS-pinned), also for
//!   the `resume_gateway_url` Discord hands out.
//! - Gateway protocol: op 10 Hello → heartbeats every `heartbeat_interval`, the first after a
//!   random fraction of it; a heartbeat not acknowledged (op 11) before the next is due closes
//!   the connection and resumes; op 1 is answered at once; op 2 Identify with the configured
//!   intents, op 6 Resume with session id and last sequence after a disconnect; op 7 Reconnect
//!   resumes; op 9 Invalid Session resumes or re-identifies (as `d` says) after 1–5 s; close
//!   codes 4004 and 4010–4014 (bad token, shard, intents) stop the channel as failed.
//! - Every gateway message is parsed on its own; malformed, unknown or oversized ones are
//!   dropped without ending the session. Messages from bots, webhooks and this bot are ignored.
//! - REST: requests wait while a channel's bucket is exhausted (`X-RateLimit-Remaining: 0`,
//!   `X-RateLimit-Reset-After`), a 429's `retry_after` is waited out (capped), replies never
//!   ping anyone (`allowed_mentions: {parse: []}`), channel ids must be snowflakes.
//! - Circuit breaker: after 5 consecutive platform failures (transport errors, 5xx) API
//!   requests fail at once for 30 s, then one is let through to probe.
//!
//! **Does not** shard, compress the gateway, or download attachments (metadata only); does not
//! filter senders or dedup (the router does, on the message id).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use comis_net::ws::{WsConfig, WsConnection, WsMessage};
use comis_net::{GuardedClient, SsrfPolicy};
use comis_secrets::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::backoff::{Backoff, CircuitBreaker, jitter};
use crate::config::{DISCORD_API_BASE, DISCORD_GATEWAY_URL, DiscordConfig};
use crate::text::{LenUnit, split_message};
use crate::web_common::{
    MAX_RATE_LIMIT_RETRIES, MAX_RATE_LIMIT_WAIT, RunState, api_breaker, bound_text, check_circuit,
    client_for, is_numeric_id, json_post, record_exchange,
};
use crate::{
    Attachment, BoxFuture, Channel, ChannelError, ErrorsFor, Health, InboundMessage, InboundSender,
    OutboundMessage,
};

const NAME: &str = "discord";
const ERR: ErrorsFor<'static> = ErrorsFor(NAME);
/// Discord's limit for one message (characters).
pub const MAX_MESSAGE_LEN: usize = 2000;
/// Reported in Identify's `properties.os`.
const OS: &str = if cfg!(target_os = "linux") {
    "linux"
} else {
    "unix"
};
/// How long to wait for Hello after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a gateway session stands between connections.
#[derive(Debug, Default, Clone)]
struct Session {
    id: Option<String>,
    seq: Option<u64>,
    resume_url: Option<String>,
    own_user: Option<String>,
}

/// How one connection ended.
enum Ended {
    Stopped,
    /// Reconnect; resume when `true` and a session exists.
    Reconnect {
        resume: bool,
        wait: Option<Duration>,
    },
}

/// The Discord adapter.
#[derive(Debug)]
pub struct DiscordChannel {
    token: SecretString,
    base: String,
    gateway_url: String,
    intents: u64,
    client: GuardedClient,
    policy: SsrfPolicy,
    ws_config: WsConfig,
    backoff: (Duration, Duration),
    state: RunState,
    session: Mutex<Session>,
    /// Channel id → when its bucket refills.
    buckets: tokio::sync::Mutex<HashMap<String, Instant>>,
    breaker: CircuitBreaker,
}

/// The gateway URL with the version and encoding we speak (Discord's resume URL comes bare).
fn with_gateway_query(url: &str) -> String {
    if url.contains('?') {
        url.to_owned()
    } else {
        format!("{}/?v=10&encoding=json", url.trim_end_matches('/'))
    }
}

/// Seconds as a float header or JSON value → a duration (negative/NaN → zero).
fn secs_f64(v: f64) -> Duration {
    if v.is_finite() && v > 0.0 {
        Duration::from_secs_f64(v.min(86_400.0))
    } else {
        Duration::ZERO
    }
}

impl DiscordChannel {
    /// An adapter for `config`; `allow_hosts` is `security.ssrf.allowHosts` (the `apiBase`
    /// and `gatewayUrl` hosts are added).
    ///
    /// # Errors
    /// [`ChannelError::Config`]: no `botToken`, a bad `apiBase` or `gatewayUrl`.
    pub fn new(config: &DiscordConfig, allow_hosts: &[String]) -> Result<Self, ChannelError> {
        let token = config
            .bot_token
            .clone()
            .ok_or_else(|| ERR.config("botToken is required"))?;
        let base = config.api_base.trim_end_matches('/').to_owned();
        let (client, policy) = client_for(
            NAME,
            &[
                (&base, DISCORD_API_BASE),
                (&config.gateway_url, DISCORD_GATEWAY_URL),
            ],
            allow_hosts,
        )?;
        Ok(Self {
            token,
            base,
            gateway_url: with_gateway_query(&config.gateway_url),
            intents: config.intents,
            client,
            policy,
            ws_config: WsConfig::default(),
            backoff: (Duration::from_secs(1), Duration::from_secs(60)),
            state: RunState::new(),
            session: Mutex::new(Session::default()),
            buckets: tokio::sync::Mutex::new(HashMap::new()),
            breaker: api_breaker(),
        })
    }

    /// Reconnect backoff (default 1 s doubling to 60 s); the Invalid Session wait is
    /// `base` plus up to `4·base`.
    #[must_use]
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = (base, max);
        self
    }

    /// Asks `run` to return (the gateway is closed with 1000).
    pub fn stop(&self) {
        self.state.request_stop();
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn run_inner(&self, inbound: &InboundSender) -> Result<(), ChannelError> {
        let mut backoff = Backoff::new(self.backoff.0, self.backoff.1);
        loop {
            if self.state.is_stopping() {
                return Ok(());
            }
            let url = {
                let s = self.session();
                match (&s.id, s.seq, &s.resume_url) {
                    (Some(_), Some(_), Some(u)) => with_gateway_query(u),
                    _ => self.gateway_url.clone(),
                }
            };
            let wait = match self.connection(&url, inbound, &mut backoff).await {
                Ok(Ended::Stopped) => return Ok(()),
                Ok(Ended::Reconnect { resume, wait }) => {
                    if !resume {
                        let mut s = self.session();
                        s.id = None;
                        s.seq = None;
                        s.resume_url = None;
                    }
                    wait.unwrap_or_else(|| backoff.next_delay())
                }
                Err(e @ ChannelError::Config { .. }) => return Err(e),
                Err(_) => backoff.next_delay(),
            };
            self.state.set_health(Health::Reconnecting);
            self.pause(wait).await;
        }
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            () = self.state.stopped() => {}
            () = tokio::time::sleep(d) => {}
        }
    }

    /// One gateway connection, from connect to its end. `Err(Config)` is fatal (bad token,
    /// intents, …); other errors reconnect.
    async fn connection(
        &self,
        url: &str,
        inbound: &InboundSender,
        backoff: &mut Backoff,
    ) -> Result<Ended, ChannelError> {
        let mut ws = comis_net::ws::connect(url, &self.policy, &self.ws_config)
            .await
            .map_err(|e| ERR.transport(e.to_string()))?;
        let interval = tokio::select! {
            () = self.state.stopped() => {
                ws.close(1000, "shutdown").await;
                return Ok(Ended::Stopped);
            }
            r = tokio::time::timeout(HELLO_TIMEOUT, wait_hello(&mut ws)) => {
                r.map_err(|_| ERR.protocol("no Hello from the gateway"))??
            }
        };
        let mut interval = interval;
        let (resume, session_id, seq) = {
            let s = self.session();
            (s.id.is_some() && s.seq.is_some(), s.id.clone(), s.seq)
        };
        let hello_reply = if resume {
            json!({"op": 6, "d": {
                "token": self.token.expose_secret(),
                "session_id": session_id,
                "seq": seq,
            }})
        } else {
            json!({"op": 2, "d": {
                "token": self.token.expose_secret(),
                "intents": self.intents,
                "properties": {"os": OS, "browser": "comis", "device": "comis"},
            }})
        };
        send(&mut ws, &hello_reply).await?;
        let mut next_beat = Instant::now() + jitter(interval);
        let mut acked = true;
        // A message the daemon has not taken yet. While one waits, the gateway is not read
        // (back-pressure) but heartbeats go on, and the ack watchdog is paused: the stall is
        // ours, not the connection's.
        let mut pending: Option<InboundMessage> = None;
        loop {
            let msg = tokio::select! {
                () = self.state.stopped() => {
                    ws.close(1000, "shutdown").await;
                    return Ok(Ended::Stopped);
                }
                permit = inbound.reserve(), if pending.is_some() => {
                    let Ok(permit) = permit else {
                        ws.close(1000, "shutdown").await;
                        return Err(ChannelError::Stopped { channel: NAME.into() });
                    };
                    if let Some(m) = pending.take() {
                        permit.send(m);
                    }
                    // Acks queued while we were not reading are read next.
                    acked = true;
                    continue;
                }
                () = tokio::time::sleep_until(next_beat) => {
                    if !acked && pending.is_none() {
                        // A zombie connection: close without 1000 so the session survives.
                        ws.close(4000, "heartbeat not acknowledged").await;
                        return Ok(Ended::Reconnect { resume: true, wait: None });
                    }
                    self.heartbeat(&mut ws).await?;
                    acked = false;
                    next_beat = Instant::now() + interval;
                    continue;
                }
                m = ws.recv(), if pending.is_none() => m,
            };
            let text = match msg {
                Ok(Some(WsMessage::Text(t))) => t,
                Ok(Some(WsMessage::Binary(_))) => continue,
                Ok(Some(WsMessage::Close { code, reason })) => return close_outcome(code, &reason),
                Ok(None) => {
                    return Ok(Ended::Reconnect {
                        resume: true,
                        wait: None,
                    });
                }
                Err(e) => return Err(ERR.transport(e.to_string())),
            };
            let Ok(payload) = serde_json::from_str::<Payload>(&text) else {
                continue;
            };
            match payload.op {
                0 => {
                    if let Some(s) = payload.s {
                        let mut sess = self.session();
                        sess.seq = Some(sess.seq.map_or(s, |old| old.max(s)));
                    }
                    let kind = payload.t.as_deref().unwrap_or("");
                    match kind {
                        "READY" => {
                            let ready: Ready = match serde_json::from_value(payload.d) {
                                Ok(r) => r,
                                Err(_) => continue,
                            };
                            let mut sess = self.session();
                            sess.id = Some(ready.session_id);
                            sess.resume_url = ready.resume_gateway_url;
                            sess.own_user = Some(ready.user.id);
                            drop(sess);
                            self.state.set_health(Health::Connected);
                            backoff.reset();
                        }
                        "RESUMED" => {
                            self.state.set_health(Health::Connected);
                            backoff.reset();
                        }
                        "MESSAGE_CREATE" => pending = self.normalize(payload.d),
                        _ => {}
                    }
                }
                1 => self.heartbeat(&mut ws).await?,
                7 => {
                    ws.close(4000, "reconnect requested").await;
                    return Ok(Ended::Reconnect {
                        resume: true,
                        wait: Some(Duration::ZERO),
                    });
                }
                9 => {
                    let resumable = payload.d.as_bool().unwrap_or(false);
                    ws.close(4000, "invalid session").await;
                    let wait = self.backoff.0 + jitter(self.backoff.0 * 4);
                    return Ok(Ended::Reconnect {
                        resume: resumable,
                        wait: Some(wait),
                    });
                }
                10 => {
                    if let Some(i) = hello_interval(&payload.d) {
                        interval = i;
                    }
                }
                11 => acked = true,
                _ => {}
            }
        }
    }

    async fn heartbeat(&self, ws: &mut WsConnection) -> Result<(), ChannelError> {
        let seq = self.session().seq;
        send(ws, &json!({"op": 1, "d": seq})).await
    }

    fn normalize(&self, d: Value) -> Option<InboundMessage> {
        let m: DiscordMessage = serde_json::from_value(d).ok()?;
        if m.author.bot || m.webhook_id.is_some() {
            return None;
        }
        let own = self.session().own_user.clone();
        if own.as_deref() == Some(m.author.id.as_str()) {
            return None;
        }
        if !is_numeric_id(&m.id) || !is_numeric_id(&m.channel_id) {
            return None;
        }
        let attachments: Vec<Attachment> = m
            .attachments
            .into_iter()
            .take(20)
            .map(|a| Attachment {
                name: a.filename,
                mime: a.content_type,
                size: a.size,
            })
            .collect();
        if m.content.is_empty() && attachments.is_empty() {
            return None;
        }
        let mentioned = own
            .as_deref()
            .is_some_and(|me| m.mentions.iter().any(|u| u.id == me));
        let (text, cut) = bound_text(&m.content);
        let mut metadata = Vec::new();
        if let Some(g) = &m.guild_id {
            metadata.push(("guild".to_owned(), g.clone()));
        }
        if let Some(name) = m.author.global_name.or(m.author.username.clone()) {
            metadata.push(("sender_name".into(), name));
        }
        if cut {
            metadata.push(("truncated".into(), "true".into()));
        }
        Some(InboundMessage {
            channel: NAME.into(),
            event_id: m.id,
            chat: m.channel_id,
            thread: None,
            sender: m.author.id,
            sender_aliases: m.author.username.into_iter().collect(),
            text,
            direct: m.guild_id.is_none() || mentioned,
            attachments,
            metadata,
        })
    }

    /// One REST create-message, honouring the channel's bucket and 429s.
    async fn post_message(&self, channel: &str, body: &Value) -> Result<(), ChannelError> {
        let mut tries = 0;
        loop {
            let until = self.buckets.lock().await.get(channel).copied();
            if let Some(t) = until {
                let now = Instant::now();
                if t > now {
                    if t - now > MAX_RATE_LIMIT_WAIT {
                        return Err(ERR.api("rate limited for longer than the cap"));
                    }
                    tokio::time::sleep_until(t).await;
                }
            }
            let req = json_post(
                format!("{}/channels/{channel}/messages", self.base),
                body,
                Some(format!("Bot {}", self.token.expose_secret())),
            );
            check_circuit(&self.breaker, NAME)?;
            let resp = self.client.fetch(req).await;
            record_exchange(&self.breaker, &resp);
            let resp = resp.map_err(|e| ERR.transport(e.to_string()))?;
            let h = |name: &str| {
                resp.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_owned())
            };
            if h("x-ratelimit-remaining").as_deref() == Some("0") {
                let reset = h("x-ratelimit-reset-after")
                    .and_then(|v| v.parse::<f64>().ok())
                    .map_or(Duration::from_secs(1), secs_f64);
                self.buckets
                    .lock()
                    .await
                    .insert(channel.to_owned(), Instant::now() + reset);
            }
            if resp.status == 429 {
                let parsed: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
                let wait = parsed
                    .get("retry_after")
                    .and_then(Value::as_f64)
                    .or_else(|| h("retry-after").and_then(|v| v.parse().ok()))
                    .map_or(Duration::from_secs(1), secs_f64);
                if tries >= MAX_RATE_LIMIT_RETRIES || wait > MAX_RATE_LIMIT_WAIT {
                    return Err(ERR.api(format!("rate limited for {} s", wait.as_secs())));
                }
                tries += 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            if (200..300).contains(&resp.status) {
                return Ok(());
            }
            let parsed: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
            let message = parsed
                .get("message")
                .and_then(Value::as_str)
                .map(|m| comis_guard::unicode::display_safe(m, 200))
                .unwrap_or_default();
            return Err(ERR.api(format!("HTTP {} {message}", resp.status)));
        }
    }

    async fn send_chunks(&self, message: OutboundMessage) -> Result<(), ChannelError> {
        if !is_numeric_id(&message.chat) {
            return Err(ERR.protocol("chat is not a Discord channel id"));
        }
        let reply_to = message.in_reply_to.as_deref().filter(|r| is_numeric_id(r));
        for (i, piece) in split_message(&message.text, MAX_MESSAGE_LEN, LenUnit::Chars)
            .into_iter()
            .enumerate()
        {
            let mut body = json!({ "content": piece, "allowed_mentions": {"parse": []} });
            if let (0, Some(id)) = (i, reply_to) {
                body["message_reference"] = json!({"message_id": id, "fail_if_not_exists": false});
            }
            self.post_message(&message.chat, &body).await?;
        }
        Ok(())
    }
}

/// How a close frame from the gateway ends the connection.
fn close_outcome(code: u16, reason: &str) -> Result<Ended, ChannelError> {
    match code {
        4004 | 4010..=4014 => Err(ERR.config(format!(
            "gateway closed with {code}: {}",
            comis_guard::unicode::display_safe(reason, 200)
        ))),
        // Invalid sequence, session timed out: start a new session.
        4007 | 4009 => Ok(Ended::Reconnect {
            resume: false,
            wait: None,
        }),
        _ => Ok(Ended::Reconnect {
            resume: true,
            wait: None,
        }),
    }
}

fn hello_interval(d: &Value) -> Option<Duration> {
    let ms = d.get("heartbeat_interval").and_then(Value::as_u64)?;
    // Discord says ~41 s; refuse absurd values that would spin or never beat.
    (10..=600_000)
        .contains(&ms)
        .then(|| Duration::from_millis(ms))
}

async fn wait_hello(ws: &mut WsConnection) -> Result<Duration, ChannelError> {
    loop {
        match ws.recv().await {
            Ok(Some(WsMessage::Text(t))) => {
                if let Ok(p) = serde_json::from_str::<Payload>(&t)
                    && p.op == 10
                {
                    return hello_interval(&p.d)
                        .ok_or_else(|| ERR.protocol("bad heartbeat_interval"));
                }
            }
            Ok(Some(WsMessage::Binary(_))) => {}
            Ok(Some(WsMessage::Close { code, reason })) => {
                // A fatal code (bad token) surfaces as Config; anything else reconnects.
                close_outcome(code, &reason)?;
                return Err(ERR.transport(format!("closed before Hello ({code})")));
            }
            Ok(None) => return Err(ERR.transport("closed before Hello")),
            Err(e) => return Err(ERR.transport(e.to_string())),
        }
    }
}

async fn send(ws: &mut WsConnection, v: &Value) -> Result<(), ChannelError> {
    ws.send_text(&v.to_string())
        .await
        .map_err(|e| ERR.transport(e.to_string()))
}

#[derive(Deserialize)]
struct Payload {
    op: u8,
    #[serde(default)]
    d: Value,
    s: Option<u64>,
    t: Option<String>,
}

#[derive(Deserialize)]
struct ReadyUser {
    id: String,
}

#[derive(Deserialize)]
struct Ready {
    session_id: String,
    resume_gateway_url: Option<String>,
    user: ReadyUser,
}

#[derive(Deserialize)]
struct Author {
    id: String,
    username: Option<String>,
    global_name: Option<String>,
    #[serde(default)]
    bot: bool,
}

#[derive(Deserialize)]
struct Mention {
    id: String,
}

#[derive(Deserialize)]
struct DiscordAttachment {
    filename: String,
    content_type: Option<String>,
    size: Option<u64>,
}

#[derive(Deserialize)]
struct DiscordMessage {
    id: String,
    channel_id: String,
    guild_id: Option<String>,
    author: Author,
    #[serde(default)]
    content: String,
    #[serde(default)]
    attachments: Vec<DiscordAttachment>,
    #[serde(default)]
    mentions: Vec<Mention>,
    webhook_id: Option<String>,
}

impl Channel for DiscordChannel {
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
        Box::pin(self.send_chunks(message))
    }

    fn health(&self) -> Health {
        self.state.health()
    }
}
