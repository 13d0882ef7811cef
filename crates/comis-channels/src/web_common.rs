//! What the HTTP-API adapters (Telegram, Slack, Discord) share: the guarded client for a
//! configured API base, chunking to a platform limit, reconnect backoff with jitter, the run
//! state (health, stop signal, inbound sender), inbound text bounds, the webhook reply and the
//! circuit breaker on platform API failures.
//!
//! **Guarantees.** Chunks never exceed the limit in the platform's own unit and concatenate
//! back to the original text; backoff waits grow to a cap and are jittered; the API base host
//! is the only exception added to the operator's SSRF allow-list.
//!
//! **Does not** filter senders or dedup events (the router does), or guard text (the daemon
//! runs the arrival checkpoint and the output guard).
//!
//! NOTE for the lead: the router helper builds chunking/backoff helpers in parallel; this module
//! holds private ones so the web adapters stand alone. Dedupe at merge.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use comis_net::{ClientConfig, GuardedClient, SsrfPolicy};
use tokio::sync::{mpsc, watch};

use crate::{ChannelError, Health, InboundMessage, InboundSender};

/// Longest inbound text kept, in characters; longer text is cut and marked `truncated`
/// (the largest platform limit, Slack's 40 000, with room to spare).
pub(crate) const MAX_INBOUND_CHARS: usize = 40_000;

/// Largest webhook body accepted.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

/// Longest wait a platform's rate-limit answer may impose before a send gives up.
pub(crate) const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// Retries of one request after a rate-limit answer.
pub(crate) const MAX_RATE_LIMIT_RETRIES: u32 = 3;

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
    let config_err = |reason: String| ChannelError::Config {
        channel: channel.to_owned(),
        reason,
    };
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

/// Splits `text` into pieces of at most `max` units (`unit` gives a char's size), preferring
/// to cut after a newline, then after whitespace, in the second half of a piece. The pieces
/// concatenate to `text`. Empty text gives no pieces.
pub(crate) fn chunk(text: &str, max: usize, unit: fn(char) -> usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let mut used = 0;
        let mut end = start;
        while end < chars.len() && used + unit(chars[end]) <= max {
            used += unit(chars[end]);
            end += 1;
        }
        if end == chars.len() {
            out.push(chars[start..].iter().collect());
            break;
        }
        if end == start {
            // A limit smaller than one char: never loop forever.
            end = start + 1;
        }
        let half = start + (end - start) / 2;
        let after = |pred: fn(char) -> bool| (half + 1..end).rev().find(|&i| pred(chars[i - 1]));
        let cut = after(|c| c == '\n')
            .or_else(|| after(char::is_whitespace))
            .unwrap_or(end);
        out.push(chars[start..cut].iter().collect());
        start = cut;
    }
    out
}

/// One char as one unit (Discord, Slack).
pub(crate) fn unit_char(_: char) -> usize {
    1
}

/// A char's UTF-16 length (Telegram counts UTF-16 code units).
pub(crate) fn unit_utf16(c: char) -> usize {
    c.len_utf16()
}

/// Cuts inbound text to [`MAX_INBOUND_CHARS`]; `true` when it was cut.
pub(crate) fn bound_text(text: &str) -> (String, bool) {
    match text.char_indices().nth(MAX_INBOUND_CHARS) {
        Some((i, _)) => (text[..i].to_owned(), true),
        None => (text.to_owned(), false),
    }
}

/// A random number, for jitter (falls back to the clock if the OS has no randomness to give).
pub(crate) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_ok() {
        return u64::from_le_bytes(b);
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()))
}

/// `d` scaled by a random factor in `[0, 1)`.
pub(crate) fn jitter(d: Duration) -> Duration {
    let frac = (random_u64() % 10_000) as f64 / 10_000.0;
    d.mul_f64(frac)
}

/// Exponential backoff with jitter: the n-th wait is in `[b/2, b]` for `b = min(base·2ⁿ, max)`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    pub(crate) fn next_wait(&mut self) -> Duration {
        let b = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        b / 2 + jitter(b / 2)
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
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

/// Consecutive failed sends that open the breaker.
pub(crate) const BREAKER_THRESHOLD: u32 = 5;
/// How long an open breaker refuses sends before letting one through.
pub(crate) const BREAKER_COOLDOWN: Duration = Duration::from_secs(30);

