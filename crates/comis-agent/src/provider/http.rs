//! The HTTP side every wire format shares: sending through the guarded client, retrying what
//! is safe to retry, and turning error answers into [`ProviderError`]s.
//!
//! Guarantees:
//! - Retried (up to `maxRetries`, exponential backoff from [`ProviderHttp::retry_base`] with
//!   jitter, capped at [`MAX_BACKOFF`]): 429 (honouring `retry-after-ms` / `Retry-After`
//!   seconds when they are no longer than [`MAX_RETRY_AFTER`]), 500/502/503/504/529, and
//!   connection failures — all before any byte of a successful answer. Once a 2xx answer
//!   starts streaming, nothing is retried: the model may already have acted on it.
//! - Not retried: other 4xx ([`ProviderError::Rejected`], message from the error body, capped
//!   at [`MAX_ERROR_MESSAGE`] characters), SSRF refusals, timeouts (the `timeoutMs` budget is
//!   spent; the circuit breaker sees the failure).
//! - API keys live in `SecretString` until the moment a header is built; they are never in
//!   an error, an event or a `Debug` output.
//!
//! Does not: retry a stream that broke in the middle (the caller gets the error).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use comis_net::{FetchRequest, FetchStream, GuardedClient, NetError, StreamLimits};
use comis_secrets::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::provider::ProviderError;
use crate::provider::sse::{LineSplitter, SseEvent, SseParser};

/// The longest backoff between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// A `Retry-After` longer than this is not waited for: the error goes back at once.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Characters of a provider's error message kept in an error.
pub const MAX_ERROR_MESSAGE: usize = 500;
/// Bytes of an error body read.
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// Longest line of a stream (one SSE or NDJSON line).
pub(crate) const MAX_LINE: usize = 1024 * 1024;
/// Largest data of one event.
pub(crate) const MAX_EVENT: usize = 4 * 1024 * 1024;

/// What the providers need from the network, shared by all of them.
#[derive(Debug, Clone)]
pub struct ProviderHttp {
    /// The guarded client; each provider derives its own copy with an exception for its
    /// operator-configured `baseUrl` host when that host is local.
    pub client: GuardedClient,
    /// First backoff step (default 500 ms); doubled per attempt.
    pub retry_base: Duration,
    /// Largest streamed answer (default 32 MiB).
    pub max_response_bytes: u64,
}

impl ProviderHttp {
    /// Defaults around `client`.
    pub fn new(client: GuardedClient) -> ProviderHttp {
        ProviderHttp {
            client,
            retry_base: Duration::from_millis(500),
            max_response_bytes: 32 * 1024 * 1024,
        }
    }
}

/// How the API key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyStyle {
    /// `x-api-key: KEY` (Anthropic).
    XApiKey,
    /// `Authorization: Bearer KEY`.
    Bearer,
}

/// One provider's endpoint: URL, key, limits, retry policy.
pub(crate) struct Endpoint {
    pub provider_id: String,
    pub url: String,
    pub client: GuardedClient,
    pub key: Option<SecretString>,
    pub key_style: KeyStyle,
    /// Operator headers from config plus the wire format's fixed ones.
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub max_retries: u32,
    pub retry_base: Duration,
    pub max_bytes: u64,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("provider_id", &self.provider_id)
            .field("url", &self.url)
            .field("has_key", &self.key.is_some())
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

/// Why one attempt failed, and whether another may follow.
enum Attempt {
    Retry {
        error: ProviderError,
        wait: Option<Duration>,
    },
    Fail(ProviderError),
}

impl Endpoint {
    fn request(&self, body: &[u8]) -> FetchRequest {
        let mut headers = self.headers.clone();
        headers.push(("content-type".into(), "application/json".into()));
        let mut sensitive = Vec::new();
        if let Some(key) = &self.key {
            match self.key_style {
                KeyStyle::XApiKey => {
                    headers.push(("x-api-key".into(), key.expose_secret().to_owned()));
                    sensitive.push("x-api-key".to_owned());
                }
                KeyStyle::Bearer => headers.push((
                    "authorization".into(),
                    format!("Bearer {}", key.expose_secret()),
                )),
            }
        }
        FetchRequest {
            method: "POST".into(),
            url: self.url.clone(),
            headers,
            body: Some(body.to_vec()),
            sensitive_headers: sensitive,
            context: None,
        }
    }

