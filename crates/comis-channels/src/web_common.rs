//! What the HTTP-API adapters (Telegram, Slack, Discord) share: the guarded client for a
//! configured API base, the run state (health, stop signal, inbound sender), inbound text
//! bounds, the webhook reply and what counts as a failure for the circuit breaker on platform
//! API calls.
//!
//! **Guarantees.** The API base host is the only exception added to the operator's SSRF
//! allow-list; only transport errors and 5xx answers count against the platform.
//!
//! **Does not** filter senders or dedup events (the router does), guard text (the daemon runs
//! the arrival checkpoint and the output guard), or chunk and pace (the crate-wide
//! [`crate::text`] and [`crate::backoff`] do, for every adapter).

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use comis_net::{ClientConfig, FetchRequest, FetchResponse, GuardedClient, NetError, SsrfPolicy};
use tokio::sync::{mpsc, watch};

use crate::backoff::{BREAKER_THRESHOLD, CircuitBreaker};
use crate::{ChannelError, ErrorsFor, Health, InboundMessage, InboundSender};

/// Longest inbound text kept, in characters; longer text is cut and marked `truncated`
/// (the largest platform limit, Slack's 40 000, with room to spare).
pub(crate) const MAX_INBOUND_CHARS: usize = 40_000;

/// Largest webhook body accepted.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

/// Longest wait a platform's rate-limit answer may impose before a send gives up.
pub(crate) const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// Retries of one request after a rate-limit answer.
pub(crate) const MAX_RATE_LIMIT_RETRIES: u32 = 3;

/// A JSON `POST` of `body` to `url`, with `authorization` when the platform takes its token
/// in a header (Telegram's is in the path). The charset is explicit because Slack warns
/// without it; the others accept it.
pub(crate) fn json_post(
    url: String,
    body: &serde_json::Value,
    authorization: Option<String>,
) -> FetchRequest {
    let mut headers = vec![(
        "content-type".to_owned(),
        "application/json; charset=utf-8".to_owned(),
    )];
    if let Some(auth) = authorization {
        headers.push(("authorization".to_owned(), auth));
    }
    FetchRequest {
        method: "POST".into(),
        url,
        headers,
        body: Some(body.to_string().into_bytes()),
        sensitive_headers: Vec::new(),
        context: None,
    }
}

/// A platform API failure, before it becomes a [`ChannelError`].
pub(crate) enum CallError {
    /// The platform asked to wait this long before the next call.
    RateLimited(Duration),
    /// The credentials are refused (revoked token); retrying will not help.
    Fatal(ChannelError),
    Other(ChannelError),
}

impl CallError {
    pub(crate) fn into_channel(self, channel: &str) -> ChannelError {
        match self {
            CallError::RateLimited(d) => {
                ErrorsFor(channel).api(format!("rate limited for {} s", d.as_secs()))
            }
            CallError::Fatal(e) | CallError::Other(e) => e,
        }
    }
}

/// Runs `call`, waiting out a rate-limit answer and calling again, at most
/// [`MAX_RATE_LIMIT_RETRIES`] times and only for waits up to [`MAX_RATE_LIMIT_WAIT`].
pub(crate) async fn retry_rate_limited<T, F, Fut>(
    channel: &str,
    mut call: F,
) -> Result<T, ChannelError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(CallError::RateLimited(d))
                if tries < MAX_RATE_LIMIT_RETRIES && d <= MAX_RATE_LIMIT_WAIT =>
            {
                tries += 1;
                tokio::time::sleep(d).await;
            }
            Err(e) => return Err(e.into_channel(channel)),
        }
    }
}

/// What the gateway answers a platform's webhook request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    /// HTTP status: 200 accepted (or ignored), 400 malformed, 401 bad secret or signature,
    /// 413 too large, 503 not running or inbound queue full (the platform retries).
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Why the request was refused, for the audit log; `None` when accepted or ignored.
    pub rejected: Option<String>,
}

impl WebhookReply {
    pub(crate) fn ok() -> Self {
        Self {
            status: 200,
            content_type: "text/plain",
            body: Vec::new(),
            rejected: None,
        }
    }

    pub(crate) fn json(body: &serde_json::Value) -> Self {
        Self {
            status: 200,
            content_type: "application/json",
            body: body.to_string().into_bytes(),
            rejected: None,
        }
    }

    pub(crate) fn reject(status: u16, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            status,
            content_type: "text/plain",
            body: reason.clone().into_bytes(),
            rejected: Some(reason),
        }
    }
}

/// The first value of header `name` (case-insensitive).
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A guarded client for an adapter whose API lives at `bases`: the operator's `allow_hosts`
/// plus the host of each base that differs from the public default (a self-hosted API server,
/// a local test server).
pub(crate) fn client_for(
    channel: &str,
    bases: &[(&str, &str)],
    allow_hosts: &[String],
) -> Result<(GuardedClient, SsrfPolicy), ChannelError> {
    let config_err = |reason: String| ErrorsFor(channel).config(reason);
    let mut allow: Vec<String> = allow_hosts.to_vec();
    for (base, default) in bases {
        let url = url_host(base).ok_or_else(|| config_err(format!("{base:?} is not a URL")))?;
        if url_host(default).as_deref() != Some(url.as_str()) {
            allow.push(url);
        }
    }
    let policy = SsrfPolicy::with_allow_hosts(&allow).map_err(|e| config_err(e.to_string()))?;
    let client = GuardedClient::new(policy.clone(), ClientConfig::default())
        .map_err(|e| config_err(e.to_string()))?;
    Ok((client, policy))
}