/// A circuit breaker on a platform API: after [`BREAKER_THRESHOLD`] consecutive failures
/// (transport errors, 5xx), sends fail at once for [`BREAKER_COOLDOWN`]; then one is let
/// through, and its success closes the breaker. Refusals by the platform (4xx: bad channel,
/// missing permission) are the caller's problem, not the platform's, and do not count.
#[derive(Debug)]
pub(crate) struct Breaker {
    inner: Mutex<(u32, Option<tokio::time::Instant>)>,
    cooldown: Duration,
}

impl Breaker {
    pub(crate) fn new(cooldown: Duration) -> Self {
        Self {
            inner: Mutex::new((0, None)),
            cooldown,
        }
    }

    /// `Err` while open.
    pub(crate) fn check(&self, channel: &str) -> Result<(), ChannelError> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match g.1 {
            Some(until) if tokio::time::Instant::now() < until => Err(ChannelError::Api {
                channel: channel.to_owned(),
                reason: "circuit open after repeated platform failures".into(),
            }),
            Some(_) => {
                // Half-open: this one attempt decides; another failure reopens at once.
                g.1 = None;
                g.0 = BREAKER_THRESHOLD.saturating_sub(1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Records one exchange: `failed` for a transport error or a 5xx answer.
    pub(crate) fn record(&self, failed: bool) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if failed {
            g.0 = g.0.saturating_add(1);
            if g.0 >= BREAKER_THRESHOLD {
                g.1 = Some(tokio::time::Instant::now() + self.cooldown);
            }
        } else {
            *g = (0, None);
        }
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
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
    fn chunks_respect_the_limit_and_rejoin() {
        let text = "word ".repeat(3000) + &"x".repeat(9000) + "\nend";
        for (max, unit) in [(2000, unit_char as fn(char) -> usize), (4096, unit_utf16)] {
            let pieces = chunk(&text, max, unit);
            assert!(pieces.len() > 1);
            assert!(
                pieces
                    .iter()
                    .all(|p| p.chars().map(unit).sum::<usize>() <= max)
            );
            assert_eq!(pieces.concat(), text);
        }
        // Astral chars are two UTF-16 units: 4096 of them need two Telegram messages.
        let emoji = "😀".repeat(4096);
        let pieces = chunk(&emoji, 4096, unit_utf16);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].chars().count(), 2048);
        assert!(chunk("", 10, unit_char).is_empty());
        assert_eq!(chunk("abc", 0, unit_char).concat(), "abc");
    }

    #[test]
    fn prefers_newlines_then_spaces() {
        let pieces = chunk("aaaa bbbb\ncccc dddd", 12, unit_char);
        assert_eq!(pieces[0], "aaaa bbbb\n");
        let pieces = chunk("aaaa bbbb cccc", 12, unit_char);
        assert_eq!(pieces[0], "aaaa bbbb ");
    }

    #[test]
    fn backoff_grows_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<_> = (0..8).map(|_| b.next_wait()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(1)));
        assert!(waits[7] >= Duration::from_millis(500));
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(100));
    }

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
    fn breaker_opens_after_repeated_failures_and_a_success_closes_it() {
        let b = Breaker::new(Duration::from_secs(60));
        for _ in 0..BREAKER_THRESHOLD - 1 {
            b.record(true);
            assert!(b.check("x").is_ok());
        }
        b.record(false);
        for _ in 0..BREAKER_THRESHOLD - 1 {
            b.record(true);
        }
        assert!(b.check("x").is_ok(), "a success reset the count");
        b.record(true);
        assert!(
            b.check("x")
                .unwrap_err()
                .to_string()
                .contains("circuit open")
        );
        // Cooldown over (zero here): one attempt goes through; its failure reopens at once,
        // its success closes.
        let b = Breaker::new(Duration::ZERO);
        for _ in 0..BREAKER_THRESHOLD {
            b.record(true);
        }
        assert!(b.check("x").is_ok());
        b.record(false);
        b.record(true);
        assert!(b.check("x").is_ok(), "closed: one failure does not reopen");
    }

    #[test]
    fn inbound_text_is_bounded() {
        let (t, cut) = bound_text(&"é".repeat(MAX_INBOUND_CHARS + 5));
        assert!(cut);
        assert_eq!(t.chars().count(), MAX_INBOUND_CHARS);
        assert_eq!(bound_text("hi"), ("hi".to_owned(), false));
    }
}