    /// Sends `body`, retrying what is safe, and returns the 2xx answer ready to stream.
    pub async fn open(&self, body: &[u8]) -> Result<FetchStream, ProviderError> {
        let limits = StreamLimits {
            timeout: self.timeout,
            max_bytes: self.max_bytes,
        };
        let mut attempt: u32 = 0;
        loop {
            let outcome = match self.client.fetch_stream(self.request(body), limits).await {
                Ok(stream) if (200..300).contains(&stream.status) => return Ok(stream),
                Ok(stream) => classify_status(stream).await,
                Err(e) => classify_net(&e),
            };
            match outcome {
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { error, wait } => {
                    if attempt >= self.max_retries {
                        return Err(error);
                    }
                    let delay = wait.unwrap_or_else(|| backoff(self.retry_base, attempt));
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }
}

impl Endpoint {
    /// Sends `body` and hands each server-sent event of the answer to `on_event`, in order,
    /// until the stream ends or `on_event` fails.
    pub async fn stream_sse(
        &self,
        body: &[u8],
        mut on_event: impl FnMut(&SseEvent) -> Result<(), ProviderError>,
    ) -> Result<(), ProviderError> {
        let mut stream = self.open(body).await?;
        let mut parser = SseParser::new(MAX_LINE, MAX_EVENT);
        let mut events = Vec::new();
        while let Some(chunk) = stream.next_chunk().await.map_err(|e| stream_error(&e))? {
            parser
                .feed(&chunk, &mut events)
                .map_err(|e| ProviderError::Malformed(e.to_string()))?;
            for event in events.drain(..) {
                on_event(&event)?;
            }
        }
        Ok(())
    }

    /// Sends `body` and hands each line of the newline-delimited answer to `on_line`, the
    /// last one even without its line break.
    pub async fn stream_lines(
        &self,
        body: &[u8],
        mut on_line: impl FnMut(&[u8]) -> Result<(), ProviderError>,
    ) -> Result<(), ProviderError> {
        let mut stream = self.open(body).await?;
        let mut lines = LineSplitter::new(MAX_LINE);
        while let Some(chunk) = stream.next_chunk().await.map_err(|e| stream_error(&e))? {
            lines.feed(&chunk, &mut on_line)?;
        }
        if let Some(rest) = lines.take_rest() {
            on_line(&rest)?;
        }
        Ok(())
    }
}

/// `base * 2^attempt`, capped, times a random factor in [0.75, 1.0] so that many clients
/// hit by the same outage do not retry in lockstep.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    let r = RandomState::new().build_hasher().finish();
    let factor = 0.75 + 0.25 * ((r % 1000) as f64 / 1000.0);
    exp.mul_f64(factor)
}

/// `retry-after-ms` (OpenAI, Anthropic SDKs) or `Retry-After` in seconds. HTTP dates are not
/// honoured (the normal backoff applies).
pub(crate) fn retry_after(stream: &FetchStream) -> Option<Duration> {
    if let Some(ms) = stream
        .header("retry-after-ms")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    stream
        .header("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e9)
        .map(Duration::from_secs_f64)
}

async fn classify_status(stream: FetchStream) -> Attempt {
    let status = stream.status;
    let wait = retry_after(&stream);
    let message = error_message(stream).await;
    match status {
        429 => {
            let retry_after_ms = wait.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let error = ProviderError::RateLimited { retry_after_ms };
            match wait {
                Some(w) if w > MAX_RETRY_AFTER => Attempt::Fail(error),
                _ => Attempt::Retry { error, wait },
            }
        }
        500 | 502 | 503 | 504 | 529 => Attempt::Retry {
            error: ProviderError::Server { status, message },
            wait: wait.filter(|w| *w <= MAX_RETRY_AFTER),
        },
        s if s >= 500 => Attempt::Fail(ProviderError::Server { status, message }),
        _ => Attempt::Fail(ProviderError::Rejected { status, message }),
    }
}

fn classify_net(e: &NetError) -> Attempt {
    match e {
        NetError::Timeout { .. } => Attempt::Fail(ProviderError::Timeout),
        NetError::Transport { .. } => Attempt::Retry {
            error: ProviderError::Transport(e.to_string()),
            wait: None,
        },
        NetError::TooLarge { .. } => Attempt::Fail(ProviderError::Malformed(e.to_string())),
        _ => Attempt::Fail(ProviderError::Transport(e.to_string())),
    }
}

/// The provider's own words from an error body: `error.message` (Anthropic, OpenAI),
/// `error` as text (Ollama), else the body's start — bounded and display-safe.
async fn error_message(stream: FetchStream) -> String {
    let mut stream = stream;
    let mut buf = Vec::new();
    while let Ok(Some(c)) = stream.next_chunk().await {
        buf.extend_from_slice(&c);
        if buf.len() as u64 >= MAX_ERROR_BODY {
            break;
        }
    }
    let text = match serde_json::from_slice::<Value>(&buf) {
        Ok(v) => v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .or_else(|| v.get("error").and_then(Value::as_str))
            .or_else(|| v.get("message").and_then(Value::as_str))
            .map_or_else(|| v.to_string(), str::to_owned),
        Err(_) => String::from_utf8_lossy(&buf).into_owned(),
    };
    comis_guard::unicode::display_safe(&text, MAX_ERROR_MESSAGE)
}

/// Maps a failure while reading a 2xx stream (never retried).
pub(crate) fn stream_error(e: &NetError) -> ProviderError {
    match e {
        NetError::Timeout { .. } => ProviderError::Timeout,
        NetError::TooLarge { .. } => ProviderError::Malformed(e.to_string()),
        _ => ProviderError::Transport(e.to_string()),
    }
}

/// A bounded, display-safe piece of a bad payload for an error message.
pub(crate) fn snippet(text: &str) -> String {
    comis_guard::unicode::display_safe(text, 120)
}

/// A mid-stream `error` object: its type and message.
pub(crate) fn stream_error_object(error: &Value) -> ProviderError {
    let kind = error
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("error")
        .to_owned();
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| error.to_string(), str::to_owned);
    let message = comis_guard::unicode::display_safe(&message, MAX_ERROR_MESSAGE);
    match kind.as_str() {
        "rate_limit_error" => ProviderError::RateLimited {
            retry_after_ms: None,
        },
        "overloaded_error" => ProviderError::Server {
            status: 529,
            message,
        },
        "invalid_request_error" => ProviderError::Rejected {
            status: 400,
            message,
        },
        _ => ProviderError::Server {
            status: 500,
            message: format!("{kind}: {message}"),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let base = Duration::from_millis(500);
        for attempt in 0..40 {
            let d = backoff(base, attempt);
            let full = base
                .saturating_mul(1u32 << attempt.min(16))
                .min(MAX_BACKOFF);
            assert!(d <= full && d >= full.mul_f64(0.75), "{attempt}: {d:?}");
        }
    }

    #[test]
    fn stream_errors_map_by_type() {
        let e = stream_error_object(
            &serde_json::json!({"type": "overloaded_error", "message": "busy"}),
        );
        assert_eq!(
            e,
            ProviderError::Server {
                status: 529,
                message: "busy".into()
            }
        );
    }
}