/// The host of `url`, brackets removed from IPv6 literals.
fn url_host(url: &str) -> Option<String> {
    // Only the authority matters; the scheme may be ws/wss.
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Cuts inbound text to [`MAX_INBOUND_CHARS`]; `true` when it was cut.
pub(crate) fn bound_text(text: &str) -> (String, bool) {
    match text.char_indices().nth(MAX_INBOUND_CHARS) {
        Some((i, _)) => (text[..i].to_owned(), true),
        None => (text.to_owned(), false),
    }
}

/// Run state an adapter shares between `run`, `send`, `health` and its webhook handler.
#[derive(Debug)]
pub(crate) struct RunState {
    health: Mutex<Health>,
    stop: watch::Sender<bool>,
    inbound: Mutex<Option<InboundSender>>,
}

impl RunState {
    pub(crate) fn new() -> Self {
        Self {
            health: Mutex::new(Health::Stopped),
            stop: watch::Sender::new(false),
            inbound: Mutex::new(None),
        }
    }

    pub(crate) fn health(&self) -> Health {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_health(&self, h: Health) {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) = h;
    }

    /// Marks the start of `run`; webhook handlers deliver to `inbound` from now on.
    pub(crate) fn start(&self, inbound: InboundSender) {
        self.stop.send_replace(false);
        self.set_health(Health::Starting);
        *self.inbound.lock().unwrap_or_else(PoisonError::into_inner) = Some(inbound);
    }

    /// Runs an adapter's `run` body between [`start`](Self::start) and
    /// [`finish`](Self::finish): health ends `Stopped` when it returns `Ok`, else `Failed`.
    pub(crate) async fn supervise(
        &self,
        inbound: InboundSender,
        body: impl Future<Output = Result<(), ChannelError>>,
    ) -> Result<(), ChannelError> {
        self.start(inbound);
        let r = body.await;
        self.finish(if r.is_ok() {
            Health::Stopped
        } else {
            Health::Failed
        });
        r
    }

    /// Marks the end of `run`.
    pub(crate) fn finish(&self, health: Health) {
        *self.inbound.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.set_health(health);
    }

    pub(crate) fn request_stop(&self) {
        self.stop.send_replace(true);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once a stop is requested.
    pub(crate) async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Delivers from a webhook without waiting: `Err(reply)` when not running or full.
    pub(crate) fn try_deliver(&self, msg: InboundMessage) -> Result<(), WebhookReply> {
        let guard = self.inbound.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = guard.as_ref() else {
            return Err(WebhookReply::reject(503, "channel is not running"));
        };
        match tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                Err(WebhookReply::reject(503, "inbound queue is full"))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(WebhookReply::reject(503, "channel is not running"))
            }
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        self.inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// How long a platform API's open circuit refuses calls before one probe goes through.
pub(crate) const API_BREAKER_COOLDOWN: Duration = Duration::from_secs(30);

/// A circuit breaker on a platform API: transport errors and 5xx answers count as failures;
/// refusals by the platform (4xx: bad channel, missing permission) are the caller's problem,
/// not the platform's, and count as answers.
pub(crate) fn api_breaker() -> CircuitBreaker {
    CircuitBreaker::new(BREAKER_THRESHOLD, API_BREAKER_COOLDOWN)
}

/// `Err` while the platform API's circuit is open.
pub(crate) fn check_circuit(breaker: &CircuitBreaker, channel: &str) -> Result<(), ChannelError> {
    if breaker.allow() {
        Ok(())
    } else {
        Err(ErrorsFor(channel).api("circuit open after repeated platform failures"))
    }
}

/// Records one API exchange: a transport error or a 5xx answer is a platform failure.
pub(crate) fn record_exchange(breaker: &CircuitBreaker, resp: &Result<FetchResponse, NetError>) {
    breaker.record(resp.as_ref().is_ok_and(|r| r.status < 500));
}

/// Whether `s` is a non-empty run of ASCII digits no longer than 32 (a platform numeric id).
pub(crate) fn is_numeric_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn api_base_hosts() {
        assert_eq!(
            url_host("http://127.0.0.1:8080/x").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(url_host("ws://[::1]:9/").as_deref(), Some("::1"));
        assert_eq!(
            url_host("https://API.example").as_deref(),
            Some("api.example")
        );
        assert_eq!(url_host("https://u@h/"), None);
        assert_eq!(url_host("nope"), None);
        assert!(client_for("t", &[("http://127.0.0.1:1/", "https://a.example")], &[]).is_ok());
        assert!(client_for("t", &[("garbage", "https://a.example")], &[]).is_err());
    }

    #[test]
    fn inbound_text_is_bounded() {
        let (t, cut) = bound_text(&"é".repeat(MAX_INBOUND_CHARS + 5));
        assert!(cut);
        assert_eq!(t.chars().count(), MAX_INBOUND_CHARS);
        assert_eq!(bound_text("hi"), ("hi".to_owned(), false));
    }
}
